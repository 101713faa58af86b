//! Kubernetes' AtomicWriter: a volume's files are written into a fresh timestamped directory, published by
//! swapping the `..data` symlink with a rename, and exposed through user-visible symlinks into `..data`, so a
//! reader sees either the whole old set of files or the whole new one.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

/// Name of the symlink that points at the current timestamped directory.
pub const DATA_DIR_NAME: &str = "..data";
const DATA_DIR_TMP_NAME: &str = "..data_tmp";

/// One file of a payload: its bytes and permission bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A payload: relative path (`a/b.txt`) to file.
pub type Payload = BTreeMap<String, FileProjection>;

/// Errors of [`write_payload`].
#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    #[error("invalid path {path:?} in the volume payload: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("failed to {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: io::Error },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> AtomicWriteError + 'a {
    move |source| AtomicWriteError::Io { what, path: path.to_path_buf(), source }
}

/// Checks a payload path as upstream's `validatePath`: relative, no `..` element, not starting with `..`.
pub fn validate_path(path: &str) -> Result<(), AtomicWriteError> {
    let bad = |reason| Err(AtomicWriteError::InvalidPath { path: path.to_string(), reason });
    if path.is_empty() {
        return bad("must not be empty");
    }
    if path.len() > 4096 {
        return bad("must be less than or equal to 4096 characters");
    }
    if Path::new(path).is_absolute() {
        return bad("must be relative");
    }
    if path.starts_with("..") {
        return bad("must not start with '..'");
    }
    if Path::new(path).components().any(|c| matches!(c, Component::ParentDir)) {
        return bad("must not contain '..'");
    }
    Ok(())
}

/// The first component of a payload path: the name made visible in the volume's root.
fn top_level(path: &str) -> &str {
    path.split('/').find(|s| !s.is_empty() && *s != ".").unwrap_or(path)
}

/// Writes `payload` into `target_dir` atomically. Returns `false` when the current contents already equal the
/// payload (nothing is written), `true` when a new version was published. `fs_group`, when set, becomes the
/// group of every file (as the kubelet applies `fsGroup`).
pub fn write_payload(target_dir: &Path, payload: &Payload, fs_group: Option<u32>) -> Result<bool, AtomicWriteError> {
    for path in payload.keys() {
        validate_path(path)?;
    }
    std::fs::create_dir_all(target_dir).map_err(io_err("create", target_dir))?;
    let data_link = target_dir.join(DATA_DIR_NAME);
    let old_ts = std::fs::read_link(&data_link).ok();

    if let Some(old) = &old_ts
        && payload_matches(&target_dir.join(old), payload)
        && visible_links_match(target_dir, payload)
    {
        return Ok(false);
    }

    let ts_dir = new_timestamped_dir(target_dir)?;
    let ts_name = PathBuf::from(ts_dir.file_name().expect("a timestamped dir has a name"));
    if let Err(err) = write_files(&ts_dir, payload, fs_group) {
        let _ = std::fs::remove_dir_all(&ts_dir);
        return Err(err);
    }

    let tmp_link = target_dir.join(DATA_DIR_TMP_NAME);
    let _ = std::fs::remove_file(&tmp_link);
    symlink(&ts_name, &tmp_link).map_err(io_err("create symlink", &tmp_link))?;
    std::fs::rename(&tmp_link, &data_link).map_err(io_err("rename symlink into", &data_link))?;

    // User-visible names: one symlink per top-level entry, into `..data`.
    let wanted: BTreeSet<&str> = payload.keys().map(|p| top_level(p)).collect();
    for name in &wanted {
        let link = target_dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => {}
            Ok(_) => {
                // A real file or dir with a payload name (left by something else): replace it.
                remove_any(&link)?;
                symlink(Path::new(DATA_DIR_NAME).join(name), &link).map_err(io_err("create symlink", &link))?;
            }
            Err(_) => symlink(Path::new(DATA_DIR_NAME).join(name), &link).map_err(io_err("create symlink", &link))?,
        }
    }
    // Names of the old payload that the new one lacks.
    let entries = std::fs::read_dir(target_dir).map_err(io_err("read", target_dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("..") || wanted.contains(name.as_ref()) {
            continue;
        }
        remove_any(&entry.path())?;
    }
    if let Some(old) = old_ts
        && old != ts_name
    {
        let old_dir = target_dir.join(&old);
        if old.to_string_lossy().starts_with("..") && !old.is_absolute() {
            let _ = std::fs::remove_dir_all(&old_dir);
        }
    }
    Ok(true)
}

fn remove_any(path: &Path) -> Result<(), AtomicWriteError> {
    let meta = std::fs::symlink_metadata(path).map_err(io_err("stat", path))?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path).map_err(io_err("remove", path))
    } else {
        std::fs::remove_file(path).map_err(io_err("remove", path))
    }
}

