//! Stream multiplexer sessions as pure state machines: frames in, events and frames out. No
//! sockets, no tasks, no clock reads: time goes in as `now`.
//!
//! * [`StreamMux`]: the interface a session driver (`dmsg::mux`) talks to. Two multiplexers
//!   implement it: hashicorp yamux v0.1.1 ([`YamuxSession`]) and xtaci smux v2
//!   ([`SmuxSession`], skywire 2026); [`MuxSession`] is either, chosen per session
//!   ([`Protocol`]).
//! * [`session`]: [`YamuxSession`] — stream ids, windows, FIN/RST states, the accept backlog,
//!   ping, keep-alive and idle timers, and the bounded queue of frames to write.
//! * [`smux`]: [`SmuxSession`] — ids, absolute windows (UPD), FIN, the session receive buffer,
//!   NOP keep-alive and the silence timeout.
//! * [`smux_frame`]: the smux v2 frame codec (8-byte little-endian header).
//! * [`any`]: [`MuxSession`] and [`Protocol`].
//! * [`error`]: why a peer's frame was refused, and why a local call failed.
//!
//! The yamux frame codec stays in [`crate::yamux`]; [`session`] decides what its frames mean.
//!
//! Based on the sans-io shape of quinn-proto (`Connection::handle_event`, `poll_transmit`,
//! `poll_timeout`, `handle_timeout`, `poll`).

pub mod any;
pub mod error;
pub mod session;
pub mod smux;
pub mod smux_frame;

#[cfg(test)]
mod smux_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod window_tests;

use std::time::Instant;

pub use any::{MuxSession, Protocol};
/// The buffer type of stream data (re-exported so drivers and fuzz targets need no `bytes`).
pub use bytes::Bytes;
pub use error::{OpenError, PingError, ProtocolError, SmuxFrameError, StreamError};
pub use session::{SessionConfig, YamuxSession};
pub use smux::{SmuxConfig, SmuxSession};

/// A stream id as the wire carries it.
pub type StreamId = u32;

/// Longest frame header of any supported protocol (yamux: 12 bytes, smux: 8). An smux UPD
/// frame is 16 bytes: its 8-byte body travels as the [`Transmit`] body.
pub const MAX_HEADER_LEN: usize = 12;

/// Which side of the session this is. It decides which stream ids each side opens (yamux:
/// the client odd, the server even).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The dialing side (the DMSG client).
    Client,
    /// The accepting side (the DMSG server).
    Server,
}

/// Why a session ended (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Still open.
    Open,
    /// Closed locally.
    Local,
    /// The peer closed the TCP connection or sent GoAway.
    Remote,
    /// Socket error (reported by the driver).
    Io,
    /// The peer violated the protocol (bad frame, window overrun, bad stream id).
    Protocol,
    /// Nothing received for too long.
    Idle,
    /// The peer did not read while we had to answer it (the write queue passed its hard limit).
    NotReading,
}

/// Something the driver should react to (wake a task, answer a waiter), taken with
/// [`StreamMux::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The peer opened a stream; it waits in the accept backlog for [`StreamMux::accept`].
    Incoming(StreamId),
    /// Data arrived on a stream: [`StreamMux::recv`] has more.
    Readable(StreamId),
    /// The peer half-closed a stream (FIN): after the buffered data, [`StreamMux::recv`] ends.
    Finished(StreamId),
    /// The peer reset a stream (RST): reads after the buffered data and all writes fail.
    Reset(StreamId),
    /// The send window of a stream grew: [`StreamMux::send_credit`] may allow more.
    Writable(StreamId),
    /// The peer pinged us; the answer is already queued.
    Ping(u32),
    /// The peer answered one of our pings with this opaque id.
    Pong(u32),
    /// The peer sent GoAway with this reason code (a [`Event::Closed`] follows).
    GoAway(u32),
    /// The session closed; every stream is reset. Emitted once.
    Closed(CloseReason),
}

/// One frame to write: header bytes and a body that leaves from its own buffer (never copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    head: [u8; MAX_HEADER_LEN],
    head_len: u8,
    /// The frame body (empty for control frames).
    pub body: Bytes,
}

