//! The database page's *Backups* tab: the policy, archiving (pg_stat_archiver,
//! segments waiting), the recoverable window and the backups, read from the
//! same answer as `GET /api/v1/databases/{db}/backups`; admins get *Back up
//! now* (a `Backup` task). Restoring is `pgfleet db create … --restore-from`.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use pgfleet_core::backup::BackupListView;

use super::database::{head, load, respond, DbHead};
use super::login::Empty;
use super::render::{self, page, sentence, Layout, Viewer};
use super::session::Protected;
use crate::state::AppState;

pub struct BackupRow {
    pub label: String,
    pub kind: String,
    pub start: String,
    pub stop: String,
    pub size_mb: String,
    pub stored_mb: String,
    pub wal: String,
}

#[derive(Template)]
#[template(path = "db_backups.html", blocks = ["head", "live"])]
struct BackupsTab {
    layout: Layout,
    head: DbHead,
    list: BackupListView,
    window: String,
    archiving: String,
    failing: bool,
    rows: Vec<BackupRow>,
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1_048_576.0)
}

pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
    viewer: Viewer,
) -> Response {
    let loaded = match load(&state, &name).await {
        Ok(view) => crate::backup::api::list_backups(State(state.clone()), Path(name.clone()))
            .await
            .map(|Json(list)| (view, list)),
        Err(error) => Err(error),
    };
    let (view, list) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return render::error_page(&viewer.session, error),
    };
    let window = match (list.earliest_restorable_ms, list.latest_restorable_ms) {
        (Some(earliest), Some(latest)) => {
            format!(
                "{} to {}",
                render::timestamp(earliest),
                render::timestamp(latest)
            )
        }
        (Some(earliest), None) => format!("from {}", render::timestamp(earliest)),
        _ => "none yet (no backup)".into(),
    };
    let (archiving, failing) = match &list.archiver {
        Some(a) => (
            format!(
                "{} segments archived, {} failures, {} waiting",
                a.archived_count, a.failed_count, a.pending_segments
            ),
            a.failing(),
        ),
        None => ("not reported yet".into(), false),
    };
    let rows = list
        .backups
        .iter()
        .rev()
        .map(|b| BackupRow {
            label: b.label.clone(),
            kind: b.r#type.clone(),
            start: render::timestamp(b.start_ms),
            stop: render::timestamp(b.stop_ms),
            size_mb: megabytes(b.size_bytes),
            stored_mb: megabytes(b.repository_size_bytes),
            wal: format!(
                "{} … {}",
                b.wal_start.as_deref().unwrap_or("?"),
                b.wal_stop.as_deref().unwrap_or("?")
            ),
        })
        .collect();
    let tab = BackupsTab {
        layout: viewer.layout("databases"),
        head: head(&view, "backups"),
        list,
        window,
        archiving,
        failing,
        rows,
    };
    respond!(viewer, tab, {})
}

/// `POST /databases/{db}/backups`: *Back up now*.
pub async fn create(
    State(state): State<AppState>,
    Path(db): Path<String>,
    Protected { session, .. }: Protected<Empty>,
) -> Response {
    let request = pgfleet_core::backup::BackupRequest::default();
    let outcome = crate::backup::api::create_backup(
        State(state),
        Path(db.clone()),
        crate::api::ApiJson(request),
    )
    .await;
    match outcome {
        Ok((_, Json(task))) => session.flash(
            "ok",
            format!(
                "Backing up {db} (task #{}): it is listed here when done.",
                task.task_id
            ),
        ),
        Err(error) => session.flash("error", sentence(&error.message)),
    }
    Redirect::to(&render::db_path(&db, "/backups")).into_response()
}
