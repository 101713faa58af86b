//! The kubelet API server over real HTTPS with client certificates from a test CA, backed by a small
//! in-test runtime whose "containers" are host processes: container logs from CRI-format files (tail,
//! timestamps, previous, limitBytes, sinceTime, follow), authorization, stats, exec over WebSocket
//! (v5 and v4) and SPDY/3.1, port-forward over SPDY/3.1 directly and tunnelled in WebSocket.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use skiff_kubelet::server::spdy::frame::{Frame, FrameReader, FrameWriter};
use skiff_kubelet::server::{self, ServerConfig, ServerDeps};
use skiff_runtime::cri::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

mod server_support;
use server_support::{TestRuntime, pod_server};

// ---------------------------------------------------------------------------------------------------
// A running kubelet server and TLS clients.

struct Harness {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    runtime: Arc<TestRuntime>,
    ca: Arc<rustls::RootCertStore>,
    pki: PathBuf,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn write_cri(path: &Path, lines: &[&str]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut text = String::new();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn append_cri(path: &Path, lines: &[&str]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let ca = skiff_pki::Ca::load_or_create(&pki).unwrap();
    let serving = ca.issue_serving(&pki, "kubelet", &["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    ca.issue_client(&pki, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", &[]).unwrap();
    ca.issue_client(&pki, "admin", "system:admin", &["system:masters".to_string()]).unwrap();
    ca.issue_client(&pki, "node", "system:node:other", &["system:nodes".to_string()]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();

    let log_dir = dir.path().join("logs");
    write_cri(
        &log_dir.join("app").join("0.log"),
        &["2026-01-01T00:00:00.000000001Z stdout F previous run", "2026-01-01T00:00:01Z stderr F it crashed"],
    );
    write_cri(
        &log_dir.join("app").join("1.log"),
        &[
            "2026-01-01T00:01:00.5Z stdout F one",
            "2026-01-01T00:02:00.5Z stdout P tw",
            "2026-01-01T00:02:00.6Z stderr F warning",
            "2026-01-01T00:02:00.7Z stdout F o",
            "2026-01-01T00:03:00.5Z stdout F three",
        ],
    );
    let runtime = Arc::new(TestRuntime::new(log_dir));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig {
        addr,
        tls_cert: serving.cert.clone(),
        tls_key: serving.key.clone(),
        client_ca: ca.paths().cert.clone(),
        node_name: "node-1".into(),
    };
    let shutdown = CancellationToken::new();
    let deps = ServerDeps { runtime: runtime.clone() };
    let token = shutdown.clone();
    tokio::spawn(async move { server::run_on(listener, config, deps, token).await.expect("the kubelet server runs") });
    Harness { _dir: dir, addr, runtime, ca: Arc::new(roots), pki, shutdown }
}

impl Harness {
    /// A TLS connection as client certificate `who` (`None`: no certificate).
    async fn tls(&self, who: Option<&str>) -> TlsStream<TcpStream> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.ca.clone());
        let config = match who {
            Some(name) => {
                let paths = skiff_pki::CertPaths::in_dir(&self.pki, name);
                let (chain, key) = paths.load_der().unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        connector.connect(rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap()
    }

    /// GET `path` as `who`; the status and the whole body.
    async fn get_as(&self, who: Option<&str>, path: &str) -> (u16, String) {
        let tls = self.tls(who).await;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(path).header("host", "127.0.0.1").body(Empty::<Bytes>::new()).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req)).await.expect("an answer").unwrap();
        let status = resp.status().as_u16();
        let body = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect()).await.expect("the whole body").unwrap();
        (status, String::from_utf8_lossy(&body.to_bytes()).into_owned())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        self.get_as(Some("apiserver-kubelet-client"), path).await
    }
}

// ---------------------------------------------------------------------------------------------------
// Logs

#[tokio::test]
async fn logs_join_partial_lines_and_apply_tail_timestamps_since_and_limit() {
    let h = start().await;
    let base = "/containerLogs/default/web/app";
    assert_eq!(h.get(base).await, (200, "one\nwarning\ntwo\nthree\n".to_string()));
    assert_eq!(h.get(&format!("{base}?tailLines=2")).await.1, "two\nthree\n");
    assert_eq!(h.get(&format!("{base}?tailLines=0")).await.1, "");
    assert_eq!(
        h.get(&format!("{base}?tailLines=1&timestamps=true")).await.1,
        "2026-01-01T00:03:00.5Z three\n"
    );
    assert_eq!(h.get(&format!("{base}?sinceTime=2026-01-01T00:02:00Z")).await.1, "warning\ntwo\nthree\n");
    assert_eq!(h.get(&format!("{base}?limitBytes=6")).await.1, "one\nwa");
    assert_eq!(h.get(&format!("{base}?previous=true")).await.1, "previous run\nit crashed\n");
    // sinceSeconds far in the past of these fixed timestamps' "now": nothing is that recent.
    assert_eq!(h.get(&format!("{base}?sinceSeconds=60")).await.1, "");
}

#[tokio::test]
async fn logs_errors_name_what_is_wrong() {
    let h = start().await;
    let (code, body) = h.get("/containerLogs/default/web/nope").await;
    assert_eq!(code, 404);
    assert!(body.contains("container \"nope\" not found in pod \"default/web\""), "{body}");
    let (code, body) = h.get("/containerLogs/default/ghost/app").await;
    assert_eq!(code, 404);
    assert!(body.contains("pod \"default/ghost\" does not exist"), "{body}");
    let (code, body) = h.get("/containerLogs/default/web/app?tailLines=-3").await;
    assert_eq!(code, 400);
    assert!(body.contains("tailLines"), "{body}");
    let (code, body) = h.get("/containerLogs/default/web/app?sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z").await;
    assert_eq!(code, 400, "{body}");
}

#[tokio::test]
async fn previous_without_an_earlier_attempt_is_a_bad_request() {
    let h = start().await;
    std::fs::remove_file(h.runtime.log_dir.join("app").join("0.log")).unwrap();
    let (code, body) = h.get("/containerLogs/default/web/app?previous=true").await;
    assert_eq!(code, 400);
    assert!(body.contains("previous terminated container \"app\" in pod \"web\" not found"), "{body}");
}

#[tokio::test]
async fn follow_streams_new_lines_and_ends_when_the_container_exits() {
    let h = start().await;
    let tls = h.tls(Some("apiserver-kubelet-client")).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/containerLogs/default/web/app?follow=true&tailLines=1")
        .header("host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = String::new();
    let mut next = async |got: &mut String| {
        let frame = tokio::time::timeout(Duration::from_secs(20), body.frame()).await.expect("log data in time");
        match frame {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    got.push_str(&String::from_utf8_lossy(d));
                }
                true
            }
            _ => false,
        }
    };
    while !got.contains("three\n") {
        assert!(next(&mut got).await, "the stream ended early: {got:?}");
    }
    let log = h.runtime.log_dir.join("app").join("1.log");
    append_cri(&log, &["2026-01-01T00:04:00Z stdout P fo", "2026-01-01T00:04:00.1Z stdout F ur"]);
    while !got.contains("four\n") {
        assert!(next(&mut got).await, "the stream ended early: {got:?}");
    }
    append_cri(&log, &["2026-01-01T00:05:00Z stdout F five"]);
    *h.runtime.app_state.lock().unwrap() = ContainerState::Exited;
    while next(&mut got).await {}
    assert_eq!(got, "three\nfour\nfive\n");
}

// ---------------------------------------------------------------------------------------------------
// Authorization and the other endpoints

#[tokio::test]
async fn only_the_api_server_and_admins_may_call() {
    let h = start().await;
    assert_eq!(h.get("/healthz").await, (200, "ok".to_string()));
    assert_eq!(h.get_as(Some("admin"), "/healthz").await.0, 200);
    let (code, body) = h.get_as(None, "/containerLogs/default/web/app").await;
    assert_eq!((code, body.trim()), (401, "Unauthorized"));
    let (code, body) = h.get_as(Some("node"), "/containerLogs/default/web/app").await;
    assert_eq!(code, 403);
    assert!(body.contains("user=system:node:other"), "{body}");
}

#[tokio::test]
async fn stats_summary_has_the_node_and_the_pods_containers() {
    let h = start().await;
    let (code, body) = h.get("/stats/summary").await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["node"]["nodeName"], "node-1");
    assert!(v["node"]["memory"]["workingSetBytes"].as_u64().unwrap() > 0, "{v}");
    assert!(v["node"]["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0, "{v}");
    let pod = &v["pods"][0];
    assert_eq!(pod["podRef"], serde_json::json!({"name": "web", "namespace": "default", "uid": "uid-web"}));
    assert_eq!(pod["containers"][0]["name"], "app");
    assert_eq!(pod["containers"][0]["memory"]["workingSetBytes"], 3 << 20);
    assert_eq!(pod["containers"][0]["cpu"]["usageCoreNanoSeconds"], 5_000_000);

    let (code, text) = h.get("/metrics/resource").await;
    assert_eq!(code, 200, "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web\"} 0.005 "))
        .unwrap_or_else(|| panic!("no container CPU sample in {text}"));
    assert!(line.split(' ').nth(2).unwrap().parse::<i64>().is_ok(), "{line}");
    assert!(text.lines().any(|l| l.starts_with("node_memory_working_set_bytes ")), "{text}");
}

// ---------------------------------------------------------------------------------------------------
// exec over WebSocket

async fn ws_exec(h: &Harness, query: &str, protocol: &str) -> tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>> {
    let tls = h.tls(Some("apiserver-kubelet-client")).await;
    let mut req = format!("wss://127.0.0.1/exec/default/web/app?{query}").into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::client_async(req, tls).await.expect("the WebSocket upgrade succeeds");
    assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
    ws
}

/// Reads channel messages until the server closes; (stdout, stderr, status).
async fn ws_collect(ws: &mut tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>) -> (String, String, Value) {
    let (mut out, mut err, mut status) = (String::new(), String::new(), Value::Null);
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("a message in time");
        match msg {
            Some(Ok(Message::Binary(b))) => match b[0] {
                1 => out.push_str(&String::from_utf8_lossy(&b[1..])),
                2 => err.push_str(&String::from_utf8_lossy(&b[1..])),
                3 => status = serde_json::from_slice(&b[1..]).unwrap(),
                other => panic!("unexpected channel {other}"),
            },
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("websocket error: {e}"),
        }
    }
    (out, err, status)
}

