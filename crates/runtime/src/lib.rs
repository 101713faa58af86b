//! The node's container runtime, below the kubelet: the image store (import and unpack of OCI and docker
//! archives), OCI bundles built from a container's spec, and the pod network through CNI plugins.
//!
//! Work in progress for the node agent issue: these are the runtime's building blocks; the CRI-shaped
//! trait, the shim and the runc driver come next.

pub mod bundle;
pub mod cgroups;
pub mod cni;
pub mod cri;
pub mod fake;
pub mod image;
pub mod logs;
pub mod netns;
pub mod oci;
pub mod shim;
pub mod testing;
