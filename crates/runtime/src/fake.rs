//! An in-memory `RuntimeService` + `ImageService` for unit and integration tests of the kubelet: sandboxes
//! and containers live in a map, exits and exec results are scripted, pulls can be made to fail, and every
//! start is counted so a test can tell whether a container was restarted.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::cri::*;
use crate::image::reference::normalize;

/// What a container's process does once started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs until stopped.
    RunForever,
    /// Exits with this code after the delay.
    ExitAfter(Duration, i32),
}

#[derive(Clone, Debug)]
struct Sandbox {
    status: PodSandboxStatus,
    log_directory: std::path::PathBuf,
}

#[derive(Clone, Debug)]
struct Container {
    status: ContainerStatus,
    exit_at: Option<(SystemTime, i32)>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    next_ip: u32,
    sandboxes: BTreeMap<String, Sandbox>,
    containers: BTreeMap<String, Container>,
    images: BTreeMap<String, Image>,
    pull_errors: HashMap<String, String>,
    behaviours: HashMap<String, Behaviour>,
    exec_results: HashMap<(String, Vec<String>), Result<ExecSyncResult, String>>,
    start_errors: HashMap<String, String>,
    starts: HashMap<String, u32>,
    start_order: Vec<(String, String)>,
    pulls: HashMap<String, u32>,
    execs: Vec<(String, Vec<String>)>,
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:012x}", self.next_id)
    }

    /// Applies scripted exits whose time has come.
    fn advance(&mut self) {
        let now = SystemTime::now();
        for c in self.containers.values_mut() {
            if c.status.state == ContainerState::Running
                && let Some((at, code)) = c.exit_at
                && now >= at
            {
                c.status.state = ContainerState::Exited;
                c.status.exit_code = Some(code);
                c.status.finished_at = Some(at);
                c.exit_at = None;
            }
        }
    }
}

/// The fake runtime. Share it as `Arc<FakeRuntime>` for both traits.
#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

fn image_key(image: &str) -> String {
    normalize(image).unwrap_or_else(|_| image.to_string())
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.advance();
        s
    }

    /// Puts an image in the store, as if pulled or imported.
    pub fn add_image(&self, image: &str) {
        let key = image_key(image);
        let mut s = self.lock();
        let id = format!("sha256:{:064x}", s.images.len() + 1);
        s.images.insert(
            key.clone(),
            Image {
                id,
                repo_tags: vec![key.clone()],
                repo_digests: vec![format!("{key}@sha256:{:064x}", 7)],
                size: 1024,
            },
        );
    }

    /// Makes pulls of `image` fail with `message` until [`FakeRuntime::allow_pull`].
    pub fn fail_pull(&self, image: &str, message: &str) {
        self.lock().pull_errors.insert(image_key(image), message.to_string());
    }

    pub fn allow_pull(&self, image: &str) {
        self.lock().pull_errors.remove(&image_key(image));
    }

    /// What containers named `container` do once started (default: run forever).
    pub fn set_behaviour(&self, container: &str, behaviour: Behaviour) {
        self.lock().behaviours.insert(container.to_string(), behaviour);
    }

    /// Makes `start_container` fail for containers named `container` with `message` (empty clears it).
    pub fn fail_start(&self, container: &str, message: &str) {
        let mut s = self.lock();
        if message.is_empty() {
            s.start_errors.remove(container);
        } else {
            s.start_errors.insert(container.to_string(), message.to_string());
        }
    }

    /// The result of `exec_sync` of `cmd` in containers named `container`; an empty `cmd` matches every
    /// command without its own result. `Err` makes the call fail (like a time-out). Default: exit code 0.
    pub fn set_exec_result(&self, container: &str, cmd: &[&str], result: Result<ExecSyncResult, String>) {
        let cmd = cmd.iter().map(|c| c.to_string()).collect();
        self.lock().exec_results.insert((container.to_string(), cmd), result);
    }

    /// Makes a running container exit now with `code`, as if its process ended.
    pub fn exit_container(&self, container_id: &str, code: i32) {
        let mut s = self.lock();
        if let Some(c) = s.containers.get_mut(container_id)
            && c.status.state == ContainerState::Running
        {
            c.status.state = ContainerState::Exited;
            c.status.exit_code = Some(code);
            c.status.finished_at = Some(SystemTime::now());
            c.exit_at = None;
        }
    }

    /// How many times containers named `container` in the pod with `pod_uid` were started.
    pub fn start_count(&self, pod_uid: &str, container: &str) -> u32 {
        self.lock().starts.get(&format!("{pod_uid}/{container}")).copied().unwrap_or(0)
    }

    /// Every successful start so far, in order, as (pod uid, container name).
    pub fn start_order(&self) -> Vec<(String, String)> {
        self.lock().start_order.clone()
    }

    /// How many pulls of `image` were attempted.
    pub fn pull_count(&self, image: &str) -> u32 {
        self.lock().pulls.get(&image_key(image)).copied().unwrap_or(0)
    }

    /// Every `exec_sync` call so far, as (container name, command).
    pub fn execs(&self) -> Vec<(String, Vec<String>)> {
        self.lock().execs.clone()
    }

    /// Snapshots of every sandbox and container, for assertions.
    pub fn sandboxes(&self) -> Vec<PodSandboxStatus> {
        self.lock().sandboxes.values().map(|s| s.status.clone()).collect()
    }

    pub fn containers(&self) -> Vec<ContainerStatus> {
        self.lock().containers.values().map(|c| c.status.clone()).collect()
    }

    fn stop_locked(s: &mut State, id: &str) {
        if let Some(c) = s.containers.get_mut(id) {
            match c.status.state {
                ContainerState::Running => {
                    c.status.state = ContainerState::Exited;
                    c.status.exit_code = Some(137);
                    c.status.finished_at = Some(SystemTime::now());
                    c.exit_at = None;
                }
                ContainerState::Created => {
                    c.status.state = ContainerState::Exited;
                    c.status.exit_code = Some(0);
                }
                _ => {}
            }
        }
    }
}

