//! What one decision of a transition's phase returns, and a new transition.

use std::collections::BTreeMap;

use crate::states::{LsnPos, Phase, Transition, TransitionKind};

pub(crate) enum Next {
    Wait,
    Abort(String),
    AbortPromotion(String, String),
    FastForward(String, String, LsnPos),
    Promote(String),
    Finish(String),
}

pub(crate) fn new_transition(
    kind: TransitionKind,
    old: String,
    now: u64,
    pos: LsnPos,
) -> Transition {
    Transition {
        kind,
        old_primary: old,
        target: None,
        started_ms: now,
        phase: if kind == TransitionKind::Failover {
            Phase::CollectLsn
        } else {
            Phase::Draining
        },
        old_primary_pos: pos,
        sync_ack_lsn: None,
        quorum_sets: vec![],
        participants: vec![],
        reports: BTreeMap::new(),
        drain_pos: None,
        waiting_on: vec![],
        blocked: None,
    }
}
