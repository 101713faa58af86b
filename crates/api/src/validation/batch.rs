//! Jobs and CronJobs (`pkg/apis/batch/validation`): the job spec, the generated selector, the cron schedule
//! and time zone, and the update rules (selector, template and completion mode are immutable).

use serde_json::Value;

use super::{
    bool_at, cron, format, get, gofmt, immutable, invalid_go, list, meta, nonnegative, opt_int, opt_str, pod,
    same, str_at, Errs, Path,
};
use crate::status::FieldError;

const MAX_PARALLELISM_INDEXED: i64 = 100_000;
const TEMPLATE_LABELS_MSG: &str = "`selector` does not match template `labels`";

pub fn job(obj: &Value, e: &mut Errs) {
    let md = &obj["metadata"];
    let spec = &obj["spec"];
    generated_selector(obj, e);
    job_spec(spec, &Path::new("spec"), e);
    if opt_str(spec, "completionMode") == Some("Indexed")
        && let Some(c) = opt_int(spec, "completions").filter(|c| *c > 0)
    {
        let name = str_at(md, "name");
        let hostname = format!("{name}-{}", c - 1);
        if !format::is_dns1123_label(&hostname).is_empty() {
            e.push(FieldError::invalid(
                "metadata.name",
                &Value::from(name),
                &format!("will not able to create pod with invalid DNS label: {hostname}"),
            ));
        }
    }
}

/// `validateGeneratedSelector`: unless `manualSelector`, the selector and template labels must be the
/// generated ones (`controller-uid` and `job-name`, legacy and `batch.kubernetes.io/` prefixed).
fn generated_selector(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    if bool_at(spec, "manualSelector") {
        return;
    }
    let tpl_md = &spec["template"]["metadata"];
    let Some(labels) = get(tpl_md, "labels") else { return };
    let uid = str_at(&obj["metadata"], "uid");
    let name = str_at(&obj["metadata"], "name");
    if uid.is_empty() {
        e.push(FieldError::required("metadata.uid"));
    }
    let lp = Path::new("spec.template.metadata").child("labels");
    let expected = [
        ("controller-uid", uid),
        ("job-name", name),
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", name),
    ];
    for (key, want) in expected {
        match labels.get(key).and_then(Value::as_str) {
            None => e.push(FieldError::required(lp.key(key))),
            Some(v) if v != want => {
                e.push(invalid_go(lp.key(key), &gofmt::str_map(Some(labels)), &format!("must be '{want}'")));
            }
            Some(_) => {}
        }
    }
    let Some(sel) = get(spec, "selector") else { return };
    let expected_labels: serde_json::Map<String, Value> =
        expected.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
    if meta::selector_matches(Some(sel), Some(&Value::Object(expected_labels))) == Some(false) {
        e.push(invalid_go("spec.selector", &gofmt::label_selector(Some(sel)), "`selector` not auto-generated"));
    }
}

/// `ValidateJobSpec`: the spec checks plus the selector (required) and its match with the template.
fn job_spec(spec: &Value, p: &Path, e: &mut Errs) {
    job_spec_common(spec, p, e);
    let sel = get(spec, "selector");
    match sel {
        None => e.push(FieldError::required(p.child("selector"))),
        Some(s) => meta::label_selector(Some(s), &p.child("selector"), e),
    }
    let tpl_labels = get(&spec["template"]["metadata"], "labels");
    if sel.is_some() && meta::selector_matches(sel, tpl_labels) == Some(false) {
        e.push(invalid_go(p.child("template").child("metadata").child("labels"), &gofmt::str_map(tpl_labels), TEMPLATE_LABELS_MSG));
    }
}

