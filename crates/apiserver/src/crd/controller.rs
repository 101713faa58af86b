//! The CRD controller, upstream's naming, establishing and finalizer controllers in one loop over the
//! registry's CRD watch: a CRD's names are checked against the other CRDs of its group
//! (`NamesAccepted`), its served versions enter the registry's catalog and it is marked `Established`
//! (conditions and `status.acceptedNames` written through the registry); a deleted CRD (terminating
//! with the `customresourcecleanup.apiextensions.k8s.io` finalizer) has all its objects deleted, then
//! the finalizer removed, and its resources stop being served.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use skiff_api::crd::definition::{self, Names, CLEANUP_FINALIZER};
use skiff_api::{ApiError, ResourceInfo};
use skiff_registry::{DeleteOptions, EventType, Propagation, Registry, WriteOptions};
use tokio_util::sync::CancellationToken;

fn crd_resource() -> &'static ResourceInfo {
    skiff_api::resources::find("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("CRDs are served")
}

/// The controller's state: the CRDs it last saw, and the CRDs whose objects are being deleted.
struct State {
    registry: Arc<Registry>,
    crds: Mutex<HashMap<String, Value>>,
    cleaning: Mutex<HashSet<String>>,
}

/// Runs the controller until `shutdown`; restarts its watch after errors.
pub async fn run(registry: Arc<Registry>, shutdown: CancellationToken) {
    let state = Arc::new(State { registry, crds: Mutex::new(HashMap::new()), cleaning: Mutex::new(HashSet::new()) });
    while !shutdown.is_cancelled() {
        if let Err(e) = run_once(&state, &shutdown).await {
            tracing::warn!(error = %e.message, "CRD controller: watch failed, restarting");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn run_once(state: &Arc<State>, shutdown: &CancellationToken) -> Result<(), ApiError> {
    let registry = &state.registry;
    let page = registry.list(crd_resource(), None, None, None, &|_| true).await?;
    let listed: HashSet<String> = page.items.iter().map(|c| name_of(c).to_string()).collect();
    let gone: Vec<String> = state.crds.lock().unwrap_or_else(|e| e.into_inner()).keys().filter(|n| !listed.contains(*n)).cloned().collect();
    for name in gone {
        forget(state, &name);
    }
    for crd in &page.items {
        remember(state, crd);
    }
    for crd in page.items {
        reconcile(state, crd).await;
    }
    let rev: i64 = page.resource_version.parse().unwrap_or(0);
    let mut events = registry.watch(crd_resource(), None, rev).await?;
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            ev = events.next() => ev,
        };
        let Some(ev) = ev else { return Ok(()) };
        let ev = ev?;
        match ev.kind {
            EventType::Deleted => forget(state, name_of(&ev.object)),
            _ => {
                remember(state, &ev.object);
                reconcile(state, ev.object).await;
            }
        }
    }
}

fn name_of(crd: &Value) -> &str {
    crd["metadata"]["name"].as_str().unwrap_or("")
}

fn remember(state: &State, crd: &Value) {
    state.crds.lock().unwrap_or_else(|e| e.into_inner()).insert(name_of(crd).to_string(), crd.clone());
}

fn forget(state: &State, name: &str) {
    state.crds.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    state.registry.catalog().remove(name);
}

/// Brings one CRD's serving and status up to date.
async fn reconcile(state: &Arc<State>, crd: Value) {
    let name = name_of(&crd).to_string();
    if crd["metadata"].get("deletionTimestamp").is_some_and(|t| !t.is_null()) {
        // Still listed and deletable while terminating, but no new objects (custom.rs refuses them).
        state.registry.catalog().set(&name, definition::served_versions(&crd, state.registry.catalog()));
        start_cleanup(state, crd);
        return;
    }
    let status = desired_status(state, &crd);
    let mut with_status = crd.clone();
    with_status["status"] = status.clone();
    let served = definition::served_versions(&with_status, state.registry.catalog());
    // Serve first, so that a client that sees Established=True can use the resource at once.
    if served.is_empty() {
        state.registry.catalog().remove(&name);
    } else {
        state.registry.catalog().set(&name, served);
    }
    if status == crd["status"] {
        return;
    }
    let result = state
        .registry
        .guaranteed_update(crd_resource(), None, &name, true, WriteOptions::default(), &|current| {
            let mut new = current.clone();
            new["status"] = desired_status(state, current);
            Ok(new)
        })
        .await;
    if let Err(e) = result
        && e.code != 404
    {
        tracing::warn!(crd = %name, error = %e.message, "CRD controller: writing status failed");
    }
}

fn condition(ty: &str, status: bool, reason: &str, message: &str, old: &[Value]) -> Value {
    let status = if status { "True" } else { "False" };
    let time = old
        .iter()
        .find(|c| c["type"] == ty && c["status"] == status)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(skiff_registry::now_rfc3339()));
    json!({"type": ty, "status": status, "lastTransitionTime": time, "reason": reason, "message": message})
}

