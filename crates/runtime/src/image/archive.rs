//! Reading image archives: an OCI image layout tar or a `docker save` tar, staged into a directory and turned
//! into a list of images (manifest, config and layer blobs) to import.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::unpack::clean_path;

const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The archive unpacked as plain files into a staging directory, with its symlinks kept as a map.
pub(crate) struct Staged {
    pub root: PathBuf,
    links: HashMap<PathBuf, PathBuf>,
}

impl Staged {
    /// An image layout that is already a directory (no symlinks to follow).
    pub fn directory(root: &Path) -> Staged {
        Staged {
            root: root.to_path_buf(),
            links: HashMap::new(),
        }
    }

    /// The staged file for an archive path, following the archive's own symlinks.
    pub fn file(&self, name: &str) -> Result<PathBuf, String> {
        let mut rel: PathBuf = clean_path(Path::new(name))?.into_iter().collect();
        for _ in 0..16 {
            match self.links.get(&rel) {
                Some(t) => rel = t.clone(),
                None => {
                    let p = self.root.join(&rel);
                    return if p.is_file() {
                        Ok(p)
                    } else {
                        Err(format!("{name} is not in the archive"))
                    };
                }
            }
        }
        Err(format!("{name} is a symlink loop in the archive"))
    }

    pub fn read(&self, name: &str) -> Result<Vec<u8>, String> {
        let p = self.file(name)?;
        fs::read(&p).map_err(|e| format!("failed to read {name} from the archive: {e}"))
    }
}

/// Extracts the regular files of the archive (plain or gzip-compressed tar) into `dir`.
pub(crate) fn stage(archive: &Path, dir: &Path) -> Result<Staged, String> {
    let file = File::open(archive).map_err(|e| format!("failed to open the archive: {e}"))?;
    let mut reader = BufReader::new(file);
    let head = peek(&mut reader)?;
    let input: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut tar = tar::Archive::new(input);
    let mut links = HashMap::new();
    let entries = tar
        .entries()
        .map_err(|e| format!("failed to read the archive as a tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("failed to read the archive as a tar: {e}"))?;
        let raw = entry
            .path()
            .map_err(|e| format!("failed to read an archive entry path: {e}"))?
            .into_owned();
        let parts = clean_path(&raw)?;
        if parts.is_empty() {
            continue;
        }
        let rel: PathBuf = parts.iter().collect();
        let dest = dir.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|e| format!("failed to stage {}: {e}", raw.display()))?;
                }
                let _ = fs::remove_file(&dest);
                let mut out = File::create(&dest)
                    .map_err(|e| format!("failed to stage {}: {e}", raw.display()))?;
                io::copy(&mut entry, &mut out)
                    .map_err(|e| format!("failed to stage {}: {e}", raw.display()))?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| format!("failed to read the link {}: {e}", raw.display()))?
                    .ok_or_else(|| format!("link {} has no target", raw.display()))?
                    .into_owned();
                // Symlinks are relative to their directory, hardlinks to the archive root.
                let joined = if entry.header().entry_type() == tar::EntryType::Symlink
                    && !target.is_absolute()
                {
                    rel.parent().unwrap_or(Path::new("")).join(&target)
                } else {
                    target.clone()
                };
                let resolved = normalize_lexically(&joined).ok_or_else(|| {
                    format!(
                        "link {} points outside the archive ({})",
                        raw.display(),
                        target.display()
                    )
                })?;
                links.insert(rel, resolved);
            }
            _ => {}
        }
    }
    Ok(Staged {
        root: dir.to_path_buf(),
        links,
    })
}

fn normalize_lexically(p: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop()?;
            }
            _ => {}
        }
    }
    Some(out.into_iter().collect())
}

fn peek(r: &mut BufReader<File>) -> Result<Vec<u8>, String> {
    use io::BufRead;
    r.fill_buf()
        .map(|b| b[..b.len().min(4)].to_vec())
        .map_err(|e| format!("failed to read the archive: {e}"))
}

/// A layer blob of an image to import.
pub(crate) struct LayerSource {
    /// Path of the blob inside the archive.
    pub path: String,
    /// The digest the manifest gives (OCI), checked against the content; `None` for docker archives.
    pub digest: Option<String>,
    pub media_type: String,
}

/// One image found in an archive.
pub(crate) struct Candidate {
    pub names: Vec<String>,
    /// The `org.opencontainers.image.ref.name` annotation when it is the only name source.
    pub ref_name: Option<String>,
    /// The manifest bytes and the digest they must have (for docker archives: a synthesised OCI manifest).
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub config_path: String,
    pub config_digest: Option<String>,
    pub layers: Vec<LayerSource>,
}

#[derive(Deserialize)]
struct Desc {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Plat>,
}

