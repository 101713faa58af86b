//! The streaming pod subresources, served by the pod's kubelet: `pods/log` (the kubelet's response body
//! streamed through), `pods/exec`, `pods/attach` and `pods/portforward` (upgrade-aware, like upstream's
//! `UpgradeAwareHandler`: the client's WebSocket or SPDY upgrade is forwarded with its subprotocol headers,
//! and once the kubelet answers 101 the bytes are spliced both ways).
//!
//! The pod and container are validated here with upstream's messages; the kubelet is found from the Node
//! object (InternalIP, then ExternalIP, then Hostname; `status.daemonEndpoints.kubeletEndpoint.Port`).

mod kubelet_client;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use skiff_api::ApiError;
use skiff_api::resources;

pub use kubelet_client::KubeletClientConfig;

use crate::handlers::{Ctx, Target};

/// The kubelet's port when the Node does not say (upstream's default).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// Request headers not forwarded to the kubelet: hop-by-hop ones (except the upgrade's), the caller's
/// credentials, and the body framing (the body is not forwarded).
const DROPPED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "proxy-authorization",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
    "cookie",
    "accept-encoding",
];

pub async fn serve(ctx: &Ctx, t: &Target, name: &str, sub: &str) -> Result<Response, ApiError> {
    let method = &ctx.parts.method;
    let allowed = match sub {
        "log" => *method == Method::GET,
        _ => *method == Method::GET || *method == Method::POST,
    };
    if !allowed {
        return Err(ApiError::method_not_allowed(format!("the server does not allow {method} on pods/{sub}")));
    }
    let Some(client) = ctx.server.config.kubelet_client.as_ref() else {
        return Err(ApiError::service_unavailable(format!(
            "pods/{sub} is served by the pod's kubelet, and this API server has no kubelet client certificate configured (pod {name:?})"
        )));
    };
    let ns = t.namespace.as_deref().unwrap_or("default");
    let pod = ctx.server.registry.get(t.r, Some(ns), name).await?;
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(ctx.parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let path = match sub {
        "portforward" => format!("/portForward/{ns}/{name}"),
        _ => {
            let container = validate_container(&pod, param("container").unwrap_or(""), name)?;
            if sub == "log" {
                let previous = param("previous").is_some_and(|v| matches!(v, "true" | "1" | "True" | "TRUE" | "t" | "T"));
                check_log_status(&pod, &container, name, previous)?;
            }
            let kind = if sub == "log" { "containerLogs" } else { sub };
            format!("/{kind}/{ns}/{name}/{container}")
        }
    };
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    let nodes = resources::find("", "v1", "nodes").expect("nodes are served");
    let node = ctx.server.registry.get(nodes, None, node_name).await?;
    let (host, port) = node_address(&node).ok_or_else(|| {
        ApiError::internal(format!("node {node_name:?} has no address (status.addresses) to reach its kubelet at"))
    })?;
    let forwarded: Vec<(String, String)> = query.into_iter().filter(|(k, _)| k != "container").collect();
    let mut uri = path;
    if !forwarded.is_empty() {
        uri.push('?');
        uri.push_str(&url::form_urlencoded::Serializer::new(String::new()).extend_pairs(forwarded).finish());
    }

    let wants_upgrade = ctx.parts.headers.contains_key(header::UPGRADE);
    let client_upgrade = if wants_upgrade {
        Some(ctx.parts.extensions.get::<hyper::upgrade::OnUpgrade>().cloned().ok_or_else(|| {
            ApiError::bad_request("Upgrade request required over an HTTP/1.1 connection")
        })?)
    } else {
        None
    };
    if sub != "log" && !wants_upgrade {
        return Err(ApiError::bad_request("Upgrade request required"));
    }

    let tls = client.tls_config().map_err(ApiError::internal)?;
    let stream = kubelet_client::connect(tls, &host, port).await.map_err(|e| ApiError::internal(format!("error dialing backend: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::internal(format!("error dialing backend: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "kubelet connection ended with an error");
        }
    });
    let mut req = http::Request::builder().method(method.clone()).uri(&uri);
    for (k, v) in &ctx.parts.headers {
        if !DROPPED_HEADERS.contains(&k.as_str()) {
            req = req.header(k, v);
        }
    }
    let host_header = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let req = req
        .header(header::HOST, host_header)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::internal(format!("building the kubelet request: {e}")))?;
    let mut resp = sender.send_request(req).await.map_err(|e| ApiError::internal(format!("error talking to the kubelet: {e}")))?;

    if let Some(client_upgrade) = client_upgrade
        && resp.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, backend_upgrade) {
                Ok((client, backend)) => {
                    let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
                }
                Err(e) => tracing::debug!(error = %e, "pod stream upgrade failed"),
            }
        });
        return out.body(Body::empty()).map_err(|e| ApiError::internal(e.to_string()));
    }

    let status = resp.status();
    if status.is_success() && !wants_upgrade {
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned().unwrap_or(HeaderValue::from_static("text/plain"));
        let mut out = Response::new(Body::new(resp.into_body()));
        *out.status_mut() = status;
        out.headers_mut().insert(header::CONTENT_TYPE, content_type);
        return Ok(out);
    }
    let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    // The kubelet's text, or a Status if it sent one.
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or(text);
    Err(match status.as_u16() {
        400 => ApiError::bad_request(message),
        404 => ApiError::new(404, "NotFound", message),
        401 | 403 => ApiError::new(
            status.as_u16(),
            if status.as_u16() == 401 { "Unauthorized" } else { "Forbidden" },
            format!("the kubelet refused the API server's request: {message}"),
        ),
        code if code == 101 || code < 400 => ApiError::internal(format!("unexpected answer {status} from the kubelet: {message}")),
        code => ApiError::new(code, "InternalError", message),
    })
}

