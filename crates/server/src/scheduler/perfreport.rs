//! `performance_report` (`with distributed.performance_report(filename=...)`):
//! one self-contained HTML page about what ran since the block started.
//!
//! Why: users wrap computations in that block to keep a record of a run;
//! against a scheduler that refuses it, the block fails and their script
//! with it. Python renders the report with Bokeh inside the scheduler; this
//! scheduler writes plain HTML and SVG from what it holds: the summary
//! Python's has (duration, tasks and time per action, the cluster, the
//! calling code), the task stream, its own CPU and memory, the workers'
//! profiles, its logs and the bandwidth the workers measured (as tables:
//! Python draws them as charts). The scheduler profile is left out (there
//! is no Python event loop here to profile).
//!
//! The block's entry reads the system monitor's sample count through
//! `run_on_scheduler(lambda dask_scheduler: dask_scheduler.monitor.count)`;
//! `run_function.rs` answers that call.

use super::errors::error_reply;
use super::rpc::versions;
use super::Scheduler;
use crate::http::json::{escape, format_bytes};
use crate::logging::format_time;
use crate::monitor::{self, Sample};
use dask_core::queries::BandwidthReport;
use dask_wire::{Key, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// Task-stream rectangles drawn at most (the rest are counted, not drawn).
const MAX_RECTS: usize = 20_000;
/// Profile rows shown.
const PROFILE_ROWS: usize = 40;
/// Width of the SVG plots, pixels.
const WIDTH: f64 = 1000.0;

/// What the report is made of.
#[derive(Debug)]
pub struct ReportInput {
    /// When the block started and ended (epoch seconds).
    pub start: f64,
    /// See `start`.
    pub stop: f64,
    /// The scheduler's address.
    pub address: String,
    /// Workers, threads and memory limit in all.
    pub workers: usize,
    /// See `workers`.
    pub threads: i64,
    /// See `workers`.
    pub memory: i64,
    /// `(package, version)` of dask and distributed in the materializer's Python.
    pub versions: Vec<(String, String)>,
    /// The code that ran the block (from the client).
    pub code: String,
    /// Task-stream records since `start`.
    pub task_stream: Vec<Value>,
    /// The workers' merged profiles since `start`: compute, then administrative.
    pub profiles: [Value; 2],
    /// `[time, level, line]` log records since `start`, newest first.
    pub logs: Vec<Value>,
    /// This process's samples since the block started.
    pub samples: Vec<Sample>,
    /// The bandwidth estimates when the block ended.
    pub bandwidth: BandwidthReport,
}

/// `performance_report(start, last_count, code, mode)`: the HTML text.
pub async fn rpc_performance_report(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    let start = msg
        .get("start")
        .and_then(Value::as_f64)
        .ok_or_else(|| error_reply("TypeError", "performance_report needs a numeric 'start'"))?;
    let last_count = msg.get("last_count").and_then(Value::as_i64).unwrap_or(0);
    let code = msg
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let stop = super::now();
    let (task_stream, (workers, threads, memory), bandwidth) = sched
        .with_state(move |s, now| {
            let from = Value::Float(start);
            (
                s.task_stream(Some(&from), None, None, None, now),
                s.cluster_totals(),
                s.bandwidth_report(),
            )
        })
        .await
        .ok_or_else(super::errors::shutting_down)?;
    let profile = |server: bool| {
        Value::map([
            ("op", Value::str("profile")),
            ("start", Value::Float(start)),
            ("server", Value::Bool(server)),
            ("merge_workers", Value::Bool(true)),
        ])
    };
    let (compute, admin) = futures_util::future::join(
        super::profile::rpc_profile(sched, &profile(false)),
        super::profile::rpc_profile(sched, &profile(true)),
    )
    .await;
    let empty = super::profile::empty_profile;
    let packages = versions(sched);
    let versions = ["dask", "distributed"]
        .iter()
        .map(|p| {
            let v = packages
                .get("packages")
                .and_then(|m| m.get(p))
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            (p.to_string(), v.to_string())
        })
        .collect();
    let input = ReportInput {
        start,
        stop,
        address: sched.info.address.clone(),
        workers,
        threads,
        memory,
        versions,
        code,
        task_stream,
        profiles: [
            compute.unwrap_or_else(|_| empty()),
            admin.unwrap_or_else(|_| empty()),
        ],
        logs: crate::logring::get_logs(start, None, true)
            .as_seq()
            .unwrap_or(&[])
            .to_vec(),
        samples: monitor::since(last_count.max(0) as u64),
        bandwidth,
    };
    let html = tokio::task::spawn_blocking(move || render(&input))
        .await
        .map_err(|e| error_reply("RuntimeError", &format!("performance_report: {e}")))?;
    Ok(Value::str(html))
}

/// One bar of the task stream.
#[derive(Debug, Clone, PartialEq)]
struct Rect {
    row: String,
    name: String,
    action: String,
    key: String,
    start: f64,
    stop: f64,
}

/// The bars of the task stream: one per `startstops` entry, a row per
/// worker thread, named by the task's prefix (transfers by their action,
/// as Python's `rectangles` names them).
fn rectangles(records: &[Value]) -> Vec<Rect> {
    let mut out = Vec::new();
    for r in records {
        let key = r.get("key").cloned().unwrap_or(Value::Nil);
        let prefix = Key::from_value(&key).map_or_else(|_| key.to_text(), |k| k.prefix());
        let worker = r.get("worker").map(Value::to_text).unwrap_or_default();
        let thread = r.get("thread").map(Value::to_text).unwrap_or_default();
        for ss in r.get("startstops").and_then(Value::as_seq).unwrap_or(&[]) {
            let action = ss.get("action").map(Value::to_text).unwrap_or_default();
            let (Some(start), Some(stop)) = (
                ss.get("start").and_then(Value::as_f64),
                ss.get("stop").and_then(Value::as_f64),
            ) else {
                continue;
            };
            let name = if action == "compute" {
                prefix.clone()
            } else {
                format!("{prefix}-{action}")
            };
            out.push(Rect {
                row: format!("{worker} {thread}"),
                name,
                action,
                key: key.to_text(),
                start,
                stop,
            });
        }
    }
    out
}

/// A stable colour per name (transfers red, disk orange, as in Python's).
fn colour(name: &str, action: &str) -> &'static str {
    const PALETTE: [&str; 10] = [
        "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
        "#aec7e8", "#98df8a",
    ];
    match action {
        "transfer" => "#d62728",
        "disk-write" | "disk-read" => "#ff7f0e",
        _ => {
            let h = name
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
            PALETTE[h as usize % PALETTE.len()]
        }
    }
}

