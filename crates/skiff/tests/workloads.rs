//! End-to-end: the controllers with real containers. Each test starts `skiff server` with its local agent
//! (runc, CNI) and drives Deployments, Jobs, CronJobs, DaemonSets, StatefulSets, garbage collection,
//! namespace deletion and node loss with the real kubectl, as issue 5 asks to show.

mod e2e;

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::{Agent, Server, eventually};
use serde_json::Value;

/// A container that stays up and exits at once on SIGTERM (so deletions do not wait out the grace period).
const SLEEPER: &str = r#"["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]"#;

fn deployment(name: &str, replicas: u32, image: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: main
        image: {image}
        imagePullPolicy: IfNotPresent
        command: {SLEEPER}
"#
    )
}

/// The pods matching `selector` (in `namespace`), as JSON.
fn pods(s: &Server, namespace: &str, selector: &str) -> Vec<Value> {
    s.get_json(&["pods", "-n", namespace, "-l", selector])["items"].as_array().cloned().unwrap_or_default()
}

fn is_terminating(p: &Value) -> bool {
    !p["metadata"]["deletionTimestamp"].is_null()
}

fn is_running_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn name(p: &Value) -> String {
    p["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

/// Waits until exactly `n` pods match `selector`, none terminating, all Running and Ready; returns them.
#[track_caller]
fn wait_pods_running(s: &Server, namespace: &str, selector: &str, n: usize, timeout: Duration) -> Vec<Value> {
    let mut last = Vec::new();
    let found = eventually_or(timeout, || {
        last = pods(s, namespace, selector);
        (last.len() == n && last.iter().all(|p| !is_terminating(p) && is_running_ready(p))).then(|| last.clone())
    });
    found.unwrap_or_else(|| {
        let summary: Vec<String> = last
            .iter()
            .map(|p| format!("{} phase={} terminating={} node={}", name(p), p["status"]["phase"], is_terminating(p), p["spec"]["nodeName"]))
            .collect();
        panic!("timed out waiting for {n} running pods with {selector} in {namespace}; last seen: {summary:#?}\nserver log tail:\n{}", tail(&s.log_text(), 60))
    })
}

/// Like [`eventually`], but returns None at the deadline so the caller can say what it saw.
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

fn images_of(pods: &[Value]) -> BTreeSet<String> {
    pods.iter().filter_map(|p| p["spec"]["containers"][0]["image"].as_str().map(str::to_string)).collect()
}

#[test]
fn a_deployment_rolls_to_a_new_image_and_back() {
    let s = Server::start_node_with_images(&[], &["busybox:rolled"]);
    s.ok_stdin(&["apply", "-f", "-"], &deployment("roll", 3, "busybox:test"));
    s.ok(&["rollout", "status", "deployment/roll", "--timeout=120s"]);
    let first = wait_pods_running(&s, "default", "app=roll", 3, Duration::from_secs(60));
    assert_eq!(images_of(&first), BTreeSet::from(["busybox:test".to_string()]));

    s.ok(&["set", "image", "deployment/roll", "main=busybox:rolled"]);
    let status = s.ok(&["rollout", "status", "deployment/roll", "--timeout=120s"]);
    assert!(status.contains("successfully rolled out"), "rollout status: {status}");
    let rolled = wait_pods_running(&s, "default", "app=roll", 3, Duration::from_secs(60));
    assert_eq!(images_of(&rolled), BTreeSet::from(["busybox:rolled".to_string()]));
    for p in &rolled {
        let image = p["status"]["containerStatuses"][0]["image"].as_str().unwrap_or_default();
        assert!(image.contains("busybox:rolled"), "the container runs image B: {}", p["status"]);
    }
    let old_names: BTreeSet<String> = first.iter().map(name).collect();
    assert!(rolled.iter().all(|p| !old_names.contains(&name(p))), "every pod was replaced");

    let history = s.ok(&["rollout", "history", "deployment/roll"]);
    let revisions: Vec<&str> = history.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| w.parse::<u32>().is_ok()).collect();
    assert_eq!(revisions, ["1", "2"], "rollout history lists both revisions:\n{history}");
    let revision2 = s.ok(&["rollout", "history", "deployment/roll", "--revision=2"]);
    assert!(revision2.contains("busybox:rolled"), "revision 2 is image B:\n{revision2}");
    let rs = s.get_json(&["replicasets", "-l", "app=roll"]);
    assert_eq!(rs["items"].as_array().unwrap().len(), 2, "one ReplicaSet per revision: {rs}");

    s.ok(&["rollout", "undo", "deployment/roll"]);
    let status = s.ok(&["rollout", "status", "deployment/roll", "--timeout=120s"]);
    assert!(status.contains("successfully rolled out"), "rollout status after undo: {status}");
    let back = wait_pods_running(&s, "default", "app=roll", 3, Duration::from_secs(60));
    assert_eq!(images_of(&back), BTreeSet::from(["busybox:test".to_string()]), "undo brings image A back");
    let d = s.get_json(&["deployment", "roll"]);
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3", "undo is a new revision: {d}");
    let history = s.ok(&["rollout", "history", "deployment/roll"]);
    let revisions: Vec<&str> = history.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| w.parse::<u32>().is_ok()).collect();
    assert_eq!(revisions, ["2", "3"], "revision 1 became revision 3:\n{history}");
}

