//! The info pages Python's `distributed.http.scheduler.info` serves beside
//! the workers table: a worker (`/info/worker/<address>.html`), a task
//! (`/info/task/<key>.html`), the call stacks of a worker's or a task's
//! running code, a worker's logs, the scheduler's logs and the exceptions
//! of the tasks that raised.
//!
//! Why: they are how an operator follows a stuck or failed computation from
//! the workers table without a client. Addresses and keys are in the path
//! URL-escaped, keys as Python's `str(key)`, as Python's pages link them.

use super::json::{escape, format_bytes};
use super::AppState;
use crate::scheduler::Scheduler;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dask_core::coordination::python_str;
use dask_core::info::{TaskInfo, MAX_ROWS};
use dask_wire::{Key, Value};
use std::fmt::Write;
use std::sync::Arc;

/// The info routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/info/worker/{page}", get(worker_page))
        .route("/info/task/{page}", get(task_page))
        .route("/info/call-stacks/{page}", get(worker_call_stacks))
        .route("/info/call-stack/{page}", get(task_call_stack))
        .route("/info/logs/{page}", get(worker_logs))
        .route("/info/main/logs.html", get(scheduler_logs))
        .route("/info/main/exceptions.html", get(exceptions))
}

/// `tcp%3A%2F%2Fa%3A1.html` (already decoded by the router) → `tcp://a:1`.
fn page_subject(page: &str) -> Option<&str> {
    page.strip_suffix(".html")
}

/// URL-escape a path segment (as tornado's `url_escape` does).
pub fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The keys `str(key)` may be: the string itself, or (as Python's
/// `_get_actual_scheduler_key` tries) a tuple written `('x', 0)`.
fn key_candidates(text: &str) -> Vec<Key> {
    let mut out = vec![Key::from_str_key(text)];
    let json = text.replace('(', "[").replace(')', "]").replace('\'', "\"");
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) {
        if let Some(v) = json_to_value(&v) {
            if let Ok(k) = Key::from_value(&v) {
                out.push(k);
            }
        }
    }
    out
}

fn json_to_value(v: &serde_json::Value) -> Option<Value> {
    Some(match v {
        serde_json::Value::String(s) => Value::str(s.as_str()),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        serde_json::Value::Array(items) => {
            Value::Array(items.iter().map(json_to_value).collect::<Option<_>>()?)
        }
        _ => return None,
    })
}

fn html_page(title: &str, body: &str) -> Response {
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <link rel=\"stylesheet\" href=\"../../status/status.css\"></head><body class=\"info\">\
         <p><a href=\"../../status\">Status</a> · <a href=\"../main/workers.html\">Workers</a> · \
         <a href=\"../main/exceptions.html\">Exceptions</a> · \
         <a href=\"../main/logs.html\">Logs</a></p><h1 class=\"title\">{t}</h1>{body}\
         </body></html>",
        t = escape(title),
    ))
    .into_response()
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("404: {what}\n")).into_response()
}

fn closing() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the scheduler is shutting down\n",
    )
        .into_response()
}

fn task_link(key: &str) -> String {
    format!(
        "<a href=\"../task/{}.html\">{}</a>",
        url_escape(key),
        escape(key)
    )
}

fn worker_link(address: &str) -> String {
    format!(
        "<a href=\"../worker/{}.html\">{}</a>",
        url_escape(address),
        escape(address)
    )
}

/// A table of tasks (linked) with one more column (HTML already), and how
/// many of `total` it shows.
fn key_table<'a>(
    body: &mut String,
    title: &str,
    class: &str,
    column: &str,
    rows: impl Iterator<Item = (&'a String, String)>,
    total: usize,
) {
    let _ = write!(
        body,
        "<h2>{title}</h2><table class=\"{class}\"><tr><th>Task</th><th>{column}</th></tr>"
    );
    let mut shown = 0;
    for (key, cell) in rows {
        let _ = write!(body, "<tr><td>{}</td><td>{cell}</td></tr>", task_link(key));
        shown += 1;
    }
    body.push_str("</table>");
    if total > shown {
        let _ = write!(body, "<p>{shown} of {total} shown.</p>");
    }
}

