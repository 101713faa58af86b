//! Unpacking one layer tar into its own directory, turning OCI whiteouts into overlayfs's form.
//!
//! Every layer is unpacked on its own (into an empty directory) and the layers are stacked by overlayfs
//! later, so OCI whiteouts cannot be applied by deleting files. Instead:
//! - `.wh.<name>` becomes a character device 0/0 named `<name>` (an overlayfs whiteout), and
//! - `.wh..wh..opq` sets the `trusted.overlay.opaque=y` xattr on its directory.
//!
//! Both need privileges (CAP_MKNOD, CAP_SYS_ADMIN for `trusted.*`). When they are not available (not root,
//! or a filesystem without trusted xattrs), the whiteout is recorded in the returned list instead (the store
//! keeps it in a `whiteouts.json` sidecar next to the layer) and the layer cannot be stacked faithfully by a
//! plain overlayfs mount; the caller sees the recorded whiteouts in `ResolvedImage::recorded_whiteouts`.
//!
//! Writing never follows a symlink: an entry whose parent path goes through a symlink or a non-directory is
//! rejected, `..` components are rejected, absolute paths are taken relative to the layer root, and files are
//! opened with `O_NOFOLLOW | O_EXCL`. Symlinks are created as they are (never followed); hardlink targets
//! must be inside the layer.

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What kind of whiteout a layer carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhiteoutKind {
    /// `.wh.<name>`: the path is deleted from lower layers.
    Remove,
    /// `.wh..wh..opq`: the directory hides the content of the same directory in lower layers.
    Opaque,
}

/// A whiteout that could not be represented the overlayfs way, with its path relative to the layer root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedWhiteout {
    pub path: String,
    pub kind: WhiteoutKind,
}

/// Normalises a path from a tar entry: drops a leading `/` and `.` components, rejects `..`.
pub(crate) fn clean_path(raw: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for c in raw.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(format!("entry {} contains a '..' component", raw.display()));
            }
            Component::Normal(n) => out.push(PathBuf::from(n)),
        }
    }
    Ok(out)
}

