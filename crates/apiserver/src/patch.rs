//! PATCH: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch (driven by the
//! schema's patch keys) and server-side apply (`application/apply-patch+yaml`), applied
//! read-modify-write with compare-and-swap retries; and the managedFields every write records
//! (`skiff_api::managedfields`).

use axum::body::Body;
use axum::response::Response;
use http::{header, StatusCode};
use serde_json::{json, Value};
use skiff_api::managedfields::{self, OpenApiLookup, Request, Scope};
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::{ApiError, FieldError};

use crate::handlers::{Ctx, Target};
use crate::{body, json_response};

/// The patch types Kubernetes defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    /// Server-side apply.
    Apply,
}

pub fn patch_type(content_type: &str) -> Result<PatchType, ApiError> {
    match content_type {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" => Ok(PatchType::Apply),
        other => Err(ApiError::unsupported_media_type_msg(&format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
        ))),
    }
}

/// Applies a patch document to an object (not server-side apply, which needs the field manager).
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
        PatchType::Apply => Err(ApiError::unsupported_media_type_msg(&format!(
            "server-side apply is not supported on {}",
            r.qualified_plural()
        ))),
    }
}

/// The manager of a non-apply write: `fieldManager`, else the User-Agent's first part.
pub fn manager(ctx: &Ctx) -> String {
    let ua = ctx.parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    managedfields::manager_or_user_agent(ctx.params.field_manager.as_deref(), ua)
}

/// Upstream's `fieldManager` validation: at most 128 printable characters; required for apply.
fn check_field_manager(ctx: &Ctx, apply: bool) -> Result<(), ApiError> {
    let errs = match ctx.params.field_manager.as_deref() {
        None | Some("") if apply => vec![FieldError::required_msg("fieldManager", "is required for apply patch")],
        Some(m) if m.len() > managedfields::FIELD_MANAGER_MAX_LENGTH => {
            vec![FieldError::too_long("fieldManager", managedfields::FIELD_MANAGER_MAX_LENGTH)]
        }
        Some(m) if m.chars().any(char::is_control) => {
            vec![FieldError::invalid("fieldManager", &json!(m), "must only contain printable characters")]
        }
        _ => Vec::new(),
    };
    if errs.is_empty() {
        return Ok(());
    }
    let kind = if apply || ctx.parts.method == http::Method::PATCH { "PatchOptions" } else { "UpdateOptions" };
    Err(options_invalid(kind, &errs))
}

/// 422 for invalid request options, named as upstream names them (`PatchOptions.meta.k8s.io ""`).
fn options_invalid(kind: &str, errs: &[FieldError]) -> ApiError {
    let mut e = ApiError::invalid("meta.k8s.io", kind, "", errs);
    e.message = e.message.replacen(kind, &format!("{kind}.meta.k8s.io"), 1);
    e
}

fn scope(r: &ResourceInfo, status: bool) -> Scope {
    if status { Scope::Status } else { Scope::Main { has_status: r.has_subresource("status") } }
}

/// Records a create (`live` is `None`), update or patch in `new`'s managedFields (operation Update).
/// Defaults are applied to a copy first, so the manager owns the defaulted fields as upstream (which
/// defaults while decoding).
pub fn record_update(ctx: &Ctx, r: &ResourceInfo, live: Option<&Value>, new: &mut Value, status: bool) -> Result<(), ApiError> {
    check_field_manager(ctx, false)?;
    let manager = manager(ctx);
    let api_version = r.api_version();
    let now = skiff_registry::now_rfc3339();
    let req = Request { manager: &manager, api_version: &api_version, scope: scope(r, status), now: &now };
    let (g, v) = resources::split_api_version(&api_version);
    let lookup = OpenApiLookup::new(&ctx.server.schemas, g, v, r.kind);
    let mut defaulted = new.clone();
    if !status {
        skiff_api::defaults::apply_defaults(r, &mut defaulted);
    }
    managedfields::update(live, &mut defaulted, &lookup, &req);
    new["metadata"]["managedFields"] = defaulted["metadata"]["managedFields"].take();
    Ok(())
}

