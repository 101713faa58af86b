//! Defaulting of API objects as upstream Kubernetes 1.33 does it (`SetDefaults_*` of `pkg/apis/*/v1` and the
//! generated declarative defaults), on untyped JSON. Explicit zero values in fields that are not pointers in
//! Go (`""`, `0`, `false`) count as unset, exactly where upstream cannot tell them apart; pointer fields are
//! defaulted only when absent or `null`.
//!
//! Pod specs are defaulted wherever a kind embeds one (Pod, PodTemplate, ReplicationController, Deployment,
//! ReplicaSet, StatefulSet, DaemonSet, Job, CronJob's job template). Job selector generation needs the
//! object's uid and so is not defaulting: `generate_job_selector` is there for the registry to call.

use serde_json::{json, Map, Value};

use crate::resources::ResourceInfo;

type Obj = Map<String, Value>;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Applies the defaults of `resource`'s kind to `obj` in place.
pub fn apply_defaults(resource: &ResourceInfo, obj: &mut Value) {
    // Upstream defaults only what decoded: a mistyped object is left as sent for validation to report.
    if !crate::validation::typed::check(resource, obj).is_empty() {
        return;
    }
    let Some(o) = obj.as_object_mut() else { return };
    match (resource.group, resource.version, resource.kind) {
        ("", _, "Pod") => pod(o),
        ("", _, "PodTemplate") => {
            if let Some(t) = obj_mut(o, "template") {
                template(t);
            }
        }
        ("", _, "ReplicationController") => replication_controller(o),
        ("", _, "Service") => service(o),
        ("", _, "Endpoints") => endpoints(o),
        ("", _, "Secret") => set_if_zero(o, "type", json!("Opaque")),
        ("", _, "Namespace") => namespace(o),
        ("", _, "Node") => node(o),
        ("", _, "PersistentVolume") => persistent_volume(o),
        ("", _, "PersistentVolumeClaim") => persistent_volume_claim(o),
        ("", _, "LimitRange") => limit_range(o),
        ("apps", _, "Deployment") => deployment(o),
        ("apps", _, "ReplicaSet") => {
            let spec = ensure_obj(o, "spec");
            set_if_unset(spec, "replicas", json!(1));
            template(ensure_obj(spec, "template"));
        }
        ("apps", _, "StatefulSet") => stateful_set(o),
        ("apps", _, "DaemonSet") => daemon_set(o),
        ("batch", _, "Job") => job(o),
        ("batch", _, "CronJob") => cron_job(o),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            set_if_unset(ensure_obj(o, "spec"), "minReplicas", json!(1));
        }
        ("autoscaling", _, "HorizontalPodAutoscaler") => hpa_v2(o),
        ("discovery.k8s.io", _, "EndpointSlice") => {
            for port in objects(o, "ports") {
                set_if_unset(port, "name", json!(""));
                set_if_unset(port, "protocol", json!("TCP"));
            }
        }
        (RBAC_GROUP, _, "RoleBinding" | "ClusterRoleBinding") => role_binding(o),
        ("storage.k8s.io", _, "StorageClass") => {
            set_if_unset(o, "reclaimPolicy", json!("Delete"));
            set_if_unset(o, "volumeBindingMode", json!("Immediate"));
        }
        ("storage.k8s.io", _, "CSIDriver") => csi_driver(o),
        ("networking.k8s.io", _, "NetworkPolicy") => network_policy(o),
        ("networking.k8s.io", _, "IngressClass") => {
            if let Some(params) = obj_mut(o, "spec").and_then(|s| obj_mut(s, "parameters")) {
                set_if_unset(params, "scope", json!("Cluster"));
            }
        }
        ("scheduling.k8s.io", _, "PriorityClass") => set_if_unset(o, "preemptionPolicy", json!("PreemptLowerPriority")),
        _ => {}
    }
}

