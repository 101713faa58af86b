//! The resource table: every built-in kind Skiff serves, with its group, version, plural, scope,
//! subresources, short names and categories, as Kubernetes' discovery documents them.

/// A subresource of a resource (`pods/status`, `deployments/scale`, `pods/log`...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    /// The group, version and kind of what the subresource returns.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// One served resource at one group-version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// The API group, `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The plural resource name used in URLs (`pods`).
    pub plural: &'static str,
    /// The singular name (`pod`).
    pub singular: &'static str,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// The group this resource is stored under (`events.k8s.io/v1` Events share core `events` storage).
    pub storage_group: &'static str,
    /// The resource name this resource is stored under.
    pub storage_plural: &'static str,
    /// The version objects are stored in (`autoscaling/v1` HPAs are stored as `v2`).
    pub storage_version: &'static str,
    /// Served from a CustomResourceDefinition (entries made at run time by `crd::Catalog`).
    pub custom: bool,
}

impl ResourceInfo {
    /// `apiVersion` as written in objects: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of the list type (`PodList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The name used in error messages: `pods` or `deployments.apps`.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s.name == name)
    }

    /// The storage key prefix for this resource: `/registry/<group>/<resource>/`.
    pub fn key_prefix(&self) -> String {
        let group = if self.storage_group.is_empty() { "core" } else { self.storage_group };
        format!("/registry/{group}/{}/", self.storage_plural)
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }
}

pub const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const GUP: &[&str] = &["get", "patch", "update"];
const CREATE: &[&str] = &["create"];
const CREATE_GET: &[&str] = &["create", "get"];
const GET: &[&str] = &["get"];

const fn status(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource { name: "status", group, version, kind, verbs: GUP }
}

const SCALE: Subresource = Subresource { name: "scale", group: "autoscaling", version: "v1", kind: "Scale", verbs: GUP };

macro_rules! res {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr,
     short: [$($short:expr),*], cat: [$($cat:expr),*], sub: [$($sub:expr),*]) => {
        ResourceInfo {
            group: $group, version: $version, kind: $kind, plural: $plural, singular: $singular,
            namespaced: $namespaced, verbs: ALL_VERBS, short_names: &[$($short),*], categories: &[$($cat),*],
            subresources: &[$($sub),*], storage_group: $group, storage_plural: $plural,
            storage_version: $version, custom: false,
        }
    };
}

