//! End-to-end: Services, the nftables proxy, cluster DNS and the multi-node pod network, on a lab of real
//! nodes (network namespaces on one bridge, each with its own `skiff agent`, runc and CNI) joined to one
//! control-plane server, driven with the real kubectl. Needs root.

mod e2e;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::Duration;

use e2e::lab::Lab;
use e2e::eventually;
use serde_json::Value;

const IMAGE: &str = "docker.io/library/busybox:test";

/// A Deployment of busybox httpd pods answering their own name on the named port `http` (8080), Ready
/// while `/tmp/unready` does not exist, spread over the nodes.
fn web(name: &str, replicas: u32) -> String {
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
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {{matchLabels: {{app: {name}}}}}}}
      containers:
      - name: web
        image: "{IMAGE}"
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -vv -p 8080 -h /www"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          exec: {{command: ["sh", "-c", "test ! -f /tmp/unready"]}}
          periodSeconds: 1
          failureThreshold: 1
"#
    )
}

fn client_pod(name: &str, node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: "{IMAGE}"
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#
    )
}

fn ready_pods(lab: &Lab, selector: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} ready pods {selector}"), Duration::from_secs(120), || {
        let pods = lab.server.get_json(&["pods", "-l", selector]);
        let ready: Vec<Value> = pods["items"]
            .as_array()?
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| p["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")))
            .cloned()
            .collect();
        (ready.len() == n).then_some(ready)
    })
}

fn wait_running(lab: &Lab, pod: &str) {
    eventually(&format!("pod {pod} running"), Duration::from_secs(90), || {
        let p = lab.server.get_json(&["pod", pod]);
        (p["status"]["phase"] == "Running").then_some(())
    });
}

/// Runs a shell line in a pod; returns stdout (fails the test when kubectl exec fails).
#[track_caller]
fn exec(lab: &Lab, pod: &str, script: &str) -> String {
    lab.server.ok(&["exec", pod, "--", "sh", "-c", script])
}

