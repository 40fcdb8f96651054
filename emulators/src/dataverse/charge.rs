//! Emulated execution time: what each operation of a request would have cost the real
//! service, charged to the service protection limits' execution-time budget ([`super::limits`])
//! on top of the (microsecond) time the emulator really spends.
//!
//! Why: Dataverse allows 20 minutes of combined execution time per user per 300 s. On the
//! emulator a request takes microseconds, so that limit could never bind and a `$batch` bulk
//! load (one request for the request limit, a thousand operations) looked free. With a charge
//! per operation the execution-time limit binds a bulk load as it does in production.
//!
//! The defaults are orders of magnitude, not measurements of any one environment (Microsoft
//! publishes no per-operation figure): a write to a standard table is a SQL transaction plus
//! the platform's pipeline (validation, auditing, plug-in stages), tens of milliseconds; a
//! read by primary key a few milliseconds; a query a page plus a little per row. They are
//! chosen so that both documented limits matter, each for its kind of client: one record per
//! request stays under the execution-time limit and meets the request limit first (6,000
//! requests × 50 ms = 300 s of the 1,200 s), while `$batch` requests of many writes meet the
//! execution-time limit first (1,200 s ÷ 50 ms = 24,000 writes per 300 s).

use std::time::Duration;

/// The emulated execution time of each kind of operation. [`ExecutionCharge::zero`] turns the
/// charge off (only the emulator's real time counts, as before).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionCharge {
    /// One row created (a POST, an upsert that creates, each create in a `$batch`).
    pub create: Duration,
    /// One row updated (a PATCH, an upsert that updates, a Win/Lose action's writes).
    pub update: Duration,
    /// One row deleted.
    pub delete: Duration,
    /// One row retrieved by key.
    pub retrieve: Duration,
    /// One page of a collection query (a list or a change-tracking delta).
    pub query_page: Duration,
    /// Each row a query page returns.
    pub query_row: Duration,
}

impl Default for ExecutionCharge {
    fn default() -> Self {
        Self {
            create: Duration::from_millis(50),
            update: Duration::from_millis(50),
            delete: Duration::from_millis(40),
            retrieve: Duration::from_millis(5),
            query_page: Duration::from_millis(10),
            query_row: Duration::from_micros(500),
        }
    }
}

impl ExecutionCharge {
    /// No charge: the execution-time limit counts the emulator's real time alone.
    pub fn zero() -> Self {
        Self {
            create: Duration::ZERO,
            update: Duration::ZERO,
            delete: Duration::ZERO,
            retrieve: Duration::ZERO,
            query_page: Duration::ZERO,
            query_row: Duration::ZERO,
        }
    }

    /// The charge of `ops`.
    pub fn of(&self, ops: &Operations) -> Duration {
        let times = |d: Duration, n: u64| d.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
        times(self.create, ops.creates)
            + times(self.update, ops.updates)
            + times(self.delete, ops.deletes)
            + times(self.retrieve, ops.retrieves)
            + times(self.query_page, ops.query_pages)
            + times(self.query_row, ops.query_rows)
    }
}

/// Operations a request performed, counted by the store and the handlers. Counted when
/// performed, not when committed: a change set that fails and is rolled back still cost the
/// service its work.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Operations {
    pub creates: u64,
    pub updates: u64,
    pub deletes: u64,
    pub retrieves: u64,
    pub query_pages: u64,
    pub query_rows: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_charge_adds_up_each_operation_and_zero_charges_nothing() {
        let ops = Operations {
            creates: 2,
            updates: 1,
            deletes: 1,
            retrieves: 3,
            query_pages: 1,
            query_rows: 10,
        };
        let charge = ExecutionCharge::default();
        assert_eq!(
            charge.of(&ops),
            Duration::from_millis(2 * 50 + 50 + 40 + 3 * 5 + 10 + 5)
        );
        assert_eq!(ExecutionCharge::zero().of(&ops), Duration::ZERO);
    }
}
