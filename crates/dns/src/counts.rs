//! Answers given, counted by response code: one atomic add per answer (for
//! the control plane's `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::ResponseCode;

/// The response codes the server gives (`answer::respond`), in this order.
const CODES: [(ResponseCode, &str); 6] = [
    (ResponseCode::NoError, "noerror"),
    (ResponseCode::NXDomain, "nxdomain"),
    (ResponseCode::Refused, "refused"),
    (ResponseCode::FormErr, "formerr"),
    (ResponseCode::NotImp, "notimp"),
    (ResponseCode::BADVERS, "badvers"),
];

#[derive(Debug, Default)]
pub struct AnswerCounts {
    counts: [AtomicU64; 7],
}

impl AnswerCounts {
    pub fn add(&self, code: ResponseCode) {
        let index = CODES
            .iter()
            .position(|(known, _)| *known == code)
            .unwrap_or(CODES.len());
        self.counts[index].fetch_add(1, Ordering::Relaxed);
    }

    /// `(code, answers)` for every code, `other` last.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let names = CODES.iter().map(|(_, name)| *name).chain(["other"]);
        names
            .zip(&self.counts)
            .map(|(name, count)| (name, count.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_code() {
        let counts = AnswerCounts::default();
        counts.add(ResponseCode::NoError);
        counts.add(ResponseCode::NoError);
        counts.add(ResponseCode::NXDomain);
        counts.add(ResponseCode::ServFail);
        let snapshot = counts.snapshot();
        assert_eq!(snapshot[0], ("noerror", 2));
        assert_eq!(snapshot[1], ("nxdomain", 1));
        assert_eq!(snapshot[6], ("other", 1));
    }
}
