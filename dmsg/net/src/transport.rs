//! The only socket code: TCP connect/accept → Noise XK upgrade → yamux or smux session on the
//! plain TCP connection (spec §3).
//!
//! The multiplexer is chosen out of band (spec §3 item 7): a client runs its
//! [`MuxConfig::protocol`] (and says `"protocol":"smux"` in its discovery entry when it is
//! smux); a server, right after the handshake, asks a chooser for the client's key
//! ([`accept_choosing`]; the DMSG server looks the client's entry up, [`entry_protocol`]).
//!
//! Handshake messages are `u16 BE length ‖ message` frames. The server reads like the
//! reference's buffered reader: bytes that arrive behind message 3 in the same read mean a client
//! pipelined yamux data into the handshake, and the session is dropped
//! ([`SessionError::ExtraBytes`], reference error 203). To never trip that check itself, our
//! client writes nothing after message 3 until the server's first frame arrives (our server pings
//! right after the handshake) or [`DEFAULT_POST_HANDSHAKE_WAIT`] has passed (a Go server sends
//! nothing first).
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dmsg_proto::noise::{HandshakeState, Pattern, Role, TransportKeys};
use dmsg_proto::record::{MAX_FRAME_BODY, Opener, ReplayPolicy, Sealer};
use keys::{PubKey, SecKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::defaults::*;
use crate::discovery::Discovery;
use crate::error::SessionError;
use crate::mux::{MuxConfig, Protocol, Session, Side};

/// Session-level record keys: stream request/response objects are sealed with these. One send
/// counter per session, shared by all its streams (spec §4.1).
pub struct SessionCrypto {
    /// Seals objects we send.
    pub sealer: Mutex<Sealer>,
    /// Opens objects we receive ([`ReplayPolicy::Window`]: replays are refused).
    pub opener: Mutex<Opener>,
}

impl SessionCrypto {
    /// Keys for both directions of a session.
    pub fn new(k: &TransportKeys) -> SessionCrypto {
        SessionCrypto {
            sealer: Mutex::new(Sealer::new(&k.send)),
            opener: Mutex::new(Opener::new(&k.recv, ReplayPolicy::Window)),
        }
    }
}

/// An established session: the remote key, the yamux session and the object keys.
pub struct Established {
    /// The peer's static key.
    pub remote: PubKey,
    /// The remote socket address.
    pub addr: SocketAddr,
    /// The yamux session.
    pub session: Session,
    /// Object keys.
    pub crypto: SessionCrypto,
}

fn io_err(addr: &str) -> impl FnOnce(std::io::Error) -> SessionError + '_ {
    move |source| SessionError::Io {
        addr: addr.to_string(),
        source,
    }
}

async fn write_msg(tcp: &mut TcpStream, msg: &[u8], addr: &str) -> Result<(), SessionError> {
    let mut out = Vec::with_capacity(2 + msg.len());
    dmsg_proto::record::write_frame(msg, &mut out).map_err(|_| SessionError::BadFrame {
        addr: addr.to_string(),
        len: msg.len(),
    })?;
    tcp.write_all(&out).await.map_err(io_err(addr))
}

