//! Discovery entries: JSON form, the canonical bytes the reference signs, and the pure checks a
//! discovery server applies to a POST or DELETE.
//!
//! # Canonical form (what is signed)
//! json-iterator `ConfigFastest` marshalling of Go's `disc.Entry`: struct field order, compact,
//! no HTML escaping, non-ASCII raw, `signature` omitted when empty:
//! ```text
//! {"version":"0.0.1","sequence":<u64>,"timestamp":<i64 ns>,"static":"<pk hex>",
//!  "client":{"delegated_servers":null | ["<pk hex>",…]},            (omitted when absent)
//!  "server":{"address":"host:port","availableSessions":<int>},     (omitted when absent)
//!  "signature":"<as posted>",                                      (omitted when empty)
//!  "protocol":"smux"}                          (skywire 2026; omitted when empty)
//! ```
//! The signature is over SHA256 of this text without `signature`. The reference *decodes* the
//! posted JSON and *re-marshals* it before verifying, so what counts is the canonical
//! re-serialisation of the decoded entry, not the posted bytes.
//!
//! # Decoding (as the reference's decoder)
//! * only the first JSON value is read; trailing bytes are ignored;
//! * member names match case-insensitively; unknown members are ignored; `null` leaves a
//!   field at its zero value (and sets `client`/`server`/`delegated_servers` to absent);
//! * keys are parsed while decoding (a bad key is a decode error); hex is case-insensitive and a
//!   string of only `0` characters (or empty) is the null key;
//! * the signature string is kept exactly as posted (an upper-case one is echoed upper-case).
//!
//! # POST/DELETE order of checks ([`decode_body`], [`check_post_entry`], [`check_delete_entry`])
//! decode (500) → production loopback check (422) → [`Entry::validate`] (422) → signature
//! (401) → for POST with a stored entry, [`Entry::validate_iteration`] (422).
//!
//! Based on skycoin/dmsg pkg/disc/entry.go and internal/dmsg-discovery/api/api.go (commit
//! 9c8b80bd), and the behaviour recorded in discovery_http.json.

use core::fmt;
use std::net::IpAddr;

use keys::{PubKey, SecKey, Sig};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{DiscRefusal, EntryDecodeError, ValidationError};

/// Largest request body decoded (64 KiB ≈ 900 delegated servers; real entries are < 1 KiB).
pub const MAX_ENTRY_BODY: usize = 64 * 1024;
/// Most delegated servers accepted in one client entry.
pub const MAX_DELEGATED: usize = 512;
/// Entry format version written by the reference.
pub const ENTRY_VERSION: &str = "0.0.1";
/// A server entry may be this much older than `now` (reference: one minute).
pub const MAX_PAST_NS: i64 = 60 * 1_000_000_000;
/// A server entry may be this much newer than `now` (reference: five seconds).
pub const MAX_FUTURE_NS: i64 = 5 * 1_000_000_000;

/// Client part of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientInfo {
    /// Servers the client holds sessions with. `None` marshals as `null`, `Some(vec![])` as
    /// `[]`: a different signed text.
    pub delegated_servers: Option<Vec<PubKey>>,
}

/// Server part of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerInfo {
    /// Advertised `host:port`.
    pub address: String,
    /// Self-reported free session slots (Go `int`; may be negative).
    pub available_sessions: i64,
}

/// A discovery entry (Go `disc.Entry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Format version, `"0.0.1"`.
    pub version: String,
    /// Bumped on every update.
    pub sequence: u64,
    /// Unix nanoseconds.
    pub timestamp: i64,
    /// The entry's key (null when absent).
    pub static_pk: PubKey,
    /// Present for clients.
    pub client: Option<ClientInfo>,
    /// Present for servers.
    pub server: Option<ServerInfo>,
    /// Hex signature exactly as received ("" = none).
    pub signature: String,
    /// The session multiplexer the owner speaks (skywire 2026 `Entry.Protocol`, after
    /// `signature`, omitted when empty): `"smux"`, or empty for yamux.
    pub protocol: String,
}

