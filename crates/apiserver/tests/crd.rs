//! CustomResourceDefinitions over the in-process API with kube-rs: establishing, serving custom objects
//! in two versions, schema validation with upstream's causes, pruning and defaulting, CEL rules,
//! status and scale subresources, printer columns in Table output, name conflicts, and deletion.

use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Upper bound for anything that waits on the server; never a synchronisation delay.
const WAIT: Duration = Duration::from_secs(20);

struct Skiff {
    client: Client,
    router: axum::Router,
    shutdown: CancellationToken,
}

impl Drop for Skiff {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Skiff {
    let server = skiff_apiserver::testing::start_admin().await;
    Skiff { client: Client::new(server.router.clone(), "default"), router: server.router, shutdown: server.shutdown }
}

fn crontab_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"], "categories": ["all"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                 "additionalPrinterColumns": [
                    {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec", "description": "The cron spec"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                 "schema": {"openAPIV3Schema": {"type": "object", "description": "A CronTab runs an image on a schedule.", "properties": {
                    "spec": {"type": "object",
                        "x-kubernetes-validations": [
                            {"rule": "self.replicas <= self.maxReplicas", "message": "replicas must not exceed maxReplicas"}],
                        "properties": {
                            "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                            "image": {"type": "string"},
                            "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                            "maxReplicas": {"type": "integer", "default": 5},
                            "mode": {"type": "string", "enum": ["Fast", "Slow"], "default": "Fast",
                                "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "mode is immutable"}]},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}, "phase": {"type": "string"}}}}}}},
                {"name": "v1beta1", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
            ]
        }
    })
}

async fn create_crd(client: &Client, crd: Value) -> CustomResourceDefinition {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
    api.create(&PostParams::default(), &crd).await.expect("the CRD is created")
}

fn condition(crd: &CustomResourceDefinition, ty: &str) -> Option<(String, String, String)> {
    crd.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == ty).map(|c| {
        (c.status.clone(), c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default())
    })
}

