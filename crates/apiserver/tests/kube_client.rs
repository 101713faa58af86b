//! kube-rs, unchanged, against Skiff's API server in process: typed `Api`s, patches, subresources, watcher,
//! reflector and Controller over `kube::Client::new(router, "default")` and the memory store.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_apiserver::UserInfo;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod support;

/// Upper bound for anything that waits on the server; never a synchronisation delay.
const WAIT: Duration = Duration::from_secs(20);

/// An in-process API server over the memory store and a kube `Client` talking to its router.
struct Skiff {
    client: Client,
    shutdown: CancellationToken,
}

impl Skiff {
    async fn start() -> Skiff {
        let server = support::start(UserInfo::new("kube-rs", &["system:masters"])).await;
        Skiff { client: Client::new(server.router, "default"), shutdown: server.shutdown }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::default_namespaced(self.client.clone())
    }

    /// Ends the server's watch streams.
    fn stop(self) {
        self.shutdown.cancel();
    }
}

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<kube::core::Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected kube::Error::Api, got {other:?}"),
    }
}

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        },
        "data": {"a": "1"},
    }))
    .unwrap()
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }))
    .unwrap()
}

fn pod(name: &str, image: Option<&str>) -> Pod {
    let mut container = json!({"name": "c"});
    if let Some(image) = image {
        container["image"] = json!(image);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "p"}},
        "spec": {"containers": [container]},
    }))
    .unwrap()
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    items.iter().map(|o| o.name_any()).collect()
}

#[tokio::test]
async fn create_get_and_list_with_selectors_and_pages() {
    let skiff = Skiff::start().await;
    let cms: Api<ConfigMap> = skiff.api();
    for i in 0..7 {
        let parity = if i % 2 == 0 { "even" } else { "odd" };
        let created = cms.create(&PostParams::default(), &config_map(&format!("c{i}"), &[("parity", parity)])).await.unwrap();
        assert_eq!(created.namespace().as_deref(), Some("default"));
        assert!(created.uid().is_some_and(|u| u.len() == 36));
        assert!(created.resource_version().is_some());
    }
    let got = cms.get("c3").await.unwrap();
    assert_eq!(got.labels().get("parity").map(String::as_str), Some("odd"));
    assert_eq!(got.data.unwrap().get("a").map(String::as_str), Some("1"));
    assert_eq!(cms.get_opt("nope").await.unwrap(), None);
    let missing = api_error(cms.get("nope").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));

    let odd = cms.list(&ListParams::default().labels("parity=odd")).await.unwrap();
    assert_eq!(names(&odd.items), ["c1", "c3", "c5"]);
    assert!(odd.metadata.resource_version.is_some());
    let set = cms.list(&ListParams::default().labels("parity in (even),parity!=odd")).await.unwrap();
    assert_eq!(names(&set.items), ["c0", "c2", "c4", "c6"]);
    let by_name = cms.list(&ListParams::default().fields("metadata.name=c4")).await.unwrap();
    assert_eq!(names(&by_name.items), ["c4"]);
    let bad = api_error(cms.list(&ListParams::default().fields("spec.nope=x")).await);
    assert_eq!(bad.code, 400);

    let mut seen = Vec::new();
    let mut pages = 0;
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 3);
        seen.extend(names(&page.items));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());
    // Pagination combines with a label selector.
    let first = cms.list(&ListParams::default().labels("parity=even").limit(2)).await.unwrap();
    assert_eq!(names(&first.items), ["c0", "c2"]);
    let token = first.metadata.continue_.expect("a continue token");
    let rest = cms.list(&ListParams::default().labels("parity=even").limit(2).continue_token(&token)).await.unwrap();
    assert_eq!(names(&rest.items), ["c4", "c6"]);

    let pods: Api<Pod> = skiff.api();
    pods.create(&PostParams::default(), &pod("p1", Some("busybox"))).await.unwrap();
    let p = pods.get("p1").await.unwrap();
    assert_eq!(p.spec.unwrap().containers[0].image.as_deref(), Some("busybox"));
    let listed = pods.list(&ListParams::default().labels("app=p").fields("metadata.name=p1")).await.unwrap();
    assert_eq!(names(&listed.items), ["p1"]);
    skiff.stop();
}