async fn worker_page(State(app): State<Arc<AppState>>, Path(page): Path<String>) -> Response {
    let Some(address) = page_subject(&page).map(str::to_string) else {
        return not_found("not a worker page");
    };
    let Some(info) = app
        .scheduler
        .with_state(move |s, _| s.worker_info(&address))
        .await
    else {
        return closing();
    };
    let Some(w) = info else {
        return not_found("no such worker");
    };
    let esc = url_escape(&w.address);
    let mut body = format!(
        "<table class=\"box\"><tr><th>Name</th><td>{}</td></tr><tr><th>Status</th><td>{}</td>\
         </tr><tr><th>Threads</th><td>{}</td></tr><tr><th>Memory limit</th><td>{}</td></tr>\
         <tr><th>Bytes stored</th><td>{}</td></tr></table><p>\
         <a href=\"../call-stacks/{esc}.html\">Call Stacks</a> · \
         <a href=\"../logs/{esc}.html\">Logs</a></p>",
        escape(&w.name),
        w.status,
        w.nthreads,
        format_bytes(w.memory_limit),
        format_bytes(w.nbytes),
    );
    let memory = w.has_what.1.iter().map(|(k, n)| (k, format_bytes(*n)));
    key_table(
        &mut body,
        "In Memory",
        "has-what",
        "Bytes",
        memory,
        w.has_what.0,
    );
    let processing = w.processing.1.iter().map(|(k, p)| (k, escape(p)));
    key_table(
        &mut body,
        "Processing",
        "processing",
        "Priority",
        processing,
        w.processing.0,
    );
    if !w.resources.is_empty() {
        body.push_str(
            "<h2>Resources</h2><table><tr><th>Resource</th><th>Consumed</th><th>Total</th></tr>",
        );
        for (name, used, total) in &w.resources {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{used}</td><td>{total}</td></tr>",
                escape(name)
            );
        }
        body.push_str("</table>");
    }
    html_page(&format!("Worker: {}", w.address), &body)
}

/// The task `str(key)` names, with its page's data.
async fn find_task(sched: &Scheduler, text: &str) -> Option<Option<(TaskInfo, Vec<Value>)>> {
    let candidates = key_candidates(text);
    sched
        .with_state(move |s, _| {
            candidates.iter().find_map(|k| {
                let info = s.task_info(k)?;
                Some((info, s.story(std::slice::from_ref(k))))
            })
        })
        .await
}

/// Python's task page's "Transition Log": the task's story, one row per
/// transition and one more per recommendation it made.
fn transition_log_box(story: &[Value]) -> String {
    let mut body = String::from(
        "<div id=\"transition-log\" class=\"box\"><h3>Transition Log</h3><table \
         class=\"transition-log\"><tr><th>Time</th><th>Key</th><th>Start</th><th>Finish</th>\
         <th>Stimulus ID</th><th>Recommended Key</th><th>Recommended Action</th></tr>",
    );
    // the keys come as the wire carries them (msgpack); a link names
    // Python's str() of the key
    let label = |v: &Value| match v {
        Value::Raw(b) => python_str(&dask_wire::msgpack::decode(b).unwrap_or(Value::Nil)),
        other => python_str(other),
    };
    let mut rows = 0;
    for record in story {
        let Some([key, start, finish, recs, stimulus, time]) = record.as_seq() else {
            continue;
        };
        let recs = recs.as_map().unwrap_or(&[]);
        rows += 1 + recs.len();
        if rows > MAX_ROWS {
            let _ = write!(
                body,
                "</table><p>The first {MAX_ROWS} rows shown.</p></div>"
            );
            return body;
        }
        let text = |v: &Value| escape(v.as_str().unwrap_or_default());
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td></td><td></td></tr>",
            local_time(time.as_f64().unwrap_or_default()),
            task_link(&label(key)),
            text(start),
            text(finish),
            escape(&stimulus.to_text()),
        );
        for (rec, action) in recs {
            let _ = write!(
                body,
                "<tr><td></td><td></td><td></td><td></td><td></td><td>{}</td><td>{}</td></tr>",
                task_link(&label(rec)),
                text(action)
            );
        }
    }
    body.push_str("</table></div>");
    body
}

