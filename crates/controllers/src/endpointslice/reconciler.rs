//! Which slices to create, update and delete so that a Service's managed EndpointSlices hold the desired
//! endpoints with the least churn (upstream's `staging/src/k8s.io/endpointslice/reconciler.go`): existing
//! slices keep the endpoints they have and are changed only when their content changed, new endpoints
//! fill the slices already being updated, then the unchanged slice they fit best, then new slices; slices
//! left empty are deleted (or reused in place of a new slice).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::desired::{CONTROLLER_NAME, Group, LABEL_HEADLESS, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, endpoint_key, is_headless, port_key};

/// The only address type this controller writes (the cluster is IPv4).
pub const ADDRESS_TYPE: &str = "IPv4";

/// The writes one sync makes.
#[derive(Debug, Default)]
pub struct Plan {
    /// Without a name: created with `generateName: <service>-`.
    pub create: Vec<EndpointSlice>,
    /// Whole objects, carrying the resourceVersion they were read at.
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// The labels of the Service's slices (upstream's `setEndpointSliceLabels`): the Service's labels except
/// the reserved ones, the headless label for a Service without cluster IP, the service name and the
/// managed-by label.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| ![LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if is_headless(svc) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels.insert(LABEL_SERVICE_NAME.into(), svc.metadata.name.clone().unwrap_or_default());
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    labels
}

/// Whether the slice's controller reference is this Service (by uid).
pub fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    let uid = svc.metadata.uid.as_deref();
    uid.is_some()
        && slice.metadata.owner_references.iter().flatten().any(|r| r.kind == "Service" && r.api_version == "v1" && Some(r.uid.as_str()) == uid)
}

/// A new, empty slice of the Service with these ports (upstream's `newEndpointSlice`).
pub fn new_slice(svc: &Service, ports: Vec<EndpointPort>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", svc.metadata.name.as_deref().unwrap_or(""))),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: crate::pod_util::controller_ref(svc).map(|r| vec![r]),
            ..Default::default()
        },
        address_type: ADDRESS_TYPE.into(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

fn name_of(s: &EndpointSlice) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

fn ports_of(s: &EndpointSlice) -> &[EndpointPort] {
    s.ports.as_deref().unwrap_or(&[])
}

/// The writes that turn `existing` (the Service's managed slices, none being deleted) into slices holding
/// `groups`, at most `max_per_slice` endpoints each.
pub fn plan(svc: &Service, groups: &BTreeMap<String, Group>, existing: Vec<EndpointSlice>, max_per_slice: usize) -> Plan {
    let max = max_per_slice.max(1);
    let existing_count = existing.len();
    let mut out = Plan::default();
    let mut by_ports: BTreeMap<String, Vec<EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        // Slices of another address type, or left over from an earlier Service of the same name.
        if slice.address_type != ADDRESS_TYPE || !owned_by(&slice, svc) {
            out.delete.push(slice);
        } else {
            by_ports.entry(port_key(ports_of(&slice))).or_default().push(slice);
        }
    }
    for (key, group) in groups {
        let (create, update, delete) = plan_ports(svc, by_ports.remove(key).unwrap_or_default(), group, max);
        out.create.extend(create);
        out.update.extend(update);
        out.delete.extend(delete);
    }
    // Port sets no longer wanted.
    out.delete.extend(by_ports.into_values().flatten());

    // A Service without endpoints keeps one empty placeholder slice.
    if existing_count == out.delete.len() && out.create.is_empty() {
        let placeholder = new_slice(svc, Vec::new());
        let reusable = out.delete.len() == 1 && {
            let d = &out.delete[0];
            owned_by(d, svc) && d.address_type == ADDRESS_TYPE && d.endpoints.is_empty() && ports_of(d).is_empty()
        };
        if reusable {
            let mut kept = out.delete.pop().expect("checked above");
            if kept.metadata.labels != placeholder.metadata.labels {
                kept.metadata.labels = placeholder.metadata.labels;
                out.update.push(kept);
            }
        } else {
            out.create.push(placeholder);
        }
    }

    // Reuse slices about to be deleted instead of creating new ones.
    let mut i = 0;
    while i < out.delete.len() && !out.create.is_empty() {
        if out.delete[i].address_type == ADDRESS_TYPE && owned_by(&out.delete[i], svc) {
            let fresh = out.create.pop().expect("checked by the loop");
            let mut reused = out.delete.remove(i);
            reused.metadata.labels = fresh.metadata.labels;
            reused.ports = fresh.ports;
            reused.endpoints = fresh.endpoints;
            out.update.push(reused);
        } else {
            i += 1;
        }
    }
    out
}

