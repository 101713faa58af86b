//! What every controller is given: an API client, and the event recorder it reports under.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Shared by the controllers of one controller manager.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    /// `reportingController` of the events the controllers write (`skiff-controller-manager`).
    pub reporter: Reporter,
    /// One recorder for all controllers, so repeated events become one Event with a growing count.
    pub recorder: Recorder,
}

impl Context {
    pub fn new(client: kube::Client) -> Self {
        let reporter = Reporter { controller: "skiff-controller-manager".into(), instance: None };
        Self { recorder: Recorder::new(client.clone(), reporter.clone()), client, reporter }
    }

    /// Records an event about `obj` (`type_` is "Normal" or "Warning"); failures are logged, never fatal,
    /// as upstream's event broadcaster drops what it cannot write.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: &str, reason: &str, note: &str) {
        self.event_for(&obj.object_ref(&()), type_, reason, note).await
    }

    /// As [`Context::event`], for an object reference.
    pub async fn event_for(&self, reference: &ObjectReference, type_: &str, reason: &str, note: &str) {
        let ev = Event {
            type_: if type_ == "Warning" { EventType::Warning } else { EventType::Normal },
            reason: reason.to_string(),
            note: Some(note.chars().take(1024).collect()),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::debug!(reason, error = %e, "failed to record an event");
        }
    }
}
