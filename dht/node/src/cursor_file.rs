//! Sync cursors on disk: `sync-cursors.json` next to the store file, so a restarted node
//! resumes its pulls where they stopped instead of pulling everything again.
//!
//! The store's disk thread ([`crate::persist`]) writes the file, and only after every item
//! queued before the cursor is committed: a saved cursor never points past an item the store
//! does not hold on disk. When a write was skipped (queue full) or failed, cursors are no longer
//! saved until the next start, which then pulls again from the last cursor saved before.
//!
//! The file is ours, but it is read like any input: an unreadable or malformed file, or one
//! with more than [`MAX_SAVED`] entries, is ignored (with a warning) or cut, and the sync starts
//! from the beginning — never a panic, never a wrong skip.
use std::io::Write;
use std::path::{Path, PathBuf};

use dht::Salt;
use itemsync::SyncCursor;
use libp2p::PeerId;

/// File name of the saved cursors inside the node's data directory.
pub const CURSORS_FILE: &str = "sync-cursors.json";

/// Cursors read from the file at most (one per full node and salt filter; the pull table keeps
/// as many).
pub const MAX_SAVED: usize = crate::node::full_nodes::MAX_FULL_NODES;

/// Largest file read (a full table is ~150 KiB).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// One saved cursor: where the pull from `peer` with salt filter `salt` stopped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedCursor {
    /// The full node pulled from (libp2p peer id).
    pub peer: String,
    /// The salt filter (hex; `None`: every salt).
    pub salt: Option<String>,
    /// The serving store's change-sequence incarnation.
    pub epoch: u64,
    /// Last change number received and stored.
    pub change: u64,
}

impl SavedCursor {
    /// The record of the cursor of the pull from `peer` with salt filter `salt`.
    pub fn new(peer: &PeerId, salt: Option<&Salt>, cursor: SyncCursor) -> SavedCursor {
        SavedCursor {
            peer: peer.to_string(),
            salt: salt.map(|s| hex::encode(s.as_bytes())),
            epoch: cursor.epoch,
            change: cursor.change,
        }
    }

    /// Back to (peer, salt filter, cursor); `None` when a field does not parse.
    pub fn parse(&self) -> Option<(PeerId, Option<Salt>, SyncCursor)> {
        let peer: PeerId = self.peer.parse().ok()?;
        let salt = match &self.salt {
            None => None,
            Some(h) => Some(Salt::new(hex::decode(h).ok()?).ok()?),
        };
        let cursor = SyncCursor {
            epoch: self.epoch,
            change: self.change,
        };
        Some((peer, salt, cursor))
    }
}

/// The cursor file next to the store file `store`.
pub fn path_next_to(store: &Path) -> PathBuf {
    store.with_file_name(CURSORS_FILE)
}

/// Reads the saved cursors; empty when the file is missing, unreadable or malformed.
pub fn load(path: &Path) -> Vec<SavedCursor> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "sync cursors unreadable; pulls start from the beginning");
            return Vec::new();
        }
    };
    if meta.len() > MAX_FILE_BYTES {
        tracing::warn!(path = %path.display(), bytes = meta.len(), "sync cursor file too large; ignored");
        return Vec::new();
    }
    let parsed = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<Vec<SavedCursor>>(&b).map_err(|e| e.to_string()));
    match parsed {
        Ok(mut v) => {
            v.truncate(MAX_SAVED);
            v
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "sync cursors unreadable; pulls start from the beginning");
            Vec::new()
        }
    }
}

/// Writes `cursors` atomically (a temporary file, fsync'd, renamed over the old one).
pub fn save(path: &Path, cursors: &[SavedCursor]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec(cursors).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes the file (a new, empty store must not resume someone else's cursors).
pub fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "new store: old sync cursors removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "removing old sync cursors failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(i: u64) -> SavedCursor {
        SavedCursor {
            peer: format!("peer{i}"),
            salt: i.is_multiple_of(2).then(|| "646d7367".into()),
            epoch: 7,
            change: i * 100,
        }
    }

    #[test]
    fn saved_cursors_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(CURSORS_FILE);
        assert!(load(&p).is_empty());
        let v: Vec<_> = (0..5).map(c).collect();
        save(&p, &v).unwrap();
        assert_eq!(load(&p), v);
        save(&p, &v[..2]).unwrap();
        assert_eq!(load(&p), v[..2].to_vec());
        remove(&p);
        assert!(load(&p).is_empty());
    }

    #[test]
    fn cursors_convert_both_ways_and_bad_fields_are_refused() {
        let peer = PeerId::random();
        let salt = Salt::new(b"dmsg".to_vec()).unwrap();
        let cur = SyncCursor {
            epoch: 3,
            change: 99,
        };
        let s = SavedCursor::new(&peer, Some(&salt), cur);
        assert_eq!(s.salt.as_deref(), Some("646d7367"));
        assert_eq!(s.parse(), Some((peer, Some(salt), cur)));
        assert_eq!(
            SavedCursor::new(&peer, None, cur).parse(),
            Some((peer, None, cur))
        );
        for bad in [
            SavedCursor {
                peer: "nope".into(),
                ..s.clone()
            },
            SavedCursor {
                salt: Some("6".into()),
                ..s.clone()
            },
            SavedCursor {
                salt: Some("zz".into()),
                ..s.clone()
            },
            SavedCursor {
                salt: Some("é1".into()),
                ..s.clone()
            },
            SavedCursor {
                salt: Some("00".repeat(1000)),
                ..s.clone()
            },
        ] {
            assert_eq!(bad.parse(), None, "{bad:?}");
        }
    }

    #[test]
    fn a_damaged_or_huge_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(CURSORS_FILE);
        std::fs::write(&p, b"[{\"peer\": 3").unwrap();
        assert!(load(&p).is_empty());
        std::fs::write(&p, vec![b' '; (MAX_FILE_BYTES + 1) as usize]).unwrap();
        assert!(load(&p).is_empty());
        let many: Vec<_> = (0..MAX_SAVED as u64 + 10).map(c).collect();
        save(&p, &many).unwrap();
        assert_eq!(load(&p).len(), MAX_SAVED);
    }
}
