//! The checker on synthetic histories: each test builds the history a
//! faulty (or correct) fleet would leave and asserts what the run reports.

use super::*;

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
const C: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 13);

/// One writer acking every 20 ms (10 ms round trip) on `server` in `[from, to)`.
fn acks(server: Ipv4Addr, from_ms: f64, to_ms: f64, first_id: i64) -> Vec<Ack> {
    let mut out = Vec::new();
    let mut at = from_ms;
    let mut id = first_id;
    while at < to_ms {
        out.push(Ack {
            id,
            writer: 0,
            server,
            sent_ms: at,
            acked_ms: at + 10.0,
        });
        at += 20.0;
        id += 1;
    }
    out
}

fn round(round: usize, kind: Kind, fault_ms: f64, healed_ms: f64, settled: Option<f64>) -> Round {
    Round {
        round,
        kind,
        fault_ms,
        injected_ms: fault_ms,
        healed_ms,
        settled_ms: settled,
        primary_before: "db-1".into(),
        primary_after: None,
    }
}

fn promotion(at_ms: f64, address: Ipv4Addr) -> Promotion {
    Promotion {
        at_ms,
        node: address.to_string(),
        address,
    }
}

/// A killed at 5 s, B promoted at 7 s and acking from 7.2 s, nothing lost.
fn clean_failover() -> History {
    let mut all = acks(A, 0.0, 5000.0, 1);
    all.extend(acks(B, 7200.0, 12000.0, 1000));
    History {
        initial_primary: Some(A),
        present: Some(all.iter().map(|a| a.id).collect()),
        acks: all,
        rounds: vec![round(1, Kind::KillPrimary, 5000.0, 9000.0, Some(11000.0))],
        promotions: vec![promotion(7000.0, B)],
        unavailable: vec![],
    }
}

#[test]
fn a_clean_failover_passes_with_its_rto() {
    let report = check(&clean_failover());
    let kill = &report.kinds[&Kind::KillPrimary];
    assert!(!report.failed(), "{}", render(&report));
    assert_eq!((kill.lost, kill.split_brain, kill.stuck), (0, 0, 0));
    assert_eq!(kill.failovers, 1);
    assert_eq!(kill.rtos_ms, vec![2210.0]);
    assert!(render(&report)
        .lines()
        .last()
        .unwrap()
        .starts_with("chaos: PASS"));
}

#[test]
fn an_acknowledged_write_missing_from_the_final_table_is_lost_and_fails_the_run() {
    let mut history = clean_failover();
    let present = history.present.as_mut().unwrap();
    present.remove(&200); // acked by A at ~3.99 s: before the fault
    present.remove(&1001); // acked by B during the round
    let report = check(&history);
    assert_eq!(report.lost_ids, vec![200, 1001]);
    assert_eq!(report.kinds[&Kind::KillPrimary].lost, 1, "one in the round");
    assert!(report.failed());
    let text = render(&report);
    assert!(
        text.contains("lost acknowledged ids (first 20): 200 1001"),
        "{text}"
    );
    assert!(
        text.lines().last().unwrap().starts_with("chaos: FAIL"),
        "{text}"
    );
}

#[test]
fn an_old_primary_acknowledging_after_the_new_one_did_is_split_brain() {
    let mut history = clean_failover();
    // The old primary, isolated from the monitor but not from clients,
    // still acknowledges at 8 s: B has acknowledged since 7.2 s.
    history.acks.extend(acks(A, 8000.0, 8100.0, 5000));
    history
        .acks
        .sort_by(|a, b| a.acked_ms.total_cmp(&b.acked_ms));
    history.present = Some(history.acks.iter().map(|a| a.id).collect());
    let report = check(&history);
    let ids: Vec<i64> = report.split_brain_acks.iter().map(|a| a.id).collect();
    assert_eq!(ids, vec![5000, 5001, 5002, 5003, 5004]);
    assert_eq!(report.kinds[&Kind::KillPrimary].split_brain, 5);
    assert!(report.failed());
}

#[test]
fn two_primaries_acknowledging_in_overlapping_intervals_is_split_brain() {
    let mut history = clean_failover();
    // Writer 1's insert on A was acknowledged at 7.5 s, after writer 0's
    // insert on the promoted B had been sent (7.2 s): overlapping.
    history.acks.push(Ack {
        id: 9000,
        writer: 1,
        server: A,
        sent_ms: 4990.0,
        acked_ms: 7500.0,
    });
    history
        .acks
        .sort_by(|a, b| a.acked_ms.total_cmp(&b.acked_ms));
    history.present = Some(history.acks.iter().map(|a| a.id).collect());
    let report = check(&history);
    let ids: Vec<i64> = report.split_brain_acks.iter().map(|a| a.id).collect();
    assert_eq!(ids, vec![9000]);
}

