//! The walk from a decoded Kubernetes protobuf message to the JSON the Go API server would write.
//!
//! Rules (from Kubernetes' Go struct tags and custom marshallers):
//! - the proto field name is the JSON name, except the few listed in [`json_name`];
//! - `json:",inline"` embeddings are flattened for exactly the (field, type) pairs in [`INLINE`];
//! - `meta.v1.Time` → RFC 3339 UTC in whole seconds (`null` when empty), `MicroTime` → 6 fractional
//!   digits, `Duration` → Go duration string, `Quantity` → its string, `IntOrString` → number or string,
//!   `RawExtension`/`FieldsV1`/apiextensions `JSON` → the embedded JSON (protobuf again if it starts with
//!   `k8s\0`), `Verbs`/`ExtraValue` → plain arrays, apiextensions `JSONSchemaPropsOr*` → their union;
//! - int64 → JSON number, bytes → standard base64, maps → objects with sorted keys, enums → value names;
//! - every present field is written, in field-number order (Go writes zero values of non-pointer fields).

use base64::Engine as _;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage as _, Value,
};
use serde_json::{Map, Value as Json};

use super::{MAGIC, ProtobufDecoder, ProtobufError, display_path};

/// `json:",inline"` embeddings: (proto field name, message short name).
pub(super) const INLINE: &[(&str, &str)] = &[
    ("volumeSource", "VolumeSource"),
    ("persistentVolumeSource", "PersistentVolumeSource"),
    ("localObjectReference", "LocalObjectReference"),
    ("handler", "ProbeHandler"),
    ("ephemeralContainerCommon", "EphemeralContainerCommon"),
    ("ingressRuleValue", "IngressRuleValue"),
    ("deviceConfiguration", "DeviceConfiguration"),
    ("ruleWithOperations", "RuleWithOperations"),
    ("rule", "Rule"),
];

const META: &str = "apimachinery.pkg.apis.meta.v1.";
const APIEXTENSIONS: &str = "apiextensions_apiserver.pkg.apis.apiextensions.";

/// Walks one message tree, collecting unknown fields.
pub(super) struct Walker<'a> {
    decoder: &'a ProtobufDecoder,
    unknown: &'a mut Vec<String>,
}

impl<'a> Walker<'a> {
    pub(super) fn new(decoder: &'a ProtobufDecoder, unknown: &'a mut Vec<String>) -> Self {
        Self { decoder, unknown }
    }

    /// The JSON of a message found at `path`.
    pub(super) fn message(
        &mut self,
        msg: &DynamicMessage,
        path: &str,
    ) -> Result<Json, ProtobufError> {
        let desc = msg.descriptor();
        let full = desc.full_name();
        if let Some(name) = full.strip_prefix(META) {
            match name {
                "Time" => return time(msg, path, false),
                "MicroTime" => return time(msg, path, true),
                "Duration" => return Ok(Json::String(go_duration(int_field(msg, "duration")))),
                "FieldsV1" => return self.raw_json(msg, "Raw", path),
                _ => {}
            }
        }
        match full {
            "apimachinery.pkg.api.resource.Quantity"
            | "apimachinery.pkg.api.resource.QuantityValue" => {
                return Ok(Json::String(string_field(msg, "string")));
            }
            "apimachinery.pkg.util.intstr.IntOrString" => {
                return Ok(if int_field(msg, "type") == 1 {
                    Json::String(string_field(msg, "strVal"))
                } else {
                    Json::from(int_field(msg, "intVal"))
                });
            }
            "apimachinery.pkg.runtime.RawExtension" => return self.raw_json(msg, "raw", path),
            _ => {}
        }
        if is_nullable_wrapper(&desc) {
            return Ok(Json::Array(self.list_items(msg, "items", path)?));
        }
        if let Some((_, name)) = full
            .strip_prefix(APIEXTENSIONS)
            .and_then(|rest| rest.split_once('.'))
            && let Some(json) = self.apiextensions(msg, name, path)?
        {
            return Ok(json);
        }
        let mut object = Map::new();
        self.fill(msg, path, &mut object)?;
        Ok(Json::Object(object))
    }

