//! The HTTPS listener: rustls with the cluster CA as the client-certificate trust root (a certificate is
//! optional: without one the caller is anonymous), HTTP/2 and HTTP/1.1 by ALPN (with upgrades for
//! WebSocket), and the certificate's CN and O values as the caller's identity.

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

use crate::auth::UserInfo;

/// Errors of setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to load TLS material: {0}")]
    Pki(#[from] skiff_pki::PkiError),
}

/// Builds the server TLS configuration from PEM files ([`skiff_pki::server_tls_config`], shared with the
/// kubelet).
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    Ok(skiff_pki::server_tls_config(cert, key, client_ca)?)
}

/// Serves `router` over TLS on `listener` until `shutdown`; open connections then get a few seconds
/// to finish.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: Router, shutdown: CancellationToken) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to accept a connection");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(serve_connection(acceptor, tcp, peer, router, graceful.watcher()));
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => tracing::info!("closing connections that did not finish in time"),
    }
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let user = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| match skiff_pki::identity_from_der(cert.as_ref()) {
            Ok((name, groups)) => {
                let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
                Some(UserInfo::new(name, &groups))
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "client certificate without a usable identity");
                None
            }
        });
    let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let router = router.clone();
        if let Some(u) = &user {
            req.extensions_mut().insert(u.clone());
        }
        async move { router.oneshot(req).await }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
