//! xtaci/smux v1.5.57 session state, protocol version 2 (spec `smux.md` §3–7): stream ids,
//! absolute windows (UPD), FIN half-close, the session receive buffer, NOP keep-alive and the
//! silence timeout, and the bounded queue of frames to write. Bytes are decoded and encoded by
//! [`super::smux_frame`].
//!
//! # Rules (all remote input is bounded)
//! * Ids: the client opens 3, 5, …, the server 2, 4, … (counters 1 and 0, plus 2 *before* use);
//!   when adding 2 would wrap, [`StreamMux::open`] fails locally ([`OpenError::IdsExhausted`]).
//! * Incoming SYN: parity and order are not checked (Go accepts any id); a SYN for an id we
//!   hold is ignored. Beyond [`SmuxConfig::max_streams`] open streams or a full accept backlog,
//!   the SYN is refused with FIN and creates nothing (as the DMSG server does past 2048).
//! * PSH, FIN and UPD for unknown or forgotten ids are read and dropped; PSH of length 0 is
//!   skipped. Nothing is ever sent back for them.
//! * Flow control: the peer may have 256 KiB in flight before its first UPD
//!   ([`smux_frame::INITIAL_PEER_WINDOW`]); every UPD *overwrites* (consumed, window). We send
//!   UPD(consumed = bytes the application read, window = [`SmuxConfig::max_stream_buffer`])
//!   after the first read that returns data and whenever half that window has been read since.
//! * As in Go, the per-stream window is not enforced on receipt; memory is bounded by the
//!   session receive buffer instead: every received PSH byte of a known stream is taken from
//!   [`SmuxConfig::max_receive_buffer`] and given back when read or forgotten. While it is used
//!   up, [`StreamMux::read_paused`] tells the driver to stop reading the socket (it can
//!   overshoot by one frame, ≤ 65535 bytes).
//! * FIN = no more data from that side; the other side may still write. There is no RST:
//!   [`StreamMux::reset`] sends FIN (unless sent) and forgets the stream, like Go's `Close()`.
//! * Keep-alive: NOP every [`SmuxConfig::keepalive_interval`] even while data flows. Every
//!   [`SmuxConfig::keepalive_timeout`], a session that received no header since the previous
//!   check (and is not paused by a full buffer) closes ([`CloseReason::Idle`]): 1–2 × timeout.
//! * A bad version, command or fixed length closes the session ([`CloseReason::Protocol`]),
//!   as the DMSG client does on any accept error. Sessions close without a frame.
//! * Queued frames count until [`StreamMux::on_transmitted`]; beyond
//!   [`SmuxConfig::write_hard_limit`] the session closes ([`CloseReason::NotReading`]).
//!
//! Based on xtaci/smux v1.5.57 session.go and stream.go, with skywire's `SmuxConfig`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::smux_frame::{self, Cmd, HEADER_LEN, Header, Upd};
use super::{
    CloseReason, Credit, Event, OpenError, PingError, ProtocolError, Recv, Side, StreamError,
    StreamId, StreamMux, Transmit,
};

/// Limits and timers of one smux session. [`Default`] gives skywire 2026's `SmuxConfig()`
/// values where the wire depends on them, and our own local bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmuxConfig {
    /// Most open streams (a peer SYN beyond is refused with FIN). Default 1024.
    pub max_streams: usize,
    /// Most streams the peer opened that are not yet accepted (beyond: FIN). Default 1024
    /// (smux `defaultAcceptBacklog`, where Go blocks the whole session instead).
    pub accept_backlog: usize,
    /// Largest PSH payload we send (1..=65535). Default 32768 (DMSG `MaxFrameSize`).
    pub max_frame_size: usize,
    /// Session receive buffer: unread bytes of all streams together before we stop reading
    /// the socket. Default 1 MiB (DMSG `MaxReceiveBuffer`).
    pub max_receive_buffer: usize,
    /// The window we advertise in UPD; one UPD per half of it read. Default 65536 (DMSG
    /// `MaxStreamBuffer`).
    pub max_stream_buffer: u32,
    /// Queued bytes at which local writers wait ([`Credit::QueueFull`]). Default 4 MiB.
    pub write_high_water: usize,
    /// Queued bytes beyond which the session closes. Default 16 MiB.
    pub write_hard_limit: usize,
    /// NOP interval. Default 10 s (DMSG `KeepAliveInterval`).
    pub keepalive_interval: Duration,
    /// Silence check period: a session with nothing received between two checks closes.
    /// Default 30 s (DMSG `KeepAliveTimeout`).
    pub keepalive_timeout: Duration,
}

