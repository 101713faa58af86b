//! End-to-end: the real kubectl (1.33 through the dispatcher, and 1.31) against the built `skiff server`.

mod e2e;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{eventually, Etcd, Server, KUBECTL_131, KUBECTL_132};
use serde_json::Value;

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
  labels: {app: web}
data:
  mode: production
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: shop
stringData:
  password: hunter2
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        ports:
        - containerPort: 80
        env:
        - name: MODE
          value: production
        - name: DEBUG
          value: "false"
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 80
"#;

#[test]
fn apply_twice_then_get_in_every_format() {
    let s = Server::start();
    let out = s.ok_stdin(&["apply", "-f", "-"], APP);
    for line in ["namespace/shop created", "configmap/settings created", "secret/creds created", "deployment.apps/web created", "service/web created"] {
        assert!(out.contains(line), "apply output lacks {line:?}: {out}");
    }
    // Second apply: new image, the DEBUG variable removed (strategic merge by name).
    let changed = APP.replace("nginx:1.27", "nginx:1.28").replace("        - name: DEBUG\n          value: \"false\"\n", "");
    let out = s.ok_stdin(&["apply", "-f", "-"], &changed);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("configmap/settings unchanged"), "{out}");
    let d = s.get_json(&["deployment", "web", "-n", "shop"]);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.28");
    let env: Vec<&str> = c["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(env, vec!["MODE"]);
    assert_eq!(c["ports"][0]["containerPort"], 80);
    assert_eq!(d["metadata"]["generation"], 2);

    let plain = s.ok(&["get", "deployments", "-n", "shop"]);
    assert!(plain.starts_with("NAME") && plain.contains("READY") && plain.contains("UP-TO-DATE") && plain.contains("web"), "{plain}");
    let wide = s.ok(&["get", "deployment", "web", "-n", "shop", "-o", "wide"]);
    assert!(wide.contains("CONTAINERS") && wide.contains("nginx:1.28") && wide.contains("app=web"), "{wide}");
    let yaml = s.ok(&["get", "configmap", "settings", "-n", "shop", "-o", "yaml"]);
    assert!(yaml.contains("mode: production") && yaml.contains("resourceVersion:"), "{yaml}");
    let all_ns = s.ok(&["get", "configmaps", "-A"]);
    assert!(all_ns.contains("NAMESPACE") && all_ns.contains("shop") && all_ns.contains("settings"), "{all_ns}");
    let labels = s.ok(&["get", "cm", "-n", "shop", "--show-labels"]);
    assert!(labels.contains("LABELS") && labels.contains("app=web"), "{labels}");
    let selected = s.ok(&["get", "deploy,cm", "-n", "shop", "-l", "app=web", "-o", "name"]);
    assert_eq!(selected.lines().collect::<Vec<_>>(), vec!["deployment.apps/web", "configmap/settings"]);
    let none = s.ok(&["get", "cm", "-n", "shop", "-l", "app=nope", "-o", "name"]);
    assert_eq!(none.trim(), "");
    let by_field = s.ok(&["get", "secrets", "-n", "shop", "--field-selector", "metadata.name=creds", "-o", "name"]);
    assert_eq!(by_field.trim(), "secret/creds");
    let svc = s.ok(&["get", "svc", "-n", "shop"]);
    assert!(svc.contains("ClusterIP") && svc.contains("10.43.") && svc.contains("80/TCP"), "{svc}");
    let secret = s.get_json(&["secret", "creds", "-n", "shop"]);
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    assert_eq!(secret["type"], "Opaque");
}

#[test]
fn watch_sees_a_change() {
    let s = Server::start();
    s.ok(&["create", "configmap", "watched", "--from-literal=a=1"]);
    let mut watcher = Command::new(e2e::KUBECTL)
        .arg("--kubeconfig").arg(&s.kubeconfig)
        .args(["get", "configmaps", "-w", "--output-watch-events"])
        .stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    // The initial list shows the object; then a label change arrives as MODIFIED.
    let first = eventually("the initial list", Duration::from_secs(30), || {
        lines.next().and_then(Result::ok).filter(|l| l.contains("watched"))
    });
    assert!(first.contains("ADDED"), "{first}");
    s.ok(&["label", "configmap", "watched", "seen=yes"]);
    let modified = eventually("the MODIFIED event", Duration::from_secs(30), || {
        lines.next().and_then(Result::ok).filter(|l| l.contains("MODIFIED"))
    });
    assert!(modified.contains("watched"), "{modified}");
    let _ = watcher.kill();
    let _ = watcher.wait();
}

