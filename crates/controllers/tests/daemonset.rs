//! The DaemonSet controller against the in-process API server, with hand-made Nodes and pods made Ready by
//! patching their status (there is no scheduler or kubelet here).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use skiff_controllers::controller_revision::REVISION_HASH_LABEL;
use skiff_controllers::daemonset::{self, predicates::target_node};

mod support;
use support::{Running, eventually, start_server};


fn node(name: &str, taints: serde_json::Value) -> Node {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {"taints": taints}})).unwrap()
}

/// Creates an untainted node.
async fn add_node(nodes: &Api<Node>, name: &str) {
    nodes.create(&PostParams::default(), &node(name, serde_json::json!([]))).await.unwrap();
}

/// The DaemonSet `agent` (pods `app=agent`, image `agent:1`) with `updateStrategy` (null: the default).
fn agent(update_strategy: serde_json::Value) -> DaemonSet {
    let mut spec = serde_json::json!({
        "selector": {"matchLabels": {"app": "agent"}},
        "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "agent:1"}]}}
    });
    if !update_strategy.is_null() {
        spec["updateStrategy"] = update_strategy;
    }
    serde_json::from_value(serde_json::json!({"metadata": {"name": "agent"}, "spec": spec})).unwrap()
}

async fn live_pods(pods: &Api<Pod>) -> Vec<Pod> {
    support::live_pods(pods, "app=agent").await
}

fn nodes_of(pods: &[Pod]) -> Vec<String> {
    let mut v: Vec<String> = pods
        .iter()
        .filter_map(|p| target_node(p.spec.as_ref().unwrap()))
        .collect();
    v.sort();
    v
}

async fn make_ready(pods: &Api<Pod>, pod: &Pod) {
    support::set_ready(pods, pod.metadata.name.as_deref().unwrap(), true).await.unwrap();
}

#[tokio::test]
async fn one_pod_per_eligible_node_rolled_one_at_a_time() {
    let (_server, client) = start_server().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    add_node(&nodes, "n1").await;
    // Cordoned and not ready: daemon pods tolerate both by default.
    nodes
        .create(
            &PostParams::default(),
            &node("n2", serde_json::json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}, {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}])),
        )
        .await
        .unwrap();
    nodes
        .create(
            &PostParams::default(),
            &node(
                "tainted",
                serde_json::json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
            ),
        )
        .await
        .unwrap();
    let controller = Running::spawn(&client, daemonset::run);
    dss.create(&PostParams::default(), &agent(serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})))
        .await
        .unwrap();

    eventually("a pod on n1 and n2, none on the tainted node", || async {
        nodes_of(&live_pods(&pods).await) == ["n1", "n2"]
    })
    .await;
    let first = live_pods(&pods).await;
    let hash1 = first[0].metadata.labels.as_ref().unwrap()[REVISION_HASH_LABEL].clone();
    assert!(
        first
            .iter()
            .all(|p| p.spec.as_ref().unwrap().node_name.is_none()),
        "pinned by affinity, bound by the scheduler"
    );

    // A node joins: it gets a pod.
    add_node(&nodes, "n3").await;
    eventually("a pod on the new node", || async {
        nodes_of(&live_pods(&pods).await) == ["n1", "n2", "n3"]
    })
    .await;
    for pod in live_pods(&pods).await {
        make_ready(&pods, &pod).await;
    }
    eventually("the status counts three ready daemons", || async {
        let s = dss.get("agent").await.unwrap().status.unwrap_or_default();
        s.desired_number_scheduled == 3
            && s.current_number_scheduled == 3
            && s.number_ready == 3
            && s.number_available == Some(3)
            && s.updated_number_scheduled == Some(3)
            && s.number_misscheduled == 0
            && s.observed_generation == Some(1)
    })
    .await;

    // A new image rolls node by node: never more than one daemon missing.
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}});
    dss.patch("agent", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let mut hash2 = None;
    for _ in 0..300 {
        let live = live_pods(&pods).await;
        assert!(
            live.len() >= 2,
            "maxUnavailable 1 of 3 keeps at least two daemons"
        );
        for pod in &live {
            if pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_none_or(|c| c.is_empty())
            {
                make_ready(&pods, pod).await;
            }
        }
        let hashes: Vec<String> = live
            .iter()
            .map(|p| p.metadata.labels.as_ref().unwrap()[REVISION_HASH_LABEL].clone())
            .collect();
        if live.len() == 3 && hashes.iter().all(|h| *h != hash1) {
            hash2 = Some(hashes[0].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hash2 = hash2.expect("every daemon runs the new revision in time");
    assert_eq!(nodes_of(&live_pods(&pods).await), ["n1", "n2", "n3"]);
    let revs: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let revs = revs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(revs.len(), 2, "one ControllerRevision per template");
    assert!(revs.iter().any(
        |r| r.metadata.labels.as_ref().unwrap()[REVISION_HASH_LABEL] == hash2 && r.revision == 2
    ));

    // A node that gains an untolerated NoExecute taint loses its daemon.
    let taint = serde_json::json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]}});
    nodes
        .patch("n3", &PatchParams::default(), &Patch::Merge(&taint))
        .await
        .unwrap();
    eventually("the daemon leaves n3", || async {
        nodes_of(&live_pods(&pods).await) == ["n1", "n2"]
    })
    .await;

    controller.stop().await;
}

