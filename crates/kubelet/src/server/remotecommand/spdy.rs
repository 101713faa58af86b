//! exec/attach over SPDY/3.1 (kubectl's fallback): `Upgrade: SPDY/3.1` with `X-Stream-Protocol-Version`,
//! then one SPDY stream per channel, named by its `streamtype` header (`error`, `stdin`, `stdout`, `stderr`,
//! `resize`). The `Status` goes on the error stream, then every stream is half-closed.

use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use super::{Input, Output, PROTOCOLS, Prepared, exit_status, failure_status, parse_resizes, pump, start};
use crate::server::spdy::{Connection, IncomingStream};
use crate::server::error;

/// How long the client has to open its streams (upstream's stream creation timeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

pub const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// Whether the request asks for a SPDY/3.1 upgrade.
pub fn is_spdy(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("SPDY/3.1"))
}

/// Upstream's `httpstream.Handshake`: the first protocol the client lists that the server supports.
pub fn negotiate(headers: &HeaderMap, supported: &[&str]) -> Result<String, String> {
    let offered: Vec<String> = headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    offered.iter().find(|p| supported.contains(&p.as_str())).cloned().ok_or_else(|| {
        format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}")
    })
}

/// Answers the SPDY upgrade with `protocol` and hands back the pending upgraded connection.
pub fn accept(req: &mut Request, protocol: &str) -> Result<(Response, hyper::upgrade::OnUpgrade), (StatusCode, String)> {
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return Err((StatusCode::BAD_REQUEST, "this connection cannot be upgraded (HTTP/1.1 is required)".into()));
    };
    let resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header(PROTOCOL_HEADER, protocol)
        .body(axum::body::Body::empty())
        .expect("a valid response");
    Ok((resp, on_upgrade))
}

pub async fn serve(p: Prepared, mut req: Request) -> Response {
    let protocol = match negotiate(req.headers(), PROTOCOLS) {
        Ok(p) => p,
        Err(msg) => return error(StatusCode::FORBIDDEN, msg),
    };
    let (resp, on_upgrade) = match accept(&mut req, &protocol) {
        Ok(x) => x,
        Err((status, msg)) => return error(status, msg),
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run(p, Connection::serve(TokioIo::new(upgraded))).await,
            Err(e) => tracing::debug!(error = %e, "exec/attach: the SPDY upgrade failed"),
        }
    });
    resp
}

#[derive(Default)]
struct Streams {
    error: Option<IncomingStream>,
    stdin: Option<IncomingStream>,
    stdout: Option<IncomingStream>,
    stderr: Option<IncomingStream>,
    resize: Option<IncomingStream>,
}

async fn wait_for_streams(conn: &mut Connection, p: &Prepared) -> Result<Streams, String> {
    let o = &p.options.streams;
    let expected = 1 + usize::from(o.stdin) + usize::from(o.stdout) + usize::from(o.stderr) + usize::from(o.tty);
    let mut s = Streams::default();
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while got < expected {
        let stream = match tokio::time::timeout_at(deadline, conn.incoming.recv()).await {
            Ok(Some(st)) => st,
            Ok(None) => return Err("the connection closed before all streams were created".into()),
            Err(_) => return Err("timed out waiting for client to create streams".into()),
        };
        let slot = match stream.header("streamtype") {
            Some("error") => &mut s.error,
            Some("stdin") => &mut s.stdin,
            Some("stdout") => &mut s.stdout,
            Some("stderr") => &mut s.stderr,
            Some("resize") => &mut s.resize,
            other => return Err(format!("unexpected stream type: {other:?}")),
        };
        if slot.is_none() {
            got += 1;
        }
        *slot = Some(stream);
    }
    Ok(s)
}

async fn run(p: Prepared, mut conn: Connection) {
    let streams = match wait_for_streams(&mut conn, &p).await {
        Ok(s) => s,
        Err(msg) => {
            tracing::debug!(%msg, "exec/attach over SPDY");
            conn.close().await;
            return;
        }
    };
    let w = conn.writer.clone();
    let error_id = streams.error.as_ref().map(|s| s.id);
    let finish = |status: serde_json::Value| {
        let w = w.clone();
        async move {
            if let Some(id) = error_id {
                let _ = w.data(id, &serde_json::to_vec(&status).expect("json")).await;
                let _ = w.fin(id).await;
            }
        }
    };
    let session = match start(&p.state, &p.container_id, &p.options, p.exec).await {
        Ok(s) => s,
        Err(e) => {
            finish(failure_status(&e.to_string())).await;
            conn.close().await;
            return;
        }
    };
    let (in_tx, in_rx) = mpsc::channel::<Input>(16);
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(16);
    let pump_task = tokio::spawn(pump(session, in_rx, out_tx));
    let mut readers = Vec::new();
    if let Some(mut stdin) = streams.stdin {
        let tx = in_tx.clone();
        readers.push(tokio::spawn(async move {
            while let Some(b) = stdin.data.recv().await {
                if tx.send(Input::Stdin(b)).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Input::StdinClosed).await;
        }));
    }
    if let Some(mut resize) = streams.resize {
        let tx = in_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(b) = resize.data.recv().await {
                buf.extend_from_slice(&b);
                for size in parse_resizes(&mut buf) {
                    if tx.send(Input::Resize(size)).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
    drop(in_tx);
    let (stdout_id, stderr_id) = (streams.stdout.as_ref().map(|s| s.id), streams.stderr.as_ref().map(|s| s.id));
    let mut client_gone = false;
    while let Some(out) = out_rx.recv().await {
        let (id, data) = match out {
            Output::Stdout(b) => (stdout_id, b),
            Output::Stderr(b) => (stderr_id, b),
        };
        if let Some(id) = id
            && w.data(id, &data).await.is_err()
        {
            client_gone = true;
            break;
        }
    }
    if client_gone {
        pump_task.abort();
    } else {
        let result = pump_task
            .await
            .unwrap_or_else(|e| Err(skiff_runtime::cri::RuntimeError::Other(format!("the stream task failed: {e}"))));
        for id in [stdout_id, stderr_id].into_iter().flatten() {
            let _ = w.fin(id).await;
        }
        finish(exit_status(&result, &p.options.command)).await;
    }
    for r in readers {
        r.abort();
    }
    // The client resets its streams and sends GOAWAY once it has read the status; give it a moment.
    drop(streams.error);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while conn.incoming.recv().await.is_some() {}
    })
    .await;
    conn.close().await;
}
