//! Helpers the workload controllers share (upstream's `controller_utils.go`): pods from a template with a
//! controller reference, creation/deletion expectations, slow-start batches, selectors, claiming, finalizers,
//! int-or-percent values, the clock and events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};

/// How long an expectation is waited for before the controller acts anyway (upstream's `ExpectationsTimeout`).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The most pods one sync creates or deletes (upstream's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// Upstream's `SlowStartInitialBatchSize`.
pub const SLOW_START_INITIAL_BATCH_SIZE: usize = 1;

/// The alphabet of generated names (`generateName`, pod-template-hash), upstream's `rand.SafeEncodeString`.
pub const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Creations and deletions a controller has asked for and not yet seen in its cache, per owner key
/// (`namespace/name`). Tracked by object name (controllers choose the names of the pods they create), so a
/// slow cache never makes a controller create or delete twice. Upstream's `UIDTrackingControllerExpectations`.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

#[derive(Default)]
struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Option<Instant>,
}

impl Expectations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `name` is about to be created for `owner_key`.
    pub fn expect_creation(&self, owner_key: &str, name: &str) {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = map.entry(owner_key.to_string()).or_default();
        p.creates.insert(name.to_string());
        p.since = Some(Instant::now());
    }

    /// Records that `name` is about to be deleted for `owner_key`.
    pub fn expect_deletion(&self, owner_key: &str, name: &str) {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = map.entry(owner_key.to_string()).or_default();
        p.deletes.insert(name.to_string());
        p.since = Some(Instant::now());
    }

    /// The cache saw `name` created (or the create failed: it will never be seen).
    pub fn creation_observed(&self, owner_key: &str, name: &str) {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get_mut(owner_key) {
            p.creates.remove(name);
        }
    }

    /// The cache saw `name` deleted or terminating (or the delete failed).
    pub fn deletion_observed(&self, owner_key: &str, name: &str) {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get_mut(owner_key) {
            p.deletes.remove(name);
        }
    }

    /// Whether the owner may act: nothing pending, or the pending work is older than the timeout.
    /// `present(name)` says whether the cache holds a live (not terminating) object of that name; pending
    /// creations found in the cache and pending deletions missing from it are settled here too.
    pub fn satisfied(&self, owner_key: &str, present: impl Fn(&str) -> bool) -> bool {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = map.get_mut(owner_key) else { return true };
        p.creates.retain(|n| !present(n));
        p.deletes.retain(|n| present(n));
        if p.creates.is_empty() && p.deletes.is_empty() {
            map.remove(owner_key);
            return true;
        }
        if p.since.is_some_and(|s| s.elapsed() > EXPECTATIONS_TIMEOUT) {
            map.remove(owner_key);
            return true;
        }
        false
    }

    /// Drops everything pending for an owner (it was deleted).
    pub fn forget(&self, owner_key: &str) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(owner_key);
    }
}

/// What the controllers read the time from; tests give a clock they move by hand.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(jiff::Timestamp::now)
}

/// `namespace/name` of an object, the key expectations are kept under.
pub fn key_of(meta: &ObjectMeta) -> String {
    format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

/// `n` random characters of upstream's safe alphabet (what `generateName` appends).
pub fn random_suffix(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n).map(|_| SAFE_ALPHABET[rng.random_range(0..SAFE_ALPHABET.len())] as char).collect()
}

/// Upstream's `getPodsPrefix`: `<controller>-`, cut so that the generated name stays a valid name.
pub fn pods_prefix(controller_name: &str) -> String {
    let mut prefix = format!("{controller_name}-");
    // 63 characters is the longest pod name that is also a valid hostname label; keep room for 5.
    if prefix.len() > 58 {
        prefix.truncate(58);
    }
    prefix
}

/// A pod from a template (upstream's `GetPodFromTemplate`): the template's labels, annotations, finalizers
/// and spec, the owner's controller reference, and the given name.
pub fn pod_from_template(template: &PodTemplateSpec, namespace: &str, name: &str, owner: Option<OwnerReference>) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Creates a pod from a template, named `<prefix><5 random characters>` unless `name` is given.
pub async fn create_pod_from_template(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    template: &PodTemplateSpec,
    owner: Option<OwnerReference>,
) -> Result<Pod, kube::Error> {
    let pod = pod_from_template(template, namespace, name, owner);
    Api::<Pod>::namespaced(client.clone(), namespace).create(&PostParams::default(), &pod).await
}