/// Every built-in resource Skiff serves. For each group the first version listed is the preferred one.
pub static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    res!("", "v1", "Namespace", "namespaces", "namespace", false, short: ["ns"], cat: [],
         sub: [status("", "v1", "Namespace"),
               Subresource { name: "finalize", group: "", version: "v1", kind: "Namespace", verbs: &["update"] }]),
    res!("", "v1", "Pod", "pods", "pod", true, short: ["po"], cat: ["all"],
         sub: [status("", "v1", "Pod"),
               Subresource { name: "binding", group: "", version: "v1", kind: "Binding", verbs: CREATE },
               Subresource { name: "eviction", group: "policy", version: "v1", kind: "Eviction", verbs: CREATE },
               Subresource { name: "log", group: "", version: "v1", kind: "Pod", verbs: GET },
               Subresource { name: "exec", group: "", version: "v1", kind: "PodExecOptions", verbs: CREATE_GET },
               Subresource { name: "attach", group: "", version: "v1", kind: "PodAttachOptions", verbs: CREATE_GET },
               Subresource { name: "portforward", group: "", version: "v1", kind: "PodPortForwardOptions", verbs: CREATE_GET },
               Subresource { name: "ephemeralcontainers", group: "", version: "v1", kind: "Pod", verbs: GUP }]),
    res!("", "v1", "Service", "services", "service", true, short: ["svc"], cat: ["all"],
         sub: [status("", "v1", "Service")]),
    res!("", "v1", "Endpoints", "endpoints", "endpoints", true, short: ["ep"], cat: [], sub: []),
    res!("", "v1", "ConfigMap", "configmaps", "configmap", true, short: ["cm"], cat: [], sub: []),
    res!("", "v1", "Secret", "secrets", "secret", true, short: [], cat: [], sub: []),
    res!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, short: ["sa"], cat: [],
         sub: [Subresource { name: "token", group: "authentication.k8s.io", version: "v1", kind: "TokenRequest", verbs: CREATE }]),
    res!("", "v1", "Node", "nodes", "node", false, short: ["no"], cat: [], sub: [status("", "v1", "Node")]),
    res!("", "v1", "Event", "events", "event", true, short: ["ev"], cat: [], sub: []),
    res!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false, short: ["pv"], cat: [],
         sub: [status("", "v1", "PersistentVolume")]),
    res!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, short: ["pvc"],
         cat: [], sub: [status("", "v1", "PersistentVolumeClaim")]),
    res!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true, short: ["quota"], cat: [],
         sub: [status("", "v1", "ResourceQuota")]),
    res!("", "v1", "LimitRange", "limitranges", "limitrange", true, short: ["limits"], cat: [], sub: []),
    res!("", "v1", "PodTemplate", "podtemplates", "podtemplate", true, short: [], cat: [], sub: []),
    res!("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", true, short: ["rc"],
         cat: ["all"], sub: [status("", "v1", "ReplicationController"), SCALE]),
    // apps/v1
    res!("apps", "v1", "Deployment", "deployments", "deployment", true, short: ["deploy"], cat: ["all"],
         sub: [status("apps", "v1", "Deployment"), SCALE]),
    res!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, short: ["rs"], cat: ["all"],
         sub: [status("apps", "v1", "ReplicaSet"), SCALE]),
    res!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, short: ["sts"], cat: ["all"],
         sub: [status("apps", "v1", "StatefulSet"), SCALE]),
    res!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, short: ["ds"], cat: ["all"],
         sub: [status("apps", "v1", "DaemonSet")]),
    res!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true, short: [], cat: [], sub: []),
    // batch/v1
    res!("batch", "v1", "Job", "jobs", "job", true, short: [], cat: ["all"], sub: [status("batch", "v1", "Job")]),
    res!("batch", "v1", "CronJob", "cronjobs", "cronjob", true, short: ["cj"], cat: ["all"],
         sub: [status("batch", "v1", "CronJob")]),
    // autoscaling: v2 is preferred, v1 served from the same storage.
    res!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true,
         short: ["hpa"], cat: ["all"], sub: [status("autoscaling", "v2", "HorizontalPodAutoscaler")]),
    ResourceInfo {
        group: "autoscaling", version: "v1", kind: "HorizontalPodAutoscaler", plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler", namespaced: true, verbs: ALL_VERBS, short_names: &["hpa"],
        categories: &["all"], subresources: &[status("autoscaling", "v1", "HorizontalPodAutoscaler")],
        storage_group: "autoscaling", storage_plural: "horizontalpodautoscalers", storage_version: "v2", custom: false,
    },
    // apiextensions.k8s.io/v1
    res!("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
         "customresourcedefinition", false, short: ["crd", "crds"], cat: ["api-extensions"],
         sub: [status("apiextensions.k8s.io", "v1", "CustomResourceDefinition")]),
    // coordination.k8s.io/v1
    res!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, short: [], cat: [], sub: []),
    // discovery.k8s.io/v1
    res!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, short: [], cat: [], sub: []),
    // events.k8s.io/v1 shares storage with core/v1 events.
    ResourceInfo {
        group: "events.k8s.io", version: "v1", kind: "Event", plural: "events", singular: "event", namespaced: true,
        verbs: ALL_VERBS, short_names: &["ev"], categories: &[], subresources: &[],
        storage_group: "", storage_plural: "events", storage_version: "v1", custom: false,
    },
    // rbac.authorization.k8s.io/v1
    res!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, short: [], cat: [], sub: []),
    res!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true, short: [], cat: [], sub: []),
    res!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false, short: [], cat: [], sub: []),
    res!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false,
         short: [], cat: [], sub: []),
    // storage.k8s.io/v1
    res!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false, short: ["sc"], cat: [], sub: []),
    res!("storage.k8s.io", "v1", "CSIDriver", "csidrivers", "csidriver", false, short: [], cat: [], sub: []),
    // networking.k8s.io/v1
    res!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, short: ["netpol"],
         cat: [], sub: []),
    res!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, short: ["ing"], cat: [],
         sub: [status("networking.k8s.io", "v1", "Ingress")]),
    res!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false, short: [], cat: [], sub: []),
    // policy/v1
    res!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, short: ["pdb"],
         cat: [], sub: [status("policy", "v1", "PodDisruptionBudget")]),
    // scheduling.k8s.io/v1
    res!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false, short: ["pc"],
         cat: [], sub: []),
];

/// Finds a resource by group, version and plural name.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds a resource by group, version and kind.
pub fn find_by_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The served groups, each with its versions in preference order.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resources served at one group-version, in table order.
pub fn in_group_version<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

/// Splits an `apiVersion` into group and version (`apps/v1` → (`apps`, `v1`), `v1` → (``, `v1`)).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_unique_per_group_version() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "duplicate {}/{} {}",
                    a.group,
                    a.version,
                    a.plural
                );
            }
        }
    }

    #[test]
    fn keys_follow_the_registry_layout() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "web"), "/registry/core/pods/default/web");
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/core/nodes/n1");
        let ev = find("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(ev.key_prefix(), "/registry/core/events/");
        let hpa1 = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let hpa2 = find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert_eq!(hpa1.key_prefix(), hpa2.key_prefix());
    }

    #[test]
    fn groups_list_preferred_version_first() {
        let groups = groups();
        assert_eq!(groups[0].0, "");
        let autoscaling = groups.iter().find(|(g, _)| *g == "autoscaling").unwrap();
        assert_eq!(autoscaling.1, vec!["v2", "v1"]);
    }
}
