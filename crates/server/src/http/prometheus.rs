//! `GET /metrics`: Prometheus text format (see [`crate::metrics`]).

use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// The `/metrics` route.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let taken = app
        .scheduler
        .with_state(|s, _| (s.metrics_snapshot(), s.config().work_stealing))
        .await;
    let Some((snap, stealing)) = taken else {
        return (StatusCode::SERVICE_UNAVAILABLE, "scheduler is closing").into_response();
    };
    // Encoding walks every prefix: keep it off the async worker threads.
    let body = tokio::task::spawn_blocking(move || crate::metrics::render(&snap, stealing))
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}
