//! Stream setup objects: the signed `StreamRequest` and `StreamResponse`, their gob form and
//! their validation.
//!
//! # Byte layout
//! ```text
//! SignedObject = sig[65] ‖ gob(object)          sig = Sign(SHA256(gob)) by the author
//! ReqHash      = SHA256(whole request SignedObject, signature included)
//! ```
//! On a mux stream each object is one transport record under the *session* keys
//! ([`crate::record`]).
//!
//! # Flow (spec §4.5)
//! * The dialer signs a [`StreamRequest`] (`NoiseMsg` = KK message 1) and sends it.
//! * The server calls [`verify_request`] with the session's key as `session_pk`, then forwards
//!   the **same bytes** to the destination.
//! * The destination calls [`verify_request`] with `local_pk`, answers with a signed
//!   [`StreamResponse`] bound to [`SignedObject::hash`] of the request (`NoiseMsg` = KK message
//!   2).
//! * Server and dialer call [`verify_response`] with the request.
//!
//! Based on skycoin/dmsg pkg/dmsg/types.go (commit 9c8b80bd).

use keys::{PUBKEY_LEN, PubKey, SIG_LEN, SecKey, Sig};

use crate::code::ErrorCode;
use crate::error::{GobError, ObjectError};
use crate::gob::{self, Value, id};

/// Largest signed object we accept: one transport record's plaintext (4070 bytes). Classical
/// objects are ~350 bytes, post-quantum ones ~1.5 KB.
pub const MAX_OBJECT_LEN: usize = crate::record::MAX_PLAINTEXT;
/// Largest `NoiseMsg` we put into an object.
pub const MAX_NOISE_MSG: usize = 2048;

/// A DMSG address: public key and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Addr {
    /// The client's static key.
    pub pk: PubKey,
    /// The port (0 is invalid on the wire).
    pub port: u16,
}

impl core::fmt::Display for Addr {
    /// `<pk hex>:<port>`, or `<pk hex>:~` for port 0 (the reference's form).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.port == 0 {
            write!(f, "{}:~", self.pk)
        } else {
            write!(f, "{}:{}", self.pk, self.port)
        }
    }
}

/// The dialer's request (Go `StreamRequest`, field order matters for gob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// Unix nanoseconds at the dialer.
    pub timestamp: i64,
    /// Dialer address (ephemeral port).
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// KK handshake message 1.
    pub noise_msg: Vec<u8>,
}

/// The destination's response (Go `StreamResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamResponse {
    /// SHA256 of the request's signed object.
    pub req_hash: [u8; 32],
    /// Whether the stream is accepted.
    pub accepted: bool,
    /// Reason when not accepted.
    pub err_code: u16,
    /// KK handshake message 2.
    pub noise_msg: Vec<u8>,
}

/// Gob type ids an encoder uses. Go picks them per process; any choice decodes the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeIds {
    /// Id of the object's own type; dependent types take the next ids.
    pub first: i64,
}

impl Default for TypeIds {
    /// 65: what a fresh Go process uses for the first type it encodes.
    fn default() -> TypeIds {
        TypeIds {
            first: gob::FIRST_USER_ID,
        }
    }
}

fn put_addr(out: &mut Vec<u8>, a: &Addr) {
    if !a.pk.is_null() {
        out.push(1);
        gob::put_bytes(out, a.pk.as_bytes());
    }
    if a.port != 0 {
        out.push(if a.pk.is_null() { 2 } else { 1 });
        gob::put_uint(out, u64::from(a.port));
    }
    out.push(0);
}

/// Appends struct fields `(field index, encoded value)` with gob's delta numbering.
struct FieldWriter {
    last: i64,
    out: Vec<u8>,
}

impl FieldWriter {
    fn new() -> FieldWriter {
        FieldWriter {
            last: -1,
            out: Vec::new(),
        }
    }
    fn field(&mut self, idx: i64) -> &mut Vec<u8> {
        gob::put_uint(&mut self.out, (idx - self.last) as u64);
        self.last = idx;
        &mut self.out
    }
    fn finish(mut self) -> Vec<u8> {
        self.out.push(0);
        self.out
    }
}

