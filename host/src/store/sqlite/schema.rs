//! The SQLite schema: its numbered migrations, and the upgrade of a database at open.
//!
//! The version is SQLite's `PRAGMA user_version` (in the file's header, written inside the
//! migration's transaction, so it moves with the schema or not at all). The upgrade runs in a
//! transaction that takes the write lock first (`BEGIN IMMEDIATE`), then reads the version:
//! two processes opening one file at once apply each migration once.
//!
//! A database made before versions were recorded (`user_version` 0 with tables in it) has the
//! schema of some earlier release; it is brought to version 1 by `0001_initial.sql` (every
//! statement `IF NOT EXISTS`, so it creates only what that release lacked), and the columns
//! the later migrations add are looked for: what is there already counts as applied.

use crate::store::migrations::{self, Migration, migration};
use anyhow::{Context as _, Result};
use rusqlite::{Connection, TransactionBehavior};

/// Every migration, in order. Append only: a released file is never edited.
pub(crate) const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_initial.sql"),
    migration!(2, "0002_event_leases.sql"),
    migration!(3, "0003_parked_events.sql"),
    migration!(4, "0004_shadows_and_last_runs.sql"),
    migration!(5, "0005_write_intents.sql"),
];

/// Brings the database on `conn` to the newest schema (see the module docs). `database`
/// names it in errors.
pub(crate) fn upgrade(conn: &mut Connection, database: &str) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .with_context(|| format!("locking {database} to upgrade its schema"))?;
    let recorded: u32 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let mut current = recorded;
    if current == 0 && has_table(&tx, "sync_events")? {
        current = adopt_unversioned(&tx)
            .with_context(|| format!("adopting the unversioned schema of {database}"))?;
    }
    let pending = migrations::pending(MIGRATIONS, current, database)?;
    for migration in pending {
        tx.execute_batch(migration.sql).with_context(|| {
            format!(
                "upgrading {database} to schema version {} ({}); nothing was changed",
                migration.version, migration.name
            )
        })?;
    }
    if recorded != migrations::latest(MIGRATIONS) {
        tx.pragma_update(None, "user_version", migrations::latest(MIGRATIONS))?;
    }
    tx.commit()
        .with_context(|| format!("committing the schema upgrade of {database}"))
}

/// The schema version a database made before versions were recorded is at, once the first
/// migration has filled in the tables its release lacked.
fn adopt_unversioned(tx: &rusqlite::Transaction<'_>) -> Result<u32> {
    tx.execute_batch(MIGRATIONS[0].sql)?;
    let mut version = 1;
    if has_column(tx, "sync_events", "lease_until")? {
        version = 2;
        if has_column(tx, "sync_events", "parked_step")?
            && has_column(tx, "sync_events", "parked_version")?
        {
            version = 3;
        }
    }
    Ok(version)
}

fn has_table(conn: &Connection, table: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |row| row.get(0),
    )?)
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |row| row.get(0),
    )?)
}

/// The schema version of the database on `conn`.
#[cfg(test)]
pub(crate) fn version(conn: &Connection) -> u32 {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap()
}

#[cfg(test)]
mod tests;