/// `validateJobSpec` (shared with CronJob job templates).
fn job_spec_common(spec: &Value, p: &Path, e: &mut Errs) {
    for f in ["parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"] {
        if let Some(v) = opt_int(spec, f) {
            nonnegative(v, &p.child(f), e);
        }
    }
    if let Some(v) = opt_int(spec, "backoffLimitPerIndex") {
        nonnegative(v, &p.child("backoffLimitPerIndex"), e);
    }
    if let Some(mode) = opt_str(spec, "completionMode") {
        if !matches!(mode, "NonIndexed" | "Indexed") {
            e.push(FieldError::not_supported(p.child("completionMode"), &Value::from(mode), &["NonIndexed", "Indexed"]));
        }
        if mode == "Indexed" {
            if get(spec, "completions").is_none() {
                e.push(FieldError::required_msg(p.child("completions"), "when completion mode is Indexed"));
            }
            if let Some(par) = opt_int(spec, "parallelism")
                && par > MAX_PARALLELISM_INDEXED
            {
                e.push(FieldError::invalid(
                    p.child("parallelism"),
                    &Value::from(par),
                    &format!("must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"),
                ));
            }
        }
    }
    let has_failure_policy = get(spec, "podFailurePolicy").is_some();
    if let Some(prp) = opt_str(spec, "podReplacementPolicy") {
        if has_failure_policy {
            if prp != "Failed" {
                e.push(FieldError::not_supported(p.child("podReplacementPolicy"), &Value::from(prp), &["Failed"]));
            }
        } else if !matches!(prp, "Failed" | "TerminatingOrFailed") {
            e.push(FieldError::not_supported(p.child("podReplacementPolicy"), &Value::from(prp), &["Failed", "TerminatingOrFailed"]));
        }
    }
    if let Some(pfp) = get(spec, "podFailurePolicy") {
        pod_failure_policy(pfp, &p.child("podFailurePolicy"), e);
    }
    let tp = p.child("template");
    pod::pod_template_spec(&spec["template"], &tp, e);
    let rp_path = tp.child("spec").child("restartPolicy");
    match str_at(&spec["template"]["spec"], "restartPolicy") {
        "Always" | "" => e.push(FieldError::required_msg(rp_path, "valid values: \"OnFailure\", \"Never\"")),
        "OnFailure" if has_failure_policy => {
            e.push(FieldError::invalid(rp_path, &Value::from("OnFailure"), "only \"Never\" is supported when podFailurePolicy is specified"));
        }
        "OnFailure" | "Never" => {}
        other => e.push(FieldError::not_supported(rp_path, &Value::from(other), &["OnFailure", "Never"])),
    }
}

fn pod_failure_policy(pfp: &Value, p: &Path, e: &mut Errs) {
    let rules = list(pfp, "rules");
    if rules.len() > 20 {
        e.push(FieldError::too_long(p.child("rules"), 20));
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = p.child("rules").index(i);
        let action = str_at(rule, "action");
        let supported = ["Count", "FailIndex", "FailJob", "Ignore"];
        if !supported.contains(&action) {
            e.push(FieldError::not_supported(rp.child("action"), &Value::from(action), &supported));
        }
        let has_codes = get(rule, "onExitCodes").is_some();
        let has_conds = !list(rule, "onPodConditions").is_empty();
        if has_codes && has_conds {
            e.push(FieldError::invalid(&rp, &Value::from(""), "specifying both OnExitCodes and OnPodConditions is not supported"));
        } else if !has_codes && !has_conds {
            e.push(FieldError::invalid(&rp, &Value::from(""), "specifying one of OnExitCodes and OnPodConditions is required"));
        }
        if let Some(codes) = get(rule, "onExitCodes") {
            let op = str_at(codes, "operator");
            if !matches!(op, "In" | "NotIn") {
                e.push(FieldError::not_supported(rp.child("onExitCodes").child("operator"), &Value::from(op), &["In", "NotIn"]));
            }
        }
    }
}

/// A CronJob (its name leaves room for the 11-character suffix of the Jobs it creates).
pub fn cron_job(obj: &Value, e: &mut Errs) {
    let name = str_at(&obj["metadata"], "name");
    if name.len() > 52 {
        e.push(FieldError::invalid("metadata.name", &Value::from(name), "must be no more than 52 characters"));
    }
    cron_job_spec(&obj["spec"], &Path::new("spec"), e);
}

