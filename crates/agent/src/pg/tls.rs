//! TLS between a database's servers, agent side: the client certificate
//! files libpq tools (walreceiver, pg_basebackup, pg_rewind) present, kept
//! in `<node>/tls/` outside the data directory (a clone must not carry
//! another host's keys), and the connection parameters that use them.

use std::path::{Path, PathBuf};

use pgfleet_core::protocol::PgClientTls;

/// The internal role a connection logs in as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Superuser,
    Replication,
}

impl Role {
    fn file_stem(self) -> &'static str {
        match self {
            Role::Superuser => "pgfleet",
            Role::Replication => "replication",
        }
    }
}

pub fn dir(node_root: &Path) -> PathBuf {
    node_root.join("tls")
}

/// libpq parameters: verify the server against the fleet CA by the address
/// connected to, and present `role`'s client certificate.
pub fn conninfo_params(node_root: &Path, role: Role) -> String {
    let dir = dir(node_root);
    format!(
        "sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
        dir.join("ca.crt").display(),
        dir.join(format!("{}.crt", role.file_stem())).display(),
        dir.join(format!("{}.key", role.file_stem())).display(),
    )
}

/// Writes the CA and both client certificates (keys 0600, owned by the
/// PostgreSQL user). Idempotent: files already holding the text are left.
pub fn write_client_files(
    node_root: &Path,
    tls: &PgClientTls,
    user: &super::user::PgUser,
) -> anyhow::Result<()> {
    let dir = dir(node_root);
    if !dir.exists() {
        std::fs::create_dir_all(&dir)?;
        user.own(&dir)?;
    }
    let files = [
        ("ca.crt", &tls.ca_pem),
        ("pgfleet.crt", &tls.superuser_cert_pem),
        ("pgfleet.key", &tls.superuser_key_pem),
        ("replication.crt", &tls.replication_cert_pem),
        ("replication.key", &tls.replication_key_pem),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            super::conf::write_owned(&path, text, user)?;
        }
    }
    Ok(())
}

/// The TLS connector for the agent's own TCP connections as `pgfleet`.
pub fn superuser_connector(
    tls: &PgClientTls,
) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    pgfleet_tls::postgres_tls(
        &tls.ca_pem,
        Some((&tls.superuser_cert_pem, &tls.superuser_key_pem)),
    )
}
