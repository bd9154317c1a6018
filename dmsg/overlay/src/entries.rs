//! `dmsg` items ↔ reference discovery entries, and which server entries count as live.
use std::time::Duration;

use dht::value::DmsgEntry;
use dht::{Item, Salt, SaltKind};
use dmsg_proto::disc::Entry;

/// How long a server entry counts as live after its timestamp when nothing newer arrives.
/// skymesh servers republish every [`SERVER_REPUBLISH`] (and on every change), Go servers
/// every minute; a DHT item cannot be deleted, so a server that died is listed at most this
/// long (clients rank unreachable servers last meanwhile, see [`crate::rank`]).
pub const SERVER_FRESHNESS: Duration = Duration::from_secs(11 * 60);

/// How often a skymesh DMSG server republishes its entries when nothing changed.
pub const SERVER_REPUBLISH: Duration = Duration::from_secs(5 * 60);

/// How often an unchanged client entry is republished so it never reaches the item TTL
/// (2 h by default).
pub const CLIENT_REPUBLISH: Duration = Duration::from_secs(30 * 60);

/// The `dmsg` salt.
pub fn dmsg_salt() -> Salt {
    Salt::of_kind(SaltKind::Dmsg)
}

/// The `dmsg-server` salt.
pub fn dmsg_server_salt() -> Salt {
    Salt::of_kind(SaltKind::DmsgServer)
}

/// The reference entry a verified `dmsg` item carries (`None` for other items).
pub fn entry_of(item: &Item) -> Option<Entry> {
    if item.salt.kind() != Some(SaltKind::Dmsg) {
        return None;
    }
    DmsgEntry::decode(&item.value).ok().map(|d| d.0)
}

/// Whether `e` is a server entry younger than `fresh` at `now_ns`.
pub fn is_live_server(e: &Entry, now_ns: i64, fresh: Duration) -> bool {
    let fresh_ns = i64::try_from(fresh.as_nanos()).unwrap_or(i64::MAX);
    e.server.is_some() && e.timestamp >= now_ns.saturating_sub(fresh_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::SecKey;

    #[test]
    fn entries_round_trip_through_items() {
        let sk = SecKey::from_seed(b"entries");
        let mut e = Entry::new_server(sk.pubkey(), 4, 1_000, "127.0.0.1:1".into(), 5);
        e.sign(&sk);
        let item = DmsgEntry(e.clone()).to_item().unwrap();
        assert_eq!(entry_of(&item), Some(e.clone()));
        assert!(is_live_server(&e, 1_000, Duration::from_secs(1)));
        assert!(!is_live_server(&e, 3_000_000_000, Duration::from_secs(1)));
        let client = Entry::new_client(sk.pubkey(), 1, 1_000, Some(vec![]));
        assert!(!is_live_server(&client, 1_000, Duration::from_secs(1)));
    }
}
