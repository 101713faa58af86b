//! VolumeBinding's filter outcomes, with upstream's messages.

use super::*;
use crate::testing::{NodeBuilder, PodBuilder, filter_all, filter_one};
use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, PersistentVolumeClaimSpec,
    PersistentVolumeSpec, PersistentVolumeStatus, VolumeNodeAffinity, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

pub(crate) fn claim(name: &str, class: &str, volume: Option<&str>, size: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            storage_class_name: Some(class.into()),
            volume_name: volume.map(Into::into),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

pub(crate) fn volume(name: &str, class: &str, node: Option<&str>, size: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(PersistentVolumeSpec {
            storage_class_name: Some(class.into()),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            capacity: Some([("storage".to_string(), Quantity(size.into()))].into()),
            node_affinity: node.map(|n| VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![n.into()]),
                        }]),
                        ..Default::default()
                    }],
                }),
            }),
            ..Default::default()
        }),
        status: Some(PersistentVolumeStatus { phase: Some("Available".into()), ..Default::default() }),
    }
}

pub(crate) fn class(name: &str, provisioner: &str, mode: &str) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        provisioner: provisioner.into(),
        volume_binding_mode: Some(mode.into()),
        reclaim_policy: Some("Delete".into()),
        ..Default::default()
    }
}

fn plugin() -> VolumeBinding {
    let mut deleting = claim("deleting", "local-path", Some("pv-a"), "1Gi");
    deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    let listers = VolumeListers::with(
        &[
            claim("bound-a", "local-path", Some("pv-a"), "1Gi"),
            claim("bound-anywhere", "manual", Some("pv-any"), "1Gi"),
            claim("bound-gone", "manual", Some("pv-gone"), "1Gi"),
            claim("immediate", "fast", None, "1Gi"),
            claim("no-class", "", None, "1Gi"),
            claim("unknown-class", "missing", None, "1Gi"),
            claim("wffc-dynamic", "local-path", None, "1Gi"),
            claim("wffc-static", "local-static", None, "5Gi"),
            claim("wffc-static-big", "local-static", None, "50Gi"),
            deleting,
        ],
        &[
            volume("pv-a", "local-path", Some("a"), "1Gi"),
            volume("pv-any", "manual", None, "1Gi"),
            volume("static-b", "local-static", Some("b"), "10Gi"),
        ],
        &[
            class("local-path", "rancher.io/local-path", WAIT_FOR_FIRST_CONSUMER),
            class("local-static", "kubernetes.io/no-provisioner", WAIT_FOR_FIRST_CONSUMER),
            class("fast", "example.com/fast", "Immediate"),
        ],
    );
    VolumeBinding { listers }
}

#[test]
fn volume_binding_filter_outcomes() {
    let pl = plugin();
    let nodes = [NodeBuilder::new("a").build(), NodeBuilder::new("b").build()];
    let conflict = Err(ERR_NODE_CONFLICT.to_string());
    let no_pv = Err(ERR_BIND_CONFLICT.to_string());
    let both = |r: Result<(), String>| vec![r.clone(), r];
    let cases: Vec<(&str, Vec<Result<(), String>>)> = vec![
        ("", both(Ok(()))),
        ("bound-a", vec![Ok(()), conflict.clone()]),
        ("bound-anywhere", both(Ok(()))),
        ("bound-gone", both(Err(ERR_PV_NOT_FOUND.into()))),
        ("missing", both(Err("persistentvolumeclaim \"missing\" not found".into()))),
        ("deleting", both(Err("persistentvolumeclaim \"deleting\" is being deleted".into()))),
        ("immediate", both(Err(ERR_UNBOUND_IMMEDIATE.into()))),
        ("no-class", both(Err(ERR_UNBOUND_IMMEDIATE.into()))),
        ("unknown-class", both(Err("storageclass.storage.k8s.io \"missing\" not found".into()))),
        ("wffc-dynamic", both(Ok(()))),
        ("wffc-static", vec![no_pv.clone(), Ok(())]),
        ("wffc-static-big", both(no_pv.clone())),
    ];
    for (claim_name, want) in cases {
        let pod = if claim_name.is_empty() { PodBuilder::new("p").build() } else { PodBuilder::new("p").pvc(claim_name).build() };
        assert_eq!(filter_all(&pl, &pod, &nodes, &[]), want, "claim {claim_name:?}");
    }
    // Two claims: the bound one pins the pod to node a, the static one needs node b: no node fits.
    let pod = PodBuilder::new("p").pvc("bound-a").pvc("wffc-static").build();
    assert_eq!(filter_all(&pl, &pod, &nodes, &[]), vec![no_pv, conflict]);
}

#[test]
fn volume_matching_follows_the_binding_rules() {
    let pvc = claim("c", "local-static", None, "5Gi");
    assert!(pv_matches_claim(&volume("v", "local-static", None, "5Gi"), &pvc));
    assert!(!pv_matches_claim(&volume("v", "other", None, "5Gi"), &pvc), "class differs");
    assert!(!pv_matches_claim(&volume("v", "local-static", None, "4Gi"), &pvc), "too small");
    let mut rwx = pvc.clone();
    rwx.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteMany".into()]);
    assert!(!pv_matches_claim(&volume("v", "local-static", None, "5Gi"), &rwx), "access mode missing");
    let mut taken = volume("v", "local-static", None, "5Gi");
    taken.spec.as_mut().unwrap().claim_ref =
        Some(ObjectReference { name: Some("other".into()), namespace: Some("default".into()), ..Default::default() });
    assert!(!pv_matches_claim(&taken, &pvc), "claimed by another claim");
    taken.spec.as_mut().unwrap().claim_ref =
        Some(ObjectReference { name: Some("c".into()), namespace: Some("default".into()), ..Default::default() });
    assert!(pv_matches_claim(&taken, &pvc), "pre-bound to this claim");
    let mut released = volume("v", "local-static", None, "5Gi");
    released.status.as_mut().unwrap().phase = Some("Released".into());
    assert!(!pv_matches_claim(&released, &pvc), "released volumes are not reused");
    let mut block = volume("v", "local-static", None, "5Gi");
    block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
    assert!(!pv_matches_claim(&block, &pvc), "volume mode differs");
}

#[test]
fn volume_binding_skips_pods_without_claims() {
    let pl = plugin();
    let node = NodeBuilder::new("a").build();
    assert_eq!(filter_one(&pl, &PodBuilder::new("p").build(), &node, &[]), Ok(()));
    let pi = PodBuilder::new("p").info();
    let mut state = CycleState::default();
    assert_eq!(pl.pre_filter(&mut state, &pi, &Cache::new()), Ok(PreFilterResult::Skip));
}
