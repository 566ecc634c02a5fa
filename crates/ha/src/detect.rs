//! Failure detection (rule 2).

use crate::config::Config;
use crate::states::ClusterState;

/// Rule 2: the primary has failed when BOTH (a) the monitor has had no evidence that
/// its PostgreSQL is up (keeper report with `pg_running`, or health check ok) for
/// `failure_timeout_ms`, or sooner, evidence that it is gone: its port refused
/// every check and its keeper was silent for `refused_failure_ms`
/// ([`crate::NodeRecord::gone_with_evidence`]), AND (b) no other node reported, within
/// `failure_timeout_ms`, a WAL receiver that is streaming. Evaluated at
/// `st.now_ms` (the last event's time).
pub fn primary_failed(st: &ClusterState, cfg: &Config) -> bool {
    let now = st.now_ms;
    let Some(p) = st.primary_record() else {
        return false;
    };
    if !p.assignment.state.is_primary_role() {
        return false;
    }
    if p.pg_alive(now, cfg) && !p.gone_with_evidence(now, cfg) {
        return false;
    }
    !st.nodes
        .values()
        .any(|n| n.name != p.name && !n.is_dropped() && n.reports_streaming(now, cfg))
}
