//! What each CLI command does.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pgfleet_core::api::{CreateDatabaseRequest, CreateReplicaRequest};
use tokio_util::sync::CancellationToken;

use crate::cli::{
    Cli, Command, DbCommand, HostCommand, NodeCommand, ReplicaCommand, TaskCommand, TokenCommand,
};
use crate::client::Client;
use crate::globals::{client, Globals};
use crate::output::{print_json, wait};
use crate::{faults, fleet, output};

fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGFLEET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

const SERVICE_LOGS: &str = "info,hickory_server=warn,sqlx=warn,tokio_postgres=warn";

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Server(crate::cli::ServerArgs {
            action: Some(action),
            ..
        }) => {
            let done = match action {
                crate::cli::ServerAction::Kill => {
                    crate::controlplane::kill_server(&cli.globals.fleet_dir)?
                }
                crate::cli::ServerAction::Start => {
                    crate::controlplane::start_server(&cli.globals.fleet_dir)?
                }
            };
            println!("{done}");
        }
        Command::Server(args) => {
            init_logs(SERVICE_LOGS);
            let mut config = pgfleet_server::ServerConfig::local(args.data_dir.clone());
            config.api_addr = crate::cli::bind_address(&cli.globals.api)?;
            config.dns_addr = args.dns;
            config.zone = args.zone.clone();
            config.host_timeout_ms = args.host_timeout_ms;
            config.tls = !args.insecure_http;
            config.host_cert_validity_secs = args.host_cert_validity_secs;
            config.http = args.http.limits();
            config.joined_host_expiry_secs = args.joined_host_expiry_secs;
            config.dns_update = args.dns_update.clone();
            config.dns_update_key = args.dns_update_key.clone();
            config.monitor_replace_after_secs = args.monitor_replace_after_secs;
            config.alert_not_streaming_secs = args.alert_not_streaming_secs;
            config.tls_cert = args.tls_cert.clone();
            config.tls_key = args.tls_key.clone();
            config.ca = pgfleet_server::tls::CaFiles {
                cert: args.ca_cert.clone(),
                key: args.ca_key.clone(),
            };
            if let Some(store) = &args.store {
                config.store_url = store.clone();
            }
            let cancel = CancellationToken::new();
            let server = pgfleet_server::start(config, cancel.clone()).await?;
            crate::up::wait_for_stop_signal().await;
            cancel.cancel();
            server.join().await;
        }
        Command::Agent(args) => {
            init_logs(SERVICE_LOGS);
            let config = pgfleet_agent::AgentConfig {
                name: args.name.clone(),
                address: args.address.clone(),
                failure_domain: args.failure_domain.clone(),
                data_dir: args.data_dir.clone(),
                server_url: args.server.clone(),
                ca_pem: match &args.ca_file {
                    Some(path) => Some(
                        std::fs::read_to_string(path)
                            .with_context(|| format!("reading --ca-file {}", path.display()))?,
                    ),
                    None => None,
                },
                join_token: args.join_token.clone(),
                credential: String::new(),
                pg_bin: args.pg_bin.clone(),
                agent_port: args.agent_port,
                dns_port: args.dns_port,
                keeper_interval_ms: args.keeper_interval_ms,
                failure_timeout_ms: args.failure_timeout_ms,
                http: args.http.limits(),
            };
            let cancel = CancellationToken::new();
            let stop = cancel.clone();
            tokio::spawn(async move {
                crate::up::wait_for_stop_signal().await;
                stop.cancel();
            });
            pgfleet_agent::run(config, cancel).await?;
        }
        Command::Up(args) => {
            init_logs("warn,hickory_server=warn");
            crate::up::run(args.clone(), crate::cli::bind_address(&cli.globals.api)?).await?;
        }
        Command::Demo(args) => {
            init_logs("warn");
            crate::demo::run(args.clone()).await?;
        }
        Command::Openapi => print!("{}", pgfleet_server::openapi::document_pretty()),
        Command::Db(command) => db(&cli.globals, command).await?,
        Command::Replica(command) => replica(&cli.globals, command).await?,
        Command::Node(command) => node(&cli.globals, command).await?,
        Command::Token(command) => token(&cli.globals, command).await?,
        Command::Host(command) => host(&cli.globals, command).await?,
        Command::Task(command) => task(&cli.globals, command).await?,
        Command::AlertTarget(command) => crate::alert_targets::run(&cli.globals, command).await?,
        Command::BackupLocation(command) => {
            crate::backup_commands::location(&cli.globals, command).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn db(globals: &Globals, command: &DbCommand) -> anyhow::Result<()> {
    let client = client(globals)?;
    match command {
        DbCommand::Create {
            name,
            version,
            admin_user,
            database,
            no_wait,
            backup,
            restore,
        } => {
            let request = CreateDatabaseRequest {
                name: name.clone(),
                version: *version,
                admin_user: admin_user.clone(),
                database: database.clone(),
                backup_policy: backup.request(),
                restore: restore.request(),
            };
            let task = client.create_database(&request).await?;
            if *no_wait {
                println!("{}", task.task_id);
                return Ok(());
            }
            wait(&client, task.task_id).await?;
            let view = client.database(name, false).await?;
            let uri = client.uri(name, false).await?;
            println!("database {} is {}", view.name, output::lower(&view.status));
            println!("  fqdn:         {}", view.fqdn);
            println!("  primary fqdn: {}", view.primary_fqdn);
            println!("  uri:          {}", uri.uri);
        }
        DbCommand::List { json } => {
            let dbs = client.list_databases().await?;
            if *json {
                print_json(&dbs)?;
            } else {
                print!("{}", output::databases(&dbs));
            }
        }
        DbCommand::Show {
            name,
            json: false,
            show_password,
            watch: true,
            iterations,
        } => crate::top::watch_show(&client, name, *show_password, *iterations).await?,
        DbCommand::Top { name, iterations } => {
            crate::top::top(globals, &client, name, *iterations).await?
        }
        DbCommand::Show {
            name,
            json,
            show_password,
            ..
        } => {
            let view = client.database(name, *show_password).await?;
            if *json {
                print_json(&view)?;
            } else {
                print!("{}", output::database(&view));
            }
        }
        DbCommand::Uri { name, resolved } => {
            let view = client.uri(name, *resolved).await?;
            // The URI alone on stdout (scripts take it); where to resolve
            // its name on stderr.
            println!("{}", view.uri);
            if !*resolved && !view.dns_servers.is_empty() {
                eprintln!("# DNS servers: {}", view.dns_servers.join(" "));
            }
        }
        DbCommand::Delete { name, no_wait } => {
            let task = client.delete_database(name).await?;
            if *no_wait {
                println!("{}", task.task_id);
                return Ok(());
            }
            wait(&client, task.task_id).await?;
            println!("database {name} deleted");
        }
        DbCommand::Events { name, json } => {
            let events = client.events(name).await?;
            if *json {
                print_json(&events)?;
            } else {
                for event in events {
                    println!("{event}");
                }
            }
        }
        DbCommand::Backup { db, kind, no_wait } => {
            crate::backup_commands::backup(globals, db, kind.as_deref(), *no_wait).await?
        }
        DbCommand::Backups { db, json } => {
            crate::backup_commands::backups(globals, db, *json).await?
        }
        DbCommand::BackupPolicy(command) => {
            crate::backup_commands::set_policy(globals, command).await?
        }
    }
    Ok(())
}

async fn replica(globals: &Globals, command: &ReplicaCommand) -> anyhow::Result<()> {
    let client = client(globals)?;
    match command {
        ReplicaCommand::Create {
            db,
            name,
            count,
            priority,
            no_wait,
        } => {
            let before = client.database(db, false).await?;
            let task = client
                .create_replica(
                    db,
                    &CreateReplicaRequest {
                        name: name.clone().unwrap_or_default(),
                        priority: *priority,
                        count: *count,
                    },
                )
                .await?;
            if *no_wait {
                println!("{}", task.task_id);
                return Ok(());
            }
            wait(&client, task.task_id).await?;
            let view = client.database(db, false).await?;
            let added: Vec<&str> = view
                .nodes
                .iter()
                .filter(|n| !before.nodes.iter().any(|b| b.name == n.name))
                .filter(|n| n.role == pgfleet_core::NodeRole::Replica)
                .map(|n| n.name.as_str())
                .collect();
            let (noun, verb) = if added.len() == 1 {
                ("replica", "is")
            } else {
                ("replicas", "are")
            };
            println!(
                "{noun} {} of {db} {verb} streaming; HA status {}",
                added.join(", "),
                output::lower(&view.ha_status)
            );
        }
        ReplicaCommand::Promote { db, node, no_wait } => {
            let task = client.promote(db, node).await?;
            if finish(&client, task.task_id, *no_wait).await? {
                let view = client.database(db, false).await?;
                println!(
                    "{node} is the primary of {db}; HA status {}",
                    output::lower(&view.ha_status)
                );
            }
        }
        ReplicaCommand::Delete { db, node, no_wait } => {
            let task = client.delete_replica(db, node).await?;
            if finish(&client, task.task_id, *no_wait).await? {
                let view = client.database(db, false).await?;
                println!(
                    "replica {node} of {db} deleted; HA status {}",
                    output::lower(&view.ha_status)
                );
            }
        }
    }
    Ok(())
}

async fn finish(client: &Client, task_id: i64, no_wait: bool) -> anyhow::Result<bool> {
    if no_wait {
        println!("{task_id}");
        return Ok(false);
    }
    wait(client, task_id).await?;
    Ok(true)
}

async fn token(globals: &Globals, command: &TokenCommand) -> anyhow::Result<()> {
    let client = client(globals)?;
    match command {
        TokenCommand::Create { role, name } => {
            let created = client.create_token(name, role).await?;
            println!("{}", created["token"].as_str().unwrap_or_default());
        }
        TokenCommand::List { json } => {
            let tokens = client.tokens().await?;
            if *json {
                print_json(&tokens)?;
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t["name"].as_str().unwrap_or("").to_string(),
                            t["role"].as_str().unwrap_or("").to_string(),
                        ]
                    })
                    .collect();
                print!("{}", output::table(&["NAME", "ROLE"], &rows));
            }
        }
        TokenCommand::Revoke { name } => {
            client.revoke_token(name).await?;
            println!("token {name} revoked");
        }
    }
    Ok(())
}

