//! Property tests of the `Authorization` header parsing (`bearer`) and of the
//! constant-time comparison of token hashes (`same`).

use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderValue;
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::{bearer, same};

fn request_with(values: &[HeaderValue]) -> Request {
    let mut request = Request::new(axum::body::Body::empty());
    for value in values {
        request.headers_mut().append(AUTHORIZATION, value.clone());
    }
    request
}

/// Header values: noise, and `Bearer` lookalikes (case, spacing, other schemes).
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        (
            prop::sample::select(vec![
                "Bearer ", "bearer ", "Bearer", "Bearer  ", "Basic ", " Bearer ", ""
            ]),
            prop::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(scheme, token)| [scheme.as_bytes(), &token].concat()),
    ]
}

proptest! {
    #![proptest_config(Config { cases: 256, ..Config::default() })]

    /// Arbitrary header bytes: no panic; a token is returned exactly when the first
    /// `Authorization` header is visible ASCII starting with `Bearer `, and it is the
    /// rest of that header.
    #[test]
    fn bearer_reads_only_the_bearer_scheme(
        first in header_bytes(),
        second in prop::option::of(header_bytes()),
    ) {
        let mut values = Vec::new();
        for bytes in std::iter::once(&first).chain(second.as_ref()) {
            if let Ok(value) = HeaderValue::from_bytes(bytes) {
                values.push(value);
            }
        }
        let request = request_with(&values);
        let expected = values
            .first()
            .and_then(|v| v.to_str().ok())
            .and_then(|text| text.strip_prefix("Bearer "));
        prop_assert_eq!(bearer(&request), expected);
    }

    /// Every token of visible characters in a well-formed header comes back unchanged.
    #[test]
    fn bearer_tokens_come_back(token in "[!-~]{0,64}") {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let request = request_with(&[value]);
        prop_assert_eq!(bearer(&request), Some(token.as_str()));
    }

    /// The hash comparison is string equality.
    #[test]
    fn same_is_equality(a in "[0-9a-f]{0,64}", b in "[0-9a-f]{0,64}") {
        prop_assert_eq!(same(&a, &b), a == b);
        prop_assert!(same(&a, &a));
    }
}
