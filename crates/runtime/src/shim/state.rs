//! The shim's state file (`state.json` in the container directory): written atomically by the shim when the
//! container starts and when it exits, read by the agent (also after an agent restart).

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "state.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Exited,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimState {
    pub status: Status,
    /// The shim's pid and its start time (clock ticks since boot, to tell a reused pid apart).
    pub shim_pid: u32,
    pub shim_start: u64,
    /// The container's init process, once created.
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub pid_start: Option<u64>,
    #[serde(default)]
    pub started_at_ns: Option<u64>,
    #[serde(default)]
    pub finished_at_ns: Option<u64>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// `OOMKilled`, `StartError`, or empty.
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn ns_to_time(ns: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), `None` when it does not exist.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

/// Whether `pid` is alive and is still the process that started at `start` (and not a zombie).
pub fn alive(pid: u32, start: u64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    fields.first().is_some_and(|s| *s != "Z" && *s != "X")
        && fields.get(19).and_then(|s| s.parse().ok()) == Some(start)
}

pub fn read(dir: &Path) -> io::Result<Option<ShimState>> {
    match fs::read(dir.join(STATE_FILE)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn write(dir: &Path, state: &ShimState) -> io::Result<()> {
    write_atomic(
        &dir.join(STATE_FILE),
        &serde_json::to_vec_pretty(state).map_err(io::Error::other)?,
    )
}

/// Writes a file by temporary file, fsync and rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_own_process_is_alive() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let pid = std::process::id();
        let start = process_start(pid).unwrap();
        assert!(alive(pid, start));
        assert!(!alive(pid, start + 1));
        let s = ShimState {
            status: Status::Exited,
            shim_pid: pid,
            shim_start: start,
            pid: Some(1),
            pid_start: None,
            started_at_ns: Some(now_ns()),
            finished_at_ns: Some(now_ns()),
            exit_code: Some(137),
            reason: "OOMKilled".into(),
            message: String::new(),
        };
        write(dir.path(), &s).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(s));
    }
}
