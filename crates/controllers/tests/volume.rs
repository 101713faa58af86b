//! The volume controllers (PersistentVolume binder, local-path provisioner, protection) against the
//! in-process API server.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_controllers::volume::{self, local_path, persistentvolume, protection};

mod support;
use support::{Running, eventually, start_server};

struct Controllers(Vec<Running<volume::Error>>);

impl Controllers {
    fn start(client: &kube::Client) -> Self {
        let fast = Duration::from_secs(2);
        Controllers(vec![
            Running::spawn(client, move |ctx, s| persistentvolume::run_with(ctx, persistentvolume::Config { sync_period: fast }, s)),
            Running::spawn(client, |ctx, s| {
                local_path::run(ctx, local_path::Config { base_path: "/srv/skiff-storage".into(), sync_period: fast }, s)
            }),
            Running::spawn(client, protection::run),
        ])
    }

    async fn stop(self) {
        for c in self.0 {
            c.stop().await;
        }
    }
}

async fn create<K>(api: &Api<K>, v: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &serde_json::from_value(v).unwrap()).await.unwrap()
}

fn pv_json(name: &str, size: &str, class: &str, policy: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
        "storageClassName": class, "persistentVolumeReclaimPolicy": policy, "hostPath": {"path": format!("/srv/{name}")}}})
}

fn pvc_json(name: &str, size: &str, class: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
        "resources": {"requests": {"storage": size}}}})
}

async fn claim_phase(claims: &Api<PersistentVolumeClaim>, name: &str) -> (String, String) {
    let c = claims.get(name).await.unwrap();
    (
        c.status.and_then(|s| s.phase).unwrap_or_default(),
        c.spec.and_then(|s| s.volume_name).unwrap_or_default(),
    )
}

async fn volume_phase(volumes: &Api<PersistentVolume>, name: &str) -> Option<String> {
    volumes.get_opt(name).await.unwrap().map(|v| v.status.and_then(|s| s.phase).unwrap_or_default())
}

/// The notes of the events with `reason` about the object `name`.
async fn event_notes(client: &kube::Client, namespace: &str, name: &str, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name) && e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}

async fn ready_node(client: &kube::Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    create(&nodes, json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})).await;
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

#[tokio::test]
async fn a_static_volume_binds_the_smallest_fit_and_unmatched_claims_stay_pending() {
    let (_server, client) = start_server().await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    for (name, size) in [("big", "10Gi"), ("small", "2Gi"), ("tiny", "500Mi")] {
        create(&volumes, pv_json(name, size, "", "Retain")).await;
    }
    let controllers = Controllers::start(&client);
    create(&claims, pvc_json("data", "1Gi", "")).await;
    create(&claims, pvc_json("huge", "100Gi", "")).await;
    create(&claims, pvc_json("classless", "1Gi", "no-such-class")).await;

    eventually("the claim is bound to the smallest fitting volume", || async {
        claim_phase(&claims, "data").await == ("Bound".into(), "small".into())
    })
    .await;
    eventually("the volume is Bound too", || async { volume_phase(&volumes, "small").await.as_deref() == Some("Bound") }).await;
    let small = volumes.get("small").await.unwrap();
    let claim = claims.get("data").await.unwrap();
    let claim_ref = small.spec.unwrap().claim_ref.unwrap();
    assert_eq!(claim_ref.name.as_deref(), Some("data"));
    assert_eq!(claim_ref.uid, claim.metadata.uid);
    let annotations = claim.metadata.annotations.unwrap();
    assert_eq!(annotations.get("pv.kubernetes.io/bind-completed").map(String::as_str), Some("yes"));
    assert_eq!(annotations.get("pv.kubernetes.io/bound-by-controller").map(String::as_str), Some("yes"));
    let status = claim.status.unwrap();
    assert_eq!(status.capacity.unwrap()["storage"].0, "2Gi");
    assert_eq!(status.access_modes.unwrap(), vec!["ReadWriteOnce".to_string()]);
    assert_eq!(volume_phase(&volumes, "big").await.as_deref(), Some("Available"));

    eventually("the unmatched claim gets a FailedBinding event", || async {
        event_notes(&client, "default", "huge", "FailedBinding")
            .await
            .contains(&"no persistent volumes available for this claim and no storage class is set".to_string())
    })
    .await;
    assert_eq!(claim_phase(&claims, "huge").await, ("Pending".into(), String::new()));
    eventually("a claim of a missing class gets a ProvisioningFailed event", || async {
        event_notes(&client, "default", "classless", "ProvisioningFailed")
            .await
            .contains(&"storageclass.storage.k8s.io \"no-such-class\" not found".to_string())
    })
    .await;
    assert_eq!(claim_phase(&claims, "classless").await.0, "Pending");
    controllers.stop().await;
}

