//! Skiff's cluster DNS: serves `<svc>.<ns>.svc.<domain>`, headless endpoints, SRV, PTR, ExternalName and
//! pod names from the cluster's Services and EndpointSlices (CoreDNS's kubernetes plugin behaviour), and
//! forwards every other name to the upstream nameservers with a cache.
//!
//! `run(config, client, shutdown)` listens on UDP and TCP at every configured address until `shutdown`.

pub mod config;
mod forward;
mod handler;
pub mod index;
pub mod records;
mod server;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

pub use config::DnsConfig;

/// Why the DNS server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid DNS configuration: {0}")]
    Config(String),
    #[error("cannot listen on {protocol} {address}: {source}")]
    Listen { protocol: &'static str, address: SocketAddr, source: std::io::Error },
}

/// Serves cluster DNS as `config` says until `shutdown`, watching Services and EndpointSlices through
/// `client`. Fails only when the configuration is invalid or an address cannot be bound.
pub async fn run(config: DnsConfig, client: kube::Client, shutdown: CancellationToken) -> Result<(), Error> {
    if config.listen.is_empty() {
        return Err(Error::Config("no listen address".into()));
    }
    let index = index::Index::new(&config.cluster_domain, config.ttl).map_err(Error::Config)?;
    let index = Arc::new(RwLock::new(index));
    let forwarder = forward::Forwarder::new(
        config.upstreams.clone(),
        config.upstream_timeout,
        config.cache_size,
        config.cache_max_ttl,
        config.cache_negative_ttl,
    );
    let handler = Arc::new(handler::Handler::new(index.clone(), forwarder));

    let mut tasks = tokio::task::JoinSet::new();
    for &address in &config.listen {
        let udp = UdpSocket::bind(address)
            .await
            .map_err(|source| Error::Listen { protocol: "UDP", address, source })?;
        let tcp = TcpListener::bind(address)
            .await
            .map_err(|source| Error::Listen { protocol: "TCP", address, source })?;
        tasks.spawn(server::serve_udp(udp, handler.clone(), shutdown.clone()));
        tasks.spawn(server::serve_tcp(tcp, handler.clone(), config.tcp_idle_timeout, shutdown.clone()));
    }
    tracing::info!(listen = ?config.listen, domain = %config.cluster_domain, upstreams = ?config.upstreams, "cluster DNS serving");
    tasks.spawn(watch::watch(client, index, config.ttl, shutdown.clone()));
    while tasks.join_next().await.is_some() {}
    Ok(())
}
