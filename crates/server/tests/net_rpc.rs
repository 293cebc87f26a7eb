//! `RpcPool` against small fake workers.

use dask_scheduler::net::listener::{serve, ConnectionHandler};
use dask_scheduler::net::{Conn, RpcError, RpcPool, Scheme};
use dask_wire::frames::FrameLimits;
use dask_wire::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const T: Duration = Duration::from_secs(5);

/// A fake worker: counts connections, records every message, and answers
/// `get_data` with busy first, then OK (and waits for the "OK" ack).
#[derive(Default)]
struct FakeWorker {
    connections: AtomicUsize,
    get_data_calls: AtomicUsize,
    busy_first: AtomicUsize,
    received: Mutex<Vec<Value>>,
}

impl FakeWorker {
    fn log(&self, v: &Value) {
        self.received.lock().unwrap().push(v.clone());
    }
}

struct Handler(Arc<FakeWorker>);

impl ConnectionHandler for Handler {
    fn handle(&self, conn: Conn) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let w = self.0.clone();
        Box::pin(async move {
            w.connections.fetch_add(1, Ordering::SeqCst);
            let mut conn = conn;
            while let Ok(msg) = conn.read().await {
                w.log(&msg);
                let op = msg.get("op").and_then(Value::as_str).unwrap_or("");
                let reply = match op {
                    "echo" => msg.clone(),
                    "slow" => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Value::str("slow-done")
                    }
                    "fail" => Value::map([
                        ("status", Value::str("uncaught-error")),
                        ("exception", Value::str("boom")),
                        ("traceback", Value::Nil),
                        ("exception_text", Value::str("Exception('boom')")),
                        ("traceback_text", Value::str("")),
                    ]),
                    "hangup" => return,
                    "get_data" => {
                        let n = w.get_data_calls.fetch_add(1, Ordering::SeqCst);
                        if n < w.busy_first.load(Ordering::SeqCst) {
                            Value::map([("status", Value::str("busy"))])
                        } else {
                            let keys = msg.get("keys").cloned().unwrap_or(Value::Nil);
                            let data: Vec<(Value, Value)> = keys
                                .as_seq()
                                .unwrap_or(&[])
                                .iter()
                                .map(|k| (k.clone(), Value::Int(42)))
                                .collect();
                            let reply = Value::map([
                                ("status", Value::str("OK")),
                                ("data", Value::Map(data)),
                            ]);
                            if conn.write(&reply).await.is_err() {
                                return;
                            }
                            // The worker blocks until the requester acknowledges.
                            match conn.read().await {
                                Ok(ack) => w.log(&ack),
                                Err(_) => return,
                            }
                            continue;
                        }
                    }
                    _ => Value::Nil,
                };
                if conn.write(&reply).await.is_err() {
                    return;
                }
            }
        })
    }
}

async fn fake_worker() -> (Arc<FakeWorker>, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", l.local_addr().unwrap());
    let w = Arc::new(FakeWorker::default());
    tokio::spawn(serve(
        l,
        Scheme::Tcp,
        FrameLimits::default(),
        None,
        Arc::new(Handler(w.clone())),
    ));
    (w, addr)
}

fn pool() -> RpcPool {
    RpcPool::new(FrameLimits::default(), Duration::from_secs(2))
}

#[tokio::test]
async fn get_data_retries_busy_and_acknowledges() {
    let (w, addr) = fake_worker().await;
    w.busy_first.store(1, Ordering::SeqCst);
    let rpc = pool();
    let t0 = Instant::now();
    let reply = tokio::time::timeout(
        T,
        rpc.get_data(
            &addr,
            vec![
                Value::str("x"),
                Value::Array(vec![Value::str("y"), Value::Int(0)]),
            ],
            Some("tcp://scheduler:8786".into()),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(140),
        "no backoff after busy"
    );
    assert_eq!(reply.get("status"), Some(&Value::str("OK")));
    assert_eq!(reply.get("data").unwrap().as_map().unwrap().len(), 2);
    assert_eq!(w.get_data_calls.load(Ordering::SeqCst), 2);

    // The worker saw: get_data (busy), get_data (OK), then the bare "OK"
    // (which it logs a moment after get_data has returned).
    let t0 = Instant::now();
    while w.received.lock().unwrap().len() < 3 && t0.elapsed() < T {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = w.received.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].get("op"), Some(&Value::str("get_data")));
    assert_eq!(got[0].get("reply"), Some(&Value::Bool(true)));
    assert_eq!(got[0].get("who"), Some(&Value::str("tcp://scheduler:8786")));
    assert_eq!(got[2], Value::str("OK"));
    // One connection served all of it, and it went back to the pool.
    assert_eq!(w.connections.load(Ordering::SeqCst), 1);
    assert_eq!(rpc.idle_count(&addr), 1);
}

#[tokio::test]
async fn call_reuses_connections_and_returns_error_maps() {
    let (w, addr) = fake_worker().await;
    let rpc = pool();
    for i in 0..3 {
        let reply = rpc
            .call(
                &addr,
                Value::map([("op", Value::str("echo")), ("i", Value::Int(i))]),
            )
            .await
            .unwrap();
        assert_eq!(reply.get("i"), Some(&Value::Int(i)));
        assert_eq!(reply.get("reply"), Some(&Value::Bool(true)));
    }
    assert_eq!(w.connections.load(Ordering::SeqCst), 1);

    let err_map = rpc
        .call(&addr, Value::map([("op", Value::str("fail"))]))
        .await
        .unwrap();
    assert_eq!(err_map.get("status"), Some(&Value::str("uncaught-error")));

    // Concurrent calls open more connections; idle ones are then kept.
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let rpc = rpc.clone();
            let addr = addr.clone();
            tokio::spawn(async move {
                rpc.call(&addr, Value::map([("op", Value::str("slow"))]))
                    .await
            })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), Value::str("slow-done"));
    }
    assert_eq!(w.connections.load(Ordering::SeqCst), 3);
    assert_eq!(rpc.idle_count(&addr), 3);

    // close: true is not pooled.
    rpc.call(
        &addr,
        Value::map([("op", Value::str("echo")), ("close", Value::Bool(true))]),
    )
    .await
    .unwrap();
    assert_eq!(rpc.idle_count(&addr), 2);

    rpc.remove(&addr);
    assert_eq!(rpc.idle_count(&addr), 0);

    assert!(matches!(
        rpc.call(&addr, Value::str("not a map")).await,
        Err(RpcError::Protocol { .. })
    ));
}

#[tokio::test]
async fn a_closed_idle_connection_is_replaced() {
    let (w, addr) = fake_worker().await;
    let rpc = pool();
    rpc.call(&addr, Value::map([("op", Value::str("echo"))]))
        .await
        .unwrap();
    // The worker hangs up on the next request: that call fails...
    let e = rpc
        .call(&addr, Value::map([("op", Value::str("hangup"))]))
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::Conn { .. }), "{e:?}");
    assert_eq!(rpc.idle_count(&addr), 0, "a failed connection was pooled");
    // ...and the next one gets a fresh connection.
    rpc.call(&addr, Value::map([("op", Value::str("echo"))]))
        .await
        .unwrap();
    assert_eq!(w.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn dead_worker_fails_fast() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let rpc = pool();
    let t0 = Instant::now();
    let e = rpc
        .get_data(
            &format!("tcp://127.0.0.1:{port}"),
            vec![Value::str("x")],
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::Conn { .. }), "{e:?}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(2));
}
