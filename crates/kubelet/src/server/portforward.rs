//! `/portForward/{namespace}/{pod}`: SPDY/3.1 `portforward.k8s.io`, directly (`Upgrade: SPDY/3.1`) or tunnelled
//! in WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`, what kubectl 1.31+ tries first). Per
//! forwarded connection the client opens an `error` and a `data` stream with the same `requestid` and a
//! `port`; the data stream is spliced to a TCP connection made in the pod's network namespace.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Request, State as AxState};
use axum::response::Response;
use http::StatusCode;
use hyper_util::rt::TokioIo;
use skiff_runtime::cri::RuntimeService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::remotecommand::spdy as upgrade;
use super::spdy::{Connection, IncomingStream, StreamWriter};
use super::{State, error, pods, websocket};

/// The SPDY subprotocol of port-forward.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The same, tunnelled in WebSocket.
pub const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

pub async fn serve(AxState(state): AxState<Arc<State>>, UrlPath((ns, pod)): UrlPath<(String, String)>, req: Request) -> Response {
    serve_pod(state, ns, pod, None, req).await
}

pub async fn serve_with_uid(
    AxState(state): AxState<Arc<State>>,
    UrlPath((ns, pod, uid)): UrlPath<(String, String, String)>,
    req: Request,
) -> Response {
    serve_pod(state, ns, pod, Some(uid), req).await
}

/// Which pod the connections go to.
#[derive(Clone)]
struct Target {
    runtime: Arc<dyn RuntimeService>,
    sandbox_id: String,
    pod: String,
    uid: String,
}

async fn serve_pod(state: Arc<State>, ns: String, pod: String, uid: Option<String>, mut req: Request) -> Response {
    let sandbox = match pods::sandbox(state.runtime.as_ref(), &ns, &pod, uid.as_deref()).await {
        Ok(s) => s,
        Err(e) => return error(e.status, e.message),
    };
    let target = Target { runtime: state.runtime.clone(), sandbox_id: sandbox.id.clone(), pod: format!("{ns}/{pod}"), uid: sandbox.uid.clone() };
    if websocket::is_websocket(req.headers()) {
        let (resp, _, on_upgrade) = match websocket::accept(&mut req, &[WEBSOCKET_PROTOCOL]) {
            Ok(x) => x,
            Err((status, msg)) => return error(status, msg),
        };
        tokio::spawn(async move {
            match websocket::socket(on_upgrade).await {
                Ok(ws) => run(target, Connection::serve(websocket::byte_pipe(ws))).await,
                Err(e) => tracing::debug!(error = %e, "port-forward: the WebSocket upgrade failed"),
            }
        });
        return resp;
    }
    if !upgrade::is_spdy(req.headers()) {
        return error(StatusCode::BAD_REQUEST, "Upgrade request required");
    }
    let protocol = match upgrade::negotiate(req.headers(), &[PROTOCOL]) {
        Ok(p) => p,
        Err(msg) => return error(StatusCode::FORBIDDEN, msg),
    };
    let (resp, on_upgrade) = match upgrade::accept(&mut req, &protocol) {
        Ok(x) => x,
        Err((status, msg)) => return error(status, msg),
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run(target, Connection::serve(TokioIo::new(upgraded))).await,
            Err(e) => tracing::debug!(error = %e, "port-forward: the SPDY upgrade failed"),
        }
    });
    resp
}

#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<IncomingStream>,
}

async fn run(target: Target, mut conn: Connection) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut tasks = Vec::new();
    while let Some(stream) = conn.incoming.recv().await {
        let request_id = stream.header("requestid").unwrap_or("").to_string();
        let pair = pairs.entry(request_id.clone()).or_default();
        match stream.header("streamtype") {
            Some("error") => pair.error = Some(stream.id),
            Some("data") => pair.data = Some(stream),
            other => {
                tracing::debug!(?other, "port-forward: unexpected stream type");
                let _ = conn.writer.reset(stream.id, super::spdy::frame::RST_PROTOCOL_ERROR).await;
                continue;
            }
        }
        let ready = pairs.get(&request_id).is_some_and(|p| p.error.is_some() && p.data.is_some());
        if ready && let Some(Pair { error: Some(error_id), data: Some(data) }) = pairs.remove(&request_id) {
            tasks.push(tokio::spawn(forward(target.clone(), conn.writer.clone(), error_id, data)));
        }
        tasks.retain(|t| !t.is_finished());
    }
    for t in tasks {
        t.abort();
    }
    conn.close().await;
}

async fn forward(target: Target, w: StreamWriter, error_id: u32, mut data: IncomingStream) {
    let port = data.header("port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
    let Some(port) = port else {
        let msg = format!("invalid port header {:?}: must be an integer between 1 and 65535", data.header("port").unwrap_or(""));
        let _ = w.data(error_id, msg.as_bytes()).await;
        let _ = w.fin(error_id).await;
        let _ = w.fin(data.id).await;
        return;
    };
    let pod_conn = match target.runtime.port_forward(&target.sandbox_id, port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {}, uid {}: {e}", target.pod, target.uid);
            let _ = w.data(error_id, msg.as_bytes()).await;
            let _ = w.fin(error_id).await;
            let _ = w.fin(data.id).await;
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(pod_conn);
    let mut client_rx = std::mem::replace(&mut data.data, tokio::sync::mpsc::channel(1).1);
    // Client to pod; the client's FIN half-closes the pod connection.
    let up = tokio::spawn(async move {
        while let Some(b) = client_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    // Pod to client, until the pod closes or the client resets the stream.
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if w.data(data.id, &buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = w.fin(data.id).await;
    };
    tokio::select! {
        _ = down => {}
        _ = data.reset.cancelled() => {}
    }
    up.abort();
    let _ = w.fin(error_id).await;
}
