//! `Images`: the CRI `ImageService` over the node's [`ImageStore`] and the registry [`Puller`], with images
//! reported as crictl shows them (id = config digest, repo tags, `repo@sha256:<manifest>` digests).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::pull::{PullError, PullOptions, Puller};
use super::registries::{Credentials, RegistriesConfig};
use super::{ImageInfo, ImageStore, reference};
use crate::cri::{self, Image, ImageService, RegistryAuth, RuntimeError};

/// The node's images: the store plus pulling. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Images {
    store: Arc<ImageStore>,
    puller: Puller,
}

impl Images {
    /// Images in `store`, pulled per `registries` with the default time-outs.
    pub fn new(store: Arc<ImageStore>, registries: RegistriesConfig) -> Images {
        Images::with_options(store, registries, PullOptions::default())
    }

    /// Like [`Images::new`] with explicit pull options (time-outs, platform).
    pub fn with_options(
        store: Arc<ImageStore>,
        registries: RegistriesConfig,
        options: PullOptions,
    ) -> Images {
        let puller = Puller::new(store.clone(), registries, options);
        Images { store, puller }
    }

    pub fn store(&self) -> &Arc<ImageStore> {
        &self.store
    }

    /// The images grouped by id (config digest), sorted by their first name.
    fn grouped(&self) -> Vec<Image> {
        group(&self.store.list())
    }

    /// The image a name or an image id (`sha256:<config digest>`) refers to.
    fn find(&self, image: &str) -> Result<Option<Image>, RuntimeError> {
        let images = self.grouped();
        if let Some(id) = as_image_id(image) {
            return Ok(images.into_iter().find(|i| i.id == id));
        }
        let name = normalize(image)?;
        Ok(images.into_iter().find(|i| {
            i.repo_tags.contains(&name)
                || i.repo_digests.contains(&name)
                || i.names_by_digest(&name)
        }))
    }
}

fn normalize(image: &str) -> Result<String, RuntimeError> {
    reference::normalize(image).map_err(|reason| {
        RuntimeError::Other(format!("invalid image reference {image:?}: {reason}"))
    })
}

/// `sha256:<64 hex>` or a bare 64-hex id.
fn as_image_id(image: &str) -> Option<String> {
    let hex = image.strip_prefix("sha256:").unwrap_or(image);
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| format!("sha256:{hex}"))
}

trait NamesByDigest {
    fn names_by_digest(&self, name: &str) -> bool;
}

impl NamesByDigest for Image {
    /// A `repo:tag@digest` name matches the image whose repo digests hold `repo@digest`.
    fn names_by_digest(&self, name: &str) -> bool {
        match name.split_once('@') {
            Some((repo_tag, digest)) => {
                let repo = strip_tag(repo_tag);
                self.repo_digests
                    .iter()
                    .any(|d| d == &format!("{repo}@{digest}"))
            }
            None => false,
        }
    }
}

/// `docker.io/library/busybox:1` → `docker.io/library/busybox` (a port's colon is before the last '/').
fn strip_tag(name: &str) -> &str {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => &name[..slash + i],
        None => name,
    }
}

/// Groups store rows by config digest, as `crictl images` shows them.
fn group(rows: &[ImageInfo]) -> Vec<Image> {
    let mut by_id: BTreeMap<&str, Image> = BTreeMap::new();
    for row in rows {
        let image = by_id.entry(&row.config_digest).or_insert_with(|| Image {
            id: row.config_digest.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            size: row.size,
        });
        image.size = image.size.max(row.size);
        let (repo_tag, by_digest) = match row.name.split_once('@') {
            Some((rt, _)) => (rt, true),
            None => (row.name.as_str(), false),
        };
        if !by_digest && !image.repo_tags.contains(&row.name) {
            image.repo_tags.push(row.name.clone());
        }
        let repo_digest = format!("{}@{}", strip_tag(repo_tag), row.digest);
        if !image.repo_digests.contains(&repo_digest) {
            image.repo_digests.push(repo_digest);
        }
    }
    let mut out: Vec<Image> = by_id.into_values().collect();
    for i in &mut out {
        i.repo_tags.sort();
        i.repo_digests.sort();
    }
    out.sort_by(|a, b| {
        let ka = a.repo_tags.first().or(a.repo_digests.first());
        let kb = b.repo_tags.first().or(b.repo_digests.first());
        ka.cmp(&kb)
    });
    out
}

fn to_credentials(auth: &RegistryAuth) -> Option<Credentials> {
    (!auth.username.is_empty() || !auth.password.is_empty()).then(|| Credentials::Basic {
        username: auth.username.clone(),
        password: auth.password.clone(),
    })
}

