//! API errors: a code and a message for the user; internal causes are logged
//! once here, with their whole chain (`error_chain`), and never shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pgfleet_core::api::{ErrorBody, ErrorDetail};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

pub use pgfleet_core::errors::error_chain;

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message: message.into(),
        }
    }
    pub fn not_found(what: &str, name: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("{what} {name:?} not found"),
        }
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
        }
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
        }
    }
    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "missing or invalid token".into(),
        }
    }
    pub fn unauthorized_because(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
        }
    }
    /// A 500 for the user; `error` with all its causes goes to the log.
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
        let error = error.into();
        tracing::error!(error = %error_chain(error.as_ref()), "internal error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error; see the control plane log".into(),
        }
    }
}

impl From<pgfleet_store::StoreError> for ApiError {
    fn from(error: pgfleet_store::StoreError) -> Self {
        match error {
            pgfleet_store::StoreError::Duplicate { kind, name } => {
                ApiError::conflict(format!("{kind} {name:?} already exists"))
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    /// A store failure answered with a 500 is logged with its cause (the
    /// log said only "metadata store failed" before).
    #[test]
    fn an_internal_error_is_logged_with_its_cause() {
        let logged = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = logged.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        let cause =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = pgfleet_store::StoreError::Backend(sqlx::Error::Io(cause));
        let answer = tracing::subscriber::with_default(subscriber, || super::ApiError::from(error));
        assert_eq!(answer.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !answer.message.contains("refused"),
            "causes are not shown to users"
        );
        let text = String::from_utf8(logged.lock().expect("log").clone()).expect("utf-8");
        assert!(
            text.contains("metadata store failed") && text.contains("connection refused"),
            "{text}"
        );
    }

    struct LogSink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for LogSink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
