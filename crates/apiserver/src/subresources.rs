//! Subresources: `status`, `scale` (autoscaling/v1 Scale), pod `binding` and `eviction`, namespace
//! `finalize`; the streaming ones (`log`, `exec`, `attach`, `portforward`) are proxied to the pod's kubelet
//! (`proxy`).

use axum::body::Body;
use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::{ApiError, FieldError};
use skiff_registry::{DeleteOptions, Deleted};

use crate::handlers::{self, Ctx, Target};
use crate::{body, json_response, patch};

pub async fn serve(ctx: &Ctx, t: &Target, sub: &str, body: Body) -> Result<Response, ApiError> {
    let Some(name) = t.name.as_deref() else {
        return Err(ApiError::no_route());
    };
    let ns = t.namespace.as_deref();
    let method = &ctx.parts.method;
    match (sub, method) {
        ("status", &Method::GET) => {
            let obj = ctx.server.registry.get(t.r, ns, name).await?;
            Ok(handlers::object_response(ctx, t.r, obj))
        }
        ("status", &Method::PUT) => handlers::update(ctx, t, name, body, true).await,
        ("status", &Method::PATCH) => patch::serve(ctx, t, name, body, true).await,
        ("scale", &Method::GET) => {
            let obj = ctx.server.registry.get(t.r, ns, name).await?;
            let scale = match crate::crd::scale_paths(ctx.server.registry.catalog(), t.r) {
                Some(paths) => crate::crd::to_scale(&obj, &paths),
                None => to_scale(&obj),
            };
            if ctx.wants_table() {
                return Ok(json_response(StatusCode::OK, &scale_table(&scale)));
            }
            Ok(json_response(StatusCode::OK, &scale))
        }
        ("scale", &Method::PUT) | ("scale", &Method::PATCH) => scale_write(ctx, t, name, body).await,
        ("binding", &Method::POST) => bind(ctx, t, name, body).await,
        ("eviction", &Method::POST) => evict(ctx, t, name, body).await,
        ("finalize", &Method::PUT) => finalize(ctx, t, name, body).await,
        ("log" | "exec" | "attach" | "portforward", _) => crate::proxy::serve(ctx, t, name, sub).await,
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow {method} on {}/{sub}",
            t.r.qualified_plural()
        ))),
    }
}

