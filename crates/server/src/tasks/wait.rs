//! Waiting for agents: a task step that needs an observation waits for it
//! with a deadline, woken by every heartbeat.

use std::time::Duration;

use pgfleet_core::protocol::InstanceObserved;
use pgfleet_core::HostStatus;

use super::TaskError;
use crate::state::AppState;

pub enum Check<T> {
    Done(T),
    Fail(String),
    Wait,
}

/// Polls `check` on every observation change until it decides, or fails the
/// step after `timeout` with `what` in the message.
pub async fn until<T, F>(
    state: &AppState,
    timeout: Duration,
    what: &str,
    mut check: F,
) -> Result<T, TaskError>
where
    F: FnMut(&AppState) -> Check<T>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = state.observation_changed.notified();
        match check(state) {
            Check::Done(value) => return Ok(value),
            Check::Fail(message) => return Err(TaskError::Refused(message)),
            Check::Wait => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(TaskError::Refused(format!(
                "timed out after {}s waiting for {what}",
                timeout.as_secs()
            )));
        }
        let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
    }
}

/// The latest report of `node` of `db` on `host`, or `None` when the host
/// is not connected.
pub fn instance(
    state: &AppState,
    host: &str,
    db: &str,
    node: &str,
) -> (HostStatus, Option<InstanceObserved>) {
    let observed = state.observed.lock().expect("observed lock");
    let status = observed.host_status(host, state.host_timeout());
    (status, observed.instance(host, db, node).cloned())
}
