//! Leader election on a coordination.k8s.io/v1 Lease, as client-go's `leaderelection` with a LeaseLock:
//! the holder renews `renewTime` every retry period; others take over once they have seen the same record
//! unchanged for `leaseDurationSeconds` (measured on their own clock, so clock skew does not matter).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{PostParams};
use kube::{Api, Client};
use tokio::time::Instant;

use crate::config::LeaderElectionConfig;

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

/// `<hostname>_<uuid>`, as kube-scheduler's default identity.
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
            tracing::debug!(error = %e, "failed to release the scheduler lease");
        }
    }
}
