//! A planned switchover loses no acknowledged write even from clients that
//! turn the draining primary's read-only default off: the draining primary
//! acknowledges no commit at all (its synchronous standby set names a
//! standby that never exists) until it is demoted.

mod common;

use std::time::Duration;

use common::{eventually, wait_ha_settled, Fleet};
use pgfleet::workload::{lost_writes, Writer};

async fn settled(fleet: &Fleet, db: &str) -> String {
    wait_ha_settled(fleet, db, Duration::from_secs(40)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn switchovers_keep_writes_of_clients_that_override_read_only() {
    let fleet = Fleet::up(4);
    fleet.cli_ok(&["db", "create", "fence-db"]);
    fleet.cli_ok(&["replica", "create", "fence-db", "--name", "r1"]);
    fleet.cli_ok(&["replica", "create", "fence-db", "--name", "r2"]);
    settled(&fleet, "fence-db").await;
    let writer = Writer::start_overriding_read_only(&fleet, "fence-db").await;
    let client = fleet.client();
    for target in ["r1", "r2"] {
        let before = writer.count();
        fleet.cli_ok(&["replica", "promote", "fence-db", target]);
        assert_eq!(settled(&fleet, "fence-db").await, target);
        eventually(Duration::from_secs(20), "writes on the new primary", || {
            let more = writer.count() > before + 5;
            async move { more.then_some(()) }
        })
        .await;
    }
    let acks = writer.stop().await;
    assert!(acks.len() > 20, "the writer kept writing: {}", acks.len());
    let lost = lost_writes(&fleet, "fence-db", &acks).await;
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let events = client.events("fence-db").await.unwrap();
    assert_eq!(events.len(), 2, "two switchovers, no failover: {events:?}");
}
