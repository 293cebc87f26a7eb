//! Networking: Dask TCP connections, batched streams, worker RPC, accept loop.

pub mod batched;
pub mod conn;
pub mod listener;
pub mod rpc;

pub use batched::{BatchedSender, BatchedStats};
pub use conn::{Conn, ConnError, ConnReader, ConnWriter};
pub use listener::{serve, ConnectionHandler};
pub use rpc::{RpcError, RpcPool};
