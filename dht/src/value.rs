//! Value formats: one fixed, versioned, typed format per known salt, each with exactly one
//! canonical encoding. Unknown salts carry opaque bytes.
//!
//! # Encoding: canonical JSON
//!
//! Every typed value is a JSON object whose first field is `"v": 1` (the format version), with
//! the fields in the order listed in `docs/protocols/items.md`, no whitespace, integers only (no
//! floats), strings in serde_json's compact escaping (only `"`, `\` and control characters
//! escaped; everything else raw UTF-8), keys as 66-char lowercase hex. Decoding is strict:
//!
//! 1. the object's `v` must be [`FORMAT_VERSION`] (checked first, so a future `v: 2` is reported
//!    as [`ValueError::Version`], not as a field error);
//! 2. the object must parse into the struct with `deny_unknown_fields` (no unknown, missing or
//!    duplicate fields, right types);
//! 3. the bounds of [`ValueFormat::validate`] must hold;
//! 4. re-encoding the parsed value must give back the input bytes exactly; otherwise
//!    [`ValueError::NonCanonical`]. This one check rules out whitespace, key reordering, escaped
//!    characters that need no escaping, `1.0` for `1`, and so on.
//!
//! So for every accepted `b`, `encode(decode(b)) == b`, and for every value `x`,
//! `decode(encode(x)) == x`.
//!
//! Why JSON rather than a compact binary: values are small (an advert is ~200 bytes), the Go
//! services already produce and consume JSON values, operators read them with `skymesh item
//! sign/verify` and `redis-cli` without a decoder, and canonical-ness is enforced by a single
//! re-encode comparison instead of a hand-written codec per format. The item envelope itself
//! (where the volume is) is binary (see [`crate::item`]).

use keys::PubKey;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::salt::{Salt, SaltKind};

/// The `v` every format currently carries.
pub const FORMAT_VERSION: u8 = 1;

/// Most listen addresses in a [`FullnodeAdvert`] or a service entry. A node with more interfaces
/// publishes its reachable ones; 16 covers IPv4+IPv6 × TCP/QUIC × a few NICs.
pub const MAX_ADDRS: usize = 16;
/// Longest address string (bytes): a multiaddr with DNS name and /p2p suffix fits in 256.
pub const MAX_ADDR_LEN: usize = 256;
/// Most protocol names in a [`DmsgServerEntry`].
pub const MAX_PROTOCOLS: usize = 16;
/// Longest short name (protocol, transport kind, service kind, version, label; bytes).
pub const MAX_NAME_LEN: usize = 64;
/// Most delegated servers in a [`DmsgEntry`]; DMSG clients use 1–3, the Go cap was 10.
pub const MAX_DELEGATED: usize = 16;
/// Most transports in [`TransportEntries`]. A busy visor has tens; the value size limit
/// (64 KiB ≈ 300 entries of ~200 bytes) usually binds first, this bound holds when it is raised.
pub const MAX_TRANSPORTS: usize = 512;
/// Most services in [`ServiceEntries`].
pub const MAX_SERVICES: usize = 64;

