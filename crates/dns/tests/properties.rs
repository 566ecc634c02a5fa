//! Property tests of everything that turns bytes from the network into a DNS answer:
//! `answer::respond_bytes` over UDP and TCP on arbitrary and mutated packets, the
//! zone semantics (REFUSED outside, NXDOMAIN / NOERROR / NODATA inside) for random
//! names, the TCP connection's framing against a model built on `respond_bytes`, and
//! name parsing (`build_query`, `ZoneHandle::try_new`) on arbitrary strings.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use common::{TestServer, TIMEOUT, ZONE};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use pgfleet_dns::answer::{respond_bytes, MAX_UDP_PAYLOAD};
use pgfleet_dns::client::build_query;
use pgfleet_dns::zone::normalize;
use pgfleet_dns::{Transport, ZoneHandle, ZoneRecords};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CASES: u32 = 256;
/// Each TCP case opens a real connection; fewer cases keep the file fast.
const TCP_CASES: u32 = 64;
const CLASSIC_UDP_PAYLOAD: usize = 512;

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5353))
}

/// Labels drawn partly from a small pool, so that random query names often hit records.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("primary".to_string()),
        Just("pg-dev-db-1".to_string()),
        Just("replica".to_string()),
        Just("ns1".to_string()),
        "[a-z0-9][a-z0-9-]{0,8}",
    ]
}

/// Uppercases the letters selected by `mask` (DNS names are case-insensitive).
fn with_case(name: &str, mask: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// In-zone record owners (lowercase, no trailing dot), each with one to three addresses,
/// plus sometimes an owner outside the zone (which must never be served).
fn zone_records() -> impl Strategy<Value = ZoneRecords> {
    let owner = prop::collection::vec(label(), 1..=3).prop_map(|labels| {
        let mut name = labels.join(".");
        name.push('.');
        name.push_str(ZONE);
        name
    });
    let entry = (
        prop_oneof![9 => owner, 1 => Just("primary.example.com".to_string())],
        prop::collection::vec(any::<[u8; 4]>(), 1..=3),
    );
    (any::<u64>(), prop::collection::vec(entry, 0..6)).prop_map(|(generation, entries)| {
        let mut a: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
        for (name, ips) in entries {
            a.entry(name)
                .or_default()
                .extend(ips.into_iter().map(Ipv4Addr::from));
        }
        ZoneRecords { generation, a }
    })
}

/// Query names in the zone and outside it (siblings, parents, look-alike suffixes).
fn query_name() -> impl Strategy<Value = String> {
    let suffix = prop_oneof![
        6 => Just(ZONE.to_string()),
        1 => Just("internal".to_string()),
        1 => Just("example.com".to_string()),
        1 => Just("pgfleet.internal.evil".to_string()),
        1 => Just("xpgfleet.internal".to_string()),
        1 => Just(String::new()),
    ];
    (prop::collection::vec(label(), 0..=3), suffix).prop_map(|(labels, suffix)| {
        let mut parts = labels;
        if !suffix.is_empty() {
            parts.push(suffix);
        }
        format!("{}.", parts.join("."))
    })
}

fn query_type() -> impl Strategy<Value = RecordType> {
    prop::sample::select(vec![
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::MX,
        RecordType::CNAME,
        RecordType::SOA,
        RecordType::NS,
        RecordType::ANY,
        RecordType::AXFR,
        RecordType::IXFR,
    ])
}

/// A well-formed query message: one question, maybe EDNS.
fn query_message() -> impl Strategy<Value = Message> {
    (
        any::<u16>(),
        query_name(),
        any::<u64>(),
        query_type(),
        prop::option::of((any::<u16>(), 0u8..2)),
        any::<bool>(),
    )
        .prop_map(|(id, name, mask, qtype, edns, recursion)| {
            let mut message = Message::query();
            message.metadata.id = id;
            message.metadata.recursion_desired = recursion;
            let name = Name::from_ascii(with_case(&name, mask)).expect("generated names are valid");
            message.add_query(Query::query(name, qtype));
            if let Some((payload, version)) = edns {
                let mut ours = Edns::new();
                ours.set_max_payload(payload).set_version(version);
                message.set_edns(ours);
            }
            message
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Overwrite(usize, u8),
    Truncate(usize),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Overwrite(at, byte)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..32).prop_map(Mutation::Append),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        match mutation {
            Mutation::Overwrite(at, byte) if !bytes.is_empty() => {
                let len = bytes.len();
                bytes[at % len] = *byte;
            }
            Mutation::Overwrite(..) => {}
            Mutation::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Mutation::Append(extra) => bytes.extend_from_slice(extra),
        }
    }
    bytes
}

/// Packets a hostile or broken client may send: pure noise, or a valid query with a few
/// bytes flipped, cut or appended (mostly decodable, so the answering code is reached).
fn packet() -> impl Strategy<Value = Vec<u8>> {
    let valid = || query_message().prop_map(|m| m.to_vec().expect("generated queries encode"));
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..600),
        1 => valid(),
        3 => (valid(), prop::collection::vec(mutation(), 1..4))
            .prop_map(|(bytes, mutations)| mutate(bytes, &mutations)),
    ]
}

