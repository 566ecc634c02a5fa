//! One actor per PostgreSQL instance on this host. Each cycle it compares the
//! intent (spec from the control plane; assignment from the monitor when the
//! database is HA) with what it observes and takes one step toward it:
//! create (initdb or pg_basebackup), start, promote, follow a new upstream
//! (pg_rewind, re-clone as fallback), fence, or delete. Idempotent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgfleet_core::protocol::{InstanceObserved, InstancePhase, InstanceSpec};
use pgfleet_core::{Desired, NodeRole};
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::fence::FenceWatch;
use crate::keeper::{self, Assignment, KeeperReport, Mode, PrimaryRef};
use crate::pg::conf::{self, slot_name, ServerSettings};
use crate::pg::process::{self, InstancePaths};
use crate::pg::sql;
use crate::pg::user::PgUser;
use crate::runtime::{AgentRuntime, InstanceHandle};
use pgfleet_ha::NodeState;

mod backup;
mod client_tls;
mod create;
mod observe;
mod rejoin;
mod restore;
use rejoin::{upstream_reachable, STALL_REJOIN};

pub fn spawn(runtime: AgentRuntime, spec: InstanceSpec) -> InstanceHandle {
    let (tx, rx) = watch::channel(spec.clone());
    let observed = Arc::new(Mutex::new(InstanceObserved {
        db: spec.db.clone(),
        node: spec.node.clone(),
        phase: InstancePhase::Creating,
        error: None,
        is_primary: None,
        lsn: None,
        timeline: None,
        wal_receiver_streaming: None,
        lag_bytes: None,
        lag_seconds: None,
        standbys: vec![],
        sync_standby_names: None,
        ha_state: None,
        generation: 0,
        backup: None,
    }));
    let wake = Arc::new(tokio::sync::Notify::new());
    let actor = Actor::new(runtime, &spec, observed.clone(), wake.clone());
    let task = tokio::spawn(actor.run(rx));
    InstanceHandle {
        spec: tx,
        observed,
        wake,
        task,
    }
}

struct Actor {
    runtime: AgentRuntime,
    paths: InstancePaths,
    observed: Arc<Mutex<InstanceObserved>>,
    child: Option<tokio::process::Child>,
    client: Option<Client>,
    applied: Option<ServerSettings>,
    assignment: Option<Assignment>,
    /// Assignment state the node has reached (reported to the monitor).
    reached: Option<NodeState>,
    create_attempts: u32,
    /// When the current run of failed creation attempts began.
    create_failing_since: Option<Instant>,
    failed_generation: Option<u64>,
    /// Whether this primary has heard from its monitor or a standby
    /// lately (self-fencing).
    fence: FenceWatch,
    /// Assignment generation whose drain (read-only + sessions ended) was done.
    drained_generation: Option<u64>,
    /// Since when this standby has not been streaming from its upstream.
    stalled_since: Option<Instant>,
    /// Replay stopped for want of WAL with no receiver (the last observation).
    replay_final: bool,
    /// Rung when the monitor has a new assignment for this node.
    wake: Arc<tokio::sync::Notify>,
    /// When the streaming receiver last heard from its upstream, as of the
    /// last observation (reported as a silence to the monitor).
    upstream_heard: Option<Instant>,
    /// The roles' privilege model was checked on this server as a primary.
    roles_secured: bool,
    /// The OS user this database's servers run as (`PgUser::for_database`).
    user: PgUser,
    /// The running server's files were checked to belong to `user`.
    owner_checked: bool,
    /// pgBackRest jobs and results (`backup`).
    backups: backup::BackupJobs,
}

