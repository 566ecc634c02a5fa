//! RFC 2136 dynamic updates signed with TSIG (RFC 8945), to feed the zone's A
//! records to an external authoritative server (BIND, Active Directory DNS).
//!
//! - [`update_messages`]: pure; the UPDATE messages that make a set of names
//!   carry exactly the given addresses (per name: delete its A RRset, add the
//!   new ones), split when one message would grow too large;
//! - [`send_update`]: one exchange over TCP: sign with the key, send, check the
//!   answer's RCODE and the TSIG of the answer.
//!
//! The key file ([`TsigKey`]) is in `key.rs`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

pub use crate::key::{KeyAlgorithm, KeyFileError, TsigKey};
use crate::zone::parse_fqdn;
use crate::DnsError;

/// The A records one name must carry after the update; no address deletes
/// the name's A RRset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameChange {
    /// Fully qualified, without trailing dot.
    pub name: String,
    pub addresses: Vec<Ipv4Addr>,
}

/// Largest encoded update we build; more changes go into further messages.
/// Well under TCP's 64 KiB frame, leaving room for the TSIG record.
pub const MAX_UPDATE_BYTES: usize = 16 * 1024;

pub use crate::key::TSIG_FUDGE_SECS;

/// The UPDATE messages for `changes` in `zone` (the zone section's name),
/// records with `ttl`. Each name's change sits whole in one message: its A
/// RRset deleted (class ANY, RFC 2136 §2.5.2), then its addresses added.
pub fn update_messages(
    zone: &str,
    changes: &[NameChange],
    ttl: u32,
) -> Result<Vec<Message>, DnsError> {
    let origin = parse_fqdn(zone)?;
    let mut messages = Vec::new();
    let mut current: Option<(Message, usize)> = None;
    for change in changes {
        let name = parse_fqdn(&change.name)?;
        if !origin.zone_of(&name) {
            return Err(DnsError::InvalidName {
                name: change.name.clone(),
                source: format!("outside the updated zone {zone}").into(),
            });
        }
        // Owner name uncompressed + type, class, TTL, rdlength (10) per
        // record, 4 bytes of rdata per address.
        let owner_bytes = name.len() + 2 + 10;
        let change_bytes = owner_bytes * (1 + change.addresses.len()) + 4 * change.addresses.len();
        if let Some((message, size)) = current.take() {
            if size + change_bytes > MAX_UPDATE_BYTES {
                messages.push(message);
            } else {
                current = Some((message, size));
            }
        }
        let (message, size) = current.get_or_insert_with(|| (empty_update(&origin), 12 + 64));
        let mut delete = Record::from_rdata(name.clone(), 0, RData::Update0(RecordType::A));
        delete.dns_class = DNSClass::ANY;
        message.add_update(delete);
        for address in &change.addresses {
            message.add_update(Record::from_rdata(name.clone(), ttl, RData::A(A(*address))));
        }
        *size += change_bytes;
    }
    if let Some((message, _)) = current {
        messages.push(message);
    }
    Ok(messages)
}

fn empty_update(origin: &hickory_proto::rr::Name) -> Message {
    let mut message = Message::query();
    message.metadata.op_code = OpCode::Update;
    message.metadata.recursion_desired = false;
    let mut zone = Query::new();
    zone.set_name(origin.clone())
        .set_query_class(DNSClass::IN)
        .set_query_type(RecordType::SOA);
    message.add_zone(zone);
    message
}

/// Why an update was not applied.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// No answer, or the connection failed.
    #[error("no answer to the update")]
    Transport(#[source] DnsError),
    /// Signing the message failed (a key the signer does not support).
    #[error("signing the update with key {key} failed: {reason}")]
    Sign { key: String, reason: String },
    /// The server answered with an error RCODE.
    #[error("the server answered {}{}: {}", rcode_name(*.rcode), tsig_suffix(*.tsig_error), refusal_cause(*.rcode, *.tsig_error))]
    Refused {
        rcode: ResponseCode,
        /// The TSIG error the server put in its answer, if any.
        tsig_error: Option<TsigError>,
    },
    /// The answer's TSIG is missing or wrong: it may not come from the server.
    #[error("the answer's TSIG does not verify with the key: {reason}")]
    Unverified { reason: String },
}

fn tsig_suffix(error: Option<TsigError>) -> String {
    match error {
        Some(TsigError::BadSig) => " (TSIG BADSIG)".into(),
        Some(TsigError::BadKey) => " (TSIG BADKEY)".into(),
        Some(TsigError::BadTime) => " (TSIG BADTIME)".into(),
        Some(TsigError::BadTrunc) => " (TSIG BADTRUNC)".into(),
        Some(TsigError::Unknown(code)) => format!(" (TSIG error {code})"),
        None => String::new(),
    }
}

/// The RCODE's mnemonic, as BIND logs and `dig` prints it.
fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("RCODE {}", u16::from(other)),
    }
}

/// What a refusal means for the operator.
fn refusal_cause(rcode: ResponseCode, tsig_error: Option<TsigError>) -> &'static str {
    match (rcode, tsig_error) {
        (_, Some(TsigError::BadKey)) => {
            "the server does not know the key (name or algorithm differ from its key statement)"
        }
        (_, Some(TsigError::BadSig)) => {
            "the signature is wrong: the key's secret differs from the server's"
        }
        (_, Some(TsigError::BadTime)) => {
            "the clocks of this host and the server differ by more than the fudge (300 s)"
        }
        (ResponseCode::NotAuth, _) => "the server is not authoritative (primary) for the zone",
        (ResponseCode::Refused, _) => {
            "the server's policy refuses this key for the zone (allow-update / update-policy)"
        }
        (ResponseCode::NotZone, _) => "a name is outside the zone the server holds",
        (ResponseCode::ServFail, _) => "the server failed to apply it (see its log)",
        _ => "see the server's log",
    }
}

/// Signs `message` with `key`, sends it over TCP to `server` and waits up to
/// `timeout` for the answer; `Ok` only for NOERROR with a verified TSIG.
pub async fn send_update(
    server: SocketAddr,
    mut message: Message,
    key: &TsigKey,
    timeout: Duration,
) -> Result<(), UpdateError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let signer = key.signer();
    let sign_error = |reason: String| UpdateError::Sign {
        key: key.name().to_string(),
        reason,
    };
    let verifier = message
        .finalize(&signer, now)
        .map_err(|error| sign_error(error.to_string()))?;
    let bytes = message
        .to_vec()
        .map_err(|error| UpdateError::Transport(error.into()))?;
    let answer = crate::client::exchange_tcp(server, &bytes, timeout)
        .await
        .map_err(UpdateError::Transport)?;
    let response = Message::from_vec(&answer)
        .map_err(|error| UpdateError::Transport(DnsError::Decode(error)))?;
    if response.id != message.id
        || response.message_type != MessageType::Response
        || response.op_code != OpCode::Update
    {
        return Err(UpdateError::Transport(DnsError::BadResponse {
            server,
            reason: "the answer does not match the update",
        }));
    }
    if response.response_code != ResponseCode::NoError {
        return Err(UpdateError::Refused {
            rcode: response.response_code,
            tsig_error: response.signature().and_then(|tsig| tsig.data.error),
        });
    }
    let Some(mut verifier) = verifier else {
        return Err(sign_error("no verifier for the answer".into()));
    };
    verifier
        .verify(&answer)
        .map_err(|error| UpdateError::Unverified {
            reason: error.to_string(),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests;
