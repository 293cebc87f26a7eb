//! `dask-loaddriver`: W simulated Dask workers against a real scheduler.
//!
//! Each simulated worker opens its stream connection (handshake,
//! `register-worker`, `worker-status-change: running`), heartbeats on a second
//! connection at the interval the scheduler asks for, and answers each
//! `compute-task` immediately with a `task-finished` (see the library docs).
//! Works against this project's `dask-scheduler` and against
//! `python -m distributed.cli.dask_scheduler`.
//!
//! Control on stdin, one command per line, each answered by one JSON line on
//! stdout: `stats` (counters and timestamps), `reset` (zero the task counters),
//! `quit`. When every worker has registered, the driver prints
//! `{"event": "registered", ...}` on its own. Addresses are
//! `tcp://127.0.0.1:<base-port + i>`; nothing listens there (the simulated
//! workers never serve data), so benchmarks wait on futures instead of
//! gathering results.

use bytes::{Bytes, BytesMut};
use clap::Parser;
use dask_loaddriver::{
    check_registration_reply, heartbeat, register_worker, status_running, DriverError,
    WorkerIdentity, WorkerSim,
};
use dask_wire::frames::{self, FrameLimits, Parse};
use dask_wire::handshake::{handshake, validate, DIAL_PICKLE_PROTOCOL};
use dask_wire::{decode_message, encode_message, Value};
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    name = "dask-loaddriver",
    about = "Simulated Dask workers for scheduler benchmarks"
)]
struct Args {
    /// Scheduler address (`tcp://host:port` or `host:port`).
    scheduler: String,
    /// Number of simulated workers.
    #[arg(short = 'w', long, default_value_t = 8)]
    workers: usize,
    /// Threads each worker advertises.
    #[arg(long, default_value_t = 1)]
    nthreads: i64,
    /// First fake contact port (worker i advertises base + i).
    #[arg(long, default_value_t = 20000)]
    base_port: u16,
    /// Name prefix of the workers.
    #[arg(long, default_value = "sim")]
    name_prefix: String,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Send no heartbeats (the scheduler may then remove workers after its TTL).
    #[arg(long)]
    no_heartbeat: bool,
    /// Exit after this many seconds (0 = run until `quit` or killed).
    #[arg(long, default_value_t = 0.0)]
    duration: f64,
}

#[derive(Default)]
struct Stats {
    registered: AtomicU64,
    failed: AtomicU64,
    computed: AtomicU64,
    freed: AtomicU64,
    steals: AtomicU64,
    other: AtomicU64,
    heartbeats: AtomicU64,
    closed: AtomicU64,
    /// unix time in microseconds, 0 = none yet
    first_compute_us: AtomicU64,
    last_compute_us: AtomicU64,
    first_free_us: AtomicU64,
    last_free_us: AtomicU64,
    all_registered_us: AtomicU64,
    errors: Mutex<Vec<String>>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn now_us() -> u64 {
    (now() * 1e6) as u64
}

fn us_to_s(v: u64) -> serde_json::Value {
    if v == 0 {
        serde_json::Value::Null
    } else {
        serde_json::json!(v as f64 / 1e6)
    }
}

impl Stats {
    fn error(&self, e: String) {
        let mut errs = self.errors.lock().unwrap();
        if errs.len() < 20 {
            errs.push(e);
        }
    }

    fn json(&self, workers: usize, started: f64) -> serde_json::Value {
        serde_json::json!({
            "workers": workers,
            "started": started,
            "registered": self.registered.load(Relaxed),
            "failed": self.failed.load(Relaxed),
            "closed": self.closed.load(Relaxed),
            "computed": self.computed.load(Relaxed),
            "freed": self.freed.load(Relaxed),
            "steals": self.steals.load(Relaxed),
            "other_ops": self.other.load(Relaxed),
            "heartbeats": self.heartbeats.load(Relaxed),
            "first_compute": us_to_s(self.first_compute_us.load(Relaxed)),
            "last_compute": us_to_s(self.last_compute_us.load(Relaxed)),
            "first_free": us_to_s(self.first_free_us.load(Relaxed)),
            "last_free": us_to_s(self.last_free_us.load(Relaxed)),
            "all_registered": us_to_s(self.all_registered_us.load(Relaxed)),
            "errors": self.errors.lock().unwrap().clone(),
        })
    }

