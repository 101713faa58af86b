//! Image pulls for containers (upstream's `images.imageManager`): the pull policy, credentials from
//! `imagePullSecrets`, pull back-off per pod and image, and the events and waiting reasons
//! (ErrImagePull, ImagePullBackOff, ErrImageNeverPull, InvalidImageName).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use base64::Engine;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::{Api, Client};
use skiff_runtime::cri::{ImageService, RegistryAuth, RuntimeError};
use skiff_runtime::image::reference::normalize;

use crate::backoff::Backoff;
use crate::kuberuntime::events::{NORMAL, Recorder, WARNING};

/// Why a container cannot start yet because of its image: the waiting reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageError {
    pub reason: &'static str,
    pub message: String,
}

pub struct ImageManager {
    images: Arc<dyn ImageService>,
    client: Client,
    recorder: Arc<Recorder>,
    backoff: Backoff,
    last_errors: Mutex<HashMap<String, String>>,
}

/// The effective pull policy: the container's, else `Always` for `:latest` or no tag, else `IfNotPresent`.
pub fn pull_policy(container: &Container) -> String {
    if let Some(p) = container.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    let image = container.image.as_deref().unwrap_or("");
    if image.contains('@') {
        return "IfNotPresent".into();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => "Always".into(),
        Some((_, "latest")) => "Always".into(),
        Some(_) => "IfNotPresent".into(),
    }
}

/// The registry host of a normalized reference (`docker.io/library/busybox:latest` → `docker.io`).
fn registry_of(normalized: &str) -> String {
    normalized.split('/').next().unwrap_or("").to_string()
}

/// A `.dockerconfigjson`/`.dockercfg` key as a host: scheme and path dropped, Docker Hub's aliases folded.
fn normalize_registry_key(key: &str) -> String {
    let k = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".into(),
        h => h.to_string(),
    }
}

/// Credentials for `registry` in one docker config (`{"auths": {...}}` or the legacy flat map).
pub fn credentials_from_docker_config(json: &[u8], registry: &str) -> Vec<RegistryAuth> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else { return Vec::new() };
    let auths = value.get("auths").unwrap_or(&value);
    let Some(map) = auths.as_object() else { return Vec::new() };
    let mut out = Vec::new();
    for (key, entry) in map {
        if normalize_registry_key(key) != registry {
            continue;
        }
        let mut username = entry.get("username").and_then(|v| v.as_str()).unwrap_or("").to_string();
        let mut password = entry.get("password").and_then(|v| v.as_str()).unwrap_or("").to_string();
        if let Some(auth) = entry.get("auth").and_then(|v| v.as_str())
            && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(auth)
            && let Ok(text) = String::from_utf8(decoded)
            && let Some((u, p)) = text.split_once(':')
        {
            username = u.to_string();
            password = p.to_string();
        }
        if !username.is_empty() || !password.is_empty() {
            out.push(RegistryAuth { username, password });
        }
    }
    out
}

impl ImageManager {
    pub fn new(images: Arc<dyn ImageService>, client: Client, recorder: Arc<Recorder>, backoff: Backoff) -> Self {
        ImageManager { images, client, recorder, backoff, last_errors: Mutex::new(HashMap::new()) }
    }

