//! exec/attach over WebSocket: `v5.channel.k8s.io` (channel 255 closes a channel) and `v4.channel.k8s.io`.
//! Every message is binary with the channel in its first byte: 0 stdin, 1 stdout, 2 stderr, 3 the final
//! `Status`, 4 terminal resizes.

use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message};

use super::{Input, Output, PROTOCOLS, Prepared, exit_status, failure_status, parse_resizes, pump, start};
use crate::server::{error, websocket};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

pub async fn serve(p: Prepared, mut req: Request) -> Response {
    let (resp, protocol, on_upgrade) = match websocket::accept(&mut req, PROTOCOLS) {
        Ok(x) => x,
        Err((status, msg)) => return error(status, msg),
    };
    tokio::spawn(async move {
        match websocket::socket(on_upgrade).await {
            Ok(ws) => run(p, ws, protocol == "v5.channel.k8s.io").await,
            Err(e) => tracing::debug!(error = %e, "exec/attach: the WebSocket upgrade failed"),
        }
    });
    resp
}

fn message(channel: u8, data: &[u8]) -> Message {
    let mut b = BytesMut::with_capacity(data.len() + 1);
    b.put_u8(channel);
    b.put_slice(data);
    Message::Binary(b.freeze())
}

async fn run(p: Prepared, ws: websocket::Socket, v5: bool) {
    let (mut sink, mut stream) = ws.split();
    let session = start(&p.state, &p.container_id, &p.options, p.exec).await;
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            let status = failure_status(&e.to_string());
            let _ = sink.send(message(ERROR, &serde_json::to_vec(&status).expect("json"))).await;
            let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
            return;
        }
    };
    let (in_tx, in_rx) = mpsc::channel::<Input>(16);
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(16);
    let pump = tokio::spawn(pump(session, in_rx, out_tx));
    let reader = tokio::spawn(async move {
        let mut resize_buf = Vec::new();
        while let Some(msg) = stream.next().await {
            let b: Bytes = match msg {
                Ok(Message::Binary(b)) => b,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            let Some((&channel, data)) = b.split_first() else { continue };
            let sent = match channel {
                STDIN if !data.is_empty() => in_tx.send(Input::Stdin(b.slice(1..))).await,
                RESIZE => {
                    resize_buf.extend_from_slice(data);
                    let mut r = Ok(());
                    for size in parse_resizes(&mut resize_buf) {
                        r = r.and(in_tx.send(Input::Resize(size)).await);
                    }
                    r
                }
                CLOSE if v5 && data.first() == Some(&STDIN) => in_tx.send(Input::StdinClosed).await,
                _ => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
        // The client is gone: the process's stdin ends.
        let _ = in_tx.send(Input::StdinClosed).await;
    });
    let mut client_gone = false;
    while let Some(out) = out_rx.recv().await {
        let msg = match out {
            Output::Stdout(b) => message(STDOUT, &b),
            Output::Stderr(b) => message(STDERR, &b),
        };
        if sink.send(msg).await.is_err() {
            client_gone = true;
            break;
        }
    }
    if client_gone {
        pump.abort();
        reader.abort();
        return;
    }
    let result = pump.await.unwrap_or_else(|e| Err(skiff_runtime::cri::RuntimeError::Other(format!("the stream task failed: {e}"))));
    let status = exit_status(&result, &p.options.command);
    let _ = sink.send(message(ERROR, &serde_json::to_vec(&status).expect("json"))).await;
    let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
    // Give the client a moment to answer the close, then stop reading.
    let mut reader = reader;
    if tokio::time::timeout(Duration::from_secs(2), &mut reader).await.is_err() {
        reader.abort();
    }
}
