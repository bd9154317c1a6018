#![allow(clippy::unwrap_used)]
//! `rules::verify` / `rules::admit_verified` / `Store::put_verified`: the verified path makes the
//! same decision as `rules::admit` for every item, and nothing forged becomes a `VerifiedItem`.
use std::collections::BTreeSet;

use dht::rules::{self, Usage};
use dht::value::{TransportEntries, ValueFormat};
use dht::{
    Config, InvalidItem, Item, MemoryStore, PutError, RedbStore, Salt, SaltKind, Store, Timestamp,
};
use keys::SecKey;
use proptest::prelude::*;

fn sk(i: u8) -> SecKey {
    SecKey::from_seed(format!("verified-{i}").as_bytes())
}

fn blob(signer: &SecKey, salt: &str, seq: u64, value: Vec<u8>) -> Item {
    Item::sign(signer, Salt::new(salt.as_bytes()).unwrap(), seq, value).unwrap()
}

/// Both decisions as comparable text (`PutError` is not `PartialEq`).
fn both(
    cfg: &Config,
    item: &Item,
    stored: Option<&Item>,
    usage: &Usage,
) -> (String, Option<String>) {
    let full = format!("{:?}", rules::admit(cfg, item, stored, usage));
    let verified = rules::verify(cfg, item.clone())
        .ok()
        .map(|v| format!("{:?}", rules::admit_verified(cfg, &v, stored, usage)));
    (full, verified)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For a valid item, `admit_verified(verify(x))` decides exactly as `admit(x)`, whatever is
    /// stored (nothing, older, newer, identical, same seq but different) and whatever the usage
    /// (quota, item and byte capacity).
    #[test]
    fn verified_decides_like_admit(
        key in 0u8..3,
        seq in 1u64..5,
        stored_seq in 0u64..6,
        same_value in any::<bool>(),
        value in proptest::collection::vec(any::<u8>(), 0..40),
        items in 0u64..12,
        bytes in 0u64..2000,
        key_items in 0u32..4,
        max_value_len in 20usize..60,
    ) {
        let mut cfg = Config::default();
        cfg.max_items = 10;
        cfg.max_bytes = 1500;
        cfg.max_items_per_key = 3;
        cfg.max_value_len = max_value_len;
        let signer = sk(key);
        let item = blob(&signer, "blob", seq, value.clone());
        let stored = (stored_seq > 0).then(|| {
            if stored_seq == seq && same_value {
                item.clone()
            } else {
                blob(&signer, "blob", stored_seq, b"other".to_vec())
            }
        });
        let usage = Usage { items, bytes, key_items };
        let valid = rules::validate(&cfg, &item).is_ok();
        let (full, verified) = both(&cfg, &item, stored.as_ref(), &usage);
        prop_assert_eq!(verified.is_some(), valid);
        if let Some(v) = verified {
            prop_assert_eq!(full, v);
        }
    }

    /// A changed seq, value, subject or signature byte never verifies, and the refused item comes
    /// back unchanged.
    #[test]
    fn forged_items_never_verify(
        seq in 1u64..1000,
        value in proptest::collection::vec(any::<u8>(), 1..40),
        what in 0usize..4,
        pos in any::<usize>(),
        flip in 1u8..=255,
    ) {
        let cfg = Config::default();
        let mut item = blob(&sk(0), "blob", seq, value);
        prop_assert!(rules::verify(&cfg, item.clone()).is_ok());
        match what {
            0 => item.seq += 1,
            1 => {
                let i = pos % item.value.len();
                item.value[i] ^= flip;
            }
            2 => item.pk = sk(1).pubkey(),
            _ => {
                let mut sig = *item.sig.as_bytes();
                let i = pos % sig.len();
                sig[i] ^= flip;
                item.sig = keys::Sig::from_bytes(&sig).unwrap();
            }
        }
        match rules::verify(&cfg, item.clone()) {
            Ok(_) => prop_assert!(false, "forged item verified"),
            Err(bad) => prop_assert_eq!(bad.item, item),
        }
    }
}

#[test]
fn static_checks_run_again_with_the_stores_config() {
    let tpd = sk(9);
    let visor = sk(8).pubkey();
    let v = TransportEntries {
        v: 1,
        transports: vec![],
    }
    .encode();
    let item = Item::sign_for(&tpd, visor, Salt::of_kind(SaltKind::Tp), 1, v).unwrap();
    let mut trusting = Config::default();
    trusting.trusted_writers = BTreeSet::from([tpd.pubkey()]);
    let verified = rules::verify(&trusting, item.clone()).unwrap();
    // A store that does not trust the writer still refuses the verified item.
    let cfg = Config::default();
    let r = rules::admit_verified(&cfg, &verified, None, &Usage::default());
    assert!(matches!(
        r,
        Err(PutError::Invalid { ref source, .. }) if matches!(**source, InvalidItem::UntrustedWriter { .. })
    ));
    // And `verify` itself refuses it under that config.
    let bad = rules::verify(&cfg, item).unwrap_err();
    assert!(matches!(bad.reason, InvalidItem::UntrustedWriter { .. }));
}

/// Every backend stores a verified item as it stores the item itself: same outcomes, same
/// contents, one batch or one at a time.
#[test]
fn put_verified_matches_put_on_every_backend() {
    let cfg = Config::default();
    let now = Timestamp::from_unix_millis(1_000);
    let items: Vec<Item> = (0..4u8)
        .flat_map(|k| {
            let s = sk(k);
            [1u64, 3, 2, 3].map(|seq| blob(&s, "blob", seq, format!("v{seq}").into_bytes()))
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let stores = |tag: &str| -> Vec<Box<dyn Store>> {
        vec![
            Box::new(MemoryStore::new(cfg.clone())),
            Box::new(RedbStore::open(dir.path().join(format!("{tag}.redb")), cfg.clone()).unwrap()),
        ]
    };
    for ((mut plain, mut one), mut batch) in stores("plain")
        .into_iter()
        .zip(stores("one"))
        .zip(stores("batch"))
    {
        let mut expected = Vec::new();
        let mut got_one = Vec::new();
        for item in &items {
            expected.push(format!("{:?}", plain.put(item.clone(), now)));
            let v = rules::verify(&cfg, item.clone()).unwrap();
            got_one.push(format!("{:?}", one.put_verified(v, now)));
        }
        let verified = items
            .iter()
            .map(|i| rules::verify(&cfg, i.clone()).unwrap())
            .collect();
        let got_batch: Vec<String> = batch
            .put_batch_verified(verified, now)
            .unwrap()
            .iter()
            .map(|r| format!("{r:?}"))
            .collect();
        assert_eq!(expected, got_one);
        assert_eq!(expected, got_batch);
        for s in [&one, &batch] {
            assert_eq!(s.stats(), plain.stats());
            let a = plain.list_since(None, dht::Cursor::START, 100).unwrap();
            let b = s.list_since(None, dht::Cursor::START, 100).unwrap();
            assert_eq!(a, b);
        }
    }
}
