//! The accept loop: one task per connection, handshake(s), then the handler.

use super::conn::{uri, Conn};
use super::stream::Scheme;
use super::tls::Tls;
use dask_wire::frames::FrameLimits;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// What to do with each handshaken connection.
pub trait ConnectionHandler: Send + Sync + 'static {
    /// Serve one connection until it ends. Runs in its own task.
    fn handle(&self, conn: Conn) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// Accept connections forever: each socket gets its own task that performs
/// the handshakes of `scheme` ([`Conn::accept_scheme`]; `tls` is needed for
/// `tls://` and `wss://`) and then runs `handler`.
///
/// Accept errors (e.g. out of file descriptors) are logged and the loop goes
/// on after a short pause; a failed handshake costs one warning line.
pub async fn serve(
    listener: TcpListener,
    scheme: Scheme,
    limits: FrameLimits,
    tls: Option<Arc<Tls>>,
    handler: Arc<dyn ConnectionHandler>,
) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("Error accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let peer = uri(scheme, addr);
            let accepted = Conn::accept_scheme(stream, scheme, tls.as_deref(), limits).await;
            match accepted {
                Ok(conn) => {
                    tracing::debug!("Incoming connection from {peer}");
                    handler.handle(conn).await;
                }
                Err(e) if e.is_disconnect() => {
                    tracing::info!("Connection from {peer} closed before handshake completed")
                }
                Err(e) => tracing::warn!("Failed handshake with {peer}: {e}"),
            }
        });
    }
}
