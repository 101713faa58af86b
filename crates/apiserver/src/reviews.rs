//! The review resources that are answered, not stored: SelfSubjectReview (`kubectl auth whoami`),
//! SelfSubjectAccessReview (`kubectl auth can-i`) and SelfSubjectRulesReview (`auth can-i --list`).
//! Every authenticated user may do everything until RBAC lands, and the answers say so.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::request::Parts;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use skiff_api::ApiError;

use crate::auth::UserInfo;
use crate::{body, error_response, json_response, ApiServer};

/// Whether the path is one of the review resources.
pub fn is_review(group: &str, version: &str, rest: &[&str]) -> bool {
    matches!(
        (group, version, rest),
        ("authentication.k8s.io", "v1", ["selfsubjectreviews"])
            | ("authorization.k8s.io", "v1", ["selfsubjectaccessreviews" | "selfsubjectrulesreviews"])
    )
}

pub async fn serve(server: &Arc<ApiServer>, parts: &Parts, group: &str, version: &str, rest: &[&str], user: &UserInfo, req_body: Body) -> Response {
    match review(server, parts, group, version, rest, user, req_body).await {
        Ok(v) => json_response(StatusCode::CREATED, &v),
        Err(e) => error_response(&e),
    }
}

async fn review(server: &Arc<ApiServer>, parts: &Parts, group: &str, version: &str, rest: &[&str], user: &UserInfo, req_body: Body) -> Result<Value, ApiError> {
    if parts.method != Method::POST {
        return Err(ApiError::method_not_allowed(format!("only create is allowed on {}", rest[0])));
    }
    let bytes = body::read(req_body).await?;
    let mut obj = body::decode_object(server, &body::content_type(&parts.headers), &bytes)?.object;
    let api_version = format!("{group}/{version}");
    let kind = match rest[0] {
        "selfsubjectreviews" => "SelfSubjectReview",
        "selfsubjectaccessreviews" => "SelfSubjectAccessReview",
        _ => "SelfSubjectRulesReview",
    };
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.retain(|k, _| k == "name");
    }
    obj["metadata"]["creationTimestamp"] = Value::Null;
    match rest[0] {
        "selfsubjectreviews" => {
            obj["status"] = json!({"userInfo": user.to_json()});
        }
        "selfsubjectaccessreviews" => {
            let spec = &obj["spec"];
            if spec.get("resourceAttributes").is_none() && spec.get("nonResourceAttributes").is_none() {
                return Err(ApiError::invalid(group, kind, "", &[skiff_api::FieldError::required_msg(
                    "spec.resourceAttributes", "exactly one of nonResourceAttributes or resourceAttributes must be specified")]));
            }
            obj["status"] = json!({"allowed": true, "reason": "skiff authorizes every authenticated user (RBAC is not enforced yet)"});
        }
        _ => {
            obj["status"] = json!({
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": false,
            });
        }
    }
    Ok(obj)
}
