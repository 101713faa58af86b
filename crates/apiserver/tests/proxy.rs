//! pods/log, exec, attach and portforward proxied to a kubelet: a fake kubelet (HTTPS requiring a client
//! certificate from the test CA) records what reaches it; the API server runs in-process (logs) and behind
//! its TLS listener (WebSocket exec, spliced through).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use skiff_apiserver::{ApiServer, Config, KubeletClientConfig, UserInfo};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

struct Pki {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    ca: skiff_pki::Ca,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let ca = skiff_pki::Ca::load_or_create(&path).unwrap();
    ca.issue_serving(&path, "apiserver", &["127.0.0.1".to_string()]).unwrap();
    ca.issue_serving(&path, "kubelet", &["127.0.0.1".to_string()]).unwrap();
    ca.issue_client(&path, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", &[]).unwrap();
    ca.issue_client(&path, "admin", "system:admin", &["system:masters".to_string()]).unwrap();
    Pki { _dir: dir, dir: path, ca }
}

impl Pki {
    fn paths(&self, name: &str) -> skiff_pki::CertPaths {
        skiff_pki::CertPaths::in_dir(&self.dir, name)
    }

    fn kubelet_client(&self) -> KubeletClientConfig {
        let p = self.paths("apiserver-kubelet-client");
        KubeletClientConfig { ca_pem: self.ca.cert_pem().to_string(), cert_pem: p.read_cert_pem().unwrap(), key_pem: p.read_key_pem().unwrap() }
    }
}

/// What the fake kubelet saw: (client CN, method, path and query, selected upgrade headers).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A fake kubelet: `/containerLogs/...` answers two lines, `/exec/...` over WebSocket v5 writes `hi` on
/// stdout and a Success status; every request is recorded with the caller's CN.
async fn fake_kubelet(pki: &Pki, shutdown: CancellationToken) -> (u16, Seen) {
    let paths = pki.paths("kubelet");
    let tls = skiff_apiserver::tls::server_config(&paths.cert, &paths.key, &pki.ca.paths().cert).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => a.unwrap(),
            };
            let acceptor = acceptor.clone();
            let record = record.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let cn = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| skiff_pki::identity_from_der(c.as_ref()).ok())
                    .map(|(name, _)| name)
                    .unwrap_or_default();
                let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    let cn = cn.clone();
                    async move {
                        let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
                        record.lock().unwrap().push((cn, req.method().to_string(), path.clone()));
                        let resp = if path.starts_with("/containerLogs/") {
                            http::Response::builder().header("content-type", "text/plain").body(Body::from("line 1\nline 2\n")).unwrap()
                        } else if path.starts_with("/exec/") {
                            let key = req.headers()["sec-websocket-key"].clone();
                            let protocol = req.headers()["sec-websocket-protocol"].clone();
                            let on_upgrade = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let upgraded = on_upgrade.await.unwrap();
                                let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
                                ws.send(Message::Binary(Bytes::from_static(b"\x01hi\n"))).await.unwrap();
                                ws.send(Message::Binary(Bytes::from_static(b"\x03{\"metadata\":{},\"status\":\"Success\"}"))).await.unwrap();
                                ws.send(Message::Close(None)).await.unwrap();
                                while let Some(Ok(_)) = ws.next().await {}
                            });
                            http::Response::builder()
                                .status(101)
                                .header("connection", "Upgrade")
                                .header("upgrade", "websocket")
                                .header("sec-websocket-accept", tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
                                .header("sec-websocket-protocol", protocol)
                                .body(Body::empty())
                                .unwrap()
                        } else {
                            http::Response::builder().status(404).body(Body::from("404 page not found\n")).unwrap()
                        };
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).with_upgrades().await;
            });
        }
    });
    (port, seen)
}

async fn api_server(kubelet_client: Option<KubeletClientConfig>) -> (Arc<ApiServer>, CancellationToken) {
    let shutdown = CancellationToken::new();
    let config = Config { kubelet_client, ..Config::default() };
    let (server, _registry) = skiff_apiserver::testing::api_server(config, shutdown.clone()).await;
    (server, shutdown)
}

fn admin_router(server: &Arc<ApiServer>) -> axum::Router {
    skiff_apiserver::with_identity(skiff_apiserver::router(server.clone()), UserInfo::new("system:admin", &["system:masters"]))
}

