//! `Conn`: handshake, message round trips, and bad input from peers.

use bytes::Bytes;
use dask_scheduler::net::{Conn, ConnError};
use dask_wire::frames::{self, FrameLimits};
use dask_wire::handshake::handshake;
use dask_wire::{encode_message, Opaque, OpaqueKind, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(5);

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", l.local_addr().unwrap());
    (l, addr)
}

/// A connected (accepted, dialled) pair over loopback.
async fn pair(limits: FrameLimits) -> (Conn, Conn) {
    let (l, addr) = listener().await;
    let acc = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        Conn::accept(s, limits).await
    });
    let dialled = Conn::dial(&addr, limits, T).await.unwrap();
    (acc.await.unwrap().unwrap(), dialled)
}

fn opaque(kind: OpaqueKind, frames: Vec<Bytes>) -> Value {
    // The msgpack sub-header: frame 0 of encoding it as a message.
    let h = Value::map([
        ("serializer", Value::str("pickle")),
        ("num-sub-frames", Value::from(frames.len())),
    ]);
    Value::Opaque(Box::new(Opaque {
        kind,
        header: encode_message(&h)[0].clone(),
        frames,
    }))
}

#[tokio::test]
async fn handshake_both_ways() {
    let (accepted, dialled) = pair(FrameLimits::default()).await;
    // Each side sees the other's handshake: dial advertises 4, accept 5.
    assert_eq!(
        accepted.peer_handshake().get("pickle-protocol"),
        Some(&Value::Int(4))
    );
    assert_eq!(
        dialled.peer_handshake().get("pickle-protocol"),
        Some(&Value::Int(5))
    );
    assert_eq!(accepted.peer(), dialled.local());
    assert_eq!(dialled.peer(), accepted.local());
    assert!(accepted.peer().starts_with("tcp://127.0.0.1:"));
}

#[tokio::test]
async fn roundtrip_with_opaque_objects() {
    let (mut a, mut b) = pair(FrameLimits::default()).await;
    let big = Bytes::from(vec![7u8; 300_000]); // takes the vectored write path
    let msgs = vec![
        Value::map([("op", Value::str("ping"))]),
        Value::map([
            ("op", Value::str("update-graph")),
            (
                "data",
                opaque(
                    OpaqueKind::Serialized,
                    vec![Bytes::from_static(b"abc"), Bytes::new(), big.clone()],
                ),
            ),
            (
                "spec",
                opaque(OpaqueKind::Pickled, vec![Bytes::from_static(b"\x80\x05.")]),
            ),
            (
                "keys",
                Value::Array(vec![
                    Value::str("x"),
                    Value::Array(vec![Value::str("y"), Value::Int(1)]),
                ]),
            ),
        ]),
        Value::str("OK"),
        Value::Array(vec![]),
    ];
    for m in &msgs {
        b.write(m).await.unwrap();
    }
    for m in &msgs {
        assert_eq!(&a.read().await.unwrap(), m);
    }
    // And the other direction, through split halves.
    let (mut ra, _wa) = a.into_split();
    let (_rb, mut wb) = b.into_split();
    let writer = tokio::spawn(async move {
        for m in &msgs {
            wb.write(m).await.unwrap();
        }
        wb.shutdown().await.unwrap();
        msgs
    });
    let mut got = Vec::new();
    loop {
        match ra.read().await {
            Ok(v) => got.push(v),
            Err(ConnError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, writer.await.unwrap());
}

/// A raw socket that has completed the handshake with an accepting `Conn`.
async fn raw_client_and_conn(limits: FrameLimits) -> (TcpStream, Conn) {
    let (l, addr) = listener().await;
    let acc = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        Conn::accept(s, limits).await
    });
    let mut raw = TcpStream::connect(addr.trim_start_matches("tcp://"))
        .await
        .unwrap();
    let hs = frames::to_contiguous(&encode_message(&handshake(5)));
    raw.write_all(&hs).await.unwrap();
    // Drain the accepting side's handshake, so that closing `raw` is a clean
    // FIN rather than a reset.
    let mut theirs = vec![0u8; hs.len()];
    raw.read_exact(&mut theirs).await.unwrap();
    (raw, acc.await.unwrap().unwrap())
}

