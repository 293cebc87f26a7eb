//! A long stall of the event loop is reported like Dask's
//! "Event loop was unresponsive in Scheduler for X s" and shows in the tick
//! and busy-time metrics.

use dask_scheduler::logging::DaskFormat;
use dask_scheduler::materializer::{MaterializerConfig, MaterializerPool};
use dask_scheduler::net::rpc::RpcPool;
use dask_scheduler::scheduler::{Scheduler, SchedulerInfo};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_stall_is_logged_and_measured() {
    let buf = Buf::default();
    let sink = buf.clone();
    tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .event_format(DaskFormat)
        .init();

    let materializer = MaterializerPool::start(MaterializerConfig {
        python: Some("/nonexistent/python".into()),
        pool_size: 1,
        request_timeout: Duration::from_secs(5),
        ..MaterializerConfig::default()
    })
    .await;
    let info = SchedulerInfo {
        id: "Scheduler-test".into(),
        address: "tcp://127.0.0.1:0".into(),
        dashboard_port: None,
        started: 0.0,
    };
    let rpc = RpcPool::new(Default::default(), Duration::from_secs(1));
    let state = dask_core::State::new(Default::default());
    let (sched, _loop) = Scheduler::start(info, state, rpc, materializer, None);

    // Block the event loop for 3.5 s (Dask's tick limit is 3 s).
    sched
        .with_state(|_, _| std::thread::sleep(Duration::from_millis(3500)))
        .await
        .expect("event loop alive");
    // The next tick notices; wait (boundedly) for the line.
    let mut out = String::new();
    for _ in 0..100 {
        out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        if out.contains("Event loop was unresponsive") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = out
        .lines()
        .find(|l| l.contains("Event loop was unresponsive"))
        .unwrap_or_else(|| panic!("no stall warning in\n{out}"));
    assert!(
        line.contains(" - distributed.core - INFO - Event loop was unresponsive in Scheduler for "),
        "{line}"
    );
    let secs: f64 = line
        .split("Scheduler for ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {line}"));
    assert!(secs >= 3.4, "{line}");

    let snap = sched
        .with_state(|s, _| (s.metrics_snapshot(), s.config().work_stealing))
        .await
        .unwrap();
    let text = dask_scheduler::metrics::render(&snap.0, snap.1);
    assert!(metric(&text, "dask_scheduler_tick_duration_maximum_seconds") >= 3.4);
    assert!(metric(&text, "dask_scheduler_event_loop_busy_seconds_total") >= 3.4);
    assert!(metric(&text, "dask_scheduler_tick_count_total") >= 1.0);
    // The maximum is "since the last scrape": a second scrape starts afresh.
    let text = dask_scheduler::metrics::render(&snap.0, snap.1);
    assert!(metric(&text, "dask_scheduler_tick_duration_maximum_seconds") < 3.4);
}