impl StreamRequest {
    /// Encodes the request as a fresh Go gob encoder would (type definitions included).
    pub fn to_gob(&self, ids: TypeIds) -> Vec<u8> {
        let (req, addr, pk) = (ids.first, ids.first + 1, ids.first + 2);
        let mut out = Vec::with_capacity(300);
        gob::define_struct(
            &mut out,
            req,
            "StreamRequest",
            &[
                ("Timestamp", id::INT),
                ("SrcAddr", addr),
                ("DstAddr", addr),
                ("NoiseMsg", id::BYTES),
            ],
        );
        gob::define_struct(&mut out, addr, "Addr", &[("PK", pk), ("Port", id::UINT)]);
        gob::define_binary_marshaler(&mut out, pk, "PubKey");
        let mut w = FieldWriter::new();
        if self.timestamp != 0 {
            gob::put_int(w.field(0), self.timestamp);
        }
        put_addr(w.field(1), &self.src);
        put_addr(w.field(2), &self.dst);
        if !self.noise_msg.is_empty() {
            gob::put_bytes(w.field(3), &self.noise_msg);
        }
        gob::put_message(&mut out, req, &w.finish());
        out
    }

    /// Decodes a request from gob bytes, resolving types by name.
    pub fn from_gob(b: &[u8]) -> Result<StreamRequest, GobError> {
        let d = gob::decode(b)?;
        if d.type_name != "StreamRequest" {
            return Err(GobError::WrongType {
                expected: "StreamRequest",
            });
        }
        let v = &d.value;
        Ok(StreamRequest {
            timestamp: match v.field("Timestamp") {
                None => 0,
                Some(Value::Int(t)) => *t,
                Some(_) => return Err(GobError::FieldType { field: "Timestamp" }),
            },
            src: addr_from(v.field("SrcAddr"), "SrcAddr")?,
            dst: addr_from(v.field("DstAddr"), "DstAddr")?,
            noise_msg: bytes_from(v.field("NoiseMsg"))?,
        })
    }

    /// Signs the gob form with `sk`.
    pub fn sign(&self, sk: &SecKey, ids: TypeIds) -> SignedObject {
        SignedObject::sign(&self.to_gob(ids), sk)
    }
}

fn bytes_from(v: Option<&Value>) -> Result<Vec<u8>, GobError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Bytes(b)) => Ok(b.clone()),
        // Go assigns a []uint8 slice of uints to []byte too; we only take the byte form.
        Some(_) => Err(GobError::FieldType { field: "NoiseMsg" }),
    }
}

fn addr_from(v: Option<&Value>, field: &'static str) -> Result<Addr, GobError> {
    let Some(v) = v else {
        return Ok(Addr {
            pk: PubKey::NULL,
            port: 0,
        });
    };
    if !matches!(v, Value::Struct(_)) {
        return Err(GobError::FieldType { field });
    }
    let pk = match v.field("PK") {
        None => PubKey::NULL,
        Some(Value::Opaque(b)) => {
            if b.len() != PUBKEY_LEN {
                return Err(GobError::PubKey);
            }
            PubKey::from_bytes_or_null(b).map_err(|_| GobError::PubKey)?
        }
        Some(_) => return Err(GobError::FieldType { field: "PK" }),
    };
    let port = match v.field("Port") {
        None => 0,
        Some(Value::Uint(p)) => u16::try_from(*p).map_err(|_| GobError::Range { field: "Port" })?,
        Some(_) => return Err(GobError::FieldType { field: "Port" }),
    };
    Ok(Addr { pk, port })
}

impl StreamResponse {
    /// Encodes the response as a fresh Go gob encoder would.
    pub fn to_gob(&self, ids: TypeIds) -> Vec<u8> {
        let (resp, sha) = (ids.first, ids.first + 1);
        let mut out = Vec::with_capacity(220);
        gob::define_struct(
            &mut out,
            resp,
            "StreamResponse",
            &[
                ("ReqHash", sha),
                ("Accepted", id::BOOL),
                ("ErrCode", id::UINT),
                ("NoiseMsg", id::BYTES),
            ],
        );
        gob::define_array(&mut out, sha, "SHA256", id::UINT, 32);
        let mut w = FieldWriter::new();
        if self.req_hash != [0u8; 32] {
            let o = w.field(0);
            gob::put_uint(o, 32);
            for b in self.req_hash {
                gob::put_uint(o, u64::from(b));
            }
        }
        if self.accepted {
            gob::put_uint(w.field(1), 1);
        }
        if self.err_code != 0 {
            gob::put_uint(w.field(2), u64::from(self.err_code));
        }
        if !self.noise_msg.is_empty() {
            gob::put_bytes(w.field(3), &self.noise_msg);
        }
        gob::put_message(&mut out, resp, &w.finish());
        out
    }

