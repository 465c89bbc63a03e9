//! Expectations: what a controller wrote but its watch cache has not shown
//! yet, per owner, so a lagging cache never causes a second create or delete
//! (upstream `UIDTrackingControllerExpectations`, keyed by pod name here so
//! the shell checks them against the cache instead of hooking watch events).
//!
//! Invariant: an owner with pending expectations does not create or delete;
//! expectations older than five minutes count as satisfied.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

const TIMEOUT_SECONDS: i64 = 300;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pending {
    /// Created objects not yet in the cache.
    pub creates: BTreeSet<String>,
    /// Deleted objects still in the cache without a deletionTimestamp.
    pub deletes: BTreeSet<String>,
    pub set_at: Option<DateTime<Utc>>,
}

impl Pending {
    /// Drop what the cache now shows: `seen(name)` is `Some(deleting)` when
    /// the object is cached.
    pub fn observe(&mut self, seen: impl Fn(&str) -> Option<bool>) {
        self.creates.retain(|n| seen(n).is_none());
        self.deletes.retain(|n| seen(n) == Some(false));
    }

    pub fn satisfied(&self, now: DateTime<Utc>) -> bool {
        (self.creates.is_empty() && self.deletes.is_empty())
            || self
                .set_at
                .is_some_and(|t| now - t > chrono::Duration::seconds(TIMEOUT_SECONDS))
    }
}

/// Pending writes of every owner (key: owner uid).
#[derive(Default)]
pub struct Expectations {
    owners: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    /// Whether `owner` may act now, after observing the cache.
    pub fn satisfied(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        seen: impl Fn(&str) -> Option<bool>,
    ) -> bool {
        let mut m = self.owners.lock().unwrap();
        let Some(p) = m.get_mut(owner) else {
            return true;
        };
        p.observe(seen);
        let ok = p.satisfied(now);
        if ok {
            m.remove(owner);
        }
        ok
    }

    pub fn created(&self, owner: &str, name: String, now: DateTime<Utc>) {
        let mut m = self.owners.lock().unwrap();
        let p = m.entry(owner.to_string()).or_default();
        p.creates.insert(name);
        p.set_at = Some(now);
    }

    pub fn deleted(&self, owner: &str, name: String, now: DateTime<Utc>) {
        let mut m = self.owners.lock().unwrap();
        let p = m.entry(owner.to_string()).or_default();
        p.deletes.insert(name);
        p.set_at = Some(now);
    }

    pub fn forget(&self, owner: &str) {
        self.owners.lock().unwrap().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_until_the_cache_shows_the_writes() {
        let e = Expectations::default();
        let now = Utc::now();
        e.created("o", "a".into(), now);
        e.deleted("o", "b".into(), now);
        assert!(!e.satisfied("o", now, |n| (n == "b").then_some(false)));
        // a appears, b gets a deletionTimestamp
        assert!(e.satisfied("o", now, |n| Some(n == "b")));
        e.created("o", "c".into(), now);
        assert!(e.satisfied("o", now + chrono::Duration::seconds(301), |_| None));
        assert!(e.satisfied("other", now, |_| None));
    }
}
