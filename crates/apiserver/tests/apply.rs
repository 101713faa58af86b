//! Server-side apply and managedFields over the in-process router with kube-rs: create on apply,
//! update, conflicts between managers with one cause per field, force, shared ownership, removal of
//! fields no longer applied, managedFields recorded for create/update/patch, and refused input.

use http::{Request, StatusCode};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use skiff_apiserver::UserInfo;

mod support;

async fn client() -> (Client, support::InProcess) {
    let server = support::start(UserInfo::new("kube-rs", &["system:masters"])).await;
    (Client::new(server.router.clone(), "default"), server)
}

/// One raw request: the status code and the JSON body.
async fn raw(client: &Client, method: &str, uri: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .header("user-agent", "kubectl-edit/v1.32.4 (linux/amd64) kubernetes/abc")
        .body(body.as_bytes().to_vec())
        .unwrap();
    let resp = client.send(req.map(kube::client::Body::from)).await.unwrap();
    let code = resp.status();
    let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn managed(obj: &impl serde::Serialize) -> Vec<Value> {
    let v = serde_json::to_value(obj).unwrap();
    v["metadata"]["managedFields"].as_array().cloned().unwrap_or_default()
}

fn entry<'a>(entries: &'a [Value], manager: &str) -> &'a Value {
    entries.iter().find(|e| e["manager"] == manager).unwrap_or_else(|| panic!("no managedFields entry for {manager}: {entries:?}"))
}

fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<kube::core::Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The ConfigMap of the server-side apply documentation page.
fn docs_config_map() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}},
           "data": {"key": "some value"}})
}

#[tokio::test]
async fn apply_creates_with_the_documented_managed_fields() {
    let (client, _server) = client().await;
    let (code, created) = raw(&client, "PATCH", "/api/v1/namespaces/default/configmaps/test-cm?fieldManager=kubectl", "application/apply-patch+yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: test-cm\n  namespace: default\n  labels:\n    test-label: test\ndata:\n  key: some value\n").await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    // The documentation's example (kubernetes.io/docs/reference/using-api/server-side-apply/).
    let entries = created["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e["manager"], "kubectl");
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["apiVersion"], "v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(e["fieldsV1"], json!({"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}}));
    assert_eq!(created["data"], json!({"key": "some value"}));

    // Applying the same configuration again answers 200 and changes nothing.
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let again = api.patch("test-cm", &PatchParams::apply("kubectl"), &Patch::Apply(docs_config_map())).await.unwrap();
    assert_eq!(again.metadata.resource_version.as_deref(), created["metadata"]["resourceVersion"].as_str());
}

