//! Unit tests of field sets, FieldsV1, the typed merge and the field manager.

use serde_json::{json, Value};

use super::*;
use crate::openapi::Schemas;

fn req<'a>(manager: &'a str, api_version: &'a str) -> Request<'a> {
    Request { manager, api_version, scope: Scope::Main { has_status: true }, now: "2026-11-25T10:00:00Z" }
}

fn fields_of(obj: &Value, manager: &str) -> Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .unwrap_or_else(|| panic!("no entry for {manager}: {obj}"))["fieldsV1"]
        .clone()
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}
            }
        }
    })
}

#[test]
fn fields_v1_round_trip_and_spelling() {
    let v1 = json!({
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}}}, "f:finalizers": {"v:\"a\"": {}}, "f:items": {"i:0": {}}}
    });
    let set = Set::from_fields_v1(&v1).unwrap();
    let labels = [PathElement::Field("metadata".into()), PathElement::Field("labels".into())];
    assert!(set.has(&labels));
    assert!(set.has(&[PathElement::Field("metadata".into()), PathElement::Field("labels".into()), PathElement::Field("app".into())]));
    assert!(!set.has(&[PathElement::Field("metadata".into())]));
    assert_eq!(set.to_fields_v1(), v1);
    assert_eq!(serde_json::to_string(&set.to_fields_v1()).unwrap(), serde_json::to_string(&v1).unwrap());
    assert!(Set::from_fields_v1(&json!({"x:bad": {}})).is_err());
    assert!(Set::from_fields_v1(&json!([])).is_err());
}

#[test]
fn path_order_and_display() {
    let key = PathElement::key_of(&json!({"protocol": "TCP", "containerPort": 80}), &["containerPort".into(), "protocol".into()]).unwrap();
    assert_eq!(key.to_v1(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
    assert_eq!(key.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
    let path = vec![PathElement::Field("spec".into()), PathElement::Field("replicas".into())];
    assert_eq!(path_string(&path), ".spec.replicas");
    assert!(PathElement::Field("z".into()) < key);
    assert!(key < PathElement::Value(json!("a")));
    assert!(PathElement::Value(json!(1)) < PathElement::Value(json!("a")));
    assert!(PathElement::Value(json!("a")) < PathElement::Index(0));
}

#[test]
fn set_algebra() {
    let p = |s: &[&str]| s.iter().map(|x| PathElement::Field(x.to_string())).collect::<Vec<_>>();
    let mut a = Set::new();
    a.insert(&p(&["spec", "replicas"]));
    a.insert(&p(&["spec", "paused"]));
    let mut b = Set::new();
    b.insert(&p(&["spec", "replicas"]));
    b.insert(&p(&["data", "x"]));
    assert_eq!(a.intersection(&b).paths(), vec![p(&["spec", "replicas"])]);
    assert_eq!(a.difference(&b).paths(), vec![p(&["spec", "paused"])]);
    assert_eq!(a.union(&b).paths().len(), 3);
    assert!(a.difference(&a).is_empty());
    let named = a.with_named_fields_as_members();
    assert!(named.has(&p(&["spec"])));
}

#[test]
fn field_set_uses_list_types_from_the_schema() {
    let schemas = Schemas::load();
    let lookup = OpenApiLookup::new(&schemas, "apps", "v1", "Deployment");
    let mut d = deployment(2, "nginx:1");
    d["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["a", "b"]);
    d["metadata"]["finalizers"] = json!(["x"]);
    let set = typed::field_set(&d, &Node::root(&lookup));
    let v1 = set.to_fields_v1();
    let c = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert_eq!(c["."], json!({}));
    assert_eq!(c["f:args"], json!({}), "args is an atomic list: {v1}");
    assert_eq!(c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"], json!({".": {}, "f:containerPort": {}, "f:protocol": {}}));
    assert_eq!(v1["f:metadata"]["f:finalizers"], json!({"v:\"x\"": {}}));
    assert_eq!(v1["f:spec"]["f:selector"], json!({}), "LabelSelector is an atomic map");
    assert_eq!(v1["f:metadata"]["f:labels"], json!({"f:app": {}}));
}

#[test]
fn untyped_parts_are_granular_maps_and_atomic_lists() {
    let lookup = InlineLookup(None);
    let obj = json!({"spec": {"a": {"b": 1}, "list": [{"x": 1}]}});
    let v1 = typed::field_set(&obj, &Node::root(&lookup)).to_fields_v1();
    assert_eq!(v1, json!({"f:spec": {".": {}, "f:a": {".": {}, "f:b": {}}, "f:list": {}}}));
}

#[test]
fn merge_follows_list_semantics() {
    let schemas = Schemas::load();
    let lookup = OpenApiLookup::new(&schemas, "", "v1", "Pod");
    let node = Node::root(&lookup);
    let live = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {
        "containers": [{"name": "a", "image": "x", "args": ["1", "2"]}, {"name": "b", "image": "y"}],
        "tolerations": [{"key": "k1"}]}});
    let config = json!({"metadata": {"finalizers": ["c", "a"]}, "spec": {
        "containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"}],
        "tolerations": [{"key": "k2"}]}});
    let m = typed::merge(Some(&live), &config, &node);
    assert_eq!(m["metadata"]["finalizers"], json!(["c", "a", "b"]));
    assert_eq!(m["spec"]["containers"], json!([{"name": "a", "image": "x", "args": ["1", "2"]}, {"name": "b", "image": "z"}, {"name": "c", "image": "w"}]));
    assert_eq!(m["spec"]["tolerations"], json!([{"key": "k2"}]), "atomic lists are replaced");
    let m2 = typed::merge(Some(&live), &json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}), &node);
    assert_eq!(m2["spec"]["containers"][0]["args"], json!(["3"]));
    assert_eq!(m2["spec"]["containers"][0]["image"], "x");
}

