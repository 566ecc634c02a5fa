//! The checker: reads a chaos run's history (acknowledged writes, rounds,
//! promotions, the final table) and reports per fault kind: rounds, RTO
//! (fault → first acknowledged write sent once it took effect) median and max,
//! acknowledged writes lost, split-brain acknowledgements, stuck rounds,
//! false failovers and the longest write gap. Pure: no I/O, no clock.
//!
//! Split brain: every promotion opens a new *reign*; an acknowledgement
//! belongs to the latest reign of the node that gave it. An ack is a
//! split-brain ack when a write of a newer reign, on another node, was
//! already sent (and later acknowledged) before it was acknowledged
//! (two primaries acknowledging in overlapping intervals, or an old primary
//! acknowledging after a new one did), or when its node was never made
//! primary at all.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::kinds::{Expectation, Kind};
use super::writer::Ack;

/// Promotion times come from the monitor's wall clock, converted to the
/// run's monotonic origin: allow this much error.
pub const CLOCK_SLACK_MS: f64 = 500.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub round: usize,
    pub kind: Kind,
    /// When the injection began (RTO is measured from here).
    pub fault_ms: f64,
    /// When the injection had taken effect (the first write sent after
    /// this one counts for the RTO).
    pub injected_ms: f64,
    pub healed_ms: f64,
    /// None: not settled within the deadline (stuck).
    pub settled_ms: Option<f64>,
    pub primary_before: String,
    pub primary_after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub at_ms: f64,
    pub node: String,
    pub address: Ipv4Addr,
}

#[derive(Debug, Clone, Default)]
pub struct History {
    /// The primary's address when the writers started.
    pub initial_primary: Option<Ipv4Addr>,
    pub acks: Vec<Ack>,
    pub rounds: Vec<Round>,
    pub promotions: Vec<Promotion>,
    /// Ids in the final table; None when it could not be read.
    pub present: Option<HashSet<i64>>,
    /// Kinds asked for but not runnable here, with the reason.
    pub unavailable: Vec<(Kind, String)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindReport {
    pub rounds: usize,
    pub rtos_ms: Vec<f64>,
    /// Rounds with no acknowledged write after the fault at all.
    pub no_recovery: usize,
    pub lost: usize,
    pub split_brain: usize,
    pub stuck: usize,
    pub failovers: usize,
    pub false_failovers: usize,
    pub longest_gap_ms: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub kinds: BTreeMap<Kind, KindReport>,
    pub lost_ids: Vec<i64>,
    pub split_brain_acks: Vec<Ack>,
    pub acks: usize,
    pub final_table_read: bool,
    pub unavailable: Vec<(Kind, String)>,
}

impl Report {
    pub fn total(&self, field: impl Fn(&KindReport) -> usize) -> usize {
        self.kinds.values().map(field).sum()
    }

    /// Whether the run failed its promises: anything lost, any split-brain
    /// acknowledgement, any stuck round, or a final table nobody could read.
    pub fn failed(&self) -> bool {
        !self.lost_ids.is_empty()
            || !self.split_brain_acks.is_empty()
            || self.total(|k| k.stuck) > 0
            || !self.final_table_read
    }
}

/// Index of the round an instant belongs to (the last fault at or before
/// it), None before the first fault.
fn round_at(rounds: &[Round], at_ms: f64) -> Option<usize> {
    rounds.iter().rposition(|r| r.fault_ms <= at_ms)
}

/// The reign of an ack: 1 + index of the latest promotion of its node at
/// or before it; 0 for the initial primary; None if its node never was
/// made primary.
fn reign(history: &History, ack: &Ack) -> Option<usize> {
    let promoted = history
        .promotions
        .iter()
        .rposition(|p| p.address == ack.server && p.at_ms <= ack.acked_ms + CLOCK_SLACK_MS);
    match promoted {
        Some(index) => Some(index + 1),
        None if history.initial_primary == Some(ack.server) => Some(0),
        None => None,
    }
}

/// Acks that break single-writer: see the module doc. Linear in the acks
/// times the reigns: per reign, its earliest send.
pub fn split_brain(history: &History) -> Vec<Ack> {
    let reigns: Vec<Option<usize>> = history.acks.iter().map(|a| reign(history, a)).collect();
    // Reign → (its node, its earliest send).
    let mut earliest: BTreeMap<usize, (Ipv4Addr, f64)> = BTreeMap::new();
    for (ack, reign) in history.acks.iter().zip(&reigns) {
        if let Some(reign) = reign {
            let entry = earliest.entry(*reign).or_insert((ack.server, ack.sent_ms));
            entry.1 = entry.1.min(ack.sent_ms);
        }
    }
    let mut found = Vec::new();
    for (ack, reign) in history.acks.iter().zip(&reigns) {
        let Some(own) = reign else {
            found.push(ack.clone());
            continue;
        };
        let overtaken = earliest
            .range(own + 1..)
            .any(|(_, (server, sent_ms))| *server != ack.server && *sent_ms < ack.acked_ms);
        if overtaken {
            found.push(ack.clone());
        }
    }
    found
}

/// Longest time without an acknowledgement from `from` on, up to `to`, or,
/// if writes had not resumed by then, up to the first acknowledgement
/// after `to` (before `limit`).
fn longest_gap(acks: &[Ack], from: f64, to: f64, limit: f64) -> f64 {
    let resumed = acks
        .iter()
        .map(|a| a.acked_ms)
        .filter(|t| *t >= to && *t < limit)
        .fold(f64::INFINITY, f64::min);
    let end = if resumed.is_finite() {
        resumed
    } else {
        to.min(limit)
    };
    let mut times: Vec<f64> = acks
        .iter()
        .map(|a| a.acked_ms)
        .filter(|t| *t > from && *t < end)
        .collect();
    times.sort_by(f64::total_cmp);
    let mut previous = from;
    let mut longest: f64 = 0.0;
    for time in times.into_iter().chain([end]) {
        longest = longest.max(time - previous);
        previous = time;
    }
    longest
}

pub fn check(history: &History) -> Report {
    let mut report = Report {
        acks: history.acks.len(),
        final_table_read: history.present.is_some(),
        unavailable: history.unavailable.clone(),
        ..Report::default()
    };
    for (index, round) in history.rounds.iter().enumerate() {
        let entry = report.kinds.entry(round.kind).or_default();
        let end_ms = history
            .rounds
            .get(index + 1)
            .map(|next| next.fault_ms)
            .unwrap_or(f64::INFINITY);
        entry.rounds += 1;
        match history.acks.iter().find(|a| a.sent_ms >= round.injected_ms) {
            Some(first) => entry.rtos_ms.push(first.acked_ms - round.fault_ms),
            None => entry.no_recovery += 1,
        }
        if round.settled_ms.is_none() {
            entry.stuck += 1;
        }
        let promoted = history
            .promotions
            .iter()
            .filter(|p| p.at_ms >= round.fault_ms && p.at_ms < end_ms)
            .count();
        if promoted > 0 {
            entry.failovers += 1;
            if round.kind.expectation() == Expectation::NoFailover {
                entry.false_failovers += 1;
            }
        }
        let gap_end = round.settled_ms.unwrap_or(round.healed_ms).min(end_ms);
        entry.longest_gap_ms =
            entry
                .longest_gap_ms
                .max(longest_gap(&history.acks, round.fault_ms, gap_end, end_ms));
    }
    if let Some(present) = &history.present {
        for ack in &history.acks {
            if present.contains(&ack.id) {
                continue;
            }
            report.lost_ids.push(ack.id);
            if let Some(index) = round_at(&history.rounds, ack.acked_ms) {
                if let Some(entry) = report.kinds.get_mut(&history.rounds[index].kind) {
                    entry.lost += 1;
                }
            }
        }
    }
    report.split_brain_acks = split_brain(history);
    for ack in &report.split_brain_acks {
        if let Some(index) = round_at(&history.rounds, ack.acked_ms) {
            if let Some(entry) = report.kinds.get_mut(&history.rounds[index].kind) {
                entry.split_brain += 1;
            }
        }
    }
    report
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 0 => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
        _ => Some(sorted[mid]),
    }
}