    /// Writes the fields of `msg` into `object` (inline embeddings recurse into the same object).
    fn fill(
        &mut self,
        msg: &DynamicMessage,
        path: &str,
        object: &mut Map<String, Json>,
    ) -> Result<(), ProtobufError> {
        for (field, value) in msg.fields() {
            if let (true, Value::Message(inner)) = (is_inline(&field), value) {
                self.fill(inner, path, object)?;
                continue;
            }
            let name = json_name(&field);
            if is_unset_string(&name, value) {
                continue;
            }
            let child = join(path, &name);
            let json = self.field(&field, value, &child)?;
            object.insert(name, json);
        }
        for field in msg.unknown_fields() {
            let number = field.number();
            self.unknown.push(if path.is_empty() {
                format!("#{number}")
            } else {
                format!("{path}.#{number}")
            });
        }
        Ok(())
    }

    /// The JSON of a field's value (list, map or single).
    fn field(
        &mut self,
        field: &FieldDescriptor,
        value: &Value,
        path: &str,
    ) -> Result<Json, ProtobufError> {
        match value {
            Value::List(items) => {
                let kind = field.kind();
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(self.single(&kind, item, &format!("{path}[{i}]"))?);
                }
                Ok(Json::Array(out))
            }
            Value::Map(entries) => {
                let value_kind = match field.kind() {
                    Kind::Message(entry) => entry.map_entry_value_field().kind(),
                    other => other,
                };
                let mut keyed: Vec<(String, &Value)> =
                    entries.iter().map(|(k, v)| (map_key(k), v)).collect();
                keyed.sort_by(|a, b| a.0.cmp(&b.0));
                let mut out = Map::with_capacity(keyed.len());
                for (key, v) in keyed {
                    let json = self.single(&value_kind, v, &format!("{path}[{key}]"))?;
                    out.insert(key, json);
                }
                Ok(Json::Object(out))
            }
            single => self.single(&field.kind(), single, path),
        }
    }

    /// The JSON of one scalar or message value.
    fn single(&mut self, kind: &Kind, value: &Value, path: &str) -> Result<Json, ProtobufError> {
        Ok(match value {
            Value::Bool(b) => Json::Bool(*b),
            Value::I32(n) => Json::from(*n),
            Value::I64(n) => Json::from(*n),
            Value::U32(n) => Json::from(*n),
            Value::U64(n) => Json::from(*n),
            Value::F32(n) => {
                serde_json::Number::from_f64(f64::from(*n)).map_or(Json::Null, Json::Number)
            }
            Value::F64(n) => serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number),
            Value::String(s) => Json::String(s.clone()),
            Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Value::EnumNumber(n) => match kind {
                Kind::Enum(e) => match e.get_value(*n) {
                    Some(v) => Json::String(v.name().to_owned()),
                    None => Json::from(*n),
                },
                _ => Json::from(*n),
            },
            Value::Message(m) => self.message(m, path)?,
            Value::List(_) | Value::Map(_) => {
                return Err(ProtobufError::InvalidValue {
                    path: display_path(path),
                    what: "value",
                    message: "a list or map nested directly in a list or map".into(),
                });
            }
        })
    }

    /// The elements of the repeated field `name` of `msg`, as JSON.
    fn list_items(
        &mut self,
        msg: &DynamicMessage,
        name: &str,
        path: &str,
    ) -> Result<Vec<Json>, ProtobufError> {
        let Some(field) = msg.descriptor().get_field_by_name(name) else {
            return Ok(Vec::new());
        };
        let kind = field.kind();
        let mut out = Vec::new();
        if let Value::List(items) = &*msg.get_field(&field) {
            for (i, item) in items.iter().enumerate() {
                out.push(self.single(&kind, item, &format!("{path}[{i}]"))?);
            }
        }
        for field in msg.unknown_fields() {
            self.unknown
                .push(format!("{}.#{}", display_path(path), field.number()));
        }
        Ok(out)
    }

    /// The JSON embedded in bytes field `name` (`null` when empty; protobuf when it starts with `k8s\0`).
    fn raw_json(
        &mut self,
        msg: &DynamicMessage,
        name: &str,
        path: &str,
    ) -> Result<Json, ProtobufError> {
        let raw = match msg.get_field_by_name(name).as_deref() {
            Some(Value::Bytes(b)) => b.clone(),
            _ => Default::default(),
        };
        if raw.is_empty() {
            return Ok(Json::Null);
        }
        if raw.starts_with(MAGIC) {
            let (_, _, object) = self.decoder.decode_at(&raw, path, self.unknown)?;
            return Ok(object);
        }
        serde_json::from_slice(&raw).map_err(|e| ProtobufError::InvalidEmbeddedJson {
            path: display_path(path),
            message: e.to_string(),
        })
    }

    /// The apiextensions types with custom JSON; `None` for ordinary messages.
    fn apiextensions(
        &mut self,
        msg: &DynamicMessage,
        name: &str,
        path: &str,
    ) -> Result<Option<Json>, ProtobufError> {
        let present = |field: &str| msg.has_field_by_name(field);
        Ok(Some(match name {
            "JSON" => self.raw_json(msg, "raw", path)?,
            // Go: the array when it has elements, else the schema (null when absent).
            "JSONSchemaPropsOrArray" => {
                let items = self.list_items(msg, "jSONSchemas", path)?;
                if !items.is_empty() {
                    Json::Array(items)
                } else {
                    self.optional_message(msg, "schema", path)?
                }
            }
            // Go: the schema when present, else the bool.
            "JSONSchemaPropsOrBool" => {
                if present("schema") {
                    self.optional_message(msg, "schema", path)?
                } else {
                    Json::Bool(matches!(
                        msg.get_field_by_name("allows").as_deref(),
                        Some(Value::Bool(true))
                    ))
                }
            }
            // Go: the property list when it has elements, else the schema (null when absent).
            "JSONSchemaPropsOrStringArray" => {
                let items = self.list_items(msg, "property", path)?;
                if !items.is_empty() {
                    Json::Array(items)
                } else {
                    self.optional_message(msg, "schema", path)?
                }
            }
            _ => return Ok(None),
        }))
    }

    /// The JSON of message field `name` of `msg`, `null` when absent.
    fn optional_message(
        &mut self,
        msg: &DynamicMessage,
        name: &str,
        path: &str,
    ) -> Result<Json, ProtobufError> {
        match msg.get_field_by_name(name).as_deref() {
            Some(Value::Message(m)) if msg.has_field_by_name(name) => self.message(m, path),
            _ => Ok(Json::Null),
        }
    }
}

