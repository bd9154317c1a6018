//! DMSG streams: the signed request/response objects on a fresh yamux stream (sealed with the
//! session keys, spec §4.1) and then end-to-end KK transport records (spec §4.6).
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use dmsg_proto::noise::TransportKeys;
use dmsg_proto::record::{LEN_PREFIX, MAX_FRAME_BODY, MAX_PLAINTEXT, Opener, ReplayPolicy, Sealer};
use dmsg_proto::stream::{Addr, SignedObject};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::StreamError;
use crate::mux::MuxStream;
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
pub struct DmsgStream {
    ms: MuxStream,
    sealer: Sealer,
    opener: Opener,
    rbuf: BytesMut,
    plain: Vec<u8>,
    plain_pos: usize,
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

/// Most plaintext one `poll_write` call seals (16 records).
const WRITE_CHUNK: usize = 16 * MAX_PLAINTEXT;

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
            rbuf: BytesMut::from(&initial[..]),
            plain: Vec::new(),
            plain_pos: 0,
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
}

impl AsyncRead for DmsgStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.plain_pos < this.plain.len() {
                let n = (this.plain.len() - this.plain_pos).min(buf.remaining());
                buf.put_slice(&this.plain[this.plain_pos..this.plain_pos + n]);
                this.plain_pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.rbuf.len() >= LEN_PREFIX {
                let len = usize::from(u16::from_be_bytes([this.rbuf[0], this.rbuf[1]]));
                if len > MAX_FRAME_BODY {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        StreamError::FrameTooLong { len },
                    )));
                }
                if this.rbuf.len() >= LEN_PREFIX + len {
                    this.plain.clear();
                    this.plain_pos = 0;
                    let r = this
                        .opener
                        .open_into(&this.rbuf[LEN_PREFIX..LEN_PREFIX + len], &mut this.plain);
                    this.rbuf.advance(LEN_PREFIX + len);
                    if let Err(e) = r {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            StreamError::Record(e),
                        )));
                    }
                    continue;
                }
            }
            match this.ms.poll_chunk(cx) {
                Poll::Ready(Ok(Some(b))) => {
                    if this.rbuf.is_empty() {
                        this.rbuf = BytesMut::from(&b[..]);
                    } else {
                        this.rbuf.extend_from_slice(&b);
                    }
                }
                Poll::Ready(Ok(None)) => return Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
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
        let n = buf.len().min(WRITE_CHUNK);
        let mut out = Vec::with_capacity(n + (n / MAX_PLAINTEXT + 1) * 26);
        this.sealer
            .seal_write(&buf[..n], &mut out)
            .map_err(|e| io::Error::other(StreamError::Record(e)))?;
        this.out = Bytes::from(out);
        // Start sending now; what does not fit waits for the next write or flush.
        let _ = this.poll_drain(cx);
        Poll::Ready(Ok(n))
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
