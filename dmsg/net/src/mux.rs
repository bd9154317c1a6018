//! The tokio driver of a multiplexed session: socket tasks and wakers around the pure session
//! state machine [`dmsg_proto::mux::MuxSession`] — a yamux ([`dmsg_proto::mux::YamuxSession`])
//! or an smux v2 ([`dmsg_proto::mux::SmuxSession`]) session, chosen per session with
//! [`MuxConfig::protocol`]. Stream ids, windows, FIN/RST, the accept backlog, ping, keep-alive
//! and idle timers, the receive buffer and the bounded write queue all live there, behind the
//! [`StreamMux`] trait; this driver does not know which protocol it runs, except for the ping
//! (smux has no ping frame: [`Session::ping`] opens a stream and exchanges `00 00`).
//!
//! Why not the `yamux` crate: it is futures-io based (a compat layer per session), opens streams
//! lazily (the SYN travels with the first data, which Go's relay logic does not expect), and its
//! `Connection` must be polled by an owner task anyway. DMSG needs little of yamux — open, accept,
//! data, window updates, FIN/RST, ping, GoAway — and a direct driver lets the relay move
//! [`Bytes`] chunks from one session to another without copies.
//!
//! Structure per session: the pure session behind one mutex, and three tasks owned by
//! [`Session`] (aborted when it is dropped):
//! * a reader task: reads a header, asks the session how much body follows, reads it into its
//!   own buffer, hands it over; while the session says [`StreamMux::read_paused`] (smux: its
//!   receive buffer is full of unread data) it reads nothing until a reader frees some;
//! * a writer task: takes the session's queued frames and writes them with one vectored write
//!   per batch (bodies never copied), then reports them written;
//! * a keep-alive task: sleeps until the session's next timer and runs it (yamux: a ping every
//!   30 s, close after [`DEFAULT_IDLE_TIMEOUT`] of silence; smux: a NOP every 10 s, close after
//!   30–60 s of silence).
//!
//! After every call into the session the driver drains its events and wakes the tasks that
//! wait: a stream's reader or writer, the acceptor, the ping waiter, writers held at the
//! high-water mark. The bounds (all remote input) are the session's, filled from
//! [`crate::defaults`]: window and receive buffer [`DEFAULT_RECV_WINDOW`] per stream, at most
//! `max_streams` open streams and [`DEFAULT_ACCEPT_BACKLOG`] un-accepted ones (beyond: RST),
//! queued output ≤ [`DEFAULT_WRITE_HARD_LIMIT`] (local writers wait at
//! [`DEFAULT_WRITE_HIGH_WATER`]), incoming stream ids of the peer's parity and increasing.
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::{BufMut, Bytes};
use dmsg_proto::mux::{
    Event, MAX_HEADER_LEN, MuxSession, OpenError, PingError, SessionConfig, SmuxConfig, StreamId,
    StreamMux,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub use dmsg_proto::mux::{CloseReason, Protocol, Side};
pub use stream::{MuxStream, RecvHalf, SendHalf};

pub(crate) mod bufpool;
mod stream;
mod writer;

use crate::defaults::*;
use crate::error::StreamError;
use crate::lock;

/// The session state machine this driver runs (yamux or smux).
type Proto = MuxSession;

/// Limits of one session, and its protocol.
#[derive(Debug, Clone, Copy)]
pub struct MuxConfig {
    /// The multiplexer (default yamux). A server overrides it per client (the client's
    /// discovery entry decides).
    pub protocol: Protocol,
    /// Most open streams.
    pub max_streams: usize,
    /// Keep-alive ping interval.
    pub keepalive: std::time::Duration,
    /// Silence after which the session is closed.
    pub idle_timeout: std::time::Duration,
}

impl Default for MuxConfig {
    fn default() -> Self {
        MuxConfig {
            protocol: Protocol::Yamux,
            max_streams: DEFAULT_MAX_STREAMS,
            keepalive: DEFAULT_KEEPALIVE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl MuxConfig {
    /// The same limits with another protocol.
    pub fn with_protocol(self, protocol: Protocol) -> MuxConfig {
        MuxConfig { protocol, ..self }
    }

    /// The smux session's limits: `max_streams` plus skywire's `SmuxConfig` values and the
    /// fixed bounds of [`crate::defaults`] (the yamux keep-alive fields do not apply).
    fn smux_config(&self) -> SmuxConfig {
        SmuxConfig {
            max_streams: self.max_streams,
            accept_backlog: DEFAULT_ACCEPT_BACKLOG,
            max_frame_size: DEFAULT_SMUX_MAX_FRAME,
            max_receive_buffer: DEFAULT_SMUX_RECEIVE_BUFFER,
            max_stream_buffer: DEFAULT_SMUX_STREAM_WINDOW,
            write_high_water: DEFAULT_WRITE_HIGH_WATER,
            write_hard_limit: DEFAULT_WRITE_HARD_LIMIT,
            keepalive_interval: DEFAULT_SMUX_KEEPALIVE,
            keepalive_timeout: DEFAULT_SMUX_KEEPALIVE_TIMEOUT,
        }
    }

    /// The yamux session's limits: these fields plus the fixed bounds of [`crate::defaults`].
    fn session_config(&self) -> SessionConfig {
        SessionConfig {
            max_streams: self.max_streams,
            accept_backlog: DEFAULT_ACCEPT_BACKLOG,
            recv_window: DEFAULT_RECV_WINDOW,
            max_frame_data: DEFAULT_MAX_FRAME_DATA,
            write_high_water: DEFAULT_WRITE_HIGH_WATER,
            write_hard_limit: DEFAULT_WRITE_HARD_LIMIT,
            keepalive: self.keepalive,
            idle_timeout: self.idle_timeout,
        }
    }
}

/// Tasks waiting on one stream.
#[derive(Default)]
struct Wakers {
    read: Option<Waker>,
    write: Option<Waker>,
}

/// The session and who waits on it, under one lock.
struct Inner {
    proto: Proto,
    wakers: HashMap<StreamId, Wakers>,
    /// Writers held at the high-water mark.
    write_waiters: VecDeque<Waker>,
    accept_waker: Option<Waker>,
    /// The reader task has ended: [`Session::accept`] answers `None` once the backlog is empty
    /// (as long as the reader runs, a stream may still arrive).
    reader_done: bool,
    /// The ping [`Session::ping`] waits for.
    ping_wait: Option<(u32, oneshot::Sender<()>)>,
    /// The reader task waits for [`StreamMux::read_paused`] to turn false.
    rx_waiting: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Mirrors `proto.is_closed()` for lock-free checks.
    closed: AtomicBool,
    closed_notify: Notify,
    /// Frames were queued: wakes the writer task.
    tx_notify: Notify,
    /// The session may be read again (or closed): wakes a paused reader task.
    rx_notify: Notify,
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    fn close(&self, reason: CloseReason) {
        let mut g = self.lock();
        g.proto.close(reason);
        self.drive(&mut g);
    }

    /// Runs after every call into the session: wakes whoever waits on its events, and the
    /// writer when frames are queued.
    fn drive(&self, g: &mut Inner) {
        while let Some(ev) = g.proto.poll_event() {
            match ev {
                Event::Incoming(_) => wake(&mut g.accept_waker),
                Event::Readable(id) | Event::Finished(id) => {
                    if let Some(w) = g.wakers.get_mut(&id) {
                        wake(&mut w.read);
                    }
                }
                Event::Writable(id) => {
                    if let Some(w) = g.wakers.get_mut(&id) {
                        wake(&mut w.write);
                    }
                }
                Event::Reset(id) => {
                    if let Some(w) = g.wakers.get_mut(&id) {
                        wake(&mut w.read);
                        wake(&mut w.write);
                    }
                }
                Event::Pong(opaque) => {
                    if g.ping_wait.as_ref().is_some_and(|(o, _)| *o == opaque)
                        && let Some((_, tx)) = g.ping_wait.take()
                    {
                        let _ = tx.send(());
                    }
                }
                Event::Ping(_) | Event::GoAway(_) => {}
                Event::Closed(reason) => {
                    let protocol = g.proto.protocol();
                    tracing::debug!(?reason, %protocol, "mux session closed");
                    self.rx_notify.notify_one();
                    self.closed.store(true, Ordering::Release);
                    for w in g.wakers.values_mut() {
                        wake(&mut w.read);
                        wake(&mut w.write);
                    }
                    for w in g.write_waiters.drain(..) {
                        w.wake();
                    }
                    wake(&mut g.accept_waker);
                    self.closed_notify.notify_waiters();
                }
            }
        }
        if g.proto.transmit_pending() > 0 {
            self.tx_notify.notify_one();
        }
        if g.rx_waiting && !g.proto.read_paused() {
            g.rx_waiting = false;
            self.rx_notify.notify_one();
        }
    }
}

/// A yamux or smux session over one TCP connection. Dropping it closes the session.
pub struct Session {
    shared: Arc<Shared>,
    /// Serialises [`Session::accept`] callers (one accept waker).
    accept_lock: tokio::sync::Mutex<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.close(CloseReason::Local);
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Session {
    /// Starts the session's tasks on an established connection, running `cfg.protocol`.
    /// `initial` holds bytes already read from the socket after the handshake (normally none).
    pub fn new(
        side: Side,
        rd: OwnedReadHalf,
        wr: OwnedWriteHalf,
        initial: Bytes,
        cfg: MuxConfig,
    ) -> Session {
        let proto = Proto::new(
            cfg.protocol,
            side,
            cfg.session_config(),
            cfg.smux_config(),
            Instant::now(),
        );
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                proto,
                wakers: HashMap::new(),
                write_waiters: VecDeque::new(),
                accept_waker: None,
                reader_done: false,
                ping_wait: None,
                rx_waiting: false,
            }),
            closed: AtomicBool::new(false),
            closed_notify: Notify::new(),
            tx_notify: Notify::new(),
            rx_notify: Notify::new(),
        });
        let reader = tokio::spawn(read_loop(shared.clone(), rd, initial));
        let writer = tokio::spawn(writer::write_loop(shared.clone(), wr));
        let keepalive = tokio::spawn(keepalive_loop(shared.clone()));
        Session {
            shared,
            accept_lock: tokio::sync::Mutex::new(()),
            tasks: vec![reader, writer, keepalive],
        }
    }

    /// Opens a stream (sends SYN; data may follow at once).
    pub fn open(&self) -> Result<MuxStream, StreamError> {
        let sh = &self.shared;
        let mut g = sh.lock();
        let id = g.proto.open().map_err(|e| match e {
            OpenError::SessionClosed => StreamError::SessionClosed,
            _ => StreamError::TooManyStreams,
        })?;
        sh.drive(&mut g);
        drop(g);
        Ok(MuxStream::new(sh.clone(), id))
    }

    /// Waits for the next incoming stream; `None` when the session is closed (once its reader
    /// has stopped and every stream it accepted has been taken).
    pub async fn accept(&self) -> Option<MuxStream> {
        let _one = self.accept_lock.lock().await;
        let sh = &self.shared;
        let id = std::future::poll_fn(|cx| {
            let mut g = sh.lock();
            if let Some(id) = g.proto.accept() {
                return Poll::Ready(Some(id));
            }
            if g.reader_done {
                return Poll::Ready(None);
            }
            g.accept_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Some(MuxStream::new(sh.clone(), id))
    }

    /// The multiplexer this session runs.
    pub fn protocol(&self) -> Protocol {
        self.shared.lock().proto.protocol()
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Why the session closed.
    pub fn close_reason(&self) -> CloseReason {
        self.shared.lock().proto.close_reason()
    }

    /// Resolves when the session is closed.
    pub async fn closed(&self) {
        wait_closed(&self.shared).await
    }

    /// Closes the session (TCP close after queued frames, like hashicorp v0.1.1: no GoAway).
    pub fn close(&self) {
        self.shared.close(CloseReason::Local);
    }

    /// Number of open streams.
    pub fn num_streams(&self) -> usize {
        self.shared.lock().proto.num_streams()
    }

    /// Payload bytes received and sent on this session's streams.
    pub fn bytes(&self) -> (u64, u64) {
        self.shared.lock().proto.bytes()
    }

    /// Sends a frame the peer sees at once without waiting for an answer (yamux: a ping;
    /// smux: a NOP).
    pub fn ping_nowait(&self) {
        let mut g = self.shared.lock();
        if let Err(PingError::Unsupported) = g.proto.ping(rand::random::<u32>()) {
            g.proto.heartbeat();
        }
        self.shared.drive(&mut g);
    }

    /// Pings the peer and returns the round-trip time: a yamux ping frame, or for smux (no
    /// ping frame) a new stream carrying `00 00` that a DMSG server echoes and closes (spec
    /// smux.md §7), within [`DEFAULT_SMUX_PING_TIMEOUT`].
    pub async fn ping(&self) -> Result<std::time::Duration, StreamError> {
        let (tx, rx) = oneshot::channel();
        let opaque = rand::random::<u32>();
        let t0 = Instant::now();
        let framed = {
            let mut g = self.shared.lock();
            g.ping_wait = Some((opaque, tx));
            let framed = g.proto.ping(opaque) != Err(PingError::Unsupported);
            if !framed {
                g.ping_wait = None;
            }
            self.shared.drive(&mut g);
            framed
        };
        if !framed {
            return self.stream_ping(t0).await;
        }
        rx.await.map_err(|_| StreamError::SessionClosed)?;
        Ok(t0.elapsed())
    }

    /// The smux ping: open a stream, write `00 00`, read `00 00` back, close.
    async fn stream_ping(&self, t0: Instant) -> Result<std::time::Duration, StreamError> {
        let mut st = self.open()?;
        let exchange = async {
            st.write_all(&[0, 0]).await?;
            let mut echo = [0xffu8; 2];
            st.read_exact(&mut echo).await?;
            Ok::<_, io::Error>(echo)
        };
        match tokio::time::timeout(DEFAULT_SMUX_PING_TIMEOUT, exchange).await {
            Ok(Ok([0, 0])) => Ok(t0.elapsed()),
            // Not an echo (a 2023 server answers nothing and leaves the stream).
            Ok(Ok(_)) => Err(StreamError::Eof),
            Ok(Err(_)) if self.is_closed() => Err(StreamError::SessionClosed),
            Ok(Err(_)) => Err(StreamError::Eof),
            Err(_) => Err(StreamError::Timeout),
        }
    }
}

async fn read_loop(sh: Arc<Shared>, rd: OwnedReadHalf, initial: Bytes) {
    let reason = match read_frames(&sh, rd, initial).await {
        Ok(()) => CloseReason::Remote,
        Err(ReadEnd::Io) => CloseReason::Io,
        Err(ReadEnd::Protocol(error)) => {
            tracing::debug!(%error, "mux protocol violation; closing session");
            CloseReason::Protocol
        }
    };
    sh.close(reason);
    let mut g = sh.lock();
    g.reader_done = true;
    wake(&mut g.accept_waker);
}

enum ReadEnd {
    Io,
    Protocol(dmsg_proto::mux::ProtocolError),
}

/// Waits while the session's receive buffer is full (smux); returns at once otherwise.
async fn wait_readable(sh: &Shared) {
    loop {
        let resumed = sh.rx_notify.notified();
        {
            let mut g = sh.lock();
            if !g.proto.read_paused() {
                g.rx_waiting = false;
                return;
            }
            g.rx_waiting = true;
        }
        resumed.await;
    }
}

async fn read_frames(sh: &Shared, rd: OwnedReadHalf, initial: Bytes) -> Result<(), ReadEnd> {
    let mut rd = BufReader::with_capacity(DEFAULT_READ_BUF, io::Cursor::new(initial).chain(rd));
    let header_len = sh.lock().proto.header_len();
    let mut buf = [0u8; MAX_HEADER_LEN];
    let hb = &mut buf[..header_len];
    loop {
        wait_readable(sh).await;
        match rd.read_exact(hb).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(_) => return Err(ReadEnd::Io),
        }
        let len = {
            let mut g = sh.lock();
            let r = g.proto.handle_header(hb, Instant::now());
            sh.drive(&mut g);
            r.map_err(ReadEnd::Protocol)?
        };
        if len > 0 {
            // Read straight into the body's own buffer (large bodies bypass the BufReader),
            // reused from earlier bodies of its size (bufpool: no fresh pages per frame).
            let mut body = bufpool::POOL.take(len);
            while body.len() < len {
                let want = len - body.len();
                let n = rd
                    .read_buf(&mut (&mut body).limit(want))
                    .await
                    .map_err(|_| ReadEnd::Io)?;
                if n == 0 {
                    return Err(ReadEnd::Io);
                }
            }
            let mut g = sh.lock();
            let r = g.proto.handle_body(bufpool::POOL.freeze(body));
            sh.drive(&mut g);
            r.map_err(ReadEnd::Protocol)?;
        }
        if sh.closed.load(Ordering::Acquire) {
            return Ok(());
        }
    }
}

async fn wait_closed(sh: &Shared) {
    loop {
        let n = sh.closed_notify.notified();
        if sh.closed.load(Ordering::Acquire) {
            return;
        }
        n.await;
    }
}

/// Sleeps until the session's next timer and runs it with the current time.
async fn keepalive_loop(sh: Arc<Shared>) {
    loop {
        let Some(at) = sh.lock().proto.poll_timeout() else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
            _ = wait_closed(&sh) => return,
        }
        let mut g = sh.lock();
        g.proto.handle_timeout(Instant::now());
        sh.drive(&mut g);
    }
}
