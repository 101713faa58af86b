//! The kubelet's HTTPS listener: rustls with the cluster CA as the client-certificate trust root, HTTP/1.1
//! (with upgrades, for exec/attach/port-forward) and HTTP/2, and the peer certificate's CN and O values
//! attached to each request as its [`Peer`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::ServerError;

/// Who called: the verified client certificate's CN and O values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub user: String,
    pub groups: Vec<String>,
}

/// Builds the server TLS configuration ([`skiff_pki::server_tls_config`], shared with the API server):
/// serving certificate and key, and the CA that signs client certificates. A client without a certificate
/// is let through the handshake (and answered 401); a certificate from another CA fails the handshake.
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    Ok(skiff_pki::server_tls_config(cert, key, client_ca)?)
}

/// Serves `router` over TLS on `listener` until `shutdown`; open connections then get a few seconds.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: Router, shutdown: CancellationToken) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet server: failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_connection(acceptor.clone(), tcp, peer, router.clone(), graceful.watcher()));
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => tracing::info!("kubelet server: closing connections that did not finish in time"),
    }
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    router: Router,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "kubelet server: TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| skiff_pki::identity_from_der(cert.as_ref()).ok())
        .map(|(user, groups)| Peer { user, groups });
    let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let router = router.clone();
        if let Some(p) = &peer {
            req.extensions_mut().insert(p.clone());
        }
        async move { router.oneshot(req).await }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%addr, error = %e, "kubelet server: connection ended with an error");
    }
}