fn not_found(what: &str, id: &str) -> RuntimeError {
    RuntimeError::NotFound(format!("{what} {id:?}"))
}

#[async_trait]
impl RuntimeService for FakeRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        Ok(RuntimeVersion { runtime_name: "fake".into(), runtime_version: "0.1.0".into() })
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let mut s = self.lock();
        let id = s.id("sb");
        s.next_ip += 1;
        let ip = if config.host_network {
            None
        } else {
            Some(IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 42, 0, 1)) + s.next_ip)))
        };
        let status = PodSandboxStatus {
            id: id.clone(),
            name: config.name.clone(),
            namespace: config.namespace.clone(),
            uid: config.uid.clone(),
            attempt: config.attempt,
            state: SandboxState::Ready,
            created_at: SystemTime::now(),
            ip,
            host_network: config.host_network,
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        };
        s.sandboxes.insert(id.clone(), Sandbox { status, log_directory: config.log_directory.clone() });
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let mut s = self.lock();
        if !s.sandboxes.contains_key(sandbox_id) {
            return Err(not_found("sandbox", sandbox_id));
        }
        let ids: Vec<String> =
            s.containers.values().filter(|c| c.status.sandbox_id == sandbox_id).map(|c| c.status.id.clone()).collect();
        for id in ids {
            Self::stop_locked(&mut s, &id);
        }
        if let Some(sb) = s.sandboxes.get_mut(sandbox_id) {
            sb.status.state = SandboxState::NotReady;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let mut s = self.lock();
        s.containers.retain(|_, c| c.status.sandbox_id != sandbox_id);
        s.sandboxes.remove(sandbox_id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus> {
        let s = self.lock();
        s.sandboxes.get(sandbox_id).map(|sb| sb.status.clone()).ok_or_else(|| not_found("sandbox", sandbox_id))
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>> {
        Ok(self.sandboxes())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        _sandbox: &PodSandboxConfig,
    ) -> Result<String> {
        let mut s = self.lock();
        // Logs would be written under the sandbox's log directory (the fake writes none).
        let log_directory = match s.sandboxes.get(sandbox_id) {
            Some(sb) if sb.status.state == SandboxState::Ready => sb.log_directory.clone(),
            Some(_) => return Err(RuntimeError::CreateContainer(format!("sandbox {sandbox_id:?} is not ready"))),
            None => return Err(not_found("sandbox", sandbox_id)),
        };
        let key = image_key(&config.image);
        let Some(image) = s.images.get(&key).cloned() else {
            return Err(RuntimeError::CreateContainer(format!("image {:?} is not present", config.image)));
        };
        let id = s.id("ct");
        let status = ContainerStatus {
            id: id.clone(),
            sandbox_id: sandbox_id.to_string(),
            name: config.name.clone(),
            attempt: config.attempt,
            state: ContainerState::Created,
            created_at: SystemTime::now(),
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: String::new(),
            message: String::new(),
            image: key,
            image_ref: image.repo_digests.first().cloned().unwrap_or(image.id),
            log_path: log_directory.join(&config.log_path),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        };
        s.containers.insert(id.clone(), Container { status, exit_at: None });
        Ok(id)
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        let mut s = self.lock();
        let Some(c) = s.containers.get(container_id) else {
            return Err(not_found("container", container_id));
        };
        if c.status.state != ContainerState::Created {
            return Err(RuntimeError::StartContainer(format!(
                "container {container_id:?} is not in the created state"
            )));
        }
        let name = c.status.name.clone();
        let uid = c.status.labels.get(labels::POD_UID).cloned().unwrap_or_default();
        if let Some(msg) = s.start_errors.get(&name).cloned() {
            let c = s.containers.get_mut(container_id).expect("checked above");
            c.status.state = ContainerState::Exited;
            c.status.exit_code = Some(128);
            c.status.reason = "StartError".into();
            c.status.message = msg.clone();
            return Err(RuntimeError::StartContainer(msg));
        }
        let behaviour = s.behaviours.get(&name).copied().unwrap_or(Behaviour::RunForever);
        *s.starts.entry(format!("{uid}/{name}")).or_default() += 1;
        s.start_order.push((uid.clone(), name.clone()));
        let now = SystemTime::now();
        let c = s.containers.get_mut(container_id).expect("checked above");
        c.status.state = ContainerState::Running;
        c.status.started_at = Some(now);
        if let Behaviour::ExitAfter(after, code) = behaviour {
            c.exit_at = Some((now + after, code));
        }
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, _timeout: Duration) -> Result<()> {
        let mut s = self.lock();
        if !s.containers.contains_key(container_id) {
            return Err(not_found("container", container_id));
        }
        Self::stop_locked(&mut s, container_id);
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        let mut s = self.lock();
        if let Some(c) = s.containers.get(container_id)
            && c.status.state == ContainerState::Running
        {
            return Err(RuntimeError::Other(format!("container {container_id:?} is running")));
        }
        s.containers.remove(container_id);
        Ok(())
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus> {
        let s = self.lock();
        s.containers.get(container_id).map(|c| c.status.clone()).ok_or_else(|| not_found("container", container_id))
    }

    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>> {
        let s = self.lock();
        Ok(s.containers
            .values()
            .map(|c| &c.status)
            .filter(|c| filter.sandbox_id.as_ref().is_none_or(|id| &c.sandbox_id == id))
            .filter(|c| filter.state.is_none_or(|st| c.state == st))
            .filter(|c| filter.labels.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
            .cloned()
            .collect())
    }

    async fn exec_sync(&self, container_id: &str, cmd: &[String], _timeout: Duration) -> Result<ExecSyncResult> {
        let mut s = self.lock();
        let Some(c) = s.containers.get(container_id) else {
            return Err(not_found("container", container_id));
        };
        if c.status.state != ContainerState::Running {
            return Err(RuntimeError::Other(format!("container {container_id:?} is not running")));
        }
        let name = c.status.name.clone();
        s.execs.push((name.clone(), cmd.to_vec()));
        let result = s
            .exec_results
            .get(&(name.clone(), cmd.to_vec()))
            .or_else(|| s.exec_results.get(&(name, Vec::new())))
            .cloned()
            .unwrap_or_else(|| Ok(ExecSyncResult::default()));
        result.map_err(RuntimeError::Other)
    }

    async fn exec(&self, container_id: &str, cmd: &[String], _options: &StreamOptions) -> Result<StreamSession> {
        let result = self.exec_sync(container_id, cmd, Duration::from_secs(60)).await?;
        let code = result.exit_code;
        Ok(StreamSession {
            stdin: Some(Box::pin(tokio::io::sink())),
            stdout: Some(Box::pin(std::io::Cursor::new(result.stdout))),
            stderr: Some(Box::pin(std::io::Cursor::new(result.stderr))),
            resize: None,
            exit: Box::pin(async move { Ok(code) }),
        })
    }

    async fn attach(&self, container_id: &str, _options: &StreamOptions) -> Result<StreamSession> {
        self.container_status(container_id).await?;
        Ok(StreamSession {
            stdin: Some(Box::pin(tokio::io::sink())),
            stdout: Some(Box::pin(tokio::io::empty())),
            stderr: Some(Box::pin(tokio::io::empty())),
            resize: None,
            exit: Box::pin(async { Ok(0) }),
        })
    }

    /// An echo connection: what is written comes back.
    async fn port_forward(&self, sandbox_id: &str, _port: u16) -> Result<Box<dyn Duplex>> {
        self.pod_sandbox_status(sandbox_id).await?;
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(theirs);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        Ok(Box::new(ours))
    }

    async fn container_stats(&self, container_id: &str) -> Result<ContainerStats> {
        self.container_status(container_id).await?;
        Ok(ContainerStats { id: container_id.to_string(), timestamp: Some(SystemTime::now()), ..Default::default() })
    }
}

#[async_trait]
impl ImageService for FakeRuntime {
    async fn pull_image(&self, image: &str, _auth: Option<&RegistryAuth>) -> Result<String> {
        let key = image_key(image);
        {
            let mut s = self.lock();
            *s.pulls.entry(key.clone()).or_default() += 1;
            if let Some(message) = s.pull_errors.get(&key) {
                return Err(RuntimeError::ImagePull { image: image.to_string(), message: message.clone() });
            }
        }
        self.add_image(image);
        Ok(self.lock().images[&key].id.clone())
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        Ok(self.lock().images.get(&image_key(image)).cloned())
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        Ok(self.lock().images.values().cloned().collect())
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        self.lock().images.remove(&image_key(image)).map(|_| ()).ok_or_else(|| not_found("image", image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scripted_exit_and_restart_count() {
        let rt = FakeRuntime::new();
        rt.set_behaviour("app", Behaviour::ExitAfter(Duration::ZERO, 3));
        let sb = rt.run_pod_sandbox(&PodSandboxConfig { uid: "u1".into(), ..Default::default() }).await.unwrap();
        assert!(
            rt.create_container(
                &sb,
                &ContainerConfig { image: "busybox".into(), ..Default::default() },
                &Default::default()
            )
            .await
            .is_err()
        );
        rt.pull_image("busybox", None).await.unwrap();
        let mut labels = BTreeMap::new();
        labels.insert(labels::POD_UID.to_string(), "u1".to_string());
        let cfg = ContainerConfig { name: "app".into(), image: "busybox".into(), labels, ..Default::default() };
        let id = rt.create_container(&sb, &cfg, &Default::default()).await.unwrap();
        rt.start_container(&id).await.unwrap();
        let st = rt.container_status(&id).await.unwrap();
        assert_eq!(st.state, ContainerState::Exited);
        assert_eq!(st.exit_code, Some(3));
        assert_eq!(rt.start_count("u1", "app"), 1);
        assert_eq!(st.image, "docker.io/library/busybox:latest");
    }

    #[tokio::test]
    async fn pull_failures_exec_results_and_sandbox_stop() {
        let rt = FakeRuntime::new();
        rt.fail_pull("nope:1", "manifest unknown");
        let err = rt.pull_image("nope:1", None).await.unwrap_err();
        assert!(err.to_string().contains("manifest unknown"), "{err}");
        assert_eq!(rt.pull_count("nope:1"), 1);
        rt.add_image("busybox");
        let sb = rt.run_pod_sandbox(&PodSandboxConfig::default()).await.unwrap();
        let id = rt
            .create_container(
                &sb,
                &ContainerConfig { name: "c".into(), image: "busybox".into(), ..Default::default() },
                &Default::default(),
            )
            .await
            .unwrap();
        rt.start_container(&id).await.unwrap();
        rt.set_exec_result("c", &["false"], Ok(ExecSyncResult { exit_code: 1, ..Default::default() }));
        let r = rt.exec_sync(&id, &["false".to_string()], Duration::from_secs(1)).await.unwrap();
        assert_eq!(r.exit_code, 1);
        let r = rt.exec_sync(&id, &["true".to_string()], Duration::from_secs(1)).await.unwrap();
        assert_eq!(r.exit_code, 0);
        rt.stop_pod_sandbox(&sb).await.unwrap();
        assert_eq!(rt.container_status(&id).await.unwrap().state, ContainerState::Exited);
        assert_eq!(rt.pod_sandbox_status(&sb).await.unwrap().state, SandboxState::NotReady);
        rt.remove_pod_sandbox(&sb).await.unwrap();
        assert!(rt.containers().is_empty() && rt.sandboxes().is_empty());
    }
}
