//! `cosell`: keeps Microsoft Partner Center co-sell referrals and Dataverse opportunities in
//! sync, with every field mapping running as a sandboxed WebAssembly component.
//!
//! A record's path through the crate (see ARCHITECTURE.md for the full map):
//! [`sources`] (webhooks, pollers) → queue ([`store`]) → [`sync`] engine running the
//! [`pipeline`] of mapping steps, each run by the [`runtime`] → [`sinks`] (Partner Center,
//! Dataverse), through the [`connections`] (the two clients).
//! Around it: [`deploy`] (validating and hot-swapping step versions), [`store`] (durable
//! state), [`admin`] (the operator's HTTP API), [`health`] (what `/readyz` answers),
//! [`metrics`], [`replicas`] (leadership and deployments across
//! replicas of one PostgreSQL state), [`config`] and [`cli`].

// The public surface is what the binary, the tests and the benchmarks use: an item `pub` in a
// private module must say so (`pub(crate)`), and every public item is documented.
#![warn(missing_docs, unreachable_pub)]
// Module docs are a map for readers of the source as much as of the API: they link the private
// submodules that do the work, which resolve with `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod connections;
pub mod deploy;
pub mod domain;
pub mod health;
pub mod listener;
pub mod metrics;
#[cfg(test)]
mod observability_tests;
pub mod pipeline;
mod private_dir;
pub mod replicas;
pub mod retention;
pub mod runtime;
// Built with the `sandbox` feature only (on by default): it carries both emulators.
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod scaffold;
pub mod schema_types;
pub mod secret;
pub mod server;
pub mod setup;
pub mod sinks;
pub mod sources;
pub mod store;
pub mod sync;
