//! Test helpers: throwaway network namespaces (deleted in Drop, also on panic), a node namespace with a pod
//! bridge and backend namespaces, busybox TCP servers and clients.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

/// Runs a command and panics with its output when it fails (test setup only).
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks what these tests need; fails with the reason instead of skipping.
pub fn require_root_and_tools() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc_geteuid() };
    assert_eq!(euid, 0, "these tests create network namespaces and need root");
    for tool in ["ip", "nft", "busybox"] {
        let ok = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map(|o| o.status.success());
        assert!(ok.unwrap_or(false), "{tool} is not installed (needed: iproute2, nftables, busybox-static)");
    }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// A network namespace `skiffproxy-<random>-<role>`, deleted on drop with every process still in it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Netns {
        let name = format!("skiffproxy-{:08x}-{role}", rand::random::<u32>());
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// `ip netns exec <ns> nft`, the proxy's command for this namespace.
    pub fn nft_command(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name, "nft"].iter().map(|s| s.to_string()).collect()
    }

    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs a command in the namespace and returns (success, stdout, stderr).
    pub fn try_exec(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("ip").args(["netns", "exec", &self.name]).args(args).output().expect("run ip netns exec");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").arg(pid).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A busybox TCP server in a namespace answering every connection with `reply` and a newline.
pub struct Server {
    child: Child,
}

impl Server {
    pub fn start(ns: &Netns, port: u16, reply: &str) -> Server {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "busybox", "nc", "-ll", "-p", &port.to_string(), "-e", "echo", reply])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start busybox nc");
        Server { child }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node namespace with a bridge `cni0` (10.250.0.1/24) and `n` backend namespaces at 10.250.0.11, .12, ...
pub struct Topology {
    pub node: Netns,
    pub backends: Vec<Netns>,
}

impl Topology {
    pub fn new(n: usize) -> Topology {
        let node = Netns::new("node");
        node.exec(&["ip", "link", "add", "cni0", "type", "bridge"]);
        node.exec(&["ip", "addr", "add", "10.250.0.1/24", "dev", "cni0"]);
        node.exec(&["ip", "link", "set", "cni0", "up"]);
        // The CNI bridge plugin (isGateway) turns forwarding on; pods reach Services through the node.
        node.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        // Traffic the node sends to a Service VIP needs a route before NAT runs.
        node.exec(&["ip", "route", "add", "default", "dev", "cni0"]);
        let mut backends = Vec::new();
        for i in 0..n {
            let b = Netns::new(&format!("b{i}"));
            let host_if = format!("veth{i}");
            sh(&["ip", "link", "add", &host_if, "netns", &node.name, "type", "veth", "peer", "name", "eth0", "netns", &b.name]);
            node.exec(&["ip", "link", "set", &host_if, "master", "cni0", "up"]);
            // As the CNI bridge plugin's hairpinMode: a pod reaching itself through a VIP goes back out its port.
            node.exec(&["bridge", "link", "set", "dev", &host_if, "hairpin", "on"]);
            let addr = format!("{}/24", backend_ip(i));
            b.exec(&["ip", "addr", "add", &addr, "dev", "eth0"]);
            b.exec(&["ip", "link", "set", "eth0", "up"]);
            b.exec(&["ip", "route", "add", "default", "via", "10.250.0.1"]);
            backends.push(b);
        }
        Topology { node, backends }
    }
}

pub fn backend_ip(i: usize) -> String {
    format!("10.250.0.{}", 11 + i)
}

/// Connects from the node namespace with busybox nc: Ok(reply) or Err(stderr).
pub fn connect(ns: &Netns, ip: &str, port: u16) -> Result<String, String> {
    let (ok, out, err) = ns.try_exec(&["busybox", "nc", "-w", "3", ip, &port.to_string()]);
    let out = out.trim().to_string();
    if ok && !out.is_empty() { Ok(out) } else { Err(format!("{err}{out}")) }
}