async fn call(router: &axum::Router, method: &str, uri: &str, content_type: &str, body: Value) -> (u16, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(Body::from(if body.is_null() { Vec::new() } else { serde_json::to_vec(&body).unwrap() }))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect()).await.unwrap().unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// A node whose kubelet is the fake one, and pods `web` (on it, containers `app` and `side`) and
/// `pending` (not scheduled).
async fn objects(router: &axum::Router, kubelet_port: u16) {
    let (code, body) = call(router, "POST", "/api/v1/nodes", "application/json", json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})).await;
    assert_eq!(code, 201, "{body}");
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                   "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}}});
    let (code, body) = call(router, "PATCH", "/api/v1/nodes/n1/status", "application/merge-patch+json", status).await;
    assert_eq!(code, 200, "{body}");
    for (name, node) in [("web", Some("n1")), ("pending", None)] {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                             "spec": {"containers": [{"name": "app", "image": "busybox"}, {"name": "side", "image": "busybox"}]}});
        if let Some(n) = node {
            pod["spec"]["nodeName"] = json!(n);
        }
        let (code, body) = call(router, "POST", "/api/v1/namespaces/default/pods", "application/json", pod).await;
        assert_eq!(code, 201, "{body}");
    }
}

#[tokio::test]
async fn without_a_kubelet_client_the_streaming_subresources_answer_503() {
    let (server, shutdown) = api_server(None).await;
    let router = admin_router(&server);
    objects(&router, 10250).await;
    let (code, body) = call(&router, "GET", "/api/v1/namespaces/default/pods/web/log?container=app", "", Value::Null).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no kubelet client certificate configured"), "{body}");
    shutdown.cancel();
}

#[tokio::test]
async fn logs_stream_from_the_kubelet_with_the_query_and_the_client_certificate() {
    let pki = pki();
    let shutdown = CancellationToken::new();
    let (port, seen) = fake_kubelet(&pki, shutdown.clone()).await;
    let (server, api_shutdown) = api_server(Some(pki.kubelet_client())).await;
    let router = admin_router(&server);
    objects(&router, port).await;

    let (code, body) = call(&router, "GET", "/api/v1/namespaces/default/pods/web/log?container=side&tailLines=2&timestamps=true", "", Value::Null).await;
    assert_eq!((code, body.as_str()), (200, "line 1\nline 2\n"));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![("kube-apiserver-kubelet-client".to_string(), "GET".to_string(), "/containerLogs/default/web/side?tailLines=2&timestamps=true".to_string())]
    );

    // Upstream's validation, before any kubelet is asked.
    let (code, body) = call(&router, "GET", "/api/v1/namespaces/default/pods/web/log?container=nope", "", Value::Null).await;
    assert_eq!(code, 400);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["message"], "container nope is not valid for pod web");
    let (code, body) = call(&router, "GET", "/api/v1/namespaces/default/pods/web/log", "", Value::Null).await;
    assert_eq!(code, 400);
    assert!(body.contains("a container name must be specified for pod web, choose one of: [app side]"), "{body}");
    let (code, body) = call(&router, "GET", "/api/v1/namespaces/default/pods/pending/log?container=app", "", Value::Null).await;
    assert_eq!(code, 400);
    assert!(body.contains("pod pending does not have a host assigned"), "{body}");
    let (code, _) = call(&router, "GET", "/api/v1/namespaces/default/pods/ghost/log?container=app", "", Value::Null).await;
    assert_eq!(code, 404);
    // exec needs an upgrade.
    let (code, body) = call(&router, "GET", "/api/v1/namespaces/default/pods/web/exec?container=app&command=ls&stdout=true", "", Value::Null).await;
    assert_eq!(code, 400, "{body}");
    shutdown.cancel();
    api_shutdown.cancel();
}

#[tokio::test]
async fn websocket_exec_is_spliced_through_to_the_kubelet() {
    let pki = pki();
    let shutdown = CancellationToken::new();
    let (port, seen) = fake_kubelet(&pki, shutdown.clone()).await;
    let (server, api_shutdown) = api_server(Some(pki.kubelet_client())).await;
    objects(&admin_router(&server), port).await;

    // The API server behind its own TLS listener, as kubectl reaches it.
    let serving = pki.paths("apiserver");
    let tls = skiff_apiserver::tls::server_config(&serving.cert, &serving.key, &pki.ca.paths().cert).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(skiff_apiserver::tls::serve(listener, tls, skiff_apiserver::router(server.clone()), api_shutdown.clone()));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.cert_der().clone()).unwrap();
    let (chain, key) = pki.paths("admin").load_der().unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let mut req = format!("wss://127.0.0.1:{}/api/v1/namespaces/default/pods/web/exec?command=ls&container=app&stdout=true", addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::client_async(req, stream).await.expect("the upgrade is proxied");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
    let mut got = Vec::new();
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("a message in time") {
        match msg.unwrap() {
            Message::Binary(b) => got.push(b.to_vec()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(got, vec![b"\x01hi\n".to_vec(), b"\x03{\"metadata\":{},\"status\":\"Success\"}".to_vec()]);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "kube-apiserver-kubelet-client");
    assert_eq!(seen[0].2, "/exec/default/web/app?command=ls&stdout=true");
    shutdown.cancel();
    api_shutdown.cancel();
}