impl Default for Entry {
    fn default() -> Entry {
        Entry {
            version: String::new(),
            sequence: 0,
            timestamp: 0,
            static_pk: PubKey::NULL,
            client: None,
            server: None,
            signature: String::new(),
            protocol: String::new(),
        }
    }
}

/// Appends `s` as a JSON string the way json-iterator does with HTML escaping off: `"` and `\`
/// escaped, `\n` `\r` `\t` short forms, other control bytes as `\u00xx`, everything else raw.
pub fn write_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let b = c as u32 as usize;
                out.push_str("\\u00");
                out.push(HEX[b >> 4] as char);
                out.push(HEX[b & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Entry {
    /// A new client entry (unsigned).
    pub fn new_client(
        static_pk: PubKey,
        sequence: u64,
        timestamp: i64,
        delegated: Option<Vec<PubKey>>,
    ) -> Entry {
        Entry {
            version: ENTRY_VERSION.to_string(),
            sequence,
            timestamp,
            static_pk,
            client: Some(ClientInfo {
                delegated_servers: delegated,
            }),
            server: None,
            signature: String::new(),
            protocol: String::new(),
        }
    }

    /// A new server entry (unsigned).
    pub fn new_server(
        static_pk: PubKey,
        sequence: u64,
        timestamp: i64,
        address: String,
        available_sessions: i64,
    ) -> Entry {
        Entry {
            version: ENTRY_VERSION.to_string(),
            sequence,
            timestamp,
            static_pk,
            client: None,
            server: Some(ServerInfo {
                address,
                available_sessions,
            }),
            signature: String::new(),
            protocol: String::new(),
        }
    }

    fn write_canonical(&self, out: &mut String, with_signature: bool) {
        use fmt::Write as _;
        out.push_str("{\"version\":");
        write_json_str(out, &self.version);
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            ",\"sequence\":{},\"timestamp\":{},\"static\":\"{}\"",
            self.sequence,
            self.timestamp,
            self.static_pk.to_hex()
        );
        if let Some(c) = &self.client {
            out.push_str(",\"client\":{\"delegated_servers\":");
            match &c.delegated_servers {
                None => out.push_str("null"),
                Some(list) => {
                    out.push('[');
                    for (i, pk) in list.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push('"');
                        out.push_str(&pk.to_hex());
                        out.push('"');
                    }
                    out.push(']');
                }
            }
            out.push('}');
        }
        if let Some(s) = &self.server {
            out.push_str(",\"server\":{\"address\":");
            write_json_str(out, &s.address);
            let _ = write!(out, ",\"availableSessions\":{}}}", s.available_sessions);
        }
        if with_signature && !self.signature.is_empty() {
            out.push_str(",\"signature\":");
            write_json_str(out, &self.signature);
        }
        if !self.protocol.is_empty() {
            out.push_str(",\"protocol\":");
            write_json_str(out, &self.protocol);
        }
        out.push('}');
    }

    /// The bytes the signature covers: canonical JSON without `signature`.
    pub fn signed_json(&self) -> String {
        let mut s = String::with_capacity(256);
        self.write_canonical(&mut s, false);
        s
    }

    /// The canonical JSON with the signature: what the reference stores and serves on GET.
    pub fn canonical_json(&self) -> String {
        let mut s = String::with_capacity(400);
        self.write_canonical(&mut s, true);
        s
    }

    /// Signs the canonical form with `sk` and stores the lowercase hex signature.
    pub fn sign(&mut self, sk: &SecKey) {
        let sig = sk.sign(self.signed_json().as_bytes());
        self.signature = sig.to_hex();
    }

    /// Verifies `signature` against `static` over the canonical form (hex case-insensitive).
    pub fn verify_signature(&self) -> Result<(), DiscRefusal> {
        let sig = Sig::from_hex(&self.signature).map_err(|_| DiscRefusal::Signature)?;
        self.static_pk
            .verify(self.signed_json().as_bytes(), &sig)
            .map_err(|_| DiscRefusal::Signature)
    }

    /// The reference's `Validate`, in its order. The timestamp window applies only to entries
    /// without a `client` member, and only when `now_ns` is given.
    pub fn validate(&self, now_ns: Option<i64>) -> Result<(), ValidationError> {
        if self.version.is_empty() {
            return Err(ValidationError::NoVersion);
        }
        if self.signature.is_empty() {
            return Err(ValidationError::NoSignature);
        }
        if self.static_pk.is_null() {
            return Err(ValidationError::NilKeys);
        }
        if self.client.is_none() && self.server.is_none() {
            return Err(ValidationError::NoClientOrServer);
        }
        if self.server.as_ref().is_some_and(|s| s.address.is_empty()) {
            return Err(ValidationError::EmptyServerAddress);
        }
        if let (Some(now), None) = (now_ns, &self.client) {
            let oldest = now.saturating_sub(MAX_PAST_NS);
            let newest = now.saturating_add(MAX_FUTURE_NS);
            if self.timestamp < oldest || self.timestamp > newest {
                return Err(ValidationError::OutdatedTimestamp);
            }
        }
        Ok(())
    }

    /// The reference's `ValidateIteration`: `next` must have a greater sequence and a timestamp
    /// not earlier than `self` (the stored entry).
    pub fn validate_iteration(&self, next: &Entry) -> Result<(), ValidationError> {
        if next.sequence <= self.sequence {
            return Err(ValidationError::WrongSequence);
        }
        if next.timestamp < self.timestamp {
            return Err(ValidationError::WrongTime);
        }
        Ok(())
    }

    /// Decodes an entry as the reference's decoder does (see the module doc).
    pub fn from_json(body: &[u8]) -> Result<Entry, EntryDecodeError> {
        if body.len() > MAX_ENTRY_BODY {
            return Err(EntryDecodeError::TooLarge { len: body.len() });
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        // Only the first value is read: no `de.end()`, so trailing bytes are ignored.
        de.deserialize_any(EntryVisitor)
            .map_err(|e| EntryDecodeError::Json {
                line: e.line(),
                column: e.column(),
            })
    }
}

/// Parses a key as Go's `PubKey.UnmarshalText`: empty or all `'0'` → null key.
pub fn parse_pk_text(s: &str) -> Result<PubKey, keys::KeyError> {
    if s.bytes().all(|c| c == b'0') {
        return Ok(PubKey::NULL);
    }
    PubKey::from_hex(s)
}

fn field_is(key: &str, name: &str) -> bool {
    key.eq_ignore_ascii_case(name) || key.to_lowercase() == name
}

struct PkText(PubKey);

impl<'de> serde::Deserialize<'de> for PkText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PkText, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_pk_text(&s)
            .map(PkText)
            .map_err(|_| de::Error::custom("invalid public key"))
    }
}

