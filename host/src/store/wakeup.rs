//! How the queue's workers learn that an event was enqueued: whoever enqueues (the webhook
//! intake, the pollers, the admin API's replays) notifies a [`Wakeup`], and a sleeping worker
//! looks at the queue at once instead of at its next poll.

use std::sync::Arc;
use tokio::sync::Notify;

/// Wakes the workers when an event is enqueued.
pub type Wakeup = Arc<Notify>;
