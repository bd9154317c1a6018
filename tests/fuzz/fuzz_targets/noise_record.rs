//! Transport records: framing, opening under every replay policy, and seal→open round trips.
#![no_main]

use dmsg_proto::record::{self, Opener, ReplayPolicy, Sealer};
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [0x42; 32];

fuzz_target!(|data: &[u8]| {
    // arbitrary bytes as a stream of frames
    let mut openers = [
        Opener::new(&KEY, ReplayPolicy::Window),
        Opener::new(&KEY, ReplayPolicy::Increasing),
        Opener::new(&KEY, ReplayPolicy::Strict),
    ];
    let mut rest = data;
    while let Ok(Some((body, used))) = record::read_frame(rest) {
        for o in &mut openers {
            let _ = o.open(body);
        }
        rest = &rest[used..];
    }
    // arbitrary bytes as plaintext: must come back unchanged
    let mut wire = Vec::new();
    let mut s = Sealer::new(&KEY);
    if s.seal_write(data, &mut wire).is_err() {
        panic!("seal_write failed");
    }
    let mut o = Opener::new(&KEY, ReplayPolicy::Strict);
    let mut got = Vec::new();
    let mut rest = &wire[..];
    while let Ok(Some((body, used))) = record::read_frame(rest) {
        if o.open_into(body, &mut got).is_err() {
            panic!("own record refused");
        }
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    assert_eq!(got, data);
});
