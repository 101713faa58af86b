//! Watch: a chunked stream of newline-delimited `{"type","object"}` events, started from a list (no
//! resourceVersion or `0`) or from a resourceVersion, filtered by selectors (objects that stop matching
//! are reported DELETED, objects that start matching ADDED), with bookmarks only when asked for, Table
//! rows when asked for, a time-out, and an ERROR event with 410 Expired for a compacted resourceVersion.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use serde_json::{json, Value};
use skiff_api::ApiError;
use skiff_registry::{EventType, ObjectEvent};
use tokio::sync::mpsc;

use crate::handlers::{Ctx, Filter, Target};

pub async fn serve(ctx: &Ctx, t: &Target) -> Result<Response, ApiError> {
    let filter = Filter::new(t.r, &ctx.params)?;
    let server = ctx.server.clone();
    let registry = server.registry.clone();
    let ns = t.namespace.clone();
    let rv = ctx.params.resource_version.clone().unwrap_or_default();
    let send_initial = ctx.params.send_initial_events || rv.is_empty() || rv == "0";
    let bookmarks = ctx.params.allow_watch_bookmarks;
    let table = ctx.wants_table();
    let timeout = ctx
        .params
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(server.config.max_watch_timeout)
        .min(server.config.max_watch_timeout * 2);

    // The starting point: a list (its items become ADDED events) or the given revision.
    let (initial, start_rev) = if send_initial && (rv.is_empty() || rv == "0" || ctx.params.send_initial_events) {
        let page = registry.list(t.r, ns.as_deref(), None, None, &|o| filter.matches(o)).await?;
        let rev: i64 = page.resource_version.parse().unwrap_or(0);
        (page.items, rev)
    } else {
        let rev: i64 = rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}: must be a number")))?;
        (Vec::new(), rev)
    };
    let stream = registry.watch(t.r, ns.as_deref(), start_rev).await;

    let rows = RowRenderer { table, first: std::sync::atomic::AtomicBool::new(true), printer: crate::crd::Printer::new(ctx.server.registry.catalog(), t.r) };
    let (tx, rx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let r = t.r;
    // Rendering Table rows needs the request's includeObject choice: capture a renderer.
    let include = ctx.params.include_object.clone();
    let interval = server.config.bookmark_interval;
    let shutdown = server.shutdown.clone();
    let initial_end_bookmark = ctx.params.send_initial_events && bookmarks;
    tokio::spawn(async move {
        let send = |v: Value| {
            let tx = tx.clone();
            async move {
                let mut line = serde_json::to_vec(&v).expect("json values serialize");
                line.push(b'\n');
                tx.send(Ok(bytes::Bytes::from(line))).await.is_ok()
            }
        };
        let render = |obj: Value| rows.render(r, obj, include.as_deref());
        for obj in initial {
            if !send(json!({"type": "ADDED", "object": render(obj)})).await {
                return;
            }
        }
        if initial_end_bookmark {
            let bm = json!({"type": "BOOKMARK", "object": {"kind": r.kind, "apiVersion": r.api_version(),
                "metadata": {"resourceVersion": start_rev.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}});
            if !send(bm).await {
                return;
            }
        }
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                let _ = send(json!({"type": "ERROR", "object": e.to_status()})).await;
                return;
            }
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut last_rev = start_rev;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let bm = json!({"type": "BOOKMARK", "object": {"kind": r.kind, "apiVersion": r.api_version(),
                        "metadata": {"resourceVersion": last_rev.to_string()}}});
                    if !send(bm).await { return; }
                }
                item = stream.next() => {
                    let Some(item) = item else { return };
                    let ev = match item {
                        Ok(ev) => ev,
                        Err(e) => {
                            let _ = send(json!({"type": "ERROR", "object": e.to_status()})).await;
                            return;
                        }
                    };
                    last_rev = ev.revision;
                    if let Some((kind, obj)) = filtered(&filter, ev)
                        && !send(json!({"type": kind.as_str(), "object": render(obj)})).await
                    {
                        return;
                    }
                }
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(resp)
}

/// Applies the selectors to a change, turning transitions into ADDED and DELETED as upstream does.
fn filtered(filter: &Filter, ev: ObjectEvent) -> Option<(EventType, Value)> {
    if filter.is_empty() {
        return Some((ev.kind, ev.object));
    }
    let now = filter.matches(&ev.object);
    match ev.kind {
        EventType::Added | EventType::Deleted => now.then_some((ev.kind, ev.object)),
        EventType::Modified => {
            let before = ev.previous.as_ref().map(|p| filter.matches(p)).unwrap_or(now);
            match (before, now) {
                (true, true) => Some((EventType::Modified, ev.object)),
                (false, true) => Some((EventType::Added, ev.object)),
                (true, false) => Some((EventType::Deleted, ev.object)),
                (false, false) => None,
            }
        }
    }
}

/// Renders event objects, as one-row Tables when asked (column definitions in the first only).
struct RowRenderer {
    table: bool,
    first: std::sync::atomic::AtomicBool,
    printer: crate::crd::Printer,
}

impl RowRenderer {
    fn render(&self, r: &skiff_api::ResourceInfo, obj: Value, include: Option<&str>) -> Value {
        if !self.table {
            return obj;
        }
        let first = self.first.swap(false, std::sync::atomic::Ordering::Relaxed);
        let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
        self.printer.table(r, &[obj], crate::handlers::include_object(include), jiff::Timestamp::now(), &rv, first)
    }
}

