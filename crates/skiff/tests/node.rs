//! End-to-end: pods as real containers. The built `skiff server` with its local agent (runc, CNI) and the
//! real kubectl; the busybox test image is imported from an archive before the server starts.

mod e2e;

use std::time::Duration;

use e2e::{Server, eventually};

const HELLO: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  containers:
  - name: main
    image: busybox:test
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; echo hello from skiff; while true; do sleep 1; done"]
"#;

fn wait_running(s: &Server, pod: &str) {
    eventually(&format!("pod {pod} Running"), Duration::from_secs(60), || {
        let p = s.get_json(&["pod", pod]);
        (p["status"]["phase"] == "Running" && p["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")).then_some(())
    });
}

#[test]
fn a_pod_runs_prints_and_execs_then_is_removed() {
    let s = Server::start_node();
    s.ok_stdin(&["apply", "-f", "-"], HELLO);
    wait_running(&s, "hello");
    let pod = s.get_json(&["pod", "hello"]);
    assert!(pod["spec"]["nodeName"].as_str().is_some_and(|n| n.starts_with("node-")), "the scheduler placed it: {pod}");
    assert!(pod["status"]["podIP"].as_str().is_some_and(|ip| ip.starts_with("10.")), "pod IP from the node's pod CIDR: {pod}");
    assert!(pod["status"]["containerStatuses"][0]["containerID"].as_str().is_some_and(|id| id.starts_with("skiff://")));

    let logs = eventually("the pod's output in kubectl logs", Duration::from_secs(20), || {
        let out = s.ok(&["logs", "hello"]);
        out.contains("hello from skiff").then_some(out)
    });
    assert_eq!(logs.trim(), "hello from skiff");

    assert_eq!(s.ok(&["exec", "hello", "--", "echo", "inside"]).trim(), "inside");
    let out = s.kubectl(&["exec", "hello", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "kubectl exec returns the command's exit code: {}", String::from_utf8_lossy(&out.stderr));

    s.ok(&["delete", "pod", "hello", "--wait=true", "--timeout=60s"]);
    let left = s.kubectl(&["get", "pod", "hello"]);
    assert!(!left.status.success(), "the pod is gone after deletion");
}
