//! The node's cgroups as the runtime uses them: finding the mounted hierarchies (v1, v2, or the v1 hybrid
//! where cgroup2 holds few controllers), creating and removing the pod cgroups under the agent's parent in
//! every hierarchy, and reading a container's usage and OOM-kill count.
//!
//! Paths handed around are cgroup paths (absolute within a hierarchy, like runc's `cgroupsPath`:
//! `/process_api/x/kubepods/pod<uid>/<container>`); each hierarchy maps them under its mount point.
//! On v1 the resource controllers (memory, cpu, cpuacct, pids) are separate hierarchies; the agent's own cgroup
//! is taken from the memory hierarchy (v1) or the unified one (v2), so containers stay inside the agent's
//! memory accounting (a CI job's memory cgroup, on these hosts).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    /// v1 controllers (`memory`, `cpu`, `name=systemd`, ...); empty for cgroup2.
    pub controllers: Vec<String>,
    pub v2: bool,
    /// The calling process's cgroup in this hierarchy.
    pub own: PathBuf,
}

impl Hierarchy {
    /// The directory of cgroup `path` in this hierarchy.
    pub fn dir(&self, path: &Path) -> PathBuf {
        let rel = path.strip_prefix("/").unwrap_or(path);
        self.mount.join(rel)
    }

    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// Usage read from a container's cgroup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub cpu_usage_nanos: u64,
    pub memory_usage_bytes: u64,
    pub memory_working_set_bytes: u64,
    pub memory_rss_bytes: u64,
}

/// The hierarchies of this host.
#[derive(Clone, Debug)]
pub struct Cgroups {
    hierarchies: Vec<Hierarchy>,
}

