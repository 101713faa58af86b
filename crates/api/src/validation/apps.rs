//! Workload controllers: Deployment, ReplicaSet, ReplicationController, StatefulSet, DaemonSet and
//! ControllerRevision (`pkg/apis/apps/validation` and the RC part of core validation), with their update rules.

use serde_json::Value;

use super::format;
use super::{
    get, gofmt, immutable, int_at, invalid_go, list, meta, nonnegative, not_supported_go, opt_int, pod, same, str_at,
    Errs, Path,
};
use crate::status::FieldError;

const TEMPLATE_LABELS_MSG: &str = "`selector` does not match template `labels`";

fn template_labels(tpl: &Value) -> Option<&Value> {
    tpl["metadata"].get("labels").filter(|l| !l.is_null())
}

fn template_mismatch(p: &Path, tpl: &Value) -> FieldError {
    invalid_go(p.child("metadata").child("labels"), &gofmt::str_map(template_labels(tpl)), TEMPLATE_LABELS_MSG)
}

/// `ValidatePositiveIntOrPercent` for a (defaulted) IntOrString field.
fn positive_int_or_percent(v: Option<&Value>, p: &Path, e: &mut Errs) {
    match v {
        Some(Value::String(s)) => {
            for m in format::is_valid_percent(s) {
                e.push(invalid_go(p, &gofmt::int_or_string(v), &m));
            }
        }
        Some(Value::Number(n)) => nonnegative(n.as_i64().unwrap_or(0), p, e),
        _ => {}
    }
}

/// The value of an IntOrString (a percentage's number); `(value, is_percent)`.
fn int_or_percent_value(v: Option<&Value>) -> (i64, bool) {
    match v {
        Some(Value::String(s)) => (s.trim_end_matches('%').parse().unwrap_or(0), s.ends_with('%')),
        Some(Value::Number(n)) => (n.as_i64().unwrap_or(0), false),
        _ => (0, false),
    }
}

fn not_more_than_100_percent(v: Option<&Value>, p: &Path, e: &mut Errs) {
    let (n, pct) = int_or_percent_value(v);
    if pct && n > 100 {
        e.push(invalid_go(p, &gofmt::int_or_string(v), "must not be greater than 100%"));
    }
}

/// `ValidatePodTemplateSpecForReplicaSet` (also Deployments): selector match, template, restartPolicy Always.
fn template_for_replica_set(spec: &Value, selector_ok: bool, kind: &str, p: &Path, e: &mut Errs) {
    let tpl = &spec["template"];
    let tp = p.child("template");
    let sel = get(spec, "selector");
    if selector_ok
        && meta::selector_size(sel) > 0
        && meta::selector_matches(sel, template_labels(tpl)) == Some(false)
    {
        e.push(template_mismatch(&tp, tpl));
    }
    pod::pod_template_spec(tpl, &tp, e);
    restart_always_and_no_deadline(tpl, kind, &tp, e);
}

fn restart_always_and_no_deadline(tpl: &Value, kind: &str, tp: &Path, e: &mut Errs) {
    let rp = str_at(&tpl["spec"], "restartPolicy");
    if rp != "Always" {
        e.push(FieldError::not_supported(tp.child("spec").child("restartPolicy"), &Value::from(rp), &["Always"]));
    }
    if let Some(ads) = get(&tpl["spec"], "activeDeadlineSeconds") {
        let p = tp.child("spec").child("activeDeadlineSeconds");
        let msg = format!("activeDeadlineSeconds in {kind} is not Supported");
        if kind == "DaemonSet" {
            e.push(FieldError::invalid(p, ads, &msg));
        } else {
            e.push(FieldError::forbidden(p, &msg));
        }
    }
}

/// The selector checks shared by Deployments, ReplicaSets and StatefulSets. Returns whether the selector
/// could be built (`LabelSelectorAsSelector` succeeded).
fn required_selector(spec: &Value, kind: &str, p: &Path, e: &mut Errs) -> bool {
    let sp = p.child("selector");
    let Some(sel) = get(spec, "selector") else {
        e.push(FieldError::required(&sp));
        return false;
    };
    meta::label_selector(Some(sel), &sp, e);
    if meta::selector_size(Some(sel)) == 0 {
        e.push(invalid_go(&sp, &gofmt::label_selector(Some(sel)), &format!("empty selector is invalid for {kind}")));
    }
    if meta::selector_matches(Some(sel), None).is_none() {
        e.push(invalid_go(&sp, &gofmt::label_selector(Some(sel)), "invalid label selector"));
        return false;
    }
    true
}

pub fn deployment(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    nonnegative(int_at(spec, "replicas"), &p.child("replicas"), e);
    if get(spec, "selector").is_none() {
        e.push(FieldError::required(p.child("selector")));
        return;
    }
    if required_selector(spec, "deployment", &p, e) {
        template_for_replica_set(spec, true, "ReplicaSet", &p, e);
    }
    deployment_strategy(&spec["strategy"], &p.child("strategy"), e);
    let min_ready = int_at(spec, "minReadySeconds");
    nonnegative(min_ready, &p.child("minReadySeconds"), e);
    if let Some(r) = opt_int(spec, "revisionHistoryLimit") {
        nonnegative(r, &p.child("revisionHistoryLimit"), e);
    }
    if let Some(pd) = opt_int(spec, "progressDeadlineSeconds") {
        nonnegative(pd, &p.child("progressDeadlineSeconds"), e);
        if pd <= min_ready {
            e.push(FieldError::invalid(p.child("progressDeadlineSeconds"), &Value::from(pd), "must be greater than minReadySeconds"));
        }
    }
}

