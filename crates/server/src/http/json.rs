//! Dask's JSON and info routes: `/json/identity.json`, `/json/counts.json`,
//! `/json/index.html`, `/info/main/workers.html` and `/sitemap.json`.

use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dask_core::stats::MetricsSnapshot;
use dask_wire::Value;
use serde_json::{json, Value as J};
use std::sync::Arc;

/// Every route the dashboard port serves, for `/sitemap.json` (same shape as
/// Python's `{"paths": [...]}`).
pub const SITEMAP: &[&str] = &[
    "/",
    "/api/v1",
    "/api/v1/adaptive_target",
    "/api/v1/check_idle",
    "/api/v1/get_workers",
    "/api/v1/retire_workers",
    "/health",
    "/info/main/exceptions.html",
    "/info/main/logs.html",
    "/info/main/workers.html",
    "/individual-plots.json",
    "/json/counts.json",
    "/json/identity.json",
    "/json/index.html",
    "/json/status.json",
    "/metrics",
    "/sitemap.json",
    "/status",
    "/status/events",
    "/status/status.css",
    "/status/status.js",
];

/// The JSON routes (Python's `distributed.http.scheduler.json`).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/json/identity.json", get(identity))
        .route("/json/counts.json", get(counts))
        .route("/json/index.html", get(index))
}

/// The routes of Python's `distributed.http.scheduler.info` defined here
/// (the others are in [`super::info`]).
pub fn info_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/info/main/workers.html", get(workers_html))
        .route("/info", get(info_redirect))
        .route("/individual-plots.json", get(individual_plots))
}

/// `/sitemap.json`, always served.
pub fn sitemap_routes() -> Router<Arc<AppState>> {
    Router::new().route("/sitemap.json", get(sitemap))
}

/// `{title: path}` of the pages a dashboard client may show one by one
/// (JupyterLab's Dask extension lists them, and takes a dashboard whose
/// list cannot be fetched for no dashboard). Python's lists its Bokeh
/// plots, or nothing without Bokeh; this one has its status page.
async fn individual_plots() -> Response {
    json_response(json!({ "Status": "/status" }))
}

/// A msgpack value as JSON (binary and opaque values become `null`; map keys
/// are rendered as strings, like Python's `json.dumps`).
pub fn value_to_json(v: &Value) -> J {
    match v {
        Value::Nil => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.to_string()),
        Value::Array(items) => J::Array(items.iter().map(value_to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Str(s) => s.to_string(),
                        other => other.to_string(),
                    };
                    (key, value_to_json(v))
                })
                .collect(),
        ),
        _ => J::Null,
    }
}

fn json_response(v: J) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        v.to_string(),
    )
        .into_response()
}

fn closing() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "scheduler is closing").into_response()
}

async fn identity(State(app): State<Arc<AppState>>) -> Response {
    json_response(value_to_json(&app.scheduler.identity(-1).await))
}

/// Python's `CountsJSON` body from a snapshot.
pub fn counts_json(snap: &MetricsSnapshot) -> J {
    let memory: usize = snap.workers.iter().map(|w| w.in_memory).sum();
    let processing: usize = snap.workers.iter().map(|w| w.processing).sum();
    let released = snap.tasks[dask_core::stats::state_index(dask_core::TaskState::Released)];
    json!({
        "bytes": snap.bytes_in_memory,
        // Python counts the fire-and-forget pseudo-client too.
        "clients": snap.clients + 1,
        "cores": snap.total_threads,
        "erred": snap.erred_blamed,
        "hosts": snap.hosts,
        "idle": snap.workers_idle,
        "memory": memory,
        "processing": processing,
        "released": released,
        "saturated": snap.workers_saturated,
        "tasks": snap.task_count,
        "unrunnable": snap.unrunnable,
        "waiting": snap.waiting_on_deps,
        "waiting_data": snap.with_waiters,
        "workers": snap.workers.len(),
        "desired_workers": snap.desired_workers,
    })
}

