//! The real kubectl (the machine's `/usr/bin/kubectl`, which runs kubectl 1.33 against Skiff) against the
//! API server and this kubelet server over HTTPS, with the test runtime of `server_support` (exec runs on the
//! host, port-forward reaches 127.0.0.1): `kubectl logs`, `kubectl exec` over WebSocket and over SPDY, and
//! `kubectl port-forward` over WebSocket-tunnelled SPDY and plain SPDY.

mod server_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use server_support::{TestRuntime, pod_server};
use skiff_apiserver::{Config, KubeletClientConfig, UserInfo};
use skiff_runtime::cri::ContainerState;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Cluster {
    dir: tempfile::TempDir,
    runtime: Arc<TestRuntime>,
    kubeconfig: PathBuf,
    shutdown: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn call(router: &axum::Router, method: &str, uri: &str, content_type: &str, body: Value) -> (u16, String) {
    let req = Request::builder().method(method).uri(uri).header("content-type", content_type).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn write_cri(path: &Path, lines: &[&str]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

async fn cluster() -> Cluster {
    assert!(Path::new(KUBECTL).exists(), "these tests need kubectl at {KUBECTL} (Google Cloud SDK's kubectl dispatcher)");
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let ca = skiff_pki::Ca::load_or_create(&pki_dir).unwrap();
    let ips = vec!["127.0.0.1".to_string()];
    let api_serving = ca.issue_serving(&pki_dir, "apiserver", &ips).unwrap();
    let kubelet_serving = ca.issue_serving(&pki_dir, "kubelet", &ips).unwrap();
    let kubelet_client = ca.issue_client(&pki_dir, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", &[]).unwrap();
    let admin = ca.issue_client(&pki_dir, "admin", "system:admin", &["system:masters".to_string()]).unwrap();
    let shutdown = CancellationToken::new();

    // The kubelet server.
    let log_dir = dir.path().join("logs");
    write_cri(&log_dir.join("app").join("0.log"), &["2026-01-01T00:00:00Z stdout F the previous run"]);
    write_cri(
        &log_dir.join("app").join("1.log"),
        &["2026-01-01T00:01:00Z stdout F one", "2026-01-01T00:02:00Z stdout P tw", "2026-01-01T00:02:01Z stdout F o"],
    );
    let runtime = Arc::new(TestRuntime::new(log_dir));
    let kubelet_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kubelet_port = kubelet_listener.local_addr().unwrap().port();
    let config = skiff_kubelet::server::ServerConfig {
        addr: kubelet_listener.local_addr().unwrap(),
        tls_cert: kubelet_serving.cert.clone(),
        tls_key: kubelet_serving.key.clone(),
        client_ca: ca.paths().cert.clone(),
        node_name: "n1".into(),
    };
    let deps = skiff_kubelet::server::ServerDeps { runtime: runtime.clone() };
    tokio::spawn(skiff_kubelet::server::run_on(kubelet_listener, config, deps, shutdown.clone()));

    // The API server, with the kubelet client certificate.
    let client = KubeletClientConfig {
        ca_pem: ca.cert_pem().to_string(),
        cert_pem: kubelet_client.read_cert_pem().unwrap(),
        key_pem: kubelet_client.read_key_pem().unwrap(),
    };
    let config = Config { kubelet_client: Some(client), ..Config::default() };
    let (server, _registry) = skiff_apiserver::testing::api_server(config, shutdown.clone()).await;
    let tls = skiff_apiserver::tls::server_config(&api_serving.cert, &api_serving.key, &ca.paths().cert).unwrap();
    let api_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_port = api_listener.local_addr().unwrap().port();
    tokio::spawn(skiff_apiserver::tls::serve(api_listener, tls, skiff_apiserver::router(server.clone()), shutdown.clone()));

    // The node and a running pod on it.
    let router = skiff_apiserver::with_identity(skiff_apiserver::router(server), UserInfo::new("system:admin", &["system:masters"]));
    let (code, body) = call(&router, "POST", "/api/v1/nodes", "application/json", json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})).await;
    assert_eq!(code, 201, "{body}");
    let node_status = json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}}});
    let (code, body) = call(&router, "PATCH", "/api/v1/nodes/n1/status", "application/merge-patch+json", node_status).await;
    assert_eq!(code, 200, "{body}");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                     "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "busybox"}]}});
    let (code, body) = call(&router, "POST", "/api/v1/namespaces/default/pods", "application/json", pod).await;
    assert_eq!(code, 201, "{body}");
    let status = json!({"status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": true, "restartCount": 1, "image": "busybox", "imageID": "",
        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}, "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": null, "finishedAt": null}}}]}});
    let (code, body) = call(&router, "PATCH", "/api/v1/namespaces/default/pods/web/status", "application/merge-patch+json", status).await;
    assert_eq!(code, 200, "{body}");

    let kubeconfig = dir.path().join("kubeconfig");
    skiff_pki::write_kubeconfig(
        &kubeconfig,
        &format!("https://127.0.0.1:{api_port}"),
        ca.cert_pem(),
        &admin.read_cert_pem().unwrap(),
        &admin.read_key_pem().unwrap(),
    )
    .unwrap();
    Cluster { dir, runtime, kubeconfig, shutdown }
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(KUBECTL);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).arg("--cache-dir").arg(self.dir.path().join("cache")).args(args);
        cmd.env("HOME", self.dir.path()).kill_on_drop(true);
        cmd
    }

    /// Runs kubectl to the end: (exit code, stdout, stderr).
    async fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> (i32, String, String) {
        let mut cmd = self.kubectl(args);
        cmd.envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().expect("kubectl starts");
        if let Some(data) = stdin {
            let mut w = child.stdin.take().unwrap();
            w.write_all(data).await.unwrap();
            drop(w);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("kubectl finishes in time").unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test]
async fn kubectl_logs() {
    let c = cluster().await;
    assert_eq!(c.run(&["logs", "web"], &[], None).await, (0, "one\ntwo\n".into(), String::new()));
    assert_eq!(c.run(&["logs", "web", "--tail=1", "--timestamps"], &[], None).await.1, "2026-01-01T00:02:00Z two\n");
    assert_eq!(c.run(&["logs", "web", "--previous"], &[], None).await.1, "the previous run\n");
    let (code, _, err) = c.run(&["logs", "web", "-c", "nope"], &[], None).await;
    assert_eq!(code, 1);
    assert!(err.contains("container nope is not valid for pod web"), "{err}");
}

#[tokio::test]
async fn kubectl_logs_follow_streams_until_the_container_exits() {
    let c = cluster().await;
    let mut cmd = c.kubectl(&["logs", "-f", "web"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
    let mut child = cmd.spawn().expect("kubectl starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.expect("a line in time").unwrap();
    assert_eq!(next().await.as_deref(), Some("one"));
    assert_eq!(next().await.as_deref(), Some("two"));
    let log = c.runtime.log_dir.join("app").join("1.log");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("2026-01-01T00:03:00Z stdout F three\n");
    std::fs::write(&log, text).unwrap();
    assert_eq!(next().await.as_deref(), Some("three"));
    *c.runtime.app_state.lock().unwrap() = ContainerState::Exited;
    assert_eq!(next().await, None, "the stream ends once the container has exited");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("kubectl exits").unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn kubectl_attach() {
    let c = cluster().await;
    let (code, out, err) = c.run(&["attach", "web"], &[], None).await;
    assert_eq!((code, out.as_str()), (0, "attached\n"), "{err}");
    let (code, out, err) = c.run(&["attach", "-i", "web"], &[], Some(b"typed\n")).await;
    assert_eq!((code, out.as_str()), (0, "attached\ntyped\n"), "{err}");
}

#[tokio::test]
async fn kubectl_exec_over_websocket_and_spdy() {
    let c = cluster().await;
    let (code, out, err) = c.run(&["exec", "web", "--", "sh", "-c", "echo hi; echo oops >&2; exit 3"], &[], None).await;
    assert_eq!((code, out.as_str()), (3, "hi\n"), "{err}");
    assert!(err.contains("oops"), "{err}");
    assert!(err.contains("command terminated with exit code 3"), "{err}");
    let (code, out, err) = c.run(&["exec", "-i", "web", "--", "cat"], &[], Some(b"piped\nstdin\n")).await;
    assert_eq!((code, out.as_str()), (0, "piped\nstdin\n"), "{err}");
    // The SPDY/3.1 fallback.
    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let (code, out, err) = c.run(&["exec", "web", "--", "sh", "-c", "echo over spdy; exit 4"], &spdy, None).await;
    assert_eq!((code, out.as_str()), (4, "over spdy\n"), "{err}");
    let (code, out, err) = c.run(&["exec", "-i", "web", "--", "cat"], &spdy, Some(b"spdy stdin\n")).await;
    assert_eq!((code, out.as_str()), (0, "spdy stdin\n"), "{err}");
}

async fn port_forward(c: &Cluster, env: &[(&str, &str)]) {
    let pod_port = pod_server().await;
    let local = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let mut cmd = c.kubectl(&["port-forward", "--address", "127.0.0.1", "pod/web", &format!("{local}:{pod_port}")]);
    cmd.envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
    let mut child = cmd.spawn().expect("kubectl starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.expect("kubectl port-forward starts").unwrap();
    assert_eq!(first.as_deref(), Some(format!("Forwarding from 127.0.0.1:{local} -> {pod_port}").as_str()));
    // Two connections one after the other, the second with a large payload.
    for size in [4usize, 300 * 1024] {
        let mut s = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
        let mut greeting = [0u8; 15];
        tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut greeting)).await.expect("the greeting in time").unwrap();
        assert_eq!(&greeting, b"hello from pod\n");
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let (mut rd, mut wr) = s.into_split();
        let send = payload.clone();
        let writer = tokio::spawn(async move { wr.write_all(&send).await.unwrap() });
        let mut echoed = vec![0u8; size];
        tokio::time::timeout(Duration::from_secs(30), rd.read_exact(&mut echoed)).await.expect("the echo in time").unwrap();
        writer.await.unwrap();
        assert!(echoed == payload, "the echo of {size} bytes differs");
    }
    child.kill().await.unwrap();
}

#[tokio::test]
async fn kubectl_port_forward_over_websocket_tunnelled_spdy() {
    let c = cluster().await;
    port_forward(&c, &[]).await;
}

#[tokio::test]
async fn kubectl_port_forward_over_spdy() {
    let c = cluster().await;
    port_forward(&c, &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")]).await;
}