/// `..YYYY_MM_DD_HH_MM_SS.<nanos>`, unique in `target_dir`, as upstream's `TempDir(target, "..<ts>.")`.
fn new_timestamped_dir(target_dir: &Path) -> Result<PathBuf, AtomicWriteError> {
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let base = format!("..{}", now.strftime("%Y_%m_%d_%H_%M_%S"));
    let nanos = now.subsec_nanosecond();
    for n in 0..1000u32 {
        let dir = target_dir.join(format!("{base}.{nanos:09}{n}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &dir))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(AtomicWriteError::Io { what: "create", path: dir, source: e }),
        }
    }
    Err(AtomicWriteError::Io {
        what: "create",
        path: target_dir.join(base),
        source: io::Error::new(io::ErrorKind::AlreadyExists, "no free timestamped directory name"),
    })
}

fn write_files(ts_dir: &Path, payload: &Payload, fs_group: Option<u32>) -> Result<(), AtomicWriteError> {
    for (rel, file) in payload {
        let path = ts_dir.join(rel);
        if let Some(parent) = path.parent()
            && parent != ts_dir
        {
            std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
            if let Some(gid) = fs_group {
                chown_group(parent, gid)?;
            }
        }
        std::fs::write(&path, &file.data).map_err(io_err("write", &path))?;
        if let Some(gid) = fs_group {
            chown_group(&path, gid)?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode & 0o7777))
            .map_err(io_err("chmod", &path))?;
    }
    Ok(())
}

fn chown_group(path: &Path, gid: u32) -> Result<(), AtomicWriteError> {
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err("chown", path))
}

/// Whether the timestamped dir holds exactly the payload (same files, bytes and modes).
fn payload_matches(dir: &Path, payload: &Payload) -> bool {
    let mut found = BTreeMap::new();
    if collect_files(dir, dir, &mut found).is_err() {
        return false;
    }
    found.len() == payload.len()
        && payload
            .iter()
            .all(|(rel, f)| found.get(rel).is_some_and(|(data, mode)| data == &f.data && *mode == f.mode & 0o7777))
}

fn visible_links_match(target_dir: &Path, payload: &Payload) -> bool {
    let wanted: BTreeSet<&str> = payload.keys().map(|p| top_level(p)).collect();
    let Ok(entries) = std::fs::read_dir(target_dir) else { return false };
    let mut seen = BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        if !wanted.contains(name.as_str()) {
            return false;
        }
        seen.insert(name);
    }
    seen.len() == wanted.len()
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let path = entry.path();
        if meta.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).map_err(io::Error::other)?.to_string_lossy().into_owned();
            out.insert(rel, (std::fs::read(&path)?, meta.permissions().mode() & 0o7777));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(s: &str, mode: u32) -> FileProjection {
        FileProjection { data: s.as_bytes().to_vec(), mode }
    }

    #[test]
    fn writes_swaps_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vol");
        let mut p = Payload::new();
        p.insert("a".into(), file("one", 0o644));
        p.insert("sub/b".into(), file("two", 0o600));
        assert!(write_payload(&target, &p, None).unwrap());
        let first = std::fs::read_link(target.join(DATA_DIR_NAME)).unwrap();
        assert_eq!(std::fs::read_to_string(target.join("a")).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(target.join("sub/b")).unwrap(), "two");
        assert_eq!(std::fs::read_link(target.join("a")).unwrap(), Path::new("..data/a"));
        let mode = std::fs::metadata(target.join("sub/b")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Same payload: nothing written.
        assert!(!write_payload(&target, &p, None).unwrap());
        assert_eq!(std::fs::read_link(target.join(DATA_DIR_NAME)).unwrap(), first);

        // New payload: `a` changes, `sub` goes away, `c` appears; the old dir is removed.
        let mut q = Payload::new();
        q.insert("a".into(), file("uno", 0o644));
        q.insert("c".into(), file("three", 0o644));
        assert!(write_payload(&target, &q, None).unwrap());
        let second = std::fs::read_link(target.join(DATA_DIR_NAME)).unwrap();
        assert_ne!(first, second);
        assert!(!target.join(&first).exists());
        assert_eq!(std::fs::read_to_string(target.join("a")).unwrap(), "uno");
        assert_eq!(std::fs::read_to_string(target.join("c")).unwrap(), "three");
        assert!(std::fs::symlink_metadata(target.join("sub")).is_err());
        let names: BTreeSet<String> = std::fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let expected: BTreeSet<String> =
            ["..data", "a", "c", second.to_str().unwrap()].into_iter().map(String::from).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn refuses_escaping_paths() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "..x", ""] {
            assert!(validate_path(bad).is_err(), "{bad} should be refused");
        }
        assert!(validate_path("a/b.c").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let mut p = Payload::new();
        p.insert("../evil".into(), file("x", 0o644));
        let err = write_payload(dir.path(), &p, None).unwrap_err();
        assert!(err.to_string().contains("must not"), "{err}");
        assert!(!dir.path().parent().unwrap().join("evil").exists());
    }
}
