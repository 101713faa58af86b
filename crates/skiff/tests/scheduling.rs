//! End-to-end: the scheduler inside the built `skiff server`, driven with kubectl. Placement only, so the
//! nodes are plain Node objects (no agent: `--disable-agent`); what is checked is where pods are bound and
//! what `kubectl describe` says when they cannot be.

mod e2e;

use std::time::Duration;

use e2e::{Server, eventually};

fn node(name: &str, cpu: &str, labels: &str, taints: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{kubernetes.io/hostname: {name}{labels}}}
spec:
  taints: [{taints}]
status:
  capacity: {{cpu: "{cpu}", memory: 8Gi, pods: "110"}}
  allocatable: {{cpu: "{cpu}", memory: 8Gi, pods: "110"}}
  conditions:
  - {{type: Ready, status: "True", reason: KubeletReady}}
"#
    )
}

fn pod(name: &str, cpu: &str, extra_spec: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  containers:
  - name: c
    image: busybox:test
    resources: {{requests: {{cpu: "{cpu}"}}}}
{extra_spec}
"#
    )
}

fn node_of(s: &Server, pod: &str) -> String {
    eventually(&format!("{pod} bound"), Duration::from_secs(30), || {
        let p = s.get_json(&["pod", pod]);
        p["spec"]["nodeName"].as_str().map(str::to_string)
    })
}

/// Creates nodes through kubectl; Node status is kept on create (the kubelet would post it).
fn nodes(s: &Server, items: &[String]) {
    s.ok_stdin(&["create", "-f", "-"], &items.join("\n---\n"));
}

#[test]
fn spread_and_binpack_place_the_same_pods_differently() {
    let mut placements = Vec::new();
    for strategy in ["spread", "binpack"] {
        let s = Server::start_with(&["--scheduler-strategy", strategy]);
        nodes(&s, &[node("big", "8", "", ""), node("small", "4", "", "")]);
        let mut on = Vec::new();
        for i in 0..3 {
            s.ok_stdin(&["create", "-f", "-"], &pod(&format!("p{i}"), "1", ""));
            on.push(node_of(&s, &format!("p{i}")));
        }
        placements.push(on);
    }
    let (spread, binpack) = (&placements[0], &placements[1]);
    assert!(spread.contains(&"big".to_string()) && spread.contains(&"small".to_string()), "spread uses both nodes: {spread:?}");
    assert!(binpack.iter().all(|n| n == binpack.first().unwrap()), "binpack packs one node: {binpack:?}");
}

#[test]
fn constraints_taints_affinity_anti_affinity_and_an_explained_failure() {
    let s = Server::start();
    nodes(
        &s,
        &[
            node("gpu", "4", ", accel: gpu", "{key: dedicated, value: gpu, effect: NoSchedule}"),
            node("plain-a", "4", ", zone: a", ""),
            node("plain-b", "4", ", zone: b", ""),
        ],
    );
    // An untolerating pod never lands on the tainted node; a tolerating pod with a selector does.
    s.ok_stdin(&["create", "-f", "-"], &pod("no-tol", "100m", "  nodeSelector: {accel: gpu}"));
    s.ok_stdin(
        &["create", "-f", "-"],
        &pod("tol", "100m", "  nodeSelector: {accel: gpu}\n  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]"),
    );
    assert_eq!(node_of(&s, "tol"), "gpu");
    let explained = eventually("FailedScheduling for no-tol", Duration::from_secs(30), || {
        let d = s.ok(&["describe", "pod", "no-tol"]);
        d.contains("FailedScheduling").then_some(d)
    });
    assert!(explained.contains("0/3 nodes are available"), "{explained}");
    assert!(explained.contains("untolerated taint {dedicated: gpu}"), "{explained}");
    assert!(explained.contains("didn't match Pod's node affinity/selector"), "{explained}");

    // Required anti-affinity by zone puts two replicas in different zones.
    let anti = "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector: {matchLabels: {tier: web}}\n        topologyKey: zone";
    for name in ["web-1", "web-2"] {
        let p = pod(name, "100m", anti).replace(&format!("labels: {{app: {name}}}"), "labels: {tier: web}");
        s.ok_stdin(&["create", "-f", "-"], &p);
    }
    let (a, b) = (node_of(&s, "web-1"), node_of(&s, "web-2"));
    assert!(a.starts_with("plain-") && b.starts_with("plain-") && a != b, "anti-affinity spreads zones: {a} {b}");
    // A third cannot be placed, and says why.
    let p = pod("web-3", "100m", anti).replace("labels: {app: web-3}", "labels: {tier: web}");
    s.ok_stdin(&["create", "-f", "-"], &p);
    let d = eventually("FailedScheduling for web-3", Duration::from_secs(30), || {
        let d = s.ok(&["describe", "pod", "web-3"]);
        d.contains("FailedScheduling").then_some(d)
    });
    assert!(d.contains("didn't satisfy existing pods anti-affinity rules"), "{d}");
}

#[test]
fn a_high_priority_pod_preempts_a_low_one() {
    let s = Server::start();
    nodes(&s, &[node("only", "2", "", "")]);
    s.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n---\napiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: low}\nvalue: 10\n",
    );
    s.ok_stdin(&["create", "-f", "-"], &pod("low", "1500m", "  priorityClassName: low"));
    assert_eq!(node_of(&s, "low"), "only");
    s.ok_stdin(&["create", "-f", "-"], &pod("high", "1500m", "  priorityClassName: high"));
    // The victim is deleted gracefully; with no kubelet here it stays Terminating, so finish it as a kubelet would.
    eventually("the low-priority pod is being evicted", Duration::from_secs(30), || {
        let p = s.get_json(&["pod", "low"]);
        p["metadata"]["deletionTimestamp"].is_string().then_some(())
    });
    let nominated = s.get_json(&["pod", "high"]);
    assert_eq!(nominated["status"]["nominatedNodeName"], "only", "{nominated}");
    s.ok(&["delete", "pod", "low", "--grace-period=0", "--force"]);
    assert_eq!(node_of(&s, "high"), "only");
}
