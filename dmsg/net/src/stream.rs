//! DMSG streams: the signed request/response objects on a fresh yamux stream (sealed with the
//! session keys, spec §4.1) and then end-to-end KK transport records (spec §4.6).
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dmsg_proto::noise::TransportKeys;
use dmsg_proto::record::{
    LEN_PREFIX, MAX_FRAME, MAX_FRAME_BODY, MAX_PLAINTEXT, Opener, ReplayPolicy, Sealer,
    parse_record, sealed_len,
};
use dmsg_proto::stream::{Addr, SignedObject};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::StreamError;
use crate::mux::MuxStream;
use crate::mux::bufpool::POOL;
use crate::transport::SessionCrypto;

/// Seals `obj` as one record with the session keys and sends it on `ms`.
pub async fn write_object(
    ms: &mut MuxStream,
    crypto: &SessionCrypto,
    obj: &SignedObject,
) -> Result<(), StreamError> {
    let mut out = Vec::with_capacity(obj.as_bytes().len() + 32);
    crate::lock(&crypto.sealer)
        .seal_record(obj.as_bytes(), &mut out)
        .map_err(StreamError::Record)?;
    ms.send_chunk(Bytes::from(out))
        .await
        .map_err(|_| StreamError::SessionClosed)
}

/// Reads one object record from `ms` within `timeout`, opens it with the session keys and returns
/// the object plus any bytes that followed it (stream data sent right after a response).
pub async fn read_object(
    ms: &mut MuxStream,
    crypto: &SessionCrypto,
    timeout: Duration,
) -> Result<(SignedObject, Bytes), StreamError> {
    let fut = async {
        let mut buf = BytesMut::new();
        loop {
            if buf.len() >= LEN_PREFIX {
                let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                if len > MAX_FRAME_BODY {
                    return Err(StreamError::FrameTooLong { len });
                }
                if len == 0 {
                    // A real object always has a non-zero length: this is the ping marker.
                    return Err(StreamError::Ping);
                }
                if buf.len() >= LEN_PREFIX + len {
                    let frame = buf.split_to(LEN_PREFIX + len);
                    let pt = crate::lock(&crypto.opener)
                        .open(&frame[LEN_PREFIX..])
                        .map_err(StreamError::Record)?;
                    let obj = SignedObject::from_bytes(&pt).map_err(StreamError::Object)?;
                    return Ok((obj, buf.freeze()));
                }
            }
            match ms.recv_chunk().await {
                Ok(Some(b)) => buf.extend_from_slice(&b),
                Ok(None) => return Err(StreamError::Eof),
                Err(_) => return Err(StreamError::Reset),
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| StreamError::Timeout)?
}

/// Releases a reserved DMSG port when dropped (so every close path frees it).
pub struct PortGuard {
    pub(crate) ports: std::sync::Weak<std::sync::Mutex<crate::client::PortTable>>,
    pub(crate) port: u16,
}

impl Drop for PortGuard {
    fn drop(&mut self) {
        if let Some(p) = self.ports.upgrade() {
            crate::lock(&p).release(self.port);
        }
    }
}

impl std::fmt::Debug for PortGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PortGuard({})", self.port)
    }
}

/// An end-to-end encrypted DMSG stream (KK records, ≤ 4096 bytes each) over a yamux stream.
/// Reads check strictly consecutive nonces ([`ReplayPolicy::Strict`]; Go writers always send
/// consecutive nonces), so a relay cannot drop or reorder records unnoticed.
///
/// Copies per byte: a write seals straight into the outgoing buffer (one copy, into a buffer
/// of the process's frame pool, `mux::bufpool`); a read decrypts each record straight into the
/// caller's buffer (one copy) when it fits, else into a one-record buffer. Records split across yamux frames are reassembled in
/// `partial` (at most one record, 4096 bytes).
pub struct DmsgStream {
    ms: MuxStream,
    sealer: Sealer,
    opener: Opener,
    /// Received bytes not yet consumed (one yamux data frame body).
    chunk: Bytes,
    /// The start of a record whose end has not arrived yet (≤ 4096 bytes).
    partial: BytesMut,
    /// Plaintext of a record that did not fit the caller's buffer (≤ 4070 bytes).
    plain: Vec<u8>,
    plain_pos: usize,
    /// A record error met after some plaintext was already returned: reported by the next read.
    failed: Option<StreamError>,
    /// Sealed records not yet handed to the mux (window or queue full).
    out: Bytes,
    local: Addr,
    remote: Addr,
    _port: Option<PortGuard>,
}

