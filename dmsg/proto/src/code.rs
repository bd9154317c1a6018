//! DMSG wire error codes (`errorCode uint16` in the reference).
//!
//! These numbers travel on the wire in `StreamResponse.ErrCode` and appear in the reference's
//! error text (`dmsg error <code> - <msg>`). The message strings are the reference's, byte for
//! byte, so logs and error text from Rust and Go nodes read the same.
//!
//! Based on skycoin/dmsg pkg/dmsg/errors.go (commit 9c8b80bd).

use core::fmt;

/// A DMSG error code (spec §4.7). `1xx` discovery, `2xx` entity/session, `3xx` stream
/// request/response, `4xx` listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The discovery has no entry for the key.
    DiscEntryNotFound = 100,
    /// The discovery entry is not a server entry.
    DiscEntryIsNotServer = 101,
    /// The discovery entry is not a client entry.
    DiscEntryIsNotClient = 102,
    /// The client entry lists no delegated servers.
    DiscEntryHasNoDelegated = 103,
    /// The local entity (client or server) is closed.
    EntityClosed = 200,
    /// The local session is closed.
    SessionClosed = 201,
    /// None of the delegated servers could be reached.
    CannotConnectToDelegated = 202,
    /// Bytes followed the last session handshake message in the same read.
    SessionHandshakeExtraBytes = 203,
    /// The stream request's signature does not verify.
    ReqInvalidSig = 300,
    /// The stream request's timestamp is not acceptable (reference: not above the last one;
    /// we also use it for our freshness window).
    ReqInvalidTimestamp = 301,
    /// The request's source key is null or not the session's key.
    ReqInvalidSrcPk = 302,
    /// The request's destination key is null or not ours.
    ReqInvalidDstPk = 303,
    /// The request's source port is 0.
    ReqInvalidSrcPort = 304,
    /// The request's destination port is 0.
    ReqInvalidDstPort = 305,
    /// Nothing listens on the destination port (temporary).
    ReqNoListener = 306,
    /// The destination has no session on this server.
    ReqNoNextSession = 307,
    /// The stream response's signature does not verify.
    RespInvalidSig = 350,
    /// The response's `ReqHash` is not the hash of our request.
    RespInvalidHash = 351,
    /// The response refused the request without a known code.
    RespNotAccepted = 352,
    /// A signed object is 65 bytes or shorter.
    SignedObjectInvalid = 370,
    /// The port is already in use.
    PortOccupied = 400,
    /// The listener's accept queue is full (temporary).
    AcceptChanMaxed = 401,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::DiscEntryNotFound,
        ErrorCode::DiscEntryIsNotServer,
        ErrorCode::DiscEntryIsNotClient,
        ErrorCode::DiscEntryHasNoDelegated,
        ErrorCode::EntityClosed,
        ErrorCode::SessionClosed,
        ErrorCode::CannotConnectToDelegated,
        ErrorCode::SessionHandshakeExtraBytes,
        ErrorCode::ReqInvalidSig,
        ErrorCode::ReqInvalidTimestamp,
        ErrorCode::ReqInvalidSrcPk,
        ErrorCode::ReqInvalidDstPk,
        ErrorCode::ReqInvalidSrcPort,
        ErrorCode::ReqInvalidDstPort,
        ErrorCode::ReqNoListener,
        ErrorCode::ReqNoNextSession,
        ErrorCode::RespInvalidSig,
        ErrorCode::RespInvalidHash,
        ErrorCode::RespNotAccepted,
        ErrorCode::SignedObjectInvalid,
        ErrorCode::PortOccupied,
        ErrorCode::AcceptChanMaxed,
    ];

    /// The numeric code.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a number, or `None` for numbers the reference does not register (a response
    /// carrying such a code is treated as [`ErrorCode::RespNotAccepted`], as the reference does).
    pub fn from_u16(code: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_u16() == code)
    }

    /// Whether the reference marks the error temporary (the dialer may retry).
    pub fn is_temporary(self) -> bool {
        matches!(self, ErrorCode::ReqNoListener | ErrorCode::AcceptChanMaxed)
    }

    /// The reference's message text.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::DiscEntryNotFound => "discovery entry is not found",
            ErrorCode::DiscEntryIsNotServer => "discovery entry is not of server",
            ErrorCode::DiscEntryIsNotClient => "discovery entry is not of client",
            ErrorCode::DiscEntryHasNoDelegated => "discovery client entry has no delegated servers",
            ErrorCode::EntityClosed => "local entity closed",
            ErrorCode::SessionClosed => "local session closed",
            ErrorCode::CannotConnectToDelegated => "cannot connect to delegated server",
            ErrorCode::SessionHandshakeExtraBytes => {
                "extra bytes received during session handshake"
            }
            ErrorCode::ReqInvalidSig => "request has invalid signature",
            ErrorCode::ReqInvalidTimestamp => "request timestamp should be higher than last",
            ErrorCode::ReqInvalidSrcPk => "request has invalid source public key",
            ErrorCode::ReqInvalidDstPk => "request has invalid destination public key",
            ErrorCode::ReqInvalidSrcPort => "request has invalid source port",
            ErrorCode::ReqInvalidDstPort => "request has invalid destination port",
            ErrorCode::ReqNoListener => "request has no associated listener",
            ErrorCode::ReqNoNextSession => {
                "request cannot be forwarded because the next session is non-existent"
            }
            ErrorCode::RespInvalidSig => "response has invalid signature",
            ErrorCode::RespInvalidHash => "response has invalid hash of associated request",
            ErrorCode::RespNotAccepted => "response rejected associated request without reason",
            ErrorCode::SignedObjectInvalid => "signed object is invalid",
            ErrorCode::PortOccupied => "port already occupied",
            ErrorCode::AcceptChanMaxed => "listener accept chan maxed",
        }
    }
}

impl fmt::Display for ErrorCode {
    /// The reference's text form: `dmsg error <code> - <msg>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dmsg error {} - {}", self.as_u16(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_text() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(c.as_u16()), Some(c));
        }
        assert_eq!(ErrorCode::from_u16(0), None);
        assert_eq!(ErrorCode::from_u16(308), None);
        assert_eq!(
            ErrorCode::ReqNoListener.to_string(),
            "dmsg error 306 - request has no associated listener"
        );
        assert!(ErrorCode::ReqNoListener.is_temporary());
        assert!(!ErrorCode::ReqInvalidSig.is_temporary());
    }
}
