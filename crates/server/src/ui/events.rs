//! Rows of a database's *Events* tab: the failover history with its
//! timeline (detection, promotion, DNS switch) and the WAL positions.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;

use super::render;
use crate::error::ApiError;
use crate::state::AppState;

pub struct EventRow {
    pub at: String,
    /// `Failover`, `Switchover`, ...
    pub kind: String,
    pub old_primary: String,
    pub new_primary: String,
    pub generation: String,
    /// e.g. `promoted 1.2 s after detection · DNS 0.1 s later`.
    pub timeline: String,
    /// WAL positions of the old and new primary, and what the new one lacked.
    pub lsn: String,
}

fn text(event: &Value, key: &str) -> Option<String> {
    match event.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn millis(event: &Value, key: &str) -> Option<i64> {
    event.get(key)?.as_i64()
}

/// `0/3000060` like PostgreSQL prints an LSN.
fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

pub fn event_row(event: &Value) -> EventRow {
    let kind = text(event, "kind").unwrap_or_else(|| "event".into());
    let mut timeline = Vec::new();
    let detected = millis(event, "detected_at_ms");
    let promoted = millis(event, "promoted_at_ms");
    let dns = millis(event, "dns_switched_at_ms");
    if let (Some(detected), Some(promoted)) = (detected, promoted) {
        let took = render::duration_ms(promoted - detected);
        timeline.push(format!("promoted {took} after detection"));
    }
    if let (Some(promoted), Some(dns)) = (promoted, dns) {
        timeline.push(format!(
            "DNS switched {} later",
            render::duration_ms(dns - promoted)
        ));
    } else if let (Some(detected), Some(dns)) = (detected, dns) {
        let took = render::duration_ms(dns - detected);
        timeline.push(format!("DNS switched {took} after detection"));
    }
    let old_lsn = event.get("old_primary_lsn").and_then(Value::as_u64);
    let new_lsn = event.get("new_primary_lsn").and_then(Value::as_u64);
    let lsn = match (old_lsn, new_lsn) {
        (Some(old), Some(new)) if old > new => format!(
            "{} → {} ({} not replicated)",
            lsn_text(old),
            lsn_text(new),
            render::bytes(old - new)
        ),
        (Some(old), Some(new)) => format!("{} → {}", lsn_text(old), lsn_text(new)),
        (None, Some(new)) => format!("new primary at {}", lsn_text(new)),
        _ => "—".into(),
    };
    let mut kind_title = kind.clone();
    if let Some(first) = kind_title.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    EventRow {
        at: millis(event, "at_ms")
            .map(render::timestamp)
            .unwrap_or_else(|| "—".into()),
        kind: kind_title,
        old_primary: text(event, "old_primary").unwrap_or_else(|| "—".into()),
        new_primary: text(event, "new_primary").unwrap_or_else(|| "—".into()),
        generation: text(event, "generation").unwrap_or_else(|| "—".into()),
        timeline: if timeline.is_empty() {
            "—".into()
        } else {
            timeline.join(" · ")
        },
        lsn,
    }
}

/// The database's events, newest first.
pub async fn event_rows(state: &AppState, name: &str) -> Result<Vec<EventRow>, ApiError> {
    let Json(events) =
        crate::api::databases::events(State(state.clone()), Path(name.to_string())).await?;
    Ok(events.iter().rev().map(event_row).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failover_reads_as_a_timeline() {
        let event = serde_json::json!({
            "at_ms": 0, "kind": "failover", "old_primary": "a", "new_primary": "b",
            "generation": 4, "detected_at_ms": 1000, "promoted_at_ms": 2500,
            "dns_switched_at_ms": 2600, "old_primary_lsn": 0x3000100u64, "new_primary_lsn": 0x3000060u64,
        });
        let row = event_row(&event);
        assert_eq!(row.kind, "Failover");
        assert_eq!(
            row.timeline,
            "promoted 1.5 s after detection · DNS switched 100 ms later"
        );
        assert_eq!(row.lsn, "0/3000100 → 0/3000060 (160 B not replicated)");
    }
}
