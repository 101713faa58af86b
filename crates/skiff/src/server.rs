//! `skiff server`: creates the cluster PKI on first start, opens the store, writes the admin
//! kubeconfig, creates the built-in objects and serves the API over HTTPS until SIGINT or SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::TryFutureExt;
use clap::Args;
use skiff_registry::{Encryptor, Ipv4Cidr, Registry, RegistryConfig};
use skiff_store::Backend;
use tokio_util::sync::CancellationToken;

/// Flags of `skiff server`, named as k3s names them.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Folder for everything this server writes.
    #[arg(long, short = 'd', default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    pub data_dir: PathBuf,
    /// HTTPS port of the API.
    #[arg(long, default_value_t = 6443)]
    pub https_listen_port: u16,
    /// Address the API listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    #[command(flatten)]
    pub node: crate::node::NodeArgs,
    /// Pod network range.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// Service address range.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// Cluster DNS address.
    #[arg(long, default_value = "10.43.0.10")]
    pub cluster_dns: IpAddr,
    /// Cluster DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Size of each node's share of the cluster CIDR (its podCIDR).
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// How long a node may stay silent before it is marked Unknown and tainted unreachable.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// Scheduler profiles, a KubeSchedulerConfiguration-style YAML file.
    #[arg(long, conflicts_with = "scheduler_strategy")]
    pub scheduler_config: Option<PathBuf>,
    /// Placement shortcut: `spread` (LeastAllocated, Kubernetes' default) or `binpack` (MostAllocated).
    #[arg(long, value_parser = ["spread", "binpack"])]
    pub scheduler_strategy: Option<String>,
    /// NodePort range.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// Built-in parts not to run (k3s's names): `coredns` (the cluster DNS) and `servicelb` (LoadBalancer
    /// Services on node addresses). Repeatable or comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = ["coredns", "servicelb"])]
    pub disable: Vec<String>,
    /// The resolv.conf whose nameservers the cluster DNS forwards other names to (default /etc/resolv.conf).
    #[arg(long)]
    pub resolv_conf: Option<PathBuf>,
    /// Port the cluster DNS listens on at the node IP; the `kube-dns` Service maps port 53 to it.
    #[arg(long, default_value_t = 53, hide = true)]
    pub cluster_dns_port: u16,
    /// Do not run a node agent on this server.
    #[arg(long)]
    pub disable_agent: bool,
    /// Use etcd at this endpoint (`http://host:2379`, comma-separated for several) instead of the embedded store.
    #[arg(long)]
    pub datastore_endpoint: Option<String>,
    /// Also write the admin kubeconfig here.
    #[arg(long, short = 'o')]
    pub write_kubeconfig: Option<PathBuf>,
    /// Shared secret nodes join with; the full token (`K10<CA hash>::server:<secret>`) is written to
    /// `<data-dir>/token` and printed by `skiff token`. Default: a random secret made on first start.
    #[arg(long, env = "SKIFF_TOKEN")]
    pub token: Option<String>,
    /// Extra names or addresses for the serving certificate.
    #[arg(long)]
    pub tls_san: Vec<String>,
}

