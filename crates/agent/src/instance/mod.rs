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

use crate::keeper::{self, Assignment, KeeperReport, Mode, PrimaryRef};
use crate::pg::conf::{self, slot_name, ServerSettings};
use crate::pg::process::{self, InstancePaths};
use crate::pg::sql;
use crate::runtime::{AgentRuntime, InstanceHandle};

mod client_tls;
mod rejoin;
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
    }));
    let actor = Actor::new(runtime, &spec, observed.clone());
    let task = tokio::spawn(actor.run(rx));
    InstanceHandle {
        spec: tx,
        observed,
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
    reached: String,
    create_attempts: u32,
    failed_generation: Option<u64>,
    last_monitor_contact: Instant,
    last_standby_seen: Instant,
    self_fenced: bool,
    /// Assignment generation whose drain (read-only + sessions ended) was done.
    drained_generation: Option<u64>,
    /// Since when this standby has not been streaming from its upstream.
    stalled_since: Option<Instant>,
}

impl Actor {
    fn new(
        runtime: AgentRuntime,
        spec: &InstanceSpec,
        observed: Arc<Mutex<InstanceObserved>>,
    ) -> Actor {
        let paths = InstancePaths::new(&runtime.host_dir, &spec.node, &spec.address, spec.port);
        let assignment = keeper::load(&paths.root);
        Actor {
            runtime,
            reached: assignment
                .as_ref()
                .map(|a| a.state.clone())
                .unwrap_or_default(),
            paths,
            observed,
            child: None,
            client: None,
            applied: None,
            assignment,
            create_attempts: 0,
            failed_generation: None,
            last_monitor_contact: Instant::now(),
            last_standby_seen: Instant::now(),
            self_fenced: false,
            drained_generation: None,
            stalled_since: None,
        }
    }

