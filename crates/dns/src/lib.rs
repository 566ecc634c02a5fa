//! `pgfleet-dns`: a small authoritative DNS server for one zone (e.g. `pgfleet.internal`).
//!
//! The control plane keeps a [`ZoneHandle`] and calls [`ZoneHandle::replace`] whenever
//! cluster metadata changes; the very next query sees the new records. The server speaks
//! plain DNS over UDP and TCP (RFC 1035 / RFC 7766 framing) using only `hickory-proto` for
//! the wire format.
//!
//! Modules:
//! - [`zone`]: the record store shared between the control plane and the server;
//! - [`answer`]: pure query → response logic (no I/O);
//! - [`server`] / `tcp`: the UDP and TCP listeners;
//! - `counts`: answers given, by response code (for metrics);
//! - [`client`]: a tiny stub client used by tests, the CLI and benchmarks;
//! - [`update`] / `key`: RFC 2136 dynamic updates signed with TSIG (the key file in
//!   BIND's format), to feed the zone to an external authoritative server.

pub mod answer;
pub mod client;
mod counts;
mod key;
pub mod server;
mod tcp;
pub mod update;
pub mod zone;

use std::net::SocketAddr;
use std::time::Duration;

pub use client::{query, query_a, query_tcp, query_udp};
pub use hickory_proto::op::ResponseCode;
pub use server::{bind, serve, DnsServer, DEFAULT_TCP_IDLE_TIMEOUT};
pub use zone::{ZoneHandle, ZoneRecords};

/// The transport a DNS message travels over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// One message per datagram, size-limited (truncation sets TC).
    Udp,
    /// Messages framed with a 2-byte big-endian length prefix (RFC 1035 §4.2.2, RFC 7766).
    Tcp,
}

/// Errors returned by this crate.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A UDP or TCP socket could not be bound.
    #[error("failed to bind DNS {proto} socket on {addr}")]
    Bind {
        /// `"UDP"` or `"TCP"`.
        proto: &'static str,
        /// The address we tried to bind.
        addr: SocketAddr,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The zone or a queried name is not a valid DNS name.
    #[error("invalid DNS name {name:?}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Why hickory rejected it.
        #[source]
        source: hickory_proto::ProtoError,
    },
    /// Network I/O failed while talking to a DNS server.
    #[error("DNS I/O error while {context} ({server})")]
    Io {
        /// What we were doing.
        context: &'static str,
        /// The server we were talking to.
        server: SocketAddr,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No answer arrived in time.
    #[error("DNS query to {server} timed out after {timeout:?}")]
    Timeout {
        /// The server that did not answer.
        server: SocketAddr,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// A message could not be encoded.
    #[error("failed to encode DNS message")]
    Encode(#[from] hickory_proto::ProtoError),
    /// A response could not be decoded.
    #[error("failed to decode DNS response")]
    Decode(#[from] hickory_proto::serialize::binary::DecodeError),
    /// The server sent something that is not a valid answer to our query.
    #[error("invalid DNS response from {server}: {reason}")]
    BadResponse {
        /// The server that answered.
        server: SocketAddr,
        /// What was wrong with it.
        reason: &'static str,
    },
}
