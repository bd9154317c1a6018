//! hashicorp yamux v0.1.1 session state (spec dmsg-wire.md §3.4–3.6): stream ids, windows,
//! FIN/RST states, the accept backlog, ping, keep-alive and idle timers, and the bounded queue
//! of frames to write. Bytes are decoded and encoded by [`crate::yamux`].
//!
//! # Rules (all remote input is bounded)
//! * Stream open = WindowUpdate+SYN; accept = WindowUpdate+ACK, both carrying the window we
//!   grant beyond yamux's initial 256 KiB ([`SessionConfig::recv_window`]). The peer's initial
//!   window is 256 KiB ([`yamux::DEFAULT_WINDOW`]); its updates are increments.
//! * Incoming stream ids must have the peer's parity (client odd, server even) and increase;
//!   anything else, a data frame beyond the window, stream 0 data, or a ping on a stream closes
//!   the session ([`ProtocolError`]).
//! * A SYN beyond `max_streams` open streams, or with a full accept backlog, is answered with
//!   RST and creates nothing.
//! * Each stream's receive buffer is bounded by the window we granted; the reader's
//!   consumption is returned as a window update once half the window has been read (not after
//!   the peer's FIN).
//! * Windows share a session budget ([`DEFAULT_SESSION_WINDOW`], see
//!   [`YamuxSession::set_session_window`]): a stream's window is the budget divided by the open
//!   streams, between [`MIN_STREAM_WINDOW`] and [`SessionConfig::recv_window`]. One stream gets
//!   the whole `recv_window`; with many, each gets its share, so the data a session may hold
//!   unread stays near the budget instead of growing with the stream count (the yamux initial
//!   256 KiB per stream is the protocol's and cannot be taken back). Window updates bring a
//!   stream back to its share (hashicorp's rule: `share - (buffered + window)`, sent once it
//!   reaches half the share), so only the amounts we send change, never the wire format.
//! * Frames for unknown or finished streams are dropped, as hashicorp does after a close.
//! * A stream is *open* (counted) until it is reset or both sides sent FIN; its buffer lives
//!   until its handle calls [`StreamMux::forget`].
//! * Queued frames count until [`StreamMux::on_transmitted`]; beyond
//!   [`SessionConfig::write_hard_limit`] the session closes ([`CloseReason::NotReading`]).
//! * GoAway from the peer closes the session ([`CloseReason::Remote`]); we never send one
//!   (hashicorp v0.1.1 `Session.Close` just closes TCP).
//! * Keep-alive: a ping every [`SessionConfig::keepalive`]; at such a tick, a session that has
//!   received nothing for [`SessionConfig::idle_timeout`] closes ([`CloseReason::Idle`]).
//!   Keep-alive ping ids count up from 0 (as hashicorp's `pingID`).
//!
//! Based on hashicorp/yamux v0.1.1 session.go and stream.go.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{
    CloseReason, Credit, Event, OpenError, PingError, ProtocolError, Recv, Side, StreamError,
    StreamId, StreamMux, Transmit,
};
use crate::yamux::{self, Flags, FrameType, HEADER_LEN, Header};

/// Data a session's streams may hold unread, all together, unless one stream's
/// [`SessionConfig::recv_window`] is larger: 16 windows of 1 MiB, so up to 16 busy streams keep
/// their full window and beyond that each gets an equal share of it.
pub const DEFAULT_SESSION_WINDOW: u32 = 16 * 1024 * 1024;
/// Smallest window a stream's share of the session budget goes down to (half of it is one
/// window update, 16 KiB: about one DMSG record per update).
pub const MIN_STREAM_WINDOW: u32 = 32 * 1024;

