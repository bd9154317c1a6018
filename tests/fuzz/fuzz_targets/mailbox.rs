//! Mailbox decoders: envelopes (structure and signature) and protocol frames. Whatever decodes
//! re-encodes to the same bytes.
#![no_main]

use dmsg_proto::mailbox::envelope::Envelope;
use dmsg_proto::mailbox::wire::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Envelope::decode(data) {
        assert_eq!(e.as_bytes(), data);
        assert!(e.expires_ms() >= e.created_ms);
    }
    if let Ok(Some((f, used))) = Frame::decode(data) {
        assert!(used <= data.len());
        let mut out = Vec::new();
        f.encode(&mut out);
        assert_eq!(out, &data[..used]);
    }
});
