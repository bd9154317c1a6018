//! Republish as a state machine: which of the items this node signs are due to be re-signed
//! and re-put. Pure: puts and the clock go in, due items come out; the actor signs and puts.
//!
//! - **Own items** (any salt, no writer) and **delegated items** this node writes as a trusted
//!   writer are due when not put for 0.9 × the republish interval (a little slack for timer
//!   jitter, so a put less than an interval ago keeps the item alive past the next tick).
//! - Own items under salts refreshed by someone else are never due: adverts (own timer), `dmsg`
//!   entries (entry-signed, refreshed by the DMSG client) and the configured application salts
//!   ([`crate::Config::app_refreshed`]).
//! - After a restart the store reports which items our key signed; their age is unknown, so they
//!   are due at the first tick.
//! - Bounds: own salts grow only with our own puts; delegated items with our own puts and at most
//!   `store::MAX_SIGNED_AT_OPEN` found at start.
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use dht::{Item, Salt, Target};
use keys::PubKey;

/// An item due for republishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Due {
    /// Our own item under this salt: re-sign the stored value with the next seq.
    Own(Salt),
    /// A delegated item we write for `subject`: re-sign it if the stored copy is still ours
    /// (else [`Republisher::forget`] it).
    Delegated {
        target: Target,
        subject: PubKey,
        salt: Salt,
    },
}

/// What this node republishes, and when it last put each.
#[derive(Debug)]
pub(crate) struct Republisher {
    /// Our key: items it signs without a writer are ours, items it signs as writer delegated.
    signer: PubKey,
    interval: Duration,
    app_refreshed: HashSet<Salt>,
    own: HashMap<Salt, Instant>,
    delegated: HashMap<Target, (PubKey, Salt, Instant)>,
}

impl Republisher {
    /// Republishes what `signer` signs every `interval`, except `app_refreshed` salts.
    pub fn new(signer: PubKey, interval: Duration, app_refreshed: HashSet<Salt>) -> Republisher {
        Republisher {
            signer,
            interval,
            app_refreshed,
            own: HashMap::new(),
            delegated: HashMap::new(),
        }
    }

    /// An item of `subject` under `salt`, signed by `writer` (`None`: by the subject), was put
    /// (accepted locally) at `now`.
    pub fn on_put(&mut self, subject: PubKey, writer: Option<PubKey>, salt: &Salt, now: Instant) {
        self.track(subject, writer, salt, now);
    }

    /// The items our key signed, found in the persistent store at start: due at the first tick.
    pub fn on_signed_at_open(&mut self, items: Vec<Item>, now: Instant) {
        let due = now.checked_sub(self.interval).unwrap_or(now);
        for item in &items {
            self.track(item.pk, item.writer, &item.salt, due);
        }
    }

    fn track(&mut self, subject: PubKey, writer: Option<PubKey>, salt: &Salt, at: Instant) {
        match writer {
            None if subject == self.signer => {
                self.own.insert(salt.clone(), at);
            }
            Some(w) if w == self.signer => {
                self.delegated
                    .insert(Target::of(&subject, salt), (subject, salt.clone(), at));
            }
            _ => {}
        }
    }

    /// The delegated item under `target` is no longer ours to write (the subject or another
    /// writer took it over).
    pub fn forget(&mut self, target: &Target) {
        self.delegated.remove(target);
    }

    /// The items due at `now` (the republish tick).
    pub fn due(&self, now: Instant) -> Vec<Due> {
        let fresh_after = now.checked_sub(self.interval.mul_f64(0.9)).unwrap_or(now);
        let mut out: Vec<Due> = self
            .own
            .iter()
            .filter(|(salt, at)| {
                **at <= fresh_after
                    && !matches!(
                        salt.kind(),
                        Some(dht::SaltKind::Fullnode | dht::SaltKind::Dmsg)
                    )
                    && !self.app_refreshed.contains(*salt)
            })
            .map(|(salt, _)| Due::Own(salt.clone()))
            .collect();
        out.extend(
            self.delegated
                .iter()
                .filter(|(_, (_, _, at))| *at <= fresh_after)
                .map(|(target, (subject, salt, _))| Due::Delegated {
                    target: *target,
                    subject: *subject,
                    salt: salt.clone(),
                }),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use keys::SecKey;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn salt(s: &str) -> Salt {
        Salt::new(s.as_bytes().to_vec()).unwrap()
    }

    fn setup() -> (SecKey, Republisher) {
        let sk = SecKey::from_seed(b"republish-tests");
        let app: HashSet<Salt> = [salt("app")].into_iter().collect();
        let r = Republisher::new(sk.pubkey(), HOUR, app);
        (sk, r)
    }

    #[test]
    fn own_items_are_due_after_most_of_an_interval() {
        let (sk, mut r) = setup();
        let t0 = Instant::now();
        let item = Item::sign(&sk, salt("svc"), 1, b"v".to_vec()).unwrap();
        r.on_put(item.pk, item.writer, &item.salt, t0);
        assert!(r.due(t0 + HOUR.mul_f64(0.89)).is_empty());
        assert_eq!(r.due(t0 + HOUR.mul_f64(0.9)), vec![Due::Own(salt("svc"))]);
        // A put refreshes it.
        r.on_put(item.pk, item.writer, &item.salt, t0 + HOUR);
        assert!(r.due(t0 + HOUR + HOUR.mul_f64(0.5)).is_empty());
    }

    #[test]
    fn salts_refreshed_elsewhere_are_never_due() {
        let (sk, mut r) = setup();
        let t0 = Instant::now();
        for s in ["fullnode", "dmsg", "app"] {
            let item = Item::sign(&sk, salt(s), 1, b"{}".to_vec()).unwrap();
            r.on_put(item.pk, item.writer, &item.salt, t0);
        }
        assert!(r.due(t0 + 10 * HOUR).is_empty());
    }

    #[test]
    fn delegated_items_are_due_until_forgotten() {
        let (sk, mut r) = setup();
        let subject = SecKey::from_seed(b"subject").pubkey();
        let t0 = Instant::now();
        let item = Item::sign_for(&sk, subject, salt("svc"), 1, b"v".to_vec()).unwrap();
        r.on_put(item.pk, item.writer, &item.salt, t0);
        let due = Due::Delegated {
            target: item.target(),
            subject,
            salt: salt("svc"),
        };
        assert_eq!(r.due(t0 + HOUR), vec![due]);
        r.forget(&item.target());
        assert!(r.due(t0 + HOUR).is_empty());
        // Items signed by others are not ours to republish.
        let other = SecKey::from_seed(b"other");
        let item = Item::sign(&other, salt("x"), 1, b"v".to_vec()).unwrap();
        r.on_put(item.pk, item.writer, &item.salt, t0);
        assert!(r.due(t0 + HOUR).is_empty());
    }

    #[test]
    fn items_found_at_start_are_due_at_the_first_tick() {
        let (sk, mut r) = setup();
        let t0 = Instant::now() + 2 * HOUR;
        let item = Item::sign(&sk, salt("svc"), 1, b"v".to_vec()).unwrap();
        r.on_signed_at_open(vec![item], t0);
        assert_eq!(r.due(t0), vec![Due::Own(salt("svc"))]);
    }
}