/// Whether `field` is a `json:",inline"` embedding.
/// Go's marshaller writes every non-pointer string field, set or not; Kubernetes' JSON leaves such
/// empty strings out (`omitempty`). A `""` in a message field is therefore dropped, except where an
/// explicit empty string (a set `*string`) means something: `storageClassName: ""` asks for no class.
/// Map values are not fields and keep their empty strings.
fn is_unset_string(json_name: &str, value: &Value) -> bool {
    matches!(value, Value::String(s) if s.is_empty()) && json_name != "storageClassName"
}

fn is_inline(field: &FieldDescriptor) -> bool {
    let Kind::Message(m) = field.kind() else {
        return false;
    };
    !field.is_list()
        && INLINE
            .iter()
            .any(|(f, t)| *f == field.name() && *t == m.name())
}

/// `Verbs` and `ExtraValue`: Go slices marked `+protobuf.nullable=true`, wrapped in `{items}` on the wire.
fn is_nullable_wrapper(desc: &MessageDescriptor) -> bool {
    let wrapper = desc.full_name() == "apimachinery.pkg.apis.meta.v1.Verbs"
        || (desc.name() == "ExtraValue" && desc.package_name().starts_with("api."));
    wrapper
        && desc.fields().len() == 1
        && desc.get_field_by_name("items").is_some_and(|f| f.is_list())
}

