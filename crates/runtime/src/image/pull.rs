//! Pulling images from OCI and Docker registries (oci-client) into the [`ImageStore`]: Docker-style name
//! normalisation, the endpoints of `registries.yaml` (mirrors, then the registry), the OCI and Docker v2
//! manifest types in `Accept`, an image index narrowed to the host's platform, blobs checked against their
//! digests, and the result imported through the store's own checks and unpacking (layers unpacked once).
//! Concurrent pulls of the same image share one download. Connect and read time-outs bound a registry
//! that does not answer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::{Client, Reference};
use serde_json::json;

use super::ImageStore;
use super::reference;
use super::registries::{Credentials, Endpoint, RegistriesConfig};

/// Manifest types asked for, in this order: a registry answering without an OCI type in `Accept` hides OCI
/// manifests (distribution 2.8 answers 404), and without the Docker v2 types it down-converts to schema 1.
pub const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Settings of the puller.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Time allowed to open a connection to a registry.
    pub connect_timeout: Duration,
    /// Time allowed between two reads from a registry (a registry that accepts and never answers fails after
    /// this long).
    pub read_timeout: Duration,
    /// The platform picked from an image index (Go's names: `linux`, `amd64`).
    pub os: String,
    pub architecture: String,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            os: "linux".into(),
            architecture: host_architecture().into(),
        }
    }
}

/// Go's name for the host's architecture.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Why a pull failed. Messages carry the registry's own words (`manifest unknown`, `unauthorized`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// Every endpoint failed; the message names each endpoint and what it answered.
    #[error("{0}")]
    Registry(String),
    /// The download worked but the store refused or failed to keep the image.
    #[error("failed to store the image: {0}")]
    Store(String),
}

/// A pulled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The normalised name it is stored under.
    pub name: String,
    /// Digest of the platform's image manifest.
    pub manifest_digest: String,
    /// Digest of the config: the image id.
    pub config_digest: String,
}

type SharedPull = Shared<BoxFuture<'static, Result<PulledImage, PullError>>>;

/// Pulls images into a store. Cheap to clone; clones share in-flight pulls.
#[derive(Clone)]
pub struct Puller {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<ImageStore>,
    registries: RegistriesConfig,
    options: PullOptions,
    inflight: Mutex<HashMap<String, SharedPull>>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("store", &self.inner.store.root())
            .field("options", &self.inner.options)
            .finish()
    }
}

