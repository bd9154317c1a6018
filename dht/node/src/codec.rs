//! libp2p request-response codec of `/skymesh/get/1`, the one-round-trip read protocol served
//! by every node (full nodes are the ones asked first).
//!
//! The byte layout, limits and decoders are [`itemsync::get`]'s (pure, with a hex snapshot);
//! this file only moves bytes ([`crate::framing`]): one request and one response per stream,
//! the writer closes its side after the message, each side reads to EOF with a hard limit. A
//! message that does not decode or is over the limit is an `io::ErrorKind::InvalidData` error.
//!
//! Nothing in a response is trusted: the reader checks every item against the target it asked
//! for and verifies the signature before use ([`crate::ItemStore::check`]).
use std::io;

use futures::{AsyncRead, AsyncWrite};
use libp2p::StreamProtocol;

use crate::framing::{read_limited, write_and_close};

pub use itemsync::get::{
    MAX_ITEMS_PER_RESPONSE, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, Request, Response,
    encode_request,
};

/// Protocol id of the read protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/skymesh/get/1");

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn over_limit(limit: usize) -> io::Error {
    invalid(format!("message over {limit} bytes"))
}

/// Decodes a request ([`itemsync::get::decode_request`], errors as `InvalidData`).
pub fn decode_request(b: &[u8]) -> io::Result<Request> {
    itemsync::get::decode_request(b).map_err(invalid)
}

/// Encodes a response; fails when it would exceed the limits.
pub fn encode_response(res: &Response) -> io::Result<Vec<u8>> {
    itemsync::get::encode_response(res).map_err(invalid)
}

/// Decodes a response ([`itemsync::get::decode_response`], errors as `InvalidData`).
pub fn decode_response(b: &[u8]) -> io::Result<Response> {
    itemsync::get::decode_response(b).map_err(invalid)
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
        decode_request(&read_limited(io, MAX_REQUEST_BYTES, over_limit).await?)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode_response(&read_limited(io, MAX_RESPONSE_BYTES, over_limit).await?)
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
        write_and_close(io, &encode_request(&req)).await
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
        write_and_close(io, &encode_response(&res)?).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn errors_are_invalid_data() {
        for e in [
            decode_request(&[0x01, 1, 2]).unwrap_err(),
            decode_response(&[0x00, 0]).unwrap_err(),
            encode_response(&Response::Items(vec![
                Vec::new();
                MAX_ITEMS_PER_RESPONSE + 1
            ]))
            .unwrap_err(),
        ] {
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
        assert_eq!(
            decode_response(&encode_response(&Response::Found(vec![1])).unwrap()).unwrap(),
            Response::Found(vec![1])
        );
    }

    // The codec's own tests from before the layout moved to `itemsync::get` (which has the hex
    // snapshots), kept verbatim against the `io::Result` wrappers.
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
