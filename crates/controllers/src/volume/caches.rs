//! The reflector caches the volume controllers read (volumes, claims, classes, pods, nodes) and the loop that
//! re-syncs a controller whenever one of them changes, or on a slow tick.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Error;

/// What the volume controllers see of the cluster.
#[derive(Clone)]
pub struct Caches {
    pub volumes: Store<PersistentVolume>,
    pub claims: Store<PersistentVolumeClaim>,
    pub classes: Store<StorageClass>,
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
}

impl Caches {
    pub fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.state().into_iter().find(|c| c.metadata.name.as_deref() == Some(name))
    }

    pub fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.state().into_iter().find(|v| v.metadata.name.as_deref() == Some(name))
    }

    pub fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims
            .state()
            .into_iter()
            .find(|c| c.metadata.namespace.as_deref() == Some(namespace) && c.metadata.name.as_deref() == Some(name))
    }

    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.state().into_iter().find(|n| n.metadata.name.as_deref() == Some(name))
    }
}

fn watch<K>(client: &kube::Client, notify: &Arc<Notify>) -> (Store<K>, BoxFuture<'static, ()>)
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let notify = notify.clone();
    let stream = reflector::reflector(writer, watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default()).default_backoff());
    let fut = stream.for_each(move |_| {
        notify.notify_one();
        std::future::ready(())
    });
    (store, Box::pin(fut))
}

/// Fills the caches, then calls `sync` once at start, after every change (batched over a few
/// milliseconds) and every `period`, until `shutdown` is cancelled.
pub async fn run_synced<F, Fut>(client: &kube::Client, period: Duration, shutdown: CancellationToken, mut sync: F) -> Result<(), Error>
where
    F: FnMut(Caches) -> Fut,
    Fut: Future<Output = ()>,
{
    let notify = Arc::new(Notify::new());
    let (volumes, w1) = watch::<PersistentVolume>(client, &notify);
    let (claims, w2) = watch::<PersistentVolumeClaim>(client, &notify);
    let (classes, w3) = watch::<StorageClass>(client, &notify);
    let (pods, w4) = watch::<Pod>(client, &notify);
    let (nodes, w5) = watch::<Node>(client, &notify);
    let caches = Caches { volumes, claims, classes, pods, nodes };
    let watches = futures::future::join_all([w1, w2, w3, w4, w5]);
    tokio::pin!(watches);
    let ready = async {
        for ready in [
            caches.volumes.wait_until_ready().await,
            caches.claims.wait_until_ready().await,
            caches.classes.wait_until_ready().await,
            caches.pods.wait_until_ready().await,
            caches.nodes.wait_until_ready().await,
        ] {
            ready.map_err(|e| Error::Cache(e.to_string()))?;
        }
        Ok::<(), Error>(())
    };
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        _ = &mut watches => return Err(Error::Cache("watches ended".into())),
        r = ready => r?,
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = &mut watches => return Err(Error::Cache("watches ended".into())),
            _ = sync(caches.clone()) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = &mut watches => return Err(Error::Cache("watches ended".into())),
            _ = notify.notified() => tokio::time::sleep(Duration::from_millis(20)).await,
            _ = tokio::time::sleep(period) => {}
        }
    }
}
