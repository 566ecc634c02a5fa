//! The actor's HA step: it reports to the monitor and takes the mode its
//! assignment (or, without a monitor, its spec) asks for ([`Actor::decide_mode`]),
//! then moves the server there ([`Actor::apply_mode`]): start, promote,
//! follow a new upstream (rewind or re-clone), drain, fence, detach.

use std::time::{Duration, Instant};

use pgfleet_core::protocol::{InstancePhase, InstanceSpec};
use pgfleet_core::NodeRole;
use tokio_postgres::Client;

use super::rejoin::{upstream_reachable, STALL_REJOIN};
use super::{observe, Actor};
use crate::keeper::{self, KeeperReport, Mode};
use crate::pg::conf;
use crate::pg::sql;

impl Actor {
    /// Reports to the monitor (HA databases) and returns the mode to run in.
    pub(super) async fn decide_mode(&mut self, spec: &InstanceSpec) -> Mode {
        let Some(monitor) = spec.monitor.clone() else {
            return Self::spec_mode(spec);
        };
        if std::mem::take(&mut self.woken) && self.client.is_some() {
            // The last observation is up to an interval old: the monitor
            // woke this keeper because it waits on what it reports now.
            let mode = match &self.assignment {
                Some(assignment) => assignment.mode(),
                None => Self::spec_mode(spec),
            };
            if let Err(error) = self.observe(spec, &mode).await {
                tracing::debug!(db = %spec.db, node = %spec.node, error = %format!("{error:#}"), "fresh observation for a woken report failed");
            }
        }
        let observed = self.observed.lock().expect("observed lock").clone();
        let report = KeeperReport {
            node: spec.node.clone(),
            reported: self.reached.map(keeper::state_name).unwrap_or_default(),
            generation_seen: self.assignment.as_ref().map(|a| a.generation).unwrap_or(0),
            lsn: observed.lsn.unwrap_or(0),
            timeline: observed.timeline.unwrap_or(0),
            pg_running: observed.phase == InstancePhase::Running,
            is_in_recovery: observed.is_primary == Some(false),
            wal_receiver_streaming: observed.wal_receiver_streaming.unwrap_or(false),
            upstream_silent_ms: self
                .upstream_heard
                .map(|heard| heard.elapsed().as_millis() as u64),
            streaming_standbys: observed
                .standbys
                .iter()
                .filter(|s| s.state == "streaming")
                .map(|s| pgfleet_ha::StreamingStandby {
                    name: s.application_name.clone(),
                    flush_lsn: s.flush_lsn,
                })
                .collect(),
            held: self.assignment.clone(),
        };
        let started = Instant::now();
        let answer = keeper::report(
            &self.runtime,
            &monitor,
            &spec.db,
            &spec.monitor_token,
            &report,
        )
        .await;
        let mut answered = false;
        if let Some(assignment) = answer {
            let newer = self
                .assignment
                .as_ref()
                .is_none_or(|a| assignment.generation >= a.generation);
            // Only an answer at least as new as what the node follows is
            // the monitor's current word (a retired monitor's is not).
            if newer {
                self.fence.monitor_answered(Instant::now());
                answered = true;
            }
            if newer && self.assignment.as_ref() != Some(&assignment) {
                tracing::info!(db = %spec.db, node = %spec.node, state = %keeper::state_name(assignment.state), generation = assignment.generation, "new assignment");
                // Persist before acting: an assignment that is not on disk is
                // not applied (nor reported reached); the next report retries.
                match keeper::persist(&self.paths.root, &assignment) {
                    Ok(()) => {
                        self.assignment = Some(assignment);
                    }
                    Err(error) => {
                        tracing::error!(db = %spec.db, node = %spec.node, generation = assignment.generation, %error, "cannot persist the new assignment; not acting on it");
                    }
                }
            }
        }
        let mode = match &self.assignment {
            Some(assignment) => assignment.mode(),
            None => Self::spec_mode(spec),
        };
        // A primary that reaches neither the monitor nor any standby stops
        // accepting writes by itself: the monitor may be promoting another node.
        let watched = (matches!(mode, Mode::Primary { .. }) && spec.peers.len() > 1)
            .then(|| format!("{}:{}", monitor.address, monitor.port));
        if !answered {
            self.fence.monitor_unanswered(started, Instant::now());
        }
        let now = Instant::now();
        self.fence.watch(watched, now);
        let timeout = Duration::from_millis(self.runtime.config.failure_timeout_ms);
        if !self.fence.fenced() && self.fence.silent(now, timeout) {
            // What the node last heard may be old (its process paused):
            // look at the standbys now, before deciding.
            let streaming = self.standby_streaming_now().await;
            if let Some(streaming) = streaming {
                self.fence.standbys_seen(Instant::now(), streaming);
            }
            tracing::info!(db = %spec.db, node = %spec.node, answered, report_ms = now.saturating_duration_since(started).as_millis() as u64, ?streaming, "primary heard nobody for the failure timeout; looked at its standbys afresh");
        }
        if self.fence.decide(Instant::now(), timeout) {
            tracing::warn!(db = %spec.db, node = %spec.node, "isolated primary: fencing itself");
        }
        if self.fence.fenced() {
            return Mode::Stopped;
        }
        mode
    }

