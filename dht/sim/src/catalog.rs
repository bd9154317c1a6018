//! The items of the run and what is measured about them: the latest version of every item,
//! write-to-all-full-nodes convergence, and catch-up trackers (a healed or new full node).
//!
//! Items are real [`dht::Item`]s (real keys, salts, values of production size) with a
//! placeholder signature: the simulated nodes are honest and the simulator does not spend CPU
//! on signatures (their cost is modelled where it bounds a rate, see `sky::full`).
use std::collections::HashMap;
use std::sync::Arc;

use dht::{Item, Salt};
use keys::{PubKey, SecKey, Sig};

use crate::queue::Micros;

/// Item kinds per visor: its `dmsg` entry and its `tp` list.
pub const DMSG: usize = 0;
/// See [`DMSG`].
pub const TP: usize = 1;

/// Index of visor `v`'s item of `kind`.
pub fn idx(v: usize, kind: usize) -> usize {
    2 * v + kind
}

/// Every item's latest version and the convergence trackers.
pub struct Catalog {
    pks: Vec<PubKey>,
    salts: [Salt; 2],
    lens: [usize; 2],
    sig: Sig,
    /// Latest published version per item index.
    pub latest: Vec<Option<Arc<Item>>>,
    /// Convergence of writes.
    pub conv: Conv,
}

impl Catalog {
    /// Items of `visors` visors (keys derived from `seed`), values of `lens` bytes
    /// (`dmsg`, `tp`); convergence counts `need` full nodes.
    pub fn new(seed: u64, visors: usize, lens: [usize; 2], need: u16) -> Catalog {
        let pks = (0..visors)
            .map(|v| SecKey::from_seed(format!("dhtsim-{seed}-{v}").as_bytes()).pubkey())
            .collect();
        let salt = |s: &[u8]| Salt::new(s.to_vec()).unwrap_or_else(|_| unreachable!());
        Catalog {
            pks,
            salts: [salt(b"dmsg"), salt(b"tp")],
            lens,
            sig: Sig::from_bytes(&[1; 65]).unwrap_or_else(|_| unreachable!()),
            latest: vec![None; 2 * visors],
            conv: Conv::new(2 * visors, need),
        }
    }

    /// A new version of item `i` (seq one above the latest).
    pub fn next_version(&mut self, i: usize) -> Arc<Item> {
        let seq = self.latest[i].as_ref().map_or(1, |it| it.seq + 1);
        let mut value = vec![0u8; self.lens[i % 2].max(12)];
        value[..8].copy_from_slice(&seq.to_le_bytes());
        value[8..12].copy_from_slice(&(i as u32).to_le_bytes());
        let item = Arc::new(Item {
            pk: self.pks[i / 2],
            salt: self.salts[i % 2].clone(),
            seq,
            value,
            writer: None,
            sig: self.sig,
        });
        self.latest[i] = Some(item.clone());
        item
    }

    /// The index of an item this catalog made (kept in its value's bytes 8..12, so that a
    /// receiver finds its slot without hashing).
    pub fn index_of(item: &Item) -> usize {
        let mut b = [0u8; 4];
        b.copy_from_slice(&item.value[8..12]);
        u32::from_le_bytes(b) as usize
    }

    /// Seq of the latest version of `i` (0: none).
    pub fn latest_seq(&self, i: usize) -> u64 {
        self.latest[i].as_ref().map_or(0, |it| it.seq)
    }

    /// The latest seq of every item, for a catch-up tracker.
    pub fn snapshot(&self) -> HashMap<u32, u64> {
        self.latest
            .iter()
            .enumerate()
            .filter_map(|(i, it)| it.as_ref().map(|it| (i as u32, it.seq)))
            .collect()
    }
}

struct Pend {
    seq: u64,
    start: Micros,
    count: u16,
    partition: bool,
}

/// Write → held by all `need` full nodes.
pub struct Conv {
    need: u16,
    pending: Vec<Vec<Pend>>,
    /// Convergence times of writes outside the partition.
    pub samples: Vec<Micros>,
    /// Convergence times of writes during the partition.
    pub samples_partition: Vec<Micros>,
    /// Writes tracked.
    pub writes: u64,
    /// Of which during the partition.
    pub writes_partition: u64,
    /// Writes after this instant are not tracked (too close to the end to converge).
    pub track_until: Micros,
}

impl Conv {
    fn new(items: usize, need: u16) -> Conv {
        Conv {
            need,
            pending: (0..items).map(|_| Vec::new()).collect(),
            samples: Vec::new(),
            samples_partition: Vec::new(),
            writes: 0,
            writes_partition: 0,
            track_until: Micros::MAX,
        }
    }

    /// Version `seq` of item `i` was published at `now`.
    pub fn published(&mut self, i: usize, seq: u64, now: Micros, partition: bool) {
        if now > self.track_until {
            return;
        }
        self.writes += 1;
        self.writes_partition += u64::from(partition);
        self.pending[i].push(Pend {
            seq,
            start: now,
            count: 0,
            partition,
        });
    }

    /// A counted full node's copy of `i` went from seq `old` to `new` at `now`.
    pub fn held(&mut self, i: usize, old: u64, new: u64, now: Micros) {
        let need = self.need;
        let (samples, part) = (&mut self.samples, &mut self.samples_partition);
        self.pending[i].retain_mut(|p| {
            if old < p.seq && p.seq <= new {
                p.count += 1;
                if p.count >= need {
                    let d = now - p.start;
                    if p.partition {
                        part.push(d);
                    } else {
                        samples.push(d);
                    }
                    return false;
                }
            }
            true
        });
    }
}

/// A node catching up with a snapshot of versions (after a heal, or a join).
pub struct CatchUp {
    missing: HashMap<u32, u64>,
    since: Micros,
    /// When the last missing version arrived.
    pub done: Option<Micros>,
}

impl CatchUp {
    /// Tracks `target` versions from `since`; `held` gives the node's seq of an item.
    pub fn new(mut target: HashMap<u32, u64>, since: Micros, held: impl Fn(u32) -> u64) -> CatchUp {
        target.retain(|i, seq| held(*i) < *seq);
        let done = target.is_empty().then_some(since);
        CatchUp {
            missing: target,
            since,
            done,
        }
    }

    /// The node now holds seq `seq` of item `i`.
    pub fn on_held(&mut self, i: u32, seq: u64, now: Micros) {
        if self.done.is_some() {
            return;
        }
        if self.missing.get(&i).is_some_and(|s| *s <= seq) {
            self.missing.remove(&i);
            if self.missing.is_empty() {
                self.done = Some(now);
            }
        }
    }

    /// Seconds from the start to completion.
    pub fn secs(&self) -> Option<f64> {
        self.done.map(|d| (d - self.since) as f64 / 1e6)
    }
}
