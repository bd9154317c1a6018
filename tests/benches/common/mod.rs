//! Helpers shared by the benches of this crate.

pub mod floors;
