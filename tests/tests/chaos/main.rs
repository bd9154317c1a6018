//! Reliability under load and faults (issue 21), with real `skymesh` processes on 127.0.0.1.
//! One module per scenario; each has a short version that runs in `cargo test --workspace` and,
//! where the issue asks for more, a long `#[ignore]`d version. `docs/reliability.md` lists the
//! scenarios, what must hold, the commands and the last results.
//!
//! Every loop here is bounded in count and in time (the deadlines are constants per module).
#![allow(clippy::unwrap_used)]

mod churn;
mod clock_skew;
mod common;
mod crash_sync;
mod disk_full;
mod redis_faults;
mod slowloris;
mod storm;
