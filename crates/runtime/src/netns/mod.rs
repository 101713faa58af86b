//! A pod's shared namespaces without a pause process: the network, IPC and UTS namespaces are created by a
//! short-lived thread (`unshare`), which sets the pod's hostname in the new UTS namespace and bind-mounts each
//! `/proc/self/task/<tid>/ns/<kind>` onto a file in the sandbox directory (what `ip netns add` does). The bind
//! mounts keep the namespaces alive with no process in them; every container of the pod joins them by path,
//! CNI configures the network one, and removing the sandbox unmounts them, which frees them.
//!
//! Work inside a namespace (sysctls, port-forward connections) runs on a fresh thread that `setns()`s and then
//! ends, so no pooled thread is ever left in a pod's namespace.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `statfs` magic of nsfs: a bind-mounted namespace file.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Which namespaces of a pod are its own (the others are the host's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kinds {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
}

/// The bind-mounted namespace files of a pod; `None` where it uses the host's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodNamespaces {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn check(ret: libc::c_int, what: impl FnOnce() -> String) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{}: {e}", what())))
    }
}

/// Creates the requested namespaces and bind-mounts them as `dir/net`, `dir/ipc`, `dir/uts`. `hostname` is set
/// in a new UTS namespace. On failure nothing is left mounted.
pub fn create(dir: &Path, kinds: Kinds, hostname: &str) -> io::Result<PodNamespaces> {
    fs::create_dir_all(dir)?;
    let mut flags = 0;
    let mut wanted: Vec<(&str, PathBuf)> = Vec::new();
    if kinds.net {
        flags |= libc::CLONE_NEWNET;
        wanted.push(("net", dir.join("net")));
    }
    if kinds.ipc {
        flags |= libc::CLONE_NEWIPC;
        wanted.push(("ipc", dir.join("ipc")));
    }
    if kinds.uts {
        flags |= libc::CLONE_NEWUTS;
        wanted.push(("uts", dir.join("uts")));
    }
    if flags == 0 {
        return Ok(PodNamespaces::default());
    }
    let hostname = hostname.to_string();
    let targets = wanted.clone();
    let result = std::thread::spawn(move || -> io::Result<()> {
        // SAFETY: unshare affects only this thread, which ends right after.
        check(unsafe { libc::unshare(flags) }, || {
            "unshare the pod namespaces".into()
        })?;
        if flags & libc::CLONE_NEWUTS != 0 && !hostname.is_empty() {
            // SAFETY: pointer and length describe the hostname's bytes.
            check(
                unsafe { libc::sethostname(hostname.as_ptr().cast(), hostname.len()) },
                || format!("set hostname {hostname:?}"),
            )?;
        }
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let mut done: Vec<PathBuf> = Vec::new();
        for (kind, target) in &targets {
            let r = (|| {
                File::create(target)?;
                let src = cstr(Path::new(&format!("/proc/self/task/{tid}/ns/{kind}")))?;
                let dst = cstr(target)?;
                // SAFETY: valid C strings; a plain bind mount.
                check(
                    unsafe {
                        libc::mount(
                            src.as_ptr(),
                            dst.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND,
                            std::ptr::null(),
                        )
                    },
                    || format!("bind-mount the {kind} namespace on {}", target.display()),
                )
            })();
            if let Err(e) = r {
                for d in &done {
                    let _ = unmount_and_remove(d);
                }
                let _ = fs::remove_file(target);
                return Err(e);
            }
            done.push(target.clone());
        }
        Ok(())
    })
    .join()
    .map_err(|_| io::Error::other("the namespace thread panicked"))?;
    result?;
    let find = |k: &str| {
        wanted
            .iter()
            .find(|(kind, _)| *kind == k)
            .map(|(_, p)| p.clone())
    };
    Ok(PodNamespaces {
        net: find("net"),
        ipc: find("ipc"),
        uts: find("uts"),
    })
}

