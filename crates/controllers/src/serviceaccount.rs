//! The service account controller: every active namespace has a `default` ServiceAccount, recreated if it
//! is deleted (upstream's `ServiceAccountsController`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

/// The account every namespace gets.
pub const DEFAULT_ACCOUNT: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to create the default ServiceAccount in {namespace}: {source}")]
    Create { namespace: String, source: kube::Error },
}

/// Runs until `shutdown`.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let accounts: Api<ServiceAccount> = Api::all(ctx.client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .watches(accounts, watcher::Config::default(), |sa: ServiceAccount| {
            let ns = sa.metadata.namespace.clone()?;
            (sa.metadata.name.as_deref() == Some(DEFAULT_ACCOUNT)).then(|| ObjectRef::new(&ns))
        })
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(name) = ns.metadata.name.clone() else { return Ok(Action::await_change()) };
    let active = ns.metadata.deletion_timestamp.is_none() && ns.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Active") == "Active";
    if !active {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    let account = ServiceAccount { metadata: ObjectMeta { name: Some(DEFAULT_ACCOUNT.into()), ..Default::default() }, ..Default::default() };
    match api.create(&PostParams::default(), &account).await {
        Ok(_) => tracing::debug!(namespace = %name, "created the default ServiceAccount"),
        // Already there (409), or the namespace began terminating meanwhile (403 Forbidden).
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
        Err(source) => return Err(Error::Create { namespace: name, source }),
    }
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Namespace>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "service account controller");
    Action::requeue(Duration::from_secs(5))
}
