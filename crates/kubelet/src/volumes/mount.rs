//! tmpfs mounts for memory-backed volumes and unmounting whatever lies under a pod's directory.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with NUL"))
}

/// Mounts a tmpfs of `size_bytes` (none: the kernel's default, half of RAM) at `target`.
pub fn mount_tmpfs(target: &Path, size_bytes: Option<i64>) -> io::Result<()> {
    let source = CString::new("tmpfs").expect("static");
    let fstype = CString::new("tmpfs").expect("static");
    let mut opts = String::from("mode=0777");
    if let Some(size) = size_bytes.filter(|s| *s > 0) {
        opts.push_str(&format!(",size={size}"));
    }
    let data = CString::new(opts).expect("no NUL");
    let target = cstr(target)?;
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts `target`; a busy mount is detached lazily.
pub fn unmount(target: &Path) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: `t` is a valid NUL-terminated path.
    if unsafe { libc::umount2(t.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EBUSY) {
        // SAFETY: as above.
        if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
        return Err(io::Error::last_os_error());
    }
    Err(err)
}

/// Decodes the octal escapes (`\040`) of a mountinfo path.
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// Mount points of this mount namespace at or below `root`, deepest first.
pub fn mounts_under(root: &Path) -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut found: Vec<PathBuf> =
        text.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape).filter(|p| p.starts_with(root)).collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// Whether `path` is a mount point (listed in mountinfo).
pub fn is_mount_point(path: &Path) -> bool {
    mounts_under(path).map(|m| m.iter().any(|p| p == path)).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape("/var/lib/my\\040dir"), PathBuf::from("/var/lib/my dir"));
        assert_eq!(unescape("/a\\011b\\134c"), PathBuf::from("/a\tb\\c"));
        assert_eq!(unescape("/plain\\"), PathBuf::from("/plain\\"));
    }
}
