//! `cosell mapping new`: writes a mapping project (see [`crate::scaffold`]) to a directory
//! and says what to run next.

use crate::runtime::Direction;
use crate::scaffold::{self, Lang, Request};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};

use super::DirectionArg;

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The mapping's name: kebab-case (a-z, 0-9, `-`), e.g. deal-size-tiers. Names the
    /// directory, the crate or module and dist/<name_snake>.wasm.
    pub name: String,
    /// The language of the step.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// The direction the step maps.
    #[arg(long, value_enum)]
    pub direction: DirectionArg,
    /// Start from the default mapping's behaviour: Rust gets the default mapping's rules
    /// library to edit; Python and JavaScript get a step that runs after the default mapping
    /// and changes nothing yet. The fixtures are the repository's cases of the direction.
    #[arg(long)]
    pub from_default: bool,
    /// Where to write the project. Default: ./<name>.
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// Write into an existing non-empty directory, replacing the files the project has.
    #[arg(long)]
    pub force: bool,
}

pub(super) fn run(args: NewArgs) -> Result<i32> {
    let direction: Direction = args.direction.into();
    let request = Request {
        name: args.name.clone(),
        lang: args.lang,
        direction,
        from_default: args.from_default,
    };
    let project = scaffold::plan(&request)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    refuse_non_empty(&dir, args.force)?;
    for (path, bytes) in &project.files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, bytes).with_context(|| format!("writing {}", target.display()))?;
        if path.ends_with(".sh") {
            make_executable(&target)?;
        }
    }
    let from = if args.from_default {
        ", from the default mapping"
    } else {
        ""
    };
    println!(
        "Created the {} mapping `{}` ({direction}{from}) in {}:",
        args.lang.key(),
        args.name,
        dir.display()
    );
    for path in project.files.keys() {
        // The vendored crates are many files; one line each says what they are.
        if let Some(rest) = path.strip_prefix("vendor/") {
            if rest.ends_with("/Cargo.toml") && rest.matches('/').count() == 1 {
                println!(
                    "  vendor/{}/ (vendored crate)",
                    rest.trim_end_matches("/Cargo.toml")
                );
            }
            continue;
        }
        println!("  {path}");
    }
    for note in &project.notes {
        println!("note: {note}");
    }
    let wasm = format!("dist/{}.wasm", args.name.replace('-', "_"));
    println!("Next:");
    println!("  cd {}", dir.display());
    println!("  ./build.sh");
    println!("  cosell mapping test {wasm} --fixtures fixtures --direction {direction}");
    println!("  cosell mapping deploy <step> {wasm} --shadow");
    Ok(0)
}

fn refuse_non_empty(dir: &Path, force: bool) -> Result<()> {
    let non_empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
        Err(err) => return Err(err).with_context(|| format!("reading {}", dir.display())),
    };
    if non_empty && !force {
        bail!(
            "{} exists and is not empty: choose another --dir, or pass --force to write the project's files into it",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> Result<()> {
    Ok(())
}