#[test]
fn a_node_promoted_twice_is_not_split_brain_but_a_node_never_promoted_is() {
    // A → B (kill at 5 s) → A (kill at 15 s): every switch has its promotion.
    let mut all = acks(A, 0.0, 5000.0, 1);
    all.extend(acks(B, 7200.0, 15000.0, 1000));
    all.extend(acks(A, 17200.0, 20000.0, 2000));
    let mut history = History {
        initial_primary: Some(A),
        present: Some(all.iter().map(|a| a.id).collect()),
        acks: all,
        rounds: vec![
            round(1, Kind::KillPrimary, 5000.0, 9000.0, Some(11000.0)),
            round(2, Kind::FreezePrimary, 15000.0, 19000.0, Some(19500.0)),
        ],
        promotions: vec![promotion(7000.0, B), promotion(17000.0, A)],
        unavailable: vec![],
    };
    let report = check(&history);
    assert!(report.split_brain_acks.is_empty(), "{}", render(&report));
    assert_eq!(report.kinds[&Kind::FreezePrimary].rtos_ms, vec![2210.0]);

    // C acknowledges without ever having been promoted.
    history.acks.push(Ack {
        id: 7777,
        writer: 1,
        server: C,
        sent_ms: 19000.0,
        acked_ms: 19010.0,
    });
    let report = check(&history);
    let ids: Vec<i64> = report.split_brain_acks.iter().map(|a| a.id).collect();
    assert_eq!(ids, vec![7777]);
    assert_eq!(report.kinds[&Kind::FreezePrimary].split_brain, 1);
}

#[test]
fn a_promotion_where_none_is_due_is_a_false_failover_and_a_stuck_round_fails_the_run() {
    let mut all = acks(A, 0.0, 5000.0, 1);
    all.extend(acks(B, 6000.0, 30000.0, 1000));
    let history = History {
        initial_primary: Some(A),
        present: Some(all.iter().map(|a| a.id).collect()),
        acks: all,
        rounds: vec![
            round(1, Kind::IsolateMonitor, 4000.0, 9000.0, Some(10000.0)),
            round(2, Kind::IsolateStandby, 12000.0, 15000.0, None),
        ],
        promotions: vec![promotion(5800.0, B)],
        unavailable: vec![],
    };
    let report = check(&history);
    let monitor = &report.kinds[&Kind::IsolateMonitor];
    assert_eq!((monitor.failovers, monitor.false_failovers), (1, 1));
    assert_eq!(report.kinds[&Kind::IsolateStandby].stuck, 1);
    assert!(report.failed());
    let summary = render(&report);
    let summary = summary.lines().last().unwrap();
    assert!(summary.contains("stuck 1, false failovers 1"), "{summary}");
}

#[test]
fn the_longest_write_gap_of_a_round_is_reported() {
    // An isolated standby: writes pause 3 s (would be a defect) then go on.
    let mut all = acks(A, 0.0, 6000.0, 1);
    all.extend(acks(A, 9000.0, 20000.0, 1000));
    let history = History {
        initial_primary: Some(A),
        present: Some(all.iter().map(|a| a.id).collect()),
        acks: all,
        rounds: vec![round(
            1,
            Kind::IsolateStandby,
            5000.0,
            12000.0,
            Some(14000.0),
        )],
        promotions: vec![],
        unavailable: vec![(Kind::SlowPrimary, "no netem".into())],
    };
    let report = check(&history);
    let standby = &report.kinds[&Kind::IsolateStandby];
    // Last ack before the pause at 5.99 s, next at 9.01 s.
    assert_eq!(standby.longest_gap_ms, 3020.0);
    assert_eq!(standby.rtos_ms, vec![10.0]);

    // Clients cut from the primary until 12 s, writes back only at 15 s
    // (after the round settled at 14 s): the gap runs to 15.01 s.
    let mut all = acks(A, 0.0, 5000.0, 1);
    all.extend(acks(A, 15000.0, 20000.0, 1000));
    let cut = History {
        initial_primary: Some(A),
        present: Some(all.iter().map(|a| a.id).collect()),
        acks: all,
        rounds: vec![round(
            1,
            Kind::CutPrimaryClients,
            5000.0,
            12000.0,
            Some(14000.0),
        )],
        ..History::default()
    };
    let clients = &check(&cut).kinds[&Kind::CutPrimaryClients];
    assert_eq!(clients.longest_gap_ms, 10010.0);
    assert_eq!(clients.rtos_ms, vec![10010.0]);

    let text = render(&report);
    assert!(text.contains("slow-primary"), "{text}");
    assert!(text.contains("unavailable here: no netem"), "{text}");
    assert!(text.contains("unavailable here: [slow-primary]"), "{text}");
}

#[test]
fn an_unreadable_final_table_fails_the_run_and_says_so() {
    let mut history = clean_failover();
    history.present = None;
    let report = check(&history);
    assert!(report.failed());
    assert!(render(&report).contains("the final table could not be read"));
}

#[test]
fn medians_of_even_and_odd_counts() {
    assert_eq!(median(&[]), None);
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
}