#[derive(Deserialize)]
struct Plat {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct IndexDoc {
    #[serde(default)]
    manifests: Vec<Desc>,
}

#[derive(Deserialize)]
struct ManifestDoc {
    config: Desc,
    layers: Vec<Desc>,
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub(crate) fn blob_path(digest: &str) -> Result<String, String> {
    let hex = digest_hex(digest)?;
    Ok(format!("blobs/sha256/{hex}"))
}

/// The hex part of a `sha256:<hex>` digest, checked.
pub(crate) fn digest_hex(digest: &str) -> Result<&str, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest {digest} is not a sha256 digest"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("digest {digest} is not 64 lowercase hex digits"));
    }
    Ok(hex)
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Reads a blob named by digest and checks its content has that digest.
fn verified_blob(staged: &Staged, digest: &str, what: &str) -> Result<Vec<u8>, String> {
    let path = blob_path(digest)?;
    let data = staged
        .read(&path)
        .map_err(|e| format!("the {what} {digest}: {e}"))?;
    let actual = format!("sha256:{}", sha256_hex(&data));
    if actual != digest {
        return Err(format!(
            "the {what} {path} has digest {actual}, expected {digest}"
        ));
    }
    Ok(data)
}

/// Lists the images of a staged archive, OCI layout or docker-archive.
pub(crate) fn candidates(staged: &Staged) -> Result<Vec<Candidate>, String> {
    if staged.file("index.json").is_ok() {
        if staged.file("oci-layout").is_err() {
            return Err("index.json is present but oci-layout is missing".into());
        }
        return oci_candidates(staged);
    }
    if staged.file("manifest.json").is_ok() {
        return docker_candidates(staged);
    }
    Err("neither an OCI image layout (index.json) nor a docker archive (manifest.json)".into())
}

fn oci_candidates(staged: &Staged) -> Result<Vec<Candidate>, String> {
    let index: IndexDoc = serde_json::from_slice(&staged.read("index.json")?)
        .map_err(|e| format!("index.json is not a valid image index: {e}"))?;
    let mut out = Vec::new();
    for desc in index.manifests {
        let mut names = Vec::new();
        let mut ref_name = None;
        if let Some(n) = desc.annotations.get(CONTAINERD_NAME) {
            names.push(n.clone());
        } else if let Some(n) = desc.annotations.get(OCI_REF_NAME) {
            names.push(n.clone());
            ref_name = Some(n.clone());
        }
        let (manifest_digest, manifest) = pick_manifest(staged, &desc, 0)?;
        let doc: ManifestDoc = serde_json::from_slice(&manifest).map_err(|e| {
            format!("manifest {manifest_digest} is not a valid image manifest: {e}")
        })?;
        let config_path = blob_path(&doc.config.digest)?;
        let layers = doc
            .layers
            .iter()
            .map(|l| {
                Ok(LayerSource {
                    path: blob_path(&l.digest)?,
                    digest: Some(l.digest.clone()),
                    media_type: l.media_type.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        out.push(Candidate {
            names,
            ref_name,
            manifest,
            manifest_digest,
            config_path,
            config_digest: Some(doc.config.digest),
            layers,
        });
    }
    Ok(out)
}

/// Follows image indexes down to the manifest for this platform.
fn pick_manifest(staged: &Staged, desc: &Desc, depth: u32) -> Result<(String, Vec<u8>), String> {
    if depth > 4 {
        return Err("image indexes are nested too deeply".into());
    }
    let data = verified_blob(staged, &desc.digest, "manifest")?;
    let is_index = desc.media_type == OCI_INDEX
        || desc.media_type == DOCKER_LIST
        || serde_json::from_slice::<serde_json::Value>(&data)
            .ok()
            .is_some_and(|v| v.get("manifests").is_some());
    if !is_index {
        if !desc.media_type.is_empty()
            && desc.media_type != OCI_MANIFEST
            && !desc.media_type.contains("manifest.v2")
        {
            return Err(format!(
                "manifest {} has the unsupported media type {}",
                desc.digest, desc.media_type
            ));
        }
        return Ok((desc.digest.clone(), data));
    }
    let inner: IndexDoc = serde_json::from_slice(&data)
        .map_err(|e| format!("index {} is not a valid image index: {e}", desc.digest))?;
    let chosen = inner
        .manifests
        .iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == go_arch())
        })
        .or_else(|| {
            if inner.manifests.len() == 1 {
                inner.manifests.first()
            } else {
                None
            }
        })
        .ok_or_else(|| {
            format!(
                "index {} has no manifest for linux/{}",
                desc.digest,
                go_arch()
            )
        })?;
    pick_manifest(staged, chosen, depth + 1)
}

fn docker_candidates(staged: &Staged) -> Result<Vec<Candidate>, String> {
    let entries: Vec<DockerEntry> = serde_json::from_slice(&staged.read("manifest.json")?)
        .map_err(|e| format!("manifest.json is not a valid docker archive manifest: {e}"))?;
    let mut out = Vec::new();
    for e in entries {
        let config = staged
            .read(&e.config)
            .map_err(|err| format!("manifest.json names config {}: {err}", e.config))?;
        let config_digest = format!("sha256:{}", sha256_hex(&config));
        let mut layer_descs = Vec::new();
        let mut layers = Vec::new();
        for l in &e.layers {
            let path = staged.file(l).map_err(|_| {
                format!("manifest.json names layer {l} which is not in the archive")
            })?;
            let (digest, size, gz) =
                hash_file(&path).map_err(|err| format!("failed to read layer {l}: {err}"))?;
            let media_type = if gz {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            layer_descs
                .push(serde_json::json!({"mediaType": media_type, "digest": digest, "size": size}));
            layers.push(LayerSource {
                path: l.clone(),
                digest: Some(digest),
                media_type: media_type.to_string(),
            });
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": layer_descs,
        }))
        .map_err(|err| format!("failed to build a manifest: {err}"))?;
        let manifest_digest = format!("sha256:{}", sha256_hex(&manifest));
        out.push(Candidate {
            names: e.repo_tags.unwrap_or_default(),
            ref_name: None,
            manifest,
            manifest_digest,
            config_path: e.config,
            config_digest: Some(config_digest),
            layers,
        });
    }
    Ok(out)
}

/// The sha256 digest, size and whether the file starts with the gzip magic.
pub(crate) fn hash_file(path: &Path) -> io::Result<(String, u64, bool)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    let mut head = Vec::new();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if head.len() < 4 {
            head.extend_from_slice(&buf[..n.min(4 - head.len())]);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((
        format!("sha256:{}", hex::encode(hasher.finalize())),
        size,
        head.starts_with(&[0x1f, 0x8b]),
    ))
}
