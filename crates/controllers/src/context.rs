//! What every controller is given: an API client and the identity it reports events under.

/// Shared by the controllers of one controller manager.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    /// `reportingController` of the events the controllers write (`skiff-controller-manager`).
    pub reporter: kube::runtime::events::Reporter,
}

impl Context {
    pub fn new(client: kube::Client) -> Self {
        Self { client, reporter: kube::runtime::events::Reporter { controller: "skiff-controller-manager".into(), instance: None } }
    }
}