impl Puller {
    pub fn new(
        store: Arc<ImageStore>,
        registries: RegistriesConfig,
        options: PullOptions,
    ) -> Puller {
        // oci-client's HTTP client uses rustls without a built-in provider: make sure one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Puller {
            inner: Arc::new(Inner {
                store,
                registries,
                options,
                inflight: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn store(&self) -> &Arc<ImageStore> {
        &self.inner.store
    }

    /// Pulls `image` (normalised like Docker) and stores it under its normalised name. `credentials`
    /// (from the pod's `imagePullSecrets`) take precedence over `registries.yaml`. A pull of the same image
    /// with the same credentials already under way is joined rather than repeated. Must be called within a
    /// Tokio runtime (the pull runs as its own task and finishes even if the caller goes away).
    pub async fn pull(
        &self,
        image: &str,
        credentials: Option<&Credentials>,
    ) -> Result<PulledImage, PullError> {
        let name = reference::normalize(image).map_err(|reason| PullError::InvalidReference {
            reference: image.to_string(),
            reason,
        })?;
        let key = match credentials {
            None => name.clone(),
            Some(Credentials::Basic { username, password }) => {
                format!(
                    "{name}\n{username}\n{}",
                    hex::encode(sha2::Sha256::digest(password.as_bytes()))
                )
            }
            Some(Credentials::Bearer(t)) => format!(
                "{name}\n\n{}",
                hex::encode(sha2::Sha256::digest(t.as_bytes()))
            ),
        };
        let shared = {
            let mut inflight = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match inflight.get(&key) {
                Some(f) => {
                    tracing::debug!(image = %name, "joining a pull under way");
                    f.clone()
                }
                None => {
                    let inner = self.inner.clone();
                    let creds = credentials.cloned();
                    let task_key = key.clone();
                    // The entry is inserted before the task can remove it: the lock is held until then.
                    let handle = tokio::spawn(async move {
                        let result = inner.pull_uncached(&name, creds.as_ref()).await;
                        inner
                            .inflight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&task_key);
                        result
                    });
                    let f = async move {
                        handle.await.unwrap_or_else(|e| {
                            Err(PullError::Registry(format!("the pull task failed: {e}")))
                        })
                    }
                    .boxed()
                    .shared();
                    inflight.insert(key, f.clone());
                    f
                }
            }
        };
        shared.await
    }
}

use sha2::Digest as _;

/// A failure at one endpoint.
enum Failure {
    /// Try the next endpoint.
    Endpoint(String),
    /// Stop: the store failed.
    Store(String),
}

impl Inner {
    async fn pull_uncached(
        &self,
        name: &str,
        credentials: Option<&Credentials>,
    ) -> Result<PulledImage, PullError> {
        let parts = split_reference(name);
        let endpoints = self
            .registries
            .endpoints(&parts.registry, &parts.repository);
        let mut failures = Vec::new();
        for ep in &endpoints {
            let creds = credentials.or(ep.credentials.as_ref());
            match self.pull_from(name, &parts, ep, creds).await {
                Ok(p) => {
                    tracing::info!(image = %name, endpoint = %ep.url(), digest = %p.manifest_digest, "pulled image");
                    return Ok(p);
                }
                Err(Failure::Store(m)) => return Err(PullError::Store(m)),
                Err(Failure::Endpoint(m)) => {
                    tracing::warn!(image = %name, endpoint = %ep.url(), error = %m, "pull failed at an endpoint");
                    failures.push(m);
                }
            }
        }
        Err(PullError::Registry(failures.join("; ")))
    }

    fn client(&self, ep: &Endpoint) -> Result<Client, String> {
        let mut extra_root_certificates = Vec::new();
        if let Some(ca) = &ep.ca_file {
            let data = std::fs::read(ca).map_err(|e| {
                format!(
                    "failed to read the CA file {} for {}: {e}",
                    ca.display(),
                    ep.host
                )
            })?;
            extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let config = ClientConfig {
            protocol: if ep.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: ep.insecure_skip_verify,
            extra_root_certificates,
            platform_resolver: None,
            read_timeout: Some(self.options.read_timeout),
            connect_timeout: Some(self.options.connect_timeout),
            user_agent: concat!("skiff/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        Client::try_from(config)
            .map_err(|e| format!("failed to set up an HTTP client for {}: {e}", ep.host))
    }

    async fn pull_from(
        &self,
        name: &str,
        parts: &RefParts,
        ep: &Endpoint,
        creds: Option<&Credentials>,
    ) -> Result<PulledImage, Failure> {
        let client = self.client(ep).map_err(Failure::Endpoint)?;
        let mut reference = match (&parts.tag, &parts.digest) {
            (Some(t), Some(d)) => Reference::with_tag_and_digest(
                parts.registry.clone(),
                ep.repository.clone(),
                t.clone(),
                d.clone(),
            ),
            (None, Some(d)) => {
                Reference::with_digest(parts.registry.clone(), ep.repository.clone(), d.clone())
            }
            (t, None) => Reference::with_tag(
                parts.registry.clone(),
                ep.repository.clone(),
                t.clone().unwrap_or_else(|| "latest".into()),
            ),
        };
        if ep.mirror {
            // Mirrors get `?ns=<registry>`, as containerd sends it.
            reference.set_mirror_registry(ep.host.clone());
        }
        let auth = match creds {
            None => oci_client::secrets::RegistryAuth::Anonymous,
            Some(Credentials::Basic { username, password }) => {
                oci_client::secrets::RegistryAuth::Basic(username.clone(), password.clone())
            }
            Some(Credentials::Bearer(t)) => oci_client::secrets::RegistryAuth::Bearer(t.clone()),
        };
        let what = format!("failed to resolve reference {name:?} at {}", ep.url());
        let (mut body, mut digest) = self
            .manifest(&client, &reference, &auth)
            .await
            .map_err(|e| Failure::Endpoint(format!("{what}: {e}")))?;
        let mut media_type =
            manifest_media_type(&body).map_err(|e| Failure::Endpoint(format!("{what}: {e}")))?;
        if media_type == OCI_INDEX || media_type == DOCKER_LIST {
            let chosen = self
                .pick_platform(&body)
                .map_err(|e| Failure::Endpoint(format!("{what}: index {digest}: {e}")))?;
            reference = reference.clone_with_digest(chosen.clone());
            let (b, d) = self
                .manifest(&client, &reference, &auth)
                .await
                .map_err(|e| Failure::Endpoint(format!("{what}: manifest {chosen}: {e}")))?;
            if d != chosen {
                return Err(Failure::Endpoint(format!(
                    "{what}: manifest {chosen} came back with digest {d}"
                )));
            }
            (body, digest) = (b, d);
            media_type = manifest_media_type(&body)
                .map_err(|e| Failure::Endpoint(format!("{what}: {e}")))?;
        }
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(Failure::Endpoint(format!(
                "{what}: the registry sent a manifest of type {media_type}, which is not supported"
            )));
        }
        let manifest: OciImageManifest = serde_json::from_slice(&body).map_err(|e| {
            Failure::Endpoint(format!("{what}: the manifest {digest} is not valid: {e}"))
        })?;

        let store = self.store.clone();
        let staging = store
            .staging_dir("pull")
            .map_err(|e| Failure::Store(e.to_string()))?;
        let result = self
            .download(&client, &reference, ep, &manifest, &staging)
            .await
            .map_err(Failure::Endpoint);
        let result = match result {
            Ok(()) => write_layout(&staging, name, &media_type, &body, &digest)
                .map_err(|e| Failure::Store(format!("failed to stage the image: {e}"))),
            Err(e) => Err(e),
        };
        let result = match result {
            Ok(()) => {
                let dir = staging.clone();
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.import_layout_dir(&dir))
                    .await
                    .map_err(|e| Failure::Store(format!("the import task failed: {e}")))
                    .and_then(|r| r.map_err(|e| Failure::Store(e.to_string())))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = tokio::fs::remove_dir_all(&staging).await {
            tracing::warn!(dir = %staging.display(), error = %e, "failed to remove the pull's staging directory");
        }
        result?;
        Ok(PulledImage {
            name: name.to_string(),
            manifest_digest: digest,
            config_digest: manifest.config.digest.clone(),
        })
    }

    /// Fetches a manifest within connect + read time-out in all. oci-client first probes `/v2/` and ignores a
    /// failure there, so a registry that never answers would otherwise hold the pull for two read time-outs.
    async fn manifest(
        &self,
        client: &Client,
        reference: &Reference,
        auth: &oci_client::secrets::RegistryAuth,
    ) -> Result<(bytes::Bytes, String), String> {
        let limit = self.options.connect_timeout + self.options.read_timeout;
        match tokio::time::timeout(limit, client.pull_manifest_raw(reference, auth, ACCEPT)).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(describe(&e, &self.options)),
            Err(_) => Err(format!(
                "timed out: the registry did not answer within {limit:?}"
            )),
        }
    }

    /// Fetches the config and layers into `staging/blobs/sha256`, reusing blobs the store already has.
    async fn download(
        &self,
        client: &Client,
        reference: &Reference,
        ep: &Endpoint,
        manifest: &OciImageManifest,
        staging: &Path,
    ) -> Result<(), String> {
        let blobs = staging.join("blobs/sha256");
        tokio::fs::create_dir_all(&blobs)
            .await
            .map_err(|e| format!("failed to create {}: {e}", blobs.display()))?;
        for desc in std::iter::once(&manifest.config).chain(&manifest.layers) {
            let dest = blob_dest(&blobs, desc)?;
            if let Some(have) = self.store.blob(&desc.digest)
                && (std::fs::hard_link(&have, &dest).is_ok() || std::fs::copy(&have, &dest).is_ok())
            {
                tracing::debug!(digest = %desc.digest, "blob already in the store");
                continue;
            }
            let file = tokio::fs::File::create(&dest)
                .await
                .map_err(|e| format!("failed to create {}: {e}", dest.display()))?;
            // oci-client checks the content against the descriptor's digest (and the registry's digest header).
            client.pull_blob(reference, desc, file).await.map_err(|e| {
                format!(
                    "failed to fetch blob {} from {}: {}",
                    desc.digest,
                    ep.url(),
                    describe(&e, &self.options)
                )
            })?;
        }
        Ok(())
    }

    /// The digest of the host platform's manifest in an image index.
    fn pick_platform(&self, body: &[u8]) -> Result<String, String> {
        let index: oci_client::manifest::OciImageIndex =
            serde_json::from_slice(body).map_err(|e| format!("not a valid image index: {e}"))?;
        let (os, arch) = (&self.options.os, &self.options.architecture);
        let matching: Vec<_> = index
            .manifests
            .iter()
            .filter(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os.to_string() == *os && p.architecture.to_string() == *arch)
            })
            .collect();
        // For arm64 prefer the v8 variant (or none) like containerd; otherwise the first match.
        let chosen = matching
            .iter()
            .find(|m| {
                m.platform.as_ref().is_some_and(|p| {
                    p.variant
                        .as_deref()
                        .is_none_or(|v| v == "v8" || arch != "arm64")
                })
            })
            .or(matching.first())
            .ok_or_else(|| {
                let have: Vec<String> = index
                    .manifests
                    .iter()
                    .filter_map(|m| {
                        m.platform
                            .as_ref()
                            .map(|p| format!("{}/{}", p.os, p.architecture))
                    })
                    .collect();
                format!(
                    "no manifest for {os}/{arch} (the index has {})",
                    have.join(", ")
                )
            })?;
        Ok(chosen.digest.clone())
    }
}

fn blob_dest(blobs: &Path, desc: &OciDescriptor) -> Result<PathBuf, String> {
    let hex = desc
        .digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| {
            format!(
                "the manifest names blob {:?}, which is not a sha256 digest",
                desc.digest
            )
        })?;
    Ok(blobs.join(hex))
}

/// Writes the manifest, `index.json` (naming the image) and `oci-layout` beside the downloaded blobs.
fn write_layout(
    staging: &Path,
    name: &str,
    media_type: &str,
    manifest: &[u8],
    digest: &str,
) -> std::io::Result<()> {
    let hex = digest.trim_start_matches("sha256:");
    std::fs::write(staging.join("blobs/sha256").join(hex), manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": media_type,
            "digest": digest,
            "size": manifest.len(),
            "annotations": {"io.containerd.image.name": name},
        }],
    });
    std::fs::write(staging.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(
        staging.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
}

/// The manifest's media type, from its `mediaType` field or its shape.
fn manifest_media_type(body: &[u8]) -> Result<String, String> {
    let doc: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("the registry sent a manifest that is not JSON: {e}"))?;
    if doc.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Err("the registry sent a Docker schema 1 manifest, which is not supported".into());
    }
    if let Some(t) = doc.get("mediaType").and_then(|v| v.as_str()) {
        return Ok(t.to_string());
    }
    Ok(if doc.get("manifests").is_some() {
        OCI_INDEX
    } else {
        OCI_MANIFEST
    }
    .to_string())
}

