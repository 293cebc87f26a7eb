//! Scheduler → worker RPC over pooled connections.
//!
//! Like distributed's `ConnectionPool`: one outstanding request per
//! connection, idle connections reused per address, new ones opened when all
//! are busy, and a connection dropped after any error (its stream position is
//! unknown). Futures returned here are cancel-safe in the sense that a
//! cancelled call simply drops its connection instead of returning it.

use super::conn::{Conn, ConnError};
use super::tls::CommSecurity;
use dask_wire::frames::FrameLimits;
use dask_wire::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Idle connections kept per worker address.
pub const MAX_IDLE_PER_ADDRESS: usize = 8;

/// `get_data` attempts while the worker answers `{"status": "busy"}`.
pub const GET_DATA_BUSY_ATTEMPTS: u32 = 20;

/// First delay after a busy answer; it grows by half each time, up to 2 s.
const BUSY_BACKOFF_START: Duration = Duration::from_millis(150);
const BUSY_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why an RPC did not produce a reply.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Connecting, writing or reading failed.
    #[error("rpc to {addr} failed: {source}")]
    Conn {
        /// the worker address
        addr: String,
        /// what went wrong on the connection
        #[source]
        source: ConnError,
    },
    /// The worker kept answering `busy` to `get_data`.
    #[error("worker {addr} was still busy after {attempts} get_data attempts")]
    Busy {
        /// the worker address
        addr: String,
        /// attempts made
        attempts: u32,
    },
    /// The request is not a map, or the reply is not what the op requires.
    #[error("bad rpc exchange with {addr}: {reason}")]
    Protocol {
        /// the worker address
        addr: String,
        /// what was wrong
        reason: String,
    },
}

#[derive(Default)]
struct Slot {
    idle: Vec<Conn>,
    /// Bumped by `remove`; connections checked out under an older epoch are
    /// not returned to the pool.
    epoch: u64,
}

struct Inner {
    limits: FrameLimits,
    connect_timeout: Duration,
    security: CommSecurity,
    slots: Mutex<HashMap<String, Slot>>,
}

/// A pool of RPC connections to workers, keyed by address. Cheap to clone.
#[derive(Clone)]
pub struct RpcPool {
    inner: Arc<Inner>,
}

/// A connection checked out of the pool.
struct Lease {
    conn: Conn,
    epoch: u64,
    reused: bool,
}

impl RpcPool {
    /// A pool whose connections use `limits` and whose connects (including
    /// the handshake) time out after `connect_timeout`.
    pub fn new(limits: FrameLimits, connect_timeout: Duration) -> RpcPool {
        RpcPool::with_security(limits, connect_timeout, CommSecurity::default())
    }

