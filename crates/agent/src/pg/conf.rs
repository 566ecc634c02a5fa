//! PostgreSQL configuration the agent owns: `pgfleet.conf` (included from
//! postgresql.conf and rewritten before every start), `pg_hba.conf`, and the
//! standby signal. `postgresql.auto.conf` is left to the user.

use std::path::{Path, PathBuf};

/// Everything that goes into `pgfleet.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub address: String,
    pub port: u16,
    pub socket_dir: PathBuf,
    pub node: String,
    /// `Some` on a standby: where it streams from.
    pub primary_conninfo: Option<String>,
    pub primary_slot_name: Option<String>,
    pub synchronous_standby_names: String,
    /// Addresses allowed to replicate and to log in as `pgfleet`.
    pub trusted: Vec<String>,
    /// Server certificate and key from the fleet CA: TLS on when present.
    pub tls: Option<pgfleet_core::protocol::TlsMaterial>,
    /// WAL archiving (`pg::backrest`), when the database has a backup policy.
    pub archive: Option<ArchiveSettings>,
}

/// `archive_mode = on` on every data node, so a promoted standby archives
/// from its promotion on without a restart (pgBackRest refuses `always`;
/// segments the old primary had not pushed when it died are pushed by the
/// new primary's agent: `instance::backup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSettings {
    pub command: String,
    pub timeout_secs: u32,
}

/// Slot names allow only `[a-z0-9_]`.
pub fn slot_name(node: &str) -> String {
    node.replace('-', "_")
}

pub fn render(settings: &ServerSettings) -> String {
    let mut text =
        String::from("# Written by the pgfleet agent before every start; do not edit.\n");
    let mut put = |key: &str, value: String| {
        text.push_str(&format!("{key} = '{}'\n", value.replace('\'', "''")));
    };
    put("listen_addresses", settings.address.clone());
    put("port", settings.port.to_string());
    put(
        "unix_socket_directories",
        settings.socket_dir.display().to_string(),
    );
    put("cluster_name", settings.node.clone());
    put("wal_level", "replica".into());
    put("max_wal_senders", "16".into());
    put("max_replication_slots", "16".into());
    put("max_slot_wal_keep_size", "2GB".into());
    put("wal_keep_size", "128MB".into());
    put("hot_standby", "on".into());
    put("hot_standby_feedback", "on".into());
    put("wal_log_hints", "on".into());
    put("password_encryption", "scram-sha-256".into());
    put("shared_buffers", "32MB".into());
    put("max_connections", "60".into());
    put("wal_sender_timeout", "3s".into());
    // A frozen primary is noticed by its standbys within 2 s (they ping it
    // after 1 s of silence), no later than the monitor's failure timeout:
    // failover needs both the monitor and the standbys to have lost it.
    put("wal_receiver_timeout", "2s".into());
    put("wal_receiver_status_interval", "1s".into());
    // A standby pointed at a new primary retries soon when its first try
    // comes before the slot or the promotion (one wasted try costs this).
    put("wal_retrieve_retry_interval", "200ms".into());
    put("recovery_target_timeline", "latest".into());
    put(
        "synchronous_standby_names",
        settings.synchronous_standby_names.clone(),
    );
    put("log_line_prefix", "%m [%p] %q%u@%d ".into());
    // A failing statement is not written to the log: it may carry a
    // password (`ALTER ROLE … PASSWORD '…'`, `pgfleet.create_role(…)`).
    put("log_min_error_statement", "panic".into());
    if settings.tls.is_some() {
        put("ssl", "on".into());
        put("ssl_cert_file", "pgfleet-server.crt".into());
        put("ssl_key_file", "pgfleet-server.key".into());
        put("ssl_min_protocol_version", "TLSv1.2".into());
    }
    if settings.tls.as_ref().is_some_and(|t| t.client.is_some()) {
        put("ssl_ca_file", "pgfleet-ca.crt".into());
    }
    if let Some(archive) = &settings.archive {
        put("archive_mode", "on".into());
        put("archive_command", archive.command.clone());
        put("archive_timeout", format!("{}s", archive.timeout_secs));
    }
    if let Some(conninfo) = &settings.primary_conninfo {
        put("primary_conninfo", conninfo.clone());
    }
    if let Some(slot) = &settings.primary_slot_name {
        put("primary_slot_name", slot.clone());
    }
    text
}