#[test]
fn kubectl_scale_is_followed_and_a_deleted_pod_is_replaced() {
    let s = Server::start_node();
    s.ok_stdin(&["apply", "-f", "-"], &deployment("scaler", 2, "busybox:test"));
    wait_pods_running(&s, "default", "app=scaler", 2, Duration::from_secs(90));

    s.ok(&["scale", "deployment/scaler", "--replicas=5"]);
    wait_pods_running(&s, "default", "app=scaler", 5, Duration::from_secs(90));
    s.ok(&["rollout", "status", "deployment/scaler", "--timeout=60s"]);
    let d = s.get_json(&["deployment", "scaler"]);
    assert_eq!(d["status"]["readyReplicas"], 5, "{d}");

    s.ok(&["scale", "deployment/scaler", "--replicas=2"]);
    let two = wait_pods_running(&s, "default", "app=scaler", 2, Duration::from_secs(90));
    eventually("the Deployment to report 2 available", Duration::from_secs(30), || {
        let d = s.get_json(&["deployment", "scaler"]);
        (d["status"]["availableReplicas"] == 2 && d["status"]["replicas"] == 2).then_some(())
    });

    let victim = name(&two[0]);
    s.ok(&["delete", "pod", &victim, "--wait=true", "--timeout=60s"]);
    let after = wait_pods_running(&s, "default", "app=scaler", 2, Duration::from_secs(90));
    let names: BTreeSet<String> = after.iter().map(name).collect();
    assert!(!names.contains(&victim), "the deleted pod is gone and replaced: {names:?}");
    assert!(names.contains(&name(&two[1])), "the other pod is untouched: {names:?}");
}

