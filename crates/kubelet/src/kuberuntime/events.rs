//! Pod and node events as the kubelet records them (core/v1 Events, source `kubelet`), with upstream's
//! reasons; a repeated event (same object, container, reason and message) bumps the count of the first one.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// Records events on pods, as node `node`.
pub struct Recorder {
    client: Client,
    node: String,
    seen: Mutex<HashMap<String, (String, i32)>>,
}

/// `spec.containers{name}` / `spec.initContainers{name}`, the field path upstream's events carry.
pub fn container_field_path(pod: &Pod, container: &str) -> String {
    let is_init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.name == container));
    if is_init { format!("spec.initContainers{{{container}}}") } else { format!("spec.containers{{{container}}}") }
}

impl Recorder {
    pub fn new(client: Client, node: String) -> Self {
        Recorder { client, node, seen: Mutex::new(HashMap::new()) }
    }

    /// Records an event about `pod` (and one of its containers when `container` is set). Failures are
    /// logged: events are best effort, as upstream's.
    pub async fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        type_: &str,
        reason: &str,
        message: impl Into<String>,
    ) {
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: Some(pod.metadata.namespace.clone().unwrap_or_else(|| "default".into())),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path: container.map(|c| container_field_path(pod, c)),
        };
        self.record(reference, type_, reason, message.into()).await;
    }

    /// Records an event about this node (in `default`, with the node's name as uid, as upstream's kubelet).
    pub async fn node_event(&self, type_: &str, reason: &str, message: impl Into<String>) {
        let reference = ObjectReference {
            kind: Some("Node".into()),
            name: Some(self.node.clone()),
            uid: Some(self.node.clone()),
            namespace: Some("default".into()),
            ..Default::default()
        };
        self.record(reference, type_, reason, message.into()).await;
    }

    /// Creates the event, or bumps the count of the same event recorded before.
    async fn record(&self, reference: ObjectReference, type_: &str, reason: &str, message: String) {
        let ns = reference.namespace.clone().unwrap_or_else(|| "default".into());
        let name = reference.name.clone().unwrap_or_default();
        let uid = reference.uid.clone().unwrap_or_default();
        tracing::debug!(object = %format!("{ns}/{name}"), reason, %message, "event");
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = Time(jiff::Timestamp::now());
        let key = format!("{uid}\u{0}{}\u{0}{reason}\u{0}{message}", reference.field_path.as_deref().unwrap_or(""));
        let existing = self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
        if let Some((event_name, count)) = existing {
            let patch = json!({ "count": count + 1, "lastTimestamp": now });
            if api.patch(&event_name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (event_name, count + 1));
                return;
            }
        }
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let event_name = format!("{name}.{:x}", nanos as u64);
        let event = Event {
            metadata: ObjectMeta { name: Some(event_name.clone()), namespace: Some(ns), ..Default::default() },
            involved_object: reference,
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(type_.into()),
            source: Some(EventSource { component: Some("kubelet".into()), host: Some(self.node.clone()) }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            event_time: None::<MicroTime>,
            count: Some(1),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.node.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                if seen.len() > 4096 {
                    seen.clear();
                }
                seen.insert(key, (event_name, 1));
            }
            Err(e) => tracing::warn!(error = %e, reason, "failed to record an event"),
        }
    }

    /// Forgets the aggregation state of a pod that went away.
    pub fn forget_pod(&self, uid: &str) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| !k.starts_with(&format!("{uid}\u{0}")));
    }
}