/// (busybox 1.35's `wget -T` crashes; `timeout` bounds a request instead.)
/// The set of answers of `n` requests to `url` from `pod` (each answer is a backend's hostname).
fn answers(lab: &Lab, pod: &str, url: &str, n: usize) -> Vec<String> {
    let out = exec(lab, pod, &format!("for i in $(seq {n}); do timeout 5 wget -q -O - {url} 2>&1 || echo FAILED; done"));
    eprintln!("{n} requests to {url} from {pod}: {out:?}");
    out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

fn names(pods: &[Value]) -> BTreeSet<String> {
    pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_service_balances_over_ready_pods_on_two_nodes_and_is_reachable_from_the_host() {
    let lab = Lab::start(2, &[]);
    let s = &lab.server;
    s.ok_stdin(&["apply", "-f", "-"], &web("web", 3));
    s.ok_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}]\n");
    s.ok_stdin(&["apply", "-f", "-"], &client_pod("client", &lab.nodes[0].name));
    let pods = ready_pods(&lab, "app=web", 3);
    wait_running(&lab, "client");
    let nodes: BTreeSet<String> = pods.iter().map(|p| p["spec"]["nodeName"].as_str().unwrap().to_string()).collect();
    assert_eq!(nodes.len(), 2, "the pods spread over both nodes: {nodes:?}");

    // 30 requests by name from a client pod reach all three backends, across nodes.
    let url = "http://web.default.svc.cluster.local";
    let got = eventually("all three backends answer", Duration::from_secs(60), || {
        let got: BTreeSet<String> = answers(&lab, "client", url, 30).into_iter().collect();
        (got == names(&pods)).then_some(got)
    });
    assert!(!got.contains("FAILED"));

    // A pod on one node reaches a pod on the other directly, with its own address (no masquerade).
    let other = pods.iter().find(|p| p["spec"]["nodeName"] != lab.nodes[0].name.as_str()).expect("a backend on node 1");
    let ip = other["status"]["podIP"].as_str().unwrap();
    assert_eq!(exec(&lab, "client", &format!("timeout 5 wget -q -O - http://{ip}:8080")).trim(), other["metadata"]["name"]);
    let client_ip = lab.server.get_json(&["pod", "client"])["status"]["podIP"].as_str().unwrap().to_string();
    let backend_log = lab.server.ok(&["logs", other["metadata"]["name"].as_str().unwrap()]);
    assert!(backend_log.contains(&client_ip), "the backend saw the client pod's own address {client_ip}: {backend_log}");

    // A pod failing readiness stops receiving traffic.
    let sick = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    exec(&lab, &sick, "touch /tmp/unready");
    eventually("the unready pod's endpoint is not ready", Duration::from_secs(30), || {
        let slices = s.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
        let eps: Vec<Value> = slices["items"].as_array()?.iter().flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default()).collect();
        eps.iter().any(|e| e["targetRef"]["name"] == sick.as_str() && e["conditions"]["ready"] == false).then_some(())
    });
    let after = eventually("traffic avoids the unready pod", Duration::from_secs(20), || {
        let got = answers(&lab, "client", url, 30);
        (!got.contains(&sick) && !got.iter().any(|a| a == "FAILED")).then_some(got)
    });
    assert_eq!(after.into_iter().collect::<BTreeSet<_>>().len(), 2, "the two ready pods still answer");
    exec(&lab, &sick, "rm /tmp/unready");

    // Scaling to 1 and back keeps the Service answering.
    s.ok(&["scale", "deployment", "web", "--replicas=1"]);
    ready_pods(&lab, "app=web", 1);
    eventually("one backend answers every request", Duration::from_secs(30), || {
        let got = answers(&lab, "client", url, 10);
        (got.len() == 10 && got.iter().collect::<BTreeSet<_>>().len() == 1 && !got.iter().any(|a| a == "FAILED")).then_some(())
    });
    s.ok(&["scale", "deployment", "web", "--replicas=3"]);
    let pods = ready_pods(&lab, "app=web", 3);
    eventually("three backends again", Duration::from_secs(60), || {
        let got: BTreeSet<String> = answers(&lab, "client", url, 30).into_iter().collect();
        (got == names(&pods)).then_some(())
    });

    // NodePort and LoadBalancer from the host, on every node's address.
    s.ok(&["patch", "service", "web", "-p", r#"{"spec":{"type":"LoadBalancer"}}"#]);
    let svc = eventually("the LoadBalancer gets the node addresses", Duration::from_secs(30), || {
        let svc = s.get_json(&["service", "web"]);
        (svc["status"]["loadBalancer"]["ingress"].as_array().map(Vec::len) == Some(2)).then_some(svc)
    });
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().expect("a node port");
    for node in &lab.nodes {
        for url in [format!("http://{}:{node_port}/", node.ip), format!("http://{}:80/", node.ip)] {
            eventually(&format!("{url} answers from the host"), Duration::from_secs(20), || {
                let out = std::process::Command::new("curl").args(["-s", "-m", "3", &url]).output().ok()?;
                let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
                names(&pods).contains(&body).then_some(())
            });
        }
    }
}

/// A DNS server for one outside name, on a loopback address of its own (port 53, as resolv.conf wants):
/// answers `outside.example.` with 192.0.2.123 and everything else with NXDOMAIN.
struct FakeUpstream {
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeUpstream {
    fn start(addr: &str) -> FakeUpstream {
        let socket = UdpSocket::bind((addr, 53)).unwrap_or_else(|e| panic!("cannot listen on {addr}:53 for the fake upstream resolver: {e}"));
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
                if let Some(answer) = answer(&buf[..n]) {
                    let _ = socket.send_to(&answer, peer);
                }
            }
        });
        FakeUpstream { addr: addr.to_string(), stop, thread: Some(thread) }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The fake upstream's answer to one query (None for what is not a query).
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to the zero byte, then type and class.
    let mut i = 12;
    let mut name = Vec::new();
    while *query.get(i)? != 0 {
        let len = query[i] as usize;
        name.push(String::from_utf8_lossy(query.get(i + 1..i + 1 + len)?).to_lowercase());
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*query.get(i + 1)?, *query.get(i + 2)?]);
    let question_end = i + 5;
    let known = name.join(".") == "outside.example";
    let mut out = query[..2].to_vec();
    out.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]); // response, RD+RA; NOERROR or NXDOMAIN
    out.extend_from_slice(&[0, 1, 0, u8::from(known && qtype == 1), 0, 0, 0, 0]);
    out.extend_from_slice(&query[12..question_end]);
    if known && qtype == 1 {
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 123]);
    }
    Some(out)
}