impl Default for SmuxConfig {
    fn default() -> Self {
        SmuxConfig {
            max_streams: 1024,
            accept_backlog: 1024,
            max_frame_size: 32 * 1024,
            max_receive_buffer: 1024 * 1024,
            max_stream_buffer: 64 * 1024,
            write_high_water: 4 * 1024 * 1024,
            write_hard_limit: 16 * 1024 * 1024,
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(30),
        }
    }
}

/// One stream's state (counters wrap as u32, as in Go).
#[derive(Debug, Default)]
struct Stream {
    /// Received chunks not yet read.
    recv: VecDeque<Bytes>,
    /// Bytes in `recv` (given back to the session buffer when forgotten).
    buffered: usize,
    /// Bytes the application has read (the `consumed` of our UPDs).
    num_read: u32,
    /// Bytes read since our last UPD.
    incr: u32,
    /// Bytes we have sent.
    num_written: u32,
    /// The peer's last UPD.
    peer_consumed: u32,
    peer_window: u32,
    remote_fin: bool,
    local_fin: bool,
    reset: bool,
    /// Counted against `max_streams` (not yet closed both ways or reset).
    open: bool,
}

/// An smux v2 session (see the module doc for the rules, [`StreamMux`] for the call order).
#[derive(Debug)]
pub struct SmuxSession {
    cfg: SmuxConfig,
    streams: HashMap<StreamId, Stream>,
    /// Streams counted as open.
    open: usize,
    backlog: VecDeque<StreamId>,
    /// The id counter: the next stream opened is `next_id + 2`.
    pub(super) next_id: StreamId,
    /// The header whose body is due.
    pending: Option<Header>,
    events: VecDeque<Event>,
    transmit: VecDeque<Transmit>,
    /// Bytes queued or handed out and not yet reported written.
    queued: usize,
    reason: CloseReason,
    /// Session receive buffer left (may go below zero by one frame).
    bucket: i64,
    /// A header arrived since the last silence check.
    rx_since_check: bool,
    next_nop: Instant,
    next_check: Instant,
    bytes_in: u64,
    bytes_out: u64,
}