fn task_stream_svg(rects: &[Rect], out: &mut String) {
    if rects.is_empty() {
        out.push_str("<p>No tasks ran in this block.</p>");
        return;
    }
    let t0 = rects.iter().map(|r| r.start).fold(f64::INFINITY, f64::min);
    let t1 = rects
        .iter()
        .map(|r| r.stop)
        .fold(f64::NEG_INFINITY, f64::max);
    let span = (t1 - t0).max(1e-6);
    let rows: BTreeMap<&str, usize> = {
        let mut names: Vec<&str> = rects.iter().map(|r| r.row.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter().enumerate().map(|(i, n)| (n, i)).collect()
    };
    let row_h = 18.0;
    let height = rows.len() as f64 * row_h + 20.0;
    let _ = write!(
        out,
        "<svg class=\"stream\" width=\"{WIDTH}\" height=\"{height}\" \
         xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for r in rects.iter().take(MAX_RECTS) {
        let x = (r.start - t0) / span * WIDTH;
        let w = ((r.stop - r.start) / span * WIDTH).max(0.5);
        let y = rows[r.row.as_str()] as f64 * row_h;
        let _ = write!(
            out,
            "<rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{:.1}\" fill=\"{}\">\
             <title>{} ({}) {}: {}</title></rect>",
            row_h - 2.0,
            colour(&r.name, &r.action),
            escape(&r.name),
            escape(&r.action),
            escape(&r.key),
            format_time(r.stop - r.start),
        );
    }
    let _ = write!(
        out,
        "<text x=\"0\" y=\"{:.1}\">0 s</text><text x=\"{WIDTH}\" y=\"{:.1}\" \
         text-anchor=\"end\">{}</text></svg>",
        height - 4.0,
        height - 4.0,
        escape(&format_time(span)),
    );
    let _ = write!(out, "<p>{} rows (worker thread): ", rows.len());
    let names: Vec<String> = rows.keys().map(|r| escape(r)).collect();
    out.push_str(&names.join(", "));
    out.push_str("</p>");
    if rects.len() > MAX_RECTS {
        let _ = write!(out, "<p>{} of {} bars drawn.</p>", MAX_RECTS, rects.len());
    }
}

/// A line plot of `(time, value)` points.
fn line_svg(title: &str, points: &[(f64, f64)], unit: fn(f64) -> String, out: &mut String) {
    let _ = write!(out, "<h3>{}</h3>", escape(title));
    if points.len() < 2 {
        out.push_str("<p>Too few samples (one every 500 ms).</p>");
        return;
    }
    let (t0, t1) = (points[0].0, points[points.len() - 1].0);
    let hi = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
    let height = 150.0;
    let path: Vec<String> = points
        .iter()
        .map(|(t, v)| {
            format!(
                "{:.1},{:.1}",
                (t - t0) / (t1 - t0).max(1e-6) * WIDTH,
                height - v / hi * (height - 10.0)
            )
        })
        .collect();
    let _ = write!(
        out,
        "<svg width=\"{WIDTH}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/>\
         <text x=\"2\" y=\"12\">max {}</text></svg>",
        path.join(" "),
        escape(&unit(hi)),
    );
}

/// The profile's frames by the samples spent in them (not in what they
/// called), most first.
fn profile_rows(tree: &Value) -> (i64, Vec<(String, i64)>) {
    let total = tree.get("count").and_then(Value::as_i64).unwrap_or(0);
    let mut by_frame: BTreeMap<String, i64> = BTreeMap::new();
    let mut stack = vec![tree];
    while let Some(node) = stack.pop() {
        let count = node.get("count").and_then(Value::as_i64).unwrap_or(0);
        let children: Vec<&Value> = node
            .get("children")
            .and_then(Value::as_map)
            .map(|m| m.iter().map(|(_, c)| c).collect())
            .unwrap_or_default();
        let inner: i64 = children
            .iter()
            .filter_map(|c| c.get("count").and_then(Value::as_i64))
            .sum();
        let own = count - inner;
        if own > 0 {
            if let Some(d) = node.get("description") {
                let field = |k: &str| d.get(k).map(Value::to_text).unwrap_or_default();
                let frame = format!(
                    "{} ({}:{})",
                    field("name"),
                    field("filename"),
                    field("line_number")
                );
                *by_frame.entry(frame).or_default() += own;
            }
        }
        stack.extend(children);
    }
    let mut rows: Vec<(String, i64)> = by_frame.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows.truncate(PROFILE_ROWS);
    (total, rows)
}

fn profile_table(tree: &Value, out: &mut String) {
    let (total, rows) = profile_rows(tree);
    if total == 0 || rows.is_empty() {
        out.push_str("<p>No samples.</p>");
        return;
    }
    let _ = write!(
        out,
        "<p>{total} samples in all; the frames they were taken in (not counting what those \
         frames called):</p><table><tr><th>frame</th><th>samples</th><th>share</th></tr>"
    );
    for (frame, n) in rows {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{n}</td><td>{:.1} %</td></tr>",
            escape(&frame),
            100.0 * n as f64 / total as f64
        );
    }
    out.push_str("</table>");
}