/// A Unix time as Python's `datetime.fromtimestamp` prints it, in local time.
fn local_time(t: f64) -> String {
    let secs = t.floor();
    let nanos = ((t - secs) * 1e9) as u32;
    match chrono::DateTime::from_timestamp(secs as i64, nanos.min(999_999_999)) {
        Some(utc) => utc
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string(),
        None => t.to_string(),
    }
}

async fn task_page(State(app): State<Arc<AppState>>, Path(page): Path<String>) -> Response {
    let Some(text) = page_subject(&page) else {
        return not_found("not a task page");
    };
    let Some(found) = find_task(&app.scheduler, text).await else {
        return closing();
    };
    let Some((t, story)) = found else {
        return not_found("no such task");
    };
    let mut body = format!(
        "<table class=\"box\"><tr><th>Status</th><td class=\"state\">{}</td></tr>",
        t.state
    );
    if let Some(w) = &t.processing_on {
        let _ = write!(
            body,
            "<tr><th>Processing on</th><td>{}</td></tr><tr><th>Call stack</th><td>\
             <a href=\"../call-stack/{}.html\">Call Stack</a></td></tr>",
            worker_link(w),
            url_escape(&t.key)
        );
    }
    if let Some(name) = &t.type_name {
        let _ = write!(body, "<tr><th>Type</th><td>{}</td></tr>", escape(name));
    }
    if t.nbytes > 0 {
        let _ = write!(
            body,
            "<tr><th>Bytes</th><td>{}</td></tr>",
            format_bytes(t.nbytes)
        );
    }
    for dep in &t.waiting_on {
        let _ = write!(
            body,
            "<tr><td>waiting on</td><td>{}</td></tr>",
            task_link(dep)
        );
    }
    let _ = write!(
        body,
        "<tr><th>Priority</th><td>{}</td></tr>",
        escape(&t.priority)
    );
    for (name, value) in &t.attributes {
        let _ = write!(body, "<tr><th>{name}</th><td>{}</td></tr>", escape(value));
    }
    body.push_str("</table>");
    if let Some((exception, traceback)) = &t.exception {
        let _ = write!(
            body,
            "<div class=\"box exception\"><h3>Exception information</h3><p>Exception: \
             <code>{}</code></p><details><summary>Traceback</summary><pre><code>{}</code>\
             </pre></details></div>",
            escape(exception),
            escape(traceback)
        );
    }
    for (title, rows) in [
        ("Dependencies", &t.dependencies),
        ("Dependents", &t.dependents),
    ] {
        let _ = write!(
            body,
            "<h3>{title}</h3><table class=\"{}\"><tr><th>Key</th><th>State</th></tr>",
            title.to_lowercase()
        );
        for (key, state) in rows.iter() {
            let _ = write!(body, "<tr><td>{}</td><td>{state}</td></tr>", task_link(key));
        }
        body.push_str("</table>");
        if rows.len() == MAX_ROWS {
            let _ = write!(body, "<p>The first {MAX_ROWS} shown.</p>");
        }
    }
    body.push_str("<h3>Workers with data</h3><ul class=\"who-has\">");
    for w in &t.who_has {
        let _ = write!(body, "<li>{}</li>", worker_link(w));
    }
    body.push_str("</ul><h3>Clients with future</h3><ul class=\"who-wants\">");
    for c in &t.who_wants {
        let _ = write!(body, "<li>{}</li>", escape(c));
    }
    body.push_str("</ul>");
    body.push_str(&transition_log_box(&story));
    html_page(&format!("Task: {}", t.key), &body)
}

