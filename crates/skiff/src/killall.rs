//! `skiff killall`: stops and removes every pod sandbox and container a node agent left under a data dir
//! (their shims, network namespaces, CNI state, mounts and cgroups) and deletes the pod bridge, like k3s's
//! `k3s-killall.sh`. Containers outlive agent restarts on purpose; this is how to get rid of them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use skiff_runtime::cri::RuntimeService;

/// Cleans up the node under `data_dir`; the agent (or server) using it must be stopped first.
pub async fn run(data_dir: &Path) -> anyhow::Result<()> {
    let agent = data_dir.join("agent");
    if !agent.exists() {
        println!("nothing to do: {} does not exist", agent.display());
        return Ok(());
    }
    // The runtime writes the conflist when it starts, before any sandbox exists: without one there is nothing
    // to remove, and no bridge of ours (deleting the default `cni0` here would hit someone else's).
    if !skiff_runtime::cni::NetworkConfig::new(&agent, "10.42.0.0/24")?.conflist_path().exists() {
        println!("nothing to do: no pod runtime ever started under {}", agent.display());
        return Ok(());
    }
    let cni = network_from_conflist(&agent)?;
    let bridge = cni.bridge.clone();
    let store = Arc::new(
        skiff_runtime::image::ImageStore::open(&agent.join("images"))
            .context("failed to open the image store (is the agent or server using this data dir still running? stop it first)")?,
    );
    let oci = skiff_runtime::oci::OciConfig::new(&agent, cni).context("failed to configure the container runtime")?;
    let runtime = skiff_runtime::oci::OciRuntime::new(oci, store).context("failed to open the container runtime")?;
    let sandboxes = runtime.list_pod_sandboxes().await.context("failed to list pod sandboxes")?;
    let mut failures = 0;
    for sandbox in &sandboxes {
        let name = format!("{}/{}", sandbox.namespace, sandbox.name);
        for container in runtime.list_containers(&skiff_runtime::cri::ContainerFilter { sandbox_id: Some(sandbox.id.clone()), ..Default::default() }).await.unwrap_or_default() {
            let _ = runtime.stop_container(&container.id, Duration::from_secs(0)).await;
        }
        let result = async {
            runtime.stop_pod_sandbox(&sandbox.id).await?;
            runtime.remove_pod_sandbox(&sandbox.id).await
        }
        .await;
        match result {
            Ok(()) => println!("removed pod {name}"),
            Err(e) => {
                failures += 1;
                eprintln!("failed to remove pod {name}: {e}");
            }
        }
    }
    let status = std::process::Command::new("ip").args(["link", "delete", &bridge]).stderr(std::process::Stdio::null()).status();
    if status.is_ok_and(|s| s.success()) {
        println!("deleted bridge {bridge}");
    }
    if failures > 0 {
        anyhow::bail!("{failures} pod(s) could not be removed");
    }
    Ok(())
}

/// The node's network as its agent last wrote it (`<agent>/cni/net.d/10-skiff.conflist`); the default
/// bridge and any CIDR when there is none (then there are no pods on a network either).
fn network_from_conflist(agent: &Path) -> anyhow::Result<skiff_runtime::cni::NetworkConfig> {
    let mut config = skiff_runtime::cni::NetworkConfig::new(agent, "10.42.0.0/24")?;
    let path = config.conflist_path();
    let Ok(text) = std::fs::read(&path) else { return Ok(config) };
    let json: serde_json::Value = serde_json::from_slice(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let bridge = &json["plugins"][0];
    if let Some(subnet) = bridge["ipam"]["ranges"][0][0]["subnet"].as_str() {
        config = skiff_runtime::cni::NetworkConfig::new(agent, subnet)?;
    }
    if let Some(name) = bridge["bridge"].as_str() {
        config.bridge = name.to_string();
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_agent_dir_without_a_runtime_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("agent").join("tls")).unwrap();
        run(dir.path()).await.unwrap();
        let conflist = skiff_runtime::cni::NetworkConfig::new(&dir.path().join("agent"), "10.42.0.0/24").unwrap().conflist_path();
        assert!(!conflist.exists(), "killall did not start a runtime (which would write a conflist naming cni0)");
        assert!(!dir.path().join("agent").join("images").exists());
    }
}
