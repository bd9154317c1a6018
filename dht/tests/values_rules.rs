#![allow(clippy::unwrap_used)]
//! Value formats (round trip, canonical-ness) and every acceptance rule.
use std::collections::BTreeSet;

use dht::rules::{self, Decision, Usage};
use dht::value::{
    DmsgEntry, DmsgServerEntry, FullnodeAdvert, Role, ServiceEntries, ServiceEntry,
    TP_FORMAT_VERSION, TransportEntries, TransportEntry, TransportState, ValueFormat,
};
use dht::{CapacityLimit, Config, InvalidItem, Item, PutError, Salt, SaltKind, Value, ValueError};
use keys::{PubKey, SecKey};
use proptest::prelude::*;

fn sk(seed: &str) -> SecKey {
    SecKey::from_seed(seed.as_bytes())
}

fn pk(seed: &str) -> PubKey {
    sk(seed).pubkey()
}

fn fullnode() -> FullnodeAdvert {
    FullnodeAdvert {
        v: 1,
        listen: vec!["/ip4/1.2.3.4/tcp/4001".into()],
        role: Role::Full,
        since: 1_790_000_000_000,
    }
}

fn server(owner: PubKey) -> DmsgServerEntry {
    DmsgServerEntry {
        v: 1,
        pk: owner,
        address: "1.2.3.4:8081".into(),
        max_sessions: 2048,
        available_sessions: 2000,
        dht_bootstrap: true,
        protocols: vec!["dmsg".into()],
    }
}

fn samples(owner: PubKey) -> Vec<(SaltKind, Vec<u8>)> {
    vec![
        (SaltKind::Fullnode, fullnode().encode()),
        (SaltKind::DmsgServer, server(owner).encode()),
        (
            SaltKind::Dmsg,
            signed_entry(&sk("owner"), 7, vec![pk("s1"), pk("s2")]).encode(),
        ),
        (
            SaltKind::Tp,
            TransportEntries {
                v: 1,
                transports: vec![TransportEntry {
                    id: "3f1c2e".into(),
                    edges: [owner, pk("peer")],
                    kind: "stcpr".into(),
                    label: String::new(),
                    state: None,
                }],
            }
            .encode(),
        ),
        (SaltKind::Tp, tp_v2(owner, pk("peer")).encode()),
        (
            SaltKind::Svc,
            ServiceEntries {
                v: 1,
                services: vec![ServiceEntry {
                    kind: "vpn".into(),
                    port: 44,
                    addrs: vec!["5.6.7.8:44".into()],
                    version: "1.3.0".into(),
                }],
            }
            .encode(),
        ),
    ]
}

#[test]
fn fixed_encodings() {
    assert_eq!(
        String::from_utf8(fullnode().encode()).unwrap(),
        r#"{"v":1,"listen":["/ip4/1.2.3.4/tcp/4001"],"role":"full","since":1790000000000}"#
    );
    let e = dmsg_proto::disc::Entry::new_client(
        pk("owner"),
        3,
        1_790_000_000_000_000_000,
        Some(vec![]),
    );
    assert_eq!(
        String::from_utf8(DmsgEntry(e).encode()).unwrap(),
        format!(
            r#"{{"version":"0.0.1","sequence":3,"timestamp":1790000000000000000,"static":"{}","client":{{"delegated_servers":[]}}}}"#,
            pk("owner").to_hex()
        )
    );
}