/// Runs `count` calls of `f` in batches of 1, 2, 4, ... (upstream's `slowStartBatch`): a failing batch
/// stops the rest. Returns the successes and the first error.
pub async fn slow_start_batch<T, E, F, Fut>(count: usize, initial_batch_size: usize, mut f: F) -> (Vec<T>, Option<E>)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut done = Vec::new();
    let mut remaining = count;
    let mut batch = initial_batch_size.max(1).min(count.max(1));
    let mut index = 0;
    while remaining > 0 {
        let size = batch.min(remaining);
        let futures: Vec<_> = (index..index + size).map(&mut f).collect();
        index += size;
        let results = futures::future::join_all(futures).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(v) => done.push(v),
                Err(e) if first_err.is_none() => first_err = Some(e),
                Err(_) => {}
            }
        }
        if first_err.is_some() {
            return (done, first_err);
        }
        remaining -= size;
        batch = (batch * 2).min(remaining.max(1));
    }
    (done, None)
}

/// Whether `labels` match a label selector. An empty selector matches everything, a missing one nothing
/// (upstream's `LabelSelectorAsSelector`); an invalid selector matches nothing.
pub fn selector_matches(selector: Option<&LabelSelector>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(selector) = selector else { return false };
    let Ok(sel) = Selector::try_from(selector.clone()) else { return false };
    let empty = BTreeMap::new();
    sel.matches(labels.unwrap_or(&empty))
}

/// Whether a selector is empty (matches everything): controllers refuse to act on one.
pub fn selector_is_empty(selector: Option<&LabelSelector>) -> bool {
    selector.is_none_or(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty()) && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    })
}

/// List parameters for a label selector; an empty selector selects nothing (upstream's rule for controllers).
pub fn selector_params(sel: Option<&LabelSelector>) -> Result<Option<ListParams>, String> {
    let Some(sel) = sel else { return Ok(None) };
    if selector_is_empty(Some(sel)) {
        return Ok(None);
    }
    let selector = Selector::try_from(sel.clone()).map_err(|e| e.to_string())?;
    Ok(Some(ListParams::default().labels_from(&selector)))
}

/// Upstream's `GetScaledValueFromIntOrPercent`: an integer as it is, a percentage of `total` rounded up or
/// down; a missing value is `default` (itself an integer or a percentage).
pub fn scaled_value(v: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    match v {
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => percent(s, total, round_up),
        None => percent(default, total, round_up),
    }
}

fn percent(s: &str, total: i32, round_up: bool) -> i32 {
    let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
        return s.parse().unwrap_or(0);
    };
    let v = p * i64::from(total);
    (if round_up { (v + 99).div_euclid(100) } else { v.div_euclid(100) }) as i32
}

/// A reference to an object for events.
pub fn object_reference<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

/// Publishes an event about `regarding`; a failure is logged, never returned (events are best effort).
pub async fn record_event(recorder: &Recorder, regarding: &ObjectReference, type_: EventType, reason: &str, note: String) {
    record_event_related(recorder, regarding, None, type_, reason, note).await
}

/// `record_event` with the object the event is also about (the pod created, the set scaled). The recorder
/// folds repeats of one (regarding, related, reason) into a series with a count, so naming `related`
/// keeps events about different objects apart, as upstream's messages do.
pub async fn record_event_related(
    recorder: &Recorder,
    regarding: &ObjectReference,
    related: Option<ObjectReference>,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event { type_, reason: reason.to_string(), note: Some(note), action: reason.to_string(), secondary: related };
    if let Err(e) = recorder.publish(&ev, regarding).await {
        tracing::debug!(error = %e, reason, "could not record an event");
    }
}

/// Publishes an event about `obj` (failures to publish are logged, never fatal).
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    record_event(recorder, &object_reference(obj), type_, reason, note).await;
}

/// Publishes an event about `obj` that also names `related` (the pod or Job it concerns), so the recorder
/// keeps one series per related object as upstream's messages do.
pub async fn publish_related<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    obj: &K,
    related: ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    record_event_related(recorder, &object_reference(obj), Some(related), type_, reason, note).await;
}

/// What a controller does with an object its selector may match (upstream's `ClaimObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Already ours and still matching.
    Keep,
    /// An orphan that matches: take it.
    Adopt,
    /// Ours but no longer matching: let it go.
    Release,
    /// Someone else's, or not ours to touch now.
    Ignore,
}