    /// Whether a standby streams from this server now: no when there is no
    /// connection to it or the question fails, unknown (`None`) when it
    /// takes longer than half a second.
    async fn standby_streaming_now(&self) -> Option<bool> {
        let Some(client) = self.client.as_ref() else {
            return Some(false);
        };
        let query = client.query_one(
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            &[],
        );
        match tokio::time::timeout(Duration::from_millis(500), query).await {
            Ok(Ok(row)) => Some(row.get::<_, i64>(0) > 0),
            Ok(Err(_)) => Some(false),
            Err(_) => None,
        }
    }

    pub(super) async fn apply_mode(
        &mut self,
        spec: &InstanceSpec,
        mode: &Mode,
    ) -> anyhow::Result<()> {
        if *mode == Mode::Stopped {
            if self.is_running() {
                tracing::info!(db = %spec.db, node = %spec.node, "stopping (fenced)");
                self.stop_server().await;
            }
            self.mark_reached();
            return Ok(());
        }
        // A standby that cannot stream from a reachable upstream for a while
        // (e.g. it received WAL past the new primary's fork point) is
        // rewound, or cloned again.
        if let (Mode::Standby { upstream }, Some(since)) = (mode, self.stalled_since) {
            if since.elapsed() > STALL_REJOIN && upstream_reachable(upstream).await {
                tracing::warn!(db = %spec.db, node = %spec.node, upstream = %upstream.node, "standby stalled; rejoining");
                self.stalled_since = None;
                self.stop_server().await;
                self.rejoin(spec, upstream).await?;
            }
        }
        let was_primary = std::fs::read_to_string(self.paths.root.join("role"))
            .map(|r| r.trim() == "primary")
            .unwrap_or(spec.role == NodeRole::Primary);
        let wants_standby = matches!(mode, Mode::Standby { .. } | Mode::Detached);
        if !self.owner_checked {
            // Once per actor: an older version's server under the shared
            // user is restarted under the database's own (`start` moves
            // the files). Not a check to repeat every cycle.
            self.owner_checked = true;
            if self.is_running() && !self.user.owns(&self.paths.root) {
                self.stop_server().await;
            }
        }
        if !self.is_running() {
            if let (true, true, Mode::Standby { upstream }) = (was_primary, wants_standby, mode) {
                self.rejoin(spec, upstream).await?;
            }
            conf::write_all(&self.paths.data, &self.settings(spec, mode), &self.user)?;
            let client = match self.start(spec).await {
                Ok(client) => client,
                Err(error) => {
                    self.stop_server().await;
                    if let Mode::Standby { upstream } = mode {
                        // A standby that cannot start (e.g. diverged from the
                        // new timeline) is cloned again from its upstream.
                        tracing::warn!(db = %spec.db, node = %spec.node, %error, "standby cannot start; cloning it again");
                        self.reclone(spec, upstream).await?;
                        conf::write_all(&self.paths.data, &self.settings(spec, mode), &self.user)?;
                        self.start(spec).await?
                    } else {
                        return Err(error);
                    }
                }
            };
            self.client = Some(client);
            self.applied = Some(self.settings(spec, mode));
        }
        let client = match self.client.take() {
            Some(client) if !client.is_closed() => client,
            _ => sql::connect(&self.paths.socket_dir, spec.port, &spec.superuser_password).await?,
        };
        let in_recovery: bool = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await?
            .get(0);
        if !in_recovery && !wants_standby && !self.roles_secured {
            // Databases made before the privilege model are repaired once.
            match self.secure_roles(spec, &client).await {
                Ok(()) => self.roles_secured = true,
                Err(error) => {
                    tracing::warn!(db = %spec.db, node = %spec.node, error = %format!("{error:#}"), "cannot check the roles' privileges; retrying")
                }
            }
        }
        if wants_standby && !in_recovery {
            // A primary told to follow another node: stop, rewind, restart as standby.
            if let Mode::Standby { upstream } = mode {
                tracing::info!(db = %spec.db, node = %spec.node, upstream = %upstream.node, "demoting to standby");
                drop(client);
                self.stop_server_with(true).await;
                self.rejoin(spec, upstream).await?;
                conf::write_all(&self.paths.data, &self.settings(spec, mode), &self.user)?;
                self.client = Some(self.start(spec).await?);
                self.applied = Some(self.settings(spec, mode));
                self.mark_reached();
                return Ok(());
            }
        }
        let desired = self.settings(spec, mode);
        if self.applied.as_ref() != Some(&desired) {
            // Only pgfleet.conf on a running server: standby.signal belongs to
            // PostgreSQL until promotion removes it.
            conf::write_settings(&self.paths.data, &desired, &self.user)?;
            client.batch_execute("SELECT pg_reload_conf()").await?;
            self.applied = Some(desired);
        }
        if matches!(mode, Mode::Primary { .. }) && in_recovery {
            tracing::info!(db = %spec.db, node = %spec.node, "promoting");
            // The other standbys are pointed at it with its promotion: their
            // slots exist before it ends, so they stream at once.
            // Never at the cost of the promotion: a standby without its slot
            // retries until the new primary's first observation makes it.
            if let Err(error) = observe::sync_peer_slots(&client, spec).await {
                tracing::warn!(db = %spec.db, node = %spec.node, error = %format!("{error:#}"), "cannot make the standbys' slots before promoting");
            }
            let promoting = Instant::now();
            promote(&client).await?;
            tracing::info!(db = %spec.db, node = %spec.node, ms = promoting.elapsed().as_millis() as u64, "promoted");
            pgfleet_tls::write_durable(&self.paths.root.join("role"), b"primary")?;
            // Puts the new timeline into the control file soon (pg_rewind of the
            // old primary reads it; rejoin also checkpoints first). In the
            // background, so the keeper reports the promotion at once.
            let (socket_dir, port, password) = (
                self.paths.socket_dir.clone(),
                spec.port,
                spec.superuser_password.clone(),
            );
            tokio::spawn(async move {
                if let Ok(checkpointer) = sql::connect(&socket_dir, port, &password).await {
                    let _ = checkpointer.batch_execute("CHECKPOINT").await;
                }
            });
        }
        let drain_generation = self.assignment.as_ref().map(|a| a.generation).unwrap_or(0);
        if *mode == Mode::Draining && self.drained_generation != Some(drain_generation) {
            self.drained_generation = Some(drain_generation);
            // Each statement on its own: ALTER SYSTEM refuses a transaction block.
            client
                .batch_execute("ALTER SYSTEM SET default_transaction_read_only = on")
                .await?;
            client.batch_execute("SELECT pg_reload_conf()").await?;
            client
                .batch_execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND usename <> 'pgfleet'",
                )
                .await?;
        } else if *mode != Mode::Draining && (!in_recovery || matches!(mode, Mode::Primary { .. }))
        {
            let read_only: String = client
                .query_one(
                    "SELECT current_setting('default_transaction_read_only')",
                    &[],
                )
                .await?
                .get(0);
            if read_only == "on" {
                client
                    .batch_execute("ALTER SYSTEM RESET default_transaction_read_only")
                    .await?;
                client.batch_execute("SELECT pg_reload_conf()").await?;
            }
        }
        match mode {
            Mode::Primary { .. } => {
                pgfleet_tls::write_durable(&self.paths.root.join("role"), b"primary")?
            }
            Mode::Standby { .. } => {
                pgfleet_tls::write_durable(&self.paths.root.join("role"), b"standby")?
            }
            _ => {}
        }
        self.client = Some(client);
        // `report_lsn` is reached once the position is final (observed after
        // the receiver stopped and replay ran out of WAL), not at the reload.
        if *mode == Mode::Detached && !self.replay_final {
            return Ok(());
        }
        self.mark_reached();
        Ok(())
    }

    pub(super) fn mark_reached(&mut self) {
        if let Some(assignment) = &self.assignment {
            self.reached = Some(assignment.state);
        }
    }
}

/// Promotes the standby `client` is connected to and returns once it takes
/// writes. `pg_promote(true)` checks only every 100 ms whether recovery
/// ended; asking `pg_is_in_recovery()` every 5 ms returns up to ~100 ms
/// sooner (a switchover's and a failover's write gap).
async fn promote(client: &Client) -> anyhow::Result<()> {
    client.batch_execute("SELECT pg_promote(false)").await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let in_recovery: bool = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await?
            .get(0);
        if !in_recovery {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("promotion did not end within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