/// Serves PATCH on an object (or its status subresource).
pub async fn serve(ctx: &Ctx, t: &Target, name: &str, body: Body, status: bool) -> Result<Response, ApiError> {
    let kind = patch_type(&body::content_type(&ctx.parts.headers))?;
    let bytes = body::read(body).await?;
    if kind == PatchType::Apply {
        return serve_apply(ctx, t, name, &bytes, status).await;
    }
    if ctx.params.force.is_some() {
        return Err(options_invalid("PatchOptions", &[FieldError::forbidden("force", "may not be specified for non-apply patch")]));
    }
    let patch = body::parse_json(&bytes)?;
    let directive = ctx.params.validation().to_string();
    let warnings = std::sync::Mutex::new(Vec::new());
    let schemas = ctx.server.schemas.clone();
    let r = t.r;
    let updated = ctx
        .server
        .registry
        .guaranteed_update(r, t.namespace.as_deref(), name, status, ctx.write_options(), &|old| {
            let mut new = apply(ctx, r, kind, old, &patch)?;
            if new["metadata"].get("name").and_then(Value::as_str).is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    new["metadata"]["name"].as_str().unwrap_or("")
                )));
            }
            if new.is_object() && new["metadata"].is_object() {
                record_update(ctx, r, Some(old), &mut new, status)?;
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

/// Checks an applied configuration against the URL, as upstream: an object of the URL's apiVersion and
/// kind, with the URL's name and namespace when it names them.
fn check_config(t: &Target, name: &str, config: &mut Value) -> Result<(), ApiError> {
    if !config.is_object() {
        return Err(ApiError::bad_request("the applied configuration must be a YAML or JSON object"));
    }
    let api_version = config["apiVersion"].as_str().unwrap_or("").to_string();
    let kind = config["kind"].as_str().unwrap_or("").to_string();
    if api_version != t.r.api_version() || kind != t.r.kind {
        let (g, v) = resources::split_api_version(&api_version);
        return Err(ApiError::bad_request(format!("invalid object type: {g}/{v}, Kind={kind}")));
    }
    match config.get("metadata") {
        Some(Value::Object(_)) => {}
        None | Some(Value::Null) => config["metadata"] = json!({}),
        Some(_) => return Err(ApiError::bad_request("metadata must be an object")),
    }
    match config["metadata"].get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n != name => {
            return Err(ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({name})")));
        }
        _ => config["metadata"]["name"] = json!(name),
    }
    if t.r.namespaced {
        let url_ns = t.namespace.as_deref().unwrap_or("");
        match config["metadata"].get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
            _ => config["metadata"]["namespace"] = json!(url_ns),
        }
    }
    Ok(())
}

/// Server-side apply: merges the configuration into the live object (or creates it, 201), with
/// ownership and conflicts from `skiff_api::managedfields`.
async fn serve_apply(ctx: &Ctx, t: &Target, name: &str, bytes: &[u8], status: bool) -> Result<Response, ApiError> {
    check_field_manager(ctx, true)?;
    let manager = ctx.params.field_manager.clone().unwrap_or_default();
    let force = ctx.params.force.unwrap_or(false);
    let mut config = body::parse_yaml(bytes)?;
    check_config(t, name, &mut config)?;
    let r = t.r;
    let api_version = r.api_version();
    let (g, v) = resources::split_api_version(&api_version);
    let directive = ctx.params.validation();
    let warnings = if directive == "Ignore" {
        Vec::new()
    } else {
        body::field_validation(directive, &ctx.server.schemas.unknown_fields(g, v, r.kind, &config))?
    };
    let lookup = OpenApiLookup::new(&ctx.server.schemas, g, v, r.kind);
    let ns = t.namespace.as_deref();
    let run = |live: Option<&Value>| {
        let now = skiff_registry::now_rfc3339();
        let req = Request { manager: &manager, api_version: &api_version, scope: scope(r, status), now: &now };
        managedfields::apply(live, &config, &lookup, &req, force).map_err(|e| e.to_api_error())
    };
    for _ in 0..8 {
        match ctx.server.registry.get(r, ns, name).await {
            Err(e) if e.code == 404 && !status => {
                let new = run(None)?;
                match ctx.server.registry.create(r, ns, new, ctx.write_options()).await {
                    Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                    Err(e) => return Err(e),
                    Ok(created) => return Ok(with_warnings(json_response(StatusCode::CREATED, &created), &warnings)),
                }
            }
            Err(e) => return Err(e),
            Ok(_) => {
                let updated = ctx
                    .server
                    .registry
                    .guaranteed_update(r, ns, name, status, ctx.write_options(), &|old| run(Some(old)))
                    .await?;
                return Ok(with_warnings(json_response(StatusCode::OK, &updated), &warnings));
            }
        }
    }
    Err(ApiError::conflict(r.group, r.plural, name))
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    body::add_warnings(resp.headers_mut(), warnings);
    resp
}
