//! Finding a pod's sandbox and containers in the runtime by the labels the kubelet puts on them.

use std::collections::BTreeMap;

use http::StatusCode;
use skiff_runtime::cri::{ContainerFilter, ContainerStatus, PodSandboxStatus, RuntimeService, SandboxState, labels};

/// A lookup failure, with the status and text the kubelet answers.
#[derive(Debug)]
pub struct LookupError {
    pub status: StatusCode,
    pub message: String,
}

impl LookupError {
    fn new(status: StatusCode, message: String) -> Self {
        LookupError { status, message }
    }
}

fn runtime_error(e: skiff_runtime::cri::RuntimeError) -> LookupError {
    LookupError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("container runtime: {e}"))
}

/// The pod's sandbox: the newest ready one, else the newest (host-network pods have no network namespace,
/// but a sandbox all the same). `uid`, when given, must match.
pub async fn sandbox(runtime: &dyn RuntimeService, ns: &str, pod: &str, uid: Option<&str>) -> Result<PodSandboxStatus, LookupError> {
    let mut all: Vec<PodSandboxStatus> = runtime
        .list_pod_sandboxes()
        .await
        .map_err(runtime_error)?
        .into_iter()
        .filter(|s| pod_matches(&s.labels, &s.namespace, &s.name, ns, pod))
        .filter(|s| uid.is_none_or(|u| s.uid == u || s.labels.get(labels::POD_UID).is_some_and(|l| l == u)))
        .collect();
    all.sort_by_key(|s| (s.state == SandboxState::Ready, s.created_at, s.attempt));
    all.pop().ok_or_else(|| LookupError::new(StatusCode::NOT_FOUND, format!("pod \"{ns}/{pod}\" does not exist")))
}

fn pod_matches(labels: &BTreeMap<String, String>, s_ns: &str, s_name: &str, ns: &str, pod: &str) -> bool {
    let l_ns = labels.get(labels::POD_NAMESPACE).map(String::as_str).unwrap_or(s_ns);
    let l_name = labels.get(labels::POD_NAME).map(String::as_str).unwrap_or(s_name);
    l_ns == ns && l_name == pod
}

/// Every container named `container` of the pod, newest attempt first.
pub async fn containers(runtime: &dyn RuntimeService, ns: &str, pod: &str, container: &str) -> Result<Vec<ContainerStatus>, LookupError> {
    let mut filter = ContainerFilter::default();
    filter.labels.insert(labels::POD_NAMESPACE.into(), ns.into());
    filter.labels.insert(labels::POD_NAME.into(), pod.into());
    filter.labels.insert(labels::CONTAINER_NAME.into(), container.into());
    let mut found = runtime.list_containers(&filter).await.map_err(runtime_error)?;
    found.sort_by(|a, b| b.attempt.cmp(&a.attempt).then(b.created_at.cmp(&a.created_at)));
    Ok(found)
}

/// The current (newest) container, for exec and attach: it must be running.
pub async fn running_container(runtime: &dyn RuntimeService, ns: &str, pod: &str, container: &str) -> Result<ContainerStatus, LookupError> {
    let found = containers(runtime, ns, pod, container).await?;
    let Some(c) = found.into_iter().next() else {
        // Distinguish an unknown pod from an unknown container, as the kubelet does.
        sandbox(runtime, ns, pod, None).await?;
        return Err(LookupError::new(StatusCode::NOT_FOUND, format!("container \"{container}\" not found in pod \"{ns}/{pod}\"")));
    };
    if c.state != skiff_runtime::cri::ContainerState::Running {
        return Err(LookupError::new(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not running (state {:?}) in pod {ns}/{pod}", c.state),
        ));
    }
    Ok(c)
}
