//! The store-level tests, each run on SQLite and on PostgreSQL (see [`super::testing`]).

mod deployments;
mod intents;
mod queue;
mod queue_list;
mod records;