struct PkList(Vec<PubKey>);

impl<'de> serde::Deserialize<'de> for PkList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PkList, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PkList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of public keys")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PkList, A::Error> {
                let mut v = Vec::new();
                while let Some(pk) = seq.next_element::<PkText>()? {
                    if v.len() >= MAX_DELEGATED {
                        return Err(de::Error::custom("too many delegated servers"));
                    }
                    v.push(pk.0);
                }
                Ok(PkList(v))
            }
        }
        d.deserialize_seq(V)
    }
}

impl<'de> serde::Deserialize<'de> for ClientInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ClientInfo, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ClientInfo;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a client object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<ClientInfo, A::Error> {
                let mut c = ClientInfo::default();
                while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    if field_is(&k, "delegated_servers") {
                        c.delegated_servers = m.next_value::<Option<PkList>>()?.map(|l| l.0);
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> serde::Deserialize<'de> for ServerInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ServerInfo, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ServerInfo;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a server object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<ServerInfo, A::Error> {
                let mut s = ServerInfo::default();
                while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    if field_is(&k, "address") {
                        if let Some(a) = m.next_value::<Option<String>>()? {
                            s.address = a;
                        }
                    } else if field_is(&k, "availablesessions") {
                        if let Some(n) = m.next_value::<Option<i64>>()? {
                            s.available_sessions = n;
                        }
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(s)
            }
        }
        d.deserialize_map(V)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry object or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Entry, E> {
        Ok(Entry::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entry, A::Error> {
        let mut e = Entry::default();
        while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            if field_is(&k, "version") {
                if let Some(v) = m.next_value::<Option<String>>()? {
                    e.version = v;
                }
            } else if field_is(&k, "sequence") {
                if let Some(v) = m.next_value::<Option<u64>>()? {
                    e.sequence = v;
                }
            } else if field_is(&k, "timestamp") {
                if let Some(v) = m.next_value::<Option<i64>>()? {
                    e.timestamp = v;
                }
            } else if field_is(&k, "static") {
                if let Some(v) = m.next_value::<Option<PkText>>()? {
                    e.static_pk = v.0;
                }
            } else if field_is(&k, "client") {
                e.client = m.next_value::<Option<ClientInfo>>()?;
            } else if field_is(&k, "server") {
                e.server = m.next_value::<Option<ServerInfo>>()?;
            } else if field_is(&k, "signature") {
                if let Some(v) = m.next_value::<Option<String>>()? {
                    e.signature = v;
                }
            } else if field_is(&k, "protocol") {
                if let Some(v) = m.next_value::<Option<String>>()? {
                    e.protocol = v;
                }
            } else {
                m.next_value::<IgnoredAny>()?;
            }
        }
        Ok(e)
    }
}

/// Go's `net.SplitHostPort`: `None` where Go returns an error.
fn split_host_port(a: &str) -> Option<(&str, &str)> {
    let i = a.rfind(':')?;
    let (host, j, k) = if a.starts_with('[') {
        let end = a.find(']')?;
        if end + 1 != i {
            return None;
        }
        (&a[1..end], 1, end + 1)
    } else {
        let host = &a[..i];
        if host.contains(':') {
            return None;
        }
        (host, 0, 0)
    };
    if a[j..].contains('[') || a[k..].contains(']') {
        return None;
    }
    Some((host, &a[i + 1..]))
}

/// The production-mode refusal: the address has a port and its host is empty or a literal
/// loopback IP (host names are not resolved; no port → not refused).
pub fn is_loopback_address(address: &str) -> bool {
    let Some((host, _)) = split_host_port(address) else {
        return false;
    };
    if host.is_empty() {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Discovery settings that change how entries are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscPolicy {
    /// Current time, Unix nanoseconds.
    pub now_ns: i64,
    /// Refuse loopback server addresses (the reference without `-t`).
    pub production: bool,
    /// Keep the `protocol` member (skywire 2026's discovery). `false`: the 2023 reference,
    /// which drops it while decoding, so a signature that covers it fails (vector
    /// `post_unknown_member_covered_by_signature`).
    pub entry_protocol: bool,
}

/// What a successful POST did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostOutcome {
    /// No entry was stored for the key: `wrote a new entry`.
    Created,
    /// A stored entry was replaced: `wrote new entry iteration`.
    Updated,
}

impl PostOutcome {
    /// The reference's 200 message.
    pub fn message(self) -> &'static str {
        match self {
            PostOutcome::Created => "wrote a new entry",
            PostOutcome::Updated => "wrote new entry iteration",
        }
    }
}

/// Step 1 of POST and DELETE: decode the body (500 on failure). A server decodes once, looks up
/// the stored entry by the decoded `static_pk`, then calls [`check_post_entry`] or
/// [`check_delete_entry`].
pub fn decode_body(body: &[u8], policy: &DiscPolicy) -> Result<Entry, DiscRefusal> {
    let mut e = Entry::from_json(body).map_err(DiscRefusal::Decode)?;
    if !policy.entry_protocol {
        e.protocol.clear();
    }
    Ok(e)
}

fn check_common(e: &Entry, policy: &DiscPolicy) -> Result<(), DiscRefusal> {
    if policy.production
        && e.server
            .as_ref()
            .is_some_and(|s| is_loopback_address(&s.address))
    {
        return Err(DiscRefusal::Validation(ValidationError::LoopbackAddress));
    }
    e.validate(Some(policy.now_ns))
        .map_err(DiscRefusal::Validation)?;
    e.verify_signature()
}

/// Steps 2–6 of POST for an already decoded entry: production loopback check, validation,
/// signature, then iteration against `stored` (the entry currently stored under
/// `e.static_pk`). On success the caller stores `e` (its [`Entry::canonical_json`] is what GET
/// serves) and answers 200 with [`PostOutcome::message`].
pub fn check_post_entry(
    e: &Entry,
    stored: Option<&Entry>,
    policy: &DiscPolicy,
) -> Result<PostOutcome, DiscRefusal> {
    check_common(e, policy)?;
    match stored {
        None => Ok(PostOutcome::Created),
        Some(old) => {
            old.validate_iteration(e).map_err(DiscRefusal::Validation)?;
            Ok(PostOutcome::Updated)
        }
    }
}

/// DELETE for an already decoded entry: as POST without the iteration rule (any validly signed
/// entry of the key deletes it, as in the reference). On success the caller deletes
/// `e.static_pk` and answers 200 `deleted entry`.
pub fn check_delete_entry(e: &Entry, policy: &DiscPolicy) -> Result<(), DiscRefusal> {
    check_common(e, policy)
}

/// The whole POST check from the body: [`decode_body`] then [`check_post_entry`]. `stored` is
/// the entry stored under the body's static key (see [`peek_static`]).
pub fn check_post(
    body: &[u8],
    stored: Option<&Entry>,
    policy: &DiscPolicy,
) -> Result<(Entry, PostOutcome), DiscRefusal> {
    let e = decode_body(body, policy)?;
    let outcome = check_post_entry(&e, stored, policy)?;
    Ok((e, outcome))
}

/// The whole DELETE check from the body: [`decode_body`] then [`check_delete_entry`].
pub fn check_delete(body: &[u8], policy: &DiscPolicy) -> Result<Entry, DiscRefusal> {
    let e = decode_body(body, policy)?;
    check_delete_entry(&e, policy)?;
    Ok(e)
}

/// The static key a body would be stored under, so the caller can fetch the stored entry
/// before [`check_post`]. `None` when the body does not decode.
pub fn peek_static(body: &[u8]) -> Option<PubKey> {
    Entry::from_json(body).ok().map(|e| e.static_pk)
}

/// The reference's status reply body: `{"message":"…","code":N}`.
pub fn status_body(message: &str, code: u16) -> String {
    let mut s = String::from("{\"message\":");
    write_json_str(&mut s, message);
    s.push_str(&format!(",\"code\":{code}}}"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_jsoniter() {
        let mut s = String::new();
        write_json_str(&mut s, "a<b&c>d\"\\\n\r\t\u{1}\u{7f}é");
        assert_eq!(s, "\"a<b&c>d\\\"\\\\\\n\\r\\t\\u0001\u{7f}é\"");
    }

    #[test]
    fn loopback_rules() {
        for (a, lo) in [
            ("127.0.0.1:8081", true),
            ("127.9.9.9:1", true),
            ("[::1]:8081", true),
            (":8081", true),
            ("[::ffff:127.0.0.1]:80", true),
            ("localhost:8081", false),
            ("127.0.0.1", false),
            ("::1", false),
            ("1.2.3.4:80", false),
            ("[::1]", false),
            ("", false),
        ] {
            assert_eq!(is_loopback_address(a), lo, "{a}");
        }
    }

    #[test]
    fn decode_rules() {
        assert_eq!(Entry::from_json(b"null").unwrap(), Entry::default());
        assert_eq!(Entry::from_json(b"{}").unwrap(), Entry::default());
        assert!(Entry::from_json(b"[]").is_err());
        assert!(Entry::from_json(b"").is_err());
        let e = Entry::from_json(br#"{"Client":{},"x":[1,{"y":2}]} junk"#).unwrap();
        assert_eq!(e.client, Some(ClientInfo::default()));
        let e = Entry::from_json(br#"{"static":"0"}"#).unwrap();
        assert!(e.static_pk.is_null());
        let e = Entry::from_json(br#"{"static":""}"#).unwrap();
        assert!(e.static_pk.is_null());
        assert!(Entry::from_json(br#"{"static":"zz"}"#).is_err());
        assert!(Entry::from_json(br#"{"sequence":-1}"#).is_err());
        assert!(Entry::from_json(br#"{"sequence":1.5}"#).is_err());
        let e = Entry::from_json(br#"{"sequence":18446744073709551615,"timestamp":-5}"#).unwrap();
        assert_eq!((e.sequence, e.timestamp), (u64::MAX, -5));
    }

    #[test]
    fn sign_verify_and_iteration() {
        let sk = SecKey::generate();
        let mut e = Entry::new_server(sk.pubkey(), 1, 1000, "1.2.3.4:80".into(), 5);
        e.sign(&sk);
        e.verify_signature().unwrap();
        e.validate(Some(1000)).unwrap();
        assert_eq!(
            e.validate(Some(1000 + MAX_PAST_NS + 1)),
            Err(ValidationError::OutdatedTimestamp)
        );
        e.validate(Some(1000 + MAX_PAST_NS)).unwrap();
        e.validate(Some(1000 - MAX_FUTURE_NS)).unwrap();
        assert_eq!(
            e.validate(Some(1000 - MAX_FUTURE_NS - 1)),
            Err(ValidationError::OutdatedTimestamp)
        );
        let back = Entry::from_json(e.canonical_json().as_bytes()).unwrap();
        assert_eq!(back, e);
        let mut next = e.clone();
        assert_eq!(
            e.validate_iteration(&next),
            Err(ValidationError::WrongSequence)
        );
        next.sequence = 7;
        next.timestamp = 999;
        assert_eq!(e.validate_iteration(&next), Err(ValidationError::WrongTime));
        next.timestamp = 1000;
        e.validate_iteration(&next).unwrap();
    }

    #[test]
    fn protocol_member_is_signed_after_signature() {
        let sk = SecKey::generate();
        let mut e = Entry::new_client(sk.pubkey(), 0, 7, Some(vec![]));
        e.protocol = "smux".into();
        let signed = e.signed_json();
        assert!(signed.ends_with(r#""client":{"delegated_servers":[]},"protocol":"smux"}"#));
        e.sign(&sk);
        let canon = e.canonical_json();
        assert!(canon.ends_with(&format!(
            r#""signature":"{}","protocol":"smux"}}"#,
            e.signature
        )));
        let back = decode_body(canon.as_bytes(), &policy(true)).unwrap();
        assert_eq!(back.protocol, "smux");
        back.verify_signature().unwrap();
        // The 2023 reference drops the member, so the signature no longer covers the text.
        let old = decode_body(canon.as_bytes(), &policy(false)).unwrap();
        assert!(old.protocol.is_empty());
        assert_eq!(old.verify_signature(), Err(DiscRefusal::Signature));
    }

    fn policy(entry_protocol: bool) -> DiscPolicy {
        DiscPolicy {
            now_ns: 7,
            production: false,
            entry_protocol,
        }
    }

    #[test]
    fn status_body_form() {
        assert_eq!(
            status_body("wrote a new entry", 200),
            r#"{"message":"wrote a new entry","code":200}"#
        );
    }
}
