//! Floors for the DMSG-HTTP path, measured in the same run on the same machine: what one thread
//! doing only the unavoidable part of each process's job spends per GiB. The path's figures are
//! printed next to them, so a target below the floor shows as the machine's bound, not ours.
//!
//! * server: copy from one loopback TCP socket to another (64 KiB reads), nothing else;
//! * `dmsg get`: open ChaCha20-Poly1305 records of the reference's largest size (4,070 bytes of
//!   plaintext, spec §2.5) + read a loopback socket into a new file;
//! * `dmsg http`: seal the same records + read a file into a loopback socket.
//!
//! Socket floors are thread CPU (utime + stime of `/proc/thread-self/stat`, 10 ms ticks), the
//! cipher floors wall time of a single thread that only computes. Each is the best of 3.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

use dmsg_proto::noise::ChaChaPoly;
use dmsg_proto::record::MAX_PLAINTEXT;

const CHUNK: usize = 64 * 1024;
const GIB: f64 = (1u64 << 30) as f64;

/// utime + stime of the calling thread, seconds.
fn thread_cpu() -> f64 {
    super::proc_stat("/proc/thread-self/stat").0
}

/// Runs `job` on a thread of its own; returns that thread's CPU seconds for it.
fn cpu_of_thread(job: impl FnOnce() + Send + 'static) -> f64 {
    std::thread::spawn(move || {
        let t0 = thread_cpu();
        job();
        thread_cpu() - t0
    })
    .join()
    .unwrap()
}

/// Copies `from` into `to` in 64 KiB reads until `from` ends, then drops `to` (closing a
/// socket); returns the bytes copied.
fn copy_all(mut from: impl Read, mut to: impl Write) -> usize {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        match from.read(&mut buf).unwrap() {
            0 => return total,
            n => {
                to.write_all(&buf[..n]).unwrap();
                total += n;
            }
        }
    }
}

fn best(f: impl Fn() -> f64) -> f64 {
    (0..3).map(|_| f()).fold(f64::INFINITY, f64::min)
}

/// A connected loopback pair: (the accepted end, the dialled end).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let dialled = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    (l.accept().unwrap().0, dialled)
}

/// Writes `bytes` into `s` in 64 KiB chunks, then closes it.
fn send(mut s: TcpStream, bytes: usize) {
    let chunk = vec![7u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK);
        s.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
}

/// Reads `s` to its end, discarding; returns the bytes read.
fn drain(s: TcpStream) -> usize {
    copy_all(s, std::io::sink())
}

/// CPU-s per GiB of a thread relaying `bytes` from one loopback socket to another.
fn tcp_relay(bytes: usize) -> f64 {
    let (src_in, src_out) = pair();
    let (dst_in, dst_out) = pair();
    let tx = std::thread::spawn(move || send(src_out, bytes));
    let rx = std::thread::spawn(move || drain(dst_in));
    let cpu = cpu_of_thread(move || {
        copy_all(src_in, dst_out);
    });
    tx.join().unwrap();
    assert_eq!(rx.join().unwrap(), bytes);
    cpu / (bytes as f64 / GIB)
}

/// CPU-s per GiB of a thread reading a loopback socket into a new file at `path`.
fn socket_to_file(bytes: usize, path: &Path) -> f64 {
    let _ = std::fs::remove_file(path);
    let (inn, out) = pair();
    let tx = std::thread::spawn(move || send(out, bytes));
    let target = path.to_path_buf();
    let cpu = cpu_of_thread(move || {
        copy_all(inn, std::fs::File::create(&target).unwrap());
    });
    tx.join().unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), bytes as u64);
    cpu / (bytes as f64 / GIB)
}

/// CPU-s per GiB of a thread reading the file at `path` into a loopback socket.
fn file_to_socket(path: &Path) -> f64 {
    let bytes = std::fs::metadata(path).unwrap().len() as usize;
    let (inn, out) = pair();
    let rx = std::thread::spawn(move || drain(inn));
    let source = path.to_path_buf();
    let cpu = cpu_of_thread(move || {
        copy_all(std::fs::File::open(&source).unwrap(), out);
    });
    assert_eq!(rx.join().unwrap(), bytes);
    cpu / (bytes as f64 / GIB)
}

/// Seconds per GiB of one thread sealing, then opening, `bytes` in records of the largest size.
fn cipher(bytes: usize) -> (f64, f64) {
    let key = ChaChaPoly::new(&[9u8; 32]);
    let mut rec = vec![5u8; MAX_PLAINTEXT];
    let records = bytes.div_ceil(MAX_PLAINTEXT);
    let gib = (records * MAX_PLAINTEXT) as f64 / GIB;
    let t = Instant::now();
    let mut tags = Vec::with_capacity(records);
    for n in 0..records {
        tags.push(key.seal_in_place(n as u64 + 1, &[], &mut rec).unwrap());
    }
    let seal = t.elapsed().as_secs_f64() / gib;
    // Open what was sealed last, `records` times: every open verifies its tag.
    let last = records as u64;
    let tag = tags[records - 1];
    let sealed = rec.clone();
    let t = Instant::now();
    for _ in 0..records {
        rec.copy_from_slice(&sealed);
        key.open_in_place(last, &[], &mut rec, &tag).unwrap();
    }
    let open = t.elapsed().as_secs_f64() / gib;
    (seal, open)
}

/// The floors, CPU-s per GiB.
pub struct Floors {
    pub relay: f64,
    pub seal: f64,
    pub open: f64,
    pub socket_to_file: f64,
    pub file_to_socket: f64,
}

impl Floors {
    /// Measures every floor over `bytes` (at least 1 GiB keeps the 10 ms ticks under 3 %),
    /// using a scratch file at `scratch`.
    pub fn measure(bytes: usize, scratch: &Path) -> Floors {
        let relay = best(|| tcp_relay(bytes));
        let (mut seal, mut open) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..3 {
            let (s, o) = cipher(bytes);
            (seal, open) = (seal.min(s), open.min(o));
        }
        let socket_to_file = best(|| socket_to_file(bytes, scratch));
        let file_to_socket = best(|| file_to_socket(scratch));
        let _ = std::fs::remove_file(scratch);
        Floors {
            relay,
            seal,
            open,
            socket_to_file,
            file_to_socket,
        }
    }

    pub fn server(&self) -> f64 {
        self.relay
    }

    pub fn get(&self) -> f64 {
        self.open + self.socket_to_file
    }

    pub fn http(&self) -> f64 {
        self.seal + self.file_to_socket
    }
}