#[test]
fn compare_reports_added_modified_removed() {
    let schemas = Schemas::load();
    let lookup = OpenApiLookup::new(&schemas, "", "v1", "ConfigMap");
    let c = typed::compare(&json!({"data": {"a": "1", "b": "2"}}), &json!({"data": {"a": "9", "c": "3"}}), &Node::root(&lookup));
    assert_eq!(c.added.to_fields_v1(), json!({"f:data": {"f:c": {}}}));
    assert_eq!(c.modified.to_fields_v1(), json!({"f:data": {"f:a": {}}}));
    assert_eq!(c.removed.to_fields_v1(), json!({"f:data": {"f:b": {}}}));
    let c = typed::compare(&json!({}), &json!({"data": {"a": "1"}}), &Node::root(&lookup));
    assert_eq!(c.added.to_fields_v1(), json!({"f:data": {".": {}, "f:a": {}}}));
}

#[test]
fn update_records_create_and_changes() {
    let schemas = Schemas::load();
    let lookup = OpenApiLookup::new(&schemas, "", "v1", "ConfigMap");
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default", "uid": "u"}, "data": {"a": "1"}});
    update(None, &mut cm, &lookup, &req("kubectl-create", "v1"));
    let entry = &cm["metadata"]["managedFields"][0];
    assert_eq!(entry["manager"], "kubectl-create");
    assert_eq!(entry["operation"], "Update");
    assert_eq!(entry["apiVersion"], "v1");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert_eq!(entry["time"], "2026-11-25T10:00:00Z");
    assert_eq!(entry["fieldsV1"], json!({"f:data": {".": {}, "f:a": {}}}));
    assert!(entry.get("subresource").is_none());

    let mut edited = cm.clone();
    edited["data"]["a"] = json!("2");
    edited["data"]["b"] = json!("3");
    update(Some(&cm), &mut edited, &lookup, &req("kubectl-edit", "v1"));
    assert_eq!(fields_of(&edited, "kubectl-create"), json!({"f:data": {}}), "the creator keeps the map itself");
    assert_eq!(fields_of(&edited, "kubectl-edit"), json!({"f:data": {"f:a": {}, "f:b": {}}}));

    // Sending managedFields back unchanged with no change records nothing new.
    let mut same = edited.clone();
    update(Some(&edited), &mut same, &lookup, &req("other", "v1"));
    assert_eq!(same["metadata"]["managedFields"], edited["metadata"]["managedFields"]);
}