/// pg_hba.conf: scram-sha-256 only. With TLS material, TCP connections
/// must use TLS (`hostssl`; plain TCP is rejected), and replication and the
/// `pgfleet` superuser also need a client certificate from the fleet CA
/// naming the role (`clientcert=verify-full`). Those two roles are accepted
/// only from the database's own nodes and monitor; the user's roles from
/// anywhere.
pub fn render_hba(trusted: &[String], tls: Option<&pgfleet_core::protocol::TlsMaterial>) -> String {
    let (host, internal_auth) = match tls {
        Some(t) if t.client.is_some() => ("hostssl", "scram-sha-256 clientcert=verify-full"),
        Some(_) => ("hostssl", "scram-sha-256"),
        None => ("host   ", "scram-sha-256"),
    };
    let mut text =
        String::from("# Written by the pgfleet agent.\nlocal   all  all  scram-sha-256\n");
    if tls.is_some() {
        text.push_str("hostnossl  all  all  0.0.0.0/0  reject\n");
    }
    for address in trusted {
        text.push_str(&format!(
            "{host} replication  pgfleet_replication  {address}/32  {internal_auth}\n"
        ));
        text.push_str(&format!(
            "{host} all          pgfleet              {address}/32  {internal_auth}\n"
        ));
    }
    text.push_str(&format!(
        "{host} all          pgfleet              0.0.0.0/0  reject\n"
    ));
    text.push_str(&format!(
        "{host} all          pgfleet_replication  0.0.0.0/0  reject\n"
    ));
    text.push_str(&format!(
        "{host} replication  all                  0.0.0.0/0  reject\n"
    ));
    text.push_str(&format!(
        "{host} all          all                  0.0.0.0/0  scram-sha-256\n"
    ));
    text
}

/// Writes `text` to `path` (0600, owned by `user`) without following links:
/// the folder belongs to the database's OS user, who must not be able to
/// make the agent write or chown anything else.
pub fn write_owned(path: &Path, text: &str, user: &super::user::PgUser) -> anyhow::Result<()> {
    write_owned_bytes(path, text.as_bytes(), user)
}