#[tokio::test]
async fn replace_with_a_stale_resource_version_is_a_conflict() {
    let skiff = Skiff::start().await;
    let cms: Api<ConfigMap> = skiff.api();
    let original = cms.create(&PostParams::default(), &config_map("one", &[])).await.unwrap();
    let mut fresh = original.clone();
    fresh.data.get_or_insert_default().insert("a".into(), "2".into());
    let replaced = cms.replace("one", &PostParams::default(), &fresh).await.unwrap();
    assert_ne!(replaced.resource_version(), original.resource_version());

    let mut stale = original.clone();
    stale.data.get_or_insert_default().insert("a".into(), "3".into());
    let err = api_error(cms.replace("one", &PostParams::default(), &stale).await);
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"), "{err:?}");
    assert_eq!(cms.get("one").await.unwrap().data.unwrap()["a"], "2", "the conflicting write changed nothing");

    let dup = api_error(cms.create(&PostParams::default(), &config_map("one", &[])).await);
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    skiff.stop();
}

#[tokio::test]
async fn merge_strategic_and_json_patches() {
    let skiff = Skiff::start().await;
    let cms: Api<ConfigMap> = skiff.api();
    cms.create(&PostParams::default(), &config_map("m", &[])).await.unwrap();
    let pp = PatchParams::default();

    let merged = cms.patch("m", &pp, &Patch::Merge(json!({"data": {"b": "2", "a": null}, "metadata": {"labels": {"x": "y"}}})))
        .await
        .unwrap();
    assert_eq!(merged.data.clone().unwrap(), BTreeMap::from([("b".to_string(), "2".to_string())]));
    assert_eq!(merged.labels().get("x").map(String::as_str), Some("y"));

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/b", "value": "3"},
        {"op": "add", "path": "/metadata/annotations", "value": {}},
        {"op": "add", "path": "/metadata/annotations/example.com~1k", "value": "v"},
    ]))
    .unwrap();
    let jsoned = cms.patch("m", &pp, &Patch::Json::<()>(ops)).await.unwrap();
    assert_eq!(jsoned.data.as_ref().unwrap()["b"], "3");
    assert_eq!(jsoned.annotations().get("example.com/k").map(String::as_str), Some("v"));
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/b", "value": "nope"}])).unwrap();
    let err = api_error(cms.patch("m", &pp, &Patch::Json::<()>(failing)).await);
    assert_eq!(err.code, 422, "a failed test op is unprocessable: {err:?}");
    assert_eq!(cms.get("m").await.unwrap().data.unwrap()["b"], "3");

    // Strategic merge: containers merge by name, so the sidecar joins the existing container.
    let deploys: Api<Deployment> = skiff.api();
    deploys.create(&PostParams::default(), &deployment("web")).await.unwrap();
    let smp = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "busybox"},
        {"name": "web", "image": "nginx:1.28"},
    ]}}}});
    let patched = deploys.patch("web", &pp, &Patch::Strategic(smp)).await.unwrap();
    let containers = patched.spec.unwrap().template.spec.unwrap().containers;
    let by_name: BTreeMap<_, _> = containers.iter().map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or(""))).collect();
    assert_eq!(by_name, BTreeMap::from([("sidecar", "busybox"), ("web", "nginx:1.28")]));
    assert_eq!(patched.metadata.generation, Some(2));
    skiff.stop();
}

#[tokio::test]
async fn deployment_scale_and_status_subresources() {
    let skiff = Skiff::start().await;
    let deploys: Api<Deployment> = skiff.api();
    deploys.create(&PostParams::default(), &deployment("web")).await.unwrap();

    let scale = deploys.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    let scaled = deploys
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}})))
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(5));
    assert_eq!(deploys.get("web").await.unwrap().spec.unwrap().replicas, Some(5));
    let negative =
        api_error(deploys.patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": -1}}))).await);
    assert_eq!((negative.code, negative.reason.as_str()), (422, "Invalid"));

    let status = json!({"status": {"replicas": 5, "readyReplicas": 3, "observedGeneration": 2}, "spec": {"replicas": 9}});
    let updated = deploys.patch_status("web", &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    let s = updated.status.clone().unwrap();
    assert_eq!((s.replicas, s.ready_replicas, s.observed_generation), (Some(5), Some(3), Some(2)));
    assert_eq!(updated.spec.unwrap().replicas, Some(5), "the status subresource ignores spec");
    let got = deploys.get_status("web").await.unwrap();
    assert_eq!(got.status.unwrap().ready_replicas, Some(3));
    // The main resource ignores status.
    let ignored = deploys
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"status": {"readyReplicas": 0}})))
        .await
        .unwrap();
    assert_eq!(ignored.status.unwrap().ready_replicas, Some(3));
    skiff.stop();
}

