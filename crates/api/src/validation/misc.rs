//! The remaining groups: autoscaling (HPA v1 and v2), coordination (Lease), RBAC, storage (StorageClass,
//! CSIDriver), policy (PodDisruptionBudget) and scheduling (PriorityClass), with their update rules.

use serde_json::Value;

use super::format;
use super::quantity::{quantity_text, Quantity};
use super::{
    get, gofmt, immutable, int_at, invalid_go, list, meta, nonnegative, opt_int, opt_str, qualified_name, same,
    str_at, Errs, Path,
};
use crate::status::FieldError;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

// ---------------------------------------------------------------------------------------------------
// HorizontalPodAutoscaler

fn scale_target_ref(r: &Value, p: &Path, e: &mut Errs) {
    for f in ["kind", "name"] {
        let v = str_at(r, f);
        if v.is_empty() {
            e.push(FieldError::required(p.child(f)));
        } else {
            for m in format::is_valid_path_segment_name(v) {
                e.push(FieldError::invalid(p.child(f), &Value::from(v), &m));
            }
        }
    }
}

fn replicas_bounds(spec: &Value, p: &Path, e: &mut Errs) {
    let min = opt_int(spec, "minReplicas");
    let max = int_at(spec, "maxReplicas");
    if let Some(m) = min
        && m < 1
    {
        e.push(FieldError::invalid(p.child("minReplicas"), &Value::from(m), "must be greater than or equal to 1"));
    }
    if max < 1 {
        e.push(FieldError::invalid(p.child("maxReplicas"), &Value::from(max), "must be greater than 0"));
    }
    if let Some(m) = min
        && max < m
    {
        e.push(FieldError::invalid(p.child("maxReplicas"), &Value::from(max), "must be greater than or equal to `minReplicas`"));
    }
    scale_target_ref(&spec["scaleTargetRef"], &p.child("scaleTargetRef"), e);
}

pub fn hpa_v1(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    replicas_bounds(spec, &p, e);
    if let Some(t) = opt_int(spec, "targetCPUUtilizationPercentage")
        && t < 1
    {
        e.push(FieldError::invalid(p.child("targetCPUUtilizationPercentage"), &Value::from(t), "must be greater than 0"));
    }
}

pub fn hpa_v2(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    replicas_bounds(spec, &p, e);
    for (i, m) in list(spec, "metrics").iter().enumerate() {
        metric_spec(m, &p.child("metrics").index(i), e);
    }
    if let Some(b) = get(spec, "behavior") {
        for dir in ["scaleUp", "scaleDown"] {
            if let Some(rules) = get(b, dir) {
                scaling_rules(rules, &p.child("behavior").child(dir), e);
            }
        }
    }
}

const METRIC_TYPES: &[&str] = &["Object", "Pods", "Resource", "External", "ContainerResource"];

