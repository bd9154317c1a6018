//! Property tests of the `dmsg` value (the reference entry carried as a self-authenticating
//! item): every signed entry round-trips into a valid item; any change to the value, the seq or
//! the signature makes it invalid.
#![allow(clippy::unwrap_used)]

use dht::value::DmsgEntry;
use dht::{Config, Value, rules};
use dmsg_proto::disc::Entry;
use keys::SecKey;
use proptest::prelude::*;

fn entry(
    seed: u64,
    seq: u64,
    ts: i64,
    servers: u8,
    server: Option<(String, i64)>,
) -> (SecKey, Entry) {
    let sk = SecKey::from_seed(&seed.to_be_bytes());
    let delegated: Vec<_> = (0..servers)
        .map(|i| SecKey::from_seed(&[i, 7]).pubkey())
        .collect();
    let mut e = match server {
        Some((addr, avail)) => Entry::new_server(sk.pubkey(), seq, ts, addr, avail),
        None => Entry::new_client(sk.pubkey(), seq, ts, Some(delegated)),
    };
    e.sign(&sk);
    (sk, e)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn signed_entries_are_valid_items_and_every_change_breaks_them(
        seed in any::<u64>(),
        seq in any::<u64>(),
        ts in any::<i64>(),
        servers in 0u8..=16,
        server in proptest::option::of(("[a-z0-9.]{1,40}:[0-9]{1,5}", any::<i64>())),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let cfg = Config::default();
        let (_, e) = entry(seed, seq, ts, servers, server);
        let item = DmsgEntry(e.clone()).to_item().unwrap();
        prop_assert!(matches!(rules::validate(&cfg, &item), Ok(Value::Dmsg(d)) if d.0 == e));
        prop_assert_eq!(DmsgEntry::decode(&item.value).unwrap().encode(), item.value.clone());

        let mut bad = item.clone();
        let i = flip.index(bad.value.len());
        bad.value[i] ^= 1 << bit;
        let r = rules::validate(&cfg, &bad);
        prop_assert!(r.is_err(), "{} -> {:?}", String::from_utf8_lossy(&bad.value), r);

        // The reference accepts upper-case signature hex; the item is the same either way.
        let mut upper = e.clone();
        upper.signature.make_ascii_uppercase();
        prop_assert_eq!(DmsgEntry(upper.clone()).to_item().unwrap(), item.clone());
        prop_assert!(DmsgEntry::decode(upper.canonical_json().as_bytes()).is_err());

        let mut bad = item.clone();
        bad.seq = bad.seq.wrapping_add(1);
        prop_assert!(rules::validate(&cfg, &bad).is_err());

        let mut sig = *item.sig.as_bytes();
        sig[i % 64] ^= 1 << bit;
        let mut bad = item.clone();
        bad.sig = keys::Sig::from_bytes(&sig).unwrap();
        prop_assert!(rules::validate(&cfg, &bad).is_err());
    }
}
