//! Checks shared by the connection tests of each scheme (`net_tls.rs`,
//! `net_ws.rs`).

use dask_scheduler::net::Conn;
use dask_wire::Value;
use std::time::{Duration, Instant};

/// Both ends name each other, a message larger than a TLS record or a
/// socket buffer crosses one way, and fifty small ones the other way, in
/// order.
pub async fn exchange_big_and_many(dialled: &mut Conn, accepted: &mut Conn, addr: &str) {
    assert_eq!(dialled.peer(), addr);
    assert_eq!(accepted.peer(), dialled.local());
    let big = Value::map([
        ("op", Value::str("echo")),
        ("data", Value::Bin(vec![7u8; 300_000].into())),
    ]);
    dialled.write(&big).await.unwrap();
    assert_eq!(accepted.read().await.unwrap(), big);
    for i in 0..50 {
        accepted.write(&Value::Int(i)).await.unwrap();
    }
    for i in 0..50 {
        assert_eq!(dialled.read().await.unwrap(), Value::Int(i));
    }
}

/// An idle connection, after whatever its protocol sends once connected
/// (TLS 1.3 session tickets), is not stale, and the next message still
/// reads correctly.
pub async fn idle_is_not_stale(dialled: &mut Conn, accepted: &mut Conn) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!dialled.is_stale());
    accepted.write(&Value::str("still here")).await.unwrap();
    assert_eq!(dialled.read().await.unwrap(), Value::str("still here"));
    assert!(!dialled.is_stale());
}

/// `dialled` notices within `within` that its peer has closed.
pub async fn becomes_stale(dialled: &mut Conn, within: Duration) {
    let t0 = Instant::now();
    while !dialled.is_stale() {
        assert!(t0.elapsed() < within, "closed peer never detected");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