#[tokio::test]
async fn websocket_v5_exec_returns_output_and_the_exit_code() {
    let h = start().await;
    let mut ws = ws_exec(&h, "command=sh&command=-c&command=echo+out%3B+echo+err+%3E%262%3B+exit+3&stdout=true&stderr=true", "v5.channel.k8s.io").await;
    let (out, err, status) = ws_collect(&mut ws).await;
    assert_eq!(out, "out\n");
    assert_eq!(err, "err\n");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0], serde_json::json!({"reason": "ExitCode", "message": "3"}));

    let mut ws = ws_exec(&h, "command=true&stdout=true", "v4.channel.k8s.io").await;
    let (_, _, status) = ws_collect(&mut ws).await;
    assert_eq!(status, serde_json::json!({"metadata": {}, "status": "Success"}));
}

#[tokio::test]
async fn websocket_v5_stdin_and_its_close_signal_reach_the_process() {
    let h = start().await;
    let mut ws = ws_exec(&h, "command=cat&stdin=true&stdout=true&stderr=true", "v5.channel.k8s.io").await;
    ws.send(Message::Binary(Bytes::from_static(b"\x00hello\nworld\n"))).await.unwrap();
    // kubectl's stdin EOF: close channel 0.
    ws.send(Message::Binary(Bytes::from_static(&[255, 0]))).await.unwrap();
    let (out, _, status) = ws_collect(&mut ws).await;
    assert_eq!(out, "hello\nworld\n");
    assert_eq!(status["status"], "Success");
}

