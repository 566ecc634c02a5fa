//! The first write on a new primary after a failover or switchover: when
//! the control plane records a primary change (a newer `ha_generation`),
//! the new primary's `next_xid` at that moment is the baseline; the first
//! report above it is the first writing transaction the new primary
//! completed. Its time is that of the heartbeat that carried it (the
//! agents beat every 200 ms). Pure: the sampler passes what it saw.

use std::collections::{HashMap, VecDeque};

/// First writes kept per database (the newest).
const KEPT: usize = 20;

#[derive(Debug)]
struct Pending {
    new_primary: String,
    generation: u64,
    /// `next_xid` of the new primary when the change was seen; taken from
    /// its first report when it had none then.
    baseline: Option<u64>,
}

#[derive(Debug, Default)]
pub struct FirstWrites {
    /// The newest generation seen per database.
    generations: HashMap<String, u64>,
    pending: HashMap<String, Pending>,
    /// (generation, first write at) per database, newest last.
    found: HashMap<String, VecDeque<(u64, i64)>>,
}

impl FirstWrites {
    /// The database's primary and generation now, and the primary's last
    /// `next_xid`. A generation above the one seen before (not the first
    /// sight after a restart) starts waiting for a first write.
    pub fn primary_is(&mut self, db: &str, primary: &str, generation: u64, xid: Option<u64>) {
        let before = self.generations.insert(db.to_string(), generation);
        if before.is_none_or(|seen| generation <= seen) {
            return;
        }
        if self
            .pending
            .get(db)
            .is_some_and(|p| p.new_primary == primary)
        {
            // The same primary under a newer generation (a sync-set change):
            // still waiting for the same first write.
            return;
        }
        self.pending.insert(
            db.to_string(),
            Pending {
                new_primary: primary.to_string(),
                generation,
                baseline: xid,
            },
        );
    }

    /// A report of `node` of `db` with `next_xid` `xid`, carried by a
    /// heartbeat at `seen_ms`. Returns the first write's time when this is it.
    pub fn report(&mut self, db: &str, node: &str, xid: u64, seen_ms: i64) -> Option<i64> {
        let pending = self.pending.get_mut(db)?;
        if pending.new_primary != node {
            return None;
        }
        let Some(baseline) = pending.baseline else {
            pending.baseline = Some(xid);
            return None;
        };
        if xid <= baseline {
            return None;
        }
        let generation = pending.generation;
        self.pending.remove(db);
        let found = self.found.entry(db.to_string()).or_default();
        found.push_back((generation, seen_ms));
        while found.len() > KEPT {
            found.pop_front();
        }
        Some(seen_ms)
    }

    /// Whether `db` waits for a first write on `node`.
    pub fn waits_on(&self, db: &str, node: &str) -> bool {
        self.pending.get(db).is_some_and(|p| p.new_primary == node)
    }

    /// When the primary change of `generation` saw its first write.
    pub fn at(&self, db: &str, generation: u64) -> Option<i64> {
        self.found
            .get(db)?
            .iter()
            .rev()
            .find(|(g, _)| *g == generation)
            .map(|(_, at)| *at)
    }

    pub fn forget(&mut self, db: &str) {
        self.generations.remove(db);
        self.pending.remove(db);
        self.found.remove(db);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_transaction_after_the_change_is_the_first_write() {
        let mut writes = FirstWrites::default();
        writes.primary_is("d", "a", 1, Some(500));
        assert!(!writes.waits_on("d", "a"), "first sight is no change");
        writes.primary_is("d", "b", 2, Some(700));
        assert!(writes.waits_on("d", "b"));
        assert_eq!(writes.report("d", "a", 900, 10), None, "the old primary");
        assert_eq!(writes.report("d", "b", 700, 20), None, "no write yet");
        assert_eq!(writes.report("d", "b", 701, 30), Some(30));
        assert_eq!(writes.report("d", "b", 702, 40), None, "only the first");
        assert_eq!(writes.at("d", 2), Some(30));
        assert_eq!(writes.at("d", 1), None);
    }

    #[test]
    fn without_a_baseline_the_first_report_is_one() {
        let mut writes = FirstWrites::default();
        writes.primary_is("d", "a", 1, None);
        writes.primary_is("d", "b", 2, None);
        assert_eq!(writes.report("d", "b", 50, 10), None);
        assert_eq!(writes.report("d", "b", 51, 20), Some(20));
    }

    #[test]
    fn a_newer_generation_of_the_same_primary_keeps_waiting() {
        let mut writes = FirstWrites::default();
        writes.primary_is("d", "a", 1, Some(1));
        writes.primary_is("d", "b", 2, Some(10));
        writes.primary_is("d", "b", 3, Some(10));
        assert_eq!(writes.report("d", "b", 11, 5), Some(5));
        assert_eq!(writes.at("d", 2), Some(5));
    }
}