/// A duration such as `40s`, `5m`, `1h30m` or `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let span: jiff::Span = s.parse().map_err(|e| format!("{s:?} is not a duration such as 40s or 5m: {e}"))?;
    let d = jiff::SignedDuration::try_from(span).map_err(|e| format!("{s:?}: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("{s:?} must not be negative"))
}

fn parse_port_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = s.split_once('-').with_context(|| format!("--service-node-port-range {s:?} must look like 30000-32767"))?;
    let (a, b): (u16, u16) = (a.parse()?, b.parse()?);
    if a > b {
        bail!("--service-node-port-range {s:?}: the first port must not be above the last");
    }
    Ok((a, b))
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    if args.datastore_endpoint.as_deref().is_some_and(|e| !e.starts_with("http://") && !e.starts_with("https://")) {
        bail!("--datastore-endpoint must be an etcd URL such as http://127.0.0.1:2379");
    }
    let service_cidr: Ipv4Cidr = args.service_cidr.parse().map_err(|e: String| anyhow::anyhow!("--service-cidr: {e}"))?;
    let node_port_range = parse_port_range(&args.service_node_port_range)?;
    let node_ip = args.node.node_ip.unwrap_or_else(crate::node::default_ip);
    let node_name = args.node.node_name.clone().unwrap_or_else(crate::node::hostname);
    let data = &args.data_dir;
    let tls_dir = data.join("server").join("tls");
    std::fs::create_dir_all(&tls_dir).with_context(|| format!("failed to create {}", tls_dir.display()))?;

    // PKI: the CA, the serving certificate and the admin's client certificate.
    let ca = skiff_pki::Ca::load_or_create(&tls_dir)?;
    let service_ip = service_cidr.nth(1);
    let mut ips = vec![node_ip];
    if !args.bind_address.is_unspecified() {
        ips.push(args.bind_address);
    }
    let mut sans = skiff_pki::apiserver_sans(&args.cluster_domain, &crate::node::hostname(), &ips, IpAddr::V4(service_ip));
    sans.extend(args.tls_san.iter().cloned());
    if !sans.contains(&node_name) {
        sans.push(node_name.clone());
    }
    let serving = ca.issue_serving(&tls_dir, "serving-kube-apiserver", &sans)?;
    let admin = ca.issue_client(&tls_dir, "client-admin", skiff_pki::ADMIN_USER, &[skiff_pki::ADMIN_GROUP.to_string()])?;
    let server_url = format!("https://127.0.0.1:{}", args.https_listen_port);
    let kubeconfig = data.join("kubeconfig.yaml");
    for path in std::iter::once(&kubeconfig).chain(args.write_kubeconfig.iter()) {
        skiff_pki::write_kubeconfig(path, &server_url, ca.cert_pem(), &admin.read_cert_pem()?, &admin.read_key_pem()?)?;
    }

    let ca = Arc::new(ca);
    let token = crate::join::load_or_create_token(data, ca.cert_pem(), args.token.as_deref())?;
    let mut join = crate::join::JoinService::new(ca.clone(), token, data);
    join.cluster = Some(crate::join::ClusterNetwork {
        cluster_cidr: args.cluster_cidr.clone(),
        service_cidr: args.service_cidr.clone(),
        cluster_dns: args.cluster_dns.to_string(),
        cluster_domain: args.cluster_domain.clone(),
    });
    let join = Arc::new(join);

    // The store.
    let backend: Arc<dyn Backend> = match &args.datastore_endpoint {
        Some(endpoints) => {
            let eps: Vec<String> = endpoints.split(',').map(str::to_string).collect();
            Arc::new(skiff_store::etcd::EtcdBackend::connect(&eps).await.with_context(|| format!("failed to connect to etcd at {endpoints}"))?)
        }
        None => {
            let dir = data.join("db");
            std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
            Arc::new(skiff_store::embedded::EmbeddedBackend::open(&dir.join("state.redb")).context("failed to open the embedded store")?)
        }
    };
    let encryptor = Encryptor::load_or_create(&data.join("server").join("cred").join("encryption-keys.json"))?;
    let registry = Arc::new(Registry::new(backend.clone(), Some(encryptor), RegistryConfig { service_cidr, node_port_range }));

    let shutdown = CancellationToken::new();
    let schemas = Arc::new(skiff_api::openapi::Schemas::load());
    let protobuf = Arc::new(skiff_api::protobuf::ProtobufDecoder::load()?);
    // The API server's identity towards kubelets (for logs, exec, attach, port-forward).
    let kubelet_client = ca.issue_client(&tls_dir, "client-kube-apiserver-kubelet", "kube-apiserver-kubelet-client", &[skiff_pki::ADMIN_GROUP.to_string()])?;
    let config = skiff_apiserver::Config {
        advertise_address: format!("{node_ip}:{}", args.https_listen_port),
        kubelet_client: Some(skiff_apiserver::KubeletClientConfig {
            ca_pem: ca.cert_pem().to_string(),
            cert_pem: kubelet_client.read_cert_pem()?,
            key_pem: kubelet_client.read_key_pem()?,
        }),
        ..Default::default()
    };
    let api = skiff_apiserver::ApiServer::new(config, registry.clone(), schemas, protobuf, shutdown.clone());
    skiff_apiserver::bootstrap::ensure_builtin_objects(
        &registry,
        &skiff_apiserver::bootstrap::Bootstrap { service_ip: service_ip.to_string(), endpoint_ip: node_ip.to_string(), port: args.https_listen_port },
    )
    .await?;
    skiff_apiserver::bootstrap::ensure_default_storage_class(&registry).await?;

    let tls = skiff_apiserver::tls::server_config(&serving.cert, &serving.key, &ca.paths().cert)?;
    let addr = SocketAddr::new(args.bind_address, args.https_listen_port);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("failed to listen on {addr}"))?;
    tracing::info!(%addr, kubeconfig = %kubeconfig.display(), node = %node_name, elapsed_ms = started.elapsed().as_millis() as u64, "skiff server is serving");

    let compactor = tokio::spawn(compact_history(backend.clone(), shutdown.clone()));
    let trimmer = tokio::spawn(release_memory_periodically(shutdown.clone()));
    let api_router = skiff_apiserver::router(api);
    let controllers = crate::components::ControllerManagerConfig {
        cluster_cidr: args.cluster_cidr.parse().map_err(|e: String| anyhow::anyhow!("--cluster-cidr: {e}"))?,
        node_cidr_mask: args.node_cidr_mask_size,
        node_monitor_grace_period: args.node_monitor_grace_period,
        identity: node_name.clone(),
        servicelb: !args.disable.iter().any(|d| d == "servicelb"),
        storage_dir: args.data_dir.join("storage"),
    };
    let mut scheduler = match (&args.scheduler_config, args.scheduler_strategy.as_deref()) {
        (Some(path), _) => skiff_scheduler::config::SchedulerConfig::from_file(path).with_context(|| format!("--scheduler-config {}", path.display()))?,
        (None, Some("binpack")) => skiff_scheduler::config::SchedulerConfig::binpack(),
        (None, _) => skiff_scheduler::config::SchedulerConfig::spread(),
    };
    // As for the controller manager: a stable identity lets a restarted server take its lease back at once.
    scheduler.leader_election.identity.get_or_insert_with(|| node_name.clone());
    let mut components = crate::components::start_controllers(&api_router, &controllers, &shutdown);
    if args.disable.iter().any(|d| d == "coredns") {
        tracing::info!("--disable coredns: no cluster DNS");
    } else {
        let dns = cluster_dns_config(&args, node_ip)?;
        skiff_apiserver::bootstrap::ensure_cluster_dns(
            &registry,
            &skiff_apiserver::bootstrap::ClusterDns { service_ip: args.cluster_dns.to_string(), endpoint_ip: node_ip.to_string(), port: args.cluster_dns_port },
        )
        .await?;
        let client = crate::components::in_process_client(&api_router, "system:serviceaccount:kube-system:coredns", &["system:serviceaccounts"]);
        components.push(crate::components::spawn("dns", skiff_dns::run(dns, client, shutdown.clone())));
    }
    let scheduler_client = crate::components::in_process_client(&api_router, "system:kube-scheduler", &[]);
    components.push(crate::components::spawn("scheduler", skiff_scheduler::run(scheduler, scheduler_client, shutdown.clone())));
    if args.disable_agent {
        tracing::info!("--disable-agent: no node agent on this server");
    } else {
        let settings = local_node_settings(&args, &ca, &node_name, node_ip)?;
        let client = crate::components::in_process_client(&api_router, &format!("system:node:{node_name}"), &["system:nodes"]);
        components.push(crate::components::spawn("node", crate::node::run(settings, client, shutdown.clone()).map_err(|e| format!("{e:#}"))));
    }
    let router = join.routes().merge(api_router);
    let serving_task = tokio::spawn(skiff_apiserver::tls::serve(listener, tls, router, shutdown.clone()));

    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let _ = serving_task.await;
    for task in components.drain(..) {
        let _ = task.await;
    }
    let _ = compactor.await;
    let _ = trimmer.await;
    tracing::info!("stopped");
    Ok(())
}

