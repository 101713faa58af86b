//! End-to-end: `kubectl apply --server-side` against the built `skiff server`: two managers conflict,
//! `--force-conflicts` resolves it, `--show-managed-fields` shows both managers, and an object made by
//! client-side `kubectl apply` moves to server-side apply.

mod e2e;

use e2e::Server;
use serde_json::Value;

const ALICE: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: test-cm
  namespace: default
  labels:
    test-label: test
data:
  key: some value
"#;

const BOB: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: test-cm
  namespace: default
data:
  key: bob's value
"#;

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| a.iter().map(|e| (e["manager"].as_str().unwrap().to_string(), e["operation"].as_str().unwrap().to_string())).collect())
        .unwrap_or_default()
}

fn get_with_managed_fields(server: &Server, what: &str) -> Value {
    serde_json::from_str(&server.ok(&["get", what, "-o", "json", "--show-managed-fields"])).unwrap()
}

#[test]
fn two_managers_conflict_and_force_resolves() {
    e2e::require_environment();
    let server = Server::start();
    let out = server.ok_stdin(&["apply", "--server-side", "--field-manager=alice", "-f", "-"], ALICE);
    assert!(out.contains("configmap/test-cm serverside-applied"), "{out}");
    let obj = get_with_managed_fields(&server, "configmap/test-cm");
    assert_eq!(obj["metadata"]["managedFields"][0]["fieldsV1"], serde_json::json!({"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}}));

    let err = server.fails_stdin(&["apply", "--server-side", "--field-manager=bob", "-f", "-"], BOB);
    assert!(err.contains(r#"Apply failed with 1 conflict: conflict with "alice": .data.key"#), "{err}");
    assert_eq!(server.ok(&["get", "configmap/test-cm", "-o", "jsonpath={.data.key}"]), "some value", "nothing changed");

    let out = server.ok_stdin(&["apply", "--server-side", "--field-manager=bob", "--force-conflicts", "-f", "-"], BOB);
    assert!(out.contains("serverside-applied"), "{out}");
    let obj = get_with_managed_fields(&server, "configmap/test-cm");
    assert_eq!(obj["data"]["key"], "bob's value");
    let m = managers(&obj);
    assert!(m.contains(&("alice".into(), "Apply".into())) && m.contains(&("bob".into(), "Apply".into())), "{m:?}");

    let yaml = server.ok(&["get", "configmap/test-cm", "-o", "yaml", "--show-managed-fields"]);
    assert!(yaml.contains("manager: alice") && yaml.contains("manager: bob"), "{yaml}");
    assert!(yaml.contains("f:test-label: {}") && yaml.contains("fieldsType: FieldsV1"), "{yaml}");
    // Without the flag kubectl hides them, as with upstream.
    assert!(!server.ok(&["get", "configmap/test-cm", "-o", "yaml"]).contains("managedFields"));
}

#[test]
fn client_side_apply_migrates_to_server_side() {
    e2e::require_environment();
    let server = Server::start();
    server.ok_stdin(&["apply", "-f", "-"], ALICE);
    let obj = get_with_managed_fields(&server, "configmap/test-cm");
    assert_eq!(managers(&obj), vec![("kubectl-client-side-apply".to_string(), "Update".to_string())]);
    assert!(obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());

    // The same manifest with a changed value, now server-side: no conflict with the client-side owner.
    let changed = ALICE.replace("some value", "new value");
    let out = server.ok_stdin(&["apply", "--server-side", "-f", "-"], &changed);
    assert!(out.contains("serverside-applied"), "{out}");
    let obj = get_with_managed_fields(&server, "configmap/test-cm");
    assert_eq!(obj["data"]["key"], "new value");
    // kubectl's upgrade (csaupgrade) moved the client-side manager's fields to `kubectl` and the annotation
    // to `kubectl-last-applied`, through a JSON patch of managedFields that the server keeps as sent.
    assert_eq!(
        managers(&obj),
        vec![("kubectl".to_string(), "Apply".to_string()), ("kubectl-last-applied".to_string(), "Apply".to_string())],
        "kubectl took the client-side fields over: {obj}"
    );
    assert_eq!(obj["metadata"]["managedFields"][0]["fieldsV1"], serde_json::json!({"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}}));
    let last: Value = serde_json::from_str(obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().unwrap()).unwrap();
    assert_eq!(last["data"]["key"], "new value", "the client-side annotation follows");

    // Dropping the label from the manifest now removes it (kubectl owns it).
    let no_label = changed.replace("  labels:\n    test-label: test\n", "");
    server.ok_stdin(&["apply", "--server-side", "-f", "-"], &no_label);
    let obj = get_with_managed_fields(&server, "configmap/test-cm");
    assert!(obj["metadata"]["labels"].get("test-label").is_none(), "{obj}");
}
