//! `/skymesh/sync/1` messages: both decoders on arbitrary bytes; whatever decodes re-encodes to
//! the same bytes (one encoding per message), and a decoded page fed to a puller never panics.
#![no_main]

use itemsync::wire::{self, Response};
use itemsync::{PullConfig, Puller, SyncCursor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = wire::decode_request(data) {
        let back = wire::encode_request(&req).expect("a decoded request encodes");
        assert_eq!(back, data);
    }
    if let Ok(res) = wire::decode_response(data) {
        let back = wire::encode_response(&res).expect("a decoded response encodes");
        assert_eq!(back, data);
        if let Response::Page(page) = res {
            let mut cfg = PullConfig::new(SyncCursor {
                epoch: page.epoch ^ u64::from(data.len() as u8 & 1),
                change: u64::from(data.first().copied().unwrap_or(0)),
            });
            cfg.page_limit = u16::from(data.last().copied().unwrap_or(1)).max(1);
            let mut p = Puller::new(cfg);
            if p.poll_request().is_some() {
                let _ = p.handle_page(page);
                let _ = p.poll_request();
            }
        }
    }
});
