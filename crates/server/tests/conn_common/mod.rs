//! Checks shared by the connection tests of each scheme (`net_tls.rs`,
//! `net_ws.rs`).

use dask_scheduler::net::Conn;
use dask_wire::Value;

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
