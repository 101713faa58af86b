//! Integration tests: the API server's router in process, over the memory store, driven with raw HTTP
//! requests the way kubectl and kube-rs send them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures::StreamExt;
use http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use skiff_apiserver::UserInfo;
use skiff_registry::Registry;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

mod support;

struct Api {
    router: axum::Router,
    shutdown: CancellationToken,
    registry: Arc<Registry>,
}

async fn api() -> Api {
    let server = support::start(UserInfo::new("tester", &["system:masters"])).await;
    Api { router: server.router, shutdown: server.shutdown, registry: server.registry }
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Value,
    raw: Vec<u8>,
}

impl Api {
    async fn send(&self, method: Method, path: &str, content_type: &str, accept: &str, body: Vec<u8>) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        if !accept.is_empty() {
            req = req.header("accept", accept);
        }
        let resp = self.router.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let raw = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply { status, headers, body, raw }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, "", "application/json", vec![]).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, "application/json", "application/json", body.to_string().into_bytes()).await
    }

    async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, "application/json", "application/json", body.to_string().into_bytes()).await
    }

    async fn patch(&self, path: &str, kind: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, kind, "application/json", body.to_string().into_bytes()).await
    }

    async fn delete(&self, path: &str, body: Value) -> Reply {
        self.send(Method::DELETE, path, "application/json", "application/json", body.to_string().into_bytes()).await
    }
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
}

#[tokio::test]
async fn create_get_update_delete_with_server_metadata() {
    let api = api().await;
    let created = api.post("/api/v1/namespaces/default/configmaps", cm("one")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let meta = &created.body["metadata"];
    assert_eq!(meta["namespace"], "default");
    assert!(meta["uid"].as_str().unwrap().len() == 36);
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    let rv1: u64 = meta["resourceVersion"].as_str().unwrap().parse().unwrap();

    let dup = api.post("/api/v1/namespaces/default/configmaps", cm("one")).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.body["reason"], "AlreadyExists");
    assert_eq!(dup.body["message"], "configmaps \"one\" already exists");

    let mut changed = created.body.clone();
    changed["data"]["a"] = json!("2");
    let updated = api.put("/api/v1/namespaces/default/configmaps/one", changed.clone()).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let rv2: u64 = updated.body["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rv2 > rv1);
    assert_eq!(updated.body["metadata"]["uid"], meta["uid"]);

    // The stale resourceVersion is a conflict and changes nothing.
    changed["data"]["a"] = json!("3");
    let stale = api.put("/api/v1/namespaces/default/configmaps/one", changed).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(api.get("/api/v1/namespaces/default/configmaps/one").await.body["data"]["a"], "2");

    let gone = api.delete("/api/v1/namespaces/default/configmaps/one", json!({"propagationPolicy": "Background"})).await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.body);
    assert_eq!(gone.body["status"], "Success");
    let missing = api.get("/api/v1/namespaces/default/configmaps/one").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["message"], "configmaps \"one\" not found");
}

