//! The verification stage of pulled pages: [`dht::rules::verify`] on every item of a page, off
//! the actor (tokio's blocking pool) and split over all cores, results in page order. The
//! actor then stores verified items through `ItemStore::insert_verified` and any other through
//! the full `ItemStore::insert` (see `syncing.rs`).
use dht::{Item, Unverified, VerifiedItem};

use super::pull::{MAX_ACTIVE_SESSIONS, MAX_VERIFYING};

/// Capacity of the channel that brings verified pages back to the actor. At most
/// [`MAX_VERIFYING`] pages per session are being verified ([`MAX_ACTIVE_SESSIONS`] sessions), so
/// this is never full; were it, the verification thread would wait (never the actor, which
/// always polls the channel). A result whose session was finished or cancelled meanwhile is
/// dropped on arrival.
pub(super) const VERIFIED_QUEUE: usize = MAX_ACTIVE_SESSIONS * MAX_VERIFYING;

/// A received item after the verification stage.
pub(super) enum Checked {
    /// Passed [`dht::rules::verify`]: stored through [`ItemStore::insert_verified`].
    Verified(VerifiedItem),
    /// Failed it: put through the full [`ItemStore::insert`], which refuses it as before.
    Failed(Box<Unverified>),
    /// Identical to the stored item when the page entered the stage, so not verified there (as
    /// `admit` skips the signature check for `Unchanged`): put through the full
    /// [`ItemStore::insert`], which verifies it after all if the store changed meanwhile.
    Held(Item),
}

/// A page back from the verification stage.
pub(super) struct VerifiedPage {
    pub(super) session: u64,
    /// The session's page number, to drop a result the session no longer waits for.
    pub(super) page: u64,
    /// `None` when verification itself failed (a panic in a verifier thread): the session
    /// then fails instead of waiting forever.
    pub(super) items: Option<Vec<Checked>>,
}

fn check_one(cfg: &dht::Config, item: Item, held: bool) -> Checked {
    if held {
        return Checked::Held(item);
    }
    match dht::rules::verify(cfg, item) {
        Ok(v) => Checked::Verified(v),
        Err(bad) => Checked::Failed(bad),
    }
}

/// Items a verifier thread takes at a time: ~1 ms of checks, so threads that share their
/// cores with the actor (or each other) still finish a page within ~1 ms of each other instead
/// of one waiting on another's statically assigned half.
const VERIFY_CHUNK: usize = 32;

/// Verifies `items` (each paired with "identical to the stored item", which skips it) with
/// [`dht::rules::verify`] on `threads` threads (0: one per core): the calling thread and
/// `threads - 1` scoped threads take chunks of [`VERIFY_CHUNK`] items from a shared queue until
/// it is empty. Results keep the page order. Blocking: run it off the actor (`spawn_blocking`).
pub(super) fn verify_page(
    cfg: &dht::Config,
    items: Vec<(Item, bool)>,
    threads: usize,
) -> Vec<Checked> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // Below ~64 items per thread, spawning costs more than it saves.
    let threads = threads.min(items.len() / 64).max(1);
    let check_all = |part: Vec<(Item, bool)>| -> Vec<Checked> {
        part.into_iter()
            .map(|(item, held)| check_one(cfg, item, held))
            .collect()
    };
    if threads == 1 {
        return check_all(items);
    }
    let len = items.len();
    let mut chunks: Vec<(usize, Vec<(Item, bool)>)> = Vec::with_capacity(len / VERIFY_CHUNK + 1);
    let mut rest = items;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(VERIFY_CHUNK));
        chunks.push((chunks.len(), rest));
        rest = tail;
    }
    // Taken from the back: the last chunks are checked first, and the merge below re-sorts.
    let queue = std::sync::Mutex::new(chunks);
    let work = || {
        let mut done: Vec<(usize, Vec<Checked>)> = Vec::new();
        loop {
            // A poisoned lock means another verifier panicked; its panic reaches the caller.
            let next = match queue.lock() {
                Ok(mut q) => q.pop(),
                Err(_) => None,
            };
            let Some((i, part)) = next else {
                return done;
            };
            done.push((i, check_all(part)));
        }
    };
    let mut parts: Vec<(usize, Vec<Checked>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut out = work();
        for h in handles {
            match h.join() {
                Ok(v) => out.extend(v),
                // `verify` does not panic; should it, the panic goes on to the caller, which
                // fails the session (`start_verify`).
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    });
    parts.sort_unstable_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(len);
    for (_, part) in parts {
        out.extend(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verification stage keeps page order across its chunks, verifies every item not marked
    /// held, and hands a forged item back unchanged wherever it sits.
    #[test]
    fn verify_page_keeps_order_and_catches_forgeries() {
        let cfg = dht::Config::default();
        for (n, threads) in [
            (0usize, 0),
            (1, 0),
            (63, 2),
            (64, 0),
            (130, 3),
            (1000, 0),
            (1000, 1),
        ] {
            let mut items = crate::testing::signed_items("verify-page", n, 1, 16);
            let forged: Vec<usize> = [0, n / 2, n.saturating_sub(1)]
                .into_iter()
                .filter(|i| *i < n)
                .collect();
            for i in &forged {
                items[*i].seq += 1;
            }
            // Every seventh item counts as held: skipped, whatever it is.
            let input: Vec<(Item, bool)> = items
                .iter()
                .enumerate()
                .map(|(i, item)| (item.clone(), i % 7 == 3))
                .collect();
            let out = verify_page(&cfg, input, threads);
            assert_eq!(out.len(), n);
            for (i, (r, item)) in out.iter().zip(&items).enumerate() {
                match r {
                    Checked::Held(h) => {
                        assert_eq!(i % 7, 3, "item {i} of {n} skipped");
                        assert_eq!(h, item);
                    }
                    Checked::Verified(v) => {
                        assert!(
                            i % 7 != 3 && !forged.contains(&i),
                            "item {i} of {n} verified"
                        );
                        assert_eq!(v.item(), item);
                    }
                    Checked::Failed(bad) => {
                        assert!(
                            i % 7 != 3 && forged.contains(&i),
                            "item {i} of {n} refused: {bad}"
                        );
                        assert_eq!(&bad.item, item);
                    }
                }
            }
        }
    }
}
