//! The TLS side of accepting one HTTPS connection, shared by the API server
//! and the kubelet server: a bounded handshake, then the client identity
//! from the peer certificate (already verified by rustls against the client
//! CA when one was presented).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{ClientIdentity, identity_from_der};

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshake on `tcp`; `None` when it fails or times out (logged at debug,
/// tagged with `what`). The identity is `None` for clients without a cert.
pub async fn accept_tls(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    what: &str,
) -> Option<(TlsStream<TcpStream>, Option<ClientIdentity>)> {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "{what} TLS handshake failed: {e}");
            return None;
        }
        Err(_) => return None,
    };
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|der| identity_from_der(der).ok());
    Some((tls, identity))
}
