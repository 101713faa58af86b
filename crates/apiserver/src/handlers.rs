//! The request dispatcher: authentication, the non-resource paths (health, version, discovery,
//! OpenAPI), Kubernetes resource URLs and the REST verbs on them.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{json, Value};
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::table::IncludeObject;
use skiff_api::ApiError;
use skiff_registry::{DeleteOptions, Deleted, WriteOptions};

use crate::auth::{self, UserInfo};
use crate::params::Params;
use crate::{body, discovery, error_response, json_response, patch, reviews, subresources, watch, ApiServer, GIT_VERSION};

/// A parsed resource URL.
#[derive(Clone, Debug)]
pub struct Target {
    pub r: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Everything a resource handler needs about the request.
pub struct Ctx {
    pub server: Arc<ApiServer>,
    pub parts: Parts,
    pub params: Params,
}

impl Ctx {
    pub fn accept(&self) -> &str {
        self.parts.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn write_options(&self) -> WriteOptions {
        WriteOptions { dry_run: self.params.dry_run }
    }

    /// Whether the client asked for a `meta.k8s.io` Table.
    pub fn wants_table(&self) -> bool {
        self.accept().split(',').any(|part| {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
        })
    }
}

pub async fn handle(server: Arc<ApiServer>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let user = parts.extensions.get::<UserInfo>().cloned();
    let Some(user) = user.or_else(|| auth::is_public(&path).then(|| UserInfo { username: "system:anonymous".into(), groups: vec!["system:unauthenticated".into()] })) else {
        return error_response(&ApiError::unauthorized());
    };
    let accept = parts.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" | "/healthz/" | "/livez/" | "/readyz/" => return health(&server, &path).await,
        "/version" | "/version/" => return json_response(StatusCode::OK, &version()),
        "/api" | "/api/" => {
            let docs = server.discovery.get();
            return discovery_doc(&parts.headers, &accept, &docs.aggregated_api, &docs.legacy_api, true);
        }
        "/apis" | "/apis/" => {
            let docs = server.discovery.get();
            return discovery_doc(&parts.headers, &accept, &docs.aggregated_apis, &docs.legacy_apis, true);
        }
        _ => {}
    }
    if path.starts_with("/openapi/") {
        return server.openapi.serve(&path, parts.uri.query(), &accept);
    }
    let params = match Params::parse(parts.uri.query()) {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group] => {
            return match server.discovery.get().group(group) {
                Some(doc) => discovery_doc(&parts.headers, &accept, doc, doc, false),
                None => error_response(&ApiError::no_route()),
            };
        }
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return error_response(&ApiError::no_route()),
    };
    if rest.is_empty() {
        return match server.discovery.get().resource_list(group, version) {
            Some(doc) => discovery_doc(&parts.headers, &accept, doc, doc, false),
            None => error_response(&ApiError::no_route()),
        };
    }
    if reviews::is_review(group, version, rest) {
        return reviews::serve(&server, &parts, group, version, rest, &user, body).await;
    }
    let target = match parse_target(server.registry.catalog(), group, version, rest) {
        Ok(t) => t,
        Err(e) => return error_response(&e),
    };
    let ctx = Ctx { server, parts, params };
    match serve_resource(&ctx, &target, body).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

async fn health(server: &ApiServer, path: &str) -> Response {
    let ok = if path.starts_with("/readyz") || path.starts_with("/healthz") {
        server.registry.current_revision().await.is_ok()
    } else {
        true
    };
    let mut resp = if ok { (StatusCode::OK, "ok").into_response() } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "[-]etcd failed: storage is not answering\nreadyz check failed").into_response()
    };
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// The `/version` document.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": GIT_VERSION,
        "gitCommit": option_env!("SKIFF_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "2026-11-25T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else if std::env::consts::ARCH == "aarch64" { "arm64" } else { std::env::consts::ARCH }),
    })
}

fn discovery_doc(headers: &HeaderMap, accept: &str, aggregated: &discovery::Doc, legacy: &discovery::Doc, can_aggregate: bool) -> Response {
    let (doc, content_type) = if can_aggregate && discovery::wants_aggregated(accept) {
        (aggregated, discovery::AGGREGATED_CONTENT_TYPE)
    } else {
        (legacy, "application/json")
    };
    let matches = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == doc.etag);
    let mut resp = if matches { StatusCode::NOT_MODIFIED.into_response() } else { (StatusCode::OK, doc.body.clone()).into_response() };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&doc.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