impl Transmit {
    /// A frame from its encoded header (at most [`MAX_HEADER_LEN`] bytes) and body.
    pub fn new(header: &[u8], body: Bytes) -> Transmit {
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = header.len().min(MAX_HEADER_LEN);
        head[..n].copy_from_slice(&header[..n]);
        Transmit {
            head,
            head_len: n as u8,
            body,
        }
    }

    /// The encoded header.
    pub fn header(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }

    /// Header plus body bytes.
    pub fn len(&self) -> usize {
        usize::from(self.head_len) + self.body.len()
    }

    /// Whether the frame is empty (never true for a real frame).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`StreamMux::recv`] found on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recv {
    /// The next chunk, in order.
    Data(Bytes),
    /// The peer sent FIN and every byte before it has been read.
    Finished,
    /// Nothing yet: wait for [`Event::Readable`], [`Event::Finished`] or [`Event::Reset`].
    Blocked,
}

/// How much a stream may send now ([`StreamMux::send_credit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credit {
    /// The peer's window for this stream, in bytes (0: wait for [`Event::Writable`]).
    Window(u32),
    /// The session's write queue is at its high-water mark: wait until the driver has written
    /// some of it ([`StreamMux::write_blocked`] turns false after [`StreamMux::on_transmitted`]).
    QueueFull,
}

/// A multiplexed session as a pure state machine.
///
/// # Call-order contract
/// The driver owns the socket and the clock and calls, in any interleaving but from one place
/// at a time (`&mut self`):
/// 1. **Input.** While [`read_paused`](Self::read_paused) is true, read nothing (it turns
///    false after a [`recv`](Self::recv) or [`forget`](Self::forget)). For each frame: once a
///    whole header of [`header_len`](Self::header_len) bytes has arrived,
///    [`handle_header`](Self::handle_header). If it returns `n > 0`, the next input
///    call must be [`handle_body`](Self::handle_body) with exactly `n` bytes
///    ([`expected_body`](Self::expected_body) says so too). An `Err` is a protocol violation: the
///    session is closed ([`CloseReason::Protocol`]) and the driver stops reading.
/// 2. **Events.** After *every* call (input, timer or local), drain
///    [`poll_event`](Self::poll_event) until `None` and wake what waits on each event.
/// 3. **Output.** Drain [`poll_transmit`](Self::poll_transmit) onto the socket in order; after
///    the bytes are written report them with [`on_transmitted`](Self::on_transmitted) (they
///    count against the high-water mark and the hard limit until then). Frames may be queued
///    by any call, including after the session closed (a local FIN or RST): the driver writes
///    what is queued when it sees the close, then shuts the socket.
/// 4. **Time.** Sleep until [`poll_timeout`](Self::poll_timeout) and then call
///    [`handle_timeout`](Self::handle_timeout) with the current time. `None` means no timer
///    (the session is closed).
/// 5. **Streams.** A handle for an id from [`open`](Self::open) or [`accept`](Self::accept)
///    reads with [`recv`](Self::recv), writes with [`send_credit`](Self::send_credit) then
///    [`send`](Self::send), half-closes with [`close_write`](Self::close_write), and must call
///    [`forget`](Self::forget) (or [`reset`](Self::reset)) when it is dropped: until then the
///    stream's buffer is kept even after the stream is done.
/// 6. **Close.** [`close`](Self::close) ends the session (idempotent, the first reason wins);
///    the driver also reports socket end and errors through it ([`CloseReason::Remote`],
///    [`CloseReason::Io`]).
pub trait StreamMux {
    /// Bytes of a frame header on the wire (yamux 12, smux 8).
    fn header_len(&self) -> usize;

    /// A complete frame header arrived at `now`. Returns how many body bytes follow (to be
    /// given to [`handle_body`](Self::handle_body)); control frames are handled at once.
    fn handle_header(&mut self, header: &[u8], now: Instant) -> Result<usize, ProtocolError>;

    /// The body announced by the last [`handle_header`](Self::handle_header).
    fn handle_body(&mut self, body: Bytes) -> Result<(), ProtocolError>;

    /// Body bytes the session waits for (0: the next input is a header).
    fn expected_body(&self) -> usize;

