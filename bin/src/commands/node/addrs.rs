//! `DATA/node.addrs.json`: the addresses a running node actually bound.
//!
//! Every listener may be given port 0 (`--http 127.0.0.1:0`, `--listen /ip4/…/tcp/0`,
//! `--dmsg-listen HOST:0`): the OS picks a free port and the node writes what it got here,
//! atomically (a temporary file renamed into place), once every listener is bound and the admin
//! API is about to serve. Tools that start nodes (`skymesh devnet`, the test harness) remove
//! the file, start the node, and wait for a file whose `pid` is the child's — so no port is
//! ever picked in advance and raced for.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name inside the data directory.
pub(crate) const FILE: &str = "node.addrs.json";

/// What a node bound.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct BoundAddrs {
    /// The node's process id (tells a fresh file from one left by an earlier run).
    pub(crate) pid: u32,
    /// The admin API listener.
    pub(crate) http: SocketAddr,
    /// libp2p listen addresses, each ending in `/p2p/<peer id>`.
    pub(crate) p2p: Vec<String>,
    /// The DMSG server's bound address (full nodes with `--dmsg-listen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dmsg: Option<SocketAddr>,
    /// The address the DMSG server advertises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dmsg_public: Option<String>,
}

/// Path of the file in `data`.
pub(crate) fn path(data: &Path) -> PathBuf {
    data.join(FILE)
}

/// Writes `addrs` into `data` atomically.
pub(crate) fn write(data: &Path, addrs: &BoundAddrs) -> std::io::Result<()> {
    let tmp = data.join(format!(".{FILE}.{}", addrs.pid));
    let text = serde_json::to_string_pretty(addrs).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path(data))
}

/// The file in `data` if it exists, parses, and was written by process `pid`.
pub(crate) fn read_for(data: &Path, pid: u32) -> Option<BoundAddrs> {
    let text = std::fs::read_to_string(path(data)).ok()?;
    let addrs: BoundAddrs = serde_json::from_str(&text).ok()?;
    (addrs.pid == pid).then_some(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_pid_check() {
        let dir = tempfile::tempdir().unwrap();
        let a = BoundAddrs {
            pid: 4242,
            http: "127.0.0.1:18000".parse().unwrap(),
            p2p: vec!["/ip4/127.0.0.1/tcp/18001/p2p/16Uiu2HAm".into()],
            dmsg: Some("0.0.0.0:18002".parse().unwrap()),
            dmsg_public: Some("10.0.0.2:18002".into()),
        };
        assert_eq!(read_for(dir.path(), 4242), None, "no file yet");
        write(dir.path(), &a).unwrap();
        assert_eq!(read_for(dir.path(), 4242), Some(a.clone()));
        assert_eq!(read_for(dir.path(), 1), None, "another process's file");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE], "no temporary file left");
    }
}