    /// A pool that dials `tls://` workers with the scheduler's TLS set-up
    /// (and refuses `tcp://` ones when encryption is required).
    pub fn with_security(
        limits: FrameLimits,
        connect_timeout: Duration,
        security: CommSecurity,
    ) -> RpcPool {
        RpcPool {
            inner: Arc::new(Inner {
                limits,
                connect_timeout,
                security,
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A poisoned lock only means another thread panicked while holding
        // it; the map itself is still consistent.
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn checkout(&self, addr: &str) -> Result<Lease, RpcError> {
        let epoch = {
            let mut slots = self.slots();
            let slot = slots.entry(addr.to_string()).or_default();
            while let Some(mut conn) = slot.idle.pop() {
                if !conn.is_stale() {
                    return Ok(Lease {
                        conn,
                        epoch: slot.epoch,
                        reused: true,
                    });
                }
            }
            slot.epoch
        };
        self.dial(addr, epoch).await
    }

    async fn dial(&self, addr: &str, epoch: u64) -> Result<Lease, RpcError> {
        let inner = &self.inner;
        let conn = Conn::dial_secure(addr, inner.limits, inner.connect_timeout, &inner.security)
            .await
            .map_err(|source| RpcError::Conn {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Lease {
            conn,
            epoch,
            reused: false,
        })
    }

    fn checkin(&self, addr: &str, lease: Lease) {
        let mut slots = self.slots();
        if let Some(slot) = slots.get_mut(addr) {
            if slot.epoch == lease.epoch && slot.idle.len() < MAX_IDLE_PER_ADDRESS {
                slot.idle.push(lease.conn);
            }
        }
    }

    /// Write `msg` and read one reply on a checked-out connection. A reused
    /// connection that fails while writing is replaced once by a fresh one
    /// (the request cannot have been seen by the worker).
    async fn exchange(&self, addr: &str, msg: &Value) -> Result<(Lease, Value), RpcError> {
        let conn_err = |source| RpcError::Conn {
            addr: addr.to_string(),
            source,
        };
        let mut lease = self.checkout(addr).await?;
        if let Err(e) = lease.conn.write(msg).await {
            if !lease.reused {
                return Err(conn_err(e));
            }
            tracing::debug!("Reused connection to {addr} failed ({e}); reconnecting");
            let epoch = self.slots().entry(addr.to_string()).or_default().epoch;
            lease = self.dial(addr, epoch).await?;
            lease.conn.write(msg).await.map_err(conn_err)?;
        }
        let reply = lease.conn.read().await.map_err(conn_err)?;
        Ok((lease, reply))
    }

    /// Send the op map `msg` (with `reply: true` added) to `addr` and return
    /// the reply as-is; error maps (`status: "uncaught-error"`) are replies,
    /// not errors. A request with `close: true` does not reuse the connection.
    pub async fn call(&self, addr: &str, mut msg: Value) -> Result<Value, RpcError> {
        if msg.as_map().is_none() {
            return Err(RpcError::Protocol {
                addr: addr.to_string(),
                reason: format!("request is not a map: {msg}"),
            });
        }
        msg.set("reply", Value::Bool(true));
        let close = msg.get("close").is_some_and(Value::truthy);
        let (lease, reply) = self.exchange(addr, &msg).await?;
        if !close {
            self.checkin(addr, lease);
        }
        Ok(reply)
    }

    /// Fetch `keys` from the worker at `addr` (`get_data`), retrying with
    /// backoff while it answers `{"status": "busy"}`. After an `OK` reply the
    /// bare acknowledgement `"OK"` is written on the same connection, as the
    /// worker waits for it. Returns the worker's reply (`{"status": "OK",
    /// "data": {...}}`, or any other status as-is).
    pub async fn get_data(
        &self,
        addr: &str,
        keys: Vec<Value>,
        who: Option<String>,
    ) -> Result<Value, RpcError> {
        let msg = Value::map([
            ("op", Value::str("get_data")),
            ("keys", Value::Array(keys)),
            ("who", Value::from(who)),
            ("reply", Value::Bool(true)),
        ]);
        let mut delay = BUSY_BACKOFF_START;
        for attempt in 1..=GET_DATA_BUSY_ATTEMPTS {
            let (mut lease, reply) = self.exchange(addr, &msg).await?;
            match reply.get("status").and_then(Value::as_str) {
                Some("busy") => {
                    self.checkin(addr, lease);
                    if attempt == GET_DATA_BUSY_ATTEMPTS {
                        break;
                    }
                    tracing::debug!(
                        "Worker {addr} busy (attempt {attempt}); retrying in {delay:?}"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 3 / 2).min(BUSY_BACKOFF_MAX);
                }
                Some("OK") => {
                    lease
                        .conn
                        .write(&Value::str("OK"))
                        .await
                        .map_err(|source| RpcError::Conn {
                            addr: addr.to_string(),
                            source,
                        })?;
                    self.checkin(addr, lease);
                    return Ok(reply);
                }
                _ => {
                    // Error replies leave the worker's handler finished; the
                    // connection is still in a clean state.
                    self.checkin(addr, lease);
                    return Ok(reply);
                }
            }
        }
        Err(RpcError::Busy {
            addr: addr.to_string(),
            attempts: GET_DATA_BUSY_ATTEMPTS,
        })
    }

    /// Drop every pooled connection to `addr` (a worker that left); calls in
    /// flight finish but their connections are not returned to the pool.
    pub fn remove(&self, addr: &str) {
        let mut slots = self.slots();
        if let Some(slot) = slots.get_mut(addr) {
            slot.idle.clear();
            slot.epoch += 1;
        }
    }

    /// Number of idle pooled connections to `addr`.
    pub fn idle_count(&self, addr: &str) -> usize {
        self.slots().get(addr).map_or(0, |s| s.idle.len())
    }
}
