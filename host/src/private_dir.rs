//! Directories only the host's own user may use (mode 0700), and the check that a file in one
//! belongs to that user.
//!
//! Used where another local user able to write would be able to run code in the host: the
//! artifact cache (precompiled machine code) and the drop directory (components deployed as
//! they appear). An existing directory with a wider mode is narrowed, not refused: the host
//! made or was given it, and narrowing closes the gap without an operator step.

use anyhow::{Context as _, Result};
use std::path::Path;

/// What [`create_private_dir`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DirState {
    /// Created now, or already its owner's only.
    Private,
    /// It existed with permissions for group or others, now taken away: anything in it may
    /// have been written by another user meanwhile.
    Narrowed,
}

/// Creates `dir` with mode 0700 (parents with the default mode), or narrows an existing one to
/// 0700, saying which. `what` names the directory in errors. Fails when the mode cannot be
/// set, for example because the directory belongs to another user.
pub(crate) fn create_private_dir(dir: &Path, what: &str) -> Result<DirState> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the directory {}", parent.display()))?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    let mut state = DirState::Private;
    match builder.create(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(dir)
                    .with_context(|| format!("reading the mode of {}", dir.display()))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    state = DirState::Narrowed;
                }
            }
        }
        Err(err) => {
            return Err(err).with_context(|| format!("creating {what} {}", dir.display()));
        }
    }
    // Explicit, so neither the umask nor an earlier, wider directory decides. Only the
    // directory's owner may change its mode, so this also refuses another user's directory.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "making {what} {} its owner's only (mode 0700); is it another user's? Give it to the user cosell runs as, or point the setting at another directory",
                    dir.display()
                )
            },
        )?;
    }
    Ok(state)
}

/// Why a file with metadata `meta` is not the host's user's, or `None` when it is. On other
/// platforms than Unix there is no owner to compare, and nothing is refused.
pub(crate) fn foreign_owner(meta: &std::fs::Metadata) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let owner = meta.uid();
        if owner != me {
            return Some(format!(
                "the file belongs to uid {owner}, not to uid {me} that cosell runs as; only cosell's own user may drop components (copy the file in as that user, or chown it)"
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    None
}