/// `{worker: {key: [line]}}` as Python's call-stack page lists it.
fn call_stack_body(stacks: &Value) -> String {
    let mut body = String::new();
    let entries = stacks.as_map().unwrap_or(&[]);
    if entries.is_empty() {
        body.push_str("<p>No task is running there.</p>");
    }
    for (worker, per_key) in entries {
        let _ = write!(
            body,
            "<h2>Worker: {}</h2>",
            escape(worker.as_str_key().unwrap_or(""))
        );
        for (key, lines) in per_key.as_map().unwrap_or(&[]) {
            let label = match Key::from_value(key) {
                Ok(k) => dask_core::coordination::key_label(&k),
                Err(_) => key.to_string(),
            };
            let _ = write!(body, "<h3>Key: {}</h3><pre>", escape(&label));
            for line in lines.as_seq().unwrap_or(&[]) {
                body.push_str(&escape(&line.to_text()));
                body.push('\n');
            }
            body.push_str("</pre>");
        }
    }
    body
}

async fn worker_call_stacks(
    State(app): State<Arc<AppState>>,
    Path(page): Path<String>,
) -> Response {
    let Some(address) = page_subject(&page).map(str::to_string) else {
        return not_found("not a worker page");
    };
    let a = address.clone();
    let Some(known) = app
        .scheduler
        .with_state(move |s, _| s.worker_id(&a).map(|_| s.processing_keys(&a)))
        .await
    else {
        return closing();
    };
    let Some(keys) = known else {
        return not_found("no such worker");
    };
    let stacks = if keys.is_empty() {
        Value::Map(Vec::new())
    } else {
        crate::scheduler::rpc::call_stack(&app.scheduler, Some(keys)).await
    };
    html_page(
        &format!("Call Stacks: {address}"),
        &call_stack_body(&stacks),
    )
}

async fn task_call_stack(State(app): State<Arc<AppState>>, Path(page): Path<String>) -> Response {
    let Some(text) = page_subject(&page) else {
        return not_found("not a task page");
    };
    let candidates = key_candidates(text);
    let Some(found) = app
        .scheduler
        .with_state(move |s, _| candidates.into_iter().find(|k| s.task_id(k).is_some()))
        .await
    else {
        return closing();
    };
    let Some(key) = found else {
        return not_found("no such task");
    };
    let stacks = crate::scheduler::rpc::call_stack(&app.scheduler, Some(vec![key])).await;
    html_page(&format!("Call Stack: {text}"), &call_stack_body(&stacks))
}

fn logs_body(records: &Value) -> String {
    let mut body = String::from("<table class=\"logs\"><tr><th>Level</th><th>Message</th></tr>");
    for rec in records.as_seq().unwrap_or(&[]) {
        let f = rec.as_seq().unwrap_or(&[]);
        let (level, line) = match f {
            [l, m] | [_, l, m] => (l.to_text(), m.to_text()),
            _ => continue,
        };
        let _ = write!(
            body,
            "<tr class=\"{}\"><td>{}</td><td><pre>{}</pre></td></tr>",
            escape(&level.to_lowercase()),
            escape(&level),
            escape(&line)
        );
    }
    body.push_str("</table>");
    body
}

async fn scheduler_logs() -> Response {
    html_page(
        "Logs",
        &logs_body(&crate::logring::get_logs(0.0, None, false)),
    )
}

async fn worker_logs(State(app): State<Arc<AppState>>, Path(page): Path<String>) -> Response {
    let Some(address) = page_subject(&page).map(str::to_string) else {
        return not_found("not a worker page");
    };
    let a = address.clone();
    match app
        .scheduler
        .with_state(move |s, _| s.worker_id(&a).is_some())
        .await
    {
        None => return closing(),
        Some(false) => return not_found("no such worker"),
        Some(true) => {}
    }
    let request = Value::map([("op", Value::str("get_logs"))]);
    match app.scheduler.rpc.call(&address, request).await {
        Ok(logs) => html_page(&format!("Logs: {address}"), &logs_body(&logs)),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("the worker did not answer: {e}\n"),
        )
            .into_response(),
    }
}

