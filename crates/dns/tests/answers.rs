//! Answer semantics over real UDP sockets: A records, updates, NXDOMAIN/NODATA with SOA,
//! REFUSED outside the zone, case-insensitivity, apex SOA/NS and EDNS echo.

mod common;

use std::net::Ipv4Addr;

use common::{records, TestServer, PRIMARY, TIMEOUT};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, RecordType};
use pgfleet_dns::{query, query_a, Transport};

fn soa_of(message: &Message) -> &SOA {
    assert_eq!(message.authorities.len(), 1, "{message}");
    match &message.authorities[0].data {
        RData::SOA(soa) => soa,
        other => panic!("expected SOA in authority, got {other:?}"),
    }
}

async fn ask(server: &TestServer, name: &str, qtype: RecordType) -> Message {
    query(server.addr, name, qtype, Transport::Udp, TIMEOUT)
        .await
        .expect("query")
}

#[tokio::test]
async fn a_record_is_answered_authoritatively() {
    let server = TestServer::start().await;
    let response = ask(&server, PRIMARY, RecordType::A).await;
    assert_eq!(response.response_code, ResponseCode::NoError);
    assert!(response.authoritative);
    assert_eq!(response.answers.len(), 1);
    let answer = &response.answers[0];
    assert_eq!(answer.ttl, 1);
    assert_eq!(
        answer.name,
        Name::from_ascii(format!("{PRIMARY}.")).unwrap()
    );
    assert!(matches!(&answer.data, RData::A(a) if a.0 == Ipv4Addr::new(10, 0, 0, 1)));
    // The query carried EDNS, so the answer must too.
    assert!(response.edns.is_some());

    let (addrs, rcode) = query_a(server.addr, PRIMARY, TIMEOUT).await.unwrap();
    assert_eq!(addrs, vec![Ipv4Addr::new(10, 0, 0, 1)]);
    assert_eq!(rcode, ResponseCode::NoError);
    server.stop().await;
}

#[tokio::test]
async fn replace_is_visible_in_the_very_next_query() {
    let server = TestServer::start().await;
    let new = records(2, &[(PRIMARY, &[[10, 0, 0, 2], [10, 0, 0, 3]])]);
    assert!(server.zone.replace(new.clone()));
    assert_eq!(server.zone.snapshot(), new);
    let (addrs, _) = query_a(server.addr, PRIMARY, TIMEOUT).await.unwrap();
    assert_eq!(
        addrs,
        vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)]
    );

    // Same generation is not stale: it is applied too.
    assert!(server.zone.replace(records(2, &[])));
    let (addrs, rcode) = query_a(server.addr, PRIMARY, TIMEOUT).await.unwrap();
    assert!(addrs.is_empty());
    assert_eq!(rcode, ResponseCode::NXDomain);
}

#[tokio::test]
async fn stale_generation_is_ignored() {
    let server = TestServer::start().await;
    assert!(server
        .zone
        .replace(records(5, &[(PRIMARY, &[[10, 0, 0, 5]])])));
    assert!(!server
        .zone
        .replace(records(4, &[(PRIMARY, &[[10, 0, 0, 4]])])));
    assert_eq!(server.zone.snapshot().generation, 5);
    let (addrs, _) = query_a(server.addr, PRIMARY, TIMEOUT).await.unwrap();
    assert_eq!(addrs, vec![Ipv4Addr::new(10, 0, 0, 5)]);
}

