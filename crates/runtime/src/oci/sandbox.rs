//! Pod sandboxes: the pod's cgroup, its namespaces (network, IPC, UTS held by bind mounts, no pause process),
//! sysctls, the network through CNI, the `resolv.conf`, `hosts` and `hostname` files and a tmpfs `/dev/shm`.
//! Stop stops the containers and runs CNI DEL; remove takes everything away.

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{IpAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Inner;
use super::store::{self, SandboxPhase, SandboxRecord};
use crate::cni::PodNetwork;
use crate::cri::{
    ContainerFilter, ContainerState, PodSandboxConfig, PodSandboxStatus, Result, RuntimeError,
    RuntimeVersion, SandboxState,
};
use crate::netns::{self, Kinds, PodNamespaces};
use crate::shim::state::{now_ns, ns_to_time};

/// Size of the pod's shared `/dev/shm` (Docker's and containerd's default).
pub const SHM_SIZE: u64 = 64 * 1024 * 1024;

fn sandbox_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Sandbox(e.to_string())
}

fn other(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Other(e.to_string())
}

/// Mounts a tmpfs for the pod's `/dev/shm`.
fn mount_shm(target: &Path) -> io::Result<()> {
    fs::create_dir_all(target)?;
    let t = CString::new(target.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let opts = CString::new(format!("mode=1777,size={SHM_SIZE}")).expect("no NUL");
    // SAFETY: valid C strings; a tmpfs mount.
    let r = unsafe {
        libc::mount(
            c"shm".as_ptr(),
            t.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            opts.as_ptr().cast(),
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("mount tmpfs on {}: {e}", target.display()),
        ));
    }
    Ok(())
}

/// Unmounts `target` if it is mounted (lazily); not mounted is fine.
pub(crate) fn unmount(target: &Path) -> io::Result<()> {
    let t = CString::new(target.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
            return Err(io::Error::new(
                e.kind(),
                format!("unmount {}: {e}", target.display()),
            ));
        }
    }
    Ok(())
}

/// The pod's `resolv.conf`: its DNS config, or the host's file.
pub fn resolv_conf(dns: Option<&crate::cri::DnsConfig>) -> String {
    match dns {
        None => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        Some(d) => {
            let mut s = String::new();
            for n in &d.servers {
                let _ = writeln!(s, "nameserver {n}");
            }
            if !d.searches.is_empty() {
                let _ = writeln!(s, "search {}", d.searches.join(" "));
            }
            if !d.options.is_empty() {
                let _ = writeln!(s, "options {}", d.options.join(" "));
            }
            s
        }
    }
}

/// The pod's `/etc/hosts` as the kubelet writes it (host networking: the host's file), then `hostAliases`.
pub fn hosts_file(
    host_network: bool,
    ip: Option<IpAddr>,
    hostname: &str,
    aliases: &[(String, Vec<String>)],
) -> String {
    let mut s = if host_network {
        fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        let mut s = String::from(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
        );
        if let Some(ip) = ip {
            let _ = writeln!(s, "{ip}\t{hostname}");
        }
        s
    };
    if !aliases.is_empty() {
        if !s.ends_with('\n') && !s.is_empty() {
            s.push('\n');
        }
        s.push_str("\n# Entries added by HostAliases.\n");
        for (ip, names) in aliases {
            let _ = writeln!(s, "{ip}\t{}", names.join("\t"));
        }
    }
    s
}

fn pod_cgroup_name(config: &PodSandboxConfig, id: &str) -> String {
    let uid_ok = !config.uid.is_empty()
        && config
            .uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if uid_ok {
        format!("pod{}", config.uid)
    } else {
        format!("pod{id}")
    }
}

