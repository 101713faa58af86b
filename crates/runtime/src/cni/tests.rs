//! Tests of the CNI driver against fake plugins (shell scripts that record their environment and stdin and
//! print canned results), plus an opt-in end-to-end test with Debian's real plugins (`SKIFF_CNI_E2E=1`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

const BRIDGE_RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:01"},{"name":"veth1","mac":"aa:bb:cc:dd:ee:02"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:03","sandbox":"/run/netns/x"}],"ips":[{"address":"10.42.0.5/24","gateway":"10.42.0.1","interface":2}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;
const PORTMAP_RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:01"},{"name":"veth1","mac":"aa:bb:cc:dd:ee:02"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:03","sandbox":"/run/netns/x"}],"ips":[{"address":"10.42.0.5/24","gateway":"10.42.0.1","interface":2}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.43.0.10"]}}"#;
const LO_RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"lo","sandbox":"/run/netns/x"}],"ips":[{"address":"127.0.0.1/8","interface":0}]}"#;

/// A temp dir with fake plugins, a log dir they record into, and a "netns" file that exists.
struct Fixture {
    _tmp: tempfile::TempDir,
    plugins: PathBuf,
    log: PathBuf,
    data: PathBuf,
    netns: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let f = Self {
            plugins: root.join("plugins"),
            log: root.join("log"),
            data: root.join("data"),
            netns: root.join("netns"),
            _tmp: tmp,
        };
        std::fs::create_dir_all(&f.plugins).unwrap();
        std::fs::create_dir_all(&f.log).unwrap();
        std::fs::write(&f.netns, "").unwrap();
        f.plugin("loopback", &ok_body(LO_RESULT));
        f.plugin("bridge", &ok_body(BRIDGE_RESULT));
        f.plugin("portmap", &ok_body(PORTMAP_RESULT));
        f
    }

    /// Writes a fake plugin `name` that logs its invocation, then runs `body`.
    fn plugin(&self, name: &str, body: &str) {
        let script = format!(
            "#!/bin/sh\nlog='{log}'\necho \"{name} $CNI_COMMAND\" >> \"$log/order\"\n\
             env | grep '^CNI_' | sort > \"$log/{name}-$CNI_COMMAND.env\"\n\
             cat > \"$log/{name}-$CNI_COMMAND.stdin\"\n{body}\n",
            log = self.log.display(),
        );
        let path = self.plugins.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn driver(&self) -> CniDriver {
        let mut config = NetworkConfig::new(&self.data, "10.42.0.0/24").unwrap();
        config.plugin_dirs = vec![self.plugins.clone()];
        CniDriver::new(config).unwrap()
    }

    fn pod(&self) -> PodNetwork {
        PodNetwork {
            container_id: "sandbox-1".into(),
            netns: self.netns.clone(),
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: None,
            }],
        }
    }

    fn order(&self) -> Vec<String> {
        match std::fs::read_to_string(self.log.join("order")) {
            Ok(s) => s.lines().map(str::to_string).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn clear_log(&self) {
        std::fs::remove_dir_all(&self.log).unwrap();
        std::fs::create_dir_all(&self.log).unwrap();
    }

    fn stdin(&self, plugin: &str, command: &str) -> Value {
        let path = self.log.join(format!("{plugin}-{command}.stdin"));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    fn env(&self, plugin: &str, command: &str) -> BTreeMap<String, String> {
        let path = self.log.join(format!("{plugin}-{command}.env"));
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

fn ok_body(result: &str) -> String {
    format!("if [ \"$CNI_COMMAND\" = ADD ]; then printf '%s' '{result}'; fi")
}

fn fail_on(command: &str, stdout: &str, stderr: &str) -> String {
    format!(
        "if [ \"$CNI_COMMAND\" = {command} ]; then printf '%s' '{stdout}'; printf '%s' '{stderr}' >&2; exit 1; fi\n{}",
        ok_body(BRIDGE_RESULT)
    )
}

#[test]
fn conflist_has_bridge_with_host_local_then_portmap() {
    let data = tempfile::tempdir().unwrap();
    let mut config = NetworkConfig::new(data.path(), "10.42.3.0/24").unwrap();
    config.mtu = Some(1450);
    assert_eq!(config.gateway, "10.42.3.1".parse::<Ipv4Addr>().unwrap());
    assert_eq!(config.plugin_dirs, vec![PathBuf::from("/usr/lib/cni")]);
    let ipam_dir = data.path().join("cni").join("ipam");
    assert_eq!(config.ipam_dir(), ipam_dir);

    let list = config.conflist();
    assert_eq!(list["cniVersion"], "1.0.0");
    assert_eq!(list["name"], "skiff");
    let plugins = list["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 2);
    let bridge = &plugins[0];
    assert_eq!(bridge["type"], "bridge");
    assert_eq!(bridge["bridge"], "cni0");
    assert_eq!(bridge["isGateway"], true);
    assert_eq!(bridge["ipMasq"], true);
    assert_eq!(bridge["hairpinMode"], true);
    assert_eq!(bridge["mtu"], 1450);
    assert_eq!(bridge["ipam"]["type"], "host-local");
    assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.3.0/24");
    assert_eq!(bridge["ipam"]["ranges"][0][0]["gateway"], "10.42.3.1");
    assert_eq!(bridge["ipam"]["routes"], json!([{"dst": "0.0.0.0/0"}]));
    assert_eq!(bridge["ipam"]["dataDir"], ipam_dir.display().to_string());
    let portmap = &plugins[1];
    assert_eq!(portmap["type"], "portmap");
    assert_eq!(portmap["capabilities"], json!({"portMappings": true}));
    assert_eq!(portmap["snat"], true);
    assert!(plugins.iter().all(|p| p["type"] != "loopback"));
    assert_eq!(config.loopback_config()["type"], "loopback");

    let path = config.write_conflist().unwrap();
    assert!(path.starts_with(data.path()));
    let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(written, list);
}

#[test]
fn config_rejects_bad_cidrs_and_gateways() {
    let data = tempfile::tempdir().unwrap();
    for bad in ["10.42.0.0", "10.42.0.0/33", "nonsense/24", "10.42.0.0/32"] {
        assert!(
            matches!(
                NetworkConfig::new(data.path(), bad),
                Err(CniError::InvalidConfig(_))
            ),
            "{bad}"
        );
    }
    let net: Ipv4Net = "10.42.0.77/24".parse().unwrap();
    assert_eq!(net.to_string(), "10.42.0.0/24");
    assert!(net.contains("10.42.0.254".parse().unwrap()));
    assert!(!net.contains("10.42.1.1".parse().unwrap()));

    let mut config = NetworkConfig::new(data.path(), "10.42.0.0/24").unwrap();
    config.gateway = "10.42.1.1".parse().unwrap();
    assert!(matches!(
        CniDriver::new(config.clone()),
        Err(CniError::InvalidConfig(_))
    ));
    config.gateway = "10.42.0.255".parse().unwrap();
    assert!(matches!(
        CniDriver::new(config),
        Err(CniError::InvalidConfig(_))
    ));
}

#[test]
fn add_runs_loopback_then_the_list_in_order_with_env_and_chained_stdin() {
    let f = Fixture::new();
    let status = f.driver().add(&f.pod()).unwrap();

    assert_eq!(f.order(), ["loopback ADD", "bridge ADD", "portmap ADD"]);
    assert_eq!(status.pod_ip(), Some("10.42.0.5".parse().unwrap()));
    assert_eq!(
        status.result.dns.nameservers,
        ["10.43.0.10"],
        "the last plugin's result wins"
    );
    assert_eq!(status.result.ips[0].gateway.as_deref(), Some("10.42.0.1"));
    assert_eq!(status.result.routes[0].dst, "0.0.0.0/0");
    assert_eq!(
        status.raw,
        serde_json::from_str::<Value>(PORTMAP_RESULT).unwrap()
    );

    let env = f.env("bridge", "ADD");
    assert_eq!(env["CNI_COMMAND"], "ADD");
    assert_eq!(env["CNI_CONTAINERID"], "sandbox-1");
    assert_eq!(env["CNI_NETNS"], f.netns.display().to_string());
    assert_eq!(env["CNI_IFNAME"], "eth0");
    assert_eq!(
        env["CNI_ARGS"],
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sandbox-1;IgnoreUnknown=1"
    );
    assert_eq!(env["CNI_PATH"], f.plugins.display().to_string());
    assert_eq!(f.env("loopback", "ADD")["CNI_IFNAME"], "lo");
    assert_eq!(f.env("portmap", "ADD")["CNI_IFNAME"], "eth0");

    let lo = f.stdin("loopback", "ADD");
    assert_eq!(lo["type"], "loopback");
    assert_eq!(lo["cniVersion"], "1.0.0");
    assert!(lo.get("prevResult").is_none());

    let bridge = f.stdin("bridge", "ADD");
    assert_eq!(bridge["name"], "skiff");
    assert_eq!(bridge["cniVersion"], "1.0.0");
    assert_eq!(bridge["type"], "bridge");
    assert_eq!(bridge["ipam"]["type"], "host-local");
    assert!(
        bridge.get("prevResult").is_none(),
        "the first plugin has no prevResult"
    );
    assert!(
        bridge.get("runtimeConfig").is_none(),
        "bridge lacks the portMappings capability"
    );

    let portmap = f.stdin("portmap", "ADD");
    assert_eq!(portmap["name"], "skiff");
    assert_eq!(portmap["cniVersion"], "1.0.0");
    assert_eq!(
        portmap["prevResult"],
        serde_json::from_str::<Value>(BRIDGE_RESULT).unwrap()
    );
    assert_eq!(
        portmap["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );

    let cache = f.data.join("cni/results/skiff-sandbox-1-eth0");
    let entry: Value = serde_json::from_slice(&std::fs::read(cache).unwrap()).unwrap();
    assert_eq!(entry["kind"], "cniCacheV1");
    assert_eq!(entry["result"], status.raw);
}

#[test]
fn del_runs_the_list_in_reverse_with_the_cached_result_and_removes_it() {
    let f = Fixture::new();
    let added = f.driver().add(&f.pod()).unwrap();
    f.clear_log();

    // A fresh driver (as after an agent restart), and a DEL request that no longer knows the hostPorts.
    let driver = f.driver();
    assert_eq!(
        driver.cached_status("sandbox-1").unwrap(),
        Some(added.clone())
    );
    let mut pod = f.pod();
    pod.port_mappings.clear();
    driver.del(&pod).unwrap();

    assert_eq!(f.order(), ["portmap DEL", "bridge DEL", "loopback DEL"]);
    let portmap = f.stdin("portmap", "DEL");
    assert_eq!(portmap["prevResult"], added.raw);
    assert_eq!(
        portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    assert_eq!(f.stdin("bridge", "DEL")["prevResult"], added.raw);
    assert_eq!(f.env("bridge", "DEL")["CNI_COMMAND"], "DEL");
    assert_eq!(f.env("loopback", "DEL")["CNI_IFNAME"], "lo");
    assert_eq!(driver.cached_status("sandbox-1").unwrap(), None);
    assert!(!f.data.join("cni/results/skiff-sandbox-1-eth0").exists());

    // DEL again: nothing cached, still succeeds, without prevResult.
    f.clear_log();
    driver.del(&pod).unwrap();
    assert_eq!(f.order(), ["portmap DEL", "bridge DEL", "loopback DEL"]);
    assert!(f.stdin("bridge", "DEL").get("prevResult").is_none());
}

#[test]
fn plugin_error_json_becomes_cni_error_and_add_rolls_back() {
    let f = Fixture::new();
    f.plugin(
        "portmap",
        &fail_on(
            "ADD",
            r#"{"cniVersion":"1.0.0","code":7,"msg":"port 8080 taken","details":"iptables said no"}"#,
            "",
        ),
    );
    let err = f.driver().add(&f.pod()).unwrap_err();
    match &err {
        CniError::Plugin {
            plugin,
            command,
            code,
            msg,
            details,
        } => {
            assert_eq!(plugin, "portmap");
            assert_eq!(*command, "ADD");
            assert_eq!(*code, 7);
            assert_eq!(msg, "port 8080 taken");
            assert_eq!(details, "iptables said no");
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("portmap") && text.contains("port 8080 taken"),
        "{text}"
    );
    // Rolled back in reverse, with the last good result; nothing cached.
    assert_eq!(
        f.order(),
        [
            "loopback ADD",
            "bridge ADD",
            "portmap ADD",
            "portmap DEL",
            "bridge DEL"
        ]
    );
    assert_eq!(
        f.stdin("bridge", "DEL")["prevResult"],
        serde_json::from_str::<Value>(BRIDGE_RESULT).unwrap()
    );
    assert!(!f.data.join("cni/results/skiff-sandbox-1-eth0").exists());
}

#[test]
fn plugin_failure_without_json_uses_stderr() {
    let f = Fixture::new();
    f.plugin(
        "bridge",
        &fail_on("ADD", "not json", "failed to create bridge cni0"),
    );
    match f.driver().add(&f.pod()).unwrap_err() {
        CniError::Plugin {
            plugin, msg, code, ..
        } => {
            assert_eq!(plugin, "bridge");
            assert_eq!(msg, "failed to create bridge cni0");
            assert_eq!(code, 0);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn invalid_add_result_is_an_error() {
    let f = Fixture::new();
    f.plugin("bridge", "printf '%s' 'garbage'");
    assert!(matches!(
        f.driver().add(&f.pod()).unwrap_err(),
        CniError::InvalidResult { plugin, .. } if plugin == "bridge"
    ));
}

#[test]
fn del_tolerates_a_missing_netns_but_reports_other_failures() {
    let f = Fixture::new();
    let driver = f.driver();
    driver.add(&f.pod()).unwrap();
    f.plugin(
        "bridge",
        &fail_on("DEL", r#"{"code":999,"msg":"plugin exploded"}"#, ""),
    );
    let err = driver.del(&f.pod()).unwrap_err();
    assert!(
        matches!(&err, CniError::Plugin { plugin, msg, .. } if plugin == "bridge" && msg == "plugin exploded")
    );
    // Every plugin was still asked, and the cache stays for a retry.
    assert_eq!(
        f.order()[3..],
        ["portmap DEL", "bridge DEL", "loopback DEL"]
    );
    assert!(driver.cached_status("sandbox-1").unwrap().is_some());

    // The netns is gone now: the plugin's error about it is logged, DEL succeeds and the cache goes.
    std::fs::remove_file(&f.netns).unwrap();
    f.plugin(
        "bridge",
        &fail_on(
            "DEL",
            r#"{"code":999,"msg":"failed to Statfs \"/run/netns/x\": no such file or directory"}"#,
            "",
        ),
    );
    driver.del(&f.pod()).unwrap();
    assert_eq!(driver.cached_status("sandbox-1").unwrap(), None);
}

#[test]
fn check_needs_an_add_and_passes_the_cached_result() {
    let f = Fixture::new();
    let driver = f.driver();
    assert!(matches!(driver.check(&f.pod()), Err(CniError::NotAdded(id)) if id == "sandbox-1"));
    let added = driver.add(&f.pod()).unwrap();
    f.clear_log();
    driver.check(&f.pod()).unwrap();
    assert_eq!(f.order(), ["bridge CHECK", "portmap CHECK"]);
    assert_eq!(f.env("bridge", "CHECK")["CNI_COMMAND"], "CHECK");
    assert_eq!(f.stdin("bridge", "CHECK")["prevResult"], added.raw);
    assert_eq!(f.stdin("portmap", "CHECK")["prevResult"], added.raw);

    f.plugin(
        "portmap",
        &fail_on("CHECK", r#"{"code":100,"msg":"chain missing"}"#, ""),
    );
    assert!(matches!(
        driver.check(&f.pod()),
        Err(CniError::Plugin { plugin, command: "CHECK", code: 100, .. }) if plugin == "portmap"
    ));
}

#[test]
fn a_hanging_plugin_is_killed_at_the_timeout() {
    let f = Fixture::new();
    // `sleep` is a child of the script holding its stdout: only killing the process group ends it.
    f.plugin(
        "bridge",
        &format!(
            "if [ \"$CNI_COMMAND\" = ADD ]; then sleep 60; echo late; fi\n{}",
            ok_body(BRIDGE_RESULT)
        ),
    );
    let driver = f.driver().with_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let err = driver.add(&f.pod()).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, CniError::Timeout { plugin, command: "ADD", timeout } if plugin == "bridge" && *timeout == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(
        took < Duration::from_secs(4),
        "the plugin and its child were not killed: {took:?}"
    );
    // The rollback DEL still ran after the kill.
    assert_eq!(
        f.order(),
        ["loopback ADD", "bridge ADD", "portmap DEL", "bridge DEL"]
    );
}

#[test]
fn missing_plugins_and_bad_requests_are_errors() {
    let f = Fixture::new();
    std::fs::remove_file(f.plugins.join("portmap")).unwrap();
    assert!(matches!(
        f.driver().add(&f.pod()).unwrap_err(),
        CniError::PluginNotFound { plugin, .. } if plugin == "portmap"
    ));

    let mut pod = f.pod();
    pod.container_id = "../etc".into();
    assert!(matches!(
        f.driver().add(&pod),
        Err(CniError::InvalidRequest(_))
    ));
    assert!(matches!(
        f.driver().del(&pod),
        Err(CniError::InvalidRequest(_))
    ));
    let mut pod = f.pod();
    pod.pod_name = "a;b=c".into();
    assert!(matches!(
        f.driver().add(&pod),
        Err(CniError::InvalidRequest(_))
    ));
}

#[test]
fn pod_ip_prefers_the_sandbox_interface() {
    let raw = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": "/run/netns/p"}],
        "ips": [
            {"address": "fd00::5/64", "interface": 1},
            {"address": "192.168.1.1/24", "interface": 0},
            {"address": "10.42.0.9/24", "gateway": "10.42.0.1", "interface": 1},
        ],
    });
    let status = PodNetworkStatus {
        result: serde_json::from_value(raw.clone()).unwrap(),
        raw,
    };
    assert_eq!(status.pod_ip(), Some("10.42.0.9".parse().unwrap()));
}

/// End to end with Debian's real plugins. Needs root, `ip` and `/usr/lib/cni/{bridge,host-local,portmap,
/// loopback}` (package containernetworking-plugins). Not part of the default run: run it with
/// `SKIFF_CNI_E2E=1 cargo nextest run -p skiff-runtime --run-ignored all cni::tests::e2e`.
/// With the variable set it fails (rather than skips) when a prerequisite is missing.
#[test]
#[ignore = "needs root and Debian's CNI plugins; set SKIFF_CNI_E2E=1 and run ignored tests"]
fn e2e_real_plugins_in_a_netns() {
    if std::env::var("SKIFF_CNI_E2E").as_deref() != Ok("1") {
        panic!(
            "set SKIFF_CNI_E2E=1 to run this test (root and containernetworking-plugins required)"
        );
    }
    for p in ["bridge", "host-local", "portmap", "loopback"] {
        assert!(
            Path::new(DEFAULT_PLUGIN_DIR).join(p).is_file(),
            "missing /usr/lib/cni/{p}"
        );
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "must run as root");

    struct Cleanup {
        netns: String,
        bridge: String,
    }
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.netns])
                .status();
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.bridge])
                .status();
        }
    }
    let suffix = format!("{:x}", std::process::id());
    let netns = format!("skiff-test-{suffix}");
    let bridge = format!("skt{suffix}");
    let ok = std::process::Command::new("ip")
        .args(["netns", "add", &netns])
        .status()
        .unwrap();
    assert!(ok.success(), "ip netns add {netns}");
    let _cleanup = Cleanup {
        netns: netns.clone(),
        bridge: bridge.clone(),
    };

    let data = tempfile::tempdir().unwrap();
    let mut config = NetworkConfig::new(data.path(), "10.251.7.0/24").unwrap();
    config.bridge = bridge;
    config.ip_masq = false;
    let driver = CniDriver::new(config).unwrap();
    let pod = PodNetwork {
        container_id: format!("e2e-{suffix}"),
        netns: PathBuf::from(format!("/var/run/netns/{netns}")),
        pod_namespace: "default".into(),
        pod_name: "e2e".into(),
        port_mappings: Vec::new(),
    };
    let status = driver.add(&pod).unwrap();
    let ip = status.pod_ip().expect("an IPv4 pod IP");
    assert!(driver.config().pod_cidr.contains(ip), "{ip}");
    driver.check(&pod).unwrap();
    driver.del(&pod).unwrap();
    assert_eq!(driver.cached_status(&pod.container_id).unwrap(), None);
}
