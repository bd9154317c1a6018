//! PROXY protocol (HAProxy v1 text and v2 binary) in front of a DMSG session, as the reference
//! server's go-proxyproto listener accepts it (spec §3 item 1): an optional header before the
//! Noise handshake, at most 200 ms to arrive; when the first byte is neither `P` (v1) nor `\r`
//! (v2) no header is expected. A malformed header closes that connection only.
//!
//! [`parse`] is pure (bytes in, a verdict out); [`read_header`] peeks at a socket with it and
//! consumes exactly the header, so the handshake bytes behind it stay in the socket.
//!
//! Byte layouts (haproxy `proxy-protocol.txt`):
//! * v1: `PROXY TCP4|TCP6|UNKNOWN SRC DST SPORT DPORT\r\n`, at most 107 bytes.
//! * v2: signature `0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A`, version/command (`0x21` PROXY,
//!   `0x20` LOCAL), family/transport (`0x11` TCP4, `0x21` TCP6, …), u16 BE length, then the
//!   addresses (IPv4: src 4, dst 4, sport 2, dport 2; IPv6: 16, 16, 2, 2) and optional TLVs.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How long the header may take to arrive (the reference's go-proxyproto ReadHeaderTimeout).
pub const HEADER_TIMEOUT: Duration = Duration::from_millis(200);
/// Longest v1 header (haproxy spec).
pub const V1_MAX: usize = 107;
/// Longest v2 header we accept (16-byte prefix + addresses + TLVs); haproxy recommends
/// reading at most 536 bytes.
pub const V2_MAX: usize = 536;
/// The v2 signature.
pub const V2_SIG: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Whether a server accepts, requires or ignores PROXY headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// Never look for a header (bytes starting with `P`/`\r` go to the handshake).
    Off,
    /// A header is used when present (the reference's behaviour).
    #[default]
    Optional,
    /// Connections without a valid header are closed.
    Required,
}

/// What [`parse`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed to decide.
    Incomplete,
    /// The bytes do not start a header (first byte neither `P` nor `\r`).
    NoHeader,
    /// A complete header of `len` bytes; `source` is the client's address it carries (`None`
    /// for v1 `UNKNOWN`, v2 `LOCAL` and non-IP families).
    Header {
        /// Header length in bytes.
        len: usize,
        /// The original client address.
        source: Option<SocketAddr>,
    },
}

/// Why a header is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// Not a v1 or v2 header although it starts like one.
    #[error("malformed PROXY header: {what}")]
    Malformed {
        /// What is wrong.
        what: &'static str,
    },
    /// Longer than [`V1_MAX`] / [`V2_MAX`].
    #[error("PROXY header longer than {max} bytes")]
    TooLong {
        /// The bound.
        max: usize,
    },
    /// [`ProxyMode::Required`] and none arrived.
    #[error("PROXY header required but none sent")]
    Missing,
    /// Nothing complete within [`HEADER_TIMEOUT`].
    #[error("PROXY header did not arrive within {HEADER_TIMEOUT:?}")]
    Timeout,
    /// Socket error while peeking.
    #[error("socket error reading the PROXY header: {0}")]
    Io(std::io::ErrorKind),
}

fn bad(what: &'static str) -> ProxyError {
    ProxyError::Malformed { what }
}

