//! Container lifecycle hooks (upstream's `lifecycle.handlerRunner`): postStart and preStop through exec,
//! httpGet or sleep, with the pod's grace period as their deadline.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use skiff_runtime::cri::RuntimeService;

use crate::probes::{http_get, resolve_port};

/// Runs a hook; `Err` carries upstream-style text for the `FailedPostStartHook`/`FailedPreStopHook` event.
pub async fn run_handler(
    runtime: &dyn RuntimeService,
    handler: &LifecycleHandler,
    container: &Container,
    container_id: &str,
    pod_ip: Option<IpAddr>,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &handler.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        return match runtime.exec_sync(container_id, &cmd, timeout).await {
            Ok(r) if r.exit_code == 0 => Ok(()),
            Ok(r) => {
                let mut out = String::from_utf8_lossy(&r.stdout).to_string();
                out.push_str(&String::from_utf8_lossy(&r.stderr));
                Err(format!(
                    "Exec lifecycle hook ({cmd:?}) for Container {:?} failed - error: command {cmd:?} exited with {}, message: {:?}",
                    container.name, r.exit_code, out
                ))
            }
            Err(e) => {
                Err(format!("Exec lifecycle hook ({cmd:?}) for Container {:?} failed - error: {e}", container.name))
            }
        };
    }
    if let Some(http) = &handler.http_get {
        let port = resolve_port(&http.port, container)?;
        let host = http
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .or_else(|| pod_ip.map(|ip| ip.to_string()))
            .ok_or_else(|| "the pod has no IP address for the HTTP lifecycle hook".to_string())?;
        let headers = http.http_headers.clone().unwrap_or_default();
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let https = http.scheme.as_deref() == Some("HTTPS");
        return match http_get(https, &host, port, &path, &headers, timeout).await {
            Ok(code) if (200..400).contains(&code) => Ok(()),
            Ok(code) => Err(format!(
                "HTTP lifecycle hook ({path}) for Container {:?} failed - error: received non-2xx status code {code}",
                container.name
            )),
            Err(e) => {
                Err(format!("HTTP lifecycle hook ({path}) for Container {:?} failed - error: {e}", container.name))
            }
        };
    }
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
        return Ok(());
    }
    Err(format!("a lifecycle hook of container {:?} has no handler", container.name))
}
