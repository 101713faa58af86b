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
