//! Versioned schema migrations, shared by both backends.
//!
//! Each backend keeps an ordered list of numbered SQL files (`sqlite/migrations/`,
//! `postgres/migrations/`), embedded in the binary, and records in the database the version
//! its schema is at. At open, the migrations above that version are applied in order, in one
//! transaction with the new version, so a failed upgrade leaves the database as it was. A
//! database at a version this binary does not know was written by a newer cosell: it is
//! refused rather than used with a schema the code does not understand.

use anyhow::{Result, bail};

/// One numbered step of a backend's schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// 1, 2, 3, …: the schema version once it is applied.
    pub version: u32,
    /// The file's name, for errors and logs.
    pub name: &'static str,
    /// The migration's SQL, applied in one transaction with the others being applied.
    pub sql: &'static str,
}

/// Declares a migration from a file of the calling backend's `migrations/` folder.
macro_rules! migration {
    ($version:literal, $file:literal) => {
        $crate::store::migrations::Migration {
            version: $version,
            name: $file,
            sql: include_str!(concat!("migrations/", $file)),
        }
    };
}
pub(crate) use migration;

/// The migrations of `all` a database at `current` still needs, in order. `all` must be
/// numbered 1, 2, 3, … (checked: a gap would skip a step). `database` names the database in
/// the error that refuses a newer schema.
pub(crate) fn pending<'a>(
    all: &'a [Migration],
    current: u32,
    database: &str,
) -> Result<&'a [Migration]> {
    for (i, migration) in all.iter().enumerate() {
        assert_eq!(
            migration.version as usize,
            i + 1,
            "migration {} is out of sequence",
            migration.name
        );
    }
    let latest = latest(all);
    if current > latest {
        bail!(
            "{database} has schema version {current}, newer than this cosell knows (at most \
             {latest}): it was written by a newer release of cosell. Run that release (or a \
             newer one), or restore a backup taken before the upgrade; this one will not \
             touch a schema it does not understand"
        );
    }
    Ok(&all[current as usize..])
}

/// The version a database is at once every migration of `all` is applied.
pub(crate) fn latest(all: &[Migration]) -> u32 {
    all.last().map_or(0, |m| m.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Migration; 2] = [
        Migration {
            version: 1,
            name: "0001_a.sql",
            sql: "",
        },
        Migration {
            version: 2,
            name: "0002_b.sql",
            sql: "",
        },
    ];

    #[test]
    fn only_the_steps_above_the_current_version_run_and_a_newer_schema_is_refused() {
        assert_eq!(pending(&ALL, 0, "db").unwrap().len(), 2);
        assert_eq!(pending(&ALL, 1, "db").unwrap()[0].version, 2);
        assert!(pending(&ALL, 2, "db").unwrap().is_empty());
        let err = pending(&ALL, 3, "the state database x.db").unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("x.db has schema version 3") && text.contains("newer release"),
            "{text}"
        );
    }
}