    /// The session holds as much unread data as it may: the driver reads nothing more from
    /// the socket until this turns false (smux's session receive buffer; yamux bounds each
    /// stream by its window instead and never pauses).
    fn read_paused(&self) -> bool {
        false
    }

    /// Runs the timers (keep-alive ping, idle close) at `now`.
    fn handle_timeout(&mut self, now: Instant);

    /// When [`handle_timeout`](Self::handle_timeout) should run next; `None` once closed.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next event, oldest first.
    fn poll_event(&mut self) -> Option<Event>;

    /// The next frame to write, oldest first.
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// Frames waiting in [`poll_transmit`](Self::poll_transmit).
    fn transmit_pending(&self) -> usize;

    /// `bytes` taken from [`poll_transmit`](Self::poll_transmit) were written to the socket.
    fn on_transmitted(&mut self, bytes: usize);

    /// Whether queued-but-unwritten bytes are at the high-water mark (local writers wait).
    fn write_blocked(&self) -> bool;

    /// Opens a stream (its open frame is queued; data may follow at once).
    fn open(&mut self) -> Result<StreamId, OpenError>;

    /// Takes the oldest stream the peer opened, if any.
    fn accept(&mut self) -> Option<StreamId>;

    /// How much `id` may send now (checked in this order: local FIN, session closed, write
    /// queue, stream reset, window).
    fn send_credit(&self, id: StreamId) -> Result<Credit, StreamError>;

    /// Queues one data frame with as much of `data` as the peer's window and the frame size
    /// allow, removing it from `data`; returns the bytes taken (0 when the window is 0).
    /// Ignores the high-water mark: check [`send_credit`](Self::send_credit) first.
    fn send(&mut self, id: StreamId, data: &mut Bytes) -> Result<usize, StreamError>;

    /// Takes the next received chunk of `id`, granting the peer more window as it is consumed.
    fn recv(&mut self, id: StreamId) -> Result<Recv, StreamError>;

    /// Half-closes `id` (no more data from us). Idempotent.
    fn close_write(&mut self, id: StreamId);

    /// Resets `id` and forgets it (its handle is gone).
    fn reset(&mut self, id: StreamId);

    /// The handle of `id` is gone: forget the stream and its buffer.
    fn forget(&mut self, id: StreamId);

    /// Pings the peer with an opaque id; the answer comes as [`Event::Pong`]. smux has no
    /// ping frame ([`PingError::Unsupported`]): its driver pings with a `00 00` stream.
    fn ping(&mut self, opaque: u32) -> Result<(), PingError>;

    /// Queues a frame the peer does not answer, so it sees traffic now (smux NOP; yamux a
    /// keep-alive ping).
    fn heartbeat(&mut self);

    /// Closes the session (idempotent: the first reason is kept).
    fn close(&mut self, reason: CloseReason);

    /// Why the session closed ([`CloseReason::Open`] while open).
    fn close_reason(&self) -> CloseReason;

    /// Whether the session is closed.
    fn is_closed(&self) -> bool {
        self.close_reason() != CloseReason::Open
    }

    /// Open streams (those counted against the stream limit).
    fn num_streams(&self) -> usize;

    /// Payload bytes received and sent on this session's streams.
    fn bytes(&self) -> (u64, u64);

    /// Feeds raw bytes (any split): handles every complete header and body at the front of
    /// `buf` and returns how many bytes were used; the rest must be given again with more.
    /// Copies bodies, so drivers that read bodies into their own buffers call
    /// [`handle_header`](Self::handle_header)/[`handle_body`](Self::handle_body) instead.
    fn handle_bytes(&mut self, buf: &[u8], now: Instant) -> Result<usize, ProtocolError> {
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            let want = self.expected_body();
            if want == 0 && self.read_paused() {
                return Ok(used);
            }
            if want > 0 {
                let Some(body) = rest.get(..want) else {
                    return Ok(used);
                };
                self.handle_body(Bytes::copy_from_slice(body))?;
                used += want;
            } else {
                let n = self.header_len();
                let Some(head) = rest.get(..n) else {
                    return Ok(used);
                };
                self.handle_header(head, now)?;
                used += n;
            }
            if self.is_closed() {
                return Ok(used);
            }
        }
    }
}