/// Why a value does not parse for its salt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The bytes are not JSON of the format's shape.
    #[error("{salt}: not a valid value")]
    Json {
        /// Salt name.
        salt: &'static str,
        /// Parser error.
        #[source]
        source: serde_json::Error,
    },
    /// A `dmsg` entry is malformed, fails the reference's validation, or does not authenticate
    /// its item.
    #[error("{salt}: {reason}")]
    Entry {
        /// Salt name.
        salt: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The `v` field is not [`FORMAT_VERSION`].
    #[error("{salt}: unsupported value version {version}")]
    Version {
        /// Salt name.
        salt: &'static str,
        /// Version found.
        version: u64,
    },
    /// The value parses but is not in its canonical encoding.
    #[error("{salt}: value is not canonically encoded")]
    NonCanonical {
        /// Salt name.
        salt: &'static str,
    },
    /// A list has too many entries.
    #[error("{salt}: {field} has {len} entries, at most {max}")]
    TooMany {
        /// Salt name.
        salt: &'static str,
        /// Field name.
        field: &'static str,
        /// Entries given.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A string is empty or too long.
    #[error("{salt}: {field} is {len} bytes, allowed {min}..={max}")]
    BadLength {
        /// Salt name.
        salt: &'static str,
        /// Field name.
        field: &'static str,
        /// Length given.
        len: usize,
        /// Minimum.
        min: usize,
        /// Maximum.
        max: usize,
    },
    /// `available_sessions` exceeds `max_sessions`.
    #[error("{salt}: available_sessions {available} above max_sessions {max}")]
    Sessions {
        /// Salt name.
        salt: &'static str,
        /// Declared available sessions.
        available: u32,
        /// Declared maximum.
        max: u32,
    },
    /// A field breaks a rule of its format version (`tp`: state presence, sorted edges and ids).
    #[error("{salt}: {field}: {reason}")]
    Invalid {
        /// Salt name.
        salt: &'static str,
        /// Field name.
        field: &'static str,
        /// The rule broken.
        reason: &'static str,
    },
    /// The value names a key that must be the item's subject key but is not.
    #[error("{salt}: {field} {found} is not the item's key {subject}")]
    SubjectMismatch {
        /// Salt name.
        salt: &'static str,
        /// Field name.
        field: &'static str,
        /// Key in the value.
        found: PubKey,
        /// The item's subject key.
        subject: PubKey,
    },
}

/// A typed value format bound to one salt.
pub trait ValueFormat: Serialize + DeserializeOwned + Sized {
    /// The salt this format belongs to.
    const KIND: SaltKind;

    /// Bounds beyond the JSON shape.
    fn validate(&self) -> Result<(), ValueError>;

    /// Checks the value against the item's subject key (keys the value must repeat).
    fn check_subject(&self, _subject: &PubKey) -> Result<(), ValueError> {
        Ok(())
    }

    /// The canonical encoding.
    fn encode(&self) -> Vec<u8> {
        // Serialising these plain structs into a Vec cannot fail (no maps with non-string keys,
        // no custom serialisers that error).
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Strict decode (see the module doc).
    fn decode(bytes: &[u8]) -> Result<Self, ValueError> {
        let salt = Self::KIND.name();
        let probe: VersionProbe =
            serde_json::from_slice(bytes).map_err(|source| ValueError::Json { salt, source })?;
        if probe.v != u64::from(FORMAT_VERSION) {
            return Err(ValueError::Version {
                salt,
                version: probe.v,
            });
        }
        let value: Self =
            serde_json::from_slice(bytes).map_err(|source| ValueError::Json { salt, source })?;
        value.validate()?;
        if value.encode() != bytes {
            return Err(ValueError::NonCanonical { salt });
        }
        Ok(value)
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    v: u64,
}

fn check_len(
    salt: SaltKind,
    field: &'static str,
    s: &str,
    min: usize,
    max: usize,
) -> Result<(), ValueError> {
    if s.len() < min || s.len() > max {
        return Err(ValueError::BadLength {
            salt: salt.name(),
            field,
            len: s.len(),
            min,
            max,
        });
    }
    Ok(())
}

fn check_count<T>(
    salt: SaltKind,
    field: &'static str,
    list: &[T],
    max: usize,
) -> Result<(), ValueError> {
    if list.len() > max {
        return Err(ValueError::TooMany {
            salt: salt.name(),
            field,
            len: list.len(),
            max,
        });
    }
    Ok(())
}

/// What a node does in the DHT (advertised in [`FullnodeAdvert`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Stores everything it is allowed to, serves sync.
    Full,
    /// Stores its share of the keyspace only.
    Regular,
    /// Writes items for services into a shared store.
    Mirror,
}

/// `fullnode`: a node advertising itself (replaces Go's `{pk, stored_items, full_node, ts}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullnodeAdvert {
    /// Format version, [`FORMAT_VERSION`].
    pub v: u8,
    /// Addresses the node listens on (multiaddr or `host:port` text), ≤ [`MAX_ADDRS`], each
    /// 1..=[`MAX_ADDR_LEN`] bytes.
    pub listen: Vec<String>,
    /// The node's role.
    pub role: Role,
    /// When the node started serving, Unix milliseconds.
    pub since: u64,
}

impl ValueFormat for FullnodeAdvert {
    const KIND: SaltKind = SaltKind::Fullnode;
    fn validate(&self) -> Result<(), ValueError> {
        check_count(Self::KIND, "listen", &self.listen, MAX_ADDRS)?;
        for a in &self.listen {
            check_len(Self::KIND, "listen", a, 1, MAX_ADDR_LEN)?;
        }
        Ok(())
    }
}

/// `dmsg-server`: a DMSG server's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmsgServerEntry {
    /// Format version, [`FORMAT_VERSION`].
    pub v: u8,
    /// The server's key; must equal the item's subject key.
    pub pk: PubKey,
    /// TCP address `host:port`, 1..=[`MAX_ADDR_LEN`] bytes.
    pub address: String,
    /// Session limit.
    pub max_sessions: u32,
    /// Free sessions now (≤ `max_sessions`).
    pub available_sessions: u32,
    /// Whether the server also serves as a DHT bootstrap node.
    pub dht_bootstrap: bool,
    /// Protocols spoken (e.g. `dmsg`), ≤ [`MAX_PROTOCOLS`], each 1..=[`MAX_NAME_LEN`] bytes.
    pub protocols: Vec<String>,
}

