//! A multi-node cluster on one machine: a control-plane-only `skiff server` on a Linux bridge of its own, and
//! nodes that are network namespaces on that bridge, each with its own address, its own `skiff agent`, its
//! own pod bridge, nftables table and routes. A test can cut a node off (its link down) or stop its agent.
//! Dropping the lab stops the agents, removes their pods, and deletes the namespaces and the bridge.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Agent, Server, eventually, free_port, network_flags};

pub struct Lab {
    pub server: Server,
    /// The lab's bridge in the host's network namespace (`skl<port>`), holding `<prefix>.1`.
    pub bridge: String,
    /// The first three bytes of the lab network, `10.251.N`.
    pub prefix: String,
    pub nodes: Vec<LabNode>,
}

pub struct LabNode {
    pub name: String,
    pub netns: String,
    pub ip: String,
    /// The host side of the node's link to the lab bridge.
    pub veth: String,
    pub agent: Option<Agent>,
}

impl Lab {
    /// A server and `nodes` agents, each node Ready before this returns. `server_extra` is added to the
    /// server's flags.
    pub fn start(nodes: usize, server_extra: &[&str]) -> Lab {
        super::require_node_environment();
        let port = free_port();
        let bridge = format!("skl{port}");
        let prefix = format!("10.251.{}", port % 250 + 1);
        let mut lab_cleanup = Cleanup { bridge: bridge.clone(), netns: Vec::new() };
        run(&["ip", "link", "add", &bridge, "type", "bridge"]);
        run(&["ip", "addr", "add", &format!("{prefix}.1/24"), "dev", &bridge]);
        run(&["ip", "link", "set", &bridge, "up"]);

        let mut base: Vec<String> = ["--disable-agent", "--bind-address", "0.0.0.0", "--node-ip", &format!("{prefix}.1")].iter().map(|s| s.to_string()).collect();
        base.extend(network_flags(port));
        base.extend(server_extra.iter().map(|s| s.to_string()));
        let server = Server::start_on(port, base);
        let token = server.token();
        let url = format!("https://{prefix}.1:{port}");

        let mut lab_nodes = Vec::new();
        for i in 0..nodes {
            let netns = format!("{bridge}n{i}");
            let veth = format!("{bridge}v{i}");
            let peer = format!("{bridge}p{i}");
            let ip = format!("{prefix}.{}", 10 + i);
            run(&["ip", "netns", "add", &netns]);
            lab_cleanup.netns.push(netns.clone());
            run(&["ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer]);
            run(&["ip", "link", "set", &peer, "netns", &netns]);
            run(&["ip", "-n", &netns, "link", "set", &peer, "name", "eth0"]);
            run(&["ip", "-n", &netns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            run(&["ip", "-n", &netns, "link", "set", "eth0", "up"]);
            run(&["ip", "-n", &netns, "link", "set", "lo", "up"]);
            run(&["ip", "-n", &netns, "route", "add", "default", "via", &format!("{prefix}.1")]);
            run(&["ip", "link", "set", &veth, "master", &bridge, "up"]);
            let name = format!("lab-{port}-{i}");
            let args: Vec<String> = vec!["--node-ip".into(), ip.clone()];
            let agent = Agent::start_as(&url, &token, &name, Some(&netns), &args);
            lab_nodes.push(LabNode { name, netns, ip, veth, agent: Some(agent) });
        }
        let lab = Lab { server, bridge, prefix, nodes: lab_nodes };
        std::mem::forget(lab_cleanup);
        for node in &lab.nodes {
            eventually(&format!("node {} Ready", node.name), Duration::from_secs(90), || {
                let out = lab.server.kubectl(&["get", "node", &node.name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
                (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
            });
        }
        lab
    }

    /// The server's address on the lab network.
    pub fn server_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// Runs `args` inside node `i`'s network namespace; returns (success, stdout + stderr).
    pub fn in_node(&self, i: usize, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip").args(["netns", "exec", &self.nodes[i].netns]).args(args).output().expect("ip netns exec runs");
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    /// Cuts node `i` off the lab network (its link to the bridge goes down); [`Lab::reconnect`] undoes it.
    pub fn cut_off(&self, i: usize) {
        run(&["ip", "link", "set", &self.nodes[i].veth, "down"]);
    }

    pub fn reconnect(&self, i: usize) {
        run(&["ip", "link", "set", &self.nodes[i].veth, "up"]);
    }

    /// Stops node `i`'s agent (SIGKILL); its pods keep running until the lab is dropped.
    pub fn stop_agent(&mut self, i: usize) {
        if let Some(agent) = self.nodes[i].agent.as_mut() {
            agent.kill9();
        }
    }

    /// The log of node `i`'s agent.
    pub fn agent_log(&self, i: usize) -> String {
        self.nodes[i].agent.as_ref().map(Agent::log_text).unwrap_or_default()
    }

    /// Every agent's log and the server's, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = format!("--- server\n{}", tail(&self.server.log_text()));
        for (i, n) in self.nodes.iter().enumerate() {
            out.push_str(&format!("\n--- {}\n{}", n.name, tail(&self.agent_log(i))));
        }
        out
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Agents first (their guards kill them and remove their pods), then their namespaces and the bridge.
        for node in &mut self.nodes {
            drop(node.agent.take());
        }
        let cleanup = Cleanup { bridge: self.bridge.clone(), netns: self.nodes.iter().map(|n| n.netns.clone()).collect() };
        drop(cleanup);
    }
}

/// Deletes the lab's namespaces and bridge (also when the lab fails half-built).
struct Cleanup {
    bridge: String,
    netns: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "delete", ns]).stderr(Stdio::null()).status();
        }
        let _ = Command::new("ip").args(["link", "delete", &self.bridge]).stderr(Stdio::null()).status();
    }
}

#[track_caller]
fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?} failed to start: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}