impl std::fmt::Debug for DmsgStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmsgStream")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// Most plaintext one `poll_write` call seals (16 records, one 64 KiB yamux frame).
const WRITE_CHUNK: usize = 16 * MAX_PLAINTEXT;

/// Plaintext bytes that fit in `window` bytes of records.
fn plaintext_within(window: usize) -> usize {
    let overhead = MAX_FRAME - MAX_PLAINTEXT;
    (window / MAX_FRAME) * MAX_PLAINTEXT + (window % MAX_FRAME).saturating_sub(overhead)
}

/// Where the next complete record body is.
enum Next {
    /// `chunk[LEN_PREFIX..LEN_PREFIX + len]`.
    InChunk(usize),
    /// `partial[LEN_PREFIX..LEN_PREFIX + len]` (then `partial` is exactly that record).
    InPartial(usize),
    /// More bytes are needed.
    NeedMore,
}

fn record_len(b: &[u8]) -> Result<Option<usize>, StreamError> {
    if b.len() < LEN_PREFIX {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
    if len > MAX_FRAME_BODY {
        return Err(StreamError::FrameTooLong { len });
    }
    Ok(Some(len))
}

fn invalid(e: StreamError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl DmsgStream {
    pub(crate) fn new(
        ms: MuxStream,
        keys: &TransportKeys,
        initial: Bytes,
        local: Addr,
        remote: Addr,
        port: Option<PortGuard>,
    ) -> DmsgStream {
        DmsgStream {
            ms,
            sealer: Sealer::new(&keys.send),
            opener: Opener::new(&keys.recv, ReplayPolicy::Strict),
            chunk: initial,
            partial: BytesMut::new(),
            plain: Vec::new(),
            plain_pos: 0,
            failed: None,
            out: Bytes::new(),
            local,
            remote,
            _port: port,
        }
    }

    /// Our address (key and port).
    pub fn local_addr(&self) -> Addr {
        self.local
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> Addr {
        self.remote
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let mut out = std::mem::take(&mut self.out);
            let r = self.ms.poll_send_pub(cx, &mut out);
            self.out = out;
            match r {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Finds the next complete record in `partial` + `chunk`, moving bytes into `partial` only
    /// when a record straddles two chunks.
    fn next_record(&mut self) -> Result<Next, StreamError> {
        if !self.partial.is_empty() {
            if self.partial.len() < LEN_PREFIX {
                let take = (LEN_PREFIX - self.partial.len()).min(self.chunk.len());
                self.partial.extend_from_slice(&self.chunk.split_to(take));
            }
            let Some(len) = record_len(&self.partial)? else {
                return Ok(Next::NeedMore);
            };
            let want = LEN_PREFIX + len - self.partial.len();
            let take = want.min(self.chunk.len());
            self.partial.extend_from_slice(&self.chunk.split_to(take));
            return Ok(if take == want {
                Next::InPartial(len)
            } else {
                Next::NeedMore
            });
        }
        match record_len(&self.chunk)? {
            Some(len) if self.chunk.len() >= LEN_PREFIX + len => Ok(Next::InChunk(len)),
            _ => {
                self.partial.extend_from_slice(&self.chunk);
                self.chunk.clear();
                Ok(Next::NeedMore)
            }
        }
    }
}

impl AsyncRead for DmsgStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.out.is_empty() {
            // Sealed bytes a write could not hand over (rare: see `poll_write`) leave whenever
            // the task runs, even if it now only reads.
            let _ = this.poll_drain(cx);
        }
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Err(invalid(e)));
        }
        let start_filled = buf.filled().len();
        if this.plain_pos < this.plain.len() {
            let n = (this.plain.len() - this.plain_pos).min(buf.remaining());
            buf.put_slice(&this.plain[this.plain_pos..this.plain_pos + n]);
            this.plain_pos += n;
            return Poll::Ready(Ok(()));
        }
        // Decrypt as many whole records as the caller's buffer takes.
        while buf.remaining() > 0 {
            let next = match this.next_record() {
                Ok(n) => n,
                Err(e) => return fail(this, buf, start_filled, e),
            };
            let (len, in_chunk) = match next {
                Next::InChunk(len) => (len, true),
                Next::InPartial(len) => (len, false),
                Next::NeedMore => {
                    if buf.filled().len() > start_filled {
                        return Poll::Ready(Ok(()));
                    }
                    match this.ms.poll_chunk(cx) {
                        Poll::Ready(Ok(Some(b))) => {
                            this.chunk = b;
                            continue;
                        }
                        // FIN (a partial record at the end is dropped, as before).
                        Poll::Ready(Ok(None)) => return Poll::Ready(Ok(())),
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            };
            let rec = if in_chunk {
                this.chunk.split_to(LEN_PREFIX + len)
            } else {
                std::mem::take(&mut this.partial).freeze()
            };
            let body = &rec[LEN_PREFIX..];
            let (nonce, ct, tag) = match parse_record(body) {
                Ok(p) => p,
                Err(e) => return fail(this, buf, start_filled, StreamError::Record(e)),
            };
            if ct.len() <= buf.remaining() {
                let at = buf.filled().len();
                buf.put_slice(ct);
                if let Err(e) = this
                    .opener
                    .open_in_place(nonce, &mut buf.filled_mut()[at..], &tag)
                {
                    buf.set_filled(at);
                    return fail(this, buf, start_filled, StreamError::Record(e));
                }
            } else {
                // Too big for what is left of the caller's buffer: keep the plaintext.
                this.plain.clear();
                this.plain_pos = 0;
                if let Err(e) = this.opener.open_into(body, &mut this.plain) {
                    return fail(this, buf, start_filled, StreamError::Record(e));
                }
                let n = this.plain.len().min(buf.remaining());
                buf.put_slice(&this.plain[..n]);
                this.plain_pos = n;
                return Poll::Ready(Ok(()));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Reports a record error now, or after the plaintext already placed in `buf` (so the caller
/// still gets every byte that authenticated before the bad record).
fn fail(
    this: &mut DmsgStream,
    buf: &ReadBuf<'_>,
    start_filled: usize,
    e: StreamError,
) -> Poll<io::Result<()>> {
    if buf.filled().len() > start_filled {
        this.failed = Some(e);
        Poll::Ready(Ok(()))
    } else {
        Poll::Ready(Err(invalid(e)))
    }
}

impl AsyncWrite for DmsgStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Seal only what the send window takes now, so a write that returns has handed its
        // bytes to the mux (a writer that goes on to read only must not leave sealed bytes
        // behind). Waits for at least one record's worth of window.
        let want = buf.len().min(WRITE_CHUNK);
        let window = match this
            .ms
            .poll_send_window(cx, sealed_len(want).min(MAX_FRAME))
        {
            Poll::Ready(Ok(w)) => w,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let n = want.min(plaintext_within(window)).max(1);
        // Sealed into a pooled buffer that goes back to the pool once the mux has written it:
        // a fresh 64 KiB allocation per write faulted its pages in again after every heap trim.
        let mut sealed = POOL.take(sealed_len(n));
        this.sealer
            .seal_write(&buf[..n], &mut sealed)
            .map_err(|e| io::Error::other(StreamError::Record(e)))?;
        this.out = POOL.freeze(sealed);
        // Fits the window; only a session queue filled by other streams meanwhile can hold
        // some back (then it leaves with the next read, write or flush).
        let _ = this.poll_drain(cx);
        Poll::Ready(Ok(n))
    }

    /// Seals from the first non-empty slice only (a short write is allowed). Saying that
    /// vectored writes are supported makes hyper queue body chunks as they are instead of
    /// copying them into one contiguous buffer first.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let buf = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        self.poll_write(cx, buf)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_drain(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_drain(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        self.ms.close_write();
        Poll::Ready(Ok(()))
    }
}
