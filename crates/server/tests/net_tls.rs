//! `tls://` (and `wss://`) connections: mutual TLS with the cluster's CA, no
//! host-name check, a self-signed certificate trusted when it is in the CA
//! file, and clear errors for peers without a valid certificate.

mod conn_common;

use dask_scheduler::net::tls::{PemSource, TlsSettings, TlsVersion};
use dask_scheduler::net::{CommSecurity, Conn, ConnError, RpcPool, Scheme, Tls};
use dask_wire::frames::FrameLimits;
use dask_wire::Value;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(5);

/// A CA and the PEM text of certificates it signed.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        Ca {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    /// (certificate PEM, key PEM) for `name`; `hosts` become its SANs.
    fn issue(&self, name: &str, hosts: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn settings(&self, name: &str) -> TlsSettings {
        // a host name that matches nothing: Dask checks no host names
        let (cert, key) = self.issue(name, &["not-this-host.invalid"]);
        settings(self.cert.pem(), cert, Some(key))
    }
}

fn settings(ca: String, cert: String, key: Option<String>) -> TlsSettings {
    TlsSettings {
        ca_file: PemSource::Inline(ca),
        cert: PemSource::Inline(cert),
        key: key.map(PemSource::Inline),
        min_version: TlsVersion::V1_2,
        max_version: None,
    }
}

fn security(settings: &TlsSettings) -> CommSecurity {
    CommSecurity {
        tls: Some(Arc::new(Tls::load(settings).unwrap())),
        require_encryption: true,
    }
}

/// A `tls://` listener accepting one connection with `server`.
async fn accept_one(
    server: &TlsSettings,
) -> (String, tokio::task::JoinHandle<Result<Conn, ConnError>>) {
    let tls = Tls::load(server).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tls://{}", l.local_addr().unwrap());
    let acc = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        Conn::accept_tls(s, &tls, FrameLimits::default()).await
    });
    (addr, acc)
}

async fn dial(addr: &str, client: &TlsSettings) -> Result<Conn, ConnError> {
    Conn::dial_secure(addr, FrameLimits::default(), T, &security(client)).await
}

#[tokio::test]
async fn messages_cross_a_mutual_tls_connection() {
    let ca = Ca::new("cluster-ca");
    let (addr, acc) = accept_one(&ca.settings("scheduler")).await;
    let mut dialled = dial(&addr, &ca.settings("worker")).await.unwrap();
    let mut accepted = acc.await.unwrap().unwrap();
    assert!(accepted.peer().starts_with("tls://127.0.0.1:"));
    conn_common::exchange_big_and_many(&mut dialled, &mut accepted, &addr).await;
}

#[tokio::test]
async fn a_wss_connection_is_a_websocket_over_mutual_tls() {
    let ca = Ca::new("cluster-ca");
    let tls = Tls::load(&ca.settings("scheduler")).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("wss://{}", l.local_addr().unwrap());
    let acc = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        Conn::accept_scheme(s, Scheme::Wss, Some(&tls), FrameLimits::default()).await
    });
    let mut dialled = dial(&addr, &ca.settings("worker")).await.unwrap();
    let mut accepted = acc.await.unwrap().unwrap();
    assert!(accepted.peer().starts_with("wss://127.0.0.1:"));
    let big = Value::Bin(vec![3u8; 300_000].into());
    dialled.write(&big).await.unwrap();
    assert_eq!(accepted.read().await.unwrap(), big);
    accepted.write(&Value::str("back")).await.unwrap();
    assert_eq!(dialled.read().await.unwrap(), Value::str("back"));
    // a wss:// address needs this side's TLS set-up
    let e = Conn::dial(&addr, FrameLimits::default(), T)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("wss:// needs"), "{e}");
}

#[tokio::test]
async fn an_idle_tls_connection_stays_reusable_until_the_peer_closes() {
    let ca = Ca::new("cluster-ca");
    let (addr, acc) = accept_one(&ca.settings("scheduler")).await;
    let mut dialled = dial(&addr, &ca.settings("worker")).await.unwrap();
    let mut accepted = acc.await.unwrap().unwrap();
    // TLS 1.3 session tickets arrive after the handshake: not a reason to
    // drop the connection
    conn_common::idle_is_not_stale(&mut dialled, &mut accepted).await;
    drop(accepted);
    conn_common::becomes_stale(&mut dialled, T).await;
}

