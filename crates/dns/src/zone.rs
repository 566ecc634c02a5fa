//! Zone data shared between the control plane (the writer) and the DNS server (the reader).
//!
//! A [`ZoneHandle`] is cheap to clone. Writers swap in a whole new [`ZoneRecords`] set with
//! [`ZoneHandle::replace`]; readers take an `Arc` of the current data under a short read lock,
//! so an update is visible to the very next query and never blocks on in-flight answers.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, PoisonError, RwLock};

use hickory_proto::rr::Name;

use crate::DnsError;

/// Records of the zone: fully-qualified names, lowercase, without trailing dot
/// (e.g. `"primary.pg-dev-db-1.pgfleet.internal"`) -> IPv4 addresses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ZoneRecords {
    /// Monotonic version of the data; updates with a lower generation are ignored.
    pub generation: u64,
    /// A records by owner name.
    pub a: BTreeMap<String, Vec<Ipv4Addr>>,
}

/// Immutable view of the zone used to answer one query.
#[derive(Debug, Default)]
pub(crate) struct ZoneData {
    pub(crate) records: ZoneRecords,
    /// Every name that exists inside the zone: the apex, record owners and their
    /// ancestors (empty non-terminals must answer NODATA, not NXDOMAIN; RFC 8020).
    pub(crate) names: HashSet<String>,
}

/// Shared handle on the zone; the control plane calls [`replace`](Self::replace) whenever
/// metadata changes and the very next query sees it.
#[derive(Clone, Debug)]
pub struct ZoneHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Normalised zone name (lowercase, no trailing dot).
    zone: String,
    /// The zone apex as a fully-qualified DNS name.
    origin: Name,
    ttl: u32,
    data: RwLock<Arc<ZoneData>>,
    answers: crate::counts::AnswerCounts,
}

impl ZoneHandle {
    /// Creates an empty zone (generation 0) such as `"pgfleet.internal"`, answering with
    /// `ttl_secs` as the TTL of every record.
    ///
    /// # Panics
    /// If `zone` is not a valid, non-root DNS name; use [`try_new`](Self::try_new) to get
    /// an error instead.
    pub fn new(zone: &str, ttl_secs: u32) -> ZoneHandle {
        match Self::try_new(zone, ttl_secs) {
            Ok(handle) => handle,
            Err(err) => panic!("invalid DNS zone {zone:?}: {err}"),
        }
    }

    /// Like [`new`](Self::new) but returns an error for an invalid zone name.
    pub fn try_new(zone: &str, ttl_secs: u32) -> Result<ZoneHandle, DnsError> {
        let zone = normalize(zone);
        let origin = parse_fqdn(&zone)?;
        if origin.is_root() {
            return Err(DnsError::InvalidName {
                name: zone,
                source: "the zone must not be the DNS root".into(),
            });
        }
        // Queries are matched on the printed name; a zone that prints differently from
        // its spelling (a stray `\`, `\065`) would answer NXDOMAIN for its own apex.
        if normalize(&origin.to_ascii()) != zone {
            return Err(DnsError::InvalidName {
                name: zone,
                source: "the zone must print as it is spelt (no escapes)".into(),
            });
        }
        let data = ZoneData::build(&zone, ZoneRecords::default());
        Ok(ZoneHandle {
            shared: Arc::new(Shared {
                zone,
                origin,
                ttl: ttl_secs,
                data: RwLock::new(Arc::new(data)),
                answers: Default::default(),
            }),
        })
    }

    /// Counts an answer given with `code`.
    pub fn count_answer(&self, code: hickory_proto::op::ResponseCode) {
        self.shared.answers.add(code);
    }

    /// Answers given since start, by response code.
    pub fn answer_counts(&self) -> Vec<(&'static str, u64)> {
        self.shared.answers.snapshot()
    }

    /// The zone name, lowercase and without trailing dot.
    pub fn zone(&self) -> String {
        self.shared.zone.clone()
    }

    /// The TTL given to every answer.
    pub fn ttl(&self) -> u32 {
        self.shared.ttl
    }

    /// Current generation of the records.
    pub fn generation(&self) -> u64 {
        self.current().records.generation
    }

    /// Replaces all records. Record names are normalised (lowercased, trailing dot removed).
    /// Ignores records whose generation is lower than the current one (stale update);
    /// returns whether they were applied.
    pub fn replace(&self, records: ZoneRecords) -> bool {
        // Build outside the lock; the write lock only covers the comparison and the swap.
        let generation = records.generation;
        let data = Arc::new(ZoneData::build(&self.shared.zone, records));
        let mut slot = self
            .shared
            .data
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let current = slot.records.generation;
        if generation < current {
            tracing::debug!(zone = %self.shared.zone, generation, current, "ignoring stale DNS zone update");
            return false;
        }
        *slot = data;
        tracing::debug!(zone = %self.shared.zone, generation, "DNS zone updated");
        true
    }

