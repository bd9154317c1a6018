//! Pure DMSG protocol layer, byte-compatible with the deployed Go network (skycoin/dmsg at
//! commit 9c8b80bd, July 2023). No sockets, no async runtime, no clocks: every function takes
//! bytes (and `now` where time matters) and returns bytes, values or typed errors.
//!
//! # Modules
//! * [`noise`]: Noise XK (sessions) and KK (streams) handshakes over secp256k1 with the
//!   reference's 33-byte DH and split rule.
//! * [`record`]: `u16` length framing, transport records (`len ‖ nonce ‖ ct ‖ tag`), the
//!   1024-entry replay window and the strict stream mode.
//! * [`gob`]: the subset of Go `encoding/gob` the stream objects use; reads type definitions
//!   from the stream, never assumes type ids.
//! * [`stream`]: signed `StreamRequest`/`StreamResponse` objects and their validation.
//! * [`code`]: DMSG wire error codes.
//! * [`disc`]: discovery entries: canonical JSON, signing, validation, the pure POST/DELETE
//!   checks.
//! * [`yamux`]: hashicorp yamux v0.1.1 frame codec.
//! * [`mux`]: multiplexer sessions as pure state machines: the [`mux::StreamMux`] trait and
//!   the yamux session ([`mux::YamuxSession`]: stream ids, windows, FIN/RST, accept backlog,
//!   ping, keep-alive and idle timers, the bounded write queue).
//! * [`error`]: error enums.
//!
//! # Flow of a DMSG session (spec §3–§4)
//! 1. Client → server TCP; XK handshake, each message a [`record::write_frame`] frame
//!    ([`noise::HandshakeState`], client = initiator). Keys: [`noise::TransportKeys`].
//! 2. Plain yamux frames ([`yamux`]) on the same TCP connection, interpreted by
//!    [`mux::YamuxSession`]; the client opens odd streams.
//! 3. On a new stream the dialer sends a [`stream::StreamRequest`] signed object, sealed as one
//!    record with the session keys ([`record::Sealer`]); the server checks it
//!    ([`stream::verify_request`]) and forwards it; the destination answers with a
//!    [`stream::StreamResponse`] ([`stream::verify_response`]).
//! 4. The objects carry KK messages 1 and 2; afterwards stream payload is KK transport records.
//! 5. Clients and servers publish [`disc::Entry`] records in the discovery.
//!
//! See `docs/protocols/dmsg.md` for byte layouts and the deliberate deviations (stricter
//! checks) from the reference.

#![deny(missing_docs)]

pub mod backoff;
pub mod code;
pub mod disc;
pub mod error;
pub mod gob;
pub mod mailbox;
pub mod mux;
pub mod noise;
pub mod record;
pub mod stream;
pub mod yamux;

pub use code::ErrorCode;
