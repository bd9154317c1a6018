//! Node roles. Roles are an enum, never a pair of bools: each role decides the Kademlia mode,
//! the storage policy and the duties (adverts) of the node.
use std::fmt;
use std::str::FromStr;

use libp2p::kad;

/// What a node does for the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Always Kademlia server mode; stores every valid item it receives; advertises itself under
    /// salt `fullnode` and answers one-round-trip reads (`/skymesh/get/1`) from anyone.
    Full,
    /// Server mode when reachable, client mode otherwise; stores items within its quotas.
    Regular,
}

impl Role {
    /// The role's name as used on the command line, in identify and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Full => "full",
            Role::Regular => "regular",
        }
    }

    /// The Kademlia mode for this role: `Some(mode)` forces it, `None` lets kad decide from
    /// confirmed external addresses (server once one is confirmed).
    pub fn kad_mode(self, reachability: Reachability) -> Option<kad::Mode> {
        match (self, reachability) {
            (Role::Full, _) | (Role::Regular, Reachability::Public) => Some(kad::Mode::Server),
            (Role::Regular, Reachability::Private) => Some(kad::Mode::Client),
            (Role::Regular, Reachability::Auto) => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not `full` or `regular`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown role {0:?} (expected full or regular)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        match s {
            "full" => Ok(Role::Full),
            "regular" => Ok(Role::Regular),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// Whether other nodes can dial this one; decides the Kademlia mode of a regular node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Reachability {
    /// Let kad decide: client mode until an external address is confirmed, then server.
    #[default]
    Auto,
    /// Known to be dialable (public address, or a test network on loopback): server mode.
    Public,
    /// Known not to be dialable (behind NAT): client mode, never in others' routing tables.
    Private,
}

/// The identify agent version announcing `role`, e.g. `skymesh/0.1.0 role=full`.
pub fn agent_version(role: Role) -> String {
    format!(
        "skymesh/{} role={}",
        env!("CARGO_PKG_VERSION"),
        role.as_str()
    )
}

/// The role a peer announced in its identify agent version, if it is a skymesh node.
pub fn role_from_agent(agent: &str) -> Option<Role> {
    let rest = agent.strip_prefix("skymesh/")?;
    let (_, role) = rest.split_once(" role=")?;
    role.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn agent_round_trip() {
        assert_eq!(
            role_from_agent(&agent_version(Role::Full)),
            Some(Role::Full)
        );
        assert_eq!(
            role_from_agent(&agent_version(Role::Regular)),
            Some(Role::Regular)
        );
        assert_eq!(role_from_agent("rust-libp2p/0.1"), None);
    }

    #[test]
    fn full_is_always_server() {
        for r in [
            Reachability::Auto,
            Reachability::Private,
            Reachability::Public,
        ] {
            assert_eq!(Role::Full.kad_mode(r), Some(kad::Mode::Server));
        }
        assert_eq!(Role::Regular.kad_mode(Reachability::Auto), None);
    }
}
