use super::*;
use crate::history::series::ReplicaLagPoint;

const NOW: i64 = 10_000_000;

fn point(at_ms: i64, rate: Option<f64>, lag: Option<u64>) -> HistoryPoint {
    HistoryPoint {
        at_ms,
        commits_per_sec: rate,
        replicas: vec![ReplicaLagPoint {
            node: "r1".into(),
            lag_bytes: lag,
            lag_seconds: None,
            streaming: lag.is_some(),
        }],
    }
}

/// The pairs of a polyline's `points` attribute.
fn coordinates(segment: &str) -> Vec<(f64, f64)> {
    segment
        .split(' ')
        .map(|pair| {
            let (x, y) = pair.split_once(',').expect("x,y");
            (x.parse().expect("x"), y.parse().expect("y"))
        })
        .collect()
}

#[test]
fn axes_span_the_last_hour_and_zero_to_a_round_top() {
    let chart = commit_chart(&[point(NOW - 20_000, None, None)], NOW);
    let labels: Vec<&str> = chart.x_ticks.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(labels, ["−60 min", "−45 min", "−30 min", "−15 min", "now"]);
    assert_eq!(chart.x_ticks[0].at, PLOT_LEFT);
    assert_eq!(chart.x_ticks[4].at, PLOT_RIGHT);
    assert_eq!(chart.x_ticks[2].at, (PLOT_LEFT + PLOT_RIGHT) / 2.0);
    let values: Vec<&str> = chart.y_ticks.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(values, ["0/s", "0.5/s", "1/s"]);
    assert_eq!(chart.y_ticks[0].at, PLOT_BOTTOM);
    assert_eq!(chart.y_ticks[2].at, PLOT_TOP);
}

#[test]
fn the_value_axis_ends_at_a_round_number_above_the_highest_value() {
    assert_eq!(axis_max(0.0, Unit::PerSecond), 1.0);
    assert_eq!(axis_max(1.5, Unit::PerSecond), 2.0);
    assert_eq!(axis_max(2.0, Unit::PerSecond), 2.0);
    assert_eq!(axis_max(340.0, Unit::PerSecond), 500.0);
    assert_eq!(axis_max(501.0, Unit::PerSecond), 1000.0);
    assert_eq!(axis_max(0.0, Unit::Bytes), 1024.0);
    assert_eq!(axis_max(1500.0, Unit::Bytes), 2048.0);
    assert_eq!(
        axis_max(16.0 * 1024.0 * 1024.0, Unit::Bytes),
        16.0 * 1024.0 * 1024.0
    );
    assert_eq!(value_label(2048.0, Unit::Bytes), "2.0 KiB");
    assert_eq!(value_label(250.0, Unit::PerSecond), "250/s");
}

#[test]
fn values_scale_into_the_plot_and_times_along_the_hour() {
    let points = [
        point(NOW - WINDOW_MS, Some(0.0), Some(0)),
        point(NOW - WINDOW_MS + RESOLUTION_MS, Some(250.0), Some(512)),
        point(NOW, Some(500.0), Some(1024)),
    ];
    // The last point is more than two resolutions after the second: a gap.
    let commits = commit_chart(&points, NOW);
    assert_eq!(commits.max, 500.0);
    assert!(!commits.empty);
    let line = &commits.lines[0];
    assert_eq!(line.latest, "500/s");
    assert_eq!(line.segments.len(), 1);
    let drawn = coordinates(&line.segments[0]);
    assert_eq!(drawn[0], (PLOT_LEFT, PLOT_BOTTOM));
    let middle = (PLOT_TOP + PLOT_BOTTOM) / 2.0;
    assert!((drawn[1].1 - middle).abs() < 0.1, "{drawn:?}");
    assert_eq!(
        line.dots,
        [Dot {
            x: PLOT_RIGHT,
            y: PLOT_TOP
        }]
    );

    let lag = lag_chart(&points, NOW);
    assert_eq!(lag.max, 1024.0);
    assert_eq!(lag.lines[0].name, "r1");
    assert_eq!(lag.lines[0].latest, "1.0 KiB");
    assert_eq!(lag.y_ticks[1].label, "512 B");
}