#[test]
fn status_writes_are_tracked_with_their_subresource() {
    let schemas = Schemas::load();
    let lookup = OpenApiLookup::new(&schemas, "apps", "v1", "Deployment");
    let live = deployment(1, "nginx");
    let mut new = live.clone();
    new["status"] = json!({"replicas": 1});
    new["spec"]["replicas"] = json!(5);
    let r = Request { manager: "controller", api_version: "apps/v1", scope: Scope::Status, now: "2026-11-25T10:00:00Z" };
    update(Some(&live), &mut new, &lookup, &r);
    let e = &new["metadata"]["managedFields"][0];
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:replicas": {}}}), "only status is tracked for status writes");
    let mut main = live.clone();
    main["status"] = json!({"replicas": 3});
    update(Some(&live), &mut main, &lookup, &req("x", "apps/v1"));
    assert!(main["metadata"]["managedFields"].as_array().unwrap().is_empty(), "status is reset on the main resource");
}

#[test]
fn update_managers_are_capped() {
    let schemas = Schemas::load();
    let lookup = OpenApiLookup::new(&schemas, "", "v1", "ConfigMap");
    let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
    for i in 0..13 {
        let mut next = obj.clone();
        next["data"][format!("k{i}")] = json!("v");
        let now = format!("2026-11-25T10:00:{i:02}Z");
        let manager = format!("m{i}");
        update(Some(&obj), &mut next, &lookup, &Request { manager: &manager, api_version: "v1", scope: Scope::Main { has_status: false }, now: &now });
        obj = next;
    }
    let entries = obj["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), MAX_UPDATE_MANAGERS);
    let ancient = entries.iter().find(|e| e["manager"] == ANCIENT_CHANGES).unwrap();
    assert_eq!(ancient["fieldsV1"]["f:data"].as_object().unwrap().len(), 4, "{ancient}");
}

#[test]
fn apply_owns_what_it_applies_and_prunes_what_it_dropped() {
    let schemas = Schemas::load();
    let lookup = OpenApiLookup::new(&schemas, "", "v1", "ConfigMap");
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}}, "data": {"key": "some value", "old": "x"}});
    let created = apply(None, &config, &lookup, &req("kubectl", "v1"), false).unwrap();
    assert_eq!(
        created["metadata"]["managedFields"],
        json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2026-11-25T10:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {"f:key": {}, "f:old": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}}}])
    );
    // Another manager updates a field of its own.
    let mut edited = created.clone();
    edited["data"]["extra"] = json!("e");
    update(Some(&created), &mut edited, &lookup, &req("editor", "v1"));
    // The applier drops `old` and the label: they go; `extra` (the editor's) stays.
    let config2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-cm"}, "data": {"key": "some value"}});
    let out = apply(Some(&edited), &config2, &lookup, &req("kubectl", "v1"), false).unwrap();
    assert_eq!(out["data"], json!({"key": "some value", "extra": "e"}));
    assert_eq!(fields_of(&out, "kubectl"), json!({"f:data": {"f:key": {}}}));
    assert_eq!(out["metadata"]["name"], "test-cm", "metadata itself is never pruned");
    assert!(out["metadata"].get("labels").is_none(), "a map nobody owns any more goes");
}

