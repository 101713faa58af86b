//! End-to-end: storage with real containers. Claims of the default class `local-path` (WaitForFirstConsumer)
//! get a directory on the node of their first pod; the data outlives pods (a new pod with the same claim,
//! a StatefulSet's members with their volumeClaimTemplates); deleting a claim (reclaim Delete) removes the
//! directory.

mod e2e;

use std::path::PathBuf;
use std::time::Duration;

use e2e::{Server, eventually};
use serde_json::Value;

/// A container that stays up and exits at once on SIGTERM (so deletions do not wait out the grace period).
const SLEEPER: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

fn eventually_or<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::park_timeout(Duration::from_millis(200));
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn claim(name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 64Mi}}}}
"#
    )
}

/// A pod mounting claim `claim` at /data that runs `script` and then sleeps.
fn pod(name: &str, claim: &str, script: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: busybox:test
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{script}; {SLEEPER}"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim}}}
"#
    )
}

/// Waits until the pod is Running and returns it.
fn running(s: &Server, name: &str) -> Value {
    eventually_or(Duration::from_secs(120), || {
        let p = s.get_json(&["pod", name]);
        (p["status"]["phase"] == "Running").then_some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "pod {name} is not Running: {}\nevents: {:?}\n{}",
            s.get_json(&["pod", name]),
            s.events_of(name).iter().map(|e| e["message"].clone()).collect::<Vec<_>>(),
            tail(&s.log_text(), 60)
        )
    })
}

/// The bound claim's volume and its directory on the node.
fn volume_of(s: &Server, claim: &str) -> (String, PathBuf) {
    let c = eventually(&format!("claim {claim} to be Bound"), Duration::from_secs(60), || {
        let c = s.get_json(&["pvc", claim]);
        (c["status"]["phase"] == "Bound").then_some(c)
    });
    let pv_name = c["spec"]["volumeName"].as_str().unwrap().to_string();
    let pv = s.get_json(&["pv", &pv_name]);
    let path = pv["spec"]["hostPath"]["path"].as_str().unwrap_or_else(|| panic!("a hostPath volume: {pv}"));
    (pv_name, PathBuf::from(path))
}

fn exec(s: &Server, pod: &str, script: &str) -> String {
    s.ok(&["exec", pod, "--", "sh", "-c", script])
}

#[test]
fn a_claim_of_the_default_class_keeps_its_data_across_pods_and_delete_removes_it() {
    let s = Server::start_node();
    let class = s.get_json(&["storageclass", "local-path"]);
    assert_eq!(class["provisioner"], "rancher.io/local-path");
    assert_eq!(class["volumeBindingMode"], "WaitForFirstConsumer");

    s.ok_stdin(&["apply", "-f", "-"], &claim("data"));
    // WaitForFirstConsumer: nothing is provisioned before a pod uses the claim.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.get_json(&["pvc", "data"])["status"]["phase"], "Pending");

    s.ok_stdin(&["apply", "-f", "-"], &pod("writer", "data", "echo hello-from-writer > /data/file"));
    let writer = running(&s, "writer");
    let (pv_name, dir) = volume_of(&s, "data");
    let pv = s.get_json(&["pv", &pv_name]);
    assert_eq!(pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"], "rancher.io/local-path");
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0],
        writer["spec"]["nodeName"],
        "the volume is pinned to the node of its first pod"
    );
    assert!(dir.starts_with(s.dir.path().join("storage")), "{} is under the data dir's storage", dir.display());
    eventually("the file on the node", Duration::from_secs(30), || {
        std::fs::read_to_string(dir.join("file")).ok().filter(|t| t.trim() == "hello-from-writer")
    });

    s.ok(&["delete", "pod", "writer", "--wait=true", "--timeout=60s"]);
    assert!(dir.join("file").exists(), "the data outlives the pod");
    s.ok_stdin(&["apply", "-f", "-"], &pod("reader", "data", "true"));
    running(&s, "reader");
    assert_eq!(exec(&s, "reader", "cat /data/file").trim(), "hello-from-writer");
    s.ok(&["delete", "pod", "reader", "--wait=true", "--timeout=60s"]);

    // Reclaim Delete: the claim goes, the node removes the directory, the volume goes.
    s.ok(&["delete", "pvc", "data", "--wait=true", "--timeout=60s"]);
    eventually_or(Duration::from_secs(60), || (!dir.exists()).then_some(()))
        .unwrap_or_else(|| panic!("{} was not removed: {}\n{}", dir.display(), s.get_json(&["pv", &pv_name]), tail(&s.log_text(), 60)));
    eventually("the volume to be deleted", Duration::from_secs(60), || {
        s.get_json(&["pv"])["items"].as_array().is_some_and(|a| a.iter().all(|p| p["metadata"]["name"] != pv_name.as_str())).then_some(())
    });
    assert!(s.dir.path().join("storage").is_dir(), "the storage directory itself stays");
}

#[test]
fn a_statefulset_gets_its_data_back_after_its_pods_are_deleted() {
    let s = Server::start_node();
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{port: 80}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  serviceName: db
  replicas: 2
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: main
        image: busybox:test
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "[ -f /data/ordinal ] || hostname > /data/ordinal; {SLEEPER}"]
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 64Mi}}}}
"#
        ),
    );
    let mut uids = Vec::new();
    for i in 0..2 {
        let p = running(&s, &format!("db-{i}"));
        uids.push(p["metadata"]["uid"].as_str().unwrap().to_string());
        let (_, dir) = volume_of(&s, &format!("data-db-{i}"));
        eventually(&format!("db-{i}'s file"), Duration::from_secs(30), || {
            std::fs::read_to_string(dir.join("ordinal")).ok().filter(|t| t.trim() == format!("db-{i}"))
        });
    }
    let volumes: Vec<String> = (0..2).map(|i| volume_of(&s, &format!("data-db-{i}")).0).collect();
    assert_ne!(volumes[0], volumes[1], "one volume per ordinal");

    s.ok(&["delete", "pod", "db-0", "db-1", "--wait=true", "--timeout=60s"]);
    for i in 0..2 {
        let name = format!("db-{i}");
        let p = eventually_or(Duration::from_secs(120), || {
            let p = s.get_json(&["pod", &name]);
            (p["status"]["phase"] == "Running" && p["metadata"]["uid"] != uids[i].as_str()).then_some(p)
        })
        .unwrap_or_else(|| panic!("{name} did not come back: {}\n{}", s.get_json(&["pods"]), tail(&s.log_text(), 60)));
        assert_ne!(p["metadata"]["uid"], uids[i].as_str());
        assert_eq!(exec(&s, &name, "cat /data/ordinal").trim(), name, "{name} sees its own data again");
        assert_eq!(volume_of(&s, &format!("data-db-{i}")).0, volumes[i], "the same claim and volume");
    }
    let claims = s.get_json(&["pvc"]);
    assert_eq!(claims["items"].as_array().unwrap().len(), 2, "the claims were kept: {claims}");
}
