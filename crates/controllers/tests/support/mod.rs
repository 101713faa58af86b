//! What the controller integration tests share: an in-process API server with a client over it, a controller
//! running in a task until stopped, waiting until a condition holds, a clock the test moves, and pod helpers.
#![allow(dead_code)] // every test binary uses its own part of it

use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use skiff_apiserver::testing::InProcess;
use skiff_controllers::context::Context;
use skiff_controllers::controller_utils::Clock;
use tokio_util::sync::CancellationToken;

/// Polls `check` every 100 ms for up to 30 s; panics naming `what` if it never holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

/// An in-process API server over a memory store, and a kube client over it (namespace `default`). Keep the
/// server alive as long as the client is used.
pub async fn start_server() -> (InProcess, kube::Client) {
    let server = skiff_apiserver::testing::start_admin().await;
    let client = kube::Client::new(server.router.clone(), "default");
    (server, client)
}

/// A controller running in a task, stopped (and its result checked) by [`Running::stop`].
pub struct Running<E> {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), E>>,
}

impl<E: Debug + Send + 'static> Running<E> {
    /// Spawns `run(Context::new(client), shutdown)`: a controller's `run`, or a closure calling its `run_with`.
    pub fn spawn<R, Fut>(client: &kube::Client, run: R) -> Self
    where
        R: FnOnce(Context, CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(Context::new(client.clone()), shutdown.clone()));
        Running { shutdown, task }
    }

    /// Cancels the controller and waits for it to return `Ok`.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A clock the test moves by hand (starting now), and the controller's view of it.
pub fn manual_clock() -> (Arc<Mutex<jiff::Timestamp>>, Clock) {
    let time = Arc::new(Mutex::new(jiff::Timestamp::now()));
    let t = time.clone();
    (time, Arc::new(move || *t.lock().unwrap()))
}

/// The pods matching `labels` that are not being deleted.
pub async fn live_pods(pods: &Api<Pod>, labels: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(labels))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Marks a pod Running with its Ready condition `ready` (what a kubelet would report).
pub async fn set_ready(pods: &Api<Pod>, name: &str, ready: bool) -> Result<Pod, kube::Error> {
    let status = serde_json::json!({"status": {"phase": "Running", "conditions": [{
        "type": "Ready", "status": if ready { "True" } else { "False" },
        "lastTransitionTime": jiff::Timestamp::now().to_string()
    }]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await
}
