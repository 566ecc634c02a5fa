//! The database page's charts of the last hour (each replica's lag, the
//! primary's commit rate) and its failover timelines, drawn as inline SVG
//! on the server: no JavaScript. Pure geometry from the history endpoint's
//! data (`crate::history::api::DatabaseHistory`) to the pixel positions and
//! labels the template `chart.html` writes out; time comes in as `now_ms`.

use crate::history::api::FailoverTimeline;
use crate::history::series::{HistoryPoint, RESOLUTION_MS};

use super::render;

/// The SVG's coordinate system (it scales to its box).
pub const WIDTH: f64 = 640.0;
pub const HEIGHT: f64 = 180.0;
/// The plot area inside it: the rest holds the axes' labels.
pub const PLOT_LEFT: f64 = 72.0;
pub const PLOT_RIGHT: f64 = WIDTH - 12.0;
pub const PLOT_TOP: f64 = 10.0;
pub const PLOT_BOTTOM: f64 = HEIGHT - 24.0;
/// The span a chart shows, ending now.
pub const WINDOW_MS: i64 = 3_600_000;
/// Points further apart than this are not joined (samples were missed).
const JOIN_WITHIN_MS: i64 = 2 * RESOLUTION_MS;
/// Lines get the classes `series-0` … `series-5` (colours in `style.css`).
const COLOURS: usize = 6;

/// What a chart's values count, for its axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes: the axis goes up in powers of two, at least 1 KiB.
    Bytes,
    /// A rate: the axis goes up in 1, 2, 5 × 10ⁿ, at least 1 per second.
    PerSecond,
}

/// One named series: its values by time (none where unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<(i64, Option<f64>)>,
}

/// A labelled position on an axis (pixels).
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub at: f64,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dot {
    pub x: f64,
    pub y: f64,
}

/// One series as drawn: a polyline per run of joined points, a dot for
/// a point alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub class: String,
    /// Each a polyline's `points` attribute (`x,y x,y …`).
    pub segments: Vec<String>,
    pub dots: Vec<Dot>,
    /// Its last known value, for the legend (`—` when none).
    pub latest: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub x_ticks: Vec<Tick>,
    pub y_ticks: Vec<Tick>,
    pub lines: Vec<Line>,
    /// The top of the value axis.
    pub max: f64,
    /// No value at all to draw.
    pub empty: bool,
}

impl Chart {
    pub fn width(&self) -> f64 {
        WIDTH
    }
    pub fn height(&self) -> f64 {
        HEIGHT
    }
    pub fn left(&self) -> f64 {
        PLOT_LEFT
    }
    pub fn right(&self) -> f64 {
        PLOT_RIGHT
    }
    pub fn top(&self) -> f64 {
        PLOT_TOP
    }
    pub fn bottom(&self) -> f64 {
        PLOT_BOTTOM
    }
}

/// The smallest round number at or above `value` the axis ends at.
pub fn axis_max(value: f64, unit: Unit) -> f64 {
    match unit {
        Unit::Bytes => {
            let mut top = 1024.0;
            while top < value {
                top *= 2.0;
            }
            top
        }
        Unit::PerSecond => {
            let mut decade = 1.0;
            loop {
                for step in [1.0, 2.0, 5.0] {
                    if step * decade >= value {
                        return step * decade;
                    }
                }
                decade *= 10.0;
            }
        }
    }
}

/// A value as the axis and legend read it.
pub fn value_label(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => render::bytes(value.max(0.0).round() as u64),
        Unit::PerSecond if value < 10.0 && value.fract() != 0.0 => format!("{value:.1}/s"),
        Unit::PerSecond => format!("{value:.0}/s"),
    }
}

fn x_of(at_ms: i64, now_ms: i64) -> f64 {
    let since_start = (at_ms - (now_ms - WINDOW_MS)).clamp(0, WINDOW_MS);
    PLOT_LEFT + (PLOT_RIGHT - PLOT_LEFT) * since_start as f64 / WINDOW_MS as f64
}

fn y_of(value: f64, max: f64) -> f64 {
    PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * (value.clamp(0.0, max) / max)
}

fn x_ticks(now_ms: i64) -> Vec<Tick> {
    let mut ticks = Vec::new();
    for minutes_ago in [60, 45, 30, 15, 0] {
        ticks.push(Tick {
            at: x_of(now_ms - minutes_ago * 60_000, now_ms),
            label: match minutes_ago {
                0 => "now".to_string(),
                _ => format!("−{minutes_ago} min"),
            },
        });
    }
    ticks
}

