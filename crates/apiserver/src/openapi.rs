//! Serving OpenAPI: the v3 index and per-group-version documents (immutable under their hash, so
//! kubectl caches them) and the v2 document as JSON, each rendered once. Custom resources' group-versions
//! (from CRDs) get v3 documents rendered again whenever the catalog changes; they are not in v2.

use std::sync::{Arc, OnceLock, RwLock};

use axum::response::{IntoResponse, Response};
use serde_json::json;
use http::{HeaderValue, StatusCode, header};
use skiff_api::ApiError;
use skiff_api::crd::Catalog;
use skiff_api::openapi::Schemas;

use crate::error_response;

/// The OpenAPI documents, rendered on first use (or by a warm-up thread right after start), so that
/// rendering a few megabytes of JSON does not delay readiness.
pub struct Documents {
    schemas: Arc<Schemas>,
    rendered: OnceLock<Rendered>,
    catalog: Arc<Catalog>,
    /// The custom group-versions' documents and the catalog generation they were rendered for.
    custom: RwLock<(u64, Arc<Vec<(String, String, Vec<u8>)>>)>,
}

struct Rendered {
    index: Vec<u8>,
    /// (`api/v1` or `apis/apps/v1`, hash, body)
    group_versions: Vec<(String, String, Vec<u8>)>,
    v2: Vec<u8>,
}

impl Documents {
    pub fn new(schemas: Arc<Schemas>, catalog: Arc<Catalog>) -> Documents {
        Documents { schemas, rendered: OnceLock::new(), catalog, custom: RwLock::new((u64::MAX, Arc::new(Vec::new()))) }
    }

    /// The documents of custom group-versions, for the catalog's current generation.
    fn custom(&self) -> Arc<Vec<(String, String, Vec<u8>)>> {
        let generation = self.catalog.generation();
        {
            let current = self.custom.read().unwrap_or_else(|e| e.into_inner());
            if current.0 == generation {
                return current.1.clone();
            }
        }
        let mut docs = Vec::new();
        let custom = self.catalog.custom_versions();
        for (group, versions) in self.catalog.groups() {
            for version in versions {
                let resources: Vec<_> = custom
                    .iter()
                    .filter(|cv| cv.info.group == group && cv.info.version == version)
                    .map(|cv| (cv.info, cv.schema.clone().unwrap_or(serde_json::Value::Null)))
                    .collect();
                if resources.is_empty() {
                    continue;
                }
                if let Some((doc, hash)) = self.schemas.custom_group_version_doc(group, version, &resources) {
                    docs.push((format!("apis/{group}/{version}"), hash, serde_json::to_vec(&doc).expect("json values serialize")));
                }
            }
        }
        let docs = Arc::new(docs);
        *self.custom.write().unwrap_or_else(|e| e.into_inner()) = (generation, docs.clone());
        docs
    }

    /// Renders every document once; later calls return the same.
    fn rendered(&self) -> &Rendered {
        self.rendered.get_or_init(|| {
            let mut group_versions = Vec::new();
            let mut paths = serde_json::Map::new();
            for (group, versions) in skiff_api::resources::groups() {
                for version in versions {
                    if let Some((doc, hash)) = self.schemas.group_version_doc(group, version) {
                        let path = if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") };
                        paths.insert(path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}));
                        group_versions.push((path, hash, serde_json::to_vec(&doc).expect("json values serialize")));
                    }
                }
            }
            Rendered {
                index: serde_json::to_vec(&json!({"paths": paths})).expect("json values serialize"),
                group_versions,
                v2: serde_json::to_vec(&self.schemas.swagger_v2()).expect("json values serialize"),
            }
        })
    }

    /// Renders the documents now (called from a thread at start).
    pub fn warm(&self) {
        self.rendered();
    }

    /// Answers `/openapi/v3`, `/openapi/v3/<gv path>` and `/openapi/v2`.
    pub fn serve(&self, path: &str, query: Option<&str>, accept: &str) -> Response {
        let docs = self.rendered();
        let custom = self.custom();
        if path == "/openapi/v3" || path == "/openapi/v3/" {
            if custom.is_empty() {
                return json_bytes(docs.index.clone(), "no-cache");
            }
            let mut index: serde_json::Value = serde_json::from_slice(&docs.index).unwrap_or_else(|_| json!({"paths": {}}));
            for (path, hash, _) in custom.iter() {
                index["paths"][path] = json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")});
            }
            return json_bytes(serde_json::to_vec(&index).expect("json values serialize"), "no-cache");
        }
        if path == "/openapi/v2" {
            if accept.contains("protobuf") && !accept.contains("json") && !accept.contains("*/*") {
                return error_response(&ApiError::not_acceptable(
                    "only application/json is served for /openapi/v2; use /openapi/v3",
                ));
            }
            return json_bytes(docs.v2.clone(), "no-cache");
        }
        let Some(gv) = path.strip_prefix("/openapi/v3/") else {
            return error_response(&ApiError::no_route());
        };
        let Some((_, hash, body)) = docs.group_versions.iter().chain(custom.iter()).find(|(p, _, _)| p == gv) else {
            return error_response(&ApiError::no_route());
        };
        let asked = query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "hash").map(|(_, v)| v.to_string())
        });
        match asked {
            Some(h) if &h == hash => json_bytes(body.clone(), "public, immutable"),
            Some(_) => {
                // A stale hash: redirect to the current document as upstream does.
                let mut resp = StatusCode::MOVED_PERMANENTLY.into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("/openapi/v3/{gv}?hash={hash}")) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                resp
            }
            None => json_bytes(body.clone(), "no-cache"),
        }
    }
}

fn json_bytes(body: Vec<u8>, cache: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if cache.contains("immutable") {
        h.insert(header::EXPIRES, HeaderValue::from_static("Thu, 31 Dec 2099 23:59:59 GMT"));
    }
    resp
}