impl Actor {
    fn new(
        runtime: AgentRuntime,
        spec: &InstanceSpec,
        observed: Arc<Mutex<InstanceObserved>>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Actor {
        let paths = InstancePaths::new(&runtime.host_dir, &spec.node, &spec.address, spec.port);
        let assignment = keeper::load(&paths.root);
        let user = runtime.user;
        Actor {
            runtime,
            reached: assignment.as_ref().map(|a| a.state),
            paths,
            observed,
            child: None,
            client: None,
            applied: None,
            assignment,
            create_attempts: 0,
            create_failing_since: None,
            failed_generation: None,
            fence: FenceWatch::new(Instant::now()),
            drained_generation: None,
            stalled_since: None,
            replay_final: false,
            wake,
            upstream_heard: None,
            roles_secured: false,
            user,
            owner_checked: false,
            backups: Default::default(),
        }
    }

    async fn run(mut self, mut rx: watch::Receiver<InstanceSpec>) {
        let interval = Duration::from_millis(self.runtime.config.keeper_interval_ms);
        let (shared, db) = (self.runtime.user, rx.borrow().db.clone());
        if let Ok(user) = tokio::task::spawn_blocking(move || shared.for_database(&db)).await {
            self.user = user;
        }
        loop {
            let spec = rx.borrow_and_update().clone();
            if self.runtime.stopping.is_cancelled() {
                self.stop_server().await;
                return;
            }
            let reached_before = self.reached;
            if spec.desired != Desired::Deleted {
                self.ensure_client_tls(&spec);
            }
            let result = match spec.desired {
                Desired::Deleted => self.delete(&spec).await,
                Desired::Stopped => {
                    self.stop_server().await;
                    self.set_phase(&spec, InstancePhase::Stopped, None);
                    Ok(())
                }
                Desired::Running => self.run_once(&spec).await,
            };
            if let Err(error) = result {
                let message = format!("{error:#}");
                tracing::warn!(db = %spec.db, node = %spec.node, error = %message, "instance step failed");
                self.observed.lock().expect("observed lock").error = Some(message);
                self.client = None;
            }
            // A transition step just completed: tell the monitor now rather
            // than after a full interval (each failover hop saves one).
            if self.reached != reached_before && reached_before.is_some() {
                continue;
            }
            tokio::select! {
                _ = self.runtime.stopping.cancelled() => {}
                changed = rx.changed() => { if changed.is_err() { self.stop_server().await; return; } }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    fn set_phase(&self, spec: &InstanceSpec, phase: InstancePhase, error: Option<String>) {
        let mut observed = self.observed.lock().expect("observed lock");
        if observed.phase != phase {
            self.runtime.beat_now.notify_one();
        }
        observed.phase = phase;
        observed.error = error;
        observed.generation = spec.generation;
        if phase != InstancePhase::Running {
            observed.is_primary = None;
            observed.wal_receiver_streaming = None;
        }
    }

    fn is_running(&mut self) -> bool {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
            }
        }
        process::running_pid(&self.paths).is_some()
    }

    async fn stop_server(&mut self) {
        self.stop_server_with(false).await;
    }

    /// `immediate`: no shutdown checkpoint, so a demoted primary streams no
    /// WAL past the new primary's fork point to the other standbys.
    async fn stop_server_with(&mut self, immediate: bool) {
        self.client = None;
        self.applied = None;
        if process::running_pid(&self.paths).is_some() {
            if immediate {
                process::stop_immediate(&self.paths).await;
            } else {
                process::stop(&self.paths, Duration::from_secs(10)).await;
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait().await;
        }
        if process::running_pid(&self.paths).is_none() {
            process::remove_socket_dir(&self.paths);
        }
    }

    async fn delete(&mut self, spec: &InstanceSpec) -> anyhow::Result<()> {
        if self.observed.lock().expect("observed lock").phase == InstancePhase::Deleted
            && !self.paths.root.exists()
        {
            return Ok(());
        }
        self.stop_server().await;
        if self.paths.root.exists() {
            std::fs::remove_dir_all(&self.paths.root)?;
        }
        process::remove_socket_dir(&self.paths);
        tracing::info!(db = %spec.db, node = %spec.node, "instance deleted");
        self.set_phase(spec, InstancePhase::Deleted, None);
        Ok(())
    }

    fn settings(&self, spec: &InstanceSpec, mode: &Mode) -> ServerSettings {
        let (conninfo, slot, sync) = match mode {
            Mode::Primary { sync_standby_names } => (None, None, sync_standby_names.clone()),
            Mode::Draining => (None, None, DRAIN_FENCE.to_string()),
            Mode::Standby { upstream } => (
                Some(format!(
                    "{}{}",
                    standby_conninfo(upstream, &spec.node),
                    self.ssl_params(spec, crate::pg::tls::Role::Replication)
                )),
                Some(slot_name(&spec.node)),
                String::new(),
            ),
            Mode::Detached | Mode::Stopped => (Some(String::new()), None, String::new()),
        };
        ServerSettings {
            address: spec.address.clone(),
            port: spec.port,
            socket_dir: self.paths.socket_dir.clone(),
            node: spec.node.clone(),
            primary_conninfo: conninfo,
            primary_slot_name: slot,
            synchronous_standby_names: sync,
            trusted: trusted_addresses(spec),
            tls: spec.tls.clone(),
            archive: spec
                .backup
                .as_ref()
                .map(|b| crate::pg::conf::ArchiveSettings {
                    command: crate::pg::backrest::archive_command(&self.paths, &b.stanza),
                    timeout_secs: b.archive_timeout_secs,
                }),
        }
    }

    /// The mode from the spec alone (standalone databases, or before the monitor answered).
    fn spec_mode(spec: &InstanceSpec) -> Mode {
        match (spec.role, &spec.upstream) {
            (NodeRole::Replica, Some(up)) => Mode::Standby {
                upstream: PrimaryRef {
                    node: up.node.clone(),
                    address: up.address.clone(),
                    port: up.port,
                },
            },
            _ => Mode::Primary {
                sync_standby_names: String::new(),
            },
        }
    }

    async fn start(&mut self, spec: &InstanceSpec) -> anyhow::Result<Client> {
        let rt = self.runtime.clone();
        if self.paths.root.exists() && !self.user.owns(&self.paths.root) {
            // Made by an older version under the shared `postgres` user:
            // the node moves to its database's own user (one restart).
            tracing::warn!(db = %spec.db, node = %spec.node, "moving the node to its database's own OS user");
            self.stop_server().await;
            self.user.own_tree(&self.paths.root)?;
        }
        process::prepare_dirs(&self.paths, &self.user)?;
        conf::write_pgpass(&self.paths.data, &spec.replication_password, &self.user)?;
        if let Some(pid) = process::running_pid(&self.paths) {
            tracing::info!(node = %spec.node, pid, "adopting running server");
        } else {
            self.child = Some(process::start(&rt.bin, &self.user, &self.paths)?);
        }
        let client = sql::wait_ready(
            &self.paths.socket_dir,
            spec.port,
            &spec.superuser_password,
            Duration::from_secs(30),
        )
        .await;
        let client = match client {
            Ok(client) => client,
            Err(error) => {
                let tail = log_tail(&self.paths.log);
                return Err(anyhow::anyhow!("{error}; log: {tail}"));
            }
        };
        self.applied = None;
        Ok(client)
    }

    async fn run_once(&mut self, spec: &InstanceSpec) -> anyhow::Result<()> {
        if !self.paths.ready_marker().exists() {
            if self.failed_generation == Some(spec.generation) {
                return Ok(());
            }
            self.set_phase(spec, InstancePhase::Creating, None);
            if let Err(error) = self.create(spec).await {
                self.stop_server().await;
                self.create_attempts += 1;
                let failing_since = *self.create_failing_since.get_or_insert_with(Instant::now);
                let message = format!("{error:#}");
                // Give up after several attempts *and* a while: on a busy
                // host the upstream may take seconds to make the new
                // node's slot, and five quick attempts are not a verdict.
                if self.create_attempts >= 5 && failing_since.elapsed() >= CREATE_PATIENCE {
                    self.failed_generation = Some(spec.generation);
                    self.create_attempts = 0;
                    self.create_failing_since = None;
                    self.set_phase(spec, InstancePhase::Failed, Some(message));
                    return Ok(());
                }
                self.set_phase(spec, InstancePhase::Creating, Some(message));
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Ok(());
            }
            self.create_attempts = 0;
            self.create_failing_since = None;
        }
        let mode = self.decide_mode(spec).await;
        self.apply_mode(spec, &mode).await?;
        self.observe(spec, &mode).await?;
        self.backup_cycle(spec).await;
        Ok(())
    }

    /// Reports to the monitor (HA databases) and returns the mode to run in.
    async fn decide_mode(&mut self, spec: &InstanceSpec) -> Mode {
        let Some(monitor) = spec.monitor.clone() else {
            return Self::spec_mode(spec);
        };
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
        if self.fence.silent(now, timeout) {
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

    async fn apply_mode(&mut self, spec: &InstanceSpec, mode: &Mode) -> anyhow::Result<()> {
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
            promote(&client).await?;
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

    fn mark_reached(&mut self) {
        if let Some(assignment) = &self.assignment {
            self.reached = Some(assignment.state);
        }
    }
}

/// The database's own nodes and monitor: allowed to replicate and to log in
/// as the agents' superuser.
fn trusted_addresses(spec: &InstanceSpec) -> Vec<String> {
    let mut addresses: Vec<String> = spec.peers.iter().map(|p| p.address.clone()).collect();
    addresses.push(spec.address.clone());
    if let Some(monitor) = &spec.monitor {
        addresses.push(monitor.address.clone());
    }
    // On one machine (a local fleet) connections between loopback addresses
    // leave from 127.0.0.1 whatever host they come from; libpq cannot bind a
    // source address. Real hosts are matched by their own addresses.
    if addresses.iter().any(|a| a.starts_with("127.")) {
        addresses.push("127.0.0.1".into());
    }
    addresses.sort();
    addresses.dedup();
    addresses
}

/// `synchronous_standby_names` of a draining primary: a standby that never
/// exists (node names are DNS labels, without spaces), so no commit is
/// acknowledged after the drain, whatever a client does with
/// `default_transaction_read_only`. WAL still streams, so the switchover
/// target catches up; an aborted switchover restores the real names.
/// How long creation keeps trying before the node is reported failed.
const CREATE_PATIENCE: Duration = Duration::from_secs(30);

pub(crate) const DRAIN_FENCE: &str = "ANY 1 (\"pgfleet drain fence\")";

fn standby_conninfo(upstream: &PrimaryRef, node: &str) -> String {
    format!(
        "host={} port={} user=pgfleet_replication passfile=pgpass application_name={} connect_timeout=2 keepalives_idle=2 keepalives_interval=1 keepalives_count=2",
        upstream.address, upstream.port, node
    )
}

fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
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