#[tokio::test]
async fn generate_name_generation_and_status_subresource() {
    let api = api().await;
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"generateName": "web-"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        "status": {"replicas": 99}});
    let created = api.post("/apis/apps/v1/namespaces/default/deployments", d).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let name = created.body["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("web-") && name.len() == 9);
    assert_eq!(created.body["metadata"]["generation"], 1);
    assert!(created.body.get("status").is_none_or(|s| s.get("replicas").is_none()), "status is not settable on create");
    assert_eq!(created.body["spec"]["replicas"], 1, "defaulted");
    assert_eq!(created.body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "Always");
    let path = format!("/apis/apps/v1/namespaces/default/deployments/{name}");

    let labelled = api.patch(&path, "application/merge-patch+json", json!({"metadata": {"labels": {"x": "y"}}})).await;
    assert_eq!(labelled.body["metadata"]["generation"], 1, "metadata changes keep the generation");
    let scaled = api.patch(&path, "application/merge-patch+json", json!({"spec": {"replicas": 3}})).await;
    assert_eq!(scaled.body["metadata"]["generation"], 2);

    let status = api.patch(&format!("{path}/status"), "application/merge-patch+json", json!({"status": {"replicas": 3}, "spec": {"replicas": 7}})).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(status.body["status"]["replicas"], 3);
    assert_eq!(status.body["spec"]["replicas"], 3, "the status subresource ignores spec");

    let scale = api.get(&format!("{path}/scale")).await;
    assert_eq!(scale.body["kind"], "Scale");
    assert_eq!(scale.body["spec"]["replicas"], 3);
    assert_eq!(scale.body["status"]["selector"], "app=web");
    let rescaled = api.patch(&format!("{path}/scale"), "application/merge-patch+json", json!({"spec": {"replicas": 5}})).await;
    assert_eq!(rescaled.body["spec"]["replicas"], 5);
    assert_eq!(api.get(&path).await.body["spec"]["replicas"], 5);
    let negative = api.patch(&format!("{path}/scale"), "application/merge-patch+json", json!({"spec": {"replicas": -1}})).await;
    assert_eq!(negative.status.as_u16(), 422);
}