impl ValueFormat for DmsgServerEntry {
    const KIND: SaltKind = SaltKind::DmsgServer;
    fn validate(&self) -> Result<(), ValueError> {
        check_len(Self::KIND, "address", &self.address, 1, MAX_ADDR_LEN)?;
        if self.available_sessions > self.max_sessions {
            return Err(ValueError::Sessions {
                salt: Self::KIND.name(),
                available: self.available_sessions,
                max: self.max_sessions,
            });
        }
        check_count(Self::KIND, "protocols", &self.protocols, MAX_PROTOCOLS)?;
        for p in &self.protocols {
            check_len(Self::KIND, "protocols", p, 1, MAX_NAME_LEN)?;
        }
        Ok(())
    }
    fn check_subject(&self, subject: &PubKey) -> Result<(), ValueError> {
        if self.pk != *subject {
            return Err(ValueError::SubjectMismatch {
                salt: Self::KIND.name(),
                field: "pk",
                found: self.pk,
                subject: *subject,
            });
        }
        Ok(())
    }
}

/// `dmsg`: the subject's DMSG discovery entry in the reference format (skycoin/dmsg
/// `disc.Entry`: client entries with delegated servers, server entries with address and
/// available sessions), exactly as the reference discovery stores it under the key.
///
/// Unlike every other format, this value authenticates itself: it carries the owner's
/// reference entry signature, and an item with salt `dmsg` is valid only when its `seq` is the
/// entry's `sequence`, it has no writer, and its item signature is that same entry signature
/// over the entry's signed JSON ([`crate::rules::validate`] checks this instead of the item
/// envelope signature). So an entry posted by a Go program to any full node's discovery API
/// can be stored and relayed by anyone and verified by everyone against the owner's key,
/// without trusting the node that accepted it. Build such items with [`DmsgEntry::to_item`].
///
/// Canonical encoding: the reference's JSON of the signed entry
/// ([`dmsg_proto::disc::Entry::canonical_json`]); decoding is strict (re-encoding must give the
/// input bytes back), the entry must pass the reference's `Validate` (without the timestamp
/// window, which only the accepting discovery applies), list at most [`MAX_DELEGATED`]
/// delegated servers, and carry its signature in lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmsgEntry(pub dmsg_proto::disc::Entry);

impl DmsgEntry {
    /// The canonical encoding (the signed entry JSON).
    pub fn encode(&self) -> Vec<u8> {
        self.0.canonical_json().into_bytes()
    }