/// Draws `series` over the hour ending at `now_ms`.
pub fn chart(series: &[Series], unit: Unit, now_ms: i64) -> Chart {
    let since = now_ms - WINDOW_MS;
    let mut highest: Option<f64> = None;
    for one in series {
        for (at_ms, value) in &one.values {
            if let (true, Some(value)) = (*at_ms >= since && *at_ms <= now_ms, value) {
                highest = Some(highest.map_or(*value, |h: f64| h.max(*value)));
            }
        }
    }
    let max = axis_max(highest.unwrap_or(0.0), unit);
    let mut lines = Vec::new();
    for (index, one) in series.iter().enumerate() {
        let mut runs: Vec<Vec<Dot>> = Vec::new();
        let mut last_at: Option<i64> = None;
        let mut latest = None;
        for (at_ms, value) in &one.values {
            if *at_ms < since || *at_ms > now_ms {
                continue;
            }
            let Some(value) = value else {
                last_at = None;
                continue;
            };
            latest = Some(*value);
            let dot = Dot {
                x: x_of(*at_ms, now_ms),
                y: y_of(*value, max),
            };
            let joined = last_at.is_some_and(|last| at_ms - last <= JOIN_WITHIN_MS);
            match runs.last_mut() {
                Some(run) if joined => run.push(dot),
                _ => runs.push(vec![dot]),
            }
            last_at = Some(*at_ms);
        }
        let mut segments = Vec::new();
        let mut dots = Vec::new();
        for mut run in runs {
            if run.len() == 1 {
                dots.append(&mut run);
                continue;
            }
            let points: Vec<String> = run
                .iter()
                .map(|d| format!("{:.1},{:.1}", d.x, d.y))
                .collect();
            segments.push(points.join(" "));
        }
        lines.push(Line {
            name: one.name.clone(),
            class: format!("series-{}", index % COLOURS),
            segments,
            dots,
            latest: latest.map_or_else(|| "—".to_string(), |v| value_label(v, unit)),
        });
    }
    let y_ticks = [0.0, max / 2.0, max]
        .into_iter()
        .map(|value| Tick {
            at: y_of(value, max),
            label: value_label(value, unit),
        })
        .collect();
    Chart {
        x_ticks: x_ticks(now_ms),
        y_ticks,
        lines,
        max,
        empty: highest.is_none(),
    }
}

/// Each replica's lag in bytes (received, not yet replayed), a series per
/// replica in the order they first appear.
pub fn lag_chart(points: &[HistoryPoint], now_ms: i64) -> Chart {
    let mut series: Vec<Series> = Vec::new();
    for point in points {
        for replica in &point.replicas {
            let value = replica.lag_bytes.map(|bytes| bytes as f64);
            match series.iter_mut().find(|s| s.name == replica.node) {
                Some(one) => one.values.push((point.at_ms, value)),
                None => series.push(Series {
                    name: replica.node.clone(),
                    values: vec![(point.at_ms, value)],
                }),
            }
        }
    }
    chart(&series, Unit::Bytes, now_ms)
}

/// The primary's writing transactions per second.
pub fn commit_chart(points: &[HistoryPoint], now_ms: i64) -> Chart {
    let series = Series {
        name: "commits".to_string(),
        values: points
            .iter()
            .map(|p| (p.at_ms, p.commits_per_sec))
            .collect(),
    };
    chart(&[series], Unit::PerSecond, now_ms)
}

/// One step of a failover's timeline, a row of its chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub label: &'static str,
    /// After the first step, e.g. `+1.5 s`; `not seen` when unrecorded.
    pub offset: String,
    /// Its row's centre (pixels).
    pub y: f64,
    /// Where its bar ends (pixels), when recorded.
    pub x: Option<f64>,
}

/// A failover or switchover drawn as rows of bars from its first step.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// e.g. `Failover: a → b`.
    pub title: String,
    pub generation: u64,
    /// When it began (UTC), `—` when unknown.
    pub when: String,
    pub steps: Vec<Step>,
    /// From the first to the last recorded step, e.g. `1.6 s`.
    pub total: String,
}

/// The timeline's coordinate system.
pub const TIMELINE_WIDTH: f64 = 640.0;
pub const TIMELINE_LABELS: f64 = 150.0;
pub const TIMELINE_RIGHT: f64 = TIMELINE_WIDTH - 90.0;
pub const TIMELINE_ROW: f64 = 24.0;

impl Timeline {
    pub fn width(&self) -> f64 {
        TIMELINE_WIDTH
    }
    pub fn height(&self) -> f64 {
        TIMELINE_ROW * self.steps.len() as f64
    }
    pub fn left(&self) -> f64 {
        TIMELINE_LABELS
    }
    pub fn right(&self) -> f64 {
        TIMELINE_RIGHT
    }
}

pub fn timeline(recorded: &FailoverTimeline) -> Timeline {
    let first_label = if recorded.kind == "switchover" {
        "Switchover began"
    } else {
        "Failure detected"
    };
    let times = [
        (first_label, recorded.detected_at_ms),
        ("Promoted", recorded.promoted_at_ms),
        ("DNS switched", recorded.dns_switched_at_ms),
        ("First write", recorded.first_write_at_ms),
    ];
    let origin = times.iter().filter_map(|(_, at)| *at).min();
    let last = times.iter().filter_map(|(_, at)| *at).max();
    let span_ms = match (origin, last) {
        (Some(origin), Some(last)) => (last - origin).max(1),
        _ => 1,
    };
    let mut steps = Vec::new();
    for (row, (label, at)) in times.iter().enumerate() {
        let offset_ms = at.zip(origin).map(|(at, origin)| at - origin);
        steps.push(Step {
            label,
            offset: offset_ms.map_or_else(
                || "not seen".to_string(),
                |ms| format!("+{}", render::duration_ms(ms)),
            ),
            y: TIMELINE_ROW * row as f64 + TIMELINE_ROW / 2.0,
            x: offset_ms.map(|ms| {
                TIMELINE_LABELS + (TIMELINE_RIGHT - TIMELINE_LABELS) * ms as f64 / span_ms as f64
            }),
        });
    }
    let mut kind = recorded.kind.clone();
    if let Some(first) = kind.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let old = recorded.old_primary.as_deref().unwrap_or("—");
    Timeline {
        title: format!("{kind}: {old} → {}", recorded.new_primary),
        generation: recorded.generation,
        when: origin.map_or_else(|| "—".to_string(), render::timestamp),
        steps,
        total: match (origin, last) {
            (Some(origin), Some(last)) => render::duration_ms(last - origin),
            _ => "—".to_string(),
        },
    }
}

#[cfg(test)]
#[path = "charts_tests.rs"]
mod tests;
