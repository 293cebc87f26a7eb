//! HTTP on the dashboard port (axum): `/health` now; `/metrics`, `/api/v1/*`,
//! `/json/*` and the status page plug in here later.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// What the HTTP handlers need from the running scheduler (metrics text,
/// worker lists, retire/adaptive actions). Empty for now: `/health` needs
/// nothing. Add methods here as routes are added.
pub trait HttpState: Send + Sync + 'static {}

/// The dashboard-port router.
///
/// Routes:
/// * `GET /health` → `200 text/plain "ok"` (the Dask operator's probes).
///
/// To come: `GET /metrics` (Prometheus text), `/api/v1/{retire_workers,
/// adaptive_target, check_idle, get_workers}`, `/json/*`, `/status`.
pub fn router(state: Arc<dyn HttpState>) -> Router {
    Router::new()
        .route("/health", get(health))
        // .route("/metrics", get(metrics))     -- Prometheus exposition
        // .nest("/api/v1", api_v1_router())      -- the Dask operator's API
        .with_state(state)
}

async fn health() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok")
}

/// Serve `router` on `listener` until the process ends (or an I/O error).
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// Mount `router` under `--dashboard-prefix` (e.g. `/dask`); an empty prefix
/// or `/` leaves it at the root.
pub fn with_prefix(router: Router, prefix: &str) -> Router {
    let trimmed = prefix.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return router;
    }
    let path = if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    };
    Router::new().nest(&path, router)
}
