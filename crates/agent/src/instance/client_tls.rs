//! The host's PostgreSQL client certificates for this node: written next to
//! the data directory for libpq tools, and the connection parameters that
//! use them.

use pgfleet_core::protocol::InstanceSpec;

use super::{rejoin, Actor};

impl Actor {
    /// Writes the host's PostgreSQL client certificates next to the data
    /// directory (for libpq tools); idempotent.
    pub(super) fn ensure_client_tls(&self, spec: &InstanceSpec) {
        let Some(client) = rejoin::client_tls(spec) else {
            return;
        };
        if !self.paths.root.exists() {
            if let Err(error) = std::fs::create_dir_all(&self.paths.root)
                .map_err(anyhow::Error::from)
                .and_then(|()| self.user.own(&self.paths.root))
            {
                tracing::warn!(error = %format_args!("{error:#}"), "cannot create the node directory");
                return;
            }
        }
        if let Err(error) = crate::pg::tls::write_client_files(&self.paths.root, client, &self.user)
        {
            tracing::warn!(db = %spec.db, node = %spec.node, error = %format_args!("{error:#}"), "cannot write the client certificates");
        }
    }

    /// ` sslmode=verify-full …` for libpq connections as `role`, when the
    /// control plane gave client certificates; empty otherwise.
    pub(super) fn ssl_params(&self, spec: &InstanceSpec, role: crate::pg::tls::Role) -> String {
        match rejoin::client_tls(spec) {
            Some(_) => format!(
                " {}",
                crate::pg::tls::conninfo_params(&self.paths.root, role)
            ),
            None => String::new(),
        }
    }
}
