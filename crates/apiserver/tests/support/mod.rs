//! An in-process API server over the memory store, with the built-in objects, for integration tests.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use skiff_apiserver::{ApiServer, Config, UserInfo};
use skiff_registry::{Registry, RegistryConfig};
use tokio_util::sync::CancellationToken;

/// The router (calls made as `user`), the token that ends the server's watches, and the registry.
pub struct InProcess {
    pub router: axum::Router,
    pub shutdown: CancellationToken,
    pub registry: Arc<Registry>,
}

/// Starts a server whose watches send bookmarks every 200 ms; calls through the router are made as `user`.
pub async fn start(user: UserInfo) -> InProcess {
    let backend = Arc::new(skiff_store::memory::MemoryBackend::new());
    let registry = Arc::new(Registry::new(backend, None, RegistryConfig::default()));
    let shutdown = CancellationToken::new();
    let server = ApiServer::new(
        Config { bookmark_interval: Duration::from_millis(200), ..Config::default() },
        registry.clone(),
        Arc::new(skiff_api::openapi::Schemas::load()),
        Arc::new(skiff_api::protobuf::ProtobufDecoder::load().unwrap()),
        shutdown.clone(),
    );
    skiff_apiserver::bootstrap::ensure_builtin_objects(
        &registry,
        &skiff_apiserver::bootstrap::Bootstrap { service_ip: "10.43.0.1".into(), endpoint_ip: "127.0.0.1".into(), port: 6443 },
    )
    .await
    .unwrap();
    let router = skiff_apiserver::with_identity(skiff_apiserver::router(server), user);
    InProcess { router, shutdown, registry }
}
