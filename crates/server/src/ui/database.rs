//! The Database page: its header (name, status, HA status; live) and the
//! *Summary*, *Tasks* and *Events* tabs, the connection URI (its password
//! shown only on an explicit click) and deleting the database. The summary
//! also charts the last hour (replication lag, commit rate) and draws the
//! latest failover timelines from the history endpoint (`charts`). The
//! *Cluster Settings* tab lives in `cluster`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use pgfleet_core::api::DatabaseView;
use pgfleet_core::NodeRole;

use super::charts::{self, Chart, Timeline};
use super::confirm::{Confirm, ConfirmPage};
use super::events::{event_rows, EventRow};
use super::login::Empty;
use super::render::{self, page, sentence, Badge, Layout, Viewer};
use super::session::{is_htmx, Protected, Session};
use super::tasks::{task_rows, TaskRow};
use crate::api::databases::{ShowQuery, UriQuery};
use crate::error::ApiError;
use crate::history::api::DatabaseHistory;
use crate::state::AppState;

/// The database header every tab shows.
pub struct DbHead {
    pub name: String,
    pub status: Badge,
    pub ha: Badge,
    pub version: u32,
    pub primary: String,
    pub degraded: bool,
    /// `summary`, `cluster`, `tasks`, `events` or `backups`.
    pub tab: &'static str,
    /// This tab's address (the header polls it).
    pub url: String,
}

pub fn head(view: &DatabaseView, tab: &'static str) -> DbHead {
    let suffix = if tab == "summary" { "" } else { tab };
    let url = match suffix {
        "" => format!("/databases/{}", view.name),
        _ => format!("/databases/{}/{suffix}", view.name),
    };
    let primary = view
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Primary)
        .map(|n| format!("{} on {}", n.name, n.host))
        .unwrap_or_else(|| "none yet".into());
    DbHead {
        name: view.name.clone(),
        status: render::db_status(view.status),
        ha: render::ha_status(view.ha_status),
        version: view.version,
        primary,
        degraded: view.health.degraded,
        tab,
        url,
    }
}

/// The database's view as the API shows it.
pub async fn load(state: &AppState, name: &str) -> Result<DatabaseView, ApiError> {
    let query = ShowQuery {
        show_password: false,
    };
    let Json(view) =
        crate::api::databases::show(State(state.clone()), Path(name.to_string()), Query(query))
            .await?;
    Ok(view)
}

pub struct NodeName {
    pub role: &'static str,
    pub fqdn: String,
}

pub struct UriBox {
    pub db: String,
    pub masked: String,
    /// The full URI, only after the user asked for it.
    pub revealed: Option<String>,
}

#[derive(Template)]
#[template(path = "db_summary.html", blocks = ["head", "live", "uri", "history"])]
struct SummaryPage {
    layout: Layout,
    head: DbHead,
    view: DatabaseView,
    created: String,
    nodes: Vec<NodeName>,
    uri: UriBox,
    lag: Chart,
    commits: Chart,
    /// The latest failovers and switchovers, newest first.
    timelines: Vec<Timeline>,
    /// More were recorded than are drawn (the *Events* tab lists them all).
    more_timelines: bool,
}

/// Failover timelines the summary draws; the *Events* tab lists every one.
const TIMELINES_SHOWN: usize = 3;

/// The database's history as `GET /api/v1/databases/{db}/history` answers.
async fn load_history(state: &AppState, name: &str) -> Result<DatabaseHistory, ApiError> {
    let Json(history) =
        crate::history::api::show(State(state.clone()), Path(name.to_string())).await?;
    Ok(history)
}

fn summary_page(
    layout: Layout,
    view: DatabaseView,
    history: DatabaseHistory,
    revealed: Option<String>,
) -> SummaryPage {
    let nodes = view
        .nodes
        .iter()
        .map(|n| NodeName {
            role: render::role(n.role).text,
            fqdn: n.fqdn.clone(),
        })
        .collect();
    let uri = UriBox {
        db: view.name.clone(),
        masked: format!(
            "postgresql://{}:••••••••@{}:{}/{}",
            view.admin_user, view.primary_fqdn, view.port, view.database_name
        ),
        revealed,
    };
    let now_ms = pgfleet_core::time::now_ms();
    let timelines = history
        .failovers
        .iter()
        .take(TIMELINES_SHOWN)
        .map(charts::timeline)
        .collect();
    SummaryPage {
        layout,
        head: head(&view, "summary"),
        created: render::timestamp(view.created_at_ms),
        nodes,
        uri,
        view,
        lag: charts::lag_chart(&history.points, now_ms),
        commits: charts::commit_chart(&history.points, now_ms),
        timelines,
        more_timelines: history.failovers.len() > TIMELINES_SHOWN,
    }
}