fn test_zone(records: ZoneRecords) -> ZoneHandle {
    let zone = ZoneHandle::new(ZONE, 30);
    zone.replace(records);
    zone
}

/// The most a response may weigh for this request over this transport.
fn size_limit(request: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => request.edns.as_ref().map_or(CLASSIC_UDP_PAYLOAD, |edns| {
            usize::from(edns.max_payload()).clamp(CLASSIC_UDP_PAYLOAD, usize::from(MAX_UDP_PAYLOAD))
        }),
    }
}

/// What `respond_bytes` must do with any packet: ignore undecodable ones and responses,
/// answer every decodable query with a decodable response that echoes its id and opcode,
/// fits the transport and carries one of the rcodes the server uses.
fn check_any_packet(
    zone: &ZoneHandle,
    bytes: &[u8],
    transport: Transport,
) -> Result<(), TestCaseError> {
    let answer = respond_bytes(zone, bytes, transport, peer());
    let request = match Message::from_vec(bytes) {
        Ok(request) => request,
        Err(_) => {
            prop_assert!(answer.is_none(), "answered an undecodable packet");
            return Ok(());
        }
    };
    if request.message_type != MessageType::Query {
        prop_assert!(answer.is_none(), "answered a message that is not a query");
        return Ok(());
    }
    let Some(answer) = answer else {
        return Err(TestCaseError::fail(format!(
            "no answer to a decodable query: {request:?}"
        )));
    };
    prop_assert!(answer.len() <= size_limit(&request, transport));
    let response = Message::from_vec(&answer)
        .map_err(|e| TestCaseError::fail(format!("our response does not decode: {e}")))?;
    prop_assert_eq!(response.message_type, MessageType::Response);
    prop_assert_eq!(response.id, request.id);
    prop_assert_eq!(response.op_code, request.op_code);
    // BADVERS and BADSIG share the value 16; the decoder names it BADSIG.
    let rcodes = [
        ResponseCode::NoError,
        ResponseCode::NXDomain,
        ResponseCode::Refused,
        ResponseCode::FormErr,
        ResponseCode::NotImp,
        ResponseCode::BADVERS,
    ];
    prop_assert!(
        rcodes
            .iter()
            .any(|r| u16::from(*r) == u16::from(response.response_code)),
        "unexpected rcode {:?}",
        response.response_code
    );
    // EDNS is echoed exactly when the client used it.
    prop_assert_eq!(response.edns.is_some(), request.edns.is_some());
    if !response.truncation {
        prop_assert_eq!(&response.queries, &request.queries);
    }
    if response.op_code != OpCode::Query || request.queries.len() != 1 {
        prop_assert!(response.answers.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: CASES, ..Config::default() })]

    /// Arbitrary and mutated packets over UDP and TCP: never a panic; undecodable packets
    /// and responses are ignored; every decodable query gets a well-formed response with
    /// its id, within the transport's size limit.
    #[test]
    fn any_packet_is_ignored_or_answered_well(records in zone_records(), bytes in packet()) {
        let zone = test_zone(records);
        check_any_packet(&zone, &bytes, Transport::Udp)?;
        check_any_packet(&zone, &bytes, Transport::Tcp)?;
    }

    /// Well-formed queries of random names: REFUSED outside the zone (and for zone
    /// transfers), NXDOMAIN with the SOA for names that do not exist, NOERROR for the
    /// apex, record owners and their ancestors (empty non-terminals), with exactly the
    /// zone's addresses for A and the SOA in the authority section when there is no data.
    #[test]
    fn zone_semantics_for_random_names(records in zone_records(), request in query_message()) {
        let zone = test_zone(records.clone());
        let bytes = request.to_vec().expect("generated queries encode");
        let answer = respond_bytes(&zone, &bytes, Transport::Udp, peer())
            .expect("a well-formed query is answered");
        let response = Message::from_vec(&answer).expect("our response decodes");
        prop_assert_eq!(response.id, request.id);
        prop_assert_eq!(response.message_type, MessageType::Response);
        prop_assert_eq!(response.queries.len(), 1);
        prop_assert_eq!(response.queries[0].name.to_ascii(), request.queries[0].name.to_ascii());

        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            prop_assert_eq!(u16::from(response.response_code), u16::from(ResponseCode::BADVERS));
            return Ok(());
        }
        let query = &request.queries[0];
        let qname = normalize(&query.name.to_ascii());
        let suffix = format!(".{ZONE}");
        let in_zone = qname == ZONE || qname.ends_with(&suffix);
        if !in_zone || matches!(query.query_type, RecordType::AXFR | RecordType::IXFR) {
            prop_assert_eq!(response.response_code, ResponseCode::Refused);
            prop_assert!(!response.authoritative);
            prop_assert!(response.answers.is_empty());
            prop_assert!(response.authorities.is_empty());
            return Ok(());
        }
        prop_assert!(response.authoritative);
        let exists = qname == ZONE
            || records.a.keys().any(|owner| {
                owner.ends_with(&suffix)
                    && (*owner == qname || owner.ends_with(&format!(".{qname}")))
            });
        let soa_in_authority = response.authorities.len() == 1
            && matches!(response.authorities[0].data, RData::SOA(_));
        if !exists {
            prop_assert_eq!(response.response_code, ResponseCode::NXDomain);
            prop_assert!(response.answers.is_empty());
            prop_assert!(soa_in_authority);
            return Ok(());
        }
        prop_assert_eq!(response.response_code, ResponseCode::NoError);
        let mut served: Vec<Ipv4Addr> = response
            .answers
            .iter()
            .filter_map(|r| match &r.data { RData::A(a) => Some(a.0), _ => None })
            .collect();
        served.sort();
        let mut expected: Vec<Ipv4Addr> =
            if matches!(query.query_type, RecordType::A | RecordType::ANY) {
                records.a.get(&qname).cloned().unwrap_or_default()
            } else {
                Vec::new()
            };
        expected.sort();
        prop_assert_eq!(served, expected);
        for record in &response.answers {
            prop_assert_eq!(record.ttl, 30);
        }
        if response.answers.is_empty() {
            prop_assert!(soa_in_authority, "NODATA without SOA");
        }
        let apex_types = matches!(query.query_type, RecordType::SOA | RecordType::NS | RecordType::ANY);
        if qname != ZONE && !apex_types {
            prop_assert!(response.answers.iter().all(|r| r.record_type() == RecordType::A));
        }
    }

    /// Case does not matter: a query and its lowercase twin get the same rcode and the
    /// same number of answers.
    #[test]
    fn answers_ignore_case(records in zone_records(), request in query_message()) {
        let zone = test_zone(records);
        let mut lower = request.clone();
        lower.queries[0].name = Name::from_ascii(request.queries[0].name.to_ascii().to_ascii_lowercase())
            .expect("lowercase of a valid name is valid");
        let ask = |message: &Message| {
            let bytes = message.to_vec().expect("encodes");
            let answer = respond_bytes(&zone, &bytes, Transport::Tcp, peer()).expect("answered");
            Message::from_vec(&answer).expect("decodes")
        };
        let (mixed, lowered) = (ask(&request), ask(&lower));
        prop_assert_eq!(mixed.response_code, lowered.response_code);
        prop_assert_eq!(mixed.answers.len(), lowered.answers.len());
        prop_assert_eq!(mixed.authorities.len(), lowered.authorities.len());
    }

    /// Classes other than IN and ANY are refused, whatever the name.
    #[test]
    fn other_classes_are_refused(request in query_message(), class in prop::sample::select(vec![DNSClass::CH, DNSClass::HS, DNSClass::NONE])) {
        let zone = test_zone(ZoneRecords::default());
        let mut request = request;
        request.set_edns(Edns::new());
        request.queries[0].query_class = class;
        let bytes = request.to_vec().expect("encodes");
        let answer = respond_bytes(&zone, &bytes, Transport::Udp, peer()).expect("answered");
        let response = Message::from_vec(&answer).expect("decodes");
        prop_assert_eq!(response.response_code, ResponseCode::Refused);
        prop_assert!(response.answers.is_empty());
    }

    /// Query-name parsing on arbitrary strings never panics; a parsed name is fully
    /// qualified and printing then re-parsing it gives the same name.
    #[test]
    fn query_names_parse_or_fail_cleanly(name in prop_oneof![any::<String>(), "[a-zA-Z0-9.\\\\*_ -]{0,80}"]) {
        if let Ok(query) = build_query(&name, RecordType::A) {
            let parsed = &query.queries[0].name;
            prop_assert!(parsed.is_fqdn());
            let printed = parsed.to_ascii();
            let again = Name::from_ascii(&printed).expect("a printed name parses");
            prop_assert_eq!(again.to_ascii(), printed);
        }
    }

    /// Valid host names always parse, and keep their spelling up to case and a final dot.
    #[test]
    fn valid_names_parse(labels in prop::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?", 1..6), dot in any::<bool>()) {
        let mut name = labels.join(".");
        if dot {
            name.push('.');
        }
        let query = build_query(&name, RecordType::A).expect("a valid host name parses");
        prop_assert_eq!(normalize(&query.queries[0].name.to_ascii()), normalize(&name));
    }

    /// Zone names from configuration: no panic; an accepted zone is stored normalised
    /// and answers NOERROR with its SOA at the apex.
    #[test]
    fn zone_names_parse_or_fail_cleanly(zone_name in prop_oneof![any::<String>(), "[a-zA-Z0-9.-]{0,40}"]) {
        let Ok(zone) = ZoneHandle::try_new(&zone_name, 5) else {
            return Ok(());
        };
        prop_assert_eq!(zone.zone(), normalize(&zone_name));
        let mut request = Message::query();
        request.metadata.id = 7;
        let apex = Name::from_ascii(zone.zone()).expect("the stored zone parses");
        request.add_query(Query::query(apex, RecordType::SOA));
        let answer = respond_bytes(&zone, &request.to_vec().expect("encodes"), Transport::Tcp, peer())
            .expect("answered");
        let response = Message::from_vec(&answer).expect("decodes");
        prop_assert_eq!(response.response_code, ResponseCode::NoError);
        prop_assert_eq!(response.answers.len(), 1);
    }
}