    /// Strict decode (see the type doc).
    pub fn decode(bytes: &[u8]) -> Result<DmsgEntry, ValueError> {
        let salt = SaltKind::Dmsg.name();
        let entry = dmsg_proto::disc::Entry::from_json(bytes).map_err(|e| ValueError::Entry {
            salt,
            reason: e.to_string(),
        })?;
        entry.validate(None).map_err(|e| ValueError::Entry {
            salt,
            reason: e.to_string(),
        })?;
        if let Some(list) = entry
            .client
            .as_ref()
            .and_then(|c| c.delegated_servers.as_ref())
        {
            check_count(SaltKind::Dmsg, "delegated_servers", list, MAX_DELEGATED)?;
        }
        if let Some(s) = &entry.server {
            check_len(SaltKind::Dmsg, "address", &s.address, 1, MAX_ADDR_LEN)?;
        }
        // One encoding per item: the signature in lowercase hex, as the reference writes it.
        if entry.signature.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ValueError::NonCanonical { salt });
        }
        let value = DmsgEntry(entry);
        if value.encode() != bytes {
            return Err(ValueError::NonCanonical { salt });
        }
        Ok(value)
    }

    /// The entry's `static` key must be the item's subject key.
    pub fn check_subject(&self, subject: &PubKey) -> Result<(), ValueError> {
        if self.0.static_pk != *subject {
            return Err(ValueError::SubjectMismatch {
                salt: SaltKind::Dmsg.name(),
                field: "static",
                found: self.0.static_pk,
                subject: *subject,
            });
        }
        Ok(())
    }

    /// The signature the entry carries, parsed.
    pub fn signature(&self) -> Result<keys::Sig, ValueError> {
        keys::Sig::from_hex(&self.0.signature).map_err(|_| ValueError::Entry {
            salt: SaltKind::Dmsg.name(),
            reason: "signature is not 65 bytes of hex".into(),
        })
    }

    /// The `dmsg` item carrying this signed entry: subject = `static`, seq = `sequence`, the
    /// item signature = the entry signature (hex lowercased). Fails when the value is not canonical-clean
    /// (see [`DmsgEntry::decode`]) or the signature is not 65 bytes of hex; the signature itself
    /// is checked by [`crate::rules::validate`] like any other item's.
    pub fn to_item(&self) -> Result<crate::Item, ValueError> {
        // The signature is not signed over; its hex case is normalised (the reference's
        // decoder accepts either case).
        let mut entry = self.0.clone();
        entry.signature.make_ascii_lowercase();
        let value = DmsgEntry(entry).encode();
        let checked = DmsgEntry::decode(&value)?;
        Ok(crate::Item {
            pk: checked.0.static_pk,
            salt: crate::Salt::of_kind(SaltKind::Dmsg),
            seq: checked.0.sequence,
            writer: None,
            sig: checked.signature()?,
            value,
        })
    }

    /// Checks an item with salt `dmsg` whose value decoded to `self`: no writer, seq equal to the
    /// entry's sequence, item signature equal to the entry's and valid over the entry's signed
    /// JSON for the subject key.
    pub fn authenticate(&self, item: &crate::Item) -> Result<(), ValueError> {
        let salt = SaltKind::Dmsg.name();
        let bad = |reason: &str| ValueError::Entry {
            salt,
            reason: reason.to_string(),
        };
        if item.writer.is_some() {
            return Err(bad("a dmsg entry cannot be written for another key"));
        }
        if item.seq != self.0.sequence {
            return Err(bad("item seq differs from the entry sequence"));
        }
        if self.signature()? != item.sig {
            return Err(bad("item signature differs from the entry signature"));
        }
        item.pk
            .verify(self.0.signed_json().as_bytes(), &item.sig)
            .map_err(|_| bad("entry signature does not verify against the subject key"))
    }
}

/// The `v` of the current `tp` format. Version 2 adds the per-transport `state` and requires
/// sorted edges and ids; version 1 (no `state`) is still read, so a reader can tell an old
/// publisher's list from a new one and nothing is silently misread.
pub const TP_FORMAT_VERSION: u8 = 2;

/// The state a publisher reports for one of its transports (`tp` v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportState {
    /// The link is established and its keepalives arrive.
    Up,
    /// The link is configured but not established (reconnecting, or the peer is gone).
    Down,
}

