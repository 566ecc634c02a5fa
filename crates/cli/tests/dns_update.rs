//! Publishing the zone to an external DNS server (`--dns-update`) against a
//! real BIND 9 started by the test (see `dns_update/bind.rs`): BIND follows
//! the primary across a failover and forgets deleted names; a wrong key is
//! refused by BIND, reported by the control plane, and the built-in DNS
//! keeps serving. Skipped with a message when `named` is not installed.

#[path = "dns_update/bind.rs"]
mod bind;
mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use bind::{key_statement, write_key_file, Bind};
use common::{eventually, resolve, wait_ha_settled, Fleet};
use pgfleet_core::{NodeRole, NodeStatus};
use pgfleet_dns::update::{send_update, update_messages, NameChange, TsigKey, UpdateError};
use pgfleet_dns::ResponseCode;

const ZONE: &str = "pgfleet.internal";
const KEY_NAME: &str = "pgfleet-update";
const SECRET: &str = "3Cj9pusJ1exLdP1RYKSaTGwIIbLG5cVY+RyzSUEhJyU=";
const WRONG_SECRET: &str = "c2VjcmV0IHRoYXQgQklORCBkb2VzIG5vdCBrbm93IGF0IGFsbCE=";

async fn bind_or_skip(test: &str) -> Option<Bind> {
    let bind = Bind::start(ZONE, &key_statement(KEY_NAME, SECRET)).await;
    if bind.is_none() {
        eprintln!("SKIPPED {test}: BIND's `named` is not installed (apt-get install bind9)");
    }
    bind
}

