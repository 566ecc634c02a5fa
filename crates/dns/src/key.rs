//! A TSIG key in BIND's format, as `tsig-keygen -a hmac-sha256 NAME` prints it:
//!
//! ```text
//! key "NAME" {
//!     algorithm hmac-sha256;
//!     secret "BASE64";
//! };
//! ```
//!
//! The file is a secret: [`TsigKey::load`] refuses one that group or others
//! may read or write. The secret never appears in `Debug` output or errors.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::TSigner;

use crate::zone::parse_fqdn;

/// Seconds of clock difference the server may accept (RFC 8945 suggests 300).
pub const TSIG_FUDGE_SECS: u16 = 300;

/// The HMAC algorithms we sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl KeyAlgorithm {
    /// The name in BIND's key statement and in the TSIG record.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::HmacSha256 => "hmac-sha256",
            KeyAlgorithm::HmacSha384 => "hmac-sha384",
            KeyAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    fn tsig(self) -> TsigAlgorithm {
        match self {
            KeyAlgorithm::HmacSha256 => TsigAlgorithm::HmacSha256,
            KeyAlgorithm::HmacSha384 => TsigAlgorithm::HmacSha384,
            KeyAlgorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }
}

/// A named TSIG key: name, algorithm, secret.
#[derive(Clone)]
pub struct TsigKey {
    name: String,
    algorithm: KeyAlgorithm,
    secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"***")
            .finish()
    }
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read TSIG key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TSIG key file {path} is readable or writable by group or others (mode {mode:o}); it holds a secret: chmod 600 it")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("not a BIND key statement (key \"NAME\" {{ algorithm ALG; secret \"BASE64\"; }};): {reason}")]
    Syntax { reason: String },
    #[error("TSIG algorithm {name:?} is not supported (hmac-sha256, hmac-sha384 or hmac-sha512)")]
    Algorithm { name: String },
    #[error("the key's secret is not valid base64")]
    Secret(#[source] base64::DecodeError),
    #[error("the key's name {name:?} is not a valid DNS name")]
    Name { name: String },
}

impl TsigKey {
    /// Reads and parses `path`, refusing a file group or others can access.
    pub fn load(path: &Path) -> Result<TsigKey, KeyFileError> {
        use std::os::unix::fs::PermissionsExt;
        let read_error = |source| KeyFileError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(read_error)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.to_path_buf(),
                mode: mode & 0o7777,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        TsigKey::parse(&text)
    }

    /// Parses one `key` statement (comments `#`, `//`, `/* */` allowed).
    pub fn parse(text: &str) -> Result<TsigKey, KeyFileError> {
        let tokens = tokenize(text)?;
        let syntax = |reason: &str| KeyFileError::Syntax {
            reason: reason.to_string(),
        };
        let mut rest = tokens.as_slice();
        let mut next = |expected: &str| -> Result<Token, KeyFileError> {
            let (first, tail) = rest
                .split_first()
                .ok_or_else(|| syntax(&format!("ends where {expected} was expected")))?;
            rest = tail;
            Ok(first.clone())
        };
        if next("`key`")? != Token::Word("key".into()) {
            return Err(syntax("it does not start with `key`"));
        }
        let name = match next("the key's name")? {
            Token::Word(name) | Token::Quoted(name) => name,
            _ => return Err(syntax("the key's name is missing")),
        };
        if next("`{`")? != Token::Open {
            return Err(syntax("`{` expected after the key's name"));
        }
        let mut algorithm = None;
        let mut secret = None;
        loop {
            match next("`}`")? {
                Token::Close => break,
                Token::Word(option) => {
                    let value = match next("a value")? {
                        Token::Word(value) | Token::Quoted(value) => value,
                        _ => return Err(syntax(&format!("`{option}` has no value"))),
                    };
                    if next("`;`")? != Token::Semicolon {
                        return Err(syntax(&format!("`;` expected after `{option}`")));
                    }
                    match option.as_str() {
                        "algorithm" => algorithm = Some(value),
                        "secret" => secret = Some(value),
                        _ => return Err(syntax(&format!("unknown option `{option}`"))),
                    }
                }
                _ => return Err(syntax("an option or `}` expected")),
            }
        }
        if next("`;`")? != Token::Semicolon {
            return Err(syntax("`;` expected after `}`"));
        }
        if !rest.is_empty() {
            return Err(syntax("more than one statement (one key per file)"));
        }
        let algorithm = algorithm.ok_or_else(|| syntax("no `algorithm`"))?;
        let algorithm = match algorithm.to_ascii_lowercase().trim_end_matches('.') {
            "hmac-sha256" => KeyAlgorithm::HmacSha256,
            "hmac-sha384" => KeyAlgorithm::HmacSha384,
            "hmac-sha512" => KeyAlgorithm::HmacSha512,
            _ => return Err(KeyFileError::Algorithm { name: algorithm }),
        };
        let secret = secret.ok_or_else(|| syntax("no `secret`"))?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret.split_whitespace().collect::<String>())
            .map_err(KeyFileError::Secret)?;
        if secret.is_empty() {
            return Err(syntax("the secret is empty"));
        }
        if parse_fqdn(&name).is_err() || name.trim_end_matches('.').is_empty() {
            return Err(KeyFileError::Name { name });
        }
        Ok(TsigKey {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            algorithm,
            secret,
        })
    }

    /// The key's name, lowercase, without trailing dot.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    #[cfg(test)]
    pub(crate) fn secret_for_tests(&self) -> &[u8] {
        &self.secret
    }

    #[cfg(test)]
    pub(crate) fn secret_len_for_tests(&self) -> usize {
        self.secret.len()
    }

    /// hickory's signer for this key, with [`TSIG_FUDGE_SECS`].
    pub(crate) fn signer(&self) -> TSigner {
        let name = parse_fqdn(&self.name).expect("checked when parsed");
        TSigner::new(
            self.secret.clone(),
            self.algorithm.tsig(),
            name,
            TSIG_FUDGE_SECS,
        )
        .expect("the algorithms of KeyAlgorithm are supported")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Semicolon,
}

fn tokenize(text: &str) -> Result<Vec<Token>, KeyFileError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                loop {
                    let Some(c) = chars.next() else {
                        return Err(KeyFileError::Syntax {
                            reason: "unterminated comment".into(),
                        });
                    };
                    if previous == '*' && c == '/' {
                        break;
                    }
                    previous = c;
                }
            }
            '{' => tokens.push(Token::Open),
            '}' => tokens.push(Token::Close),
            ';' => tokens.push(Token::Semicolon),
            '"' => {
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => value.push(c),
                        None => {
                            return Err(KeyFileError::Syntax {
                                reason: "unterminated quoted string".into(),
                            })
                        }
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            c => {
                let mut word = c.to_string();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | ';' | '"') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
}
