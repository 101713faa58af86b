//! Joining nodes: the server's join token, the two HTTPS endpoints an agent uses (`/cacerts`, public, and
//! `/v1-skiff/join`, which needs the token), and the agent's side that turns a token into node credentials.
//!
//! The token has k3s's secure format, `K10<sha256 of the CA certificate>::server:<secret>`: the agent fetches
//! the CA without trusting anyone, checks its hash against the token, and only then sends the secret over TLS
//! verified by that CA. The server answers with a client certificate `CN=system:node:<name>, O=system:nodes`
//! and a kubelet serving certificate, both signed by the cluster CA. A node name is bound to the first
//! agent that claims it by a node password (like k3s's node-password secret): a second machine presenting
//! the token under the same name but another password is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The prefix of secure tokens (k3s's format version 10).
const TOKEN_PREFIX: &str = "K10";

/// The parts of a join token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Hex sha256 of the CA certificate PEM; `None` for a bare secret (then the CA cannot be verified).
    pub ca_hash: Option<String>,
    pub secret: String,
}

impl Token {
    pub fn parse(s: &str) -> anyhow::Result<Token> {
        let s = s.trim();
        if s.is_empty() {
            bail!("the join token is empty");
        }
        if let Some(rest) = s.strip_prefix(TOKEN_PREFIX)
            && let Some((hash, creds)) = rest.split_once("::")
        {
            let secret = creds.split_once(':').map(|(_, p)| p).unwrap_or(creds);
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("the join token's CA hash must be 64 hex digits (K10<hash>::server:<secret>)");
            }
            if secret.is_empty() {
                bail!("the join token has no secret after ::server:");
            }
            return Ok(Token { ca_hash: Some(hash.to_ascii_lowercase()), secret: secret.to_string() });
        }
        Ok(Token { ca_hash: None, secret: s.to_string() })
    }

    pub fn render(&self) -> String {
        match &self.ca_hash {
            Some(h) => format!("{TOKEN_PREFIX}{h}::server:{}", self.secret),
            None => self.secret.clone(),
        }
    }
}

/// Hex sha256 of a CA certificate's PEM text, as the token carries it.
pub fn ca_hash(ca_pem: &str) -> String {
    hex::encode(Sha256::digest(ca_pem.as_bytes()))
}

/// The server's token: `<data>/token` when it exists, else one made from `--token` (or a new random secret),
/// written with mode 0600.
pub fn load_or_create_token(data_dir: &Path, ca_pem: &str, given: Option<&str>) -> anyhow::Result<Token> {
    let path = data_dir.join("token");
    let hash = ca_hash(ca_pem);
    let secret = match (given, std::fs::read_to_string(&path)) {
        (Some(g), _) => Token::parse(g)?.secret,
        (None, Ok(existing)) => Token::parse(&existing).with_context(|| format!("{} holds no valid token", path.display()))?.secret,
        (None, Err(_)) => hex::encode(rand::random::<[u8; 16]>()),
    };
    let token = Token { ca_hash: Some(hash), secret };
    write_private(&path, format!("{}\n", token.render()).as_bytes())?;
    Ok(token)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp).with_context(|| format!("failed to write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(())
}

/// What an agent sends to `/v1-skiff/join`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub node_name: String,
    /// Addresses for the kubelet's serving certificate.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The agent's node password (binds the node name to this agent).
    pub password: String,
}

/// What the server answers: PEM texts.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    pub ca: String,
    pub client_cert: String,
    pub client_key: String,
    pub serving_cert: String,
    pub serving_key: String,
    /// The cluster's network settings, which agents take instead of their own defaults.
    #[serde(default)]
    pub cluster: Option<ClusterNetwork>,
}

/// The network settings a server tells joining agents (k3s agents learn them from the server as well).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetwork {
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub cluster_dns: String,
    pub cluster_domain: String,
}

/// The server side of joining.
pub struct JoinService {
    pub ca: Arc<skiff_pki::Ca>,
    pub token: Token,
    /// `<data>/server/tls/nodes`: issued node certificates, one folder per node.
    pub nodes_dir: PathBuf,
    /// `<data>/server/cred/node-passwords.json`: node name → sha256 of its password.
    pub passwords_file: PathBuf,
    /// Sent to every agent that joins.
    pub cluster: Option<ClusterNetwork>,
    lock: Mutex<()>,
}

impl JoinService {
    pub fn new(ca: Arc<skiff_pki::Ca>, token: Token, data_dir: &Path) -> Self {
        JoinService {
            ca,
            token,
            nodes_dir: data_dir.join("server").join("tls").join("nodes"),
            passwords_file: data_dir.join("server").join("cred").join("node-passwords.json"),
            cluster: None,
            lock: Mutex::new(()),
        }
    }