fn prelude(n1: u64, lengths: &[u64]) -> Vec<u8> {
    let mut out = n1.to_le_bytes().to_vec();
    out.extend_from_slice(&(lengths.len() as u64).to_le_bytes());
    for l in lengths {
        out.extend_from_slice(&l.to_le_bytes());
    }
    out
}

#[tokio::test]
async fn bad_input_gives_clear_errors() {
    let limits = FrameLimits {
        max_message_bytes: 1 << 20,
        max_frames: 1000,
    };

    // Clean close between messages.
    let (raw, mut conn) = raw_client_and_conn(limits).await;
    drop(raw);
    assert!(matches!(conn.read().await, Err(ConnError::Closed)));

    // Truncated frame: the prelude promises 100 bytes, 10 arrive, then EOF.
    let (mut raw, mut conn) = raw_client_and_conn(limits).await;
    raw.write_all(&prelude(108, &[100])).await.unwrap();
    raw.write_all(&[0x90; 10]).await.unwrap();
    drop(raw);
    let e = conn.read().await.unwrap_err();
    assert!(matches!(e, ConnError::ClosedMidMessage { .. }), "{e:?}");
    assert!(e.is_disconnect());
    assert!(e.to_string().contains("middle of a message"), "{e}");

    // Absurd length: rejected from the prelude, before anything is buffered.
    let (mut raw, mut conn) = raw_client_and_conn(limits).await;
    raw.write_all(&prelude(0, &[1 << 62])).await.unwrap();
    let e = conn.read().await.unwrap_err();
    assert!(matches!(e, ConnError::TooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains("exceeds the limit"), "{e}");

    // Absurd frame count.
    let (mut raw, mut conn) = raw_client_and_conn(limits).await;
    raw.write_all(&0u64.to_le_bytes()).await.unwrap();
    raw.write_all(&u64::MAX.to_le_bytes()).await.unwrap();
    let e = conn.read().await.unwrap_err();
    assert!(matches!(e, ConnError::BadPrelude(_)), "{e:?}");

    // Invalid msgpack in frame 0 (0xc1 is never valid).
    let (mut raw, mut conn) = raw_client_and_conn(limits).await;
    raw.write_all(&prelude(17, &[1])).await.unwrap();
    raw.write_all(&[0xc1]).await.unwrap();
    let e = conn.read().await.unwrap_err();
    assert!(matches!(e, ConnError::BadMessage(_)), "{e:?}");
    assert!(!e.is_disconnect());

    // A placeholder pointing at a frame that does not exist.
    let (mut raw, mut conn) = raw_client_and_conn(limits).await;
    let body = {
        let v = Value::map([("__Serialized__", Value::Int(3))]);
        encode_message(&v)[0].clone()
    };
    raw.write_all(&frames::to_contiguous(&[body]))
        .await
        .unwrap();
    let e = conn.read().await.unwrap_err();
    assert!(matches!(e, ConnError::BadMessage(_)), "{e:?}");

    // Zero frames.
    let (mut raw, mut conn) = raw_client_and_conn(limits).await;
    raw.write_all(&prelude(8, &[])).await.unwrap();
    assert!(conn.read().await.is_err());

    // A message that trickles in byte by byte still arrives whole.
    let (mut raw, mut conn) = raw_client_and_conn(limits).await;
    let msg = Value::map([("op", Value::str("trickle"))]);
    let wire = frames::to_contiguous(&encode_message(&msg));
    let feeder = tokio::spawn(async move {
        for b in wire.iter() {
            raw.write_all(&[*b]).await.unwrap();
            tokio::task::yield_now().await;
        }
        raw
    });
    assert_eq!(conn.read().await.unwrap(), msg);
    drop(feeder.await.unwrap());
}

#[tokio::test]
async fn garbage_handshakes_are_rejected() {
    let limits = FrameLimits::default();
    let cases: Vec<(&[u8], &str)> = vec![
        (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP"),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03aaaaaaaaaaaaaaaa",
            "TLS",
        ),
    ];
    for (bytes, want) in cases {
        let (l, addr) = listener().await;
        let acc = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            Conn::accept(s, limits).await
        });
        let mut raw = TcpStream::connect(addr.trim_start_matches("tcp://"))
            .await
            .unwrap();
        raw.write_all(bytes).await.unwrap();
        raw.shutdown().await.unwrap();
        let e = acc.await.unwrap().unwrap_err();
        assert!(matches!(e, ConnError::Handshake(_)), "{e:?}");
        assert!(e.to_string().contains(want), "{want}: {e}");
    }

    // A peer that connects and leaves (a TCP probe) is a quiet disconnect.
    let (l, addr) = listener().await;
    let acc = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        Conn::accept(s, limits).await
    });
    let raw = TcpStream::connect(addr.trim_start_matches("tcp://"))
        .await
        .unwrap();
    drop(raw);
    let e = acc.await.unwrap().unwrap_err();
    assert!(matches!(e, ConnError::ClosedBeforeHandshake), "{e:?}");
    assert!(e.is_disconnect());

    // A valid frame whose content is not a handshake map.
    let (l, addr) = listener().await;
    let acc = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        Conn::accept(s, limits).await
    });
    let mut raw = TcpStream::connect(addr.trim_start_matches("tcp://"))
        .await
        .unwrap();
    let not_hs = frames::to_contiguous(&encode_message(&Value::map([("op", Value::str("x"))])));
    raw.write_all(&not_hs).await.unwrap();
    let e = acc.await.unwrap().unwrap_err();
    assert!(
        e.to_string().contains("pickle-protocol") || e.to_string().contains("compression"),
        "{e}"
    );
}