pub fn write_owned_bytes(
    path: &Path,
    bytes: &[u8],
    user: &super::user::PgUser,
) -> anyhow::Result<()> {
    let owner = user.uid.zip(user.gid);
    pgfleet_tls::write_durable_owned(path, bytes, owner)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// Writes pgfleet.conf and pg_hba.conf, makes sure postgresql.conf includes
/// pgfleet.conf, and sets or clears standby.signal.
pub fn write_all(
    data_dir: &Path,
    settings: &ServerSettings,
    user: &super::user::PgUser,
) -> anyhow::Result<()> {
    let main = data_dir.join("postgresql.conf");
    let current = std::fs::read_to_string(&main).unwrap_or_default();
    if !current.contains("include_if_exists = 'pgfleet.conf'") {
        write_owned(
            &main,
            &format!("{current}\ninclude_if_exists = 'pgfleet.conf'\n"),
            user,
        )?;
    }
    write_tls(data_dir, settings, user)?;
    write_owned(&data_dir.join("pgfleet.conf"), &render(settings), user)?;
    write_owned(
        &data_dir.join("pg_hba.conf"),
        &render_hba(&settings.trusted, settings.tls.as_ref()),
        user,
    )?;
    let signal = data_dir.join("standby.signal");
    if settings.primary_conninfo.is_some() {
        write_owned(&signal, "", user)?;
    } else if signal.exists() {
        std::fs::remove_file(&signal)?;
    }
    Ok(())
}

/// The password file walreceivers use (`passfile=pgpass` in primary_conninfo,
/// relative to the data directory).
pub fn write_pgpass(
    data_dir: &Path,
    replication_password: &str,
    user: &super::user::PgUser,
) -> anyhow::Result<()> {
    write_owned(
        &data_dir.join("pgpass"),
        &format!("*:*:*:pgfleet_replication:{replication_password}\n"),
        user,
    )
}

/// Rewrites only pgfleet.conf (for a reload).
pub fn write_settings(
    data_dir: &Path,
    settings: &ServerSettings,
    user: &super::user::PgUser,
) -> anyhow::Result<()> {
    write_tls(data_dir, settings, user)?;
    write_owned(&data_dir.join("pgfleet.conf"), &render(settings), user)?;
    write_owned(
        &data_dir.join("pg_hba.conf"),
        &render_hba(&settings.trusted, settings.tls.as_ref()),
        user,
    )
}

fn write_tls(
    data_dir: &Path,
    settings: &ServerSettings,
    user: &super::user::PgUser,
) -> anyhow::Result<()> {
    if let Some(tls) = &settings.tls {
        write_owned(&data_dir.join("pgfleet-server.crt"), &tls.cert_pem, user)?;
        write_owned(&data_dir.join("pgfleet-server.key"), &tls.key_pem, user)?;
        if let Some(client) = &tls.client {
            write_owned(&data_dir.join("pgfleet-ca.crt"), &client.ca_pem, user)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_settings_name_the_upstream_and_slot() {
        let settings = ServerSettings {
            address: "127.0.0.3".into(),
            port: 5432,
            socket_dir: "/tmp/s".into(),
            node: "pg-replica-1".into(),
            primary_conninfo: Some("host=127.0.0.2 port=5432".into()),
            primary_slot_name: Some(slot_name("pg-replica-1")),
            synchronous_standby_names: String::new(),
            trusted: vec!["127.0.0.2".into()],
            tls: None,
            archive: None,
        };
        let text = render(&settings);
        assert!(text.contains("listen_addresses = '127.0.0.3'"));
        assert!(text.contains("primary_slot_name = 'pg_replica_1'"));
        assert!(text.contains("wal_level = 'replica'"));
        assert!(text.contains("wal_log_hints = 'on'"));
        let hba = render_hba(&settings.trusted, None);
        let replication_from_node = hba
            .find("replication  pgfleet_replication  127.0.0.2/32")
            .unwrap();
        let reject = hba.find("pgfleet_replication  0.0.0.0/0  reject").unwrap();
        assert!(
            replication_from_node < reject,
            "node lines come before the rejects"
        );
        assert!(!hba.contains("trust") && !hba.contains(" md5"));
    }

    #[test]
    fn with_tls_plain_tcp_is_rejected_and_internal_roles_need_a_client_certificate() {
        let client = pgfleet_core::protocol::PgClientTls {
            ca_pem: "ca".into(),
            superuser_cert_pem: String::new(),
            superuser_key_pem: String::new(),
            replication_cert_pem: String::new(),
            replication_key_pem: String::new(),
        };
        let tls = pgfleet_core::protocol::TlsMaterial {
            cert_pem: String::new(),
            key_pem: String::new(),
            client: Some(client),
        };
        let hba = render_hba(&["127.0.0.2".into()], Some(&tls));
        let lines: Vec<&str> = hba.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(lines[0].starts_with("local"));
        assert!(lines[1].starts_with("hostnossl") && lines[1].ends_with("reject"));
        assert!(lines[2..].iter().all(|l| l.starts_with("hostssl")));
        for line in lines.iter().filter(|l| l.contains("127.0.0.2")) {
            assert!(line.ends_with("clientcert=verify-full"), "{line}");
        }
        let last: Vec<&str> = lines.last().unwrap().split_whitespace().collect();
        assert_eq!(
            last,
            ["hostssl", "all", "all", "0.0.0.0/0", "scram-sha-256"]
        );
    }
}
