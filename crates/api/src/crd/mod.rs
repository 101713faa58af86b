//! CustomResourceDefinitions without I/O: the run-time resource [`Catalog`], CRD defaults and
//! validation ([`definition`]), and what happens to a custom object on write: pruning and defaulting
//! ([`prune`]), schema validation ([`schema`]) and `x-kubernetes-validations` CEL rules ([`cel`]), plus the
//! JSONPath subset of printer columns and the scale subresource ([`jsonpath`]).

pub mod catalog;
pub mod cel;
pub mod definition;
pub mod jsonpath;
pub mod prune;
pub mod schema;

use serde_json::Value;

pub use catalog::{Catalog, CustomVersion, PrinterColumn, ResourceDesc, ScalePaths};

use crate::status::FieldError;

/// Prepares a custom object for storage and validates it: unknown fields are pruned, defaults applied,
/// then the schema and its CEL rules are checked (transition rules against `old` on update).
pub fn admit(cv: &CustomVersion, obj: &mut Value, old: Option<&Value>) -> Vec<FieldError> {
    let Some(schema) = &cv.schema else { return Vec::new() };
    prune::prune_object(schema, obj);
    prune::default(schema, obj);
    let mut errs = Vec::new();
    // `metadata` is ObjectMeta, validated as such; the schema may only constrain name and generateName.
    let mut body = obj.clone();
    if let Some(m) = body.as_object_mut() {
        m.remove("metadata");
    }
    let mut root_schema = schema.clone();
    if let Some(props) = root_schema["properties"].as_object_mut() {
        props.remove("metadata");
    }
    schema::validate(&root_schema, &body, "", &mut errs);
    if errs.is_empty() {
        let old_body = old.map(|o| {
            let mut o = o.clone();
            if let Some(m) = o.as_object_mut() {
                m.remove("metadata");
            }
            o
        });
        cel::validate(&root_schema, &body, old_body.as_ref(), "", &mut errs);
    }
    errs
}

/// Applies the schema's defaults to an object read from storage (upstream defaults on read too).
pub fn default_on_read(cv: &CustomVersion, obj: &mut Value) {
    if let Some(schema) = &cv.schema {
        prune::default(schema, obj);
    }
}
