//! `skiff agent`: joins a server with its token and runs the node role against it over HTTPS.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

/// Flags of `skiff agent` (k3s's names).
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The server to join, `https://HOST:6443`.
    #[arg(long, env = "SKIFF_URL")]
    pub server: String,
    /// The server's join token (`skiff token` on the server prints it).
    #[arg(long, env = "SKIFF_TOKEN")]
    pub token: String,
    /// Folder for everything this agent writes.
    #[arg(long, short = 'd', default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Cluster DNS address written into pods' resolv.conf (default: the server's).
    #[arg(long)]
    pub cluster_dns: Option<IpAddr>,
    /// Cluster DNS domain (default: the server's).
    #[arg(long)]
    pub cluster_domain: Option<String>,
    #[command(flatten)]
    pub node: crate::node::NodeArgs,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let token = crate::join::Token::parse(&args.token)?;
    let node_name = args.node.node_name.clone().unwrap_or_else(crate::node::hostname);
    let node_ip = args.node.node_ip.unwrap_or_else(crate::node::default_ip);
    let mut addresses = vec![node_ip.to_string()];
    let host = crate::node::hostname();
    if host != node_name {
        addresses.push(host);
    }
    let creds = crate::join::obtain_credentials(&args.server, &token, &args.data_dir, &node_name, &addresses).await?;
    tracing::info!(server = %args.server, node = %node_name, "joined");

    let kubeconfig = args.data_dir.join("agent").join("kubelet.kubeconfig");
    let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| format!("failed to read {}", p.display()));
    skiff_pki::write_kubeconfig(&kubeconfig, &args.server, &read(&creds.ca)?, &read(&creds.client_cert)?, &read(&creds.client_key)?)?;
    let config = kube::Config::from_custom_kubeconfig(kube::config::Kubeconfig::read_from(&kubeconfig)?, &kube::config::KubeConfigOptions::default())
        .await
        .context("failed to load the agent's kubeconfig")?;
    let client = kube::Client::try_from(config).context("failed to build the API client")?;

    let Some(cluster) = creds.cluster.clone() else {
        anyhow::bail!("the server at {} did not send the cluster's network settings (is it an older skiff?)", args.server);
    };
    let cluster_dns = match args.cluster_dns {
        Some(ip) => ip,
        None => cluster.cluster_dns.parse().with_context(|| format!("the server's cluster DNS address {:?} is not an IP", cluster.cluster_dns))?,
    };
    let settings = crate::node::NodeSettings {
        data_dir: args.data_dir.clone(),
        node_name,
        node_ip,
        cluster_dns,
        cluster_domain: args.cluster_domain.clone().unwrap_or_else(|| cluster.cluster_domain.clone()),
        cluster_cidr: cluster.cluster_cidr.parse().map_err(|e: String| anyhow::anyhow!("the server's cluster CIDR: {e}"))?,
        kube_proxy: !args.node.disable_kube_proxy,
        nft_table: args.node.nft_table.clone(),
        labels: crate::node::parse_labels(&args.node.node_labels)?,
        taints: crate::node::parse_taints(&args.node.node_taints)?,
        kubelet_port: args.node.kubelet_port,
        registries: args.node.private_registry.clone(),
        pod_bridge: args.node.pod_bridge.clone(),
        serving_cert: creds.serving_cert,
        serving_key: creds.serving_key,
        client_ca: creds.ca,
    };
    let shutdown = CancellationToken::new();
    let mut node = tokio::spawn(crate::node::run(settings, client, shutdown.clone()));
    tokio::select! {
        _ = crate::server::wait_for_signal() => {
            tracing::info!("shutting down; containers keep running");
            shutdown.cancel();
            node.await.context("the node task panicked")?
        }
        result = &mut node => result.context("the node task panicked")?,
    }
}