/// A piece of a TCP byte stream: a framed query, framed garbage, or unframed bytes that
/// break the framing.
#[derive(Debug, Clone)]
enum Chunk {
    Framed(Vec<u8>),
    Raw(Vec<u8>),
}

fn tcp_stream() -> impl Strategy<Value = Vec<u8>> {
    let chunk = prop_oneof![
        4 => packet().prop_map(Chunk::Framed),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(Chunk::Raw),
    ];
    prop::collection::vec(chunk, 0..6).prop_map(|chunks| {
        let mut bytes = Vec::new();
        for chunk in chunks {
            match chunk {
                Chunk::Framed(message) => {
                    let len = u16::try_from(message.len()).expect("packets are small");
                    bytes.extend_from_slice(&len.to_be_bytes());
                    bytes.extend_from_slice(&message);
                }
                Chunk::Raw(raw) => bytes.extend_from_slice(&raw),
            }
        }
        bytes
    })
}

/// What one TCP connection must do with `input` (RFC 1035 §4.2.2 framing on top of
/// `respond_bytes`): how many bytes the server reads before it stops, and the exact
/// bytes it writes back. It stops at the end of the input, at a zero length prefix or
/// at the first message it does not answer.
fn tcp_model(zone: &ZoneHandle, input: &[u8]) -> (usize, Vec<u8>) {
    let mut position = 0;
    let mut output = Vec::new();
    loop {
        let rest = &input[position..];
        if rest.len() < 2 {
            return (input.len(), output);
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if len == 0 {
            return (position + 2, output);
        }
        if rest.len() < 2 + len {
            return (input.len(), output);
        }
        position += 2 + len;
        let Some(answer) = respond_bytes(zone, &rest[2..2 + len], Transport::Tcp, peer()) else {
            return (position, output);
        };
        let answer_len = u16::try_from(answer.len()).expect("TCP answers fit a frame");
        output.extend_from_slice(&answer_len.to_be_bytes());
        output.extend_from_slice(&answer);
    }
}

/// Arbitrary byte streams over a real TCP connection: the server answers exactly as
/// the framing model says, closes the connection where the model stops, and keeps
/// serving other connections.
#[test]
fn tcp_connections_follow_the_framing_model() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let server = runtime.block_on(TestServer::start());
    let mut runner = TestRunner::new(Config {
        cases: TCP_CASES,
        ..Config::default()
    });
    runner
        .run(&tcp_stream(), |input| {
            let (consumed, expected) = tcp_model(&server.zone, &input);
            let received = runtime.block_on(async {
                let mut stream = TcpStream::connect(server.addr).await.expect("connect");
                // Send only what the server reads, so closing never races unread data (RST).
                stream.write_all(&input[..consumed]).await.expect("write");
                stream.shutdown().await.expect("shutdown");
                let mut received = Vec::new();
                tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut received))
                    .await
                    .expect("the server closes the connection")
                    .expect("read");
                received
            });
            prop_assert_eq!(received, expected);
            Ok(())
        })
        .unwrap();
    // The server survived all of it.
    let (addrs, rcode) = runtime
        .block_on(pgfleet_dns::query_a(server.addr, common::PRIMARY, TIMEOUT))
        .expect("the server still answers");
    assert_eq!(rcode, ResponseCode::NoError);
    assert_eq!(addrs, vec![Ipv4Addr::new(10, 0, 0, 1)]);
    runtime.block_on(server.stop());
}
