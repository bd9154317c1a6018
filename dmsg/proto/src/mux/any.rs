//! One session of either multiplexer, chosen when the session starts: [`MuxSession`] is what
//! the driver runs, [`Protocol`] is how the choice is named (CLI flag, discovery entry).
//!
//! The choice is out of band (spec dmsg-wire.md §3 item 7): a client that speaks smux says
//! `"protocol":"smux"` in its discovery entry, and the server looks that entry up right after
//! the Noise handshake. Anything else (absent, empty, `"yamux"`, unknown) means yamux.
//! Server↔server links are always yamux.

use std::time::Instant;

use bytes::Bytes;

use super::{
    CloseReason, Credit, Event, OpenError, PingError, ProtocolError, Recv, Side, SmuxConfig,
    SmuxSession, StreamError, StreamId, StreamMux, Transmit, YamuxSession,
};
use crate::mux::SessionConfig;

/// Which multiplexer a session runs (in config files: `"yamux"` or `"smux"`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// hashicorp yamux v0.1.1 (every DMSG version; the default).
    #[default]
    Yamux,
    /// xtaci smux v2 (skywire 2026 clients whose entry says `"protocol":"smux"`).
    Smux,
}

impl Protocol {
    /// The lowercase name (`yamux`, `smux`), as the CLI takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Yamux => "yamux",
            Protocol::Smux => "smux",
        }
    }

    /// Parses a CLI name (`yamux`, `smux`, any case); `None` for anything else.
    pub fn parse(s: &str) -> Option<Protocol> {
        if s.eq_ignore_ascii_case("yamux") {
            Some(Protocol::Yamux)
        } else if s.eq_ignore_ascii_case("smux") {
            Some(Protocol::Smux)
        } else {
            None
        }
    }

    /// The protocol a server runs for a client whose discovery entry has this `protocol`
    /// member: smux iff it is exactly `smux` (as the reference's `entryProtocol`).
    pub fn from_entry(member: &str) -> Protocol {
        if member == "smux" {
            Protocol::Smux
        } else {
            Protocol::Yamux
        }
    }

    /// The `protocol` member a client publishes: `smux`, or empty (omitted) for yamux, so a
    /// yamux client's entry stays byte-identical to the 2023 form.
    pub fn entry_member(self) -> &'static str {
        match self {
            Protocol::Yamux => "",
            Protocol::Smux => "smux",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A yamux or an smux session behind one type (each call goes to the one inside).
#[derive(Debug)]
pub enum MuxSession {
    /// A yamux session.
    Yamux(YamuxSession),
    /// An smux session.
    Smux(SmuxSession),
}

impl MuxSession {
    /// A session of `protocol` started at `now`, with each protocol's own limits.
    pub fn new(
        protocol: Protocol,
        side: Side,
        yamux: SessionConfig,
        smux: SmuxConfig,
        now: Instant,
    ) -> MuxSession {
        match protocol {
            Protocol::Yamux => MuxSession::Yamux(YamuxSession::new(side, yamux, now)),
            Protocol::Smux => MuxSession::Smux(SmuxSession::new(side, smux, now)),
        }
    }

    /// Which protocol this session runs.
    pub fn protocol(&self) -> Protocol {
        match self {
            MuxSession::Yamux(_) => Protocol::Yamux,
            MuxSession::Smux(_) => Protocol::Smux,
        }
    }
}

/// Forwards a [`StreamMux`] method to the session inside.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            MuxSession::Yamux($s) => $e,
            MuxSession::Smux($s) => $e,
        }
    };
}

impl StreamMux for MuxSession {
    fn header_len(&self) -> usize {
        each!(self, s => s.header_len())
    }
    fn handle_header(&mut self, header: &[u8], now: Instant) -> Result<usize, ProtocolError> {
        each!(self, s => s.handle_header(header, now))
    }
    fn handle_body(&mut self, body: Bytes) -> Result<(), ProtocolError> {
        each!(self, s => s.handle_body(body))
    }
    fn expected_body(&self) -> usize {
        each!(self, s => s.expected_body())
    }
    fn read_paused(&self) -> bool {
        each!(self, s => s.read_paused())
    }
    fn handle_timeout(&mut self, now: Instant) {
        each!(self, s => s.handle_timeout(now))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        each!(self, s => s.poll_timeout())
    }
    fn poll_event(&mut self) -> Option<Event> {
        each!(self, s => s.poll_event())
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        each!(self, s => s.poll_transmit())
    }
    fn transmit_pending(&self) -> usize {
        each!(self, s => s.transmit_pending())
    }
    fn on_transmitted(&mut self, bytes: usize) {
        each!(self, s => s.on_transmitted(bytes))
    }
    fn write_blocked(&self) -> bool {
        each!(self, s => s.write_blocked())
    }
    fn open(&mut self) -> Result<StreamId, OpenError> {
        each!(self, s => s.open())
    }
    fn accept(&mut self) -> Option<StreamId> {
        each!(self, s => s.accept())
    }
    fn send_credit(&self, id: StreamId) -> Result<Credit, StreamError> {
        each!(self, s => s.send_credit(id))
    }
    fn send(&mut self, id: StreamId, data: &mut Bytes) -> Result<usize, StreamError> {
        each!(self, s => s.send(id, data))
    }
    fn recv(&mut self, id: StreamId) -> Result<Recv, StreamError> {
        each!(self, s => s.recv(id))
    }
    fn close_write(&mut self, id: StreamId) {
        each!(self, s => s.close_write(id))
    }
    fn reset(&mut self, id: StreamId) {
        each!(self, s => s.reset(id))
    }
    fn forget(&mut self, id: StreamId) {
        each!(self, s => s.forget(id))
    }
    fn ping(&mut self, opaque: u32) -> Result<(), PingError> {
        each!(self, s => s.ping(opaque))
    }
    fn heartbeat(&mut self) {
        each!(self, s => s.heartbeat())
    }
    fn close(&mut self, reason: CloseReason) {
        each!(self, s => s.close(reason))
    }
    fn close_reason(&self) -> CloseReason {
        each!(self, s => s.close_reason())
    }
    fn num_streams(&self) -> usize {
        each!(self, s => s.num_streams())
    }
    fn bytes(&self) -> (u64, u64) {
        each!(self, s => s.bytes())
    }
}
