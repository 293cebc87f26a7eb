//! Helpers above the resident-memory limit are recycled after a request
//! (own test binary: it sets the limit through the environment).

mod common;
use common::*;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dask_scheduler::materializer::{MaterializerConfig, MaterializerPool, MAX_HELPER_RSS_ENV};
use rmpv::Value;

fn ping(id: i64) -> Bytes {
    let mut buf = Vec::new();
    rmpv::encode::write_value(
        &mut buf,
        &Value::Map(vec![("op".into(), "ping".into()), ("id".into(), id.into())]),
    )
    .unwrap();
    Bytes::from(buf)
}

async fn pids(pool: &MaterializerPool, not: &[u32]) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pids = pool.helper_pids();
        if !pids.is_empty() && pids.iter().all(|p| !not.contains(p)) {
            return pids;
        }
        assert!(Instant::now() < deadline, "no new helper; pids {pids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_over_the_limit_is_replaced_and_no_request_is_lost() {
    // Every helper is over one byte: each request recycles its helper.
    std::env::set_var(MAX_HELPER_RSS_ENV, "1");
    let pool = MaterializerPool::start(MaterializerConfig {
        python: Some(python()),
        pool_size: 1,
        request_timeout: Duration::from_secs(120),
        ..MaterializerConfig::default()
    })
    .await;
    let first = pids(&pool, &[]).await;
    // Several requests queued at once on the single slot: all are answered,
    // each by a fresh helper.
    let mut pending = Vec::new();
    for id in 0..3 {
        let p = pool.clone();
        pending.push(tokio::spawn(async move { p.request(ping(id)).await }));
    }
    for (id, job) in pending.into_iter().enumerate() {
        let reply = job.await.unwrap().expect("no request is lost");
        let v = rmpv::decode::read_value(&mut &reply[..]).unwrap();
        let got = v
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("id")))
            .and_then(|(_, v)| v.as_i64());
        assert_eq!(got, Some(id as i64));
    }
    let now = pids(&pool, &first).await;
    assert_ne!(now, first);
}
