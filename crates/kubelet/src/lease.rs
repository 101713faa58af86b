//! The node's heartbeat: a `coordination.k8s.io/v1` Lease named after the node in `kube-node-lease`,
//! owned by the Node, renewed every `lease_renew_interval` (upstream's node lease controller).

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::config::KubeletConfig;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Creates the Lease or renews it; returns the Lease as stored.
pub async fn renew(client: &Client, config: &KubeletConfig) -> Result<Lease, kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = MicroTime(jiff::Timestamp::now());
    match leases.get_opt(&config.node_name).await? {
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = Some(config.node_name.clone());
            spec.lease_duration_seconds = Some(config.lease_duration_seconds);
            spec.renew_time = Some(now);
            leases.replace(&config.node_name, &PostParams::default(), &lease).await
        }
        None => {
            let owner = Api::<Node>::all(client.clone()).get_opt(&config.node_name).await?.and_then(|n| {
                Some(OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: config.node_name.clone(),
                    uid: n.metadata.uid?,
                    ..Default::default()
                })
            });
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.node_name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: owner.map(|o| vec![o]),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.node_name.clone()),
                    lease_duration_seconds: Some(config.lease_duration_seconds),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            leases.create(&PostParams::default(), &lease).await
        }
    }
}

/// Renews the Lease until shutdown; failures are logged and retried at the next tick.
pub async fn run(config: Arc<KubeletConfig>, client: Client, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(config.lease_renew_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = renew(&client, &config).await {
            tracing::warn!(error = %e, node = %config.node_name, "failed to renew the node lease");
        }
    }
}
