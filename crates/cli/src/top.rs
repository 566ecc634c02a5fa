//! `pgfleet db top DB` and `pgfleet db show DB --watch`: a database redrawn
//! every second in plain ANSI, for people who live in a terminal. Quits on
//! `q` or Ctrl-C (the terminal is put back as it was), or after
//! `--iterations` refreshes. The commit rate is read from the primary's
//! `pg_stat_database` over TLS (verified against the fleet CA) with the
//! admin role, so it needs an admin token; with a viewer token `db top`
//! says so and shows the rest.

use std::io::{IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use pgfleet_core::api::DatabaseView;
use pgfleet_core::NodeRole;
use tokio::sync::mpsc;

use crate::client::Client;
use crate::globals::Globals;
use crate::output::{lower, table};

const REFRESH: Duration = Duration::from_secs(1);
const CLEAR: &str = "\x1b[H\x1b[2J";

/// The terminal in non-canonical, no-echo mode while it lives (single
/// keys arrive without Enter); restored on drop. Nothing when stdin is not
/// a terminal.
struct RawInput {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawInput {
    fn enter() -> RawInput {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawInput { saved: None };
        }
        let Ok(saved) = tcgetattr(&stdin) else {
            return RawInput { saved: None };
        };
        let mut raw = saved.clone();
        raw.local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO);
        if tcsetattr(&stdin, SetArg::TCSANOW, &raw).is_err() {
            return RawInput { saved: None };
        }
        RawInput { saved: Some(saved) }
    }
}

impl Drop for RawInput {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// Keys typed, from a thread that reads stdin (ends with stdin).
fn keys() -> mpsc::UnboundedReceiver<u8> {
    let (sender, receiver) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        let mut stdin = std::io::stdin();
        while let Ok(1) = stdin.read(&mut byte) {
            if sender.send(byte[0]).is_err() {
                return;
            }
        }
    });
    receiver
}

/// Runs `frame` every second until q, Ctrl-C or `iterations` frames.
async fn every_second<F, Fut>(iterations: Option<u32>, mut frame: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let _raw = RawInput::enter();
    let mut keys = keys();
    let clear = if std::io::stdout().is_terminal() {
        CLEAR
    } else {
        ""
    };
    let mut shown = 0u32;
    loop {
        let text = frame().await;
        let mut stdout = std::io::stdout().lock();
        write!(stdout, "{clear}{text}")?;
        if clear.is_empty() {
            writeln!(stdout)?;
        }
        stdout.flush()?;
        drop(stdout);
        shown += 1;
        if iterations.is_some_and(|limit| shown >= limit) {
            return Ok(());
        }
        let next = tokio::time::sleep(REFRESH);
        tokio::pin!(next);
        loop {
            tokio::select! {
                _ = &mut next => break,
                _ = tokio::signal::ctrl_c() => return Ok(()),
                key = keys.recv() => match key {
                    Some(b'q' | b'Q') => return Ok(()),
                    Some(_) => {}
                    // stdin closed: only the timer and Ctrl-C remain.
                    None => {
                        (&mut next).await;
                        break;
                    }
                },
            }
        }
    }
}

