//! The demo meeting page at `GET /`: static files from the web root (`web/dist`, built with npm
//! and esbuild by the README's commands; not committed).

use std::path::{Path, PathBuf};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// Routes for the files of `root` (top level only): `/` is `index.html`, `/<name>` each file.
pub fn routes<S: Clone + Send + Sync + 'static>(root: &Path) -> Router<S> {
    let mut router = Router::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        tracing::info!(root = %root.display(), "no web root: GET / explains how to build the demo page");
        return router.route("/", get(missing));
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let simple = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        if !path.is_file() || !simple || name.starts_with('.') {
            continue;
        }
        let file = path.clone();
        router = router.route(&format!("/{name}"), get(move || serve(file.clone())));
        if name == "index.html" {
            router = router.route("/", get(move || serve(path.clone())));
        }
    }
    router
}

async fn serve(path: PathBuf) -> Response {
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let content_type = match path.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                Some("png") => "image/png",
                Some("svg") => "image/svg+xml",
                Some("json") => "application/json",
                _ => "application/octet-stream",
            };
            let mut response = bytes.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn missing() -> Html<&'static str> {
    Html(
        "<!doctype html><title>Carillon</title><h1>Carillon</h1>\
         <p>The demo page is not built. From the repository root run:</p>\
         <pre>npm --prefix web ci &amp;&amp; npm --prefix web run build</pre>\
         <p>then restart <code>carillon serve</code> (it serves <code>web/dist</code>, or the \
         directory given with <code>--web-root</code>).</p>",
    )
}
