//! The options every command takes (`--api`, `--token`, `--fleet-dir`) and
//! what they open: the API's URL, the fleet CA the CLI trusts, the typed
//! client. Below the command definitions and the commands, so the modules
//! that run commands (`commands`, `top`, `alert_targets`, `backup_commands`)
//! need nothing from above them.

use std::path::PathBuf;

use anyhow::Context;

use crate::client::Client;

/// `--api` when not given.
pub const DEFAULT_API: &str = "https://127.0.0.1:7070";

/// The global options (accepted before or after any subcommand).
#[derive(clap::Args, Debug)]
pub struct Globals {
    /// Control plane URL (for `server` and `up`: the address to listen on).
    #[arg(
        long,
        global = true,
        env = "PGFLEET_API",
        default_value = DEFAULT_API
    )]
    pub api: String,
    /// API token (default: read DATA_DIR/admin.token).
    #[arg(long, global = true, env = "PGFLEET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Local fleet data directory (token file, host pid files).
    #[arg(
        long = "fleet-dir",
        global = true,
        env = "PGFLEET_DATA_DIR",
        default_value = "./pgfleet-data"
    )]
    pub fleet_dir: PathBuf,
}

pub(crate) fn client(globals: &Globals) -> anyhow::Result<Client> {
    let token = match &globals.token {
        Some(token) => token.clone(),
        None => {
            let path = globals.fleet_dir.join("admin.token");
            std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "no API token: set PGFLEET_TOKEN or run from the directory holding {}",
                        path.display()
                    )
                })?
                .trim()
                .to_string()
        }
    };
    let api = api_url(globals);
    Ok(Client::with_ca(
        &api,
        &token,
        fleet_ca(globals, &api)?.as_deref(),
    ))
}

/// `--api`; when it is left at its default, the API the local fleet in
/// `--fleet-dir` recorded (a `--netns` fleet serves on its bridge's address).
pub(crate) fn api_url(globals: &Globals) -> String {
    if globals.api == DEFAULT_API {
        if let Some(record) = crate::controlplane::load(&globals.fleet_dir) {
            return record.api;
        }
    }
    globals.api.clone()
}

/// The fleet CA the CLI trusts: `PGFLEET_CA` (a file), else `FLEET_DIR/ca.crt`.
pub(crate) fn fleet_ca(globals: &Globals, api: &str) -> anyhow::Result<Option<String>> {
    if !api.starts_with("https://") {
        return Ok(None);
    }
    let path = match std::env::var("PGFLEET_CA") {
        Ok(path) => std::path::PathBuf::from(path),
        Err(_) => globals.fleet_dir.join("ca.crt"),
    };
    match std::fs::read_to_string(&path) {
        Ok(pem) => Ok(Some(pem)),
        Err(_) => Ok(None),
    }
}