fn heading(what: &str, name: &str) -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        % 86_400;
    format!(
        "pgfleet {what} {name}   {:02}:{:02}:{:02} UTC   (q or Ctrl-C to quit)\n\n",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

pub async fn watch_show(
    client: &Client,
    name: &str,
    show_password: bool,
    iterations: Option<u32>,
) -> anyhow::Result<()> {
    every_second(iterations, || async {
        let body = match client.database(name, show_password).await {
            Ok(view) => crate::output::database(&view),
            Err(error) => format!("{error}\n"),
        };
        format!("{}{body}", heading("db show", name))
    })
    .await
}

/// Commits per second on the primary, from the change of
/// `pg_stat_database.xact_commit` between refreshes.
struct CommitRate {
    connection: Option<(String, tokio_postgres::Client)>,
    last: Option<(i64, Instant)>,
}

impl CommitRate {
    async fn sample(
        &mut self,
        client: &Client,
        tls: &Option<String>,
        view: &DatabaseView,
    ) -> String {
        let Some(primary) = view.primary.clone() else {
            return "no primary".into();
        };
        if self
            .connection
            .as_ref()
            .is_none_or(|(node, c)| *node != primary || c.is_closed())
        {
            self.connection = None;
            self.last = None;
            let uri = match client.uri(&view.name, true).await {
                Ok(uri) => uri.uri,
                Err(error) if error.status == Some(403) => {
                    return "- (needs an admin token)".into();
                }
                Err(error) => return format!("- ({error})"),
            };
            let Some(ca) = tls else {
                return "- (no fleet CA to verify the server)".into();
            };
            let connector = match pgfleet_tls::postgres_tls(ca, None) {
                Ok(connector) => connector,
                Err(error) => return format!("- ({error:#})"),
            };
            match tokio_postgres::connect(&format!("{uri}?sslmode=require"), connector).await {
                Ok((pg, connection)) => {
                    tokio::spawn(connection);
                    self.connection = Some((primary.clone(), pg));
                }
                Err(error) => return format!("- (cannot connect to {primary}: {error})"),
            }
        }
        let Some((_, pg)) = &self.connection else {
            return "-".into();
        };
        let commits: i64 = match pg
            .query_one("SELECT sum(xact_commit)::bigint FROM pg_stat_database", &[])
            .await
        {
            Ok(row) => row.get(0),
            Err(error) => {
                self.connection = None;
                return format!("- ({error})");
            }
        };
        let now = Instant::now();
        let rate = self.last.map(|(before, at)| {
            (commits - before).max(0) as f64 / now.duration_since(at).as_secs_f64()
        });
        self.last = Some((commits, now));
        match rate {
            Some(rate) => format!("{rate:.1} (on {primary})"),
            None => format!("measuring (on {primary})"),
        }
    }
}

fn frame(view: &DatabaseView, commits: &str) -> String {
    let health = if view.health.degraded {
        format!("degraded ({})", view.health.reasons.join("; "))
    } else {
        "ok".into()
    };
    let mut out = format!(
        "status {} · ha {} · health {} · replication {}\ncommits/s: {commits}\n\n",
        lower(&view.status),
        lower(&view.ha_status),
        health,
        view.health.sync_mode
    );
    let rows: Vec<Vec<String>> = view
        .nodes
        .iter()
        .map(|n| {
            let replica = n.role == NodeRole::Replica;
            vec![
                n.name.clone(),
                lower(&n.role),
                n.host.clone(),
                lower(&n.status),
                n.replication_status.as_ref().map(lower).unwrap_or_default(),
                n.lag_bytes
                    .filter(|_| replica)
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
                n.lag_seconds
                    .filter(|_| replica)
                    .map(|s| format!("{s:.1}"))
                    .unwrap_or_default(),
                n.ha_state.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "NODE",
            "ROLE",
            "HOST",
            "STATUS",
            "REPLICATION",
            "LAG BYTES",
            "LAG S",
            "HA STATE",
        ],
        &rows,
    ));
    out
}

pub async fn top(
    globals: &Globals,
    client: &Client,
    name: &str,
    iterations: Option<u32>,
) -> anyhow::Result<()> {
    let api = crate::globals::api_url(globals);
    let ca = crate::globals::fleet_ca(globals, &api)?;
    let rate = std::sync::Arc::new(tokio::sync::Mutex::new(CommitRate {
        connection: None,
        last: None,
    }));
    every_second(iterations, || {
        let rate = rate.clone();
        let ca = ca.clone();
        async move {
            let body = match client.database(name, false).await {
                Ok(view) => {
                    let commits = rate.lock().await.sample(client, &ca, &view).await;
                    frame(&view, &commits)
                }
                Err(error) => format!("{error}\n"),
            };
            format!("{}{body}", heading("db top", name))
        }
    })
    .await
}