    /// Decodes a response from gob bytes, resolving types by name.
    pub fn from_gob(b: &[u8]) -> Result<StreamResponse, GobError> {
        let d = gob::decode(b)?;
        if d.type_name != "StreamResponse" {
            return Err(GobError::WrongType {
                expected: "StreamResponse",
            });
        }
        let v = &d.value;
        let mut req_hash = [0u8; 32];
        match v.field("ReqHash") {
            None => {}
            Some(Value::List(items)) if items.len() == 32 => {
                for (dst, it) in req_hash.iter_mut().zip(items) {
                    *dst = match it {
                        Value::Uint(x) => {
                            u8::try_from(*x).map_err(|_| GobError::Range { field: "ReqHash" })?
                        }
                        _ => return Err(GobError::FieldType { field: "ReqHash" }),
                    };
                }
            }
            Some(_) => return Err(GobError::FieldType { field: "ReqHash" }),
        }
        Ok(StreamResponse {
            req_hash,
            accepted: match v.field("Accepted") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(GobError::FieldType { field: "Accepted" }),
            },
            err_code: match v.field("ErrCode") {
                None => 0,
                Some(Value::Uint(c)) => {
                    u16::try_from(*c).map_err(|_| GobError::Range { field: "ErrCode" })?
                }
                Some(_) => return Err(GobError::FieldType { field: "ErrCode" }),
            },
            noise_msg: bytes_from(v.field("NoiseMsg"))?,
        })
    }

    /// Signs the gob form with `sk`.
    pub fn sign(&self, sk: &SecKey, ids: TypeIds) -> SignedObject {
        SignedObject::sign(&self.to_gob(ids), sk)
    }
}

/// `sig ‖ gob`: an object as it travels, kept as raw bytes so relays forward it unchanged.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedObject {
    raw: Vec<u8>,
}

impl core::fmt::Debug for SignedObject {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SignedObject({} bytes)", self.raw.len())
    }
}

impl SignedObject {
    /// Wraps received bytes; refuses ≤ 65 bytes (code 370) and more than [`MAX_OBJECT_LEN`].
    pub fn from_bytes(raw: &[u8]) -> Result<SignedObject, ObjectError> {
        if raw.len() <= SIG_LEN {
            return Err(ObjectError::TooShort { len: raw.len() });
        }
        if raw.len() > MAX_OBJECT_LEN {
            return Err(ObjectError::TooLong { len: raw.len() });
        }
        Ok(SignedObject { raw: raw.to_vec() })
    }

    /// Signs `gob` with `sk`.
    pub fn sign(gob: &[u8], sk: &SecKey) -> SignedObject {
        let sig = sk.sign(gob);
        let mut raw = Vec::with_capacity(SIG_LEN + gob.len());
        raw.extend_from_slice(sig.as_bytes());
        raw.extend_from_slice(gob);
        SignedObject { raw }
    }

    /// The whole object.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The signature part.
    pub fn sig(&self) -> Sig {
        // `raw` is longer than SIG_LEN by construction.
        let mut s = [0u8; SIG_LEN];
        s.copy_from_slice(&self.raw[..SIG_LEN]);
        match Sig::from_bytes(&s) {
            Ok(sig) => sig,
            Err(_) => unreachable_len(),
        }
    }

    /// The gob part.
    pub fn gob(&self) -> &[u8] {
        &self.raw[SIG_LEN..]
    }

    /// SHA256 of the whole object: the `ReqHash` a response must carry.
    pub fn hash(&self) -> [u8; 32] {
        keys::sha256(&self.raw)
    }
}

