//! A small tokio driver for hashicorp yamux v0.1.1 on top of the proven frame codec
//! [`dmsg_proto::yamux`].
//!
//! Why not the `yamux` crate: it is futures-io based (a compat layer per session), opens streams
//! lazily (the SYN travels with the first data, which Go's relay logic does not expect), and its
//! `Connection` must be polled by an owner task anyway. DMSG needs little of yamux — open, accept,
//! data, window updates, FIN/RST, ping, GoAway — and a direct driver lets the relay move
//! [`Bytes`] chunks from one session to another without copies.
//!
//! Structure per session: a reader task (decodes frames, fills per-stream buffers), a writer
//! task (drains one queue of encoded frames onto the socket, one vectored write per batch of
//! frames, bodies never copied) and a keep-alive task (pings every 30 s, closes the session
//! after [`DEFAULT_IDLE_TIMEOUT`] of silence). The tasks are owned by [`Session`] and aborted
//! when it is dropped.
//!
//! Bounds (all remote input):
//! * per-stream receive buffer ≤ the 256 KiB window we granted (a peer sending beyond it is a
//!   protocol error and the session is closed);
//! * open streams per session ≤ `max_streams` (a SYN beyond is answered with RST);
//! * accept backlog ≤ [`DEFAULT_ACCEPT_BACKLOG`] (full → RST);
//! * queued output ≤ [`DEFAULT_WRITE_HARD_LIMIT`] (local writers wait at
//!   [`DEFAULT_WRITE_HIGH_WATER`]; a peer that makes us queue answers without reading is
//!   disconnected);
//! * incoming stream ids must have the peer's parity and increase.
use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use dmsg_proto::yamux::{Flags, FrameType, HEADER_LEN, Header};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::defaults::*;
use crate::error::StreamError;

/// Which side of yamux this is (client opens odd stream ids, server even).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// yamux client (the DMSG client).
    Client,
    /// yamux server (the DMSG server).
    Server,
}

/// Limits of one session.
#[derive(Debug, Clone, Copy)]
pub struct MuxConfig {
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
            max_streams: DEFAULT_MAX_STREAMS,
            keepalive: DEFAULT_KEEPALIVE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Why a session ended (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Still open.
    Open,
    /// Closed locally.
    Local,
    /// The peer closed the TCP connection or sent GoAway.
    Remote,
    /// Socket error.
    Io,
    /// The peer violated the protocol (bad frame, window overrun, bad stream id).
    Protocol,
    /// Nothing received for too long.
    Idle,
    /// The peer did not read while we had to answer it.
    NotReading,
}

/// Window granted beyond the yamux initial 256 KiB, sent with SYN/ACK.
const EXTRA_WINDOW: u32 = DEFAULT_RECV_WINDOW - DEFAULT_WINDOW;

struct Out {
    header: [u8; HEADER_LEN],
    body: Bytes,
}

#[derive(Default)]
struct StreamState {
    recv: VecDeque<Bytes>,
    recv_len: usize,
    /// Bytes the peer may still send before our next window update.
    recv_window: u32,
    /// Bytes consumed by the reader since the last window update we sent.
    consumed: u32,
    read_waker: Option<Waker>,
    remote_fin: bool,
    reset: bool,
    send_window: u32,
    write_waker: Option<Waker>,
    local_fin: bool,
}

struct StreamShared {
    st: Mutex<StreamState>,
}

use crate::lock;

struct Shared {
    side: Side,
    cfg: MuxConfig,
    out_tx: mpsc::UnboundedSender<Out>,
    queued: AtomicUsize,
    write_waiters: Mutex<Vec<Waker>>,
    streams: Mutex<HashMap<u32, Arc<StreamShared>>>,
    next_id: AtomicU32,
    last_remote_id: AtomicU32,
    closed: AtomicBool,
    close_reason: Mutex<CloseReason>,
    closed_notify: Notify,
    last_rx: AtomicU64,
    started: Instant,
    go_away: AtomicBool,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    ping_rtt_wait: Mutex<Option<(u32, tokio::sync::oneshot::Sender<()>)>>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn close(&self, reason: CloseReason) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        *lock(&self.close_reason) = reason;
        let streams: Vec<_> = lock(&self.streams).drain().map(|(_, s)| s).collect();
        for s in streams {
            let mut st = lock(&s.st);
            st.reset = true;
            if let Some(w) = st.read_waker.take() {
                w.wake();
            }
            if let Some(w) = st.write_waker.take() {
                w.wake();
            }
        }
        for w in lock(&self.write_waiters).drain(..) {
            w.wake();
        }
        self.closed_notify.notify_waiters();
    }