/// The JSON name of a field.
pub(super) fn json_name(field: &FieldDescriptor) -> String {
    let name = field.name();
    match name {
        "uID" => return "uid".into(),
        "aPIGroup" => return "apiGroup".into(),
        _ => {}
    }
    let message = field.parent_message();
    let package = message.package_name();
    if package.starts_with("api.admissionregistration.") {
        match name {
            "Expression" => return "expression".into(),
            "Name" => return "name".into(),
            "Webhooks" => return "webhooks".into(),
            _ => {}
        }
    }
    if package.starts_with(APIEXTENSIONS) && message.name() == "JSONSchemaProps" {
        match name {
            "ref" => return "$ref".into(),
            "schema" => return "$schema".into(),
            _ => {
                if let Some(rest) = name.strip_prefix("xKubernetes") {
                    return format!("x-kubernetes{}", kebab(rest));
                }
            }
        }
    }
    name.to_owned()
}

/// `PreserveUnknownFields` → `-preserve-unknown-fields`.
fn kebab(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

fn string_field(msg: &DynamicMessage, name: &str) -> String {
    match msg.get_field_by_name(name).as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn int_field(msg: &DynamicMessage, name: &str) -> i64 {
    match msg.get_field_by_name(name).as_deref() {
        Some(Value::I64(n)) => *n,
        Some(Value::I32(n)) => i64::from(*n),
        Some(Value::U32(n)) => i64::from(*n),
        Some(Value::U64(n)) => i64::try_from(*n).unwrap_or(i64::MAX),
        _ => 0,
    }
}

/// `meta.v1.Time` (whole seconds) or `MicroTime` (microseconds); an empty message is Go's zero time → `null`.
fn time(msg: &DynamicMessage, path: &str, micro: bool) -> Result<Json, ProtobufError> {
    if msg.fields().next().is_none() {
        return Ok(Json::Null);
    }
    let seconds = int_field(msg, "seconds");
    let nanos = int_field(msg, "nanos");
    let ts = jiff::Timestamp::from_second(seconds).map_err(|e| ProtobufError::InvalidValue {
        path: display_path(path),
        what: "timestamp",
        message: e.to_string(),
    })?;
    let whole = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    Ok(Json::String(if micro {
        if !(0..1_000_000_000).contains(&nanos) {
            return Err(ProtobufError::InvalidValue {
                path: display_path(path),
                what: "timestamp",
                message: format!("nanos {nanos} out of range"),
            });
        }
        format!("{whole}.{:06}Z", nanos / 1000)
    } else {
        format!("{whole}Z")
    }))
}

/// Go's `time.Duration.String()` of `nanos` nanoseconds: `1h0m0s`, `1m30s`, `1.5s`, `100ms`, `0s`.
pub(super) fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    let body = if u < 1_000_000_000 {
        let (div, digits, unit) = match u {
            0..1_000 => (1, 0, "ns"),
            1_000..1_000_000 => (1_000, 3, "µs"),
            _ => (1_000_000, 6, "ms"),
        };
        format!("{}{unit}", fraction(u / div, u % div, digits))
    } else {
        let total_seconds = u / 1_000_000_000;
        let mut out = format!("{}s", fraction(total_seconds % 60, u % 1_000_000_000, 9));
        let total_minutes = total_seconds / 60;
        if total_minutes > 0 {
            out = format!("{}m{out}", total_minutes % 60);
            let hours = total_minutes / 60;
            if hours > 0 {
                out = format!("{hours}h{out}");
            }
        }
        out
    };
    format!("{sign}{body}")
}

/// `whole.frac` with `frac` printed in `digits` digits and trailing zeros removed.
fn fraction(whole: u64, frac: u64, digits: usize) -> String {
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}
