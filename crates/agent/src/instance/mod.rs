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
use crate::keeper::{self, Assignment, Mode, PrimaryRef};
use crate::pg::conf::{self, slot_name, ServerSettings};
use crate::pg::process::{self, InstancePaths};
use crate::pg::sql;
use crate::pg::user::PgUser;
use crate::runtime::{AgentRuntime, InstanceHandle};
use pgfleet_ha::NodeState;

mod backup;
mod client_tls;
mod create;
mod mode;
mod observe;
mod rejoin;
mod restore;

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
        next_xid: None,
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
    /// Rung when the monitor has a new assignment for this node, or waits
    /// on its report.
    wake: Arc<tokio::sync::Notify>,
    /// The monitor rang `wake`: the next report carries a fresh observation
    /// (the monitor is waiting on it, e.g. a switchover target's LSN).
    woken: bool,
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
        let paths = InstancePaths::new(
            &runtime.host_dir,
            &spec.db,
            &spec.node,
            &spec.address,
            spec.port,
        );
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
            woken: false,
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
        // Set once this instance was deleted: a spec wanting it again is a
        // new incarnation (the database or node made again under the same
        // name) and starts from nothing (no assignment, generation or fence
        // of the one that was deleted).
        let mut deleted = false;
        loop {
            let spec = rx.borrow_and_update().clone();
            if deleted && spec.desired != Desired::Deleted {
                tracing::info!(db = %spec.db, node = %spec.node, "made again after its deletion: starting afresh");
                let user = self.user;
                self = Actor::new(
                    self.runtime.clone(),
                    &spec,
                    self.observed.clone(),
                    self.wake.clone(),
                );
                self.user = user;
                deleted = false;
            }
            if self.runtime.stopping.is_cancelled() {
                self.stop_server().await;
                return;
            }
            let reached_before = self.reached;
            if spec.desired != Desired::Deleted {
                self.ensure_client_tls(&spec);
            }
            let result = match spec.desired {
                Desired::Deleted => {
                    let result = self.delete(&spec).await;
                    deleted = result.is_ok();
                    result
                }
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
                _ = self.wake.notified() => { self.woken = true; }
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

/// How long creation keeps trying before the node is reported failed.
const CREATE_PATIENCE: Duration = Duration::from_secs(30);

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