/// Upstream's claim rules: another controller's object is ignored; our object is kept while it matches
/// and released when it stops matching (unless we are being deleted); a matching orphan that is not being
/// deleted is adopted unless we are being deleted.
pub fn claim(meta: &ObjectMeta, owner_uid: &str, matches: bool, owner_deleting: bool) -> Claim {
    match crate::pod_util::controller_of(meta) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if matches => Claim::Keep,
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting || !matches || meta.deletion_timestamp.is_some() => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// Adds `owner` as the controller reference of an object (a merge patch pinned to its resourceVersion).
pub async fn adopt<K>(api: &Api<K>, meta: &ObjectMeta, owner: OwnerReference) -> Result<K, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut refs: Vec<OwnerReference> =
        meta.owner_references.clone().unwrap_or_default().into_iter().filter(|r| r.uid != owner.uid).collect();
    refs.push(owner);
    let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version}});
    api.patch(meta.name.as_deref().unwrap_or(""), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await
}

/// Removes the owner reference with `owner_uid` from an object. A missing object is not an error.
pub async fn release<K>(api: &Api<K>, meta: &ObjectMeta, owner_uid: &str) -> Result<Option<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let refs: Vec<OwnerReference> =
        meta.owner_references.clone().unwrap_or_default().into_iter().filter(|r| r.uid != owner_uid).collect();
    let refs = if refs.is_empty() { serde_json::Value::Null } else { serde_json::json!(refs) };
    let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version}});
    match api.patch(meta.name.as_deref().unwrap_or(""), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await {
        Ok(o) => Ok(Some(o)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// The pods an owner controls among those its selector matched: its own, plus orphans it adopts
/// (upstream's `ClaimPods` without release: pods listed by the selector always match it).
pub async fn claim_pods<K: Resource<DynamicType = ()>>(
    api: &Api<Pod>,
    owner: &K,
    matched: Vec<Pod>,
) -> Result<Vec<Pod>, kube::Error> {
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let deleting = owner.meta().deletion_timestamp.is_some();
    let mut out = Vec::with_capacity(matched.len());
    for pod in matched {
        match claim(&pod.metadata, &uid, true, deleting) {
            Claim::Keep => out.push(pod),
            Claim::Adopt => {
                let Some(r) = crate::pod_util::controller_ref(owner) else {
                    continue;
                };
                match adopt(api, &pod.metadata, r).await {
                    Ok(p) => out.push(p),
                    // Gone or changed meanwhile: the next sync sees it as it is.
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
            Claim::Release | Claim::Ignore => {}
        }
    }
    Ok(out)
}

/// Removes one finalizer with a JSON patch guarded by a test of the list, so a concurrent change fails cleanly.
pub async fn remove_finalizer(api: &Api<Pod>, pod: &Pod, finalizer: &str) -> Result<(), kube::Error> {
    let Some(fins) = pod.metadata.finalizers.as_ref() else {
        return Ok(());
    };
    let kept: Vec<&String> = fins.iter().filter(|f| f.as_str() != finalizer).collect();
    if kept.len() == fins.len() {
        return Ok(());
    }
    let patch = serde_json::json!([
        {"op": "test", "path": "/metadata/finalizers", "value": fins},
        {"op": "replace", "path": "/metadata/finalizers", "value": kept},
    ]);
    let patch: json_patch::Patch = serde_json::from_value(patch).expect("a well-formed JSON patch");
    match api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Drives a controller's reconcile stream to its end, logging each failed reconcile (`<controller> reconcile`).
pub async fn log_reconcile_errors<T, E: std::fmt::Display>(
    results: impl futures::Stream<Item = Result<T, E>>,
    controller: &'static str,
) {
    use futures::StreamExt;
    results
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "{controller} reconcile");
            }
        })
        .await
}

/// Exponential per-key back-off for failed syncs (upstream's rate-limited work queue: 5 ms doubling,
/// here from 1 s to at most 5 minutes).
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay before retrying `key` after one more failure.
    pub fn next(&self, key: &str) -> Duration {
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.to_string()).or_default();
        *n = n.saturating_add(1);
        Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300))
    }

    /// `key` synced: start again from the shortest delay.
    pub fn reset(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// A watch of `api` kept in `writer`'s store, as a stream of the objects that changed (added, updated or
/// deleted), each yielded after the store has it, so a controller triggered by it reads a fresh cache.
/// `observe` sees every event first (to settle expectations).
pub fn reflected_changes<K>(
    api: Api<K>,
    writer: kube::runtime::reflector::store::Writer<K>,
    observe: impl Fn(&kube::runtime::watcher::Event<K>) + Send + 'static,
) -> impl futures::Stream<Item = Result<K, kube::runtime::watcher::Error>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher::{self, Event};
    kube::runtime::reflector(writer, watcher::watcher(api, watcher::Config::default()).default_backoff()).filter_map(
        move |ev| {
            let out = match ev {
                Ok(ev) => {
                    observe(&ev);
                    match ev {
                        Event::Apply(o) | Event::InitApply(o) | Event::Delete(o) => Some(Ok(o)),
                        Event::Init | Event::InitDone => None,
                    }
                }
                Err(e) => Some(Err(e)),
            };
            std::future::ready(out)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn expectations_settle_by_name() {
        let e = Expectations::new();
        assert!(e.satisfied("ns/a", |_| false));
        e.expect_creation("ns/a", "p1");
        e.expect_creation("ns/a", "p2");
        assert!(!e.satisfied("ns/a", |_| false));
        e.creation_observed("ns/a", "p1");
        assert!(!e.satisfied("ns/a", |_| false));
        // p2 present in the cache settles it.
        assert!(e.satisfied("ns/a", |n| n == "p2"));
        e.expect_deletion("ns/a", "p3");
        assert!(!e.satisfied("ns/a", |_| true));
        assert!(e.satisfied("ns/a", |_| false));
        e.expect_deletion("ns/b", "x");
        e.forget("ns/b");
        assert!(e.satisfied("ns/b", |_| true));
    }

    #[tokio::test]
    async fn slow_start_doubles_and_stops_at_first_failing_batch() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let (ok, err) = slow_start_batch(10, 1, move |i| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                if i == 4 { Err("boom") } else { Ok(i) }
            }
        })
        .await;
        // batches: [0], [1,2], [3,4,5,6] -> stops after the third batch.
        assert_eq!(calls.load(Ordering::SeqCst), 7);
        assert_eq!(ok, vec![0, 1, 2, 3, 5, 6]);
        assert_eq!(err, Some("boom"));
        let (ok, err) = slow_start_batch(5, 1, |i| async move { Ok::<_, ()>(i) }).await;
        assert_eq!(ok.len(), 5);
        assert!(err.is_none());
    }

    #[test]
    fn claim_rules() {
        let mine = OwnerReference { uid: "me".into(), controller: Some(true), ..Default::default() };
        let theirs = OwnerReference { uid: "other".into(), controller: Some(true), ..Default::default() };
        let owned = ObjectMeta { owner_references: Some(vec![mine]), ..Default::default() };
        let foreign = ObjectMeta { owner_references: Some(vec![theirs]), ..Default::default() };
        let orphan = ObjectMeta::default();
        assert_eq!(claim(&owned, "me", true, false), Claim::Keep);
        assert_eq!(claim(&owned, "me", false, false), Claim::Release);
        assert_eq!(claim(&owned, "me", false, true), Claim::Ignore);
        assert_eq!(claim(&foreign, "me", true, false), Claim::Ignore);
        assert_eq!(claim(&orphan, "me", true, false), Claim::Adopt);
        assert_eq!(claim(&orphan, "me", true, true), Claim::Ignore);
        assert_eq!(claim(&orphan, "me", false, false), Claim::Ignore);
        let b = Backoff::default();
        assert!(b.next("k") < b.next("k"));
        b.reset("k");
        assert_eq!(b.next("k"), Duration::from_secs(1));
    }

    #[test]
    fn selectors() {
        let sel = LabelSelector { match_labels: Some([("app".to_string(), "web".to_string())].into()), ..Default::default() };
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string()), ("x".into(), "y".into())].into();
        assert!(selector_matches(Some(&sel), Some(&labels)));
        assert!(!selector_matches(Some(&sel), None));
        assert!(!selector_matches(None, Some(&labels)));
        assert!(selector_is_empty(Some(&LabelSelector::default())));
        assert!(!selector_is_empty(Some(&sel)));
    }

    #[test]
    fn template_becomes_pod_with_owner() {
        let t = PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some([("a".to_string(), "b".to_string())].into()), ..Default::default() }),
            spec: None,
        };
        let owner = OwnerReference { name: "rs".into(), uid: "u".into(), controller: Some(true), ..Default::default() };
        let p = pod_from_template(&t, "ns", "rs-abcde", Some(owner));
        assert_eq!(p.metadata.name.as_deref(), Some("rs-abcde"));
        assert_eq!(p.metadata.labels.unwrap()["a"], "b");
        assert_eq!(p.metadata.owner_references.unwrap()[0].uid, "u");
        assert_eq!(pods_prefix("web").as_str(), "web-");
        assert_eq!(random_suffix(5).len(), 5);
    }
}