#[tokio::test]
async fn delete_in_the_background() {
    let skiff = Skiff::start().await;
    let deploys: Api<Deployment> = skiff.api();
    let created = deploys.create(&PostParams::default(), &deployment("bg")).await.unwrap();
    let gone = deploys.delete("bg", &DeleteParams::background()).await.unwrap();
    let status = gone.right().expect("an object without finalizers is deleted at once, answered with a Status");
    assert!(status.is_success(), "{status:?}");
    assert_eq!(status.details.as_ref().map(|d| d.uid.as_str()), created.uid().as_deref());
    assert_eq!(deploys.get_opt("bg").await.unwrap(), None);
    let again = api_error(deploys.delete("bg", &DeleteParams::background()).await);
    assert_eq!(again.code, 404);

    // A pod that was never scheduled is deleted at once, too.
    let pods: Api<Pod> = skiff.api();
    pods.create(&PostParams::default(), &pod("p", Some("busybox"))).await.unwrap();
    let gone = pods.delete("p", &DeleteParams::background()).await.unwrap();
    assert!(gone.is_right() || gone.left().is_some_and(|p| p.metadata.deletion_timestamp.is_some()));
    assert_eq!(pods.get_opt("p").await.unwrap(), None);

    // A finalizer keeps the object: the answer is the object with its deletionTimestamp.
    let cms: Api<ConfigMap> = skiff.api();
    let mut held = config_map("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    let pending = cms.delete("held", &DeleteParams::background()).await.unwrap();
    let obj = pending.left().expect("the object is still there");
    assert!(obj.metadata.deletion_timestamp.is_some());
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert_eq!(cms.get_opt("held").await.unwrap(), None, "removing the last finalizer deletes it");
    skiff.stop();
}


#[tokio::test]
async fn invalid_objects_are_rejected_with_422_invalid() {
    let skiff = Skiff::start().await;
    let pods: Api<Pod> = skiff.api();
    let err = api_error(pods.create(&PostParams::default(), &pod("bad", None)).await);
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"), "{err:?}");
    let details = err.details.expect("details");
    assert_eq!((details.name.as_str(), details.kind.as_str()), ("bad", "Pod"));
    assert!(details.causes.iter().any(|c| c.field == "spec.containers[0].image"), "{:?}", details.causes);
    assert_eq!(pods.get_opt("bad").await.unwrap(), None);

    let cms: Api<ConfigMap> = skiff.api();
    let err = api_error(cms.create(&PostParams::default(), &config_map("Not_A_Name", &[])).await);
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"), "{err:?}");
    skiff.stop();
}

/// The next watcher event about the object named `name`.
async fn next_for<S>(events: &mut S, name: &str) -> Event<ConfigMap>
where
    S: futures::Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    bounded(&format!("an event for {name}"), async {
        loop {
            let event = events.try_next().await.unwrap().expect("the watcher stream does not end");
            match &event {
                Event::Apply(o) | Event::Delete(o) | Event::InitApply(o) if o.name_any() == name => return event,
                _ => {}
            }
        }
    })
    .await
}

#[tokio::test]
async fn watcher_sees_apply_and_delete() {
    let skiff = Skiff::start().await;
    let cms: Api<ConfigMap> = skiff.api();
    cms.create(&PostParams::default(), &config_map("before", &[])).await.unwrap();
    let mut events = watcher::watcher(cms.clone(), watcher::Config::default()).boxed();

    // The initial list: Init, InitApply for what exists, InitDone.
    let mut initial = Vec::new();
    bounded("the initial list", async {
        loop {
            match events.try_next().await.unwrap().unwrap() {
                Event::Init => {}
                Event::InitApply(o) => initial.push(o.name_any()),
                Event::InitDone => break,
                other => panic!("unexpected event during the initial list: {other:?}"),
            }
        }
    })
    .await;
    assert!(initial.contains(&"before".to_string()), "{initial:?}");

    let created = cms.create(&PostParams::default(), &config_map("w", &[])).await.unwrap();
    match next_for(&mut events, "w").await {
        Event::Apply(o) => assert_eq!(o.resource_version(), created.resource_version()),
        other => panic!("expected Apply for the created object, got {other:?}"),
    }
    let modified = cms.patch("w", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "changed"}}))).await.unwrap();
    match next_for(&mut events, "w").await {
        Event::Apply(o) => {
            assert_eq!(o.resource_version(), modified.resource_version());
            assert_eq!(o.data.unwrap()["a"], "changed");
        }
        other => panic!("expected Apply for the modified object, got {other:?}"),
    }
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    match next_for(&mut events, "w").await {
        Event::Delete(o) => assert_eq!(o.uid(), created.uid()),
        other => panic!("expected Delete, got {other:?}"),
    }
    drop(events);
    skiff.stop();
}

