//! Containers: the rootfs (overlayfs over the image's unpacked layers), the bundle, the shim that runs it,
//! stop (signal, time-out, SIGKILL), removal, status from the shim's state file, and stats from cgroups.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::Inner;
use super::sandbox::unmount;
use super::store::{self, ContainerRecord, SandboxPhase};
use crate::bundle::{self, NamespaceMode, SandboxConfig};
use crate::cri::{
    ContainerConfig, ContainerFilter, ContainerState, ContainerStats, ContainerStatus,
    PodSandboxConfig, Result, RuntimeError,
};
use crate::shim::ShimArgs;
use crate::shim::client::{self, LaunchError};
use crate::shim::state::{self, ShimState, Status, now_ns, ns_to_time};

fn other(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Other(e.to_string())
}

fn create_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::CreateContainer(e.to_string())
}

/// `docker.io/library/busybox:1` + digest → `docker.io/library/busybox@sha256:...`.
pub fn image_ref(name: &str, digest: &str) -> String {
    let repo = name.split('@').next().unwrap_or(name);
    let repo = match repo.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => repo,
    };
    format!("{repo}@{digest}")
}

fn mount_overlay(layers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> io::Result<()> {
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    let t = CString::new(target.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let o = CString::new(opts).map_err(io::Error::other)?;
    // SAFETY: valid C strings; an overlay mount.
    let r = unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            t.as_ptr(),
            c"overlay".as_ptr(),
            0,
            o.as_ptr().cast(),
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("mount the overlay rootfs on {}: {e}", target.display()),
        ));
    }
    Ok(())
}

/// Whether this process may raise hard resource limits (`CAP_SYS_RESOURCE` in its effective set).
fn can_raise_rlimits() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0) // bit 24: CAP_SYS_RESOURCE
}

/// Without `CAP_SYS_RESOURCE` (some sandboxed hosts) runc cannot raise a hard limit above the agent's own:
/// lower the spec's `RLIMIT_NOFILE` to what the agent has rather than fail every container.
fn clamp_rlimits(spec: &mut oci_spec::runtime::Spec) {
    if can_raise_rlimits() {
        return;
    }
    // SAFETY: getrlimit fills the struct.
    let mut own = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own) } != 0 {
        return;
    }
    let Some(process) = spec.process_mut() else {
        return;
    };
    let Some(limits) = process.rlimits().clone() else {
        return;
    };
    let limits = limits
        .into_iter()
        .map(|l| {
            if l.typ() == oci_spec::runtime::PosixRlimitType::RlimitNofile
                && l.hard() > own.rlim_max
            {
                oci_spec::runtime::PosixRlimitBuilder::default()
                    .typ(l.typ())
                    .hard(own.rlim_max)
                    .soft(l.soft().min(own.rlim_max))
                    .build()
                    .unwrap_or(l)
            } else {
                l
            }
        })
        .collect::<Vec<_>>();
    process.set_rlimits(Some(limits));
}

/// Bytes used by the files under `dir` (the writable layer), not following symlinks.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

