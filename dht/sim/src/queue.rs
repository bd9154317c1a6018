//! The event queue: virtual time in microseconds, ties broken by insertion order, so a run is a
//! pure function of its seed.
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Virtual time, µs since the start of the run.
pub type Micros = u64;

/// One second of virtual time.
pub const SEC: Micros = 1_000_000;

struct Entry<E> {
    at: Micros,
    seq: u64,
    ev: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: the heap pops the earliest first.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// Events ordered by (time, insertion order).
pub struct Queue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
    /// Events popped so far.
    pub popped: u64,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            seq: 0,
            popped: 0,
        }
    }
}

impl<E> Queue<E> {
    /// Schedules `ev` at `at`.
    pub fn at(&mut self, at: Micros, ev: E) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            ev,
        });
    }

    /// The earliest event, if any is due by `until`.
    pub fn pop(&mut self, until: Micros) -> Option<(Micros, E)> {
        if self.heap.peek()?.at > until {
            return None;
        }
        self.popped += 1;
        self.heap.pop().map(|e| (e.at, e.ev))
    }
}