async fn wait_condition(client: &Client, name: &str, ty: &str, status: &str) -> CustomResourceDefinition {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    tokio::time::timeout(WAIT, async {
        loop {
            let crd = api.get(name).await.expect("the CRD exists");
            if condition(&crd, ty).is_some_and(|c| c.0 == status) {
                return crd;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} never got {ty}={status}"))
}

fn crontabs(client: &Client, version: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("stable.example.com", version, "CronTab"), "crontabs");
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn crontab(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": name}, "spec": spec})).unwrap()
}

fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<kube::core::Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected kube::Error::Api, got {other:?}"),
    }
}

fn causes(s: &kube::core::Status) -> Vec<(String, String)> {
    s.details.as_ref().map(|d| d.causes.iter().map(|c| (c.field.clone(), c.message.clone())).collect()).unwrap_or_default()
}

async fn send(router: &axum::Router, method: Method, path: &str, content_type: &str, accept: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .header("accept", accept)
        .body(Body::from(if body.is_null() { Vec::new() } else { serde_json::to_vec(&body).unwrap() }))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn established(s: &Skiff) -> CustomResourceDefinition {
    create_crd(&s.client, crontab_crd()).await;
    wait_condition(&s.client, "crontabs.stable.example.com", "Established", "True").await
}

#[tokio::test]
async fn crd_is_established_with_accepted_names_and_discovery() {
    let s = start().await;
    let crd = established(&s).await;
    let status = crd.status.unwrap();
    let accepted = status.accepted_names.unwrap();
    assert_eq!(accepted.plural, "crontabs");
    assert_eq!(accepted.short_names, Some(vec!["ct".to_string()]));
    assert_eq!(status.stored_versions, Some(vec!["v1".to_string()]));
    assert_eq!(condition(&crd_again(&s).await, "NamesAccepted").unwrap().1, "NoConflicts");

    let (code, apis) = send(&s.router, Method::GET, "/apis", "", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    let group = apis["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "stable.example.com").expect("the group is discovered");
    assert_eq!(group["versions"][0]["version"], "v1");
    let res = &group["versions"][0]["resources"][0];
    assert_eq!(res["resource"], "crontabs");
    assert_eq!(res["shortNames"], json!(["ct"]));
    assert_eq!(res["categories"], json!(["all"]));
    let subs: Vec<&str> = res["subresources"].as_array().unwrap().iter().map(|s| s["subresource"].as_str().unwrap()).collect();
    assert_eq!(subs, vec!["status", "scale"]);
    let (code, legacy) = send(&s.router, Method::GET, "/apis/stable.example.com/v1beta1", "", "application/json", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(legacy["resources"][0]["name"], "crontabs");

    let (code, index) = send(&s.router, Method::GET, "/openapi/v3", "", "application/json", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    let url = index["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"].as_str().expect("the group-version is in the index").to_string();
    let (code, doc) = send(&s.router, Method::GET, &url, "", "application/json", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    let schema = &doc["components"]["schemas"]["com.example.stable.v1.CronTab"];
    assert_eq!(schema["description"], "A CronTab runs an image on a schedule.");
    assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], "CronTab");
    assert!(doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
    assert!(doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/scale"].is_object());
    let patch = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"]["requestBody"]["content"];
    assert!(patch["application/merge-patch+json"].is_object() && patch["application/strategic-merge-patch+json"].is_null(), "{patch}");
}

async fn crd_again(s: &Skiff) -> CustomResourceDefinition {
    Api::<CustomResourceDefinition>::all(s.client.clone()).get("crontabs.stable.example.com").await.unwrap()
}

#[tokio::test]
async fn crd_objects_are_served_in_both_versions_with_pruning_and_defaults() {
    let s = start().await;
    established(&s).await;
    let v1 = crontabs(&s.client, "v1");
    let mut obj = crontab("c1", json!({"cronSpec": "*/5 * * * *", "image": "busybox", "unknown": "dropped",
        "extra": {"anything": {"kept": true}}}));
    obj.data["status"] = json!({"replicas": 7});
    let created = v1.create(&PostParams::default(), &obj).await.expect("created");
    assert_eq!(created.data["spec"]["replicas"], 1, "defaulted");
    assert_eq!(created.data["spec"]["maxReplicas"], 5, "defaulted");
    assert_eq!(created.data["spec"]["mode"], "Fast", "defaulted");
    assert!(created.data["spec"].get("unknown").is_none(), "pruned: {}", created.data);
    assert_eq!(created.data["spec"]["extra"]["anything"]["kept"], true, "preserved");
    assert!(created.data.get("status").is_none(), "status is the status subresource's");
    assert_eq!(created.metadata.generation, Some(1));

    // The same object in v1beta1: only apiVersion differs (None conversion).
    let beta = crontabs(&s.client, "v1beta1");
    let got = beta.get("c1").await.expect("served in v1beta1");
    assert_eq!(got.types.as_ref().unwrap().api_version, "stable.example.com/v1beta1");
    assert_eq!(got.data["spec"]["image"], "busybox");
    let list = beta.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].types.as_ref().unwrap().api_version, "stable.example.com/v1beta1");

    // Updated through v1beta1, stored as v1.
    let mut b = got.clone();
    b.data["spec"]["image"] = json!("nginx");
    beta.replace("c1", &PostParams::default(), &b).await.expect("updated through v1beta1");
    let stored = s.client.request::<Value>(http::Request::get("/apis/stable.example.com/v1/namespaces/default/crontabs/c1").body(Vec::new()).unwrap()).await.unwrap();
    assert_eq!(stored["spec"]["image"], "nginx");
    assert_eq!(stored["metadata"]["generation"], 2);

    // Merge and JSON patches work; strategic merge patch is refused with 415.
    let patched = v1.patch("c1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await.unwrap();
    assert_eq!(patched.data["spec"]["replicas"], 3);
    let jp: json_patch::Patch = serde_json::from_value(json!([{"op": "replace", "path": "/spec/image", "value": "redis"}])).unwrap();
    let patched = v1.patch("c1", &PatchParams::default(), &Patch::<()>::Json(jp)).await.unwrap();
    assert_eq!(patched.data["spec"]["image"], "redis");
    let (code, body) = send(&s.router, Method::PATCH, "/apis/stable.example.com/v1/namespaces/default/crontabs/c1",
        "application/strategic-merge-patch+json", "application/json", json!({"spec": {"replicas": 2}})).await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");

    // Cluster-wide list, delete, deletecollection.
    v1.create(&PostParams::default(), &crontab("c2", json!({"image": "x"}))).await.unwrap();
    let all: Api<DynamicObject> = Api::all_with(s.client.clone(), &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("stable.example.com", "v1", "CronTab"), "crontabs"));
    assert_eq!(all.list(&ListParams::default()).await.unwrap().items.len(), 2);
    v1.delete("c2", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(v1.get("c2").await).code, 404);
    v1.delete_collection(&DeleteParams::default(), &ListParams::default()).await.unwrap();
    assert!(v1.list(&ListParams::default()).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn crd_objects_violating_the_schema_get_upstream_causes() {
    let s = start().await;
    established(&s).await;
    let v1 = crontabs(&s.client, "v1");
    let err = api_error(v1.create(&PostParams::default(), &crontab("bad", json!({"replicas": "three", "cronSpec": "never"}))).await);
    assert_eq!(err.code, 422);
    assert_eq!(err.reason, "Invalid");
    let c = causes(&err);
    assert!(c.contains(&("spec.replicas".into(), r#"Invalid value: "string": spec.replicas in body must be of type integer: "string""#.into())), "{c:?}");
    assert!(c.iter().any(|(f, m)| f == "spec.cronSpec" && m.starts_with(r#"Invalid value: "never": spec.cronSpec in body should match '"#)), "{c:?}");
    assert!(err.message.starts_with("CronTab.stable.example.com \"bad\" is invalid: [") || err.message.starts_with("CronTab \"bad\" is invalid: ["), "{}", err.message);

    let err = api_error(v1.create(&PostParams::default(), &crontab("bad", json!({"replicas": 11, "mode": "Medium"}))).await);
    let c = causes(&err);
    assert!(c.contains(&("spec.replicas".into(), "Invalid value: 11: spec.replicas in body should be less than or equal to 10".into())), "{c:?}");
    assert!(c.contains(&("spec.mode".into(), r#"Unsupported value: "Medium": supported values: "Fast", "Slow""#.into())), "{c:?}");
    assert_eq!(api_error(v1.get("bad").await).code, 404, "nothing was stored");
}

#[tokio::test]
async fn crd_cel_rules_and_transition_rules() {
    let s = start().await;
    established(&s).await;
    let v1 = crontabs(&s.client, "v1");
    let err = api_error(v1.create(&PostParams::default(), &crontab("c", json!({"replicas": 8, "maxReplicas": 4}))).await);
    assert_eq!(err.code, 422);
    assert_eq!(causes(&err), vec![("spec".to_string(), r#"Invalid value: "object": replicas must not exceed maxReplicas"#.to_string())]);
    v1.create(&PostParams::default(), &crontab("c", json!({"replicas": 2, "mode": "Slow"}))).await.expect("valid");
    let err = api_error(v1.patch("c", &PatchParams::default(), &Patch::Merge(json!({"spec": {"mode": "Fast"}}))).await);
    assert_eq!(causes(&err), vec![("spec.mode".to_string(), r#"Invalid value: "string": mode is immutable"#.to_string())]);
    let ok = v1.patch("c", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await.expect("mode unchanged");
    assert_eq!(ok.data["spec"]["mode"], "Slow");
}

#[tokio::test]
async fn crd_status_and_scale_subresources() {
    let s = start().await;
    established(&s).await;
    let v1 = crontabs(&s.client, "v1");
    v1.create(&PostParams::default(), &crontab("c", json!({"replicas": 2}))).await.unwrap();
    let st = v1.patch_status("c", &PatchParams::default(), &Patch::Merge(json!({"status": {"replicas": 2, "phase": "Running"}, "spec": {"replicas": 9}}))).await.unwrap();
    assert_eq!(st.data["status"]["phase"], "Running");
    assert_eq!(st.data["spec"]["replicas"], 2, "the status subresource ignores spec");
    let err = api_error(v1.patch_status("c", &PatchParams::default(), &Patch::Merge(json!({"status": {"replicas": "two"}}))).await);
    assert_eq!(err.code, 422, "status is validated too");
    // A main-resource update ignores status.
    let main = v1.patch("c", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Ignored"}}))).await.unwrap();
    assert_eq!(main.data["status"]["phase"], "Running");

    let scale = v1.get_scale("c").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(scale.status.unwrap().replicas, 2);
    let scaled = v1.patch_scale("c", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}}))).await.unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(4));
    assert_eq!(v1.get("c").await.unwrap().data["spec"]["replicas"], 4);
}

#[tokio::test]
async fn crd_printer_columns_in_table_output() {
    let s = start().await;
    established(&s).await;
    let v1 = crontabs(&s.client, "v1");
    v1.create(&PostParams::default(), &crontab("c", json!({"cronSpec": "* * * * */5", "replicas": 3}))).await.unwrap();
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io";
    let (code, table) = send(&s.router, Method::GET, "/apis/stable.example.com/v1/namespaces/default/crontabs", "", accept, Value::Null).await;
    assert_eq!(code, StatusCode::OK, "{table}");
    assert_eq!(table["kind"], "Table");
    let names: Vec<&str> = table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Name", "Spec", "Replicas", "Age"]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], "c");
    assert_eq!(cells[1], "* * * * */5");
    assert_eq!(cells[2], 3);
    assert!(cells[3].as_str().unwrap().ends_with('s'), "an age: {cells}");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    let (_, one) = send(&s.router, Method::GET, "/apis/stable.example.com/v1/namespaces/default/crontabs/c", "", accept, Value::Null).await;
    assert_eq!(one["rows"].as_array().unwrap().len(), 1);
    // The v1beta1 version has no printer columns: Name and Age.
    let (_, beta) = send(&s.router, Method::GET, "/apis/stable.example.com/v1beta1/namespaces/default/crontabs", "", accept, Value::Null).await;
    let names: Vec<&str> = beta["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Name", "Age"]);
}

#[tokio::test]
async fn crd_name_conflicts_and_invalid_definitions() {
    let s = start().await;
    established(&s).await;
    // Another CRD in the group claiming the short name "ct" and the kind CronTab.
    let mut other = crontab_crd();
    other["metadata"]["name"] = json!("crontabs2.stable.example.com");
    other["spec"]["names"] = json!({"plural": "crontabs2", "kind": "CronTab2", "shortNames": ["ct"]});
    create_crd(&s.client, other).await;
    let crd = wait_condition(&s.client, "crontabs2.stable.example.com", "NamesAccepted", "False").await;
    let (_, reason, message) = condition(&crd, "NamesAccepted").unwrap();
    assert_eq!(reason, "ShortNamesConflict");
    assert_eq!(message, r#""ct" is already in use"#);
    assert_eq!(condition(&crd, "Established").unwrap().0, "False");
    let (code, _) = send(&s.router, Method::GET, "/apis/stable.example.com/v1/namespaces/default/crontabs2", "", "application/json", Value::Null).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "not served");

    // Invalid definitions are refused with field causes.
    let api: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    let mut bad = crontab_crd();
    bad["metadata"]["name"] = json!("wrong.stable.example.com");
    bad["spec"]["versions"][1]["storage"] = json!(true);
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["untyped"] = json!({"description": "x"});
    let bad: CustomResourceDefinition = serde_json::from_value(bad).unwrap();
    let err = api_error(api.create(&PostParams::default(), &bad).await);
    assert_eq!(err.code, 422);
    let c = causes(&err);
    assert!(c.contains(&("metadata.name".into(), r#"Invalid value: "wrong.stable.example.com": must be spec.names.plural+"."+spec.group"#.into())), "{c:?}");
    assert!(c.iter().any(|(f, m)| f == "spec.versions" && m.ends_with("must have exactly one version marked as storage version")), "{c:?}");
    assert!(c.contains(&("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[untyped].type".into(),
        "Required value: must not be empty for specified object fields".into())), "{c:?}");
}

#[tokio::test]
async fn crd_deletion_removes_its_objects_and_stops_serving() {
    let s = start().await;
    established(&s).await;
    let v1 = crontabs(&s.client, "v1");
    for n in ["a", "b"] {
        v1.create(&PostParams::default(), &crontab(n, json!({}))).await.unwrap();
    }
    let api: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    api.delete("crontabs.stable.example.com", &DeleteParams::default()).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while api.get_opt("crontabs.stable.example.com").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the CRD goes once its objects are deleted");
    let err = api_error(v1.list(&ListParams::default()).await);
    assert_eq!(err.code, 404, "no longer served");
    // Created again: no objects survived.
    established(&s).await;
    assert!(crontabs(&s.client, "v1").list(&ListParams::default()).await.unwrap().items.is_empty());
}