/// One transport of a visor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportEntry {
    /// Transport id (a UUID as text in Skywire), 1..=[`MAX_NAME_LEN`] bytes.
    pub id: String,
    /// Both edge keys; one of them must be the item's subject key. In v2 sorted ascending (by
    /// the 33 key bytes) and distinct, so both ends list the same pair in the same order.
    pub edges: [PubKey; 2],
    /// Transport type (`dmsg`, `stcpr`, `sudph`, …), 1..=[`MAX_NAME_LEN`] bytes. Free text in
    /// the format: a new kind needs no format change.
    pub kind: String,
    /// Free-form label, 0..=[`MAX_NAME_LEN`] bytes.
    pub label: String,
    /// v2: the publisher's view of the link; absent in v1 (and required in v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TransportState>,
}

/// `tp`: every transport of the subject visor (the whole list; `[]` = none).
///
/// Versions: `v: 1` entries have no `state`; `v: 2` entries ([`TP_FORMAT_VERSION`]) carry
/// `state` after `label`, have sorted distinct edges, and the list is sorted by `id` with no
/// repeats (so a set of transports has exactly one encoding). Both versions decode; anything
/// else is [`ValueError::Version`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportEntries {
    /// Format version: 1 or [`TP_FORMAT_VERSION`].
    pub v: u8,
    /// The transports, ≤ [`MAX_TRANSPORTS`].
    pub transports: Vec<TransportEntry>,
}

impl TransportEntries {
    /// A v2 list from entries in any order: sorted by id (entries must have distinct ids,
    /// sorted edges and a state to pass [`ValueFormat::validate`]).
    pub fn v2(mut transports: Vec<TransportEntry>) -> TransportEntries {
        transports.sort_by(|a, b| a.id.cmp(&b.id));
        TransportEntries {
            v: TP_FORMAT_VERSION,
            transports,
        }
    }
}

impl ValueFormat for TransportEntries {
    const KIND: SaltKind = SaltKind::Tp;
    fn validate(&self) -> Result<(), ValueError> {
        let salt = Self::KIND.name();
        if self.v != 1 && self.v != TP_FORMAT_VERSION {
            return Err(ValueError::Version {
                salt,
                version: u64::from(self.v),
            });
        }
        let v2 = self.v == TP_FORMAT_VERSION;
        check_count(Self::KIND, "transports", &self.transports, MAX_TRANSPORTS)?;
        let invalid = |field: &'static str, reason: &'static str| ValueError::Invalid {
            salt,
            field,
            reason,
        };
        for (i, t) in self.transports.iter().enumerate() {
            check_len(Self::KIND, "id", &t.id, 1, MAX_NAME_LEN)?;
            check_len(Self::KIND, "kind", &t.kind, 1, MAX_NAME_LEN)?;
            check_len(Self::KIND, "label", &t.label, 0, MAX_NAME_LEN)?;
            match (v2, t.state) {
                (true, None) => return Err(invalid("state", "required in v2")),
                (false, Some(_)) => return Err(invalid("state", "not part of v1")),
                _ => {}
            }
            if v2 {
                if t.edges[0].as_bytes() >= t.edges[1].as_bytes() {
                    return Err(invalid("edges", "must be distinct and sorted in v2"));
                }
                if i > 0 && self.transports[i - 1].id >= t.id {
                    return Err(invalid("id", "ids must be unique and sorted in v2"));
                }
            }
        }
        Ok(())
    }
    fn check_subject(&self, subject: &PubKey) -> Result<(), ValueError> {
        for t in &self.transports {
            if !t.edges.contains(subject) {
                return Err(ValueError::SubjectMismatch {
                    salt: Self::KIND.name(),
                    field: "edges",
                    found: t.edges[0],
                    subject: *subject,
                });
            }
        }
        Ok(())
    }
    /// Strict decode accepting `v` 1 and 2 (see the type doc); otherwise as the trait's.
    fn decode(bytes: &[u8]) -> Result<Self, ValueError> {
        let salt = Self::KIND.name();
        let probe: VersionProbe =
            serde_json::from_slice(bytes).map_err(|source| ValueError::Json { salt, source })?;
        if probe.v != 1 && probe.v != u64::from(TP_FORMAT_VERSION) {
            return Err(ValueError::Version {
                salt,
                version: probe.v,
            });
        }
        let value: Self =
            serde_json::from_slice(bytes).map_err(|source| ValueError::Json { salt, source })?;
        value.validate()?;
        if value.encode() != bytes {
            return Err(ValueError::NonCanonical { salt });
        }
        Ok(value)
    }
}

