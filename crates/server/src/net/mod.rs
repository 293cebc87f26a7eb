//! Networking: Dask TCP and TLS connections, batched streams, worker RPC,
//! accept loop.

pub mod batched;
pub mod conn;
pub mod listener;
pub mod rpc;
pub mod stream;
pub mod tls;
pub mod ws;

pub use batched::{BatchedSender, BatchedStats};
pub use conn::{Conn, ConnError, ConnReader, ConnWriter};
pub use listener::{serve, ConnectionHandler};
pub use rpc::{RpcError, RpcPool};
pub use stream::Scheme;
pub use tls::{CommSecurity, Tls, TlsSettings};
