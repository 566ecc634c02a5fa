//! The seeded round plan: which fault each round injects and how long it
//! holds it. Kinds are dealt in shuffled cycles, so N rounds over K kinds
//! cover every kind once N ≥ K; the same seed gives the same plan.

use std::time::Duration;

use super::kinds::Kind;

/// splitmix64: small, seedable, good enough to pick faults.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        debug_assert!(low <= high);
        low + self.next_u64() % (high - low + 1)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRound {
    pub round: usize,
    pub kind: Kind,
    pub hold: Duration,
    /// Which standby a standby fault picks (index into the replicas).
    pub pick: u64,
}

/// `rounds` rounds over `kinds`, holds uniform in `hold` (whole ms).
pub fn plan(
    seed: u64,
    rounds: usize,
    kinds: &[Kind],
    hold: (Duration, Duration),
) -> Vec<PlannedRound> {
    let mut rng = Rng::new(seed);
    let mut deck: Vec<Kind> = Vec::new();
    let mut planned = Vec::new();
    for round in 1..=rounds {
        if deck.is_empty() {
            deck = kinds.to_vec();
            // Fisher–Yates.
            for i in (1..deck.len()).rev() {
                let j = rng.between(0, i as u64) as usize;
                deck.swap(i, j);
            }
        }
        let kind = deck.remove(0);
        let hold_ms = rng.between(hold.0.as_millis() as u64, hold.1.as_millis() as u64);
        planned.push(PlannedRound {
            round,
            kind,
            hold: Duration::from_millis(hold_ms),
            pick: rng.next_u64(),
        });
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_plan_and_every_kind_is_covered() {
        let hold = (Duration::from_secs(3), Duration::from_secs(20));
        let rounds = Kind::ALL.len();
        let first = plan(7, rounds, &Kind::ALL, hold);
        assert_eq!(first, plan(7, rounds, &Kind::ALL, hold));
        assert_ne!(first, plan(8, rounds, &Kind::ALL, hold));
        for kind in Kind::ALL {
            assert!(first.iter().any(|r| r.kind == kind), "{kind} not covered");
        }
        assert!(first.iter().all(|r| r.hold >= hold.0 && r.hold <= hold.1));
    }
}