/// Upstream's `validateContainer`: the named container must be one of the pod's (app, init or ephemeral);
/// without a name, a pod with one container means that one.
pub fn validate_container(pod: &Value, container: &str, pod_name: &str) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let (containers, init, ephemeral) = (names("containers"), names("initContainers"), names("ephemeralContainers"));
    if container.is_empty() {
        return match containers.len() {
            1 => Ok(containers[0].clone()),
            0 => Err(ApiError::bad_request(format!("a container name must be specified for pod {pod_name}"))),
            _ => {
                let mut msg = format!("a container name must be specified for pod {pod_name}, choose one of: [{}]", containers.join(" "));
                if !init.is_empty() {
                    msg.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
                }
                Err(ApiError::bad_request(msg))
            }
        };
    }
    if containers.iter().chain(&init).chain(&ephemeral).any(|n| n == container) {
        Ok(container.to_string())
    } else {
        Err(ApiError::bad_request(format!("container {container} is not valid for pod {pod_name}")))
    }
}

/// The kubelet's `validateContainerLogStatus`, from the pod's status: a container still waiting (and never
/// run) has no log yet; `previous` needs an earlier terminated instance.
fn check_log_status(pod: &Value, container: &str, pod_name: &str, previous: bool) -> Result<(), ApiError> {
    let status = ["containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"]
        .iter()
        .filter_map(|f| pod["status"][f].as_array())
        .flatten()
        .find(|s| s["name"].as_str() == Some(container));
    let Some(s) = status else { return Ok(()) };
    let last_terminated = s["lastState"]["terminated"].is_object();
    if previous {
        if !last_terminated {
            return Err(ApiError::bad_request(format!("previous terminated container \"{container}\" in pod \"{pod_name}\" not found")));
        }
        return Ok(());
    }
    if let Some(waiting) = s["state"]["waiting"].as_object()
        && !last_terminated
    {
        let reason = waiting.get("reason").and_then(Value::as_str).unwrap_or("");
        return Err(ApiError::bad_request(format!("container \"{container}\" in pod \"{pod_name}\" is waiting to start: {reason}")));
    }
    Ok(())
}

/// Where the node's kubelet listens: the first InternalIP (then ExternalIP, then Hostname) and the port
/// from `status.daemonEndpoints.kubeletEndpoint.Port` (10250 when unset).
pub fn node_address(node: &Value) -> Option<(String, u16)> {
    let addresses = node["status"]["addresses"].as_array()?;
    let host = ["InternalIP", "ExternalIP", "Hostname"].iter().find_map(|ty| {
        addresses
            .iter()
            .find(|a| a["type"].as_str() == Some(ty))
            .and_then(|a| a["address"].as_str())
            .filter(|a| !a.is_empty())
    })?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| *p > 0 && *p <= u16::MAX as u64)
        .map(|p| p as u16)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_are_validated_with_upstreams_messages() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "init"}]}});
        assert_eq!(validate_container(&pod, "init", "web").unwrap(), "init");
        let e = validate_container(&pod, "x", "web").unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "container x is not valid for pod web"));
        let e = validate_container(&pod, "", "web").unwrap_err();
        assert_eq!(e.message, "a container name must be specified for pod web, choose one of: [a b] or one of the init containers: [init]");
        assert_eq!(validate_container(&json!({"spec": {"containers": [{"name": "only"}]}}), "", "web").unwrap(), "only");
    }

    #[test]
    fn waiting_containers_have_no_log_yet() {
        let pod = json!({"status": {"containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}]}});
        let e = check_log_status(&pod, "a", "web", false).unwrap_err();
        assert_eq!(e.message, "container \"a\" in pod \"web\" is waiting to start: ContainerCreating");
        let e = check_log_status(&pod, "a", "web", true).unwrap_err();
        assert_eq!(e.message, "previous terminated container \"a\" in pod \"web\" not found");
        let restarted = json!({"status": {"containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}}]}});
        assert!(check_log_status(&restarted, "a", "web", false).is_ok());
        assert!(check_log_status(&restarted, "a", "web", true).is_ok());
    }

    #[test]
    fn the_kubelet_is_found_from_the_node() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
                                     "daemonEndpoints": {"kubeletEndpoint": {"Port": 10251}}}});
        assert_eq!(node_address(&node), Some(("10.0.0.5".into(), 10251)));
        let bare = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(node_address(&bare), Some(("n1".into(), 10250)));
        assert_eq!(node_address(&json!({})), None);
    }
}