/// Unmounts a namespace file (if mounted) and deletes it; a missing file is fine.
pub fn unmount_and_remove(path: &Path) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let p = cstr(path)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOENT) {
            return Err(io::Error::new(
                e.kind(),
                format!("unmount {}: {e}", path.display()),
            ));
        }
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("remove {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}

/// Unmounts and removes every namespace file of a pod.
pub fn remove(ns: &PodNamespaces) -> io::Result<()> {
    let mut first = None;
    for p in [&ns.net, &ns.ipc, &ns.uts].into_iter().flatten() {
        if let Err(e) = unmount_and_remove(p) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Whether `path` is a mounted namespace file (after a reboot the files remain but are not mounts).
pub fn is_namespace(path: &Path) -> bool {
    let Ok(p) = cstr(path) else { return false };
    // SAFETY: statfs fills the zeroed struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    if unsafe { libc::statfs(p.as_ptr(), &mut st) } != 0 {
        return false;
    }
    st.f_type as i64 == NSFS_MAGIC
}

/// Runs `f` on a new thread that has joined the namespaces at `paths` (each with its `CLONE_NEW*` type).
pub fn run_in<T: Send + 'static>(
    paths: Vec<(PathBuf, libc::c_int)>,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    std::thread::spawn(move || -> io::Result<T> {
        for (path, nstype) in &paths {
            let file = File::open(path)
                .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
            // SAFETY: a valid namespace fd; setns changes only this thread, which ends after `f`.
            check(unsafe { libc::setns(file.as_raw_fd(), *nstype) }, || {
                format!("join namespace {}", path.display())
            })?;
        }
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

/// Which namespace a sysctl belongs to (Kubernetes' namespaced sysctls): `CLONE_NEWNET` for `net.*`,
/// `CLONE_NEWIPC` for the System V IPC and POSIX message queue ones; `None` for node-level sysctls.
pub fn sysctl_namespace(name: &str) -> Option<libc::c_int> {
    let name = name.replace('/', ".");
    if name.starts_with("net.") {
        return Some(libc::CLONE_NEWNET);
    }
    if matches!(
        name.as_str(),
        "kernel.shmmax"
            | "kernel.shmall"
            | "kernel.shmmni"
            | "kernel.shm_rmid_forced"
            | "kernel.msgmax"
            | "kernel.msgmnb"
            | "kernel.msgmni"
            | "kernel.sem"
    ) || name.starts_with("fs.mqueue.")
    {
        return Some(libc::CLONE_NEWIPC);
    }
    None
}

/// Writes the pod's sysctls inside its namespaces. Every sysctl must be namespaced and its namespace must
/// be the pod's own (not the host's).
pub fn apply_sysctls(ns: &PodNamespaces, sysctls: &[(String, String)]) -> Result<(), String> {
    if sysctls.is_empty() {
        return Ok(());
    }
    let mut writes = Vec::new();
    for (name, value) in sysctls {
        if name.is_empty() || name.contains("..") || name.starts_with(['.', '/']) {
            return Err(format!("invalid sysctl name {name:?}"));
        }
        let kind = sysctl_namespace(name).ok_or_else(|| {
            format!("sysctl {name:?} is not namespaced and cannot be set for a pod")
        })?;
        let own = if kind == libc::CLONE_NEWNET {
            &ns.net
        } else {
            &ns.ipc
        };
        if own.is_none() {
            return Err(format!(
                "sysctl {name:?} cannot be set: the pod uses the host's namespace"
            ));
        }
        let path = PathBuf::from("/proc/sys").join(name.replace('.', "/"));
        writes.push((path, value.clone()));
    }
    let mut paths = Vec::new();
    if let Some(p) = &ns.net {
        paths.push((p.clone(), libc::CLONE_NEWNET));
    }
    if let Some(p) = &ns.ipc {
        paths.push((p.clone(), libc::CLONE_NEWIPC));
    }
    run_in(paths, move || -> Result<(), String> {
        for (path, value) in writes {
            fs::write(&path, value.as_bytes())
                .map_err(|e| format!("set sysctl {}: {e}", path.display()))?;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_are_sorted_by_namespace() {
        assert_eq!(
            sysctl_namespace("net.ipv4.ip_forward"),
            Some(libc::CLONE_NEWNET)
        );
        assert_eq!(
            sysctl_namespace("net/ipv4/ping_group_range"),
            Some(libc::CLONE_NEWNET)
        );
        assert_eq!(sysctl_namespace("kernel.shmmax"), Some(libc::CLONE_NEWIPC));
        assert_eq!(
            sysctl_namespace("fs.mqueue.msg_max"),
            Some(libc::CLONE_NEWIPC)
        );
        assert_eq!(sysctl_namespace("vm.swappiness"), None);
        let e = apply_sysctls(
            &PodNamespaces::default(),
            &[("net.ipv4.ip_forward".into(), "1".into())],
        )
        .unwrap_err();
        assert!(e.contains("host's namespace"), "{e}");
        let e = apply_sysctls(
            &PodNamespaces::default(),
            &[("kernel.panic".into(), "1".into())],
        )
        .unwrap_err();
        assert!(e.contains("not namespaced"), "{e}");
    }

    /// Needs root (mount, unshare): creates namespaces in a temp dir, checks them, removes them.
    #[test]
    fn namespaces_are_held_by_bind_mounts_and_removed() {
        if unsafe { libc::geteuid() } != 0 {
            panic!("this test needs root (unshare and mount)");
        }
        let dir = tempfile::tempdir().unwrap();
        let ns = create(
            dir.path(),
            Kinds {
                net: true,
                ipc: true,
                uts: true,
            },
            "pod-host",
        )
        .unwrap();
        let guard = scopeguard(ns.clone());
        let net = ns.net.clone().unwrap();
        assert!(is_namespace(&net));
        assert!(is_namespace(ns.uts.as_ref().unwrap()));
        let own = fs::read_link("/proc/self/ns/net").unwrap();
        let theirs = run_in(vec![(net.clone(), libc::CLONE_NEWNET)], || {
            fs::read_link("/proc/thread-self/ns/net").unwrap()
        })
        .unwrap();
        assert_ne!(own, theirs);
        let host = run_in(vec![(ns.uts.clone().unwrap(), libc::CLONE_NEWUTS)], || {
            let mut buf = [0u8; 65];
            unsafe { libc::gethostname(buf.as_mut_ptr().cast(), 64) };
            String::from_utf8_lossy(&buf[..buf.iter().position(|b| *b == 0).unwrap()]).to_string()
        })
        .unwrap();
        assert_eq!(host, "pod-host");
        apply_sysctls(
            &ns,
            &[("net.ipv4.ip_unprivileged_port_start".into(), "80".into())],
        )
        .unwrap();
        let v = run_in(vec![(net.clone(), libc::CLONE_NEWNET)], || {
            fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap()
        })
        .unwrap();
        assert_eq!(v.trim(), "80");
        assert_ne!(
            fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .unwrap()
                .trim(),
            "80"
        );
        drop(guard);
        assert!(!net.exists());
        assert!(!is_namespace(&net));
    }

    struct Guard(PodNamespaces);
    impl Drop for Guard {
        fn drop(&mut self) {
            remove(&self.0).unwrap();
        }
    }
    fn scopeguard(ns: PodNamespaces) -> Guard {
        Guard(ns)
    }
}