#[test]
fn describe_edit_label_annotate_patch_replace() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], APP);
    let described = s.ok(&["describe", "deployment", "web", "-n", "shop"]);
    assert!(described.contains("Name:") && described.contains("web") && described.contains("nginx:1.27"), "{described}");
    let described = s.ok(&["describe", "configmap", "settings", "-n", "shop"]);
    assert!(described.contains("production"), "{described}");

    // edit with a scripted editor
    let editor = s.dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/nginx:1.27/nginx:1.29/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = Command::new(e2e::KUBECTL)
        .arg("--kubeconfig").arg(&s.kubeconfig)
        .args(["edit", "deployment", "web", "-n", "shop"])
        .env("KUBE_EDITOR", &editor).output().unwrap();
    assert!(out.status.success(), "edit failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("edited"));
    let d = s.get_json(&["deployment", "web", "-n", "shop"]);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.29");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().len(), 2);

    s.ok(&["label", "cm", "settings", "-n", "shop", "tier=backend"]);
    s.ok(&["annotate", "cm", "settings", "-n", "shop", "note=hello"]);
    let cm = s.get_json(&["cm", "settings", "-n", "shop"]);
    assert_eq!(cm["metadata"]["labels"]["tier"], "backend");
    assert_eq!(cm["metadata"]["annotations"]["note"], "hello");
    s.ok(&["label", "cm", "settings", "-n", "shop", "tier-"]);
    assert!(s.get_json(&["cm", "settings", "-n", "shop"])["metadata"]["labels"].get("tier").is_none());

    // the three patch types
    s.ok(&["patch", "deployment", "web", "-n", "shop", "-p",
           r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"EXTRA","value":"1"}]}]}}}}"#]);
    let d = s.get_json(&["deployment", "web", "-n", "shop"]);
    let env: Vec<&str> = d["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(env, vec!["EXTRA", "MODE", "DEBUG"], "strategic merge adds by name");
    s.ok(&["patch", "cm", "settings", "-n", "shop", "--type=merge", "-p", r#"{"data":{"mode":null,"extra":"x"}}"#]);
    let cm = s.get_json(&["cm", "settings", "-n", "shop"]);
    assert!(cm["data"].get("mode").is_none());
    assert_eq!(cm["data"]["extra"], "x");
    s.ok(&["patch", "cm", "settings", "-n", "shop", "--type=json", "-p", r#"[{"op":"add","path":"/data/k","value":"v"}]"#]);
    assert_eq!(s.get_json(&["cm", "settings", "-n", "shop"])["data"]["k"], "v");
    let unchanged = s.ok(&["patch", "cm", "settings", "-n", "shop", "--type=merge", "-p", r#"{"data":{"k":"v"}}"#]);
    assert!(unchanged.contains("no change"), "{unchanged}");

    // replace with the current resourceVersion works; with a stale one it is a conflict
    let mut cm = s.get_json(&["cm", "settings", "-n", "shop"]);
    cm["data"]["replaced"] = Value::from("yes");
    s.ok_stdin(&["replace", "-f", "-"], &cm.to_string());
    let err = s.fails_stdin(&["replace", "-f", "-"], &cm.to_string());
    assert!(err.contains("Conflict") && err.contains("the object has been modified"), "{err}");
}

#[test]
fn imperative_creates_scale_delete_and_wait() {
    let s = Server::start();
    s.ok(&["create", "namespace", "tools"]);
    s.ok(&["create", "secret", "generic", "token", "-n", "tools", "--from-literal=key=value"]);
    s.ok(&["create", "configmap", "conf", "-n", "tools", "--from-literal=a=b", "--from-literal=c=d"]);
    s.ok(&["create", "deployment", "api", "-n", "tools", "--image=busybox", "--replicas=1"]);
    let secret = s.get_json(&["secret", "token", "-n", "tools"]);
    assert_eq!(secret["data"]["key"], "dmFsdWU=");
    let cm = s.get_json(&["cm", "conf", "-n", "tools"]);
    assert_eq!(cm["data"]["c"], "d");
    let d = s.get_json(&["deploy", "api", "-n", "tools"]);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "busybox");
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");

    let out = s.ok(&["scale", "deployment", "api", "-n", "tools", "--replicas=3"]);
    assert!(out.contains("scaled"), "{out}");
    let scale = s.ok(&["get", "deployment", "api", "-n", "tools", "--subresource=scale"]);
    assert!(scale.contains("DESIRED") && scale.lines().nth(1).is_some_and(|l| l.split_whitespace().nth(1) == Some("3")), "{scale}");
    assert_eq!(s.get_json(&["deploy", "api", "-n", "tools"])["spec"]["replicas"], 3);
    s.ok(&["scale", "deployment", "api", "-n", "tools", "--replicas=1", "--current-replicas=3"]);
    assert_eq!(s.get_json(&["deploy", "api", "-n", "tools"])["spec"]["replicas"], 1);

    for cascade in ["orphan", "foreground", "background"] {
        let name = format!("c-{cascade}");
        s.ok(&["create", "configmap", &name, "-n", "tools"]);
        s.ok(&["delete", "configmap", &name, "-n", "tools", &format!("--cascade={cascade}")]);
    }
    s.ok(&["delete", "deployment", "api", "-n", "tools"]);
    s.ok(&["wait", "--for=delete", "deployment/api", "-n", "tools", "--timeout=30s"]);
    s.ok(&["delete", "namespace", "tools"]);
    s.ok(&["wait", "--for=delete", "namespace/tools", "--timeout=30s"]);
    let err = s.fails(&["get", "cm", "conf", "-n", "tools"]);
    assert!(err.contains("NotFound"), "{err}");
}

#[test]
fn discovery_explain_and_events() {
    let s = Server::start();
    let resources = s.ok(&["api-resources"]);
    for needle in ["pods", "po", "deployments", "apps/v1", "horizontalpodautoscalers", "leases", "priorityclasses", "Namespace"] {
        assert!(resources.contains(needle), "api-resources lacks {needle}: {resources}");
    }
    let versions = s.ok(&["api-versions"]);
    for gv in ["v1", "apps/v1", "batch/v1", "autoscaling/v2", "autoscaling/v1", "rbac.authorization.k8s.io/v1", "policy/v1"] {
        assert!(versions.lines().any(|l| l == gv), "api-versions lacks {gv}: {versions}");
    }
    let explained = s.ok(&["explain", "pod.spec.containers"]);
    assert!(explained.contains("KIND:") && explained.contains("Pod") && explained.contains("image"), "{explained}");
    let event = r#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"e1","namespace":"default"},
        "involvedObject":{"kind":"Pod","name":"p1","namespace":"default"},"reason":"Testing","message":"hello from e2e",
        "type":"Normal","source":{"component":"e2e"},"firstTimestamp":"2026-01-01T00:00:00Z","lastTimestamp":"2026-01-01T00:00:00Z","count":1}"#;
    s.ok_stdin(&["create", "-f", "-"], event);
    let events = s.ok(&["get", "events"]);
    assert!(events.contains("Testing") && events.contains("hello from e2e") && events.contains("pod/p1"), "{events}");
    let whoami: Value = serde_json::from_str(&s.ok(&["auth", "whoami", "-o", "json"])).unwrap();
    assert_eq!(whoami["status"]["userInfo"]["username"], "system:admin", "the certificate's CN is the user");
    let groups = whoami["status"]["userInfo"]["groups"].as_array().unwrap();
    assert!(groups.iter().any(|g| g == "system:masters"), "the certificate's O is a group: {groups:?}");
    assert_eq!(s.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
    let version = s.ok(&["version", "-o", "json"]);
    let v: Value = serde_json::from_str(&version).unwrap();
    assert_eq!(v["serverVersion"]["minor"], "33");
    assert!(v["serverVersion"]["gitVersion"].as_str().unwrap().starts_with("v1.33."));
}

#[test]
fn bad_input_gets_clear_errors_and_changes_nothing() {
    let s = Server::start();
    s.ok(&["create", "configmap", "keep", "--from-literal=a=1"]);
    let before = s.get_json(&["cm", "keep"]);

    let err = s.fails(&["create", "configmap", "keep"]);
    assert!(err.contains("configmaps \"keep\" already exists"), "{err}");
    let err = s.fails(&["get", "frobnicators"]);
    assert!(err.contains("the server doesn't have a resource type \"frobnicators\""), "{err}");
    let err = s.fails_stdin(&["create", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n");
    assert!(err.contains("is invalid") && err.contains("metadata.name"), "{err}");
    let err = s.fails_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndatta:\n  a: b\n");
    assert!(err.contains("unknown field") && err.contains("datta"), "{err}");
    let err = s.fails_stdin(&["create", "-f", "-"],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: broken\nspec:\n  selector:\n    matchLabels: {a: b}\n  template:\n    metadata:\n      labels: {a: c}\n    spec:\n      containers:\n      - name: c\n");
    assert!(err.contains("spec.template.metadata.labels") && err.contains("spec.template.spec.containers[0].image"), "every field error is reported: {err}");
    let err = s.fails(&["create", "configmap", "x", "-n", "does-not-exist"]);
    assert!(err.contains("namespaces \"does-not-exist\" not found"), "{err}");
    let big = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: huge\ndata:\n  blob: \"{}\"\n", "x".repeat(3 * 1024 * 1024 + 10));
    let err = s.fails_stdin(&["create", "-f", "-", "--validate=false"], &big);
    assert!(err.contains("too large") || err.contains("Too large") || err.contains("RequestEntityTooLarge"), "{err}");

    // Malformed bodies straight over HTTPS.
    let (code, body) = s.curl(&["-X", "POST", "-H", "Content-Type: application/json", "-d", "{not json", &s.url("/api/v1/namespaces/default/configmaps")]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"kind\":\"Status\"") && body.contains("not valid JSON"), "{body}");
    let (code, body) = s.curl(&["-X", "POST", "-H", "Content-Type: application/vnd.kubernetes.protobuf", "--data-binary", "garbage", &s.url("/api/v1/namespaces/default/configmaps")]);
    assert_eq!(code, 400, "{body}");
    let (code, _) = s.curl(&["-X", "POST", "-H", "Content-Type: application/x-made-up", "-d", "{}", &s.url("/api/v1/namespaces/default/configmaps")]);
    assert_eq!(code, 415);
    // Unauthenticated callers are refused.
    let out = Command::new("curl").args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", &s.url("/api/v1/namespaces")]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");

    let after = s.get_json(&["cm", "keep"]);
    assert_eq!(before, after, "no stored object changed");
    assert!(s.ok(&["get", "--raw", "/readyz"]).contains("ok"), "the server keeps serving");
}

#[test]
fn restart_keeps_data_and_sigterm_stops_cleanly() {
    let mut s = Server::start();
    s.ok(&["create", "configmap", "durable", "--from-literal=a=1"]);
    let rv_before: u64 = s.get_json(&["cm", "durable"])["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    // An open watch does not hold up shutdown: the server ends it and exits cleanly.
    let mut watcher = Command::new(e2e::KUBECTL)
        .arg("--kubeconfig").arg(&s.kubeconfig)
        .args(["get", "configmaps", "-w"])
        .stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    eventually("the watch to start", Duration::from_secs(30), || lines.next().and_then(Result::ok).filter(|l| l.contains("durable")));
    let status = s.stop();
    assert!(status.success(), "SIGTERM gives a clean exit, got {status}");
    let watch_status = watcher.wait().unwrap();
    assert!(watch_status.success(), "kubectl get -w ends when the server closes the watch: {watch_status}");
    s.restart(&[]);
    let cm = s.get_json(&["cm", "durable"]);
    assert_eq!(cm["data"]["a"], "1");
    s.ok(&["create", "configmap", "later"]);
    let rv_after: u64 = s.get_json(&["cm", "later"])["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rv_after > rv_before, "the revision keeps rising across restarts");
}

#[test]
fn kubectl_131_works_too() {
    older_kubectl_works(KUBECTL_131);
}

#[test]
fn kubectl_132_works_too() {
    older_kubectl_works(KUBECTL_132);
}

/// The core of the apply workflow with an older kubectl than the dispatcher picks.
fn older_kubectl_works(binary: &str) {
    let s = Server::start();
    let run = |args: &[&str], stdin: Option<&str>| {
        let out = s.kubectl_with(binary, args, stdin);
        assert!(out.status.success(), "{binary} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let out = run(&["apply", "-f", "-"], Some(APP));
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let changed = APP.replace("nginx:1.27", "nginx:1.28");
    assert!(run(&["apply", "-f", "-"], Some(&changed)).contains("configured"));
    let image = run(&["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image}"], None);
    assert_eq!(image, "nginx:1.28");
    assert!(run(&["get", "deploy", "-n", "shop"], None).contains("web"));
    run(&["create", "secret", "generic", "older", "--from-literal=a=b"], None);
    run(&["scale", "deploy", "web", "-n", "shop", "--replicas=4"], None);
    assert!(run(&["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas}"], None).contains('4'));
    assert!(run(&["explain", "deployment.spec.replicas"], None).contains("replicas"));
    run(&["delete", "secret", "older"], None);
}

#[test]
fn kill_9_during_a_create_storm_loses_no_acknowledged_write() {
    let mut s = Server::start();
    let start_rv: u64 = s.get_json(&["ns", "default"])["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    let list_rv = || -> u64 {
        let v: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps?limit=1"])).unwrap();
        v["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
    };
    let before_storm = list_rv();
    assert!(before_storm >= start_rv);
    // Four writers create ConfigMaps as fast as they can; each records the names the server acknowledged.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (acked, stop) = (acked.clone(), stop.clone());
        let url = s.url("/api/v1/namespaces/default/configmaps");
        let tls = s.dir.path().join("server").join("tls");
        writers.push(std::thread::spawn(move || {
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let name = format!("storm-{w}-{i}");
                let body = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"i":"{i}"}}}}"#);
                let out = Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"]).arg(tls.join("ca.crt"))
                    .arg("--cert").arg(tls.join("client-admin.crt")).arg("--key").arg(tls.join("client-admin.key"))
                    .args(["-H", "Content-Type: application/json", "-d", &body, &url])
                    .output().unwrap();
                if String::from_utf8_lossy(&out.stdout) == "201" {
                    acked.lock().unwrap().push(name);
                }
            }
        }));
    }
    eventually("writes to be acknowledged", Duration::from_secs(60), || (acked.lock().unwrap().len() >= 100).then_some(()));
    s.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    s.restart(&[]);
    let stored: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps"])).unwrap();
    let names: std::collections::HashSet<&str> =
        stored["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    for name in &acked {
        assert!(names.contains(name.as_str()), "acknowledged write {name} was lost");
    }
    let after: u64 = stored["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(after >= before_storm + acked.len() as u64, "the revision keeps rising: {after}");
    // A watch from before the storm replays every acknowledged create, in revision order.
    let events = s.ok(&["get", "--raw",
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={before_storm}&timeoutSeconds=2")]);
    let mut seen = std::collections::HashSet::new();
    let mut last = 0u64;
    for line in events.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        assert_eq!(e["type"], "ADDED", "{line}");
        let rv: u64 = e["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        assert!(rv > last, "events come in revision order");
        last = rv;
        seen.insert(e["object"]["metadata"]["name"].as_str().unwrap().to_string());
    }
    for name in &acked {
        assert!(seen.contains(name), "the watch missed {name}");
    }
    s.ok(&["create", "configmap", "after-crash"]);
    let rv: u64 = s.get_json(&["cm", "after-crash"])["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rv > after);
}

#[test]
fn etcd_datastore_serves_kubectl_and_survives_restart() {
    let etcd = Etcd::start();
    let mut s = Server::start_with(&["--datastore-endpoint", &etcd.endpoint]);
    let out = s.ok_stdin(&["apply", "-f", "-"], APP);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let changed = APP.replace("nginx:1.27", "nginx:1.28");
    assert!(s.ok_stdin(&["apply", "-f", "-"], &changed).contains("deployment.apps/web configured"));
    s.ok(&["scale", "deployment", "web", "-n", "shop", "--replicas=5"]);
    let secret = s.get_json(&["secret", "creds", "-n", "shop"]);
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    assert!(s.stop().success());
    s.restart(&["--datastore-endpoint", &etcd.endpoint]);
    let d = s.get_json(&["deployment", "web", "-n", "shop"]);
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.28");
    // Secrets are stored encrypted: etcd holds the Kubernetes aesgcm envelope, not the value.
    let raw = Command::new("curl").args(["-s", "-X", "POST", &format!("{}/v3/kv/range", etcd.endpoint), "-d",
        r#"{"key":"L3JlZ2lzdHJ5L2NvcmUvc2VjcmV0cy9zaG9wL2NyZWRz"}"#]).output().unwrap();
    let reply: Value = serde_json::from_slice(&raw.stdout).unwrap();
    let stored = reply["kvs"][0]["value"].as_str().expect("the secret is in etcd");
    let bytes = base64_decode(stored);
    assert!(bytes.starts_with(b"k8s:enc:aesgcm:v1:key1:"), "stored as {:?}", String::from_utf8_lossy(&bytes[..30.min(bytes.len())]));
    assert!(!String::from_utf8_lossy(&bytes).contains("aHVudGVyMg"), "the secret value is not readable in the store");
}

fn base64_decode(s: &str) -> Vec<u8> {
    let out = Command::new("base64").arg("-d").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().and_then(|mut c| {
        use std::io::Write;
        c.stdin.take().unwrap().write_all(s.as_bytes())?;
        c.wait_with_output()
    }).unwrap();
    out.stdout
}
