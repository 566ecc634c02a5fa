//! The error of a setting a process refuses to start with (server and agent
//! validate their settings once, at start).

/// An invalid setting; the message names its command-line flag.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {value:?}: {reason}")]
pub struct SettingError {
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

impl SettingError {
    pub fn new(
        flag: &'static str,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> SettingError {
        SettingError {
            flag,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