/// Decides whether `buf` (the first bytes of a connection) starts with a PROXY header.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Ok(Parsed::NoHeader),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    const PREFIX: &[u8] = b"PROXY ";
    let n = buf.len().min(PREFIX.len());
    if buf[..n] != PREFIX[..n] {
        return Err(bad("v1 must start with \"PROXY \""));
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::TooLong { max: V1_MAX })
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let len = end + 2;
    if len > V1_MAX {
        return Err(ProxyError::TooLong { max: V1_MAX });
    }
    let line = std::str::from_utf8(&buf[PREFIX.len()..end]).map_err(|_| bad("v1 not ASCII"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let source = match parts.as_slice() {
        ["UNKNOWN", ..] => None,
        [proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let src: IpAddr = src.parse().map_err(|_| bad("v1 source address"))?;
            let dst: IpAddr = dst.parse().map_err(|_| bad("v1 destination address"))?;
            let v4 = *proto == "TCP4";
            if src.is_ipv4() != v4 || dst.is_ipv4() != v4 {
                return Err(bad("v1 address family"));
            }
            let sport: u16 = parse_port(sport)?;
            parse_port(dport)?;
            Some(SocketAddr::new(src, sport))
        }
        _ => return Err(bad("v1 fields")),
    };
    Ok(Parsed::Header { len, source })
}

fn parse_port(s: &str) -> Result<u16, ProxyError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("v1 port"));
    }
    s.parse().map_err(|_| bad("v1 port"))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let n = buf.len().min(V2_SIG.len());
    if buf[..n] != V2_SIG[..n] {
        return Err(bad("v2 signature"));
    }
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(bad("v2 version"));
    }
    let local = match ver_cmd & 0x0F {
        0 => true,
        1 => false,
        _ => return Err(bad("v2 command")),
    };
    let fam = buf[13];
    let addr_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + addr_len;
    if len > V2_MAX {
        return Err(ProxyError::TooLong { max: V2_MAX });
    }
    if buf.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let a = &buf[16..len];
    let source = if local {
        None
    } else {
        match fam {
            0x11 | 0x12 => {
                if a.len() < 12 {
                    return Err(bad("v2 IPv4 addresses too short"));
                }
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
            }
            0x21 | 0x22 => {
                if a.len() < 36 {
                    return Err(bad("v2 IPv6 addresses too short"));
                }
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[..16]);
                let ip = Ipv6Addr::from(o);
                Some(SocketAddr::new(
                    ip.into(),
                    u16::from_be_bytes([a[32], a[33]]),
                ))
            }
            // UNSPEC and UNIX sockets: no IP address to report.
            0x00 | 0x31 | 0x32 => None,
            _ => return Err(bad("v2 family")),
        }
    };
    Ok(Parsed::Header { len, source })
}

