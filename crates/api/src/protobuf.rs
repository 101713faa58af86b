//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`) decoded generically into Kubernetes JSON.
//!
//! kubectl's typed clientset sends `create secret|configmap|deployment|…`, `auth can-i`, `create token`,
//! `certificate approve` and others as protobuf: the magic `k8s\0` followed by a `runtime.Unknown`
//! envelope `{typeMeta{apiVersion, kind}, raw, contentEncoding, contentType}` whose `raw` is the object's
//! protobuf encoding. [`ProtobufDecoder`] holds Kubernetes' `FileDescriptorSet` (extracted once from the
//! `k8s-rs-pb` crate by `scripts/extract-k8s-descriptors.py`, see `data/protobuf/LICENSE-NOTICE.md`),
//! decodes `raw` as a prost-reflect [`DynamicMessage`] and walks it into the JSON the Go API server would
//! produce (rules in `protobuf/walk.rs`). Package names in the descriptors are `api.core.v1`,
//! `apimachinery.pkg.apis.meta.v1`, … (upstream: `k8s.io.api.core.v1`).

mod walk;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::io::Read;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

/// The gzipped `FileDescriptorSet` of every Kubernetes `generated.proto` (76 files).
const DESCRIPTORS_GZ: &[u8] = include_bytes!("../data/protobuf/k8s-descriptors.pb.gz");

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The `Content-Type` of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

const UNKNOWN_MESSAGE: &str = "apimachinery.pkg.runtime.Unknown";
const META_V1_PACKAGE: &str = "apimachinery.pkg.apis.meta.v1";

/// Kinds from `meta.k8s.io/v1` that Kubernetes registers in every group version.
const META_KINDS: &[&str] = &[
    "DeleteOptions",
    "CreateOptions",
    "UpdateOptions",
    "PatchOptions",
    "GetOptions",
    "ListOptions",
    "Status",
    "WatchEvent",
];

/// Why a protobuf body could not be decoded. The messages are meant for a 400 `Status`.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("protobuf descriptors could not be loaded: {0}")]
    Descriptors(String),
    #[error(
        "the protobuf body does not start with the Kubernetes magic number k8s\\0 (first bytes: {found:02x?})"
    )]
    MissingMagic { found: Vec<u8> },
    #[error("malformed protobuf body: {context}: {message}")]
    Malformed { context: String, message: String },
    #[error("the protobuf envelope has no {0} in its typeMeta")]
    MissingTypeMeta(&'static str),
    #[error("apiVersion {api_version:?} is not known to the protobuf decoder")]
    UnknownApiVersion { api_version: String },
    #[error("kind {kind:?} is not known in apiVersion {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("the protobuf envelope has unsupported contentEncoding {0:?}")]
    UnsupportedContentEncoding(String),
    #[error("the protobuf envelope has unsupported contentType {0:?}")]
    UnsupportedContentType(String),
    #[error("field {path} holds invalid embedded JSON: {message}")]
    InvalidEmbeddedJson { path: String, message: String },
    #[error("field {path} holds an invalid {what}: {message}")]
    InvalidValue {
        path: String,
        what: &'static str,
        message: String,
    },
}

/// A decoded protobuf body.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// `typeMeta.apiVersion` of the envelope.
    pub api_version: String,
    /// `typeMeta.kind` of the envelope.
    pub kind: String,
    /// The object as Kubernetes JSON, with `apiVersion` and `kind` set (first).
    pub object: serde_json::Value,
    /// Fields the descriptors did not know, as `<json path>.#<field number>` (`spec.template.#99`;
    /// `#99` at the top level), in the order met. Under `fieldValidation=Strict` these are a 400.
    pub unknown_fields: Vec<String>,
}

/// Decodes Kubernetes protobuf bodies. Create it once (about 10 ms) and share it (it is `Send + Sync`).
#[derive(Debug, Clone)]
pub struct ProtobufDecoder {
    pool: DescriptorPool,
    unknown: MessageDescriptor,
    packages: HashSet<String>,
}

impl ProtobufDecoder {
    /// Loads the embedded descriptors.
    pub fn load() -> Result<Self, ProtobufError> {
        let mut raw = Vec::with_capacity(300 * 1024);
        flate2::read::GzDecoder::new(DESCRIPTORS_GZ)
            .read_to_end(&mut raw)
            .map_err(|e| ProtobufError::Descriptors(format!("gunzip: {e}")))?;
        let pool = DescriptorPool::decode(raw.as_slice())
            .map_err(|e| ProtobufError::Descriptors(e.to_string()))?;
        let unknown = pool
            .get_message_by_name(UNKNOWN_MESSAGE)
            .ok_or_else(|| ProtobufError::Descriptors(format!("{UNKNOWN_MESSAGE} is missing")))?;
        let packages = pool.files().map(|f| f.package_name().to_owned()).collect();
        Ok(Self {
            pool,
            unknown,
            packages,
        })
    }