impl SmuxSession {
    /// A session started at `now`.
    pub fn new(side: Side, cfg: SmuxConfig, now: Instant) -> SmuxSession {
        SmuxSession {
            cfg,
            streams: HashMap::new(),
            open: 0,
            backlog: VecDeque::new(),
            next_id: if side == Side::Client { 1 } else { 0 },
            pending: None,
            events: VecDeque::new(),
            transmit: VecDeque::new(),
            queued: 0,
            reason: CloseReason::Open,
            bucket: cfg.max_receive_buffer as i64,
            rx_since_check: false,
            next_nop: now + cfg.keepalive_interval,
            next_check: now + cfg.keepalive_timeout,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SmuxConfig {
        &self.cfg
    }

    /// Bytes queued for the socket (including those handed out and not yet written).
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Session receive buffer left, in bytes (negative: overshot by the last frame).
    pub fn receive_buffer_left(&self) -> i64 {
        self.bucket
    }

    fn new_stream() -> Stream {
        Stream {
            peer_window: smux_frame::INITIAL_PEER_WINDOW,
            open: true,
            ..Stream::default()
        }
    }

    /// Queues a frame; every frame counts against the hard limit.
    fn queue(&mut self, cmd: Cmd, sid: StreamId, body: Bytes) {
        let n = HEADER_LEN + body.len();
        self.queued += n;
        if self.queued > self.cfg.write_hard_limit {
            self.close(CloseReason::NotReading);
            return;
        }
        // Bodies are at most 65535 bytes: PSH is cut to `max_frame_size`, UPD is 8.
        let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
        let h = Header::new(cmd, len, sid);
        self.transmit.push_back(Transmit::new(&h.encode(), body));
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

    fn syn(&mut self, id: StreamId) {
        if self.streams.contains_key(&id) {
            return; // a SYN for an id we hold is ignored
        }
        if self.open >= self.cfg.max_streams || self.backlog.len() >= self.cfg.accept_backlog {
            self.queue(Cmd::Fin, id, Bytes::new());
            return;
        }
        self.streams.insert(id, Self::new_stream());
        self.open += 1;
        self.backlog.push_back(id);
        self.events.push_back(Event::Incoming(id));
    }

    fn fin(&mut self, id: StreamId) {
        let Some(s) = self
            .streams
            .get_mut(&id)
            .filter(|s| !s.remote_fin && !s.reset)
        else {
            return;
        };
        s.remote_fin = true;
        self.events.push_back(Event::Finished(id));
        self.settle(id);
    }

    fn psh(&mut self, id: StreamId, body: Bytes) {
        let Some(s) = self.streams.get_mut(&id).filter(|s| !s.reset) else {
            return; // unknown or forgotten: dropped
        };
        let n = body.len();
        s.buffered += n;
        s.recv.push_back(body);
        self.bucket -= n as i64;
        self.bytes_in += n as u64;
        self.events.push_back(Event::Readable(id));
    }

    fn upd(&mut self, id: StreamId, body: &[u8]) -> Result<(), ProtocolError> {
        let u = Upd::decode(body)?;
        if let Some(s) = self.streams.get_mut(&id) {
            s.peer_consumed = u.consumed;
            s.peer_window = u.window;
            self.events.push_back(Event::Writable(id));
        }
        Ok(())
    }

    /// What `id` may send now: Go's `int32(window) - int32(written - consumed)`; a peer that
    /// reports more consumed than we sent fails the stream's writes (Go `ErrConsumed`).
    fn allowed(s: &Stream, id: StreamId) -> Result<u32, StreamError> {
        let inflight = s.num_written.wrapping_sub(s.peer_consumed) as i32;
        if inflight < 0 {
            return Err(StreamError::Reset(id));
        }
        let win = (s.peer_window as i32).wrapping_sub(inflight);
        Ok(win.max(0) as u32)
    }
}

impl StreamMux for SmuxSession {
    fn header_len(&self) -> usize {
        HEADER_LEN
    }

    fn handle_header(&mut self, header: &[u8], now: Instant) -> Result<usize, ProtocolError> {
        let _ = now; // the silence check counts headers, not their time
        if let Some(p) = self.pending {
            return Err(self.protocol_error(ProtocolError::Sequence {
                expected: usize::from(p.length),
                got: 0,
            }));
        }
        if self.is_closed() {
            return Ok(0);
        }
        self.rx_since_check = true;
        let Ok(hb) = <&[u8; HEADER_LEN]>::try_from(header) else {
            return Err(self.protocol_error(ProtocolError::Sequence {
                expected: HEADER_LEN,
                got: header.len(),
            }));
        };
        let h = match Header::decode(hb) {
            Ok(h) => h,
            Err(e) => return Err(self.protocol_error(e.into())),
        };
        match h.cmd {
            Cmd::Syn => self.syn(h.sid),
            Cmd::Fin => self.fin(h.sid),
            Cmd::Nop => {}
            Cmd::Psh | Cmd::Upd if h.length > 0 => {
                self.pending = Some(h);
                return Ok(usize::from(h.length));
            }
            Cmd::Psh | Cmd::Upd => {} // PSH of length 0 is skipped; UPD always has 8
        }
        Ok(0)
    }

    fn handle_body(&mut self, body: Bytes) -> Result<(), ProtocolError> {
        let Some(h) = self.pending.take() else {
            return Err(self.protocol_error(ProtocolError::Sequence {
                expected: 0,
                got: body.len(),
            }));
        };
        if body.len() != usize::from(h.length) {
            return Err(self.protocol_error(ProtocolError::Sequence {
                expected: usize::from(h.length),
                got: body.len(),
            }));
        }
        if self.is_closed() {
            return Ok(());
        }
        if h.cmd == Cmd::Upd {
            return self.upd(h.sid, &body).map_err(|e| self.protocol_error(e));
        }
        self.psh(h.sid, body);
        Ok(())
    }

    fn expected_body(&self) -> usize {
        self.pending.map_or(0, |h| usize::from(h.length))
    }

    fn read_paused(&self) -> bool {
        self.bucket <= 0 && !self.is_closed()
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if now >= self.next_check {
            self.next_check = later(self.next_check, self.cfg.keepalive_timeout, now);
            if !self.rx_since_check && !self.read_paused() {
                self.close(CloseReason::Idle);
                return;
            }
            self.rx_since_check = false;
        }
        if now >= self.next_nop {
            self.next_nop = later(self.next_nop, self.cfg.keepalive_interval, now);
            // A NOP that cannot be queued now is skipped, as in Go.
            if !self.write_blocked() {
                self.heartbeat();
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (!self.is_closed()).then(|| self.next_nop.min(self.next_check))
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
        let Some(id) = self.next_id.checked_add(2) else {
            return Err(OpenError::IdsExhausted);
        };
        if self.open >= self.cfg.max_streams {
            return Err(OpenError::TooManyStreams {
                max: self.cfg.max_streams,
            });
        }
        self.next_id = id;
        self.streams.insert(id, Self::new_stream());
        self.open += 1;
        self.queue(Cmd::Syn, id, Bytes::new());
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
        Ok(Credit::Window(Self::allowed(s, id)?))
    }

    fn send(&mut self, id: StreamId, data: &mut Bytes) -> Result<usize, StreamError> {
        let closed = self.is_closed();
        let max = self.cfg.max_frame_size.clamp(1, smux_frame::MAX_PAYLOAD);
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
        let allowed = Self::allowed(s, id)?;
        let n = data.len().min(allowed as usize).min(max);
        if n == 0 {
            return Ok(0);
        }
        s.num_written = s.num_written.wrapping_add(n as u32);
        let body = data.split_to(n);
        self.bytes_out += n as u64;
        self.queue(Cmd::Psh, id, body);
        Ok(n)
    }

    fn recv(&mut self, id: StreamId) -> Result<Recv, StreamError> {
        let window = self.cfg.max_stream_buffer;
        let s = self.streams.get_mut(&id).ok_or(StreamError::Unknown(id))?;
        if let Some(b) = s.recv.pop_front() {
            let n = b.len();
            s.buffered -= n;
            s.num_read = s.num_read.wrapping_add(n as u32);
            s.incr = s.incr.wrapping_add(n as u32);
            // Go's rule: the first read that returned data, or half the window read since.
            let upd = (s.num_read == n as u32 || s.incr >= window / 2).then(|| {
                s.incr = 0;
                Upd {
                    consumed: s.num_read,
                    window,
                }
            });
            self.bucket += n as i64;
            if let Some(u) = upd {
                self.queue(Cmd::Upd, id, Bytes::copy_from_slice(&u.encode()));
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
        self.queue(Cmd::Fin, id, Bytes::new());
        self.settle(id);
    }

    fn reset(&mut self, id: StreamId) {
        // smux has no RST: FIN, then forget (Go's `Close()`).
        self.close_write(id);
        self.forget(id);
    }

    fn forget(&mut self, id: StreamId) {
        if let Some(s) = self.streams.remove(&id) {
            self.bucket += s.buffered as i64;
            if s.open {
                self.open -= 1;
            }
        }
    }

    fn ping(&mut self, _opaque: u32) -> Result<(), PingError> {
        Err(PingError::Unsupported)
    }

    fn heartbeat(&mut self) {
        self.queue(Cmd::Nop, 0, Bytes::new());
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

/// The next tick of a timer due at `at` with `period`, after `now` (skipping missed ticks).
fn later(at: Instant, period: Duration, now: Instant) -> Instant {
    let next = at + period;
    if next > now { next } else { now + period }
}