impl Inner {
    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    pub(crate) fn load_container(&self, id: &str) -> Result<ContainerRecord> {
        if !store::valid_id(id) {
            return Err(RuntimeError::NotFound(format!("container {id:?}")));
        }
        store::load(&self.container_dir(id).join(store::CONTAINER_FILE))
            .map_err(other)?
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id:?}")))
    }

    pub(crate) fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        _pod: &PodSandboxConfig,
    ) -> Result<String> {
        let sb = self.load_sandbox(sandbox_id)?;
        if sb.phase != SandboxPhase::Ready {
            return Err(create_err(format!("pod sandbox {sandbox_id} is not ready")));
        }
        let image = self.images.resolve(&config.image).ok_or_else(|| {
            create_err(format!(
                "image {:?} is not in the node's image store",
                config.image
            ))
        })?;
        if image.layers.is_empty() {
            return Err(create_err(format!(
                "image {:?} has no layers",
                config.image
            )));
        }
        if !image.recorded_whiteouts.is_empty() {
            tracing::warn!(image = %image.name, "image layers were unpacked without overlay whiteouts; deleted files may reappear");
        }
        let id = store::new_id().map_err(other)?;
        let dir = self.container_dir(&id);
        let rootfs = dir.join("rootfs");
        let result = (|| -> Result<ContainerRecord> {
            for d in [&rootfs, &dir.join("upper"), &dir.join("work")] {
                fs::create_dir_all(d)
                    .map_err(|e| create_err(format!("create {}: {e}", d.display())))?;
            }
            mount_overlay(
                &image.layers,
                &dir.join("upper"),
                &dir.join("work"),
                &rootfs,
            )
            .map_err(create_err)?;
            let mut spec_cfg = config.spec.clone();
            spec_cfg.id = id.clone();
            if spec_cfg.name.is_empty() {
                spec_cfg.name = config.name.clone();
            }
            if spec_cfg.hostname.is_none() && !sb.host_network {
                spec_cfg.hostname = Some(sb.hostname.clone());
            }
            let join =
                |p: &Option<PathBuf>| p.clone().map_or(NamespaceMode::Host, NamespaceMode::Join);
            let sandbox_cfg = SandboxConfig {
                network: join(&sb.netns),
                ipc: join(&sb.ipcns),
                uts: join(&sb.utsns),
                pid: if sb.host_pid {
                    NamespaceMode::Host
                } else {
                    NamespaceMode::Private
                },
                cgroup_parent: sb.cgroup.clone(),
                resolv_conf: Some(sb.resolv_conf.clone()),
                hosts: Some(sb.hosts.clone()),
                hostname_file: Some(sb.hostname_file.clone()),
                shm: Some(sb.shm.clone()),
            };
            let mut spec = bundle::runtime_spec(&spec_cfg, &sandbox_cfg, &image.config, &rootfs)
                .map_err(create_err)?;
            clamp_rlimits(&mut spec);
            bundle::write_bundle(&dir, &spec).map_err(create_err)?;
            let log_path = if config.log_path.as_os_str().is_empty() {
                sb.log_directory
                    .join(format!("{}/{}.log", config.name, config.attempt))
            } else if config.log_path.is_absolute() {
                config.log_path.clone()
            } else {
                sb.log_directory.join(&config.log_path)
            };
            if let Some(parent) = log_path.parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| create_err(format!("create {}: {e}", parent.display())))?;
            }
            let stop_signal = image
                .config
                .config()
                .as_ref()
                .and_then(|c| c.stop_signal().clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "SIGTERM".to_string());
            let rec = ContainerRecord {
                id: id.clone(),
                sandbox_id: sandbox_id.to_string(),
                name: config.name.clone(),
                attempt: config.attempt,
                image: config.image.clone(),
                image_ref: image_ref(&image.name, &image.digest),
                log_path,
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
                created_at_ns: now_ns(),
                tty: config.spec.tty,
                stdin: config.spec.stdin,
                cgroup: sb.cgroup.join(&id),
                stop_signal,
            };
            store::save(&dir.join(store::CONTAINER_FILE), &rec).map_err(other)?;
            Ok(rec)
        })();
        match result {
            Ok(_) => Ok(id),
            Err(e) => {
                let _ = unmount(&rootfs);
                let _ = fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    pub(crate) fn start_container(&self, id: &str) -> Result<()> {
        let rec = self.load_container(id)?;
        let dir = self.container_dir(id);
        if state::read(&dir).map_err(other)?.is_some() {
            return Err(other(format!("container {id} was already started")));
        }
        let args = ShimArgs {
            id: id.to_string(),
            bundle: dir.clone(),
            runc: self.runc.clone(),
            runc_root: self.runc_root(),
            log_path: rec.log_path.clone(),
            cgroup: rec.cgroup.clone(),
            tty: rec.tty,
            stdin: rec.stdin,
        };
        match client::launch(&self.shim, &args, &dir.join("shim.log")) {
            Ok(_pid) => Ok(()),
            Err(LaunchError::Start(msg)) => Err(RuntimeError::StartContainer(msg)),
            Err(LaunchError::Shim(msg)) => {
                // The shim never got to record anything: record the failed start ourselves.
                if state::read(&dir).ok().flatten().is_none() {
                    let st = ShimState {
                        status: Status::Exited,
                        shim_pid: 0,
                        shim_start: 0,
                        pid: None,
                        pid_start: None,
                        started_at_ns: None,
                        finished_at_ns: Some(now_ns()),
                        exit_code: Some(128),
                        reason: "StartError".into(),
                        message: msg.clone(),
                    };
                    let _ = state::write(&dir, &st);
                }
                Err(RuntimeError::StartContainer(msg))
            }
        }
    }

    /// The container's state as recorded, corrected by what is alive.
    fn observed_state(&self, id: &str) -> Result<Option<ShimState>> {
        let dir = self.container_dir(id);
        let Some(mut st) = state::read(&dir).map_err(other)? else {
            return Ok(None);
        };
        if st.status == Status::Running && !state::alive(st.shim_pid, st.shim_start) {
            let init_alive = match (st.pid, st.pid_start) {
                (Some(p), Some(s)) => state::alive(p, s),
                _ => false,
            };
            // Re-read: the shim may have recorded the exit just before it ended.
            if let Some(again) = state::read(&dir).map_err(other)?
                && again.status == Status::Exited
            {
                return Ok(Some(again));
            }
            if !init_alive {
                st.status = Status::Exited;
                st.exit_code = Some(255);
                st.reason = "Unknown".into();
                st.message = "the container's shim ended without recording its exit".into();
            }
        }
        Ok(Some(st))
    }

    fn status_of(&self, rec: &ContainerRecord) -> Result<ContainerStatus> {
        let st = self.observed_state(&rec.id)?;
        let (state, started_at, finished_at, exit_code, reason, message) = match &st {
            None => (
                ContainerState::Created,
                None,
                None,
                None,
                String::new(),
                String::new(),
            ),
            Some(s) => match s.status {
                Status::Running => (
                    ContainerState::Running,
                    s.started_at_ns.map(ns_to_time),
                    None,
                    None,
                    String::new(),
                    String::new(),
                ),
                Status::Exited => (
                    ContainerState::Exited,
                    s.started_at_ns.map(ns_to_time),
                    s.finished_at_ns.map(ns_to_time),
                    s.exit_code,
                    s.reason.clone(),
                    s.message.clone(),
                ),
            },
        };
        Ok(ContainerStatus {
            id: rec.id.clone(),
            sandbox_id: rec.sandbox_id.clone(),
            name: rec.name.clone(),
            attempt: rec.attempt,
            state,
            created_at: ns_to_time(rec.created_at_ns),
            started_at,
            finished_at,
            exit_code,
            reason,
            message,
            image: rec.image.clone(),
            image_ref: rec.image_ref.clone(),
            log_path: rec.log_path.clone(),
            labels: rec.labels.clone(),
            annotations: rec.annotations.clone(),
        })
    }

    pub(crate) fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let rec = self.load_container(id)?;
        self.status_of(&rec)
    }

    pub(crate) fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>> {
        let mut out = Vec::new();
        for id in store::ids(&self.containers_dir(), store::CONTAINER_FILE) {
            let Ok(rec) = self.load_container(&id) else {
                continue;
            };
            if filter
                .sandbox_id
                .as_ref()
                .is_some_and(|s| *s != rec.sandbox_id)
            {
                continue;
            }
            if !filter
                .labels
                .iter()
                .all(|(k, v)| rec.labels.get(k) == Some(v))
            {
                continue;
            }
            let status = self.status_of(&rec)?;
            if filter.state.is_some_and(|s| s != status.state) {
                continue;
            }
            out.push(status);
        }
        Ok(out)
    }

    fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let out = self
            .runc(&["kill", id, signal])
            .output()
            .map_err(|e| other(format!("run runc kill: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if msg.contains("not running")
            || msg.contains("does not exist")
            || msg.contains("process already finished")
        {
            return Ok(());
        }
        Err(other(format!("runc kill {id} {signal}: {msg}")))
    }

    /// Waits until the container is no longer running, up to `limit`; returns whether it stopped.
    fn wait_stopped(&self, id: &str, limit: Duration) -> Result<bool> {
        let deadline = Instant::now() + limit;
        loop {
            match self.observed_state(id)? {
                Some(s) if s.status == Status::Running => {}
                _ => return Ok(true),
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub(crate) fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let rec = self.load_container(id)?;
        match self.observed_state(id)? {
            Some(s) if s.status == Status::Running => {}
            _ => return Ok(()),
        }
        if !timeout.is_zero() {
            self.kill(id, &rec.stop_signal)?;
            if self.wait_stopped(id, timeout)? {
                return Ok(());
            }
        }
        self.kill(id, "SIGKILL")?;
        if self.wait_stopped(id, Duration::from_secs(30))? {
            Ok(())
        } else {
            Err(other(format!(
                "container {id} did not stop 30s after SIGKILL"
            )))
        }
    }

    pub(crate) fn remove_container(&self, id: &str) -> Result<()> {
        let rec = match self.load_container(id) {
            Ok(r) => r,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_container(id, Duration::ZERO)?;
        // The shim deletes the runc container when it ends; this covers a shim that never ran or died.
        let _ = self.runc(&["delete", "--force", id]).output();
        let dir = self.container_dir(id);
        unmount(&dir.join("rootfs")).map_err(other)?;
        if let Err(e) = self.cgroups.remove(&rec.cgroup) {
            tracing::warn!(container = %id, error = %e, "removing the container's cgroup");
        }
        fs::remove_dir_all(&dir).map_err(|e| other(format!("remove {}: {e}", dir.display())))
    }

    pub(crate) fn attach_target(&self, id: &str) -> Result<(PathBuf, bool)> {
        let rec = self.load_container(id)?;
        match self.observed_state(id)? {
            Some(s) if s.status == Status::Running => {}
            _ => return Err(other(format!("container {id} is not running"))),
        }
        Ok((self.container_dir(id).join("attach.sock"), rec.tty))
    }

    pub(crate) fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let rec = self.load_container(id)?;
        let mut out = ContainerStats {
            id: id.to_string(),
            timestamp: Some(SystemTime::now()),
            writable_layer_bytes: disk_usage(&self.container_dir(id).join("upper")),
            ..Default::default()
        };
        if let Some(s) = self.observed_state(id)?
            && s.status == Status::Running
        {
            let c = self
                .cgroups
                .stats(&rec.cgroup)
                .map_err(|e| other(format!("read the cgroup of container {id}: {e}")))?;
            out.cpu_usage_nanos = c.cpu_usage_nanos;
            out.memory_usage_bytes = c.memory_usage_bytes;
            out.memory_working_set_bytes = c.memory_working_set_bytes;
            out.memory_rss_bytes = c.memory_rss_bytes;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_drop_the_tag() {
        assert_eq!(
            image_ref("docker.io/library/busybox:test", "sha256:ab"),
            "docker.io/library/busybox@sha256:ab"
        );
        assert_eq!(
            image_ref("localhost:5000/team/app", "sha256:ab"),
            "localhost:5000/team/app@sha256:ab"
        );
        assert_eq!(
            image_ref("localhost:5000/app:v1", "sha256:ab"),
            "localhost:5000/app@sha256:ab"
        );
    }
}