#[test]
fn jobs_complete_or_fail_with_backoff_limit_exceeded() {
    let s = Server::start_node();
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: five}
spec:
  completions: 5
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:test
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "echo piece done"]
---
apiVersion: batch/v1
kind: Job
metadata: {name: doomed}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:test
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "echo failing; exit 3"]
"#,
    );
    // Parallelism is respected while it runs.
    let mut max_active = 0;
    let done = eventually_or(Duration::from_secs(150), || {
        let job = s.get_json(&["job", "five"]);
        max_active = max_active.max(job["status"]["active"].as_u64().unwrap_or(0));
        let running = pods(&s, "default", "job-name=five").iter().filter(|p| p["status"]["phase"] == "Running").count();
        assert!(running <= 2, "at most parallelism=2 pods run at once, saw {running}");
        job["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Complete" && c["status"] == "True").then_some(job)
    });
    let job = done.unwrap_or_else(|| panic!("job five did not complete: {}\n{}", s.get_json(&["job", "five"]), tail(&s.log_text(), 60)));
    assert!(max_active <= 2, "active never exceeds parallelism: {max_active}");
    assert_eq!(job["status"]["succeeded"], 5, "{job}");
    s.ok(&["wait", "--for=condition=complete", "job/five", "--timeout=10s"]);
    let row = s.ok(&["get", "job", "five", "--no-headers"]);
    assert!(row.split_whitespace().any(|c| c == "5/5"), "kubectl get job shows 5/5: {row}");
    let succeeded = pods(&s, "default", "job-name=five").iter().filter(|p| p["status"]["phase"] == "Succeeded").count();
    assert_eq!(succeeded, 5, "five pods succeeded");
    let logs = s.ok(&["logs", "job/five"]);
    assert_eq!(logs.trim(), "piece done");

    s.ok(&["wait", "--for=condition=failed", "job/doomed", "--timeout=150s"]);
    let job = s.get_json(&["job", "doomed"]);
    let failed = job["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Failed").cloned().unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{job}");
    assert_eq!(job["status"]["failed"], 2, "backoffLimit 1 allows two attempts: {job}");
    let failed_pods = pods(&s, "default", "job-name=doomed");
    assert_eq!(failed_pods.len(), 2, "no pod is created after the limit");
    assert!(failed_pods.iter().all(|p| p["status"]["phase"] == "Failed"));
    let exit = &failed_pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"];
    assert_eq!(exit, 3, "the container's exit code is reported: {}", failed_pods[0]["status"]);
}

#[test]
fn a_cronjob_runs_on_schedule() {
    let s = Server::start_node();
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: main
            image: busybox:test
            imagePullPolicy: IfNotPresent
            command: ["sh", "-c", "echo tick"]
"#,
    );
    let job = eventually_or(Duration::from_secs(80), || {
        let jobs = s.get_json(&["jobs"]);
        jobs["items"].as_array()?.iter().find(|j| j["metadata"]["ownerReferences"][0]["name"] == "tick").cloned()
    })
    .unwrap_or_else(|| panic!("the CronJob created no Job within 80 s: {}\n{}", s.get_json(&["cronjob", "tick"]), tail(&s.log_text(), 60)));
    let job_name = name(&job);
    assert!(job_name.starts_with("tick-"), "the Job is named after the CronJob: {job_name}");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    s.ok(&["wait", "--for=condition=complete", &format!("job/{job_name}"), "--timeout=90s"]);
    assert_eq!(s.ok(&["logs", &format!("job/{job_name}")]).trim(), "tick");
    let cj = eventually("the CronJob's status to record the run", Duration::from_secs(30), || {
        let cj = s.get_json(&["cronjob", "tick"]);
        (!cj["status"]["lastScheduleTime"].is_null() && !cj["status"]["lastSuccessfulTime"].is_null()).then_some(cj)
    });
    assert!(cj["status"]["lastScheduleTime"].is_string(), "{cj}");
}

