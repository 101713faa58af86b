//! CustomResourceDefinition objects: their defaults (`SetDefaults_CustomResourceDefinition*`), their
//! validation (names, scope, versions, the structural-schema rules, CEL rules that must compile) with
//! upstream's field paths, and the custom resource versions a CRD serves.

use serde_json::{json, Value};

use super::catalog::{Catalog, CustomVersion, PrinterColumn, ResourceDesc, ScalePaths};
use crate::status::FieldError;
use crate::validation::format;

/// The finalizer a CRD carries while its objects are deleted.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The names of a CRD (`spec.names` or `status.acceptedNames`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
}

impl Names {
    pub fn from_value(v: &Value) -> Names {
        let strs = |k: &str| -> Vec<String> {
            v[k].as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
        };
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        Names {
            plural: s("plural"),
            singular: s("singular"),
            kind: s("kind"),
            list_kind: s("listKind"),
            short_names: strs("shortNames"),
            categories: strs("categories"),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut v = json!({"plural": self.plural, "singular": self.singular, "kind": self.kind, "listKind": self.list_kind});
        if !self.short_names.is_empty() {
            v["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            v["categories"] = json!(self.categories);
        }
        v
    }
}

/// Upstream's defaults: `singular` is the lower-cased kind, `listKind` is `<kind>List`, conversion is `None`.
pub fn apply_defaults(crd: &mut Value) {
    let spec = &mut crd["spec"];
    if !spec.is_object() {
        return;
    }
    let kind = spec["names"]["kind"].as_str().unwrap_or("").to_string();
    if spec["names"].is_object() {
        if spec["names"]["singular"].as_str().is_none_or(str::is_empty) && !kind.is_empty() {
            spec["names"]["singular"] = json!(kind.to_lowercase());
        }
        if spec["names"]["listKind"].as_str().is_none_or(str::is_empty) && !kind.is_empty() {
            spec["names"]["listKind"] = json!(format!("{kind}List"));
        }
    }
    if spec["conversion"]["strategy"].as_str().is_none_or(str::is_empty) {
        spec["conversion"]["strategy"] = json!("None");
    }
    if let Some(versions) = spec["versions"].as_array_mut() {
        for v in versions {
            if let Some(cols) = v["additionalPrinterColumns"].as_array_mut() {
                for c in cols {
                    if c.get("priority").is_none() {
                        c["priority"] = json!(0);
                    }
                }
            }
        }
    }
}

fn str_at<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// Validates a CRD on create (and, with [`validate_update`], on update).
pub fn validate(crd: &Value) -> Vec<FieldError> {
    let mut e = Vec::new();
    let spec = &crd["spec"];
    let group = str_at(spec, "group");
    let names = Names::from_value(&spec["names"]);
    let name = str_at(&crd["metadata"], "name");
    if !name.is_empty() && name != format!("{}.{group}", names.plural) {
        e.push(FieldError::invalid("metadata.name", &json!(name), "must be spec.names.plural+\".\"+spec.group"));
    }
    if group.is_empty() {
        e.push(FieldError::required("spec.group"));
    } else {
        for m in format::is_dns1123_subdomain(group) {
            e.push(FieldError::invalid("spec.group", &json!(group), &m));
        }
        if !group.contains('.') {
            e.push(FieldError::invalid("spec.group", &json!(group), "should be a domain with at least one dot"));
        }
    }
    match str_at(spec, "scope") {
        "Namespaced" | "Cluster" => {}
        "" => e.push(FieldError::required("spec.scope")),
        other => e.push(FieldError::not_supported("spec.scope", &json!(other), &["Cluster", "Namespaced"])),
    }
    validate_names(&names, "spec.names", &mut e);
    match str_at(&spec["conversion"], "strategy") {
        "None" | "" => {}
        "Webhook" => e.push(FieldError::forbidden("spec.conversion.strategy", "the Webhook conversion strategy is not supported by this server")),
        other => e.push(FieldError::not_supported("spec.conversion.strategy", &json!(other), &["None", "Webhook"])),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        e.push(FieldError::invalid("spec.versions", &json!(versions), "must have exactly one version marked as storage version"));
    } else {
        let storage = versions.iter().filter(|v| v["storage"] == Value::Bool(true)).count();
        if storage != 1 {
            let names: Vec<&str> = versions.iter().map(|v| str_at(v, "name")).collect();
            e.push(FieldError::invalid("spec.versions", &json!(names), "must have exactly one version marked as storage version"));
        }
        if !versions.iter().any(|v| v["served"] == Value::Bool(true)) {
            let names: Vec<&str> = versions.iter().map(|v| str_at(v, "name")).collect();
            e.push(FieldError::invalid("spec.versions", &json!(names), "must have at least one version marked as served"));
        }
    }
    let mut seen = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let p = format!("spec.versions[{i}]");
        let vname = str_at(v, "name");
        if vname.is_empty() {
            e.push(FieldError::required(format!("{p}.name")));
        } else {
            for m in format::is_dns1035_label(vname) {
                e.push(FieldError::invalid(format!("{p}.name"), &json!(vname), &m));
            }
            if seen.contains(&vname) {
                e.push(FieldError::invalid("spec.versions", &json!(vname), "must appear only once"));
            }
            seen.push(vname);
        }
        let schema = &v["schema"]["openAPIV3Schema"];
        if schema.is_object() {
            structural(schema, &format!("{p}.schema.openAPIV3Schema"), true, &mut e);
        } else {
            e.push(FieldError::required_msg(format!("{p}.schema.openAPIV3Schema"), "schemas are required"));
        }
        if let Some(cols) = v["additionalPrinterColumns"].as_array() {
            for (j, c) in cols.iter().enumerate() {
                let cp = format!("{p}.additionalPrinterColumns[{j}]");
                if str_at(c, "name").is_empty() {
                    e.push(FieldError::required(format!("{cp}.name")));
                }
                match str_at(c, "type") {
                    "integer" | "number" | "string" | "boolean" | "date" => {}
                    "" => e.push(FieldError::required(format!("{cp}.type"))),
                    other => e.push(FieldError::not_supported(format!("{cp}.type"), &json!(other),
                        &["integer", "number", "string", "boolean", "date"])),
                }
                if str_at(c, "jsonPath").is_empty() {
                    e.push(FieldError::required(format!("{cp}.jsonPath")));
                }
            }
        }
        let scale = &v["subresources"]["scale"];
        if scale.is_object() {
            for f in ["specReplicasPath", "statusReplicasPath"] {
                let path = str_at(scale, f);
                if path.is_empty() {
                    e.push(FieldError::required(format!("{p}.subresources.scale.{f}")));
                } else if !path.starts_with('.') {
                    e.push(FieldError::invalid(format!("{p}.subresources.scale.{f}"), &json!(path), "should be a json path under .spec or .status"));
                }
            }
        }
    }
    e
}

fn validate_names(n: &Names, p: &str, e: &mut Vec<FieldError>) {
    if n.plural.is_empty() {
        e.push(FieldError::required(format!("{p}.plural")));
    } else {
        for m in format::is_dns1035_label(&n.plural) {
            e.push(FieldError::invalid(format!("{p}.plural"), &json!(n.plural), &m));
        }
    }
    for m in format::is_dns1035_label(&n.singular).into_iter().filter(|_| !n.singular.is_empty()) {
        e.push(FieldError::invalid(format!("{p}.singular"), &json!(n.singular), &m));
    }
    if n.kind.is_empty() {
        e.push(FieldError::required(format!("{p}.kind")));
    } else if !format::is_dns1035_label(&n.kind.to_lowercase()).is_empty() {
        e.push(FieldError::invalid(format!("{p}.kind"), &json!(n.kind), "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?"));
    }
    if !n.list_kind.is_empty() && n.list_kind == n.kind {
        e.push(FieldError::invalid(format!("{p}.listKind"), &json!(n.list_kind), "kind and listKind may not be the same"));
    }
    for (i, s) in n.short_names.iter().enumerate() {
        for m in format::is_dns1035_label(s) {
            e.push(FieldError::invalid(format!("{p}.shortNames[{i}]"), &json!(s), &m));
        }
    }
}

/// The rules that make a schema structural (and the Kubernetes extensions' rules), with upstream's paths.
fn structural(s: &Value, p: &str, root: bool, e: &mut Vec<FieldError>) {
    let ty = str_at(s, "type");
    let int_or_string = s["x-kubernetes-int-or-string"] == Value::Bool(true);
    let preserve = &s["x-kubernetes-preserve-unknown-fields"];
    if *preserve == Value::Bool(false) {
        e.push(FieldError::invalid(format!("{p}.x-kubernetes-preserve-unknown-fields"), &json!(false), "must be true or undefined"));
    }
    if root {
        if ty.is_empty() {
            e.push(FieldError::required_msg(format!("{p}.type"), "must not be empty at the root"));
        } else if ty != "object" {
            e.push(FieldError::invalid(format!("{p}.type"), &json!(ty), "must be object at the root"));
        }
        if let Some(meta) = s["properties"].get("metadata") {
            let allowed = meta.as_object().is_some_and(|m| m.keys().all(|k| k == "type" || k == "properties"))
                && meta["type"] == "object"
                && meta["properties"].as_object().is_none_or(|props| props.iter().all(|(k, v)| {
                    (k == "name" || k == "generateName") && v["type"] == "string"
                }));
            if !allowed {
                e.push(FieldError::forbidden(format!("{p}.properties[metadata]"),
                    "must not specify anything other than name and generateName, but metadata is implicitly specified"));
            }
        }
    }
    if int_or_string && !ty.is_empty() {
        e.push(FieldError::invalid(format!("{p}.type"), &json!(ty), "must be empty if x-kubernetes-int-or-string is true"));
    }
    if s["x-kubernetes-embedded-resource"] == Value::Bool(true) {
        if ty != "object" {
            e.push(FieldError::invalid(format!("{p}.type"), &json!(ty), "must be object if x-kubernetes-embedded-resource is true"));
        }
        if s["properties"].as_object().is_none_or(|m| m.is_empty()) && *preserve != Value::Bool(true) {
            e.push(FieldError::required_msg(format!("{p}.properties"),
                "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"));
        }
    }
    if s.get("$ref").is_some() {
        e.push(FieldError::forbidden(format!("{p}.$ref"), "$ref is not supported"));
    }
    if s["properties"].is_object() && s["additionalProperties"].is_object() {
        e.push(FieldError::forbidden(format!("{p}.additionalProperties"), "additionalProperties and properties are mutual exclusive"));
    }
    if let Some(t) = s["type"].as_str()
        && !t.is_empty()
        && !matches!(t, "object" | "array" | "string" | "integer" | "number" | "boolean")
    {
        e.push(FieldError::not_supported(format!("{p}.type"), &json!(t), &["array", "boolean", "integer", "number", "object", "string"]));
    }
    if let Some(rules) = s["x-kubernetes-validations"].as_array() {
        for (i, r) in rules.iter().enumerate() {
            let rule = str_at(r, "rule");
            if rule.is_empty() {
                e.push(FieldError::required(format!("{p}.x-kubernetes-validations[{i}].rule")));
            } else if let Err(msg) = super::cel::compile(rule) {
                e.push(FieldError::invalid(format!("{p}.x-kubernetes-validations[{i}].rule"), &json!(rule), &format!("compilation failed: {msg}")));
            }
            if let Some(me) = r["messageExpression"].as_str()
                && let Err(msg) = super::cel::compile(me)
            {
                e.push(FieldError::invalid(format!("{p}.x-kubernetes-validations[{i}].messageExpression"), &json!(me),
                    &format!("messageExpression compilation failed: {msg}")));
            }
        }
    }
    let needs_type = |child: &Value| {
        str_at(child, "type").is_empty()
            && child["x-kubernetes-int-or-string"] != Value::Bool(true)
            && child["x-kubernetes-preserve-unknown-fields"] != Value::Bool(true)
    };
    if let Some(props) = s["properties"].as_object() {
        for (k, child) in props {
            let cp = format!("{p}.properties[{k}]");
            if root && k == "metadata" {
                continue;
            }
            if needs_type(child) {
                e.push(FieldError::required_msg(format!("{cp}.type"), "must not be empty for specified object fields"));
            }
            structural(child, &cp, false, e);
        }
    }
    if let Some(items) = s.get("items").filter(|i| i.is_object()) {
        if needs_type(items) {
            e.push(FieldError::required_msg(format!("{p}.items.type"), "must not be empty for specified array items"));
        }
        structural(items, &format!("{p}.items"), false, e);
    } else if ty == "array" {
        e.push(FieldError::required_msg(format!("{p}.items"), "must be specified"));
    }
    if let Some(add) = s.get("additionalProperties").filter(|a| a.is_object()) {
        if needs_type(add) {
            e.push(FieldError::required_msg(format!("{p}.additionalProperties.type"), "must not be empty for specified additionalProperties"));
        }
        structural(add, &format!("{p}.additionalProperties"), false, e);
    }
    if let Some(d) = s.get("default") {
        if root {
            e.push(FieldError::forbidden(format!("{p}.default"), "must not be set at the root"));
        } else {
            let mut errs = Vec::new();
            super::schema::validate(s, d, "", &mut errs);
            for err in errs {
                e.push(FieldError::invalid(format!("{p}.default"), d, &err.to_line()));
            }
        }
    }
}

/// The rules an update adds: `spec.group` and `spec.scope` may not change, and every version in
/// `status.storedVersions` must stay in `spec.versions`.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut e = Vec::new();
    for f in ["group", "scope"] {
        if new["spec"][f] != old["spec"][f] {
            e.push(FieldError::invalid(format!("spec.{f}"), &new["spec"][f], "field is immutable"));
        }
    }
    if let Some(stored) = new["status"]["storedVersions"].as_array() {
        let versions: Vec<&str> = new["spec"]["versions"].as_array().map(|v| v.iter().map(|v| str_at(v, "name")).collect()).unwrap_or_default();
        for (i, s) in stored.iter().filter_map(Value::as_str).enumerate() {
            if !versions.contains(&s) {
                e.push(FieldError::invalid(format!("status.storedVersions[{i}]"), &json!(s), "must appear in spec.versions"));
            }
        }
    }
    e
}

