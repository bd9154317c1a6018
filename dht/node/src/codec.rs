//! `/skymesh/get/1`: the one-round-trip read protocol served by every node (full nodes are the
//! ones asked first).
//!
//! One request and one response per stream (libp2p request-response); the writer closes its
//! side after the message, so each side reads to EOF with a hard byte limit.
//!
//! Request (at most [`MAX_REQUEST_BYTES`]):
//!
//! | bytes | content |
//! |---|---|
//! | 1 | kind: `0x01` Get, `0x02` FullNodes |
//! | 32 | target (Get only): SHA-256(pk ‖ salt) |
//!
//! Response (at most [`MAX_RESPONSE_BYTES`]):
//!
//! | bytes | content |
//! |---|---|
//! | 1 | kind: `0x00` NotFound, `0x01` Found, `0x02` Items, `0x03` Refused (rate limit) |
//! | 4 | Found: item length (u32 BE), then the encoded item |
//! | 2 | Items: count (u16 BE), then per item u32 BE length + encoded item |
//!
//! Nothing in a response is trusted: the reader checks every item against the target it asked
//! for and verifies the signature before use (see `records.rs`).
use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// Protocol id of the read protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/skymesh/get/1");

/// Largest request: kind byte plus a 32-byte target.
pub const MAX_REQUEST_BYTES: usize = 33;

/// Largest response: 1 MiB. A full `Items` answer is at most [`MAX_ITEMS_PER_RESPONSE`] adverts
/// of well under 1 KiB each; a single item is bounded by the item model's value limit (64 KiB).
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Most items in one `Items` response (adverts are small; 256 full nodes is far more than the
/// deployment has).
pub const MAX_ITEMS_PER_RESPONSE: usize = 256;

/// A read request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The item stored under this target, if any.
    Get([u8; 32]),
    /// The fresh `fullnode` adverts the responder holds.
    FullNodes,
}

/// A read response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Nothing stored under the target.
    NotFound,
    /// The encoded item (unverified until the reader checks it).
    Found(Vec<u8>),
    /// Encoded items (unverified).
    Items(Vec<Vec<u8>>),
    /// The responder refused the request (per-peer limit).
    Refused,
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Encodes a request.
pub fn encode_request(req: &Request) -> Vec<u8> {
    match req {
        Request::Get(t) => {
            let mut v = Vec::with_capacity(MAX_REQUEST_BYTES);
            v.push(0x01);
            v.extend_from_slice(t);
            v
        }
        Request::FullNodes => vec![0x02],
    }
}

/// Decodes a request.
pub fn decode_request(b: &[u8]) -> io::Result<Request> {
    match b.split_first() {
        Some((0x01, t)) => {
            let t: [u8; 32] = t.try_into().map_err(|_| invalid("bad target length"))?;
            Ok(Request::Get(t))
        }
        Some((0x02, [])) => Ok(Request::FullNodes),
        _ => Err(invalid("bad request")),
    }
}

fn put_len(v: &mut Vec<u8>, n: usize) -> io::Result<()> {
    let n = u32::try_from(n).map_err(|_| invalid("item too large"))?;
    v.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

/// Encodes a response; fails when it would exceed the limits.
pub fn encode_response(res: &Response) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    match res {
        Response::NotFound => v.push(0x00),
        Response::Found(item) => {
            v.push(0x01);
            put_len(&mut v, item.len())?;
            v.extend_from_slice(item);
        }
        Response::Items(items) => {
            if items.len() > MAX_ITEMS_PER_RESPONSE {
                return Err(invalid("too many items"));
            }
            v.push(0x02);
            let n = u16::try_from(items.len()).map_err(|_| invalid("too many items"))?;
            v.extend_from_slice(&n.to_be_bytes());
            for item in items {
                put_len(&mut v, item.len())?;
                v.extend_from_slice(item);
            }
        }
        Response::Refused => v.push(0x03),
    }
    if v.len() > MAX_RESPONSE_BYTES {
        return Err(invalid("response too large"));
    }
    Ok(v)
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
    if b.len() < n {
        return Err(invalid("truncated"));
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

fn take_len(b: &mut &[u8]) -> io::Result<usize> {
    let raw: [u8; 4] = take(b, 4)?.try_into().map_err(|_| invalid("truncated"))?;
    usize::try_from(u32::from_be_bytes(raw)).map_err(|_| invalid("length"))
}

/// Decodes a response.
pub fn decode_response(mut b: &[u8]) -> io::Result<Response> {
    let kind = take(&mut b, 1)?[0];
    let res = match kind {
        0x00 => Response::NotFound,
        0x01 => {
            let n = take_len(&mut b)?;
            Response::Found(take(&mut b, n)?.to_vec())
        }
        0x02 => {
            let raw: [u8; 2] = take(&mut b, 2)?
                .try_into()
                .map_err(|_| invalid("truncated"))?;
            let count = usize::from(u16::from_be_bytes(raw));
            if count > MAX_ITEMS_PER_RESPONSE {
                return Err(invalid("too many items"));
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let n = take_len(&mut b)?;
                items.push(take(&mut b, n)?.to_vec());
            }
            Response::Items(items)
        }
        0x03 => Response::Refused,
        _ => return Err(invalid("bad response kind")),
    };
    if !b.is_empty() {
        return Err(invalid("trailing bytes"));
    }
    Ok(res)
}

async fn read_limited<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    limit: usize,
) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    // One byte over the limit tells "too large" apart from "exactly at the limit".
    io.take(limit as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > limit {
        return Err(invalid("message over limit"));
    }
    Ok(buf)
}

/// The request-response codec for [`PROTOCOL`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GetCodec;

impl libp2p::request_response::Codec for GetCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode_request(&read_limited(io, MAX_REQUEST_BYTES).await?)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode_response(&read_limited(io, MAX_RESPONSE_BYTES).await?)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode_request(&req)).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode_response(&res)?).await?;
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips() {
        for req in [Request::Get([7; 32]), Request::FullNodes] {
            assert_eq!(decode_request(&encode_request(&req)).unwrap(), req);
        }
        for res in [
            Response::NotFound,
            Response::Refused,
            Response::Found(vec![1, 2, 3]),
            Response::Items(vec![vec![1], vec![], vec![9; 300]]),
        ] {
            assert_eq!(
                decode_response(&encode_response(&res).unwrap()).unwrap(),
                res
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode_request(&[0x01, 1, 2]).is_err());
        assert!(decode_request(&[0x02, 0]).is_err());
        assert!(decode_response(&[0x01, 0, 0, 0, 9, 1]).is_err());
        assert!(decode_response(&[0x00, 0]).is_err());
        assert!(decode_response(&[0x02, 0xff, 0xff]).is_err());
        assert!(decode_response(&[]).is_err());
    }
}