fn address(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// The wire format alone: BIND applies our signed updates, verifies our
/// TSIG, signs its answer so that we verify it, and refuses other keys.
#[tokio::test(flavor = "multi_thread")]
async fn bind_applies_signed_updates_and_refuses_wrong_keys() {
    let Some(bind) = bind_or_skip("bind_applies_signed_updates_and_refuses_wrong_keys").await
    else {
        return;
    };
    let key = TsigKey::parse(&key_statement(KEY_NAME, SECRET)).unwrap();
    let send = |changes: Vec<NameChange>, key: TsigKey| {
        let server = bind.addr;
        async move {
            let messages = update_messages(ZONE, &changes, 30).unwrap();
            assert_eq!(messages.len(), 1);
            let message = messages.into_iter().next().unwrap();
            send_update(server, message, &key, Duration::from_secs(5)).await
        }
    };
    let name = "primary.wire.pgfleet.internal";
    let set = |addresses: &[&str]| {
        vec![NameChange {
            name: name.into(),
            addresses: addresses.iter().map(|a| address(a)).collect(),
        }]
    };
    send(set(&["127.0.0.7", "127.0.0.8"]), key.clone())
        .await
        .unwrap_or_else(|error| panic!("{error:?}: {}", bind.log()));
    assert_eq!(
        bind.addresses(name).await,
        [address("127.0.0.7"), address("127.0.0.8")]
    );
    // A change replaces the RRset whole.
    send(set(&["127.0.0.9"]), key.clone()).await.unwrap();
    assert_eq!(bind.addresses(name).await, [address("127.0.0.9")]);
    // No address: the name's A records are gone.
    send(set(&[]), key.clone()).await.unwrap();
    assert!(bind.addresses(name).await.is_empty());

    // Same name, other secret: BADSIG. Unknown name: BADKEY.
    let wrong_secret = TsigKey::parse(&key_statement(KEY_NAME, WRONG_SECRET)).unwrap();
    let refused = send(set(&["127.0.0.10"]), wrong_secret).await.unwrap_err();
    assert!(
        matches!(
            refused,
            UpdateError::Refused {
                rcode: ResponseCode::NotAuth,
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("secret differs"), "{refused}");
    let unknown = TsigKey::parse(&key_statement("stranger", SECRET)).unwrap();
    let refused = send(set(&["127.0.0.10"]), unknown).await.unwrap_err();
    assert!(
        refused.to_string().contains("does not know the key"),
        "{refused}"
    );
    assert!(bind.addresses(name).await.is_empty(), "nothing applied");
}

/// A server holding a parent of the fleet's zone, and an hmac-sha512 key.
#[tokio::test(flavor = "multi_thread")]
async fn bind_accepts_a_parent_zone_and_an_hmac_sha512_key() {
    let key_text = key_statement(KEY_NAME, SECRET).replace("hmac-sha256", "hmac-sha512");
    let Some(bind) = Bind::start("internal", &key_text).await else {
        eprintln!("SKIPPED bind_accepts_a_parent_zone_and_an_hmac_sha512_key: BIND's `named` is not installed");
        return;
    };
    let key = TsigKey::parse(&key_text).unwrap();
    let name = "primary.wire.pgfleet.internal";
    let changes = [NameChange {
        name: name.into(),
        addresses: vec![address("127.0.0.11")],
    }];
    let message = update_messages("internal", &changes, 30).unwrap().remove(0);
    send_update(bind.addr, message, &key, Duration::from_secs(5))
        .await
        .unwrap_or_else(|error| panic!("{error:#?}: {}", bind.log()));
    assert_eq!(bind.addresses(name).await, [address("127.0.0.11")]);
}

/// The story: a fleet feeds BIND; BIND follows a failover and forgets the
/// names of a deleted replica and a deleted database.
#[tokio::test(flavor = "multi_thread")]
async fn bind_follows_the_primary_across_a_failover() {
    let Some(bind) = bind_or_skip("bind_follows_the_primary_across_a_failover").await else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("update.key");
    write_key_file(&key_file, &key_statement(KEY_NAME, SECRET));
    let url = format!("rfc2136://{}/{ZONE}", bind.addr);
    let fleet = Fleet::up_with(
        4,
        &[
            "--dns-update",
            &url,
            "--dns-update-key",
            key_file.to_str().unwrap(),
        ],
    );
    let client = fleet.client();
    fleet.cli_ok(&["db", "create", "bdb"]);
    fleet.cli_ok(&["replica", "create", "bdb", "--name", "bdb-r1"]);
    fleet.cli_ok(&["replica", "create", "bdb", "--name", "bdb-r2"]);
    let primary_name = wait_ha_settled(&fleet, "bdb", Duration::from_secs(60)).await;
    let view = client.database("bdb", false).await.unwrap();
    let node_address =
        |name: &str| address(&view.nodes.iter().find(|n| n.name == name).unwrap().address);
    let old_primary = view
        .nodes
        .iter()
        .find(|n| n.name == primary_name)
        .unwrap()
        .clone();
    eventually(
        Duration::from_secs(20),
        "BIND to answer primary.bdb with the primary's address",
        || async {
            (bind.addresses("primary.bdb.pgfleet.internal").await
                == [address(&old_primary.address)])
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        bind.addresses("bdb-r1.bdb.pgfleet.internal").await,
        [node_address("bdb-r1")]
    );
    assert_eq!(
        bind.addresses("bdb.pgfleet.internal").await,
        [address(&old_primary.address)]
    );
    let status = client.dns().await.unwrap();
    assert_eq!(status["dns_update"]["state"], "ok", "{status}");
    assert_eq!(status["dns_update"]["key_name"], KEY_NAME);
    assert!(!status.to_string().contains(SECRET));

    // The primary's host dies: after the failover BIND answers the new primary.
    fleet.cli_ok(&["host", "kill", &old_primary.host]);
    let killed = std::time::Instant::now();
    let new_primary = eventually(Duration::from_secs(30), "a replica promoted", || async {
        let view = client.database("bdb", false).await.ok()?;
        let primary = view.nodes.iter().find(|n| n.role == NodeRole::Primary)?;
        (primary.name != old_primary.name && primary.status == NodeStatus::Online)
            .then(|| primary.clone())
    })
    .await;
    let promoted_after = killed.elapsed();
    eventually(
        Duration::from_secs(20),
        "BIND to answer primary.bdb with the new primary's address",
        || async {
            (bind.addresses("primary.bdb.pgfleet.internal").await
                == [address(&new_primary.address)])
            .then_some(())
        },
    )
    .await;
    eprintln!(
        "measured: primary host killed -> new primary in the API after {:?}, in BIND after {:?}",
        promoted_after,
        killed.elapsed()
    );
    assert_eq!(
        bind.addresses("bdb.pgfleet.internal").await,
        [address(&new_primary.address)]
    );

    // The other replica is deleted: its name is gone from BIND.
    let other = view
        .nodes
        .iter()
        .find(|n| {
            n.role == NodeRole::Replica && n.name != new_primary.name && n.name != old_primary.name
        })
        .unwrap()
        .name
        .clone();
    let other_name = format!("{other}.bdb.pgfleet.internal");
    assert!(!bind.addresses(&other_name).await.is_empty());
    fleet.cli_ok(&["replica", "delete", "bdb", &other]);
    eventually(
        Duration::from_secs(20),
        "the replica's name gone from BIND",
        || async { bind.addresses(&other_name).await.is_empty().then_some(()) },
    )
    .await;

    // The database is deleted (its old primary's host back first): every name goes.
    fleet.cli_ok(&["host", "start", &old_primary.host]);
    eventually(
        Duration::from_secs(30),
        "the old primary's host connected",
        || async {
            let hosts = client.hosts().await.ok()?;
            hosts
                .iter()
                .any(|h| {
                    h.name == old_primary.host && h.status == pgfleet_core::HostStatus::Connected
                })
                .then_some(())
        },
    )
    .await;
    fleet.cli_ok(&["db", "delete", "bdb"]);
    for name in [
        "bdb.pgfleet.internal".to_string(),
        "primary.bdb.pgfleet.internal".to_string(),
        format!("{}.bdb.pgfleet.internal", new_primary.name),
        format!("{}.bdb.pgfleet.internal", old_primary.name),
    ] {
        eventually(
            Duration::from_secs(20),
            &format!("{name} gone from BIND"),
            || async { bind.addresses(&name).await.is_empty().then_some(()) },
        )
        .await;
    }
}

/// A key BIND does not accept: BIND refuses, `GET /api/v1/dns` and the log
/// say why, and the built-in DNS serves the database all the same.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_is_reported_and_the_built_in_dns_still_serves() {
    let Some(bind) =
        bind_or_skip("a_wrong_key_is_reported_and_the_built_in_dns_still_serves").await
    else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("update.key");
    write_key_file(&key_file, &key_statement(KEY_NAME, WRONG_SECRET));
    let url = format!("rfc2136://{}/{ZONE}", bind.addr);
    let fleet = Fleet::up_with(
        1,
        &[
            "--dns-update",
            &url,
            "--dns-update-key",
            key_file.to_str().unwrap(),
        ],
    );
    fleet.cli_ok(&["db", "create", "wdb"]);
    let client = fleet.client();
    let status = eventually(
        Duration::from_secs(20),
        "the control plane to report the refusal",
        || async {
            let view = client.dns().await.ok()?;
            (view["dns_update"]["state"] == "error"
                && view["dns_update"]["failures"].as_u64()? >= 1)
                .then_some(view)
        },
    )
    .await;
    let error = status["dns_update"]["error"].as_str().unwrap();
    assert!(error.contains("NOTAUTH (TSIG BADSIG)"), "{error}");
    assert!(error.contains("secret differs"), "{error}");
    let log = std::fs::read_to_string(fleet.dir().join("up.log")).unwrap();
    assert!(
        log.contains("dns update failed") && log.contains("secret differs"),
        "{log}"
    );
    assert!(!log.contains(WRONG_SECRET), "the secret is never logged");
    // Built-in DNS serves; BIND has nothing.
    let primary = client
        .database("wdb", false)
        .await
        .unwrap()
        .nodes
        .into_iter()
        .find(|n| n.role == NodeRole::Primary)
        .unwrap();
    assert_eq!(
        resolve(fleet.dns, "primary.wdb.pgfleet.internal").await,
        [address(&primary.address)]
    );
    assert!(bind
        .addresses("primary.wdb.pgfleet.internal")
        .await
        .is_empty());
}

/// Names deleted while BIND could not be reached and the control plane
/// then restarted are removed by the resync after the restart: the
/// published names are remembered in the store, not only in memory.
#[tokio::test(flavor = "multi_thread")]
async fn names_deleted_while_unpublished_are_removed_after_a_restart() {
    let Some(mut bind) =
        bind_or_skip("names_deleted_while_unpublished_are_removed_after_a_restart").await
    else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("update.key");
    write_key_file(&key_file, &key_statement(KEY_NAME, SECRET));
    let url = format!("rfc2136://{}/{ZONE}", bind.addr);
    let mut fleet = Fleet::up_with(
        1,
        &[
            "--dns-update",
            &url,
            "--dns-update-key",
            key_file.to_str().unwrap(),
        ],
    );
    let client = fleet.client();
    fleet.cli_ok(&["db", "create", "keep"]);
    fleet.cli_ok(&["db", "create", "gone"]);
    for name in [
        "primary.keep.pgfleet.internal",
        "primary.gone.pgfleet.internal",
    ] {
        eventually(
            Duration::from_secs(20),
            &format!("{name} in BIND"),
            || async { (!bind.addresses(name).await.is_empty()).then_some(()) },
        )
        .await;
    }

    let gone_node = client.database("gone", false).await.unwrap().nodes[0]
        .name
        .clone();
    let gone_node_name = format!("{gone_node}.gone.pgfleet.internal");
    assert!(!bind.addresses(&gone_node_name).await.is_empty());

    // BIND is down while `gone` is deleted; the control plane reports it.
    bind.stop();
    fleet.cli_ok(&["db", "delete", "gone"]);
    eventually(
        Duration::from_secs(20),
        "the failed publish reported",
        || async {
            let view = client.dns().await.ok()?;
            (view["dns_update"]["state"] == "error").then_some(())
        },
    )
    .await;
    // The control plane dies; BIND comes back still holding `gone`.
    fleet.kill_server();
    bind.restart().await;
    assert!(!bind
        .addresses("primary.gone.pgfleet.internal")
        .await
        .is_empty());
    fleet.start_server();
    for name in [
        "gone.pgfleet.internal",
        "primary.gone.pgfleet.internal",
        &gone_node_name,
    ] {
        eventually(
            Duration::from_secs(20),
            &format!("{name} gone from BIND"),
            || async { bind.addresses(name).await.is_empty().then_some(()) },
        )
        .await;
    }
    assert!(!bind
        .addresses("primary.keep.pgfleet.internal")
        .await
        .is_empty());
    let view = fleet.client().dns().await.unwrap();
    assert_eq!(view["dns_update"]["state"], "ok", "{view}");
}
