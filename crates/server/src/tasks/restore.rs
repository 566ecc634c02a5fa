//! `RestoreDatabase`: a new database made from another one's backups. The
//! API stored the new database with its restore (`BackupIntent::restore`:
//! stanza, repository, target); its steps are those of a create, and the
//! primary's agent makes the node with `pgbackrest restore` instead of
//! initdb, recovers to the target, promotes, and sets the new database's
//! passwords (`pgfleet_agent`'s `instance::restore`). It never touches the
//! source database.

use super::{create_database, TaskError, TaskRun};

/// Index for index the steps of `CreateDatabase` (its `run` drives them).
pub const STEPS: &[&str] = &[
    "place primary",
    "restore, recover to the target and promote",
    "publish DNS and mark online",
];

pub async fn run(run: &mut TaskRun) -> Result<(), TaskError> {
    create_database::run(run).await
}
