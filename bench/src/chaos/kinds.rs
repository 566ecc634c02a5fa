//! The fault kinds of a chaos run, their `--faults` names, and what
//! pgfleet is expected to do under each (the checker's yardstick).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One kind of fault a round injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    KillPrimary,
    FreezePrimary,
    IsolatePrimary,
    CutPrimaryMonitor,
    CutPrimaryStandbys,
    CutPrimaryClients,
    IsolateMonitor,
    KillMonitorHost,
    IsolateStandby,
    SlowPrimary,
    KillControlPlane,
    KillControlPlaneThenPrimary,
    CpuSaturation,
    StallPrimaryAgent,
    IoStallPrimary,
}

/// What a round of a kind must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// The primary is gone for good: a standby is promoted.
    FailsOver,
    /// Either outcome is correct (the primary is reachable by some parties).
    MayFailOver,
    /// A promotion is a false failover, and writes must not stop
    /// (unavailability is reported).
    NoFailover,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::KillPrimary,
        Kind::FreezePrimary,
        Kind::IsolatePrimary,
        Kind::CutPrimaryMonitor,
        Kind::CutPrimaryStandbys,
        Kind::CutPrimaryClients,
        Kind::IsolateMonitor,
        Kind::KillMonitorHost,
        Kind::IsolateStandby,
        Kind::SlowPrimary,
        Kind::KillControlPlane,
        Kind::KillControlPlaneThenPrimary,
        Kind::CpuSaturation,
        Kind::StallPrimaryAgent,
        Kind::IoStallPrimary,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::KillPrimary => "kill-primary",
            Kind::FreezePrimary => "freeze-primary",
            Kind::IsolatePrimary => "isolate-primary",
            Kind::CutPrimaryMonitor => "cut-primary-monitor",
            Kind::CutPrimaryStandbys => "cut-primary-standbys",
            Kind::CutPrimaryClients => "cut-primary-clients",
            Kind::IsolateMonitor => "isolate-monitor",
            Kind::KillMonitorHost => "kill-monitor-host",
            Kind::IsolateStandby => "isolate-standby",
            Kind::SlowPrimary => "slow-primary",
            Kind::KillControlPlane => "kill-control-plane",
            Kind::KillControlPlaneThenPrimary => "kill-control-plane-then-primary",
            Kind::CpuSaturation => "cpu-saturation",
            Kind::StallPrimaryAgent => "stall-primary-agent",
            Kind::IoStallPrimary => "io-stall-primary",
        }
    }

    pub fn expectation(self) -> Expectation {
        match self {
            Kind::KillPrimary
            | Kind::FreezePrimary
            | Kind::IsolatePrimary
            | Kind::KillControlPlaneThenPrimary => Expectation::FailsOver,
            Kind::CutPrimaryMonitor | Kind::CutPrimaryStandbys | Kind::SlowPrimary => {
                Expectation::MayFailOver
            }
            // Clients cut from the primary cannot write, but the database
            // is healthy: a promotion would be a false failover.
            Kind::CutPrimaryClients => Expectation::NoFailover,
            Kind::IsolateMonitor
            | Kind::KillMonitorHost
            | Kind::IsolateStandby
            | Kind::KillControlPlane
            | Kind::CpuSaturation
            // The keeper, heartbeats and the host's DNS pause; PostgreSQL
            // does not.
            | Kind::StallPrimaryAgent
            // A slow disk: commits crawl, the host is alive.
            | Kind::IoStallPrimary => Expectation::NoFailover,
        }
    }

    /// Whether writes must go on during the fault (the checker reports the
    /// longest gap between acknowledgements for these).
    pub fn keeps_writing(self) -> bool {
        self.expectation() == Expectation::NoFailover && self != Kind::CutPrimaryClients
    }

    /// Why a kind is a known failure of pgfleet today (reported by name,
    /// never hidden), if it is one. None is since the agents answer DNS
    /// (kill-control-plane-then-primary was one until then); the report
    /// keeps the column for the next.
    pub fn known_failure(self) -> Option<&'static str> {
        let _ = self;
        None
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(text: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault kind {text:?}; known: {}", names.join(", "))
            })
    }
}

/// Parses a `--faults` list (comma-separated names; `all` for every kind).
pub fn parse_list(text: &str) -> Result<Vec<Kind>, String> {
    if text == "all" {
        return Ok(Kind::ALL.to_vec());
    }
    let mut kinds = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let kind: Kind = name.parse()?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        return Err("no fault kind given".into());
    }
    Ok(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_name_and_unknown_names_are_refused() {
        for kind in Kind::ALL {
            assert_eq!(kind.name().parse::<Kind>(), Ok(kind));
        }
        assert_eq!(
            parse_list("kill-primary, isolate-monitor,kill-primary"),
            Ok(vec![Kind::KillPrimary, Kind::IsolateMonitor])
        );
        let error = parse_list("kill-primary,unplug").unwrap_err();
        assert!(error.contains("unknown fault kind \"unplug\""), "{error}");
        assert_eq!(parse_list("all").unwrap().len(), Kind::ALL.len());
    }
}
