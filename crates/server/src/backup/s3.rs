//! S3 backup locations, the control plane's part: the shape of what a user
//! gives (endpoint, bucket, region, prefix, access key: everything that
//! ends up on a line of pgBackRest's config is plain characters only), and
//! the check at creation: a PUT and a DELETE of a small probe object,
//! signed with AWS Signature Version 4 (`sign` is pure: time is an input),
//! whose failure says what failed (unreachable, TLS, credentials refused,
//! no such bucket).

use std::time::Duration;

use pgfleet_core::backup::{CreateS3Location, S3Credentials, S3Location};
use ring::digest::{digest, SHA256};
use ring::hmac;

/// Payload of the probe object.
const PROBE_BODY: &[u8] = b"pgfleet backup location probe\n";

/// A checked S3 location: where, and the prefix in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedS3 {
    pub location: S3Location,
    pub path: String,
    /// The endpoint's host name or address, and port (pgBackRest takes
    /// them apart: `repo1-s3-endpoint`, `repo1-s3-port`).
    pub host: String,
    pub port: u16,
}

fn plain(text: &str, extra: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// The endpoint's host and port: `https://host[:port]` with nothing else.
pub fn endpoint_host_port(endpoint: &str) -> Result<(String, u16), String> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| format!("S3 endpoint {endpoint:?} is not a URL: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "S3 endpoint {endpoint:?} must be https:// (pgBackRest speaks TLS to S3)"
        ));
    }
    let bare = url.username().is_empty()
        && url.password().is_none()
        && matches!(url.path(), "" | "/")
        && url.query().is_none()
        && url.fragment().is_none();
    if !bare {
        return Err(format!(
            "S3 endpoint {endpoint:?} must be https://host[:port] only (no user, path or query)"
        ));
    }
    let host = url.host_str().unwrap_or_default().to_string();
    if !plain(&host, ".-") || host.len() > 253 {
        return Err(format!(
            "S3 endpoint {endpoint:?}: the host must be a name or an IPv4 address"
        ));
    }
    Ok((host, url.port().unwrap_or(443)))
}

/// Why a create request's S3 part cannot be a location (no I/O).
pub fn check_shape(request: &CreateS3Location) -> Result<CheckedS3, String> {
    let (host, port) = endpoint_host_port(&request.endpoint)?;
    let bucket = &request.bucket;
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && !bucket.starts_with(['.', '-'])
        && !bucket.ends_with(['.', '-']);
    if !bucket_ok {
        return Err(format!(
            "invalid bucket {bucket:?}: 3 to 63 lowercase letters, digits, . and -"
        ));
    }
    let region = &request.region;
    if !plain(region, "-") || region.len() > 32 {
        return Err(format!(
            "invalid region {region:?}: letters, digits and - (e.g. us-east-1)"
        ));
    }
    let path = request.path.clone().unwrap_or_else(|| "/".into());
    let path_ok = path.starts_with('/')
        && path.len() <= 200
        && (path == "/" || plain(&path, "/._-"))
        && !path
            .split('/')
            .any(|segment| segment == ".." || segment == ".");
    if !path_ok {
        return Err(format!(
            "invalid path {path:?} in the bucket: /, or an absolute path of letters, digits and / . _ -"
        ));
    }
    let path = match path.trim_end_matches('/') {
        "" => "/".to_string(),
        trimmed => trimmed.to_string(),
    };
    check_credentials(&request.credentials)?;
    if let Some(pem) = &request.ca_pem {
        let looks_like_pem = pem.contains("-----BEGIN CERTIFICATE-----") && pem.len() <= 65_536;
        if !looks_like_pem || reqwest::Certificate::from_pem(pem.as_bytes()).is_err() {
            return Err("the S3 CA file holds no PEM certificate".into());
        }
    }
    Ok(CheckedS3 {
        location: S3Location {
            endpoint: format!("https://{host}:{port}"),
            bucket: bucket.clone(),
            region: region.clone(),
            ca_pem: request.ca_pem.clone(),
        },
        path,
        host,
        port,
    })
}

/// Access keys go on a line of a config file: printable, no spaces.
fn check_credentials(credentials: &S3Credentials) -> Result<(), String> {
    let printable = |text: &str| {
        !text.is_empty() && text.len() <= 256 && text.chars().all(|c| c.is_ascii_graphic())
    };
    if !printable(&credentials.access_key_id) {
        return Err("the S3 access key id is empty or not printable ASCII".into());
    }
    if !printable(&credentials.secret_access_key) {
        return Err("the S3 secret access key is empty or not printable ASCII".into());
    }
    Ok(())
}

