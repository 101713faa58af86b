//! What the generic store does differently for CustomResourceDefinitions and custom objects: CRD
//! defaults and validation, pruning/defaulting/schema/CEL validation of custom objects
//! (`skiff_api::crd::admit`), refusing new objects of a terminating CRD, and the cleanup finalizer a CRD
//! gets when it is deleted.

use serde_json::{json, Value};
use skiff_api::crd::{definition, Catalog};
use skiff_api::{ApiError, FieldError, ResourceInfo};

/// Whether `r` is apiextensions.k8s.io's CustomResourceDefinition.
pub fn is_crd(r: &ResourceInfo) -> bool {
    r.storage_group == "apiextensions.k8s.io" && r.storage_plural == "customresourcedefinitions"
}

fn terminating_error(r: &ResourceInfo) -> ApiError {
    ApiError::method_not_allowed(format!(
        "create not allowed while custom resource definition is terminating ({})",
        r.qualified_plural()
    ))
}

/// Create: CRDs are defaulted and validated; custom objects are pruned, defaulted and validated by
/// their schema. Returns the field errors to report with the generic ones.
pub fn prepare_for_create(catalog: &Catalog, r: &ResourceInfo, obj: &mut Value) -> Result<Vec<FieldError>, ApiError> {
    if is_crd(r) {
        definition::apply_defaults(obj);
        // The status is the server's: established and accepted names come from the CRD controller.
        obj["status"] = json!({"conditions": [], "acceptedNames": {"plural": "", "kind": ""}, "storedVersions": stored_versions(obj, None)});
        return Ok(definition::validate(obj));
    }
    if !r.custom {
        return Ok(Vec::new());
    }
    let cv = catalog.custom(r).ok_or_else(ApiError::no_route)?;
    if cv.terminating {
        return Err(terminating_error(r));
    }
    Ok(skiff_api::crd::admit(&cv, obj, None))
}

/// Update (`status` for the status subresource): as create, with the old object for transition rules
/// and the CRD's update rules.
pub fn prepare_for_update(
    catalog: &Catalog,
    r: &ResourceInfo,
    new: &mut Value,
    old: &Value,
    status: bool,
) -> Result<Vec<FieldError>, ApiError> {
    if is_crd(r) {
        if status {
            return Ok(Vec::new());
        }
        definition::apply_defaults(new);
        new["status"] = old["status"].clone();
        new["status"]["storedVersions"] = json!(stored_versions(new, Some(old)));
        let mut errs = definition::validate(new);
        errs.extend(definition::validate_update(new, old));
        return Ok(errs);
    }
    if !r.custom {
        return Ok(Vec::new());
    }
    let cv = catalog.custom(r).ok_or_else(ApiError::no_route)?;
    if status {
        // Only status changes through the status subresource: validate the old object with the new status.
        let mut candidate = old.clone();
        match new.get("status") {
            Some(st) => candidate["status"] = st.clone(),
            None => {
                if let Some(m) = candidate.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        let errs = skiff_api::crd::admit(&cv, &mut candidate, Some(old));
        match candidate.get("status") {
            Some(st) => new["status"] = st.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        return Ok(errs);
    }
    Ok(skiff_api::crd::admit(&cv, new, Some(old)))
}

/// `status.storedVersions`: the versions objects may be stored in, the current storage version added.
fn stored_versions(crd: &Value, old: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = old
        .and_then(|o| o["status"]["storedVersions"].as_array())
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(storage) = crd["spec"]["versions"].as_array().and_then(|vs| vs.iter().find(|v| v["storage"] == Value::Bool(true)))
        && let Some(name) = storage["name"].as_str()
        && !out.iter().any(|s| s == name)
    {
        out.push(name.to_string());
    }
    out
}

/// The first delete of a CRD: the cleanup finalizer (the CRD controller deletes the objects, then
/// removes it) and the `Terminating` condition, as upstream's CRD storage does.
pub fn mark_crd_terminating(mut crd: Value) -> Value {
    let finalizers = crd["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
    if !finalizers.iter().any(|f| f == definition::CLEANUP_FINALIZER) {
        let mut f = finalizers;
        f.push(json!(definition::CLEANUP_FINALIZER));
        crd["metadata"]["finalizers"] = Value::Array(f);
    }
    let condition = json!({"type": "Terminating", "status": "True", "reason": "InstanceDeletionPending",
        "message": "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        "lastTransitionTime": crate::now_rfc3339()});
    let mut conditions: Vec<Value> = crd["status"]["conditions"].as_array().cloned().unwrap_or_default();
    conditions.retain(|c| c["type"] != "Terminating");
    conditions.push(condition);
    crd["status"]["conditions"] = Value::Array(conditions);
    crd
}
