//! HTTP on the dashboard port (axum).
//!
//! Each group of routes lives in its own submodule exposing
//! `pub fn routes() -> Router<Arc<AppState>>`, merged in [`router`].

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

use crate::scheduler::Scheduler;

mod api_v1;
pub mod https;
pub(crate) mod info;
pub(crate) mod json;
mod prometheus;
pub mod routes_config;
mod status;

/// What every HTTP handler can reach: the running scheduler (its event loop
/// via [`Scheduler::with_state`], identity facts, RPC pool).
pub struct AppState {
    /// The scheduler handle shared with the connection tasks.
    pub scheduler: Arc<Scheduler>,
    /// The route groups served (`distributed.scheduler.http.routes`).
    pub routes: routes_config::RouteGroups,
}

/// The dashboard-port router.
///
/// Routes:
/// * `GET /health` → `200 text/plain "ok"` (the Dask operator's probes).
/// * `GET /metrics` → Prometheus text ([`prometheus`]).
/// * `/json/*`, `/info/main/workers.html`, `/sitemap.json` ([`json`]).
/// * `/info/worker|task|call-stack(s)|logs/*.html`, `/info/main/{logs,exceptions}.html` ([`info`]).
/// * `/`, `/status`, `/status/*` → the live status page ([`status`]).
///
/// All but the status page and the sitemap are served only if their group is
/// in `state.routes` ([`routes_config`]).
pub fn router(state: Arc<AppState>) -> Router {
    let groups = state.routes;
    let mut router = Router::new()
        .merge(json::sitemap_routes())
        .merge(status::routes());
    // Route groups are merged here, one line each:
    if groups.health {
        router = router.route("/health", get(health));
    }
    if groups.api {
        router = router.merge(api_v1::routes());
    }
    if groups.prometheus {
        router = router.merge(prometheus::routes());
    }
    if groups.json {
        router = router.merge(json::routes());
    }
    if groups.info {
        router = router.merge(json::info_routes()).merge(info::routes());
    }
    router.with_state(state)
}

async fn health() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok")
}

/// Serve `router` on `listener` until the process ends (or an I/O error).
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// Serve `router` over HTTPS on `listener` (each client's TLS handshake in
/// its own task, see [`https::TlsListener`]).
pub async fn serve_https(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
) -> std::io::Result<()> {
    axum::serve(https::TlsListener::spawn(listener, acceptor)?, router).await
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