fn metric_spec(m: &Value, p: &Path, e: &mut Errs) {
    let ty = str_at(m, "type");
    if ty.is_empty() {
        e.push(FieldError::required_msg(p.child("type"), "must specify a metric source type"));
    }
    if !METRIC_TYPES.contains(&ty) {
        e.push(FieldError::not_supported(p.child("type"), &Value::from(ty), METRIC_TYPES));
    }
    let sources = ["object", "pods", "resource", "containerResource", "external"];
    let present: Vec<&str> = sources.iter().copied().filter(|s| get(m, s).is_some()).collect();
    if let Some(first) = present.first() {
        let sp = p.child(first);
        let src = &m[*first];
        match *first {
            "resource" | "containerResource" => {
                if str_at(src, "name").is_empty() {
                    e.push(FieldError::required_msg(sp.child("name"), "must specify a resource name"));
                }
                if *first == "containerResource" && str_at(src, "container").is_empty() {
                    e.push(FieldError::required_msg(sp.child("container"), "must specify a container"));
                }
                let target = &src["target"];
                metric_target(target, &sp.child("target"), e);
                let (util, avg) = (get(target, "averageUtilization"), get(target, "averageValue"));
                if util.is_none() && avg.is_none() {
                    e.push(FieldError::required_msg(
                        sp.child("target").child("averageUtilization"),
                        "must set either a target raw value or a target utilization",
                    ));
                }
                if util.is_some() && avg.is_some() {
                    e.push(FieldError::forbidden(
                        sp.child("target").child("averageValue"),
                        "may not set both a target raw value and a target utilization",
                    ));
                }
            }
            _ => {
                let metric = &src["metric"];
                if str_at(metric, "name").is_empty() {
                    e.push(FieldError::required_msg(sp.child("metric").child("name"), "must specify a metric name"));
                }
                metric_target(&src["target"], &sp.child("target"), e);
            }
        }
    }
    let expected = match ty {
        "Object" => Some("object"),
        "Pods" => Some("pods"),
        "Resource" => Some("resource"),
        "External" => Some("external"),
        "ContainerResource" => Some("containerResource"),
        _ => None,
    };
    match expected {
        Some(field) if get(m, field).is_none() => {
            e.push(FieldError::required_msg(p.child(field), "must populate information for the given metric source"));
        }
        None => e.push(FieldError::not_supported(p.child("type"), &Value::from(ty), METRIC_TYPES)),
        _ => {}
    }
    if present.len() != 1 {
        for s in present.iter().filter(|s| Some(**s) != expected) {
            e.push(FieldError::forbidden(p.child(s), "must populate the given metric source only"));
        }
    }
}

fn metric_target(t: &Value, p: &Path, e: &mut Errs) {
    let ty = str_at(t, "type");
    if ty.is_empty() {
        e.push(FieldError::required_msg(p.child("type"), "must specify a metric target type"));
    }
    if !matches!(ty, "Utilization" | "Value" | "AverageValue") {
        e.push(FieldError::invalid(p.child("type"), &Value::from(ty), "must be either Utilization, Value, or AverageValue"));
    }
    for f in ["value", "averageValue"] {
        if let Some(q) = get(t, f)
            && Quantity::from_json(q).is_ok_and(|v| !v.is_positive())
        {
            e.push(FieldError::invalid(p.child(f), &Value::from(quantity_text(q)), "must be positive"));
        }
    }
    if let Some(u) = opt_int(t, "averageUtilization")
        && u < 1
    {
        e.push(FieldError::invalid(p.child("averageUtilization"), &Value::from(u), "must be greater than 0"));
    }
}