/// Limits and timers of one session. The node's values live in `dmsg::defaults` (with their
/// reasons); [`Default`] gives the same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Most open streams (a peer SYN beyond is answered with RST). Default 1024.
    pub max_streams: usize,
    /// Most streams the peer opened that are not yet accepted (beyond: RST). Default 256
    /// (hashicorp AcceptBacklog).
    pub accept_backlog: usize,
    /// Window we grant per stream, which also bounds its receive buffer and any data frame.
    /// At least 256 KiB (yamux's initial window); the excess is sent with SYN/ACK. Default 1 MiB.
    pub recv_window: u32,
    /// Largest data frame we send. Default 64 KiB.
    pub max_frame_data: usize,
    /// Queued bytes at which local writers wait ([`Credit::QueueFull`]). Default 4 MiB.
    pub write_high_water: usize,
    /// Queued bytes beyond which the session closes. Default 16 MiB.
    pub write_hard_limit: usize,
    /// Keep-alive ping interval. Default 30 s (hashicorp).
    pub keepalive: Duration,
    /// Silence after which the session closes (checked at keep-alive ticks). Default 75 s.
    pub idle_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_streams: 1024,
            accept_backlog: yamux::DEFAULT_ACCEPT_BACKLOG,
            recv_window: 1024 * 1024,
            max_frame_data: 64 * 1024,
            write_high_water: 4 * 1024 * 1024,
            write_hard_limit: 16 * 1024 * 1024,
            keepalive: Duration::from_secs(yamux::DEFAULT_KEEPALIVE_SECS),
            idle_timeout: Duration::from_secs(75),
        }
    }
}

/// One stream's state.
#[derive(Debug)]
struct Stream {
    /// Received chunks not yet read (at most the window we granted).
    recv: VecDeque<Bytes>,
    /// Bytes the peer may still send before our next window update.
    recv_window: u32,
    /// Bytes in `recv`.
    buffered: u32,
    /// Bytes we may still send.
    send_window: u32,
    remote_fin: bool,
    local_fin: bool,
    reset: bool,
    /// Counted against `max_streams` (not yet reset or closed both ways).
    open: bool,
}

/// A yamux session (see the module doc for the rules, [`StreamMux`] for the call order).
#[derive(Debug)]
pub struct YamuxSession {
    side: Side,
    cfg: SessionConfig,
    streams: HashMap<StreamId, Stream>,
    /// Streams counted as open.
    open: usize,
    backlog: VecDeque<StreamId>,
    next_id: StreamId,
    last_remote_id: StreamId,
    /// The header whose body is due.
    pending: Option<Header>,
    events: VecDeque<Event>,
    transmit: VecDeque<Transmit>,
    /// Bytes queued or handed out and not yet reported written.
    queued: usize,
    reason: CloseReason,
    last_rx: Instant,
    next_keepalive: Instant,
    next_ping_id: u32,
    bytes_in: u64,
    bytes_out: u64,
    /// Window budget shared by the streams ([`DEFAULT_SESSION_WINDOW`]).
    session_window: u32,
}

