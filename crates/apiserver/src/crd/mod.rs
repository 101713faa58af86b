//! CustomResourceDefinitions in the HTTP layer: the CRD controller (`controller.rs`: names
//! acceptance, establishing, serving through the registry's catalog, cleanup of a deleted CRD's
//! objects), and the custom-resource variants of Table output and the scale subresource.

pub mod controller;

use std::sync::Arc;

use serde_json::{json, Value};
use skiff_api::crd::{jsonpath, Catalog, CustomVersion, ScalePaths};
use skiff_api::table::{self, IncludeObject};
use skiff_api::{ApiError, FieldError, ResourceInfo};

/// Table rows and columns for `r`: the CRD version's printer columns for custom resources, the
/// built-in printers otherwise.
pub struct Printer {
    custom: Option<Arc<CustomVersion>>,
}

impl Printer {
    pub fn new(catalog: &Catalog, r: &ResourceInfo) -> Printer {
        Printer { custom: catalog.custom(r) }
    }

    pub fn row(&self, r: &ResourceInfo, obj: &Value, include: IncludeObject, now: jiff::Timestamp) -> Value {
        match &self.custom {
            Some(cv) => table::custom_row(r, &cv.columns, obj, include, now),
            None => table::row(r, obj, include, now),
        }
    }

    pub fn table_from_rows(&self, r: &ResourceInfo, rows: Vec<Value>, rv: &str, with_columns: bool) -> Value {
        match &self.custom {
            Some(cv) => table::custom_table_from_rows(&cv.columns, rows, rv, with_columns),
            None => table::table_from_rows(r, rows, rv, with_columns),
        }
    }

    pub fn table(&self, r: &ResourceInfo, objs: &[Value], include: IncludeObject, now: jiff::Timestamp, rv: &str, with_columns: bool) -> Value {
        let rows = objs.iter().map(|o| self.row(r, o, include, now)).collect();
        self.table_from_rows(r, rows, rv, with_columns)
    }
}

/// The scale paths of a custom resource with a scale subresource.
pub fn scale_paths(catalog: &Catalog, r: &ResourceInfo) -> Option<ScalePaths> {
    catalog.custom(r).and_then(|cv| cv.scale.clone())
}

/// The autoscaling/v1 Scale of a custom object, read at the CRD's paths.
pub fn to_scale(obj: &Value, paths: &ScalePaths) -> Value {
    let m = &obj["metadata"];
    let mut meta = json!({"name": m["name"], "uid": m["uid"], "resourceVersion": m["resourceVersion"],
                          "creationTimestamp": m["creationTimestamp"]});
    if let Some(ns) = m.get("namespace") {
        meta["namespace"] = ns.clone();
    }
    let int = |p: &str| jsonpath::get(obj, p).and_then(Value::as_i64).unwrap_or(0);
    let mut status = json!({"replicas": int(&paths.status_replicas)});
    if let Some(sel) = paths.label_selector.as_deref().and_then(|p| jsonpath::get(obj, p)).and_then(Value::as_str) {
        status["selector"] = json!(sel);
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
           "spec": {"replicas": int(&paths.spec_replicas)}, "status": status})
}

/// A custom object with `spec` replicas set from a Scale, at the CRD's path.
pub fn apply_scale(old: &Value, paths: &ScalePaths, replicas: i64, name: &str) -> Result<Value, ApiError> {
    let mut new = old.clone();
    jsonpath::set(&mut new, &paths.spec_replicas, json!(replicas))
        .map_err(|e| ApiError::invalid("autoscaling", "Scale", name, &[FieldError::invalid("spec.replicas", &json!(replicas), &e.to_string())]))?;
    Ok(new)
}
