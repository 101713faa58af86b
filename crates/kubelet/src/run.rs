//! The kubelet's entry point: `run(config, deps, shutdown)` registers the node, keeps its status and
//! lease, and runs the pods bound to it until shutdown.

use std::sync::Arc;

use kube::Client;
use skiff_runtime::cri::{ImageService, RuntimeService};
use tokio_util::sync::CancellationToken;

use crate::config::KubeletConfig;
use crate::{lease, node_status};

/// What the kubelet is given: the API client (acting as the node) and the runtime behind the CRI traits.
#[derive(Clone)]
pub struct Deps {
    pub client: Client,
    pub runtime: Arc<dyn RuntimeService>,
    pub images: Arc<dyn ImageService>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {what}: {source}")]
    Api {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("invalid kubelet configuration: {0}")]
    Config(String),
    #[error("failed to create {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn api(what: &'static str, source: kube::Error) -> Error {
        Error::Api { what, source }
    }
}

fn validate(config: &KubeletConfig) -> Result<(), Error> {
    if config.node_name.is_empty() {
        return Err(Error::Config("node_name is empty".into()));
    }
    if config.node_name != config.node_name.to_lowercase() || config.node_name.contains('_') {
        return Err(Error::Config(format!("node_name {:?} is not a lowercase DNS subdomain", config.node_name)));
    }
    if config.max_pods == 0 {
        return Err(Error::Config("max_pods must be at least 1".into()));
    }
    if config.backoff_initial.is_zero() || config.backoff_max < config.backoff_initial {
        return Err(Error::Config("backoff_initial must be positive and at most backoff_max".into()));
    }
    Ok(())
}

/// Runs the kubelet until `shutdown` is cancelled. Containers are left running on shutdown (a restarted
/// kubelet adopts them).
pub async fn run(config: KubeletConfig, deps: Deps, shutdown: CancellationToken) -> Result<(), Error> {
    validate(&config)?;
    for dir in [config.pods_root(), config.log_root()] {
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
    }
    let config = Arc::new(config);
    let kubelet_version =
        deps.client.apiserver_version().await.map_err(|e| Error::api("read the API server's version", e))?.git_version;
    node_status::register(&deps.client, &config).await?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(node_status::run(
        config.clone(),
        deps.client.clone(),
        deps.runtime.clone(),
        deps.images.clone(),
        kubelet_version,
        shutdown.clone(),
    ));
    tasks.spawn(lease::run(config.clone(), deps.client.clone(), shutdown.clone()));
    tasks.spawn(crate::pod_workers::run(config.clone(), deps.clone(), shutdown.clone()));
    if let Some(dir) = config.storage_dir.clone() {
        let cleaner = crate::volumes::local_path_cleaner::Config { node_name: config.node_name.clone(), storage_dir: dir };
        tasks.spawn(crate::volumes::local_path_cleaner::run(cleaner, deps.client.clone(), shutdown.clone()));
    }
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res
            && e.is_panic()
        {
            shutdown.cancel();
            std::panic::resume_unwind(e.into_panic());
        }
    }
    Ok(())
}
