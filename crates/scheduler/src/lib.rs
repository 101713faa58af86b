//! The scheduler: Kubernetes' scheduling framework over a `kube::Client`. Pods without a node whose
//! `spec.schedulerName` names one of the configured profiles get one: a priority queue with back-off and
//! an unschedulable set, a cache of node state with assumed pods, filter and score plugins named and
//! behaving as upstream's, preemption, binding through `pods/binding`, explanations as conditions and
//! events, and leader election on the `kube-system/kube-scheduler` Lease.
//!
//! Entry point: [`run`].

pub mod cache;
pub mod config;
pub mod error;
pub mod events;
pub mod framework;
pub mod node_info;
pub mod plugins;
pub mod pod_info;
pub mod preemption;
pub mod queue;
pub mod resource;
pub mod schedule_one;
pub mod scheduler;
pub mod selector;
pub mod testing;


use tokio_util::sync::CancellationToken;

pub use config::{ConfigError, LeaderElectionConfig, Profile, SchedulerConfig, DEFAULT_SCHEDULER_NAME};
pub use error::Error;
pub use plugins::node_resources_fit::{ScoringStrategy, ScoringStrategyType};

/// Runs the scheduler until `shutdown` is cancelled. With leader election enabled (the default) it first
/// waits to hold the Lease, schedules only while it holds it, and stands by again when it loses it; the
/// lease is released on shutdown.
pub async fn run(config: SchedulerConfig, client: kube::Client, shutdown: CancellationToken) -> Result<(), Error> {
    let le = config.leader_election.clone();
    skiff_leaderelection::run_while_leader(client.clone(), le, "scheduler", shutdown, move |token, identity| {
        scheduler::run_scheduler(config.clone(), client.clone(), token, identity)
    })
    .await;
    Ok(())
}
