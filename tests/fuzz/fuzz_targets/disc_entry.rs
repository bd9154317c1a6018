//! Discovery entries: decoding, canonical re-serialisation round trip, the POST checks.
#![no_main]

use dmsg_proto::disc::{self, DiscPolicy, Entry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Entry::from_json(data) {
        let canon = e.canonical_json();
        match Entry::from_json(canon.as_bytes()) {
            Ok(back) => assert_eq!(back, e),
            Err(_) => panic!("canonical form does not decode"),
        }
        let _ = e.validate(Some(0));
    }
    let policy = DiscPolicy {
        now_ns: 1_700_000_000_000_000_000,
        production: data.first().is_some_and(|b| b & 1 == 1),
        entry_protocol: data.first().is_some_and(|b| b & 2 == 2),
    };
    let _ = disc::check_post(data, None, &policy);
});