fn scaling_rules(rules: &Value, p: &Path, e: &mut Errs) {
    if let Some(w) = opt_int(rules, "stabilizationWindowSeconds") {
        if w < 0 {
            e.push(FieldError::invalid(p.child("stabilizationWindowSeconds"), &Value::from(w), "must be greater than or equal to zero"));
        }
        if w > 3600 {
            e.push(FieldError::invalid(p.child("stabilizationWindowSeconds"), &Value::from(w), "must be less than or equal to 3600"));
        }
    }
    if let Some(sp) = opt_str(rules, "selectPolicy")
        && !matches!(sp, "Max" | "Min" | "Disabled")
    {
        e.push(FieldError::not_supported(p.child("selectPolicy"), &Value::from(sp), &["Max", "Min", "Disabled"]));
    }
    let policies = list(rules, "policies");
    if policies.is_empty() {
        e.push(FieldError::required_msg(p.child("policies"), "must specify at least one Policy"));
    }
    for (i, pol) in policies.iter().enumerate() {
        let pp = p.child("policies").index(i);
        let ty = str_at(pol, "type");
        if !matches!(ty, "Pods" | "Percent") {
            e.push(FieldError::not_supported(pp.child("type"), &Value::from(ty), &["Pods", "Percent"]));
        }
        let v = int_at(pol, "value");
        if v <= 0 {
            e.push(FieldError::invalid(pp.child("value"), &Value::from(v), "must be greater than zero"));
        }
        let period = int_at(pol, "periodSeconds");
        if period <= 0 {
            e.push(FieldError::invalid(pp.child("periodSeconds"), &Value::from(period), "must be greater than zero"));
        }
        if period > 1800 {
            e.push(FieldError::invalid(pp.child("periodSeconds"), &Value::from(period), "must be less than or equal to 1800"));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Lease

pub fn lease(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    if let Some(d) = opt_int(spec, "leaseDurationSeconds")
        && d <= 0
    {
        e.push(FieldError::invalid(p.child("leaseDurationSeconds"), &Value::from(d), "must be greater than 0"));
    }
    if let Some(t) = opt_int(spec, "leaseTransitions")
        && t < 0
    {
        e.push(FieldError::invalid(p.child("leaseTransitions"), &Value::from(t), "must be greater than or equal to 0"));
    }
}

// ---------------------------------------------------------------------------------------------------
// RBAC

pub fn role(obj: &Value, namespaced: bool, e: &mut Errs) {
    for (i, rule) in list(obj, "rules").iter().enumerate() {
        let rp = Path::new("rules").index(i);
        if list(rule, "verbs").is_empty() {
            e.push(FieldError::required_msg(rp.child("verbs"), "verbs must contain at least one value"));
        }
        let urls = list(rule, "nonResourceURLs");
        if !urls.is_empty() {
            let rendered = gofmt::str_slice(rule.get("nonResourceURLs"));
            if namespaced {
                e.push(invalid_go(rp.child("nonResourceURLs"), &rendered, "namespaced rules cannot apply to non-resource URLs"));
            }
            if !list(rule, "apiGroups").is_empty() || !list(rule, "resources").is_empty() || !list(rule, "resourceNames").is_empty() {
                e.push(invalid_go(rp.child("nonResourceURLs"), &rendered, "rules cannot apply to both regular resources and non-resource URLs"));
            }
            continue;
        }
        if list(rule, "apiGroups").is_empty() {
            e.push(FieldError::required_msg(rp.child("apiGroups"), "resource rules must supply at least one api group"));
        }
        if list(rule, "resources").is_empty() {
            e.push(FieldError::required_msg(rp.child("resources"), "resource rules must supply at least one resource"));
        }
    }
    if !namespaced && let Some(agg) = get(obj, "aggregationRule") {
        let sp = Path::new("aggregationRule").child("clusterRoleSelectors");
        let selectors = list(agg, "clusterRoleSelectors");
        if selectors.is_empty() {
            e.push(FieldError::required_msg(&sp, "at least one clusterRoleSelector required if aggregationRule is non-nil"));
        }
        for (i, s) in selectors.iter().enumerate() {
            meta::label_selector(Some(s), &sp.index(i), e);
        }
    }
}

pub fn role_binding(obj: &Value, namespaced: bool, e: &mut Errs) {
    let rr = &obj["roleRef"];
    let group = str_at(rr, "apiGroup");
    if group != RBAC_GROUP {
        e.push(FieldError::not_supported("roleRef.apiGroup", &Value::from(group), &[RBAC_GROUP]));
    }
    let kind = str_at(rr, "kind");
    if namespaced {
        if !matches!(kind, "Role" | "ClusterRole") {
            e.push(FieldError::not_supported("roleRef.kind", &Value::from(kind), &["Role", "ClusterRole"]));
        }
    } else if kind != "ClusterRole" {
        e.push(FieldError::not_supported("roleRef.kind", &Value::from(kind), &["ClusterRole"]));
    }
    let name = str_at(rr, "name");
    if name.is_empty() {
        e.push(FieldError::required("roleRef.name"));
    } else {
        for m in format::is_valid_path_segment_name(name) {
            e.push(FieldError::invalid("roleRef.name", &Value::from(name), &m));
        }
    }
    for (i, s) in list(obj, "subjects").iter().enumerate() {
        let sp = Path::new("subjects").index(i);
        let name = str_at(s, "name");
        if name.is_empty() {
            e.push(FieldError::required(sp.child("name")));
        }
        let group = str_at(s, "apiGroup");
        match str_at(s, "kind") {
            "ServiceAccount" => {
                if !name.is_empty() {
                    super::dns_subdomain(name, &sp.child("name"), e);
                }
                if !group.is_empty() {
                    e.push(FieldError::not_supported(sp.child("apiGroup"), &Value::from(group), &[""]));
                }
                if !namespaced && str_at(s, "namespace").is_empty() {
                    e.push(FieldError::required(sp.child("namespace")));
                }
            }
            "User" | "Group" => {
                if group != RBAC_GROUP {
                    e.push(FieldError::not_supported(sp.child("apiGroup"), &Value::from(group), &[RBAC_GROUP]));
                }
            }
            other => e.push(FieldError::not_supported(sp.child("kind"), &Value::from(other), &["ServiceAccount", "User", "Group"])),
        }
    }
}

pub fn role_binding_update(new: &Value, old: &Value, e: &mut Errs) {
    let (n, o) = (&new["roleRef"], &old["roleRef"]);
    let differs = ["apiGroup", "kind", "name"].iter().any(|f| str_at(n, f) != str_at(o, f));
    if differs {
        e.push(invalid_go("roleRef", &gofmt::role_ref(Some(n)), "cannot change roleRef"));
    }
}

// ---------------------------------------------------------------------------------------------------
// Storage

pub fn storage_class(obj: &Value, e: &mut Errs) {
    let provisioner = str_at(obj, "provisioner");
    if provisioner.is_empty() {
        e.push(FieldError::required("provisioner"));
    } else {
        qualified_name(&provisioner.to_lowercase(), &Path::new("provisioner"), e);
    }
    if let Some(params) = obj.get("parameters").and_then(Value::as_object) {
        if params.len() > 512 {
            e.push(FieldError::too_long("parameters", 512));
        }
        let total: usize = params.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum();
        if total > 256 * 1024 {
            e.push(FieldError::too_long("parameters", 256 * 1024));
        }
        for k in params.keys() {
            if k.is_empty() {
                e.push(FieldError::invalid("parameters", &Value::from(""), "field can not be empty."));
            }
        }
    }
    match opt_str(obj, "reclaimPolicy") {
        Some(rp) if !matches!(rp, "Delete" | "Retain") => {
            e.push(FieldError::not_supported("reclaimPolicy", &Value::from(rp), &["Delete", "Retain"]));
        }
        _ => {}
    }
    match opt_str(obj, "volumeBindingMode") {
        None => e.push(FieldError::required("volumeBindingMode")),
        Some(m) if !matches!(m, "Immediate" | "WaitForFirstConsumer") => {
            e.push(FieldError::not_supported("volumeBindingMode", &Value::from(m), &["Immediate", "WaitForFirstConsumer"]));
        }
        _ => {}
    }
}

pub fn storage_class_update(new: &Value, old: &Value, e: &mut Errs) {
    if !same(get(new, "parameters"), get(old, "parameters")) {
        e.push(FieldError::forbidden("parameters", "updates to parameters are forbidden."));
    }
    if str_at(new, "provisioner") != str_at(old, "provisioner") {
        e.push(FieldError::forbidden("provisioner", "updates to provisioner are forbidden."));
    }
    if str_at(new, "reclaimPolicy") != str_at(old, "reclaimPolicy") {
        e.push(FieldError::forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."));
    }
    if str_at(new, "volumeBindingMode") != str_at(old, "volumeBindingMode") {
        e.push(immutable("volumeBindingMode", new.get("volumeBindingMode").unwrap_or(&Value::Null)));
    }
}

pub fn csi_driver(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    for f in ["attachRequired", "podInfoOnMount", "storageCapacity", "requiresRepublish"] {
        if get(spec, f).is_none() {
            e.push(FieldError::required(p.child(f)));
        }
    }
    match opt_str(spec, "fsGroupPolicy") {
        None => e.push(FieldError::required(p.child("fsGroupPolicy"))),
        Some(f) if !matches!(f, "File" | "None" | "ReadWriteOnceWithFSType") => {
            e.push(FieldError::not_supported(p.child("fsGroupPolicy"), &Value::from(f), &["File", "None", "ReadWriteOnceWithFSType"]));
        }
        _ => {}
    }
    for (i, m) in list(spec, "volumeLifecycleModes").iter().enumerate() {
        let m = m.as_str().unwrap_or("");
        if !matches!(m, "Ephemeral" | "Persistent") {
            e.push(FieldError::not_supported(p.child("volumeLifecycleModes").index(i), &Value::from(m), &["Ephemeral", "Persistent"]));
        }
    }
    for (i, t) in list(spec, "tokenRequests").iter().enumerate() {
        if let Some(exp) = opt_int(t, "expirationSeconds")
            && exp < 600
        {
            e.push(FieldError::invalid(
                p.child("tokenRequests").index(i).child("expirationSeconds"),
                &Value::from(exp),
                "may not specify a duration less than 10 minutes",
            ));
        }
    }
}

pub fn csi_driver_update(new: &Value, old: &Value, e: &mut Errs) {
    let (ns, os) = (&new["spec"], &old["spec"]);
    for f in ["attachRequired", "fsGroupPolicy", "podInfoOnMount", "volumeLifecycleModes"] {
        if !same(get(ns, f), get(os, f)) {
            e.push(immutable(Path::new("spec").child(f), ns.get(f).unwrap_or(&Value::Null)));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Policy and scheduling

fn int_or_percent(v: Option<&Value>, p: &Path, e: &mut Errs) {
    match v {
        Some(Value::String(s)) => {
            for m in format::is_valid_percent(s) {
                e.push(invalid_go(p, &gofmt::int_or_string(v), &m));
            }
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            if s.ends_with('%') && pct > 100 {
                e.push(invalid_go(p, &gofmt::int_or_string(v), "must not be greater than 100%"));
            }
        }
        Some(Value::Number(n)) => nonnegative(n.as_i64().unwrap_or(0), p, e),
        _ => {}
    }
}

pub fn pod_disruption_budget(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    let (min, max) = (get(spec, "minAvailable"), get(spec, "maxUnavailable"));
    if min.is_some() && max.is_some() {
        e.push(FieldError::invalid(&p, spec, "minAvailable and maxUnavailable cannot be both set"));
    }
    int_or_percent(min, &p.child("minAvailable"), e);
    int_or_percent(max, &p.child("maxUnavailable"), e);
    meta::label_selector(get(spec, "selector"), &p.child("selector"), e);
    if let Some(policy) = opt_str(spec, "unhealthyPodEvictionPolicy")
        && !matches!(policy, "AlwaysAllow" | "IfHealthyBudget")
    {
        e.push(FieldError::not_supported(
            p.child("unhealthyPodEvictionPolicy"),
            &Value::from(policy),
            &["AlwaysAllow", "IfHealthyBudget"],
        ));
    }
}

const SYSTEM_PRIORITY_CLASSES: &[(&str, i64)] = &[("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)];

pub fn priority_class(obj: &Value, e: &mut Errs) {
    let name = str_at(&obj["metadata"], "name");
    let value = int_at(obj, "value");
    if name.starts_with("system-") {
        let known = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name);
        let err = match known {
            None => Some(format!("{name:?} is not a known system priority class")),
            Some((_, v)) if *v != value => Some(format!("value of {name} PriorityClass must be {v}")),
            _ => None,
        };
        if let Some(err) = err {
            e.push(FieldError::forbidden(
                "metadata.name",
                &format!("priority class names with 'system-' prefix are reserved for system use only. error: {err}"),
            ));
        }
    } else if value > 1_000_000_000 {
        e.push(FieldError::forbidden("value", "maximum allowed value of a user defined priority is 1000000000"));
    }
    if let Some(pp) = opt_str(obj, "preemptionPolicy")
        && !matches!(pp, "Never" | "PreemptLowerPriority")
    {
        e.push(FieldError::not_supported("preemptionPolicy", &Value::from(pp), &["Never", "PreemptLowerPriority"]));
    }
}

pub fn priority_class_update(new: &Value, old: &Value, e: &mut Errs) {
    if opt_int(new, "value") != opt_int(old, "value") {
        e.push(FieldError::forbidden("value", "may not be changed in an update."));
    }
    if opt_str(new, "preemptionPolicy") != opt_str(old, "preemptionPolicy") {
        e.push(immutable("preemptionPolicy", new.get("preemptionPolicy").unwrap_or(&Value::Null)));
    }
}
