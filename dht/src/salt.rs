//! Salts: the name of a slot under a key, and the registry of salts with a typed value format.
//!
//! A salt is at most [`MAX_SALT_LEN`] bytes. Salts listed in [`SaltKind`] have exactly one value
//! format each (see [`crate::value`]); every other salt carries opaque bytes.

use std::fmt;

/// Longest salt accepted anywhere (bytes). The Go node allowed 200; every salt in use is ≤ 16
/// bytes, and a short bound keeps per-key index entries small.
pub const MAX_SALT_LEN: usize = 64;

/// Salt of a full node's advert ([`crate::value::FullnodeAdvert`]).
pub const FULLNODE: &str = "fullnode";
/// Salt of a DMSG server's entry ([`crate::value::DmsgServerEntry`]).
pub const DMSG_SERVER: &str = "dmsg-server";
/// Salt of a key's DMSG discovery entry in the reference format ([`crate::value::DmsgEntry`]).
pub const DMSG: &str = "dmsg";
/// Salt of a visor's transport list ([`crate::value::TransportEntries`]).
pub const TP: &str = "tp";
/// Salt of a visor's service list ([`crate::value::ServiceEntries`]).
pub const SVC: &str = "svc";

/// The salt was longer than [`MAX_SALT_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("salt is {len} bytes, at most {max} allowed", max = MAX_SALT_LEN)]
pub struct SaltTooLong {
    /// Length that was given.
    pub len: usize,
}

/// A salt: 0..=[`MAX_SALT_LEN`] arbitrary bytes (usually ASCII such as `dmsg`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Salt(Vec<u8>);

impl Salt {
    /// A salt from bytes; refused when longer than [`MAX_SALT_LEN`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Salt, SaltTooLong> {
        let bytes = bytes.into();
        if bytes.len() > MAX_SALT_LEN {
            return Err(SaltTooLong { len: bytes.len() });
        }
        Ok(Salt(bytes))
    }

    /// The salt of a known kind.
    pub fn of_kind(kind: SaltKind) -> Salt {
        // Every known name is far below MAX_SALT_LEN.
        Salt(kind.name().as_bytes().to_vec())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty salt.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The known kind of this salt, or `None` for an opaque salt.
    pub fn kind(&self) -> Option<SaltKind> {
        SaltKind::from_bytes(&self.0)
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "Salt({s:?})"),
            Err(_) => write!(f, "Salt(0x{})", hex::encode(&self.0)),
        }
    }
}

impl fmt::Display for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => f.write_str(s),
            Err(_) => write!(f, "0x{}", hex::encode(&self.0)),
        }
    }
}

impl TryFrom<&str> for Salt {
    type Error = SaltTooLong;
    fn try_from(s: &str) -> Result<Salt, SaltTooLong> {
        Salt::new(s.as_bytes())
    }
}

/// Every salt with a typed value format. Anything else is opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaltKind {
    /// [`FULLNODE`]
    Fullnode,
    /// [`DMSG_SERVER`]
    DmsgServer,
    /// [`DMSG`]
    Dmsg,
    /// [`TP`]
    Tp,
    /// [`SVC`]
    Svc,
}

impl SaltKind {
    /// Every known kind.
    pub const ALL: [SaltKind; 5] = [
        SaltKind::Fullnode,
        SaltKind::DmsgServer,
        SaltKind::Dmsg,
        SaltKind::Tp,
        SaltKind::Svc,
    ];

    /// The salt text.
    pub fn name(self) -> &'static str {
        match self {
            SaltKind::Fullnode => FULLNODE,
            SaltKind::DmsgServer => DMSG_SERVER,
            SaltKind::Dmsg => DMSG,
            SaltKind::Tp => TP,
            SaltKind::Svc => SVC,
        }
    }

    /// The kind whose salt is exactly `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Option<SaltKind> {
        SaltKind::ALL
            .into_iter()
            .find(|k| k.name().as_bytes() == bytes)
    }
}
