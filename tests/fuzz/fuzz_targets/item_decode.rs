//! Item binary decoder: never panics; every accepted input is the canonical encoding of what it
//! decodes to; validation and the JSON form never panic on decoded items.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(item) = dht::Item::decode(data) {
        assert_eq!(item.encode(), data);
        assert_eq!(item.encoded_len(), data.len());
        let _ = dht::rules::validate(&dht::Config::default(), &item);
        let json = dht::json::to_json(&item).to_string();
        let back = dht::json::from_json(&json).expect("own JSON parses");
        assert_eq!(back, item);
    }
});