/// Upstream's `reconcileByPortMapping` for one port set: (create, update, delete).
fn plan_ports(
    svc: &Service,
    existing: Vec<EndpointSlice>,
    group: &Group,
    max: usize,
) -> (Vec<EndpointSlice>, Vec<EndpointSlice>, Vec<EndpointSlice>) {
    let labels = slice_labels(svc);
    let mut desired = group.endpoints.clone();
    let mut by_name: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged = BTreeSet::new();
    let mut to_update = BTreeSet::new();
    let mut to_delete = BTreeSet::new();

    // 1. Keep the desired endpoints where they are, in their desired state; drop the others.
    for slice in existing {
        let name = name_of(&slice);
        let mut kept = Vec::with_capacity(slice.endpoints.len());
        let mut changed = false;
        for ep in &slice.endpoints {
            if let Some(want) = desired.remove(&endpoint_key(ep)) {
                changed |= want != *ep;
                kept.push(want);
            }
        }
        let labels_changed = slice.metadata.labels.as_ref() != Some(&labels);
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                to_delete.insert(name.clone());
                by_name.insert(name, slice);
            } else {
                let mut s = slice;
                s.endpoints = kept;
                s.metadata.labels = Some(labels.clone());
                to_update.insert(name.clone());
                by_name.insert(name, s);
            }
        } else if labels_changed {
            let mut s = slice;
            s.metadata.labels = Some(labels.clone());
            to_update.insert(name.clone());
            by_name.insert(name, s);
        } else {
            unchanged.insert(name.clone());
            by_name.insert(name, slice);
        }
    }

    // 2. New endpoints go first into the slices being updated anyway, fullest first.
    if !desired.is_empty() && !to_update.is_empty() {
        let mut names: Vec<&String> = to_update.iter().collect();
        names.sort_by_key(|n| std::cmp::Reverse(by_name[*n].endpoints.len()));
        for name in names {
            let slice = by_name.get_mut(name).expect("names come from by_name");
            while slice.endpoints.len() < max {
                let Some((_, ep)) = desired.pop_first() else { break };
                slice.endpoints.push(ep);
            }
        }
    }

    // 3. The rest fill the unchanged slice they fit best (when fewer than a slice), else new slices.
    let mut create = Vec::new();
    while !desired.is_empty() {
        let mut target: Option<String> = None;
        if desired.len() < max {
            target = slice_to_fill(unchanged.iter().map(|n| (n, by_name[n].endpoints.len())), desired.len(), max);
        }
        let mut slice = match &target {
            Some(name) => by_name.remove(name).expect("names come from by_name"),
            None => new_slice(svc, group.ports.clone()),
        };
        while slice.endpoints.len() < max {
            let Some((_, ep)) = desired.pop_first() else { break };
            slice.endpoints.push(ep);
        }
        match target {
            Some(name) => {
                unchanged.remove(&name);
                to_update.insert(name.clone());
                by_name.insert(name, slice);
            }
            None => create.push(slice),
        }
    }
    let update = to_update.iter().map(|n| by_name[n].clone()).collect();
    let delete = to_delete.iter().map(|n| by_name[n].clone()).collect();
    (create, update, delete)
}