#[tokio::test]
async fn unknown_name_is_nxdomain_with_soa() {
    let server = TestServer::start().await;
    let generation = (1u64 << 32) + 7; // serial is the generation truncated to 32 bits
    assert!(server
        .zone
        .replace(records(generation, &[(PRIMARY, &[[10, 0, 0, 1]])])));
    let response = ask(&server, "nope.pgfleet.internal", RecordType::A).await;
    assert_eq!(response.response_code, ResponseCode::NXDomain);
    assert!(response.authoritative);
    assert!(response.answers.is_empty());
    let soa = soa_of(&response);
    assert_eq!(
        soa.mname,
        Name::from_ascii("ns1.pgfleet.internal.").unwrap()
    );
    assert_eq!(
        soa.rname,
        Name::from_ascii("hostmaster.pgfleet.internal.").unwrap()
    );
    assert_eq!(soa.serial, 7);
    assert_eq!(soa.minimum, 1);
    assert_eq!(
        response.authorities[0].name,
        Name::from_ascii("pgfleet.internal.").unwrap()
    );

    let (addrs, rcode) = query_a(server.addr, "nope.pgfleet.internal", TIMEOUT)
        .await
        .unwrap();
    assert!(addrs.is_empty());
    assert_eq!(rcode, ResponseCode::NXDomain);
}

#[tokio::test]
async fn other_type_and_empty_non_terminal_are_nodata_with_soa() {
    let server = TestServer::start().await;
    for (name, qtype) in [
        (PRIMARY, RecordType::AAAA),
        (PRIMARY, RecordType::MX),
        ("pg-dev-db-1.pgfleet.internal", RecordType::A),
    ] {
        let response = ask(&server, name, qtype).await;
        assert_eq!(
            response.response_code,
            ResponseCode::NoError,
            "{name} {qtype}"
        );
        assert!(response.authoritative);
        assert!(response.answers.is_empty());
        soa_of(&response);
    }
}

#[tokio::test]
async fn names_outside_the_zone_are_refused() {
    let server = TestServer::start().await;
    for name in ["example.com", "notpgfleet.internal", "internal"] {
        let response = ask(&server, name, RecordType::A).await;
        assert_eq!(response.response_code, ResponseCode::Refused, "{name}");
        assert!(!response.authoritative);
        assert!(response.answers.is_empty());
    }
}

#[tokio::test]
async fn names_are_case_insensitive() {
    let server = TestServer::start().await;
    let (addrs, rcode) = query_a(server.addr, "PRIMARY.Pg-Dev-DB-1.PGFleet.Internal", TIMEOUT)
        .await
        .unwrap();
    assert_eq!(rcode, ResponseCode::NoError);
    assert_eq!(addrs, vec![Ipv4Addr::new(10, 0, 0, 1)]);

    // Upper-case keys given to `replace` are normalised too.
    assert!(server.zone.replace(records(
        2,
        &[("Replica.PG-Dev-DB-1.pgfleet.internal.", &[[10, 0, 0, 9]])]
    )));
    let (addrs, _) = query_a(server.addr, "replica.pg-dev-db-1.pgfleet.internal", TIMEOUT)
        .await
        .unwrap();
    assert_eq!(addrs, vec![Ipv4Addr::new(10, 0, 0, 9)]);
}

#[tokio::test]
async fn apex_answers_soa_and_ns() {
    let server = TestServer::start().await;
    let soa = ask(&server, "pgfleet.internal", RecordType::SOA).await;
    assert_eq!(soa.response_code, ResponseCode::NoError);
    assert!(soa.authoritative);
    assert!(matches!(&soa.answers[..], [r] if matches!(r.data, RData::SOA(_))));

    let ns = ask(&server, "PGFLEET.internal", RecordType::NS).await;
    assert_eq!(ns.response_code, ResponseCode::NoError);
    match &ns.answers[..] {
        [r] => match &r.data {
            RData::NS(ns) => assert_eq!(ns.0, Name::from_ascii("ns1.pgfleet.internal.").unwrap()),
            other => panic!("expected NS, got {other:?}"),
        },
        other => panic!("expected one NS answer, got {other:?}"),
    }
}

#[tokio::test]
async fn any_query_returns_the_a_records() {
    let server = TestServer::start().await;
    let response = ask(&server, PRIMARY, RecordType::ANY).await;
    assert_eq!(response.response_code, ResponseCode::NoError);
    assert_eq!(response.answers.len(), 1);
    assert!(matches!(response.answers[0].data, RData::A(_)));
}
