//! `cosell-bench`: the load driver for the end-to-end figures, and the table of all results.
fn main() {}
