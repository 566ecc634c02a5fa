//! The OpenAPI document, generated from the handlers. `openapi/pgfleet.json`
//! in the repository is this document; a test fails when they drift.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

struct TokenAuth;

impl Modify for TokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route that takes an API token may answer 429: its source address
/// is locked out after wrong tokens (`auth::attempts`).
struct LockoutAnswer;

impl Modify for LockoutAnswer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let answer = ResponseBuilder::new()
            .description(
                "too many wrong tokens from this address; retry after `Retry-After` seconds",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let takes_token = operation.security.as_ref().is_some_and(|all| {
                    serde_json::to_value(all).is_ok_and(|v| v.to_string().contains("\"token\""))
                });
                if takes_token {
                    operation
                        .responses
                        .responses
                        .insert("429".to_string(), answer.clone().into());
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "pgfleet", description = "Data services manager for PostgreSQL"),
    paths(
        api::health,
        api::databases::create,
        api::databases::list,
        api::databases::show,
        api::databases::uri,
        api::databases::delete,
        api::databases::create_replica,
        api::databases::events,
        crate::history::api::show,
        api::databases::promote,
        api::databases::delete_replica,
        api::databases::set_maintenance,
        crate::backup::api::create_location,
        crate::backup::api::list_locations,
        crate::backup::api::show_location,
        crate::backup::api::delete_location,
        crate::backup::api::set_policy,
        crate::backup::api::create_backup,
        crate::backup::api::list_backups,
        api::dns::show,
        api::hosts::list,
        api::hosts::create_join_token,
        api::hosts::remove,
        api::agent_identity::join,
        api::agent_identity::certificate,
        api::tasks::list,
        api::tasks::show,
        api::tokens::list,
        api::tokens::create,
        api::tokens::revoke,
        api::agents::heartbeat,
        api::agents::primary_changed,
        crate::metrics::scrape,
        crate::alerts::api::list,
        crate::alerts::api::create,
        crate::alerts::api::test,
        crate::alerts::api::delete,
    ),
    modifiers(&TokenAuth, &LockoutAnswer)
)]
struct ApiDoc;

/// The document as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).expect("openapi serializes")
}

/// Pretty JSON, as checked into the repository.
pub fn document_pretty() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("openapi serializes");
    text.push('\n');
    text
}