impl YamuxSession {
    /// A session started at `now`.
    pub fn new(side: Side, cfg: SessionConfig, now: Instant) -> YamuxSession {
        YamuxSession {
            side,
            cfg,
            streams: HashMap::new(),
            open: 0,
            backlog: VecDeque::new(),
            next_id: if side == Side::Client { 1 } else { 2 },
            last_remote_id: 0,
            pending: None,
            events: VecDeque::new(),
            transmit: VecDeque::new(),
            queued: 0,
            reason: CloseReason::Open,
            last_rx: now,
            next_keepalive: now + cfg.keepalive,
            next_ping_id: 0,
            bytes_in: 0,
            bytes_out: 0,
            session_window: DEFAULT_SESSION_WINDOW,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Bytes queued for the socket (including those handed out and not yet written).
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Sets the window budget the streams share (see the module doc); `u32::MAX` gives every
    /// stream the whole [`SessionConfig::recv_window`]. Applies to window updates and streams
    /// opened from now on.
    pub fn set_session_window(&mut self, bytes: u32) {
        self.session_window = bytes;
    }

    /// The window a stream gets now: its share of the session budget, within
    /// [`MIN_STREAM_WINDOW`] and [`SessionConfig::recv_window`].
    fn stream_share(&self) -> u32 {
        let max = self.cfg.recv_window;
        let share = self.session_window / (self.open.max(1).min(u32::MAX as usize) as u32);
        share.max(MIN_STREAM_WINDOW).min(max)
    }

    /// Window we grant beyond yamux's initial one, sent with SYN and ACK.
    fn extra_window(&self) -> u32 {
        self.stream_share().saturating_sub(yamux::DEFAULT_WINDOW)
    }

    /// A new stream whose peer may send `yamux::DEFAULT_WINDOW + extra`.
    fn new_stream(&self, extra: u32) -> Stream {
        Stream {
            recv: VecDeque::new(),
            recv_window: yamux::DEFAULT_WINDOW.saturating_add(extra),
            buffered: 0,
            send_window: yamux::DEFAULT_WINDOW,
            remote_fin: false,
            local_fin: false,
            reset: false,
            open: true,
        }
    }

    /// Queues a frame; every frame counts against the hard limit.
    fn queue(&mut self, header: Header, body: Bytes) {
        let n = HEADER_LEN + body.len();
        self.queued += n;
        if self.queued > self.cfg.write_hard_limit {
            self.close(CloseReason::NotReading);
            return;
        }
        self.transmit
            .push_back(Transmit::new(&header.encode(), body));
    }

    fn control(&mut self, ty: FrameType, flags: Flags, id: StreamId, len: u32) {
        self.queue(Header::new(ty, flags, id, len), Bytes::new());
    }

    /// Stops counting `id` as open once it is reset or closed both ways.
    fn settle(&mut self, id: StreamId) {
        if let Some(s) = self.streams.get_mut(&id)
            && s.open
            && (s.reset || (s.remote_fin && s.local_fin))
        {
            s.open = false;
            self.open -= 1;
        }
    }

    fn protocol_error(&mut self, e: ProtocolError) -> ProtocolError {
        self.close(CloseReason::Protocol);
        e
    }

    /// A data or window-update frame (spec §3.5); `body` is empty for window updates.
    fn stream_frame(&mut self, h: Header, body: Bytes) -> Result<(), ProtocolError> {
        let id = h.stream_id;
        if id == 0 {
            return Err(ProtocolError::StreamZero);
        }
        if h.flags.contains(Flags::SYN) {
            let remote_odd = self.side == Side::Server;
            if (id % 2 == 1) != remote_odd {
                return Err(ProtocolError::WrongParity { id });
            }
            if id <= self.last_remote_id {
                return Err(ProtocolError::IdReused {
                    id,
                    last: self.last_remote_id,
                });
            }
            self.last_remote_id = id;
            if self.open >= self.cfg.max_streams || self.backlog.len() >= self.cfg.accept_backlog {
                self.control(FrameType::WindowUpdate, Flags::RST, id, 0);
                return Ok(());
            }
            self.open += 1;
            let extra = self.extra_window();
            let s = self.new_stream(extra);
            self.streams.insert(id, s);
            self.backlog.push_back(id);
            self.control(FrameType::WindowUpdate, Flags::ACK, id, extra);
            self.events.push_back(Event::Incoming(id));
        }
        let Some(s) = self.streams.get_mut(&id).filter(|s| s.open) else {
            return Ok(()); // a stream we closed: discard
        };
        if h.ty == FrameType::WindowUpdate {
            s.send_window = s.send_window.saturating_add(h.length);
            self.events.push_back(Event::Writable(id));
        } else if !body.is_empty() {
            let n = body.len() as u32;
            if n > s.recv_window {
                return Err(ProtocolError::WindowExceeded {
                    id,
                    len: n,
                    window: s.recv_window,
                });
            }
            s.recv_window -= n;
            s.buffered += n;
            s.recv.push_back(body);
            self.bytes_in += u64::from(n);
            self.events.push_back(Event::Readable(id));
        }
        if h.flags.contains(Flags::FIN) {
            s.remote_fin = true;
            self.events.push_back(Event::Finished(id));
        }
        if h.flags.contains(Flags::RST) {
            s.reset = true;
            self.events.push_back(Event::Reset(id));
        }
        self.settle(id);
        Ok(())
    }

    /// A frame after its header (and body, for data) arrived.
    fn frame(&mut self, h: Header, body: Bytes) -> Result<(), ProtocolError> {
        match h.ty {
            FrameType::Data | FrameType::WindowUpdate => self.stream_frame(h, body),
            FrameType::Ping => {
                if h.stream_id != 0 {
                    return Err(ProtocolError::PingOnStream(h.stream_id));
                }
                if h.flags.contains(Flags::SYN) {
                    self.control(FrameType::Ping, Flags::ACK, 0, h.length);
                    self.events.push_back(Event::Ping(h.length));
                } else if h.flags.contains(Flags::ACK) {
                    self.events.push_back(Event::Pong(h.length));
                }
                Ok(())
            }
            FrameType::GoAway => {
                self.events.push_back(Event::GoAway(h.length));
                self.close(CloseReason::Remote);
                Ok(())
            }
        }
    }
}

impl StreamMux for YamuxSession {
    fn header_len(&self) -> usize {
        HEADER_LEN
    }

    fn handle_header(&mut self, header: &[u8], now: Instant) -> Result<usize, ProtocolError> {
        if let Some(p) = self.pending {
            return Err(self.protocol_error(ProtocolError::Sequence {
                expected: p.length as usize,
                got: 0,
            }));
        }
        if self.is_closed() {
            return Ok(0);
        }
        self.last_rx = now;
        let hb: &[u8; HEADER_LEN] = match header.try_into() {
            Ok(hb) => hb,
            Err(_) => {
                return Err(self.protocol_error(ProtocolError::Sequence {
                    expected: HEADER_LEN,
                    got: header.len(),
                }));
            }
        };
        let h = match Header::decode(hb) {
            Ok(h) => h,
            Err(e) => return Err(self.protocol_error(e.into())),
        };
        if h.ty == FrameType::Data && h.length > 0 {
            if h.length > self.cfg.recv_window {
                return Err(self.protocol_error(ProtocolError::DataTooLong {
                    len: h.length,
                    max: self.cfg.recv_window,
                }));
            }
            self.pending = Some(h);
            return Ok(h.length as usize);
        }
        self.frame(h, Bytes::new())
            .map_err(|e| self.protocol_error(e))?;
        Ok(0)
    }

    fn handle_body(&mut self, body: Bytes) -> Result<(), ProtocolError> {
        let Some(h) = self.pending.take() else {
            return Err(self.protocol_error(ProtocolError::Sequence {
                expected: 0,
                got: body.len(),
            }));
        };
        if body.len() != h.length as usize {
            return Err(self.protocol_error(ProtocolError::Sequence {
                expected: h.length as usize,
                got: body.len(),
            }));
        }
        if self.is_closed() {
            return Ok(());
        }
        self.frame(h, body).map_err(|e| self.protocol_error(e))
    }

    fn expected_body(&self) -> usize {
        self.pending.map_or(0, |h| h.length as usize)
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() || now < self.next_keepalive {
            return;
        }
        self.next_keepalive += self.cfg.keepalive;
        if now.saturating_duration_since(self.last_rx) > self.cfg.idle_timeout {
            self.close(CloseReason::Idle);
            return;
        }
        let id = self.next_ping_id;
        self.next_ping_id = id.wrapping_add(1);
        self.control(FrameType::Ping, Flags::SYN, 0, id);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (!self.is_closed()).then_some(self.next_keepalive)
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.pop_front()
    }

    fn transmit_pending(&self) -> usize {
        self.transmit.len()
    }

    fn on_transmitted(&mut self, bytes: usize) {
        self.queued = self.queued.saturating_sub(bytes);
    }

    fn write_blocked(&self) -> bool {
        self.queued >= self.cfg.write_high_water
    }

    fn open(&mut self) -> Result<StreamId, OpenError> {
        if self.is_closed() {
            return Err(OpenError::SessionClosed);
        }
        let id = self.next_id;
        if id > u32::MAX - 2 {
            return Err(OpenError::IdsExhausted);
        }
        // The id is used even when the limit refuses the stream (ids only need to increase).
        self.next_id = id + 2;
        if self.open >= self.cfg.max_streams {
            return Err(OpenError::TooManyStreams {
                max: self.cfg.max_streams,
            });
        }
        self.open += 1;
        let extra = self.extra_window();
        let s = self.new_stream(extra);
        self.streams.insert(id, s);
        self.control(FrameType::WindowUpdate, Flags::SYN, id, extra);
        Ok(id)
    }

    fn accept(&mut self) -> Option<StreamId> {
        self.backlog.pop_front()
    }

    fn send_credit(&self, id: StreamId) -> Result<Credit, StreamError> {
        let s = self.streams.get(&id).ok_or(StreamError::Unknown(id))?;
        if s.local_fin {
            return Err(StreamError::Finished(id));
        }
        if self.is_closed() {
            return Err(StreamError::SessionClosed);
        }
        if self.write_blocked() {
            return Ok(Credit::QueueFull);
        }
        if s.reset {
            return Err(StreamError::Reset(id));
        }
        Ok(Credit::Window(s.send_window))
    }

    fn send(&mut self, id: StreamId, data: &mut Bytes) -> Result<usize, StreamError> {
        let closed = self.is_closed();
        let max = self.cfg.max_frame_data;
        let s = self.streams.get_mut(&id).ok_or(StreamError::Unknown(id))?;
        if s.local_fin {
            return Err(StreamError::Finished(id));
        }
        if closed {
            return Err(StreamError::SessionClosed);
        }
        if s.reset {
            return Err(StreamError::Reset(id));
        }
        if s.send_window == 0 {
            return Ok(0);
        }
        let n = data.len().min(s.send_window as usize).min(max);
        s.send_window -= n as u32;
        let body = data.split_to(n);
        self.bytes_out += n as u64;
        self.queue(
            Header::new(FrameType::Data, Flags::NONE, id, n as u32),
            body,
        );
        Ok(n)
    }

    fn recv(&mut self, id: StreamId) -> Result<Recv, StreamError> {
        let share = self.stream_share();
        let s = self.streams.get_mut(&id).ok_or(StreamError::Unknown(id))?;
        if let Some(b) = s.recv.pop_front() {
            s.buffered -= b.len() as u32;
            // hashicorp's rule, with this stream's share of the session budget as its maximum.
            let delta = share.saturating_sub(s.buffered.saturating_add(s.recv_window));
            if delta >= share / 2 && !s.remote_fin {
                s.recv_window += delta;
                self.control(FrameType::WindowUpdate, Flags::NONE, id, delta);
            }
            return Ok(Recv::Data(b));
        }
        if s.reset {
            return Err(StreamError::Reset(id));
        }
        if s.remote_fin {
            return Ok(Recv::Finished);
        }
        Ok(Recv::Blocked)
    }

    fn close_write(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.local_fin {
            return;
        }
        s.local_fin = true;
        self.control(FrameType::WindowUpdate, Flags::FIN, id, 0);
        self.settle(id);
    }

    fn reset(&mut self, id: StreamId) {
        let Some(s) = self.streams.get(&id) else {
            return;
        };
        if !s.local_fin {
            self.control(FrameType::WindowUpdate, Flags::RST, id, 0);
        }
        self.forget(id);
    }

    fn forget(&mut self, id: StreamId) {
        if let Some(s) = self.streams.remove(&id)
            && s.open
        {
            self.open -= 1;
        }
    }

    fn ping(&mut self, opaque: u32) -> Result<(), PingError> {
        self.control(FrameType::Ping, Flags::SYN, 0, opaque);
        Ok(())
    }

    fn heartbeat(&mut self) {
        let id = self.next_ping_id;
        self.next_ping_id = id.wrapping_add(1);
        self.control(FrameType::Ping, Flags::SYN, 0, id);
    }

    fn close(&mut self, reason: CloseReason) {
        if self.is_closed() || reason == CloseReason::Open {
            return;
        }
        self.reason = reason;
        for s in self.streams.values_mut() {
            s.reset = true;
            s.open = false;
        }
        self.open = 0;
        self.events.push_back(Event::Closed(reason));
    }

    fn close_reason(&self) -> CloseReason {
        self.reason
    }

    fn num_streams(&self) -> usize {
        self.open
    }

    fn bytes(&self) -> (u64, u64) {
        (self.bytes_in, self.bytes_out)
    }
}