#[tokio::test]
async fn surge_starts_the_new_pod_before_removing_the_old_one() {
    let (_server, client) = start_server().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    add_node(&nodes, "n1").await;
    let controller = Running::spawn(&client, daemonset::run);
    dss.create(&PostParams::default(), &agent(serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})))
        .await
        .unwrap();
    eventually("a daemon on n1", || async {
        live_pods(&pods).await.len() == 1
    })
    .await;
    let old = live_pods(&pods).await.remove(0);
    make_ready(&pods, &old).await;
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}});
    dss.patch("agent", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    eventually("the new pod starts beside the old one", || async {
        live_pods(&pods).await.len() == 2
    })
    .await;
    let new = live_pods(&pods)
        .await
        .into_iter()
        .find(|p| p.metadata.name != old.metadata.name)
        .unwrap();
    assert!(
        live_pods(&pods)
            .await
            .iter()
            .any(|p| p.metadata.name == old.metadata.name),
        "the old pod stays until the new one is available"
    );
    make_ready(&pods, &new).await;
    eventually("the old pod is removed", || async {
        let live = live_pods(&pods).await;
        live.len() == 1 && live[0].metadata.name == new.metadata.name
    })
    .await;
    controller.stop().await;
}

#[tokio::test]
async fn an_orphan_daemon_pod_is_adopted_not_doubled() {
    let (_server, client) = start_server().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    add_node(&nodes, "n1").await;
    let orphan: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "left-behind", "labels": {"app": "agent"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "agent:1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    let controller = Running::spawn(&client, daemonset::run);
    let ds = dss.create(&PostParams::default(), &agent(serde_json::json!({"type": "OnDelete"})))
        .await
        .unwrap();
    eventually("the orphan is adopted", || async {
        let p = pods.get("left-behind").await.unwrap();
        p.metadata.owner_references.is_some_and(|r| {
            r.iter()
                .any(|r| r.uid == ds.metadata.uid.clone().unwrap() && r.controller == Some(true))
        })
    })
    .await;
    eventually("the status counts it", || async {
        dss.get("agent")
            .await
            .unwrap()
            .status
            .is_some_and(|s| s.current_number_scheduled == 1)
    })
    .await;
    assert_eq!(live_pods(&pods).await.len(), 1, "no second daemon on n1");
    controller.stop().await;
}

#[tokio::test]
async fn a_failed_daemon_is_replaced() {
    let (_server, client) = start_server().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    add_node(&nodes, "n1").await;
    let controller = Running::spawn(&client, daemonset::run);
    dss.create(&PostParams::default(), &agent(serde_json::json!(null)))
        .await
        .unwrap();
    eventually("a daemon on n1", || async {
        live_pods(&pods).await.len() == 1
    })
    .await;
    let first = live_pods(&pods).await.remove(0);
    let failed = serde_json::json!({"status": {"phase": "Failed"}});
    pods.patch_status(
        first.metadata.name.as_deref().unwrap(),
        &PatchParams::default(),
        &Patch::Merge(&failed),
    )
    .await
    .unwrap();
    eventually(
        "the failed daemon is replaced after its backoff",
        || async {
            let live = live_pods(&pods).await;
            live.len() == 1 && live[0].metadata.name != first.metadata.name
        },
    )
    .await;
    controller.stop().await;
}
