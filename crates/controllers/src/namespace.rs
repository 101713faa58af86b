//! The namespace controller: finishes the deletion of Terminating namespaces (upstream's
//! `NamespaceController`). The API server marks a deleted namespace Terminating and deletes its contents at
//! once, but contents that terminate gracefully (pods waiting for their kubelet, objects with finalizers)
//! are still there then; this controller deletes the namespace again whenever one of its terminating pods
//! goes away, and every few seconds while it is Terminating, so the API server removes what is left and
//! then the namespace itself.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

/// How often a Terminating namespace is looked at again while something keeps it (upstream requeues with
/// a rate limit; contents with finalizers may take any time).
pub const RESYNC: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to delete the contents of namespace {namespace}: {source}")]
    Delete { namespace: String, source: kube::Error },
}

/// Runs until `shutdown`.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    Controller::new(namespaces, watcher::Config::default())
        // A terminating pod changing or going away may be the last thing the namespace waited for.
        .watches(pods, watcher::Config::default(), |pod: Pod| {
            pod.metadata.deletion_timestamp.as_ref()?;
            Some(ObjectRef::new(pod.metadata.namespace.as_deref()?))
        })
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(name) = ns.metadata.name.clone() else { return Ok(Action::await_change()) };
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    // Deleting a Terminating namespace again makes the API server delete what is left in it and remove the
    // namespace once it is empty.
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api.delete(&name, &DeleteParams::background()).await {
        // Right: the namespace is gone; Left: it is still Terminating.
        Ok(deleted) if deleted.is_right() => Ok(Action::await_change()),
        Ok(_) => {
            tracing::debug!(namespace = %name, "namespace still has contents; looking again later");
            Ok(Action::requeue(RESYNC))
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(source) => Err(Error::Delete { namespace: name, source }),
    }
}

fn error_policy(_: Arc<Namespace>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "namespace controller");
    Action::requeue(RESYNC)
}