/// Upstream's `getSliceToFill`: the slice that `count` more endpoints fill most closely to `max`.
fn slice_to_fill<'a>(slices: impl Iterator<Item = (&'a String, usize)>, count: usize, max: usize) -> Option<String> {
    let mut best: Option<(&String, usize)> = None;
    for (name, len) in slices {
        if len + count > max {
            continue;
        }
        let diff = max - (len + count);
        if best.is_none_or(|(_, d)| diff < d) {
            best = Some((name, diff));
            if diff == 0 {
                break;
            }
        }
    }
    best.map(|(n, _)| n.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};

    fn svc() -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.0.0.1", "ports": [{"name": "http", "port": 80}]}
        }))
        .unwrap()
    }

    fn ep(i: usize, ready: bool) -> Endpoint {
        Endpoint {
            addresses: vec![format!("10.1.{}.{}", i / 250, i % 250 + 1)],
            conditions: Some(EndpointConditions { ready: Some(ready), serving: Some(ready), terminating: Some(false) }),
            target_ref: Some(ObjectReference { kind: Some("Pod".into()), namespace: Some("ns".into()), name: Some(format!("p{i}")), ..Default::default() }),
            ..Default::default()
        }
    }

    fn ports() -> Vec<EndpointPort> {
        vec![EndpointPort { name: Some("http".into()), port: Some(80), protocol: Some("TCP".into()), app_protocol: None }]
    }

    fn group(range: impl Iterator<Item = usize>) -> BTreeMap<String, Group> {
        let endpoints = range.map(|i| ep(i, true)).map(|e| (endpoint_key(&e), e)).collect();
        BTreeMap::from([(port_key(&ports()), Group { ports: ports(), endpoints })])
    }

    /// Applies a plan as the API server would (names for created slices).
    fn apply(existing: Vec<EndpointSlice>, plan: Plan, next: &mut usize) -> Vec<EndpointSlice> {
        let gone: BTreeSet<String> = plan.delete.iter().chain(&plan.update).map(name_of).collect();
        let mut out: Vec<EndpointSlice> = existing.into_iter().filter(|s| !gone.contains(&name_of(s))).collect();
        out.extend(plan.update);
        for mut s in plan.create {
            *next += 1;
            s.metadata.name = Some(format!("web-{next}"));
            out.push(s);
        }
        out
    }

    fn total(slices: &[EndpointSlice]) -> usize {
        slices.iter().map(|s| s.endpoints.len()).sum()
    }

    #[test]
    fn packs_into_slices_of_at_most_max() {
        let s = svc();
        let p = plan(&s, &group(0..250), Vec::new(), 100);
        assert_eq!(p.create.len(), 3);
        assert!(p.update.is_empty() && p.delete.is_empty());
        let mut sizes: Vec<usize> = p.create.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        assert_eq!(sizes, vec![50, 100, 100]);
        let slice = &p.create[0];
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        let labels = slice.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_SERVICE_NAME], "web");
        assert_eq!(labels[LABEL_MANAGED_BY], CONTROLLER_NAME);
        assert_eq!(labels["team"], "a");
        assert!(!labels.contains_key(LABEL_HEADLESS));
        let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller, owner.block_owner_deletion), ("Service", "svc-uid", Some(true), Some(true)));
    }

    #[test]
    fn unchanged_content_means_no_writes_and_changes_touch_only_their_slice() {
        let s = svc();
        let mut n = 0;
        let slices = apply(Vec::new(), plan(&s, &group(0..250), Vec::new(), 100), &mut n);
        let again = plan(&s, &group(0..250), slices.clone(), 100);
        assert!(again.is_empty(), "{again:?}");

        // One endpoint turns not ready: one update of the slice holding it.
        let mut g = group(0..250);
        let e = ep(7, false);
        g.values_mut().next().unwrap().endpoints.insert(endpoint_key(&e), e);
        let p = plan(&s, &g, slices.clone(), 100);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(p.update.len(), 1);
        assert!(p.update[0].endpoints.iter().any(|x| x.addresses == ["10.1.0.8"] && x.conditions.as_ref().unwrap().ready == Some(false)));

        // A new endpoint goes into the slice with room, not a new slice.
        let p = plan(&s, &group(0..251), slices.clone(), 100);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].endpoints.len(), 51);

        // Dropping to 10 endpoints deletes or shrinks, never exceeds the max, and keeps all 10.
        let p = plan(&s, &group(0..10), slices.clone(), 100);
        let after = apply(slices, p, &mut n);
        assert_eq!(total(&after), 10);
        assert!(after.iter().all(|s| s.endpoints.len() <= 100 && !s.endpoints.is_empty()));
    }

    #[test]
    fn no_endpoints_keeps_one_placeholder_and_foreign_slices_are_deleted() {
        let s = svc();
        let p = plan(&s, &BTreeMap::new(), Vec::new(), 100);
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.is_empty() && p.create[0].ports.as_ref().unwrap().is_empty());
        let mut n = 0;
        let slices = apply(Vec::new(), p, &mut n);
        assert!(plan(&s, &BTreeMap::new(), slices.clone(), 100).is_empty(), "the placeholder stays as it is");

        // Endpoints arrive: the placeholder is reused for them.
        let p = plan(&s, &group(0..3), slices.clone(), 100);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].endpoints.len(), 3);
        assert_eq!(p.update[0].ports.as_deref(), Some(&ports()[..]));

        // A slice owned by an older Service of the same name is deleted.
        let mut stale = slices[0].clone();
        stale.metadata.name = Some("web-old".into());
        stale.metadata.owner_references.as_mut().unwrap()[0].uid = "old-uid".into();
        let p = plan(&s, &group(0..3), vec![stale], 100);
        assert_eq!(p.delete.len(), 1);
        assert_eq!(p.create.len(), 1);
    }

    #[test]
    fn label_changes_update_slices() {
        let mut s = svc();
        let mut n = 0;
        let slices = apply(Vec::new(), plan(&s, &group(0..3), Vec::new(), 100), &mut n);
        s.metadata.labels = Some([("team".to_string(), "b".to_string())].into());
        s.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let p = plan(&s, &group(0..3), slices, 100);
        assert_eq!(p.update.len(), 1);
        let labels = p.update[0].metadata.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "b");
        assert_eq!(labels[LABEL_HEADLESS], "");
    }

    #[test]
    fn slice_to_fill_picks_the_closest_fit() {
        let (a, b, c) = ("a".to_string(), "b".to_string(), "c".to_string());
        let slices = [(&a, 90), (&b, 60), (&c, 95)];
        assert_eq!(slice_to_fill(slices.into_iter(), 8, 100), Some("a".into()));
        assert_eq!(slice_to_fill(slices.into_iter(), 5, 100), Some("c".into()));
        assert_eq!(slice_to_fill(slices.into_iter(), 41, 100), None);
    }
}