    /// A copy of the current records.
    pub fn snapshot(&self) -> ZoneRecords {
        self.current().records.clone()
    }

    pub(crate) fn zone_str(&self) -> &str {
        &self.shared.zone
    }

    pub(crate) fn origin(&self) -> &Name {
        &self.shared.origin
    }

    pub(crate) fn current(&self) -> Arc<ZoneData> {
        let slot = self
            .shared
            .data
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&slot)
    }
}

impl ZoneData {
    fn build(zone: &str, records: ZoneRecords) -> ZoneData {
        let a: BTreeMap<String, Vec<Ipv4Addr>> =
            records
                .a
                .into_iter()
                .fold(BTreeMap::new(), |mut acc, (name, addrs)| {
                    acc.entry(normalize(&name))
                        .or_insert_with(Vec::new)
                        .extend(addrs);
                    acc
                });
        let suffix = format!(".{zone}");
        let mut names = HashSet::with_capacity(a.len() * 2 + 1);
        names.insert(zone.to_string());
        for owner in a.keys() {
            if !owner.ends_with(&suffix) {
                continue; // outside the zone: never served
            }
            let mut name = owner.as_str();
            // Insert the owner and each ancestor until the apex (already present).
            while name.len() > zone.len() && names.insert(name.to_string()) {
                name = name.split_once('.').map_or(zone, |(_, rest)| rest);
            }
        }
        ZoneData {
            records: ZoneRecords {
                generation: records.generation,
                a,
            },
            names,
        }
    }
}

/// The generation (and so the SOA serial) of the next version of a zone
/// whose current one is `previous`: at least one more, and at least the unix
/// time in seconds, so a server that restarts from generation 0 (the control
/// plane) or from a saved one still moves its serial forward. Fits the
/// 32-bit serial until 2106.
pub fn next_serial(previous: u64, now_secs: u64) -> u64 {
    previous.saturating_add(1).max(now_secs)
}

/// The current unix time in seconds (0 if the clock is before 1970).
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Lowercases a name and strips a trailing dot: the form used as key in [`ZoneRecords`].
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Parses a (possibly relative-looking) name as fully qualified.
pub(crate) fn parse_fqdn(name: &str) -> Result<Name, DnsError> {
    let mut parsed = Name::from_ascii(name).map_err(|source| DnsError::InvalidName {
        name: name.to_string(),
        source,
    })?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_non_terminals_exist() {
        let zone = ZoneHandle::new("PGFleet.Internal.", 1);
        assert_eq!(zone.zone(), "pgfleet.internal");
        let mut a = BTreeMap::new();
        a.insert(
            "Primary.pg-dev-db-1.pgfleet.internal.".to_string(),
            vec![Ipv4Addr::LOCALHOST],
        );
        a.insert("other.example".to_string(), vec![Ipv4Addr::LOCALHOST]);
        assert!(zone.replace(ZoneRecords { generation: 1, a }));
        let data = zone.current();
        assert!(data.names.contains("primary.pg-dev-db-1.pgfleet.internal"));
        assert!(data.names.contains("pg-dev-db-1.pgfleet.internal"));
        assert!(data.names.contains("pgfleet.internal"));
        assert!(!data.names.contains("other.example"));
        assert_eq!(data.names.len(), 3);
        assert!(data
            .records
            .a
            .contains_key("primary.pg-dev-db-1.pgfleet.internal"));
    }

    /// The serial only moves forward: after a restart from 0 it jumps to the
    /// clock; many changes in one second still each get a new serial; a clock
    /// that went back does not move it back.
    #[test]
    fn the_serial_only_increases() {
        let now = 1_800_000_000;
        assert_eq!(next_serial(0, now), now);
        assert_eq!(next_serial(now, now), now + 1);
        assert_eq!(next_serial(now + 1, now), now + 2);
        assert_eq!(next_serial(now + 5, now - 100), now + 6);
        assert_eq!(next_serial(7, 0), 8);
        let mut serial = 0;
        for step in 0..100u64 {
            let next = next_serial(serial, now + step / 10);
            assert!(next > serial);
            assert!(next as u32 > serial as u32 || serial == 0);
            serial = next;
        }
    }

    #[test]
    fn invalid_zone_is_an_error() {
        assert!(ZoneHandle::try_new("", 1).is_err());
        assert!(ZoneHandle::try_new("a..b", 1).is_err());
        assert!(ZoneHandle::try_new("pgfleet\\", 1).is_err());
        assert!(ZoneHandle::try_new("\\065.internal", 1).is_err());
    }
}