/// The autoscaling/v1 Scale of a scalable object.
pub fn to_scale(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let selector = match obj["spec"].get("selector") {
        Some(sel) if sel.get("matchLabels").is_some() || sel.get("matchExpressions").is_some() => {
            skiff_api::selector::to_selector_string(sel)
        }
        // ReplicationControllers have a plain map selector.
        Some(Value::Object(map)) => {
            let mut parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
            parts.sort();
            parts.join(",")
        }
        _ => String::new(),
    };
    let mut meta = json!({"name": m["name"], "uid": m["uid"], "resourceVersion": m["resourceVersion"],
                          "creationTimestamp": m["creationTimestamp"]});
    if let Some(ns) = m.get("namespace") {
        meta["namespace"] = ns.clone();
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// A Scale as a Table, with upstream's columns for `kubectl get --subresource=scale`.
fn scale_table(scale: &Value) -> Value {
    let col = |name: &str, ty: &str, format: &str, description: &str| {
        json!({"name": name, "type": ty, "format": format, "description": description, "priority": 0})
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": scale["metadata"]["resourceVersion"]},
        "columnDefinitions": [
            col("Name", "string", "name", "Name must be unique within a namespace."),
            col("Desired", "integer", "", "desired number of instances for the scaled object."),
            col("Available", "integer", "", "actual number of observed instances of the scaled object."),
        ],
        "rows": [{
            "cells": [scale["metadata"]["name"], scale["spec"]["replicas"], scale["status"]["replicas"]],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": scale["metadata"]},
        }],
    })
}

async fn scale_write(ctx: &Ctx, t: &Target, name: &str, body: Body) -> Result<Response, ApiError> {
    let ns = t.namespace.as_deref();
    let is_patch = ctx.parts.method == Method::PATCH;
    let ptype = if is_patch { Some(patch::patch_type(&body::content_type(&ctx.parts.headers))?) } else { None };
    let scale_res = resources::find("autoscaling", "v1", "horizontalpodautoscalers").expect("served");
    let input = if is_patch {
        body::parse_json(&body::read(body).await?)?
    } else {
        handlers::decode_for(ctx, t, body, Some(("autoscaling/v1", "Scale"))).await?.0
    };
    let r: &ResourceInfo = t.r;
    let custom = crate::crd::scale_paths(ctx.server.registry.catalog(), r);
    let to_scale = |o: &Value| match &custom {
        Some(paths) => crate::crd::to_scale(o, paths),
        None => to_scale(o),
    };
    let updated = ctx
        .server
        .registry
        .guaranteed_update(r, ns, name, false, ctx.write_options(), &|old| {
            let current = to_scale(old);
            let wanted = match ptype {
                Some(p) => patch::apply(ctx, scale_res, p, &current, &input)?,
                None => input.clone(),
            };
            if let Some(rv) = wanted["metadata"].get("resourceVersion").and_then(Value::as_str)
                && !rv.is_empty()
                && Some(rv) != old["metadata"]["resourceVersion"].as_str()
            {
                return Err(ApiError::conflict(r.group, r.plural, name));
            }
            let replicas = &wanted["spec"]["replicas"];
            let Some(n) = replicas.as_i64() else {
                return Err(ApiError::invalid("autoscaling", "Scale", name, &[FieldError::invalid("spec.replicas", replicas, "must be an integer")]));
            };
            if n < 0 {
                return Err(ApiError::invalid("autoscaling", "Scale", name, &[FieldError::invalid("spec.replicas", replicas, "must be greater than or equal to 0")]));
            }
            if let Some(paths) = &custom {
                return crate::crd::apply_scale(old, paths, n, name);
            }
            let mut new = old.clone();
            new["spec"]["replicas"] = json!(n);
            Ok(new)
        })
        .await?;
    Ok(json_response(StatusCode::OK, &to_scale(&updated)))
}

async fn bind(ctx: &Ctx, t: &Target, name: &str, body: Body) -> Result<Response, ApiError> {
    let (binding, _) = handlers::decode_for(ctx, t, body, Some(("v1", "Binding"))).await?;
    let node = binding["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid("", "Binding", name, &[FieldError::required("target.name")]));
    }
    let ns = t.namespace.as_deref();
    ctx.server
        .registry
        .guaranteed_update(t.r, ns, name, false, ctx.write_options(), &|old| {
            if old["metadata"].get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
                return Err(ApiError::conflict_msg("", "pods", name, "pod is being deleted, cannot be assigned to a host"));
            }
            match old["spec"]["nodeName"].as_str() {
                Some(n) if !n.is_empty() => Err(ApiError::conflict_msg("", "pods", name, &format!("pod {name} is already assigned to node {n:?}"))),
                _ => {
                    if old["spec"]["schedulingGates"].as_array().is_some_and(|g| !g.is_empty()) {
                        return Err(ApiError::conflict_msg("", "pods", name, &format!("pod {name} has non-empty .spec.schedulingGates")));
                    }
                    let current = old["metadata"]["uid"].as_str().unwrap_or("");
                    if let Some(uid) = binding["metadata"]["uid"].as_str().filter(|u| !u.is_empty() && *u != current) {
                        let why = format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {current}");
                        return Err(ApiError::conflict_msg("", "pods", name, &why));
                    }
                    let mut new = old.clone();
                    new["spec"]["nodeName"] = json!(node);
                    // The binding's annotations are copied onto the pod, as upstream's setPodNodeAndMetadata.
                    if let Some(annotations) = binding["metadata"]["annotations"].as_object() {
                        if !new["metadata"]["annotations"].is_object() {
                            new["metadata"]["annotations"] = json!({});
                        }
                        for (k, v) in annotations {
                            new["metadata"]["annotations"][k] = v.clone();
                        }
                    }
                    Ok(new)
                }
            }
        })
        .await?;
    // Upstream sets PodScheduled=True in the same write; the status lives behind the status strategy here,
    // so it is a second write (a reader may briefly see the node set before the condition).
    if !ctx.params.dry_run {
        ctx.server
            .registry
            .guaranteed_update(t.r, ns, name, true, ctx.write_options(), &|old| {
                let mut new = old.clone();
                set_pod_scheduled(&mut new["status"], &skiff_registry::now_rfc3339());
                Ok(new)
            })
            .await?;
    }
    Ok(json_response(StatusCode::CREATED, &skiff_api::status::success_status("", "pods", name, None)))
}