/// What the Job registry strategy does before validation unless `spec.manualSelector` is true: the template
/// gets `controller-uid`/`job-name` labels (legacy and `batch.kubernetes.io/`), and the selector matches
/// `batch.kubernetes.io/controller-uid`. Call it after the uid is set.
pub fn generate_job_selector(obj: &mut Value) {
    let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let Some(o) = obj.as_object_mut() else { return };
    let spec = ensure_obj(o, "spec");
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let labels = ensure_obj(ensure_obj(ensure_obj(spec, "template"), "metadata"), "labels");
    for (key, value) in [
        ("job-name", &name),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("batch.kubernetes.io/controller-uid", &uid),
    ] {
        labels.entry(key).or_insert_with(|| json!(value));
    }
    let match_labels = ensure_obj(ensure_obj(spec, "selector"), "matchLabels");
    match_labels.entry("batch.kubernetes.io/controller-uid").or_insert_with(|| json!(uid));
}

// ---------------------------------------------------------------------------------------------------
// Helpers over untyped objects

/// An existing object field.
fn obj_mut<'a>(o: &'a mut Obj, key: &str) -> Option<&'a mut Obj> {
    o.get_mut(key).and_then(Value::as_object_mut)
}

/// An object field, created when absent or `null` (a Go non-pointer struct, or a defaulted pointer).
fn ensure_obj<'a>(o: &'a mut Obj, key: &str) -> &'a mut Obj {
    let slot = o.entry(key).or_insert_with(|| Value::Object(Obj::new()));
    if !slot.is_object() {
        // `null` reads as unset; other types never get here (mistyped objects are not defaulted).
        *slot = Value::Object(Obj::new());
    }
    slot.as_object_mut().expect("just made an object")
}

/// The objects of an existing list field.
fn objects<'a>(o: &'a mut Obj, key: &str) -> impl Iterator<Item = &'a mut Obj> {
    o.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

fn is_unset(o: &Obj, key: &str) -> bool {
    o.get(key).is_none_or(Value::is_null)
}

/// Unset for a Go non-pointer field: absent, `null`, `""`, `0` or `false`.
fn is_zero(o: &Obj, key: &str) -> bool {
    match o.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::Bool(b)) => !b,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(m)) => m.is_empty(),
    }
}

/// Defaults a pointer field (only when absent or `null`).
fn set_if_unset(o: &mut Obj, key: &str, v: Value) {
    if is_unset(o, key) {
        o.insert(key.to_string(), v);
    }
}

/// Defaults a non-pointer field (also when it holds the zero value).
fn set_if_zero(o: &mut Obj, key: &str, v: Value) {
    if is_zero(o, key) {
        o.insert(key.to_string(), v);
    }
}

fn str_of<'a>(o: &'a Obj, key: &str) -> &'a str {
    o.get(key).and_then(Value::as_str).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------------
// Pods and pod templates