#[test]
fn unknown_values_break_the_line() {
    let points = [
        point(NOW - 40_000, Some(1.0), Some(10)),
        point(NOW - 30_000, Some(1.0), Some(10)),
        point(NOW - 20_000, None, None),
        point(NOW - 10_000, Some(1.0), Some(10)),
        point(NOW, Some(1.0), Some(10)),
    ];
    let chart = lag_chart(&points, NOW);
    assert_eq!(chart.lines[0].segments.len(), 2);
    assert!(chart.lines[0].dots.is_empty());
}

#[test]
fn an_empty_history_draws_axes_and_no_line() {
    let commits = commit_chart(&[], NOW);
    assert!(commits.empty);
    assert_eq!(commits.max, 1.0);
    assert_eq!(commits.lines[0].segments.len(), 0);
    assert_eq!(commits.lines[0].latest, "—");
    assert_eq!(commits.x_ticks.len(), 5);
    let lag = lag_chart(&[], NOW);
    assert!(lag.empty);
    assert!(lag.lines.is_empty());
    assert_eq!(lag.y_ticks.len(), 3);
}

#[test]
fn one_point_is_a_dot() {
    let chart = lag_chart(&[point(NOW - 30 * 60_000, None, Some(2048))], NOW);
    assert!(!chart.empty);
    let line = &chart.lines[0];
    assert!(line.segments.is_empty());
    assert_eq!(
        line.dots,
        [Dot {
            x: (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            y: PLOT_TOP
        }]
    );
    // The commit rate of a first point is unknown: nothing to draw.
    assert!(commit_chart(&[point(NOW, None, Some(1))], NOW).empty);
}

#[test]
fn points_outside_the_hour_are_left_out() {
    let chart = commit_chart(
        &[
            point(NOW - WINDOW_MS - 1, Some(900.0), None),
            point(NOW, Some(3.0), None),
        ],
        NOW,
    );
    assert_eq!(chart.max, 5.0);
    assert_eq!(chart.lines[0].dots.len(), 1);
}

#[test]
fn a_failover_timeline_has_a_row_per_step_from_detection() {
    let recorded = FailoverTimeline {
        kind: "failover".into(),
        old_primary: Some("a".into()),
        new_primary: "b".into(),
        generation: 4,
        detected_at_ms: Some(1_000),
        promoted_at_ms: Some(2_500),
        dns_switched_at_ms: Some(2_600),
        first_write_at_ms: Some(3_000),
    };
    let drawn = timeline(&recorded);
    assert_eq!(drawn.title, "Failover: a → b");
    assert_eq!(drawn.total, "2.0 s");
    let labels: Vec<&str> = drawn.steps.iter().map(|s| s.label).collect();
    assert_eq!(
        labels,
        [
            "Failure detected",
            "Promoted",
            "DNS switched",
            "First write"
        ]
    );
    let offsets: Vec<&str> = drawn.steps.iter().map(|s| s.offset.as_str()).collect();
    assert_eq!(offsets, ["+0 ms", "+1.5 s", "+1.6 s", "+2.0 s"]);
    assert_eq!(drawn.steps[0].x, Some(TIMELINE_LABELS));
    assert_eq!(drawn.steps[3].x, Some(TIMELINE_RIGHT));
    let promoted = TIMELINE_LABELS + (TIMELINE_RIGHT - TIMELINE_LABELS) * 0.75;
    assert_eq!(drawn.steps[1].x, Some(promoted));
    assert_eq!(drawn.height(), 4.0 * TIMELINE_ROW);
}

#[test]
fn a_switchover_without_a_first_write_says_so() {
    let recorded = FailoverTimeline {
        kind: "switchover".into(),
        old_primary: None,
        new_primary: "b".into(),
        generation: 7,
        detected_at_ms: Some(1_000),
        promoted_at_ms: Some(1_000),
        dns_switched_at_ms: None,
        first_write_at_ms: None,
    };
    let drawn = timeline(&recorded);
    assert_eq!(drawn.title, "Switchover: — → b");
    assert_eq!(drawn.steps[0].label, "Switchover began");
    assert_eq!(drawn.steps[2].offset, "not seen");
    assert_eq!(drawn.steps[2].x, None);
    assert_eq!(drawn.steps[1].x, Some(TIMELINE_LABELS));
    assert_eq!(drawn.total, "0 ms");
}
