//! The dashboard-port HTTP server: `/health`.

use dask_scheduler::http::{self, AppState};
use dask_scheduler::materializer::{MaterializerConfig, MaterializerPool};
use dask_scheduler::net::rpc::RpcPool;
use dask_scheduler::scheduler::{Scheduler, SchedulerInfo};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A real scheduler (no listener; materializer deliberately unavailable).
async fn app_state() -> Arc<AppState> {
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
    let (scheduler, _loop) = Scheduler::start(info, state, rpc, materializer, None);
    Arc::new(AppState {
        scheduler,
        routes: Default::default(),
    })
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

async fn start(router: axum::Router) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(http::serve(l, router));
    addr
}

#[tokio::test]
async fn health_is_plain_ok() {
    let addr = start(http::router(app_state().await)).await;
    let resp = get(addr, "/health").await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{resp}"
    );
    assert!(resp.ends_with("\r\n\r\nok"), "{resp}");
    let resp = get(addr, "/nope").await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
}

#[tokio::test]
async fn dashboard_prefix_moves_routes() {
    for prefix in ["/dask", "dask/", "/dask/"] {
        let addr = start(http::with_prefix(http::router(app_state().await), prefix)).await;
        assert!(
            get(addr, "/dask/health").await.ends_with("\r\n\r\nok"),
            "{prefix}"
        );
        assert!(
            get(addr, "/health").await.starts_with("HTTP/1.1 404"),
            "{prefix}"
        );
    }
    let addr = start(http::with_prefix(http::router(app_state().await), "")).await;
    assert!(get(addr, "/health").await.ends_with("\r\n\r\nok"));
}
