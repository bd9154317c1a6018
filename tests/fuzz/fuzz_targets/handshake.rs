//! Handshake messages: every reading position of XK and KK, on both sides, fed arbitrary bytes.
#![no_main]

use std::sync::OnceLock;

use dmsg_proto::noise::{HandshakeState, Pattern, Role};
use keys::SecKey;
use libfuzzer_sys::fuzz_target;

struct Keys {
    a: SecKey,
    b: SecKey,
    ea: SecKey,
    eb: SecKey,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| Keys {
        a: SecKey::from_seed(b"fuzz-a"),
        b: SecKey::from_seed(b"fuzz-b"),
        ea: SecKey::from_seed(b"fuzz-ea"),
        eb: SecKey::from_seed(b"fuzz-eb"),
    })
}

fn pair(p: Pattern) -> Option<(HandshakeState, HandshakeState)> {
    let k = keys();
    let i = HandshakeState::new(p, Role::Initiator, k.a.clone(), Some(k.b.pubkey()))
        .ok()?
        .with_ephemeral(k.ea.clone());
    let r = HandshakeState::new(p, Role::Responder, k.b.clone(), Some(k.a.pubkey()))
        .ok()?
        .with_ephemeral(k.eb.clone());
    Some((i, r))
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, msg)) = data.split_first() else {
        return;
    };
    let p = if sel & 1 == 0 { Pattern::XK } else { Pattern::KK };
    let Some((mut i, mut r)) = pair(p) else {
        return;
    };
    // advance honestly to message `pos`, then feed the fuzz input to the reader of that message
    let pos = usize::from(sel >> 1) % if p == Pattern::XK { 3 } else { 2 };
    for _ in 0..pos {
        let (w, rd) = if i.is_my_turn() { (&mut i, &mut r) } else { (&mut r, &mut i) };
        let Ok(m) = w.write_message() else { return };
        if rd.read_message(&m).is_err() {
            panic!("honest handshake failed");
        }
    }
    let reader = if i.is_my_turn() { &mut r } else { &mut i };
    if reader.read_message(msg).is_ok() {
        // only a correct message can be accepted; then the state must stay usable
        let _ = reader.handshake_hash();
    }
});
