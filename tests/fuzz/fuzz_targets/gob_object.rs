//! Gob stream objects: generic decoding, typed decoding, signed-object verification.
#![no_main]

use dmsg_proto::gob;
use dmsg_proto::stream::{
    RequestContext, RequestPolicy, SignedObject, StreamRequest, StreamResponse, TypeIds,
    verify_request,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gob::decode(data);
    if let Ok(req) = StreamRequest::from_gob(data) {
        // what we decode we can re-encode, and it decodes to the same value
        let again = StreamRequest::from_gob(&req.to_gob(TypeIds::default()));
        assert_eq!(again.ok(), Some(req));
    }
    if let Ok(resp) = StreamResponse::from_gob(data) {
        let again = StreamResponse::from_gob(&resp.to_gob(TypeIds { first: 68 }));
        assert_eq!(again.ok(), Some(resp));
    }
    if let Ok(obj) = SignedObject::from_bytes(data) {
        let _ = verify_request(&obj, &RequestPolicy::reference(), &RequestContext::default());
    }
});
