//! A panic while serving a request is answered 500 and logged, instead of dropping the
//! connection with nothing in the log but stderr: tower-http's `CatchPanicLayer` on every
//! listener. The process goes on serving; its locks (parking_lot) are never poisoned.

use std::any::Any;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;

/// The layer every listener's router is wrapped in.
pub(crate) fn catch_panics() -> CatchPanicLayer<fn(Box<dyn Any + Send + 'static>) -> Response> {
    CatchPanicLayer::custom(panic_response as fn(Box<dyn Any + Send + 'static>) -> Response)
}

/// Logs the panic and answers 500 with a Connect error body (which plain HTTP clients read as
/// text, and gRPC clients as an INTERNAL status).
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_string()
    };
    tracing::error!(panic = %message, "a request handler panicked; answered 500");
    let body = serde_json::json!({
        "code": "internal",
        "message": "internal error: the request handler panicked (logged by the server)",
    });
    let mut response = (StatusCode::INTERNAL_SERVER_ERROR, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_and_the_server_keeps_serving() {
        async fn panics() -> &'static str {
            panic!("a bug in a handler")
        }
        let app = Router::new()
            .route("/panic", get(panics))
            .route("/fine", get(|| async { "fine" }))
            .layer(catch_panics());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        for _ in 0..2 {
            let response = client
                .get(format!("http://{addr}/panic"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 500);
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["code"], "internal");
            let fine = client
                .get(format!("http://{addr}/fine"))
                .send()
                .await
                .unwrap();
            assert_eq!(fine.status(), 200);
            assert_eq!(fine.text().await.unwrap(), "fine");
        }
    }
}
