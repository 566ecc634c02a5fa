//! A database's admin role, tried as an attacker holding its password
//! would: it manages roles and databases, but never reaches the operating
//! system (the server's programs and files), pgfleet's own roles, or
//! another database's files; its failed statements do not leak passwords
//! into logs, and PostgreSQL runs with nothing of the agent's environment.

mod common;

use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::{eventually, Fleet};
use pgfleet_core::NodeRole;

/// The error text of a statement that must fail.
async fn refused(client: &tokio_postgres::Client, sql: &str) -> String {
    match client.batch_execute(sql).await {
        Ok(()) => panic!("{sql} was accepted"),
        Err(error) => error
            .as_db_error()
            .map(|e| e.message().to_string())
            .unwrap_or_else(|| error.to_string()),
    }
}

/// A connection as the `pgfleet` superuser, the way the agent of the
/// node's host makes it (password and client certificate).
async fn superuser(fleet: &Fleet, db: &str) -> Option<tokio_postgres::Client> {
    let view = fleet.client().database(db, false).await.ok()?;
    let primary = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Primary)
        .unwrap()
        .clone();
    let store = pgfleet_store::open_sealed(
        &format!("sqlite:{}", fleet.dir().join("pgfleet.db").display()),
        &pgfleet_store::sealed::key_path(fleet.dir()),
    )
    .await
    .ok()?;
    let record = store.get_database(db).await.unwrap().unwrap();
    let tls_dir = fleet
        .dir()
        .join("hosts")
        .join(&primary.host)
        .join("pg")
        .join(format!("{}.{}", db, primary.name))
        .join("tls");
    let read = |name: &str| std::fs::read_to_string(tls_dir.join(name)).ok();
    let tls = pgfleet_tls::postgres_tls(
        &fleet.ca()?,
        Some((&read("pgfleet.crt")?, &read("pgfleet.key")?)),
    )
    .ok()?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&primary.address)
        .port(primary.port)
        .user("pgfleet")
        .password(record.superuser_password.clone())
        .dbname("postgres")
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let (client, connection) = config.connect(tls).await.ok()?;
    tokio::spawn(connection);
    Some(client)
}

