//! yamux frames: decode a byte stream frame by frame; every decoded frame re-encodes to the
//! same bytes.
#![no_main]

use dmsg_proto::yamux;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = yamux::decode_frame(rest, yamux::DEFAULT_WINDOW) {
        let mut out = Vec::new();
        frame.encode(&mut out);
        assert_eq!(&out[..], &rest[..used]);
        rest = &rest[used..];
    }
});
