//! The node's image store: content-addressed blobs, layers unpacked once and shared, and an index of names.
//!
//! Layout under the store root:
//! - `blobs/sha256/<hex>`: manifests, configs and layer blobs, each checked against its digest;
//! - `layers/<diff-id hex>/fs`: one unpacked layer (its own changes only, whiteouts in overlayfs form), shared
//!   by every image using it; unpacked into `tmp/` and renamed into place, so a crash never leaves half a
//!   layer; `layers/<hex>/whiteouts.json` when whiteouts could not be represented (see [`unpack`]);
//! - `images.json`: normalised name → manifest digest, config digest, layers; written atomically;
//! - `tmp/`: staging, emptied on open;
//! - `lock`: held (`flock`) by the process that has the store open.
//!
//! One `ImageStore` serialises its own operations; a second `open` of the same root, in this process or
//! another, fails while the first is alive.

mod archive;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod service;
mod unpack;

pub use pull::{PullError, PullOptions, PulledImage, Puller};
pub use registries::RegistriesConfig;
pub use service::Images;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use unpack::{RecordedWhiteout, WhiteoutKind};

use archive::{Candidate, digest_hex, hash_file};

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("failed to open the image store at {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("failed to read the image index {path}: {reason}")]
    Index { path: PathBuf, reason: String },
    #[error("failed to import {path}: {reason}")]
    Import { path: PathBuf, reason: String },
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {0} is not in the store")]
    NotFound(String),
    #[error("failed to {action}: {source}")]
    Io { action: String, source: io::Error },
}

/// An image name and the manifest digest it now points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub name: String,
    pub digest: String,
}

/// One row of `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub name: String,
    /// Manifest digest.
    pub digest: String,
    /// Config digest: the image id.
    pub config_digest: String,
    /// Bytes of the manifest, config and layer blobs.
    pub size: u64,
}

/// Everything needed to build a container's rootfs and process from an image.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub name: String,
    pub digest: String,
    pub config: ImageConfiguration,
    /// Unpacked layer directories, lowest first (overlayfs wants them reversed in `lowerdir`).
    pub layers: Vec<PathBuf>,
    /// Whiteouts that could not be written the overlayfs way (not root), as (layer index, whiteout).
    /// Empty when the layers stack correctly under overlayfs.
    pub recorded_whiteouts: Vec<(usize, RecordedWhiteout)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct LayerRecord {
    blob: String,
    diff_id: String,
    size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct ImageRecord {
    manifest_digest: String,
    manifest_size: u64,
    config_digest: String,
    config_size: u64,
    layers: Vec<LayerRecord>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    images: BTreeMap<String, ImageRecord>,
}

/// The content-addressed image store.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    index: Mutex<Index>,
    counter: AtomicU64,
    privileged: bool,
    /// Holds an exclusive `flock` on `<root>/lock` for the store's lifetime: one process per store.
    _lock: File,
}

fn io_err(action: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let action = action.into();
    move |source| ImageError::Io { action, source }
}

/// Removes a tree even when it holds read-only directories (left by unpacking as non-root).
fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(first) => {
            use std::os::unix::fs::PermissionsExt;
            fn open_up(p: &Path) {
                if let Ok(m) = fs::symlink_metadata(p)
                    && m.is_dir()
                {
                    let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
                    if let Ok(rd) = fs::read_dir(p) {
                        for e in rd.flatten() {
                            open_up(&e.path());
                        }
                    }
                }
            }
            open_up(path);
            fs::remove_dir_all(path).map_err(|_| first)
        }
    }
}

/// Takes the store's lock, failing at once (with a message saying so) when another process holds it.
fn lock_root(root: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("lock"))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the store is in use by another process (is a skiff agent running with this data dir?)",
            ));
        }
        return Err(e);
    }
    Ok(file)
}

fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root`, clearing leftovers of an interrupted import.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        let open_err = |source| ImageError::Open {
            path: root.to_path_buf(),
            source,
        };
        for d in ["blobs/sha256", "layers", "tmp"] {
            fs::create_dir_all(root.join(d)).map_err(open_err)?;
        }
        let lock = lock_root(root).map_err(open_err)?;
        for e in fs::read_dir(root.join("tmp")).map_err(open_err)?.flatten() {
            remove_tree(&e.path()).map_err(open_err)?;
        }
        let index_path = root.join("images.json");
        let index = match fs::read(&index_path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| ImageError::Index {
                path: index_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index::default(),
            Err(e) => {
                return Err(ImageError::Index {
                    path: index_path,
                    reason: e.to_string(),
                });
            }
        };
        // SAFETY: geteuid has no preconditions.
        let privileged = unsafe { libc::geteuid() } == 0;
        let store = ImageStore {
            root: root.to_path_buf(),
            index: Mutex::new(index),
            counter: AtomicU64::new(0),
            privileged,
            _lock: lock,
        };
        {
            let index = store.lock();
            store.collect_garbage(&index)?;
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn temp_dir(&self, what: &str) -> Result<PathBuf, ImageError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).map_err(io_err(format!(
            "create the staging directory {}",
            dir.display()
        )))?;
        Ok(dir)
    }

    fn blob_file(&self, digest: &str) -> Result<PathBuf, String> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    fn layer_dir(&self, diff_id: &str) -> Result<PathBuf, String> {
        Ok(self.root.join("layers").join(digest_hex(diff_id)?))
    }

    /// Imports every image of an OCI image layout tar or a docker-archive tar. All or nothing: on error no
    /// name is added and blobs and layers brought in by this import are removed again.
    ///
    /// Names come from `RepoTags` (docker), or the `io.containerd.image.name` annotation, else the
    /// `org.opencontainers.image.ref.name` annotation taken as a reference (OCI); all are normalised.
    pub fn import_archive(&self, path: &Path) -> Result<Vec<ImageRef>, ImageError> {
        self.import(path, None)
    }

    /// Like [`ImageStore::import_archive`], for OCI layouts whose `org.opencontainers.image.ref.name` is a
    /// bare tag (as `umoci tag` writes, e.g. `1`): such an image is named `<base_name>:<tag>`, and an image
    /// with no name at all gets `base_name`.
    pub fn import_archive_named(
        &self,
        path: &Path,
        base_name: &str,
    ) -> Result<Vec<ImageRef>, ImageError> {
        self.import(path, Some(base_name))
    }

    /// Imports the images of an OCI image layout *directory* (as the puller writes one under
    /// [`ImageStore::staging_dir`]), with the same checks and all-or-nothing behaviour as
    /// [`ImageStore::import_archive`]. Layer blobs are hard-linked into the store when on the same filesystem.
    pub fn import_layout_dir(&self, dir: &Path) -> Result<Vec<ImageRef>, ImageError> {
        self.import_from(dir, None, true)
    }

    /// A new, empty directory under the store's `tmp/` (emptied when the store is next opened), for staging
    /// downloads on the store's filesystem. The caller removes it when done.
    pub fn staging_dir(&self, what: &str) -> Result<PathBuf, ImageError> {
        self.temp_dir(what)
    }

    /// The stored file of a blob, if the store has it (so a pull can skip downloading it).
    pub fn blob(&self, digest: &str) -> Option<PathBuf> {
        self.blob_file(digest).ok().filter(|p| p.is_file())
    }

    fn import(&self, path: &Path, base: Option<&str>) -> Result<Vec<ImageRef>, ImageError> {
        self.import_from(path, base, false)
    }

    fn import_from(
        &self,
        path: &Path,
        base: Option<&str>,
        is_dir: bool,
    ) -> Result<Vec<ImageRef>, ImageError> {
        let mut index = self.lock();
        let staging = self.temp_dir("import")?;
        let result = self.import_locked(&mut index, path, &staging, base, is_dir);
        let cleanup = remove_tree(&staging);
        match result {
            Ok(refs) => {
                cleanup.map_err(io_err(format!(
                    "remove the staging directory {}",
                    staging.display()
                )))?;
                self.collect_garbage(&index)?;
                Ok(refs)
            }
            Err(reason) => {
                if let Err(e) = self.collect_garbage(&index) {
                    tracing::warn!(error = %e, "cleaning up after a failed import");
                }
                Err(ImageError::Import {
                    path: path.to_path_buf(),
                    reason,
                })
            }
        }
    }

    fn import_locked(
        &self,
        index: &mut Index,
        path: &Path,
        staging: &Path,
        base: Option<&str>,
        is_dir: bool,
    ) -> Result<Vec<ImageRef>, String> {
        let staged = if is_dir {
            archive::Staged::directory(path)
        } else {
            archive::stage(path, &staging.join("archive"))?
        };
        let candidates = archive::candidates(&staged)?;
        if candidates.is_empty() {
            return Err("the archive holds no image".into());
        }
        let mut new = Vec::new();
        for c in &candidates {
            let bare_tag = c
                .ref_name
                .as_deref()
                .filter(|t| !t.contains(['/', ':', '@']));
            let names = match (base, bare_tag) {
                (Some(b), Some(tag)) => vec![format!("{b}:{tag}")],
                (Some(b), None) if c.names.is_empty() => vec![b.to_string()],
                _ => c.names.clone(),
            };
            if names.is_empty() {
                return Err(format!(
                    "image {} has no name (no RepoTags, {} or org.opencontainers.image.ref.name annotation)",
                    c.manifest_digest, "io.containerd.image.name"
                ));
            }
            let names = names
                .iter()
                .map(|n| {
                    reference::normalize(n).map_err(|e| format!("image name {n:?} is invalid: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let record = self.ingest(&staged, c, staging)?;
            new.push((names, record));
        }
        let mut refs = Vec::new();
        let mut updated = Index {
            images: index.images.clone(),
        };
        for (names, record) in new {
            for name in names {
                refs.push(ImageRef {
                    name: name.clone(),
                    digest: record.manifest_digest.clone(),
                });
                updated.images.insert(name, record.clone());
            }
        }
        self.save_index(&updated).map_err(|e| e.to_string())?;
        *index = updated;
        for r in &refs {
            tracing::info!(image = %r.name, digest = %r.digest, "imported image");
        }
        Ok(refs)
    }

    /// Verifies and stores one image's blobs and unpacks its missing layers.
    fn ingest(
        &self,
        staged: &archive::Staged,
        c: &Candidate,
        staging: &Path,
    ) -> Result<ImageRecord, String> {
        self.store_bytes(&c.manifest, &c.manifest_digest, staging)?;
        let config = staged.read(&c.config_path)?;
        let config_digest = format!("sha256:{}", archive::sha256_hex(&config));
        if let Some(want) = &c.config_digest
            && want != &config_digest
        {
            return Err(format!(
                "the config {} has digest {config_digest}, expected {want}",
                c.config_path
            ));
        }
        let parsed = ImageConfiguration::from_reader(&config[..]).map_err(|e| {
            format!(
                "the config {} is not a valid image configuration: {e}",
                c.config_path
            )
        })?;
        let diff_ids = parsed.rootfs().diff_ids().clone();
        if diff_ids.len() != c.layers.len() {
            return Err(format!(
                "the manifest lists {} layers but the config has {} diff IDs",
                c.layers.len(),
                diff_ids.len()
            ));
        }
        self.store_bytes(&config, &config_digest, staging)?;
        let mut layers = Vec::new();
        for (layer, diff_id) in c.layers.iter().zip(&diff_ids) {
            layers.push(self.ingest_layer(staged, layer, diff_id, staging)?);
        }
        Ok(ImageRecord {
            manifest_digest: c.manifest_digest.clone(),
            manifest_size: c.manifest.len() as u64,
            config_digest,
            config_size: config.len() as u64,
            layers,
        })
    }

    fn ingest_layer(
        &self,
        staged: &archive::Staged,
        layer: &archive::LayerSource,
        diff_id: &str,
        staging: &Path,
    ) -> Result<LayerRecord, String> {
        if layer.media_type.contains("zstd") {
            return Err(format!(
                "layer {} is zstd-compressed ({}), which is not supported yet",
                layer.path, layer.media_type
            ));
        }
        let src = staged.file(&layer.path).map_err(|_| {
            format!(
                "the manifest names layer {} which is not in the archive",
                layer.path
            )
        })?;
        let (digest, size, _) =
            hash_file(&src).map_err(|e| format!("failed to read layer {}: {e}", layer.path))?;
        if let Some(want) = &layer.digest
            && want != &digest
        {
            return Err(format!(
                "the layer {} has digest {digest}, expected {want}",
                layer.path
            ));
        }
        let blob = self.blob_file(&digest)?;
        if !blob.exists() {
            let tmp = staging.join(format!("blob-{}", digest_hex(&digest)?));
            fs::hard_link(&src, &tmp)
                .or_else(|_| fs::copy(&src, &tmp).map(|_| ()))
                .and_then(|()| fs::rename(&tmp, &blob))
                .map_err(|e| format!("failed to store layer {}: {e}", layer.path))?;
        }
        // Read the stored blob back, decompressing, hashing (diff ID) and unpacking if the layer is new.
        let dir = self
            .layer_dir(diff_id)
            .map_err(|e| format!("the config's diff ID: {e}"))?;
        let mut file = io::BufReader::new(
            File::open(&blob).map_err(|e| format!("failed to open layer blob {digest}: {e}"))?,
        );
        let head = io::BufRead::fill_buf(&mut file)
            .map_err(|e| format!("failed to read layer blob {digest}: {e}"))?
            .to_vec();
        if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Err(format!(
                "layer {} is zstd-compressed, which is not supported yet",
                layer.path
            ));
        }
        let decoded: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(file))
        } else {
            Box::new(file)
        };
        let mut reader = HashingReader {
            inner: decoded,
            hasher: Sha256::new(),
        };
        let unpacked = if dir.exists() {
            None
        } else {
            let tmp = staging.join(format!("layer-{}", digest_hex(diff_id)?));
            let fs_dir = tmp.join("fs");
            fs::create_dir_all(&fs_dir)
                .map_err(|e| format!("failed to create {}: {e}", fs_dir.display()))?;
            let recorded = unpack::unpack_layer(&mut reader, &fs_dir, self.privileged)
                .map_err(|e| format!("failed to unpack layer {}: {e}", layer.path))?;
            Some((tmp, recorded))
        };
        io::copy(&mut reader, &mut io::sink())
            .map_err(|e| format!("failed to read layer {}: {e}", layer.path))?;
        let actual = format!("sha256:{}", hex::encode(reader.hasher.finalize()));
        if actual != diff_id {
            return Err(format!(
                "the layer {} has diff ID {actual}, but the config says {diff_id}",
                layer.path
            ));
        }
        if let Some((tmp, recorded)) = unpacked {
            if !recorded.is_empty() {
                tracing::warn!(layer = %diff_id, count = recorded.len(), "whiteouts recorded in a sidecar: not running as root");
                let json = serde_json::to_vec_pretty(&recorded).map_err(|e| e.to_string())?;
                fs::write(tmp.join("whiteouts.json"), json)
                    .map_err(|e| format!("failed to write the whiteout sidecar: {e}"))?;
            }
            fs::rename(&tmp, &dir)
                .map_err(|e| format!("failed to move layer {} into place: {e}", layer.path))?;
        }
        Ok(LayerRecord {
            blob: digest,
            diff_id: diff_id.to_string(),
            size,
        })
    }

    fn store_bytes(&self, data: &[u8], digest: &str, staging: &Path) -> Result<(), String> {
        let actual = format!("sha256:{}", archive::sha256_hex(data));
        if actual != digest {
            return Err(format!("blob has digest {actual}, expected {digest}"));
        }
        let dest = self.blob_file(digest)?;
        if dest.exists() {
            return Ok(());
        }
        let tmp = staging.join(format!("blob-{}", digest_hex(digest)?));
        fs::write(&tmp, data)
            .and_then(|()| fs::rename(&tmp, &dest))
            .map_err(|e| format!("failed to store blob {digest}: {e}"))
    }

    fn save_index(&self, index: &Index) -> Result<(), ImageError> {
        let path = self.root.join("images.json");
        let data = serde_json::to_vec_pretty(index).map_err(|e| ImageError::Index {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &data)
            .map_err(io_err(format!("write the image index {}", path.display())))
    }

    /// Deletes blobs and layer directories no image refers to.
    fn collect_garbage(&self, index: &Index) -> Result<(), ImageError> {
        let mut blobs = HashSet::new();
        let mut layers = HashSet::new();
        for r in index.images.values() {
            blobs.insert(r.manifest_digest.trim_start_matches("sha256:").to_string());
            blobs.insert(r.config_digest.trim_start_matches("sha256:").to_string());
            for l in &r.layers {
                blobs.insert(l.blob.trim_start_matches("sha256:").to_string());
                layers.insert(l.diff_id.trim_start_matches("sha256:").to_string());
            }
        }
        for (dir, keep) in [("blobs/sha256", &blobs), ("layers", &layers)] {
            let dir = self.root.join(dir);
            for e in fs::read_dir(&dir)
                .map_err(io_err(format!("list {}", dir.display())))?
                .flatten()
            {
                if !keep.contains(e.file_name().to_string_lossy().as_ref()) {
                    let p = e.path();
                    let res = if p.is_dir() {
                        remove_tree(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                    res.map_err(io_err(format!("remove unused {}", p.display())))?;
                }
            }
        }
        Ok(())
    }

    /// All names in the store, sorted.
    pub fn list(&self) -> Vec<ImageInfo> {
        let index = self.lock();
        index
            .images
            .iter()
            .map(|(name, r)| ImageInfo {
                name: name.clone(),
                digest: r.manifest_digest.clone(),
                config_digest: r.config_digest.clone(),
                size: r.manifest_size
                    + r.config_size
                    + r.layers.iter().map(|l| l.size).sum::<u64>(),
            })
            .collect()
    }

    /// Drops a name; blobs and layers no other image uses are deleted.
    pub fn remove(&self, name: &str) -> Result<(), ImageError> {
        let full = reference::normalize(name).map_err(|reason| ImageError::InvalidReference {
            reference: name.to_string(),
            reason,
        })?;
        let mut index = self.lock();
        if !index.images.contains_key(&full) {
            return Err(ImageError::NotFound(full));
        }
        let mut updated = Index {
            images: index.images.clone(),
        };
        updated.images.remove(&full);
        self.save_index(&updated)?;
        *index = updated;
        tracing::info!(image = %full, "removed image");
        self.collect_garbage(&index)
    }

    /// The config and layer directories of an image, or `None` when the name is unknown (or its stored
    /// config is unreadable, which is logged).
    pub fn resolve(&self, name: &str) -> Option<ResolvedImage> {
        let full = reference::normalize(name).ok()?;
        let index = self.lock();
        let record = index.images.get(&full)?;
        let config_path = self.blob_file(&record.config_digest).ok()?;
        let config = match ImageConfiguration::from_file(&config_path) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(image = %full, error = %e, "failed to read the stored image config");
                return None;
            }
        };
        let mut layers = Vec::new();
        let mut recorded_whiteouts = Vec::new();
        for (i, l) in record.layers.iter().enumerate() {
            let dir = self.layer_dir(&l.diff_id).ok()?;
            if let Ok(data) = fs::read(dir.join("whiteouts.json")) {
                match serde_json::from_slice::<Vec<RecordedWhiteout>>(&data) {
                    Ok(w) => recorded_whiteouts.extend(w.into_iter().map(|w| (i, w))),
                    Err(e) => {
                        tracing::warn!(layer = %l.diff_id, error = %e, "unreadable whiteout sidecar")
                    }
                }
            }
            layers.push(dir.join("fs"));
        }
        Some(ResolvedImage {
            name: full,
            digest: record.manifest_digest.clone(),
            config,
            layers,
            recorded_whiteouts,
        })
    }
}