    fn reset(&self) {
        for a in [
            &self.computed,
            &self.freed,
            &self.steals,
            &self.other,
            &self.first_compute_us,
            &self.last_compute_us,
            &self.first_free_us,
            &self.last_free_us,
        ] {
            a.store(0, Relaxed);
        }
    }
}

/// One framed connection.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    limits: FrameLimits,
}

impl Conn {
    async fn connect(addr: &str) -> Result<Conn, DriverError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            limits: FrameLimits::default(),
        };
        c.write(&handshake(DIAL_PICKLE_PROTOCOL)).await?;
        let peer = c.read().await?;
        validate(&peer)?;
        Ok(c)
    }

    async fn write(&mut self, v: &Value) -> Result<(), DriverError> {
        let wire = frames::to_contiguous(&encode_message(v));
        self.stream.write_all(&wire).await?;
        Ok(())
    }

    /// Write a batch of `count` ops whose msgpack is `ops` (concatenated),
    /// reusing `buf` for the whole message.
    async fn write_batch(
        &mut self,
        count: usize,
        ops: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), DriverError> {
        buf.clear();
        buf.resize(frames::ONE_FRAME_PRELUDE_LEN, 0);
        dask_wire::msgpack::write_array_len(buf, count);
        buf.extend_from_slice(ops);
        let body = buf.len() - frames::ONE_FRAME_PRELUDE_LEN;
        buf[..frames::ONE_FRAME_PRELUDE_LEN].copy_from_slice(&frames::one_frame_prelude(body));
        self.stream.write_all(buf).await?;
        Ok(())
    }

    async fn read(&mut self) -> Result<Value, DriverError> {
        Ok(decode_message(&self.read_frames().await?)?)
    }

    async fn read_frames(&mut self) -> Result<Vec<Bytes>, DriverError> {
        loop {
            if let Parse::Message(fr) = frames::parse(&mut self.buf, &self.limits)? {
                return Ok(fr);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(DriverError::Protocol("connection closed".into()));
            }
        }
    }
}

async fn heartbeat_loop(
    sched: String,
    address: String,
    mut interval: f64,
    stats: Arc<Stats>,
) -> Result<(), DriverError> {
    let mut conn: Option<Conn> = None;
    loop {
        tokio::time::sleep(Duration::from_secs_f64(interval.clamp(0.05, 60.0))).await;
        if conn.is_none() {
            conn = Some(Conn::connect(&sched).await?);
        }
        let c = conn.as_mut().expect("connected");
        c.write(&heartbeat(&address, now(), 0)).await?;
        let reply = c.read().await?;
        stats.heartbeats.fetch_add(1, Relaxed);
        match reply.get("status").and_then(Value::as_str) {
            Some("OK") => {
                if let Some(i) = reply.get("heartbeat-interval").and_then(Value::as_f64) {
                    interval = i;
                }
            }
            Some("missing") => {
                return Err(DriverError::Protocol(format!(
                    "scheduler forgot worker {address}"
                )))
            }
            _ => return Err(DriverError::Protocol(format!("heartbeat reply {reply}"))),
        }
    }
}

