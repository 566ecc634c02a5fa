//! Serving an axum router over TLS (or plain TCP with `--insecure-http`):
//! accept, handshake (each in its own task so a slow client holds up
//! nobody), then hyper serves the connection (HTTP/1.1 or HTTP/2). Each
//! request carries the client's address (`ConnectInfo<SocketAddr>`) and the
//! fingerprint of the client's certificate, if it presented one (rustls has
//! verified it against the configured CA).
//!
//! Slow and idle clients cannot hold connections ([`HttpLimits`]): the TLS
//! handshake and each request's header must arrive within the header
//! timeout, a connection with no request in flight that moves no byte for
//! the idle timeout is closed, at most `max_connections` are open at once
//! (more are closed at once), and a header larger than `max_header_bytes`
//! is answered with 431. Request bodies an early answer leaves unread are
//! finished first (`early_answer`). Every accepted socket has TCP_NODELAY
//! set (Nagle's algorithm meeting the client's delayed ACKs cost ~40 ms per
//! request).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::activity::{Activity, Watched};

/// The verified client certificate of the connection a request came on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// SHA-256 of the DER, lower-case hex (see [`crate::fingerprint`]).
    pub fingerprint: String,
}

/// Limits on the connections of an HTTP endpoint (API and agent endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// The TLS handshake and each request's header must arrive within this.
    pub header_read_timeout: Duration,
    /// A connection without a request in flight that moves no byte for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Largest request header (HTTP/1.1 head, HTTP/2 header list); larger
    /// ones are answered with 431.
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Refused connections are logged at most this often (with a count).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// hyper's smallest HTTP/1.1 read buffer.
const MIN_HEADER_BYTES: usize = 8192;

fn builder(limits: &HttpLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES));
    // No HTTP/2 keep-alive pings: their answers would count as activity and
    // keep an idle connection open.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Serves `router` on `listener` until `cancel` fires; over TLS with
/// `tls`, plain HTTP without.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    limits: HttpLimits,
    cancel: CancellationToken,
) {
    let router = router.layer(axum::middleware::from_fn(
        crate::early_answer::finish_request_body,
    ));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let builder = Arc::new(builder(&limits));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    let mut refused: u64 = 0;
    let mut last_refusal_log: Option<std::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        // Answers are written in several small pieces (TLS records, HTTP/2
        // frames): with Nagle's algorithm the last one waits for the
        // client's delayed ACK, ~40 ms per request.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            refused += 1;
            if last_refusal_log.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_INTERVAL) {
                tracing::warn!(%peer, refused, max_connections = limits.max_connections, "connections refused: too many open connections");
                last_refusal_log = Some(std::time::Instant::now());
                refused = 0;
            }
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let builder = builder.clone();
        connections.spawn(async move {
            let _slot = slot;
            let activity = Activity::new();
            let socket = Watched {
                socket: stream,
                activity: activity.clone(),
            };
            let Some(acceptor) = acceptor else {
                let connection = Connection {
                    peer,
                    certificate: None,
                    activity,
                    limits,
                };
                return connection.serve(&builder, router, socket).await;
            };
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(socket));
            let Ok(Ok(tls)) = handshake.await else {
                return;
            };
            let certificate = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| PeerCertificate {
                    fingerprint: crate::fingerprint(cert.as_ref()),
                });
            let connection = Connection {
                peer,
                certificate,
                activity,
                limits,
            };
            connection.serve(&builder, router, tls).await;
        });
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
}

struct Connection {
    peer: SocketAddr,
    certificate: Option<PeerCertificate>,
    activity: Arc<Activity>,
    limits: HttpLimits,
}

impl Connection {
    /// Serves one connection until the client closes it, or it has been
    /// idle for the idle timeout (then it is shut down gracefully, and
    /// dropped if that takes longer than the header timeout).
    async fn serve<S>(self, builder: &Builder<TokioExecutor>, router: axum::Router, socket: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            certificate,
            activity,
            limits,
        } = self;
        let requests = activity.clone();
        let service =
            tower::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                if let Some(certificate) = &certificate {
                    request.extensions_mut().insert(certificate.clone());
                }
                let in_flight = requests.request();
                let router = router.clone();
                async move {
                    let response = router.oneshot(request).await;
                    drop(in_flight);
                    response
                }
            });
        let connection =
            builder.serve_connection(TokioIo::new(socket), TowerToHyperService::new(service));
        tokio::pin!(connection);
        let mut closing_since = None;
        loop {
            let wait = match closing_since {
                Some(_) => limits.header_read_timeout,
                None => limits
                    .idle_timeout
                    .saturating_sub(activity.idle_for())
                    .max(Duration::from_millis(50)),
            };
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if closing_since.is_some() {
                tracing::debug!(%peer, "connection dropped: it did not close in time");
                return;
            }
            if activity.idle_for() >= limits.idle_timeout {
                tracing::debug!(%peer, idle_timeout = ?limits.idle_timeout, "closing an idle connection");
                connection.as_mut().graceful_shutdown();
                closing_since = Some(tokio::time::Instant::now());
            }
        }
    }
}