impl Cgroups {
    /// Reads `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn detect() -> io::Result<Cgroups> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        let own = fs::read_to_string("/proc/self/cgroup")?;
        let c = Self::parse(&mountinfo, &own);
        if c.hierarchies.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup hierarchy is mounted",
            ));
        }
        Ok(c)
    }

    /// Builds the hierarchy list from the texts of `mountinfo` and `/proc/self/cgroup`.
    pub fn parse(mountinfo: &str, own: &str) -> Cgroups {
        let mut own_v1: Vec<(Vec<String>, PathBuf)> = Vec::new();
        let mut own_v2 = PathBuf::from("/");
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if id == "0" && ctrls.is_empty() {
                own_v2 = PathBuf::from(path);
            } else {
                own_v1.push((
                    ctrls.split(',').map(str::to_string).collect(),
                    PathBuf::from(path),
                ));
            }
        }
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 || pre[3] != "/" {
                continue;
            }
            let mount = PathBuf::from(pre[4]);
            match post[0] {
                "cgroup2" if !hierarchies.iter().any(|h| h.v2) => {
                    hierarchies.push(Hierarchy {
                        mount,
                        controllers: vec![],
                        v2: true,
                        own: own_v2.clone(),
                    });
                }
                "cgroup" => {
                    let controllers: Vec<String> = post[2]
                        .split(',')
                        .filter(|o| {
                            !matches!(
                                *o,
                                "rw" | "ro"
                                    | "relatime"
                                    | "noexec"
                                    | "nosuid"
                                    | "nodev"
                                    | "clone_children"
                                    | "xattr"
                                    | "noprefix"
                                    | "cpuset_v2_mode"
                            ) && !o.starts_with("release_agent")
                        })
                        .map(str::to_string)
                        .collect();
                    if controllers.is_empty()
                        || hierarchies.iter().any(|h| h.controllers == controllers)
                    {
                        continue;
                    }
                    let own = own_v1
                        .iter()
                        .find(|(c, _)| {
                            let mut a = c.clone();
                            let mut b = controllers.clone();
                            a.sort();
                            b.sort();
                            a == b
                        })
                        .map(|(_, p)| p.clone())
                        .unwrap_or_else(|| PathBuf::from("/"));
                    hierarchies.push(Hierarchy {
                        mount,
                        controllers,
                        v2: false,
                        own,
                    });
                }
                _ => {}
            }
        }
        Cgroups { hierarchies }
    }

    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    /// Whether resources are controlled through v1 hierarchies (a memory v1 hierarchy is mounted).
    pub fn is_v1(&self) -> bool {
        self.v1("memory").is_some()
    }

    fn v1(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| !h.v2 && h.has(controller))
    }

    fn v2(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.v2)
    }

    /// The calling process's own cgroup: in the memory hierarchy on v1, the unified one on v2.
    pub fn own_cgroup(&self) -> PathBuf {
        match self.v1("memory") {
            Some(h) => h.own.clone(),
            None => self
                .v2()
                .map(|h| h.own.clone())
                .unwrap_or_else(|| PathBuf::from("/")),
        }
    }

    /// Creates cgroup `path` (and missing parents) in every hierarchy. On v1 cpuset, new directories get their
    /// parent's `cpus` and `mems` so tasks can join them.
    pub fn create(&self, path: &Path) -> io::Result<()> {
        for h in &self.hierarchies {
            let target = h.dir(path);
            let mut missing = Vec::new();
            let mut cur = target.as_path();
            while !cur.exists() && cur.starts_with(&h.mount) && cur != h.mount {
                missing.push(cur.to_path_buf());
                cur = match cur.parent() {
                    Some(p) => p,
                    None => break,
                };
            }
            for dir in missing.iter().rev() {
                match fs::create_dir(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("create cgroup {}: {e}", dir.display()),
                        ));
                    }
                }
                if h.has("cpuset") {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let own = fs::read_to_string(dir.join(f)).unwrap_or_default();
                        if own.trim().is_empty()
                            && let Some(parent) = dir.parent()
                        {
                            let v = fs::read_to_string(parent.join(f)).unwrap_or_default();
                            let _ = fs::write(dir.join(f), v.trim());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes cgroup `path` and everything below it in every hierarchy, deepest first. Directories that still
    /// hold processes are retried briefly; an error names the first cgroup that could not be removed.
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        let mut first_err = None;
        for h in &self.hierarchies {
            if let Err(e) = remove_tree(&h.dir(path)) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Removes `path` and then its empty ancestors, in every hierarchy, stopping at the calling process's own
    /// cgroup there (the agent's parent cgroup when its last pod is gone). Busy directories are left alone.
    pub fn prune(&self, path: &Path) {
        for h in &self.hierarchies {
            let mut cur = Some(path.to_path_buf());
            while let Some(p) = cur {
                if p == Path::new("/") || h.own.starts_with(&p) {
                    break;
                }
                match fs::remove_dir(h.dir(&p)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(_) => break,
                }
                cur = p.parent().map(Path::to_path_buf);
            }
        }
    }

    /// Whether cgroup `path` exists in any hierarchy (used by tests and leak checks).
    pub fn exists_anywhere(&self, path: &Path) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| h.dir(path))
            .filter(|d| d.exists())
            .collect()
    }

    /// The number of OOM kills in cgroup `path` (`oom_kill` of v1 `memory.oom_control` or v2
    /// `memory.events`); `None` when no memory controller is there.
    pub fn oom_kills(&self, path: &Path) -> Option<u64> {
        if let Some(h) = self.v1("memory") {
            let text = fs::read_to_string(h.dir(path).join("memory.oom_control")).ok()?;
            return Some(stat_value(&text, "oom_kill").unwrap_or(0));
        }
        let h = self.v2()?;
        let text = fs::read_to_string(h.dir(path).join("memory.events")).ok()?;
        Some(stat_value(&text, "oom_kill").unwrap_or(0))
    }

    /// Usage of cgroup `path`: v1 `cpuacct.usage` and `memory.usage_in_bytes` (working set = usage minus
    /// `total_inactive_file`, as cAdvisor computes it), or the v2 equivalents.
    pub fn stats(&self, path: &Path) -> io::Result<CgroupStats> {
        let mut s = CgroupStats::default();
        if let Some(mem) = self.v1("memory") {
            let dir = mem.dir(path);
            s.memory_usage_bytes = read_u64(&dir.join("memory.usage_in_bytes"))?;
            let stat = fs::read_to_string(dir.join("memory.stat"))?;
            let inactive = stat_value(&stat, "total_inactive_file").unwrap_or(0);
            s.memory_working_set_bytes = s.memory_usage_bytes.saturating_sub(inactive);
            s.memory_rss_bytes = stat_value(&stat, "total_rss").unwrap_or(0);
            if let Some(cpu) = self.v1("cpuacct") {
                s.cpu_usage_nanos = read_u64(&cpu.dir(path).join("cpuacct.usage"))?;
            } else if let Some(v2) = self.v2() {
                let text = fs::read_to_string(v2.dir(path).join("cpu.stat"))?;
                s.cpu_usage_nanos = stat_value(&text, "usage_usec").unwrap_or(0) * 1000;
            }
            return Ok(s);
        }
        let v2 = self
            .v2()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no memory cgroup hierarchy"))?;
        let dir = v2.dir(path);
        s.memory_usage_bytes = read_u64(&dir.join("memory.current"))?;
        let stat = fs::read_to_string(dir.join("memory.stat"))?;
        let inactive = stat_value(&stat, "inactive_file").unwrap_or(0);
        s.memory_working_set_bytes = s.memory_usage_bytes.saturating_sub(inactive);
        s.memory_rss_bytes = stat_value(&stat, "anon").unwrap_or(0);
        let cpu = fs::read_to_string(dir.join("cpu.stat"))?;
        s.cpu_usage_nanos = stat_value(&cpu, "usage_usec").unwrap_or(0) * 1000;
        Ok(s)
    }
}