async fn node(globals: &Globals, command: &NodeCommand) -> anyhow::Result<()> {
    let client = client(globals)?;
    match command {
        NodeCommand::Maintenance {
            db,
            node,
            state,
            no_wait,
        } => {
            let on = state == "on";
            let task = client.set_maintenance(db, node, on).await?;
            if finish(&client, task.task_id, *no_wait).await? {
                println!("node {node} of {db}: maintenance {state}");
            }
        }
    }
    Ok(())
}

async fn host(globals: &Globals, command: &HostCommand) -> anyhow::Result<()> {
    let data_dir = &globals.fleet_dir;
    match command {
        HostCommand::List { json } => {
            let hosts = client(globals)?.hosts().await?;
            if *json {
                print_json(&hosts)?;
            } else {
                print!("{}", output::hosts(&hosts));
            }
        }
        HostCommand::Start { host } => {
            // A host that joined before keeps its credential; a new one needs a join token.
            let join_token = if fleet::has_credential(data_dir, host) {
                None
            } else {
                Some(client(globals)?.create_join_token(600).await?.0)
            };
            let pid = fleet::start_agent(data_dir, host, join_token.as_deref())?;
            println!("host {host} started (agent pid {pid})");
        }
        HostCommand::JoinToken { ttl } => {
            let (token, expires_at_ms) = client(globals)?.create_join_token(*ttl).await?;
            eprintln!("one-time join token, valid until {expires_at_ms} (ms since epoch):");
            println!("{token}");
        }
        HostCommand::Remove { host } => {
            client(globals)?.remove_host(host).await?;
            println!("host {host} removed; its credential is revoked");
        }
        HostCommand::Kill { host } => {
            let killed = fleet::kill_host(data_dir, host)?;
            println!("host {host} killed ({killed} processes)");
        }
        HostCommand::Freeze { host } => {
            let count = fleet::signal_host(data_dir, host, nix::sys::signal::Signal::SIGSTOP);
            println!("host {host} frozen ({count} processes)");
        }
        HostCommand::Thaw { host } => {
            let count = fleet::signal_host(data_dir, host, nix::sys::signal::Signal::SIGCONT);
            println!("host {host} thawed ({count} processes)");
        }
        HostCommand::Isolate { host } => {
            let fault = faults::Fault::Isolate { host: host.clone() };
            println!("{}", faults::inject(data_dir, fault)?);
        }
        HostCommand::Cut { host, other } => {
            let fault = faults::Fault::Cut {
                host: host.clone(),
                peer: faults::Peer::parse(other),
            };
            println!("{}", faults::inject(data_dir, fault)?);
        }
        HostCommand::Slow {
            host,
            delay,
            jitter,
            loss,
        } => {
            let slowness = faults::Slowness {
                delay_ms: *delay,
                jitter_ms: *jitter,
                loss_percent: *loss,
            };
            let fault = faults::Fault::Slow {
                host: host.clone(),
                slowness,
            };
            println!("{}", faults::inject(data_dir, fault)?);
        }
        HostCommand::Heal { host } => println!("{}", faults::heal(data_dir, host.as_deref())?),
        HostCommand::Faults => {
            for fault in faults::active(data_dir) {
                println!("{fault}");
            }
        }
    }
    Ok(())
}

async fn task(globals: &Globals, command: &TaskCommand) -> anyhow::Result<()> {
    let client = client(globals)?;
    match command {
        TaskCommand::List { json } => {
            let tasks = client.tasks().await?;
            if *json {
                print_json(&tasks)?;
            } else {
                print!("{}", output::tasks(&tasks));
            }
        }
        TaskCommand::Show { id, json } => {
            let task = client.task(*id).await?;
            if *json {
                print_json(&task)?;
            } else {
                print!("{}", output::task(&task));
            }
        }
    }
    Ok(())
}

pub fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
