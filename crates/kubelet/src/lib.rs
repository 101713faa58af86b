//! The node agent (kubelet): registers the node and keeps its lease, runs each bound pod through the
//! runtime trait (sandbox, init containers, containers, probes, restarts, termination), sets up its volumes,
//! reports its status, and serves the kubelet API (logs, exec, attach, port-forward, stats).
//!
//! It knows only `skiff_runtime::cri`'s traits, never runc; it reaches the cluster only through a
//! `kube::Client`.

pub mod container_config;
pub mod env;
pub mod server;
pub mod volumes;

pub mod backoff;
pub mod config;
pub mod images;
pub mod kuberuntime;
pub mod lease;
pub mod lifecycle;
pub mod node_status;
pub mod pod_workers;
pub mod probes;
pub mod run;
pub mod status;

pub use config::KubeletConfig;
pub use run::{run, Deps, Error};