#[test]
fn cluster_dns_answers_services_headless_statefulset_pods_and_outside_names() {
    let loopback = format!("127.77.{}.1", std::process::id() % 250);
    let upstream = FakeUpstream::start(&loopback);
    let resolv = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(resolv.path(), format!("nameserver {}\n", upstream.addr)).unwrap();
    let resolv_path = resolv.path().to_str().unwrap().to_string();
    let lab = Lab::start(1, &["--resolv-conf", &resolv_path]);
    let s = &lab.server;
    s.ok_stdin(&["apply", "-f", "-"], &client_pod("client", &lab.nodes[0].name));
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
  ports: [{{name: tcp, port: 7000}}]
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
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: "{IMAGE}"
        imagePullPolicy: Never
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
---
apiVersion: v1
kind: Service
metadata: {{name: plain}}
spec:
  selector: {{app: nothing}}
  ports: [{{port: 80}}]
"#
        ),
    );
    wait_running(&lab, "client");
    let db = ready_pods(&lab, "app=db", 2);
    let plain_ip = s.get_json(&["service", "plain"])["spec"]["clusterIP"].as_str().unwrap().to_string();

    // The pod's resolv.conf points at the cluster DNS Service with the usual search list.
    let resolv_conf = exec(&lab, "client", "cat /etc/resolv.conf");
    let dns_ip = s.get_json(&["service", "-n", "kube-system", "kube-dns"])["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(resolv_conf.contains(&format!("nameserver {dns_ip}")), "{resolv_conf}");
    assert!(resolv_conf.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv_conf}");

    let lookup = |name: &str| -> String {
        let out = s.kubectl(&["exec", "client", "--", "nslookup", name]);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    // A Service by its short name (search list) and full name.
    let out = eventually("a Service resolves", Duration::from_secs(30), || {
        let out = lookup("plain.default.svc.cluster.local");
        out.contains(&plain_ip).then_some(out)
    });
    assert!(out.contains(&plain_ip), "{out}\n{}", lab.logs());
    // The headless Service answers its pods' addresses; each StatefulSet pod has its own name.
    let out = lookup("db.default.svc.cluster.local");
    for p in &db {
        assert!(out.contains(p["status"]["podIP"].as_str().unwrap()), "headless answer lacks a pod: {out}");
    }
    let db0_ip = db.iter().find(|p| p["metadata"]["name"] == "db-0").unwrap()["status"]["podIP"].as_str().unwrap().to_string();
    let out = lookup("db-0.db.default.svc.cluster.local");
    assert!(out.contains(&db0_ip), "{out}");
    // A name that does not exist is NXDOMAIN; an outside name comes from the host's resolver.
    let out = lookup("missing.default.svc.cluster.local");
    assert!(out.contains("NXDOMAIN"), "{out}");
    let out = lookup("outside.example");
    assert!(out.contains("192.0.2.123"), "the outside name is answered by the upstream: {out}\n{}", lab.logs());
}

#[test]
fn a_service_without_endpoints_refuses_and_flushed_rules_come_back() {
    let lab = Lab::start(1, &[]);
    let s = &lab.server;
    s.ok_stdin(&["apply", "-f", "-"], &client_pod("client", &lab.nodes[0].name));
    s.ok_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Service\nmetadata: {name: empty}\nspec:\n  selector: {app: nothing}\n  ports: [{port: 80}]\n");
    s.ok_stdin(&["apply", "-f", "-"], &web("web", 1));
    s.ok_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n");
    wait_running(&lab, "client");
    let pods = ready_pods(&lab, "app=web", 1);
    let empty_ip = s.get_json(&["service", "empty"])["spec"]["clusterIP"].as_str().unwrap().to_string();
    let web_ip = s.get_json(&["service", "web"])["spec"]["clusterIP"].as_str().unwrap().to_string();

    // No endpoints: refused at once, not a time-out.
    eventually("the empty Service refuses connections", Duration::from_secs(30), || {
        let out = s.kubectl(&["exec", "client", "--", "sh", "-c", &format!("timeout 10 wget -q -O - http://{empty_ip}/ 2>&1; true")]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        eprintln!("wget of the empty Service: {text:?}");
        text.contains("refused").then_some(())
    });

    let name = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    eventually("the web Service answers", Duration::from_secs(30), || (exec(&lab, "client", &format!("timeout 5 wget -q -O - http://{web_ip}/ || true")).trim() == name).then_some(()));
    // Someone flushes the proxy's table by hand: the proxy notices and restores it.
    let (ok, out) = lab.in_node(0, &["nft", "flush", "table", "ip", "skiff"]);
    assert!(ok, "nft flush failed: {out}");
    eventually("the Service answers again after the flush", Duration::from_secs(60), || {
        (exec(&lab, "client", &format!("timeout 5 wget -q -O - http://{web_ip}/ || true")).trim() == name).then_some(())
    });
}
