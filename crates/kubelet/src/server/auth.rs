//! Only the API server may call the kubelet: a request needs a client certificate (401 otherwise) whose
//! identity is the API server's kubelet client or a cluster admin (403 otherwise).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::StatusCode;

use super::{Peer, error};

/// The user of the API server's kubelet client certificate (upstream's `kube-apiserver-kubelet-client`).
pub const APISERVER_KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// Members of this group may do everything.
pub const MASTERS_GROUP: &str = "system:masters";

pub async fn authorize(req: Request, next: Next) -> Response {
    let Some(peer) = req.extensions().get::<Peer>() else {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    if peer.user == APISERVER_KUBELET_CLIENT_USER || peer.groups.iter().any(|g| g == MASTERS_GROUP) {
        return next.run(req).await;
    }
    let path = req.uri().path();
    let subresource = match path.split('/').nth(1).unwrap_or("") {
        "stats" => "stats",
        "metrics" => "metrics",
        "containerLogs" | "exec" | "attach" | "portForward" | "run" => "proxy",
        "healthz" => "healthz",
        _ => "proxy",
    };
    let verb = if req.method() == http::Method::GET || req.method() == http::Method::HEAD { "get" } else { "create" };
    error(
        StatusCode::FORBIDDEN,
        format!("Forbidden (user={}, verb={verb}, resource=nodes, subresource={subresource})", peer.user),
    )
}
