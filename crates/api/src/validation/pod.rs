//! Pod, PodSpec and PodTemplateSpec validation (`ValidatePodSpec` and what it calls: volumes, containers,
//! ports, env, mounts, resources, probes, security contexts, DNS, tolerations) and the Pod update rules.

use std::collections::HashSet;

use serde_json::Value;

use super::format::{self, inclusive_range_error};
use super::quantity::{quantity_text, Quantity};
use super::{
    bool_at, dns_label, dns_subdomain, get, gofmt, int_at, invalid_go, list, map_at, meta, nonnegative, not_found,
    one_of, opt_int, opt_str, qualified_name, same, str_at, Errs, Path,
};
use crate::status::FieldError;

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const MAX_INT32: i64 = i32::MAX as i64;
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const VOLUME_FIELD_PATHS: &[&str] =
    &["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"];
const CONVERTIBLE_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];
/// The volume sources in the order upstream checks them.
const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

/// A Pod object.
pub fn pod(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    pod_spec(spec, &p, e);
    if str_at(spec, "serviceAccountName").is_empty() {
        for (vi, vol) in list(spec, "volumes").iter().enumerate() {
            for (si, src) in list(&vol["projected"], "sources").iter().enumerate() {
                if get(src, "serviceAccountToken").is_some() {
                    let sp = p.child("volumes").index(vi).child("projected").child("sources").index(si);
                    e.push(FieldError::forbidden(
                        sp.child("serviceAccountToken"),
                        "must not be specified when serviceAccountName is not set",
                    ));
                }
            }
        }
    }
    for kind in ["containers", "initContainers"] {
        for (i, c) in list(spec, kind).iter().enumerate() {
            let image = str_at(c, "image");
            if image.trim() != image {
                e.push(FieldError::invalid(
                    p.child(kind).index(i).child("image"),
                    &Value::from(image),
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    if !str_at(spec, "nodeName").is_empty() && !list(spec, "schedulingGates").is_empty() {
        e.push(FieldError::forbidden(p.child("nodeName"), "cannot be set until all schedulingGates have been cleared"));
    }
}

/// A PodTemplate object (its `template`).
pub fn pod_template_object(obj: &Value, e: &mut Errs) {
    pod_template_spec(&obj["template"], &Path::new("template"), e);
}

/// `ValidatePodTemplateSpec`: template labels, annotations and spec. `p` is the template's path.
pub fn pod_template_spec(tpl: &Value, p: &Path, e: &mut Errs) {
    let md = &tpl["metadata"];
    meta::labels(md.get("labels"), &p.child("labels"), e);
    meta::annotations(md.get("annotations"), &p.child("annotations"), e);
    let spec = &tpl["spec"];
    pod_spec(spec, &p.child("spec"), e);
    if !list(spec, "ephemeralContainers").is_empty() {
        e.push(FieldError::forbidden(
            p.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// `ValidatePodSpec`.
pub fn pod_spec(spec: &Value, p: &Path, e: &mut Errs) {
    if get(spec, "terminationGracePeriodSeconds").is_none() {
        e.push(FieldError::required(p.child("terminationGracePeriodSeconds")));
    }
    let volumes = volumes(list(spec, "volumes"), &p.child("volumes"), e);
    let restart_policy = str_at(spec, "restartPolicy");
    let regular: Vec<&str> = list(spec, "containers").iter().map(|c| str_at(c, "name")).collect();
    init_containers(list(spec, "initContainers"), &regular, &volumes, &p.child("initContainers"), e);
    containers(list(spec, "containers"), &volumes, &p.child("containers"), e);
    if bool_at(spec, "hostNetwork") {
        // Templates may leave hostPort 0 (Pods get it defaulted to containerPort).
        for (ci, c) in list(spec, "containers").iter().enumerate() {
            for (pi, port) in list(c, "ports").iter().enumerate() {
                let (hp, cp) = (int_at(port, "hostPort"), int_at(port, "containerPort"));
                if hp != 0 && hp != cp {
                    e.push(FieldError::invalid(
                        p.child("containers").index(ci).child("ports").index(pi).child("hostPort"),
                        &Value::from(hp),
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
    one_of(restart_policy, &["Always", "OnFailure", "Never"], &p.child("restartPolicy"), e);
    let dns_policy = str_at(spec, "dnsPolicy");
    one_of(dns_policy, &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"], &p.child("dnsPolicy"), e);
    meta::labels(spec.get("nodeSelector"), &p.child("nodeSelector"), e);
    pod_security_context(spec, p, e);
    if let Some(a) = get(spec, "affinity") {
        affinity(a, &p.child("affinity"), e);
    }
    dns_config(get(spec, "dnsConfig"), dns_policy, &p.child("dnsConfig"), e);
    for (i, g) in list(spec, "readinessGates").iter().enumerate() {
        qualified_name(str_at(g, "conditionType"), &p.child("readinessGates").index(i).child("conditionType"), e);
    }
    topology_spread(list(spec, "topologySpreadConstraints"), &p.child("topologySpreadConstraints"), e);
    for field in ["serviceAccountName", "nodeName", "priorityClassName"] {
        let v = str_at(spec, field);
        if !v.is_empty() {
            dns_subdomain(v, &p.child(field), e);
        }
    }
    if let Some(ads) = opt_int(spec, "activeDeadlineSeconds")
        && !(1..=MAX_INT32).contains(&ads)
    {
        e.push(FieldError::invalid(p.child("activeDeadlineSeconds"), &Value::from(ads), &inclusive_range_error(1, MAX_INT32)));
    }
    for field in ["hostname", "subdomain"] {
        let v = str_at(spec, field);
        if !v.is_empty() {
            dns_label(v, &p.child(field), e);
        }
    }
    tolerations(list(spec, "tolerations"), &p.child("tolerations"), e);
    for (i, alias) in list(spec, "hostAliases").iter().enumerate() {
        let ap = p.child("hostAliases").index(i);
        let ip = str_at(alias, "ip");
        if !format::is_ip(ip) {
            e.push(FieldError::invalid(ap.child("ip"), &Value::from(ip), "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"));
        }
        for (j, h) in list(alias, "hostnames").iter().enumerate() {
            dns_subdomain(h.as_str().unwrap_or(""), &ap.child("hostnames").index(j), e);
        }
    }
    if let Some(rc) = opt_str(spec, "runtimeClassName") {
        dns_subdomain(rc, &p.child("runtimeClassName"), e);
    }
    if let Some(pp) = opt_str(spec, "preemptionPolicy")
        && !matches!(pp, "Never" | "PreemptLowerPriority")
    {
        e.push(FieldError::not_supported(p.child("preemptionPolicy"), &Value::from(pp), &["Never", "PreemptLowerPriority"]));
    }
    let mut gates = HashSet::new();
    for (i, g) in list(spec, "schedulingGates").iter().enumerate() {
        let name = str_at(g, "name");
        let gp = p.child("schedulingGates").index(i);
        qualified_name(name, &gp.child("name"), e);
        if !gates.insert(name) {
            e.push(FieldError::duplicate(gp.child("name"), &Value::from(name)));
        }
    }
    if let Some(os) = get(spec, "os") {
        let name = str_at(os, "name");
        one_of(name, &["linux", "windows"], &p.child("os").child("name"), e);
    }
}

// ---------------------------------------------------------------------------------------------------
// Volumes

/// `ValidateVolumes`; returns the names of the volumes that validated (those mounts may refer to).
fn volumes(vols: &[Value], p: &Path, e: &mut Errs) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, vol) in vols.iter().enumerate() {
        let vp = p.index(i);
        let mut el = Errs::new();
        volume_source(vol, &vp, &mut el);
        let name = str_at(vol, "name");
        if name.is_empty() {
            el.push(FieldError::required(vp.child("name")));
        } else {
            dns_label(name, &vp.child("name"), &mut el);
        }
        if names.contains(name) {
            el.push(FieldError::duplicate(vp.child("name"), &Value::from(name)));
        }
        if el.is_empty() {
            names.insert(name.to_string());
        } else {
            e.append(&mut el);
        }
    }
    names
}

fn volume_source(vol: &Value, p: &Path, e: &mut Errs) {
    let mut count = 0;
    for &src in VOLUME_SOURCES {
        let Some(v) = get(vol, src) else { continue };
        if count > 0 {
            e.push(FieldError::forbidden(p.child(src), "may not specify more than 1 volume type"));
            continue;
        }
        count += 1;
        let sp = p.child(src);
        match src {
            "hostPath" => host_path(v, &sp, e),
            "emptyDir" => {
                if let Some(limit) = get(v, "sizeLimit")
                    && Quantity::from_json(limit).is_ok_and(|q| q.is_negative())
                {
                    e.push(FieldError::forbidden(sp.child("sizeLimit"), "SizeLimit field must be a valid resource quantity"));
                }
            }
            "secret" => {
                if str_at(v, "secretName").is_empty() {
                    e.push(FieldError::required(sp.child("secretName")));
                }
                mode(v, "defaultMode", &sp, e);
                key_to_paths(list(v, "items"), &sp.child("items"), e);
            }
            "configMap" => {
                if str_at(v, "name").is_empty() {
                    e.push(FieldError::required(sp.child("name")));
                }
                mode(v, "defaultMode", &sp, e);
                key_to_paths(list(v, "items"), &sp.child("items"), e);
            }
            "persistentVolumeClaim" if str_at(v, "claimName").is_empty() => e.push(FieldError::required(sp.child("claimName"))),
            "nfs" => nfs(v, &sp, e),
            "downwardAPI" => {
                mode(v, "defaultMode", &sp, e);
                for (j, item) in list(v, "items").iter().enumerate() {
                    downward_api_file(item, &sp.child("items").index(j), e);
                }
            }
            "projected" => projected(v, &sp, e),
            "csi" if str_at(v, "driver").is_empty() => e.push(FieldError::required(sp.child("driver"))),
            "ephemeral" => match get(v, "volumeClaimTemplate") {
                None => e.push(FieldError::required(sp.child("volumeClaimTemplate"))),
                Some(t) => {
                    super::core::pvc_spec(&t["spec"], &sp.child("volumeClaimTemplate").child("spec"), e);
                }
            },
            "image" if str_at(v, "reference").is_empty() => e.push(FieldError::required(sp.child("reference"))),
            _ => {}
        }
    }
    let has_unknown = vol.as_object().is_some_and(|m| {
        m.iter().any(|(k, v)| k != "name" && !v.is_null() && !VOLUME_SOURCES.contains(&k.as_str()))
    });
    if count == 0 && !has_unknown {
        e.push(FieldError::required_msg(p, "must specify a volume type"));
    }
}

pub(super) fn host_path(v: &Value, p: &Path, e: &mut Errs) {
    let path = str_at(v, "path");
    if path.is_empty() {
        e.push(FieldError::required(p.child("path")));
        return;
    }
    no_backsteps(path, &p.child("path"), e);
    if let Some(t) = opt_str(v, "type") {
        let supported =
            ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"];
        if !supported.contains(&t) {
            e.push(FieldError::not_supported(p.child("type"), &Value::from(t), &supported));
        }
    }
}

pub(super) fn nfs(v: &Value, p: &Path, e: &mut Errs) {
    if str_at(v, "server").is_empty() {
        e.push(FieldError::required(p.child("server")));
    }
    let path = str_at(v, "path");
    if path.is_empty() {
        e.push(FieldError::required(p.child("path")));
    } else if !path.starts_with('/') {
        e.push(FieldError::invalid(p.child("path"), &Value::from(path), "must be an absolute path"));
    }
}

fn mode(v: &Value, field: &str, p: &Path, e: &mut Errs) {
    if let Some(m) = opt_int(v, field)
        && !(0..=0o777).contains(&m)
    {
        e.push(FieldError::invalid(p.child(field), &Value::from(m), FILE_MODE_MSG));
    }
}

fn no_backsteps(path: &str, p: &Path, e: &mut Errs) {
    if path.split('/').any(|part| part == "..") {
        e.push(FieldError::invalid(p, &Value::from(path), "must not contain '..'"));
    }
}

fn local_descending_path(path: &str, p: &Path, e: &mut Errs) {
    if path.starts_with('/') {
        e.push(FieldError::invalid(p, &Value::from(path), "must be a relative path"));
    }
    no_backsteps(path, p, e);
}

fn local_non_reserved_path(path: &str, p: &Path, e: &mut Errs) {
    local_descending_path(path, p, e);
    if path.starts_with("..") && !path.starts_with("../") {
        e.push(FieldError::invalid(p, &Value::from(path), "must not start with '..'"));
    }
}

fn key_to_paths(items: &[Value], p: &Path, e: &mut Errs) {
    for (i, kp) in items.iter().enumerate() {
        let ip = p.index(i);
        if str_at(kp, "key").is_empty() {
            e.push(FieldError::required(ip.child("key")));
        }
        let path = str_at(kp, "path");
        if path.is_empty() {
            e.push(FieldError::required(ip.child("path")));
        }
        local_non_reserved_path(path, &ip.child("path"), e);
        mode(kp, "mode", &ip, e);
    }
}

fn downward_api_file(item: &Value, p: &Path, e: &mut Errs) {
    let path = str_at(item, "path");
    if path.is_empty() {
        e.push(FieldError::required(p.child("path")));
    }
    local_non_reserved_path(path, &p.child("path"), e);
    if let Some(fr) = get(item, "fieldRef") {
        object_field_selector(fr, VOLUME_FIELD_PATHS, &p.child("fieldRef"), e);
        if get(item, "resourceFieldRef").is_some() {
            e.push(FieldError::invalid(p, &Value::from("resource"), "fieldRef and resourceFieldRef can not be specified simultaneously"));
        }
    } else if let Some(rf) = get(item, "resourceFieldRef") {
        resource_field_selector(rf, true, &p.child("resourceFieldRef"), e);
    } else {
        e.push(FieldError::required_msg(p, "one of fieldRef and resourceFieldRef is required"));
    }
    mode(item, "mode", p, e);
}

fn projected(v: &Value, p: &Path, e: &mut Errs) {
    mode(v, "defaultMode", p, e);
    let mut paths = HashSet::new();
    for (i, src) in list(v, "sources").iter().enumerate() {
        let sp = p.child("sources").index(i);
        let mut n = 0;
        for kind in ["secret", "configMap"] {
            if let Some(s) = get(src, kind) {
                n += 1;
                let kp = sp.child(kind);
                if str_at(s, "name").is_empty() {
                    e.push(FieldError::required(kp.child("name")));
                }
                key_to_paths(list(s, "items"), &kp.child("items"), e);
                for item in list(s, "items") {
                    let path = str_at(item, "path");
                    if !path.is_empty() && !paths.insert(path.to_string()) {
                        e.push(FieldError::invalid(p, &Value::from(str_at(s, "name")), "conflicting duplicate paths"));
                    }
                }
            }
        }
        if let Some(d) = get(src, "downwardAPI") {
            n += 1;
            for (j, item) in list(d, "items").iter().enumerate() {
                downward_api_file(item, &sp.child("downwardAPI").child("items").index(j), e);
                let path = str_at(item, "path");
                if !path.is_empty() && !paths.insert(path.to_string()) {
                    e.push(FieldError::invalid(p, &Value::from(""), "conflicting duplicate paths"));
                }
            }
        }
        if let Some(t) = get(src, "serviceAccountToken") {
            n += 1;
            let tp = sp.child("serviceAccountToken");
            let exp = int_at(t, "expirationSeconds");
            if exp < 600 {
                e.push(FieldError::invalid(tp.child("expirationSeconds"), &Value::from(exp), "may not specify a duration less than 10 minutes"));
            }
            if exp > 1 << 32 {
                e.push(FieldError::invalid(tp.child("expirationSeconds"), &Value::from(exp), "may not specify a duration larger than 2^32 seconds"));
            }
            if str_at(t, "path").is_empty() {
                e.push(FieldError::required(p.child("path")));
            }
        }
        if get(src, "clusterTrustBundle").is_some() {
            n += 1;
        }
        if n > 1 {
            e.push(FieldError::forbidden(&sp, "may not specify more than 1 volume type per source"));
        }
    }
}

fn object_field_selector(fs: &Value, allowed: &[&str], p: &Path, e: &mut Errs) {
    let api_version = str_at(fs, "apiVersion");
    if api_version.is_empty() {
        e.push(FieldError::required(p.child("apiVersion")));
        return;
    }
    let field_path = str_at(fs, "fieldPath");
    if field_path.is_empty() {
        e.push(FieldError::required(p.child("fieldPath")));
        return;
    }
    let (path, subscript) = match field_path.split_once('[') {
        Some((path, rest)) => {
            let sub = rest.strip_suffix(']').map(|s| s.trim_matches('\''));
            (path, sub)
        }
        None => (field_path, None),
    };
    let convert_err = if api_version != "v1" {
        Some(format!("unsupported pod version: {api_version}"))
    } else if !CONVERTIBLE_FIELD_PATHS.contains(&path) {
        Some(format!("field label not supported: {field_path}"))
    } else {
        None
    };
    if let Some(err) = convert_err {
        e.push(FieldError::invalid(p.child("fieldPath"), &Value::from(field_path), &format!("error converting fieldPath: {err}")));
        return;
    }
    match subscript {
        Some(sub) => match path {
            "metadata.annotations" => qualified_name(&sub.to_lowercase(), p, e),
            "metadata.labels" => qualified_name(sub, p, e),
            _ => e.push(FieldError::invalid(p, &Value::from(path), "does not support subscript")),
        },
        None if !allowed.contains(&path) => {
            e.push(FieldError::not_supported(p.child("fieldPath"), &Value::from(path), allowed));
        }
        None => {}
    }
}

fn resource_field_selector(fs: &Value, volume: bool, p: &Path, e: &mut Errs) {
    if volume && str_at(fs, "containerName").is_empty() {
        e.push(FieldError::required(p.child("containerName")));
    }
    let res = str_at(fs, "resource");
    if res.is_empty() {
        e.push(FieldError::required(p.child("resource")));
    } else if !RESOURCE_FIELD_PATHS.contains(&res)
        && !res.starts_with("limits.hugepages-")
        && !res.starts_with("requests.hugepages-")
    {
        e.push(FieldError::not_supported(p.child("resource"), &Value::from(res), RESOURCE_FIELD_PATHS));
    }
}

// ---------------------------------------------------------------------------------------------------
// Containers

fn containers(ctrs: &[Value], volumes: &HashSet<String>, p: &Path, e: &mut Errs) {
    if ctrs.is_empty() {
        e.push(FieldError::required(p));
        return;
    }
    let mut names = HashSet::new();
    for (i, c) in ctrs.iter().enumerate() {
        let cp = p.index(i);
        container_common(c, volumes, &cp, e);
        let name = str_at(c, "name");
        if !names.insert(name) {
            e.push(FieldError::duplicate(cp.child("name"), &Value::from(name)));
        }
        if let Some(lc) = get(c, "lifecycle") {
            lifecycle(lc, &cp.child("lifecycle"), e);
        }
        probe(get(c, "livenessProbe"), ProbeKind::Liveness, &cp.child("livenessProbe"), e);
        probe(get(c, "readinessProbe"), ProbeKind::Readiness, &cp.child("readinessProbe"), e);
        probe(get(c, "startupProbe"), ProbeKind::Startup, &cp.child("startupProbe"), e);
        if get(c, "restartPolicy").is_some() {
            e.push(FieldError::forbidden(cp.child("restartPolicy"), "may not be set for non-init containers"));
        }
    }
    host_port_conflicts(ctrs, p, e);
}

fn init_containers(ctrs: &[Value], regular: &[&str], volumes: &HashSet<String>, p: &Path, e: &mut Errs) {
    let mut names: HashSet<&str> = regular.iter().copied().collect();
    for (i, c) in ctrs.iter().enumerate() {
        let cp = p.index(i);
        container_common(c, volumes, &cp, e);
        let name = str_at(c, "name");
        if !names.insert(name) {
            e.push(FieldError::duplicate(cp.child("name"), &Value::from(name)));
        }
        let sidecar = match opt_str(c, "restartPolicy") {
            None => false,
            Some("Always") => true,
            Some(other) => {
                e.push(FieldError::not_supported(cp.child("restartPolicy"), &Value::from(other), &["Always"]));
                false
            }
        };
        if sidecar {
            if let Some(lc) = get(c, "lifecycle") {
                lifecycle(lc, &cp.child("lifecycle"), e);
            }
            probe(get(c, "livenessProbe"), ProbeKind::Liveness, &cp.child("livenessProbe"), e);
            probe(get(c, "readinessProbe"), ProbeKind::Readiness, &cp.child("readinessProbe"), e);
            probe(get(c, "startupProbe"), ProbeKind::Startup, &cp.child("startupProbe"), e);
        } else {
            for f in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
                if get(c, f).is_some() {
                    e.push(FieldError::forbidden(cp.child(f), "may not be set for init containers without restartPolicy=Always"));
                }
            }
        }
    }
}

fn container_common(c: &Value, volumes: &HashSet<String>, p: &Path, e: &mut Errs) {
    let name = str_at(c, "name");
    if name.is_empty() {
        e.push(FieldError::required(p.child("name")));
    } else {
        dns_label(name, &p.child("name"), e);
    }
    if str_at(c, "image").is_empty() {
        e.push(FieldError::required(p.child("image")));
    }
    match str_at(c, "terminationMessagePolicy") {
        "File" | "FallbackToLogsOnError" => {}
        "" => e.push(FieldError::required_msg(p.child("terminationMessagePolicy"), "must be 'File' or 'FallbackToLogsOnError'")),
        other => e.push(FieldError::not_supported(
            p.child("terminationMessagePolicy"),
            &Value::from(other),
            &["File", "FallbackToLogsOnError"],
        )),
    }
    container_ports(list(c, "ports"), &p.child("ports"), e);
    env(list(c, "env"), &p.child("env"), e);
    env_from(list(c, "envFrom"), &p.child("envFrom"), e);
    volume_mounts(c, volumes, &p.child("volumeMounts"), e);
    one_of(str_at(c, "imagePullPolicy"), &["Always", "IfNotPresent", "Never"], &p.child("imagePullPolicy"), e);
    resources(&c["resources"], &p.child("resources"), e);
    for (i, rp) in list(c, "resizePolicy").iter().enumerate() {
        let rpp = p.child("resizePolicy").index(i);
        let res = str_at(rp, "resourceName");
        if !matches!(res, "cpu" | "memory") {
            e.push(FieldError::not_supported(rpp.child("resourceName"), &Value::from(res), &["cpu", "memory"]));
        }
        let policy = str_at(rp, "restartPolicy");
        if !matches!(policy, "NotRequired" | "RestartContainer") {
            e.push(FieldError::not_supported(rpp.child("restartPolicy"), &Value::from(policy), &["NotRequired", "RestartContainer"]));
        }
    }
    if let Some(sc) = get(c, "securityContext") {
        security_context(sc, &p.child("securityContext"), e);
    }
}

fn container_ports(ports: &[Value], p: &Path, e: &mut Errs) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = p.index(i);
        let name = str_at(port, "name");
        if !name.is_empty() {
            let msgs = format::is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    e.push(FieldError::invalid(pp.child("name"), &Value::from(name), &m));
                }
            } else if !names.insert(name) {
                e.push(FieldError::duplicate(pp.child("name"), &Value::from(name)));
            }
        }
        let cp = int_at(port, "containerPort");
        if cp == 0 {
            e.push(FieldError::required(pp.child("containerPort")));
        } else {
            for m in format::is_valid_port_num(cp) {
                e.push(FieldError::invalid(pp.child("containerPort"), &Value::from(cp), &m));
            }
        }
        let hp = int_at(port, "hostPort");
        if hp != 0 {
            for m in format::is_valid_port_num(hp) {
                e.push(FieldError::invalid(pp.child("hostPort"), &Value::from(hp), &m));
            }
        }
        one_of(str_at(port, "protocol"), PROTOCOLS, &pp.child("protocol"), e);
    }
}

fn host_port_conflicts(ctrs: &[Value], p: &Path, e: &mut Errs) {
    let mut seen = HashSet::new();
    for (ci, c) in ctrs.iter().enumerate() {
        for (pi, port) in list(c, "ports").iter().enumerate() {
            let hp = int_at(port, "hostPort");
            if hp == 0 {
                continue;
            }
            let key = format!("{}/{}/{hp}", str_at(port, "hostIP"), str_at(port, "protocol"));
            if !seen.insert(key.clone()) {
                e.push(FieldError::duplicate(p.index(ci).child("ports").index(pi).child("hostPort"), &Value::from(key)));
            }
        }
    }
}

fn env(vars: &[Value], p: &Path, e: &mut Errs) {
    for (i, ev) in vars.iter().enumerate() {
        let ep = p.index(i);
        let name = str_at(ev, "name");
        if name.is_empty() {
            e.push(FieldError::required(ep.child("name")));
        }
        for m in format::is_relaxed_env_var_name(name) {
            e.push(FieldError::invalid(ep.child("name"), &Value::from(name), &m));
        }
        let Some(vf) = get(ev, "valueFrom") else { continue };
        let vp = ep.child("valueFrom");
        let mut n = 0;
        if let Some(fr) = get(vf, "fieldRef") {
            n += 1;
            object_field_selector(fr, ENV_FIELD_PATHS, &vp.child("fieldRef"), e);
        }
        if let Some(rf) = get(vf, "resourceFieldRef") {
            n += 1;
            resource_field_selector(rf, false, &vp.child("resourceFieldRef"), e);
        }
        for kind in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = get(vf, kind) {
                n += 1;
                let rp = vp.child(kind);
                for m in format::is_dns1123_subdomain(str_at(r, "name")) {
                    e.push(FieldError::invalid(rp.child("name"), &Value::from(str_at(r, "name")), &m));
                }
                let key = str_at(r, "key");
                if key.is_empty() {
                    e.push(FieldError::required(rp.child("key")));
                } else {
                    for m in format::is_config_map_key(key) {
                        e.push(FieldError::invalid(rp.child("key"), &Value::from(key), &m));
                    }
                }
            }
        }
        if n == 0 {
            e.push(FieldError::invalid(
                &vp,
                &Value::from(""),
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !str_at(ev, "value").is_empty() {
            e.push(FieldError::invalid(&vp, &Value::from(""), "may not be specified when `value` is not empty"));
        } else if n > 1 {
            e.push(FieldError::invalid(&vp, &Value::from(""), "may not have more than one field specified at a time"));
        }
    }
}

fn env_from(sources: &[Value], p: &Path, e: &mut Errs) {
    for (i, src) in sources.iter().enumerate() {
        let sp = p.index(i);
        let prefix = str_at(src, "prefix");
        if !prefix.is_empty() {
            for m in format::is_relaxed_env_var_name(prefix) {
                e.push(FieldError::invalid(sp.child("prefix"), &Value::from(prefix), &m));
            }
        }
        let mut n = 0;
        for kind in ["configMapRef", "secretRef"] {
            if let Some(r) = get(src, kind) {
                n += 1;
                let name = str_at(r, "name");
                if name.is_empty() {
                    e.push(FieldError::required(sp.child(kind).child("name")));
                } else {
                    dns_subdomain(name, &sp.child(kind).child("name"), e);
                }
            }
        }
        if n == 0 {
            e.push(FieldError::invalid(p, &Value::from(""), "must specify one of: `configMapRef` or `secretRef`"));
        } else if n > 1 {
            e.push(FieldError::invalid(p, &Value::from(""), "may not have more than one field specified at a time"));
        }
    }
}

fn volume_mounts(c: &Value, volumes: &HashSet<String>, p: &Path, e: &mut Errs) {
    let devices: Vec<(&str, &str)> =
        list(c, "volumeDevices").iter().map(|d| (str_at(d, "name"), str_at(d, "devicePath"))).collect();
    let mut mount_points = HashSet::new();
    for (i, m) in list(c, "volumeMounts").iter().enumerate() {
        let mp = p.index(i);
        let name = str_at(m, "name");
        if name.is_empty() {
            e.push(FieldError::required(mp.child("name")));
        }
        if !volumes.contains(name) {
            e.push(not_found(mp.child("name"), &Value::from(name)));
        }
        let path = str_at(m, "mountPath");
        if path.is_empty() {
            e.push(FieldError::required(mp.child("mountPath")));
        }
        if !mount_points.insert(path) {
            e.push(FieldError::invalid(mp.child("mountPath"), &Value::from(path), "must be unique"));
        }
        if devices.iter().any(|(n, _)| *n == name) {
            e.push(FieldError::invalid(mp.child("name"), &Value::from(name), "must not already exist in volumeDevices"));
        }
        if devices.iter().any(|(_, d)| *d == path) {
            e.push(FieldError::invalid(mp.child("mountPath"), &Value::from(path), "must not already exist as a path in volumeDevices"));
        }
        let sub_path = str_at(m, "subPath");
        if !sub_path.is_empty() {
            local_descending_path(sub_path, &p.child("subPath"), e);
        }
        let expr = str_at(m, "subPathExpr");
        if !expr.is_empty() {
            if !sub_path.is_empty() {
                e.push(FieldError::invalid(mp.child("subPathExpr"), &Value::from(expr), "subPathExpr and subPath are mutually exclusive"));
            }
            local_descending_path(expr, &p.child("subPathExpr"), e);
        }
        if let Some(prop) = opt_str(m, "mountPropagation") {
            let supported = ["Bidirectional", "HostToContainer", "None"];
            if !supported.contains(&prop) {
                e.push(FieldError::not_supported(p.child("mountPropagation"), &Value::from(prop), &supported));
            }
        }
    }
}

fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !name.starts_with("hugepages-")
}

/// `ValidateContainerResourceRequirements`.
fn resources(r: &Value, p: &Path, e: &mut Errs) {
    let lim_path = p.child("limits");
    let req_path = p.child("requests");
    let limits = map_at(r, "limits");
    for (name, q) in limits.into_iter().flatten() {
        let fp = lim_path.key(name);
        resource_name(name, &fp, e);
        quantity_value(name, q, &fp, e);
    }
    for (name, q) in map_at(r, "requests").into_iter().flatten() {
        let fp = req_path.key(name);
        resource_name(name, &fp, e);
        quantity_value(name, q, &fp, e);
        let req = Quantity::from_json(q);
        match limits.and_then(|l| l.get(name)) {
            Some(limit) => {
                if let (Ok(rq), Ok(lq)) = (req, Quantity::from_json(limit)) {
                    if rq != lq && !overcommit_allowed(name) {
                        e.push(FieldError::invalid(
                            &req_path,
                            &Value::from(quantity_text(q)),
                            &format!("must be equal to {name} limit of {}", quantity_text(limit)),
                        ));
                    } else if rq > lq {
                        e.push(FieldError::invalid(
                            &req_path,
                            &Value::from(quantity_text(q)),
                            &format!("must be less than or equal to {name} limit of {}", quantity_text(limit)),
                        ));
                    }
                }
            }
            None if !overcommit_allowed(name) => {
                e.push(FieldError::required_msg(&lim_path, "Limit must be set for non overcommitable resources"));
            }
            None => {}
        }
    }
}

fn resource_name(name: &str, p: &Path, e: &mut Errs) {
    qualified_name(name, p, e);
    if !name.contains('/') {
        if !is_standard_container_resource(name) {
            e.push(FieldError::invalid(p, &Value::from(name), "must be a standard resource for containers"));
        }
    } else if !is_native_resource(name) && !format::is_qualified_name(&format!("requests.{name}")).is_empty() {
        e.push(FieldError::invalid(p, &Value::from(name), "doesn't follow extended resource name standard"));
    }
}

/// `ValidateResourceQuantityValue`: non-negative, whole for extended resources.
pub(super) fn quantity_value(name: &str, q: &Value, p: &Path, e: &mut Errs) {
    match Quantity::from_json(q) {
        Err(msg) => e.push(FieldError::invalid(p, &Value::from(quantity_text(q)), msg)),
        Ok(v) => {
            if v.is_negative() {
                e.push(FieldError::invalid(p, &Value::from(quantity_text(q)), "must be greater than or equal to 0"));
            }
            if !is_native_resource(name) && !v.is_integer() {
                e.push(FieldError::invalid(p, &Value::from(quantity_text(q)), "must be an integer"));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Probes and lifecycle handlers

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

fn probe(pr: Option<&Value>, kind: ProbeKind, p: &Path, e: &mut Errs) {
    let Some(pr) = pr else { return };
    handler(pr, false, p, e);
    for f in ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] {
        nonnegative(int_at(pr, f), &p.child(f), e);
    }
    let grace = opt_int(pr, "terminationGracePeriodSeconds");
    if let Some(g) = grace
        && g <= 0
    {
        e.push(FieldError::invalid(p.child("terminationGracePeriodSeconds"), &Value::from(g), "must be greater than 0"));
    }
    match kind {
        ProbeKind::Liveness | ProbeKind::Startup => {
            let st = int_at(pr, "successThreshold");
            if st != 1 {
                e.push(FieldError::invalid(p.child("successThreshold"), &Value::from(st), "must be 1"));
            }
        }
        ProbeKind::Readiness => {
            if let Some(g) = grace {
                e.push(FieldError::invalid(
                    p.child("terminationGracePeriodSeconds"),
                    &Value::from(g),
                    "must not be set for readinessProbes",
                ));
            }
        }
    }
}

fn lifecycle(lc: &Value, p: &Path, e: &mut Errs) {
    for hook in ["postStart", "preStop"] {
        if let Some(h) = get(lc, hook) {
            handler(h, true, &p.child(hook), e);
        }
    }
}

/// `validateHandler`: exactly one handler type.
fn handler(h: &Value, lifecycle: bool, p: &Path, e: &mut Errs) {
    let kinds: &[&str] =
        if lifecycle { &["exec", "httpGet", "tcpSocket", "sleep"] } else { &["exec", "httpGet", "tcpSocket", "grpc"] };
    let mut n = 0;
    for &k in kinds {
        let Some(v) = get(h, k) else { continue };
        let kp = p.child(k);
        if n > 0 {
            e.push(FieldError::forbidden(kp, "may not specify more than 1 handler type"));
            continue;
        }
        n += 1;
        match k {
            "exec" if list(v, "command").is_empty() => e.push(FieldError::required(kp.child("command"))),
            "httpGet" => {
                if str_at(v, "path").is_empty() {
                    e.push(FieldError::required(kp.child("path")));
                }
                port_num_or_name(v.get("port"), &kp.child("port"), e);
                let scheme = str_at(v, "scheme");
                if !matches!(scheme, "HTTP" | "HTTPS") {
                    e.push(FieldError::not_supported(kp.child("scheme"), &Value::from(scheme), &["HTTP", "HTTPS"]));
                }
                for hdr in list(v, "httpHeaders") {
                    let name = str_at(hdr, "name");
                    for m in format::is_http_header_name(name) {
                        e.push(FieldError::invalid(kp.child("httpHeaders"), &Value::from(name), &m));
                    }
                }
            }
            "tcpSocket" => port_num_or_name(v.get("port"), &kp.child("port"), e),
            "grpc" => {
                let port = int_at(v, "port");
                for m in format::is_valid_port_num(port) {
                    e.push(FieldError::invalid(kp.child("port"), &Value::from(port), &m));
                }
            }
            "sleep" => {
                let s = int_at(v, "seconds");
                if s < 0 {
                    e.push(FieldError::invalid(kp.child("seconds"), &Value::from(s), "must be non-negative integer"));
                }
            }
            _ => {}
        }
    }
    if n == 0 {
        e.push(FieldError::required_msg(p, "must specify a handler type"));
    }
}

/// `ValidatePortNumOrName` for an IntOrString port.
pub(super) fn port_num_or_name(v: Option<&Value>, p: &Path, e: &mut Errs) {
    match v {
        Some(Value::String(s)) => {
            for m in format::is_valid_port_name(s) {
                e.push(FieldError::invalid(p, &Value::from(s.as_str()), &m));
            }
        }
        other => {
            let n = other.and_then(Value::as_i64).unwrap_or(0);
            for m in format::is_valid_port_num(n) {
                e.push(FieldError::invalid(p, &Value::from(n), &m));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Security contexts, DNS, scheduling

fn id_range(v: &Value, field: &str, p: &Path, e: &mut Errs) {
    if let Some(id) = opt_int(v, field)
        && !(0..=MAX_INT32).contains(&id)
    {
        e.push(FieldError::invalid(p.child(field), &Value::from(id), &inclusive_range_error(0, MAX_INT32)));
    }
}

fn seccomp_profile(sp: Option<&Value>, p: &Path, e: &mut Errs) {
    let Some(sp) = sp else { return };
    let t = str_at(sp, "type");
    match t {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => e.push(FieldError::required_msg(p.child("type"), "type is required when seccompProfile is set")),
        other => e.push(FieldError::not_supported(
            p.child("type"),
            &Value::from(other),
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
    let local = opt_str(sp, "localhostProfile");
    if t == "Localhost" {
        match local {
            None => e.push(FieldError::required_msg(p.child("localhostProfile"), "must be set when seccomp type is Localhost")),
            Some(path) => local_descending_path(path, &p.child("localhostProfile"), e),
        }
    } else if local.is_some() {
        e.push(FieldError::invalid(p.child("localhostProfile"), sp, "can only be set when seccomp type is Localhost"));
    }
}

fn pod_security_context(spec: &Value, spec_path: &Path, e: &mut Errs) {
    let Some(sc) = get(spec, "securityContext") else { return };
    let p = spec_path.child("securityContext");
    id_range(sc, "fsGroup", &p, e);
    id_range(sc, "runAsUser", &p, e);
    id_range(sc, "runAsGroup", &p, e);
    for (i, g) in list(sc, "supplementalGroups").iter().enumerate() {
        let g = g.as_i64().unwrap_or(-1);
        if !(0..=MAX_INT32).contains(&g) {
            e.push(FieldError::invalid(p.child("supplementalGroups").index(i), &Value::from(g), &inclusive_range_error(0, MAX_INT32)));
        }
    }
    if bool_at(spec, "hostPID") && bool_at(sc, "shareProcessNamespace") {
        e.push(FieldError::invalid(
            p.child("shareProcessNamespace"),
            &Value::Bool(true),
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let mut sysctl_names = HashSet::new();
    for (i, s) in list(sc, "sysctls").iter().enumerate() {
        let sp = p.child("sysctls").index(i);
        let name = str_at(s, "name");
        if name.is_empty() {
            e.push(FieldError::required(sp.child("name")));
        } else if !is_sysctl_name(name) {
            e.push(FieldError::invalid(
                sp.child("name"),
                &Value::from(name),
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        } else if !sysctl_names.insert(name) {
            e.push(FieldError::duplicate(sp.child("name"), &Value::from(name)));
        }
    }
    if let Some(policy) = opt_str(sc, "fsGroupChangePolicy")
        && !matches!(policy, "OnRootMismatch" | "Always")
    {
        e.push(FieldError::not_supported(p.child("fsGroupChangePolicy"), &Value::from(policy), &["OnRootMismatch", "Always"]));
    }
    if let Some(policy) = opt_str(sc, "supplementalGroupsPolicy")
        && !matches!(policy, "Merge" | "Strict")
    {
        e.push(FieldError::not_supported(p.child("supplementalGroupsPolicy"), &Value::from(policy), &["Merge", "Strict"]));
    }
    seccomp_profile(get(sc, "seccompProfile"), &p.child("seccompProfile"), e);
}

fn is_sysctl_name(name: &str) -> bool {
    name.len() <= 253
        && name.split(['.', '/']).all(|seg| {
            let b = seg.as_bytes();
            !b.is_empty()
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
        })
}

fn security_context(sc: &Value, p: &Path, e: &mut Errs) {
    id_range(sc, "runAsUser", p, e);
    id_range(sc, "runAsGroup", p, e);
    if let Some(pm) = opt_str(sc, "procMount")
        && !matches!(pm, "Default" | "Unmasked")
    {
        e.push(FieldError::not_supported(p.child("procMount"), &Value::from(pm), &["Default", "Unmasked"]));
    }
    seccomp_profile(get(sc, "seccompProfile"), &p.child("seccompProfile"), e);
    if sc.get("allowPrivilegeEscalation").and_then(Value::as_bool) == Some(false) {
        if bool_at(sc, "privileged") {
            e.push(FieldError::invalid(p, sc, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"));
        }
        if list(&sc["capabilities"], "add").iter().any(|c| c.as_str() == Some("CAP_SYS_ADMIN")) {
            e.push(FieldError::invalid(
                p,
                sc,
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            ));
        }
    }
}

fn dns_config(cfg: Option<&Value>, policy: &str, p: &Path, e: &mut Errs) {
    if policy == "None" {
        match cfg {
            None => {
                e.push(FieldError::required_msg(p, "must provide `dnsConfig` when `dnsPolicy` is None"));
                return;
            }
            Some(c) if list(c, "nameservers").is_empty() => {
                e.push(FieldError::required_msg(
                    p.child("nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return;
            }
            _ => {}
        }
    }
    let Some(cfg) = cfg else { return };
    let nameservers = list(cfg, "nameservers");
    if nameservers.len() > 3 {
        e.push(invalid_go(p.child("nameservers"), &gofmt::str_slice(cfg.get("nameservers")), "must not have more than 3 nameservers"));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        let ns = ns.as_str().unwrap_or("");
        if !format::is_ip(ns) {
            e.push(FieldError::invalid(
                p.child("nameservers").index(i),
                &Value::from(ns),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    let searches: Vec<&str> = list(cfg, "searches").iter().map(|s| s.as_str().unwrap_or("")).collect();
    if searches.len() > 32 {
        e.push(invalid_go(p.child("searches"), &gofmt::str_slice(cfg.get("searches")), "must not have more than 32 search paths"));
    }
    if searches.join(" ").len() > 2048 {
        e.push(invalid_go(
            p.child("searches"),
            &gofmt::str_slice(cfg.get("searches")),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        if *s == "." {
            continue;
        }
        // RelaxedDNSSearchValidation (beta, on in 1.33): underscores are allowed, a trailing dot is ignored.
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        let ok = trimmed.len() <= 253
            && trimmed.split('.').all(|l| {
                let l = l.strip_prefix('_').unwrap_or(l);
                let b = l.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
            });
        if !ok {
            e.push(FieldError::invalid(
                p.child("searches").index(i),
                &Value::from(*s),
                &format::regex_error(
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character",
                    "_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*",
                    &["example.com"],
                ),
            ));
        }
    }
    for (i, o) in list(cfg, "options").iter().enumerate() {
        if str_at(o, "name").is_empty() {
            e.push(FieldError::required_msg(p.child("options").index(i), "Option.Name must not be empty"));
        }
    }
}

fn node_selector_requirement(rq: &Value, fields: bool, p: &Path, e: &mut Errs) {
    let values = list(rq, "values");
    let op = str_at(rq, "operator");
    if fields {
        // matchFields: only `metadata.name` with In/NotIn and exactly one value.
        if !matches!(op, "In" | "NotIn") {
            e.push(FieldError::invalid(p.child("operator"), &Value::from(op), "not a valid selector operator"));
        } else if values.len() != 1 {
            e.push(FieldError::required_msg(p.child("values"), "must be only one value when `operator` is 'In' or 'NotIn' for node field selector"));
        }
        let key = str_at(rq, "key");
        if key != "metadata.name" {
            e.push(FieldError::invalid(p.child("key"), &Value::from(key), "not a valid field selector key"));
        }
        return;
    }
    match op {
        "In" | "NotIn" if values.is_empty() => {
            e.push(FieldError::required_msg(p.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"));
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            e.push(FieldError::forbidden(p.child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"));
        }
        "Gt" | "Lt" if values.len() != 1 => {
            e.push(FieldError::required_msg(p.child("values"), "must be specified single value when `operator` is 'Lt' or 'Gt'"));
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        other => e.push(FieldError::invalid(p.child("operator"), &Value::from(other), "not a valid selector operator")),
    }
    qualified_name(str_at(rq, "key"), &p.child("key"), e);
}

fn node_selector_term(term: &Value, p: &Path, e: &mut Errs) {
    for (j, rq) in list(term, "matchExpressions").iter().enumerate() {
        node_selector_requirement(rq, false, &p.child("matchExpressions").index(j), e);
    }
    for (j, rq) in list(term, "matchFields").iter().enumerate() {
        node_selector_requirement(rq, true, &p.child("matchFields").index(j), e);
    }
}

fn weight(v: &Value, p: &Path, e: &mut Errs) {
    let w = int_at(v, "weight");
    if !(1..=100).contains(&w) {
        e.push(FieldError::invalid(p.child("weight"), &Value::from(w), "must be in the range 1-100"));
    }
}

fn pod_affinity_term(term: &Value, p: &Path, e: &mut Errs) {
    meta::label_selector(get(term, "labelSelector"), &p.child("labelSelector"), e);
    meta::label_selector(get(term, "namespaceSelector"), &p.child("namespaceSelector"), e);
    for (i, ns) in list(term, "namespaces").iter().enumerate() {
        dns_label(ns.as_str().unwrap_or(""), &p.child("namespaces").index(i), e);
    }
    let key = str_at(term, "topologyKey");
    if key.is_empty() {
        e.push(FieldError::required_msg(p.child("topologyKey"), "can not be empty"));
    } else {
        qualified_name(key, &p.child("topologyKey"), e);
    }
}

/// `validateAffinity`: node selector terms and requirements, pod (anti-)affinity terms and weights.
fn affinity(a: &Value, p: &Path, e: &mut Errs) {
    if let Some(na) = get(a, "nodeAffinity") {
        let np = p.child("nodeAffinity");
        if let Some(req) = get(na, "requiredDuringSchedulingIgnoredDuringExecution") {
            let tp = np.child("requiredDuringSchedulingIgnoredDuringExecution").child("nodeSelectorTerms");
            let terms = list(req, "nodeSelectorTerms");
            if terms.is_empty() {
                e.push(FieldError::required_msg(&tp, "must have at least one node selector term"));
            }
            for (i, term) in terms.iter().enumerate() {
                node_selector_term(term, &tp.index(i), e);
            }
        }
        for (i, pref) in list(na, "preferredDuringSchedulingIgnoredDuringExecution").iter().enumerate() {
            let pp = np.child("preferredDuringSchedulingIgnoredDuringExecution").index(i);
            weight(pref, &pp, e);
            node_selector_term(&pref["preference"], &pp.child("preference"), e);
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pa) = get(a, kind) else { continue };
        let kp = p.child(kind);
        for (i, term) in list(pa, "requiredDuringSchedulingIgnoredDuringExecution").iter().enumerate() {
            pod_affinity_term(term, &kp.child("requiredDuringSchedulingIgnoredDuringExecution").index(i), e);
        }
        for (i, pref) in list(pa, "preferredDuringSchedulingIgnoredDuringExecution").iter().enumerate() {
            let pp = kp.child("preferredDuringSchedulingIgnoredDuringExecution").index(i);
            weight(pref, &pp, e);
            pod_affinity_term(&pref["podAffinityTerm"], &pp.child("podAffinityTerm"), e);
        }
    }
}

/// `ValidateTolerations`.
fn tolerations(tols: &[Value], p: &Path, e: &mut Errs) {
    for (i, t) in tols.iter().enumerate() {
        let tp = p.index(i);
        let key = str_at(t, "key");
        if !key.is_empty() {
            qualified_name(key, &tp.child("key"), e);
        }
        let op = str_at(t, "operator");
        if key.is_empty() && op != "Exists" {
            e.push(FieldError::invalid(
                tp.child("operator"),
                &Value::from(op),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        let effect = str_at(t, "effect");
        if get(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            e.push(FieldError::invalid(tp.child("effect"), &Value::from(effect), "effect must be 'NoExecute' when `tolerationSeconds` is set"));
        }
        let value = str_at(t, "value");
        match op {
            "Equal" | "" => {
                let errs = format::is_label_value(value);
                if !errs.is_empty() {
                    e.push(FieldError::invalid(tp.child("operator"), &Value::from(value), &errs.join(";")));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    e.push(FieldError::invalid(tp.child("operator"), t, "value must be empty when `operator` is 'Exists'"));
                }
            }
            other => e.push(FieldError::not_supported(tp.child("operator"), &Value::from(other), &["Equal", "Exists"])),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            e.push(FieldError::not_supported(tp.child("effect"), &Value::from(effect), &["NoSchedule", "PreferNoSchedule", "NoExecute"]));
        }
    }
}

fn topology_spread(constraints: &[Value], p: &Path, e: &mut Errs) {
    let mut seen = HashSet::new();
    for (i, c) in constraints.iter().enumerate() {
        let cp = p.index(i);
        let skew = int_at(c, "maxSkew");
        if skew <= 0 {
            e.push(FieldError::invalid(cp.child("maxSkew"), &Value::from(skew), "must be greater than zero"));
        }
        let key = str_at(c, "topologyKey");
        if key.is_empty() {
            e.push(FieldError::required_msg(cp.child("topologyKey"), "can not be empty"));
        } else {
            qualified_name(key, &cp.child("topologyKey"), e);
        }
        let action = str_at(c, "whenUnsatisfiable");
        if !matches!(action, "DoNotSchedule" | "ScheduleAnyway") {
            e.push(FieldError::not_supported(cp.child("whenUnsatisfiable"), &Value::from(action), &["DoNotSchedule", "ScheduleAnyway"]));
        }
        let pair = format!("{{{key}, {action}}}");
        if !seen.insert(pair.clone()) {
            e.push(FieldError::duplicate(cp.child("{topologyKey, whenUnsatisfiable}"), &Value::from(pair)));
        }
        if let Some(min) = opt_int(c, "minDomains")
            && min <= 0
        {
            e.push(FieldError::invalid(cp.child("minDomains"), &Value::from(min), "must be greater than 0"));
        }
        meta::label_selector(get(c, "labelSelector"), &cp.child("labelSelector"), e);
    }
}

// ---------------------------------------------------------------------------------------------------
// Updates

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`. Beyond upstream, two changes that Skiff makes through the regular update path
/// are allowed: setting `spec.nodeName` once (the `binding` subresource) and adding ephemeral containers.
pub fn pod_update(new: &Value, old: &Value, e: &mut Errs) {
    let (ns, os) = (&new["spec"], &old["spec"]);
    let p = Path::new("spec");
    for kind in ["containers", "initContainers"] {
        let (nc, oc) = (list(ns, kind), list(os, kind));
        if nc.len() != oc.len() {
            e.push(FieldError::forbidden(p.child(kind), "pod updates may not add or remove containers"));
            return;
        }
    }
    match (opt_int(ns, "activeDeadlineSeconds"), opt_int(os, "activeDeadlineSeconds")) {
        (Some(n), old_ads) => {
            if !(0..=MAX_INT32).contains(&n) {
                e.push(FieldError::invalid(p.child("activeDeadlineSeconds"), &Value::from(n), &inclusive_range_error(0, MAX_INT32)));
                return;
            }
            if let Some(o) = old_ads
                && o < n
            {
                e.push(FieldError::invalid(p.child("activeDeadlineSeconds"), &Value::from(n), "must be less than or equal to previous value"));
                return;
            }
        }
        (None, Some(_)) => {
            e.push(FieldError::invalid(p.child("activeDeadlineSeconds"), &Value::Null, "must not update from a positive integer to nil value"));
        }
        (None, None) => {}
    }
    let mut munged = ns.clone();
    if let Some(m) = munged.as_object_mut() {
        for kind in ["containers", "initContainers"] {
            if let Some(ctrs) = m.get_mut(kind).and_then(Value::as_array_mut) {
                for (i, c) in ctrs.iter_mut().enumerate() {
                    if let Some(cm) = c.as_object_mut() {
                        match os[kind][i].get("image") {
                            Some(img) => cm.insert("image".into(), img.clone()),
                            None => cm.remove("image"),
                        };
                    }
                }
            }
        }
        let mut carry = vec!["activeDeadlineSeconds", "schedulingGates", "tolerations", "ephemeralContainers"];
        if str_at(os, "nodeName").is_empty() {
            carry.push("nodeName");
        }
        let (ng, og) = (opt_int(ns, "terminationGracePeriodSeconds"), opt_int(os, "terminationGracePeriodSeconds"));
        if og.is_some_and(|g| g < 0) && ng == Some(1) {
            carry.push("terminationGracePeriodSeconds");
        }
        for f in carry {
            match os.get(f) {
                Some(v) => m.insert(f.into(), v.clone()),
                None => m.remove(f),
            };
        }
    }
    // Tolerations: existing ones may only change their tolerationSeconds.
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    let new_tols: Vec<Value> = list(ns, "tolerations").iter().map(strip).collect();
    if list(os, "tolerations").iter().any(|o| {
        let o = strip(o);
        !new_tols.iter().any(|n| same(Some(n), Some(&o)))
    }) {
        e.push(FieldError::forbidden(p.child("tolerations"), "existing toleration can not be modified except its tolerationSeconds"));
    }
    let old_gates: Vec<&str> = list(os, "schedulingGates").iter().map(|g| str_at(g, "name")).collect();
    for (i, g) in list(ns, "schedulingGates").iter().enumerate() {
        let name = str_at(g, "name");
        if !old_gates.contains(&name) {
            e.push(FieldError::forbidden(
                p.child("schedulingGates").index(i).child("name"),
                &format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
    let old_eph = list(os, "ephemeralContainers");
    let new_eph = list(ns, "ephemeralContainers");
    if new_eph.len() < old_eph.len() || old_eph.iter().zip(new_eph).any(|(a, b)| !same(Some(a), Some(b))) {
        e.push(FieldError::forbidden(p.child("ephemeralContainers"), "existing ephemeral containers may not be changed"));
    }
    if !same(Some(&munged), Some(os)) {
        e.push(FieldError::forbidden(&p, POD_UPDATE_MSG));
    }
}