async fn admin_state(client: &tokio_postgres::Client) -> (bool, i64) {
    let row = client
        .query_one(
            "SELECT rolcreaterole, (SELECT count(*) FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid \
             WHERE a.member = p.oid AND r.rolname LIKE 'pg\\_%server%') FROM pg_roles p WHERE rolname = 'pgadmin'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_admin_manages_roles_but_never_reaches_the_server() {
    let fleet = Fleet::up(1);
    fleet.cli_ok(&["db", "create", "priv-db"]);
    let uri = fleet
        .cli_ok(&["db", "uri", "priv-db", "--resolved"])
        .trim()
        .to_string();
    let admin = fleet.connect(&uri).await;

    // The attack from the security review, and its variants.
    for role in [
        "pg_execute_server_program",
        "pg_read_server_files",
        "pg_write_server_files",
    ] {
        let error = refused(&admin, &format!("GRANT {role} TO pgadmin")).await;
        assert!(
            error.contains("permission denied") || error.contains("must have admin option"),
            "{role}: {error}"
        );
    }
    let error = refused(
        &admin,
        "CREATE TEMP TABLE o(l text); COPY o FROM PROGRAM 'id'",
    )
    .await;
    assert!(
        error.contains("must be superuser or have privileges"),
        "{error}"
    );
    refused(&admin, "CREATE ROLE sneaky CREATEROLE").await;
    refused(&admin, "ALTER ROLE pgadmin CREATEROLE").await;

    // Role management through the pgfleet functions.
    admin
        .batch_execute("SELECT pgfleet.create_role('app_user', 'app-user-pw-1')")
        .await
        .unwrap();
    admin
        .batch_execute(
            "SELECT pgfleet.create_role('readers', NULL, false); GRANT readers TO app_user",
        )
        .await
        .unwrap();
    admin
        .batch_execute("SELECT pgfleet.set_password('app_user', 'app-user-pw-2')")
        .await
        .unwrap();
    let app_uri = uri.replacen("pgadmin:", "app_user:", 1);
    let app_uri = match (app_uri.find("app_user:"), app_uri.find('@')) {
        (Some(start), Some(at)) => format!(
            "{}app_user:app-user-pw-2{}",
            &app_uri[..start],
            &app_uri[at..]
        ),
        _ => panic!("unexpected uri {uri}"),
    };
    let app = fleet.connect(&app_uri).await;
    app.batch_execute("SELECT 1").await.unwrap();
    let error = refused(&admin, "GRANT pg_execute_server_program TO app_user").await;
    assert!(error.contains("must have admin option"), "{error}");
    for sql in [
        "SELECT pgfleet.create_role('pg_monitor2')",
        "SELECT pgfleet.create_role('pgfleet_x')",
        "SELECT pgfleet.set_password('pgfleet_replication', 'x')",
        "SELECT pgfleet.set_password('pgfleet', 'x')",
        "SELECT pgfleet.drop_role('pgfleet_role_admin')",
        "SELECT pgfleet.drop_role('pg_execute_server_program')",
        "SELECT pgfleet.drop_role('pgadmin')",
    ] {
        let error = refused(&admin, sql).await;
        assert!(
            error.contains("reserved") || error.contains("not one of yours"),
            "{sql}: {error}"
        );
    }
    // Another login may not use the functions at all.
    let error = refused(&app, "SELECT pgfleet.create_role('x2')").await;
    assert!(error.contains("permission denied"), "{error}");
    // Databases the admin makes have the functions too.
    admin.batch_execute("CREATE DATABASE appdb").await.unwrap();
    let appdb_uri = uri.replace("/postgres", "/appdb");
    let in_appdb = fleet.connect(&appdb_uri).await;
    in_appdb
        .batch_execute(
            "SELECT pgfleet.create_role('appdb_user'); SELECT pgfleet.drop_role('appdb_user')",
        )
        .await
        .unwrap();
    admin
        .batch_execute("SELECT pgfleet.drop_role('readers')")
        .await
        .unwrap();

    // A failed statement with a password does not reach the server's log,
    // and the log is private.
    refused(&admin, "ALTER ROLE pgfleet PASSWORD 'leaked-secret-42'").await;
    refused(
        &admin,
        "SELECT pgfleet.set_password('pgfleet', 'leaked-secret-43')",
    )
    .await;
    let view = fleet.client().database("priv-db", false).await.unwrap();
    let node = view.nodes[0].clone();
    let node_dir = fleet
        .dir()
        .join("hosts")
        .join(&node.host)
        .join("pg")
        .join(format!("{}.{}", "priv-db", node.name));
    let log_path = node_dir.join("postgres.log");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("permission denied"), "the refusals are logged");
    assert!(!log.contains("leaked-secret"), "no password in the log");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&log_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o077, 0, "postgres.log is private");

    // PostgreSQL has nothing of the agent's environment.
    let pid: i32 = std::fs::read_to_string(node_dir.join("data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for variable in environ.split('\0').filter(|v| !v.is_empty()) {
        let name = variable.split('=').next().unwrap_or_default();
        assert!(
            ["PATH", "LC_ALL"].contains(&name) || name.starts_with("PG_") || name == "PGSYSCONFDIR",
            "the postmaster inherited {name}"
        );
    }
}

/// A database made under the old privilege model (its admin had CREATEROLE
/// and granted itself pg_execute_server_program) is repaired when its
/// agent starts again.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_that_took_os_roles_before_loses_them() {
    let fleet = Fleet::up(1);
    fleet.cli_ok(&["db", "create", "old-db"]);
    let root = superuser(&fleet, "old-db")
        .await
        .expect("a superuser connection");
    root.batch_execute(
        "ALTER ROLE pgadmin CREATEROLE; GRANT pg_execute_server_program TO pgadmin; \
         CREATE ROLE helper CREATEROLE",
    )
    .await
    .unwrap();
    assert_eq!(admin_state(&root).await, (true, 1));
    drop(root);
    fleet.cli_ok(&["host", "kill", "host-1"]);
    fleet.cli_ok(&["host", "start", "host-1"]);
    eventually(
        Duration::from_secs(60),
        "the admin lost what it took",
        || {
            let fleet = &fleet;
            async move {
                let root = tokio::time::timeout(Duration::from_secs(5), superuser(fleet, "old-db"))
                    .await
                    .ok()??;
                let helper: bool = root
                    .query_one(
                        "SELECT rolcreaterole FROM pg_roles WHERE rolname = 'helper'",
                        &[],
                    )
                    .await
                    .ok()?
                    .get(0);
                (admin_state(&root).await == (false, 0) && !helper).then_some(())
            }
        },
    )
    .await;
}

