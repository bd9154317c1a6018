//! libp2p request-response codec of `/skymesh/sync/1` (GetItems pages and full-node pushes).
//!
//! The byte layout, limits and decoders are [`itemsync::wire`]'s; this file only moves bytes
//! ([`crate::framing`]):
//! each side writes one message and closes its half, and a reader reads to EOF with a hard
//! limit ([`itemsync::wire::MAX_REQUEST_BYTES`] / [`itemsync::wire::MAX_RESPONSE_BYTES`], one
//! page of ≤ 4 MiB of items plus one item). A message over the limit or that does not decode is
//! an `io::ErrorKind::InvalidData` error: the node penalises the peer that sent it (see
//! [`is_malformed`]). Decoding runs in the connection's task, not in the swarm loop.
use std::io;

use futures::{AsyncRead, AsyncWrite};
use itemsync::wire::{self, Request, Response};
use libp2p::StreamProtocol;

use crate::framing::{read_limited, write_and_close};

/// Protocol id.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(wire::PROTOCOL_NAME);

/// Concurrent sync streams per connection: each may buffer one message of up to
/// [`wire::MAX_RESPONSE_BYTES`] (~8 MiB), so 8 streams bound a connection at ~64 MiB; a puller
/// has one page in flight and a pusher one push per peer, so 8 is plenty.
pub const MAX_CONCURRENT_STREAMS: usize = 8;

/// Marker carried inside the `io::Error` of a message that broke the protocol.
#[derive(Debug, thiserror::Error)]
#[error("malformed sync message: {0}")]
pub struct Malformed(pub String);

fn malformed(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Malformed(what.to_string()))
}

/// True when a request-response I/O error means the remote sent a malformed or oversized
/// message (as opposed to a timeout or a closed connection).
pub fn is_malformed(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
        && e.get_ref().is_some_and(|inner| inner.is::<Malformed>())
}

fn over_limit(limit: usize) -> io::Error {
    malformed(format!("message over {limit} bytes"))
}

/// The request-response codec for [`PROTOCOL`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncCodec;

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_limited(io, wire::MAX_REQUEST_BYTES, over_limit).await?;
        wire::decode_request(&bytes).map_err(malformed)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_limited(io, wire::MAX_RESPONSE_BYTES, over_limit).await?;
        wire::decode_response(&bytes).map_err(malformed)
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
        let bytes = wire::encode_request(&req)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        write_and_close(io, &bytes).await
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
        let bytes = wire::encode_response(&res)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        write_and_close(io, &bytes).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn malformed_is_recognised() {
        assert!(is_malformed(&malformed("x")));
        assert!(!is_malformed(&io::Error::new(
            io::ErrorKind::InvalidData,
            "other"
        )));
        assert!(!is_malformed(&io::Error::from(io::ErrorKind::TimedOut)));
    }
}
