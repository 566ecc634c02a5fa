//! Pure query → response logic for the authoritative zone (no I/O, no async).
//!
//! [`respond`] works on decoded messages; [`respond_bytes`] wraps it with decoding, encoding
//! and UDP size limits and is what the UDP and TCP listeners call.

use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::zone::{normalize, ZoneData, ZoneHandle};
use crate::Transport;

/// Largest UDP payload we advertise and send with EDNS (the DNS Flag Day 2020 value).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Largest UDP payload without EDNS (RFC 1035).
const CLASSIC_UDP_PAYLOAD: u16 = 512;
/// SOA timers; there are no secondaries, so they only need to be plausible.
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 86400;

/// Decodes `request`, answers it and encodes the response, truncating it (TC bit) if it
/// does not fit the UDP payload size negotiated by the client.
///
/// Returns `None` when the packet must be ignored: it could not be decoded, or it is not a
/// query (e.g. a stray response), or the response could not be encoded.
pub fn respond_bytes(
    zone: &ZoneHandle,
    request: &[u8],
    transport: Transport,
    peer: SocketAddr,
) -> Option<Vec<u8>> {
    let request = match Message::from_vec(request) {
        Ok(message) => message,
        Err(err) => {
            tracing::debug!(%peer, ?transport, error = %err, "ignoring undecodable DNS message");
            return None;
        }
    };
    let response = respond(zone, &request)?;
    zone.count_answer(response.response_code);
    if let Some(q) = response.queries.first() {
        tracing::debug!(
            %peer, ?transport, id = request.id, name = %q.name, qtype = %q.query_type,
            rcode = %response.response_code, answers = response.answers.len(),
            "DNS query"
        );
    }
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => usize::from(request.edns.as_ref().map_or(CLASSIC_UDP_PAYLOAD, |e| {
            e.max_payload().clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
        })),
    };
    encode(&response, limit)
}

fn encode(response: &Message, limit: usize) -> Option<Vec<u8>> {
    let encoded = response
        .to_vec()
        .and_then(|bytes| {
            if bytes.len() <= limit {
                Ok(bytes)
            } else {
                // Header, question and OPT only, with TC set: the client retries over TCP.
                response.truncate().to_vec()
            }
        })
        .inspect_err(|err| tracing::debug!(error = %err, "failed to encode DNS response"));
    encoded.ok()
}

/// Answers one decoded request. Returns `None` if the message is not a query.
pub fn respond(zone: &ZoneHandle, request: &Message) -> Option<Message> {
    if request.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.id, request.op_code);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.add_queries(request.queries.iter().cloned());
    if let Some(edns) = &request.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(MAX_UDP_PAYLOAD).set_version(0);
        response.set_edns(ours);
        if edns.version() > 0 {
            response.metadata.response_code = ResponseCode::BADVERS;
            return Some(response);
        }
    }
    let rcode = match (request.op_code, request.queries.as_slice()) {
        (OpCode::Query, [query]) => answer_query(zone, query, &mut response),
        (OpCode::Query, _) => ResponseCode::FormErr,
        _ => ResponseCode::NotImp,
    };
    response.metadata.response_code = rcode;
    Some(response)
}

/// Fills the answer/authority/additional sections for one question and returns the rcode.
fn answer_query(zone: &ZoneHandle, query: &Query, response: &mut Message) -> ResponseCode {
    let qtype = query.query_type;
    let qname = &query.name;
    if !matches!(query.query_class, DNSClass::IN | DNSClass::ANY)
        || !zone.origin().zone_of(qname)
        || matches!(qtype, RecordType::AXFR | RecordType::IXFR)
    {
        return ResponseCode::Refused;
    }
    response.metadata.authoritative = true;
    let data = zone.current();
    let key = normalize(&qname.to_ascii());
    if !data.names.contains(&key) {
        response.add_authority(soa_record(zone, &data));
        return ResponseCode::NXDomain;
    }

    let ttl = zone.ttl();
    let wants = |t: RecordType| qtype == t || qtype == RecordType::ANY;
    if wants(RecordType::A) {
        for ip in data.records.a.get(&key).into_iter().flatten() {
            response.add_answer(Record::from_rdata(qname.clone(), ttl, RData::A(A(*ip))));
        }
    }
    if key == zone.zone_str() {
        if wants(RecordType::SOA) {
            response.add_answer(soa_record(zone, &data));
        }
        if wants(RecordType::NS) {
            let ns = ns_name(zone);
            response.add_answer(Record::from_rdata(
                qname.clone(),
                ttl,
                RData::NS(NS(ns.clone())),
            ));
            // Glue for the name server if the zone has an address for it.
            let ns_key = normalize(&ns.to_ascii());
            for ip in data.records.a.get(&ns_key).into_iter().flatten() {
                response.add_additional(Record::from_rdata(ns.clone(), ttl, RData::A(A(*ip))));
            }
        }
    }
    if response.answers.is_empty() {
        // NODATA: the name exists but has no record of this type.
        response.add_authority(soa_record(zone, &data));
    }
    ResponseCode::NoError
}