async fn exceptions(State(app): State<Arc<AppState>>) -> Response {
    let Some(raised) = app.scheduler.with_state(|s, _| s.raised_tasks()).await else {
        return closing();
    };
    let mut body = String::from(
        "<table class=\"exceptions\"><tr><th>Key</th><th>Exception</th><th>Traceback</th></tr>",
    );
    for (key, exception, traceback) in &raised {
        let _ = write!(
            body,
            "<tr><td>{}</td><td><code>{}</code></td><td><details><summary>Traceback\
             </summary><pre>{}</pre></details></td></tr>",
            task_link(key),
            escape(exception),
            escape(traceback)
        );
    }
    body.push_str("</table>");
    if raised.len() == MAX_ROWS {
        let _ = write!(body, "<p>The first {MAX_ROWS} shown.</p>");
    }
    html_page("Exceptions", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A story record as `State::story` gives it.
    fn record(key: &str, start: &str, finish: &str, recs: usize) -> Value {
        Value::Array(vec![
            Value::str(key),
            Value::str(start),
            Value::str(finish),
            Value::Map(
                (0..recs)
                    .map(|i| (Value::str(format!("dep-{i}")), Value::str("waiting")))
                    .collect(),
            ),
            Value::str("update-graph-1.5"),
            Value::Float(1.5),
        ])
    }

    #[test]
    fn the_transition_log_box_has_a_row_per_transition_and_recommendation() {
        let small = transition_log_box(&[
            record("x", "released", "waiting", 2),
            record("x", "waiting", "processing", 0),
        ]);
        // a header row, two transitions, two recommendations
        assert_eq!(small.matches("<tr>").count(), 5, "{small}");
        assert!(small.contains("<td>released</td><td>waiting</td><td>update-graph-1.5</td>"));
        assert!(small.contains("dep-1.html") && !small.contains("rows shown"));

        // a transition recommending more than a table holds: cut, said so
        let big = transition_log_box(&[
            record("x", "released", "waiting", 10),
            record("x", "memory", "forgotten", 2 * MAX_ROWS),
            record("x", "released", "forgotten", 0),
        ]);
        assert!(big.matches("<tr>").count() <= MAX_ROWS + 1);
        assert!(
            big.contains(&format!("The first {MAX_ROWS} rows shown")),
            "{big}"
        );
        assert!(big.ends_with("</div>"));
    }

    #[test]
    fn keys_are_found_by_their_python_str() {
        let table: [(&str, Value); 3] = [
            ("inc-123", Value::str("inc-123")),
            (
                "('x', 0)",
                Value::Array(vec![Value::str("x"), Value::Int(0)]),
            ),
            (
                "('a', ('b', 1.5))",
                Value::Array(vec![
                    Value::str("a"),
                    Value::Array(vec![Value::str("b"), Value::Float(1.5)]),
                ]),
            ),
        ];
        for (text, value) in table {
            let want = Key::from_value(&value).unwrap();
            assert!(key_candidates(text).contains(&want), "{text}");
            assert_eq!(dask_core::coordination::key_label(&want), text);
        }
    }

    #[test]
    fn addresses_and_keys_are_escaped_as_one_path_segment() {
        assert_eq!(
            url_escape("tcp://127.0.0.1:8786"),
            "tcp%3A%2F%2F127.0.0.1%3A8786"
        );
        assert_eq!(url_escape("('x', 0)"), "%28%27x%27%2C%200%29");
        assert_eq!(page_subject("a.html"), Some("a"));
        assert_eq!(page_subject("a"), None);
    }

    #[test]
    fn log_records_with_and_without_timestamps_are_listed() {
        let logs = Value::Array(vec![
            Value::Array(vec![Value::str("INFO"), Value::str("one <b>")]),
            Value::Array(vec![
                Value::Float(1.0),
                Value::str("WARNING"),
                Value::str("two"),
            ]),
        ]);
        let html = logs_body(&logs);
        assert!(html.contains("<td>INFO</td><td><pre>one &lt;b&gt;</pre>"));
        assert!(html.contains("<td>WARNING</td><td><pre>two</pre>"));
    }
}