/// Renders the part of a database page htmx asked for: the header, the
/// fragment named `fragment` or (anything else) the live part.
macro_rules! respond {
    ($viewer:expr, $page:expr, { $($target:literal => $block:ident),* }) => {
        match $viewer.fragment.as_deref() {
            None => page(&$page),
            Some("db-head") => page(&$page.as_head()),
            $(Some($target) => page(&$page.$block()),)*
            Some(_) => page(&$page.as_live()),
        }
    };
}
pub(crate) use respond;

pub async fn summary(
    State(state): State<AppState>,
    Path(name): Path<String>,
    viewer: Viewer,
) -> Response {
    let loaded = match load(&state, &name).await {
        Ok(view) => load_history(&state, &name)
            .await
            .map(|history| (view, history)),
        Err(error) => Err(error),
    };
    let (view, history) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return render::error_page(&viewer.session, error),
    };
    let summary = summary_page(viewer.layout("databases"), view, history, None);
    respond!(viewer, summary, { "uri-box" => as_uri, "db-history" => as_history })
}

/// `POST /databases/{db}/uri`: the summary with the full connection URI.
pub async fn reveal_uri(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Protected { session, .. }: Protected<Empty>,
) -> Response {
    let uri = crate::api::databases::uri(
        State(state.clone()),
        Path(name.clone()),
        Query(UriQuery { resolved: false }),
    )
    .await;
    let view = load(&state, &name).await;
    let history = load_history(&state, &name).await;
    let (Json(uri), view, history) = match (uri, view, history) {
        (Ok(uri), Ok(view), Ok(history)) => (uri, view, history),
        (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
            return render::error_page(&session, error)
        }
    };
    tracing::info!(db = %name, "ui revealed the connection uri");
    let summary = summary_page(
        Layout::new(&session, "databases"),
        view,
        history,
        Some(uri.uri),
    );
    if is_htmx(&headers) {
        return page(&summary.as_uri());
    }
    page(&summary)
}

#[derive(Template)]
#[template(path = "db_tasks.html", blocks = ["head", "live"])]
struct TasksTab {
    layout: Layout,
    head: DbHead,
    tasks: Vec<TaskRow>,
    show_target: bool,
}

pub async fn tasks(
    State(state): State<AppState>,
    Path(name): Path<String>,
    viewer: Viewer,
) -> Response {
    let loaded = match load(&state, &name).await {
        Ok(view) => task_rows(&state, Some(name), 500)
            .await
            .map(|tasks| (view, tasks)),
        Err(error) => Err(error),
    };
    let (view, tasks) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return render::error_page(&viewer.session, error),
    };
    let tab = TasksTab {
        layout: viewer.layout("databases"),
        head: head(&view, "tasks"),
        tasks,
        show_target: false,
    };
    respond!(viewer, tab, {})
}

#[derive(Template)]
#[template(path = "db_events.html", blocks = ["head", "live"])]
struct EventsTab {
    layout: Layout,
    head: DbHead,
    events: Vec<EventRow>,
}

pub async fn events(
    State(state): State<AppState>,
    Path(name): Path<String>,
    viewer: Viewer,
) -> Response {
    let loaded = match load(&state, &name).await {
        Ok(view) => event_rows(&state, &name).await.map(|events| (view, events)),
        Err(error) => Err(error),
    };
    let (view, events) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return render::error_page(&viewer.session, error),
    };
    let tab = EventsTab {
        layout: viewer.layout("databases"),
        head: head(&view, "events"),
        events,
    };
    respond!(viewer, tab, {})
}

pub async fn confirm_delete(Path(name): Path<String>, session: Session) -> Response {
    let confirm = Confirm {
        title: format!("Delete database {name}?"),
        explanation: "Every node of the database is stopped and its data is removed. \
                      Its DNS names stop resolving. This cannot be undone."
            .into(),
        action: format!("/databases/{name}/delete"),
        button: "Delete database".into(),
        danger: true,
        cancel: format!("/databases/{name}"),
    };
    page(&ConfirmPage::new(&session, "databases", confirm))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Protected { session, .. }: Protected<Empty>,
) -> Response {
    match crate::api::databases::delete(State(state), Path(name.clone())).await {
        Ok((_, Json(task))) => {
            session.flash(
                "ok",
                format!("Deleting database {name} (task #{}).", task.task_id),
            );
            Redirect::to("/databases").into_response()
        }
        Err(error) => {
            session.flash("error", sentence(&error.message));
            Redirect::to(&render::db_path(&name, "")).into_response()
        }
    }
}