#[tokio::test]
async fn validation_returns_every_field_error() {
    let api = api().await;
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c"}, {"name": "c", "image": "x"}]}});
    let r = api.post("/api/v1/namespaces/default/pods", bad).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);
    assert_eq!(r.body["reason"], "Invalid");
    let fields: Vec<&str> = r.body["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"spec.containers[0].image"), "{fields:?}");
    assert!(fields.contains(&"spec.containers[1].name"), "{fields:?}");
    assert_eq!(api.get("/api/v1/namespaces/default/pods/p").await.status, StatusCode::NOT_FOUND);

    let wrong_ns = api.post("/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": "x", "namespace": "other"}})).await;
    assert_eq!(wrong_ns.status, StatusCode::BAD_REQUEST);
    let missing_ns = api.post("/api/v1/namespaces/nope/configmaps", cm("x")).await;
    assert_eq!(missing_ns.status, StatusCode::NOT_FOUND);
    assert_eq!(missing_ns.body["message"], "namespaces \"nope\" not found");
    let strict = api.send(Method::POST, "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", "application/json", "",
        json!({"metadata": {"name": "s"}, "dataa": {}}).to_string().into_bytes()).await;
    assert_eq!(strict.status, StatusCode::BAD_REQUEST);
    assert_eq!(strict.body["message"], "strict decoding error: unknown field \"dataa\"");
    let warn = api.send(Method::POST, "/api/v1/namespaces/default/configmaps?fieldValidation=Warn", "application/json", "",
        json!({"metadata": {"name": "w"}, "dataa": {}}).to_string().into_bytes()).await;
    assert_eq!(warn.status, StatusCode::CREATED);
    assert!(warn.headers.get("warning").unwrap().to_str().unwrap().contains("unknown field \\\"dataa\\\""));
    let huge = vec![b' '; 3 * 1024 * 1024 + 1];
    let r = api.send(Method::POST, "/api/v1/namespaces/default/configmaps", "application/json", "", huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = api.send(Method::POST, "/api/v1/namespaces/default/configmaps", "application/json", "", b"{".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["kind"], "Status");
    let r = api.get("/apis/nope.example.com/v1/things").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let dry = api.send(Method::POST, "/api/v1/namespaces/default/configmaps?dryRun=All", "application/json", "", cm("dry").to_string().into_bytes()).await;
    assert_eq!(dry.status, StatusCode::CREATED);
    assert_eq!(api.get("/api/v1/namespaces/default/configmaps/dry").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn lists_paginate_and_filter() {
    let api = api().await;
    for i in 0..7 {
        let mut c = cm(&format!("c{i}"));
        c["metadata"]["labels"] = json!({"parity": if i % 2 == 0 { "even" } else { "odd" }});
        assert_eq!(api.post("/api/v1/namespaces/default/configmaps", c).await.status, StatusCode::CREATED);
    }
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let path = format!("/api/v1/namespaces/default/configmaps?&limit=3&continue={token}");
        let page = api.get(&path).await;
        assert_eq!(page.body["kind"], "ConfigMapList");
        assert!(page.body["metadata"]["resourceVersion"].as_str().is_some());
        names.extend(page.body["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()));
        token = page.body["metadata"]["continue"].as_str().unwrap_or("").to_string();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());
    let odd = api.get("/api/v1/namespaces/default/configmaps?labelSelector=parity%3Dodd&limit=2").await;
    assert_eq!(odd.body["items"].as_array().unwrap().len(), 2);
    assert!(odd.body["metadata"]["continue"].as_str().is_some());
    let by_name = api.get("/api/v1/configmaps?fieldSelector=metadata.name%3Dc4").await;
    assert_eq!(by_name.body["items"].as_array().unwrap().len(), 1);
    let bad = api.get("/api/v1/configmaps?fieldSelector=spec.nope%3Dx").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = api.get("/api/v1/configmaps?labelSelector=a%20in%20(").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let table = api.send(Method::GET, "/api/v1/namespaces/default/configmaps?labelSelector=parity%3Deven", "",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json", vec![]).await;
    assert_eq!(table.body["kind"], "Table");
    let cols: Vec<&str> = table.body["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(cols, vec!["Name", "Data", "Age"]);
    assert_eq!(table.body["rows"].as_array().unwrap().len(), 4);
    assert_eq!(table.body["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}

#[tokio::test]
async fn discovery_and_openapi_have_what_kubectl_needs() {
    let api = api().await;
    let agg = api.send(Method::GET, "/apis", "", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json", vec![]).await;
    assert_eq!(agg.headers["content-type"], "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
    assert_eq!(agg.body["kind"], "APIGroupDiscoveryList");
    let etag = agg.headers["etag"].to_str().unwrap().to_string();
    let mut req = Request::builder().uri("/apis").header("accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList").header("if-none-match", &etag);
    req = req.method(Method::GET);
    let resp = api.router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let legacy = api.get("/apis").await;
    assert_eq!(legacy.body["kind"], "APIGroupList");
    let core = api.get("/api/v1").await;
    assert_eq!(core.body["kind"], "APIResourceList");

    let index = api.get("/openapi/v3").await;
    let url = index.body["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap().to_string();
    let doc = api.get(&url).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.headers["cache-control"].to_str().unwrap().contains("immutable"));
    let patch_op = &doc.body["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch_op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
    let text = String::from_utf8(doc.raw).unwrap();
    assert!(text.contains("fieldValidation"));
    assert_eq!(api.get("/version").await.body["minor"], "33");
}

#[tokio::test]
async fn protobuf_bodies_from_kubectl_are_decoded() {
    let api = api().await;
    // `kubectl create secret generic s --from-literal=a=b`, as captured.
    let body = b"k8s\x00\n\x0c\n\x02v1\x12\x06Secret\x12\x1d\n\x11\n\x01s\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12\x06\n\x01a\x12\x01b\x1a\x00\x1a\x00\"\x00".to_vec();
    let r = api.send(Method::POST, "/api/v1/namespaces/default/secrets?fieldManager=kubectl-create&fieldValidation=Strict",
        "application/vnd.kubernetes.protobuf", "application/vnd.kubernetes.protobuf,application/json", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["data"]["a"], "Yg==");
    assert_eq!(r.body["type"], "Opaque");
    assert_eq!(r.headers["content-type"], "application/json");
}

#[tokio::test]
async fn watch_streams_events_and_reports_selector_transitions() {
    let api = api().await;
    let first = api.post("/api/v1/namespaces/default/configmaps", cm("w1")).await;
    let rv = first.body["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let req = Request::builder()
        .uri(format!("/api/v1/namespaces/default/configmaps?&watch=true&resourceVersion={rv}&labelSelector=team%3Da&allowWatchBookmarks=true"))
        .body(Body::empty()).unwrap();
    let resp = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = String::new();
    let mut next_event = async || -> Value {
        loop {
            if let Some(i) = buf.find('\n') {
                let line: String = buf.drain(..=i).collect();
                let v: Value = serde_json::from_str(&line).unwrap();
                if v["type"] != "BOOKMARK" {
                    return v;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("an event in time").unwrap().unwrap();
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    api.patch("/api/v1/namespaces/default/configmaps/w1", "application/merge-patch+json", json!({"metadata": {"labels": {"team": "a"}}})).await;
    let e = next_event().await;
    assert_eq!(e["type"], "ADDED", "starting to match is ADDED: {e}");
    api.patch("/api/v1/namespaces/default/configmaps/w1", "application/merge-patch+json", json!({"data": {"b": "2"}})).await;
    assert_eq!(next_event().await["type"], "MODIFIED");
    api.patch("/api/v1/namespaces/default/configmaps/w1", "application/merge-patch+json", json!({"metadata": {"labels": {"team": "b"}}})).await;
    assert_eq!(next_event().await["type"], "DELETED", "stopping to match is DELETED");
    api.shutdown.cancel();
}

#[tokio::test]
async fn namespaces_terminate_and_refuse_new_content() {
    let api = api().await;
    api.post("/api/v1/namespaces", json!({"metadata": {"name": "temp"}})).await;
    let mut held = cm("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(api.post("/api/v1/namespaces/temp/configmaps", held).await.status, StatusCode::CREATED);
    assert_eq!(api.post("/api/v1/namespaces/temp/configmaps", cm("free")).await.status, StatusCode::CREATED);
    let del = api.delete("/api/v1/namespaces/temp", json!({})).await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.body);
    assert_eq!(del.body["status"]["phase"], "Terminating");
    let ns = api.get("/api/v1/namespaces/temp").await;
    assert_eq!(ns.body["status"]["phase"], "Terminating");
    assert_eq!(api.get("/api/v1/namespaces/temp/configmaps/free").await.status, StatusCode::NOT_FOUND);
    let refused = api.post("/api/v1/namespaces/temp/configmaps", cm("late")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body["message"].as_str().unwrap().contains("because it is being terminated"));
    // Removing the finalizer completes the object's deletion, and deleting again finishes the namespace.
    let released = api.patch("/api/v1/namespaces/temp/configmaps/held", "application/merge-patch+json", json!({"metadata": {"finalizers": null}})).await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.body);
    assert_eq!(api.get("/api/v1/namespaces/temp/configmaps/held").await.status, StatusCode::NOT_FOUND);
    api.delete("/api/v1/namespaces/temp", json!({})).await;
    assert_eq!(api.get("/api/v1/namespaces/temp").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn services_get_addresses_from_their_ranges() {
    let api = api().await;
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]}});
    let r = api.post("/api/v1/namespaces/default/services", svc).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ip = r.body["spec"]["clusterIP"].as_str().unwrap();
    assert!(ip.starts_with("10.43.") && ip != "10.43.0.1");
    let np = r.body["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&np));
    assert_eq!(r.body["spec"]["ports"][0]["targetPort"], 80);
    let taken = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "clash"},
        "spec": {"clusterIP": "10.43.0.1", "ports": [{"port": 80}]}});
    let r = api.post("/api/v1/namespaces/default/services", taken).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("already allocated"));
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_expired_and_bookmarks_come_when_asked() {
    let api = api().await;
    let old = api.post("/api/v1/namespaces/default/configmaps", cm("old")).await;
    let old_rv: i64 = old.body["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    api.post("/api/v1/namespaces/default/configmaps", cm("newer")).await;
    let current = api.registry.current_revision().await.unwrap();
    api.registry.backend().compact(current).await.unwrap();

    let resp = api.router.clone().oneshot(Request::builder()
        .uri(format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old_rv}"))
        .body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let event: Value = serde_json::from_slice(body.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");

    // With allowWatchBookmarks a quiet watch gets BOOKMARK events; timeoutSeconds ends the stream.
    let resp = api.router.clone().oneshot(Request::builder()
        .uri(format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={current}&allowWatchBookmarks=true&timeoutSeconds=1"))
        .body(Body::empty()).unwrap()).await.unwrap();
    let body = tokio::time::timeout(Duration::from_secs(10), axum::body::to_bytes(resp.into_body(), usize::MAX)).await
        .expect("timeoutSeconds ends the watch").unwrap();
    let lines: Vec<Value> = body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert!(!lines.is_empty() && lines.iter().all(|e| e["type"] == "BOOKMARK"), "{lines:?}");
    assert_eq!(lines[0]["object"]["kind"], "ConfigMap");

    // Without it, none.
    let resp = api.router.clone().oneshot(Request::builder()
        .uri(format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={current}&timeoutSeconds=1"))
        .body(Body::empty()).unwrap()).await.unwrap();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    assert!(body.is_empty(), "no unrequested bookmarks: {}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn jobs_get_a_generated_selector_and_services_can_become_external_names() {
    let api = api().await;
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
    let r = api.post("/apis/batch/v1/namespaces/default/jobs", job).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let uid = r.body["metadata"]["uid"].as_str().unwrap();
    assert_eq!(r.body["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(r.body["spec"]["template"]["metadata"]["labels"]["job-name"], "once");

    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}});
    let created = api.post("/api/v1/namespaces/default/services", svc).await;
    assert!(created.body["spec"]["clusterIP"].as_str().unwrap().starts_with("10.43."));
    let mut changed = created.body.clone();
    changed["spec"]["type"] = json!("ExternalName");
    changed["spec"]["externalName"] = json!("example.com");
    changed["spec"]["selector"] = Value::Null;
    changed["spec"]["ports"] = json!([]);
    let updated = api.put("/api/v1/namespaces/default/services/ext", changed).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert!(updated.body["spec"].get("clusterIP").is_none());
}

#[tokio::test]
async fn list_resource_version_semantics_and_expired_continue_tokens() {
    let api = api().await;
    for i in 0..4 {
        api.post("/api/v1/namespaces/default/configmaps", cm(&format!("p{i}"))).await;
    }
    let current = api.registry.current_revision().await.unwrap();
    let not_older = api.get(&format!("/api/v1/namespaces/default/configmaps?resourceVersion={current}")).await;
    assert_eq!(not_older.status, StatusCode::OK);
    assert_eq!(not_older.body["items"].as_array().unwrap().len(), 4);
    let future = api.get(&format!("/api/v1/namespaces/default/configmaps?resourceVersion={}", current + 100)).await;
    assert_eq!(future.status, StatusCode::GATEWAY_TIMEOUT, "{}", future.body);
    assert!(future.body["message"].as_str().unwrap().starts_with("Too large resource version"));
    let exact_old = api.get(&format!("/api/v1/namespaces/default/configmaps?resourceVersion={}&resourceVersionMatch=Exact", current - 1)).await;
    assert_eq!(exact_old.status, StatusCode::GONE);

    let first = api.get("/api/v1/namespaces/default/configmaps?limit=2").await;
    let token = first.body["metadata"]["continue"].as_str().unwrap().to_string();
    let second = api.get(&format!("/api/v1/namespaces/default/configmaps?limit=2&continue={token}")).await;
    assert_eq!(second.status, StatusCode::OK);
    api.post("/api/v1/namespaces/default/configmaps", cm("later")).await;
    let now = api.registry.current_revision().await.unwrap();
    api.registry.backend().compact(now).await.unwrap();
    let expired = api.get(&format!("/api/v1/namespaces/default/configmaps?limit=2&continue={token}")).await;
    assert_eq!(expired.status, StatusCode::GONE, "{}", expired.body);
    assert_eq!(expired.body["reason"], "Expired");
    let garbage = api.get("/api/v1/namespaces/default/configmaps?limit=2&continue=bm9wZQ").await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn malformed_bodies_get_4xx_statuses_and_change_nothing() {
    let api = api().await;
    let created = api.post("/api/v1/namespaces/default/configmaps", cm("target")).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_yaml = format!("{}x", "- ".repeat(50_000));
    let alias_bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
    let bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        ("POST", "application/json", b"".to_vec()),
        ("POST", "application/json", b"[]".to_vec()),
        ("POST", "application/json", b"null".to_vec()),
        ("POST", "application/json", b"{\"metadata\": 5}".to_vec()),
        ("POST", "application/json", b"{\"metadata\": {\"name\": 5}}".to_vec()),
        ("POST", "application/json", b"{\"kind\": \"Pod\", \"metadata\": {\"name\": \"x\"}}".to_vec()),
        ("POST", "application/json", b"{\"apiVersion\": \"apps/v1\", \"metadata\": {\"name\": \"x\"}}".to_vec()),
        ("POST", "application/json", b"{\"metadata\": {\"name\": \"x\"}, \"data\": {\"k\": 5}}".to_vec()),
        ("POST", "application/json", deep_json.clone().into_bytes()),
        ("POST", "application/yaml", b"a: [unclosed".to_vec()),
        ("POST", "application/yaml", deep_yaml.into_bytes()),
        ("POST", "application/yaml", alias_bomb.as_bytes().to_vec()),
        ("POST", "application/vnd.kubernetes.protobuf", b"k8s\x00\xff\xff\xff".to_vec()),
        ("POST", "application/vnd.kubernetes.protobuf", b"k8s\x00\n\x0c\n\x02v1\x12\x06Widget".to_vec()),
        ("PUT", "application/json", b"{\"metadata\": {\"name\": \"other\"}}".to_vec()),
        ("PUT", "application/json", b"{\"metadata\": {\"name\": \"target\", \"resourceVersion\": \"1\"}}".to_vec()),
        ("PATCH", "application/json-patch+json", b"{\"op\": \"add\"}".to_vec()),
        ("PATCH", "application/json-patch+json", b"[{\"op\": \"remove\", \"path\": \"/nope/deeper\"}]".to_vec()),
        ("PATCH", "application/json-patch+json", b"[{\"op\": \"test\", \"path\": \"/data/a\", \"value\": \"9\"}]".to_vec()),
        ("PATCH", "application/merge-patch+json", b"[1]".to_vec()),
        ("PATCH", "application/merge-patch+json", b"{\"metadata\": {\"name\": \"renamed\"}}".to_vec()),
        ("PATCH", "application/strategic-merge-patch+json", b"{\"data\": {\"$patch\": \"explode\"}}".to_vec()),
        ("PATCH", "application/strategic-merge-patch+json", deep_json.into_bytes()),
        ("PATCH", "application/apply-patch+yaml", b"{}".to_vec()),
        ("PATCH", "text/plain", b"{}".to_vec()),
    ];
    for (method, content_type, body) in bodies {
        let path = if method == "POST" { "/api/v1/namespaces/default/configmaps" } else { "/api/v1/namespaces/default/configmaps/target" };
        let method: Method = method.parse().unwrap();
        let r = api.send(method.clone(), path, content_type, "application/json", body.clone()).await;
        let code = r.status.as_u16();
        assert!((400..500).contains(&code), "{method} {content_type} {:?} answered {code}: {}",
            String::from_utf8_lossy(&body[..body.len().min(60)]), String::from_utf8_lossy(&r.raw));
        assert_eq!(r.body["kind"], "Status", "{method} {content_type}: {}", String::from_utf8_lossy(&r.raw));
        assert!(!r.body["message"].as_str().unwrap_or("").is_empty());
    }
    let after = api.get("/api/v1/namespaces/default/configmaps/target").await;
    assert_eq!(after.body, created.body, "nothing stored changed");
    let list = api.get("/api/v1/namespaces/default/configmaps").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1, "nothing was created");
}

#[tokio::test]
async fn binding_assigns_the_node_copies_annotations_and_marks_the_pod_scheduled() {
    let api = api().await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}});
    assert_eq!(api.post("/api/v1/namespaces/default/pods", pod).await.status, StatusCode::CREATED);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p", "annotations": {"scheduled-by": "test"}},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let r = api.post("/api/v1/namespaces/default/pods/p/binding", binding.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let p = api.get("/api/v1/namespaces/default/pods/p").await.body;
    assert_eq!(p["spec"]["nodeName"], "n1");
    assert_eq!(p["metadata"]["annotations"]["scheduled-by"], "test");
    let conditions = p["status"]["conditions"].as_array().unwrap();
    let scheduled: Vec<&Value> = conditions.iter().filter(|c| c["type"] == "PodScheduled").collect();
    assert_eq!(scheduled.len(), 1, "{conditions:?}");
    assert_eq!(scheduled[0]["status"], "True");
    assert!(scheduled[0]["lastTransitionTime"].is_string());
    // A second binding is a conflict and changes nothing.
    let r = api.post("/api/v1/namespaces/default/pods/p/binding", binding).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    api.shutdown.cancel();
}

#[tokio::test]
async fn eviction_honours_the_pod_disruption_budget() {
    let api = api().await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    assert_eq!(api.post("/api/v1/namespaces/default/pods", pod).await.status, StatusCode::CREATED);
    let mut p = api.get("/api/v1/namespaces/default/pods/p").await.body;
    p["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
    assert_eq!(api.put("/api/v1/namespaces/default/pods/p/status", p).await.status, StatusCode::OK);
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "a"}}}});
    assert_eq!(api.post("/apis/policy/v1/namespaces/default/poddisruptionbudgets", pdb).await.status, StatusCode::CREATED);
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}});
    // Not processed by the disruption controller yet, then no disruption allowed: 429 with the reason.
    let r = api.post("/api/v1/namespaces/default/pods/p/eviction", eviction.clone()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    set_pdb_status(&api, 0).await;
    let r = api.post("/api/v1/namespaces/default/pods/p/eviction", eviction.clone()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.body["message"], "Cannot evict pod as it would violate the pod's disruption budget.");
    assert_eq!(r.body["details"]["causes"][0]["reason"], "DisruptionBudget");
    assert_eq!(api.get("/api/v1/namespaces/default/pods/p").await.status, StatusCode::OK, "the pod is still there");
    // One disruption allowed: the pod goes and the budget records it.
    set_pdb_status(&api, 1).await;
    let r = api.post("/api/v1/namespaces/default/pods/p/eviction", eviction).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let b = api.get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/b").await.body;
    assert_eq!(b["status"]["disruptionsAllowed"], 0);
    assert!(b["status"]["disruptedPods"]["p"].is_string(), "{}", b["status"]);
    assert_eq!(api.get("/api/v1/namespaces/default/pods/p").await.status, StatusCode::NOT_FOUND);
    api.shutdown.cancel();
}

/// Writes the status the disruption controller would: one pod needed, `allowed` disruptions possible.
async fn set_pdb_status(api: &Api, allowed: i64) {
    let mut b = api.get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/b").await.body;
    b["status"] = json!({"observedGeneration": 1, "currentHealthy": 1 + allowed, "desiredHealthy": 1, "expectedPods": 1 + allowed, "disruptionsAllowed": allowed});
    let r = api.put("/apis/policy/v1/namespaces/default/poddisruptionbudgets/b/status", b).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
