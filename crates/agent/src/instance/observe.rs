//! What a running node reports: role, LSN, timeline, replication; on a
//! primary it also keeps the standbys' slots and feeds self-fencing.

use std::time::Instant;

use pgfleet_core::protocol::{InstancePhase, InstanceSpec};

use super::Actor;
use crate::keeper::Mode;
use crate::pg::conf::slot_name;
use crate::pg::sql;

impl Actor {
    pub(super) async fn observe(&mut self, spec: &InstanceSpec, mode: &Mode) -> anyhow::Result<()> {
        let Some(client) = self.client.as_ref() else {
            self.set_phase(spec, InstancePhase::Stopped, None);
            return Ok(());
        };
        let obs = sql::observe(client).await?;
        if !obs.in_recovery {
            sync_peer_slots(client, spec).await?;
            let streaming = obs.standbys.iter().any(|s| s.state == "streaming");
            self.fence.standbys_seen(Instant::now(), streaming);
        }
        let stalled =
            obs.in_recovery && !obs.wal_receiver_streaming && matches!(mode, Mode::Standby { .. });
        if stalled {
            self.stalled_since.get_or_insert_with(Instant::now);
        } else {
            self.stalled_since = None;
        }
        let mut observed = self.observed.lock().expect("observed lock");
        if observed.phase != InstancePhase::Running {
            self.runtime.beat_now.notify_one();
        }
        observed.phase = InstancePhase::Running;
        observed.error = None;
        observed.generation = spec.generation;
        observed.is_primary = Some(!obs.in_recovery);
        // A standby reporting its final position for a failover reports
        // what it replayed once replay has stopped for want of WAL: the
        // receive pointer can run ahead of the WAL it can actually serve
        // (a restarted receiver keeps its old flush pointer), and a
        // candidate chosen on it could be behind another standby.
        // Only an observation made after the receiver was told to stop
        // counts (one from before may have seen a receiver between retries).
        self.replay_final = *mode == Mode::Detached && obs.in_recovery && obs.replay_final;
        self.upstream_heard = obs
            .wal_receiver_silent_ms
            .filter(|_| obs.wal_receiver_streaming)
            .and_then(|ms| Instant::now().checked_sub(std::time::Duration::from_millis(ms)));
        observed.lsn = Some(if *mode == Mode::Detached {
            obs.replay_lsn
        } else {
            obs.lsn
        });
        observed.timeline = Some(obs.timeline);
        let previous_streaming = observed.wal_receiver_streaming;
        observed.wal_receiver_streaming = Some(obs.wal_receiver_streaming);
        observed.lag_bytes = obs.lag_bytes;
        observed.lag_seconds = obs.lag_seconds;
        observed.standbys = obs.standbys;
        observed.sync_standby_names = Some(obs.sync_standby_names);
        observed.next_xid = Some(obs.next_xid);
        let ha_state = self
            .assignment
            .as_ref()
            .map(|a| crate::keeper::state_name(a.state));
        // The control plane follows roles and HA states from heartbeats
        // (DNS, a task waiting for a replica to stream): tell it at once.
        let streaming = observed.wal_receiver_streaming;
        if observed.ha_state != ha_state || streaming != previous_streaming {
            self.runtime.beat_now.notify_one();
        }
        observed.ha_state = ha_state;
        Ok(())
    }
}

/// Keeps a slot for every other data node of the database (and drops slots
/// of nodes that left, when unused). On a primary, and on a standby about to
/// be promoted (standbys may follow it before its promotion ends).
pub(super) async fn sync_peer_slots(
    client: &tokio_postgres::Client,
    spec: &InstanceSpec,
) -> anyhow::Result<()> {
    let wanted: Vec<String> = spec
        .peers
        .iter()
        .filter(|p| p.node != spec.node)
        .map(|p| slot_name(&p.node))
        .collect();
    let managed: Vec<String> = spec.peers.iter().map(|p| slot_name(&p.node)).collect();
    sql::sync_slots(client, &wanted, &managed).await
}
