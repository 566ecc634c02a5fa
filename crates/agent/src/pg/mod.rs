//! Running PostgreSQL: binaries, the OS user, data directories, config files,
//! processes and the SQL the agent needs.

pub mod backrest;
pub mod bin;
pub mod conf;
pub mod process;
pub mod roles;
pub mod sql;
pub mod template;
pub mod tls;
pub mod user;
