//! One database's history at a fixed resolution: one point per
//! [`RESOLUTION_MS`] for the last hour ([`POINTS`] points at most), each
//! with the primary's write commit rate and every replica's lag. Pure: the
//! sampler passes samples with their time.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One point per 10 s.
pub const RESOLUTION_MS: i64 = 10_000;
/// An hour of points.
pub const POINTS: usize = 360;

/// One replica's replication at a point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicaLagPoint {
    pub node: String,
    /// Bytes received but not replayed (none while its host is not connected).
    pub lag_bytes: Option<u64>,
    /// Seconds since the last replayed transaction (none when unknown).
    pub lag_seconds: Option<f64>,
    /// Whether its WAL receiver streamed.
    pub streaming: bool,
}

/// What the sampler saw of a database at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    /// The primary's node name and its `next_xid`, when reported.
    pub primary: Option<(String, u64)>,
    pub replicas: Vec<ReplicaLagPoint>,
}

/// One point of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryPoint {
    pub at_ms: i64,
    /// Writing transactions completed per second on the primary since the
    /// previous point (none for the first point, or after the primary changed).
    pub commits_per_sec: Option<f64>,
    pub replicas: Vec<ReplicaLagPoint>,
}

#[derive(Debug, Default)]
pub struct Series {
    points: VecDeque<HistoryPoint>,
    /// The primary, its `next_xid` and when, at the last point.
    last_primary: Option<(String, u64, i64)>,
}

impl Series {
    /// Adds `sample` as a point unless the last point is in the same
    /// resolution slot (then it is ignored).
    pub fn record(&mut self, sample: Sample) {
        let slot = sample.at_ms.div_euclid(RESOLUTION_MS);
        if self
            .points
            .back()
            .is_some_and(|last| last.at_ms.div_euclid(RESOLUTION_MS) >= slot)
        {
            return;
        }
        let mut commits_per_sec = None;
        if let (Some((node, xid)), Some((last_node, last_xid, last_ms))) =
            (&sample.primary, &self.last_primary)
        {
            let elapsed_ms = sample.at_ms - last_ms;
            if node == last_node && xid >= last_xid && elapsed_ms > 0 {
                commits_per_sec = Some((xid - last_xid) as f64 * 1000.0 / elapsed_ms as f64);
            }
        }
        self.last_primary = sample.primary.map(|(node, xid)| (node, xid, sample.at_ms));
        self.points.push_back(HistoryPoint {
            at_ms: sample.at_ms,
            commits_per_sec,
            replicas: sample.replicas,
        });
        while self.points.len() > POINTS {
            self.points.pop_front();
        }
    }

    /// The points of the last hour before `now_ms`, oldest first.
    pub fn points(&self, now_ms: i64) -> Vec<HistoryPoint> {
        let since = now_ms - POINTS as i64 * RESOLUTION_MS;
        self.points
            .iter()
            .filter(|p| p.at_ms > since)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, primary: &str, xid: u64, lag: u64) -> Sample {
        Sample {
            at_ms,
            primary: Some((primary.into(), xid)),
            replicas: vec![ReplicaLagPoint {
                node: "r1".into(),
                lag_bytes: Some(lag),
                lag_seconds: Some(0.0),
                streaming: true,
            }],
        }
    }

    #[test]
    fn one_point_per_slot_with_the_commit_rate_between_points() {
        let mut series = Series::default();
        series.record(sample(100_000, "p", 1_000, 0));
        series.record(sample(105_000, "p", 1_400, 8)); // same slot: ignored
        series.record(sample(110_000, "p", 2_000, 16));
        let points = series.points(111_000);
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].commits_per_sec, None);
        assert_eq!(points[1].commits_per_sec, Some(100.0));
        assert_eq!(points[1].replicas[0].lag_bytes, Some(16));
    }

    #[test]
    fn a_new_primary_starts_its_rate_afresh() {
        let mut series = Series::default();
        series.record(sample(100_000, "p", 1_000, 0));
        series.record(sample(110_000, "r1", 5, 0));
        series.record(sample(120_000, "r1", 55, 0));
        let rates: Vec<_> = series
            .points(121_000)
            .iter()
            .map(|p| p.commits_per_sec)
            .collect();
        assert_eq!(rates, [None, None, Some(5.0)]);
    }

    #[test]
    fn memory_is_bounded_to_an_hour() {
        let mut series = Series::default();
        for i in 0..(POINTS as i64 * 3) {
            series.record(sample(i * RESOLUTION_MS, "p", i as u64, 0));
        }
        assert_eq!(series.points.len(), POINTS);
        let now = POINTS as i64 * 3 * RESOLUTION_MS;
        let points = series.points(now);
        assert_eq!(points.len(), POINTS - 1);
        assert!(points[0].at_ms > now - 3_600_000);
    }
}