/// Parses the part of a resource URL after the group-version.
pub fn parse_target(catalog: &skiff_api::crd::Catalog, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => {
            (Some(ns.to_string()), *plural, tail.first().map(|s| s.to_string()), tail.get(1).map(|s| s.to_string()))
        }
        [plural, tail @ ..] => (None, *plural, tail.first().map(|s| s.to_string()), tail.get(1).map(|s| s.to_string())),
        [] => return Err(ApiError::no_route()),
    };
    if rest.len() > 5 || (namespace.is_none() && rest.len() > 3) {
        return Err(ApiError::no_route());
    }
    let r = catalog.find(group, version, plural).ok_or_else(ApiError::no_route)?;
    if namespace.is_some() && !r.namespaced {
        return Err(ApiError::no_route());
    }
    if let Some(s) = &sub
        && !r.has_subresource(s)
    {
        return Err(ApiError::no_route());
    }
    for part in [&namespace, &name].into_iter().flatten() {
        if part.is_empty() {
            return Err(ApiError::no_route());
        }
    }
    Ok(Target { r, namespace, name, subresource: sub })
}

async fn serve_resource(ctx: &Ctx, t: &Target, body: Body) -> Result<Response, ApiError> {
    let method = ctx.parts.method.clone();
    if method == Method::PATCH && t.r.custom && body::content_type(&ctx.parts.headers) == "application/strategic-merge-patch+json" {
        // Custom resources have no patch strategies; upstream refuses strategic merge patch for them.
        return Err(ApiError::unsupported_media_type_msg(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    if let Some(sub) = t.subresource.as_deref() {
        return subresources::serve(ctx, t, sub, body).await;
    }
    match (&method, &t.name) {
        (&Method::GET, None) if ctx.params.watch => watch::serve(ctx, t).await,
        (&Method::GET, None) => list(ctx, t).await,
        (&Method::GET, Some(name)) => get(ctx, t, name).await,
        (&Method::POST, None) => create(ctx, t, body).await,
        (&Method::PUT, Some(name)) => update(ctx, t, name, body, false).await,
        (&Method::PATCH, Some(name)) => patch::serve(ctx, t, name, body, false).await,
        (&Method::DELETE, Some(name)) => delete(ctx, t, name, body).await,
        (&Method::DELETE, None) => delete_collection(ctx, t, body).await,
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            t.r.qualified_plural()
        ))),
    }
}

/// The filter built from `labelSelector` and `fieldSelector`.
pub struct Filter {
    label: Option<LabelSelector>,
    field: Option<FieldSelector>,
    r: &'static ResourceInfo,
}