fn columns_of(v: &Value) -> Vec<PrinterColumn> {
    match v["additionalPrinterColumns"].as_array() {
        Some(cols) => cols
            .iter()
            .map(|c| PrinterColumn {
                name: str_at(c, "name").to_string(),
                type_: str_at(c, "type").to_string(),
                format: str_at(c, "format").to_string(),
                description: str_at(c, "description").to_string(),
                priority: c["priority"].as_i64().unwrap_or(0),
                json_path: str_at(c, "jsonPath").to_string(),
            })
            .collect(),
        // Upstream's default: an Age column.
        None => vec![PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is \
not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is \
represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: \
https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata".into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }],
    }
}

/// The custom resource versions a CRD serves under its accepted names (`status.acceptedNames`).
pub fn served_versions(crd: &Value, catalog: &Catalog) -> Vec<CustomVersion> {
    let spec = &crd["spec"];
    let names = Names::from_value(&crd["status"]["acceptedNames"]);
    if names.plural.is_empty() || names.kind.is_empty() {
        return Vec::new();
    }
    let group = str_at(spec, "group");
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage_version = versions.iter().find(|v| v["storage"] == Value::Bool(true)).map(|v| str_at(v, "name")).unwrap_or("");
    let terminating = crd["metadata"].get("deletionTimestamp").is_some_and(|t| !t.is_null());
    versions
        .iter()
        .filter(|v| v["served"] == Value::Bool(true))
        .map(|v| {
            let scale = &v["subresources"]["scale"];
            let desc = ResourceDesc {
                group: group.to_string(),
                version: str_at(v, "name").to_string(),
                kind: names.kind.clone(),
                plural: names.plural.clone(),
                singular: if names.singular.is_empty() { names.kind.to_lowercase() } else { names.singular.clone() },
                namespaced: str_at(spec, "scope") == "Namespaced",
                short_names: names.short_names.clone(),
                categories: names.categories.clone(),
                status: v["subresources"]["status"].is_object(),
                scale: scale.is_object(),
                storage_version: storage_version.to_string(),
            };
            CustomVersion {
                info: catalog.intern(&desc),
                crd_name: str_at(&crd["metadata"], "name").to_string(),
                schema: v["schema"].get("openAPIV3Schema").cloned(),
                columns: columns_of(v),
                scale: scale.is_object().then(|| ScalePaths {
                    spec_replicas: str_at(scale, "specReplicasPath").to_string(),
                    status_replicas: str_at(scale, "statusReplicasPath").to_string(),
                    label_selector: scale["labelSelectorPath"].as_str().map(str::to_string),
                }),
                storage: str_at(v, "name") == storage_version,
                terminating,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"replicas": {"type": "integer", "default": 1}}}}}}}]}})
    }

    #[test]
    fn a_valid_crd_is_defaulted_and_accepted() {
        let mut c = crd();
        apply_defaults(&mut c);
        assert_eq!(c["spec"]["names"]["singular"], "crontab");
        assert_eq!(c["spec"]["names"]["listKind"], "CronTabList");
        assert_eq!(c["spec"]["conversion"]["strategy"], "None");
        assert_eq!(validate(&c), vec![]);
    }

    #[test]
    fn bad_crds_get_upstream_causes() {
        let mut c = crd();
        c["metadata"]["name"] = json!("wrong.stable.example.com");
        c["spec"]["scope"] = json!("Global");
        c["spec"]["versions"][0]["storage"] = json!(false);
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["bad"] = json!({"description": "no type"});
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"] = json!({"type": "object", "properties": {"labels": {"type": "object"}}});
        let lines: Vec<String> = validate(&c).iter().map(FieldError::to_line).collect();
        assert!(lines.contains(&r#"metadata.name: Invalid value: "wrong.stable.example.com": must be spec.names.plural+"."+spec.group"#.to_string()), "{lines:?}");
        assert!(lines.contains(&r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#.to_string()), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("spec.versions: Invalid value: [\"v1\"]: must have exactly one version marked as storage version")), "{lines:?}");
        assert!(lines.contains(&"spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[bad].type: Required value: must not be empty for specified object fields".to_string()), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("spec.versions[0].schema.openAPIV3Schema.properties[metadata]: Forbidden")), "{lines:?}");
    }

    #[test]
    fn served_versions_use_accepted_names() {
        let mut c = crd();
        apply_defaults(&mut c);
        let catalog = Catalog::new();
        assert!(served_versions(&c, &catalog).is_empty());
        c["status"]["acceptedNames"] = c["spec"]["names"].clone();
        let v = served_versions(&c, &catalog);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].info.plural, "crontabs");
        assert_eq!(v[0].info.short_names, &["ct"]);
        assert!(v[0].storage && v[0].info.namespaced);
        assert_eq!(v[0].columns[0].name, "Age");
    }
}