fn cron_job_spec(spec: &Value, p: &Path, e: &mut Errs) {
    let schedule = str_at(spec, "schedule");
    if schedule.is_empty() {
        e.push(FieldError::required(p.child("schedule")));
    } else {
        if let Err(msg) = cron::parse_standard(schedule) {
            e.push(FieldError::invalid(p.child("schedule"), &Value::from(schedule), &msg));
        }
        // Schedules stored before the timeZone field existed may keep TZ on update upstream; new ones may not.
        if schedule.contains("TZ") {
            e.push(FieldError::invalid(
                p.child("schedule"),
                &Value::from(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    if let Some(v) = opt_int(spec, "startingDeadlineSeconds") {
        nonnegative(v, &p.child("startingDeadlineSeconds"), e);
    }
    if let Some(tz) = opt_str(spec, "timeZone") {
        time_zone(tz, &p.child("timeZone"), e);
    }
    let cp = str_at(spec, "concurrencyPolicy");
    match cp {
        "Allow" | "Forbid" | "Replace" => {}
        "" => e.push(FieldError::required(p.child("concurrencyPolicy"))),
        other => e.push(FieldError::not_supported(p.child("concurrencyPolicy"), &Value::from(other), &["Allow", "Forbid", "Replace"])),
    }
    let jt = &spec["jobTemplate"];
    let jp = p.child("jobTemplate").child("spec");
    job_spec_common(&jt["spec"], &jp, e);
    if let Some(sel) = get(&jt["spec"], "selector") {
        e.push(invalid_go(jp.child("selector"), &gofmt::label_selector(Some(sel)), "`selector` will be auto-generated"));
    }
    if bool_at(&jt["spec"], "manualSelector") {
        e.push(FieldError::not_supported(jp.child("manualSelector"), &Value::Bool(true), &["nil", "false"]));
    }
    for f in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        if let Some(v) = opt_int(spec, f) {
            nonnegative(v, &p.child(f), e);
        }
    }
}

fn time_zone(tz: &str, p: &Path, e: &mut Errs) {
    if tz.is_empty() {
        e.push(FieldError::invalid(p, &Value::from(tz), "timeZone must be nil or non-empty string"));
        return;
    }
    let bad_part = tz.split('/').any(|part| {
        part == "."
            || part == ".."
            || part.starts_with('-')
            || part.is_empty()
            || part.len() > 14
            || !part.bytes().all(|c| c.is_ascii_alphanumeric() || b".-_+".contains(&c))
    });
    if bad_part {
        e.push(FieldError::invalid(p, &Value::from(tz), &format!("unknown time zone {tz}")));
        return;
    }
    if tz.eq_ignore_ascii_case("Local") {
        e.push(FieldError::invalid(
            p,
            &Value::from(tz),
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
        return;
    }
    // The zone database may be missing on this host; only reject when it demonstrably works.
    let db_works = jiff::tz::TimeZone::get("America/New_York").is_ok();
    if db_works && tz != "UTC" && jiff::tz::TimeZone::get(tz).is_err() {
        e.push(FieldError::invalid(p, &Value::from(tz), &format!("unknown time zone {tz}")));
    }
}

/// `ValidateJobSpecUpdate` (beyond the create checks): selector, template (unless suspended and never
/// started: scheduling directives, labels and annotations may change), completion mode, failure policy and
/// per-index backoff are immutable; Indexed jobs may scale completions with parallelism.
pub fn job_update(new: &Value, old: &Value, e: &mut Errs) {
    let (ns, os) = (&new["spec"], &old["spec"]);
    let p = Path::new("spec");
    let indexed = opt_str(ns, "completionMode") == Some("Indexed");
    let (nc, oc) = (get(ns, "completions"), get(os, "completions"));
    if !same(nc, oc) {
        if !indexed {
            e.push(immutable(p.child("completions"), nc.unwrap_or(&Value::Null)));
        } else if let Some(c) = nc
            && c.as_i64() != opt_int(ns, "parallelism")
        {
            e.push(FieldError::invalid(p.child("completions"), c, "can only be modified in tandem with spec.parallelism"));
        }
    }
    let (nsel, osel) = (get(ns, "selector"), get(os, "selector"));
    if !same(nsel, osel) {
        e.push(invalid_go(p.child("selector"), &gofmt::label_selector(nsel), "field is immutable"));
    }
    let mutable_scheduling = bool_at(ns, "suspend") && get(&old["status"], "startTime").is_none();
    let mut old_tpl = os["template"].clone();
    if mutable_scheduling && let Some(t) = old_tpl.as_object_mut() {
        let nt = &ns["template"];
        let md = t.entry("metadata").or_insert_with(|| Value::Object(Default::default()));
        if let Some(md) = md.as_object_mut() {
            for f in ["labels", "annotations"] {
                match nt["metadata"].get(f) {
                    Some(v) => md.insert(f.into(), v.clone()),
                    None => md.remove(f),
                };
            }
        }
        let spec = t.entry("spec").or_insert_with(|| Value::Object(Default::default()));
        if let Some(sm) = spec.as_object_mut() {
            for f in ["nodeSelector", "tolerations", "schedulingGates"] {
                match nt["spec"].get(f) {
                    Some(v) => sm.insert(f.into(), v.clone()),
                    None => sm.remove(f),
                };
            }
            let new_node_affinity = nt["spec"]["affinity"].get("nodeAffinity").cloned();
            let aff = sm.entry("affinity").or_insert_with(|| Value::Object(Default::default()));
            if let Some(am) = aff.as_object_mut() {
                match new_node_affinity {
                    Some(na) => am.insert("nodeAffinity".into(), na),
                    None => am.remove("nodeAffinity"),
                };
            }
        }
    }
    if !same(Some(&ns["template"]), Some(&old_tpl)) {
        e.push(immutable(p.child("template"), &ns["template"]));
    }
    for f in ["completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy"] {
        let (a, b) = (get(ns, f), get(os, f));
        if !same(a, b) {
            e.push(immutable(p.child(f), a.unwrap_or(&Value::Null)));
        }
    }
}
