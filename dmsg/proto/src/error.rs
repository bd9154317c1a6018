//! Error types, one enum per operation family. All are `#[non_exhaustive]`; every variant says
//! which check refused the input.

use crate::code::ErrorCode;

/// Why a Noise handshake step failed. After any error the handshake state is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// `write_message`/`read_message` was called out of turn, or after the handshake finished.
    #[error("handshake message out of turn (message {index})")]
    OutOfTurn {
        /// Index of the next expected message.
        index: usize,
    },
    /// The pattern needs the remote static key up front (XK initiator, KK both sides).
    #[error("remote static key required for this pattern and role")]
    MissingRemoteStatic,
    /// The message is shorter than its tokens require.
    #[error("handshake message too short: need at least {need} bytes, got {got}")]
    TooShort {
        /// Minimum length for this message.
        need: usize,
        /// Length received.
        got: usize,
    },
    /// The message is longer than [`crate::noise::MAX_HANDSHAKE_MSG`].
    #[error("handshake message too long: {got} bytes")]
    TooLong {
        /// Length received.
        got: usize,
    },
    /// A public key in the message (ephemeral or decrypted static) is not a valid point.
    /// The 2023 reference panics here (spec §10.1).
    #[error("peer sent an invalid public key")]
    InvalidPeerKey,
    /// The DH input was the null key or otherwise unusable.
    #[error("diffie-hellman failed")]
    Dh,
    /// An AEAD tag did not verify (wrong keys, tampering, trailing garbage).
    #[error("handshake decryption failed")]
    Decrypt,
    /// `into_transport` was called before the last message.
    #[error("handshake not finished")]
    NotFinished,
}

/// Why a length-prefixed frame could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix exceeds [`crate::record::MAX_FRAME_BODY`] (the reference's reader
    /// limit). The connection must be dropped.
    #[error("frame length {len} exceeds the maximum {max}")]
    TooLong {
        /// Length announced or requested.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a transport record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record body is shorter than nonce + tag (24 bytes).
    #[error("record too short: {len} bytes")]
    TooShort {
        /// Body length.
        len: usize,
    },
    /// The record or plaintext exceeds the size limits.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The plaintext is longer than [`crate::record::MAX_PLAINTEXT`] (use `seal_write` to split).
    #[error("plaintext of {len} bytes exceeds one record")]
    PlaintextTooLong {
        /// Plaintext length.
        len: usize,
    },
    /// The AEAD tag did not verify. Nothing was recorded in the replay state.
    #[error("record authentication failed")]
    Decrypt,
    /// The tag verified but the nonce is refused by the replay policy.
    #[error("replayed or out-of-window nonce {nonce}: {reason}")]
    Replay {
        /// The nonce on the wire.
        nonce: u64,
        /// Which rule refused it.
        reason: ReplayError,
    },
    /// The send counter reached `u64::MAX`; the connection must be replaced.
    #[error("send nonce exhausted")]
    NonceExhausted,
}

/// Which replay rule refused a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Nonce 0 is never sent (senders start at 1).
    #[error("zero nonce")]
    Zero,
    /// The nonce is 1024 or more below the highest accepted one.
    #[error("too old")]
    TooOld,
    /// The nonce was already accepted.
    #[error("repeated")]
    Repeated,
    /// Strict or increasing mode: the nonce is not above the last accepted one.
    #[error("not increasing")]
    NotIncreasing,
    /// Strict mode: the nonce skips records (`last + 1` required).
    #[error("gap: expected {expected}")]
    Gap {
        /// The only acceptable nonce.
        expected: u64,
    },
}

/// Why gob bytes could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GobError {
    /// The input ended inside a value.
    #[error("unexpected end of gob data")]
    Eof,
    /// An unsigned integer uses more than 8 bytes or a non-minimal length byte.
    #[error("malformed gob integer")]
    BadInt,
    /// A message length runs past the input or disagrees with its content.
    #[error("gob message length mismatch")]
    BadLength,
    /// A type id is outside the range gob allows, or redefined.
    #[error("bad gob type id {0}")]
    BadTypeId(i64),
    /// A value references a type that was never defined.
    #[error("undefined gob type id {0}")]
    UndefinedType(i64),
    /// The type definition uses a gob feature this decoder does not implement (maps,
    /// interfaces, complex numbers, GobEncoder/TextMarshaler inside definitions we do not
    /// expect).
    #[error("unsupported gob type")]
    Unsupported,
    /// A type definition is malformed.
    #[error("malformed gob type definition")]
    BadDefinition,
    /// More type definitions than [`crate::gob::MAX_TYPES`].
    #[error("too many gob type definitions")]
    TooManyTypes,
    /// Types nest deeper than [`crate::gob::MAX_DEPTH`].
    #[error("gob value nested too deeply")]
    TooDeep,
    /// A struct field number is out of range.
    #[error("bad gob field number")]
    BadField,
    /// An array value's element count differs from its type's length.
    #[error("gob array length mismatch")]
    ArrayLength,
    /// A string is not UTF-8.
    #[error("gob string is not UTF-8")]
    Utf8,
    /// A field exists but with a type that cannot be assigned to ours (as Go refuses).
    #[error("gob field {field} has an incompatible type")]
    FieldType {
        /// The field name.
        field: &'static str,
    },
    /// A value does not fit its Rust field (e.g. port > 65535, byte element > 255).
    #[error("gob value out of range for field {field}")]
    Range {
        /// The field name.
        field: &'static str,
    },
    /// A public key inside the object is not a valid point.
    #[error("gob public key invalid")]
    PubKey,
    /// The stream has no value message, or the value has the wrong type name.
    #[error("gob stream carries no {expected} value")]
    WrongType {
        /// The Go type name we expected.
        expected: &'static str,
    },
    /// Bytes follow the value message (Go ignores them; we refuse, see docs/protocols/dmsg.md).
    #[error("trailing bytes after gob value")]
    Trailing,
}