/// The cluster DNS: on the node IP (where the `kube-dns` Service's endpoint points), forwarding to the
/// nameservers of `--resolv-conf`.
fn cluster_dns_config(args: &ServerArgs, node_ip: IpAddr) -> anyhow::Result<skiff_dns::config::DnsConfig> {
    let service_cidr: Ipv4Cidr = args.service_cidr.parse().map_err(|e: String| anyhow::anyhow!("--service-cidr: {e}"))?;
    match args.cluster_dns {
        IpAddr::V4(ip) if service_cidr.assignable(ip) => {}
        ip => bail!("--cluster-dns {ip} must be an address inside --service-cidr {service_cidr}"),
    }
    let mut dns = skiff_dns::config::DnsConfig { cluster_domain: args.cluster_domain.clone(), ..Default::default() };
    dns.listen = vec![SocketAddr::new(node_ip, args.cluster_dns_port)];
    if let Some(path) = &args.resolv_conf {
        let text = std::fs::read_to_string(path).with_context(|| format!("--resolv-conf: failed to read {}", path.display()))?;
        dns.upstreams = skiff_dns::config::parse_resolv_conf(&text);
        if dns.upstreams.is_empty() {
            bail!("--resolv-conf {} has no nameserver line", path.display());
        }
    }
    if node_ip.is_loopback() {
        tracing::warn!(%node_ip, "the node IP is a loopback address: pods on other nodes cannot reach the cluster DNS");
    }
    Ok(dns)
}

