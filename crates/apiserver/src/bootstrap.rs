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

/// Where the cluster DNS server answers, for the `kube-system/kube-dns` Service.
pub struct ClusterDns {
    /// The Service address pods use as their nameserver (10.43.0.10).
    pub service_ip: String,
    /// The address and port the DNS server in the server process listens on.
    pub endpoint_ip: String,
    pub port: u16,
}

/// Creates the `kube-system/kube-dns` Service (named as CoreDNS's, so that tools find it) and points its
/// Endpoints and EndpointSlice at the DNS server of this process. The Service has no selector: the server
/// owns its endpoints and rewrites them on every start, so a changed node address is picked up.
pub async fn ensure_cluster_dns(registry: &Registry, dns: &ClusterDns) -> Result<(), ApiError> {
    let services = find("", "v1", "services").expect("served");
    registry
        .ensure(services, Some("kube-system"), json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}},
            "spec": {"type": "ClusterIP", "clusterIP": dns.service_ip, "sessionAffinity": "None",
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": dns.port},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": dns.port}]}}))
        .await?;
    // Endpoints may not point at loopback addresses: a server on loopback serves DNS to the host only.
    if dns.endpoint_ip.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        tracing::info!(ip = %dns.endpoint_ip, "no endpoints for the kube-dns Service: the node IP is a loopback address");
        return Ok(());
    }
    let ports = json!([{"name": "dns", "port": dns.port, "protocol": "UDP"}, {"name": "dns-tcp", "port": dns.port, "protocol": "TCP"}]);
    let endpoints = find("", "v1", "endpoints").expect("served");
    let subsets = json!([{"addresses": [{"ip": dns.endpoint_ip}], "ports": ports}]);
    upsert(registry, endpoints, "kube-system", json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets}), &|o| { o["subsets"] = subsets.clone(); })
    .await?;
    let slices = find("discovery.k8s.io", "v1", "endpointslices").expect("served");
    let slice_endpoints = json!([{"addresses": [dns.endpoint_ip], "conditions": {"ready": true, "serving": true, "terminating": false}}]);
    upsert(registry, slices, "kube-system", json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"kubernetes.io/service-name": "kube-dns", "endpointslice.kubernetes.io/managed-by": "skiff-server"}},
        "addressType": "IPv4", "endpoints": slice_endpoints, "ports": ports}), &|o| {
        o["endpoints"] = slice_endpoints.clone();
        o["ports"] = ports.clone();
    })
    .await
}

/// Creates `obj`, or brings the existing one in line with `set`.
async fn upsert(registry: &Registry, r: &skiff_api::resources::ResourceInfo, namespace: &str, obj: serde_json::Value, set: &(dyn Fn(&mut serde_json::Value) + Sync)) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    registry.ensure(r, Some(namespace), obj).await?;
    registry
        .guaranteed_update(r, Some(namespace), &name, false, Default::default(), &|old| {
            let mut new = old.clone();
            set(&mut new);
            Ok(new)
        })
        .await
        .map(|_| ())
}

/// Creates the default StorageClass `local-path` (as k3s ships it): the built-in local-path provisioner
/// (`rancher.io/local-path`) makes a directory on the node of the claim's first pod, reclaim `Delete`,
/// bound only once a pod is scheduled (`WaitForFirstConsumer`). An existing class is left as it is, so an
/// administrator's edits (or removing the default annotation) survive restarts.
pub async fn ensure_default_storage_class(registry: &Registry) -> Result<(), ApiError> {
    let classes = find("storage.k8s.io", "v1", "storageclasses").expect("served");
    registry
        .ensure(classes, None, json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local-path",
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"}))
        .await
        .map(|_| ())
}
