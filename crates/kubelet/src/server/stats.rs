//! `GET /stats/summary`: the kubelet's stats Summary (`stats/v1alpha1`) behind `kubectl top`: node CPU and
//! memory from `/proc`, and each pod's containers from the runtime's `container_stats`. CPU rates
//! (`usageNanoCores`) come from the previous sample of the same container. `GET /metrics/resource` gives
//! the same figures in the Prometheus text format that metrics-server scrapes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::State as AxState;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use jiff::Timestamp;
use serde_json::{Value, json};
use skiff_runtime::cri::{ContainerFilter, ContainerState, labels};

use super::{State, error};

/// Previous cumulative CPU samples (nanoseconds of CPU time at a time), keyed by container id or `node`.
#[derive(Default)]
pub struct CpuSamples {
    last: Mutex<HashMap<String, (SystemTime, u64)>>,
}

impl CpuSamples {
    /// The CPU rate in nano-cores since the previous sample of `key`, and records this one.
    fn rate(&self, key: &str, at: SystemTime, total_nanos: u64) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let rate = last.get(key).and_then(|(t, prev)| {
            let dt = at.duration_since(*t).ok()?.as_nanos() as u64;
            (dt > 0 && total_nanos >= *prev).then(|| ((total_nanos - prev) as u128 * 1_000_000_000 / dt as u128) as u64)
        });
        last.insert(key.to_string(), (at, total_nanos));
        rate
    }

    fn retain(&self, keys: &[String]) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.retain(|k, _| k == "node" || keys.contains(k));
    }
}

fn time(t: SystemTime) -> String {
    Timestamp::try_from(t).map(|t| t.to_string()).unwrap_or_default()
}

/// Node CPU time in nanoseconds (all non-idle jiffies of `/proc/stat`'s `cpu` line; USER_HZ is 100).
fn node_cpu_nanos(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest is already in user).
    let busy: u64 = v.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, x)| *x).sum();
    Some(busy * 10_000_000)
}

/// (total, available, usage, working set) in bytes from `/proc/meminfo`.
fn node_memory(meminfo: &str) -> Option<(u64, u64, u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
    };
    let total = field("MemTotal")?;
    let free = field("MemFree")?;
    let available = field("MemAvailable").unwrap_or(free);
    let usage = total.saturating_sub(free);
    let inactive_file = field("Inactive(file)").unwrap_or(0);
    Some((total, available, usage, usage.saturating_sub(inactive_file)))
}

pub async fn serve(AxState(state): AxState<Arc<State>>) -> Response {
    match summary(&state).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(msg) => error(StatusCode::INTERNAL_SERVER_ERROR, msg),
    }
}

