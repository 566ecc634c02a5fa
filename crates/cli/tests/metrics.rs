//! `GET /metrics` against a live fleet: who may scrape (admin, viewer,
//! metrics tokens; nobody else), that a metrics token reads nothing else,
//! that the output is valid Prometheus text, and that its figures agree
//! with `db show` before and after a failover.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, Fleet};

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict parser of the Prometheus text format (0.0.4): every line is a
/// `# HELP`, a `# TYPE` or a sample of a family whose `TYPE` came first;
/// names and label names are valid; label values are quoted and escaped
/// correctly; values are floats. Panics on anything else.
fn parse(text: &str) -> Vec<Sample> {
    let valid_name = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "bad HELP line {line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(valid_name(name), "bad TYPE line {line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type in {line:?}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {line:?}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line:?}");
        let name_end = line.find(['{', ' ']).expect("sample");
        let name = &line[..name_end];
        assert!(valid_name(name), "bad metric name in {line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample before its TYPE: {line:?}"
        );
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            let end;
            loop {
                let (start, c) = chars.next().expect("unterminated labels");
                if c == '}' {
                    end = Some(start);
                    break;
                }
                let mut key = String::from(c);
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                assert!(valid_name(&key), "bad label name {key:?} in {line:?}");
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
                let mut value = String::new();
                loop {
                    let (_, c) = chars.next().expect("unterminated value");
                    match c {
                        '"' => break,
                        '\\' => match chars.next().expect("escape").1 {
                            'n' => value.push('\n'),
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            other => panic!("bad escape \\{other} in {line:?}"),
                        },
                        '\n' => panic!("newline in value: {line:?}"),
                        c => value.push(c),
                    }
                }
                assert!(labels.insert(key, value).is_none(), "label twice: {line:?}");
                if let Some((_, ',')) = chars.peek() {
                    chars.next();
                }
            }
            rest = &inner[end.unwrap() + 1..];
        }
        let value_text = rest.strip_prefix(' ').expect("space before value");
        let value_text = value_text.split(' ').next().unwrap();
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            text => text
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        found.len() <= 1,
        "more than one {name} {labels:?}: {found:?}"
    );
    found.first().map(|s| s.value)
}

