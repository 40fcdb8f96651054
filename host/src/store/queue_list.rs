//! The queue as an operator lists it (`cosell queue`, `GET /admin/v1/queue/events`): the
//! events waiting and running, one row each, with what a stuck queue is diagnosed from (how
//! often it was tried, when it runs next or who runs it, why its last attempt failed).

use super::Side;
use serde::Serialize;

/// Which queued events to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueFilter {
    /// Waiting for their turn or for a retry.
    Pending,
    /// Claimed by a worker.
    Running,
    /// Both: the running ones first.
    All,
}

impl QueueFilter {
    /// The names accepted by the admin API and the command line.
    pub const NAMES: &'static str = "pending, running or all";

    /// Parses `pending`, `running` or `all`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "running" => Some(Self::Running),
            "all" => Some(Self::All),
            _ => None,
        }
    }

    /// The states a store selects for this filter, as an SQL list (`state IN (…)`).
    pub(crate) fn sql_states(self) -> &'static str {
        match self {
            Self::Pending => "'pending'",
            Self::Running => "'running'",
            Self::All => "'running', 'pending'",
        }
    }
}

/// The rows' order, shared by the backends: running events first (the oldest attempt first),
/// then waiting ones in the order a worker would take them.
pub(crate) const ORDER: &str =
    "ORDER BY CASE state WHEN 'running' THEN 0 ELSE 1 END, available_at, id";

/// A waiting or running event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueEntry {
    /// Its queue id.
    pub id: i64,
    /// `pending` or `running`.
    pub state: String,
    /// The side where the change happened.
    pub side: Side,
    /// The referral id or opportunity id that changed.
    pub record_id: String,
    /// Where it came from (see [`NewEvent::origin`](super::NewEvent::origin)).
    pub origin: String,
    /// Attempts made so far (a running event's current one included).
    pub attempts: u32,
    /// Pending: when it may run (a retry's backoff); running: when its attempt started.
    pub available_at: String,
    /// Running: when its lease runs out and another worker may take it back.
    pub lease_until: Option<String>,
    /// Running on a shared (PostgreSQL) store: the replica id of the host that claimed it.
    /// `None` on SQLite (there is one host) and for a claimer that named no replica.
    pub claimed_by: Option<String>,
    /// Why its last attempt failed, if one did.
    pub last_error: Option<String>,
    /// When it was received (RFC 3339).
    pub received_at: String,
}