/// Why a signed stream object was refused. [`ObjectError::code`] gives the DMSG error code the
/// reference would report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The object is 65 bytes or shorter (no gob after the signature).
    #[error("signed object too short: {len} bytes")]
    TooShort {
        /// Object length.
        len: usize,
    },
    /// The object is longer than [`crate::stream::MAX_OBJECT_LEN`].
    #[error("signed object too long: {len} bytes")]
    TooLong {
        /// Object length.
        len: usize,
    },
    /// The gob bytes do not decode as the expected type.
    #[error("object decoding failed: {0}")]
    Gob(#[from] GobError),
    /// The request/response failed a check; the code says which.
    #[error("{code}")]
    Refused {
        /// The reference's code for this refusal.
        code: ErrorCode,
        /// The signature error, when the refusal is a signature failure.
        sig: Option<keys::SigError>,
    },
}

impl ObjectError {
    /// The DMSG code the reference reports for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            ObjectError::TooShort { .. } | ObjectError::TooLong { .. } => {
                ErrorCode::SignedObjectInvalid
            }
            // The reference wraps gob errors in no code; 370 is the closest.
            ObjectError::Gob(_) => ErrorCode::SignedObjectInvalid,
            ObjectError::Refused { code, .. } => *code,
        }
    }

    pub(crate) fn refused(code: ErrorCode) -> ObjectError {
        ObjectError::Refused { code, sig: None }
    }
}

/// Why a yamux frame header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum YamuxError {
    /// The version byte is not 0.
    #[error("unsupported yamux version {0}")]
    Version(u8),
    /// The type byte is not 0..=3.
    #[error("unknown yamux frame type {0}")]
    Type(u8),
    /// A Data frame announces more than the receive window allows.
    #[error("yamux data frame of {len} bytes exceeds the limit {max}")]
    TooLong {
        /// Announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// Ping or GoAway on a stream other than 0 (the reference ignores the id; we refuse).
    #[error("yamux session frame on stream {0}")]
    SessionFrameStream(u32),
    /// GoAway with a reason other than 0, 1, 2.
    #[error("unknown yamux go-away reason {0}")]
    GoAwayReason(u32),
}

/// Why a discovery entry could not be decoded (the reference answers 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryDecodeError {
    /// Not JSON, or JSON of the wrong shape or types (position of the failure given).
    #[error("entry JSON does not decode (line {line}, column {column})")]
    Json {
        /// 1-based line of the failure (0 when unknown).
        line: usize,
        /// 1-based column of the failure (0 when unknown).
        column: usize,
    },
    /// The body is larger than [`crate::disc::MAX_ENTRY_BODY`].
    #[error("entry body too large: {len} bytes")]
    TooLarge {
        /// Body length.
        len: usize,
    },
}

/// An entry rule the discovery enforces (HTTP 422). `Display` is the reference's exact text,
/// which the Go client matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// `version` is empty.
    #[error("entry has no version")]
    NoVersion,
    /// `signature` is empty.
    #[error("entry has no signature")]
    NoSignature,
    /// `static` is the null key.
    #[error("entry Keys is nil")]
    NilKeys,
    /// Neither `client` nor `server` is present.
    #[error("entry has neither client or server field")]
    NoClientOrServer,
    /// `server.address` is empty.
    #[error("server address cannot be empty")]
    EmptyServerAddress,
    /// A server-only entry's timestamp lies outside [now − 60 s, now + 5 s].
    #[error("advertised entry has outdated timestamp")]
    OutdatedTimestamp,
    /// An update's sequence is not greater than the stored one (the wording is the reference's).
    #[error("sequence field of new entry is not sequence of old entry + 1")]
    WrongSequence,
    /// An update's timestamp is earlier than the stored one.
    #[error("advertised entry timestamp is not greater than previous")]
    WrongTime,
    /// Production mode: the server address's host is empty or a loopback IP.
    #[error("advertising localhost listening address is not allowed in production mode")]
    LoopbackAddress,
}

/// Why the discovery refuses a posted or deleted entry, with the reference's HTTP status and
/// message ([`DiscRefusal::status`], [`DiscRefusal::message`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscRefusal {
    /// The body does not decode as an entry: 500 `something unexpected happened`.
    #[error("something unexpected happened")]
    Decode(#[source] EntryDecodeError),
    /// A rule failed: 422 `entry validation error: <rule>`.
    #[error("entry validation error: {0}")]
    Validation(#[source] ValidationError),
    /// The signature does not parse or verify: 401 `invalid signature`.
    #[error("invalid signature")]
    Signature,
}

impl DiscRefusal {
    /// HTTP status the reference answers with.
    pub fn status(&self) -> u16 {
        match self {
            DiscRefusal::Decode(_) => 500,
            DiscRefusal::Validation(_) => 422,
            DiscRefusal::Signature => 401,
        }
    }

    /// The `message` member of the reference's reply.
    pub fn message(&self) -> String {
        self.to_string()
    }
}
