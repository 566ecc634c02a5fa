//! Transport behaviour over real sockets: TCP framing and pipelining, malformed input,
//! truncation with TCP fallback, EDNS presence, idle timeout, bind errors and shutdown.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{records, TestServer, PRIMARY, TIMEOUT};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use pgfleet_dns::{query, query_a, DnsError, Transport, ZoneHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// A plain query without EDNS, with a fixed id.
fn plain_query(id: u16, name: &str) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.add_query(Query::query(
        Name::from_ascii(format!("{name}.")).unwrap(),
        RecordType::A,
    ));
    message.to_vec().unwrap()
}

async fn udp_exchange(socket: &UdpSocket, packet: &[u8]) -> Message {
    socket.send(packet).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let len = tokio::time::timeout(TIMEOUT, socket.recv(&mut buf))
        .await
        .expect("no UDP answer")
        .unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

async fn connected_udp(server: &TestServer) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server.addr).await.unwrap();
    socket
}

async fn tcp_exchange(stream: &mut TcpStream, packet: &[u8]) -> Message {
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    stream.write_all(&framed).await.unwrap();
    let mut prefix = [0u8; 2];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut prefix))
        .await
        .expect("no TCP answer")
        .unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

/// Reads until EOF; the server must close the connection within [`TIMEOUT`].
async fn expect_closed(stream: &mut TcpStream) {
    let mut sink = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut sink))
        .await
        .expect("server did not close the connection")
        .ok();
}

#[tokio::test]
async fn tcp_query_works() {
    let server = TestServer::start().await;
    let response = query(server.addr, PRIMARY, RecordType::A, Transport::Tcp, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(response.response_code, ResponseCode::NoError);
    assert!(response.authoritative);
    assert_eq!(response.answers.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn tcp_connection_serves_several_queries() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for id in [1u16, 2, 3] {
        let response = tcp_exchange(&mut stream, &plain_query(id, PRIMARY)).await;
        assert_eq!(response.id, id);
        assert_eq!(response.answers.len(), 1);
    }
    let response = tcp_exchange(&mut stream, &plain_query(4, "x.pgfleet.internal")).await;
    assert_eq!(response.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn malformed_udp_packet_does_not_kill_the_server() {
    let server = TestServer::start().await;
    let socket = connected_udp(&server).await;
    for garbage in [&b""[..], b"\x00", b"\x12\x34\x01\x00\x00\x01", &[0xff; 300]] {
        socket.send(garbage).await.unwrap();
    }
    // Datagrams on one socket are handled in order, so this answer proves the garbage was
    // consumed (and ignored: the first datagram we get back answers the valid query).
    let response = udp_exchange(&socket, &plain_query(77, PRIMARY)).await;
    assert_eq!(response.id, 77);
    assert_eq!(response.answers.len(), 1);
    let (addrs, _) = query_a(server.addr, PRIMARY, TIMEOUT).await.unwrap();
    assert_eq!(addrs, vec![Ipv4Addr::new(10, 0, 0, 1)]);
    server.stop().await;
}

#[tokio::test]
async fn malformed_tcp_message_closes_only_that_connection() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(&[0, 5, 1, 2, 3, 4, 5]).await.unwrap();
    expect_closed(&mut stream).await;
    let response = query(server.addr, PRIMARY, RecordType::A, Transport::Tcp, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(response.answers.len(), 1);
}

#[tokio::test]
async fn udp_echoes_id_and_question_and_edns_only_when_asked() {
    let server = TestServer::start().await;
    let socket = connected_udp(&server).await;
    let response = udp_exchange(
        &socket,
        &plain_query(4242, "PRIMARY.pg-dev-db-1.pgfleet.internal"),
    )
    .await;
    assert_eq!(response.id, 4242);
    assert_eq!(response.queries.len(), 1);
    assert_eq!(
        response.queries[0].name.to_ascii(),
        "PRIMARY.pg-dev-db-1.pgfleet.internal."
    );
    assert!(response.edns.is_none());

    let with_edns = pgfleet_dns::client::build_query(PRIMARY, RecordType::A).unwrap();
    let response = udp_exchange(&socket, &with_edns.to_vec().unwrap()).await;
    assert_eq!(response.id, with_edns.id);
    assert!(response.edns.is_some());
}

#[tokio::test]
async fn large_udp_answer_is_truncated_and_query_a_falls_back_to_tcp() {
    let server = TestServer::start().await;
    let many: Vec<[u8; 4]> = (0..200u8).map(|i| [10, 1, 0, i]).collect();
    assert!(server.zone.replace(records(2, &[(PRIMARY, &many)])));

    let socket = connected_udp(&server).await;
    let response = udp_exchange(&socket, &plain_query(9, PRIMARY)).await;
    assert!(response.truncation);
    assert!(response.answers.is_empty());

    let (addrs, rcode) = query_a(server.addr, PRIMARY, TIMEOUT).await.unwrap();
    assert_eq!(rcode, ResponseCode::NoError);
    assert_eq!(addrs.len(), 200);
}

#[tokio::test]
async fn idle_tcp_connection_is_closed() {
    let server =
        TestServer::start_with(|s| s.with_tcp_idle_timeout(Duration::from_millis(100))).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    expect_closed(&mut stream).await;
    server.stop().await;
}

#[tokio::test]
async fn bind_error_names_the_address() {
    let server = TestServer::start().await;
    let zone = ZoneHandle::new("pgfleet.internal", 1);
    let err = pgfleet_dns::bind(server.addr, zone).await.unwrap_err();
    assert!(matches!(err, DnsError::Bind { addr, .. } if addr == server.addr));
    assert!(err.to_string().contains(&server.addr.to_string()), "{err}");
}

#[tokio::test]
async fn cancel_stops_the_server_with_open_connections() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // Make sure the connection is being served before cancelling.
    tcp_exchange(&mut stream, &plain_query(1, PRIMARY)).await;
    let addr = server.addr;
    server.stop().await;
    expect_closed(&mut stream).await;
    assert!(query_a(addr, PRIMARY, Duration::from_millis(200))
        .await
        .is_err());
}