/// Reads one frame, keeping surplus bytes in `buf` (so the caller can tell whether the peer sent
/// more than one frame in a row).
async fn read_msg(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    addr: &str,
) -> Result<Bytes, SessionError> {
    loop {
        if buf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if len > MAX_FRAME_BODY || len == 0 {
                return Err(SessionError::BadFrame {
                    addr: addr.to_string(),
                    len,
                });
            }
            if buf.len() >= 2 + len {
                let mut f = buf.split_to(2 + len);
                return Ok(f.split_off(2).freeze());
            }
        }
        buf.reserve(4096);
        let n = tcp.read_buf(buf).await.map_err(io_err(addr))?;
        if n == 0 {
            return Err(SessionError::Io {
                addr: addr.to_string(),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
    }
}

/// Client side of the handshake only: TCP connect to `addr`, XK as initiator towards
/// `server_pk`. Returns the socket, the keys and any bytes the server sent behind message 2.
/// (Used by [`connect`]; public for tests that speak raw yamux.)
pub async fn handshake_client(
    addr: &str,
    sk: &SecKey,
    server_pk: PubKey,
) -> Result<(TcpStream, TransportKeys, Bytes), SessionError> {
    let fut = async {
        let mut tcp = TcpStream::connect(addr).await.map_err(io_err(addr))?;
        let _ = tcp.set_nodelay(true);
        let hs_err = |source| SessionError::Handshake {
            addr: addr.to_string(),
            source,
        };
        let mut hs = HandshakeState::new(Pattern::XK, Role::Initiator, sk.clone(), Some(server_pk))
            .map_err(hs_err)?;
        let m1 = hs.write_message().map_err(hs_err)?;
        write_msg(&mut tcp, &m1, addr).await?;
        let mut buf = BytesMut::new();
        let m2 = read_msg(&mut tcp, &mut buf, addr).await?;
        hs.read_message(&m2).map_err(hs_err)?;
        let m3 = hs.write_message().map_err(hs_err)?;
        write_msg(&mut tcp, &m3, addr).await?;
        let keys = hs.into_transport().map_err(hs_err)?;
        Ok::<_, SessionError>((tcp, keys, buf.freeze()))
    };
    tokio::time::timeout(DEFAULT_HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| SessionError::HandshakeTimeout {
            addr: addr.to_string(),
        })?
}

/// Client side: TCP connect to `addr`, XK as initiator towards `server_pk`, then a client
/// session of `cfg.protocol` (for smux, our discovery entry must already say so).
pub async fn connect(
    addr: &str,
    sk: &SecKey,
    server_pk: PubKey,
    cfg: MuxConfig,
) -> Result<Established, SessionError> {
    let (tcp, keys, surplus) = handshake_client(addr, sk, server_pk).await?;
    let peer = tcp.peer_addr().map_err(io_err(addr))?;
    // Do not pipeline behind message 3 (see the module doc).
    let _ = tokio::time::timeout(DEFAULT_POST_HANDSHAKE_WAIT, tcp.readable()).await;
    let (rd, wr) = tcp.into_split();
    let session = Session::new(Side::Client, rd, wr, surplus, cfg);
    Ok(Established {
        remote: server_pk,
        addr: peer,
        session,
        crypto: SessionCrypto::new(&keys),
    })
}

/// The multiplexer a client speaks according to its discovery entry: smux iff the entry says
/// `"protocol":"smux"`; yamux when it says anything else, has no entry, or discovery does not
/// answer within [`DEFAULT_PROTOCOL_LOOKUP_TIMEOUT`] (as the reference's `entryProtocol`).
pub async fn entry_protocol(disc: &dyn Discovery, client: PubKey) -> Protocol {
    match tokio::time::timeout(DEFAULT_PROTOCOL_LOOKUP_TIMEOUT, disc.entry(client)).await {
        Ok(Ok(e)) => Protocol::from_entry(&e.protocol),
        _ => Protocol::Yamux,
    }
}

/// Server side: XK as responder on an accepted connection, then a server session of
/// `cfg.protocol`. Pings the client at once (which also tells our client it may start
/// writing).
pub async fn accept(
    tcp: TcpStream,
    sk: &SecKey,
    timeout: Duration,
    cfg: MuxConfig,
) -> Result<Established, SessionError> {
    let protocol = cfg.protocol;
    accept_choosing(tcp, sk, timeout, cfg, move |_| std::future::ready(protocol)).await
}

/// [`accept`], with the multiplexer chosen by `choose` from the client's key once the
/// handshake has proven it. The client's bytes wait in the socket meanwhile.
pub async fn accept_choosing<F, Fut>(
    mut tcp: TcpStream,
    sk: &SecKey,
    timeout: Duration,
    cfg: MuxConfig,
    choose: F,
) -> Result<Established, SessionError>
where
    F: FnOnce(PubKey) -> Fut,
    Fut: std::future::Future<Output = Protocol>,
{
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().map_err(|source| SessionError::Io {
        addr: "?".into(),
        source,
    })?;
    let addr = peer.to_string();
    let fut = async {
        let hs_err = |source| SessionError::Handshake {
            addr: addr.clone(),
            source,
        };
        let mut hs =
            HandshakeState::new(Pattern::XK, Role::Responder, sk.clone(), None).map_err(hs_err)?;
        let mut buf = BytesMut::new();
        let m1 = read_msg(&mut tcp, &mut buf, &addr).await?;
        hs.read_message(&m1).map_err(hs_err)?;
        let m2 = hs.write_message().map_err(hs_err)?;
        write_msg(&mut tcp, &m2, &addr).await?;
        let m3 = read_msg(&mut tcp, &mut buf, &addr).await?;
        hs.read_message(&m3).map_err(hs_err)?;
        if !buf.is_empty() {
            return Err(SessionError::ExtraBytes { addr: addr.clone() });
        }
        hs.into_transport().map_err(hs_err)
    };
    let keys = tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| SessionError::HandshakeTimeout { addr: addr.clone() })??;
    let protocol = choose(keys.remote_static).await;
    let (rd, wr) = tcp.into_split();
    let session = Session::new(
        Side::Server,
        rd,
        wr,
        Bytes::new(),
        cfg.with_protocol(protocol),
    );
    // yamux: a ping; smux: a NOP (it has no ping frame).
    session.ping_nowait();
    Ok(Established {
        remote: keys.remote_static,
        addr: peer,
        session,
        crypto: SessionCrypto::new(&keys),
    })
}
