//! A runtime for the kubelet server tests with one pod (`default/web`, sandbox `sb-web`, uid `uid-web`) and
//! one container `app` (attempt 1, id `c-app-1`, log at `<log_dir>/app/1.log`): exec runs the command on the
//! host, port-forward connects to 127.0.0.1.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use skiff_runtime::cri::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct TestRuntime {
    pub log_dir: PathBuf,
    pub app_state: Mutex<ContainerState>,
    /// Terminal sizes received by exec sessions with a TTY.
    pub resizes: Arc<Mutex<Vec<TerminalSize>>>,
}

pub fn pod_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::POD_NAME.to_string(), "web".to_string()),
        (labels::POD_NAMESPACE.to_string(), "default".to_string()),
        (labels::POD_UID.to_string(), "uid-web".to_string()),
    ])
}

impl TestRuntime {
    pub fn new(log_dir: PathBuf) -> Self {
        TestRuntime { log_dir, app_state: Mutex::new(ContainerState::Running), resizes: Arc::default() }
    }

    fn sandbox(&self) -> PodSandboxStatus {
        PodSandboxStatus {
            id: "sb-web".into(),
            name: "web".into(),
            namespace: "default".into(),
            uid: "uid-web".into(),
            attempt: 0,
            state: SandboxState::Ready,
            created_at: SystemTime::now(),
            ip: None,
            host_network: false,
            labels: pod_labels(),
            annotations: BTreeMap::new(),
        }
    }

    fn app(&self) -> ContainerStatus {
        let mut labels = pod_labels();
        labels.insert(labels::CONTAINER_NAME.into(), "app".into());
        let state = *self.app_state.lock().unwrap();
        ContainerStatus {
            id: "c-app-1".into(),
            sandbox_id: "sb-web".into(),
            name: "app".into(),
            attempt: 1,
            state,
            created_at: SystemTime::now(),
            started_at: Some(SystemTime::now()),
            finished_at: None,
            exit_code: None,
            reason: String::new(),
            message: String::new(),
            image: "busybox".into(),
            image_ref: "busybox@sha256:00".into(),
            log_path: self.log_dir.join("app").join("1.log"),
            labels,
            annotations: BTreeMap::new(),
        }
    }
}

fn unused<T>() -> Result<T> {
    Err(RuntimeError::Other("not used by the kubelet server".into()))
}

#[async_trait]
impl RuntimeService for TestRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        Ok(RuntimeVersion::default())
    }
    async fn run_pod_sandbox(&self, _: &PodSandboxConfig) -> Result<String> {
        unused()
    }
    async fn stop_pod_sandbox(&self, _: &str) -> Result<()> {
        unused()
    }
    async fn remove_pod_sandbox(&self, _: &str) -> Result<()> {
        unused()
    }
    async fn pod_sandbox_status(&self, _: &str) -> Result<PodSandboxStatus> {
        Ok(self.sandbox())
    }
    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>> {
        Ok(vec![self.sandbox()])
    }
    async fn create_container(&self, _: &str, _: &ContainerConfig, _: &PodSandboxConfig) -> Result<String> {
        unused()
    }
    async fn start_container(&self, _: &str) -> Result<()> {
        unused()
    }
    async fn stop_container(&self, _: &str, _: Duration) -> Result<()> {
        unused()
    }
    async fn remove_container(&self, _: &str) -> Result<()> {
        unused()
    }
    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        if id == "c-app-1" { Ok(self.app()) } else { Err(RuntimeError::NotFound(id.into())) }
    }
    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>> {
        let app = self.app();
        let ok = filter.labels.iter().all(|(k, v)| app.labels.get(k) == Some(v))
            && filter.state.is_none_or(|s| s == app.state)
            && filter.sandbox_id.as_ref().is_none_or(|s| *s == app.sandbox_id);
        Ok(if ok { vec![app] } else { vec![] })
    }
    async fn exec_sync(&self, _: &str, _: &[String], _: Duration) -> Result<ExecSyncResult> {
        unused()
    }
    async fn exec(&self, _: &str, cmd: &[String], o: &StreamOptions) -> Result<StreamSession> {
        let piped = |on: bool| if on { std::process::Stdio::piped() } else { std::process::Stdio::null() };
        let mut child = tokio::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(piped(o.stdin))
            .stdout(piped(o.stdout))
            .stderr(piped(o.stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RuntimeError::Other(format!("exec {cmd:?}: {e}")))?;
        let stdin = child.stdin.take().map(|w| Box::pin(w) as BoxWriter);
        let stdout = child.stdout.take().map(|r| Box::pin(r) as BoxReader);
        let stderr = child.stderr.take().map(|r| Box::pin(r) as BoxReader);
        let exit = Box::pin(async move {
            let status = child.wait().await.map_err(|e| RuntimeError::Other(e.to_string()))?;
            Ok(status.code().unwrap_or(-1))
        });
        let resize = o.tty.then(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<TerminalSize>(4);
            let seen = self.resizes.clone();
            tokio::spawn(async move {
                while let Some(size) = rx.recv().await {
                    seen.lock().unwrap().push(size);
                }
            });
            tx
        });
        Ok(StreamSession { stdin, stdout, stderr, resize, exit })
    }
    /// The "main process" attached to prints `attached`, then echoes stdin when stdin is attached.
    async fn attach(&self, id: &str, o: &StreamOptions) -> Result<StreamSession> {
        let script = if o.stdin { "echo attached; exec cat" } else { "echo attached" };
        self.exec(id, &["sh".to_string(), "-c".to_string(), script.to_string()], o).await
    }
    async fn port_forward(&self, _: &str, port: u16) -> Result<Box<dyn Duplex>> {
        let s = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| RuntimeError::Other(format!("connect to port {port}: {e}")))?;
        Ok(Box::new(s))
    }
    async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        Ok(ContainerStats {
            id: id.into(),
            timestamp: Some(SystemTime::now()),
            cpu_usage_nanos: 5_000_000,
            memory_usage_bytes: 4 << 20,
            memory_working_set_bytes: 3 << 20,
            memory_rss_bytes: 2 << 20,
            writable_layer_bytes: 4096,
        })
    }
}

/// A server in the "pod" on 127.0.0.1 (where port-forward connects): greets with `hello from pod\n`, then
/// echoes what it reads until EOF. Returns its port.
pub async fn pod_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(b"hello from pod\n").await;
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}
