//! The controller manager: the control loops that turn declared state into running pods and keep it there.
//!
//! One module per controller, named as Kubernetes names it. Every controller is a kube-runtime controller
//! (watcher, reflector, reconcile, error policy) over a `kube::Client`; none touches storage, so the same code
//! runs in the server process (over the in-process router) and against any Kubernetes API.

pub mod context;
pub mod controller_utils;
pub mod deployment;
pub mod garbage_collector;
pub mod replicaset;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod pod_util;
pub mod serviceaccount;
pub mod job;
pub mod cronjob;
pub mod daemonset;
pub mod controller_revision;
pub mod statefulset;
pub mod podgc;
pub mod namespace;
pub mod endpointslice;
pub mod endpoints;
pub mod servicelb;
pub mod volume;
pub mod disruption;
