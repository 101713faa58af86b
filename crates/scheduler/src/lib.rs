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
pub mod leader_election;
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

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{ConfigError, LeaderElectionConfig, Profile, SchedulerConfig, DEFAULT_SCHEDULER_NAME};
pub use error::Error;
pub use plugins::node_resources_fit::{ScoringStrategy, ScoringStrategyType};

/// Runs the scheduler until `shutdown` is cancelled. With leader election enabled (the default) it first
/// waits to hold the Lease, schedules only while it holds it, and stands by again when it loses it; the
/// lease is released on shutdown.
pub async fn run(config: SchedulerConfig, client: kube::Client, shutdown: CancellationToken) -> Result<(), Error> {
    let le = config.leader_election.clone();
    if !le.leader_elect {
        let identity = le.identity.clone().unwrap_or_else(leader_election::default_identity);
        scheduler::run_scheduler(config, client, shutdown, identity).await;
        return Ok(());
    }
    let mut elector = leader_election::LeaderElector::new(client.clone(), le.clone());
    loop {
        // Stand by until the lease is ours.
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(lease = %elector.lease_name(), error = %e, "failed to acquire the scheduler lease"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(le.retry_period) => {}
            }
        }
        tracing::info!(identity = %elector.identity(), lease = %elector.lease_name(), "became the scheduler leader");
        let leading = shutdown.child_token();
        let task = tokio::spawn(scheduler::run_scheduler(config.clone(), client.clone(), leading.clone(), elector.identity().to_string()));
        let mut last_renew = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(le.retry_period) => {}
            }
            let attempt = tokio::time::timeout(le.renew_deadline, elector.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => last_renew = Instant::now(),
                Ok(Ok(false)) => {
                    tracing::warn!(lease = %elector.lease_name(), "lost the scheduler lease");
                    break;
                }
                Ok(Err(e)) => tracing::warn!(lease = %elector.lease_name(), error = %e, "failed to renew the scheduler lease"),
                Err(_) => tracing::warn!(lease = %elector.lease_name(), "renewing the scheduler lease timed out"),
            }
            if last_renew.elapsed() >= le.renew_deadline {
                tracing::warn!(lease = %elector.lease_name(), "could not renew the scheduler lease in time");
                break;
            }
        }
        leading.cancel();
        let _ = task.await;
        if shutdown.is_cancelled() {
            elector.release().await;
            return Ok(());
        }
        // Give another candidate the chance to take over before competing again.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
