//! The runtime's records on disk: `sandboxes/<id>/sandbox.json` and `containers/<id>/container.json`, written
//! atomically by the agent. Together with the shim's `state.json` they are the whole state, so a new
//! [`super::OciRuntime`] over the same root lists and adopts everything (labels and annotations included).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cni::PortMapping;
use crate::cri::DnsConfig;
use crate::shim::state::write_atomic;

pub const SANDBOX_FILE: &str = "sandbox.json";
pub const CONTAINER_FILE: &str = "container.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxPhase {
    Ready,
    NotReady,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl From<&DnsConfig> for DnsRecord {
    fn from(d: &DnsConfig) -> Self {
        Self {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub hostname: String,
    pub host_network: bool,
    pub host_ipc: bool,
    pub host_pid: bool,
    pub port_mappings: Vec<PortMapping>,
    pub log_directory: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub created_at_ns: u64,
    pub phase: SandboxPhase,
    pub ip: Option<IpAddr>,
    /// Whether CNI ADD succeeded and DEL is still owed.
    pub network_added: bool,
    /// The pod's cgroup (absolute cgroup path).
    pub cgroup: PathBuf,
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
    pub hostname_file: PathBuf,
    /// The pod's `/dev/shm` (a tmpfs in the sandbox dir, or the host's with hostIPC).
    pub shm: PathBuf,
    pub shm_mounted: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub image_ref: String,
    pub log_path: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub created_at_ns: u64,
    pub tty: bool,
    pub stdin: bool,
    /// The container's cgroup (absolute cgroup path, runc's `cgroupsPath`).
    pub cgroup: PathBuf,
    /// The image's `StopSignal`, or `SIGTERM`.
    pub stop_signal: String,
}

pub fn load<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

pub fn save<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_atomic(path, &data)
        .map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", path.display())))
}

/// The ids (directory names) under `dir` that hold `file`.
pub fn ids(dir: &Path, file: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join(file).is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// A new random id: 32 lowercase hex digits.
pub fn new_id() -> io::Result<String> {
    let mut b = [0u8; 16];
    fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(hex::encode(b))
}

/// Whether `id` looks like one of ours (so it is safe in paths).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_and_listed_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = new_id().unwrap();
        assert_eq!(a.len(), 32);
        assert!(valid_id(&a));
        assert!(!valid_id("../x"));
        assert!(!valid_id(""));
        fs::create_dir_all(dir.path().join(&a)).unwrap();
        fs::create_dir_all(dir.path().join("empty")).unwrap();
        save(
            &dir.path().join(&a).join(CONTAINER_FILE),
            &serde_json::json!({"x": 1}),
        )
        .unwrap();
        assert_eq!(ids(dir.path(), CONTAINER_FILE), vec![a.clone()]);
        let v: Option<serde_json::Value> = load(&dir.path().join(&a).join(CONTAINER_FILE)).unwrap();
        assert_eq!(v.unwrap()["x"], 1);
        let none: Option<serde_json::Value> = load(&dir.path().join("nope.json")).unwrap();
        assert!(none.is_none());
    }
}
