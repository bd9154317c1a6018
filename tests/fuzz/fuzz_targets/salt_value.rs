//! Value decoders of every known salt: never panic; every accepted input is canonical
//! (`encode(decode(b)) == b`). The first byte picks the salt.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let kinds = dht::SaltKind::ALL;
    let salt = dht::Salt::of_kind(kinds[usize::from(pick) % kinds.len()]);
    if let Ok(v) = dht::Value::decode(&salt, bytes) {
        assert_eq!(v.encode(), bytes);
    }
});
