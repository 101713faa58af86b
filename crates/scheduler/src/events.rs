//! Events about pods (`FailedScheduling`, `Scheduled`, `Preempted`), written as core/v1 Events so that
//! `kubectl describe pod` lists them; a repeat of the same reason and message for a pod bumps `count`.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::pod_info::PodInfo;

pub const TYPE_NORMAL: &str = "Normal";
pub const TYPE_WARNING: &str = "Warning";

/// (reason, event name, message, count).
type LastEvent = (String, String, String, i32);

/// Writes events, remembering the last one per pod and reason to count repeats.
pub struct EventRecorder {
    client: Client,
    instance: String,
    /// Per pod uid: (reason, event name, message, count).
    last: Mutex<HashMap<String, Vec<LastEvent>>>,
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl EventRecorder {
    pub fn new(client: Client, instance: String) -> Self {
        EventRecorder { client, instance, last: Mutex::new(HashMap::new()) }
    }

    /// Records an event about `pod`, reported by `component` (the profile's scheduler name).
    pub async fn record(&self, pod: &PodInfo, component: &str, type_: &str, reason: &str, action: &str, message: &str) {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &pod.namespace);
        let repeat = {
            let last = self.last.lock().expect("event cache lock");
            last.get(&pod.uid)
                .and_then(|l| l.iter().find(|(r, _, m, _)| r == reason && m == message))
                .map(|(_, name, _, count)| (name.clone(), *count))
        };
        if let Some((name, count)) = repeat {
            let patch = json!({"count": count + 1, "lastTimestamp": now()});
            if api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                self.remember(pod, reason, name, message, count + 1);
                return;
            }
        }
        let ts = now();
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let name = format!("{}.{:x}", pod.name, nanos);
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": pod.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": pod.namespace, "name": pod.name,
                               "uid": pod.uid, "resourceVersion": pod.pod.metadata.resource_version},
            "reason": reason, "message": message, "type": type_, "action": action,
            "source": {"component": component},
            "reportingComponent": component, "reportingInstance": self.instance,
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
        });
        let ev: Event = match serde_json::from_value(ev) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "failed to build an event");
                return;
            }
        };
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => self.remember(pod, reason, name, message, 1),
            Err(e) => tracing::debug!(pod = %pod.key(), error = %e, "failed to write an event"),
        }
    }

    fn remember(&self, pod: &PodInfo, reason: &str, name: String, message: &str, count: i32) {
        let mut last = self.last.lock().expect("event cache lock");
        if last.len() > 50_000 {
            last.clear();
        }
        let list = last.entry(pod.uid.clone()).or_default();
        list.retain(|(r, _, _, _)| r != reason);
        list.push((reason.to_string(), name, message.to_string(), count));
    }

    /// Forgets a pod's events (it was bound or deleted).
    pub fn forget(&self, uid: &str) {
        self.last.lock().expect("event cache lock").remove(uid);
    }
}

/// Pods are written through this API.
pub fn pods(client: &Client, ns: &str) -> Api<Pod> {
    Api::namespaced(client.clone(), ns)
}
