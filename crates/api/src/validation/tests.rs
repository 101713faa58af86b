//! Validation tests across kinds: realistic manifests (as kubectl sends them) pass after defaulting, each
//! rule reports upstream's field path and message, every error is returned, and updates keep what is
//! immutable.

use serde_json::{json, Value};

use super::{validate, validate_update};
use crate::defaults::{apply_defaults, generate_job_selector};
use crate::resources::find;
use crate::status::FieldError;

fn defaulted(group: &str, version: &str, plural: &str, mut obj: Value) -> Value {
    apply_defaults(find(group, version, plural).unwrap(), &mut obj);
    obj
}

/// Defaults then validates, as the registry does on create.
fn check(group: &str, version: &str, plural: &str, obj: Value) -> Vec<String> {
    let r = find(group, version, plural).unwrap();
    let obj = defaulted(group, version, plural, obj);
    validate(r, &obj).iter().map(FieldError::to_line).collect()
}

/// Defaults both, then runs `validate_update`.
fn check_update(group: &str, version: &str, plural: &str, new: Value, old: Value) -> Vec<String> {
    let r = find(group, version, plural).unwrap();
    let (new, old) = (defaulted(group, version, plural, new), defaulted(group, version, plural, old));
    validate_update(r, &new, &old).iter().map(FieldError::to_line).collect()
}

fn ok(group: &str, version: &str, plural: &str, obj: Value) {
    let errs = check(group, version, plural, obj);
    assert!(errs.is_empty(), "{plural}: {errs:#?}");
}

fn md(name: &str) -> Value {
    json!({"name": name, "namespace": "default"})
}

fn pod_spec() -> Value {
    json!({"containers": [{"name": "app", "image": "nginx:1.27", "resources": {}}]})
}

fn template(app: &str) -> Value {
    json!({"metadata": {"creationTimestamp": null, "labels": {"app": app}}, "spec": pod_spec()})
}

// ---------------------------------------------------------------------------------------------------
// Valid objects

#[test]
fn realistic_pods_pass() {
    ok("", "v1", "pods", json!({"apiVersion": "v1", "kind": "Pod", "metadata": md("web"), "spec": pod_spec()}));
    ok(
        "",
        "v1",
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "full", "namespace": "prod", "labels": {"app.kubernetes.io/name": "full", "tier": ""},
                         "annotations": {"Example.com/Note": "x"}, "generateName": "full-",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true}],
                         "finalizers": ["example.com/cleanup"]},
            "spec": {
                "serviceAccountName": "builder",
                "initContainers": [
                    {"name": "init", "image": "busybox", "command": ["sh", "-c", "true"]},
                    {"name": "sidecar", "image": "envoy:v1", "restartPolicy": "Always", "readinessProbe": {"tcpSocket": {"port": 9901}}}],
                "containers": [{
                    "name": "app", "image": "registry.local:5000/team/app@sha256:0123", "args": ["--port=8080"],
                    "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
                            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                            {"name": "weird.name-1", "value": "ok"}],
                    "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": 1, "memory": "1Gi", "nvidia.com/gpu": 1}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "httpHeaders": [{"name": "X-Probe", "value": "1"}]}, "initialDelaySeconds": 5},
                    "readinessProbe": {"grpc": {"port": 9090}},
                    "startupProbe": {"exec": {"command": ["cat", "/ready"]}, "failureThreshold": 30},
                    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "config", "mountPath": "/etc/app", "readOnly": true},
                                     {"name": "token", "mountPath": "/var/run/secrets/tokens"}],
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "allowPrivilegeEscalation": false,
                                        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}}],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "config", "configMap": {"name": "settings", "items": [{"key": "app.yaml", "path": "app.yaml"}]}},
                    {"name": "token", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600, "audience": "vault"}},
                        {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}},
                    {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
                "securityContext": {"fsGroup": 2000, "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}]},
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                                {"operator": "Exists"}],
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                                               "labelSelector": {"matchLabels": {"app": "full"}}}],
                "dnsPolicy": "None", "dnsConfig": {"nameservers": ["10.96.0.10"], "searches": ["svc.cluster.local", "_tcp.example.com"], "options": [{"name": "ndots", "value": "2"}]},
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["db.local"]}],
                "hostname": "full", "subdomain": "headless", "activeDeadlineSeconds": 600, "priorityClassName": "high"}}),
    );
}