    /// Queues a frame. Control frames (`force`) bypass the high-water mark but count against the
    /// hard limit.
    fn send(&self, header: Header, body: Bytes) {
        let n = HEADER_LEN + body.len();
        let q = self.queued.fetch_add(n, Ordering::AcqRel) + n;
        if q > DEFAULT_WRITE_HARD_LIMIT {
            self.close(CloseReason::NotReading);
            return;
        }
        if self
            .out_tx
            .send(Out {
                header: header.encode(),
                body,
            })
            .is_err()
        {
            self.close(CloseReason::Io);
        }
    }

    fn control(&self, ty: FrameType, flags: Flags, id: u32, len: u32) {
        self.send(Header::new(ty, flags, id, len), Bytes::new());
    }
}

/// A yamux session over one TCP connection. Dropping it closes the session.
pub struct Session {
    shared: Arc<Shared>,
    accept_rx: tokio::sync::Mutex<mpsc::Receiver<MuxStream>>,
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
    /// Starts the session's tasks on an established connection. `initial` holds bytes already
    /// read from the socket after the handshake (normally none).
    pub fn new(
        side: Side,
        rd: OwnedReadHalf,
        wr: OwnedWriteHalf,
        initial: Bytes,
        cfg: MuxConfig,
    ) -> Session {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (accept_tx, accept_rx) = mpsc::channel(DEFAULT_ACCEPT_BACKLOG);
        let shared = Arc::new(Shared {
            side,
            cfg,
            out_tx,
            queued: AtomicUsize::new(0),
            write_waiters: Mutex::new(Vec::new()),
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(if side == Side::Client { 1 } else { 2 }),
            last_remote_id: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            close_reason: Mutex::new(CloseReason::Open),
            closed_notify: Notify::new(),
            last_rx: AtomicU64::new(0),
            started: Instant::now(),
            go_away: AtomicBool::new(false),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            ping_rtt_wait: Mutex::new(None),
        });
        let reader = tokio::spawn(read_loop(shared.clone(), rd, initial, accept_tx));
        let writer = tokio::spawn(write_loop(shared.clone(), wr, out_rx));
        let keepalive = tokio::spawn(keepalive_loop(shared.clone()));
        Session {
            shared,
            accept_rx: tokio::sync::Mutex::new(accept_rx),
            tasks: vec![reader, writer, keepalive],
        }
    }

    /// Opens a stream (sends SYN; data may follow at once).
    pub fn open(&self) -> Result<MuxStream, StreamError> {
        let sh = &self.shared;
        if sh.closed.load(Ordering::Acquire) || sh.go_away.load(Ordering::Acquire) {
            return Err(StreamError::SessionClosed);
        }
        let id = sh.next_id.fetch_add(2, Ordering::AcqRel);
        if id > u32::MAX - 2 {
            return Err(StreamError::TooManyStreams);
        }
        let stream = new_stream();
        {
            let mut map = lock(&sh.streams);
            if map.len() >= sh.cfg.max_streams {
                return Err(StreamError::TooManyStreams);
            }
            map.insert(id, stream.clone());
        }
        sh.control(FrameType::WindowUpdate, Flags::SYN, id, EXTRA_WINDOW);
        Ok(MuxStream::new(sh.clone(), id, stream))
    }

    /// Waits for the next incoming stream; `None` when the session is closed.
    pub async fn accept(&self) -> Option<MuxStream> {
        self.accept_rx.lock().await.recv().await
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Why the session closed.
    pub fn close_reason(&self) -> CloseReason {
        *lock(&self.shared.close_reason)
    }

    /// Resolves when the session is closed.
    pub async fn closed(&self) {
        loop {
            let n = self.shared.closed_notify.notified();
            if self.is_closed() {
                return;
            }
            n.await;
        }
    }

    /// Closes the session (TCP close after queued frames, like hashicorp v0.1.1: no GoAway).
    pub fn close(&self) {
        self.shared.close(CloseReason::Local);
    }

    /// Number of open streams.
    pub fn num_streams(&self) -> usize {
        lock(&self.shared.streams).len()
    }

    /// Payload bytes received and sent on this session's streams.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.shared.bytes_in.load(Ordering::Relaxed),
            self.shared.bytes_out.load(Ordering::Relaxed),
        )
    }

    /// Sends a ping without waiting for the answer.
    pub fn ping_nowait(&self) {
        self.shared
            .control(FrameType::Ping, Flags::SYN, 0, rand::random::<u32>());
    }

    /// Sends a ping and waits for its answer.
    pub async fn ping(&self) -> Result<std::time::Duration, StreamError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let opaque = rand::random::<u32>();
        *lock(&self.shared.ping_rtt_wait) = Some((opaque, tx));
        let t0 = Instant::now();
        self.shared.control(FrameType::Ping, Flags::SYN, 0, opaque);
        rx.await.map_err(|_| StreamError::SessionClosed)?;
        Ok(t0.elapsed())
    }
}