/// `/metrics/resource`: upstream's resource metrics (cumulative CPU seconds, working set bytes, start times).
pub async fn serve_resource_metrics(AxState(state): AxState<Arc<State>>) -> Response {
    match summary(&state).await {
        Ok(v) => (
            [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            resource_metrics(&v),
        )
            .into_response(),
        Err(msg) => error(StatusCode::INTERNAL_SERVER_ERROR, msg),
    }
}

fn millis(time: &Value) -> Option<i64> {
    time.as_str()?.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

/// Renders a Summary as upstream's `/metrics/resource` text.
pub fn resource_metrics(summary: &Value) -> String {
    let mut families: Vec<(&str, &str, &str, Vec<String>)> = vec![
        ("container_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the container in core-seconds", vec![]),
        ("container_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the container in bytes", vec![]),
        ("container_start_time_seconds", "gauge", "[STABLE] Start time of the container since unix epoch in seconds", vec![]),
        ("node_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the node in core-seconds", vec![]),
        ("node_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the node in bytes", vec![]),
        ("pod_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds", vec![]),
        ("pod_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the pod in bytes", vec![]),
        ("scrape_error", "gauge", "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise", vec!["scrape_error 0".into()]),
    ];
    let mut add = |family: &str, labels: &str, value: f64, time: &Value| {
        let ts = millis(time).map(|t| format!(" {t}")).unwrap_or_default();
        if let Some(f) = families.iter_mut().find(|f| f.0 == family) {
            f.3.push(format!("{family}{labels} {value}{ts}"));
        }
    };
    let cpu_seconds = |cpu: &Value| cpu["usageCoreNanoSeconds"].as_u64().map(|n| n as f64 / 1e9);
    let node = &summary["node"];
    if let Some(v) = cpu_seconds(&node["cpu"]) {
        add("node_cpu_usage_seconds_total", "", v, &node["cpu"]["time"]);
    }
    if let Some(v) = node["memory"]["workingSetBytes"].as_u64() {
        add("node_memory_working_set_bytes", "", v as f64, &node["memory"]["time"]);
    }
    for pod in summary["pods"].as_array().into_iter().flatten() {
        let (ns, name) = (pod["podRef"]["namespace"].as_str().unwrap_or(""), pod["podRef"]["name"].as_str().unwrap_or(""));
        let pod_labels = format!("{{namespace=\"{ns}\",pod=\"{name}\"}}");
        if let Some(v) = cpu_seconds(&pod["cpu"]) {
            add("pod_cpu_usage_seconds_total", &pod_labels, v, &pod["cpu"]["time"]);
        }
        if let Some(v) = pod["memory"]["workingSetBytes"].as_u64() {
            add("pod_memory_working_set_bytes", &pod_labels, v as f64, &pod["memory"]["time"]);
        }
        for c in pod["containers"].as_array().into_iter().flatten() {
            let labels = format!("{{container=\"{}\",namespace=\"{ns}\",pod=\"{name}\"}}", c["name"].as_str().unwrap_or(""));
            if let Some(v) = cpu_seconds(&c["cpu"]) {
                add("container_cpu_usage_seconds_total", &labels, v, &c["cpu"]["time"]);
            }
            if let Some(v) = c["memory"]["workingSetBytes"].as_u64() {
                add("container_memory_working_set_bytes", &labels, v as f64, &c["memory"]["time"]);
            }
            if let Some(start) = millis(&c["startTime"]) {
                add("container_start_time_seconds", &labels, start as f64 / 1000.0, &Value::Null);
            }
        }
    }
    let mut out = String::new();
    for (name, kind, help, samples) in families {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for s in samples {
            out.push_str(&s);
            out.push('\n');
        }
    }
    out
}

async fn summary(state: &State) -> Result<Value, String> {
    let now = SystemTime::now();
    let stat = tokio::fs::read_to_string("/proc/stat").await.unwrap_or_default();
    let meminfo = tokio::fs::read_to_string("/proc/meminfo").await.unwrap_or_default();
    let uptime = tokio::fs::read_to_string("/proc/uptime").await.unwrap_or_default();
    let boot = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .and_then(|up| now.checked_sub(std::time::Duration::from_secs_f64(up)));
    let mut node = json!({"nodeName": state.config.node_name, "systemContainers": []});
    if let Some(b) = boot {
        node["startTime"] = json!(time(b));
    }
    if let Some(cpu) = node_cpu_nanos(&stat) {
        let mut c = json!({"time": time(now), "usageCoreNanoSeconds": cpu});
        if let Some(r) = state.stats.rate("node", now, cpu) {
            c["usageNanoCores"] = json!(r);
        }
        node["cpu"] = c;
    }
    if let Some((_total, available, usage, working_set)) = node_memory(&meminfo) {
        node["memory"] = json!({"time": time(now), "availableBytes": available, "usageBytes": usage, "workingSetBytes": working_set});
    }

    let runtime = state.runtime.as_ref();
    let sandboxes = runtime.list_pod_sandboxes().await.map_err(|e| format!("failed to list pod sandboxes: {e}"))?;
    let containers = runtime
        .list_containers(&ContainerFilter { state: Some(ContainerState::Running), ..Default::default() })
        .await
        .map_err(|e| format!("failed to list containers: {e}"))?;
    let mut seen = Vec::new();
    let mut pods = Vec::new();
    for sb in sandboxes.iter().filter(|s| s.state == skiff_runtime::cri::SandboxState::Ready) {
        let name = sb.labels.get(labels::POD_NAME).cloned().unwrap_or_else(|| sb.name.clone());
        let namespace = sb.labels.get(labels::POD_NAMESPACE).cloned().unwrap_or_else(|| sb.namespace.clone());
        let uid = sb.labels.get(labels::POD_UID).cloned().unwrap_or_else(|| sb.uid.clone());
        let (mut pod_cpu, mut pod_rate, mut pod_mem, mut pod_ws, mut pod_rss) = (0u64, None::<u64>, 0u64, 0u64, 0u64);
        let mut list = Vec::new();
        for c in containers.iter().filter(|c| c.sandbox_id == sb.id) {
            let Ok(s) = runtime.container_stats(&c.id).await else { continue };
            let at = s.timestamp.unwrap_or(now);
            seen.push(c.id.clone());
            let rate = state.stats.rate(&c.id, at, s.cpu_usage_nanos);
            let mut cpu = json!({"time": time(at), "usageCoreNanoSeconds": s.cpu_usage_nanos});
            if let Some(r) = rate {
                cpu["usageNanoCores"] = json!(r);
                pod_rate = Some(pod_rate.unwrap_or(0) + r);
            }
            pod_cpu += s.cpu_usage_nanos;
            pod_mem += s.memory_usage_bytes;
            pod_ws += s.memory_working_set_bytes;
            pod_rss += s.memory_rss_bytes;
            list.push(json!({
                "name": c.labels.get(labels::CONTAINER_NAME).cloned().unwrap_or_else(|| c.name.clone()),
                "startTime": time(c.started_at.unwrap_or(c.created_at)),
                "cpu": cpu,
                "memory": {"time": time(at), "usageBytes": s.memory_usage_bytes, "workingSetBytes": s.memory_working_set_bytes, "rssBytes": s.memory_rss_bytes},
                "rootfs": {"time": time(at), "usedBytes": s.writable_layer_bytes},
            }));
        }
        let mut cpu = json!({"time": time(now), "usageCoreNanoSeconds": pod_cpu});
        if let Some(r) = pod_rate {
            cpu["usageNanoCores"] = json!(r);
        }
        pods.push(json!({
            "podRef": {"name": name, "namespace": namespace, "uid": uid},
            "startTime": time(sb.created_at),
            "containers": list,
            "cpu": cpu,
            "memory": {"time": time(now), "usageBytes": pod_mem, "workingSetBytes": pod_ws, "rssBytes": pod_rss},
        }));
    }
    state.stats.retain(&seen);
    Ok(json!({"node": node, "pods": pods}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(node_cpu_nanos(stat), Some((100 + 5 + 50 + 1 + 2 + 3) * 10_000_000));
        let meminfo = "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    500 kB\nInactive(file):  100 kB\n";
        assert_eq!(node_memory(meminfo), Some((1_024_000, 512_000, 819_200, 716_800)));
    }

    #[test]
    fn resource_metrics_render_the_summary() {
        let summary = json!({
            "node": {"cpu": {"time": "2026-01-01T00:00:00Z", "usageCoreNanoSeconds": 2_500_000_000u64},
                     "memory": {"time": "2026-01-01T00:00:00Z", "workingSetBytes": 1024}},
            "pods": [{"podRef": {"name": "web", "namespace": "default", "uid": "u"},
                      "cpu": {"time": "2026-01-01T00:00:00Z", "usageCoreNanoSeconds": 5_000_000},
                      "memory": {"time": "2026-01-01T00:00:00Z", "workingSetBytes": 2048},
                      "containers": [{"name": "app", "startTime": "2026-01-01T00:00:00Z",
                                      "cpu": {"time": "2026-01-01T00:00:00Z", "usageCoreNanoSeconds": 5_000_000},
                                      "memory": {"time": "2026-01-01T00:00:00Z", "workingSetBytes": 2048}}]}],
        });
        let text = resource_metrics(&summary);
        assert!(text.contains("node_cpu_usage_seconds_total 2.5 1767225600000\n"), "{text}");
        assert!(text.contains("container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web\"} 2048 1767225600000\n"), "{text}");
        assert!(text.contains("container_start_time_seconds{container=\"app\",namespace=\"default\",pod=\"web\"} 1767225600\n"), "{text}");
        assert!(text.contains("# TYPE scrape_error gauge\nscrape_error 0\n"), "{text}");
    }

    #[test]
    fn cpu_rate_needs_two_samples() {
        let s = CpuSamples::default();
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(100);
        assert_eq!(s.rate("c", t0, 1_000), None);
        // Half a core over two seconds.
        assert_eq!(s.rate("c", t0 + std::time::Duration::from_secs(2), 1_000 + 1_000_000_000), Some(500_000_000));
    }
}