#[tokio::test]
async fn websocket_tty_exec_passes_terminal_resizes_to_the_runtime() {
    let h = start().await;
    let mut ws = ws_exec(&h, "command=cat&stdin=true&stdout=true&tty=true", "v5.channel.k8s.io").await;
    ws.send(Message::Binary(Bytes::from_static(b"\x04{\"Width\":120,\"Height\":40}\n"))).await.unwrap();
    ws.send(Message::Binary(Bytes::from_static(b"\x00typed\n"))).await.unwrap();
    ws.send(Message::Binary(Bytes::from_static(&[255, 0]))).await.unwrap();
    let (out, _, status) = ws_collect(&mut ws).await;
    assert_eq!(out, "typed\n");
    assert_eq!(status["status"], "Success");
    assert_eq!(*h.runtime.resizes.lock().unwrap(), vec![TerminalSize { width: 120, height: 40 }]);
}

#[tokio::test]
async fn exec_without_streams_or_in_an_unknown_container_is_refused() {
    let h = start().await;
    let (code, body) = h.get("/exec/default/web/app?command=ls").await;
    assert_eq!(code, 400);
    assert!(body.contains("at least 1 of stdin, stdout, stderr"), "{body}");
    let (code, body) = h.get("/exec/default/web/nope?command=ls&stdout=1").await;
    assert_eq!(code, 404, "{body}");
}

