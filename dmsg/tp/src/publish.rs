//! When a visor publishes its `tp` item. Pure: the caller passes `now` and the value it would
//! publish, and gets back what to do.
//!
//! Rules:
//! - nothing published yet in this run → publish (a restarted visor replaces whatever its
//!   previous run left in the DHT, even with an empty list);
//! - the value differs from the last published one (a transport added, removed, or changed
//!   state) → publish, at most once per [`PublishPolicy::min_interval`] so a flapping link
//!   costs a bounded rate of puts (changes in between are coalesced into the next put);
//! - the value is unchanged → publish again only at `last_put + refresh_after`, before the
//!   item would expire on storing nodes (their lifetime is 2 h; the default refresh is 90 min).
//!   No traffic at all in between: there is no fixed timer.
//! - a failed put is retried after the policy's retry delay.
use std::time::{Duration, Instant};

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Put the value now.
    Publish,
    /// Nothing to do before this instant (or before the value changes).
    WaitUntil(Instant),
}

/// The publish rules and the state they need.
#[derive(Debug, Clone)]
pub struct PublishPolicy {
    /// Republish an unchanged value this long after the last successful put.
    pub refresh_after: Duration,
    /// Least time between two puts of different values.
    pub min_interval: Duration,
    /// Wait this long after a failed put.
    pub retry_after: Duration,
    last: Option<(Vec<u8>, Instant)>,
    last_attempt: Option<Instant>,
    failed: bool,
}

impl PublishPolicy {
    /// A policy with nothing published yet.
    pub fn new(refresh_after: Duration, min_interval: Duration, retry_after: Duration) -> Self {
        PublishPolicy {
            refresh_after,
            min_interval,
            retry_after,
            last: None,
            last_attempt: None,
            failed: false,
        }
    }

    /// What to do at `now` when the current value is `value`.
    pub fn decide(&self, now: Instant, value: &[u8]) -> Decision {
        if self.failed
            && let Some(t) = self.last_attempt
        {
            let at = t + self.retry_after;
            return if now >= at {
                Decision::Publish
            } else {
                Decision::WaitUntil(at)
            };
        }
        let Some((last, at)) = &self.last else {
            return Decision::Publish;
        };
        if last.as_slice() != value {
            let earliest = self
                .last_attempt
                .map_or(now, |t| t + self.min_interval)
                .max(*at + self.min_interval);
            return if now >= earliest {
                Decision::Publish
            } else {
                Decision::WaitUntil(earliest)
            };
        }
        let due = *at + self.refresh_after;
        if now >= due {
            Decision::Publish
        } else {
            Decision::WaitUntil(due)
        }
    }

    /// Records a put of `value` started at `now` and its result.
    pub fn record(&mut self, now: Instant, value: Vec<u8>, ok: bool) {
        self.last_attempt = Some(now);
        self.failed = !ok;
        if ok {
            self.last = Some((value, now));
        }
    }

    /// The last successfully published value.
    pub fn published(&self) -> Option<&[u8]> {
        self.last.as_ref().map(|(v, _)| v.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(200);

    fn policy() -> PublishPolicy {
        PublishPolicy::new(Duration::from_secs(90 * 60), MIN, Duration::from_secs(5))
    }

    #[test]
    fn first_value_is_published_even_empty() {
        let p = policy();
        assert_eq!(p.decide(Instant::now(), b"[]"), Decision::Publish);
    }

    #[test]
    fn unchanged_value_waits_for_refresh_only() {
        let mut p = policy();
        let t0 = Instant::now();
        p.record(t0, b"a".to_vec(), true);
        let due = t0 + Duration::from_secs(90 * 60);
        // Every check before the deadline says wait (no fixed-timer traffic).
        for s in [0, 1, 60, 3600, 5399] {
            assert_eq!(
                p.decide(t0 + Duration::from_secs(s), b"a"),
                Decision::WaitUntil(due)
            );
        }
        assert_eq!(p.decide(due, b"a"), Decision::Publish);
        p.record(due, b"a".to_vec(), true);
        assert_eq!(
            p.decide(due + Duration::from_secs(1), b"a"),
            Decision::WaitUntil(due + Duration::from_secs(90 * 60))
        );
    }

    #[test]
    fn changes_publish_at_a_bounded_rate() {
        let mut p = policy();
        let t0 = Instant::now();
        p.record(t0, b"a".to_vec(), true);
        assert_eq!(p.decide(t0, b"b"), Decision::WaitUntil(t0 + MIN));
        assert_eq!(p.decide(t0 + MIN, b"b"), Decision::Publish);
        p.record(t0 + MIN, b"b".to_vec(), true);
        // Back to the old value: a change again.
        assert_eq!(p.decide(t0 + MIN * 3, b"a"), Decision::Publish);
        assert_eq!(p.published(), Some(&b"b"[..]));
    }

    #[test]
    fn failures_retry_after_delay() {
        let mut p = policy();
        let t0 = Instant::now();
        p.record(t0, b"a".to_vec(), false);
        assert_eq!(p.published(), None);
        let at = t0 + Duration::from_secs(5);
        assert_eq!(p.decide(t0, b"a"), Decision::WaitUntil(at));
        assert_eq!(p.decide(at, b"a"), Decision::Publish);
        p.record(at, b"a".to_vec(), true);
        assert_eq!(p.published(), Some(&b"a"[..]));
    }
}
