//! Error text for logs: an error and every cause below it. `%error` in a
//! log line prints only the top message ("metadata store failed"), which
//! hides the cause that says what to do.

/// `error` and each of its sources, `": "`-separated. For `anyhow` errors
/// `{error:#}` prints the same.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("metadata store failed")]
    struct Wrapped(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause() {
        let error = Wrapped(std::io::Error::other("disk full"));
        assert_eq!(
            super::error_chain(&error),
            "metadata store failed: disk full"
        );
    }
}
