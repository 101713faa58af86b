//! The objects every cluster has from its first start: the four system namespaces, the two system
//! PriorityClasses, and the `kubernetes` Service (with its Endpoints and EndpointSlice) that points at the
//! API server.

use serde_json::json;
use skiff_api::resources::find;
use skiff_api::ApiError;
use skiff_registry::Registry;

/// Where the API server is reached, for the `kubernetes` Service.
pub struct Bootstrap {
    /// The Service address, the first of the service range (10.43.0.1).
    pub service_ip: String,
    /// The address of this server as pods reach it.
    pub endpoint_ip: String,
    pub port: u16,
}

/// Creates what is missing; existing objects are left as they are.
pub async fn ensure_builtin_objects(registry: &Registry, b: &Bootstrap) -> Result<(), ApiError> {
    let namespaces = find("", "v1", "namespaces").expect("served");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        registry
            .ensure(namespaces, None, json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}}))
            .await?;
    }
    let classes = find("scheduling.k8s.io", "v1", "priorityclasses").expect("served");
    for (name, value, description) in skiff_registry::priority::SYSTEM_PRIORITY_CLASSES {
        registry
            .ensure(classes, None, json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value, "description": description}))
            .await?;
    }
    let services = find("", "v1", "services").expect("served");
    registry
        .ensure(services, Some("default"), json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": b.service_ip, "sessionAffinity": "None",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": b.port}]}}))
        .await?;
    // Endpoints may not point at loopback addresses; a server reachable only on loopback has none.
    if b.endpoint_ip.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        tracing::info!(ip = %b.endpoint_ip, "no endpoints for the kubernetes Service: the node IP is a loopback address");
        return Ok(());
    }
    let endpoints = find("", "v1", "endpoints").expect("served");
    registry
        .ensure(endpoints, Some("default"), json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": b.endpoint_ip}],
                         "ports": [{"name": "https", "port": b.port, "protocol": "TCP"}]}]}))
        .await?;
    let slices = find("discovery.k8s.io", "v1", "endpointslices").expect("served");
    registry
        .ensure(slices, Some("default"), json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes",
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [b.endpoint_ip], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": b.port, "protocol": "TCP"}]}))
        .await?;
    Ok(())
}