/// Two databases on one host: each server runs as its database's own OS
/// user, so neither can read the other's files (data, keys, password
/// files). Only where the agent runs as root (as in CI); a non-root agent
/// has only its own user to run servers as.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_server_cannot_read_another_databases_files() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: separate OS users need the agent to run as root");
        return;
    }
    let fleet = Fleet::up(1);
    fleet.cli_ok(&["db", "create", "tenant-a"]);
    fleet.cli_ok(&["db", "create", "tenant-b"]);
    let node_dir = |db: &str| {
        fleet
            .dir()
            .join("hosts/host-1/pg")
            .join(format!("{db}.{db}"))
    };
    let uid_of = |db: &str| {
        let pid_file = node_dir(db).join("data/postmaster.pid");
        let pid = std::fs::read_to_string(pid_file).unwrap();
        let pid = pid.lines().next().unwrap().trim();
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(format!("/proc/{pid}")).unwrap())
    };
    let (a, b) = (uid_of("tenant-a"), uid_of("tenant-b"));
    assert_ne!(a, b, "each database's server runs as its own user");
    assert_ne!(a, 0);
    let user_a = nix::unistd::User::from_uid(a.into()).unwrap().unwrap();
    assert_eq!(user_a.name, "pgf-tenant-a");
    // As tenant-a's server user, try to read tenant-b's secrets.
    for file in [
        "tls/pgfleet.key",
        "data/pgpass",
        "data/pg_hba.conf",
        "data/PG_VERSION",
    ] {
        let path = node_dir("tenant-b").join(file);
        assert!(path.exists(), "{file} exists");
        let output = std::process::Command::new("cat")
            .arg(&path)
            .uid(a)
            .gid(user_a.gid.as_raw())
            .output()
            .unwrap();
        assert!(
            !output.status.success(),
            "tenant-a's user read tenant-b's {file}"
        );
    }
    // Its own files it can read.
    let own = std::process::Command::new("cat")
        .arg(node_dir("tenant-a").join("data/PG_VERSION"))
        .uid(a)
        .gid(user_a.gid.as_raw())
        .output()
        .unwrap();
    assert!(own.status.success());
}

/// Whether a user with no relation to the fleet (not the owner, in no
/// group) can read `path`: every folder above it searchable by others and
/// the file readable by others.
fn readable_by_others(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode())
            .unwrap_or(0)
    };
    if mode(path) & 0o004 == 0 {
        return false;
    }
    path.ancestors()
        .skip(1)
        .all(|dir| dir.as_os_str().is_empty() || mode(dir) & 0o001 != 0)
}

fn files_under(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

/// A local user without privileges, against a running HA fleet: no file
/// it can read holds a secret (API token, host credentials, any key, any
/// database password or monitor token), and the secret-holding files are
/// private.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_user_reads_no_secret_of_the_fleet() {
    let fleet = Fleet::up(3);
    fleet.cli_ok(&["db", "create", "local-db"]);
    fleet.cli_ok(&["replica", "create", "local-db", "--name", "r1"]);
    let dir = fleet.dir().to_path_buf();
    let store = pgfleet_store::open_sealed(
        &format!("sqlite:{}", dir.join("pgfleet.db").display()),
        &pgfleet_store::sealed::key_path(&dir),
    )
    .await
    .unwrap();
    let db = store.get_database("local-db").await.unwrap().unwrap();
    drop(store);
    let mut secrets: Vec<(String, String)> = vec![
        ("admin password".into(), db.admin_password.clone()),
        (
            "replication password".into(),
            db.replication_password.clone(),
        ),
        ("superuser password".into(), db.superuser_password.clone()),
        ("monitor token".into(), db.monitor_token.clone()),
        (
            "admin API token".into(),
            std::fs::read_to_string(dir.join("admin.token"))
                .unwrap()
                .trim()
                .to_string(),
        ),
    ];
    let mut secret_files = vec![dir.join("admin.token"), dir.join("ca.key")];
    for file in files_under(&dir) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let holds_secret = name.ends_with(".key") || name == "agent.credential" || name == "pgpass";
        if !holds_secret {
            continue;
        }
        secret_files.push(file.clone());
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        // A line from the middle of a key, or the credential itself.
        let sample = text
            .lines()
            .filter(|l| l.len() >= 24 && !l.starts_with("-----"))
            .nth(1)
            .or_else(|| text.lines().next())
            .unwrap_or_default()
            .trim()
            .to_string();
        if sample.len() >= 16 {
            secrets.push((file.display().to_string(), sample));
        }
    }
    assert!(
        secrets.len() > 10,
        "found the fleet's secrets: {}",
        secrets.len()
    );
    for file in &secret_files {
        assert!(
            !readable_by_others(file),
            "{} is readable by any local user",
            file.display()
        );
    }
    let mut readable = 0;
    for file in files_under(&dir)
        .into_iter()
        .filter(|f| readable_by_others(f))
    {
        readable += 1;
        let bytes = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for (what, secret) in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{} (readable by any local user) holds the {what}",
                file.display()
            );
        }
    }
    eprintln!("{readable} files of the fleet are readable by any local user; none holds a secret");
}
