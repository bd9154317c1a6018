//! The machine's floor for relaying one stream A → server → B, measured in the same run as the
//! relay: what the parts every design must do cost on this machine, with nothing else.
//!
//! * **records**: one thread seals the bytes into DMSG records (`dmsg_proto::record::Sealer`,
//!   64 KiB writes, the largest records of spec §2.5) and opens them again (`Opener`, strict
//!   replay rule) — the dialer's and the listener's share of the cipher;
//! * **sockets**: three threads move the bytes over two loopback TCP connections: A writes
//!   64 KiB chunks, a relay thread copies them from one socket to the other in 64 KiB reads,
//!   B reads them — the four socket copies and the loopback packet processing.
//!
//! Both are CPU seconds per GiB (records: the thread's; sockets: the process's, all three
//! threads, while the bench's runtime is idle), best of 3. Their sum is the floor of "CPU-s per
//! GiB for A, server and B together".

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use dmsg_proto::record::{Opener, ReplayPolicy, Sealer, read_frame};

use crate::common::{cpu_secs, cpu_secs_of};

const CHUNK: usize = 64 * 1024;
const GIB: f64 = (1u64 << 30) as f64;

/// The floor's two parts, CPU-s per GiB.
pub struct RelayFloor {
    pub records: f64,
    pub sockets: f64,
}

impl RelayFloor {
    /// Measures both parts over `bytes` each (best of 3).
    pub fn measure(bytes: usize) -> RelayFloor {
        let best = |f: &dyn Fn() -> f64| (0..3).map(|_| f()).fold(f64::INFINITY, f64::min);
        RelayFloor {
            records: best(&|| records(bytes)),
            sockets: best(&|| sockets(bytes)),
        }
    }

    pub fn total(&self) -> f64 {
        self.records + self.sockets
    }
}

/// Seal then open `bytes` in 64 KiB writes, on one thread of its own.
fn records(bytes: usize) -> f64 {
    std::thread::spawn(move || {
        let key = [3u8; 32];
        let (mut sealer, mut opener) = (Sealer::new(&key), Opener::new(&key, ReplayPolicy::Strict));
        let plain = vec![7u8; CHUNK];
        let (mut sealed, mut opened) = (Vec::new(), Vec::new());
        let t0 = cpu_secs_of("thread-self");
        let mut done = 0;
        while done < bytes {
            sealed.clear();
            sealer.seal_write(&plain, &mut sealed).unwrap();
            let mut rest = &sealed[..];
            opened.clear();
            while let Some((body, used)) = read_frame(rest).unwrap() {
                opener.open_into(body, &mut opened).unwrap();
                rest = &rest[used..];
            }
            assert_eq!(opened.len(), CHUNK);
            done += CHUNK;
        }
        (cpu_secs_of("thread-self") - t0) / (done as f64 / GIB)
    })
    .join()
    .unwrap()
}

/// A connected loopback pair: (dialled end, accepted end).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    (a, l.accept().unwrap().0)
}

/// Reads `from` to its end in 64 KiB reads, handing each piece to `to`; returns the bytes.
fn pump(mut from: TcpStream, mut to: impl FnMut(&[u8])) -> usize {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0;
    loop {
        match from.read(&mut buf).unwrap() {
            0 => return n,
            k => {
                to(&buf[..k]);
                n += k;
            }
        }
    }
}

/// A → relay → B over loopback TCP with three threads; the process's CPU per GiB.
fn sockets(bytes: usize) -> f64 {
    let (mut a, relay_in) = pair();
    let (mut relay_out, b) = pair();
    let c0 = cpu_secs();
    let reader = std::thread::spawn(move || pump(b, |_| {}));
    let relay = std::thread::spawn(move || pump(relay_in, |p| relay_out.write_all(p).unwrap()));
    let chunk = vec![7u8; CHUNK];
    let mut sent = 0;
    while sent < bytes {
        a.write_all(&chunk).unwrap();
        sent += CHUNK;
    }
    drop(a);
    relay.join().unwrap();
    assert_eq!(reader.join().unwrap(), sent);
    (cpu_secs() - c0) / (sent as f64 / GIB)
}
