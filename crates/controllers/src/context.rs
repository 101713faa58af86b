//! What every controller is given: an API client, and the event recorder it reports under.

use kube::runtime::events::{Recorder, Reporter};

/// Shared by the controllers of one controller manager.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    /// `reportingController` of the events the controllers write (`skiff-controller-manager`).
    pub reporter: Reporter,
    /// One recorder for all controllers, so repeated events become one Event with a growing count; events
    /// go through [`crate::controller_utils::publish`] and its kin.
    pub recorder: Recorder,
}

impl Context {
    pub fn new(client: kube::Client) -> Self {
        let reporter = Reporter { controller: "skiff-controller-manager".into(), instance: None };
        Self { recorder: Recorder::new(client.clone(), reporter.clone()), client, reporter }
    }
}