    /// The routes, to merge in front of the API router: they are served before its authentication.
    pub fn routes(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/cacerts", axum::routing::get(cacerts))
            .route("/v1-skiff/join", axum::routing::post(join))
            .with_state(self)
    }

    /// Issues (or reuses) the credentials of a node, checking the token secret and the node password.
    pub fn issue(&self, presented_secret: &str, req: &JoinRequest) -> Result<JoinResponse, (StatusCode, String)> {
        if !constant_time_eq(presented_secret.as_bytes(), self.token.secret.as_bytes()) {
            return Err((StatusCode::UNAUTHORIZED, "the join token is not this server's".into()));
        }
        if let Some(reason) = invalid_node_name(&req.node_name) {
            return Err((StatusCode::BAD_REQUEST, format!("invalid node name {:?}: {reason}", req.node_name)));
        }
        if req.password.len() < 16 {
            return Err((StatusCode::BAD_REQUEST, "the node password must be at least 16 characters".into()));
        }
        let internal = |e: anyhow::Error| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut passwords: BTreeMap<String, String> = match std::fs::read(&self.passwords_file) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| internal(anyhow::anyhow!("{} is corrupt: {e}", self.passwords_file.display())))?,
            Err(_) => BTreeMap::new(),
        };
        let hash = hex::encode(Sha256::digest(req.password.as_bytes()));
        match passwords.get(&req.node_name) {
            Some(known) if !constant_time_eq(known.as_bytes(), hash.as_bytes()) => {
                return Err((
                    StatusCode::FORBIDDEN,
                    format!("node {:?} is already joined by another agent (its node password differs); pick another --node-name or remove the old node's entry", req.node_name),
                ));
            }
            Some(_) => {}
            None => {
                passwords.insert(req.node_name.clone(), hash);
                write_private(&self.passwords_file, &serde_json::to_vec_pretty(&passwords).expect("a map serializes")).map_err(internal)?;
            }
        }
        let dir = self.nodes_dir.join(&req.node_name);
        let user = format!("system:node:{}", req.node_name);
        let client = self.ca.issue_client(&dir, "client-kubelet", &user, &["system:nodes".to_string()]).map_err(|e| internal(e.into()))?;
        let mut sans = vec![req.node_name.clone()];
        sans.extend(req.addresses.iter().filter(|a| !a.is_empty()).cloned());
        let serving = self.ca.issue_serving(&dir, "serving-kubelet", &sans).map_err(|e| internal(e.into()))?;
        let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("failed to read {}", p.display())).map_err(internal);
        Ok(JoinResponse {
            ca: self.ca.cert_pem().to_string(),
            client_cert: read(&client.cert)?,
            client_key: read(&client.key)?,
            serving_cert: read(&serving.cert)?,
            serving_key: read(&serving.key)?,
            cluster: self.cluster.clone(),
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why `name` is not a valid node name (a DNS-1123 subdomain), if it is not.
fn invalid_node_name(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 253 {
        return Some("must be 1 to 253 characters");
    }
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.split('.').all(ok_label) {
        return Some("must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character");
    }
    None
}

async fn cacerts(State(svc): State<Arc<JoinService>>) -> Response {
    ([("content-type", "application/x-pem-file")], svc.ca.cert_pem().to_string()).into_response()
}

async fn join(State(svc): State<Arc<JoinService>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let secret = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    let req: JoinRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("the join request is not valid JSON: {e}")).into_response(),
    };
    let svc2 = svc.clone();
    let secret = secret.to_string();
    let node = req.node_name.clone();
    match tokio::task::spawn_blocking(move || svc2.issue(&secret, &req)).await {
        Ok(Ok(resp)) => {
            tracing::info!(node = %node, "issued node credentials");
            Json(resp).into_response()
        }
        Ok(Err((code, msg))) => {
            tracing::warn!(node = %node, status = code.as_u16(), reason = %msg, "refused a join request");
            (code, msg).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_render() {
        let hash = "a".repeat(64);
        let t = Token::parse(&format!("K10{hash}::server:s3cret")).unwrap();
        assert_eq!(t, Token { ca_hash: Some(hash.clone()), secret: "s3cret".into() });
        assert_eq!(Token::parse(&t.render()).unwrap(), t);
        assert_eq!(Token::parse("plain").unwrap(), Token { ca_hash: None, secret: "plain".into() });
        assert!(Token::parse("K10abc::server:x").unwrap_err().to_string().contains("64 hex digits"));
        assert!(Token::parse("  ").is_err());
    }

    #[test]
    fn node_names_are_dns_subdomains() {
        assert!(invalid_node_name("node-1.lab").is_none());
        assert!(invalid_node_name("Node").is_some());
        assert!(invalid_node_name("-a").is_some());
        assert!(invalid_node_name("").is_some());
        assert!(invalid_node_name("a..b").is_some());
    }

    fn service(dir: &Path) -> JoinService {
        let ca = Arc::new(skiff_pki::Ca::load_or_create(&dir.join("server/tls")).unwrap());
        let token = load_or_create_token(dir, ca.cert_pem(), None).unwrap();
        JoinService::new(ca, token, dir)
    }

    #[test]
    fn token_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let again = load_or_create_token(dir.path(), svc.ca.cert_pem(), None).unwrap();
        assert_eq!(again, svc.token);
        assert_eq!(svc.token.ca_hash.as_deref(), Some(ca_hash(svc.ca.cert_pem()).as_str()));
        let mode = std::fs::metadata(dir.path().join("token")).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions())).unwrap();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn join_issues_node_credentials_and_binds_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let req = JoinRequest { node_name: "edge-1".into(), addresses: vec!["10.0.0.5".into()], password: "p".repeat(32) };
        let resp = svc.issue(&svc.token.secret, &req).unwrap();
        let der = skiff_pki::read_cert_chain(&svc.nodes_dir.join("edge-1/client-kubelet.crt")).unwrap();
        let (user, groups) = skiff_pki::identity_from_der(&der[0]).unwrap();
        assert_eq!(user, "system:node:edge-1");
        assert_eq!(groups, vec!["system:nodes".to_string()]);
        assert!(resp.serving_cert.contains("BEGIN CERTIFICATE"));
        assert!(resp.client_key.contains("PRIVATE KEY"));

        // The same agent may come back; another password under the same name may not.
        assert!(svc.issue(&svc.token.secret, &req).is_ok());
        let other = JoinRequest { password: "q".repeat(32), ..req };
        let (code, msg) = svc.issue(&svc.token.secret, &other).unwrap_err();
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert!(msg.contains("already joined"), "{msg}");

        let (code, _) = svc.issue("wrong", &JoinRequest { node_name: "edge-2".into(), addresses: vec![], password: "p".repeat(32) }).unwrap_err();
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        let (code, msg) = svc.issue(&svc.token.secret, &JoinRequest { node_name: "Bad_Name".into(), addresses: vec![], password: "p".repeat(32) }).unwrap_err();
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(msg.contains("invalid node name"), "{msg}");
    }

    #[tokio::test]
    async fn an_agent_joins_over_https_and_a_wrong_ca_hash_is_refused() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let mut svc = service(dir.path());
        let network = ClusterNetwork { cluster_cidr: "10.42.0.0/16".into(), service_cidr: "10.43.0.0/16".into(), cluster_dns: "10.43.0.10".into(), cluster_domain: "cluster.local".into() };
        svc.cluster = Some(network.clone());
        let svc = Arc::new(svc);
        let tls_dir = dir.path().join("server/tls");
        let serving = svc.ca.issue_serving(&tls_dir, "serving", &["127.0.0.1".to_string()]).unwrap();
        let tls = skiff_apiserver::tls::server_config(&serving.cert, &serving.key, &svc.ca.paths().cert).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(skiff_apiserver::tls::serve(listener, tls, svc.clone().routes(), shutdown.clone()));
        let url = format!("https://127.0.0.1:{port}");

        let agent = tempfile::tempdir().unwrap();
        let creds = obtain_credentials(&url, &svc.token, agent.path(), "edge-1", &["127.0.0.1".into()]).await.unwrap();
        let der = skiff_pki::read_cert_chain(&creds.client_cert).unwrap();
        assert_eq!(skiff_pki::identity_from_der(&der[0]).unwrap().0, "system:node:edge-1");
        assert_eq!(creds.cluster.as_ref(), Some(&network), "the agent learns the cluster's network");
        assert_eq!(std::fs::read_to_string(&creds.ca).unwrap(), svc.ca.cert_pem());
        // Joining again from the same agent works (same node password).
        obtain_credentials(&url, &svc.token, agent.path(), "edge-1", &[]).await.unwrap();

        let forged = Token { ca_hash: Some("0".repeat(64)), secret: svc.token.secret.clone() };
        let err = obtain_credentials(&url, &forged, agent.path(), "edge-1", &[]).await.unwrap_err();
        assert!(format!("{err:#}").contains("does not match the token"), "{err:#}");
        let wrong = Token { ca_hash: svc.token.ca_hash.clone(), secret: "nope".into() };
        let err = obtain_credentials(&url, &wrong, agent.path(), "edge-2", &[]).await.unwrap_err();
        assert!(format!("{err:#}").contains("not this server's"), "{err:#}");
        shutdown.cancel();
        let _ = server.await;
    }
}

