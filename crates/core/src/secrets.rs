//! Generation of passwords and tokens from a URL-safe alphabet, so that
//! connection URIs never need escaping.

use rand::Rng;

const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A random string of `len` characters from `[A-Za-z0-9]`.
pub fn random_token(len: usize) -> String {
    let mut rng = rand::rng();
    let mut out = String::with_capacity(len);
    for _ in 0..len {
        let index = rng.random_range(0..URL_SAFE.len());
        out.push(URL_SAFE[index] as char);
    }
    out
}

/// A database password: 32 URL-safe characters.
pub fn generate_password() -> String {
    random_token(32)
}

/// Whether `given` is `expected`, compared in time independent of where
/// they differ (the length is not secret).
pub fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_and_url_safe() {
        let password = generate_password();
        assert_eq!(password.len(), 32);
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(password, generate_password());
    }
}