#[test]
fn deleting_a_deployment_or_a_namespace_removes_what_it_owns() {
    let s = Server::start_node();
    s.ok_stdin(&["apply", "-f", "-"], &deployment("gone", 2, "busybox:test"));
    wait_pods_running(&s, "default", "app=gone", 2, Duration::from_secs(90));
    assert_eq!(s.get_json(&["replicasets", "-l", "app=gone"])["items"].as_array().unwrap().len(), 1);

    s.ok(&["delete", "deployment", "gone"]);
    eventually("the garbage collector to remove the ReplicaSet and its pods", Duration::from_secs(90), || {
        let rs = s.get_json(&["replicasets", "-l", "app=gone"]);
        (rs["items"].as_array()?.is_empty() && pods(&s, "default", "app=gone").is_empty()).then_some(())
    });

    s.ok(&["create", "namespace", "doomed"]);
    eventually("the default ServiceAccount in the new namespace", Duration::from_secs(30), || {
        s.kubectl(&["get", "serviceaccount", "default", "-n", "doomed"]).status.success().then_some(())
    });
    s.ok_stdin(&["apply", "-n", "doomed", "-f", "-"], &deployment("inside", 2, "busybox:test"));
    s.ok(&["create", "configmap", "settings", "-n", "doomed", "--from-literal=a=b"]);
    wait_pods_running(&s, "doomed", "app=inside", 2, Duration::from_secs(90));

    s.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    eventually_or(Duration::from_secs(120), || (!s.kubectl(&["get", "namespace", "doomed"]).status.success()).then_some(())).unwrap_or_else(|| {
        let left = s.kubectl(&["get", "all,configmaps,serviceaccounts", "-n", "doomed", "-o", "yaml"]);
        panic!(
            "the namespace was not removed: {}\nleft in it: {}\n{}",
            s.get_json(&["namespace", "doomed"]),
            String::from_utf8_lossy(&left.stdout),
            tail(&s.log_text(), 80)
        )
    });
    for kind in ["pods", "replicasets", "deployments", "configmaps", "serviceaccounts"] {
        let left = s.get_json(&[kind, "-n", "doomed"]);
        assert!(left["items"].as_array().unwrap().is_empty(), "no {kind} left in the deleted namespace: {left}");
    }
}

#[test]
fn a_daemonset_covers_the_node_and_a_statefulset_starts_in_order() {
    let s = Server::start_node();
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: everywhere}}
spec:
  selector: {{matchLabels: {{app: everywhere}}}}
  template:
    metadata: {{labels: {{app: everywhere}}}}
    spec:
      containers:
      - name: main
        image: busybox:test
        imagePullPolicy: IfNotPresent
        command: {SLEEPER}
"#
        ),
    );
    let ds_pods = wait_pods_running(&s, "default", "app=everywhere", 1, Duration::from_secs(90));
    assert_eq!(ds_pods[0]["spec"]["nodeName"], s.node_name().as_str(), "the DaemonSet's pod is on the node");
    eventually("the DaemonSet's status", Duration::from_secs(30), || {
        let ds = s.get_json(&["daemonset", "everywhere"]);
        (ds["status"]["desiredNumberScheduled"] == 1 && ds["status"]["numberReady"] == 1).then_some(())
    });

    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{port: 80}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: web
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: main
        image: busybox:test
        imagePullPolicy: IfNotPresent
        command: {SLEEPER}
"#
        ),
    );
    // OrderedReady: whenever web-1 exists, web-0 is already Running and Ready.
    let mut saw_web0_alone = false;
    let both = eventually_or(Duration::from_secs(120), || {
        let list = pods(&s, "default", "app=web");
        let names: BTreeSet<String> = list.iter().map(name).collect();
        assert!(names.iter().all(|n| n == "web-0" || n == "web-1"), "stable ordinal names only: {names:?}");
        if let Some(_web1) = list.iter().find(|p| name(p) == "web-1") {
            let web0 = list.iter().find(|p| name(p) == "web-0");
            assert!(web0.is_some_and(is_running_ready), "web-1 was created before web-0 was Running and Ready: {list:#?}");
        } else if names.contains("web-0") {
            saw_web0_alone = true;
        }
        (list.len() == 2 && list.iter().all(is_running_ready)).then_some(list)
    })
    .unwrap_or_else(|| panic!("the StatefulSet did not get 2 running pods: {}\n{}", s.get_json(&["pods", "-l", "app=web"]), tail(&s.log_text(), 60)));
    assert!(saw_web0_alone, "web-0 existed on its own before web-1");
    for p in &both {
        assert_eq!(p["spec"]["hostname"], name(p).as_str(), "the pod's hostname is its name");
        assert_eq!(p["spec"]["subdomain"], "web", "the governing Service is the subdomain");
    }
    let web0 = both.iter().find(|p| name(p) == "web-0").unwrap();
    assert_eq!(
        s.ok(&["exec", "web-0", "--", "hostname"]).trim(),
        "web-0",
        "the container sees its stable hostname"
    );

    // A deleted member comes back under the same name (a new pod).
    let old_uid = web0["metadata"]["uid"].as_str().unwrap().to_string();
    s.ok(&["delete", "pod", "web-0", "--wait=true", "--timeout=60s"]);
    let again = wait_pods_running(&s, "default", "app=web", 2, Duration::from_secs(90));
    let new0 = again.iter().find(|p| name(p) == "web-0").expect("web-0 is recreated");
    assert_ne!(new0["metadata"]["uid"].as_str().unwrap(), old_uid, "a new pod with the same name");
    eventually("the StatefulSet's status", Duration::from_secs(30), || {
        let sts = s.get_json(&["statefulset", "web"]);
        (sts["status"]["readyReplicas"] == 2 && sts["status"]["replicas"] == 2).then_some(())
    });
}