#[test]
fn every_format_round_trips_and_is_canonical() {
    let owner = pk("owner");
    for (kind, bytes) in samples(owner) {
        let salt = Salt::of_kind(kind);
        let v = Value::decode(&salt, &bytes).unwrap();
        assert_eq!(v.kind(), Some(kind));
        assert_eq!(v.encode(), bytes, "{kind:?}");
        v.check_subject(&owner).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        // Non-canonical spellings of the same value are refused.
        let spaced = text.replacen(':', ": ", 1);
        let trailing = format!("{text}\n");
        let leading = format!(" {text}");
        for bad in [spaced, trailing, leading] {
            assert!(
                matches!(
                    Value::decode(&salt, bad.as_bytes()),
                    Err(ValueError::NonCanonical { .. })
                ),
                "{kind:?}: {bad}"
            );
        }
        // Unknown field, missing field, other version, not JSON.
        let unknown = format!("{},\"x\":1}}", &text[..text.len() - 1]);
        if kind == SaltKind::Dmsg {
            // The reference decoder drops unknown fields; the canonical check then refuses.
            assert!(Value::decode(&salt, unknown.as_bytes()).is_err());
            assert!(Value::decode(&salt, br#"{"v":1}"#).is_err());
        } else {
            assert!(matches!(
                Value::decode(&salt, unknown.as_bytes()),
                Err(ValueError::Json { .. })
            ));
            assert!(matches!(
                Value::decode(&salt, br#"{"v":1}"#),
                Err(ValueError::Json { .. })
            ));
            // A future version (every sample starts with `{"v":N,`).
            let future = format!("{{\"v\":99,{}", &text[text.find(',').unwrap() + 1..]);
            assert!(matches!(
                Value::decode(&salt, future.as_bytes()),
                Err(ValueError::Version { version: 99, .. })
            ));
        }
        assert!(Value::decode(&salt, b"\xff").is_err());
    }
    // Reordered keys, escaped characters that need no escaping, float for an integer.
    let fsalt = Salt::of_kind(SaltKind::Fullnode);
    for bad in [
        r#"{"listen":["/ip4/1.2.3.4/tcp/4001"],"v":1,"role":"full","since":1790000000000}"#,
        r#"{"v":1,"listen":["\/ip4/1.2.3.4/tcp/4001"],"role":"full","since":1790000000000}"#,
        r#"{"v":1,"listen":["/ip4/1.2.3.4/tcp/4001"],"role":"full","since":1790000000000.0}"#,
        r#"{"v":1,"v":1,"listen":[],"role":"full","since":1}"#,
    ] {
        assert!(Value::decode(&fsalt, bad.as_bytes()).is_err(), "{bad}");
    }
    // Unknown salts are opaque.
    let o = Salt::new(b"whatever".to_vec()).unwrap();
    assert_eq!(
        Value::decode(&o, b"\x00\xff").unwrap(),
        Value::Opaque(vec![0, 0xff])
    );
}

#[test]
fn format_bounds_and_subject_checks() {
    let owner = pk("owner");
    let mut s = server(owner);
    s.available_sessions = 3000;
    assert!(matches!(
        DmsgServerEntry::decode(&s.encode()),
        Err(ValueError::Sessions { .. })
    ));
    let s = server(pk("someone-else"));
    let v = DmsgServerEntry::decode(&s.encode()).unwrap();
    assert!(matches!(
        v.check_subject(&owner),
        Err(ValueError::SubjectMismatch { .. })
    ));
    let d = signed_entry(&sk("owner"), 1, vec![pk("s"); 17]);
    assert!(matches!(
        DmsgEntry::decode(&d.encode()),
        Err(ValueError::TooMany { .. })
    ));
    let mut f = fullnode();
    f.listen = vec![String::new()];
    assert!(matches!(
        FullnodeAdvert::decode(&f.encode()),
        Err(ValueError::BadLength { .. })
    ));
    let t = TransportEntries {
        v: 1,
        transports: vec![TransportEntry {
            id: "x".into(),
            edges: [pk("a"), pk("b")],
            kind: "stcpr".into(),
            label: String::new(),
            state: None,
        }],
    };
    let tv = TransportEntries::decode(&t.encode()).unwrap();
    assert!(tv.check_subject(&owner).is_err());
    assert!(tv.check_subject(&pk("b")).is_ok());
}

proptest! {
    #[test]
    fn fullnode_round_trip(
        listen in proptest::collection::vec("[ -~é\u{1F600}\"\\\\\n]{1,40}", 0..16),
        since in any::<u64>(),
        role in prop_oneof![Just(Role::Full), Just(Role::Regular), Just(Role::Mirror)],
    ) {
        let x = FullnodeAdvert { v: 1, listen, role, since };
        let b = x.encode();
        let back = FullnodeAdvert::decode(&b).unwrap();
        prop_assert_eq!(&back, &x);
        prop_assert_eq!(back.encode(), b);
    }

    #[test]
    fn svc_round_trip(kind in "[a-z]{1,10}", port in any::<u16>(), version in "[0-9.]{0,8}",
                      addrs in proptest::collection::vec("[ -~]{1,30}", 0..4)) {
        let x = ServiceEntries { v: 1, services: vec![ServiceEntry { kind, port, addrs, version }] };
        let b = x.encode();
        prop_assert_eq!(ServiceEntries::decode(&b).unwrap(), x);
    }

    #[test]
    fn accepted_value_bytes_are_canonical(b in proptest::collection::vec(any::<u8>(), 0..200), k in 0usize..5) {
        let salt = Salt::of_kind(SaltKind::ALL[k]);
        if let Ok(v) = Value::decode(&salt, &b) {
            prop_assert_eq!(v.encode(), b);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Acceptance rules

fn dmsg_item(signer: &SecKey, seq: u64) -> Item {
    let v = ServiceEntries {
        v: 1,
        services: vec![ServiceEntry {
            kind: "vpn".into(),
            port: 3,
            addrs: vec![],
            version: String::new(),
        }],
    };
    Item::sign(signer, Salt::of_kind(SaltKind::Svc), seq, v.encode()).unwrap()
}

fn signed_entry(owner: &SecKey, seq: u64, delegated: Vec<PubKey>) -> DmsgEntry {
    let mut e = dmsg_proto::disc::Entry::new_client(
        owner.pubkey(),
        seq,
        1_790_000_000_000_000_000,
        Some(delegated),
    );
    e.sign(owner);
    DmsgEntry(e)
}

#[test]
fn dmsg_entry_items_authenticate_through_the_entry_signature() {
    let cfg = Config::default();
    let owner = sk("owner");
    let entry = signed_entry(&owner, 5, vec![pk("s1")]);
    let item = entry.to_item().unwrap();
    assert_eq!(item.pk, owner.pubkey());
    assert_eq!(item.seq, 5);
    assert!(matches!(rules::validate(&cfg, &item), Ok(Value::Dmsg(_))));
    assert!(rules::admit(&cfg, &item, None, &usage()).is_ok());

    // An owner-envelope signature is not enough: the entry signature is the authentication.
    let enveloped = Item::sign(&owner, Salt::of_kind(SaltKind::Dmsg), 5, entry.encode()).unwrap();
    assert!(rules::validate(&cfg, &enveloped).is_err());
    // seq must equal the entry's sequence.
    let mut bumped = item.clone();
    bumped.seq = 6;
    assert!(rules::validate(&cfg, &bumped).is_err());
    // An entry signed by someone else for the owner's key.
    let mut forged = entry.0.clone();
    forged.sign(&sk("mallory"));
    let forged = DmsgEntry(forged).to_item().unwrap();
    assert!(rules::validate(&cfg, &forged).is_err());
    // A changed entry under the original signature.
    let mut tampered = entry.0.clone();
    tampered.client = Some(dmsg_proto::disc::ClientInfo {
        delegated_servers: Some(vec![pk("evil")]),
    });
    let tampered = DmsgEntry(tampered).to_item().unwrap();
    assert!(rules::validate(&cfg, &tampered).is_err());
    // No writer may carry someone else's entry.
    let mut delegated = item.clone();
    delegated.writer = Some(pk("mirror"));
    let mut trusting = Config::default();
    trusting.trusted_writers.insert(pk("mirror"));
    assert!(rules::validate(&trusting, &delegated).is_err());
    // Unsigned entries are not values.
    let unsigned = dmsg_proto::disc::Entry::new_client(owner.pubkey(), 1, 1, Some(vec![]));
    assert!(DmsgEntry::decode(unsigned.canonical_json().as_bytes()).is_err());
    // The seq rules apply as to any item: a newer entry replaces, an older one is stale.
    let newer = signed_entry(&owner, 9, vec![pk("s2")]).to_item().unwrap();
    assert!(matches!(
        rules::admit(&cfg, &newer, Some(&item), &usage()),
        Ok(Decision::Replace { previous_seq: 5 })
    ));
    assert!(rules::admit(&cfg, &item, Some(&newer), &usage()).is_err());
}

fn usage() -> Usage {
    Usage::default()
}

fn invalid(r: Result<Decision, PutError>) -> InvalidItem {
    match r {
        Err(PutError::Invalid { source, .. }) => *source,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn rule_insert_replace_idempotent_stale_conflict() {
    let cfg = Config::default();
    let a = sk("alice");
    let i5 = dmsg_item(&a, 5);
    assert_eq!(
        rules::admit(&cfg, &i5, None, &usage()).unwrap(),
        Decision::Insert
    );
    let i6 = dmsg_item(&a, 6);
    assert_eq!(
        rules::admit(&cfg, &i6, Some(&i5), &usage()).unwrap(),
        Decision::Replace { previous_seq: 5 }
    );
    assert_eq!(
        rules::admit(&cfg, &i5, Some(&i5), &usage()).unwrap(),
        Decision::Unchanged
    );
    assert!(matches!(
        rules::admit(&cfg, &i5, Some(&i6), &usage()),
        Err(PutError::Stale {
            stored_seq: 6,
            offered_seq: 5,
            ..
        })
    ));
    let other = Item::sign(
        &a,
        Salt::of_kind(SaltKind::Dmsg),
        5,
        br#"{"v":1,"delegated_servers":[]}"#.to_vec(),
    )
    .unwrap();
    assert!(matches!(
        rules::admit(&cfg, &other, Some(&i5), &usage()),
        Err(PutError::SeqConflict { seq: 5, .. })
    ));
}

#[test]
fn rule_signature_value_size() {
    let cfg = Config::default();
    let a = sk("alice");
    let mut forged = dmsg_item(&a, 5);
    forged.seq = 6;
    assert!(matches!(
        invalid(rules::admit(&cfg, &forged, None, &usage())),
        InvalidItem::Signature { .. }
    ));
    // Someone else's signature on alice's slot.
    let mut stolen = dmsg_item(&sk("mallory"), 5);
    stolen.pk = a.pubkey();
    assert!(matches!(
        invalid(rules::admit(&cfg, &stolen, None, &usage())),
        InvalidItem::Signature { .. }
    ));
    let bad_value = Item::sign(&a, Salt::of_kind(SaltKind::Dmsg), 1, b"[]".to_vec()).unwrap();
    assert!(matches!(
        invalid(rules::admit(&cfg, &bad_value, None, &usage())),
        InvalidItem::Value { .. }
    ));
    let wrong_subject = Item::sign(
        &a,
        Salt::of_kind(SaltKind::DmsgServer),
        1,
        server(pk("x")).encode(),
    )
    .unwrap();
    assert!(matches!(
        invalid(rules::admit(&cfg, &wrong_subject, None, &usage())),
        InvalidItem::Value { .. }
    ));
    let mut small = Config::default();
    small.max_value_len = 10;
    let big = Item::sign(&a, Salt::new(b"blob".to_vec()).unwrap(), 1, vec![0; 11]).unwrap();
    assert!(matches!(
        invalid(rules::admit(&small, &big, None, &usage())),
        InvalidItem::ValueTooLarge { len: 11, max: 10 }
    ));
    let ok = Item::sign(&a, Salt::new(b"blob".to_vec()).unwrap(), 1, vec![0; 10]).unwrap();
    rules::admit(&small, &ok, None, &usage()).unwrap();
    // Default limit is 64 KiB.
    let at = Item::sign(&a, Salt::new(b"blob".to_vec()).unwrap(), 1, vec![0; 65536]).unwrap();
    rules::admit(&cfg, &at, None, &usage()).unwrap();
    let over = Item::sign(&a, Salt::new(b"blob".to_vec()).unwrap(), 1, vec![0; 65537]).unwrap();
    assert!(rules::admit(&cfg, &over, None, &usage()).is_err());
}

#[test]
fn rule_trusted_writers() {
    let tpd = sk("transport-discovery");
    let visor = pk("visor");
    let v = TransportEntries {
        v: 1,
        transports: vec![],
    }
    .encode();
    let item = Item::sign_for(&tpd, visor, Salt::of_kind(SaltKind::Tp), 1, v.clone()).unwrap();
    // Not on the allowlist: refused.
    let cfg = Config::default();
    assert!(matches!(
        invalid(rules::admit(&cfg, &item, None, &usage())),
        InvalidItem::UntrustedWriter { .. }
    ));
    let mut trusted = Config::default();
    trusted.trusted_writers = BTreeSet::from([tpd.pubkey()]);
    assert_eq!(
        rules::admit(&trusted, &item, None, &usage()).unwrap(),
        Decision::Insert
    );
    // The signature binds the subject: moving it to another subject fails.
    let mut moved = item.clone();
    moved.pk = pk("other-visor");
    assert!(matches!(
        invalid(rules::admit(&trusted, &moved, None, &usage())),
        InvalidItem::Signature { .. }
    ));
    // Claiming a trusted writer without its key fails.
    let mut claimed =
        Item::sign_for(&sk("mallory"), visor, Salt::of_kind(SaltKind::Tp), 1, v).unwrap();
    claimed.writer = Some(tpd.pubkey());
    assert!(matches!(
        invalid(rules::admit(&trusted, &claimed, None, &usage())),
        InvalidItem::Signature { .. }
    ));
    // writer == subject is not a valid envelope.
    let mut selfd = dmsg_item(&tpd, 1);
    selfd.writer = Some(tpd.pubkey());
    assert!(matches!(
        invalid(rules::admit(&trusted, &selfd, None, &usage())),
        InvalidItem::SelfDelegation { .. }
    ));
    // A trusted writer's item and the owner's own compete by seq only.
    let own = Item::sign(
        &sk("visor"),
        Salt::of_kind(SaltKind::Tp),
        2,
        TransportEntries {
            v: 1,
            transports: vec![],
        }
        .encode(),
    )
    .unwrap();
    assert!(matches!(
        rules::admit(&trusted, &own, Some(&item), &usage()).unwrap(),
        Decision::Replace { .. }
    ));
}

#[test]
fn rule_quota_and_capacity() {
    let a = sk("alice");
    let i = dmsg_item(&a, 1);
    let mut cfg = Config::default();
    cfg.max_items_per_key = 2;
    let full_key = Usage {
        key_items: 2,
        ..Usage::default()
    };
    assert!(matches!(
        rules::admit(&cfg, &i, None, &full_key),
        Err(PutError::Quota { max: 2, .. })
    ));
    // Replacing within the quota is fine.
    let i2 = dmsg_item(&a, 2);
    rules::admit(&cfg, &i2, Some(&i), &full_key).unwrap();
    cfg.max_items = 10;
    let full = Usage {
        items: 10,
        ..Usage::default()
    };
    assert!(matches!(
        rules::admit(&cfg, &i, None, &full),
        Err(PutError::Capacity {
            limit: CapacityLimit::Items { max: 10 }
        })
    ));
    cfg.max_bytes = 100;
    let e = rules::admit(&cfg, &i, None, &Usage::default()).unwrap_err();
    assert!(matches!(
        e,
        PutError::Capacity {
            limit: CapacityLimit::Bytes { max: 100, .. }
        }
    ));
    assert!(!e.is_item_fault());
}

// ---- tp (v1 and v2) -------------------------------------------------------------------------

fn sorted(a: PubKey, b: PubKey) -> [PubKey; 2] {
    if a < b { [a, b] } else { [b, a] }
}

fn tp_entry(id: &str, a: PubKey, b: PubKey, state: TransportState) -> TransportEntry {
    TransportEntry {
        id: id.into(),
        edges: sorted(a, b),
        kind: "dmsg".into(),
        label: String::new(),
        state: Some(state),
    }
}

fn tp_v2(a: PubKey, b: PubKey) -> TransportEntries {
    TransportEntries::v2(vec![
        tp_entry("b0c1", a, b, TransportState::Down),
        tp_entry("a0c1", a, pk("third"), TransportState::Up),
    ])
}

#[test]
fn tp_v2_fixed_encoding_and_order() {
    let (a, b) = (pk("a"), pk("b"));
    let [lo, hi] = sorted(a, b);
    let t = TransportEntries::v2(vec![tp_entry("x1", a, b, TransportState::Down)]);
    assert_eq!(t.v, TP_FORMAT_VERSION);
    assert_eq!(
        String::from_utf8(t.encode()).unwrap(),
        format!(
            r#"{{"v":2,"transports":[{{"id":"x1","edges":["{}","{}"],"kind":"dmsg","label":"","state":"down"}}]}}"#,
            lo.to_hex(),
            hi.to_hex()
        )
    );
    // v2() sorts by id; the decoder gives the same list back.
    let two = tp_v2(a, b);
    assert_eq!(two.transports[0].id, "a0c1");
    assert_eq!(TransportEntries::decode(&two.encode()).unwrap(), two);
    // Both ends of one transport publish byte-identical entries (sorted edges).
    let from_b = TransportEntries::v2(vec![tp_entry("x1", b, a, TransportState::Down)]);
    assert_eq!(from_b.encode(), t.encode());
    t.check_subject(&a).unwrap();
    t.check_subject(&b).unwrap();
    assert!(t.check_subject(&pk("c")).is_err());
}

#[test]
fn tp_v1_still_decodes_and_versions_are_strict() {
    let (a, b) = (pk("a"), pk("b"));
    let v1 = format!(
        r#"{{"v":1,"transports":[{{"id":"x","edges":["{}","{}"],"kind":"stcpr","label":""}}]}}"#,
        b.to_hex(),
        a.to_hex()
    );
    let got = TransportEntries::decode(v1.as_bytes()).unwrap();
    assert_eq!(got.v, 1);
    assert_eq!(got.transports[0].state, None);
    assert_eq!(got.encode(), v1.as_bytes());
    let invalid = |text: &str, field: &str| match TransportEntries::decode(text.as_bytes()) {
        Err(ValueError::Invalid { field: f, .. }) => assert_eq!(f, field, "{text}"),
        other => panic!("{text}: {other:?}"),
    };
    // v1 with a state, v2 without one.
    invalid(
        &v1.replace(r#""label":""}"#, r#""label":"","state":"up"}"#),
        "state",
    );
    invalid(&v1.replacen(r#""v":1"#, r#""v":2"#, 1), "state");
    // v2 with unsorted or equal edges, unsorted or repeated ids.
    let up = |id: &str, e0: PubKey, e1: PubKey| {
        format!(
            r#"{{"id":"{id}","edges":["{}","{}"],"kind":"dmsg","label":"","state":"up"}}"#,
            e0.to_hex(),
            e1.to_hex()
        )
    };
    let [lo, hi] = sorted(a, b);
    let list = |entries: &[String]| format!(r#"{{"v":2,"transports":[{}]}}"#, entries.join(","));
    TransportEntries::decode(list(&[up("a", lo, hi), up("b", lo, hi)]).as_bytes()).unwrap();
    invalid(&list(&[up("a", hi, lo)]), "edges");
    invalid(&list(&[up("a", lo, lo)]), "edges");
    invalid(&list(&[up("b", lo, hi), up("a", lo, hi)]), "id");
    invalid(&list(&[up("a", lo, hi), up("a", lo, hi)]), "id");
    // Unknown states, fields and versions.
    assert!(matches!(
        TransportEntries::decode(
            list(&[up("a", lo, hi)])
                .replace("up", "sideways")
                .as_bytes()
        ),
        Err(ValueError::Json { .. })
    ));
    assert!(matches!(
        TransportEntries::decode(
            list(&[up("a", lo, hi)])
                .replace(r#""v":2"#, r#""v":3"#)
                .as_bytes()
        ),
        Err(ValueError::Version { version: 3, .. })
    ));
    assert!(matches!(
        TransportEntries::decode(
            list(&[up("a", lo, hi)])
                .replace(r#""state":"up""#, r#""state":"up","rtt":1"#)
                .as_bytes()
        ),
        Err(ValueError::Json { .. })
    ));
    // `"state":null` is another spelling of "absent": refused as non-canonical in v1.
    assert!(
        TransportEntries::decode(
            v1.replace(r#""label":""}"#, r#""label":"","state":null}"#)
                .as_bytes()
        )
        .is_err()
    );
}

#[test]
fn tp_bounds() {
    let (a, b) = (pk("a"), pk("b"));
    let many: Vec<TransportEntry> = (0..=dht::value::MAX_TRANSPORTS)
        .map(|i| tp_entry(&format!("{i:05}"), a, b, TransportState::Up))
        .collect();
    assert!(matches!(
        TransportEntries::decode(&TransportEntries::v2(many).encode()),
        Err(ValueError::TooMany { .. })
    ));
    let mut long = tp_entry("x", a, b, TransportState::Up);
    long.kind = "k".repeat(65);
    assert!(matches!(
        TransportEntries::decode(&TransportEntries::v2(vec![long]).encode()),
        Err(ValueError::BadLength { .. })
    ));
}

fn tp_state() -> impl Strategy<Value = TransportState> {
    prop_oneof![Just(TransportState::Up), Just(TransportState::Down)]
}

proptest! {
    #[test]
    fn tp_v2_round_trip(
        entries in proptest::collection::btree_map(
            "[0-9a-f-]{1,36}",
            ("[a-z]{1,8}", "[ -~é\"\\\n]{0,20}", tp_state(), 0u8..4),
            0..12,
        ),
    ) {
        let peers = [pk("p0"), pk("p1"), pk("p2"), pk("p3")];
        let owner = pk("owner");
        let list: Vec<TransportEntry> = entries
            .into_iter()
            .map(|(id, (kind, label, state, peer))| TransportEntry {
                id,
                edges: sorted(owner, peers[usize::from(peer)]),
                kind,
                label,
                state: Some(state),
            })
            .collect();
        let x = TransportEntries::v2(list);
        let b = x.encode();
        let back = TransportEntries::decode(&b).unwrap();
        prop_assert_eq!(&back, &x);
        prop_assert!(back.check_subject(&owner).is_ok());
    }

    #[test]
    fn tp_decode_never_panics_and_accepts_only_canonical(
        cut in 0usize..400,
        flip in any::<(usize, u8)>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut b = tp_v2(pk("a"), pk("b")).encode();
        let i = flip.0 % b.len();
        b[i] ^= flip.1;
        b.truncate(cut.min(b.len()));
        for input in [b, garbage] {
            if let Ok(v) = TransportEntries::decode(&input) {
                prop_assert_eq!(v.encode(), input);
            }
        }
    }
}
