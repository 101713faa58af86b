//! The Kubernetes HTTP API: one dispatcher that parses Kubernetes URLs and serves discovery, OpenAPI,
//! the REST verbs (with list/watch, Table output, the four patch types, subresources), authentication by
//! client certificate, and HTTPS with HTTP/2 and HTTP/1.1.
//!
//! `router()` gives the axum `Router` that both the TLS listener and in-process clients
//! (`kube::Client::new(router, ..)`) use; in-process callers stamp their identity with [`with_identity`].

pub mod auth;
pub mod bootstrap;
mod body;
mod crd;
mod discovery;
mod handlers;
mod openapi;
mod params;
mod patch;
mod proxy;
mod reviews;
mod subresources;
pub mod testing;
pub mod tls;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;
use skiff_api::ApiError;
use skiff_api::openapi::Schemas;
use skiff_api::protobuf::ProtobufDecoder;
use skiff_registry::Registry;
use tokio_util::sync::CancellationToken;

pub use auth::UserInfo;
pub use proxy::KubeletClientConfig;

/// The largest request body accepted (Kubernetes' limit is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What `/version` reports.
pub const GIT_VERSION: &str = concat!("v1.33.0+skiff.", env!("CARGO_PKG_VERSION"));

/// Settings of the API server.
#[derive(Clone, Debug)]
pub struct Config {
    /// The address clients reach the server at, for discovery's `serverAddressByClientCIDRs`.
    pub advertise_address: String,
    /// The longest a watch stays open when the client does not set `timeoutSeconds`.
    pub max_watch_timeout: Duration,
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// The client certificate for kubelets (pods/log, exec, attach, portforward); without it those
    /// answer 503.
    pub kubelet_client: Option<KubeletClientConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            advertise_address: "127.0.0.1:6443".into(),
            max_watch_timeout: Duration::from_secs(1800),
            bookmark_interval: Duration::from_secs(60),
            kubelet_client: None,
        }
    }
}

/// Everything the handlers share.
pub struct ApiServer {
    pub config: Config,
    pub registry: Arc<Registry>,
    pub schemas: Arc<Schemas>,
    pub protobuf: Arc<ProtobufDecoder>,
    pub openapi: openapi::Documents,
    /// Discovery documents, rendered again when CustomResourceDefinitions change what is served.
    pub discovery: discovery::Cache,
    /// Cancelled when the server shuts down: open watches end.
    pub shutdown: CancellationToken,
}

impl ApiServer {
    /// Builds the server state: discovery documents are rendered here, OpenAPI documents on a thread.
    pub fn new(
        config: Config,
        registry: Arc<Registry>,
        schemas: Arc<Schemas>,
        protobuf: Arc<ProtobufDecoder>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let openapi = openapi::Documents::new(schemas.clone(), registry.catalog().clone());
        let discovery = discovery::Cache::new(&config, registry.catalog().clone());
        // The CRD controller establishes CustomResourceDefinitions and serves their resources.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(crd::controller::run(registry.clone(), shutdown.clone()));
        }
        let server = Arc::new(ApiServer { config, registry, schemas, protobuf, openapi, discovery, shutdown });
        let warm = server.clone();
        std::thread::Builder::new()
            .name("openapi-render".into())
            .spawn(move || {
                warm.openapi.warm();
                release_free_memory();
            })
            .expect("threads start");
        server
    }
}

/// Hands memory freed after large transient allocations (rendering OpenAPI, big lists) back to the OS;
/// glibc otherwise keeps it in the heap for the life of the process. Cheap: call it now and then.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The API as an axum `Router`. Requests must carry a [`UserInfo`] extension to be authenticated
/// (the TLS listener adds it from the client certificate; in-process callers with [`with_identity`]).
pub fn router(server: Arc<ApiServer>) -> Router {
    Router::new()
        .fallback(dispatch)
        .with_state(server)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            error_response(&ApiError::internal("the server panicked while handling the request"))
        }))
}

/// Wraps a router so that every request it serves is made as `user` (for in-process clients).
pub fn with_identity(router: Router, user: UserInfo) -> Router {
    router.layer(axum::middleware::map_request(move |mut req: Request| {
        let user = user.clone();
        async move {
            req.extensions_mut().insert(user);
            req
        }
    }))
}

async fn dispatch(State(server): State<Arc<ApiServer>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = handlers::handle(server, req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    resp
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, serde_json::to_vec(body).expect("json values serialize")).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A `Status` response for an error.
pub(crate) fn error_response(e: &ApiError) -> Response {
    json_response(StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &e.to_status())
}