#[test]
fn workload_controllers_pass() {
    // `kubectl create deployment web --image=nginx` (protobuf decoded: explicit zero values included).
    ok(
        "apps",
        "v1",
        "deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "generateName": "", "creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "strategy": {},
                     "template": {"metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}},
                     "minReadySeconds": 0},
            "status": {}}),
    );
    ok(
        "apps",
        "v1",
        "replicasets",
        json!({"metadata": md("web-5d4f"), "spec": {"replicas": 3,
            "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}, "template": template("web")}}),
    );
    ok(
        "apps",
        "v1",
        "statefulsets",
        json!({"metadata": md("db"), "spec": {"serviceName": "db", "replicas": 3, "selector": {"matchLabels": {"app": "db"}},
            "template": template("db"),
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "10Gi"}}}}]}}),
    );
    ok(
        "apps",
        "v1",
        "daemonsets",
        json!({"metadata": md("agent"), "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent")}}),
    );
    ok(
        "",
        "v1",
        "replicationcontrollers",
        json!({"metadata": md("legacy"), "spec": {"replicas": 2, "template": template("legacy")}}),
    );
    ok("", "v1", "podtemplates", json!({"metadata": md("tpl"), "template": template("tpl")}));
    ok(
        "apps",
        "v1",
        "controllerrevisions",
        json!({"metadata": md("web-1"), "data": {"spec": {}}, "revision": 1}),
    );
}