async fn counts(State(app): State<Arc<AppState>>) -> Response {
    match app.scheduler.with_state(|s, _| s.metrics_snapshot()).await {
        Some(snap) => json_response(counts_json(&snap)),
        None => closing(),
    }
}

async fn index() -> Html<String> {
    let items: String = SITEMAP
        .iter()
        .filter(|p| p.ends_with(".json"))
        .map(|p| format!("<li><a href=\"..{p}\">{p}</a></li>"))
        .collect();
    Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Index of JSON routes</title>\
         </head><body><h1>Index of JSON routes</h1><ul>{items}</ul></body></html>"
    ))
}

async fn info_redirect() -> axum::response::Redirect {
    axum::response::Redirect::to("info/main/workers.html")
}

async fn sitemap(State(app): State<Arc<AppState>>) -> Response {
    let paths: Vec<&str> = SITEMAP
        .iter()
        .copied()
        .filter(|p| app.routes.serves(p))
        .collect();
    json_response(json!({ "paths": paths }))
}

/// Escape text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Bytes in Dask's `format_bytes` style (`23.54 GiB`).
pub fn format_bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    for (unit, size) in [
        ("PiB", 2f64.powi(50)),
        ("TiB", 2f64.powi(40)),
        ("GiB", 2f64.powi(30)),
        ("MiB", 2f64.powi(20)),
        ("kiB", 2f64.powi(10)),
    ] {
        if n >= size * 0.9 {
            return format!("{:.2} {unit}", n / size);
        }
    }
    format!("{n} B")
}

async fn workers_html(State(app): State<Arc<AppState>>) -> Response {
    let address = app.scheduler.info.address.clone();
    let Some((snap, now)) = app
        .scheduler
        .with_state(|s, now| (s.metrics_snapshot(), now))
        .await
    else {
        return closing();
    };
    let mut rows = String::new();
    for w in &snap.workers {
        let services = match &w.services {
            Value::Map(m) => m
                .iter()
                .map(|(k, v)| format!("{}: {}", escape(&k.to_string()), escape(&v.to_string())))
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        };
        rows.push_str(&format!(
            "<tr class=\"worker\" data-address=\"{addr}\">\
             <td class=\"address\"><a href=\"../worker/{link}.html\">{addr}</a></td>\
             <td class=\"name\">{name}</td>\
             <td class=\"nthreads\">{threads}</td>\
             <td class=\"memory-limit\" data-sort=\"{limit}\">{limit_h}</td>\
             <td class=\"memory\"><progress value=\"{mem}\" max=\"{limit}\"></progress> {mem_h}</td>\
             <td class=\"occupancy\">{occ:.2} s</td>\
             <td class=\"processing\">{proc}</td><td class=\"in-memory\">{inmem}</td>\
             <td class=\"services\">{services}</td>\
             <td class=\"last-seen\">{seen:.2} s ago</td></tr>\n",
            addr = escape(&w.address),
            link = super::info::url_escape(&w.address),
            name = escape(&w.name),
            threads = w.nthreads,
            limit = w.memory_limit,
            limit_h = format_bytes(w.memory_limit),
            mem = w.memory,
            mem_h = format_bytes(w.memory),
            occ = w.occupancy,
            proc = w.processing,
            inmem = w.in_memory,
            seen = (now - w.last_seen).max(0.0),
        ));
    }
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Workers</title>\
         <link rel=\"stylesheet\" href=\"../../status/status.css\"></head><body class=\"info\">\
         <h1 class=\"title\">Scheduler {addr}</h1>\
         <p><a href=\"../../status\">Status</a> · <a href=\"exceptions.html\">Exceptions</a> · \
         <a href=\"logs.html\">Logs</a></p>\
         <h2>Workers</h2><table class=\"workers\"><thead><tr>\
         <th>Worker</th><th>Name</th><th>Cores</th><th>Memory</th><th>Memory use</th>\
         <th>Occupancy</th><th>Processing</th><th>In-memory</th><th>Services</th><th>Last seen</th>\
         </tr></thead><tbody>\n{rows}</tbody></table></body></html>",
        addr = escape(&address),
    ))
    .into_response()
}
