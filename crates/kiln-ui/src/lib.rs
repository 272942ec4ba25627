//! Kiln's web UI. Plain ES modules, HTML and CSS with no build step: the files under
//! `assets/` are embedded in the binary at compile time and served by queriers (and
//! all-in-one) at `/` and `/ui/<file>`. The UI reads through the same query API as every
//! other client, with the caller's credentials, so it sees only the caller's tenant.

mod assets;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use assets::{Asset, embedded};

/// Where the UI's files come from.
#[derive(Clone, Debug, Default)]
pub enum Source {
    /// The copies compiled into the binary (the default).
    #[default]
    Embedded,
    /// A folder read on every request, for working on the UI without rebuilding the binary.
    Folder(PathBuf),
}

/// The policy that keeps the page to its own scripts and styles and to this server's API.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
     form-action 'self'";

/// The UI's routes: `GET /` (the page) and `GET /ui/<file>` (its modules and styles). They
/// need no credentials: the page asks for a token when the API answers 401.
pub fn router(source: Source) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui/{*path}", get(file))
        .with_state(Arc::new(source))
}

async fn index(State(source): State<Arc<Source>>) -> Response {
    serve(&source, "index.html").await
}

async fn file(State(source): State<Arc<Source>>, Path(path): Path<String>) -> Response {
    serve(&source, &path).await
}

async fn serve(source: &Source, path: &str) -> Response {
    let bytes = match source {
        Source::Embedded => embedded(path).map(|asset| asset.bytes.to_vec()),
        Source::Folder(root) => {
            if !assets::is_plain_relative(path) {
                return not_found(path);
            }
            tokio::fs::read(root.join(path)).await.ok()
        }
    };
    let Some(bytes) = bytes else {
        return not_found(path);
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(assets::content_type(path)),
    );
    // The files change with the binary; `no-cache` makes browsers revalidate, so an upgrade
    // never mixes old and new modules.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn not_found(path: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("no such file in the web UI: {path}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(router: Router, path: &str) -> Response {
        router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn serves_the_page_and_its_modules_with_their_types() {
        let page = get(router(Source::Embedded), "/").await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'")
        );
        let module = get(router(Source::Embedded), "/ui/app.js").await;
        assert_eq!(module.status(), StatusCode::OK);
        assert_eq!(
            module.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn unknown_files_and_escapes_are_not_found() {
        let missing = get(router(Source::Embedded), "/ui/nope.js").await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let dir = std::env::temp_dir();
        let escape = get(router(Source::Folder(dir)), "/ui/../etc/passwd").await;
        assert_eq!(escape.status(), StatusCode::NOT_FOUND);
    }
}