fn read_u64(path: &Path) -> io::Result<u64> {
    let text = fs::read_to_string(path)?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a number: {text:?}", path.display()),
        )
    })
}

/// The value of `key` in a `key value` per line file (`memory.stat`, `memory.oom_control`, `cpu.stat`).
pub fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn remove_tree(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    let mut last = None;
    for _ in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let e = last.expect("at least one attempt");
    Err(io::Error::new(
        e.kind(),
        format!("remove cgroup {}: {e}", dir.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 31 0:32 /sub /mnt/memory2 rw,relatime - cgroup cgroup rw,memory
";
    const OWN: &str = "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    #[test]
    fn hybrid_hosts_are_parsed_with_separate_cpu_and_cpuacct() {
        let c = Cgroups::parse(MOUNTINFO, OWN);
        let names: Vec<_> = c
            .hierarchies()
            .iter()
            .map(|h| (h.mount.display().to_string(), h.v2))
            .collect();
        assert_eq!(
            names,
            vec![
                ("/sys/fs/cgroup/cpu".to_string(), false),
                ("/sys/fs/cgroup/cpuacct".to_string(), false),
                ("/sys/fs/cgroup/memory".to_string(), false),
                ("/sys/fs/cgroup/systemd".to_string(), false),
                ("/sys/fs/cgroup/unified".to_string(), true),
            ]
        );
        assert!(c.is_v1());
        assert_eq!(c.own_cgroup(), PathBuf::from("/process_api/abc"));
        let sd = &c.hierarchies()[3];
        assert_eq!(sd.controllers, vec!["name=systemd".to_string()]);
        assert_eq!(
            c.hierarchies()[2].dir(Path::new("/process_api/abc/kubepods")),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/kubepods")
        );
    }

    #[test]
    fn pure_v2_hosts_use_the_unified_cgroup() {
        let c = Cgroups::parse(
            "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/system.slice/skiff.service\n",
        );
        assert!(!c.is_v1());
        assert_eq!(c.own_cgroup(), PathBuf::from("/system.slice/skiff.service"));
    }

    #[test]
    fn stat_files_are_read_by_key() {
        let text = "cache 10\nrss 20\ntotal_inactive_file 4096\n";
        assert_eq!(stat_value(text, "total_inactive_file"), Some(4096));
        assert_eq!(stat_value(text, "rss"), Some(20));
        assert_eq!(stat_value(text, "missing"), None);
        assert_eq!(
            stat_value("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
    }
}
