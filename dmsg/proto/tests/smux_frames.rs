//! Hex snapshot of the smux v2 frame codec: every frame in `tests/data/smux_frames.txt`
//! (written from spec `smux.md` §7–8, several captured from Go) decodes to what the file says
//! and encodes back to the same bytes; the refused ones fail with the named error.
#![allow(clippy::unwrap_used)]

use dmsg_proto::mux::SmuxFrameError;
use dmsg_proto::mux::smux_frame::{Cmd, Header, Upd, decode_frame, encode_frame};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    assert!(s.len().is_multiple_of(2), "odd hex: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn cmd(name: &str) -> Cmd {
    match name {
        "SYN" => Cmd::Syn,
        "FIN" => Cmd::Fin,
        "PSH" => Cmd::Psh,
        "NOP" => Cmd::Nop,
        "UPD" => Cmd::Upd,
        other => panic!("unknown command {other}"),
    }
}

#[test]
fn frames_match_the_snapshot() {
    let text = include_str!("data/smux_frames.txt");
    let mut checked = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let parts: Vec<&str> = line.split('|').map(str::trim).collect();
        let [name, bytes, want] = parts[..] else {
            panic!("bad line: {line}");
        };
        let bytes = hex(bytes);
        let want: Vec<&str> = want.split_whitespace().collect();
        if want[0] == "ERR" {
            let err = decode_frame(&bytes).unwrap_err();
            let ok = matches!(
                (want[1], err),
                ("version", SmuxFrameError::Version(_))
                    | ("cmd", SmuxFrameError::Cmd(_))
                    | ("length", SmuxFrameError::Length { .. })
            );
            assert!(ok, "{name}: {err:?}");
            checked += 1;
            continue;
        }
        let (h, body, used) = decode_frame(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len(), "{name}: trailing bytes");
        assert_eq!(h.cmd, cmd(want[0]), "{name}");
        assert_eq!(h.sid, want[1].parse::<u32>().unwrap(), "{name}");
        match h.cmd {
            Cmd::Psh => assert_eq!(body, hex(want[2]).as_slice(), "{name}"),
            Cmd::Upd => {
                let u = Upd::decode(body).unwrap();
                assert_eq!(u.consumed, want[2].parse::<u32>().unwrap(), "{name}");
                assert_eq!(u.window, want[3].parse::<u32>().unwrap(), "{name}");
                assert_eq!(u.encode().as_slice(), body, "{name}");
            }
            _ => assert!(body.is_empty(), "{name}"),
        }
        // Encoding gives the same bytes back.
        let mut out = Vec::new();
        encode_frame(h.cmd, h.sid, body, &mut out).unwrap();
        assert_eq!(out, bytes, "{name}");
        assert_eq!(
            Header::new(h.cmd, h.length, h.sid).encode(),
            bytes[..8],
            "{name}"
        );
        checked += 1;
    }
    assert_eq!(checked, 14);
}
