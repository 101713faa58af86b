//! PATCH: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch (driven by the
//! schema's patch keys), applied read-modify-write with compare-and-swap retries.

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use serde_json::Value;
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::ApiError;

use crate::handlers::{Ctx, Target};
use crate::{body, json_response};

/// The patch types Kubernetes defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
}

pub fn patch_type(content_type: &str) -> Result<PatchType, ApiError> {
    match content_type {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => Err(ApiError::unsupported_media_type_msg(
            "server-side apply (application/apply-patch+yaml) is not supported yet; use client-side `kubectl apply`",
        )),
        other => Err(ApiError::unsupported_media_type_msg(&format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?})"
        ))),
    }
}

/// Applies a patch document to an object.
pub fn apply(
    ctx: &Ctx,
    r: &ResourceInfo,
    kind: PatchType,
    original: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    match kind {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("the JSON patch is malformed: {e}")))?;
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| ApiError::new(422, "Invalid", format!("the JSON patch could not be applied: {e}")))?;
            Ok(doc)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut doc = original.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a strategic merge patch must be a JSON object"));
            }
            let (g, v) = resources::split_api_version(original["apiVersion"].as_str().unwrap_or(""));
            let kind_name = original["kind"].as_str().unwrap_or(r.kind);
            let meta = ctx.server.schemas.patch_meta(g, v, kind_name);
            skiff_api::smp::strategic_merge_patch(original, patch, meta.as_ref())
                .map_err(|e| ApiError::new(422, "Invalid", format!("the strategic merge patch could not be applied: {e}")))
        }
    }
}

/// Serves PATCH on an object (or its status subresource).
pub async fn serve(ctx: &Ctx, t: &Target, name: &str, body: Body, status: bool) -> Result<Response, ApiError> {
    let kind = patch_type(&body::content_type(&ctx.parts.headers))?;
    let bytes = body::read(body).await?;
    let patch = body::parse_json(&bytes)?;
    let directive = ctx.params.validation().to_string();
    let warnings = std::sync::Mutex::new(Vec::new());
    let schemas = ctx.server.schemas.clone();
    let r = t.r;
    let updated = ctx
        .server
        .registry
        .guaranteed_update(r, t.namespace.as_deref(), name, status, ctx.write_options(), &|old| {
            let new = apply(ctx, r, kind, old, &patch)?;
            if new["metadata"].get("name").and_then(Value::as_str).is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    new["metadata"]["name"].as_str().unwrap_or("")
                )));
            }
            if directive == "Ignore" {
                return Ok(new);
            }
            // Fields the patch adds that the schema does not know: compare with what was already there.
            let (g, v) = resources::split_api_version(old["apiVersion"].as_str().unwrap_or(""));
            let k = old["kind"].as_str().unwrap_or(r.kind);
            let before: std::collections::HashSet<String> = schemas.unknown_fields(g, v, k, old).into_iter().collect();
            let added: Vec<String> = schemas.unknown_fields(g, v, k, &new).into_iter().filter(|f| !before.contains(f)).collect();
            *warnings.lock().expect("not poisoned") = body::field_validation(&directive, &added)?;
            // A resourceVersion the patch sets is a precondition; `guaranteed_update` checks it.
            Ok(new)
        })
        .await?;
    let mut resp = json_response(StatusCode::OK, &updated);
    body::add_warnings(resp.headers_mut(), &warnings.into_inner().expect("not poisoned"));
    Ok(resp)
}