fn new_stream() -> Arc<StreamShared> {
    Arc::new(StreamShared {
        st: Mutex::new(StreamState {
            recv_window: DEFAULT_RECV_WINDOW,
            send_window: DEFAULT_WINDOW,
            ..StreamState::default()
        }),
    })
}

async fn read_loop(
    sh: Arc<Shared>,
    rd: OwnedReadHalf,
    initial: Bytes,
    accept_tx: mpsc::Sender<MuxStream>,
) {
    let reason = match read_frames(&sh, rd, initial, &accept_tx).await {
        Ok(()) => CloseReason::Remote,
        Err(ReadEnd::Io) => CloseReason::Io,
        Err(ReadEnd::Protocol(why)) => {
            tracing::debug!(why, "yamux protocol violation; closing session");
            CloseReason::Protocol
        }
    };
    sh.close(reason);
}

enum ReadEnd {
    Io,
    Protocol(&'static str),
}

async fn read_frames(
    sh: &Arc<Shared>,
    rd: OwnedReadHalf,
    initial: Bytes,
    accept_tx: &mpsc::Sender<MuxStream>,
) -> Result<(), ReadEnd> {
    let mut rd = BufReader::with_capacity(DEFAULT_READ_BUF, io::Cursor::new(initial).chain(rd));
    let mut hb = [0u8; HEADER_LEN];
    loop {
        match rd.read_exact(&mut hb).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(_) => return Err(ReadEnd::Io),
        }
        sh.last_rx.store(sh.now_ms(), Ordering::Relaxed);
        let h = Header::decode(&hb).map_err(|_| ReadEnd::Protocol("bad header"))?;
        match h.ty {
            FrameType::Data => {
                let len = h.length as usize;
                if len > DEFAULT_RECV_WINDOW as usize {
                    return Err(ReadEnd::Protocol("data frame beyond window"));
                }
                let mut body = BytesMut::with_capacity(len);
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
                handle_stream_frame(sh, h, body.freeze(), accept_tx)?;
            }
            FrameType::WindowUpdate => handle_stream_frame(sh, h, Bytes::new(), accept_tx)?,
            FrameType::Ping => {
                if h.stream_id != 0 {
                    return Err(ReadEnd::Protocol("ping on a stream"));
                }
                if h.flags.contains(Flags::SYN) {
                    sh.control(FrameType::Ping, Flags::ACK, 0, h.length);
                } else if h.flags.contains(Flags::ACK) {
                    let mut w = lock(&sh.ping_rtt_wait);
                    if w.as_ref().is_some_and(|(o, _)| *o == h.length)
                        && let Some((_, tx)) = w.take()
                    {
                        let _ = tx.send(());
                    }
                }
            }
            FrameType::GoAway => {
                sh.go_away.store(true, Ordering::Release);
                return Ok(());
            }
        }
        if sh.closed.load(Ordering::Acquire) {
            return Ok(());
        }
    }
}

