//! The vocabulary every room of the host shares, depending on nothing of the engine: which
//! [`Side`] a change happened on and which [`Direction`] a record travels, and the
//! [`fingerprint`]s that tell a record's content apart from cosell's own marks on it.
//!
//! The store keeps events by side, the runtime runs steps by direction, the sources stamp
//! fingerprints and the engine compares them: each of them names these from here, so none
//! needs another to say what a record is.

pub mod fingerprint;
pub mod ids;
mod side;

pub use side::{Direction, Side};
