//! The dashboard-port HTTP server: `/health`.

use dask_scheduler::http::{self, HttpState};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct NoState;
impl HttpState for NoState {}

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
    let addr = start(http::router(Arc::new(NoState))).await;
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
        let addr = start(http::with_prefix(http::router(Arc::new(NoState)), prefix)).await;
        assert!(
            get(addr, "/dask/health").await.ends_with("\r\n\r\nok"),
            "{prefix}"
        );
        assert!(
            get(addr, "/health").await.starts_with("HTTP/1.1 404"),
            "{prefix}"
        );
    }
    let addr = start(http::with_prefix(http::router(Arc::new(NoState)), "")).await;
    assert!(get(addr, "/health").await.ends_with("\r\n\r\nok"));
}
