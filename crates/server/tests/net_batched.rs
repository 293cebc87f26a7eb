//! `BatchedSender`: coalescing, ordering, interval, close and peer loss.

use dask_scheduler::net::{BatchedSender, Conn, ConnError};
use dask_wire::frames::FrameLimits;
use dask_wire::Value;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const T: Duration = Duration::from_secs(5);

/// (the accepting side, a sender writing from the dialling side)
async fn pair(interval: Duration) -> (Conn, BatchedSender) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", l.local_addr().unwrap());
    let acc = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        Conn::accept(s, FrameLimits::default()).await.unwrap()
    });
    let dialled = Conn::dial(&addr, FrameLimits::default(), T).await.unwrap();
    let (_r, w) = dialled.into_split();
    // Keep the read half alive for the whole test by leaking it into a task.
    tokio::spawn(async move {
        let _keep = _r;
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    (acc.await.unwrap(), BatchedSender::spawn(w, interval))
}

fn op(i: usize) -> Value {
    Value::map([("op", Value::str("task")), ("i", Value::from(i))])
}

async fn read(conn: &mut Conn) -> Value {
    tokio::time::timeout(T, conn.read()).await.unwrap().unwrap()
}

#[tokio::test]
async fn coalesces_and_keeps_order() {
    let (mut peer, tx) = pair(Duration::from_millis(20)).await;
    for i in 0..100 {
        tx.send(op(i));
    }
    let mut seen = Vec::new();
    let mut batches = 0;
    while seen.len() < 100 {
        let Value::Array(items) = read(&mut peer).await else {
            panic!("batches are arrays");
        };
        batches += 1;
        seen.extend(items);
    }
    assert_eq!(seen, (0..100).map(op).collect::<Vec<_>>());
    assert!(batches <= 5, "{batches} batches for 100 quick sends");
    let stats = tx.stats();
    assert_eq!(stats.messages, 100);
    assert_eq!(stats.batches, batches);
    assert!(stats.bytes > 0);
}

#[tokio::test]
async fn raw_messages_keep_their_place() {
    let (mut peer, tx) = pair(Duration::from_millis(5)).await;
    tx.send_raw(Value::map([("status", Value::str("OK"))]));
    tx.send(op(1));
    tx.send(op(2));
    tx.send_raw(Value::str("raw"));
    tx.send(op(3));
    let mut got = Vec::new();
    while got.len() < 4 {
        got.push(read(&mut peer).await);
    }
    assert_eq!(
        got,
        vec![
            Value::map([("status", Value::str("OK"))]),
            Value::Array(vec![op(1), op(2)]),
            Value::str("raw"),
            Value::Array(vec![op(3)]),
        ]
    );
}

#[tokio::test]
async fn interval_bounds_latency_and_rate() {
    let interval = Duration::from_millis(500);
    let (mut peer, tx) = pair(interval).await;
    let t0 = Instant::now();
    tx.send(op(0));
    read(&mut peer).await;
    let first = t0.elapsed();
    assert!(
        first < Duration::from_millis(400),
        "idle stream wrote after {first:?}"
    );
    tx.send(op(1));
    tx.send(op(2));
    assert_eq!(read(&mut peer).await, Value::Array(vec![op(1), op(2)]));
    let second = t0.elapsed();
    assert!(
        second >= interval - Duration::from_millis(20),
        "second batch after {second:?}, interval {interval:?}"
    );
}

#[tokio::test]
async fn close_flushes_then_shuts_down() {
    let (mut peer, tx) = pair(Duration::from_millis(50)).await;
    for i in 0..5 {
        tx.send(op(i));
    }
    let clone = tx.clone();
    clone.close();
    assert!(tx.is_closed());
    tx.send(op(99)); // dropped, never panics
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(T, peer.read()).await.unwrap() {
            Ok(Value::Array(items)) => seen.extend(items),
            Ok(other) => panic!("unexpected {other}"),
            Err(ConnError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(seen, (0..5).map(op).collect::<Vec<_>>());
    tokio::time::timeout(T, tx.wait_closed()).await.unwrap();
}

#[tokio::test]
async fn peer_loss_ends_the_writer() {
    let (peer, tx) = pair(Duration::from_millis(1)).await;
    drop(peer);
    let t0 = Instant::now();
    let big = Value::Bin(vec![0u8; 64 * 1024].into());
    while !tx.is_closed() {
        assert!(t0.elapsed() < T, "writer never noticed the closed peer");
        tx.send(big.clone());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::timeout(T, tx.wait_closed()).await.unwrap();
}

#[tokio::test]
async fn dropping_every_handle_closes_the_stream() {
    let (mut peer, tx) = pair(Duration::from_millis(5)).await;
    tx.send(op(7));
    drop(tx);
    assert_eq!(read(&mut peer).await, Value::Array(vec![op(7)]));
    let end = tokio::time::timeout(T, peer.read()).await.unwrap();
    assert!(matches!(end, Err(ConnError::Closed)), "{end:?}");
}