async fn run_worker(
    sched: String,
    id: WorkerIdentity,
    heartbeats: bool,
    stats: Arc<Stats>,
    n_workers: usize,
) -> Result<(), DriverError> {
    let mut conn = Conn::connect(&sched).await?;
    conn.write(&register_worker(&id, now())).await?;
    let reply = conn.read().await?;
    let interval = check_registration_reply(&reply)?;
    conn.write(&Value::Array(vec![status_running(now())]))
        .await?;
    let n = stats.registered.fetch_add(1, Relaxed) + 1;
    if n as usize == n_workers {
        stats.all_registered_us.store(now_us(), Relaxed);
    }
    if heartbeats {
        let (s, a, st) = (sched.clone(), id.address.clone(), stats.clone());
        tokio::spawn(async move {
            if let Err(e) = heartbeat_loop(s, a.clone(), interval, st.clone()).await {
                st.error(format!("{a} heartbeat: {e}"));
            }
        });
    }
    let mut sim = WorkerSim::new(1000 + id.pid);
    let (mut out, mut buf) = (Vec::new(), Vec::new());
    loop {
        let msg = conn.read_frames().await?;
        let t = now();
        out.clear();
        let (st, replies) = sim.handle(&msg, t, &mut out)?;
        if replies > 0 {
            conn.write_batch(replies, &out, &mut buf).await?;
        }
        let tu = (t * 1e6) as u64;
        if st.computed > 0 {
            stats.computed.fetch_add(st.computed, Relaxed);
            let _ = stats
                .first_compute_us
                .compare_exchange(0, tu, Relaxed, Relaxed);
            stats.last_compute_us.fetch_max(tu, Relaxed);
        }
        if st.freed > 0 {
            stats.freed.fetch_add(st.freed, Relaxed);
            let _ = stats
                .first_free_us
                .compare_exchange(0, tu, Relaxed, Relaxed);
            stats.last_free_us.fetch_max(tu, Relaxed);
        }
        stats.steals.fetch_add(st.steals, Relaxed);
        stats.other.fetch_add(st.other, Relaxed);
        if st.close {
            stats.closed.fetch_add(1, Relaxed);
            return Ok(());
        }
    }
}

fn main() {
    let args = Args::parse();
    let sched = args
        .scheduler
        .strip_prefix("tcp://")
        .unwrap_or(&args.scheduler)
        .to_string();
    let stats = Arc::new(Stats::default());
    let started = now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let t0 = Instant::now();
    let pid = std::process::id() as i64;
    rt.block_on(async {
        for i in 0..args.workers {
            let id = WorkerIdentity {
                address: format!("tcp://127.0.0.1:{}", args.base_port as usize + i),
                name: format!("{}-{i}", args.name_prefix),
                nthreads: args.nthreads,
                server_id: format!("Worker-{}-{pid}-{i}", args.name_prefix),
                pid,
            };
            let (s, st) = (sched.clone(), stats.clone());
            let (hb, n) = (!args.no_heartbeat, args.workers);
            tokio::spawn(async move {
                let addr = id.address.clone();
                if let Err(e) = run_worker(s, id, hb, st.clone(), n).await {
                    if st.registered.load(Relaxed) < n as u64 {
                        st.failed.fetch_add(1, Relaxed);
                    }
                    st.error(format!("{addr}: {e}"));
                }
            });
        }
    });
    // registration watcher
    {
        let (st, n) = (stats.clone(), args.workers);
        rt.spawn(async move {
            loop {
                let r = st.registered.load(Relaxed);
                if r as usize >= n || st.failed.load(Relaxed) > 0 {
                    let line = serde_json::json!({
                        "event": if r as usize >= n { "registered" } else { "failed" },
                        "workers": n,
                        "registered": r,
                        "elapsed_s": t0.elapsed().as_secs_f64(),
                        "errors": st.errors.lock().unwrap().clone(),
                    });
                    println!("{line}");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    if args.duration > 0.0 {
        let d = args.duration;
        rt.spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(d)).await;
            std::process::exit(0);
        });
    }
    // control loop on stdin (blocking, on the main thread)
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "stats" => println!("{}", stats.json(args.workers, started)),
            "reset" => {
                stats.reset();
                println!("{}", serde_json::json!({"ok": "reset"}));
            }
            "quit" => break,
            "" => {}
            other => println!(
                "{}",
                serde_json::json!({"error": format!("unknown command {other}")})
            ),
        }
    }
    if args.duration > 0.0 {
        // stdin closed early: keep running until the duration is over
        std::thread::sleep(Duration::from_secs_f64(args.duration));
    }
    rt.shutdown_timeout(Duration::from_millis(100));
}