fn handle_stream_frame(
    sh: &Arc<Shared>,
    h: Header,
    body: Bytes,
    accept_tx: &mpsc::Sender<MuxStream>,
) -> Result<(), ReadEnd> {
    let id = h.stream_id;
    if id == 0 {
        return Err(ReadEnd::Protocol("stream frame on stream 0"));
    }
    let stream = if h.flags.contains(Flags::SYN) {
        let remote_parity_odd = sh.side == Side::Server;
        if (id % 2 == 1) != remote_parity_odd {
            return Err(ReadEnd::Protocol("stream id of the wrong parity"));
        }
        if id <= sh.last_remote_id.load(Ordering::Acquire) {
            return Err(ReadEnd::Protocol("stream id reused"));
        }
        sh.last_remote_id.store(id, Ordering::Release);
        let full = lock(&sh.streams).len() >= sh.cfg.max_streams;
        if full || sh.closed.load(Ordering::Acquire) {
            sh.control(FrameType::WindowUpdate, Flags::RST, id, 0);
            return Ok(());
        }
        let s = new_stream();
        let ms = MuxStream::new(sh.clone(), id, s.clone());
        lock(&sh.streams).insert(id, s.clone());
        match accept_tx.try_send(ms) {
            Ok(()) => {
                sh.control(FrameType::WindowUpdate, Flags::ACK, id, EXTRA_WINDOW);
            }
            Err(e) => {
                // Dropping the stream sends FIN; answer RST instead so the opener knows.
                let ms = e.into_inner();
                ms.reset_quietly();
                sh.control(FrameType::WindowUpdate, Flags::RST, id, 0);
                return Ok(());
            }
        }
        s
    } else {
        match lock(&sh.streams).get(&id) {
            Some(s) => s.clone(),
            None => return Ok(()), // frame for a stream we closed: discard
        }
    };
    let mut st = lock(&stream.st);
    if h.ty == FrameType::WindowUpdate {
        st.send_window = st.send_window.saturating_add(h.length);
        if let Some(w) = st.write_waker.take() {
            w.wake();
        }
    } else if !body.is_empty() {
        let n = body.len() as u32;
        if n > st.recv_window {
            return Err(ReadEnd::Protocol("peer exceeded the receive window"));
        }
        st.recv_window -= n;
        st.recv_len += body.len();
        sh.bytes_in.fetch_add(u64::from(n), Ordering::Relaxed);
        st.recv.push_back(body);
    }
    if h.flags.contains(Flags::FIN) {
        st.remote_fin = true;
    }
    if h.flags.contains(Flags::RST) {
        st.reset = true;
    }
    let done = st.reset || (st.remote_fin && st.local_fin);
    if let Some(w) = st.read_waker.take() {
        w.wake();
    }
    if st.reset
        && let Some(w) = st.write_waker.take()
    {
        w.wake();
    }
    drop(st);
    if done {
        lock(&sh.streams).remove(&id);
    }
    Ok(())
}

/// Most frames handed to one `writev` call (each is a header and maybe a body: two slices;
/// Linux takes up to 1024 slices per call).
const WRITE_BATCH_FRAMES: usize = 64;
/// Most bytes gathered for one `writev` call.
const WRITE_BATCH_BYTES: usize = 512 * 1024;

async fn write_loop(sh: Arc<Shared>, mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Out>) {
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = wait_closed(&sh) => None,
        };
        let Some(first) = first else { break };
        // Gather what is queued and write it with one `writev` per batch: headers and bodies
        // leave from their own buffers (no copy), and a data frame never goes out as a lone
        // 12-byte header segment followed by its body.
        // Made per batch: an idle session keeps no batch buffer (it would cost 3 KB each).
        let mut batch: Vec<Out> = vec![first];
        let mut bytes = HEADER_LEN + batch[0].body.len();
        while batch.len() < WRITE_BATCH_FRAMES && bytes < WRITE_BATCH_BYTES {
            match rx.try_recv() {
                Ok(o) => {
                    bytes += HEADER_LEN + o.body.len();
                    batch.push(o);
                }
                Err(_) => break,
            }
        }
        let ok = write_batch(&mut wr, &batch).await.is_ok();
        drop(batch);
        if !ok {
            sh.close(CloseReason::Io);
            break;
        }
        let left = sh.queued.fetch_sub(bytes, Ordering::AcqRel) - bytes;
        if left < DEFAULT_WRITE_HIGH_WATER {
            let waiters: Vec<Waker> = lock(&sh.write_waiters).drain(..).collect();
            for w in waiters {
                w.wake();
            }
        }
    }
    // Flush what is still queued (FIN/RST of a local close), then close the socket.
    let mut batch = Vec::new();
    while let Ok(o) = rx.try_recv() {
        batch.push(o);
    }
    if !batch.is_empty() {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            write_batch(&mut wr, &batch),
        )
        .await;
    }
    let _ = wr.shutdown().await;
}

