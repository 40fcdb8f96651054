//! Named values the host keeps between runs: the pollers' positions and the credentials it
//! rotated.

use anyhow::Result;

/// Poller cursors and rotated credentials.
pub trait CursorStore: Send + Sync {
    /// The value kept under `name` (a poller's position, e.g. Dataverse's delta link), if any.
    fn cursor(&self, name: &str) -> Result<Option<String>>;
    /// Keeps `value` under `name`, replacing the one kept before.
    fn set_cursor(&self, name: &str, value: &str) -> Result<()>;
    /// A credential the host rotated (e.g. Partner Center's single-use refresh token).
    fn credential(&self, name: &str) -> Result<Option<String>>;
    /// Keeps `value` as credential `name`, replacing the one kept before.
    fn set_credential(&self, name: &str, value: &str) -> Result<()>;
}