fn deployment_strategy(s: &Value, p: &Path, e: &mut Errs) {
    match str_at(s, "type") {
        "Recreate" => {
            if get(s, "rollingUpdate").is_some() {
                e.push(FieldError::forbidden(p.child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"));
            }
        }
        "RollingUpdate" => match get(s, "rollingUpdate") {
            None => e.push(FieldError::required_msg(p.child("rollingUpdate"), "this should be defaulted and never be nil")),
            Some(ru) => {
                let rp = p.child("rollingUpdate");
                let (mu, ms) = (ru.get("maxUnavailable"), ru.get("maxSurge"));
                positive_int_or_percent(mu, &rp.child("maxUnavailable"), e);
                positive_int_or_percent(ms, &rp.child("maxSurge"), e);
                if int_or_percent_value(mu).0 == 0 && int_or_percent_value(ms).0 == 0 {
                    e.push(invalid_go(rp.child("maxUnavailable"), &gofmt::int_or_string(mu), "may not be 0 when `maxSurge` is 0"));
                }
                not_more_than_100_percent(mu, &rp.child("maxUnavailable"), e);
            }
        },
        other => e.push(not_supported_go(p, &gofmt::quote(other), &["Recreate", "RollingUpdate"])),
    }
}

pub fn replica_set(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    nonnegative(int_at(spec, "replicas"), &p.child("replicas"), e);
    nonnegative(int_at(spec, "minReadySeconds"), &p.child("minReadySeconds"), e);
    if required_selector(spec, "deployment", &p, e) {
        template_for_replica_set(spec, true, "ReplicaSet", &p, e);
    }
}

pub fn replication_controller(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    nonnegative(int_at(spec, "minReadySeconds"), &p.child("minReadySeconds"), e);
    let selector = get(spec, "selector");
    let selector_empty = selector.and_then(Value::as_object).is_none_or(|m| m.is_empty());
    if selector_empty {
        e.push(FieldError::required(p.child("selector")));
    }
    nonnegative(int_at(spec, "replicas"), &p.child("replicas"), e);
    let tp = p.child("template");
    let Some(tpl) = get(spec, "template") else {
        e.push(FieldError::required(&tp));
        return;
    };
    if !selector_empty {
        let labels = template_labels(tpl).and_then(Value::as_object);
        let matches = selector.and_then(Value::as_object).is_some_and(|sel| {
            sel.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        });
        if !matches {
            e.push(template_mismatch(&tp, tpl));
        }
    }
    pod::pod_template_spec(tpl, &tp, e);
    restart_always_and_no_deadline(tpl, "ReplicationController", &tp, e);
}

pub fn stateful_set(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    match str_at(spec, "podManagementPolicy") {
        "" => e.push(FieldError::required(p.child("podManagementPolicy"))),
        "OrderedReady" | "Parallel" => {}
        other => e.push(FieldError::invalid(p.child("podManagementPolicy"), &Value::from(other), "must be 'OrderedReady' or 'Parallel'")),
    }
    let us = &spec["updateStrategy"];
    let up = p.child("updateStrategy");
    match str_at(us, "type") {
        "" => e.push(FieldError::required(&up)),
        "OnDelete" => {
            if let Some(ru) = get(us, "rollingUpdate") {
                e.push(FieldError::invalid(up.child("rollingUpdate"), ru, "only allowed for updateStrategy 'RollingUpdate'"));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = get(us, "rollingUpdate") {
                nonnegative(int_at(ru, "partition"), &up.child("rollingUpdate").child("partition"), e);
            }
        }
        _ => e.push(FieldError::invalid(&up, us, "must be 'RollingUpdate' or 'OnDelete'")),
    }
    if let Some(policy) = get(spec, "persistentVolumeClaimRetentionPolicy") {
        let pp = p.child("persistentVolumeClaimRetentionPolicy");
        for f in ["whenDeleted", "whenScaled"] {
            let v = str_at(policy, f);
            if !matches!(v, "Retain" | "Delete") {
                e.push(FieldError::not_supported(pp.child(f), &Value::from(v), &["Retain", "Delete"]));
            }
        }
    }
    nonnegative(int_at(spec, "replicas"), &p.child("replicas"), e);
    nonnegative(int_at(spec, "minReadySeconds"), &p.child("minReadySeconds"), e);
    if let Some(ord) = get(spec, "ordinals") {
        nonnegative(int_at(ord, "start"), &p.child("ordinals.start"), e);
    }
    let selector_ok = required_selector(spec, "statefulset", &p, e);
    let tpl = &spec["template"];
    let tp = p.child("template");
    if selector_ok {
        let sel = get(spec, "selector");
        if meta::selector_size(sel) > 0 && meta::selector_matches(sel, template_labels(tpl)) == Some(false) {
            e.push(template_mismatch(&tp, tpl));
        }
        // The claim templates' names are volumes of the pods too (the controller adds them).
        let mut with_claims = tpl.clone();
        for t in list(spec, "volumeClaimTemplates") {
            let name = str_at(&t["metadata"], "name").to_string();
            if let Some(vols) = with_claims["spec"].as_object_mut().map(|s| s.entry("volumes").or_insert_with(|| Value::Array(vec![]))) {
                if let Some(a) = vols.as_array_mut().filter(|a| !a.iter().any(|v| v["name"] == name.as_str())) {
                    a.push(serde_json::json!({"name": name, "persistentVolumeClaim": {"claimName": name}}));
                }
            }
        }
        pod::pod_template_spec(&with_claims, &tp, e);
    }
    restart_always_and_no_deadline(tpl, "StatefulSet", &tp, e);
    for (i, pvc) in list(spec, "volumeClaimTemplates").iter().enumerate() {
        let vp = p.child("volumeClaimTemplates").index(i);
        super::core::pvc_spec(&pvc["spec"], &vp.child("spec"), e);
    }
}

pub fn daemon_set(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    let sel = get(spec, "selector");
    meta::label_selector(sel, &p.child("selector"), e);
    let tpl = &spec["template"];
    let tp = p.child("template");
    if meta::selector_matches(sel, template_labels(tpl)) == Some(false) {
        e.push(template_mismatch(&tp, tpl));
    }
    if sel.is_some() && meta::selector_size(sel) == 0 {
        e.push(invalid_go(p.child("selector"), &gofmt::label_selector(sel), "empty selector is invalid for daemonset"));
    }
    pod::pod_template_spec(tpl, &tp, e);
    restart_always_and_no_deadline(tpl, "DaemonSet", &tp, e);
    nonnegative(int_at(spec, "minReadySeconds"), &p.child("minReadySeconds"), e);
    nonnegative(int_at(spec, "templateGeneration"), &p.child("templateGeneration"), e);
    let us = &spec["updateStrategy"];
    let up = p.child("updateStrategy");
    match str_at(us, "type") {
        "OnDelete" => {}
        "RollingUpdate" => match get(us, "rollingUpdate") {
            None => e.push(FieldError::required(up.child("rollingUpdate"))),
            Some(ru) => {
                let rp = up.child("rollingUpdate");
                let (mu, ms) = (ru.get("maxUnavailable"), ru.get("maxSurge"));
                positive_int_or_percent(mu, &rp.child("maxUnavailable"), e);
                positive_int_or_percent(ms, &rp.child("maxSurge"), e);
                not_more_than_100_percent(mu, &rp.child("maxUnavailable"), e);
                not_more_than_100_percent(ms, &rp.child("maxSurge"), e);
                let (has_u, has_s) = (int_or_percent_value(mu).0 != 0, int_or_percent_value(ms).0 != 0);
                if has_u && has_s {
                    e.push(invalid_go(rp.child("maxSurge"), &gofmt::int_or_string(ms), "may not be set when maxUnavailable is non-zero"));
                } else if !has_u && !has_s {
                    e.push(FieldError::required_msg(rp.child("maxUnavailable"), "cannot be 0 when maxSurge is 0"));
                }
            }
        },
        other => e.push(not_supported_go(&up, &gofmt::quote(other), &["RollingUpdate", "OnDelete"])),
    }
    if let Some(r) = opt_int(spec, "revisionHistoryLimit") {
        nonnegative(r, &p.child("revisionHistoryLimit"), e);
    }
}

pub fn controller_revision(obj: &Value, e: &mut Errs) {
    if get(obj, "data").is_none() {
        e.push(FieldError::required_msg("data", "data is mandatory"));
    }
    nonnegative(int_at(obj, "revision"), &Path::new("revision"), e);
}

pub fn controller_revision_update(new: &Value, old: &Value, e: &mut Errs) {
    if !same(get(new, "data"), get(old, "data")) {
        e.push(immutable("data", new.get("data").unwrap_or(&Value::Null)));
    }
}

/// Deployments, ReplicaSets and DaemonSets of apps/v1 may not change their selector.
pub fn selector_immutable(new: &Value, old: &Value, e: &mut Errs) {
    let (ns, os) = (get(&new["spec"], "selector"), get(&old["spec"], "selector"));
    if !same(ns, os) {
        e.push(invalid_go("spec.selector", &gofmt::label_selector(ns), "field is immutable"));
    }
}

pub fn stateful_set_update(new: &Value, old: &Value, e: &mut Errs) {
    let mutable = [
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "revisionHistoryLimit",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
    ];
    let strip = |spec: &Value| {
        let mut s = spec.clone();
        if let Some(m) = s.as_object_mut() {
            for f in mutable {
                m.remove(f);
            }
        }
        s
    };
    if !same(Some(&strip(&new["spec"])), Some(&strip(&old["spec"]))) {
        e.push(FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
}
