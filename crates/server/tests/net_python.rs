//! Interoperability with real `distributed` (the venv's Python): its client
//! comm talks to our listener, and our `RpcPool` talks to its `Server`, over
//! `tcp://` and over WebSockets (`ws://`).
//!
//! The Python is `DASK_SCHEDULER_PYTHON` (which `scripts/test.sh` sets: there
//! a Python without `distributed` fails these tests), else
//! `DASK_TEST_PYTHON`, else the repository's `.venv`; without one they are
//! skipped with a note.

use dask_scheduler::net::listener::{serve, ConnectionHandler};
use dask_scheduler::net::{Conn, RpcPool, Scheme};
use dask_wire::frames::FrameLimits;
use dask_wire::Value;
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;

const T: Duration = Duration::from_secs(60);

fn python() -> Option<String> {
    let required = std::env::var("DASK_SCHEDULER_PYTHON").ok();
    let py = required
        .clone()
        .or_else(|| std::env::var("DASK_TEST_PYTHON").ok())
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python").into());
    let ok = std::process::Command::new(&py)
        .args(["-c", "import distributed"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    match (ok, required) {
        (true, _) => Some(py),
        (false, Some(_)) => panic!("DASK_SCHEDULER_PYTHON={py} cannot import distributed"),
        (false, None) => {
            eprintln!("SKIPPED: no Python with distributed at {py} (set DASK_SCHEDULER_PYTHON)");
            None
        }
    }
}

/// Replies to each message with `{"status": "OK", "got": <message>}`.
struct Echo;

impl ConnectionHandler for Echo {
    fn handle(&self, conn: Conn) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(async move {
            let mut conn = conn;
            while let Ok(msg) = conn.read().await {
                let reply = Value::map([("status", Value::str("OK")), ("got", msg)]);
                if conn.write(&reply).await.is_err() {
                    break;
                }
            }
        })
    }
}

const CLIENT: &str = r#"
import asyncio, sys
from distributed.comm import connect

async def main():
    comm = await connect(sys.argv[1])
    await comm.write({"op": "ping", "payload": [1, 2.5, "three", b"four", None]})
    print(repr(await comm.read()))
    # larger than a WebSocket shard (8 MiB) and than the read buffer
    await comm.write({"op": "big", "data": b"x" * 20_000_000})
    got = (await comm.read())["got"]
    print(got["op"], len(got["data"]), set(got["data"]))
    await comm.close()

asyncio.run(main())
"#;

#[tokio::test]
async fn python_client_handshakes_with_our_listener() {
    python_client_round_trips(Scheme::Tcp).await
}

#[tokio::test]
async fn python_client_speaks_websocket_to_our_listener() {
    python_client_round_trips(Scheme::Ws).await
}

async fn python_client_round_trips(scheme: Scheme) {
    let Some(py) = python() else { return };
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("{}://{}", scheme.name(), l.local_addr().unwrap());
    tokio::spawn(serve(
        l,
        scheme,
        FrameLimits::default(),
        None,
        Arc::new(Echo),
    ));
    let out = tokio::time::timeout(
        T,
        Command::new(py)
            .args(["-c", CLIENT, &addr])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python client timed out")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
    // distributed decodes msgpack arrays as tuples.
    let want =
        "{'status': 'OK', 'got': {'op': 'ping', 'payload': (1, 2.5, 'three', b'four', None)}}\n\
                big 20000000 {120}";
    assert_eq!(stdout.trim(), want, "stderr:\n{stderr}");
}

const SERVER: &str = r#"
import asyncio
from distributed.core import Server

def echo(x=None):
    return {"x": x}

async def main():
    import sys
    from distributed.core import Status
    async def get_data_handler(comm, keys=(), who=None):
        await comm.write({"status": "OK", "data": {k: len(str(k)) for k in keys}})
        ack = await comm.read()
        print("ACK", repr(ack), flush=True)
        return Status.dont_reply
    server = Server({"echo": echo, "get_data": get_data_handler})
    await server.listen(sys.argv[1] + "://127.0.0.1:0")
    print("ADDR", server.address, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"#;

#[tokio::test]
async fn our_rpc_pool_talks_to_a_python_server() {
    rpc_pool_round_trips(Scheme::Tcp).await
}

#[tokio::test]
async fn our_rpc_pool_talks_websocket_to_a_python_server() {
    rpc_pool_round_trips(Scheme::Ws).await
}

async fn rpc_pool_round_trips(scheme: Scheme) {
    let Some(py) = python() else { return };
    let mut child = Command::new(py)
        .args(["-c", SERVER, scheme.name()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(T, async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("python server exited");
            if let Some(a) = line.strip_prefix("ADDR ") {
                return a.to_string();
            }
        }
    })
    .await
    .expect("python server did not start");
    assert!(addr.starts_with(&format!("{}://", scheme.name())), "{addr}");

    let rpc = RpcPool::new(FrameLimits::default(), Duration::from_secs(5));
    for i in 0..2 {
        let reply = rpc
            .call(
                &addr,
                Value::map([("op", Value::str("echo")), ("x", Value::Int(i))]),
            )
            .await
            .unwrap();
        assert_eq!(reply, Value::map([("x", Value::Int(i))]));
    }
    assert_eq!(rpc.idle_count(&addr), 1, "the connection was reused");

    let reply = rpc
        .get_data(&addr, vec![Value::str("abc")], None)
        .await
        .unwrap();
    assert_eq!(reply.get("status"), Some(&Value::str("OK")));
    assert_eq!(
        reply.get("data"),
        Some(&Value::map([("abc", Value::Int(3))]))
    );
    let ack = tokio::time::timeout(T, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ack, "ACK 'OK'");

    // The same pooled connection is still usable after the get_data dance.
    let reply = rpc
        .call(
            &addr,
            Value::map([("op", Value::str("echo")), ("x", Value::Int(9))]),
        )
        .await
        .unwrap();
    assert_eq!(reply, Value::map([("x", Value::Int(9))]));
    assert_eq!(rpc.idle_count(&addr), 1);
    child.kill().await.ok();
}
