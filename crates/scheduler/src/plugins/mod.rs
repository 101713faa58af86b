//! The in-tree plugins, one file each, named as Kubernetes names them, and the default plugin order and
//! score weights of upstream's default profile.

pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_balanced_allocation;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;

/// The name of the post-filter plugin that preempts lower-priority pods.
pub const DEFAULT_PREEMPTION: &str = "DefaultPreemption";

/// Upstream's default plugins in filter order, with their default score weights (0: does not score).
pub const DEFAULT_PLUGINS: &[(&str, i64)] = &[
    (node_unschedulable::NAME, 0),
    (node_name::NAME, 0),
    (taint_toleration::NAME, 3),
    (node_affinity::NAME, 2),
    (node_ports::NAME, 0),
    (node_resources_fit::NAME, 1),
    (volume_binding::NAME, 0),
    (pod_topology_spread::NAME, 2),
    (inter_pod_affinity::NAME, 2),
    (node_resources_balanced_allocation::NAME, 1),
    (image_locality::NAME, 1),
];