#[test]
fn jobs_pass_once_the_selector_is_generated() {
    let r = find("batch", "v1", "jobs").unwrap();
    let mut j = defaulted(
        "batch",
        "v1",
        "jobs",
        json!({"metadata": {"name": "pi", "namespace": "default", "uid": "7f9c"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "pi", "image": "perl:5.34", "command": ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"]}]}},
                "backoffLimit": 4}}),
    );
    generate_job_selector(&mut j);
    assert_eq!(validate(r, &j), vec![]);
    // Without generation the selector is missing, as upstream would report.
    let raw = defaulted("batch", "v1", "jobs", json!({"metadata": md("x"), "spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}]}}}}));
    let lines: Vec<String> = validate(r, &raw).iter().map(FieldError::to_line).collect();
    assert_eq!(lines, vec!["spec.selector: Required value"]);
    ok(
        "batch",
        "v1",
        "cronjobs",
        json!({"metadata": md("nightly"), "spec": {"schedule": "0 3 * * *", "timeZone": "UTC",
            "jobTemplate": {"metadata": {"creationTimestamp": null}, "spec": {"template": {"metadata": {"creationTimestamp": null},
                "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "backup", "image": "backup:2", "resources": {}}]}}}}}}),
    );
}

#[test]
fn core_kinds_pass() {
    ok("", "v1", "services", json!({"metadata": md("web"), "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}));
    ok(
        "",
        "v1",
        "services",
        json!({"metadata": md("multi"), "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080},
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"}]}}),
    );
    ok(
        "",
        "v1",
        "services",
        json!({"metadata": md("lb"), "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000,
            "loadBalancerSourceRanges": ["10.0.0.0/8"], "ports": [{"port": 443}]}}),
    );
    ok("", "v1", "services", json!({"metadata": md("headless"), "spec": {"clusterIP": "None", "selector": {"app": "db"}}}));
    ok("", "v1", "services", json!({"metadata": md("ext"), "spec": {"type": "ExternalName", "externalName": "db.example.com."}}));
    ok("", "v1", "configmaps", json!({"metadata": md("settings"), "data": {"app.yaml": "a: 1", "KEY_2": "v"}, "binaryData": {"blob": "AAEC"}}));
    ok("", "v1", "secrets", json!({"metadata": md("db"), "type": "", "data": {"password": "c2VjcmV0"}, "stringData": {"user": "admin"}}));
    ok(
        "",
        "v1",
        "secrets",
        json!({"metadata": md("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "Y3J0", "tls.key": "a2V5"}}),
    );
    ok(
        "",
        "v1",
        "secrets",
        json!({"metadata": md("pull"), "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "eyJhdXRocyI6e319"}}),
    );
    ok("", "v1", "namespaces", json!({"metadata": {"name": "team-a"}, "spec": {}}));
    ok("", "v1", "serviceaccounts", json!({"metadata": md("builder"), "secrets": [{"name": "builder-token"}]}));
    ok(
        "",
        "v1",
        "nodes",
        json!({"metadata": {"name": "node-1.example", "labels": {"kubernetes.io/hostname": "node-1"}},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
    );
    ok(
        "",
        "v1",
        "events",
        json!({"metadata": {"name": "web.17a8c9f0e2b2c3d4", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web"}, "reason": "Started", "message": "Started container",
            "source": {"component": "kubelet"}, "type": "Normal", "count": 1}),
    );
    ok(
        "events.k8s.io",
        "v1",
        "events",
        json!({"metadata": md("web.1"), "eventTime": "2025-01-01T00:00:00.000000Z", "reportingController": "skiff.dev/scheduler",
            "reportingInstance": "node-1", "action": "Binding", "reason": "Scheduled", "type": "Normal",
            "regarding": {"kind": "Pod", "namespace": "default", "name": "web"}, "note": "assigned"}),
    );
    // core/v1 new-style events carry the reporting controller as reportingComponent.
    ok(
        "",
        "v1",
        "events",
        json!({"metadata": md("web.2"), "eventTime": "2025-01-01T00:00:00.000000Z", "reportingComponent": "skiff.dev/volume",
            "reportingInstance": "node-1", "action": "Provisioning", "reason": "Provisioned", "type": "Normal",
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web"}, "message": "done"}),
    );
    ok(
        "",
        "v1",
        "persistentvolumes",
        json!({"metadata": {"name": "pv-1"}, "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/srv/pv-1"}, "storageClassName": "manual"}}),
    );
    ok(
        "",
        "v1",
        "persistentvolumeclaims",
        json!({"metadata": md("data"), "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "local-path"}}),
    );
    ok("", "v1", "resourcequotas", json!({"metadata": md("q"), "spec": {"hard": {"pods": "10", "requests.cpu": "4", "count/deployments.apps": 5}}}));
    ok(
        "",
        "v1",
        "limitranges",
        json!({"metadata": md("lr"), "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"cpu": "100m"}}]}}),
    );
    ok(
        "",
        "v1",
        "endpoints",
        json!({"metadata": md("web"), "subsets": [{"addresses": [{"ip": "10.244.1.5", "nodeName": "node-1"}], "ports": [{"port": 8080}]}]}),
    );
}

#[test]
fn other_groups_pass() {
    ok(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        json!({"metadata": md("web"), "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
    );
    ok(
        "autoscaling",
        "v1",
        "horizontalpodautoscalers",
        json!({"metadata": md("web"), "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 3,
            "targetCPUUtilizationPercentage": 50}}),
    );
    ok("coordination.k8s.io", "v1", "leases", json!({"metadata": md("lock"), "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}));
    ok(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        json!({"metadata": md("web-abc"), "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 8080}]}),
    );
    let rbac = "rbac.authorization.k8s.io";
    ok(rbac, "v1", "roles", json!({"metadata": md("reader"), "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}));
    ok(
        rbac,
        "v1",
        "clusterroles",
        json!({"metadata": {"name": "system:metrics"}, "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]}),
    );
    ok(
        rbac,
        "v1",
        "rolebindings",
        json!({"metadata": md("read"), "roleRef": {"kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "builder"}, {"kind": "User", "name": "jane@example.com"}]}),
    );
    ok(
        rbac,
        "v1",
        "clusterrolebindings",
        json!({"metadata": {"name": "admins"}, "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "Group", "name": "system:masters"}, {"kind": "ServiceAccount", "name": "ci", "namespace": "ci"}]}),
    );
    ok("storage.k8s.io", "v1", "storageclasses", json!({"metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path"}));
    ok("storage.k8s.io", "v1", "csidrivers", json!({"metadata": {"name": "hostpath.csi.k8s.io"}, "spec": {}}));
    ok(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        json!({"metadata": md("deny"), "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
            {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {}}], "ports": [{"port": 80}, {"port": "http", "protocol": "TCP"}]}]}}),
    );
    ok(
        "networking.k8s.io",
        "v1",
        "ingresses",
        json!({"metadata": md("web"), "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["*.example.com"], "secretName": "tls"}],
            "rules": [{"host": "www.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    );
    ok("networking.k8s.io", "v1", "ingressclasses", json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}));
    ok("policy", "v1", "poddisruptionbudgets", json!({"metadata": md("web"), "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}}));
    ok("scheduling.k8s.io", "v1", "priorityclasses", json!({"metadata": {"name": "high"}, "value": 1000000, "description": "x"}));
}

// ---------------------------------------------------------------------------------------------------
// Rules and their paths

#[test]
fn pod_rules() {
    let errs = check("", "v1", "pods", json!({"metadata": md("p"), "spec": {"containers": []}}));
    assert_eq!(errs, vec!["spec.containers: Required value"]);
    let errs = check(
        "",
        "v1",
        "pods",
        json!({"metadata": md("p"), "spec": {"restartPolicy": "Sometimes", "dnsPolicy": "Custom",
            "containers": [{"name": "c", "ports": [{"containerPort": 70000, "protocol": "ICMP", "name": "HTTP"}, {}]},
                           {"name": "c", "image": "i", "env": [{"name": "A=B"}], "volumeMounts": [{"name": "missing", "mountPath": "/m"}],
                            "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
                            "livenessProbe": {"exec": {"command": ["x"]}, "httpGet": {"port": 80}}}],
            "volumes": [{"name": "Bad_Name"}, {"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]}}),
    );
    assert_eq!(
        errs,
        vec![
            "spec.volumes[0].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            "spec.volumes[2].name: Duplicate value: \"v\"",
            "spec.containers[0].image: Required value",
            "spec.containers[0].ports[0].name: Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            "spec.containers[0].ports[0].name: Invalid value: \"HTTP\": must contain at least one letter (a-z)",
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.containers[0].ports[1].containerPort: Required value",
            "spec.containers[1].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            "spec.containers[1].volumeMounts[0].name: Not found: \"missing\"",
            "spec.containers[1].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            "spec.containers[1].name: Duplicate value: \"c\"",
            "spec.containers[1].livenessProbe.httpGet: Forbidden: may not specify more than 1 handler type",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            "spec.dnsPolicy: Unsupported value: \"Custom\": supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\"",
        ]
    );
}

#[test]
fn pod_rules_more() {
    let errs = check(
        "",
        "v1",
        "pods",
        json!({"metadata": md("p"), "spec": {"containers": [{"name": "c", "image": "i",
            "readinessProbe": {}, "resources": {"limits": {"nvidia.com/gpu": "1.5", "foo": "1"}, "requests": {"memory": "-1"}}}],
            "tolerations": [{"value": "x"}], "activeDeadlineSeconds": 0}}),
    );
    assert_eq!(
        errs,
        vec![
            "spec.containers[0].resources.limits[nvidia.com/gpu]: Invalid value: \"1.5\": must be an integer",
            "spec.containers[0].resources.limits[foo]: Invalid value: \"foo\": must be a standard resource for containers",
            "spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0",
            // Pods default requests to limits, so the limits' problems show up again under requests.
            "spec.containers[0].resources.requests[nvidia.com/gpu]: Invalid value: \"1.5\": must be an integer",
            "spec.containers[0].resources.requests[foo]: Invalid value: \"foo\": must be a standard resource for containers",
            "spec.containers[0].readinessProbe: Required value: must specify a handler type",
            "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
            "spec.tolerations[0].operator: Invalid value: \"\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
        ]
    );
    let bad_quantity = check("", "v1", "pods", json!({"metadata": md("p"), "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "lots"}}}]}}));
    assert_eq!(
        bad_quantity,
        vec!["spec.containers[0].resources.requests[cpu]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"]
    );
}

#[test]
fn affinity_rules() {
    let errs = check(
        "",
        "v1",
        "pods",
        json!({"metadata": md("p"), "spec": {"containers": [{"name": "c", "image": "i"}], "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "Equals", "values": ["a"]}, {"key": "disk", "operator": "In"}]}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "preference": {}}]},
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "p"}}}]}}}}),
    );
    assert_eq!(
        errs,
        vec![
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator: Invalid value: \"Equals\": not a valid selector operator",
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
            "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100",
            "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Required value: can not be empty",
        ]
    );
}

#[test]
fn metadata_rules() {
    let errs = check("", "v1", "configmaps", json!({"metadata": {"name": "Bad_Name", "namespace": "default"}}));
    assert_eq!(
        errs,
        vec!["metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
    );
    let errs = check("", "v1", "namespaces", json!({"metadata": {"name": "team", "namespace": "default"}}));
    assert_eq!(errs, vec!["metadata.namespace: Forbidden: not allowed on this type"]);
    let errs = check("rbac.authorization.k8s.io", "v1", "roles", json!({"metadata": {"name": "a/b", "namespace": "d"}}));
    assert_eq!(errs, vec!["metadata.name: Invalid value: \"a/b\": may not contain '/'"]);
}

#[test]
fn controller_rules() {
    let errs = check(
        "apps",
        "v1",
        "deployments",
        json!({"metadata": md("d"), "spec": {"replicas": -1, "selector": {"matchLabels": {"app": "y"}}, "template": template("x"),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}}),
    );
    assert_eq!(
        errs,
        vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0",
        ]
    );
    let errs = check("apps", "v1", "deployments", json!({"metadata": md("d"), "spec": {"template": template("x")}}));
    assert_eq!(errs, vec!["spec.selector: Required value"]);
    let errs = check("apps", "v1", "replicasets", json!({"metadata": md("r"), "spec": {"selector": {}, "template": template("x")}}));
    assert_eq!(
        errs,
        vec!["spec.selector: Invalid value: &v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]
    );
    let mut never = template("x");
    never["spec"]["restartPolicy"] = json!("Never");
    let errs = check("apps", "v1", "daemonsets", json!({"metadata": md("ds"), "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": never}}));
    assert_eq!(errs, vec!["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""]);
    let errs = check(
        "apps",
        "v1",
        "statefulsets",
        json!({"metadata": md("s"), "spec": {"podManagementPolicy": "Random", "selector": {"matchLabels": {"app": "x"}}, "template": template("x"),
            "updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}}}}),
    );
    assert_eq!(
        errs,
        vec![
            "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'",
            "spec.updateStrategy.rollingUpdate: Invalid value: {\"partition\":1}: only allowed for updateStrategy 'RollingUpdate'",
        ]
    );
    let errs = check("", "v1", "replicationcontrollers", json!({"metadata": md("rc"), "spec": {"selector": {"app": "y"}, "template": template("x")}}));
    assert_eq!(errs, vec!["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"]);
}

#[test]
fn job_rules() {
    let r = find("batch", "v1", "jobs").unwrap();
    let mut j = defaulted(
        "batch",
        "v1",
        "jobs",
        json!({"metadata": {"name": "j", "namespace": "d", "uid": "u"}, "spec": {"parallelism": -1, "backoffLimit": -2,
            "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
    );
    generate_job_selector(&mut j);
    let lines: Vec<String> = validate(r, &j).iter().map(FieldError::to_line).collect();
    assert_eq!(
        lines,
        vec![
            "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
            "spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0",
            "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
        ]
    );
    let errs = check(
        "batch",
        "v1",
        "cronjobs",
        json!({"metadata": md("c"), "spec": {"schedule": "61 * * *", "concurrencyPolicy": "Sometimes",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}}),
    );
    assert_eq!(
        errs,
        vec![
            "spec.schedule: Invalid value: \"61 * * *\": expected exactly 5 fields, found 4: [61 * * *]",
            "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
        ]
    );
    let errs = check("batch", "v1", "cronjobs", json!({"metadata": md("c"), "spec": {"jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}}));
    assert_eq!(errs, vec!["spec.schedule: Required value"]);
}

#[test]
fn service_rules() {
    let errs = check(
        "",
        "v1",
        "services",
        json!({"metadata": md("svc"), "spec": {"type": "Magic", "ports": [{"port": 0}, {"name": "a", "port": 80}, {"name": "a", "port": 80}]}}),
    );
    assert_eq!(
        errs,
        vec![
            "spec.ports[0].name: Required value",
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[2].name: Duplicate value: \"a\"",
            "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            "spec.ports[2]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
        ]
    );
    assert_eq!(check("", "v1", "services", json!({"metadata": md("svc"), "spec": {}})), vec!["spec.ports: Required value"]);
    assert_eq!(
        check("", "v1", "services", json!({"metadata": md("svc"), "spec": {"type": "ExternalName"}})),
        vec!["spec.externalName: Required value"]
    );
    assert_eq!(
        check("", "v1", "services", json!({"metadata": md("svc"), "spec": {"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}})),
        vec!["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"]
    );
    assert_eq!(
        check("", "v1", "services", json!({"metadata": {"name": "1svc", "namespace": "d"}, "spec": {"ports": [{"port": 80}]}})),
        vec!["metadata.name: Invalid value: \"1svc\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]
    );
}

#[test]
fn config_and_secret_rules() {
    let errs = check("", "v1", "configmaps", json!({"metadata": md("c"), "data": {"bad key": "x", "big": "x".repeat(1024 * 1024)}}));
    assert_eq!(
        errs,
        vec![
            "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ": Too long: may not be more than 1048576 bytes",
        ]
    );
    assert_eq!(
        check("", "v1", "secrets", json!({"metadata": md("s"), "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}})),
        vec!["data[tls.key]: Required value"]
    );
    assert_eq!(
        check("", "v1", "secrets", json!({"metadata": md("s"), "type": "kubernetes.io/dockerconfigjson"})),
        vec!["data[.dockerconfigjson]: Required value"]
    );
    let not_json = check("", "v1", "secrets", json!({"metadata": md("s"), "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "nope"}}));
    assert_eq!(not_json.len(), 1);
    assert!(not_json[0].starts_with("data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": "));
    assert_eq!(
        check("", "v1", "secrets", json!({"metadata": md("s"), "data": {"k": "%%%"}})),
        vec!["data[k]: Invalid value: \"%%%\": illegal base64 data at input byte 0"]
    );
}

#[test]
fn storage_rules() {
    assert_eq!(
        check("", "v1", "persistentvolumeclaims", json!({"metadata": md("c"), "spec": {}})),
        vec!["spec.accessModes: Required value: at least 1 access mode is required", "spec.resources[storage]: Required value"]
    );
    assert_eq!(
        check("", "v1", "persistentvolumes", json!({"metadata": {"name": "pv"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/a"}, "nfs": {"server": "s", "path": "/b"}}})),
        vec!["spec.nfs: Forbidden: may not specify more than 1 volume type"]
    );
    assert_eq!(
        check("", "v1", "persistentvolumes", json!({"metadata": {"name": "pv"}, "spec": {"accessModes": ["ReadWriteOnce"]}})),
        vec![
            "spec.capacity: Required value",
            "spec.capacity: Unsupported value: null: supported values: \"storage\"",
            "spec: Required value: must specify a volume type",
        ]
    );
}

#[test]
fn other_group_rules() {
    let rbac = "rbac.authorization.k8s.io";
    assert_eq!(
        check(rbac, "v1", "roles", json!({"metadata": md("r"), "rules": [{"apiGroups": [""], "resources": ["pods"]}]})),
        vec!["rules[0].verbs: Required value: verbs must contain at least one value"]
    );
    assert_eq!(
        check(rbac, "v1", "rolebindings", json!({"metadata": md("b"), "roleRef": {"kind": "Thing"}, "subjects": [{"kind": "Robot", "name": "r"}]})),
        vec![
            "roleRef.kind: Unsupported value: \"Thing\": supported values: \"Role\", \"ClusterRole\"",
            "roleRef.name: Required value",
            "subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
        ]
    );
    assert_eq!(
        check("autoscaling", "v2", "horizontalpodautoscalers", json!({"metadata": md("h"), "spec": {"minReplicas": 5, "maxReplicas": 2, "scaleTargetRef": {"kind": "Deployment"}}})),
        vec!["spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`", "spec.scaleTargetRef.name: Required value"]
    );
    let pdb = check("policy", "v1", "poddisruptionbudgets", json!({"metadata": md("p"), "spec": {"minAvailable": 1, "maxUnavailable": "150%"}}));
    assert_eq!(pdb.len(), 2, "{pdb:?}");
    assert!(pdb[0].starts_with("spec: Invalid value: "));
    assert!(pdb[0].ends_with(": minAvailable and maxUnavailable cannot be both set"));
    assert_eq!(pdb[1], "spec.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%");
    assert_eq!(
        check("networking.k8s.io", "v1", "ingresses", json!({"metadata": md("i"), "spec": {"rules": [{"http": {"paths": [{"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})),
        vec!["spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"]
    );
    assert_eq!(
        check("networking.k8s.io", "v1", "ingresses", json!({"metadata": md("i"), "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {}}]}}]}})),
        vec!["spec.rules[0].http.paths[0].backend: Invalid value: \"\": resource or service backend is required"]
    );
    assert_eq!(
        check("networking.k8s.io", "v1", "networkpolicies", json!({"metadata": md("n"), "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 0, "protocol": "ICMP"}]}]}})),
        vec![
            "spec.ingress[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
            "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        ]
    );
    assert_eq!(
        check("scheduling.k8s.io", "v1", "priorityclasses", json!({"metadata": {"name": "huge"}, "value": 2000000000})),
        vec!["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    );
    assert_eq!(
        check("", "v1", "events", json!({"metadata": {"name": "e", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}})),
        vec!["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"]
    );
    assert_eq!(
        check("", "v1", "endpoints", json!({"metadata": md("e"), "subsets": [{"addresses": [{"ip": "127.0.0.1"}, {"ip": "10.1.2"}]}]})),
        vec![
            "subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
            "subsets[0].addresses[1].ip: Invalid value: \"10.1.2\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ]
    );
    assert_eq!(
        check("discovery.k8s.io", "v1", "endpointslices", json!({"metadata": md("s"), "addressType": "IPv4", "endpoints": [{"addresses": ["169.254.1.1"]}]})),
        vec!["endpoints[0].addresses[0]: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)"]
    );
    assert_eq!(
        check("coordination.k8s.io", "v1", "leases", json!({"metadata": md("l"), "spec": {"leaseDurationSeconds": 0}})),
        vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    );
}

#[test]
fn type_errors_come_back_alone() {
    assert_eq!(
        check("apps", "v1", "deployments", json!({"metadata": {"name": "BAD"}, "spec": {"replicas": "three"}})),
        vec!["spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""]
    );
}

// ---------------------------------------------------------------------------------------------------
// Updates

#[test]
fn selectors_are_immutable() {
    let old = json!({"metadata": md("d"), "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template("x")}});
    let mut new = old.clone();
    new["spec"]["selector"] = json!({"matchLabels": {"app": "y"}});
    new["spec"]["replicas"] = json!(5);
    assert_eq!(
        check_update("apps", "v1", "deployments", new, old.clone()),
        vec!["spec.selector: Invalid value: &v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"y\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]
    );
    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(5);
    assert!(check_update("apps", "v1", "deployments", scaled, old).is_empty());
}

#[test]
fn statefulset_spec_is_mostly_immutable() {
    let old = json!({"metadata": md("s"), "spec": {"serviceName": "a", "selector": {"matchLabels": {"app": "x"}}, "template": template("x")}});
    let mut new = old.clone();
    new["spec"]["serviceName"] = json!("b");
    new["spec"]["replicas"] = json!(4);
    assert_eq!(
        check_update("apps", "v1", "statefulsets", new, old.clone()),
        vec!["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]
    );
    let mut ok_update = old.clone();
    ok_update["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    assert!(check_update("apps", "v1", "statefulsets", ok_update, old).is_empty());
}

#[test]
fn pod_updates() {
    let old = json!({"metadata": md("p"), "spec": {"containers": [{"name": "c", "image": "nginx:1.26", "ports": [{"containerPort": 80}]}],
        "tolerations": [{"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]}});
    let mut image = old.clone();
    image["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    image["spec"]["tolerations"][0]["tolerationSeconds"] = json!(60);
    image["spec"]["tolerations"].as_array_mut().unwrap().push(json!({"key": "b", "operator": "Exists"}));
    image["spec"]["activeDeadlineSeconds"] = json!(100);
    image["metadata"]["labels"] = json!({"new": "label"});
    assert_eq!(check_update("", "v1", "pods", image, old.clone()), Vec::<String>::new());
    let mut bind = old.clone();
    bind["spec"]["nodeName"] = json!("node-1");
    assert!(check_update("", "v1", "pods", bind.clone(), old.clone()).is_empty(), "the binding subresource sets nodeName once");
    let mut rebind = bind.clone();
    rebind["spec"]["nodeName"] = json!("node-2");
    assert_eq!(check_update("", "v1", "pods", rebind, defaulted("", "v1", "pods", bind)).len(), 1);
    let mut port = old.clone();
    port["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(81);
    port["spec"]["tolerations"] = json!([]);
    assert_eq!(
        check_update("", "v1", "pods", port, old.clone()),
        vec![
            "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds",
            "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ]
    );
    let mut more = old.clone();
    more["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "d", "image": "i"}));
    assert_eq!(check_update("", "v1", "pods", more, old), vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]);
}

#[test]
fn job_updates() {
    let mut old = defaulted("batch", "v1", "jobs", json!({"metadata": {"name": "j", "namespace": "d", "uid": "u"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}));
    generate_job_selector(&mut old);
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("j");
    new["spec"]["completionMode"] = json!("Indexed");
    let errs = check_update("batch", "v1", "jobs", new, old.clone());
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("spec.template: Invalid value: ") && errs[0].ends_with(": field is immutable"));
    assert_eq!(errs[1], "spec.completionMode: Invalid value: \"Indexed\": field is immutable");
    // A suspended job that never started may change its scheduling directives.
    let mut suspended = old.clone();
    suspended["spec"]["suspend"] = json!(true);
    let mut resched = suspended.clone();
    resched["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "a"});
    assert!(check_update("batch", "v1", "jobs", resched, suspended).is_empty());
}

#[test]
fn service_cluster_ip_is_immutable() {
    let old = json!({"metadata": md("s"), "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 80}]}});
    let mut new = old.clone();
    new["spec"]["clusterIP"] = json!("10.96.0.11");
    new["spec"]["clusterIPs"] = json!(["10.96.0.11"]);
    assert_eq!(
        check_update("", "v1", "services", new, old.clone()),
        vec!["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"]
    );
    let mut unset = old.clone();
    unset["spec"].as_object_mut().unwrap().remove("clusterIP");
    unset["spec"].as_object_mut().unwrap().remove("clusterIPs");
    assert!(check_update("", "v1", "services", unset, old.clone()).is_empty(), "an omitted clusterIP keeps the allocated one");
    let mut external = old.clone();
    external["spec"] = json!({"type": "ExternalName", "externalName": "x.example.com"});
    assert!(check_update("", "v1", "services", external, old).is_empty());
}

#[test]
fn data_and_role_ref_immutability() {
    let old = json!({"metadata": md("c"), "immutable": true, "data": {"a": "1"}});
    let mut new = old.clone();
    new["data"]["a"] = json!("2");
    assert_eq!(check_update("", "v1", "configmaps", new, old), vec!["data: Forbidden: field is immutable when `immutable` is set"]);
    let old = json!({"metadata": md("s"), "type": "Opaque", "data": {}});
    let mut new = old.clone();
    new["type"] = json!("kubernetes.io/tls");
    assert_eq!(check_update("", "v1", "secrets", new, old), vec!["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]);
    let rbac = "rbac.authorization.k8s.io";
    let old = json!({"metadata": md("b"), "roleRef": {"kind": "Role", "name": "a"}});
    let mut new = old.clone();
    new["roleRef"]["name"] = json!("b");
    assert_eq!(
        check_update(rbac, "v1", "rolebindings", new, old),
        vec!["roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"b\"}: cannot change roleRef"]
    );
}

#[test]
fn pvc_updates() {
    let old = json!({"metadata": md("c"), "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}});
    let mut grow = old.clone();
    grow["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    grow["spec"]["volumeName"] = json!("pv-1");
    assert!(check_update("", "v1", "persistentvolumeclaims", grow, old.clone()).is_empty());
    let mut shrink = old.clone();
    shrink["spec"]["resources"]["requests"]["storage"] = json!("500Mi");
    assert_eq!(
        check_update("", "v1", "persistentvolumeclaims", shrink, old.clone()),
        vec!["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]
    );
    let mut modes = old.clone();
    modes["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    assert_eq!(
        check_update("", "v1", "persistentvolumeclaims", modes, old),
        vec!["spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"]
    );
}

#[test]
fn names_cannot_change() {
    let old = json!({"metadata": {"name": "a", "namespace": "default", "uid": "1"}});
    let mut new = old.clone();
    new["metadata"]["name"] = json!("b");
    new["metadata"]["uid"] = json!("2");
    assert_eq!(
        check_update("", "v1", "configmaps", new, old),
        vec!["metadata.name: Invalid value: \"b\": field is immutable", "metadata.uid: Invalid value: \"2\": field is immutable"]
    );
}
