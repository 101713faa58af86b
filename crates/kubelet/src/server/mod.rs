//! The kubelet API on port 10250: container logs, exec, attach, port-forward, `/stats/summary` and
//! `/metrics/resource`, over HTTPS that only the API server may call (a client certificate from the cluster
//! CA with CN `kube-apiserver-kubelet-client` or group `system:masters`).
//!
//! Entry point: [`run`] (binds `config.addr`); [`run_on`] serves an already bound listener (tests).

mod auth;
mod logs;
mod pods;
mod portforward;
mod remotecommand;
pub mod spdy;
mod stats;
pub mod tls;
mod websocket;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use skiff_runtime::cri::RuntimeService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::{APISERVER_KUBELET_CLIENT_USER, MASTERS_GROUP};
pub use tls::Peer;

/// Settings of the kubelet server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen (upstream's default `0.0.0.0:10250`).
    pub addr: SocketAddr,
    /// The serving certificate and key (PEM).
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The CA whose client certificates are accepted (the cluster CA).
    pub client_ca: PathBuf,
    /// The node's name, reported in `/stats/summary`.
    pub node_name: String,
}

impl ServerConfig {
    pub const DEFAULT_ADDR: &str = "0.0.0.0:10250";
}

/// What the server needs from the rest of the kubelet.
#[derive(Clone)]
pub struct ServerDeps {
    pub runtime: Arc<dyn RuntimeService>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("kubelet server TLS material: {0}")]
    Pki(#[from] skiff_pki::PkiError),
    #[error("kubelet server failed to listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// Serves the kubelet API on `config.addr` until `shutdown` is cancelled.
pub async fn run(config: ServerConfig, deps: ServerDeps, shutdown: CancellationToken) -> Result<(), ServerError> {
    let listener = TcpListener::bind(config.addr).await.map_err(|source| ServerError::Listen { addr: config.addr, source })?;
    run_on(listener, config, deps, shutdown).await
}

/// Serves the kubelet API on an already bound listener (`config.addr` is ignored).
pub async fn run_on(listener: TcpListener, config: ServerConfig, deps: ServerDeps, shutdown: CancellationToken) -> Result<(), ServerError> {
    let tls = tls::server_config(&config.tls_cert, &config.tls_key, &config.client_ca)?;
    tracing::info!(addr = ?listener.local_addr().ok(), "kubelet server is serving");
    tls::serve(listener, tls, router(config, deps, shutdown.clone()), shutdown).await;
    Ok(())
}

/// Shared by the handlers.
pub(crate) struct State {
    pub config: ServerConfig,
    pub runtime: Arc<dyn RuntimeService>,
    pub stats: stats::CpuSamples,
    pub shutdown: CancellationToken,
}

/// The kubelet API as an axum `Router`; requests must carry a [`Peer`] extension (the TLS listener adds it).
pub fn router(config: ServerConfig, deps: ServerDeps, shutdown: CancellationToken) -> Router {
    let state = Arc::new(State { config, runtime: deps.runtime, stats: stats::CpuSamples::default(), shutdown });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs::serve))
        .route("/stats/summary", get(stats::serve))
        .route("/metrics/resource", get(stats::serve_resource_metrics))
        .route("/exec/{ns}/{pod}/{container}", any(remotecommand::exec))
        .route("/exec/{ns}/{pod}/{uid}/{container}", any(remotecommand::exec_with_uid))
        .route("/attach/{ns}/{pod}/{container}", any(remotecommand::attach))
        .route("/attach/{ns}/{pod}/{uid}/{container}", any(remotecommand::attach_with_uid))
        .route("/portForward/{ns}/{pod}", any(portforward::serve))
        .route("/portForward/{ns}/{pod}/{uid}", any(portforward::serve_with_uid))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "404 page not found") })
        .layer(axum::middleware::from_fn(auth::authorize))
        .with_state(state)
}

/// A plain-text error, as the kubelet writes them.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut msg = message.into();
    if !msg.ends_with('\n') {
        msg.push('\n');
    }
    (status, [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], msg).into_response()
}