/// Checks the pod's PodDisruptionBudget before an eviction and takes one disruption from it (upstream's
/// `EvictionREST.Create` with the default `IfHealthyBudget` policy): no budget, or a budget allowing a
/// disruption, lets the eviction go on and records the pod in `status.disruptedPods`; otherwise 429 with
/// upstream's message and a `DisruptionBudget` cause. A not-ready pod may go while the budget is met.
async fn take_disruption_budget(ctx: &Ctx, namespace: &str, name: &str, pod: &serde_json::Value) -> Result<(), ApiError> {
    let pdbs = skiff_api::resources::find("policy", "v1", "poddisruptionbudgets").expect("served");
    let labels = pod["metadata"]["labels"].as_object().cloned();
    let matching = ctx
        .server
        .registry
        .list(pdbs, Some(namespace), None, None, &|b| {
            skiff_api::selector::LabelSelector::from_json(&b["spec"]["selector"]).is_ok_and(|sel| sel.matches(labels.as_ref()))
        })
        .await?
        .items;
    let budget = match matching.as_slice() {
        [] => return Ok(()),
        [one] => one,
        _ => return Err(ApiError::internal("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.")),
    };
    let pdb_name = budget["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let ready = pod["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    let too_many = |message: String| {
        ApiError::new(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.").with_cause("DisruptionBudget", &message, "")
    };
    if budget["status"]["observedGeneration"].as_i64() < budget["metadata"]["generation"].as_i64() {
        return Err(too_many(format!("The disruption budget {pdb_name} is still being processed by the server.")));
    }
    let (current, desired) = (budget["status"]["currentHealthy"].as_i64().unwrap_or(0), budget["status"]["desiredHealthy"].as_i64().unwrap_or(0));
    // IfHealthyBudget: an unhealthy pod may go without taking a disruption while the budget is met.
    if !ready && current >= desired && desired > 0 {
        return Ok(());
    }
    if ctx.params.dry_run {
        return if budget["status"]["disruptionsAllowed"].as_i64().unwrap_or(0) > 0 {
            Ok(())
        } else {
            Err(too_many(format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently")))
        };
    }
    let now = skiff_registry::now_rfc3339();
    let pod_name = name.to_string();
    ctx.server
        .registry
        .guaranteed_update(pdbs, Some(namespace), &pdb_name, true, ctx.write_options(), &|old| {
            let allowed = old["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
            if allowed <= 0 {
                let (current, desired) = (old["status"]["currentHealthy"].as_i64().unwrap_or(0), old["status"]["desiredHealthy"].as_i64().unwrap_or(0));
                return Err(too_many(format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently")));
            }
            let mut new = old.clone();
            new["status"]["disruptionsAllowed"] = json!(allowed - 1);
            if !new["status"]["disruptedPods"].is_object() {
                new["status"]["disruptedPods"] = json!({});
            }
            new["status"]["disruptedPods"][&pod_name] = json!(now);
            Ok(new)
        })
        .await?;
    Ok(())
}

/// Sets the `PodScheduled` condition to True (upstream's `UpdatePodCondition`: the transition time changes
/// only when the status does).
fn set_pod_scheduled(status: &mut serde_json::Value, now: &str) {
    if !status.is_object() {
        *status = json!({});
    }
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let conditions = status["conditions"].as_array_mut().expect("an array");
    let scheduled = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    match conditions.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(c) if c["status"] == "True" => {}
        Some(c) => *c = scheduled,
        None => conditions.push(scheduled),
    }
}

async fn evict(ctx: &Ctx, t: &Target, name: &str, body: Body) -> Result<Response, ApiError> {
    let (eviction, _) = handlers::decode_for(ctx, t, body, Some(("policy/v1", "Eviction"))).await?;
    let pod = ctx.server.registry.get(t.r, t.namespace.as_deref(), name).await?;
    // Upstream's canIgnorePDB: terminal and pending pods and pods already being deleted need no budget.
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    let deleting = pod["metadata"].get("deletionTimestamp").is_some_and(|v| !v.is_null());
    if !matches!(phase, "Succeeded" | "Failed" | "Pending") && !deleting {
        take_disruption_budget(ctx, t.namespace.as_deref().unwrap_or_default(), name, &pod).await?;
    }
    let opts = DeleteOptions {
        grace_period_seconds: eviction["deleteOptions"]["gracePeriodSeconds"].as_i64(),
        precondition_uid: eviction["deleteOptions"]["preconditions"]["uid"].as_str().map(str::to_string),
        precondition_resource_version: eviction["deleteOptions"]["preconditions"]["resourceVersion"].as_str().map(str::to_string),
        dry_run: ctx.params.dry_run,
    };
    match ctx.server.registry.delete(t.r, t.namespace.as_deref(), name, &opts).await? {
        Deleted::Gone(_) | Deleted::Pending(_) => {
            Ok(json_response(StatusCode::CREATED, &skiff_api::status::success_status("", "pods", name, None)))
        }
    }
}

async fn finalize(ctx: &Ctx, t: &Target, name: &str, body: Body) -> Result<Response, ApiError> {
    let (ns_obj, _) = handlers::decode_for(ctx, t, body, None).await?;
    let finalizers = ns_obj["spec"]["finalizers"].clone();
    let updated = ctx
        .server
        .registry
        .guaranteed_update(t.r, None, name, false, ctx.write_options(), &|old| {
            let mut new = old.clone();
            new["spec"]["finalizers"] = if finalizers.is_null() { json!([]) } else { finalizers.clone() };
            Ok(new)
        })
        .await?;
    if updated["spec"]["finalizers"].as_array().is_none_or(|f| f.is_empty())
        && updated["metadata"].get("deletionTimestamp").is_some_and(|v| !v.is_null())
    {
        ctx.server.registry.finalize_namespace(name).await?;
    }
    Ok(json_response(StatusCode::OK, &updated))
}