/// Writes every frame of `batch` (vectored, partial writes resumed).
async fn write_batch(wr: &mut OwnedWriteHalf, batch: &[Out]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = Vec::with_capacity(batch.len() * 2);
    for o in batch {
        slices.push(io::IoSlice::new(&o.header));
        if !o.body.is_empty() {
            slices.push(io::IoSlice::new(&o.body));
        }
    }
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = wr.write_vectored(rest).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
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

async fn keepalive_loop(sh: Arc<Shared>) {
    let mut tick = tokio::time::interval(sh.cfg.keepalive);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_closed(&sh) => return,
        }
        let silent_ms = sh
            .now_ms()
            .saturating_sub(sh.last_rx.load(Ordering::Relaxed));
        if silent_ms > sh.cfg.idle_timeout.as_millis() as u64 {
            tracing::debug!(silent_ms, "session idle; closing");
            sh.close(CloseReason::Idle);
            return;
        }
        sh.control(FrameType::Ping, Flags::SYN, 0, rand::random::<u32>());
    }
}

/// One yamux stream: an async byte stream, plus chunk-level `recv_chunk`/`send_chunk` for
/// zero-copy relaying. Dropping it half-closes (FIN) if not already closed.
pub struct MuxStream {
    sh: Arc<Shared>,
    id: u32,
    s: Arc<StreamShared>,
    cur: Bytes,
    fin_sent: bool,
}

impl std::fmt::Debug for MuxStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxStream").field("id", &self.id).finish()
    }
}

impl MuxStream {
    fn new(sh: Arc<Shared>, id: u32, s: Arc<StreamShared>) -> MuxStream {
        MuxStream {
            sh,
            id,
            s,
            cur: Bytes::new(),
            fin_sent: false,
        }
    }

    /// The yamux stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn reset_quietly(mut self) {
        self.fin_sent = true;
        lock(&self.sh.streams).remove(&self.id);
    }

    /// Resets the stream (RST) and forgets it.
    pub fn reset(mut self) {
        if !self.fin_sent {
            self.sh
                .control(FrameType::WindowUpdate, Flags::RST, self.id, 0);
        }
        self.fin_sent = true;
        lock(&self.sh.streams).remove(&self.id);
    }

    /// Polls the next received chunk. `Ok(None)` at FIN, error on reset/closed session.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        poll_chunk(&self.sh, &self.s, self.id, &mut self.cur, cx)
    }

    /// Receives the next chunk; `None` at FIN.
    pub async fn recv_chunk(&mut self) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, data: &mut Bytes) -> Poll<io::Result<usize>> {
        poll_send(&self.sh, &self.s, self.id, self.fin_sent, cx, data)
    }

    /// Splits into a receiving and a sending half (for splicing).
    pub fn halves(&mut self) -> (RecvHalf<'_>, SendHalf<'_>) {
        (
            RecvHalf {
                sh: &self.sh,
                s: &self.s,
                id: self.id,
                cur: &mut self.cur,
            },
            SendHalf {
                sh: &self.sh,
                s: &self.s,
                id: self.id,
                fin_sent: self.fin_sent,
            },
        )
    }

    /// Sends as much of `data` as the window allows, removing it from `data`.
    pub fn poll_send_pub(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, data)
    }

    /// Sends a whole chunk (waits for window as needed).
    pub async fn send_chunk(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            std::future::poll_fn(|cx| self.poll_send(cx, &mut data)).await?;
        }
        Ok(())
    }

    /// Waits until the stream's send window holds at least `min` bytes and the session's
    /// queue is below its high-water mark; returns the window. A writer that then sends at most
    /// that much is not left holding bytes it has accepted but cannot send (the same checks as
    /// a send, in the same order).
    pub fn poll_send_window(
        &mut self,
        cx: &mut Context<'_>,
        min: usize,
    ) -> Poll<io::Result<usize>> {
        let sh = &self.sh;
        if self.fin_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "stream closed",
            )));
        }
        if sh.closed.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "session closed",
            )));
        }
        if sh.queued.load(Ordering::Acquire) >= DEFAULT_WRITE_HIGH_WATER {
            lock(&sh.write_waiters).push(cx.waker().clone());
            if sh.queued.load(Ordering::Acquire) >= DEFAULT_WRITE_HIGH_WATER
                && !sh.closed.load(Ordering::Acquire)
            {
                return Poll::Pending;
            }
        }
        let mut st = lock(&self.s.st);
        if st.reset {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "yamux stream reset",
            )));
        }
        if (st.send_window as usize) < min.max(1) {
            st.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(st.send_window as usize))
    }

    /// Half-closes the stream (FIN).
    pub fn close_write(&mut self) {
        if self.fin_sent {
            return;
        }
        self.fin_sent = true;
        let done = {
            let mut st = lock(&self.s.st);
            st.local_fin = true;
            st.remote_fin || st.reset
        };
        self.sh
            .control(FrameType::WindowUpdate, Flags::FIN, self.id, 0);
        if done {
            lock(&self.sh.streams).remove(&self.id);
        }
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        if !self.fin_sent {
            self.close_write();
        }
        // Nobody reads any more: forget the stream so its buffer is freed.
        lock(&self.sh.streams).remove(&self.id);
    }
}