    async fn run(mut self, mut rx: watch::Receiver<InstanceSpec>) {
        let interval = Duration::from_millis(self.runtime.config.keeper_interval_ms);
        loop {
            let spec = rx.borrow_and_update().clone();
            if self.runtime.stopping.is_cancelled() {
                self.stop_server().await;
                return;
            }
            let reached_before = self.reached.clone();
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
            if self.reached != reached_before && !reached_before.is_empty() {
                continue;
            }
            tokio::select! {
                _ = self.runtime.stopping.cancelled() => {}
                changed = rx.changed() => { if changed.is_err() { self.stop_server().await; return; } }
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    fn set_phase(&self, spec: &InstanceSpec, phase: InstancePhase, error: Option<String>) {
        let mut observed = self.observed.lock().expect("observed lock");
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
        let _ = std::fs::remove_dir_all(&self.paths.socket_dir);
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

    async fn create(&mut self, spec: &InstanceSpec) -> anyhow::Result<()> {
        let rt = self.runtime.clone();
        if spec.role == NodeRole::Replica {
            let upstream = spec
                .upstream
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("replica has no upstream"))?;
            let upstream = PrimaryRef {
                node: upstream.node.clone(),
                address: upstream.address.clone(),
                port: upstream.port,
            };
            self.clone_from(spec, &upstream).await?;
            let mode = Self::spec_mode(spec);
            conf::write_all(&self.paths.data, &self.settings(spec, &mode), &rt.user)?;
            self.start(spec).await?;
        } else {
            if self.paths.data.exists() {
                std::fs::remove_dir_all(&self.paths.data)?;
            }
            process::initdb(&rt.bin, &rt.user, &self.paths, &spec.superuser_password).await?;
            let mode = Self::spec_mode(spec);
            conf::write_all(&self.paths.data, &self.settings(spec, &mode), &rt.user)?;
            let client = self.start(spec).await?;
            sql::ensure_role(
                &client,
                &spec.admin_user,
                &spec.admin_password,
                "CREATEDB CREATEROLE",
            )
            .await?;
            sql::ensure_role(
                &client,
                "pgfleet_replication",
                &spec.replication_password,
                "REPLICATION",
            )
            .await?;
            client
                .batch_execute(&format!(
                    "GRANT ALL ON SCHEMA public TO \"{}\"",
                    spec.admin_user
                ))
                .await?;
            if spec.database_name != "postgres" {
                sql::ensure_database(&client, &spec.database_name, &spec.admin_user).await?;
            }
            client.batch_execute("CHECKPOINT").await?;
        }
        std::fs::write(self.paths.ready_marker(), spec.node.as_bytes())?;
        tracing::info!(db = %spec.db, node = %spec.node, role = ?spec.role, "instance created");
        Ok(())
    }

    async fn start(&mut self, spec: &InstanceSpec) -> anyhow::Result<Client> {
        let rt = self.runtime.clone();
        process::prepare_dirs(&self.paths, &rt.user)?;
        conf::write_pgpass(&self.paths.data, &spec.replication_password, &rt.user)?;
        if let Some(pid) = process::running_pid(&self.paths) {
            tracing::info!(node = %spec.node, pid, "adopting running server");
        } else {
            self.child = Some(process::start(&rt.bin, &rt.user, &self.paths)?);
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
                let message = format!("{error:#}");
                if self.create_attempts >= 5 {
                    self.failed_generation = Some(spec.generation);
                    self.create_attempts = 0;
                    self.set_phase(spec, InstancePhase::Failed, Some(message));
                    return Ok(());
                }
                self.set_phase(spec, InstancePhase::Creating, Some(message));
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Ok(());
            }
            self.create_attempts = 0;
        }
        let mode = self.decide_mode(spec).await;
        self.apply_mode(spec, &mode).await?;
        self.observe(spec, &mode).await
    }

    /// Reports to the monitor (HA databases) and returns the mode to run in.
    async fn decide_mode(&mut self, spec: &InstanceSpec) -> Mode {
        let Some(monitor) = spec.monitor.clone() else {
            return Self::spec_mode(spec);
        };
        let observed = self.observed.lock().expect("observed lock").clone();
        let report = KeeperReport {
            node: spec.node.clone(),
            reported: self.reached.clone(),
            generation_seen: self.assignment.as_ref().map(|a| a.generation).unwrap_or(0),
            lsn: observed.lsn.unwrap_or(0),
            timeline: observed.timeline.unwrap_or(0),
            pg_running: observed.phase == InstancePhase::Running,
            is_in_recovery: observed.is_primary == Some(false),
            wal_receiver_streaming: observed.wal_receiver_streaming.unwrap_or(false),
            streaming_standbys: observed
                .standbys
                .iter()
                .filter(|s| s.state == "streaming")
                .map(|s| pgfleet_ha::StreamingStandby {
                    name: s.application_name.clone(),
                    flush_lsn: s.flush_lsn,
                })
                .collect(),
        };
        if let Some(assignment) = keeper::report(
            &self.runtime,
            &monitor,
            &spec.db,
            &spec.monitor_token,
            &report,
        )
        .await
        {
            self.last_monitor_contact = Instant::now();
            let newer = self
                .assignment
                .as_ref()
                .is_none_or(|a| assignment.generation >= a.generation);
            if newer && self.assignment.as_ref() != Some(&assignment) {
                tracing::info!(db = %spec.db, node = %spec.node, state = %assignment.state, generation = assignment.generation, "new assignment");
                // Persist before acting: an assignment that is not on disk is
                // not applied (nor reported reached); the next report retries.
                match keeper::persist(&self.paths.root, &assignment) {
                    Ok(()) => {
                        self.assignment = Some(assignment);
                        self.self_fenced = false;
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
        if matches!(mode, Mode::Primary { .. }) && spec.peers.len() > 1 {
            let timeout = Duration::from_millis(self.runtime.config.failure_timeout_ms);
            if self.last_monitor_contact.elapsed() > timeout
                && self.last_standby_seen.elapsed() > timeout
            {
                if !self.self_fenced {
                    tracing::warn!(db = %spec.db, node = %spec.node, "isolated primary: fencing itself");
                }
                self.self_fenced = true;
            }
        }
        if self.self_fenced {
            return Mode::Stopped;
        }
        mode
    }

    async fn apply_mode(&mut self, spec: &InstanceSpec, mode: &Mode) -> anyhow::Result<()> {
        let rt = self.runtime.clone();
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
        if !self.is_running() {
            if let (true, true, Mode::Standby { upstream }) = (was_primary, wants_standby, mode) {
                self.rejoin(spec, upstream).await?;
            }
            conf::write_all(&self.paths.data, &self.settings(spec, mode), &rt.user)?;
            let client = match self.start(spec).await {
                Ok(client) => client,
                Err(error) => {
                    self.stop_server().await;
                    if let Mode::Standby { upstream } = mode {
                        // A standby that cannot start (e.g. diverged from the
                        // new timeline) is cloned again from its upstream.
                        tracing::warn!(db = %spec.db, node = %spec.node, %error, "standby cannot start; cloning it again");
                        self.reclone(spec, upstream).await?;
                        conf::write_all(&self.paths.data, &self.settings(spec, mode), &rt.user)?;
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
        if wants_standby && !in_recovery {
            // A primary told to follow another node: stop, rewind, restart as standby.
            if let Mode::Standby { upstream } = mode {
                tracing::info!(db = %spec.db, node = %spec.node, upstream = %upstream.node, "demoting to standby");
                drop(client);
                self.stop_server_with(true).await;
                self.rejoin(spec, upstream).await?;
                conf::write_all(&self.paths.data, &self.settings(spec, mode), &rt.user)?;
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
            conf::write_settings(&self.paths.data, &desired, &rt.user)?;
            client.batch_execute("SELECT pg_reload_conf()").await?;
            self.applied = Some(desired);
        }
        if matches!(mode, Mode::Primary { .. }) && in_recovery {
            tracing::info!(db = %spec.db, node = %spec.node, "promoting");
            client.batch_execute("SELECT pg_promote(true, 30)").await?;
            std::fs::write(self.paths.root.join("role"), "primary")?;
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
            Mode::Primary { .. } => std::fs::write(self.paths.root.join("role"), "primary")?,
            Mode::Standby { .. } => std::fs::write(self.paths.root.join("role"), "standby")?,
            _ => {}
        }
        self.client = Some(client);
        self.mark_reached();
        Ok(())
    }

    fn mark_reached(&mut self) {
        if let Some(assignment) = &self.assignment {
            self.reached = assignment.state.clone();
        }
    }

    async fn observe(&mut self, spec: &InstanceSpec, mode: &Mode) -> anyhow::Result<()> {
        let Some(client) = self.client.as_ref() else {
            self.set_phase(spec, InstancePhase::Stopped, None);
            return Ok(());
        };
        let obs = sql::observe(client).await?;
        if !obs.in_recovery {
            let wanted: Vec<String> = spec
                .peers
                .iter()
                .filter(|p| p.node != spec.node)
                .map(|p| slot_name(&p.node))
                .collect();
            let managed: Vec<String> = spec.peers.iter().map(|p| slot_name(&p.node)).collect();
            sql::sync_slots(client, &wanted, &managed).await?;
            if obs.standbys.iter().any(|s| s.state == "streaming") {
                self.last_standby_seen = Instant::now();
            }
        }
        let stalled =
            obs.in_recovery && !obs.wal_receiver_streaming && matches!(mode, Mode::Standby { .. });
        if stalled {
            self.stalled_since.get_or_insert_with(Instant::now);
        } else {
            self.stalled_since = None;
        }
        let mut observed = self.observed.lock().expect("observed lock");
        observed.phase = InstancePhase::Running;
        observed.error = None;
        observed.generation = spec.generation;
        observed.is_primary = Some(!obs.in_recovery);
        observed.lsn = Some(obs.lsn);
        observed.timeline = Some(obs.timeline);
        observed.wal_receiver_streaming = Some(obs.wal_receiver_streaming);
        observed.lag_bytes = obs.lag_bytes;
        observed.lag_seconds = obs.lag_seconds;
        observed.standbys = obs.standbys;
        observed.sync_standby_names = Some(obs.sync_standby_names);
        observed.ha_state = self.assignment.as_ref().map(|a| a.state.clone());
        Ok(())
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