#[tokio::test]
async fn dial_errors_are_quick_and_clear() {
    let limits = FrameLimits::default();
    // tls:// without a TLS set-up names what is missing
    let e = Conn::dial("tls://127.0.0.1:1", limits, T)
        .await
        .unwrap_err();
    assert!(matches!(e, ConnError::BadAddress { .. }), "{e:?}");
    assert!(e.to_string().contains("--tls-ca-file"), "{e}");
    let e = Conn::dial("ucx://127.0.0.1:1", limits, T)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("\"ucx\""), "{e}");

    // Nothing listening: refused immediately.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t0 = Instant::now();
    let e = Conn::dial(&format!("tcp://127.0.0.1:{port}"), limits, T)
        .await
        .unwrap_err();
    assert!(matches!(e, ConnError::Connect { .. }), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(2));

    // A peer that accepts but never sends its handshake: bounded by the timeout.
    let (l, addr) = listener().await;
    let holder = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(s);
    });
    let t0 = Instant::now();
    let e = Conn::dial(&addr, limits, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnError::Handshake(_)), "{e:?}");
    assert!(e.to_string().contains("no handshake"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    holder.abort();

    // Bare host:port is accepted too.
    let (l, addr) = listener().await;
    let acc = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        Conn::accept(s, limits).await.unwrap()
    });
    Conn::dial(addr.trim_start_matches("tcp://"), limits, T)
        .await
        .unwrap();
    acc.await.unwrap();
}

#[tokio::test]
async fn stale_detection() {
    let (a, mut b) = pair(FrameLimits::default()).await;
    assert!(!b.is_stale());
    drop(a);
    // The FIN takes a moment to arrive.
    let t0 = Instant::now();
    while !b.is_stale() {
        assert!(t0.elapsed() < T, "closed peer never detected");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
