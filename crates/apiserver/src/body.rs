//! Request bodies: reading them within the size limit and decoding JSON, YAML and Kubernetes protobuf
//! into JSON objects; and the `Warning` headers that field validation produces.

use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;
use skiff_api::ApiError;

use crate::{ApiServer, MAX_BODY_BYTES};

/// Reads the whole body, answering 413 above [`MAX_BODY_BYTES`].
pub async fn read(body: Body) -> Result<Bytes, ApiError> {
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.to_string().contains("length limit exceeded") {
                    return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
                }
                source = s.source();
            }
            Err(ApiError::bad_request(format!("failed to read the request body: {e}")))
        }
    }
}

/// The media type of a request body, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// A decoded object and the unknown fields the decoder itself found (protobuf only).
pub struct DecodedObject {
    pub object: Value,
    pub unknown_fields: Vec<String>,
}

/// Decodes an object body by its content type.
pub fn decode_object(server: &ApiServer, content_type: &str, bytes: &[u8]) -> Result<DecodedObject, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty: an object is required"));
    }
    let object = match content_type {
        "application/vnd.kubernetes.protobuf" => {
            let d = server.protobuf.decode(bytes).map_err(|e| ApiError::bad_request(format!("failed to decode the protobuf body: {e}")))?;
            return Ok(DecodedObject { object: d.object, unknown_fields: d.unknown_fields });
        }
        "application/yaml" | "application/x-yaml" | "text/yaml" => parse_yaml(bytes)?,
        "" | "application/json" | "*/*" => parse_json(bytes)?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !object.is_object() {
        return Err(ApiError::bad_request(format!(
            "the request body must be a JSON object, not {}",
            kind_of(&object)
        )));
    }
    Ok(DecodedObject { object, unknown_fields: Vec::new() })
}

pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

pub fn parse_yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::bad_request("the YAML request body is not valid UTF-8"))?;
    let options = serde_saphyr::options! { legacy_octal_numbers: true };
    serde_saphyr::from_str_with_options::<Value>(text, options)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Applies `fieldValidation` to unknown fields: Strict fails with 400 naming them (as upstream's
/// `strict decoding error`), Warn returns them as warnings, Ignore drops them.
pub fn field_validation(directive: &str, unknown: &[String]) -> Result<Vec<String>, ApiError> {
    if unknown.is_empty() || directive == "Ignore" {
        return Ok(Vec::new());
    }
    let msgs: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    if directive == "Strict" {
        return Err(ApiError::bad_request(format!("strict decoding error: {}", msgs.join(", "))));
    }
    Ok(msgs)
}

/// Adds `Warning: 299 - "<text>"` headers.
pub fn add_warnings(headers: &mut HeaderMap, warnings: &[String]) {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            headers.append("warning", v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_octal_modes_read_as_kubectl_does() {
        let v = parse_yaml(b"a: 0644\nb: yes\n").unwrap();
        assert_eq!(v["a"], 420);
    }

    #[test]
    fn strict_fails_and_warn_collects() {
        let unknown = vec!["spec.foo".to_string()];
        let e = field_validation("Strict", &unknown).unwrap_err();
        assert_eq!(e.message, "strict decoding error: unknown field \"spec.foo\"");
        assert_eq!(field_validation("Warn", &unknown).unwrap(), vec!["unknown field \"spec.foo\""]);
        assert!(field_validation("Ignore", &unknown).unwrap().is_empty());
    }
}