fn percent(v: f64) -> String {
    format!("{v:.0} %")
}

fn bytes(v: f64) -> String {
    format_bytes(v as i64)
}

/// The page.
pub fn render(r: &ReportInput) -> String {
    let rects = rectangles(&r.task_stream);
    let mut time_per_action: BTreeMap<&str, f64> = BTreeMap::new();
    for x in &rects {
        *time_per_action.entry(x.action.as_str()).or_default() += x.stop - x.start;
    }
    let mut out = String::with_capacity(64 * 1024 + rects.len().min(MAX_RECTS) * 200);
    out.push_str(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Dask Performance Report\
         </title><style>body{font-family:sans-serif;margin:1em 2em}nav a{margin-right:1em}\
         section{border-top:1px solid #ccc;margin-top:1.5em}table{border-collapse:collapse}\
         td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;font-size:90%}\
         svg{border:1px solid #eee}svg.stream{display:block}pre{background:#f6f6f6;\
         padding:.5em}</style></head><body><h1>Dask Performance Report</h1><nav>\
         <a href=\"#summary\">Summary</a><a href=\"#task-stream\">Task Stream</a>\
         <a href=\"#system\">System</a><a href=\"#logs\">Scheduler Logs</a>\
         <a href=\"#compute\">Worker Profile (compute)</a>\
         <a href=\"#workers\">Worker Profile (administrative)</a></nav>",
    );
    let _ = write!(
        out,
        "<section id=\"summary\"><h2>Duration: {}</h2><h2>Tasks Information</h2><ul>\
         <li>number of tasks: {}</li>",
        escape(&format_time(r.stop - r.start)),
        r.task_stream.len()
    );
    for (action, t) in &time_per_action {
        let _ = write!(
            out,
            "<li>{} time: {}</li>",
            escape(action),
            escape(&format_time(*t))
        );
    }
    let _ = write!(
        out,
        "</ul><h2>Scheduler Information</h2><ul><li>Address: {}</li><li>Workers: {}</li>\
         <li>Threads: {}</li><li>Memory: {}</li>",
        escape(&r.address),
        r.workers,
        r.threads,
        escape(&format_bytes(r.memory)),
    );
    for (package, version) in &r.versions {
        let name = if package == "dask" {
            "Dask Version"
        } else {
            "Dask.Distributed Version"
        };
        let _ = write!(out, "<li>{name}: {}</li>", escape(version));
    }
    let _ = write!(
        out,
        "<li>Scheduler: the Rust dask-scheduler {}</li></ul><h2>Calling Code</h2><pre>{}</pre>\
         <p>Not in this report: the scheduler's profile (this scheduler runs no Python event \
         loop to profile).</p></section>",
        env!("CARGO_PKG_VERSION"),
        escape(&r.code),
    );
    out.push_str("<section id=\"task-stream\"><h2>Task Stream</h2>");
    task_stream_svg(&rects, &mut out);
    out.push_str("</section><section id=\"system\"><h2>System (the scheduler process)</h2>");
    let cpu: Vec<(f64, f64)> = r.samples.iter().map(|s| (s.time, s.cpu)).collect();
    let mem: Vec<(f64, f64)> = r.samples.iter().map(|s| (s.time, s.memory)).collect();
    line_svg("CPU", &cpu, percent, &mut out);
    line_svg("Memory", &mem, bytes, &mut out);
    let _ = write!(
        out,
        "<p>{} samples over {}.</p></section>",
        r.samples.len(),
        escape(&format_time(match (r.samples.first(), r.samples.last()) {
            (Some(a), Some(b)) => b.time - a.time,
            _ => 0.0,
        }))
    );
    out.push_str("<section id=\"logs\"><h2>Scheduler Logs</h2><table>");
    for rec in &r.logs {
        let f = rec.as_seq().unwrap_or(&[]);
        let (time, level, line) = match f {
            [t, l, m] => (t.as_f64().unwrap_or(0.0), l.to_text(), m.to_text()),
            _ => continue,
        };
        let when = chrono::DateTime::from_timestamp_millis((time * 1e3) as i64)
            .map(|d| d.format("%H:%M:%S%.3f").to_string())
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr><td>{when}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&level),
            escape(&line)
        );
    }
    out.push_str("</table></section><section id=\"compute\"><h2>Worker Profile (compute)</h2>");
    profile_table(&r.profiles[0], &mut out);
    out.push_str("</section><section id=\"workers\"><h2>Worker Profile (administrative)</h2>");
    profile_table(&r.profiles[1], &mut out);
    out.push_str("</section>");
    bandwidth_tables(&r.bandwidth, &mut out);
    out.push_str("</body></html>\n");
    out
}

