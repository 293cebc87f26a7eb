//! `/api/v1/*`: the HTTP API the Dask Kubernetes operator calls, served by
//! default (the Python scheduler only serves it when
//! `distributed.scheduler.http.routes` lists `distributed.http.scheduler.api`).
//!
//! Responses have exactly the shapes of `distributed/http/scheduler/api.py`:
//! * `GET /api/v1` → `API V1` (text)
//! * `GET /api/v1/adaptive_target` → `{"workers": n}`
//! * `GET /api/v1/check_idle` → `{"idle_since": epoch seconds | null}`
//! * `GET /api/v1/get_workers` → `{"num_workers": n, "workers": [{"name", "address"}]}`
//! * `POST /api/v1/retire_workers` with `{"n": N}` or `{"workers": [addr]}` →
//!   `{addr: identity}` of the workers retired once their data was moved.
//!
//! Failures answer `500 {"Error": "Internal Server Error"}` like Python.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use dask_wire::Value;
use std::sync::Arc;

use super::AppState;
use crate::scheduler::retire::{self, RetireRequest};

/// The `/api/v1` routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1", get(api_root))
        .route("/api/v1/retire_workers", post(retire_workers))
        .route("/api/v1/get_workers", get(get_workers))
        .route("/api/v1/adaptive_target", get(adaptive_target))
        .route("/api/v1/check_idle", get(check_idle))
}

async fn api_root() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "API V1",
    )
}

fn json_response(v: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn internal_error(why: &str) -> Response {
    tracing::warn!("/api/v1 request failed: {why}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"Error": "Internal Server Error"}).to_string(),
    )
        .into_response()
}

/// A msgpack value as JSON (map keys as text; bytes as lossy text; opaque
/// payloads as null), like `json.dumps(recursive_to_dict(...))`.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.to_string()),
        Value::Bin(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::Array(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Str(s) => s.to_string(),
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Raw(b) => dask_wire::msgpack::decode(b).map_or(J::Null, |d| to_json(&d)),
        Value::Encoded(e) => e.decode().map_or(J::Null, |d| to_json(&d)),
        Value::Ext(..) | Value::Opaque(_) => J::Null,
    }
}

async fn retire_workers(State(app): State<Arc<AppState>>, body: Bytes) -> Response {
    let params: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return internal_error(&format!("bad JSON body: {e}")),
    };
    // Python: `n = params.get("n", 0); if n: workers_to_close(n=n)`.
    let n = params
        .get("n")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let sched = &app.scheduler;
    let req = if n != 0 {
        let choose = dask_core::retire::CloseOptions {
            n: Some(n),
            ..Default::default()
        };
        let Some(addrs) = sched
            .with_state(move |s, _| s.workers_to_close(&choose))
            .await
        else {
            return internal_error("scheduler is shutting down");
        };
        RetireRequest {
            workers: Some(addrs),
            remove: true,
            ..Default::default()
        }
    } else {
        let workers = match params.get("workers") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|x| match x {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            Some(serde_json::Value::Object(m)) if m.is_empty() => Vec::new(),
            // Python iterates a string: its characters are no worker's address.
            Some(serde_json::Value::String(s)) => s.chars().map(String::from).collect(),
            Some(other) => return internal_error(&format!("'workers' is not a list: {other}")),
        };
        RetireRequest {
            workers: Some(workers),
            remove: true,
            ..Default::default()
        }
    };
    match retire::retire_workers(sched, req).await {
        Some(v) => json_response(to_json(&v)),
        None => internal_error("scheduler is shutting down"),
    }
}

async fn get_workers(State(app): State<Arc<AppState>>) -> Response {
    let workers = app
        .scheduler
        .with_state(|s, _| {
            // (name, address) of every registered worker, as `identity` lists them.
            match s.workers_identity(-1) {
                Value::Map(entries) => entries
                    .into_iter()
                    .map(|(addr, ident)| (ident.get("name").cloned().unwrap_or(Value::Nil), addr))
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            }
        })
        .await;
    let Some(workers) = workers else {
        return internal_error("scheduler is shutting down");
    };
    let list: Vec<serde_json::Value> = workers
        .iter()
        .map(|(name, addr)| serde_json::json!({"name": to_json(name), "address": to_json(addr)}))
        .collect();
    json_response(serde_json::json!({"num_workers": list.len(), "workers": list}))
}

async fn adaptive_target(State(app): State<Arc<AppState>>) -> Response {
    match retire::adaptive_target(&app.scheduler, retire::default_target_duration()).await {
        Some(n) => json_response(serde_json::json!({"workers": to_json(&n)})),
        None => internal_error("scheduler is shutting down"),
    }
}

async fn check_idle(State(app): State<Arc<AppState>>) -> Response {
    match retire::check_idle(&app.scheduler).await {
        Some(since) => json_response(serde_json::json!({"idle_since": to_json(&since)})),
        None => internal_error("scheduler is shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::to_json;
    use dask_wire::Value;

    #[test]
    fn identities_become_plain_json() {
        let v = Value::map([
            ("name", Value::Int(3)),
            ("nthreads", Value::Int(2)),
            ("last_seen", Value::Float(1.5)),
            ("nanny", Value::Nil),
            ("metrics", Value::map([("cpu", Value::Float(f64::NAN))])),
            (
                "resources",
                Value::Array(vec![Value::str("GPU"), Value::Bool(true)]),
            ),
        ]);
        assert_eq!(
            to_json(&v),
            serde_json::json!({
                "name": 3, "nthreads": 2, "last_seen": 1.5, "nanny": null,
                "metrics": {"cpu": null}, "resources": ["GPU", true]
            })
        );
        let keyed = Value::Map(vec![(Value::Int(1), Value::str("x"))]);
        assert_eq!(to_json(&keyed), serde_json::json!({"1": "x"}));
    }
}