#[test]
fn apply_conflicts_and_force() {
    let schemas = Schemas::load();
    let lookup = OpenApiLookup::new(&schemas, "apps", "v1", "Deployment");
    let first = apply(None, &deployment(2, "nginx:1"), &lookup, &req("alice", "apps/v1"), false).unwrap();
    // Same values: shared ownership, no conflict.
    let shared = apply(Some(&first), &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}}), &lookup, &req("bob", "apps/v1"), false).unwrap();
    assert_eq!(fields_of(&shared, "bob"), json!({"f:spec": {"f:replicas": {}}}));
    assert_eq!(fields_of(&shared, "alice")["f:spec"]["f:replicas"], json!({}));
    // A different value: conflict naming the field and the manager.
    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let err = apply(Some(&shared), &bob, &lookup, &req("bob", "apps/v1"), false).unwrap_err();
    let ApplyError::Conflicts(c) = &err else { panic!("{err:?}") };
    assert_eq!(c.0.len(), 1);
    let status = err.to_api_error();
    assert_eq!(status.code, 409);
    assert_eq!(status.message, "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas");
    assert_eq!(status.details.unwrap()["causes"], json!([{"reason": "FieldManagerConflict", "message": "conflict with \"alice\"", "field": ".spec.replicas"}]));
    // Force takes it over.
    let forced = apply(Some(&shared), &bob, &lookup, &req("bob", "apps/v1"), true).unwrap();
    assert_eq!(forced["spec"]["replicas"], 5);
    assert!(fields_of(&forced, "alice")["f:spec"].get("f:replicas").is_none());
    assert_eq!(fields_of(&forced, "bob"), json!({"f:spec": {"f:replicas": {}}}));
    // An Update manager is named with its apiVersion.
    let mut scaled = forced.clone();
    scaled["spec"]["replicas"] = json!(7);
    update(Some(&forced), &mut scaled, &lookup, &req("kubectl-scale", "apps/v1"));
    let err = apply(Some(&scaled), &bob, &lookup, &req("bob", "apps/v1"), false).unwrap_err().to_api_error();
    assert_eq!(err.details.unwrap()["causes"][0]["message"], "conflict with \"kubectl-scale\" using apps/v1");
}

#[test]
fn apply_removes_list_items_no_longer_applied() {
    let schemas = Schemas::load();
    let lookup = OpenApiLookup::new(&schemas, "apps", "v1", "Deployment");
    let mut two = deployment(1, "nginx");
    two["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "side", "image": "busybox"}));
    let live = apply(None, &two, &lookup, &req("a", "apps/v1"), false).unwrap();
    let out = apply(Some(&live), &deployment(1, "nginx"), &lookup, &req("a", "apps/v1"), false).unwrap();
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["nginx"]);
}

#[test]
fn kubectl_takes_over_client_side_apply_fields() {
    let schemas = Schemas::load();
    let lookup = OpenApiLookup::new(&schemas, "", "v1", "ConfigMap");
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}});
    let mut csa = applied.clone();
    csa["metadata"]["annotations"] = json!({LAST_APPLIED: applied.to_string()});
    update(None, &mut csa, &lookup, &req("kubectl-client-side-apply", "v1"));
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "2"}});
    // Another manager would conflict; kubectl may take the annotation's fields.
    assert!(apply(Some(&csa), &config, &lookup, &req("someone", "v1"), false).is_err());
    let out = apply(Some(&csa), &config, &lookup, &req("kubectl", "v1"), false).unwrap();
    assert_eq!(out["data"]["a"], "2");
    let annotation: Value = serde_json::from_str(out["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap()).unwrap();
    assert_eq!(annotation, config, "the annotation follows the configuration");
}

#[test]
fn bad_configurations_are_refused() {
    let lookup = InlineLookup(None);
    assert!(matches!(apply(None, &json!([1]), &lookup, &req("a", "v1"), false), Err(ApplyError::BadRequest(_))));
    let with_managed = json!({"metadata": {"managedFields": [{"manager": "x"}]}});
    let e = apply(None, &with_managed, &lookup, &req("a", "v1"), false).unwrap_err().to_api_error();
    assert_eq!((e.code, e.message.as_str()), (400, "metadata.managedFields must be nil"));
}

#[test]
fn manager_from_user_agent() {
    assert_eq!(manager_or_user_agent(Some("mgr"), "kubectl/v1.32"), "mgr");
    assert_eq!(manager_or_user_agent(None, "kubectl-edit/v1.32.4 (linux/amd64) kubernetes/abc"), "kubectl-edit");
    assert_eq!(manager_or_user_agent(Some(""), "kube-rs/5"), "kube-rs");
    assert_eq!(manager_or_user_agent(None, &"x".repeat(300)).len(), FIELD_MANAGER_MAX_LENGTH);
}