/// Where an agent keeps what joining gave it (`<data>/agent/tls`).
#[derive(Clone, Debug)]
pub struct AgentCredentials {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// The server's network settings (None from a server that does not send them).
    pub cluster: Option<ClusterNetwork>,
}

impl AgentCredentials {
    pub fn in_dir(dir: &Path) -> Self {
        AgentCredentials {
            ca: dir.join("ca.crt"),
            client_cert: dir.join("client-kubelet.crt"),
            client_key: dir.join("client-kubelet.key"),
            serving_cert: dir.join("serving-kubelet.crt"),
            serving_key: dir.join("serving-kubelet.key"),
            cluster: None,
        }
    }
}

/// The agent's side: fetches the server's CA, checks it against the token, joins, and writes the
/// credentials under `<data>/agent/tls`. The node password is created once in `<data>/agent/node-password`.
pub async fn obtain_credentials(server: &str, token: &Token, data_dir: &Path, node_name: &str, addresses: &[String]) -> anyhow::Result<AgentCredentials> {
    let url: url::Url = server.parse().with_context(|| format!("--server {server:?} is not a URL"))?;
    if url.scheme() != "https" {
        bail!("--server must be an https:// URL (got {server})");
    }
    let host = url.host_str().context("--server has no host")?.to_string();
    let port = url.port().unwrap_or(6443);
    let agent_dir = data_dir.join("agent");
    let password_path = agent_dir.join("node-password");
    let password = match std::fs::read_to_string(&password_path) {
        Ok(p) if p.trim().len() >= 16 => p.trim().to_string(),
        _ => {
            let p = hex::encode(rand::random::<[u8; 24]>());
            write_private(&password_path, p.as_bytes())?;
            p
        }
    };

    // 1. The CA, fetched without trust and then checked against the token's hash.
    let ca_pem = https_request(&host, port, None, "GET", "/cacerts", None, None).await.with_context(|| format!("failed to fetch the CA from {server}"))?;
    match &token.ca_hash {
        Some(h) if *h != ca_hash(&ca_pem) => bail!("the server at {server} presented a CA whose hash does not match the token: refusing to join"),
        Some(_) => {}
        None => tracing::warn!("the token has no CA hash (K10<hash>::server:<secret>); the server's CA is trusted without verification"),
    }

    // 2. The node credentials, over TLS verified by that CA.
    let body = serde_json::to_vec(&JoinRequest { node_name: node_name.to_string(), addresses: addresses.to_vec(), password })?;
    let answer = https_request(&host, port, Some(&ca_pem), "POST", "/v1-skiff/join", Some(&token.secret), Some(body)).await.with_context(|| format!("{server} refused to join node {node_name}"))?;
    let resp: JoinResponse = serde_json::from_str(&answer).context("the server's join answer is not valid")?;
    let mut creds = AgentCredentials::in_dir(&agent_dir.join("tls"));
    creds.cluster = resp.cluster.clone();
    std::fs::create_dir_all(agent_dir.join("tls"))?;
    std::fs::write(&creds.ca, &resp.ca)?;
    std::fs::write(&creds.client_cert, &resp.client_cert)?;
    write_private(&creds.client_key, resp.client_key.as_bytes())?;
    std::fs::write(&creds.serving_cert, &resp.serving_cert)?;
    write_private(&creds.serving_key, resp.serving_key.as_bytes())?;
    Ok(creds)
}