/// A normalised reference's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefParts {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Splits a normalised reference (`docker.io/library/busybox:1@sha256:...`).
pub(crate) fn split_reference(name: &str) -> RefParts {
    let (rest, digest) = match name.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (name, None),
    };
    let (registry, path) = rest.split_once('/').unwrap_or(("docker.io", rest));
    let (repository, tag) = match path.rsplit_once(':') {
        Some((r, t)) => (r.to_string(), Some(t.to_string())),
        None => (path.to_string(), None),
    };
    RefParts {
        registry: registry.to_string(),
        repository,
        tag,
        digest,
    }
}

/// A registry error in the words a Kubernetes user expects (`manifest unknown`, `unauthorized`, time-outs).
fn describe(e: &OciDistributionError, options: &PullOptions) -> String {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => {
            let msgs: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| {
                    if e.message.is_empty() {
                        format!("{:?}", e.code)
                    } else {
                        e.message.clone()
                    }
                })
                .collect();
            if msgs.is_empty() {
                "the registry answered with an error".into()
            } else {
                msgs.join("; ")
            }
        }
        OciDistributionError::ServerError { code, message, .. } => {
            let message = message.trim();
            if message.is_empty() {
                format!("the registry answered {code}")
            } else {
                format!("the registry answered {code}: {message}")
            }
        }
        OciDistributionError::UnauthorizedError { .. } => {
            "unauthorized: authentication required".into()
        }
        OciDistributionError::AuthenticationFailure(reason) => {
            format!("authentication failed: {reason}")
        }
        OciDistributionError::RequestError(re) => {
            let mut chain = re.to_string();
            let mut source = std::error::Error::source(re);
            while let Some(s) = source {
                chain.push_str(&format!(": {s}"));
                source = s.source();
            }
            if re.is_timeout() {
                format!(
                    "timed out: no answer within {:?} (connect time-out {:?}): {chain}",
                    options.read_timeout, options.connect_timeout
                )
            } else if re.is_connect() {
                format!("cannot connect to the registry: {chain}")
            } else {
                chain
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_normalised_references() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            split_reference("docker.io/library/busybox:latest"),
            RefParts {
                registry: "docker.io".into(),
                repository: "library/busybox".into(),
                tag: Some("latest".into()),
                digest: None
            }
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b:1"),
            RefParts {
                registry: "127.0.0.1:5000".into(),
                repository: "a/b".into(),
                tag: Some("1".into()),
                digest: None
            }
        );
        let p = split_reference(&format!("localhost:5000/b@{d}"));
        assert_eq!(
            (p.registry.as_str(), p.repository.as_str(), p.tag, p.digest),
            ("localhost:5000", "b", None, Some(d.clone()))
        );
        let p = split_reference(&format!("docker.io/library/busybox:1@{d}"));
        assert_eq!(
            (p.tag.as_deref(), p.digest.as_deref()),
            (Some("1"), Some(d.as_str()))
        );
    }

    #[test]
    fn recognises_manifest_types() {
        assert_eq!(
            manifest_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            OCI_INDEX
        );
        assert_eq!(
            manifest_media_type(br#"{"schemaVersion":2,"config":{}}"#).unwrap(),
            OCI_MANIFEST
        );
        assert_eq!(
            manifest_media_type(
                format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}"}}"#).as_bytes()
            )
            .unwrap(),
            DOCKER_LIST
        );
        assert!(
            manifest_media_type(br#"{"schemaVersion":1,"fsLayers":[]}"#)
                .unwrap_err()
                .contains("schema 1")
        );
        assert!(
            manifest_media_type(b"<html>")
                .unwrap_err()
                .contains("not JSON")
        );
    }

    #[test]
    fn picks_the_host_platform_from_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ImageStore::open(dir.path()).unwrap());
        let mk = |arch: &str| {
            Puller::new(
                store.clone(),
                RegistriesConfig::default(),
                PullOptions {
                    architecture: arch.into(),
                    ..PullOptions::default()
                },
            )
        };
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": d('a'), "size": 1, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                {"mediaType": OCI_MANIFEST, "digest": d('b'), "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": OCI_MANIFEST, "digest": d('c'), "size": 1, "platform": {"os": "windows", "architecture": "amd64"}},
                {"mediaType": OCI_MANIFEST, "digest": d('e'), "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
            ],
        });
        let body = serde_json::to_vec(&index).unwrap();
        assert_eq!(mk("amd64").inner.pick_platform(&body).unwrap(), d('e'));
        assert_eq!(mk("arm64").inner.pick_platform(&body).unwrap(), d('b'));
        let e = mk("s390x").inner.pick_platform(&body).unwrap_err();
        assert!(
            e.contains("no manifest for linux/s390x") && e.contains("linux/amd64"),
            "{e}"
        );
    }
}