#[tokio::test]
async fn wait_for_first_consumer_gets_a_local_path_volume_on_the_selected_node_and_delete_waits_for_the_node() {
    let (_server, client) = start_server().await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let classes: Api<StorageClass> = Api::all(client.clone());
    create(&classes, json!({"metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path",
        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}))
    .await;
    ready_node(&client, "n1").await;
    ready_node(&client, "n2").await;
    let controllers = Controllers::start(&client);
    let claim = create(&claims, pvc_json("data", "1Gi", "local-path")).await;
    let uid = claim.metadata.uid.clone().unwrap();
    let pv_name = format!("pvc-{uid}");

    eventually("the claim waits for its first consumer", || async {
        event_notes(&client, "default", "data", "WaitForFirstConsumer")
            .await
            .contains(&"waiting for first consumer to be created before binding".to_string())
    })
    .await;
    assert_eq!(claim_phase(&claims, "data").await, ("Pending".into(), String::new()));
    assert!(volumes.get_opt(&pv_name).await.unwrap().is_none(), "no volume before a node is selected");

    let select = json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "n2"}}});
    claims.patch("data", &PatchParams::default(), &Patch::Merge(&select)).await.unwrap();
    eventually("the provisioned volume is bound", || async { claim_phase(&claims, "data").await == ("Bound".into(), pv_name.clone()) }).await;
    let pv = serde_json::to_value(volumes.get(&pv_name).await.unwrap()).unwrap();
    assert_eq!(pv["spec"]["hostPath"], json!({"path": format!("/srv/skiff-storage/pvc-{uid}_default_data"), "type": "DirectoryOrCreate"}));
    assert_eq!(pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
        json!({"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}));
    assert_eq!(pv["spec"]["capacity"]["storage"], "1Gi");
    assert_eq!(pv["spec"]["storageClassName"], "local-path");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["claimRef"]["uid"], uid.as_str());
    assert_eq!(pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"], "rancher.io/local-path");
    eventually("the volume is protected", || async {
        volumes.get(&pv_name).await.unwrap().metadata.finalizers.unwrap_or_default() == vec!["kubernetes.io/pv-protection".to_string()]
    })
    .await;

    // Delete reclaim: the volume is Released and kept until the node says its directory is gone.
    claims.delete("data", &DeleteParams::default()).await.unwrap();
    eventually("the claim is gone", || async { claims.get_opt("data").await.unwrap().is_none() }).await;
    eventually("the volume is Released", || async { volume_phase(&volumes, &pv_name).await.as_deref() == Some("Released") }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(volume_phase(&volumes, &pv_name).await.as_deref(), Some("Released"), "kept until the directory is removed");
    let cleaned = json!({"metadata": {"annotations": {"skiff.io/local-path-cleaned": "true"}}});
    volumes.patch(&pv_name, &PatchParams::default(), &Patch::Merge(&cleaned)).await.unwrap();
    eventually("the cleaned volume is deleted", || async { volumes.get_opt(&pv_name).await.unwrap().is_none() }).await;
    controllers.stop().await;
}

#[tokio::test]
async fn immediate_local_path_claims_get_a_volume_on_a_ready_node() {
    let (_server, client) = start_server().await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let classes: Api<StorageClass> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    create(&classes, json!({"metadata": {"name": "now"}, "provisioner": "rancher.io/local-path", "reclaimPolicy": "Retain",
        "volumeBindingMode": "Immediate"}))
    .await;
    let controllers = Controllers::start(&client);
    create(&claims, pvc_json("data", "1Gi", "now")).await;
    eventually("without a Ready node provisioning fails with an event", || async {
        !event_notes(&client, "default", "data", "ProvisioningFailed").await.is_empty()
    })
    .await;
    ready_node(&client, "n1").await;
    eventually("the claim is bound", || async { claim_phase(&claims, "data").await.0 == "Bound" }).await;
    let pv = volumes.get(&claim_phase(&claims, "data").await.1).await.unwrap();
    assert_eq!(local_path::volume_node(&pv).as_deref(), Some("n1"));
    assert_eq!(pv.spec.unwrap().persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
    controllers.stop().await;
}

#[tokio::test]
async fn retain_keeps_a_released_volume_and_a_hand_made_host_path_volume_cannot_be_deleted() {
    let (_server, client) = start_server().await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    create(&volumes, pv_json("kept", "1Gi", "keep", "Retain")).await;
    create(&volumes, pv_json("deleted", "1Gi", "del", "Delete")).await;
    let controllers = Controllers::start(&client);
    create(&claims, pvc_json("a", "1Gi", "keep")).await;
    create(&claims, pvc_json("b", "1Gi", "del")).await;
    eventually("both claims are bound", || async {
        claim_phase(&claims, "a").await.0 == "Bound" && claim_phase(&claims, "b").await.0 == "Bound"
    })
    .await;
    claims.delete("a", &DeleteParams::default()).await.unwrap();
    claims.delete("b", &DeleteParams::default()).await.unwrap();
    eventually("the retained volume is Released", || async { volume_phase(&volumes, "kept").await.as_deref() == Some("Released") }).await;
    eventually("the hostPath volume with Delete fails", || async { volume_phase(&volumes, "deleted").await.as_deref() == Some("Failed") }).await;
    let failed = volumes.get("deleted").await.unwrap();
    assert_eq!(failed.status.unwrap().message.as_deref(), Some("host_path deleter only supports /tmp/.+"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(volume_phase(&volumes, "kept").await.as_deref(), Some("Released"));
    // A Released volume is not bound again by a new claim (its claimRef still names the old one).
    create(&claims, pvc_json("c", "1Gi", "keep")).await;
    eventually("the new claim gets its event", || async {
        event_notes(&client, "default", "c", "ProvisioningFailed").await.contains(&"storageclass.storage.k8s.io \"keep\" not found".to_string())
    })
    .await;
    assert_eq!(claim_phase(&claims, "c").await.0, "Pending");
    controllers.stop().await;
}

#[tokio::test]
async fn a_claim_in_use_is_kept_until_its_pod_is_gone_and_a_bound_volume_until_released() {
    let (_server, client) = start_server().await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create(&volumes, pv_json("v", "1Gi", "", "Retain")).await;
    let controllers = Controllers::start(&client);
    create(&claims, pvc_json("data", "1Gi", "")).await;
    eventually("the claim is bound and protected", || async {
        let c = claims.get("data").await.unwrap();
        c.status.and_then(|s| s.phase).as_deref() == Some("Bound")
            && c.metadata.finalizers.unwrap_or_default() == vec!["kubernetes.io/pvc-protection".to_string()]
    })
    .await;
    eventually("the volume is protected", || async {
        volumes.get("v").await.unwrap().metadata.finalizers.unwrap_or_default() == vec!["kubernetes.io/pv-protection".to_string()]
    })
    .await;
    create(&pods, json!({"metadata": {"name": "user"}, "spec": {"containers": [{"name": "c", "image": "busybox"}],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}))
    .await;
    pods.patch_status("user", &PatchParams::default(), &Patch::Merge(&json!({"status": {"phase": "Running"}}))).await.unwrap();

    // The volume cannot go while bound.
    volumes.delete("v", &DeleteParams::default()).await.unwrap();
    claims.delete("data", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let kept = claims.get("data").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_some());
    assert_eq!(kept.metadata.finalizers.unwrap_or_default(), vec!["kubernetes.io/pvc-protection".to_string()]);
    let kept = volumes.get("v").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_some());
    assert_eq!(kept.metadata.finalizers.unwrap_or_default(), vec!["kubernetes.io/pv-protection".to_string()]);

    pods.delete("user", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    eventually("the pod is gone", || async { pods.get_opt("user").await.unwrap().is_none() }).await;
    eventually("the claim is gone", || async { claims.get_opt("data").await.unwrap().is_none() }).await;
    eventually("the released volume is gone", || async { volumes.get_opt("v").await.unwrap().is_none() }).await;
    controllers.stop().await;
}

#[tokio::test]
async fn volume_expansion_raises_the_capacity_where_the_class_allows_it() {
    let (_server, client) = start_server().await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let classes: Api<StorageClass> = Api::all(client.clone());
    create(&classes, json!({"metadata": {"name": "grow"}, "provisioner": "example.com/none", "allowVolumeExpansion": true})).await;
    create(&classes, json!({"metadata": {"name": "fixed"}, "provisioner": "example.com/none"})).await;
    create(&volumes, pv_json("g", "1Gi", "grow", "Retain")).await;
    create(&volumes, pv_json("f", "1Gi", "fixed", "Retain")).await;
    let controllers = Controllers::start(&client);
    create(&claims, pvc_json("g", "1Gi", "grow")).await;
    create(&claims, pvc_json("f", "1Gi", "fixed")).await;
    eventually("both claims are bound", || async {
        claim_phase(&claims, "g").await.0 == "Bound" && claim_phase(&claims, "f").await.0 == "Bound"
    })
    .await;
    let grow = json!({"spec": {"resources": {"requests": {"storage": "3Gi"}}}});
    claims.patch("g", &PatchParams::default(), &Patch::Merge(&grow)).await.unwrap();
    eventually("the claim's capacity grows", || async {
        claims.get("g").await.unwrap().status.and_then(|s| s.capacity).is_some_and(|c| c["storage"].0 == "3Gi")
    })
    .await;
    assert_eq!(volumes.get("g").await.unwrap().spec.unwrap().capacity.unwrap()["storage"].0, "3Gi");

    let err = claims.patch("f", &PatchParams::default(), &Patch::Merge(&grow)).await.unwrap_err();
    let kube::Error::Api(status) = err else { panic!("expected an API error, got {err:?}") };
    assert_eq!(status.code, 403);
    assert_eq!(
        status.message,
        "persistentvolumeclaims \"f\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"
    );
    controllers.stop().await;
}

#[tokio::test]
async fn a_claim_without_a_class_gets_the_default_local_path_class_and_a_volume_where_its_pod_runs() {
    let (server, client) = start_server().await;
    skiff_apiserver::bootstrap::ensure_default_storage_class(&server.registry).await.unwrap();
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class = classes.get("local-path").await.unwrap();
    assert_eq!(class.provisioner, "rancher.io/local-path");
    assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(class.volume_binding_mode.as_deref(), Some("WaitForFirstConsumer"));
    assert_eq!(class.metadata.annotations.unwrap()["storageclass.kubernetes.io/is-default-class"], "true");

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    ready_node(&client, "n1").await;
    let controllers = Controllers::start(&client);
    create(&claims, json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}}}}))
    .await;
    eventually("the claim gets the default class", || async {
        claims.get("data").await.unwrap().spec.unwrap().storage_class_name.as_deref() == Some("local-path")
    })
    .await;
    // A pod placed on a node by hand (no scheduler) counts as the first consumer.
    create(&pods, json!({"metadata": {"name": "user"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}))
    .await;
    eventually("the claim is bound", || async { claim_phase(&claims, "data").await.0 == "Bound" }).await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = volumes.get(&claim_phase(&claims, "data").await.1).await.unwrap();
    assert_eq!(local_path::volume_node(&pv).as_deref(), Some("n1"));
    controllers.stop().await;
}
