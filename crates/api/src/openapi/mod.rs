//! Kubernetes' OpenAPI schema data (vendored in `data/openapi/`, see `scripts/gen-openapi-data.py`) and
//! what it answers: the OpenAPI v3 index and group-version documents, the v2 document, patch metadata for
//! strategic merge patch, and unknown-field detection for `fieldValidation`.
//!
//! Everything here is pure: [`Schemas::load`] decodes the compiled-in data once and the caller shares the
//! value (in an `Arc`).

mod docs;
mod meta;
mod unknown;

use std::collections::HashMap;
use std::io::Read;

use serde_json::{Map, Value};

pub use meta::{FieldMeta, PatchMeta};

/// The vendored definitions: gzipped `{"source": ..., "definitions": {name: OpenAPI v3 schema}}`.
const DATA: &[u8] = include_bytes!("../../data/openapi/definitions.json.gz");

/// How schema references are written in the vendored data and in v3 documents.
pub const V3_REF_PREFIX: &str = "#/components/schemas/";

/// The Kubernetes version the schemas describe (reported in document `info`).
pub const SCHEMA_VERSION: &str = "v1.33.0";

/// Kubernetes' API schemas, keyed by definition name (`io.k8s.api.core.v1.Pod`).
#[derive(Debug)]
pub struct Schemas {
    definitions: Map<String, Value>,
    /// (group, version, kind) → definition name, from `x-kubernetes-group-version-kind`.
    kinds: HashMap<(String, String, String), String>,
}

impl Schemas {
    /// Decodes the compiled-in schema data. Call once at start and share the result.
    ///
    /// The data is part of the binary and covered by tests, so a failure here is a build defect: it
    /// panics with a message rather than returning an error.
    pub fn load() -> Schemas {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(DATA)
            .read_to_end(&mut json)
            .expect("the vendored OpenAPI data (data/openapi/definitions.json.gz) is valid gzip");
        let mut root: Map<String, Value> =
            serde_json::from_slice(&json).expect("the vendored OpenAPI data is a JSON object");
        let definitions = match root.remove("definitions") {
            Some(Value::Object(defs)) => defs,
            _ => panic!("the vendored OpenAPI data has no \"definitions\" object"),
        };
        Schemas::from_definitions(definitions)
    }

    /// Builds the lookup tables over a set of OpenAPI v3 definitions.
    fn from_definitions(definitions: Map<String, Value>) -> Schemas {
        let mut kinds = HashMap::new();
        for (name, schema) in &definitions {
            let Some(Value::Array(gvks)) = schema.get("x-kubernetes-group-version-kind") else {
                continue;
            };
            for gvk in gvks {
                let field = |k: &str| gvk.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                kinds
                    .entry((field("group"), field("version"), field("kind")))
                    .or_insert_with(|| name.clone());
            }
        }
        Schemas { definitions, kinds }
    }

    /// The number of definitions.
    pub fn len(&self) -> usize {
        self.definitions.len()
    }

    /// Whether there are no definitions (never, for the vendored data).
    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty()
    }

    /// One definition by name (`io.k8s.api.core.v1.PodSpec`), in OpenAPI v3 form.
    pub fn definition(&self, name: &str) -> Option<&Value> {
        self.definitions.get(name)
    }

    /// The definition name of a kind: `("apps", "v1", "Deployment")` → `io.k8s.api.apps.v1.Deployment`.
    pub fn definition_name(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.kinds
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
            .map(String::as_str)
    }

    /// The schema of a kind.
    pub fn kind_schema(&self, group: &str, version: &str, kind: &str) -> Option<&Value> {
        self.definition_name(group, version, kind)
            .and_then(|n| self.definition(n))
    }

    /// Follows a schema's reference (`$ref`, or `allOf` holding one `$ref`) to the definition it names;
    /// a schema without one is returned as is. Unknown references resolve to `None`.
    pub fn resolve<'a>(&'a self, schema: &'a Value) -> Option<&'a Value> {
        let mut current = schema;
        // Definitions never alias each other more than a few levels deep; the bound guards against cycles.
        for _ in 0..8 {
            match ref_name(current) {
                Some(name) => current = self.definitions.get(name)?,
                None => return Some(current),
            }
        }
        None
    }

    /// The OpenAPI v3 index (`GET /openapi/v3`): every served group-version with its document URL.
    pub fn index(&self) -> Value {
        docs::index(self)
    }

    /// The OpenAPI v3 document of one group-version and its hash, `None` for a group-version not served.
    /// The hash is the upper-case hex SHA-512 of `serde_json::to_vec(&doc)`.
    pub fn group_version_doc(&self, group: &str, version: &str) -> Option<(Value, String)> {
        docs::group_version_doc(self, group, version)
    }

    /// The OpenAPI v3 document of a custom group-version: each resource with its CRD version's
    /// `openAPIV3Schema`, and its hash.
    pub fn custom_group_version_doc(
        &self,
        group: &str,
        version: &str,
        resources: &[(&'static crate::resources::ResourceInfo, Value)],
    ) -> Option<(Value, String)> {
        docs::custom_group_version_doc(self, group, version, resources)
    }

    /// The Swagger 2.0 document (`GET /openapi/v2` as JSON) of every served group-version.
    pub fn swagger_v2(&self) -> Value {
        docs::swagger_v2(self)
    }

    /// Patch metadata of a kind's root object, for [`crate::smp::strategic_merge_patch`]. `None` for a
    /// kind without a schema (then strategic merge patch merges maps and replaces lists).
    pub fn patch_meta(&self, group: &str, version: &str, kind: &str) -> Option<PatchMeta<'_>> {
        PatchMeta::new(self, self.kind_schema(group, version, kind)?)
    }

    /// The fields of `obj` that the schema of its kind does not know, as paths like
    /// `spec.containers[0].imagee` (upstream words each as `unknown field "<path>"`). Empty for a kind
    /// without a schema.
    pub fn unknown_fields(&self, group: &str, version: &str, kind: &str, obj: &Value) -> Vec<String> {
        match self.kind_schema(group, version, kind) {
            Some(schema) => unknown::unknown_fields(self, schema, obj),
            None => Vec::new(),
        }
    }
}