fn seconds(ms: Option<f64>) -> String {
    ms.map(|ms| format!("{:.2}", ms / 1000.0))
        .unwrap_or_else(|| "-".into())
}

/// The table, notes and the one summary line.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "{:<32} {:>6} {:>9} {:>9} {:>5} {:>6} {:>6} {:>9} {:>14} {:>9}\n",
        "fault",
        "rounds",
        "rto_med_s",
        "rto_max_s",
        "lost",
        "split",
        "stuck",
        "failovers",
        "false_failover",
        "max_gap_s"
    );
    for (kind, k) in &report.kinds {
        let rto_max = k.rtos_ms.iter().copied().reduce(f64::max);
        out += &format!(
            "{:<32} {:>6} {:>9} {:>9} {:>5} {:>6} {:>6} {:>9} {:>14} {:>9}{}{}\n",
            kind.name(),
            k.rounds,
            seconds(median(&k.rtos_ms)),
            seconds(rto_max),
            k.lost,
            k.split_brain,
            k.stuck,
            k.failovers,
            k.false_failovers,
            seconds(Some(k.longest_gap_ms)),
            if k.no_recovery > 0 {
                format!(
                    "  ({} rounds without any write after the fault)",
                    k.no_recovery
                )
            } else {
                String::new()
            },
            kind.known_failure()
                .map(|why| format!("  KNOWN FAILURE: {why}"))
                .unwrap_or_default(),
        );
    }
    for (kind, reason) in &report.unavailable {
        out += &format!("{:<32} unavailable here: {reason}\n", kind.name());
    }
    if !report.final_table_read {
        out += "the final table could not be read: lost writes unknown\n";
    }
    if !report.lost_ids.is_empty() {
        let shown: Vec<String> = report
            .lost_ids
            .iter()
            .take(20)
            .map(i64::to_string)
            .collect();
        out += &format!("lost acknowledged ids (first 20): {}\n", shown.join(" "));
    }
    for ack in report.split_brain_acks.iter().take(20) {
        out += &format!(
            "split-brain ack: id {} writer {} by {} sent {:.0} ms acked {:.0} ms\n",
            ack.id, ack.writer, ack.server, ack.sent_ms, ack.acked_ms
        );
    }
    let rounds = report.total(|k| k.rounds);
    let unavailable: Vec<&str> = report.unavailable.iter().map(|(k, _)| k.name()).collect();
    let known: Vec<&str> = report
        .kinds
        .keys()
        .filter(|k| k.known_failure().is_some())
        .map(|k| k.name())
        .collect();
    out += &format!(
        "chaos: {} — {rounds} rounds over {} kinds, {} acknowledged writes, lost {}, split-brain acks {}, stuck {}, false failovers {}; unavailable here: [{}]; known failures: [{}]\n",
        if report.failed() { "FAIL" } else { "PASS" },
        report.kinds.len(),
        report.acks,
        report.lost_ids.len(),
        report.split_brain_acks.len(),
        report.total(|k| k.stuck),
        report.total(|k| k.false_failovers),
        unavailable.join(", "),
        known.join(", "),
    );
    out
}

#[cfg(test)]
#[path = "checker_tests.rs"]
mod tests;