// ---------------------------------------------------------------------------------------------------
// SPDY/3.1: exec, and port-forward direct and tunnelled

/// Sends a raw HTTP/1.1 upgrade request and reads the response head.
async fn raw_upgrade(h: &Harness, request: &str) -> (TlsStream<TcpStream>, String) {
    let mut tls = h.tls(Some("apiserver-kubelet-client")).await;
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut byte)).await.expect("a response").unwrap();
        assert_eq!(n, 1, "connection closed in the response head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    (tls, String::from_utf8(head).unwrap())
}

fn syn(id: u32, headers: &[(&str, &str)]) -> Frame {
    Frame::SynStream {
        stream_id: id,
        associated_to: 0,
        priority: 0,
        fin: false,
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

/// Reads frames until every stream in `until_fin` has been half-closed by the server; data per stream.
async fn read_until_fin<R: tokio::io::AsyncRead + Unpin>(r: &mut FrameReader<R>, until_fin: &[u32]) -> BTreeMap<u32, Vec<u8>> {
    let mut data: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut open: Vec<u32> = until_fin.to_vec();
    let mut replied = Vec::new();
    while !open.is_empty() {
        let f = tokio::time::timeout(Duration::from_secs(20), r.read_frame()).await.expect("a frame in time").unwrap();
        match f {
            Some(Frame::SynReply { stream_id, .. }) => replied.push(stream_id),
            Some(Frame::Data { stream_id, fin, data: d }) => {
                assert!(replied.contains(&stream_id), "data on stream {stream_id} before its SYN_REPLY");
                data.entry(stream_id).or_default().extend_from_slice(&d);
                if fin {
                    open.retain(|s| *s != stream_id);
                }
            }
            Some(other) => panic!("unexpected frame {other:?}"),
            None => panic!("the connection closed with streams {open:?} still open"),
        }
    }
    data
}

#[tokio::test]
async fn spdy_exec_writes_output_and_the_status_on_the_error_stream() {
    let h = start().await;
    let (tls, head) = raw_upgrade(
        &h,
        "POST /exec/default/web/app?command=sh&command=-c&command=echo+spdy%3B+exit+2&stdout=true&stderr=true HTTP/1.1\r\n\
         Host: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: v5.channel.k8s.io\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\
         X-Stream-Protocol-Version: v3.channel.k8s.io\r\nX-Stream-Protocol-Version: v2.channel.k8s.io\r\n\
         X-Stream-Protocol-Version: channel.k8s.io\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-stream-protocol-version: v5.channel.k8s.io"), "{head}");
    let (rd, mut wr) = tokio::io::split(tls);
    let mut w = FrameWriter::new();
    for f in [syn(1, &[("streamtype", "error")]), syn(3, &[("streamtype", "stdout")]), syn(5, &[("streamtype", "stderr")])] {
        wr.write_all(&w.encode(&f)).await.unwrap();
    }
    wr.flush().await.unwrap();
    let mut r = FrameReader::new(rd);
    let data = read_until_fin(&mut r, &[1, 3, 5]).await;
    assert_eq!(String::from_utf8_lossy(&data[&3]), "spdy\n");
    let status: Value = serde_json::from_slice(&data[&1]).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "2");
}

