//! Pure bookkeeping of the watcher's raise-once conditions (a replica not
//! streaming, archiving failing): a condition is raised once it held for a
//! grace period, and cleared once it stops holding after being raised. No
//! clock reads: the caller passes `now`.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What a pass decided for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Held for the grace period: alert now (once).
    Raise,
    /// Stopped holding after it was alerted: say it is over.
    Clear,
}

/// Per key: since when the condition holds, and whether it was alerted.
#[derive(Debug)]
pub struct Conditions<K> {
    since: HashMap<K, Instant>,
    alerted: HashSet<K>,
}

impl<K> Default for Conditions<K> {
    fn default() -> Self {
        Conditions {
            since: HashMap::new(),
            alerted: HashSet::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> Conditions<K> {
    /// Records whether the condition holds for `key` at `now`.
    pub fn observe(
        &mut self,
        key: &K,
        holds: bool,
        now: Instant,
        grace: Duration,
    ) -> Option<Transition> {
        if !holds {
            self.since.remove(key);
            return self.alerted.remove(key).then_some(Transition::Clear);
        }
        let since = *self.since.entry(key.clone()).or_insert(now);
        if now.saturating_duration_since(since) >= grace && self.alerted.insert(key.clone()) {
            return Some(Transition::Raise);
        }
        None
    }

    /// Forgets keys not in `present` (a node deleted or promoted, a
    /// database gone) without clearing them: there is nothing to recover.
    pub fn retain(&mut self, present: &HashSet<K>) {
        self.since.retain(|key, _| present.contains(key));
        self.alerted.retain(|key| present.contains(key));
    }

    /// Keys alerted and not cleared.
    pub fn is_alerted(&self, key: &K) -> bool {
        self.alerted.contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    #[test]
    fn a_condition_is_raised_once_after_its_grace_and_cleared_once() {
        let mut conditions = Conditions::default();
        let start = Instant::now();
        let key = "r1".to_string();
        assert_eq!(conditions.observe(&key, true, start, GRACE), None);
        let early = start + Duration::from_secs(29);
        assert_eq!(conditions.observe(&key, true, early, GRACE), None);
        let late = start + GRACE;
        assert_eq!(
            conditions.observe(&key, true, late, GRACE),
            Some(Transition::Raise)
        );
        let later = late + Duration::from_secs(60);
        assert_eq!(conditions.observe(&key, true, later, GRACE), None);
        assert!(conditions.is_alerted(&key));
        assert_eq!(
            conditions.observe(&key, false, later, GRACE),
            Some(Transition::Clear)
        );
        assert_eq!(conditions.observe(&key, false, later, GRACE), None);
    }

    #[test]
    fn a_short_blip_is_never_alerted_nor_cleared() {
        let mut conditions = Conditions::default();
        let start = Instant::now();
        let key = "r1".to_string();
        conditions.observe(&key, true, start, GRACE);
        let before_grace = start + Duration::from_secs(10);
        assert_eq!(conditions.observe(&key, false, before_grace, GRACE), None);
        // Holding again starts a new grace period.
        let again = before_grace + Duration::from_secs(25);
        assert_eq!(conditions.observe(&key, true, again, GRACE), None);
        assert_eq!(
            conditions.observe(&key, true, again + Duration::from_secs(29), GRACE),
            None
        );
    }

    #[test]
    fn a_forgotten_key_is_not_cleared() {
        let mut conditions = Conditions::default();
        let start = Instant::now();
        let key = "r1".to_string();
        conditions.observe(&key, true, start, Duration::ZERO);
        assert!(conditions.is_alerted(&key));
        conditions.retain(&HashSet::new());
        assert_eq!(conditions.observe(&key, false, start, GRACE), None);
    }
}
