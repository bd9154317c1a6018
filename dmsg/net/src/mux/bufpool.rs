//! Frame-body buffers the session readers reuse, so a bulk transfer does not fault fresh pages
//! in for every frame.
//!
//! Used for frame bodies the session readers receive and for the records a `DmsgStream` write
//! seals.
//!
//! Why: each body used to be a new allocation of exactly its size. With 64 KiB frames, glibc
//! gives a freed body's memory back to the kernel (heap trim, `madvise`) and the next body
//! faults the same pages in again while `recv` copies into it: perf on `skymesh dmsg server`
//! relaying 256 MiB put page faults, page clearing and `madvise` at about a fifth of its CPU
//! (docs/dmsg-operations.md, "The whole DMSG-HTTP path").
//!
//! How: a body of [`MIN_POOLED`]..=[`MAX_POOLED`] bytes is read into a buffer whose capacity is
//! its length rounded up to 1 KiB, taken from the idle buffers of that capacity when there is
//! one. The [`Bytes`] handed on owns the buffer; when its last clone drops, the buffer goes back
//! to the idle list, unless that would put more than [`MAX_IDLE_BYTES`] there (then it is
//! freed). Smaller and larger bodies are allocated exactly, as before (small ones come from the
//! allocator's bins without faults; larger ones are rare: our senders cap frames at 64 KiB).
//!
//! Bounds: at most [`MAX_IDLE_BYTES`] (16 MiB) of idle buffers in the process, whatever the
//! number of sessions; a pooled body's buffer is less than 1 KiB larger than the body (< 25 %).

use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

/// Smallest body read into a pooled buffer.
pub(crate) const MIN_POOLED: usize = 4 * 1024;
/// Largest body read into a pooled buffer.
pub(crate) const MAX_POOLED: usize = 256 * 1024;
/// Most bytes of idle buffers kept for reuse, in the whole process: one session's window
/// budget (`dmsg_proto::mux::session::DEFAULT_SESSION_WINDOW`), which its streams may all hand
/// back at once when a reader catches up. With 4 MiB, 64 busy streams overflowed the pool and
/// the process took 2.4× the page faults (`perf stat -e page-faults` over dmsg_streams).
pub(crate) const MAX_IDLE_BYTES: usize = 16 * 1024 * 1024;
/// Pooled capacities are multiples of this.
const STEP: usize = 1024;
const SIZES: usize = MAX_POOLED / STEP;

/// Idle buffers by capacity (index `capacity / STEP - 1`).
pub(crate) struct Pool {
    idle: Mutex<Idle>,
}

struct Idle {
    by_size: [Vec<Vec<u8>>; SIZES],
    bytes: usize,
}

/// The process's pool, shared by every session.
pub(crate) static POOL: Pool = Pool::new();

fn pooled_size(len: usize) -> Option<usize> {
    (MIN_POOLED..=MAX_POOLED)
        .contains(&len)
        .then(|| len.next_multiple_of(STEP))
}

impl Pool {
    pub(crate) const fn new() -> Pool {
        Pool {
            idle: Mutex::new(Idle {
                by_size: [const { Vec::new() }; SIZES],
                bytes: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        // The lists stay consistent at every step, so a poisoned lock is still usable.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An empty buffer with room for `len` bytes.
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        let Some(cap) = pooled_size(len) else {
            return Vec::with_capacity(len);
        };
        let reused = {
            let mut g = self.lock();
            let buf = g.by_size[cap / STEP - 1].pop();
            if let Some(b) = &buf {
                g.bytes -= b.capacity();
            }
            buf
        };
        reused.unwrap_or_else(|| Vec::with_capacity(cap))
    }

    /// Hands `buf` on; a buffer from [`Pool::take`] of a pooled size comes back to this pool
    /// when the last clone of the result drops.
    pub(crate) fn freeze(&'static self, buf: Vec<u8>) -> Bytes {
        if pooled_size(buf.capacity()) == Some(buf.capacity()) {
            Bytes::from_owner(Pooled { buf, pool: self })
        } else {
            Bytes::from(buf)
        }
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        let cap = buf.capacity();
        let mut g = self.lock();
        if g.bytes + cap <= MAX_IDLE_BYTES {
            g.bytes += cap;
            g.by_size[cap / STEP - 1].push(buf);
            return;
        }
        drop(g);
        drop(buf);
    }

    #[cfg(test)]
    fn idle_bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// A pooled buffer owned by the [`Bytes`] made from it.
struct Pooled {
    buf: Vec<u8>,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> &'static Pool {
        Box::leak(Box::new(Pool::new()))
    }

    fn filled(p: &'static Pool, len: usize) -> Bytes {
        let mut b = p.take(len);
        b.extend((0..len).map(|i| i as u8));
        p.freeze(b)
    }

    #[test]
    fn a_dropped_body_is_reused_for_the_next_of_its_size() {
        let p = pool();
        let a = filled(p, 65_536);
        assert_eq!(a.len(), 65_536);
        assert_eq!(a[1000], (1000 % 256) as u8);
        let ptr = a.as_ptr();
        let clone = a.clone();
        drop(a);
        assert_eq!(p.idle_bytes(), 0, "a clone still holds it");
        drop(clone);
        assert_eq!(p.idle_bytes(), 65_536);
        let b = p.take(65_000);
        assert_eq!(b.capacity(), 65_536);
        assert!(b.is_empty());
        assert_eq!(b.as_ptr(), ptr);
        assert_eq!(p.idle_bytes(), 0);
    }

    #[test]
    fn sizes_round_up_to_a_kib_and_small_or_large_bodies_are_not_pooled() {
        let p = pool();
        assert_eq!(p.take(4097).capacity(), 5120);
        assert_eq!(p.take(100).capacity(), 100);
        assert_eq!(p.take(MAX_POOLED + 1).capacity(), MAX_POOLED + 1);
        drop(filled(p, 100));
        drop(filled(p, MAX_POOLED + 1));
        assert_eq!(p.idle_bytes(), 0);
        // A slice of a pooled body keeps it alive; the buffer returns with the last piece.
        let b = filled(p, 8192);
        let tail = b.slice(4096..);
        drop(b);
        assert_eq!(p.idle_bytes(), 0);
        assert_eq!(tail.len(), 4096);
        drop(tail);
        assert_eq!(p.idle_bytes(), 8192);
    }

    #[test]
    fn idle_buffers_stay_within_the_bound() {
        let p = pool();
        let held: Vec<Bytes> = (0..2 * MAX_IDLE_BYTES / MAX_POOLED)
            .map(|_| filled(p, MAX_POOLED))
            .collect();
        drop(held);
        assert_eq!(p.idle_bytes(), MAX_IDLE_BYTES);
        // Any size: the bound is on bytes.
        drop(filled(p, MIN_POOLED));
        assert_eq!(p.idle_bytes(), MAX_IDLE_BYTES);
    }
}
