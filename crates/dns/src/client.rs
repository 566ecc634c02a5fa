//! A minimal stub DNS client (UDP and TCP) used by tests, the CLI and benchmarks.
//!
//! It sends one question and waits for the matching response; it does no retries,
//! caching or recursion.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::answer::MAX_UDP_PAYLOAD;
use crate::zone::parse_fqdn;
use crate::{DnsError, Transport};

/// Asks `server` for A records of `name` over UDP (retrying over TCP if the answer is
/// truncated), within `timeout`. Returns the addresses (empty on NXDOMAIN or NODATA) and
/// the response code.
pub async fn query_a(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<(Vec<Ipv4Addr>, ResponseCode), DnsError> {
    let request = build_query(name, RecordType::A)?;
    let mut response = query_udp(server, &request, timeout).await?;
    if response.truncation {
        response = query_tcp(server, &request, timeout).await?;
    }
    let addrs = response
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    Ok((addrs, response.response_code))
}

/// Sends a question for `name`/`qtype` over `transport` and returns the whole response.
pub async fn query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    transport: Transport,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let request = build_query(name, qtype)?;
    match transport {
        Transport::Udp => query_udp(server, &request, timeout).await,
        Transport::Tcp => query_tcp(server, &request, timeout).await,
    }
}

/// Builds a query message (random id, EDNS advertising [`MAX_UDP_PAYLOAD`]).
pub fn build_query(name: &str, qtype: RecordType) -> Result<Message, DnsError> {
    let mut request = Message::query();
    request.add_query(Query::query(parse_fqdn(name)?, qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    request.set_edns(edns);
    Ok(request)
}

/// Sends `request` in one UDP datagram and waits for the response with the same id.
/// Datagrams that do not decode or do not match are ignored.
pub async fn query_udp(
    server: SocketAddr,
    request: &Message,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let bytes = request.to_vec()?;
    let exchange = async {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let io = |context| {
            move |source| DnsError::Io {
                context,
                server,
                source,
            }
        };
        let socket = UdpSocket::bind(local).await.map_err(io("binding"))?;
        socket.connect(server).await.map_err(io("connecting"))?;
        socket.send(&bytes).await.map_err(io("sending"))?;
        let mut buf = vec![0u8; 65535];
        loop {
            let len = socket.recv(&mut buf).await.map_err(io("receiving"))?;
            match Message::from_vec(&buf[..len]) {
                Ok(response) if matches(request, &response) => return Ok(response),
                Ok(_) => tracing::debug!(%server, "ignoring unrelated DNS response"),
                Err(err) => {
                    tracing::debug!(%server, error = %err, "ignoring undecodable DNS response")
                }
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| DnsError::Timeout { server, timeout })?
}

/// Sends `request` over a fresh TCP connection and reads one response.
pub async fn query_tcp(
    server: SocketAddr,
    request: &Message,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let bytes = request.to_vec()?;
    let answer = exchange_tcp(server, &bytes, timeout).await?;
    let response = Message::from_vec(&answer)?;
    if !matches(request, &response) {
        return Err(DnsError::BadResponse {
            server,
            reason: "response does not match the request",
        });
    }
    Ok(response)
}

/// One length-prefixed request and answer on a fresh TCP connection
/// (RFC 7766 framing), within `timeout`.
pub(crate) async fn exchange_tcp(
    server: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, DnsError> {
    let len = u16::try_from(request.len()).map_err(|_| DnsError::BadResponse {
        server,
        reason: "message too large for TCP framing",
    })?;
    let exchange = async {
        let io = |context| {
            move |source| DnsError::Io {
                context,
                server,
                source,
            }
        };
        let mut stream = TcpStream::connect(server).await.map_err(io("connecting"))?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(request);
        stream.write_all(&framed).await.map_err(io("sending"))?;
        let mut prefix = [0u8; 2];
        stream
            .read_exact(&mut prefix)
            .await
            .map_err(io("receiving"))?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream
            .read_exact(&mut answer)
            .await
            .map_err(io("receiving"))?;
        Ok(answer)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| DnsError::Timeout { server, timeout })?
}

/// Whether `response` answers `request`: same id, a response, same question.
fn matches(request: &Message, response: &Message) -> bool {
    response.id == request.id
        && response.message_type == hickory_proto::op::MessageType::Response
        && response.queries == request.queries
}