    /// Credentials from the pod's `imagePullSecrets` that match the image's registry.
    async fn pull_credentials(&self, pod: &Pod, registry: &str) -> Vec<RegistryAuth> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let mut out = Vec::new();
        let refs = pod.spec.as_ref().and_then(|s| s.image_pull_secrets.clone()).unwrap_or_default();
        for r in refs {
            let name = r.name;
            match secrets.get_opt(&name).await {
                Ok(Some(secret)) => {
                    let data = secret.data.unwrap_or_default();
                    for key in [".dockerconfigjson", ".dockercfg"] {
                        if let Some(bytes) = data.get(key) {
                            out.extend(credentials_from_docker_config(&bytes.0, registry));
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    self.recorder
                        .event(
                            pod,
                            None,
                            WARNING,
                            "FailedToRetrieveImagePullSecret",
                            format!(
                                "Unable to retrieve some image pull secrets ({name}); attempting to pull the image may not succeed."
                            ),
                        )
                        .await;
                }
            }
        }
        out
    }

    /// Makes sure the container's image is present, pulling it per policy; returns the image reference.
    pub async fn ensure_image(&self, pod: &Pod, container: &Container) -> Result<(), ImageError> {
        let name = container.name.as_str();
        let image = container.image.clone().unwrap_or_default();
        let normalized = match normalize(&image) {
            Ok(n) if !image.is_empty() => n,
            Ok(_) => {
                let message =
                    "Failed to apply default image tag \"\": couldn't parse image name \"\": invalid reference format"
                        .to_string();
                self.recorder.event(pod, Some(name), WARNING, "InspectFailed", message.clone()).await;
                return Err(ImageError { reason: "InvalidImageName", message });
            }
            Err(e) => {
                let message =
                    format!("Failed to apply default image tag {image:?}: couldn't parse image name {image:?}: {e}");
                self.recorder.event(pod, Some(name), WARNING, "InspectFailed", message.clone()).await;
                return Err(ImageError { reason: "InvalidImageName", message });
            }
        };
        let policy = pull_policy(container);
        let present = match self.images.image_status(&image).await {
            Ok(p) => p,
            Err(e) => {
                let message = format!("Failed to inspect image {image:?}: {e}");
                self.recorder.event(pod, Some(name), WARNING, "InspectFailed", message.clone()).await;
                return Err(ImageError { reason: "ImageInspectError", message });
            }
        };
        let should_pull = match policy.as_str() {
            "Never" => false,
            "IfNotPresent" => present.is_none(),
            _ => true,
        };
        if !should_pull {
            if present.is_some() {
                let message = format!("Container image {image:?} already present on machine");
                self.recorder.event(pod, Some(name), NORMAL, "Pulled", message).await;
                return Ok(());
            }
            let message = format!("Container image {image:?} is not present with pull policy of Never");
            self.recorder.event(pod, Some(name), WARNING, "ErrImageNeverPull", message.clone()).await;
            return Err(ImageError { reason: "ErrImageNeverPull", message });
        }
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        let key = format!("{uid}/{normalized}");
        let now = SystemTime::now();
        if self.backoff.in_backoff_since_update(&key, now).is_some() {
            let last =
                self.last_errors.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned().unwrap_or_default();
            self.recorder.event(pod, Some(name), NORMAL, "BackOff", format!("Back-off pulling image {image:?}")).await;
            return Err(ImageError {
                reason: "ImagePullBackOff",
                message: format!("Back-off pulling image {image:?}: ErrImagePull: {last}"),
            });
        }
        self.recorder.event(pod, Some(name), NORMAL, "Pulling", format!("Pulling image {image:?}")).await;
        let started = Instant::now();
        let creds = self.pull_credentials(pod, &registry_of(&normalized)).await;
        let mut result: Result<String, RuntimeError> = Err(RuntimeError::Other("no pull attempted".into()));
        if creds.is_empty() {
            result = self.images.pull_image(&image, None).await;
        } else {
            for auth in &creds {
                result = self.images.pull_image(&image, Some(auth)).await;
                if result.is_ok() {
                    break;
                }
            }
        }
        match result {
            Ok(_) => {
                let took = started.elapsed().as_secs_f64();
                let size = self.images.image_status(&image).await.ok().flatten().map(|i| i.size).unwrap_or(0);
                self.recorder
                    .event(
                        pod,
                        Some(name),
                        NORMAL,
                        "Pulled",
                        format!("Successfully pulled image {image:?} in {took:.3}s ({took:.3}s including waiting). Image size: {size} bytes."),
                    )
                    .await;
                self.last_errors.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                Ok(())
            }
            Err(e) => {
                let message = match &e {
                    RuntimeError::ImagePull { message, .. } => {
                        format!("failed to pull and unpack image {normalized:?}: {message}")
                    }
                    other => other.to_string(),
                };
                self.backoff.next(&key, SystemTime::now());
                self.last_errors.lock().unwrap_or_else(|e| e.into_inner()).insert(key, message.clone());
                self.recorder
                    .event(pod, Some(name), WARNING, "Failed", format!("Failed to pull image {image:?}: {message}"))
                    .await;
                Err(ImageError { reason: "ErrImagePull", message })
            }
        }
    }

    /// Forgets a pod's pull back-off.
    pub fn forget_pod(&self, uid: &str) {
        self.backoff.forget_prefix(&format!("{uid}/"));
        self.last_errors.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| !k.starts_with(&format!("{uid}/")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn default_pull_policy_follows_the_tag() {
        assert_eq!(pull_policy(&container("busybox", None)), "Always");
        assert_eq!(pull_policy(&container("busybox:latest", None)), "Always");
        assert_eq!(pull_policy(&container("localhost:5000/busybox", None)), "Always");
        assert_eq!(pull_policy(&container("localhost:5000/busybox:1.36", None)), "IfNotPresent");
        assert_eq!(pull_policy(&container("busybox@sha256:abcd", None)), "IfNotPresent");
        assert_eq!(pull_policy(&container("busybox", Some("Never"))), "Never");
    }

    #[test]
    fn docker_config_credentials_match_the_registry() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:s3cret");
        let cfg = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"127.0.0.1:5000":{{"username":"u","password":"p"}}}}}}"#
        );
        assert_eq!(
            credentials_from_docker_config(cfg.as_bytes(), "docker.io"),
            vec![RegistryAuth { username: "bob".into(), password: "s3cret".into() }]
        );
        assert_eq!(
            credentials_from_docker_config(cfg.as_bytes(), "127.0.0.1:5000"),
            vec![RegistryAuth { username: "u".into(), password: "p".into() }]
        );
        assert!(credentials_from_docker_config(cfg.as_bytes(), "quay.io").is_empty());
        assert!(credentials_from_docker_config(b"not json", "docker.io").is_empty());
    }
}
