//! The server side of a WebSocket upgrade (RFC 6455) with Kubernetes' subprotocol negotiation, and a byte
//! pipe over binary messages (for SPDY tunnelled in WebSocket).

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Message, Role};

pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")))
}

/// The subprotocols the client offered, in its order.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Accepts the upgrade with the first offered protocol among `supported`: returns the 101 response and the
/// chosen protocol; the socket is ready once `upgrade` resolves. Otherwise a 400 naming what was wrong.
pub fn accept(req: &mut Request, supported: &[&str]) -> Result<(Response, String, hyper::upgrade::OnUpgrade), (StatusCode, String)> {
    let headers = req.headers();
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or((StatusCode::BAD_REQUEST, "websocket upgrade without a Sec-WebSocket-Key header".to_string()))?;
    if headers.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        return Err((StatusCode::BAD_REQUEST, "unsupported Sec-WebSocket-Version: only 13 is supported".into()));
    }
    let offered = offered_protocols(headers);
    let Some(protocol) = offered.iter().find(|p| supported.contains(&p.as_str())).cloned() else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"),
        ));
    };
    let accept_key = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = req
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or((StatusCode::BAD_REQUEST, "this connection cannot be upgraded (HTTP/1.1 is required)".to_string()))?;
    let resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key)
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol.as_str())
        .body(axum::body::Body::empty())
        .expect("a valid response");
    Ok((resp, protocol, on_upgrade))
}

/// The WebSocket over the upgraded connection.
pub async fn socket(on_upgrade: hyper::upgrade::OnUpgrade) -> Result<Socket, hyper::Error> {
    let upgraded = on_upgrade.await?;
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await)
}

/// A byte stream whose bytes travel in the socket's binary messages (boundaries carry no meaning).
/// The pump task ends when either side closes.
pub fn byte_pipe(ws: Socket) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let (mut rd, mut wr) = tokio::io::split(theirs);
        let inbound = async {
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(Message::Binary(b)) => {
                        if wr.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = wr.shutdown().await;
        };
        let outbound = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = sink.send(Message::Close(None)).await;
            let _ = sink.close().await;
        };
        // Either side ending ends the pipe (a WebSocket has no half-close).
        tokio::select! {
            _ = inbound => {}
            _ = outbound => {}
        }
    });
    ours
}
