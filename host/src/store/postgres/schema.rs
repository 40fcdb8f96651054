//! The PostgreSQL schema: its numbered migrations, and the upgrade of a database at open.
//!
//! The applied versions are rows of `cosell_schema_migrations`. The upgrade runs in one
//! transaction (PostgreSQL's DDL is transactional) holding an advisory lock, so replicas
//! starting together apply each migration once, and a failed one leaves nothing behind.

use crate::store::migrations::{self, Migration, migration};
use anyhow::{Context as _, Result};
use deadpool_postgres::Object;

/// Every migration, in order. Append only: a released file is never edited.
pub(super) const MIGRATIONS: &[Migration] = &[migration!(1, "0001_initial.sql")];

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

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;
    use crate::config::{SecretRef, StateConfig};
    use crate::store::migrations::latest;
    use crate::store::testing::postgres::TestSchema;
    use crate::store::testing::{Backend, TestStore};

    fn versions(store: &TestStore) -> Vec<String> {
        store.texts("SELECT version::text FROM cosell_schema_migrations ORDER BY version")
    }

    #[test]
    fn migrations_are_recorded_once_and_replicas_opening_together_agree() {
        let store = TestStore::new(Backend::Postgres);
        let all: Vec<String> = (1..=latest(MIGRATIONS)).map(|v| v.to_string()).collect();
        assert_eq!(versions(&store), all);
        // Replicas starting at once: each opens, nothing is applied twice.
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| drop(store.reopen()));
            }
        });
        assert_eq!(versions(&store), all);
    }

    /// The test cluster runs with `synchronous_commit = off`: the store's sessions turn it
    /// on, so an acknowledged write is on the server's disk whatever the server's default.
    #[test]
    fn the_stores_commits_wait_for_the_servers_disk_and_statements_are_bounded() {
        let store = TestStore::new(Backend::Postgres);
        assert_eq!(store.texts("SHOW synchronous_commit"), ["on"]);
        assert_eq!(store.texts("SHOW statement_timeout"), ["30s"]);
    }

    #[test]
    fn a_database_of_a_newer_release_is_refused() {
        let store = TestStore::new(Backend::Postgres);
        let newer = latest(MIGRATIONS) + 1;
        store.execute(
            "",
            &format!(
                "INSERT INTO cosell_schema_migrations (version, name) VALUES ({newer}, 'future.sql')"
            ),
        );
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.reopen()))
            .err()
            .expect("refused");
        let text = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            text.contains(&format!("schema version {newer}")) && text.contains("newer release"),
            "{text}"
        );
    }

    #[test]
    fn the_password_is_read_from_its_secret_and_the_store_opens_through_the_seam() {
        // The test cluster trusts every local connection, so a wrong password still connects;
        // what is checked is that the secret is read (a missing one is an error naming it).
        let schema = TestSchema::new();
        let state = StateConfig {
            url: Some(schema.url.clone()),
            password: Some(SecretRef {
                env: Some("NO_SUCH_PASSWORD_VARIABLE_FOR_A_TEST".into()),
                file: None,
            }),
            ..Default::default()
        };
        let err = crate::store::open(&state).err().expect("refused");
        assert!(format!("{err:#}").contains("state.password"), "{err:#}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "not-checked-by-trust").unwrap();
        let state = StateConfig {
            password: Some(SecretRef {
                env: None,
                file: Some(file),
            }),
            ..state
        };
        let store = crate::store::open(&state).unwrap();
        assert!(store.location.contains("PostgreSQL"), "{}", store.location);
        store.sync.set_cursor("c", "1").unwrap();
        assert_eq!(store.sync.cursor("c").unwrap().as_deref(), Some("1"));
    }
}
