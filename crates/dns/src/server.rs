//! The UDP and TCP listeners: one receive loop per socket answering from the index in place, a task per
//! forwarded question, a task per TCP connection (two-byte length framing, closed when idle).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::handler::{Handler, Outcome};

/// Answers every packet on `socket` until `shutdown`.
pub async fn serve_udp(socket: UdpSocket, handler: Arc<Handler>, shutdown: CancellationToken) {
    let socket = Arc::new(socket);
    let mut buffer = vec![0u8; 4096];
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        let (length, peer) = tokio::select! {
            biased;
            _ = &mut cancelled => return,
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                // ICMP errors from earlier replies (connection refused) and the like: keep serving.
                Err(error) => {
                    tracing::debug!(%error, "udp receive failed");
                    continue;
                }
            },
        };
        match handler.handle(&buffer[..length], true) {
            Outcome::Reply(bytes) => send(&socket, &bytes, peer).await,
            Outcome::Drop => {}
            Outcome::Forward(request) => {
                let (socket, handler) = (socket.clone(), handler.clone());
                tokio::spawn(async move {
                    if let Some(bytes) = handler.forward(request, true).await {
                        send(&socket, &bytes, peer).await;
                    }
                });
            }
        }
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], peer: SocketAddr) {
    if let Err(error) = socket.send_to(bytes, peer).await {
        tracing::debug!(%peer, %error, "udp send failed");
    }
}

/// Accepts connections on `listener` until `shutdown`; each is served by its own task.
pub async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>, idle: Duration, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(%error, "tcp accept failed");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = serve_connection(stream, &handler, idle) => {}
            }
        });
    }
}

/// Questions on one TCP connection, answered in order, until EOF, a malformed message or `idle`.
async fn serve_connection(mut stream: TcpStream, handler: &Handler, idle: Duration) -> std::io::Result<()> {
    loop {
        let Ok(length) = tokio::time::timeout(idle, stream.read_u16()).await else { return Ok(()) };
        let length = length? as usize;
        let mut packet = vec![0u8; length];
        tokio::time::timeout(idle, stream.read_exact(&mut packet))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let reply = match handler.handle(&packet, false) {
            Outcome::Reply(bytes) => bytes,
            Outcome::Drop => return Ok(()),
            Outcome::Forward(request) => match handler.forward(request, false).await {
                Some(bytes) => bytes,
                None => return Ok(()),
            },
        };
        let length = u16::try_from(reply.len()).map_err(std::io::Error::other)?;
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}
