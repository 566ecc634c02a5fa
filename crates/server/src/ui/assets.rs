//! Static files compiled into the binary: htmx 2.0.11 (from the npm package
//! `htmx.org`, `dist/htmx.min.js`), the style sheet, a few lines of our own
//! script (copy button, pausing live updates while a menu is open) and the icon.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

const HTMX: &[u8] = include_bytes!("../../assets/htmx.min.js");
const STYLE: &[u8] = include_bytes!("../../assets/style.css");
const APP: &[u8] = include_bytes!("../../assets/app.js");
const FAVICON: &[u8] = include_bytes!("../../assets/favicon.svg");

pub async fn serve(Path(name): Path<String>) -> Response {
    let (body, content_type) = match name.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "app.js" => (APP, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "favicon.svg" => (FAVICON, "image/svg+xml"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}