/// Bytes per second as Dask's dashboard writes them (`format_bytes`).
fn rate(bytes_per_s: f64) -> String {
    escape(&format_bytes(bytes_per_s.clamp(0.0, i64::MAX as f64) as i64))
}

/// Python's "Bandwidth (Workers)" and "Bandwidth (Types)" tabs, as tables:
/// what the workers measured of their transfers of more than 1 MB, by pair
/// and by type of data, headed by the overall estimate.
fn bandwidth_tables(b: &BandwidthReport, out: &mut String) {
    let _ = write!(
        out,
        "<section id=\"bandwidth-workers\"><h2>Bandwidth (Workers)</h2>\
         <p>Bandwidth: {}/s</p>",
        rate(b.overall)
    );
    if b.workers.is_empty() {
        out.push_str("<p>No transfer between workers measured.</p>");
    } else {
        out.push_str(
            "<table><tr><th>Receiving worker</th><th>Sending worker</th><th>Bandwidth</th></tr>",
        );
        for (to, from, bw) in &b.workers {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}/s</td></tr>",
                escape(to),
                escape(from),
                rate(*bw)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section><section id=\"bandwidth-types\"><h2>Bandwidth (Types)</h2>");
    if b.types.is_empty() {
        out.push_str("<p>No transfer measured.</p>");
    } else {
        out.push_str("<table><tr><th>Type</th><th>Bandwidth</th></tr>");
        for (name, bw) in &b.types {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}/s</td></tr>",
                escape(name),
                rate(*bw)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, worker: &str, thread: i64, spans: &[(&str, f64, f64)]) -> Value {
        Value::map([
            ("key", Value::str(key)),
            ("worker", Value::str(worker)),
            ("thread", Value::Int(thread)),
            (
                "startstops",
                Value::Array(
                    spans
                        .iter()
                        .map(|(a, s, e)| {
                            Value::map([
                                ("action", Value::str(*a)),
                                ("start", Value::Float(*s)),
                                ("stop", Value::Float(*e)),
                            ])
                        })
                        .collect(),
                ),
            ),
        ])
    }

    fn frame(name: &str, count: i64, children: Vec<Value>) -> Value {
        Value::map([
            (
                "description",
                Value::map([
                    ("name", Value::str(name)),
                    ("filename", Value::str("f.py")),
                    ("line_number", Value::Int(1)),
                ]),
            ),
            ("count", Value::Int(count)),
            ("identifier", Value::str(name)),
            (
                "children",
                Value::Map(
                    children
                        .into_iter()
                        .map(|c| (c.get("identifier").cloned().unwrap(), c))
                        .collect(),
                ),
            ),
        ])
    }

    #[test]
    fn bars_are_named_by_prefix_and_action_one_row_per_worker_thread() {
        let recs = [
            record(
                "inc-123",
                "tcp://a:1",
                7,
                &[("transfer", 1.0, 1.5), ("compute", 1.5, 2.0)],
            ),
            record("sum-9", "tcp://b:1", 3, &[("compute", 2.0, 2.5)]),
        ];
        let r = rectangles(&recs);
        let got: Vec<(&str, &str, &str)> = r
            .iter()
            .map(|x| (x.row.as_str(), x.name.as_str(), x.action.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("tcp://a:1 7", "inc-transfer", "transfer"),
                ("tcp://a:1 7", "inc", "compute"),
                ("tcp://b:1 3", "sum", "compute"),
            ]
        );
        assert_eq!(colour("inc-transfer", "transfer"), "#d62728");
        assert_eq!(colour("inc", "compute"), colour("inc", "compute"));
    }

    #[test]
    fn the_profile_table_counts_samples_where_they_were_taken() {
        // root 10: f 6 (g 4 of them), h 3, 1 in root itself
        let tree = frame(
            "root",
            10,
            vec![
                frame("f", 6, vec![frame("g", 4, vec![])]),
                frame("h", 3, vec![]),
            ],
        );
        let (total, rows) = profile_rows(&tree);
        assert_eq!(total, 10);
        let names: Vec<(String, i64)> = rows;
        assert_eq!(
            names,
            [
                ("g (f.py:1)".to_string(), 4),
                ("h (f.py:1)".to_string(), 3),
                ("f (f.py:1)".to_string(), 2),
                ("root (f.py:1)".to_string(), 1),
            ]
        );
    }

    #[test]
    fn the_page_has_the_summary_and_every_section() {
        let input = ReportInput {
            start: 100.0,
            stop: 102.5,
            address: "tcp://127.0.0.1:8786".into(),
            workers: 2,
            threads: 4,
            memory: 8 << 30,
            versions: vec![("dask".into(), "2026.8.0".into())],
            code: "x.sum().compute()  # <b>".into(),
            task_stream: vec![
                record("inc-1", "tcp://a:1", 1, &[("compute", 100.0, 100.5)]),
                record("inc-2", "tcp://a:1", 1, &[("compute", 100.5, 101.5)]),
            ],
            profiles: [frame("root", 3, vec![frame("work", 3, vec![])]), Value::Nil],
            logs: vec![Value::Array(vec![
                Value::Float(101.0),
                Value::str("INFO"),
                Value::str("Receive client connection: <c>"),
            ])],
            samples: (0..4)
                .map(|i| Sample {
                    time: 100.0 + i as f64 * 0.5,
                    cpu: 10.0 * i as f64,
                    memory: 1e8,
                })
                .collect(),
            bandwidth: BandwidthReport {
                overall: 2.5e8,
                workers: vec![("b".into(), "tcp://gone:1".into(), 1.5e8)],
                types: vec![("numpy.ndarray".into(), 3e8)],
            },
        };
        let html = render(&input);
        for want in [
            "<h2>Duration: 2.50 s</h2>",
            "number of tasks: 2",
            "<li>compute time: 1.50 s</li>",
            "Workers: 2",
            "Threads: 4",
            "Memory: 8.00 GiB",
            "Dask Version: 2026.8.0",
            "x.sum().compute()  # &lt;b&gt;",
            "Receive client connection: &lt;c&gt;",
            "<code>work (f.py:1)</code>",
            "4 samples over 1.50 s",
            "id=\"task-stream\"",
            "<p>Bandwidth: 238.42 MiB/s</p>",
            "<tr><td>b</td><td>tcp://gone:1</td><td>143.05 MiB/s</td></tr>",
            "<tr><td><code>numpy.ndarray</code></td><td>286.10 MiB/s</td></tr>",
        ] {
            assert!(html.contains(want), "missing {want:?}");
        }
        assert_eq!(html.matches("<rect ").count(), 2);
        assert!(!html.contains("<b>"), "code is escaped");
    }
}