/// The local agent's settings: it shares the server's data dir and gets its kubelet serving certificate
/// straight from the CA.
fn local_node_settings(args: &ServerArgs, ca: &skiff_pki::Ca, node_name: &str, node_ip: IpAddr) -> anyhow::Result<crate::node::NodeSettings> {
    let tls_dir = args.data_dir.join("agent").join("tls");
    let mut sans = vec![node_name.to_string(), node_ip.to_string(), "127.0.0.1".to_string()];
    let host = crate::node::hostname();
    if !sans.contains(&host) {
        sans.push(host);
    }
    let serving = ca.issue_serving(&tls_dir, "serving-kubelet", &sans)?;
    Ok(crate::node::NodeSettings {
        data_dir: args.data_dir.clone(),
        node_name: node_name.to_string(),
        node_ip,
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain.clone(),
        labels: crate::node::parse_labels(&args.node.node_labels)?,
        taints: crate::node::parse_taints(&args.node.node_taints)?,
        kubelet_port: args.node.kubelet_port,
        registries: args.node.private_registry.clone(),
        pod_bridge: args.node.pod_bridge.clone(),
        cluster_cidr: args.cluster_cidr.parse().map_err(|e: String| anyhow::anyhow!("--cluster-cidr: {e}"))?,
        kube_proxy: !args.node.disable_kube_proxy,
        nft_table: args.node.nft_table.clone(),
        serving_cert: serving.cert,
        serving_key: serving.key,
        client_ca: ca.paths().cert.clone(),
    })
}

/// Keeps about five minutes of history, as kube-apiserver's compaction interval does.
async fn compact_history(backend: Arc<dyn Backend>, shutdown: CancellationToken) {
    let mut previous = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(300)) => {}
        }
        if let Some(rev) = previous
            && let Err(e) = backend.compact(rev).await
        {
            tracing::warn!(error = %e, revision = rev, "failed to compact the store history");
        }
        previous = backend.current_revision().await.ok();
    }
}

/// Gives memory freed by large requests back to the OS every half minute (like Go's scavenger).
async fn release_memory_periodically(shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        tokio::task::spawn_blocking(skiff_apiserver::release_free_memory);
    }
}

pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handlers install");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
