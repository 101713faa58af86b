//! The supervisor's parts list: the components a server or agent runs as tasks sharing one shutdown token,
//! each an API client with its own identity (over the in-process router on a server, HTTPS on an agent).

use std::future::Future;
use std::time::Duration;

use skiff_apiserver::UserInfo;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A kube client over the in-process API router, calling as `user` in `groups`.
pub fn in_process_client(router: &axum::Router, user: &str, groups: &[&str]) -> kube::Client {
    kube::Client::new(skiff_apiserver::with_identity(router.clone(), UserInfo::new(user, groups)), "default")
}

/// Starts `component` as a task that logs its end; an error stops only this component, with the reason.
pub fn spawn<F, E>(name: &'static str, component: F) -> JoinHandle<()>
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    tokio::spawn(async move {
        match component.await {
            Ok(()) => tracing::debug!(component = name, "stopped"),
            Err(e) => tracing::error!(component = name, error = %e, "component failed"),
        }
    })
}

/// Settings of the controller manager that come from the server's flags.
#[derive(Clone, Debug)]
pub struct ControllerManagerConfig {
    pub cluster_cidr: skiff_controllers::node_ipam::Ipv4Net,
    pub node_cidr_mask: u8,
    pub node_monitor_grace_period: Duration,
    /// The holder identity in the controller manager's Lease: the server's node name, so a server restarted
    /// after a crash takes its lease back at once instead of waiting for it to expire.
    pub identity: String,
    /// Whether ServiceLB gives LoadBalancer Services the node addresses (`--disable servicelb` turns it off).
    pub servicelb: bool,
    /// Where the local-path provisioner puts volumes on the nodes (`<data-dir>/storage`).
    pub storage_dir: std::path::PathBuf,
}

/// Starts the controller manager as `system:kube-controller-manager`: every controller runs while this
/// server holds the `kube-system/kube-controller-manager` Lease, so several servers can share one store.
pub fn start_controllers(router: &axum::Router, config: &ControllerManagerConfig, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
    let client = in_process_client(router, "system:kube-controller-manager", &[]);
    let config = config.clone();
    let mut election = skiff_leaderelection::LeaderElectionConfig::for_lease("kube-controller-manager");
    election.identity = Some(config.identity.clone());
    let manager = skiff_leaderelection::run_while_leader(client.clone(), election, "controller manager", shutdown.clone(), move |token, _identity| {
        let tasks = controllers(client.clone(), &config, &token);
        async move {
            for task in tasks {
                let _ = task.await;
            }
        }
    });
    vec![tokio::spawn(manager)]
}

fn controllers(client: kube::Client, config: &ControllerManagerConfig, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
    use skiff_controllers::context::Context;
    use skiff_controllers::{cronjob, daemonset, deployment, garbage_collector, job, node_ipam, namespace, node_lifecycle, podgc, replicaset, serviceaccount, statefulset};
    use skiff_controllers::servicelb;
    use skiff_controllers::disruption;
    let ctx = Context::new(client);
    let ipam = node_ipam::NodeIpamConfig { cluster_cidr: config.cluster_cidr, node_mask: config.node_cidr_mask };
    let lifecycle = node_lifecycle::NodeLifecycleConfig { grace_period: config.node_monitor_grace_period, ..Default::default() };
    let mut tasks = vec![
        spawn("node-ipam", node_ipam::run(ctx.clone(), ipam, shutdown.clone())),
        spawn("node-lifecycle", node_lifecycle::run(ctx.clone(), lifecycle, shutdown.clone())),
        spawn("serviceaccount", serviceaccount::run(ctx.clone(), shutdown.clone())),
        spawn("namespace", namespace::run(ctx.clone(), shutdown.clone())),
        spawn("garbage-collector", garbage_collector::run(ctx.clone(), shutdown.clone())),
        spawn("replicaset", replicaset::run(ctx.clone(), shutdown.clone())),
        spawn("deployment", deployment::run(ctx.clone(), shutdown.clone())),
        spawn("statefulset", statefulset::run(ctx.clone(), shutdown.clone())),
        spawn("daemonset", daemonset::run(ctx.clone(), shutdown.clone())),
        spawn("job", job::run(ctx.clone(), shutdown.clone())),
        spawn("cronjob", cronjob::run(ctx.clone(), shutdown.clone())),
        spawn("podgc", podgc::run(ctx.clone(), shutdown.clone())),
        spawn("endpointslice", skiff_controllers::endpointslice::run(ctx.clone(), shutdown.clone())),
        spawn("endpoints", skiff_controllers::endpoints::run(ctx.clone(), shutdown.clone())),
        spawn("persistentvolume-binder", skiff_controllers::volume::persistentvolume::run(ctx.clone(), shutdown.clone())),
        spawn("volume-protection", skiff_controllers::volume::protection::run(ctx.clone(), shutdown.clone())),
        spawn(
            "local-path-provisioner",
            skiff_controllers::volume::local_path::run(
                ctx.clone(),
                skiff_controllers::volume::local_path::Config { base_path: config.storage_dir.clone(), ..Default::default() },
                shutdown.clone(),
            ),
        ),
        spawn("disruption", disruption::run(ctx.clone(), shutdown.clone())),
    ];
    if config.servicelb {
        tasks.push(spawn("servicelb", servicelb::run(ctx.clone(), shutdown.clone())));
    }
    tasks
}