#[tokio::test]
async fn second_manager_conflicts_force_takes_over_and_equal_values_are_shared() {
    let (client, _server) = client().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.patch("test-cm", &PatchParams::apply("alice"), &Patch::Apply(docs_config_map())).await.unwrap();

    // Same value: no conflict, both own it.
    let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-cm"}, "data": {"key": "some value"}});
    let shared = api.patch("test-cm", &PatchParams::apply("bob"), &Patch::Apply(&same)).await.unwrap();
    let entries = managed(&shared);
    assert_eq!(entry(&entries, "bob")["fieldsV1"], json!({"f:data": {"f:key": {}}}));
    assert_eq!(entry(&entries, "alice")["fieldsV1"]["f:data"], json!({"f:key": {}}));

    // A different value owned by alice: 409 with one cause per field, nothing changes.
    let before = api.get("test-cm").await.unwrap();
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-cm", "labels": {"test-label": "bob"}}, "data": {"key": "bob's value"}});
    let status = api_error(api.patch("test-cm", &PatchParams::apply("bob"), &Patch::Apply(&other)).await);
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    assert!(status.message.starts_with("Apply failed with 2 conflicts: conflicts with \"alice\":"), "{}", status.message);
    let causes = status.details.as_ref().unwrap().causes.clone();
    let fields: Vec<(String, String, String)> = causes.iter().map(|c| (c.field.clone(), c.message.clone(), c.reason.clone())).collect();
    assert_eq!(fields, vec![
        (".data.key".to_string(), "conflict with \"alice\"".to_string(), "FieldManagerConflict".to_string()),
        (".metadata.labels.test-label".to_string(), "conflict with \"alice\"".to_string(), "FieldManagerConflict".to_string()),
    ]);
    let after = api.get("test-cm").await.unwrap();
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version, "a refused apply changes nothing");

    // force=true takes both fields over.
    let forced = api.patch("test-cm", &PatchParams::apply("bob").force(), &Patch::Apply(&other)).await.unwrap();
    assert_eq!(forced.data.clone().unwrap()["key"], "bob's value");
    let entries = managed(&forced);
    assert_eq!(entry(&entries, "bob")["fieldsV1"], json!({"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}}));
    assert!(entries.iter().all(|e| e["manager"] != "alice"), "alice owned nothing else: {entries:?}");
}

#[tokio::test]
async fn fields_no_longer_applied_are_removed_unless_someone_else_owns_them() {
    let (client, _server) = client().await;
    let api: Api<Deployment> = Api::default_namespaced(client);
    let full = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx:1"}, {"name": "side", "image": "busybox"}]}}}
    });
    let created = api.patch("web", &PatchParams::apply("deployer"), &Patch::Apply(&full)).await.unwrap();
    let fields = entry(&managed(&created), "deployer")["fieldsV1"].clone();
    assert_eq!(fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"], json!({".": {}, "f:image": {}, "f:name": {}}));
    assert_eq!(fields["f:spec"]["f:selector"], json!({}));
    // A second manager takes the tier label too (same value: shared).
    let tier = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"tier": "front"}}});
    api.patch("web", &PatchParams::apply("labeller"), &Patch::Apply(&tier)).await.unwrap();

    let mut smaller = full.clone();
    smaller["metadata"]["labels"] = json!({"app": "web"});
    smaller["spec"]["template"]["spec"]["containers"] = json!([{"name": "nginx", "image": "nginx:2"}]);
    smaller["spec"].as_object_mut().unwrap().remove("replicas");
    let out = api.patch("web", &PatchParams::apply("deployer"), &Patch::Apply(&smaller)).await.unwrap();
    let spec = out.spec.unwrap();
    let containers: Vec<(String, Option<String>)> = spec.template.spec.unwrap().containers.into_iter().map(|c| (c.name, c.image)).collect();
    assert_eq!(containers, vec![("nginx".to_string(), Some("nginx:2".to_string()))], "the container no longer applied is gone");
    assert_eq!(spec.replicas, Some(1), "replicas was removed, then defaulted again");
    assert_eq!(out.metadata.labels.unwrap().get("tier").map(String::as_str), Some("front"), "the labeller still owns tier");
}

