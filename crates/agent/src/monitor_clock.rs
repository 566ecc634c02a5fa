//! The monitor's clock. The HA core takes time as input and requires it to
//! come from one monotonic clock (`pgfleet_ha`, "now_ms must come from one
//! monotonic clock"): on the wall clock a step (NTP, an operator, a VM
//! resumed) could fire a failover at once or hold one back. These are
//! milliseconds since the agent process started, on `std::time::Instant`.

use std::sync::OnceLock;
use std::time::Instant;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Monotonic milliseconds for the HA core: never decrease, unaffected by
/// changes of the wall clock, meaningless outside this process (a restarted
/// monitor calls `pgfleet_ha::after_restart`, which restarts every timer).
pub fn now_ms() -> u64 {
    u64::try_from(origin().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The wall-clock time (ms since the Unix epoch) of a reading of [`now_ms`],
/// for the history a user reads (when a failover was detected).
pub fn wall_ms(monotonic_ms: u64) -> i64 {
    let age = i64::try_from(now_ms().saturating_sub(monotonic_ms)).unwrap_or(i64::MAX);
    pgfleet_core::time::now_ms().saturating_sub(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The core is fed monotonic time, not wall-clock time: readings never
    /// go back, follow `Instant`, and are far from the epoch milliseconds
    /// the monitor used to feed it (which a clock step moves).
    #[test]
    fn the_monitor_clock_is_monotonic_not_the_wall_clock() {
        let wall_before = pgfleet_core::time::now_ms();
        let first = now_ms();
        let started = Instant::now();
        let mut last = first;
        while started.elapsed() < std::time::Duration::from_millis(20) {
            let reading = now_ms();
            assert!(reading >= last, "the clock went back: {last} -> {reading}");
            last = reading;
        }
        // Read once more after the 20 ms: the loop's last reading may be
        // from just before they were up (that race failed the test once).
        let last = now_ms();
        assert!(last >= first + 20, "{first} -> {last} over 20 ms");
        let a_day_ms = 86_400_000;
        assert!(
            first < a_day_ms,
            "{first} is not time since the process started (the wall clock reads {wall_before})"
        );
        let detected = wall_ms(first);
        assert!(detected >= wall_before - 1000 && detected <= pgfleet_core::time::now_ms());
    }
}
