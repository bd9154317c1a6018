//! DMSG network layer, wire-compatible with the deployed Go network (skycoin/dmsg): sessions over
//! TCP (Noise XK + plain yamux), the relay server, the client, the discovery HTTP API (client and
//! server) and HTTP over DMSG streams. The wire bytes come from [`dmsg_proto`]; this crate adds
//! sockets, tasks, timeouts and limits.
//!
//! # Components
//! * [`transport`]: a DMSG session's TCP socket (connect/accept → XK → [`mux::Session`]), used
//!   by the client and by the server's mesh links.
//! * [`mux`]: the tokio driver (socket tasks, wakers) around the pure
//!   `dmsg_proto::mux::YamuxSession`.
//! * [`stream`]: stream objects on a session and the end-to-end [`DmsgStream`].
//! * [`server`]: [`Server`] — sessions, discovery registration, relaying, splicing.
//! * [`client`]: [`Client`] — sessions, client entry, [`Client::dial`], [`Client::listen`].
//! * [`discovery`]: the [`Discovery`] trait (HTTP discovery or the DHT).
//! * [`disc_client`] / [`disc_server`]: the discovery API.
//! * [`http`]: DMSG-HTTP client and directory server (hyper 1).
//! * [`mailbox`]: store-and-forward for offline visors (envelopes, the servers' durable
//!   queue, the protocol on a server's own key).
//! * [`metrics`]: `skymesh_dmsg_*` Prometheus metrics.
//! * [`defaults`]: every limit and timeout, with its reason.
//!
//! # Where sockets are opened
//! * [`transport`]: `TcpStream::connect` for every DMSG session (client, mesh links).
//! * [`server`]: the relay's `TcpListener` (sessions are accepted there, then handed to
//!   [`transport`]).
//! * [`disc_server`]: the discovery API's `TcpListener` and, with a Redis backend, its Redis
//!   connection.
//! * [`disc_client`]: HTTP requests to a discovery (reqwest).
//!
//! Outside this crate, DMSG code opens sockets in `dmsg/overlay/src/rank.rs` (TCP connect
//! probes measuring a server's RTT) and `dmsg/tp/src/catalog.rs` (the transport discovery's
//! HTTP fallback).
#![deny(missing_docs)]

pub use dmsg_proto::backoff;
pub mod client;
pub mod defaults;
pub mod disc_client;
pub mod disc_server;
pub mod discovery;
pub mod error;
pub mod http;
pub mod lan;
pub mod mailbox;
pub mod metrics;
pub mod mux;
pub mod proxy;
pub mod server;
pub mod stream;
pub mod transport;

pub use client::{Client, ClientConfig, Listener};
pub use disc_client::DiscClient;
pub use discovery::{DiscFuture, Discovery};
pub use server::{Server, ServerConfig};
pub use stream::DmsgStream;

use std::sync::{Mutex, MutexGuard};

/// A task handle that aborts the task when dropped.
#[derive(Debug)]
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Locks a mutex, ignoring poisoning (no code here panics while holding a lock).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Unix time in nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The next wait of a reconnect loop (client sessions, server registration) on `b`, a
/// [`backoff::Backoff`] from [`defaults::DEFAULT_BACKOFF_MIN`] to
/// [`defaults::DEFAULT_BACKOFF_MAX`]: its step without jitter (`next_delay(0.5)` scales by
/// exactly 1) times a random factor in [0.5, 1.5). The jitter is applied after the cap, so a
/// wait at the cap lies between 5 and 15 s, as these loops always waited.
pub(crate) fn reconnect_delay(b: &mut backoff::Backoff) -> std::time::Duration {
    b.next_delay(0.5).mul_f64(0.5 + rand::random::<f64>())
}

/// Locks a mutex (for tests that drive the session keys by hand).
#[doc(hidden)]
pub fn lock_for_tests<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    lock(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::{DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN};

    #[test]
    fn reconnect_delays_are_the_doubling_step_jittered_by_half() {
        let mut b = backoff::Backoff::new(DEFAULT_BACKOFF_MIN, DEFAULT_BACKOFF_MAX);
        let first = reconnect_delay(&mut b);
        assert!(first >= DEFAULT_BACKOFF_MIN / 2 && first < DEFAULT_BACKOFF_MIN * 3 / 2);
        let second = reconnect_delay(&mut b);
        assert!(second >= DEFAULT_BACKOFF_MIN && second < DEFAULT_BACKOFF_MIN * 3);
        // 200 ms · 2^6 > 10 s: from the seventh wait on, the step is the cap.
        for _ in 2..6 {
            reconnect_delay(&mut b);
        }
        for _ in 0..20 {
            let d = reconnect_delay(&mut b);
            assert!(d >= DEFAULT_BACKOFF_MAX / 2 && d < DEFAULT_BACKOFF_MAX * 3 / 2);
        }
        b.reset();
        assert!(reconnect_delay(&mut b) < DEFAULT_BACKOFF_MIN * 3 / 2);
    }
}