async fn get(fleet: &Fleet, path: &str, token: Option<&str>) -> (u16, String) {
    let http = pgfleet::client::http_client(fleet.ca().as_deref(), Duration::from_secs(30));
    let mut request = http.get(format!("{}{path}", fleet.api));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn scrape(fleet: &Fleet, token: &str) -> Vec<Sample> {
    let (status, body) = get(fleet, "/metrics", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_match_db_show_and_count_a_failover() {
    let fleet = Fleet::up(4);
    fleet.cli_ok(&["db", "create", "met-db"]);
    fleet.cli_ok(&["replica", "create", "met-db", "--name", "r1"]);
    fleet.cli_ok(&["replica", "create", "met-db", "--name", "r2"]);
    let primary = common::wait_ha_settled(&fleet, "met-db", Duration::from_secs(90)).await;
    let client = fleet.client();
    let created = client.create_token("scraper", "metrics").await.unwrap();
    let metrics_token = created["token"].as_str().unwrap().to_string();
    let viewer = client.create_token("looker", "viewer").await.unwrap();
    let viewer_token = viewer["token"].as_str().unwrap().to_string();

    // Who may scrape, and what a metrics token may not do.
    assert_eq!(get(&fleet, "/metrics", None).await.0, 401);
    assert_eq!(get(&fleet, "/metrics", Some("not-a-token")).await.0, 401);
    assert_eq!(
        get(&fleet, "/api/v1/databases", Some(&metrics_token))
            .await
            .0,
        403
    );
    assert_eq!(
        get(&fleet, "/api/v1/tokens", Some(&metrics_token)).await.0,
        403
    );
    assert_eq!(
        get(&fleet, "/api/v1/hosts", Some(&metrics_token)).await.0,
        403
    );
    assert_eq!(
        get(&fleet, "/api/v1/databases/met-db/uri", Some(&metrics_token))
            .await
            .0,
        403
    );
    let http = pgfleet::client::http_client(fleet.ca().as_deref(), Duration::from_secs(30));
    let made = http
        .post(format!("{}/api/v1/tokens", fleet.api))
        .bearer_auth(&metrics_token)
        .json(&serde_json::json!({"name": "escalated", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status().as_u16(), 403, "a metrics token made a token");
    let by_viewer = scrape(&fleet, &viewer_token).await;
    assert!(value(&by_viewer, "pgfleet_host_connected", &[("host", "host-1")]).is_some());
    let by_admin = scrape(&fleet, &fleet.token()).await;
    assert!(value(&by_admin, "pgfleet_host_connected", &[("host", "host-1")]).is_some());

    // The figures agree with `db show` once the database is quiet.
    let view = client.database("met-db", false).await.unwrap();
    let samples = eventually(Duration::from_secs(30), "lag 0 on every replica", || {
        let fleet = &fleet;
        let token = &metrics_token;
        async move {
            let samples = scrape(fleet, token).await;
            let quiet = ["r1", "r2"].iter().all(|node| {
                value(
                    &samples,
                    "pgfleet_node_replication_lag_bytes",
                    &[("db", "met-db"), ("node", node)],
                ) == Some(0.0)
            });
            quiet.then_some(samples)
        }
    })
    .await;
    for node in &view.nodes {
        let role = pgfleet::output::lower(&node.role);
        assert_eq!(
            value(
                &samples,
                "pgfleet_node_role",
                &[
                    ("db", "met-db"),
                    ("node", &node.name),
                    ("host", &node.host),
                    ("role", &role)
                ]
            ),
            Some(1.0),
            "role of {} as db show says ({role})",
            node.name
        );
        assert_eq!(
            value(
                &samples,
                "pgfleet_node_up",
                &[("db", "met-db"), ("node", &node.name)]
            ),
            Some(1.0)
        );
    }
    let complete = [("db", "met-db"), ("status", "complete")];
    assert_eq!(
        value(&samples, "pgfleet_database_ha_status", &complete),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "pgfleet_database_ha_status",
            &[("db", "met-db"), ("status", "incomplete")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "pgfleet_database_degraded", &[("db", "met-db")]),
        Some(0.0)
    );
    let synchronous: f64 = ["r1", "r2"]
        .iter()
        .filter_map(|node| {
            value(
                &samples,
                "pgfleet_node_synchronous",
                &[("db", "met-db"), ("node", node)],
            )
        })
        .sum();
    assert!(
        synchronous >= 1.0,
        "sync mode {} has a synchronous replica",
        view.health.sync_mode
    );
    assert_eq!(
        value(
            &samples,
            "pgfleet_database_failovers_total",
            &[("db", "met-db")]
        ),
        Some(0.0)
    );
    for host in 1..=4 {
        let host = format!("host-{host}");
        assert_eq!(
            value(&samples, "pgfleet_host_connected", &[("host", &host)]),
            Some(1.0),
            "{host}"
        );
    }
    let placed: f64 = samples
        .iter()
        .filter(|s| s.name == "pgfleet_host_nodes")
        .map(|s| s.value)
        .sum();
    assert_eq!(placed, view.nodes.len() as f64);
    let shows = value(
        &samples,
        "pgfleet_api_request_duration_seconds_count",
        &[
            ("route", "/api/v1/databases/{db}"),
            ("method", "GET"),
            ("status", "200"),
        ],
    );
    assert!(
        shows.is_some_and(|count| count >= 1.0),
        "db show requests timed"
    );
    assert!(
        samples
            .iter()
            .any(|s| s.name == "pgfleet_task_duration_seconds_count"
                && s.labels.get("kind").map(String::as_str) == Some("CreateReplica")
                && s.labels.get("outcome").map(String::as_str) == Some("succeeded")),
        "replica creation timed"
    );

    let store_reads = value(
        &samples,
        "pgfleet_store_operation_duration_seconds_count",
        &[("operation", "list_databases"), ("outcome", "ok")],
    );
    assert!(
        store_reads.is_some_and(|count| count >= 1.0),
        "store reads timed"
    );
    assert!(
        samples.iter().any(|s| s.name == "pgfleet_dns_answers_total"
            && s.labels.get("rcode").map(String::as_str) == Some("noerror")),
        "DNS answers counted by rcode"
    );

    // A failover: counted, timed, and the roles follow.
    let primary_host = view
        .nodes
        .iter()
        .find(|n| n.name == primary)
        .unwrap()
        .host
        .clone();
    assert!(fleet.kill_host(&primary_host) > 0);
    let new_primary = eventually(Duration::from_secs(60), "a new primary", || {
        let client = &client;
        let old = &primary;
        async move {
            let view = client.database("met-db", false).await.ok()?;
            view.primary.filter(|p| p != old)
        }
    })
    .await;
    let samples = eventually(Duration::from_secs(30), "the failover in /metrics", || {
        let fleet = &fleet;
        let token = &metrics_token;
        async move {
            let samples = scrape(fleet, token).await;
            let counted = value(
                &samples,
                "pgfleet_database_failovers_total",
                &[("db", "met-db")],
            );
            (counted == Some(1.0)).then_some(samples)
        }
    })
    .await;
    assert_eq!(
        value(
            &samples,
            "pgfleet_node_role",
            &[
                ("db", "met-db"),
                ("node", &new_primary),
                ("role", "primary")
            ]
        ),
        Some(1.0)
    );
    let rto = value(
        &samples,
        "pgfleet_database_last_failover_rto_seconds",
        &[("db", "met-db")],
    );
    assert!(rto.is_some_and(|s| (0.0..60.0).contains(&s)), "rto {rto:?}");
    let lost = eventually(Duration::from_secs(30), "the killed host lost", || {
        let fleet = &fleet;
        let token = &metrics_token;
        let host = &primary_host;
        async move {
            let samples = scrape(fleet, token).await;
            (value(&samples, "pgfleet_host_connected", &[("host", host)]) == Some(0.0))
                .then_some(samples)
        }
    })
    .await;
    assert!(
        value(
            &lost,
            "pgfleet_database_degraded",
            &[("db", "met-db"), ("reason", "")]
        )
        .is_none(),
        "a database with a lost node is degraded"
    );
}