fn pod(o: &mut Obj) {
    let spec = ensure_obj(o, "spec");
    pod_spec(spec);
    set_if_unset(spec, "enableServiceLinks", json!(true));
    // Requests default to limits (Pods only, not templates).
    for kind in ["containers", "initContainers"] {
        for c in objects(spec, kind) {
            let Some(limits) = c.get("resources").and_then(|r| r.get("limits")).and_then(Value::as_object).cloned() else {
                continue;
            };
            let requests = ensure_obj(ensure_obj(c, "resources"), "requests");
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for kind in ["containers", "initContainers"] {
            for c in objects(spec, kind) {
                for port in objects(c, "ports") {
                    if is_zero(port, "hostPort") {
                        let cp = port.get("containerPort").cloned().unwrap_or(json!(0));
                        port.insert("hostPort".into(), cp);
                    }
                }
            }
        }
    }
}

/// A PodTemplateSpec: its spec is defaulted (a non-pointer struct, so created when absent).
fn template(t: &mut Obj) {
    pod_spec(ensure_obj(t, "spec"));
}

/// `SetDefaults_PodSpec` and everything nested in a pod spec.
fn pod_spec(spec: &mut Obj) {
    set_if_zero(spec, "dnsPolicy", json!("ClusterFirst"));
    set_if_zero(spec, "restartPolicy", json!("Always"));
    set_if_unset(spec, "securityContext", json!({}));
    set_if_unset(spec, "terminationGracePeriodSeconds", json!(30));
    set_if_zero(spec, "schedulerName", json!("default-scheduler"));
    for kind in ["containers", "initContainers", "ephemeralContainers"] {
        for c in objects(spec, kind) {
            container(c);
        }
    }
    for v in objects(spec, "volumes") {
        volume(v);
    }
}

/// The pull policy of an image: Always for `:latest` or no tag (and no digest), IfNotPresent otherwise.
fn pull_policy(image: &str) -> &'static str {
    if image.is_empty() {
        return "IfNotPresent";
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.rsplit_once(':').map(|(_, t)| t);
    match (tag, digest) {
        (Some("latest"), _) | (None, None) => "Always",
        _ => "IfNotPresent",
    }
}

fn container(c: &mut Obj) {
    if is_zero(c, "imagePullPolicy") {
        let policy = pull_policy(str_of(c, "image"));
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    set_if_zero(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_if_zero(c, "terminationMessagePolicy", json!("File"));
    for port in objects(c, "ports") {
        set_if_zero(port, "protocol", json!("TCP"));
    }
    for env in objects(c, "env") {
        if let Some(fr) = obj_mut(env, "valueFrom").and_then(|vf| obj_mut(vf, "fieldRef")) {
            set_if_zero(fr, "apiVersion", json!("v1"));
        }
    }
    set_if_unset(c, "resources", json!({}));
    for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = obj_mut(c, kind) {
            probe(p);
        }
    }
    if let Some(lc) = obj_mut(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = obj_mut(lc, hook).and_then(|h| obj_mut(h, "httpGet")) {
                http_get(h);
            }
        }
    }
}

fn probe(p: &mut Obj) {
    set_if_zero(p, "timeoutSeconds", json!(1));
    set_if_zero(p, "periodSeconds", json!(10));
    set_if_zero(p, "successThreshold", json!(1));
    set_if_zero(p, "failureThreshold", json!(3));
    if let Some(h) = obj_mut(p, "httpGet") {
        http_get(h);
    }
    if let Some(g) = obj_mut(p, "grpc") {
        set_if_unset(g, "service", json!(""));
    }
}

fn http_get(h: &mut Obj) {
    set_if_zero(h, "path", json!("/"));
    set_if_zero(h, "scheme", json!("HTTP"));
}

fn field_ref_items(o: &mut Obj) {
    for item in objects(o, "items") {
        if let Some(fr) = obj_mut(item, "fieldRef") {
            set_if_zero(fr, "apiVersion", json!("v1"));
        }
    }
}

fn volume(v: &mut Obj) {
    if !v.iter().any(|(k, x)| k != "name" && !x.is_null()) {
        v.insert("emptyDir".into(), json!({}));
    }
    if let Some(hp) = obj_mut(v, "hostPath") {
        set_if_unset(hp, "type", json!(""));
    }
    for kind in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(src) = obj_mut(v, kind) {
            set_if_unset(src, "defaultMode", json!(420));
        }
    }
    if let Some(d) = obj_mut(v, "downwardAPI") {
        field_ref_items(d);
    }
    if let Some(p) = obj_mut(v, "projected") {
        for src in objects(p, "sources") {
            if let Some(d) = obj_mut(src, "downwardAPI") {
                field_ref_items(d);
            }
            if let Some(t) = obj_mut(src, "serviceAccountToken") {
                set_if_unset(t, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(spec) = obj_mut(v, "ephemeral").and_then(|e| obj_mut(e, "volumeClaimTemplate")).map(|t| ensure_obj(t, "spec")) {
        set_if_unset(spec, "volumeMode", json!("Filesystem"));
    }
    legacy_volume_sources(v);
}

/// The declarative defaults of in-tree volume sources shared by Pod volumes and PersistentVolumes.
fn legacy_volume_sources(v: &mut Obj) {
    if let Some(s) = obj_mut(v, "iscsi") {
        set_if_zero(s, "iscsiInterface", json!("default"));
    }
    if let Some(s) = obj_mut(v, "rbd") {
        set_if_zero(s, "pool", json!("rbd"));
        set_if_zero(s, "user", json!("admin"));
        set_if_zero(s, "keyring", json!("/etc/ceph/keyring"));
    }
    if let Some(s) = obj_mut(v, "azureDisk") {
        set_if_unset(s, "cachingMode", json!("ReadWrite"));
        set_if_unset(s, "fsType", json!("ext4"));
        set_if_unset(s, "readOnly", json!(false));
        set_if_unset(s, "kind", json!("Shared"));
    }
    if let Some(s) = obj_mut(v, "scaleIO") {
        set_if_zero(s, "storageMode", json!("ThinProvisioned"));
        set_if_zero(s, "fsType", json!("xfs"));
    }
}

fn replication_controller(o: &mut Obj) {
    let template_labels = o
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = template_labels {
        let spec = ensure_obj(o, "spec");
        set_if_zero(spec, "selector", labels.clone());
        set_if_zero(ensure_obj(o, "metadata"), "labels", labels);
    }
    let spec = ensure_obj(o, "spec");
    set_if_unset(spec, "replicas", json!(1));
    if let Some(t) = obj_mut(spec, "template") {
        template(t);
    }
}

// ---------------------------------------------------------------------------------------------------
// Core kinds

fn service(o: &mut Obj) {
    let spec = ensure_obj(o, "spec");
    set_if_zero(spec, "sessionAffinity", json!("None"));
    match str_of(spec, "sessionAffinity") {
        "None" => {
            spec.remove("sessionAffinityConfig");
        }
        "ClientIP" => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                spec.insert("sessionAffinityConfig".into(), json!({"clientIP": {"timeoutSeconds": 10800}}));
            }
        }
        _ => {}
    }
    set_if_zero(spec, "type", json!("ClusterIP"));
    for port in objects(spec, "ports") {
        set_if_zero(port, "protocol", json!("TCP"));
        if is_zero(port, "targetPort")
            && let Some(p) = port.get("port").filter(|p| p.is_number()).cloned()
        {
            port.insert("targetPort".into(), p);
        }
    }
    let ty = str_of(spec, "type").to_string();
    let has_external_ips = spec.get("externalIPs").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    let externally_accessible =
        ty == "LoadBalancer" || ty == "NodePort" || (ty == "ClusterIP" && has_external_ips);
    if externally_accessible {
        set_if_zero(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        set_if_unset(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_if_unset(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if ty != "ExternalName" {
        // Set by the IP allocator upstream; headless Services without a selector require dual-stack.
        let headless = str_of(spec, "clusterIP") == "None";
        let has_selector = spec.get("selector").and_then(Value::as_object).is_some_and(|s| !s.is_empty());
        let policy = if headless && !has_selector { "RequireDualStack" } else { "SingleStack" };
        set_if_unset(spec, "ipFamilyPolicy", json!(policy));
    }
    if ty == "LoadBalancer"
        && let Some(lb) = obj_mut(o, "status").and_then(|s| obj_mut(s, "loadBalancer"))
    {
        for ing in objects(lb, "ingress") {
            if !is_zero(ing, "ip") {
                set_if_unset(ing, "ipMode", json!("VIP"));
            }
        }
    }
}

fn endpoints(o: &mut Obj) {
    for subset in objects(o, "subsets") {
        for port in objects(subset, "ports") {
            set_if_zero(port, "protocol", json!("TCP"));
        }
    }
}

fn namespace(o: &mut Obj) {
    let md = ensure_obj(o, "metadata");
    let name = str_of(md, "name").to_string();
    let terminating = !is_unset(md, "deletionTimestamp");
    if !name.is_empty() {
        ensure_obj(md, "labels").insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    let status = ensure_obj(o, "status");
    set_if_zero(status, "phase", json!("Active"));
    let terminating = terminating || str_of(status, "phase") == "Terminating";
    if !terminating {
        set_if_unset(ensure_obj(o, "spec"), "finalizers", json!(["kubernetes"]));
    }
}

fn node(o: &mut Obj) {
    if let Some(status) = obj_mut(o, "status")
        && is_unset(status, "allocatable")
        && let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned()
    {
        status.insert("allocatable".into(), capacity);
    }
}

fn persistent_volume(o: &mut Obj) {
    set_if_zero(ensure_obj(o, "status"), "phase", json!("Pending"));
    let spec = ensure_obj(o, "spec");
    set_if_zero(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
    set_if_unset(spec, "volumeMode", json!("Filesystem"));
    if let Some(hp) = obj_mut(spec, "hostPath") {
        set_if_unset(hp, "type", json!(""));
    }
    legacy_volume_sources(spec);
}

fn persistent_volume_claim(o: &mut Obj) {
    set_if_zero(ensure_obj(o, "status"), "phase", json!("Pending"));
    set_if_unset(ensure_obj(o, "spec"), "volumeMode", json!("Filesystem"));
}

fn limit_range(o: &mut Obj) {
    let Some(spec) = obj_mut(o, "spec") else { return };
    for item in objects(spec, "limits") {
        if str_of(item, "type") != "Container" {
            continue;
        }
        let max = item.get("max").and_then(Value::as_object).cloned().unwrap_or_default();
        let min = item.get("min").and_then(Value::as_object).cloned().unwrap_or_default();
        let default = ensure_obj(item, "default");
        for (k, v) in max {
            default.entry(k).or_insert(v);
        }
        let default = default.clone();
        let default_request = ensure_obj(item, "defaultRequest");
        for (k, v) in default.into_iter().chain(min) {
            default_request.entry(k).or_insert(v);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Workloads

fn deployment(o: &mut Obj) {
    let spec = ensure_obj(o, "spec");
    set_if_unset(spec, "replicas", json!(1));
    let strategy = ensure_obj(spec, "strategy");
    set_if_zero(strategy, "type", json!("RollingUpdate"));
    if str_of(strategy, "type") == "RollingUpdate" {
        let ru = ensure_obj(strategy, "rollingUpdate");
        set_if_unset(ru, "maxUnavailable", json!("25%"));
        set_if_unset(ru, "maxSurge", json!("25%"));
    }
    set_if_unset(spec, "revisionHistoryLimit", json!(10));
    set_if_unset(spec, "progressDeadlineSeconds", json!(600));
    template(ensure_obj(spec, "template"));
}

fn stateful_set(o: &mut Obj) {
    let spec = ensure_obj(o, "spec");
    set_if_zero(spec, "podManagementPolicy", json!("OrderedReady"));
    let us = ensure_obj(spec, "updateStrategy");
    if is_zero(us, "type") {
        us.insert("type".into(), json!("RollingUpdate"));
        set_if_unset(us, "rollingUpdate", json!({}));
    }
    if str_of(us, "type") == "RollingUpdate"
        && let Some(ru) = obj_mut(us, "rollingUpdate")
    {
        set_if_unset(ru, "partition", json!(0));
    }
    let retention = ensure_obj(spec, "persistentVolumeClaimRetentionPolicy");
    set_if_zero(retention, "whenDeleted", json!("Retain"));
    set_if_zero(retention, "whenScaled", json!("Retain"));
    set_if_unset(spec, "replicas", json!(1));
    set_if_unset(spec, "revisionHistoryLimit", json!(10));
    template(ensure_obj(spec, "template"));
    for pvc in objects(spec, "volumeClaimTemplates") {
        persistent_volume_claim(pvc);
    }
}

fn daemon_set(o: &mut Obj) {
    let spec = ensure_obj(o, "spec");
    let us = ensure_obj(spec, "updateStrategy");
    set_if_zero(us, "type", json!("RollingUpdate"));
    if str_of(us, "type") == "RollingUpdate" {
        let ru = ensure_obj(us, "rollingUpdate");
        set_if_unset(ru, "maxUnavailable", json!(1));
        set_if_unset(ru, "maxSurge", json!(0));
    }
    set_if_unset(spec, "revisionHistoryLimit", json!(10));
    template(ensure_obj(spec, "template"));
}

/// Defaults of a JobSpec's pod failure policy and template (shared with CronJob job templates).
fn job_spec_nested(spec: &mut Obj) {
    if let Some(pfp) = obj_mut(spec, "podFailurePolicy") {
        for rule in objects(pfp, "rules") {
            for cond in objects(rule, "onPodConditions") {
                set_if_zero(cond, "status", json!("True"));
            }
        }
    }
    template(ensure_obj(spec, "template"));
}

fn job(o: &mut Obj) {
    let template_labels = o
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = template_labels {
        set_if_zero(ensure_obj(o, "metadata"), "labels", labels);
    }
    let spec = ensure_obj(o, "spec");
    if is_unset(spec, "completions") && is_unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    set_if_unset(spec, "parallelism", json!(1));
    let backoff = if is_unset(spec, "backoffLimitPerIndex") { 6 } else { i64::from(i32::MAX) };
    set_if_unset(spec, "backoffLimit", json!(backoff));
    set_if_unset(spec, "completionMode", json!("NonIndexed"));
    set_if_unset(spec, "suspend", json!(false));
    let replacement = if is_unset(spec, "podFailurePolicy") { "TerminatingOrFailed" } else { "Failed" };
    set_if_unset(spec, "podReplacementPolicy", json!(replacement));
    job_spec_nested(spec);
}

fn cron_job(o: &mut Obj) {
    let spec = ensure_obj(o, "spec");
    set_if_zero(spec, "concurrencyPolicy", json!("Allow"));
    set_if_unset(spec, "suspend", json!(false));
    set_if_unset(spec, "successfulJobsHistoryLimit", json!(3));
    set_if_unset(spec, "failedJobsHistoryLimit", json!(1));
    job_spec_nested(ensure_obj(ensure_obj(spec, "jobTemplate"), "spec"));
}

fn hpa_v2(o: &mut Obj) {
    let spec = ensure_obj(o, "spec");
    set_if_unset(spec, "minReplicas", json!(1));
    if is_zero(spec, "metrics") {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    let Some(behavior) = obj_mut(spec, "behavior") else { return };
    let rules = [
        ("scaleUp", 0, json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}])),
        ("scaleDown", 300, json!([{"type": "Percent", "value": 100, "periodSeconds": 15}])),
    ];
    for (dir, window, policies) in rules {
        let r = ensure_obj(behavior, dir);
        set_if_unset(r, "stabilizationWindowSeconds", json!(window));
        set_if_unset(r, "selectPolicy", json!("Max"));
        set_if_unset(r, "policies", policies);
    }
}

// ---------------------------------------------------------------------------------------------------
// Other groups

fn role_binding(o: &mut Obj) {
    set_if_zero(ensure_obj(o, "roleRef"), "apiGroup", json!(RBAC_GROUP));
    for s in objects(o, "subjects") {
        if is_zero(s, "apiGroup") {
            match str_of(s, "kind") {
                "ServiceAccount" => {
                    s.insert("apiGroup".into(), json!(""));
                }
                "User" | "Group" => {
                    s.insert("apiGroup".into(), json!(RBAC_GROUP));
                }
                _ => {}
            }
        }
    }
}

fn csi_driver(o: &mut Obj) {
    let spec = ensure_obj(o, "spec");
    set_if_unset(spec, "attachRequired", json!(true));
    set_if_unset(spec, "podInfoOnMount", json!(false));
    set_if_unset(spec, "storageCapacity", json!(false));
    set_if_unset(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
    set_if_zero(spec, "volumeLifecycleModes", json!(["Persistent"]));
    set_if_unset(spec, "requiresRepublish", json!(false));
    set_if_unset(spec, "seLinuxMount", json!(false));
}

fn network_policy(o: &mut Obj) {
    let spec = ensure_obj(o, "spec");
    if is_zero(spec, "policyTypes") {
        let has_egress = spec.get("egress").and_then(Value::as_array).is_some_and(|e| !e.is_empty());
        let types = if has_egress { json!(["Ingress", "Egress"]) } else { json!(["Ingress"]) };
        spec.insert("policyTypes".into(), types);
    }
    for dir in ["ingress", "egress"] {
        for rule in objects(spec, dir) {
            for port in objects(rule, "ports") {
                set_if_unset(port, "protocol", json!("TCP"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    fn defaulted(group: &str, version: &str, plural: &str, mut obj: Value) -> Value {
        apply_defaults(find(group, version, plural).unwrap(), &mut obj);
        obj
    }

    #[test]
    fn pods_get_the_upstream_defaults() {
        let pod = defaulted(
            "",
            "v1",
            "pods",
            json!({"metadata": {"name": "p"}, "spec": {
                "containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}],
                    "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "livenessProbe": {"httpGet": {"port": 80}, "periodSeconds": 0},
                    "resources": {"limits": {"cpu": "1"}}}],
                "initContainers": [{"name": "i", "image": "busybox:1.36"}],
                "volumes": [{"name": "a"}, {"name": "b", "configMap": {"name": "cm"}}, {"name": "s", "secret": {"secretName": "x", "defaultMode": 256}}]}}),
        );
        let spec = &pod["spec"];
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(c["resources"]["requests"]["cpu"], "1", "requests default to limits on Pods");
        let probe = &c["livenessProbe"];
        assert_eq!(
            (&probe["timeoutSeconds"], &probe["periodSeconds"], &probe["successThreshold"], &probe["failureThreshold"]),
            (&json!(1), &json!(10), &json!(1), &json!(3))
        );
        assert_eq!(probe["httpGet"]["scheme"], "HTTP");
        assert_eq!(probe["httpGet"]["path"], "/");
        assert_eq!(spec["initContainers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(spec["initContainers"][0]["resources"], json!({}));
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
        assert_eq!(spec["volumes"][2]["secret"]["defaultMode"], 256, "explicit modes are kept");
        assert!(spec.get("priority").is_none());
    }

    #[test]
    fn mistyped_objects_are_left_for_validation() {
        let sent = json!({"metadata": {"name": "d"}, "spec": {"template": [], "replicas": "2"}});
        let out = defaulted("apps", "v1", "deployments", sent.clone());
        assert_eq!(out, sent);
        let r = find("apps", "v1", "deployments").unwrap();
        assert_eq!(crate::validation::validate(r, &out).len(), 1);
    }

    #[test]
    fn image_pull_policies() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("registry:5000/team/app"), "Always");
        assert_eq!(pull_policy("registry:5000/team/app:1.2"), "IfNotPresent");
        assert_eq!(pull_policy("nginx@sha256:abcd"), "IfNotPresent");
        assert_eq!(pull_policy("nginx:latest@sha256:abcd"), "Always");
    }

    #[test]
    fn explicit_zero_values_read_as_unset_where_go_cannot_tell() {
        // What kubectl's protobuf bodies carry: zero values in non-pointer fields.
        let d = defaulted(
            "apps",
            "v1",
            "deployments",
            json!({"metadata": {"name": "d", "namespace": ""}, "spec": {"strategy": {"type": ""},
                "template": {"spec": {"restartPolicy": "", "dnsPolicy": "",
                    "containers": [{"name": "c", "image": "i:1", "imagePullPolicy": "", "terminationMessagePath": "",
                        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 0, "timeoutSeconds": 0}}]}}}}),
        );
        let spec = &d["spec"];
        assert_eq!(spec["strategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}));
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        let tpl = &spec["template"]["spec"];
        assert_eq!(tpl["restartPolicy"], "Always");
        assert_eq!(tpl["dnsPolicy"], "ClusterFirst");
        assert!(tpl.get("enableServiceLinks").is_none(), "only Pods get enableServiceLinks");
        assert_eq!(tpl["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(tpl["containers"][0]["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(tpl["containers"][0]["readinessProbe"]["timeoutSeconds"], 1);
        // Pointer fields keep an explicit zero.
        let d0 = defaulted("apps", "v1", "deployments", json!({"spec": {"replicas": 0}}));
        assert_eq!(d0["spec"]["replicas"], 0);
    }

    #[test]
    fn services() {
        let s = defaulted("", "v1", "services", json!({"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}));
        let spec = &s["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
        assert_eq!(spec["ports"][1]["targetPort"], "dns");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert!(spec.get("externalTrafficPolicy").is_none());
        let np = defaulted("", "v1", "services", json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 443, "targetPort": 0}]}}));
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(np["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(np["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"], 10800);
        assert_eq!(np["spec"]["ports"][0]["targetPort"], 443);
        let ext = defaulted("", "v1", "services", json!({"spec": {"type": "ExternalName", "externalName": "x.example.com"}}));
        assert!(ext["spec"].get("ipFamilyPolicy").is_none());
        assert!(ext["spec"].get("internalTrafficPolicy").is_none());
        let headless = defaulted("", "v1", "services", json!({"spec": {"clusterIP": "None"}}));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
    }

    #[test]
    fn workload_controllers() {
        let sts = defaulted("apps", "v1", "statefulsets", json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}}));
        let spec = &sts["spec"];
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(spec["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
        assert_eq!(spec["persistentVolumeClaimRetentionPolicy"], json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
        assert_eq!((&spec["replicas"], &spec["revisionHistoryLimit"]), (&json!(1), &json!(10)));
        assert_eq!(spec["volumeClaimTemplates"][0]["spec"]["volumeMode"], "Filesystem");
        assert_eq!(spec["volumeClaimTemplates"][0]["status"]["phase"], "Pending");
        let ds = defaulted("apps", "v1", "daemonsets", json!({}));
        assert_eq!(ds["spec"]["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
        let recreate = defaulted("apps", "v1", "deployments", json!({"spec": {"strategy": {"type": "Recreate"}}}));
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
        let rs = defaulted("apps", "v1", "replicasets", json!({}));
        assert_eq!(rs["spec"]["replicas"], 1);
        let rc = defaulted("", "v1", "replicationcontrollers", json!({"spec": {"template": {"metadata": {"labels": {"app": "a"}}}}}));
        assert_eq!(rc["spec"]["selector"], json!({"app": "a"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "a"}));
        assert_eq!(rc["spec"]["replicas"], 1);
    }

    #[test]
    fn jobs_and_cron_jobs() {
        let j = defaulted("batch", "v1", "jobs", json!({"spec": {"template": {"metadata": {"labels": {"x": "y"}}, "spec": {"restartPolicy": "Never"}}}}));
        let spec = &j["spec"];
        assert_eq!((&spec["completions"], &spec["parallelism"], &spec["backoffLimit"]), (&json!(1), &json!(1), &json!(6)));
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
        assert!(spec.get("manualSelector").is_none());
        assert_eq!(j["metadata"]["labels"], json!({"x": "y"}));
        let par = defaulted("batch", "v1", "jobs", json!({"spec": {"parallelism": 3}}));
        assert!(par["spec"].get("completions").is_none());
        let cj = defaulted("batch", "v1", "cronjobs", json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {}}}}}}));
        let spec = &cj["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!((&spec["successfulJobsHistoryLimit"], &spec["failedJobsHistoryLimit"]), (&json!(3), &json!(1)));
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none(), "job templates are not Jobs");
    }

    #[test]
    fn job_selector_generation() {
        let mut j = json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {}}}});
        generate_job_selector(&mut j);
        assert_eq!(j["spec"]["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}));
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "pi");
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["controller-uid"], "u-1");
        let mut manual = json!({"metadata": {"name": "m", "uid": "u"}, "spec": {"manualSelector": true}});
        generate_job_selector(&mut manual);
        assert!(manual["spec"].get("selector").is_none());
    }

    #[test]
    fn other_kinds() {
        let s = defaulted("", "v1", "secrets", json!({"type": ""}));
        assert_eq!(s["type"], "Opaque");
        let ns = defaulted("", "v1", "namespaces", json!({"metadata": {"name": "team"}, "spec": {}}));
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "team");
        let pvc = defaulted("", "v1", "persistentvolumeclaims", json!({"spec": {}}));
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        let pv = defaulted("", "v1", "persistentvolumes", json!({"spec": {"hostPath": {"path": "/d"}}}));
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["spec"]["hostPath"]["type"], "");
        let hpa = defaulted("autoscaling", "v2", "horizontalpodautoscalers", json!({"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}));
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80);
        assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 60);
        assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["policies"][0]["type"], "Percent");
        assert_eq!(hpa["spec"]["behavior"]["scaleUp"]["policies"][0], json!({"type": "Pods", "value": 4, "periodSeconds": 15}));
        let np = defaulted("networking.k8s.io", "v1", "networkpolicies", json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}}));
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        let pc = defaulted("scheduling.k8s.io", "v1", "priorityclasses", json!({"value": 5}));
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
        let sc = defaulted("storage.k8s.io", "v1", "storageclasses", json!({"provisioner": "x"}));
        assert_eq!((&sc["reclaimPolicy"], &sc["volumeBindingMode"]), (&json!("Delete"), &json!("Immediate")));
        let es = defaulted("discovery.k8s.io", "v1", "endpointslices", json!({"ports": [{"port": 80}]}));
        assert_eq!(es["ports"][0], json!({"port": 80, "name": "", "protocol": "TCP"}));
        let rb = defaulted(RBAC_GROUP, "v1", "rolebindings", json!({"roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "User", "name": "u"}]}));
        assert_eq!(rb["roleRef"]["apiGroup"], RBAC_GROUP);
        assert_eq!(rb["subjects"][0]["apiGroup"], "");
        assert_eq!(rb["subjects"][1]["apiGroup"], RBAC_GROUP);
        let lease = defaulted("coordination.k8s.io", "v1", "leases", json!({"spec": {}}));
        assert_eq!(lease, json!({"spec": {}}));
    }
}
