//! The live status page: `/` and `/status` (HTML), its script and style
//! (embedded in the binary, no external network), `/json/status.json` (one
//! snapshot) and `/status/events` (server-sent events: a snapshot every
//! half second, with the task-stream entries since the previous one).

use super::json::{counts_json, value_to_json};
use super::AppState;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dask_core::stats::{state_index, ALL_TASK_STATES};
use serde_json::{json, Value as J};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

const INDEX_HTML: &str = include_str!("status/index.html");
const STATUS_JS: &str = include_str!("status/status.js");
const STATUS_CSS: &str = include_str!("status/status.css");

/// Task-stream entries sent per update at most.
const STREAM_BATCH: usize = 2000;
/// How often the events stream sends an update.
const UPDATE_EVERY: Duration = Duration::from_millis(500);

/// The status-page routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(page))
        .route("/status", get(page))
        .route("/status/", get(page))
        .route("/status/status.js", get(script))
        .route("/status/status.css", get(style))
        .route("/status/events", get(events))
        .route("/json/status.json", get(status_json))
}

async fn page() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn script() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        STATUS_JS,
    )
        .into_response()
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STATUS_CSS,
    )
        .into_response()
}

/// One status snapshot (and the next task-stream sequence number).
async fn snapshot(app: &AppState, since: u64) -> Option<(J, u64)> {
    let info = app.scheduler.info.clone();
    let metrics = crate::metrics::global();
    let busy = metrics.loop_busy_seconds();
    let queue = metrics.materialization_queue_depth();
    app.scheduler
        .with_state(move |s, now| {
            let snap = s.metrics_snapshot();
            let stream = s.task_stream_since(since, STREAM_BATCH);
            let next = s.stats().task_stream_next;
            let name = |p: u32| s.prefix_name(p).unwrap_or("?").to_string();
            let stream: Vec<J> = stream
                .iter()
                .filter_map(|e| Some((e, s.worker_address(e.worker)?)))
                .map(|(e, worker)| {
                    json!({
                        "seq": e.seq,
                        "prefix": name(e.prefix),
                        "worker": worker,
                        "action": e.action,
                        "start": e.start,
                        "stop": e.stop,
                    })
                })
                .collect();
            let tasks: serde_json::Map<String, J> = ALL_TASK_STATES
                .iter()
                .map(|st| {
                    (
                        st.as_str().to_string(),
                        J::from(snap.tasks[state_index(*st)]),
                    )
                })
                .collect();
            let prefixes: Vec<J> = snap
                .prefixes
                .iter()
                .filter(|p| {
                    ALL_TASK_STATES
                        .iter()
                        .filter(|st| **st != dask_core::TaskState::Forgotten)
                        .any(|st| p.states[state_index(*st)] > 0)
                })
                .map(|p| {
                    let states: serde_json::Map<String, J> = ALL_TASK_STATES
                        .iter()
                        .map(|st| (st.as_str().to_string(), J::from(p.states[state_index(*st)])))
                        .collect();
                    json!({
                        "name": p.name,
                        "states": states,
                        "nbytes": p.nbytes_in_memory,
                        "compute_seconds": p.counters.compute_seconds,
                    })
                })
                .collect();
            let workers: Vec<J> = snap
                .workers
                .iter()
                .map(|w| {
                    json!({
                        "address": w.address,
                        "name": w.name,
                        "status": w.status,
                        "nthreads": w.nthreads,
                        "memory_limit": w.memory_limit,
                        "memory": w.memory,
                        "nbytes": w.nbytes,
                        "processing": w.processing,
                        "in_memory": w.in_memory,
                        "occupancy": w.occupancy,
                        "resources": w.resources.iter().map(|(n, total, used)| {
                            json!({"name": n, "total": total, "used": used})
                        }).collect::<Vec<_>>(),
                        "gpu": w.gpu.as_ref().map(value_to_json),
                        "gpu_metrics": w.gpu_metrics.as_ref().map(value_to_json),
                        "last_seen": w.last_seen,
                    })
                })
                .collect();
            let body = json!({
                "time": now,
                "scheduler": {
                    "id": info.id,
                    "address": info.address,
                    "started": info.started,
                },
                "counts": counts_json(&snap),
                "total_threads": snap.total_threads,
                "total_memory": snap.workers.iter().map(|w| w.memory_limit).sum::<i64>(),
                "clients": snap.clients,
                "tasks": tasks,
                "prefixes": prefixes,
                "workers": workers,
                "task_stream": stream,
                "next_seq": next,
                "event_loop_busy_seconds": busy,
                "materialization_queue_depth": queue,
            });
            (body, next)
        })
        .await
}

fn since_param(q: &HashMap<String, String>) -> u64 {
    q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0)
}

async fn status_json(
    State(app): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match snapshot(&app, since_param(&q)).await {
        Some((body, _)) => (
            [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
            body.to_string(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "scheduler is closing").into_response(),
    }
}

async fn events(
    State(app): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let since = since_param(&q);
    let stream =
        futures_util::stream::unfold((app, since, true), |(app, since, first)| async move {
            if !first {
                tokio::time::sleep(UPDATE_EVERY).await;
            }
            let (body, next) = snapshot(&app, since).await?;
            let event = Event::default().event("status").data(body.to_string());
            Some((Ok(event), (app, next, false)))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
