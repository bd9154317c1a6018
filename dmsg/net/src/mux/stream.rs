//! Stream handles of a [`Session`](super::Session): [`MuxStream`] and its halves. Every read,
//! write and close is one call into the pure session under the session lock; the task waits on
//! the stream's wakers (or the session's write waiters) when the session says so.
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use dmsg_proto::mux::{Credit, Recv, StreamId, StreamMux};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Inner, Shared};
use crate::defaults::DEFAULT_MAX_FRAME_DATA;

/// The `io::Error` a stream read or write fails with.
fn io_error(e: dmsg_proto::mux::StreamError) -> io::Error {
    use dmsg_proto::mux::StreamError as E;
    match e {
        E::SessionClosed => io::Error::new(io::ErrorKind::ConnectionReset, "session closed"),
        E::Reset(_) => io::Error::new(io::ErrorKind::ConnectionReset, "yamux stream reset"),
        _ => io::Error::new(io::ErrorKind::BrokenPipe, "stream closed"),
    }
}

/// The one send check: `Ready(window)` once the stream's send window holds at least
/// `min.max(1)` bytes and the session's queue is below its high-water mark; otherwise the task
/// waits for a window update or for the writer to drain the queue.
fn poll_credit(
    g: &mut Inner,
    id: StreamId,
    cx: &Context<'_>,
    min: usize,
) -> Poll<io::Result<usize>> {
    match g.proto.send_credit(id) {
        Ok(Credit::Window(w)) if w as usize >= min.max(1) => Poll::Ready(Ok(w as usize)),
        Ok(Credit::Window(_)) => {
            g.wakers.entry(id).or_default().write = Some(cx.waker().clone());
            Poll::Pending
        }
        Ok(Credit::QueueFull) => {
            if !g.write_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                g.write_waiters.push_back(cx.waker().clone());
            }
            Poll::Pending
        }
        Err(e) => Poll::Ready(Err(io_error(e))),
    }
}

/// Sends as much of `data` as the window allows; returns the bytes taken (removed from `data`).
/// Never takes part of `data` and then returns `Pending`.
fn poll_send(
    sh: &Shared,
    id: StreamId,
    cx: &mut Context<'_>,
    data: &mut Bytes,
) -> Poll<io::Result<usize>> {
    let mut g = sh.lock();
    match poll_credit(&mut g, id, cx, 1) {
        Poll::Ready(Ok(_)) => {}
        other => return other,
    }
    let r = g.proto.send(id, data);
    sh.drive(&mut g);
    Poll::Ready(r.map_err(io_error))
}

fn poll_chunk(
    sh: &Shared,
    id: StreamId,
    cur: &mut Bytes,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Option<Bytes>>> {
    if !cur.is_empty() {
        return Poll::Ready(Ok(Some(std::mem::take(cur))));
    }
    let mut g = sh.lock();
    match g.proto.recv(id) {
        Ok(Recv::Data(b)) => {
            // Reading may have granted the peer more window.
            sh.drive(&mut g);
            Poll::Ready(Ok(Some(b)))
        }
        Ok(Recv::Finished) => Poll::Ready(Ok(None)),
        Ok(Recv::Blocked) => {
            g.wakers.entry(id).or_default().read = Some(cx.waker().clone());
            Poll::Pending
        }
        Err(e) => Poll::Ready(Err(io_error(e))),
    }
}

/// One yamux stream: an async byte stream, plus chunk-level `recv_chunk`/`send_chunk` for
/// zero-copy relaying. Dropping it half-closes (FIN) if not already closed.
pub struct MuxStream {
    sh: Arc<Shared>,
    id: StreamId,
    cur: Bytes,
}

impl std::fmt::Debug for MuxStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxStream").field("id", &self.id).finish()
    }
}

impl MuxStream {
    pub(super) fn new(sh: Arc<Shared>, id: StreamId) -> MuxStream {
        MuxStream {
            sh,
            id,
            cur: Bytes::new(),
        }
    }

    /// The yamux stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Resets the stream (RST, unless we already sent FIN) and forgets it.
    pub fn reset(self) {
        let mut g = self.sh.lock();
        g.proto.reset(self.id);
        g.wakers.remove(&self.id);
        self.sh.drive(&mut g);
    }

    /// Polls the next received chunk. `Ok(None)` at FIN, error on reset/closed session.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        poll_chunk(&self.sh, self.id, &mut self.cur, cx)
    }

    /// Receives the next chunk; `None` at FIN.
    pub async fn recv_chunk(&mut self) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// Splits into a receiving and a sending half (for splicing).
    pub fn halves(&mut self) -> (RecvHalf<'_>, SendHalf<'_>) {
        (
            RecvHalf {
                sh: &self.sh,
                id: self.id,
                cur: &mut self.cur,
            },
            SendHalf {
                sh: &self.sh,
                id: self.id,
            },
        )
    }

    /// Sends as much of `data` as the window allows, removing it from `data`.
    pub fn poll_send_pub(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        poll_send(&self.sh, self.id, cx, data)
    }

    /// Sends a whole chunk (waits for window as needed).
    pub async fn send_chunk(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            std::future::poll_fn(|cx| poll_send(&self.sh, self.id, cx, &mut data)).await?;
        }
        Ok(())
    }

    /// Waits until the stream's send window holds at least `min` bytes and the session's
    /// queue is below its high-water mark; returns the window. A writer that then sends at most
    /// that much is not left holding bytes it has accepted but cannot send (it is the check
    /// every send makes).
    pub fn poll_send_window(
        &mut self,
        cx: &mut Context<'_>,
        min: usize,
    ) -> Poll<io::Result<usize>> {
        poll_credit(&mut self.sh.lock(), self.id, cx, min)
    }

    /// Half-closes the stream (FIN).
    pub fn close_write(&mut self) {
        let mut g = self.sh.lock();
        g.proto.close_write(self.id);
        self.sh.drive(&mut g);
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        let mut g = self.sh.lock();
        g.proto.close_write(self.id);
        // Nobody reads any more: forget the stream so its buffer is freed.
        g.proto.forget(self.id);
        g.wakers.remove(&self.id);
        self.sh.drive(&mut g);
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
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let take = buf.len().min(DEFAULT_MAX_FRAME_DATA);
        let mut data = Bytes::copy_from_slice(&buf[..take]);
        // poll_send never takes part of `data` and then returns Pending.
        poll_send(&self.sh, self.id, cx, &mut data)
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
    id: StreamId,
    cur: &'a mut Bytes,
}

impl RecvHalf<'_> {
    /// Receives the next chunk; `None` at FIN.
    pub async fn recv_chunk(&mut self) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| poll_chunk(self.sh, self.id, self.cur, cx)).await
    }
}

/// The sending half of a [`MuxStream`].
pub struct SendHalf<'a> {
    sh: &'a Arc<Shared>,
    id: StreamId,
}

impl SendHalf<'_> {
    /// Sends a whole chunk (waits for window as needed).
    pub async fn send_chunk(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            std::future::poll_fn(|cx| poll_send(self.sh, self.id, cx, &mut data)).await?;
        }
        Ok(())
    }
}