#[tokio::test]
async fn a_self_signed_certificate_in_the_ca_file_is_trusted() {
    // Security.temporary(): one self-signed certificate (no CA flag) is the
    // CA file and the certificate of every role
    let mut params = CertificateParams::new(vec!["dask-internal".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "dask-internal");
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap().pem();
    let shared = settings(cert.clone(), cert, Some(key.serialize_pem()));
    let (addr, acc) = accept_one(&shared).await;
    let mut dialled = dial(&addr, &shared).await.unwrap();
    let mut accepted = acc.await.unwrap().unwrap();
    dialled.write(&Value::str("hi")).await.unwrap();
    assert_eq!(accepted.read().await.unwrap(), Value::str("hi"));
}

#[tokio::test]
async fn peers_without_a_valid_certificate_are_refused_clearly() {
    let ca = Ca::new("cluster-ca");
    let stranger = Ca::new("stranger-ca");
    let server = ca.settings("scheduler");

    // a client certificate from another CA
    let (addr, acc) = accept_one(&server).await;
    let mut foreign = stranger.settings("intruder");
    foreign.ca_file = server.ca_file.clone();
    let _ = dial(&addr, &foreign).await;
    let e = acc.await.unwrap().unwrap_err();
    assert!(matches!(e, ConnError::Tls(_)), "{e:?}");

    // a client that does not trust the scheduler's CA refuses it
    let (addr, acc) = accept_one(&server).await;
    let e = dial(&addr, &stranger.settings("client")).await.unwrap_err();
    assert!(matches!(e, ConnError::Tls(_)), "{e:?}");
    assert!(e.to_string().contains("certificate"), "{e}");
    let _ = acc.await;

    // a plain tcp:// peer: its Dask handshake is not a TLS hello
    let (addr, acc) = accept_one(&server).await;
    let mut raw = TcpStream::connect(addr.trim_start_matches("tls://"))
        .await
        .unwrap();
    raw.write_all(b"\x00\x00\x00\x00\x00\x00\x00\x01garbage")
        .await
        .unwrap();
    let e = acc.await.unwrap().unwrap_err();
    assert!(e.to_string().contains("not speaking TLS"), "{e}");

    // TLS 1.3 only on one side, 1.2 only on the other: no common version
    let mut old = ca.settings("old-client");
    old.max_version = Some(TlsVersion::V1_2);
    let mut new_only = ca.settings("new-server");
    new_only.min_version = TlsVersion::V1_3;
    let (addr, acc) = accept_one(&new_only).await;
    assert!(matches!(dial(&addr, &old).await, Err(ConnError::Tls(_))));
    let _ = acc.await;
}

#[tokio::test]
async fn encryption_required_refuses_tcp_and_the_pool_dials_tls() {
    let ca = Ca::new("cluster-ca");
    let client = security(&ca.settings("scheduler"));
    let e = Conn::dial_secure("tcp://127.0.0.1:1", FrameLimits::default(), T, &client)
        .await
        .unwrap_err();
    assert!(matches!(e, ConnError::Insecure(_)), "{e:?}");
    assert!(e.to_string().contains("encryption required"), "{e}");

    // the RPC pool answers over TLS and reuses its connection
    let tls = Tls::load(&ca.settings("worker")).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tls://{}", l.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut conn = Conn::accept_tls(s, &tls, FrameLimits::default())
            .await
            .unwrap();
        let mut answered = 0;
        while let Ok(msg) = conn.read().await {
            let n = msg.get("n").cloned().unwrap_or(Value::Nil);
            conn.write(&Value::map([("status", Value::str("OK")), ("n", n)]))
                .await
                .unwrap();
            answered += 1;
        }
        answered
    });
    let pool = RpcPool::with_security(FrameLimits::default(), T, client);
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let reply = pool
            .call(
                &addr,
                Value::map([("op", Value::str("x")), ("n", Value::Int(i))]),
            )
            .await
            .unwrap();
        assert_eq!(reply.get("n"), Some(&Value::Int(i)));
    }
    pool.remove(&addr);
    // one accepted connection served all three calls
    assert_eq!(server.await.unwrap(), 3);
}

#[test]
fn bad_files_are_named() {
    let ca = Ca::new("cluster-ca");
    let (cert, _key) = ca.issue("x", &["localhost"]);
    // no key in the certificate and no key file
    let e = Tls::load(&settings(ca.cert.pem(), cert.clone(), None)).unwrap_err();
    assert!(e.to_string().contains("private key"), "{e}");
    // a CA file without a certificate
    let e = Tls::load(&settings("nothing here".into(), cert, None)).unwrap_err();
    assert!(e.to_string().contains("CA file"), "{e}");
    let mut s = ca.settings("y");
    s.cert = PemSource::File("/nonexistent/cert.pem".into());
    let e = Tls::load(&s).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
}
