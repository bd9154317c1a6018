//! `chaos_swarm DISC_URL N SEED`: holds `N` DMSG clients (keys `SecKey::from_seed("SEED-i")`)
//! in one process, each keeping one session with a server from the discovery at `DISC_URL`, for
//! the reconnect-storm scenario of the `chaos` tests (`tests/tests/chaos/storm.rs`).
//!
//! Prints one line per change of a client's state, stamped with Unix milliseconds:
//! `up I MS` when client `I` holds a session, `down I MS` when it lost it; `all-up MS` whenever
//! every client holds one. Exits when its stdin closes (the test that spawned it is gone) or
//! after 30 minutes at most.
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmsg::{Client, ClientConfig, DiscClient, Discovery};
use keys::SecKey;

/// Longest a swarm lives, whatever its parent does.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// How often client states are polled.
const POLL: Duration = Duration::from_millis(20);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, disc, n, seed] = args.as_slice() else {
        eprintln!("usage: chaos_swarm DISC_URL N SEED");
        std::process::exit(2);
    };
    let Ok(n) = n.parse::<usize>() else {
        eprintln!("N must be a number");
        std::process::exit(2);
    };
    // The parent closes our stdin (or dies): stop.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("runtime: {e}");
            std::process::exit(1)
        });
    rt.block_on(run(disc.clone(), n, seed.clone()));
}

async fn run(disc: String, n: usize, seed: String) {
    // One HTTP discovery client shared by the clients of this process (one connection pool).
    let discovery: Arc<dyn Discovery> = Arc::new(DiscClient::new(&disc));
    let clients: Vec<Client> = (0..n)
        .map(|i| {
            let sk = SecKey::from_seed(format!("{seed}-{i}").as_bytes());
            Client::spawn(ClientConfig::with_discovery(sk, discovery.clone()))
        })
        .collect();
    let start = Instant::now();
    let mut up = vec![false; n];
    let mut all_up = false;
    let mut out = std::io::stdout().lock();
    while start.elapsed() < MAX_LIFETIME {
        let ms = unix_ms();
        let mut changed = false;
        for (i, c) in clients.iter().enumerate() {
            let now_up = !c.servers().is_empty();
            if now_up != up[i] {
                up[i] = now_up;
                changed = true;
                let _ = writeln!(out, "{} {i} {ms}", if now_up { "up" } else { "down" });
            }
        }
        let every = up.iter().all(|u| *u);
        if changed && every && !all_up {
            let _ = writeln!(out, "all-up {ms}");
        }
        all_up = every;
        let _ = out.flush();
        tokio::time::sleep(POLL).await;
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