/// Reads an optional PROXY header from `tcp` per `mode`, consuming exactly its bytes. Returns the
/// client address it carries (`None`: no header, or one without an address).
pub async fn read_header(
    tcp: &mut tokio::net::TcpStream,
    mode: ProxyMode,
) -> Result<Option<SocketAddr>, ProxyError> {
    use tokio::io::AsyncReadExt;
    if mode == ProxyMode::Off {
        return Ok(None);
    }
    let mut seen = false;
    let fut = async {
        let mut buf = vec![0u8; V2_MAX];
        loop {
            let n = tcp
                .peek(&mut buf)
                .await
                .map_err(|e| ProxyError::Io(e.kind()))?;
            if n == 0 {
                return Err(ProxyError::Io(std::io::ErrorKind::UnexpectedEof));
            }
            seen = true;
            match parse(&buf[..n])? {
                Parsed::NoHeader => return Ok(None),
                Parsed::Header { len, source } => {
                    tcp.read_exact(&mut buf[..len])
                        .await
                        .map_err(|e| ProxyError::Io(e.kind()))?;
                    return Ok(Some(source));
                }
                // peek returns at once while bytes are pending: wait for more to arrive.
                Parsed::Incomplete => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    match tokio::time::timeout(HEADER_TIMEOUT, fut).await {
        Ok(Ok(Some(source))) => Ok(source),
        Ok(Ok(None)) if mode == ProxyMode::Required => Err(ProxyError::Missing),
        Ok(Ok(None)) => Ok(None),
        Ok(Err(e)) => Err(e),
        // Nothing at all within the deadline: a slow client, not a header (it still has the
        // handshake's own 5 s); a header that started but did not finish is refused.
        Err(_) if !seen && mode == ProxyMode::Optional => Ok(None),
        Err(_) => Err(ProxyError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v2(cmd: u8, fam: u8, addrs: &[u8]) -> Vec<u8> {
        let mut v = V2_SIG.to_vec();
        v.push(cmd);
        v.push(fam);
        v.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
        v.extend_from_slice(addrs);
        v
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let h = b"PROXY TCP4 198.51.100.22 203.0.113.7 35646 8081\r\n";
        let mut buf = h.to_vec();
        buf.extend_from_slice(&[0x00, 0x31, 1, 2]); // the XK message behind it
        assert_eq!(
            parse(&buf).unwrap(),
            Parsed::Header {
                len: h.len(),
                source: Some("198.51.100.22:35646".parse().unwrap())
            }
        );
        let h6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 8081\r\n";
        assert_eq!(
            parse(h6).unwrap(),
            Parsed::Header {
                len: h6.len(),
                source: Some("[2001:db8::1]:4000".parse().unwrap())
            }
        );
        let u = b"PROXY UNKNOWN\r\n";
        assert_eq!(
            parse(u).unwrap(),
            Parsed::Header {
                len: u.len(),
                source: None
            }
        );
        assert_eq!(parse(b"PROXY TCP4 1.2").unwrap(), Parsed::Incomplete);
        assert_eq!(parse(b"PRO").unwrap(), Parsed::Incomplete);
    }

    #[test]
    fn v2_hex_snapshot_ipv4_and_local() {
        // 0d0a0d0a000d0a515549540a  signature
        // 21                        version 2, command PROXY
        // 11                        AF_INET, STREAM
        // 000c                      12 bytes of addresses
        // c6336416 cb007107         src 198.51.100.22, dst 203.0.113.7
        // 8b3e 1f91                 sport 35646, dport 8081
        let h = hex::decode("0d0a0d0a000d0a515549540a2111000cc6336416cb0071078b3e1f91").unwrap();
        assert_eq!(
            parse(&h).unwrap(),
            Parsed::Header {
                len: 28,
                source: Some("198.51.100.22:35646".parse().unwrap())
            }
        );
        assert_eq!(h, v2(0x21, 0x11, &h[16..]));
        let local = v2(0x20, 0x00, &[]);
        assert_eq!(
            parse(&local).unwrap(),
            Parsed::Header {
                len: 16,
                source: None
            }
        );
        assert_eq!(parse(&h[..20]).unwrap(), Parsed::Incomplete);
    }

    #[test]
    fn no_header_and_malformed() {
        // An XK message 1 starts with its length prefix 00 31.
        assert_eq!(parse(&[0x00, 0x31]).unwrap(), Parsed::NoHeader);
        assert_eq!(parse(b"GET / HTTP/1.1").unwrap(), Parsed::NoHeader);
        assert!(matches!(parse(b"PROXZ"), Err(ProxyError::Malformed { .. })));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"),
            Err(ProxyError::Malformed { .. })
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 ::1 5.6.7.8 1 1\r\n"),
            Err(ProxyError::Malformed { .. })
        ));
        assert!(matches!(
            parse(&[b'P'; 200]),
            Err(ProxyError::Malformed { .. })
        ));
        let long = [b"PROXY ".as_slice(), &[b'A'; 120]].concat();
        assert!(matches!(parse(&long), Err(ProxyError::TooLong { .. })));
        assert!(matches!(
            parse(&v2(0x31, 0x11, &[0; 12])),
            Err(ProxyError::Malformed { .. })
        ));
        assert!(matches!(
            parse(&v2(0x21, 0x11, &[0; 4])),
            Err(ProxyError::Malformed { .. })
        ));
        assert!(matches!(
            parse(b"\r\n\r\nX"),
            Err(ProxyError::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_never_overreads(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(Parsed::Header { len, .. }) = parse(&buf) {
                prop_assert!(len <= buf.len());
            }
        }

        #[test]
        fn v1_round_trip(a in any::<[u8; 4]>(), b in any::<[u8; 4]>(), sp in any::<u16>(), dp in any::<u16>()) {
            let (a, b) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
            let h = format!("PROXY TCP4 {a} {b} {sp} {dp}\r\n");
            let got = parse(h.as_bytes()).unwrap();
            prop_assert_eq!(got, Parsed::Header { len: h.len(), source: Some(SocketAddr::new(a.into(), sp)) });
        }
    }
}
