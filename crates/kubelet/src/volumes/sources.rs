//! The files of configMap, secret, downwardAPI and projected volumes (upstream's `MakePayload` and
//! `CollectData`), read through the kube client.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount, ServiceAccountTokenProjection,
};
use kube::Api;

use super::VolumeError;
use super::atomic_writer::{FileProjection, Payload};
use crate::env::{self, NodeAllocatable};

/// Default file mode of configMap, secret, downwardAPI and projected files (0644).
pub const DEFAULT_MODE: i32 = 0o644;

fn mode(m: i32) -> u32 {
    (m as u32) & 0o7777
}

fn api_err(kind: &'static str, ns: &str, name: &str) -> impl FnOnce(kube::Error) -> VolumeError {
    let (ns, name) = (ns.to_string(), name.to_string());
    move |source| VolumeError::Api { kind, namespace: ns, name, source: Box::new(source) }
}

pub async fn get_config_map(client: &kube::Client, ns: &str, name: &str) -> Result<Option<ConfigMap>, VolumeError> {
    Api::<ConfigMap>::namespaced(client.clone(), ns).get_opt(name).await.map_err(api_err("configmap", ns, name))
}

pub async fn get_secret(client: &kube::Client, ns: &str, name: &str) -> Result<Option<Secret>, VolumeError> {
    Api::<Secret>::namespaced(client.clone(), ns).get_opt(name).await.map_err(api_err("secret", ns, name))
}

/// Files from key/value data: every key, or the listed `items` (missing keys are errors unless optional).
fn make_payload(
    items: Option<&[KeyToPath]>,
    data: &BTreeMap<String, Vec<u8>>,
    default_mode: i32,
    optional: bool,
    missing: impl Fn(&str) -> VolumeError,
) -> Result<Payload, VolumeError> {
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                payload.insert(k.clone(), FileProjection { data: v.clone(), mode: mode(default_mode) });
            }
        }
        Some(items) => {
            for item in items {
                let Some(v) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(missing(&item.key));
                };
                payload.insert(
                    clean(&item.path),
                    FileProjection { data: v.clone(), mode: mode(item.mode.unwrap_or(default_mode)) },
                );
            }
        }
    }
    Ok(payload)
}

/// `filepath.Clean` for a relative payload path (`a//b/./c` is `a/b/c`); `..` is kept for the writer to refuse.
fn clean(path: &str) -> String {
    let parts: Vec<String> = Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            Component::RootDir => Some(String::new()),
            _ => None,
        })
        .collect();
    parts.join("/")
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> =
        cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect();
    data.extend(cm.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
    data
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    data.extend(s.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())));
    data
}

/// A configMap's files; an optional configMap that does not exist gives no files.
pub async fn config_map_payload(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, VolumeError> {
    match get_config_map(client, ns, name).await? {
        Some(cm) => make_payload(items, &config_map_data(&cm), default_mode, optional, |k| {
            VolumeError::MissingConfigMapKey(k.to_string())
        }),
        None if optional => Ok(Payload::new()),
        None => Err(VolumeError::ConfigMapNotFound(name.to_string())),
    }
}

/// A secret's files; an optional secret that does not exist gives no files.
pub async fn secret_payload(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, VolumeError> {
    match get_secret(client, ns, name).await? {
        Some(s) => make_payload(items, &secret_data(&s), default_mode, optional, |k| {
            VolumeError::MissingSecretKey(k.to_string())
        }),
        None if optional => Ok(Payload::new()),
        None => Err(VolumeError::SecretNotFound(name.to_string())),
    }
}

/// downwardAPI files: `fieldRef` (metadata fields, labels and annotations) and `resourceFieldRef` values.
pub fn downward_api_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    allocatable: &NodeAllocatable,
) -> Result<Payload, VolumeError> {
    let mut payload = Payload::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            env::pod_field_value(pod, None, &f.field_path)?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or_default();
            let container = env::find_container(pod, name)
                .ok_or_else(|| VolumeError::Invalid(format!("container {name:?} not found in the pod")))?;
            env::container_resource_value(container, &r.resource, r.divisor.as_ref(), allocatable)?
        } else {
            continue;
        };
        payload.insert(
            clean(&item.path),
            FileProjection { data: value.into_bytes(), mode: mode(item.mode.unwrap_or(default_mode)) },
        );
    }
    Ok(payload)
}

/// A bound service account token (TokenRequest). `Ok(None)` when the API server does not serve
/// `serviceaccounts/token`: the source is then skipped.
pub async fn service_account_token(
    client: &kube::Client,
    pod: &Pod,
    projection: &ServiceAccountTokenProjection,
) -> Result<Option<Vec<u8>>, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod.spec.as_ref().and_then(|s| s.service_account_name.as_deref()).unwrap_or("default");
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: projection.audience.clone().filter(|a| !a.is_empty()).into_iter().collect(),
            expiration_seconds: Some(projection.expiration_seconds.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    match api.create_token_request(sa, &Default::default(), &request).await {
        Ok(tr) => Ok(tr.status.map(|s| s.token.into_bytes())),
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 405 | 501 | 503) => {
            if status.code == 404 && api.get_opt(sa).await.map_err(api_err("serviceaccount", ns, sa))?.is_none() {
                return Err(VolumeError::Invalid(format!("serviceaccounts \"{sa}\" not found")));
            }
            tracing::warn!(
                namespace = ns,
                serviceaccount = sa,
                "the API server does not serve TokenRequest; skipping the serviceAccountToken source"
            );
            Ok(None)
        }
        Err(source) => Err(VolumeError::Api {
            kind: "serviceaccount token",
            namespace: ns.into(),
            name: sa.into(),
            source: Box::new(source),
        }),
    }
}
