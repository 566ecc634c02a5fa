//! *API tokens* (admin only): the list of tokens, creating one (shown once,
//! with a copy button) and revoking one behind a confirmation page. Revoking
//! the token this session signed in with ends the session.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;

use super::confirm::{Confirm, ConfirmPage};
use super::login::Empty;
use super::render::{self, html, page, sentence, Layout};
use super::session::{self, Protected, Session};
use crate::api::tokens::{CreateTokenRequest, CreatedToken};
use crate::auth::Role;
use crate::error::ApiError;
use crate::state::AppState;

pub struct TokenRow {
    pub name: String,
    pub role: &'static str,
    pub created: String,
}

/// What the create form shows again after a refusal.
#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    layout: Layout,
    tokens: Vec<TokenRow>,
    form: TokenForm,
    error: Option<String>,
    /// A token just created: shown on this answer only.
    created: Option<CreatedToken>,
}

fn role_text(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Viewer => "viewer",
        Role::Metrics => "metrics",
    }
}

/// The refusal a viewer session gets: tokens are for admins only.
fn admins_only(session: &Session) -> Option<Response> {
    if session.is_admin() {
        return None;
    }
    let error = ApiError::forbidden(
        "API tokens are managed with an admin token only: you are signed in with a viewer \
         token, which can read databases, hosts and tasks but not tokens",
    );
    Some(render::error_page(session, error))
}

async fn tokens_page(
    state: &AppState,
    layout: Layout,
    form: TokenForm,
    error: Option<String>,
    created: Option<CreatedToken>,
) -> TokensPage {
    let Json(mut list) = crate::api::tokens::list(State(state.clone())).await;
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let tokens = list
        .into_iter()
        .map(|token| TokenRow {
            role: role_text(token.role),
            created: render::timestamp(token.created_at_ms),
            name: token.name,
        })
        .collect();
    TokensPage {
        layout,
        tokens,
        form,
        error,
        created,
    }
}

pub async fn list(State(state): State<AppState>, session: Session) -> Response {
    if let Some(refusal) = admins_only(&session) {
        return refusal;
    }
    let form = TokenForm {
        role: "viewer".into(),
        ..TokenForm::default()
    };
    let tokens = tokens_page(&state, Layout::new(&session, "tokens"), form, None, None).await;
    page(&tokens)
}

pub async fn create(
    State(state): State<AppState>,
    Protected { session, form }: Protected<TokenForm>,
) -> Response {
    let name = form.name.trim().to_string();
    let role = match form.role.as_str() {
        "admin" => Ok(Role::Admin),
        "viewer" => Ok(Role::Viewer),
        "metrics" => Ok(Role::Metrics),
        other => Err(ApiError::bad_request(format!(
            "invalid role {other:?}: choose admin, viewer or metrics"
        ))),
    };
    let created = match role {
        Ok(role) => {
            let request = CreateTokenRequest {
                name: name.clone(),
                role,
            };
            crate::api::tokens::create(State(state.clone()), crate::api::ApiJson(request)).await
        }
        Err(error) => Err(error),
    };
    let layout = Layout::new(&session, "tokens");
    match created {
        Ok((_, Json(created))) => {
            let form = TokenForm {
                role: "viewer".into(),
                ..TokenForm::default()
            };
            page(&tokens_page(&state, layout, form, None, Some(created)).await)
        }
        Err(error) => {
            let status = error.status;
            let form = TokenForm {
                name,
                role: form.role,
            };
            let message = Some(sentence(&error.message));
            html(
                status,
                &tokens_page(&state, layout, form, message, None).await,
            )
        }
    }
}

pub async fn confirm_revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    session: Session,
) -> Response {
    if let Some(refusal) = admins_only(&session) {
        return refusal;
    }
    let Json(list) = crate::api::tokens::list(State(state)).await;
    if !list.iter().any(|t| t.name == name) {
        return render::error_page(&session, ApiError::not_found("token", &name));
    }
    let confirm = Confirm {
        title: format!("Revoke token {name}?"),
        explanation: format!(
            "Clients using {name} are refused from now on, and browser sessions signed in \
             with it end — including this one, if you signed in with {name}. This cannot be undone."
        ),
        action: format!("/tokens/{name}/revoke"),
        button: "Revoke token".into(),
        danger: true,
        cancel: "/tokens".into(),
    };
    page(&ConfirmPage::new(&session, "tokens", confirm))
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Protected { session, .. }: Protected<Empty>,
) -> Response {
    let outcome = crate::api::tokens::revoke(State(state.clone()), Path(name.clone())).await;
    if outcome.is_ok() && !session.still_valid(&state) {
        // This session signed in with the token just revoked: it has ended.
        let cleared = session.close(&state);
        return session::with_cookie(Redirect::to("/login?revoked=1").into_response(), cleared);
    }
    match outcome {
        Ok(_) => {
            session.flash("ok", format!("Token {name} revoked."));
        }
        Err(error) => session.flash("error", sentence(&error.message)),
    }
    Redirect::to("/tokens").into_response()
}