impl Filter {
    pub fn new(r: &'static ResourceInfo, params: &Params) -> Result<Filter, ApiError> {
        let label = match &params.label_selector {
            Some(s) => Some(LabelSelector::parse(s).map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?),
            None => None,
        };
        let field = match &params.field_selector {
            Some(s) => {
                let f = FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
                // Reject unsupported field labels up front, as upstream does, even for an empty list.
                f.validate(r).map_err(|e| ApiError::bad_request(e.to_string()))?;
                Some(f)
            }
            None => None,
        };
        Ok(Filter { label, field, r })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.label
            && !l.matches(obj["metadata"]["labels"].as_object())
        {
            return false;
        }
        if let Some(f) = &self.field
            && !f.matches(obj, self.r).unwrap_or(false)
        {
            return false;
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.label.is_none() && self.field.is_none()
    }
}

/// The `includeObject` choice for Table rows (metadata by default).
pub fn include_object(choice: Option<&str>) -> IncludeObject {
    match choice {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

/// Renders objects as a Table or returns them as they are.
pub fn render_table(ctx: &Ctx, r: &ResourceInfo, objs: &[Value], rv: &str, with_columns: bool) -> Value {
    crate::crd::Printer::new(ctx.server.registry.catalog(), r).table(r, objs, include_object(ctx.params.include_object.as_deref()), jiff::Timestamp::now(), rv, with_columns)
}

async fn check_resource_version(ctx: &Ctx) -> Result<(), ApiError> {
    // Without resourceVersionMatch, a resourceVersion other than "" and "0" means NotOlderThan.
    let Some(rv) = ctx.params.resource_version.as_ref().filter(|rv| !rv.is_empty() && rv.as_str() != "0") else {
        return Ok(());
    };
    let m = ctx.params.resource_version_match.clone().unwrap_or_else(|| "NotOlderThan".into());
    let wanted: i64 = rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
    let current = ctx.server.registry.current_revision().await?;
    match m.as_str() {
        "Exact" if wanted != current => Err(ApiError::expired(format!(
            "too old resource version: {wanted} ({current}): lists at an exact past revision are not kept"
        ))),
        "NotOlderThan" | "Exact" if wanted > current => Err(ApiError::timeout(format!(
            "Too large resource version: {wanted}, current resource version: {current}"
        ))),
        "NotOlderThan" | "Exact" => Ok(()),
        other => Err(ApiError::bad_request(format!("unsupported resourceVersionMatch {other:?}"))),
    }
}

async fn list(ctx: &Ctx, t: &Target) -> Result<Response, ApiError> {
    let filter = Filter::new(t.r, &ctx.params)?;
    check_resource_version(ctx).await?;
    let (ns, limit, token) = (t.namespace.as_deref(), ctx.params.limit, ctx.params.continue_token.as_deref());
    let registry = &ctx.server.registry;
    if filter.is_empty() && !ctx.wants_table()
        && let Some(page) = registry.list_raw(t.r, ns, limit, token).await?
    {
        return Ok(raw_list_response(t.r, page));
    }
    if ctx.wants_table() {
        // Rows are made as objects are read, so the objects themselves are not all held at once.
        let (include, now, r) = (include_object(ctx.params.include_object.as_deref()), jiff::Timestamp::now(), t.r);
        let printer = crate::crd::Printer::new(registry.catalog(), r);
        let (rows, rv, token) = registry
            .list_map(r, ns, limit, token, &|o| filter.matches(&o).then(|| printer.row(r, &o, include, now)))
            .await?;
        let mut tbl = printer.table_from_rows(r, rows, &rv, true);
        if !token.is_empty() {
            tbl["metadata"]["continue"] = Value::String(token);
        }
        return Ok(json_response(StatusCode::OK, &tbl));
    }
    let page = registry.list(t.r, ns, limit, token, &|o| filter.matches(o)).await?;
    let mut meta = serde_json::Map::new();
    meta.insert("resourceVersion".into(), Value::String(page.resource_version.clone()));
    if !page.continue_token.is_empty() {
        meta.insert("continue".into(), Value::String(page.continue_token));
    }
    let body = {
        // Built by moving the items, not with `json!`, which would copy every object.
        let mut list = serde_json::Map::new();
        list.insert("kind".into(), Value::String(t.r.list_kind()));
        list.insert("apiVersion".into(), Value::String(t.r.api_version()));
        list.insert("metadata".into(), Value::Object(meta));
        list.insert("items".into(), Value::Array(page.items));
        Value::Object(list)
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// A list response assembled from stored JSON without decoding the objects.
fn raw_list_response(r: &ResourceInfo, page: skiff_registry::RawPage) -> Response {
    let mut meta = json!({"resourceVersion": page.resource_version});
    if !page.continue_token.is_empty() {
        meta["continue"] = json!(page.continue_token);
    }
    let head = format!(
        "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
        json!(r.list_kind()), json!(r.api_version()), meta
    );
    let size = head.len() + page.items.iter().map(|i| i.len() + 1).sum::<usize>() + 2;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head.as_bytes());
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn get(ctx: &Ctx, t: &Target, name: &str) -> Result<Response, ApiError> {
    let obj = ctx.server.registry.get(t.r, t.namespace.as_deref(), name).await?;
    Ok(object_response(ctx, t.r, obj))
}

/// One object, as a one-row Table when the client asked for one.
pub fn object_response(ctx: &Ctx, r: &ResourceInfo, obj: Value) -> Response {
    if ctx.wants_table() {
        let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
        return json_response(StatusCode::OK, &render_table(ctx, r, &[obj], &rv, true));
    }
    json_response(StatusCode::OK, &obj)
}

/// Decodes an object body for `r` and checks it against the URL: apiVersion, kind, namespace, and the
/// unknown fields `fieldValidation` asks about. Returns the object and the warnings to send.
pub async fn decode_for(ctx: &Ctx, t: &Target, body: Body, expect_kind: Option<(&str, &str)>) -> Result<(Value, Vec<String>), ApiError> {
    let bytes = body::read(body).await?;
    let decoded = body::decode_object(&ctx.server, &body::content_type(&ctx.parts.headers), &bytes)?;
    let mut obj = decoded.object;
    let (api_version, kind) = expect_kind.map(|(a, k)| (a.to_string(), k.to_string())).unwrap_or_else(|| (t.r.api_version(), t.r.kind.to_string()));
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v != api_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
        _ => obj["apiVersion"] = json!(api_version),
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if !k.is_empty() && k != kind => {
            return Err(ApiError::bad_request(format!("the kind in the data ({k}) does not match the expected kind ({kind})")));
        }
        _ => obj["kind"] = json!(kind),
    }
    if !obj["metadata"].is_object() {
        if obj.get("metadata").is_some_and(|m| !m.is_null()) {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        obj["metadata"] = json!({});
    }
    if t.r.namespaced && expect_kind.is_none() {
        let url_ns = t.namespace.as_deref().unwrap_or("");
        match obj["metadata"].get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => obj["metadata"]["namespace"] = json!(url_ns),
        }
    }
    let (g, v) = resources::split_api_version(&api_version);
    let mut unknown = decoded.unknown_fields;
    if ctx.params.validation() != "Ignore" {
        unknown.extend(ctx.server.schemas.unknown_fields(g, v, &kind, &obj));
    }
    let warnings = body::field_validation(ctx.params.validation(), &unknown)?;
    Ok((obj, warnings))
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    body::add_warnings(resp.headers_mut(), warnings);
    resp
}

async fn create(ctx: &Ctx, t: &Target, body: Body) -> Result<Response, ApiError> {
    if t.r.namespaced && t.namespace.is_none() {
        return Err(ApiError::no_route());
    }
    let (mut obj, warnings) = decode_for(ctx, t, body, None).await?;
    patch::record_update(ctx, t.r, None, &mut obj, false)?;
    let created = ctx.server.registry.create(t.r, t.namespace.as_deref(), obj, ctx.write_options()).await?;
    Ok(with_warnings(json_response(StatusCode::CREATED, &created), &warnings))
}

pub async fn update(ctx: &Ctx, t: &Target, name: &str, body: Body, status: bool) -> Result<Response, ApiError> {
    let (obj, warnings) = decode_for(ctx, t, body, None).await?;
    match obj["metadata"].get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    let registry = &ctx.server.registry;
    let ns = t.namespace.as_deref();
    let mut attempts = 0;
    let updated = loop {
        // managedFields are computed against the object the write replaces, so a changed object retries.
        let old = registry.get(t.r, ns, name).await?;
        let mut new = obj.clone();
        patch::record_update(ctx, t.r, Some(&old), &mut new, status)?;
        if new["metadata"].get("resourceVersion").and_then(Value::as_str).is_none_or(str::is_empty) {
            // An unconditional update: compare-and-swap on what managedFields were computed from.
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            attempts += 1;
            match registry.update_from(t.r, ns, name, &old, new, status, ctx.write_options()).await {
                Err(e) if e.code == 409 && e.reason == "Conflict" && attempts < 8 => continue,
                other => break other?,
            }
        }
        break registry.update_from(t.r, ns, name, &old, new, status, ctx.write_options()).await?;
    };
    Ok(with_warnings(json_response(StatusCode::OK, &updated), &warnings))
}

/// What a DELETE asked for: the registry's options, the propagation policy (`orphanDependents` maps
/// to Orphan or Background as upstream), and whether the old `orphanDependents: false` asked for cascading.
struct DeleteRequest {
    options: DeleteOptions,
    propagation: Option<skiff_registry::Propagation>,
    cascade_requested: bool,
}

/// `DeleteOptions` from the body (JSON or protobuf) or the query.
async fn delete_options(ctx: &Ctx, body: Body) -> Result<DeleteRequest, ApiError> {
    let bytes = body::read(body).await?;
    let mut opts = DeleteOptions {
        grace_period_seconds: ctx.params.grace_period_seconds,
        dry_run: ctx.params.dry_run,
        ..Default::default()
    };
    let mut propagation = ctx.params.propagation_policy.clone();
    let mut cascade_requested = false;
    if !bytes.is_empty() {
        let v = match body::content_type(&ctx.parts.headers).as_str() {
            "application/vnd.kubernetes.protobuf" => ctx.server.protobuf.decode(&bytes).map(|d| d.object)
                .map_err(|e| ApiError::bad_request(format!("failed to decode DeleteOptions: {e}")))?,
            _ => body::parse_json(&bytes)?,
        };
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            opts.grace_period_seconds = Some(g);
        }
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            propagation = Some(p.to_string());
        }
        if let Some(d) = v.get("dryRun").and_then(Value::as_array) {
            opts.dry_run |= d.iter().any(|x| x == "All");
        }
        if let Some(uid) = v["preconditions"].get("uid").and_then(Value::as_str) {
            opts.precondition_uid = Some(uid.to_string());
        }
        if let Some(rv) = v["preconditions"].get("resourceVersion").and_then(Value::as_str) {
            opts.precondition_resource_version = Some(rv.to_string());
        }
        match v.get("orphanDependents").and_then(Value::as_bool) {
            Some(true) => propagation = Some("Orphan".into()),
            Some(false) => {
                cascade_requested = true;
                propagation.get_or_insert_with(|| "Background".into());
            }
            None => {}
        }
    }
    let propagation = match propagation.as_deref() {
        None => None,
        Some("Orphan") => Some(skiff_registry::Propagation::Orphan),
        Some("Background") => Some(skiff_registry::Propagation::Background),
        Some("Foreground") => Some(skiff_registry::Propagation::Foreground),
        Some(p) => {
            return Err(ApiError::invalid("meta.k8s.io", "DeleteOptions", "", &[skiff_api::FieldError::not_supported(
                "propagationPolicy", &json!(p), &["Foreground", "Background", "Orphan"])]));
        }
    };
    Ok(DeleteRequest { options: opts, propagation, cascade_requested })
}

async fn delete(ctx: &Ctx, t: &Target, name: &str, body: Body) -> Result<Response, ApiError> {
    let request = delete_options(ctx, body).await?;
    match ctx.server.registry.delete_propagating(t.r, t.namespace.as_deref(), name, &request.options, request.propagation).await? {
        Deleted::Gone(obj) => {
            let uid = obj["metadata"]["uid"].as_str();
            Ok(json_response(StatusCode::OK, &skiff_api::status::success_status(t.r.group, t.r.plural, name, uid)))
        }
        // Upstream answers 202 for a pending delete only when cascading was asked for with the old
        // `orphanDependents: false`; 200 otherwise (changing that would break clients, its code says).
        Deleted::Pending(obj) => {
            let code = if request.cascade_requested { StatusCode::ACCEPTED } else { StatusCode::OK };
            Ok(json_response(code, &obj))
        }
    }
}

async fn delete_collection(ctx: &Ctx, t: &Target, body: Body) -> Result<Response, ApiError> {
    let request = delete_options(ctx, body).await?;
    let (opts, propagation) = (request.options, request.propagation);
    let filter = Filter::new(t.r, &ctx.params)?;
    let page = ctx.server.registry.list(t.r, t.namespace.as_deref(), None, None, &|o| filter.matches(o)).await?;
    let mut deleted = Vec::new();
    for obj in page.items {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
        match ctx.server.registry.delete_propagating(t.r, ns.as_deref(), &name, &opts, propagation).await {
            Ok(Deleted::Gone(o)) | Ok(Deleted::Pending(o)) => deleted.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = ctx.server.registry.current_revision().await?.to_string();
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": t.r.list_kind(), "apiVersion": t.r.api_version(), "metadata": {"resourceVersion": rv}, "items": deleted}),
    ))
}
