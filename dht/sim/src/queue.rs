//! The event queue: virtual time in microseconds, ties broken by insertion order, so a run is a
//! pure function of its seed.
//!
//! A radix heap (time only moves forward): an event goes into the bucket of the highest bit in
//! which its time differs from the last time popped; popping empties the lowest non-empty
//! bucket into lower ones. Pushes are appends and each event moves down at most 64 times, so a
//! run with ~10⁶ pending timers (100,000 visors) avoids a binary heap's cache misses per pop.
use std::collections::VecDeque;

/// Virtual time, µs since the start of the run.
pub type Micros = u64;

/// One second of virtual time.
pub const SEC: Micros = 1_000_000;

struct Entry<E> {
    at: Micros,
    seq: u64,
    ev: E,
}

/// Events ordered by (time, insertion order).
pub struct Queue<E> {
    /// Events at `last`, in insertion order.
    now: VecDeque<Entry<E>>,
    /// `buckets[b]`: events whose time first differs from `last` in bit `b`.
    buckets: Vec<Vec<Entry<E>>>,
    last: Micros,
    seq: u64,
    /// Events popped so far.
    pub popped: u64,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            now: VecDeque::new(),
            buckets: (0..64).map(|_| Vec::new()).collect(),
            last: 0,
            seq: 0,
            popped: 0,
        }
    }
}

impl<E> Queue<E> {
    /// Schedules `ev` at `at` (an instant already passed counts as the last one popped).
    pub fn at(&mut self, at: Micros, ev: E) {
        self.seq += 1;
        let e = Entry {
            at: at.max(self.last),
            seq: self.seq,
            ev,
        };
        self.put(e);
    }

    fn put(&mut self, e: Entry<E>) {
        if e.at == self.last {
            self.now.push_back(e);
        } else {
            let b = 63 - (e.at ^ self.last).leading_zeros() as usize;
            self.buckets[b].push(e);
        }
    }

    /// The earliest event, if any is due by `until`.
    pub fn pop(&mut self, until: Micros) -> Option<(Micros, E)> {
        if self.now.is_empty() {
            let b = self.buckets.iter().position(|b| !b.is_empty())?;
            let moved = std::mem::take(&mut self.buckets[b]);
            self.last = moved.iter().map(|e| e.at).min()?;
            let mut here: Vec<Entry<E>> = Vec::new();
            for e in moved {
                if e.at == self.last {
                    here.push(e);
                } else {
                    self.put(e);
                }
            }
            here.sort_unstable_by_key(|e| e.seq);
            self.now.extend(here);
        }
        if self.last > until {
            return None;
        }
        let e = self.now.pop_front()?;
        self.popped += 1;
        Some((e.at, e.ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Same order as sorting by (time, insertion order), with pushes between pops.
    #[test]
    fn pops_in_time_then_insertion_order() {
        let mut r = Rng::new(5);
        let mut q = Queue::default();
        let mut reference: Vec<(Micros, u64)> = Vec::new();
        let mut out = Vec::new();
        let mut id = 0u64;
        let mut now = 0;
        for round in 0..2000 {
            for _ in 0..r.below(4) {
                let at = now + r.below(if round % 3 == 0 { 3 } else { 5_000 });
                q.at(at, id);
                reference.push((at, id));
                id += 1;
            }
            if let Some((at, ev)) = q.pop(u64::MAX) {
                assert!(at >= now);
                now = at;
                out.push((at, ev));
            }
        }
        while let Some(x) = q.pop(u64::MAX) {
            out.push(x);
        }
        reference.sort();
        assert_eq!(out, reference);
        q.at(10, 1);
        assert_eq!(q.pop(5), None, "not due");
    }
}