#[cold]
fn unreachable_len() -> ! {
    panic!("65-byte slice is not a signature")
}

/// How requests are checked beyond the reference's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPolicy {
    /// Current time, Unix nanoseconds.
    pub now_ns: i64,
    /// Oldest accepted request age. `None` skips the window (reference behaviour).
    pub max_age_ns: Option<i64>,
    /// Largest accepted clock lead of the dialer.
    pub max_future_ns: Option<i64>,
    /// The request timestamp must exceed this (the reference passes 0).
    pub last_timestamp: i64,
}

/// Default freshness window: 5 minutes either way. Wide because peers' clocks are not
/// synchronised, narrow enough that recorded requests stop being replayable soon.
pub const DEFAULT_MAX_SKEW_NS: i64 = 300 * 1_000_000_000;

impl RequestPolicy {
    /// Checks with the default ±5 min window around `now_ns`.
    pub fn at(now_ns: i64) -> RequestPolicy {
        RequestPolicy {
            now_ns,
            max_age_ns: Some(DEFAULT_MAX_SKEW_NS),
            max_future_ns: Some(DEFAULT_MAX_SKEW_NS),
            last_timestamp: 0,
        }
    }

    /// Exactly the reference's `Verify(0)`: no freshness window.
    pub fn reference() -> RequestPolicy {
        RequestPolicy {
            now_ns: 0,
            max_age_ns: None,
            max_future_ns: None,
            last_timestamp: 0,
        }
    }
}

/// Who is checking a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestContext {
    /// The server: the remote static key of the session the request came on; `SrcAddr.PK` must
    /// equal it (302 otherwise).
    pub session_pk: Option<PubKey>,
    /// The destination client: our own key; `DstAddr.PK` must equal it (303 otherwise).
    pub local_pk: Option<PubKey>,
}

/// Decodes and verifies a signed request: fields, timestamp, signature, then the context's key
/// bindings. Pure: takes the time in `policy`.
pub fn verify_request(
    obj: &SignedObject,
    policy: &RequestPolicy,
    ctx: &RequestContext,
) -> Result<StreamRequest, ObjectError> {
    let req = StreamRequest::from_gob(obj.gob())?;
    if req.src.pk.is_null() {
        return Err(ObjectError::refused(ErrorCode::ReqInvalidSrcPk));
    }
    if req.src.port == 0 {
        return Err(ObjectError::refused(ErrorCode::ReqInvalidSrcPort));
    }
    if req.dst.pk.is_null() {
        return Err(ObjectError::refused(ErrorCode::ReqInvalidDstPk));
    }
    if req.dst.port == 0 {
        return Err(ObjectError::refused(ErrorCode::ReqInvalidDstPort));
    }
    if req.timestamp <= policy.last_timestamp {
        return Err(ObjectError::refused(ErrorCode::ReqInvalidTimestamp));
    }
    let too_old = policy
        .max_age_ns
        .is_some_and(|a| req.timestamp < policy.now_ns.saturating_sub(a));
    let too_new = policy
        .max_future_ns
        .is_some_and(|a| req.timestamp > policy.now_ns.saturating_add(a));
    if too_old || too_new {
        return Err(ObjectError::refused(ErrorCode::ReqInvalidTimestamp));
    }
    req.src
        .pk
        .verify(obj.gob(), &obj.sig())
        .map_err(|e| ObjectError::Refused {
            code: ErrorCode::ReqInvalidSig,
            sig: Some(e),
        })?;
    if ctx.session_pk.is_some_and(|pk| pk != req.src.pk) {
        return Err(ObjectError::refused(ErrorCode::ReqInvalidSrcPk));
    }
    if ctx.local_pk.is_some_and(|pk| pk != req.dst.pk) {
        return Err(ObjectError::refused(ErrorCode::ReqInvalidDstPk));
    }
    Ok(req)
}

