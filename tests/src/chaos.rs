//! Helpers for the `chaos` test target (`tests/tests/chaos/`): resource samples of running
//! processes read from `/proc` (open fds, threads, RSS, CPU time, TCP sockets by state), a
//! background sampler, the flatness check of the churn soak and latency percentiles.
//!
//! Linux only, like the rest of the end-to-end suite: everything comes from `/proc`.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kernel clock ticks per second for `/proc/PID/stat` times (`getconf CLK_TCK`, 100 on every
/// Linux architecture we run on).
const CLK_TCK: f64 = 100.0;

/// The TCP states of `/proc/net/tcp`, by their hex code.
const TCP_STATES: [(&str, &str); 11] = [
    ("01", "ESTABLISHED"),
    ("02", "SYN_SENT"),
    ("03", "SYN_RECV"),
    ("04", "FIN_WAIT1"),
    ("05", "FIN_WAIT2"),
    ("06", "TIME_WAIT"),
    ("07", "CLOSE"),
    ("08", "CLOSE_WAIT"),
    ("09", "LAST_ACK"),
    ("0A", "LISTEN"),
    ("0B", "CLOSING"),
];

/// One reading of a process's resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub at: f64,
    /// Open file descriptors.
    pub fds: usize,
    /// Threads.
    pub threads: usize,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// User + system CPU time so far, seconds.
    pub cpu_s: f64,
    /// TCP sockets the process holds, by state name (`ESTABLISHED`, `CLOSE_WAIT`, …).
    pub tcp: BTreeMap<String, usize>,
}

impl Sample {
    /// Sockets in `state` (0 when none).
    pub fn tcp_in(&self, state: &str) -> usize {
        self.tcp.get(state).copied().unwrap_or(0)
    }

    /// All TCP sockets the process holds.
    pub fn tcp_total(&self) -> usize {
        self.tcp.values().sum()
    }
}

/// Reads `pid`'s resources now; `None` once the process is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let threads = field("Threads:")? as usize;
    let rss_kib = field("VmRSS:").unwrap_or(0);
    let cpu_s = cpu_seconds(pid)?;
    let mut inodes = std::collections::HashSet::new();
    let mut fds = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        fds += 1;
        if let Ok(target) = std::fs::read_link(e.path())
            && let Some(ino) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(ino.to_string());
        }
    }
    let mut tcp = BTreeMap::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && inodes.contains(cols[9]) {
                let name = TCP_STATES
                    .iter()
                    .find(|(code, _)| *code == cols[3])
                    .map_or(cols[3], |(_, n)| n);
                *tcp.entry(name.to_string()).or_insert(0) += 1;
            }
        }
    }
    Some(Sample {
        at: 0.0,
        fds,
        threads,
        rss_kib,
        cpu_s,
        tcp,
    })
}

/// User + system CPU seconds `pid` has used; `None` once it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// TCP sockets in TIME_WAIT on the machine whose local port is one of `ports` (TIME_WAIT
/// sockets belong to no process any more, so they are matched by port).
pub fn time_wait_on(ports: &[u16]) -> usize {
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 3
                && cols[3] == "06"
                && let Some(port) = cols[1]
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                && ports.contains(&port)
            {
                n += 1;
            }
        }
    }
    n
}

/// Samples named processes every `every` on a background thread until [`Sampler::stop`].
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(String, Sample)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `procs` (name, pid) now and then every `every`.
    pub fn start(procs: Vec<(String, u32)>, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut next = start;
                while !stop.load(Ordering::Relaxed) {
                    if Instant::now() >= next {
                        for (name, pid) in &procs {
                            if let Some(mut s) = sample(*pid) {
                                s.at = start.elapsed().as_secs_f64();
                                samples
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push((name.clone(), s));
                            }
                        }
                        next += every;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Sampler {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// Stops and returns every sample, in order, by process name.
    pub fn stop(mut self) -> BTreeMap<String, Vec<Sample>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut out: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
        for (name, s) in self
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            out.entry(name).or_default().push(s);
        }
        out
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The samples of one process as a table (one row per sample).
pub fn table(name: &str, samples: &[Sample]) -> String {
    let mut out = format!(
        "{name}\n{:>7} {:>5} {:>7} {:>9} {:>7} {:>6} {:>6} {:>6} {:>6}\n",
        "t(s)", "fds", "threads", "rss(KiB)", "cpu(s)", "ESTAB", "LISTEN", "C_WAIT", "other"
    );
    for s in samples {
        let known = s.tcp_in("ESTABLISHED") + s.tcp_in("LISTEN") + s.tcp_in("CLOSE_WAIT");
        out.push_str(&format!(
            "{:>7.1} {:>5} {:>7} {:>9} {:>7.2} {:>6} {:>6} {:>6} {:>6}\n",
            s.at,
            s.fds,
            s.threads,
            s.rss_kib,
            s.cpu_s,
            s.tcp_in("ESTABLISHED"),
            s.tcp_in("LISTEN"),
            s.tcp_in("CLOSE_WAIT"),
            s.tcp_total() - known
        ));
    }
    out
}

/// Checks that `values` (one per sample, in order) show no upward trend once `warmup` samples
/// are dropped: the mean of the last half exceeds the mean of the first half by at most `rel`
/// (relative) plus `abs`. Returns a description of the failure.
pub fn check_flat(
    what: &str,
    values: &[f64],
    warmup: usize,
    rel: f64,
    abs: f64,
) -> Result<(), String> {
    let v = values.get(warmup..).unwrap_or(&[]);
    if v.len() < 2 {
        return Err(format!("{what}: {} samples after warm-up, need 2", v.len()));
    }
    let mid = v.len() / 2;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&v[..mid]), mean(&v[mid..]));
    if last > first * (1.0 + rel) + abs {
        return Err(format!(
            "{what} grows: mean {first:.1} in the first half after warm-up, {last:.1} in the last (allowed {:.1}); values {v:?}",
            first * (1.0 + rel) + abs
        ));
    }
    Ok(())
}

/// The `p`-th percentile (0..=100, nearest rank) of `values`; `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v.get(rank.min(v.len()) - 1).copied()
}

/// Wall-clock Unix milliseconds (for lining up events printed by child processes).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_series_pass_and_growing_ones_fail() {
        let flat = [10.0, 50.0, 51.0, 49.0, 50.0, 52.0, 50.0];
        assert!(check_flat("fds", &flat, 1, 0.1, 2.0).is_ok());
        let leak = [10.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0];
        assert!(check_flat("fds", &leak, 1, 0.1, 2.0).is_err());
        assert!(check_flat("fds", &[1.0], 0, 0.1, 2.0).is_err());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).expect("our own /proc entry");
        assert!(s.fds >= 3 && s.threads >= 1 && s.rss_kib > 0, "{s:?}");
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let s = sample(std::process::id()).expect("our own /proc entry");
        assert!(s.tcp_in("LISTEN") >= 1, "{s:?}");
        drop(l);
    }
}