/// The definition a schema refers to, for `{"$ref": ...}` and `{"allOf": [{"$ref": ...}]}`.
fn ref_name(schema: &Value) -> Option<&str> {
    let reference = match schema.get("$ref") {
        Some(r) => r,
        None => match schema.get("allOf")?.as_array()?.as_slice() {
            [only] => only.get("$ref")?,
            _ => return None,
        },
    };
    reference.as_str()?.strip_prefix(V3_REF_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::RESOURCES;

    #[test]
    fn load_decodes_every_definition() {
        let s = Schemas::load();
        assert_eq!(s.len(), 707);
        let pod = s.definition("io.k8s.api.core.v1.Pod").unwrap();
        assert_eq!(pod["type"], "object");
        assert_eq!(
            pod["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        assert!(pod["properties"]["kind"].get("enum").is_none());
    }

    #[test]
    fn every_served_kind_and_its_list_have_a_schema() {
        let s = Schemas::load();
        for r in RESOURCES {
            assert!(
                s.definition_name(r.group, r.version, r.kind).is_some(),
                "{}/{} {}",
                r.group,
                r.version,
                r.kind
            );
            assert!(
                s.definition_name(r.group, r.version, &r.list_kind()).is_some(),
                "{} list",
                r.kind
            );
            // exec/attach/portforward options have no schema upstream either (connect operations).
            for sub in r
                .subresources
                .iter()
                .filter(|s| !matches!(s.name, "exec" | "attach" | "portforward"))
            {
                assert!(
                    s.definition_name(sub.group, sub.version, sub.kind).is_some(),
                    "{}/{} {}",
                    sub.group,
                    sub.version,
                    sub.kind
                );
            }
        }
    }

    #[test]
    fn kinds_with_the_same_name_in_two_groups_stay_apart() {
        let s = Schemas::load();
        assert_eq!(s.definition_name("", "v1", "Event"), Some("io.k8s.api.core.v1.Event"));
        assert_eq!(
            s.definition_name("events.k8s.io", "v1", "Event"),
            Some("io.k8s.api.events.v1.Event")
        );
        assert_eq!(s.definition_name("apps", "v1", "Nope"), None);
    }

    #[test]
    fn resolve_follows_all_of_references() {
        let s = Schemas::load();
        let spec = &s.definition("io.k8s.api.core.v1.Pod").unwrap()["properties"]["spec"];
        let resolved = s.resolve(spec).unwrap();
        assert!(resolved["properties"].get("containers").is_some());
        let plain = serde_json::json!({"type": "string"});
        assert_eq!(s.resolve(&plain), Some(&plain));
        assert_eq!(
            s.resolve(&serde_json::json!({"$ref": "#/components/schemas/nope"})),
            None
        );
    }

    #[test]
    fn int_or_string_and_quantity_are_one_of_as_upstream_v3() {
        let s = Schemas::load();
        let ios = s.definition("io.k8s.apimachinery.pkg.util.intstr.IntOrString").unwrap();
        assert_eq!(
            ios["oneOf"],
            serde_json::json!([{"type": "integer"}, {"type": "string"}])
        );
        assert_eq!(ios["format"], "int-or-string");
        let q = s.definition("io.k8s.apimachinery.pkg.api.resource.Quantity").unwrap();
        assert_eq!(q["oneOf"], serde_json::json!([{"type": "string"}, {"type": "number"}]));
        assert!(q.get("type").is_none() && q["description"].as_str().unwrap().starts_with("Quantity is"));
    }
}