/// Decodes and verifies a signed response to `req` (the request as sent): hash binding,
/// signature by the request's destination, then acceptance. A refusal carrying a known code
/// yields that code, otherwise 352.
pub fn verify_response(
    obj: &SignedObject,
    req_obj: &SignedObject,
    req: &StreamRequest,
) -> Result<StreamResponse, ObjectError> {
    let resp = StreamResponse::from_gob(obj.gob())?;
    if resp.req_hash != req_obj.hash() {
        return Err(ObjectError::refused(ErrorCode::RespInvalidHash));
    }
    req.dst
        .pk
        .verify(obj.gob(), &obj.sig())
        .map_err(|e| ObjectError::Refused {
            code: ErrorCode::RespInvalidSig,
            sig: Some(e),
        })?;
    if !resp.accepted {
        let code = ErrorCode::from_u16(resp.err_code).unwrap_or(ErrorCode::RespNotAccepted);
        return Err(ObjectError::refused(code));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(a: &SecKey, b: &SecKey) -> StreamRequest {
        StreamRequest {
            timestamp: 1_700_000_000_000_000_000,
            src: Addr {
                pk: a.pubkey(),
                port: 49153,
            },
            dst: Addr {
                pk: b.pubkey(),
                port: 80,
            },
            noise_msg: vec![1, 2, 3],
        }
    }

    #[test]
    fn sign_verify_round_trip() {
        let (a, b) = (SecKey::generate(), SecKey::generate());
        let r = req(&a, &b);
        for first in [65, 68, 1000] {
            let obj = r.sign(&a, TypeIds { first });
            let ctx = RequestContext {
                session_pk: Some(a.pubkey()),
                local_pk: Some(b.pubkey()),
            };
            let got = verify_request(&obj, &RequestPolicy::at(r.timestamp), &ctx).unwrap();
            assert_eq!(got, r);
            let resp = StreamResponse {
                req_hash: obj.hash(),
                accepted: true,
                err_code: 0,
                noise_msg: vec![9; 49],
            };
            let robj = resp.sign(&b, TypeIds { first });
            assert_eq!(verify_response(&robj, &obj, &r).unwrap(), resp);
        }
    }

    #[test]
    fn request_checks() {
        let (a, b) = (SecKey::generate(), SecKey::generate());
        let r = req(&a, &b);
        let obj = r.sign(&a, TypeIds::default());
        let code = |p: &RequestPolicy, c: &RequestContext| {
            verify_request(&obj, p, c).err().map(|e| e.code())
        };
        let now = r.timestamp;
        let none = RequestContext::default();
        assert_eq!(code(&RequestPolicy::at(now), &none), None);
        assert_eq!(
            code(&RequestPolicy::at(now + DEFAULT_MAX_SKEW_NS + 1), &none),
            Some(ErrorCode::ReqInvalidTimestamp)
        );
        assert_eq!(
            code(&RequestPolicy::at(now - DEFAULT_MAX_SKEW_NS - 1), &none),
            Some(ErrorCode::ReqInvalidTimestamp)
        );
        let mut p = RequestPolicy::reference();
        p.last_timestamp = now;
        assert_eq!(code(&p, &none), Some(ErrorCode::ReqInvalidTimestamp));
        let wrong = RequestContext {
            session_pk: Some(b.pubkey()),
            local_pk: None,
        };
        assert_eq!(
            code(&RequestPolicy::reference(), &wrong),
            Some(ErrorCode::ReqInvalidSrcPk)
        );
        let wrong = RequestContext {
            session_pk: None,
            local_pk: Some(a.pubkey()),
        };
        assert_eq!(
            code(&RequestPolicy::reference(), &wrong),
            Some(ErrorCode::ReqInvalidDstPk)
        );
        let mut bad = r.clone();
        bad.dst.port = 0;
        let o = bad.sign(&a, TypeIds::default());
        assert_eq!(
            verify_request(&o, &RequestPolicy::reference(), &none)
                .unwrap_err()
                .code(),
            ErrorCode::ReqInvalidDstPort
        );
    }

    #[test]
    fn object_length_bounds() {
        assert_eq!(
            SignedObject::from_bytes(&[0u8; 65]).unwrap_err().code(),
            ErrorCode::SignedObjectInvalid
        );
        assert!(SignedObject::from_bytes(&[0u8; 66]).is_ok());
        assert!(SignedObject::from_bytes(&vec![0u8; MAX_OBJECT_LEN + 1]).is_err());
    }
}
