//! The panel's files, embedded in the binary: it works offline and no
//! request path ever reaches the file system. An unknown name is a 404.

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $ty:literal) => {
        Asset {
            path: $path,
            content_type: $ty,
            body: include_bytes!(concat!("panel/", $file)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/index.html", "index.html", "text/html; charset=utf-8"),
    asset!("/assets/app.js", "app.js", "text/javascript; charset=utf-8"),
    asset!("/assets/style.css", "style.css", "text/css; charset=utf-8"),
    asset!(
        "/assets/uplot.iife.min.js",
        "uplot.iife.min.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/assets/uplot.min.css",
        "uplot.min.css",
        "text/css; charset=utf-8"
    ),
    asset!(
        "/assets/uPlot.LICENSE",
        "uPlot.LICENSE",
        "text/plain; charset=utf-8"
    ),
    asset!("/assets/favicon.svg", "favicon.svg", "image/svg+xml"),
    asset!("/favicon.ico", "favicon.svg", "image/svg+xml"),
];

/// Bytes the browser loads for the dashboard (every file once).
pub fn panel_bytes() -> usize {
    ASSETS
        .iter()
        .filter(|a| a.path != "/index.html" && a.path != "/favicon.ico")
        .map(|a| a.body.len())
        .sum()
}

/// Serves an embedded file, or 404.
pub async fn serve(uri: Uri) -> Response {
    match ASSETS.iter().find(|a| a.path == uri.path()) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            a.body,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": "no such page" })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_listed_file_is_embedded() {
        let listed = include_str!("panel/FILES");
        for name in listed.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                super::ASSETS.iter().any(|a| a.path.ends_with(name.trim())),
                "{name} is in panel/FILES but not served"
            );
        }
    }
}
