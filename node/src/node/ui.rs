//! The visualizer's page at `/ui/` (when `node.ui_dir` names its built assets: `wasm/www`
//! after `wasm/build.sh`), and who may read this node's GET endpoints from a browser.
//!
//! The page, loaded from one node, follows the whole cluster: it reads every validator's
//! `/status` and `/events`. Those are other origins, so a node answers GETs with
//! `Access-Control-Allow-Origin` for the origins of its own chain's validators (and its own),
//! and for nobody else: an arbitrary web page the user visits cannot read the node's state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::Shared;
use crate::wire::WireError;

/// Largest asset served (the .wasm is under 1 MiB).
pub const UI_ASSET_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The content type of each asset kind the page is made of; anything else is not served.
fn content_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => return None,
    })
}

/// `rel` (the part after `/ui/`) as a path under `dir`, or `None` if it is not a plain
/// relative path of safe names: no `..`, no absolute paths, no hidden files.
pub fn asset_path(dir: &Path, rel: &str) -> Option<PathBuf> {
    let rel = if rel.is_empty() || rel.ends_with('/') {
        format!("{rel}index.html")
    } else {
        rel.to_owned()
    };
    let mut path = dir.to_path_buf();
    for segment in rel.split('/') {
        let safe = !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !safe {
            return None;
        }
        path.push(segment);
    }
    content_type(&rel)?;
    Some(path)
}

/// `GET /ui/` and `GET /ui/{*path}`; `GET /ui` redirects to `/ui/`, so the page's relative
/// asset URLs resolve under `/ui/`.
pub async fn asset(State(s): State<Arc<Shared>>, request: Request) -> Response {
    let Some(dir) = s.config.node.ui_dir.as_deref() else {
        return WireError::NotFound.into_response();
    };
    if request.uri().path() == "/ui" {
        // Keep the query: `/ui?live=...` must stay live.
        let to = match request.uri().query() {
            Some(q) => format!("/ui/?{q}"),
            None => "/ui/".to_owned(),
        };
        return Redirect::permanent(&to).into_response();
    }
    let rel = request.uri().path().strip_prefix("/ui/").unwrap_or("");
    let Some(path) = asset_path(dir, rel) else {
        return WireError::NotFound.into_response();
    };
    match tokio::fs::metadata(&path).await {
        Ok(meta) if meta.is_file() && meta.len() <= UI_ASSET_BYTES_MAX => {}
        _ => return WireError::NotFound.into_response(),
    }
    let Ok(bytes) = tokio::fs::read(&path).await else {
        return WireError::NotFound.into_response();
    };
    let kind = content_type(&path.to_string_lossy()).unwrap_or("application/octet-stream");
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, kind),
            // A rebuilt page must show at once, not after a cache expires.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from(bytes),
    )
        .into_response()
}

/// `http://host:port` (or https) -> `host:port`, the form validator addresses take.
fn origin_authority(origin: &str) -> Option<&str> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// Whether a browser page from `origin` may read this node's GET answers: it is this node
/// or one of its chain's validators.
pub fn is_cluster_origin(s: &Shared, origin: &str) -> bool {
    let Some(authority) = origin_authority(origin) else {
        return false;
    };
    let same = |address: &str| {
        address
            .trim_end_matches('/')
            .eq_ignore_ascii_case(authority)
    };
    if same(&s.config.node.advertise) {
        return true;
    }
    s.validators
        .read()
        .map(|validators| validators.iter().any(|v| same(&v.address)))
        .unwrap_or(false)
}

/// Adds `Access-Control-Allow-Origin` to GET answers for the cluster's own origins.
pub async fn allow_cluster_origins(
    State(s): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let get = request.method() == Method::GET;
    let origin = get
        .then(|| request.headers().get(header::ORIGIN).cloned())
        .flatten()
        .filter(|o| o.to_str().is_ok_and(|o| is_cluster_origin(&s, o)));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    if get {
        // The answer depends on the Origin: a cache must not hand one origin's to another.
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_paths_stay_inside_the_ui_dir() {
        let dir = Path::new("/srv/www");
        assert_eq!(
            asset_path(dir, ""),
            Some(PathBuf::from("/srv/www/index.html"))
        );
        assert_eq!(
            asset_path(dir, "pkg/tinyweb_wasm_bg.wasm"),
            Some(PathBuf::from("/srv/www/pkg/tinyweb_wasm_bg.wasm"))
        );
        assert_eq!(
            asset_path(dir, "pkg/"),
            Some(PathBuf::from("/srv/www/pkg/index.html"))
        );
        for bad in [
            "../secret.html",
            "pkg/../../x.js",
            "/etc/passwd.js",
            ".hidden.js",
            "a//b.js",
            "node.key",
            "data/data.mdb",
            "x y.js",
            "%2e%2e/x.js",
        ] {
            assert_eq!(asset_path(dir, bad), None, "{bad}");
        }
    }

    #[test]
    fn only_http_origins_with_an_authority_parse() {
        assert_eq!(
            origin_authority("http://127.0.0.1:8700"),
            Some("127.0.0.1:8700")
        );
        assert_eq!(
            origin_authority("https://home.lan:8700"),
            Some("home.lan:8700")
        );
        assert_eq!(origin_authority("null"), None);
        assert_eq!(origin_authority("http://"), None);
        assert_eq!(origin_authority("http://a:1/x"), None);
        assert_eq!(origin_authority("file://"), None);
    }
}