/// `ns1.<zone>.`
fn ns_name(zone: &ZoneHandle) -> Name {
    prefixed(zone, "ns1")
}

fn prefixed(zone: &ZoneHandle, label: &str) -> Name {
    // The zone is a valid name and `label` a valid label, so this cannot fail in practice.
    Name::from_ascii(label)
        .and_then(|l| l.append_domain(zone.origin()))
        .unwrap_or_else(|_| zone.origin().clone())
}

/// The zone's SOA record; its TTL and minimum are the zone TTL (negative caching TTL).
fn soa_record(zone: &ZoneHandle, data: &ZoneData) -> Record {
    let soa = SOA::new(
        ns_name(zone),
        prefixed(zone, "hostmaster"),
        // Serial is 32 bits on the wire; truncation is intended.
        data.records.generation as u32,
        SOA_REFRESH,
        SOA_RETRY,
        SOA_EXPIRE,
        zone.ttl(),
    );
    Record::from_rdata(zone.origin().clone(), zone.ttl(), RData::SOA(soa))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::MessageType;

    fn request(name: &str, qtype: RecordType) -> Message {
        let mut message = Message::query();
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        message
    }

    fn zone() -> ZoneHandle {
        ZoneHandle::new("pgfleet.internal", 1)
    }

    #[test]
    fn protocol_errors() {
        let zone = zone();
        let mut two = request("a.pgfleet.internal.", RecordType::A);
        two.add_query(Query::query(Name::root(), RecordType::A));
        assert_eq!(
            respond(&zone, &two).unwrap().response_code,
            ResponseCode::FormErr
        );

        let mut notify = request("pgfleet.internal.", RecordType::SOA);
        notify.metadata.op_code = OpCode::Notify;
        let response = respond(&zone, &notify).unwrap();
        assert_eq!(response.response_code, ResponseCode::NotImp);

        let mut edns1 = request("pgfleet.internal.", RecordType::SOA);
        let mut edns = Edns::new();
        edns.set_version(1);
        edns1.set_edns(edns);
        let response = respond(&zone, &edns1).unwrap();
        assert_eq!(response.response_code, ResponseCode::BADVERS);
        assert!(response.edns.is_some());

        let axfr = request("pgfleet.internal.", RecordType::AXFR);
        assert_eq!(
            respond(&zone, &axfr).unwrap().response_code,
            ResponseCode::Refused
        );

        let mut chaos = request("version.pgfleet.internal.", RecordType::TXT);
        chaos.queries[0].query_class = DNSClass::CH;
        assert_eq!(
            respond(&zone, &chaos).unwrap().response_code,
            ResponseCode::Refused
        );
    }

    #[test]
    fn responses_and_garbage_are_ignored() {
        let zone = zone();
        let mut response = request("pgfleet.internal.", RecordType::SOA);
        response.metadata.message_type = MessageType::Response;
        assert!(respond(&zone, &response).is_none());
        let peer = SocketAddr::from(([127, 0, 0, 1], 53));
        let bytes = response.to_vec().unwrap();
        assert!(respond_bytes(&zone, &bytes, Transport::Udp, peer).is_none());
        assert!(respond_bytes(&zone, &[1, 2, 3], Transport::Tcp, peer).is_none());
    }

    #[test]
    fn ns_query_adds_glue_when_known() {
        let zone = zone();
        let mut a = std::collections::BTreeMap::new();
        a.insert(
            "ns1.pgfleet.internal".to_string(),
            vec![std::net::Ipv4Addr::LOCALHOST],
        );
        zone.replace(crate::ZoneRecords { generation: 1, a });
        let response = respond(&zone, &request("pgfleet.internal.", RecordType::NS)).unwrap();
        assert_eq!(response.answers.len(), 1);
        assert_eq!(response.additionals.len(), 1);
    }
}