#[async_trait]
impl ImageService for Images {
    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> cri::Result<String> {
        let creds = auth.and_then(to_credentials);
        match self.puller.pull(image, creds.as_ref()).await {
            Ok(p) => Ok(p.config_digest),
            Err(e) => Err(RuntimeError::ImagePull {
                image: image.to_string(),
                message: match e {
                    PullError::Registry(m) => m,
                    other => other.to_string(),
                },
            }),
        }
    }

    async fn image_status(&self, image: &str) -> cri::Result<Option<Image>> {
        self.find(image)
    }

    async fn list_images(&self) -> cri::Result<Vec<Image>> {
        Ok(self.grouped())
    }

    /// Removes the image by name (that name only) or by id (every name of it). Removing an image that is not
    /// there succeeds, as CRI's `RemoveImage` does.
    async fn remove_image(&self, image: &str) -> cri::Result<()> {
        let names: Vec<String> = if let Some(id) = as_image_id(image) {
            self.store
                .list()
                .into_iter()
                .filter(|r| r.config_digest == id)
                .map(|r| r.name)
                .collect()
        } else {
            let name = normalize(image)?;
            self.store
                .list()
                .into_iter()
                .filter(|r| r.name == name)
                .map(|r| r.name)
                .collect()
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            for n in names {
                match store.remove(&n) {
                    Ok(()) | Err(super::ImageError::NotFound(_)) => {}
                    Err(e) => {
                        return Err(RuntimeError::Other(format!(
                            "failed to remove image {n}: {e}"
                        )));
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| RuntimeError::Other(format!("the remove task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, digest: char, config: char) -> ImageInfo {
        ImageInfo {
            name: name.into(),
            digest: format!("sha256:{}", digest.to_string().repeat(64)),
            config_digest: format!("sha256:{}", config.to_string().repeat(64)),
            size: 10,
        }
    }

    #[test]
    fn groups_names_by_image_id_like_crictl() {
        let m = format!("sha256:{}", "a".repeat(64));
        let rows = vec![
            row("docker.io/library/busybox:1", 'a', 'c'),
            row("docker.io/library/busybox:latest", 'a', 'c'),
            row(&format!("docker.io/library/busybox@{m}"), 'a', 'c'),
            row("127.0.0.1:5000/other:2", 'b', 'd'),
        ];
        let images = group(&rows);
        assert_eq!(images.len(), 2);
        let bb = &images[1];
        assert_eq!(bb.id, format!("sha256:{}", "c".repeat(64)));
        assert_eq!(
            bb.repo_tags,
            vec![
                "docker.io/library/busybox:1",
                "docker.io/library/busybox:latest"
            ]
        );
        assert_eq!(
            bb.repo_digests,
            vec![format!("docker.io/library/busybox@{m}")]
        );
        assert_eq!(
            images[0].repo_digests,
            vec![format!("127.0.0.1:5000/other@sha256:{}", "b".repeat(64))]
        );
    }

    #[test]
    fn recognises_image_ids_and_strips_tags() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(as_image_id(&hex), Some(format!("sha256:{hex}")));
        assert_eq!(
            as_image_id(&format!("sha256:{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(as_image_id("busybox"), None);
        assert_eq!(strip_tag("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000/a/b");
        assert_eq!(strip_tag("127.0.0.1:5000/a/b"), "127.0.0.1:5000/a/b");
    }

    #[tokio::test]
    async fn status_list_and_remove_over_an_imported_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = crate::testing::busybox_image(dir.path()).unwrap();
        let store = Arc::new(ImageStore::open(&dir.path().join("store")).unwrap());
        store.import_archive(&image.docker_archive).unwrap();
        let images = Images::new(store.clone(), RegistriesConfig::default());
        let status = images.image_status("busybox:test").await.unwrap().unwrap();
        assert_eq!(status.id, image.config_digest);
        assert_eq!(status.repo_tags, vec!["docker.io/library/busybox:test"]);
        // By id, too.
        assert_eq!(
            images
                .image_status(&image.config_digest)
                .await
                .unwrap()
                .unwrap()
                .id,
            status.id
        );
        assert!(
            images
                .image_status("busybox:other")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(images.list_images().await.unwrap(), vec![status.clone()]);
        images.remove_image(&image.config_digest).await.unwrap();
        assert!(images.list_images().await.unwrap().is_empty());
        // Removing what is gone succeeds (CRI).
        images.remove_image("busybox:test").await.unwrap();
        assert!(matches!(
            images.image_status("Not Valid").await,
            Err(RuntimeError::Other(m)) if m.contains("invalid image reference")
        ));
    }
}
