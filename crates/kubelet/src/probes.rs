//! Liveness, readiness and startup probes (upstream's `prober`): one worker task per running container and
//! probe, exec (through the runtime), httpGet (HTTP and HTTPS without verification, as upstream),
//! tcpSocket and gRPC health (`grpc.health.v1`), with the timing and threshold fields. Results wake the
//! pod's worker, which kills a container whose liveness or startup probe failed and reports readiness in
//! the pod status.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, HTTPHeader, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_runtime::cri::RuntimeService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::kuberuntime::events::{Recorder, WARNING};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    Failure,
    Unknown,
}

struct ContainerProbes {
    pod_uid: String,
    results: HashMap<ProbeKind, ProbeResult>,
    cancel: CancellationToken,
}

/// Probe workers and their latest results, by container id.
pub struct ProbeManager {
    runtime: Arc<dyn RuntimeService>,
    recorder: Arc<Recorder>,
    containers: Mutex<HashMap<String, ContainerProbes>>,
}

fn probe_of(container: &Container, kind: ProbeKind) -> Option<&Probe> {
    match kind {
        ProbeKind::Liveness => container.liveness_probe.as_ref(),
        ProbeKind::Readiness => container.readiness_probe.as_ref(),
        ProbeKind::Startup => container.startup_probe.as_ref(),
    }
}

/// Resolves a probe or hook port: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port number: {p}")),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name))
        }
    }
}

/// Accepts any server certificate: probes and hooks over HTTPS skip verification, as upstream's
/// (`InsecureSkipVerify`).
#[derive(Debug)]
struct SkipVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection that does not verify the server (probe and hook HTTPS).
async fn tls_connect(
    stream: tokio::net::TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SkipVerify(provider)))
        .with_no_client_auth();
    let name =
        rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|e| format!("invalid host {host:?}: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream).await.map_err(|e| e.to_string())
}