#[tokio::test]
async fn create_update_and_patch_record_update_managers() {
    let (client, _server) = client().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "rec", "labels": {"a": "1"}}, "data": {"x": "1"}})).unwrap();
    let created = api.create(&PostParams { field_manager: Some("creator".into()), ..Default::default() }, &cm).await.unwrap();
    let entries = managed(&created);
    assert_eq!(entries.len(), 1);
    let e = entry(&entries, "creator");
    assert_eq!((e["operation"].as_str(), e["apiVersion"].as_str(), e["fieldsType"].as_str()), (Some("Update"), Some("v1"), Some("FieldsV1")));
    assert_eq!(e["fieldsV1"], json!({"f:data": {".": {}, "f:x": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}}));

    // PUT without fieldManager: the manager is the User-Agent's first part.
    let mut body = serde_json::to_value(&created).unwrap();
    body["data"]["y"] = json!("2");
    let (code, replaced) = raw(&client, "PUT", "/api/v1/namespaces/default/configmaps/rec", "application/json", &body.to_string()).await;
    assert_eq!(code, StatusCode::OK, "{replaced}");
    let entries = replaced["metadata"]["managedFields"].as_array().unwrap().clone();
    assert_eq!(entry(&entries, "kubectl-edit")["fieldsV1"], json!({"f:data": {"f:y": {}}}));
    assert_eq!(entry(&entries, "creator")["fieldsV1"]["f:data"], json!({".": {}, "f:x": {}}));

    // A merge patch changing x moves x to the patcher.
    let patched = api.patch("rec", &PatchParams { field_manager: Some("patcher".into()), ..Default::default() }, &Patch::Merge(json!({"data": {"x": "9"}}))).await.unwrap();
    let entries = managed(&patched);
    assert_eq!(entry(&entries, "patcher")["fieldsV1"], json!({"f:data": {"f:x": {}}}));
    assert_eq!(entry(&entries, "creator")["fieldsV1"]["f:data"], json!({}), "the creator keeps only the map itself");
    // A strategic merge patch of a label.
    let patched = api.patch("rec", &PatchParams { field_manager: Some("labeller".into()), ..Default::default() }, &Patch::Strategic(json!({"metadata": {"labels": {"b": "2"}}}))).await.unwrap();
    assert_eq!(entry(&managed(&patched), "labeller")["fieldsV1"], json!({"f:metadata": {"f:labels": {"f:b": {}}}}));
    // A no-op patch leaves managedFields alone (no new entry, no new resourceVersion).
    let noop = api.patch("rec", &PatchParams { field_manager: Some("nobody".into()), ..Default::default() }, &Patch::Merge(json!({"data": {"x": "9"}}))).await.unwrap();
    assert_eq!(noop.metadata.resource_version, patched.metadata.resource_version);
    assert!(managed(&noop).iter().all(|e| e["manager"] != "nobody"));
    // The managedFields survive a GET.
    assert_eq!(managed(&api.get("rec").await.unwrap()), managed(&noop));
}

#[tokio::test]
async fn status_writes_are_recorded_with_their_subresource() {
    let (client, _server) = client().await;
    let api: Api<Deployment> = Api::default_namespaced(client);
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "st"},
        "spec": {"selector": {"matchLabels": {"app": "st"}}, "template": {"metadata": {"labels": {"app": "st"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    api.patch("st", &PatchParams::apply("deployer"), &Patch::Apply(&d)).await.unwrap();
    let out = api
        .patch_status("st", &PatchParams { field_manager: Some("controller".into()), ..Default::default() }, &Patch::Merge(json!({"status": {"observedGeneration": 1}})))
        .await
        .unwrap();
    let entries = managed(&out);
    let e = entry(&entries, "controller");
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:observedGeneration": {}}}));
    assert!(entry(&entries, "deployer").get("subresource").is_none());
}

#[tokio::test]
async fn bad_apply_requests_are_refused() {
    let (client, _server) = client().await;
    let uri = "/api/v1/namespaces/default/configmaps/bad";
    let yaml = "application/apply-patch+yaml";
    let (code, status) = raw(&client, "PATCH", uri, yaml, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert_eq!(status["message"], "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
    let (code, status) = raw(&client, "PATCH", &format!("{uri}?fieldManager=m"), yaml, "- a\n- b\n").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    let (code, status) = raw(&client, "PATCH", &format!("{uri}?fieldManager=m"), yaml, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bad\n").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(status["message"], "invalid object type: /v1, Kind=Secret");
    let (code, status) = raw(&client, "PATCH", &format!("{uri}?fieldManager=m"), yaml, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(status["message"], "the name of the object (other) does not match the name on the URL (bad)");
    let (code, status) = raw(&client, "PATCH", &format!("{uri}?fieldManager=m&force=true"), "application/merge-patch+json", "{}").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    // JSON is YAML: a JSON apply body works, and nothing above created the object.
    let (code, _) = raw(&client, "GET", uri, "application/json", "").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, created) = raw(&client, "PATCH", &format!("{uri}?fieldManager=m"), yaml, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bad"},"data":{"k":"v"}}"#).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["metadata"]["namespace"], "default");
}
