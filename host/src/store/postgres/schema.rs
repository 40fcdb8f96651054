//! The PostgreSQL schema: its numbered migrations, and the upgrade of a database at open.
//!
//! The applied versions are rows of `cosell_schema_migrations`. The upgrade runs in one
//! transaction (PostgreSQL's DDL is transactional) holding an advisory lock, so replicas
//! starting together apply each migration once, and a failed one leaves nothing behind.

use crate::store::migrations::{self, Migration, migration};
use anyhow::{Context as _, Result};
use deadpool_postgres::Object;

/// Every migration, in order. Append only: a released file is never edited.
pub(super) const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_initial.sql"),
    migration!(2, "0002_claimed_by.sql"),
    migration!(3, "0003_shadows_and_last_runs.sql"),
    migration!(4, "0004_write_intents.sql"),
];

/// The advisory lock an upgrade holds.
const MIGRATION_LOCK: i64 = 0x636f_7365_6c6c_0001;

/// Brings the database to the newest schema (see the module docs).
pub(super) async fn upgrade(client: &mut Object) -> Result<()> {
    let database = "the PostgreSQL state database";
    let tx = client
        .transaction()
        .await
        .context("starting the schema upgrade")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("waiting for another replica's schema upgrade")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS cosell_schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .context("creating the schema version table")?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM cosell_schema_migrations",
            &[],
        )
        .await?
        .get(0);
    let current = u32::try_from(current).unwrap_or(0);
    for migration in migrations::pending(MIGRATIONS, current, database)? {
        tx.batch_execute(migration.sql).await.with_context(|| {
            format!(
                "upgrading {database} to schema version {} ({}); nothing was changed",
                migration.version, migration.name
            )
        })?;
        tx.execute(
            "INSERT INTO cosell_schema_migrations (version, name) VALUES ($1, $2)",
            &[&(migration.version as i32), &migration.name],
        )
        .await?;
    }
    tx.commit()
        .await
        .context("committing the schema upgrade of the PostgreSQL state database")
}