/// Sends a GET on `stream` and reads the status line.
async fn get_over<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    host_port: &str,
    path: &str,
    headers: &[HTTPHeader],
) -> Result<u16, String> {
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    let mut has_host = false;
    let mut has_agent = false;
    let mut has_accept = false;
    for h in headers {
        match h.name.to_ascii_lowercase().as_str() {
            "host" => has_host = true,
            "user-agent" => has_agent = true,
            "accept" => has_accept = true,
            _ => {}
        }
        req.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    if !has_host {
        req.push_str(&format!("Host: {host_port}\r\n"));
    }
    if !has_agent {
        req.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !has_accept {
        req.push_str("Accept: */*\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let line = line.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().and_then(|c| c.parse::<u16>().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => Err(format!("malformed HTTP response {line:?}")),
    }
}

/// An HTTP/1.1 GET (over TLS when `https`, without verifying the server) with a deadline; returns the
/// status code, which is all a kubelet probe or hook needs.
pub async fn http_get(
    https: bool,
    host: &str,
    port: u16,
    path: &str,
    headers: &[HTTPHeader],
    timeout: Duration,
) -> Result<u16, String> {
    let host_port = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let url = format!("{}://{host_port}{path}", if https { "https" } else { "http" });
    let fut = async {
        let stream = tokio::net::TcpStream::connect(&host_port)
            .await
            .map_err(|e| format!("Get {url:?}: dial tcp {host_port}: {e}"))?;
        let result = if https {
            let tls = tls_connect(stream, host).await.map_err(|e| format!("Get {url:?}: {e}"))?;
            get_over(tls, &host_port, &path, headers).await
        } else {
            get_over(stream, &host_port, &path, headers).await
        };
        result.map_err(|e| format!("Get {url:?}: {e}"))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => {
            Err(format!("Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))
        }
    }
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus` names.
fn serving_status_name(status: u64) -> &'static str {
    match status {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNRECOGNIZED",
    }
}

/// Reads one protobuf varint.
fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// `grpc.health.v1.Health/Check` over HTTP/2 without TLS, as upstream's gRPC probe: returns the serving
/// status (1 = SERVING).
pub async fn grpc_health_check(host: &str, port: u16, service: &str, timeout: Duration) -> Result<u64, String> {
    use http_body_util::BodyExt;
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let fut = async {
        let stream = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("timeout: failed to connect service {addr:?} within {}s: {e}", timeout.as_secs()))?;
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .map_err(|e| format!("failed to connect service {addr:?}: {e}"))?;
        tokio::spawn(conn);
        let mut msg = Vec::new();
        if !service.is_empty() {
            msg.push(0x0a);
            let mut len = service.len() as u64;
            loop {
                let b = (len & 0x7f) as u8;
                len >>= 7;
                if len == 0 {
                    msg.push(b);
                    break;
                }
                msg.push(b | 0x80);
            }
            msg.extend_from_slice(service.as_bytes());
        }
        let mut body = vec![0u8];
        body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        body.extend_from_slice(&msg);
        let req = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", "kube-probe/1.33")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| format!("health rpc failed: {e}"))?;
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.map_err(|e| format!("health rpc failed: {e}"))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let data = collected.to_bytes();
        let grpc_status = trailers
            .get("grpc-status")
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if grpc_status != "0" {
            let message = trailers
                .get("grpc-message")
                .or_else(|| parts.headers.get("grpc-message"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            return Err(format!("health rpc did not complete; code = {grpc_status}, desc = {message}"));
        }
        // One length-prefixed message: field 1 (varint) is the status; absent means UNKNOWN.
        let msg = data.get(5..).unwrap_or_default();
        let mut i = 0;
        let mut status = 0;
        while i < msg.len() {
            let (tag, n) = read_varint(&msg[i..]).ok_or("malformed health response")?;
            i += n;
            match tag & 7 {
                0 => {
                    let (v, n) = read_varint(&msg[i..]).ok_or("malformed health response")?;
                    i += n;
                    if tag >> 3 == 1 {
                        status = v;
                    }
                }
                2 => {
                    let (len, n) = read_varint(&msg[i..]).ok_or("malformed health response")?;
                    i += n + len as usize;
                }
                _ => return Err("malformed health response".into()),
            }
        }
        Ok(status)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(format!("timeout: health rpc did not complete within {}s", timeout.as_secs())))
}

/// Runs one probe: the result and its output (for the event).
async fn run_probe(
    runtime: &dyn RuntimeService,
    probe: &Probe,
    container: &Container,
    container_id: &str,
    pod_ip: Option<IpAddr>,
) -> (ProbeResult, String) {
    let timeout = Duration::from_secs(probe.timeout_seconds.filter(|t| *t > 0).unwrap_or(1) as u64);
    if let Some(exec) = &probe.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        return match runtime.exec_sync(container_id, &cmd, timeout).await {
            Ok(r) => {
                let mut out = String::from_utf8_lossy(&r.stdout).to_string();
                out.push_str(&String::from_utf8_lossy(&r.stderr));
                if r.exit_code == 0 {
                    (ProbeResult::Success, out)
                } else if out.trim().is_empty() {
                    (ProbeResult::Failure, format!("command {cmd:?} exited with {}", r.exit_code))
                } else {
                    (ProbeResult::Failure, out.trim_end().to_string())
                }
            }
            Err(e) => (ProbeResult::Failure, e.to_string()),
        };
    }
    if let Some(http) = &probe.http_get {
        let https = http.scheme.as_deref() == Some("HTTPS");
        let port = match resolve_port(&http.port, container) {
            Ok(p) => p,
            Err(e) => return (ProbeResult::Failure, e),
        };
        let host = http.host.clone().filter(|h| !h.is_empty()).or_else(|| pod_ip.map(|ip| ip.to_string()));
        let Some(host) = host else { return (ProbeResult::Failure, "the pod has no IP address yet".into()) };
        let headers = http.http_headers.clone().unwrap_or_default();
        return match http_get(https, &host, port, http.path.as_deref().unwrap_or("/"), &headers, timeout).await {
            Ok(code) if (200..400).contains(&code) => (ProbeResult::Success, String::new()),
            Ok(code) => (ProbeResult::Failure, format!("HTTP probe failed with statuscode: {code}")),
            Err(e) => (ProbeResult::Failure, e),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = match resolve_port(&tcp.port, container) {
            Ok(p) => p,
            Err(e) => return (ProbeResult::Failure, e),
        };
        let host = tcp.host.clone().filter(|h| !h.is_empty()).or_else(|| pod_ip.map(|ip| ip.to_string()));
        let Some(host) = host else { return (ProbeResult::Failure, "the pod has no IP address yet".into()) };
        let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
            Ok(Ok(_)) => (ProbeResult::Success, String::new()),
            Ok(Err(e)) => (ProbeResult::Failure, format!("dial tcp {addr}: connect: {e}")),
            Err(_) => (ProbeResult::Failure, format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if let Some(grpc) = &probe.grpc {
        let Ok(port) = u16::try_from(grpc.port) else {
            return (ProbeResult::Failure, format!("invalid port number: {}", grpc.port));
        };
        let Some(ip) = pod_ip else { return (ProbeResult::Failure, "the pod has no IP address yet".into()) };
        let service = grpc.service.clone().unwrap_or_default();
        return match grpc_health_check(&ip.to_string(), port, &service, timeout).await {
            Ok(1) => (ProbeResult::Success, String::new()),
            Ok(status) => {
                (ProbeResult::Failure, format!("service unhealthy (responded with {:?})", serving_status_name(status)))
            }
            Err(e) => (ProbeResult::Failure, e),
        };
    }
    (ProbeResult::Failure, "the probe has no handler".into())
}

impl ProbeManager {
    pub fn new(runtime: Arc<dyn RuntimeService>, recorder: Arc<Recorder>) -> Self {
        ProbeManager { runtime, recorder, containers: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ContainerProbes>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn result(&self, container_id: &str, kind: ProbeKind) -> Option<ProbeResult> {
        self.lock().get(container_id).and_then(|c| c.results.get(&kind).copied())
    }

    /// Starts the probe workers of a running container once (no-op if it has them or has no probes).
    #[allow(clippy::too_many_arguments)]
    pub fn ensure(
        self: &Arc<Self>,
        pod: &Arc<Pod>,
        container: &Container,
        container_id: &str,
        started_at: SystemTime,
        pod_ip: Option<IpAddr>,
        notify: &Arc<Notify>,
        shutdown: &CancellationToken,
    ) {
        let kinds: Vec<ProbeKind> = [ProbeKind::Startup, ProbeKind::Liveness, ProbeKind::Readiness]
            .into_iter()
            .filter(|k| probe_of(container, *k).is_some())
            .collect();
        if kinds.is_empty() {
            return;
        }
        let cancel = shutdown.child_token();
        {
            let mut containers = self.lock();
            if containers.contains_key(container_id) {
                return;
            }
            let mut results = HashMap::new();
            for k in &kinds {
                let initial = match k {
                    ProbeKind::Readiness => ProbeResult::Failure,
                    ProbeKind::Startup => ProbeResult::Unknown,
                    ProbeKind::Liveness => ProbeResult::Success,
                };
                results.insert(*k, initial);
            }
            let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
            containers.insert(container_id.to_string(), ContainerProbes { pod_uid, results, cancel: cancel.clone() });
        }
        for kind in kinds {
            let this = self.clone();
            let pod = pod.clone();
            let container = container.clone();
            let id = container_id.to_string();
            let notify = notify.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = this.worker(kind, pod, container, id, started_at, pod_ip, notify) => {}
                }
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn worker(
        &self,
        kind: ProbeKind,
        pod: Arc<Pod>,
        container: Container,
        container_id: String,
        started_at: SystemTime,
        pod_ip: Option<IpAddr>,
        notify: Arc<Notify>,
    ) {
        let Some(probe) = probe_of(&container, kind).cloned() else { return };
        let period = Duration::from_secs(probe.period_seconds.filter(|p| *p > 0).unwrap_or(10) as u64);
        let success_threshold = probe.success_threshold.filter(|t| *t > 0).unwrap_or(1);
        let failure_threshold = probe.failure_threshold.filter(|t| *t > 0).unwrap_or(3);
        let initial_delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        if let Ok(wait) = (started_at + initial_delay).duration_since(SystemTime::now()) {
            tokio::time::sleep(wait).await;
        }
        let (mut successes, mut failures) = (0, 0);
        loop {
            if kind != ProbeKind::Startup && !self.started(&container_id, &container) {
                tokio::time::sleep(period).await;
                continue;
            }
            let (result, output) = run_probe(self.runtime.as_ref(), &probe, &container, &container_id, pod_ip).await;
            if !self.lock().contains_key(&container_id) {
                return;
            }
            if result == ProbeResult::Success {
                successes += 1;
                failures = 0;
            } else {
                failures += 1;
                successes = 0;
                self.recorder
                    .event(
                        &pod,
                        Some(&container.name),
                        WARNING,
                        "Unhealthy",
                        format!("{} probe failed: {output}", kind.name()),
                    )
                    .await;
            }
            let new = if successes >= success_threshold {
                Some(ProbeResult::Success)
            } else if failures >= failure_threshold {
                Some(ProbeResult::Failure)
            } else {
                None
            };
            if let Some(new) = new {
                let changed = {
                    let mut containers = self.lock();
                    match containers.get_mut(&container_id) {
                        Some(c) => c.results.insert(kind, new) != Some(new),
                        None => return,
                    }
                };
                if changed {
                    notify.notify_one();
                }
                let done = match kind {
                    ProbeKind::Startup => new == ProbeResult::Success || new == ProbeResult::Failure,
                    ProbeKind::Liveness => new == ProbeResult::Failure,
                    ProbeKind::Readiness => false,
                };
                if done {
                    return;
                }
            }
            tokio::time::sleep(period).await;
        }
    }

    /// Whether the container counts as started: it has no startup probe, or that probe succeeded.
    pub fn started(&self, container_id: &str, container: &Container) -> bool {
        container.startup_probe.is_none() || self.result(container_id, ProbeKind::Startup) == Some(ProbeResult::Success)
    }

    /// Whether a running container is ready: started, and its readiness probe (if any) succeeded.
    pub fn ready(&self, container_id: &str, container: &Container) -> bool {
        self.started(container_id, container)
            && (container.readiness_probe.is_none()
                || self.result(container_id, ProbeKind::Readiness) == Some(ProbeResult::Success))
    }

    /// The probe that failed so that the container must be restarted (liveness or startup), if any.
    pub fn failed(&self, container_id: &str) -> Option<ProbeKind> {
        [ProbeKind::Liveness, ProbeKind::Startup]
            .into_iter()
            .find(|k| self.result(container_id, *k) == Some(ProbeResult::Failure))
    }

    /// Stops the workers of a container that is no longer running.
    pub fn remove(&self, container_id: &str) {
        if let Some(c) = self.lock().remove(container_id) {
            c.cancel.cancel();
        }
    }

    /// Stops the workers of `pod_uid`'s containers that are not in `keep`.
    pub fn retain_pod(&self, pod_uid: &str, keep: &[String]) {
        self.lock().retain(|id, c| {
            let k = c.pod_uid != pod_uid || keep.contains(id);
            if !k {
                c.cancel.cancel();
            }
            k
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_get_reads_the_status_code() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for code in [200u16, 503] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /healthz HTTP/1.1\r\n"));
                s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes()).await.unwrap();
            }
        });
        let t = Duration::from_secs(5);
        assert_eq!(http_get(false, "127.0.0.1", port, "/healthz", &[], t).await, Ok(200));
        assert_eq!(http_get(false, "127.0.0.1", port, "healthz", &[], t).await, Ok(503));
        server.await.unwrap();
        let closed = http_get(false, "127.0.0.1", port, "/", &[], t).await.unwrap_err();
        assert!(closed.contains("dial tcp"), "{closed}");
    }

    #[tokio::test]
    async fn https_get_skips_certificate_verification() {
        let dir = tempfile::tempdir().unwrap();
        let ca = skiff_pki::Ca::load_or_create(dir.path()).unwrap();
        let (certs, key) =
            ca.issue_serving(dir.path(), "probe", &["127.0.0.1".to_string()]).unwrap().load_der().unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut s = acceptor.accept(s).await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /ready HTTP/1.1\r\n"));
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            s.shutdown().await.unwrap();
        });
        assert_eq!(http_get(true, "127.0.0.1", port, "/ready", &[], Duration::from_secs(5)).await, Ok(204));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn grpc_health_check_reads_the_serving_status() {
        use http_body_util::{BodyExt, StreamBody};
        use hyper::body::Frame;
        use std::convert::Infallible;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                        assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let service = String::from_utf8_lossy(body.get(7..).unwrap_or_default()).to_string();
                        let status: u8 = if service == "sick" { 2 } else { 1 };
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let frames = vec![
                            Ok::<_, Infallible>(Frame::data(bytes::Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(StreamBody::new(futures::stream::iter(frames)))
                                .unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        let t = Duration::from_secs(5);
        assert_eq!(grpc_health_check("127.0.0.1", port, "", t).await, Ok(1));
        assert_eq!(grpc_health_check("127.0.0.1", port, "sick", t).await, Ok(2));
        server.abort();
        let _ = server.await;
        let err = grpc_health_check("127.0.0.1", port, "", t).await.unwrap_err();
        assert!(err.contains("failed to connect"), "{err}");
    }

    #[test]
    fn named_ports_resolve() {
        let c = Container {
            name: "web".into(),
            ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(resolve_port(&IntOrString::Int(81), &c), Ok(81));
        assert!(resolve_port(&IntOrString::String("nope".into()), &c).is_err());
    }
}
