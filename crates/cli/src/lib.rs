//! The `pgfleet` binary: CLI commands, `pgfleet up`, and the server and agent
//! entry points. Also a library so tests and benchmarks reuse the client and
//! the local-fleet kit.

pub mod alert_targets;
pub mod backup_commands;
pub mod cli;
pub mod client;
pub mod commands;
pub mod controlplane;
pub mod demo;
pub mod faults;
pub mod fleet;
pub mod globals;
pub mod localfleet;
pub mod metadata_pg;
pub mod netns;
pub mod output;
pub mod top;
pub mod up;
pub mod workload;