/// One request to sign.
pub struct SignInput<'a> {
    pub method: &'a str,
    /// `host` or `host:port`, as the Host header carries it.
    pub host_header: &'a str,
    /// The path, already URI-encoded (`/bucket/key`).
    pub path: &'a str,
    pub payload: &'a [u8],
    pub region: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data.as_bytes()).as_ref().to_vec()
}

/// The headers of a request signed with AWS Signature Version 4 (service
/// `s3`): `x-amz-date`, `x-amz-content-sha256`, `authorization`.
pub fn sign(input: &SignInput<'_>, credentials: &S3Credentials) -> Vec<(&'static str, String)> {
    let payload_hash = hex(digest(&SHA256, input.payload).as_ref());
    let date = &input.amz_date[..8];
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical_request = format!(
        "{}\n{}\n\nhost:{}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{}\n\n{signed_headers}\n{payload_hash}",
        input.method, input.path, input.host_header, input.amz_date
    );
    let scope = format!("{date}/{}/s3/aws4_request", input.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        input.amz_date,
        hex(digest(&SHA256, canonical_request.as_bytes()).as_ref())
    );
    let mut key = hmac_sha256(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date,
    );
    for part in [input.region, "s3", "aws4_request"] {
        key = hmac_sha256(&key, part);
    }
    let signature = hex(&hmac_sha256(&key, &string_to_sign));
    vec![
        ("x-amz-date", input.amz_date.to_string()),
        ("x-amz-content-sha256", payload_hash),
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                credentials.access_key_id
            ),
        ),
    ]
}

/// `<Code>` and `<Message>` of an S3 error answer.
fn error_code(body: &str) -> (String, String) {
    let field = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        body.split_once(&open)
            .and_then(|(_, rest)| rest.split_once(&close))
            .map(|(value, _)| value.chars().take(200).collect::<String>())
            .unwrap_or_default()
    };
    (field("Code"), field("Message"))
}

/// What an S3 error answer means for the user.
pub fn explain_refusal(status: u16, body: &str, bucket: &str) -> String {
    let (code, message) = error_code(body);
    let detail = if message.is_empty() {
        code.clone()
    } else {
        format!("{code}: {message}")
    };
    match (status, code.as_str()) {
        (_, "NoSuchBucket") | (404, "") => format!("the bucket {bucket:?} does not exist"),
        (_, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidClientTokenId")
        | (401, _) => {
            format!("the credentials were refused ({detail})")
        }
        (403, _) => format!("access was denied: the credentials were refused or may not write to the bucket ({detail})"),
        _ => format!("the S3 server answered {status} ({detail})"),
    }
}

fn explain_transport(endpoint: &str, error: &reqwest::Error) -> String {
    let chain = crate::error::error_chain(error);
    let lower = chain.to_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        return format!("the TLS handshake with {endpoint} failed: {chain}");
    }
    if error.is_timeout() {
        return format!("{endpoint} is unreachable: no answer within 10 s");
    }
    format!("{endpoint} is unreachable: {chain}")
}

/// At most the first 4 KiB of an error answer (its code and message).
async fn error_body(mut answer: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = answer.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= 4096 {
            break;
        }
    }
    body.truncate(4096);
    String::from_utf8_lossy(&body).to_string()
}