    /// The descriptor pool (package prefix `api.`, `apimachinery.pkg.`, … instead of `k8s.io.`).
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// The protobuf package holding the types of `api_version` (`v1` → `api.core.v1`,
    /// `apps/v1` → `api.apps.v1`, `apiextensions.k8s.io/v1` →
    /// `apiextensions_apiserver.pkg.apis.apiextensions.v1`, …), if the descriptors have it.
    pub fn package_for(&self, api_version: &str) -> Option<String> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let simple = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if !simple(version) {
            return None;
        }
        let base = match group {
            "" => "api.core".to_owned(),
            "apiextensions.k8s.io" => "apiextensions_apiserver.pkg.apis.apiextensions".to_owned(),
            "apiregistration.k8s.io" => "kube_aggregator.pkg.apis.apiregistration".to_owned(),
            "internal.apiserver.k8s.io" => "api.apiserverinternal".to_owned(),
            "meta.k8s.io" => "apimachinery.pkg.apis.meta".to_owned(),
            "metrics.k8s.io" => "metrics.pkg.apis.metrics".to_owned(),
            "custom.metrics.k8s.io" => "metrics.pkg.apis.custom_metrics".to_owned(),
            "external.metrics.k8s.io" => "metrics.pkg.apis.external_metrics".to_owned(),
            g => {
                let label = g.split('.').next().unwrap_or_default();
                if !simple(label) {
                    return None;
                }
                format!("api.{label}")
            }
        };
        let package = format!("{base}.{version}");
        self.packages.contains(&package).then_some(package)
    }

    /// The message type of `kind` in `api_version`; the `meta.k8s.io/v1` option and status kinds are
    /// found from every group version, as Kubernetes registers them there.
    pub fn message_for(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<MessageDescriptor, ProtobufError> {
        let package =
            self.package_for(api_version)
                .ok_or_else(|| ProtobufError::UnknownApiVersion {
                    api_version: api_version.to_owned(),
                })?;
        let unknown_kind = || ProtobufError::UnknownKind {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        };
        let valid = kind.starts_with(|c: char| c.is_ascii_uppercase())
            && kind.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(unknown_kind());
        }
        self.pool
            .get_message_by_name(&format!("{package}.{kind}"))
            .or_else(|| {
                META_KINDS
                    .contains(&kind)
                    .then(|| {
                        self.pool
                            .get_message_by_name(&format!("{META_V1_PACKAGE}.{kind}"))
                    })
                    .flatten()
            })
            .ok_or_else(unknown_kind)
    }

    /// Decodes a whole body (`k8s\0` + `runtime.Unknown`) into Kubernetes JSON.
    pub fn decode(&self, body: &[u8]) -> Result<Decoded, ProtobufError> {
        let mut unknown_fields = Vec::new();
        let (api_version, kind, object) = self.decode_at(body, "", &mut unknown_fields)?;
        Ok(Decoded {
            api_version,
            kind,
            object,
            unknown_fields,
        })
    }

    /// Decodes a body found at JSON path `path` (empty at the top level; `RawExtension`s holding
    /// protobuf recurse here), adding unknown fields to `unknown`.
    fn decode_at(
        &self,
        body: &[u8],
        path: &str,
        unknown: &mut Vec<String>,
    ) -> Result<(String, String, serde_json::Value), ProtobufError> {
        let Some(envelope) = body.strip_prefix(MAGIC) else {
            return Err(ProtobufError::MissingMagic {
                found: body.iter().take(4).copied().collect(),
            });
        };
        let envelope = DynamicMessage::decode(self.unknown.clone(), envelope).map_err(|e| {
            ProtobufError::Malformed {
                context: "runtime.Unknown envelope".into(),
                message: e.to_string(),
            }
        })?;
        let string_field =
            |msg: &DynamicMessage, name: &str| match msg.get_field_by_name(name).as_deref() {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
        let (api_version, kind) = match envelope.get_field_by_name("typeMeta").as_deref() {
            Some(Value::Message(tm)) => (string_field(tm, "apiVersion"), string_field(tm, "kind")),
            _ => (String::new(), String::new()),
        };
        if api_version.is_empty() {
            return Err(ProtobufError::MissingTypeMeta("apiVersion"));
        }
        if kind.is_empty() {
            return Err(ProtobufError::MissingTypeMeta("kind"));
        }
        let encoding = string_field(&envelope, "contentEncoding");
        if !encoding.is_empty() {
            return Err(ProtobufError::UnsupportedContentEncoding(encoding));
        }
        let raw = match envelope.get_field_by_name("raw").as_deref() {
            Some(Value::Bytes(b)) => b.clone(),
            _ => Default::default(),
        };
        let content_type = string_field(&envelope, "contentType");
        let mut fields = match content_type.as_str() {
            "" | CONTENT_TYPE => {
                let desc = self.message_for(&api_version, &kind)?;
                let msg = DynamicMessage::decode(desc, raw.as_ref()).map_err(|e| {
                    ProtobufError::Malformed {
                        context: format!("{kind} ({api_version})"),
                        message: e.to_string(),
                    }
                })?;
                match walk::Walker::new(self, unknown).message(&msg, path)? {
                    serde_json::Value::Object(map) => map,
                    other => {
                        return Err(ProtobufError::InvalidValue {
                            path: display_path(path),
                            what: "top-level object",
                            message: format!(
                                "{kind} does not encode as a JSON object but as {other}"
                            ),
                        });
                    }
                }
            }
            "application/json" => match serde_json::from_slice(&raw) {
                Ok(serde_json::Value::Object(map)) => map,
                Ok(_) => serde_json::Map::new(),
                Err(e) => {
                    return Err(ProtobufError::InvalidEmbeddedJson {
                        path: display_path(path),
                        message: e.to_string(),
                    });
                }
            },
            _ => return Err(ProtobufError::UnsupportedContentType(content_type)),
        };
        fields.shift_remove("apiVersion");
        fields.shift_remove("kind");
        let mut object = serde_json::Map::with_capacity(fields.len() + 2);
        object.insert("apiVersion".into(), api_version.clone().into());
        object.insert("kind".into(), kind.clone().into());
        object.extend(fields);
        Ok((api_version, kind, serde_json::Value::Object(object)))
    }
}

/// A JSON path for messages: `<root>` for the empty path.
fn display_path(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_owned()
    } else {
        path.to_owned()
    }
}
