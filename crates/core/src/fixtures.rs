//! Records for tests, so that a test names only the fields it is about and
//! a new field of `Database`, `Node` or `Task` is added here once instead of
//! in every test (`Database { status: DbStatus::Creating, ..Database::fixture("d") }`).
//! Compiled only for tests: the `fixtures` feature, which other crates turn
//! on in their dev-dependencies. Product code never builds records this way.

use crate::{Database, DbStatus, Desired, Node, NodeRole, Task, TaskKind, TaskState};

impl Database {
    /// An online standalone database: version 16, port 5432, fixed secrets,
    /// one primary `{name}-1` on `host-1` at 127.0.0.2.
    pub fn fixture(name: &str) -> Database {
        Database {
            name: name.into(),
            status: DbStatus::Online,
            version: 16,
            port: 5432,
            admin_user: "pgadmin".into(),
            admin_password: "secret".into(),
            replication_password: "repl".into(),
            superuser_password: "su".into(),
            monitor_token: "mt".into(),
            database_name: "postgres".into(),
            created_at_ms: 1,
            generation: 1,
            nodes: vec![Node::fixture(
                &format!("{name}-1"),
                NodeRole::Primary,
                "host-1",
                "127.0.0.2",
            )],
            error: None,
            ha_generation: 0,
            monitor_epoch: 0,
            backup: Default::default(),
        }
    }
}

impl Node {
    /// A ready, running node on port 5432 with the default priority.
    pub fn fixture(name: &str, role: NodeRole, host: &str, address: &str) -> Node {
        Node {
            name: name.into(),
            role,
            host: host.into(),
            address: address.into(),
            port: 5432,
            desired: Desired::Running,
            priority: 50,
            maintenance: false,
            ready: true,
            removing: false,
            created_at_ms: 1,
        }
    }
}

impl Task {
    /// A queued task of `kind` on `target`, not yet stored (id 0), no steps.
    pub fn fixture(kind: TaskKind, target: &str) -> Task {
        Task {
            id: 0,
            kind,
            target: target.into(),
            state: TaskState::Queued,
            steps: vec![],
            current_step: 0,
            progress: 0,
            params: serde_json::json!({}),
            created_at_ms: 0,
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
            message: None,
        }
    }
}
