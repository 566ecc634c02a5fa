//! The DNS listeners: binds UDP and TCP on one address and serves the zone until cancelled.
//!
//! [`bind`] + [`DnsServer::run`] let the caller learn bind errors before spawning the
//! server; [`serve`] does both in one call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::answer::respond_bytes;
use crate::{tcp, DnsError, Transport, ZoneHandle};

/// How long a TCP connection may stay silent (or stall mid-message) before it is closed.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on concurrent TCP connections; further connections are closed at once.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 512;
/// Receive buffer for UDP queries (larger datagrams are truncated and thus ignored).
const UDP_BUFFER: usize = 4096;
/// Pause after a failed `accept` (e.g. out of file descriptors) to avoid spinning.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// How many fresh ports to try when binding port 0 and the TCP side of it is taken.
const EPHEMERAL_BIND_ATTEMPTS: usize = 16;

/// A bound, not yet running, DNS server.
#[derive(Debug)]
pub struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    local_addr: SocketAddr,
    zone: ZoneHandle,
    tcp_idle_timeout: Duration,
    max_tcp_connections: usize,
}

/// Binds UDP and TCP on `addr` (same port for both, also when `addr` has port 0).
pub async fn bind(addr: SocketAddr, zone: ZoneHandle) -> Result<DnsServer, DnsError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| bind_error("UDP", addr, source))?;
        let local_addr = udp
            .local_addr()
            .map_err(|source| bind_error("UDP", addr, source))?;
        match TcpListener::bind(local_addr).await {
            Ok(tcp) => {
                tracing::info!(%local_addr, zone = %zone.zone(), "DNS server bound (UDP+TCP)");
                return Ok(DnsServer {
                    udp,
                    tcp,
                    local_addr,
                    zone,
                    tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
                    max_tcp_connections: DEFAULT_MAX_TCP_CONNECTIONS,
                });
            }
            // The OS picked a UDP port whose TCP twin is busy: try another one.
            Err(err)
                if addr.port() == 0
                    && err.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < EPHEMERAL_BIND_ATTEMPTS => {}
            Err(source) => return Err(bind_error("TCP", local_addr, source)),
        }
    }
}

/// Binds UDP and TCP on `addr` and serves until `cancel` fires.
pub async fn serve(
    addr: SocketAddr,
    zone: ZoneHandle,
    cancel: CancellationToken,
) -> Result<(), DnsError> {
    bind(addr, zone).await?.run(cancel).await;
    Ok(())
}

fn bind_error(proto: &'static str, addr: SocketAddr, source: std::io::Error) -> DnsError {
    DnsError::Bind {
        proto,
        addr,
        source,
    }
}

impl DnsServer {
    /// The address actually bound (useful with port 0); UDP and TCP share it.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sets the TCP idle timeout (default [`DEFAULT_TCP_IDLE_TIMEOUT`]).
    pub fn with_tcp_idle_timeout(mut self, timeout: Duration) -> Self {
        self.tcp_idle_timeout = timeout;
        self
    }

    /// Sets the maximum number of concurrent TCP connections (at least 1).
    pub fn with_max_tcp_connections(mut self, max: usize) -> Self {
        self.max_tcp_connections = max.max(1);
        self
    }

    /// Serves queries until `cancel` fires, then waits for open TCP connections to close.
    pub async fn run(self, cancel: CancellationToken) {
        let connections = TaskTracker::new();
        tokio::join!(
            udp_loop(&self.udp, &self.zone, &cancel),
            self.tcp_loop(&connections, &cancel),
        );
        connections.close();
        connections.wait().await;
        tracing::info!(local_addr = %self.local_addr, "DNS server stopped");
    }

    async fn tcp_loop(&self, connections: &TaskTracker, cancel: &CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.max_tcp_connections));
        loop {
            let accepted = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                accepted = self.tcp.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "DNS TCP accept failed");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                    }
                }
            };
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                tracing::debug!(%peer, "too many DNS TCP connections, closing");
                continue;
            };
            let conn = tcp::Connection {
                peer,
                zone: self.zone.clone(),
                idle_timeout: self.tcp_idle_timeout,
                cancel: cancel.clone(),
            };
            connections.spawn(async move {
                conn.serve(stream).await;
                drop(permit);
            });
        }
    }
}

async fn udp_loop(socket: &UdpSocket, zone: &ZoneHandle, cancel: &CancellationToken) {
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let received = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            Err(err) => {
                tracing::debug!(error = %err, "DNS UDP receive failed");
                continue;
            }
        };
        let Some(response) = respond_bytes(zone, &buf[..len], Transport::Udp, peer) else {
            continue;
        };
        if let Err(err) = socket.send_to(&response, peer).await {
            tracing::debug!(%peer, error = %err, "DNS UDP send failed");
        }
    }
}