/// Walks `parts` below `root` without following symlinks, creating missing directories when `create`.
fn walk_dirs(
    root: &Path,
    parts: &[PathBuf],
    entry: &Path,
    create: bool,
) -> Result<PathBuf, String> {
    let mut cur = root.to_path_buf();
    for p in parts {
        cur.push(p);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "entry {} would be written through the symlink {}",
                    entry.display(),
                    rel(root, &cur)
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "entry {} has the non-directory {} as a parent",
                    entry.display(),
                    rel(root, &cur)
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&cur)
                    .map_err(|e| format!("failed to create directory {}: {e}", rel(root, &cur)))?;
            }
            Err(e) => {
                return Err(format!(
                    "failed to look at {} for entry {}: {e}",
                    rel(root, &cur),
                    entry.display()
                ));
            }
        }
    }
    Ok(cur)
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Removes whatever is at `path` (without following it), if anything.
fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn mknod(path: &Path, mode: libc::mode_t, major: u32, minor: u32) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated path; mknod has no other memory effects.
    let rc = unsafe { libc::mknod(c.as_ptr(), mode, libc::makedev(major, minor)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c = cpath(path)?;
    let n = CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "xattr name contains a NUL byte",
        )
    })?;
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_mtime(path: &Path, secs: u64) -> io::Result<()> {
    let c = cpath(path)?;
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: valid path and a two-element timespec array, as utimensat requires.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unpacks the layer tar read from `reader` into the empty directory `dest`. `privileged` means running as
/// root: ownership, device nodes, xattrs and overlayfs whiteouts are then written. Returns the whiteouts
/// that had to be recorded instead of represented.
pub(crate) fn unpack_layer<R: Read>(
    reader: R,
    dest: &Path,
    privileged: bool,
) -> Result<Vec<RecordedWhiteout>, String> {
    let mut archive = tar::Archive::new(reader);
    let mut recorded = Vec::new();
    let mut dirs: Vec<(PathBuf, u32, u64)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| format!("failed to read the layer tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("failed to read the layer tar: {e}"))?;
        let raw = entry
            .path()
            .map_err(|e| format!("failed to read an entry path: {e}"))?
            .into_owned();
        let parts = clean_path(&raw)?;
        let Some((name, parents)) = parts.split_last() else {
            continue;
        };
        let name_bytes = name.as_os_str().as_bytes();
        let header = entry.header().clone();
        let kind = header.entry_type();

        if let Some(rest) = name_bytes.strip_prefix(b".wh.") {
            let parent = walk_dirs(dest, parents, &raw, true)?;
            if rest == b".wh..opq" {
                let recorded_path = rel(dest, &parent);
                if !privileged || lsetxattr(&parent, "trusted.overlay.opaque", b"y").is_err() {
                    recorded.push(RecordedWhiteout {
                        path: recorded_path,
                        kind: WhiteoutKind::Opaque,
                    });
                }
            } else if !rest.starts_with(b".wh.") && !rest.is_empty() {
                let target = parent.join(std::ffi::OsStr::from_bytes(rest));
                remove_existing(&target).map_err(|e| {
                    format!(
                        "failed to replace {} with a whiteout: {e}",
                        rel(dest, &target)
                    )
                })?;
                if !privileged || mknod(&target, libc::S_IFCHR, 0, 0).is_err() {
                    recorded.push(RecordedWhiteout {
                        path: rel(dest, &target),
                        kind: WhiteoutKind::Remove,
                    });
                }
            }
            continue;
        }

        let parent = walk_dirs(dest, parents, &raw, true)?;
        let target = parent.join(name);
        let existing = fs::symlink_metadata(&target).ok();
        let keep_dir = kind.is_dir() && existing.as_ref().is_some_and(|m| m.file_type().is_dir());
        if existing.is_some() && !keep_dir {
            remove_existing(&target)
                .map_err(|e| format!("failed to replace {}: {e}", raw.display()))?;
        }
        let mode = header
            .mode()
            .map_err(|e| format!("entry {} has a bad mode: {e}", raw.display()))?
            & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let xattrs: Vec<(String, Vec<u8>)> = if privileged {
            match entry.pax_extensions() {
                Ok(Some(exts)) => exts
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let key = e.key().ok()?;
                        key.strip_prefix("SCHILY.xattr.")
                            .map(|k| (k.to_string(), e.value_bytes().to_vec()))
                    })
                    .collect(),
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };

        let fail = |what: &str, e: io::Error| format!("failed to {what} {}: {e}", raw.display());
        let mut set_meta = true;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(|e| fail("create file", e))?;
                io::copy(&mut entry, &mut file).map_err(|e| fail("write file", e))?;
            }
            tar::EntryType::Directory => {
                if !keep_dir {
                    fs::create_dir(&target).map_err(|e| fail("create directory", e))?;
                }
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| fail("read the link target of", e))?
                    .ok_or_else(|| format!("symlink {} has no target", raw.display()))?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|e| fail("create symlink", e))?;
                if privileged {
                    let _ = std::os::unix::fs::lchown(
                        &target,
                        header.uid().ok().map(|u| u as u32),
                        header.gid().ok().map(|g| g as u32),
                    );
                }
                let _ = set_mtime(&target, mtime);
                set_meta = false;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| fail("read the link target of", e))?
                    .ok_or_else(|| format!("hardlink {} has no target", raw.display()))?
                    .into_owned();
                let lparts = clean_path(&link)?;
                let Some((lname, lparents)) = lparts.split_last() else {
                    return Err(format!(
                        "hardlink {} points at the layer root",
                        raw.display()
                    ));
                };
                let lparent = walk_dirs(dest, lparents, &link, false)?;
                let source = lparent.join(lname);
                match fs::symlink_metadata(&source) {
                    Ok(m) if !m.file_type().is_dir() => {}
                    _ => {
                        return Err(format!(
                            "hardlink {} points at {} which is not a file earlier in the layer",
                            raw.display(),
                            link.display()
                        ));
                    }
                }
                fs::hard_link(&source, &target).map_err(|e| fail("create hardlink", e))?;
                set_meta = false;
            }
            tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
                let fmt = match kind {
                    tar::EntryType::Fifo => libc::S_IFIFO,
                    tar::EntryType::Char => libc::S_IFCHR,
                    _ => libc::S_IFBLK,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                if let Err(e) = mknod(&target, fmt | 0o600, major, minor) {
                    if privileged || kind == tar::EntryType::Fifo {
                        return Err(fail("create device node", e));
                    }
                    tracing::warn!(entry = %raw.display(), "skipping a device node: creating it needs root");
                    continue;
                }
            }
            // PAX/GNU headers are applied by the tar crate; anything else carries nothing to write.
            _ => continue,
        }
        if !set_meta {
            continue;
        }
        if privileged {
            let uid = header
                .uid()
                .map_err(|e| fail("read the owner of", io::Error::other(e)))?
                as u32;
            let gid = header
                .gid()
                .map_err(|e| fail("read the group of", io::Error::other(e)))?
                as u32;
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                .map_err(|e| fail("change the owner of", e))?;
            for (k, v) in &xattrs {
                if let Err(e) = lsetxattr(&target, k, v) {
                    tracing::warn!(entry = %raw.display(), xattr = %k, error = %e, "could not set an xattr");
                }
            }
        }
        if kind.is_dir() {
            dirs.push((target, mode, mtime));
        } else {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(|e| fail("set the mode of", e))?;
            let _ = set_mtime(&target, mtime);
        }
    }
    // Directory modes and times last, deepest first: a read-only directory must not block its children.
    for (dir, mode, mtime) in dirs.iter().rev() {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(*mode))
            .map_err(|e| format!("failed to set the mode of {}: {e}", rel(dest, dir)))?;
        let _ = set_mtime(dir, *mtime);
    }
    Ok(recorded)
}
