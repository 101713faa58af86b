//! The measured workloads against one running API server: creates, GETs, watch delivery, bulk pod
//! creation and LIST, each over its own HTTPS connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::Conn;

pub const NAMESPACE: &str = "bench";

/// Where the API server is and how to authenticate to it.
pub struct Api {
    pub port: u16,
    pub tls: Arc<rustls::ClientConfig>,
}

/// One request of a workload.
pub struct Op {
    pub method: Method,
    pub path: String,
    pub body: Option<Bytes>,
    pub want: StatusCode,
}

impl Api {
    pub async fn conn(&self) -> anyhow::Result<Conn> {
        Conn::connect(self.port, &self.tls).await
    }

    pub async fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        self.conn()
            .await?
            .expect(
                Method::POST,
                "/api/v1/namespaces",
                None,
                Some(body.to_string().into()),
                StatusCode::CREATED,
            )
            .await?;
        Ok(())
    }

    /// Runs `per_client` requests on each of `clients` connections at once; returns requests per second.
    /// The connections are opened before the clock starts.
    pub async fn parallel<F>(&self, clients: usize, per_client: usize, op: F) -> anyhow::Result<f64>
    where
        F: Fn(usize, usize) -> Op + Send + Sync + 'static,
    {
        let mut conns = Vec::with_capacity(clients);
        for _ in 0..clients {
            conns.push(self.conn().await?);
        }
        let op = Arc::new(op);
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for (client, mut conn) in conns.into_iter().enumerate() {
            let op = op.clone();
            tasks.spawn(async move {
                for index in 0..per_client {
                    let Op {
                        method,
                        path,
                        body,
                        want,
                    } = op(client, index);
                    conn.expect(method, &path, None, body, want).await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.context("a client task panicked")??;
        }
        Ok((clients * per_client) as f64 / started.elapsed().as_secs_f64())
    }
}

pub fn configmap(name: &str) -> Bytes {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "bench"}},
        "data": {"config.yaml": "log-level: info\nlisten: 0.0.0.0:8080\nfeature-flags: [a, b, c]\n", "mode": "bench"}
    })
    .to_string()
    .into()
}

/// A realistic small pod: one container with image, ports, env and resources.
pub fn pod(name: &str, index: usize) -> Bytes {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app": "web", "tier": "frontend", "shard": format!("s{}", index % 16)}
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "registry.example.com/team/web:1.27.3",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [
                    {"name": "LOG_LEVEL", "value": "info"},
                    {"name": "SHARD", "value": format!("{}", index % 16)}
                ],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"cpu": "500m", "memory": "128Mi"}
                }
            }],
            "restartPolicy": "Always"
        }
    })
    .to_string()
    .into()
}

/// Creates `writes` ConfigMaps one after the other with a watch open on ConfigMaps; returns, per write,
/// the milliseconds from sending the POST to receiving the ADDED event line (after `warmup` writes that
/// are not counted).
pub async fn watch_latency(api: &Api, warmup: usize, writes: usize) -> anyhow::Result<Vec<f64>> {
    let base = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
    let mut conn = api.conn().await?;
    let list = conn
        .expect(
            Method::GET,
            &format!("{base}?limit=1"),
            None,
            None,
            StatusCode::OK,
        )
        .await?;
    let list: Value =
        serde_json::from_slice(&list).context("failed to parse the ConfigMap list")?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("the list has no resourceVersion")?
        .to_string();

    let mut watch_conn = api.conn().await?;
    let response = watch_conn
        .send(
            Method::GET,
            &format!("{base}?watch=true&resourceVersion={rv}"),
            None,
            None,
        )
        .await?;
    if response.status() != StatusCode::OK {
        bail!("the watch answered {}", response.status());
    }
    let (events, mut received) = mpsc::unbounded_channel::<(String, Instant)>();
    // Aborted when dropped, on success or error.
    let mut reader = JoinSet::new();
    reader.spawn(async move {
        let mut body = response.into_body();
        let mut buffer = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the watch stream failed")?;
            let at = Instant::now();
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buffer.extend_from_slice(&data);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let event: Value =
                    serde_json::from_slice(&line).context("failed to parse a watch event")?;
                if event["type"] == "ADDED"
                    && let Some(name) = event["object"]["metadata"]["name"].as_str()
                    && events.send((name.to_string(), at)).is_err()
                {
                    return Ok(());
                }
            }
        }
        anyhow::Ok(())
    });

    let mut latencies = Vec::with_capacity(writes);
    for index in 0..warmup + writes {
        let name = format!("watch-{index:04}");
        let sent = Instant::now();
        conn.expect(
            Method::POST,
            &base,
            None,
            Some(configmap(&name)),
            StatusCode::CREATED,
        )
        .await?;
        loop {
            let (seen, at) = tokio::time::timeout(Duration::from_secs(10), received.recv())
                .await
                .with_context(|| format!("no watch event for {name} within 10 s"))?
                .context("the watch stream ended")?;
            if seen == name {
                if index >= warmup {
                    latencies.push(at.saturating_duration_since(sent).as_secs_f64() * 1000.0);
                }
                break;
            }
        }
    }
    Ok(latencies)
}

/// LISTs the benchmark namespace's pods `times` times with the given Accept header; returns the
/// milliseconds until each whole body was received, the body size and the number of items or rows.
pub async fn list_pods(
    api: &Api,
    accept: Option<&str>,
    times: usize,
) -> anyhow::Result<(Vec<f64>, usize, usize)> {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let mut conn = api.conn().await?;
    let mut samples = Vec::with_capacity(times);
    let mut last = Bytes::new();
    for _ in 0..times {
        let started = Instant::now();
        last = conn
            .expect(Method::GET, &path, accept, None, StatusCode::OK)
            .await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let parsed: Value = serde_json::from_slice(&last).context("failed to parse the pod list")?;
    let count = parsed["items"]
        .as_array()
        .or_else(|| parsed["rows"].as_array())
        .map(Vec::len)
        .context("the list has neither items nor rows")?;
    Ok((samples, last.len(), count))
}

/// The parts of a list page the paginated LIST needs; the items are skipped, only counted.
#[derive(serde::Deserialize)]
struct Page {
    metadata: PageMeta,
    items: Vec<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct PageMeta {
    #[serde(rename = "continue", default)]
    continue_token: String,
}

/// Percent-encodes a query value (everything but the unreserved characters).
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// LISTs the benchmark namespace's pods `times` times in pages of `limit` (`limit` and `continue`, as
/// client-go and kubectl do); returns the milliseconds per whole LIST, the pages and the items of the last.
pub async fn list_pods_paged(
    api: &Api,
    limit: usize,
    times: usize,
) -> anyhow::Result<(Vec<f64>, usize, usize)> {
    let base = format!("/api/v1/namespaces/{NAMESPACE}/pods?limit={limit}");
    let mut conn = api.conn().await?;
    let mut samples = Vec::with_capacity(times);
    let (mut pages, mut count) = (0, 0);
    for _ in 0..times {
        (pages, count) = (0, 0);
        let started = Instant::now();
        let mut token = String::new();
        loop {
            let path = if token.is_empty() {
                base.clone()
            } else {
                format!("{base}&continue={}", query_escape(&token))
            };
            let body = conn
                .expect(Method::GET, &path, None, None, StatusCode::OK)
                .await?;
            let page: Page =
                serde_json::from_slice(&body).context("failed to parse a pod list page")?;
            pages += 1;
            count += page.items.len();
            if page.metadata.continue_token.is_empty() {
                break;
            }
            token = page.metadata.continue_token;
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((samples, pages, count))
}
