//! Leader election on a coordination.k8s.io/v1 Lease, as client-go's `leaderelection` with a LeaseLock:
//! the holder renews `renewTime` every retry period; others take over once they have seen the same record
//! unchanged for `leaseDurationSeconds` (measured on their own clock, so clock skew does not matter).
//! [`run_while_leader`] runs a component only while this process holds the lease, so several servers can run
//! the scheduler and the controller manager with one active at a time.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

/// Leader election settings (upstream's `leaderElection` configuration block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    pub leader_elect: bool,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    pub resource_namespace: String,
    pub resource_name: String,
    /// `holderIdentity`; defaults to `<hostname>_<random>`.
    pub identity: Option<String>,
}

impl LeaderElectionConfig {
    /// Upstream's defaults (15 s lease, 10 s renew deadline, 2 s retry) for the Lease `kube-system/<name>`.
    pub fn for_lease(name: &str) -> Self {
        LeaderElectionConfig {
            leader_elect: true,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            resource_namespace: "kube-system".into(),
            resource_name: name.into(),
            identity: None,
        }
    }
}

/// What identifies a lease renewal: holder and renew time.
type LeaseRecord = (Option<String>, Option<MicroTime>);

/// One candidate for the lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    identity: String,
    /// The last lease record seen (holder, renew time) and when it was first seen.
    observed: Option<(LeaseRecord, Instant)>,
}

/// `<hostname>_<uuid>`, as kube-scheduler's and kube-controller-manager's default identity.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skiff".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaderElectionConfig) -> Self {
        let identity = config.identity.clone().unwrap_or_else(default_identity);
        LeaderElector { api: Api::namespaced(client, &config.resource_namespace), config, identity, observed: None }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn lease_name(&self) -> String {
        format!("{}/{}", self.config.resource_namespace, self.config.resource_name)
    }

    fn spec(&self, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        let now = MicroTime(jiff::Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquire.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Takes the lease if it is free or expired, renews it if held; true while this candidate leads.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let name = self.config.resource_name.clone();
        let Some(lease) = self.api.get_opt(&name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(name), ..Default::default() },
                spec: Some(self.spec(None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        let now = Instant::now();
        if self.observed.as_ref().is_none_or(|(r, _)| *r != record) {
            self.observed = Some((record, now));
        }
        let observed_at = self.observed.as_ref().map_or(now, |(_, t)| *t);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_by_me = holder == self.identity;
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let expired = holder.is_empty() || now.duration_since(observed_at) >= duration;
        if !held_by_me && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if held_by_me {
            self.spec(spec.acquire_time.clone(), transitions)
        } else {
            self.spec(None, transitions + 1)
        };
        let mut updated = lease;
        updated.spec = Some(new_spec);
        match self.api.replace(&name, &PostParams::default(), &updated).await {
            Ok(l) => {
                let s = l.spec.unwrap_or_default();
                self.observed = Some(((s.holder_identity, s.renew_time), Instant::now()));
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (on shutdown) so another candidate takes over at once.
    pub async fn release(&mut self) {
        let name = self.config.resource_name.clone();
        let Ok(Some(mut lease)) = self.api.get_opt(&name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        if let Err(e) = self.api.replace(&name, &PostParams::default(), &lease).await {
            tracing::debug!(error = %e, lease = %self.lease_name(), "failed to release the lease");
        }
    }
}

/// Runs `component(token)` only while this process holds the lease: it waits to acquire it, starts the
/// component with a child token, cancels that token when the lease is lost (and competes again), and
/// releases the lease on shutdown. With `leader_elect` off, it simply runs the component.
pub async fn run_while_leader<F, Fut>(client: Client, config: LeaderElectionConfig, what: &str, shutdown: CancellationToken, component: F)
where
    F: Fn(CancellationToken, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if !config.leader_elect {
        let identity = config.identity.clone().unwrap_or_else(default_identity);
        component(shutdown, identity).await;
        return;
    }
    let mut elector = LeaderElector::new(client, config.clone());
    loop {
        // Stand by until the lease is ours.
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(lease = %elector.lease_name(), error = %e, "failed to acquire the {what} lease"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(config.retry_period) => {}
            }
        }
        tracing::info!(identity = %elector.identity(), lease = %elector.lease_name(), "became the {what} leader");
        let leading = shutdown.child_token();
        let task = tokio::spawn(component(leading.clone(), elector.identity().to_string()));
        let mut last_renew = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(config.retry_period) => {}
            }
            match tokio::time::timeout(config.renew_deadline, elector.try_acquire_or_renew()).await {
                Ok(Ok(true)) => last_renew = Instant::now(),
                Ok(Ok(false)) => {
                    tracing::warn!(lease = %elector.lease_name(), "lost the {what} lease");
                    break;
                }
                Ok(Err(e)) => tracing::warn!(lease = %elector.lease_name(), error = %e, "failed to renew the {what} lease"),
                Err(_) => tracing::warn!(lease = %elector.lease_name(), "renewing the {what} lease timed out"),
            }
            if last_renew.elapsed() >= config.renew_deadline {
                tracing::warn!(lease = %elector.lease_name(), "could not renew the {what} lease in time");
                break;
            }
        }
        leading.cancel();
        let _ = task.await;
        if shutdown.is_cancelled() {
            elector.release().await;
            return;
        }
        // Give another candidate the chance to take over before competing again.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
