//! `[state]`: where the host keeps its durable state. Either a SQLite file (`path`, the default,
//! for one host) or a PostgreSQL database (`url`, which several hosts can share); never both.

use super::SecretRef;
use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The SQLite file used when neither `path` nor `url` is set (relative to the configuration
/// file's directory).
pub const DEFAULT_STATE_PATH: &str = "cosell-state/cosell.db";

/// `[state]`: the durable store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// The SQLite database file. Unset (and no `url`): [`DEFAULT_STATE_PATH`].
    pub path: Option<PathBuf>,
    /// A PostgreSQL connection URL, `postgres://user@host:port/database?sslmode=require`:
    /// the state is kept there instead of in a SQLite file.
    pub url: Option<String>,
    /// The PostgreSQL password, from an environment variable or a file, so that it need not
    /// be written in the URL (and so in the configuration file).
    pub password: Option<SecretRef>,
    /// A PEM file of the certificate authorities that sign the PostgreSQL server's certificate,
    /// trusted instead of the public roots (a private CA, or the server's own certificate).
    pub ca_file: Option<PathBuf>,
    /// The PostgreSQL connection pool.
    pub pool: PoolConfig,
}

/// `[state.pool]`: the PostgreSQL connection pool of one host.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// At most this many connections at once (every replica has its own pool: the server's
    /// `max_connections` must cover the sum).
    pub max_connections: usize,
    /// How long to wait for a connection (to be made or freed) before a store call fails.
    pub connect_timeout_secs: u64,
    /// A statement running longer is cancelled by the server (`statement_timeout`).
    pub statement_timeout_secs: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout_secs: 10,
            statement_timeout_secs: 30,
        }
    }
}

impl PoolConfig {
    /// How long a store call waits for a connection, `connect_timeout_secs` (at least one
    /// second).
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.max(1))
    }

    /// The server-side `statement_timeout`, `statement_timeout_secs` (at least one second).
    pub fn statement_timeout(&self) -> Duration {
        Duration::from_secs(self.statement_timeout_secs.max(1))
    }
}

/// Which store `[state]` selects.
#[derive(Debug, Clone, Copy)]
pub enum StateBackend<'a> {
    /// An embedded SQLite file.
    Sqlite(&'a Path),
    /// A PostgreSQL database: the URL (maybe without its password).
    Postgres(&'a str),
}

impl StateConfig {
    /// The store selected, or why the section is wrong.
    pub fn backend(&self) -> Result<StateBackend<'_>> {
        match (&self.path, &self.url) {
            (Some(_), Some(_)) => bail!(
                "[state] sets both path (a SQLite file) and url (a PostgreSQL database); keep \
                 the one this host should use: path for one host on its own file, url for \
                 hosts sharing a PostgreSQL database"
            ),
            (None, Some(url)) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    bail!(
                        "state.url must be a PostgreSQL URL, postgres://user@host:port/database \
                         (it is `{}`)",
                        redacted(url)
                    );
                }
                url.parse::<tokio_postgres::Config>().with_context(|| {
                    format!(
                        "state.url `{}` is not a valid PostgreSQL URL; write it as \
                         postgres://user@host:port/database",
                        redacted(url)
                    )
                })?;
                if self.pool.max_connections == 0 {
                    bail!("state.pool.max_connections must be at least 1");
                }
                Ok(StateBackend::Postgres(url))
            }
            (Some(path), None) => Ok(StateBackend::Sqlite(path)),
            (None, None) => Ok(StateBackend::Sqlite(Path::new(DEFAULT_STATE_PATH))),
        }
    }

    /// The SQLite file, when the state is kept in one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self.backend() {
            Ok(StateBackend::Sqlite(path)) => Some(path),
            _ => None,
        }
    }

    /// Where the state is, for messages: the file, or the database without its password.
    pub fn describe(&self) -> String {
        match self.backend() {
            Ok(StateBackend::Sqlite(path)) => format!("the state database {}", path.display()),
            Ok(StateBackend::Postgres(url)) => {
                format!("the PostgreSQL state database {}", redacted(url))
            }
            Err(_) => "the state database ([state] is invalid)".to_owned(),
        }
    }

    /// Makes a relative `path` (or the default one) relative to `base`, the configuration
    /// file's directory; likewise the password file.
    pub(super) fn resolve(&mut self, base: &Path) {
        if self.path.is_none() && self.url.is_none() {
            self.path = Some(PathBuf::from(DEFAULT_STATE_PATH));
        }
        if let Some(path) = self.path.as_mut()
            && path.is_relative()
        {
            *path = base.join(&*path);
        }
        if let Some(password) = self.password.as_mut() {
            password.resolve(base);
        }
        if let Some(file) = self.ca_file.as_mut()
            && file.is_relative()
        {
            *file = base.join(&*file);
        }
    }
}

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        // Not a URL: say nothing of it beyond its scheme.
        Err(_) => format!(
            "{}…",
            url.split("://")
                .next()
                .unwrap_or("")
                .chars()
                .take(16)
                .collect::<String>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(text: &str) -> StateConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn path_selects_sqlite_url_selects_postgres_and_both_are_refused() {
        assert!(matches!(
            state("").backend().unwrap(),
            StateBackend::Sqlite(p) if p == Path::new(DEFAULT_STATE_PATH)
        ));
        assert!(matches!(
            state("path = \"x.db\"").backend().unwrap(),
            StateBackend::Sqlite(p) if p == Path::new("x.db")
        ));
        assert!(matches!(
            state("url = \"postgres://cosell@db:5432/cosell\"")
                .backend()
                .unwrap(),
            StateBackend::Postgres(_)
        ));
        let both = state("path = \"x.db\"\nurl = \"postgres://db/cosell\"");
        let err = format!("{:#}", both.backend().unwrap_err());
        assert!(err.contains("both path") && err.contains("url"), "{err}");
        let err = format!(
            "{:#}",
            state("url = \"mysql://u:hunter2@db/c\"")
                .backend()
                .unwrap_err()
        );
        assert!(
            err.contains("PostgreSQL URL") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn a_url_is_described_without_its_password() {
        let described = state("url = \"postgres://cosell:hunter2@db:5432/cosell\"").describe();
        assert!(
            described.contains("db:5432/cosell") && !described.contains("hunter2"),
            "{described}"
        );
    }
}