/// One HTTPS/1.1 request; `ca_pem: None` accepts any server certificate (only for fetching `/cacerts`,
/// whose answer is checked against the token). Non-2xx answers become errors carrying the body.
async fn https_request(host: &str, port: u16, ca_pem: Option<&str>, method: &str, path: &str, bearer: Option<&str>, body: Option<Vec<u8>>) -> anyhow::Result<String> {
    use http_body_util::{BodyExt, Full};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let config = match ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for der in rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes()) {
                roots.add(der.context("the CA is not valid PEM")?)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider))).with_no_client_auth(),
    };
    let tcp = tokio::time::timeout(std::time::Duration::from_secs(10), tokio::net::TcpStream::connect((host, port)))
        .await
        .with_context(|| format!("timed out connecting to {host}:{port}"))?
        .with_context(|| format!("failed to connect to {host}:{port}"))?;
    let name = rustls_pki_types::ServerName::try_from(host.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().method(method).uri(path).header("host", host);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}")).header("content-type", "application/json");
    }
    let resp = sender.send_request(req.body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))?).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if !status.is_success() {
        bail!("{status}: {text}");
    }
    Ok(text)
}

/// Accepts any server certificate; used only to fetch the CA, which is then checked against the token.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &rustls_pki_types::CertificateDer<'_>, d: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &rustls_pki_types::CertificateDer<'_>, d: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