#[test]
fn pods_of_a_lost_node_are_evicted_and_replaced_on_the_other_node() {
    let s = Server::start_node_with(&["--node-monitor-grace-period", "10s"]);
    let mut agent = Agent::start(&s, &format!("n2-{}", s.port), &[]);
    let n2 = agent.node_name.clone();
    let node1 = s.node_name();
    eventually_or(Duration::from_secs(60), || {
        let node = s.get_json(&["nodes"]);
        node["items"].as_array()?.iter().find(|n| n["metadata"]["name"] == n2.as_str()).and_then(|n| {
            n["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Ready" && c["status"] == "True").then_some(())
        })
    })
    .unwrap_or_else(|| panic!("node {n2} did not become Ready; agent log:\n{}", tail(&agent.log_text(), 60)));

    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: mover}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: mover}}}}
  template:
    metadata: {{labels: {{app: mover}}}}
    spec:
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            preference:
              matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{n2}]}}]
      tolerations:
      - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}}
      - {{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}}
      containers:
      - name: main
        image: busybox:test
        imagePullPolicy: IfNotPresent
        command: {SLEEPER}
"#
        ),
    );
    let before = wait_pods_running(&s, "default", "app=mover", 2, Duration::from_secs(90));
    let on_n2: BTreeSet<String> = before.iter().filter(|p| p["spec"]["nodeName"] == n2.as_str()).map(name).collect();
    assert!(!on_n2.is_empty(), "the preferred node got pods: {:?}", before.iter().map(|p| (name(p), p["spec"]["nodeName"].clone())).collect::<Vec<_>>());

    agent.kill9();

    let node = eventually_or(Duration::from_secs(60), || {
        let node = s.get_json(&["node", &n2]);
        let unknown = node["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Ready" && c["status"] == "Unknown");
        let tainted = node["spec"]["taints"]
            .as_array()?
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute");
        (unknown && tainted).then_some(node)
    })
    .unwrap_or_else(|| panic!("node {n2} was not marked Unknown and tainted: {}", s.get_json(&["node", &n2])));
    assert!(
        node["spec"]["taints"].as_array().unwrap().iter().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoSchedule"),
        "unreachable NoSchedule too: {node}"
    );

    let mut last = Vec::new();
    eventually_or(Duration::from_secs(90), || {
        last = pods(&s, "default", "app=mover");
        let live: Vec<&Value> = last.iter().filter(|p| !is_terminating(p)).collect();
        let evicted = last.iter().filter(|p| on_n2.contains(&name(p))).all(is_terminating);
        (evicted && live.len() == 2 && live.iter().all(|p| p["spec"]["nodeName"] == node1.as_str() && is_running_ready(p))).then_some(())
    })
    .unwrap_or_else(|| {
        let summary: Vec<String> = last
            .iter()
            .map(|p| format!("{} node={} phase={} terminating={}", name(p), p["spec"]["nodeName"], p["status"]["phase"], is_terminating(p)))
            .collect();
        panic!("the lost node's pods were not replaced on {node1}: {summary:#?}\n{}", tail(&s.log_text(), 80))
    });
    let d = s.get_json(&["deployment", "mover"]);
    assert_eq!(d["status"]["availableReplicas"], 2, "the Deployment is whole again: {d}");
}
