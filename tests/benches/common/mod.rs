//! Helpers shared by the benches of this crate.

pub mod floors;

/// Clock ticks per second of `/proc/…/stat` times (Linux: `USER_HZ`, 100 everywhere).
pub const TICKS: f64 = 100.0;

/// utime + stime in seconds and minor page faults, from a `/proc/…/stat` file (a process's or
/// a thread's).
pub fn proc_stat(path: &str) -> (f64, u64) {
    let stat = std::fs::read_to_string(path).unwrap();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(") ").unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): minflt is field 10, utime field 14, stime field 15.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    (ticks as f64 / TICKS, f[7].parse().unwrap())
}
