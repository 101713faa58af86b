//! An in-process API server over the memory store, with the built-in objects, for other crates' tests:
//! controllers, scheduler and kubelet tests run against the real API through
//! `kube::Client::new(server.router.clone(), "default")`.

use std::sync::Arc;
use std::time::Duration;

use skiff_registry::{Registry, RegistryConfig};
use tokio_util::sync::CancellationToken;

use crate::{ApiServer, Config, UserInfo};

/// The router (calls made as `user`), the token that ends the server's watches, and the registry.
pub struct InProcess {
    pub router: axum::Router,
    pub shutdown: CancellationToken,
    pub registry: Arc<Registry>,
}

impl InProcess {
    /// The same server, called as another user.
    pub fn router_as(&self, user: UserInfo) -> axum::Router {
        crate::with_identity(self.router.clone(), user)
    }
}

/// An API server over a fresh memory store with the built-in objects, for tests that serve it themselves
/// (over TLS, with a kubelet client); `shutdown` ends its watches. [`start`] wraps one in a router.
pub async fn api_server(config: Config, shutdown: CancellationToken) -> (Arc<ApiServer>, Arc<Registry>) {
    let backend = Arc::new(skiff_store::memory::MemoryBackend::new());
    let registry = Arc::new(Registry::new(backend, None, RegistryConfig::default()));
    let server = ApiServer::new(
        config,
        registry.clone(),
        Arc::new(skiff_api::openapi::Schemas::load()),
        Arc::new(skiff_api::protobuf::ProtobufDecoder::load().expect("the protobuf descriptors load")),
        shutdown,
    );
    crate::bootstrap::ensure_builtin_objects(
        &registry,
        &crate::bootstrap::Bootstrap { service_ip: "10.43.0.1".into(), endpoint_ip: "127.0.0.1".into(), port: 6443 },
    )
    .await
    .expect("the built-in objects are created");
    (server, registry)
}

/// Starts a server whose watches send bookmarks every 200 ms; calls through the router are made as `user`.
pub async fn start(user: UserInfo) -> InProcess {
    let shutdown = CancellationToken::new();
    let config = Config { bookmark_interval: Duration::from_millis(200), ..Config::default() };
    let (server, registry) = api_server(config, shutdown.clone()).await;
    let router = crate::with_identity(crate::router(server), user);
    InProcess { router, shutdown, registry }
}

/// Starts a server called as the cluster admin (`system:admin`, `system:masters`).
pub async fn start_admin() -> InProcess {
    start(UserInfo::new("system:admin", &["system:masters"])).await
}