/// Opens a forwarded connection to `port` (request 0), sends `ping` and half-closes; returns what came back
/// on the data and error streams.
async fn forward_once<R, W>(r: &mut FrameReader<R>, wr: &mut W, port: u16) -> (String, String)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut w = FrameWriter::new();
    let p = port.to_string();
    let frames = [
        syn(1, &[("streamtype", "error"), ("port", &p), ("requestid", "0")]),
        Frame::Data { stream_id: 1, fin: true, data: Bytes::new() },
        syn(3, &[("streamtype", "data"), ("port", &p), ("requestid", "0")]),
        Frame::Ping { id: 1 },
        Frame::Data { stream_id: 3, fin: false, data: Bytes::from_static(b"ping") },
        Frame::Data { stream_id: 3, fin: true, data: Bytes::new() },
    ];
    for f in &frames {
        wr.write_all(&w.encode(f)).await.unwrap();
    }
    wr.flush().await.unwrap();
    let mut data: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut open = vec![1u32, 3];
    let mut ponged = false;
    while !open.is_empty() || !ponged {
        let f = tokio::time::timeout(Duration::from_secs(20), r.read_frame()).await.expect("a frame in time").unwrap();
        match f.expect("the connection stays open") {
            Frame::SynReply { .. } => {}
            Frame::Ping { id } => {
                assert_eq!(id, 1);
                ponged = true;
            }
            Frame::Data { stream_id, fin, data: d } => {
                data.entry(stream_id).or_default().extend_from_slice(&d);
                if fin {
                    open.retain(|s| *s != stream_id);
                }
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    let text = |id| String::from_utf8_lossy(data.get(&id).map(Vec::as_slice).unwrap_or(b"")).into_owned();
    (text(3), text(1))
}

/// Upgrades to SPDY port-forwarding of pod default/web and forwards one connection to `port`: (data, error).
async fn spdy_forward_once(h: &Harness, port: u16) -> (String, String) {
    let (tls, head) = raw_upgrade(
        &h,
        "POST /portForward/default/web HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (rd, mut wr) = tokio::io::split(tls);
    let mut r = FrameReader::new(rd);
    forward_once(&mut r, &mut wr, port).await
}

#[tokio::test]
async fn spdy_port_forward_splices_a_pod_connection() {
    let h = start().await;
    let port = pod_server().await;
    let (data, err) = spdy_forward_once(&h, port).await;
    assert_eq!(data, "hello from pod\nping");
    assert_eq!(err, "");
}

#[tokio::test]
async fn port_forward_to_a_closed_port_reports_on_the_error_stream() {
    let h = start().await;
    // A port nothing listens on: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let (data, err) = spdy_forward_once(&h, port).await;
    assert_eq!(data, "");
    assert!(err.contains(&format!("error forwarding port {port} to pod default/web, uid uid-web")), "{err}");
}

#[tokio::test]
async fn websocket_tunnelled_port_forward_carries_spdy() {
    let h = start().await;
    let port = pod_server().await;
    let tls = h.tls(Some("apiserver-kubelet-client")).await;
    let mut req = "wss://127.0.0.1/portForward/default/web".into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "SPDY/3.1+portforward.k8s.io".parse().unwrap());
    let (ws, resp) = tokio_tungstenite::client_async(req, tls).await.expect("the WebSocket upgrade succeeds");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "SPDY/3.1+portforward.k8s.io");
    // Bridge the WebSocket's binary messages to a byte stream for the SPDY frame reader and writer.
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let (mut rd, mut wr) = tokio::io::split(theirs);
        let inbound = async {
            while let Some(Ok(msg)) = stream.next().await {
                if let Message::Binary(b) = msg
                    && wr.write_all(&b).await.is_err()
                {
                    break;
                }
            }
        };
        let outbound = async {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 || sink.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                    break;
                }
            }
        };
        tokio::join!(inbound, outbound);
    });
    let (rd, mut wr) = tokio::io::split(ours);
    let mut r = FrameReader::new(rd);
    let (data, err) = forward_once(&mut r, &mut wr, port).await;
    assert_eq!(data, "hello from pod\nping");
    assert_eq!(err, "");
}
