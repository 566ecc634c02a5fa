//! Shared helpers for the integration tests: a real server on 127.0.0.1:0 and small
//! record-building shortcuts.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use pgfleet_dns::{DnsServer, ZoneHandle, ZoneRecords};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const ZONE: &str = "pgfleet.internal";
pub const PRIMARY: &str = "primary.pg-dev-db-1.pgfleet.internal";
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A running server; cancelled when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub zone: ZoneHandle,
    pub cancel: CancellationToken,
    pub task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|server| server).await
    }

    pub async fn start_with(configure: impl FnOnce(DnsServer) -> DnsServer) -> TestServer {
        let zone = ZoneHandle::new(ZONE, 1);
        assert!(zone.replace(records(1, &[(PRIMARY, &[[10, 0, 0, 1]])])));
        let server = pgfleet_dns::bind("127.0.0.1:0".parse().unwrap(), zone.clone())
            .await
            .expect("bind");
        let addr = server.local_addr();
        let server = configure(server);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server.run(cancel.clone()));
        TestServer {
            addr,
            zone,
            cancel,
            task: Some(task),
        }
    }

    /// Cancels the server and waits for it to stop.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(TIMEOUT, task)
            .await
            .expect("server did not stop after cancel")
            .expect("server task panicked");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Builds a [`ZoneRecords`] from `(name, [addresses])` pairs.
pub fn records(generation: u64, entries: &[(&str, &[[u8; 4]])]) -> ZoneRecords {
    let a: BTreeMap<String, Vec<Ipv4Addr>> = entries
        .iter()
        .map(|(name, ips)| {
            (
                name.to_string(),
                ips.iter().map(|ip| Ipv4Addr::from(*ip)).collect(),
            )
        })
        .collect();
    ZoneRecords { generation, a }
}