/// One service a visor offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// Service type (`vpn`, `skysocks`, `visor`, …), 1..=[`MAX_NAME_LEN`] bytes.
    pub kind: String,
    /// Port on the overlay.
    pub port: u16,
    /// Reachable addresses, ≤ [`MAX_ADDRS`], each 1..=[`MAX_ADDR_LEN`] bytes.
    pub addrs: Vec<String>,
    /// Service version, 0..=[`MAX_NAME_LEN`] bytes.
    pub version: String,
}

/// `svc`: every service of the subject visor (the whole list; `[]` = none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntries {
    /// Format version, [`FORMAT_VERSION`].
    pub v: u8,
    /// The services, ≤ [`MAX_SERVICES`].
    pub services: Vec<ServiceEntry>,
}

impl ValueFormat for ServiceEntries {
    const KIND: SaltKind = SaltKind::Svc;
    fn validate(&self) -> Result<(), ValueError> {
        check_count(Self::KIND, "services", &self.services, MAX_SERVICES)?;
        for s in &self.services {
            check_len(Self::KIND, "kind", &s.kind, 1, MAX_NAME_LEN)?;
            check_len(Self::KIND, "version", &s.version, 0, MAX_NAME_LEN)?;
            check_count(Self::KIND, "addrs", &s.addrs, MAX_ADDRS)?;
            for a in &s.addrs {
                check_len(Self::KIND, "addrs", a, 1, MAX_ADDR_LEN)?;
            }
        }
        Ok(())
    }
}

/// A decoded value of any salt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value {
    /// `fullnode`
    Fullnode(FullnodeAdvert),
    /// `dmsg-server`
    DmsgServer(DmsgServerEntry),
    /// `dmsg`
    Dmsg(DmsgEntry),
    /// `tp`
    Tp(TransportEntries),
    /// `svc`
    Svc(ServiceEntries),
    /// Any other salt: the bytes as they are.
    Opaque(Vec<u8>),
}

impl Value {
    /// Decodes `bytes` with the format of `salt` (opaque for unknown salts).
    pub fn decode(salt: &Salt, bytes: &[u8]) -> Result<Value, ValueError> {
        Ok(match salt.kind() {
            Some(SaltKind::Fullnode) => Value::Fullnode(FullnodeAdvert::decode(bytes)?),
            Some(SaltKind::DmsgServer) => Value::DmsgServer(DmsgServerEntry::decode(bytes)?),
            Some(SaltKind::Dmsg) => Value::Dmsg(DmsgEntry::decode(bytes)?),
            Some(SaltKind::Tp) => Value::Tp(TransportEntries::decode(bytes)?),
            Some(SaltKind::Svc) => Value::Svc(ServiceEntries::decode(bytes)?),
            None => Value::Opaque(bytes.to_vec()),
        })
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Value::Fullnode(v) => v.encode(),
            Value::DmsgServer(v) => v.encode(),
            Value::Dmsg(v) => v.encode(),
            Value::Tp(v) => v.encode(),
            Value::Svc(v) => v.encode(),
            Value::Opaque(b) => b.clone(),
        }
    }

    /// The salt kind, `None` for opaque values.
    pub fn kind(&self) -> Option<SaltKind> {
        match self {
            Value::Fullnode(_) => Some(SaltKind::Fullnode),
            Value::DmsgServer(_) => Some(SaltKind::DmsgServer),
            Value::Dmsg(_) => Some(SaltKind::Dmsg),
            Value::Tp(_) => Some(SaltKind::Tp),
            Value::Svc(_) => Some(SaltKind::Svc),
            Value::Opaque(_) => None,
        }
    }

    /// Checks keys inside the value against the item's subject key.
    pub fn check_subject(&self, subject: &PubKey) -> Result<(), ValueError> {
        match self {
            Value::Fullnode(v) => v.check_subject(subject),
            Value::DmsgServer(v) => v.check_subject(subject),
            Value::Dmsg(v) => v.check_subject(subject),
            Value::Tp(v) => v.check_subject(subject),
            Value::Svc(v) => v.check_subject(subject),
            Value::Opaque(_) => Ok(()),
        }
    }
}