#[tokio::test]
async fn reflector_store_becomes_ready_and_follows_changes() {
    let skiff = Skiff::start().await;
    let cms: Api<ConfigMap> = skiff.api();
    for i in 0..3 {
        cms.create(&PostParams::default(), &config_map(&format!("r{i}"), &[("app", "r")])).await.unwrap();
    }
    cms.create(&PostParams::default(), &config_map("other", &[("app", "other")])).await.unwrap();

    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector::reflector(writer, watcher::watcher(cms.clone(), watcher::Config::default().labels("app=r")));
    // The stream must keep running (pitfall P10): it lives in its own task and reports applied objects.
    let (tx, mut applied) = mpsc::unbounded_channel();
    let task = tokio::spawn(stream.applied_objects().for_each(move |o| {
        let _ = tx.send(o.map(|o| o.name_any()));
        futures::future::ready(())
    }));

    bounded("the store to be ready", reader.wait_until_ready()).await.unwrap();
    let mut in_store: Vec<String> = reader.state().iter().map(|o| o.name_any()).collect();
    in_store.sort();
    assert_eq!(in_store, ["r0", "r1", "r2"]);

    cms.create(&PostParams::default(), &config_map("r3", &[("app", "r")])).await.unwrap();
    bounded("r3 through the reflector", async {
        while let Some(name) = applied.recv().await {
            if name.unwrap() == "r3" {
                return;
            }
        }
        panic!("the reflector stream ended");
    })
    .await;
    let r3 = reader.get(&ObjectRef::new("r3").within("default")).expect("r3 is in the store once it was yielded");
    assert_eq!(r3.labels()["app"], "r");
    assert_eq!(reader.state().len(), 4);

    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    skiff.stop();
}

#[tokio::test]
async fn controller_reconciles_every_config_map_once() {
    let skiff = Skiff::start().await;
    let cms: Api<ConfigMap> = skiff.api();
    for i in 0..5 {
        cms.create(&PostParams::default(), &config_map(&format!("ctl{i}"), &[])).await.unwrap();
    }
    let expected: BTreeSet<String> = names(&cms.list(&ListParams::default()).await.unwrap().items).into_iter().collect();
    assert!(expected.len() >= 5);

    struct Ctx {
        reconciled: mpsc::UnboundedSender<String>,
    }
    async fn reconcile(obj: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
        let _ = ctx.reconciled.send(obj.name_any());
        Ok(Action::await_change())
    }
    fn error_policy(_: Arc<ConfigMap>, _: &kube::Error, _: Arc<Ctx>) -> Action {
        Action::await_change()
    }

    let (tx, mut reconciled) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let controller = Controller::new(cms.clone(), watcher::Config::default())
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(reconcile, error_policy, Arc::new(Ctx { reconciled: tx }))
        .for_each(|r| {
            r.expect("reconcile succeeds");
            futures::future::ready(())
        });
    let task = tokio::spawn(controller);

    let mut seen = Vec::new();
    bounded("every ConfigMap to be reconciled", async {
        while seen.len() < expected.len() {
            seen.push(reconciled.recv().await.expect("the controller is running"));
        }
    })
    .await;
    let distinct: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), seen.len(), "each object is reconciled once: {seen:?}");
    assert_eq!(distinct, expected);

    stop.cancel();
    bounded("the controller to shut down", task).await.unwrap();
    assert!(reconciled.try_recv().is_err(), "no reconcile beyond one per object: {:?}", reconciled.try_recv());
    skiff.stop();
}