impl Inner {
    pub(crate) fn version(&self) -> Result<RuntimeVersion> {
        let out = self
            .runc(&["--version"])
            .output()
            .map_err(|e| other(format!("run {}: {e}", self.runc.display())))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let runc = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("runc version "))
            .unwrap_or("unknown")
            .trim()
            .to_string();
        Ok(RuntimeVersion {
            runtime_name: "skiff".into(),
            runtime_version: format!("{} (runc {runc})", env!("CARGO_PKG_VERSION")),
        })
    }

    pub(crate) fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.sandboxes_dir().join(id)
    }

    pub(crate) fn load_sandbox(&self, id: &str) -> Result<SandboxRecord> {
        if !store::valid_id(id) {
            return Err(RuntimeError::NotFound(format!("pod sandbox {id:?}")));
        }
        store::load(&self.sandbox_dir(id).join(store::SANDBOX_FILE))
            .map_err(other)?
            .ok_or_else(|| RuntimeError::NotFound(format!("pod sandbox {id:?}")))
    }

    fn save_sandbox(&self, r: &SandboxRecord) -> Result<()> {
        store::save(&self.sandbox_dir(&r.id).join(store::SANDBOX_FILE), r).map_err(other)
    }

    pub(crate) fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        if config.share_process_namespace && !config.host_pid {
            return Err(sandbox_err(
                "shareProcessNamespace is not supported by this runtime (it has no pause process to hold a pod PID namespace)",
            ));
        }
        if config.name.is_empty() || config.namespace.is_empty() {
            return Err(sandbox_err("the pod sandbox needs a name and a namespace"));
        }
        let id = store::new_id().map_err(other)?;
        let dir = self.sandbox_dir(&id);
        fs::create_dir_all(&dir)
            .map_err(|e| sandbox_err(format!("create {}: {e}", dir.display())))?;
        let mut rec = SandboxRecord {
            id: id.clone(),
            name: config.name.clone(),
            namespace: config.namespace.clone(),
            uid: config.uid.clone(),
            attempt: config.attempt,
            hostname: config.hostname.clone(),
            host_network: config.host_network,
            host_ipc: config.host_ipc,
            host_pid: config.host_pid,
            port_mappings: config.port_mappings.clone(),
            log_directory: config.log_directory.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            created_at_ns: now_ns(),
            phase: SandboxPhase::NotReady,
            ip: None,
            network_added: false,
            cgroup: self.cgroup_parent.join(pod_cgroup_name(config, &id)),
            netns: None,
            ipcns: None,
            utsns: None,
            resolv_conf: dir.join("resolv.conf"),
            hosts: dir.join("hosts"),
            hostname_file: dir.join("hostname"),
            shm: if config.host_ipc {
                PathBuf::from("/dev/shm")
            } else {
                dir.join("shm")
            },
            shm_mounted: false,
        };
        // The record and the pod cgroup appear together under the lock, so a concurrent removal of the
        // last other sandbox cannot prune the cgroup parent under this one.
        let created = {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.save_sandbox(&rec)?;
            self.cgroups.create(&rec.cgroup).map_err(sandbox_err)
        };
        match created.and_then(|()| self.set_up_sandbox(&mut rec, config)) {
            Ok(()) => Ok(id),
            Err(e) => {
                tracing::warn!(sandbox = %id, error = %e, "pod sandbox set-up failed, removing it");
                if let Err(e2) = self.tear_down_sandbox(&rec) {
                    tracing::warn!(sandbox = %id, error = %e2, "cleaning up the failed sandbox");
                }
                Err(e)
            }
        }
    }

    fn set_up_sandbox(&self, rec: &mut SandboxRecord, config: &PodSandboxConfig) -> Result<()> {
        let dir = self.sandbox_dir(&rec.id);
        if !config.log_directory.as_os_str().is_empty() {
            fs::create_dir_all(&config.log_directory).map_err(|e| {
                sandbox_err(format!(
                    "create the log directory {}: {e}",
                    config.log_directory.display()
                ))
            })?;
        }
        let kinds = Kinds {
            net: !config.host_network,
            ipc: !config.host_ipc,
            uts: !config.host_network,
        };
        let ns = netns::create(&dir.join("ns"), kinds, &config.hostname).map_err(sandbox_err)?;
        rec.netns = ns.net.clone();
        rec.ipcns = ns.ipc.clone();
        rec.utsns = ns.uts.clone();
        self.save_sandbox(rec)?;
        netns::apply_sysctls(&ns, &config.sysctls).map_err(sandbox_err)?;
        if !config.host_ipc {
            mount_shm(&rec.shm).map_err(sandbox_err)?;
            rec.shm_mounted = true;
            self.save_sandbox(rec)?;
        }
        let write = |p: &Path, text: &str| {
            fs::write(p, text).map_err(|e| sandbox_err(format!("write {}: {e}", p.display())))
        };
        let hostname = if config.host_network {
            fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .to_string()
        } else {
            config.hostname.clone()
        };
        write(&rec.hostname_file, &format!("{hostname}\n"))?;
        write(
            &rec.resolv_conf,
            &resolv_conf(if config.host_network {
                None
            } else {
                config.dns.as_ref()
            }),
        )?;
        if let Some(net) = &rec.netns {
            let pod = PodNetwork {
                container_id: rec.id.clone(),
                netns: net.clone(),
                pod_namespace: config.namespace.clone(),
                pod_name: config.name.clone(),
                port_mappings: config.port_mappings.clone(),
            };
            rec.network_added = true;
            self.save_sandbox(rec)?;
            let status = self.cni.add(&pod).map_err(sandbox_err);
            let status = match status {
                Ok(s) => s,
                Err(e) => {
                    rec.network_added = false;
                    return Err(e);
                }
            };
            rec.ip = status.pod_ip().map(IpAddr::V4);
        }
        write(
            &rec.hosts,
            &hosts_file(
                config.host_network,
                rec.ip,
                &config.hostname,
                &config.host_aliases,
            ),
        )?;
        rec.phase = SandboxPhase::Ready;
        self.save_sandbox(rec)
    }

    fn pod_network(&self, rec: &SandboxRecord) -> Option<PodNetwork> {
        Some(PodNetwork {
            container_id: rec.id.clone(),
            netns: rec.netns.clone()?,
            pod_namespace: rec.namespace.clone(),
            pod_name: rec.name.clone(),
            port_mappings: rec.port_mappings.clone(),
        })
    }

    pub(crate) fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut rec = match self.load_sandbox(id) {
            Ok(r) => r,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let filter = ContainerFilter {
            sandbox_id: Some(id.to_string()),
            ..Default::default()
        };
        for c in self.list_containers(&filter)? {
            if c.state == ContainerState::Running {
                self.stop_container(&c.id, Duration::ZERO)?;
            }
        }
        if rec.network_added
            && let Some(pod) = self.pod_network(&rec)
        {
            self.cni.del(&pod).map_err(sandbox_err)?;
            rec.network_added = false;
        }
        rec.phase = SandboxPhase::NotReady;
        self.save_sandbox(&rec)
    }

    pub(crate) fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let rec = match self.load_sandbox(id) {
            Ok(r) => r,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_pod_sandbox(id)?;
        let filter = ContainerFilter {
            sandbox_id: Some(id.to_string()),
            ..Default::default()
        };
        for c in self.list_containers(&filter)? {
            self.remove_container(&c.id)?;
        }
        let rec = self.load_sandbox(id).unwrap_or(rec);
        self.tear_down_sandbox(&rec)?;
        if !rec.log_directory.as_os_str().is_empty() && rec.log_directory.is_dir() {
            fs::remove_dir_all(&rec.log_directory).map_err(|e| {
                other(format!(
                    "remove the log directory {}: {e}",
                    rec.log_directory.display()
                ))
            })?;
        }
        Ok(())
    }

    /// Undoes everything a sandbox set up (network, namespaces, shm, cgroup, directory); best effort for
    /// each part, the first error is returned after trying them all.
    fn tear_down_sandbox(&self, rec: &SandboxRecord) -> Result<()> {
        let mut first: Option<RuntimeError> = None;
        if rec.network_added
            && let Some(pod) = self.pod_network(rec)
            && let Err(e) = self.cni.del(&pod)
        {
            first.get_or_insert(sandbox_err(e));
        }
        let ns = PodNamespaces {
            net: rec.netns.clone(),
            ipc: rec.ipcns.clone(),
            uts: rec.utsns.clone(),
        };
        if let Err(e) = netns::remove(&ns) {
            first.get_or_insert(other(e));
        }
        if rec.shm_mounted
            && let Err(e) = unmount(&rec.shm)
        {
            first.get_or_insert(other(e));
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let shared = store::ids(&self.sandboxes_dir(), store::SANDBOX_FILE)
            .into_iter()
            .filter(|other_id| *other_id != rec.id)
            .filter_map(|other_id| self.load_sandbox(&other_id).ok())
            .any(|o| o.cgroup == rec.cgroup);
        if !shared && let Err(e) = self.cgroups.remove(&rec.cgroup) {
            first.get_or_insert(other(e));
        }
        if let Some(e) = first {
            return Err(e);
        }
        let dir = self.sandbox_dir(&rec.id);
        fs::remove_dir_all(&dir).map_err(|e| other(format!("remove {}: {e}", dir.display())))?;
        if store::ids(&self.sandboxes_dir(), store::SANDBOX_FILE).is_empty() {
            self.cgroups.prune(&self.cgroup_parent);
        }
        Ok(())
    }

    pub(crate) fn sandbox_status(&self, rec: &SandboxRecord) -> PodSandboxStatus {
        let ns_ok = rec.netns.as_ref().is_none_or(|p| netns::is_namespace(p));
        PodSandboxStatus {
            id: rec.id.clone(),
            name: rec.name.clone(),
            namespace: rec.namespace.clone(),
            uid: rec.uid.clone(),
            attempt: rec.attempt,
            state: if rec.phase == SandboxPhase::Ready && ns_ok {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            },
            created_at: ns_to_time(rec.created_at_ns),
            ip: rec.ip,
            host_network: rec.host_network,
            labels: rec.labels.clone(),
            annotations: rec.annotations.clone(),
        }
    }

    pub(crate) fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus> {
        Ok(self.sandbox_status(&self.load_sandbox(id)?))
    }

    pub(crate) fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>> {
        Ok(store::ids(&self.sandboxes_dir(), store::SANDBOX_FILE)
            .into_iter()
            .filter_map(|id| self.load_sandbox(&id).ok())
            .map(|r| self.sandbox_status(&r))
            .collect())
    }

    /// A TCP connection to `port` on the pod's loopback, made from inside its network namespace.
    pub(crate) fn port_forward_connect(&self, id: &str, port: u16) -> Result<TcpStream> {
        let rec = self.load_sandbox(id)?;
        let connect = move || -> io::Result<TcpStream> {
            let timeout = Duration::from_secs(10);
            let v4 = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout);
            let s = match v4 {
                Ok(s) => s,
                Err(e4) => TcpStream::connect_timeout(
                    &(std::net::Ipv6Addr::LOCALHOST, port).into(),
                    timeout,
                )
                .map_err(|_| e4)?,
            };
            s.set_nonblocking(true)?;
            Ok(s)
        };
        let result = match &rec.netns {
            Some(net) => {
                netns::run_in(vec![(net.clone(), libc::CLONE_NEWNET)], connect).map_err(other)?
            }
            None => connect(),
        };
        result.map_err(|e| {
            other(format!(
                "port-forward to port {port} in pod sandbox {id}: {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::DnsConfig;

    #[test]
    fn resolv_conf_lists_servers_searches_and_options() {
        let d = DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&d)),
            "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
        );
    }

    #[test]
    fn hosts_file_names_the_pod_and_its_aliases() {
        let ip: IpAddr = "10.88.0.5".parse().unwrap();
        let h = hosts_file(
            false,
            Some(ip),
            "web-0",
            &[("1.2.3.4".into(), vec!["a".into(), "b".into()])],
        );
        assert!(
            h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"),
            "{h}"
        );
        assert!(h.contains("\n10.88.0.5\tweb-0\n"), "{h}");
        assert!(
            h.ends_with("# Entries added by HostAliases.\n1.2.3.4\ta\tb\n"),
            "{h}"
        );
    }
}
