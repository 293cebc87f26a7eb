//! `ws://` connections: Dask messages as a frame count plus one binary
//! WebSocket message per frame (distributed's `comm/ws.py`), and what a peer
//! that breaks that framing costs: its own connection, with a named error.

mod conn_common;

use bytes::Bytes;
use dask_scheduler::net::{Conn, ConnError, RpcPool, Scheme};
use dask_wire::frames::FrameLimits;
use dask_wire::handshake;
use dask_wire::{decode_message, encode_message_into, Value};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const T: Duration = Duration::from_secs(5);

/// A `ws://` listener accepting one connection with `limits`.
async fn accept_one(
    limits: FrameLimits,
) -> (String, tokio::task::JoinHandle<Result<Conn, ConnError>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("ws://{}", l.local_addr().unwrap());
    let acc = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        Conn::accept_scheme(s, Scheme::Ws, None, limits).await
    });
    (addr, acc)
}

#[tokio::test]
async fn messages_cross_a_websocket_connection() {
    let (addr, acc) = accept_one(FrameLimits::default()).await;
    let mut dialled = Conn::dial(&addr, FrameLimits::default(), T).await.unwrap();
    let mut accepted = acc.await.unwrap().unwrap();
    assert!(accepted.peer().starts_with("ws://127.0.0.1:"));
    conn_common::exchange_big_and_many(&mut dialled, &mut accepted, &addr).await;
    // a clean close reads as the end of the connection
    dialled.shutdown().await.unwrap();
    assert!(matches!(accepted.read().await, Err(ConnError::Closed)));
}

#[tokio::test]
async fn the_rpc_pool_reuses_an_idle_websocket() {
    let (addr, acc) = accept_one(FrameLimits::default()).await;
    let server = tokio::spawn(async move {
        let mut conn = acc.await.unwrap().unwrap();
        for _ in 0..2 {
            let msg = conn.read().await.unwrap();
            conn.write(&Value::map([("got", msg)])).await.unwrap();
        }
    });
    let rpc = RpcPool::new(FrameLimits::default(), T);
    let ask = |i: i64| Value::map([("op", Value::str("echo")), ("i", Value::Int(i))]);
    for i in 0..2 {
        let reply = rpc.call(&addr, ask(i)).await.unwrap();
        assert_eq!(
            reply.get("got").and_then(|m| m.get("i")),
            Some(&Value::Int(i))
        );
        assert_eq!(rpc.idle_count(&addr), 1, "the connection was reused");
    }
    server.await.unwrap();
}

#[tokio::test]
async fn an_idle_websocket_is_stale_once_the_peer_closes() {
    for close in [true, false] {
        let (addr, acc) = accept_one(FrameLimits::default()).await;
        let mut dialled = Conn::dial(&addr, FrameLimits::default(), T).await.unwrap();
        let mut accepted = acc.await.unwrap().unwrap();
        conn_common::idle_is_not_stale(&mut dialled, &mut accepted).await;
        if close {
            accepted.shutdown().await.unwrap(); // a WebSocket close
        } else {
            drop(accepted); // the socket closed without one
        }
        conn_common::becomes_stale(&mut dialled, T).await;
    }
}

/// A raw WebSocket peer that has done Dask's handshake with `conn`.
async fn raw_peer(limits: FrameLimits) -> (WebSocketStream<TcpStream>, Conn) {
    let (addr, acc) = accept_one(limits).await;
    let url = format!("{addr}/");
    let stream = TcpStream::connect(addr.trim_start_matches("ws://"))
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    send(&mut ws, &handshake::handshake(4)).await;
    let conn = acc.await.unwrap().unwrap();
    // the scheduler's handshake: a count, then its one frame
    let count = ws.next().await.unwrap().unwrap().into_data();
    assert_eq!(count[..], 1u64.to_le_bytes());
    let frame = ws.next().await.unwrap().unwrap().into_data();
    decode_message(&[frame]).unwrap();
    (ws, conn)
}

async fn send(ws: &mut WebSocketStream<TcpStream>, msg: &Value) {
    let mut body = Vec::new();
    let extra = encode_message_into(msg, &mut body);
    assert!(extra.is_empty());
    ws.send(Message::Binary(Bytes::copy_from_slice(&1u64.to_le_bytes())))
        .await
        .unwrap();
    ws.send(Message::Binary(body.into())).await.unwrap();
}

#[tokio::test]
async fn a_broken_websocket_peer_gets_a_named_error() {
    // (what the peer sends, what the scheduler's read says)
    let cases: Vec<(Vec<Message>, &str)> = vec![
        (vec![Message::text("hello")], "text WebSocket message"),
        (
            vec![Message::Binary(Bytes::from_static(b"123"))],
            "8-byte frame count",
        ),
        (
            vec![Message::Binary(Bytes::copy_from_slice(&0u64.to_le_bytes()))],
            "0 frames",
        ),
        (
            vec![Message::Binary(Bytes::copy_from_slice(
                &u64::MAX.to_le_bytes(),
            ))],
            "frames in one message",
        ),
        (
            vec![
                Message::Binary(Bytes::copy_from_slice(&2u64.to_le_bytes())),
                Message::Binary(Bytes::from_static(&[0x80])),
                Message::Close(None),
            ],
            "closed in the middle of a message",
        ),
        (
            vec![
                Message::Binary(Bytes::copy_from_slice(&1u64.to_le_bytes())),
                Message::Binary(Bytes::from_static(&[0xc1])),
            ],
            "undecodable",
        ),
    ];
    for (sent, want) in cases {
        let (mut ws, mut conn) = raw_peer(FrameLimits::default()).await;
        for m in sent {
            ws.send(m).await.unwrap();
        }
        let err = tokio::time::timeout(T, conn.read())
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains(want), "{err} (wanted {want:?})");
    }
}

#[tokio::test]
async fn an_oversized_websocket_message_is_refused() {
    let limits = FrameLimits {
        max_message_bytes: 1000,
        ..FrameLimits::default()
    };
    // one frame over the limit (refused by the WebSocket layer) ...
    let (mut ws, mut conn) = raw_peer(limits).await;
    send(&mut ws, &Value::Bin(vec![1u8; 5000].into())).await;
    let err = conn.read().await.unwrap_err();
    assert!(err.to_string().contains("--max-message-size"), "{err}");
    // ... and frames each under it that add up to more
    let (mut ws, mut conn) = raw_peer(limits).await;
    ws.send(Message::Binary(Bytes::copy_from_slice(&3u64.to_le_bytes())))
        .await
        .unwrap();
    for _ in 0..3 {
        ws.send(Message::Binary(vec![0u8; 600].into()))
            .await
            .unwrap();
    }
    let err = conn.read().await.unwrap_err();
    assert!(matches!(err, ConnError::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn an_http_request_that_is_not_an_upgrade_fails_the_handshake() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for path in ["/", "/health"] {
        let (addr, acc) = accept_one(FrameLimits::default()).await;
        let mut s = TcpStream::connect(addr.trim_start_matches("ws://"))
            .await
            .unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let err = acc.await.unwrap().unwrap_err();
        assert!(
            err.to_string().contains("WebSocket upgrade failed"),
            "{err}"
        );
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(T, s.read_to_end(&mut reply)).await;
    }
    // a WebSocket upgrade for another path is answered 404
    let (addr, acc) = accept_one(FrameLimits::default()).await;
    let stream = TcpStream::connect(addr.trim_start_matches("ws://"))
        .await
        .unwrap();
    let err = tokio_tungstenite::client_async(format!("{addr}/other"), stream)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    let err = acc.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("/other"), "{err}");
}