impl AsyncRead for MuxStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.cur.is_empty() {
            match this.poll_chunk(cx) {
                Poll::Ready(Ok(Some(b))) => this.cur = b,
                Poll::Ready(Ok(None)) => return Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = this.cur.len().min(buf.remaining());
        buf.put_slice(&this.cur.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let take = buf.len().min(DEFAULT_MAX_FRAME_DATA);
        let mut data = Bytes::copy_from_slice(&buf[..take]);
        // poll_send never takes part of `data` and then returns Pending.
        self.poll_send(cx, &mut data)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close_write();
        Poll::Ready(Ok(()))
    }
}

/// The receiving half of a [`MuxStream`].
pub struct RecvHalf<'a> {
    sh: &'a Arc<Shared>,
    s: &'a Arc<StreamShared>,
    id: u32,
    cur: &'a mut Bytes,
}

impl RecvHalf<'_> {
    /// Receives the next chunk; `None` at FIN.
    pub async fn recv_chunk(&mut self) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| poll_chunk(self.sh, self.s, self.id, self.cur, cx)).await
    }
}

/// The sending half of a [`MuxStream`].
pub struct SendHalf<'a> {
    sh: &'a Arc<Shared>,
    s: &'a Arc<StreamShared>,
    id: u32,
    fin_sent: bool,
}

impl SendHalf<'_> {
    /// Sends a whole chunk (waits for window as needed).
    pub async fn send_chunk(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            std::future::poll_fn(|cx| {
                poll_send(self.sh, self.s, self.id, self.fin_sent, cx, &mut data)
            })
            .await?;
        }
        Ok(())
    }
}

fn poll_chunk(
    sh: &Shared,
    s: &StreamShared,
    id: u32,
    cur: &mut Bytes,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Option<Bytes>>> {
    if !cur.is_empty() {
        return Poll::Ready(Ok(Some(std::mem::take(cur))));
    }
    let mut st = lock(&s.st);
    if let Some(b) = st.recv.pop_front() {
        st.recv_len -= b.len();
        st.consumed += b.len() as u32;
        if st.consumed >= DEFAULT_RECV_WINDOW / 2 && !st.remote_fin {
            let delta = st.consumed;
            st.consumed = 0;
            st.recv_window += delta;
            drop(st);
            sh.control(FrameType::WindowUpdate, Flags::NONE, id, delta);
        }
        return Poll::Ready(Ok(Some(b)));
    }
    if st.reset {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "yamux stream reset",
        )));
    }
    if st.remote_fin {
        return Poll::Ready(Ok(None));
    }
    st.read_waker = Some(cx.waker().clone());
    Poll::Pending
}

/// Sends as much of `data` as the window allows; returns the bytes taken (removed from `data`).
fn poll_send(
    sh: &Shared,
    s: &StreamShared,
    id: u32,
    fin_sent: bool,
    cx: &mut Context<'_>,
    data: &mut Bytes,
) -> Poll<io::Result<usize>> {
    if fin_sent {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "stream closed",
        )));
    }
    if sh.closed.load(Ordering::Acquire) {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "session closed",
        )));
    }
    if sh.queued.load(Ordering::Acquire) >= DEFAULT_WRITE_HIGH_WATER {
        lock(&sh.write_waiters).push(cx.waker().clone());
        // re-check to avoid a lost wake-up
        if sh.queued.load(Ordering::Acquire) >= DEFAULT_WRITE_HIGH_WATER
            && !sh.closed.load(Ordering::Acquire)
        {
            return Poll::Pending;
        }
    }
    let n = {
        let mut st = lock(&s.st);
        if st.reset {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "yamux stream reset",
            )));
        }
        if st.send_window == 0 {
            st.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = data
            .len()
            .min(st.send_window as usize)
            .min(DEFAULT_MAX_FRAME_DATA);
        st.send_window -= n as u32;
        n
    };
    let body = data.split_to(n);
    sh.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    sh.send(
        Header::new(FrameType::Data, Flags::NONE, id, n as u32),
        body,
    );
    Poll::Ready(Ok(n))
}