/// Writes and deletes a probe object with `credentials`: `Err` says what
/// failed.
pub async fn probe(checked: &CheckedS3, credentials: &S3Credentials) -> Result<(), String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5));
    if let Some(pem) = &checked.location.ca_pem {
        let certificate = reqwest::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| format!("the S3 CA certificate is unreadable: {e}"))?;
        builder = builder.tls_certs_only([certificate]);
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot make an HTTPS client: {e}"))?;
    let endpoint = &checked.location.endpoint;
    let key = format!(
        "{}/.pgfleet-probe-{}",
        checked.path.trim_matches('/'),
        pgfleet_core::secrets::random_token(12)
    );
    let object_path = format!(
        "/{}/{}",
        checked.location.bucket,
        key.trim_start_matches('/')
    );
    let host_header = if checked.port == 443 {
        checked.host.clone()
    } else {
        format!("{}:{}", checked.host, checked.port)
    };
    for (method, payload) in [
        (reqwest::Method::PUT, PROBE_BODY),
        (reqwest::Method::DELETE, &b""[..]),
    ] {
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let headers = sign(
            &SignInput {
                method: method.as_str(),
                host_header: &host_header,
                path: &object_path,
                payload,
                region: &checked.location.region,
                amz_date: &amz_date,
            },
            credentials,
        );
        let mut request = client
            .request(method.clone(), format!("{endpoint}{object_path}"))
            .body(payload.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| explain_transport(endpoint, &e.without_url()))?;
        let status = answer.status();
        if !status.is_success() {
            let body = error_body(answer).await;
            let what = explain_refusal(status.as_u16(), &body, &checked.location.bucket);
            return Err(format!("{method} of a probe object failed: {what}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> CreateS3Location {
        CreateS3Location {
            endpoint: "https://127.0.0.5:9000".into(),
            bucket: "backups".into(),
            region: "us-east-1".into(),
            path: None,
            ca_pem: None,
            credentials: S3Credentials {
                access_key_id: "AKID".into(),
                secret_access_key: "secret/+x".into(),
            },
        }
    }

    #[test]
    fn only_plain_endpoints_buckets_regions_paths_and_keys_are_taken() {
        let checked = check_shape(&request()).unwrap();
        assert_eq!((checked.host.as_str(), checked.port), ("127.0.0.5", 9000));
        assert_eq!(checked.path, "/");
        let with = |change: fn(&mut CreateS3Location)| {
            let mut request = request();
            change(&mut request);
            check_shape(&request)
        };
        assert!(with(|r| r.endpoint = "http://127.0.0.5:9000".into()).is_err());
        assert!(with(|r| r.endpoint = "https://u:p@s3.example".into()).is_err());
        assert!(with(|r| r.endpoint = "https://s3.example/x".into()).is_err());
        assert_eq!(
            with(|r| r.endpoint = "https://s3.example".into())
                .unwrap()
                .port,
            443
        );
        assert!(with(|r| r.bucket = "No_Such".into()).is_err());
        assert!(with(|r| r.region = "us east".into()).is_err());
        assert!(with(|r| r.path = Some("/a/../b".into())).is_err());
        assert!(with(|r| r.path = Some("/a\n[global]".into())).is_err());
        assert_eq!(
            with(|r| r.path = Some("/fleet/".into())).unwrap().path,
            "/fleet"
        );
        assert!(with(|r| r.credentials.secret_access_key = "a b".into()).is_err());
        assert!(with(|r| r.credentials.access_key_id = String::new()).is_err());
        assert!(with(|r| r.ca_pem = Some("not a pem".into())).is_err());
    }

    #[test]
    fn signatures_follow_the_documented_key_derivation() {
        let credentials = S3Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        };
        let input = SignInput {
            method: "PUT",
            host_header: "127.0.0.5:9000",
            path: "/bucket/probe",
            payload: b"",
            region: "us-east-1",
            amz_date: "20150830T123600Z",
        };
        let headers = sign(&input, &credentials);
        let authorization = &headers[2].1;
        assert!(authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
        ));
        // The empty payload's hash, as every S3 client sends it.
        assert_eq!(
            headers[1].1,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // The signing key of AWS's documented example (secret, 20150830,
        // us-east-1, service iam) proves the derivation chain.
        let mut key = hmac_sha256(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830");
        for part in ["us-east-1", "iam", "aws4_request"] {
            key = hmac_sha256(&key, part);
        }
        assert_eq!(
            hex(&key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        assert_ne!(sign(&input, &credentials), {
            let mut other = credentials.clone();
            other.secret_access_key.push('x');
            sign(&input, &other)
        });
    }

    #[test]
    fn refusals_say_what_failed() {
        let missing = "<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>";
        assert!(explain_refusal(404, missing, "b").contains("bucket \"b\" does not exist"));
        let forged = "<Error><Code>SignatureDoesNotMatch</Code><Message>no</Message></Error>";
        assert!(explain_refusal(403, forged, "b").contains("credentials were refused"));
        let unknown = "<Error><Code>InvalidAccessKeyId</Code></Error>";
        assert!(explain_refusal(403, unknown, "b").contains("credentials were refused"));
        assert!(explain_refusal(500, "", "b").contains("answered 500"));
    }
}
