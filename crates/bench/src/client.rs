//! The benchmark's HTTPS client: one TLS connection per simulated client, authenticated with the admin
//! client certificate, speaking HTTP/2 when the server offers it through ALPN (HTTP/1.1 keep-alive otherwise).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The Accept header that asks for server-side printed tables.
pub const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// Reads the cluster CA and the admin's client certificate and key that `skiff server` wrote under
/// `tls_dir`. Fails while the files are missing or half written.
pub fn tls_config(tls_dir: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let read = |name: &str| {
        let path = tls_dir.join(name);
        std::fs::read(&path).with_context(|| format!("failed to read {}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read("ca.crt")?) {
        roots
            .add(cert.context("failed to parse ca.crt")?)
            .context("failed to add the cluster CA")?;
    }
    if roots.is_empty() {
        bail!("ca.crt holds no certificate yet");
    }
    let chain = CertificateDer::pem_slice_iter(&read("client-admin.crt")?)
        .collect::<Result<Vec<_>, _>>()
        .context("failed to parse client-admin.crt")?;
    if chain.is_empty() {
        bail!("client-admin.crt holds no certificate yet");
    }
    let key = PrivateKeyDer::from_pem_slice(&read("client-admin.key")?)
        .context("failed to parse client-admin.key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("failed to select TLS versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("failed to use the admin client certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One client connection to the API server on 127.0.0.1.
pub struct Conn {
    sender: Sender,
    authority: String,
}

/// Why a connection attempt failed: the TCP connect (server not listening yet) or later (TLS, HTTP).
pub enum ConnectError {
    Refused(std::io::Error),
    Other(anyhow::Error),
}

impl Conn {
    pub async fn connect(port: u16, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<Conn> {
        Self::try_connect(port, tls).await.map_err(|e| match e {
            ConnectError::Refused(e) => {
                anyhow::Error::new(e).context(format!("failed to connect to 127.0.0.1:{port}"))
            }
            ConnectError::Other(e) => e,
        })
    }

    pub async fn try_connect(
        port: u16,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Conn, ConnectError> {
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(ConnectError::Refused)?;
        tcp.set_nodelay(true)
            .map_err(|e| ConnectError::Other(e.into()))?;
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        let stream = TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| {
                ConnectError::Other(anyhow::Error::new(e).context("TLS handshake failed"))
            })?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        let sender = if h2 {
            let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .adaptive_window(true)
                .handshake(io)
                .await
                .map_err(|e| {
                    ConnectError::Other(anyhow::Error::new(e).context("HTTP/2 handshake failed"))
                })?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Sender::Http2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| {
                    ConnectError::Other(anyhow::Error::new(e).context("HTTP/1.1 handshake failed"))
                })?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Sender::Http1(sender)
        };
        Ok(Conn {
            sender,
            authority: format!("127.0.0.1:{port}"),
        })
    }

    /// Sends a request and returns the response with its body still streaming.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        body: Option<Bytes>,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut builder = Request::builder().method(method);
        builder = match self.sender {
            Sender::Http2(_) => builder.uri(format!("https://{}{path}", self.authority)),
            Sender::Http1(_) => builder.uri(path).header(header::HOST, &self.authority),
        };
        builder = builder.header(header::ACCEPT, accept.unwrap_or("application/json"));
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .context("failed to build a request")?;
        let response = match &mut self.sender {
            Sender::Http1(sender) => {
                sender.ready().await.context("the connection closed")?;
                sender.send_request(request).await
            }
            Sender::Http2(sender) => {
                sender.ready().await.context("the connection closed")?;
                sender.send_request(request).await
            }
        };
        response.with_context(|| format!("request to {path} failed"))
    }

    /// Sends a request, reads the whole body, and fails unless the status is `want`.
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        body: Option<Bytes>,
        want: StatusCode,
    ) -> anyhow::Result<Bytes> {
        let response = self.send(method.clone(), path, accept, body).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("failed to read the response to {method} {path}"))?
            .to_bytes();
        if status != want {
            bail!(
                "{method} {path} answered {status}, expected {want}: {}",
                String::from_utf8_lossy(&body[..body.len().min(2000)])
            );
        }
        Ok(body)
    }
}
