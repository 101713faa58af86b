//! skiff-pki: the cluster certificate authority, serving and client certificates, and kubeconfigs.
//!
//! `skiff server` calls [`Ca::load_or_create`] on the data dir's TLS directory at every start, then
//! [`Ca::issue_serving`] for the API server (SANs from [`apiserver_sans`]) and [`Ca::issue_client`] for
//! the admin ([`ADMIN_USER`] in [`ADMIN_GROUP`]), and writes the admin kubeconfig with
//! [`write_kubeconfig`]. Issuing is idempotent: a still-valid matching certificate is kept.
//! The API server and the kubelet serve with [`server_tls_config`] and map a peer certificate to a user
//! with [`identity_from_der`].
//! All keys are ECDSA P-256; all crypto is ring (no aws-lc-rs).

mod ca;
mod error;
mod files;
mod identity;
mod kubeconfig;
mod subject;
mod tls;

use std::net::IpAddr;

pub use ca::{CA_FILE_STEM, Ca};
pub use error::PkiError;
pub use files::{CertPaths, read_cert_chain, read_pem};
pub use identity::identity_from_der;
pub use kubeconfig::write_kubeconfig;
pub use tls::server_tls_config;

/// The admin user of the generated kubeconfig (as in k3s).
pub const ADMIN_USER: &str = "system:admin";
/// The group that Kubernetes' default RBAC binds to cluster-admin.
pub const ADMIN_GROUP: &str = "system:masters";

/// The SANs of the API server's serving certificate: the `kubernetes` service names down to
/// `kubernetes.default.svc.<cluster_domain>`, `localhost`, `hostname`, `127.0.0.1`, `::1`, every node IP
/// and the first service IP (`10.43.0.1` by default). Duplicates are dropped, order is kept.
pub fn apiserver_sans(
    cluster_domain: &str,
    hostname: &str,
    node_ips: &[IpAddr],
    service_ip: IpAddr,
) -> Vec<String> {
    let mut all = vec![
        "kubernetes".to_owned(),
        "kubernetes.default".to_owned(),
        "kubernetes.default.svc".to_owned(),
        format!(
            "kubernetes.default.svc.{}",
            cluster_domain.trim_end_matches('.')
        ),
        "localhost".to_owned(),
        hostname.to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    all.extend(node_ips.iter().map(IpAddr::to_string));
    all.push(service_ip.to_string());
    let mut out: Vec<String> = Vec::with_capacity(all.len());
    for san in all {
        if !san.is_empty() && !out.contains(&san) {
            out.push(san);
        }
    }
    out
}

#[cfg(test)]
mod tests;