/// Names conflicting with the accepted names of the other CRDs of the group, as upstream's naming
/// controller judges them: `(reason, message)` for the first conflict.
fn name_conflict(state: &State, crd: &Value) -> Option<(&'static str, String)> {
    let me = name_of(crd);
    let group = crd["spec"]["group"].as_str().unwrap_or("");
    let wanted = Names::from_value(&crd["spec"]["names"]);
    let crds = state.crds.lock().unwrap_or_else(|e| e.into_inner());
    let (mut resources, mut kinds, mut shorts) = (HashSet::new(), HashSet::new(), HashSet::new());
    for (name, other) in crds.iter() {
        if name == me || other["spec"]["group"].as_str().unwrap_or("") != group {
            continue;
        }
        let accepted = Names::from_value(&other["status"]["acceptedNames"]);
        resources.extend([accepted.plural.clone(), accepted.singular.clone()]);
        kinds.extend([accepted.kind.clone(), accepted.list_kind.clone()]);
        shorts.extend(accepted.short_names.iter().cloned());
    }
    resources.remove("");
    kinds.remove("");
    if resources.contains(&wanted.plural) {
        return Some(("PluralConflict", format!("{:?} is already in use", wanted.plural)));
    }
    if resources.contains(&wanted.singular) {
        return Some(("SingularConflict", format!("{:?} is already in use", wanted.singular)));
    }
    if let Some(s) = wanted.short_names.iter().find(|s| shorts.contains(*s) || resources.contains(*s)) {
        return Some(("ShortNamesConflict", format!("{s:?} is already in use")));
    }
    if kinds.contains(&wanted.kind) {
        return Some(("KindConflict", format!("{:?} is already in use", wanted.kind)));
    }
    if kinds.contains(&wanted.list_kind) {
        return Some(("ListKindConflict", format!("{:?} is already in use", wanted.list_kind)));
    }
    None
}

/// The status the CRD should have: accepted names, NamesAccepted and Established, stored versions.
fn desired_status(state: &State, crd: &Value) -> Value {
    let old_conditions: Vec<Value> = crd["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let mut status = crd["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    let conflict = name_conflict(state, crd);
    let names_accepted = match &conflict {
        None => {
            status["acceptedNames"] = Names::from_value(&crd["spec"]["names"]).to_value();
            condition("NamesAccepted", true, "NoConflicts", "no conflicts found", &old_conditions)
        }
        Some((reason, message)) => {
            if !status["acceptedNames"].is_object() {
                status["acceptedNames"] = json!({"plural": "", "kind": ""});
            }
            condition("NamesAccepted", false, reason, message, &old_conditions)
        }
    };
    let accepted = Names::from_value(&status["acceptedNames"]);
    let established = if !accepted.plural.is_empty() && !accepted.kind.is_empty() {
        condition("Established", true, "InitialNamesAccepted", "the initial names have been accepted", &old_conditions)
    } else {
        condition("Established", false, "NotAccepted", "not all names are accepted", &old_conditions)
    };
    let mut conditions: Vec<Value> = old_conditions.into_iter().filter(|c| c["type"] != "NamesAccepted" && c["type"] != "Established").collect();
    conditions.insert(0, established);
    conditions.insert(0, names_accepted);
    status["conditions"] = Value::Array(conditions);
    let mut stored: Vec<Value> = status["storedVersions"].as_array().cloned().unwrap_or_default();
    if let Some(storage) = crd["spec"]["versions"].as_array().and_then(|vs| vs.iter().find(|v| v["storage"] == Value::Bool(true)))
        && !stored.contains(&storage["name"])
    {
        stored.push(storage["name"].clone());
    }
    status["storedVersions"] = Value::Array(stored);
    status
}

/// Deletes every object of a terminating CRD (once per CRD at a time), then removes its finalizer.
fn start_cleanup(state: &Arc<State>, crd: Value) {
    let name = name_of(&crd).to_string();
    if !state.cleaning.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone()) {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match cleanup(&state, &crd).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(crd = %name, error = %e.message, "CRD controller: deleting objects failed"),
            }
            // Objects held by finalizers keep the CRD until they go; look again in a while.
            tokio::time::sleep(Duration::from_millis(if attempts < 10 { 200 } else { 2000 })).await;
        }
        state.cleaning.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
    });
}

/// One pass: deletes what is left; `true` when nothing is left and the finalizer is gone.
async fn cleanup(state: &State, crd: &Value) -> Result<bool, ApiError> {
    let name = name_of(crd);
    let registry = &state.registry;
    if let Some(cv) = registry.catalog().versions_of(name).into_iter().find(|v| v.storage).or_else(|| registry.catalog().versions_of(name).into_iter().next()) {
        let r = cv.info;
        let page = registry.list(r, None, None, None, &|_| true).await?;
        let mut left = 0;
        for obj in page.items {
            let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
            let obj_name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            match registry.delete_propagating(r, ns.as_deref(), &obj_name, &DeleteOptions::default(), Some(Propagation::Background)).await {
                Ok(skiff_registry::Deleted::Gone(_)) => {}
                Ok(skiff_registry::Deleted::Pending(_)) => left += 1,
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        if left > 0 {
            return Ok(false);
        }
    }
    let result = registry
        .guaranteed_update(crd_resource(), None, name, false, WriteOptions::default(), &|current| {
            let mut new = current.clone();
            if let Some(f) = new["metadata"]["finalizers"].as_array_mut() {
                f.retain(|f| f != CLEANUP_FINALIZER);
            }
            Ok(new)
        })
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.code == 404 => Ok(true),
        Err(e) => Err(e),
    }
}
