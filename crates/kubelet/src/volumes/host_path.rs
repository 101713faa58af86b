//! hostPath volumes: the `type` checks and creations of Kubernetes' hostPath plugin, with its messages.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::VolumeError;

fn check_failed(msg: String) -> VolumeError {
    VolumeError::HostPathType(msg)
}

/// Checks (and for `DirectoryOrCreate` / `FileOrCreate` creates) `path` per `type_`; returns the path to mount.
pub fn prepare(path: &str, type_: Option<&str>) -> Result<PathBuf, VolumeError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(VolumeError::Invalid(format!("hostPath {path:?} must be an absolute path")));
    }
    let meta = std::fs::metadata(p);
    match type_.unwrap_or("") {
        // No type: no checks. A missing path becomes a directory, as containerd's CRI does for bind mounts.
        "" => {
            if meta.is_err() && std::fs::symlink_metadata(p).is_err() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(p)
                    .map_err(|e| VolumeError::Invalid(format!("failed to create hostPath {path}: {e}")))?;
            }
        }
        "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(check_failed(format!("{path} is not a directory"))),
            Err(_) => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(p)
                    .map_err(|e| check_failed(format!("{path} does not exist and could not be created: {e}")))?;
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
            }
        },
        "Directory" => match meta {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(check_failed(format!("{path} is not a directory"))),
            Err(_) => return Err(check_failed(format!("{path} is not a directory"))),
        },
        "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(check_failed(format!("{path} is not a file"))),
            Err(_) => {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o644)
                    .open(p)
                    .map_err(|e| check_failed(format!("{path} does not exist and could not be created: {e}")))?;
            }
        },
        "File" => match meta {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(check_failed(format!("{path} is not a file"))),
            Err(_) => return Err(check_failed(format!("{path} is not a file"))),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => {}
            Ok(_) => return Err(check_failed(format!("{path} is not a socket file"))),
            Err(_) => return Err(check_failed(format!("{path} is not a socket file"))),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => {}
            Ok(_) => return Err(check_failed(format!("{path} is not a character device"))),
            Err(_) => return Err(check_failed(format!("{path} is not a character device"))),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => {}
            Ok(_) => return Err(check_failed(format!("{path} is not a block device"))),
            Err(_) => return Err(check_failed(format!("{path} is not a block device"))),
        },
        other => return Err(VolumeError::Invalid(format!("{other} is an invalid volume type"))),
    }
    Ok(p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<PathBuf, VolumeError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn type_checks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        let f = f.to_str().unwrap().to_string();

        assert!(prepare(&d, None).is_ok());
        assert!(prepare(&format!("{d}/missing"), Some("")).is_ok(), "no type: no check");
        assert!(dir.path().join("missing").is_dir(), "a missing untyped hostPath is created as a directory");
        assert!(prepare(&f, None).is_ok(), "no type: a file is fine too");
        assert!(prepare(&d, Some("Directory")).is_ok());
        assert_eq!(msg(prepare(&f, Some("Directory"))), format!("hostPath type check failed: {f} is not a directory"));
        assert_eq!(
            msg(prepare(&format!("{d}/nope"), Some("Directory"))),
            format!("hostPath type check failed: {d}/nope is not a directory")
        );
        assert!(prepare(&f, Some("File")).is_ok());
        assert_eq!(msg(prepare(&d, Some("File"))), format!("hostPath type check failed: {d} is not a file"));
        assert_eq!(msg(prepare(&f, Some("Socket"))), format!("hostPath type check failed: {f} is not a socket file"));
        assert_eq!(
            msg(prepare(&f, Some("CharDevice"))),
            format!("hostPath type check failed: {f} is not a character device")
        );
        assert!(prepare("/dev/null", Some("CharDevice")).is_ok());
        assert_eq!(
            msg(prepare(&f, Some("BlockDevice"))),
            format!("hostPath type check failed: {f} is not a block device")
        );
        assert_eq!(msg(prepare(&d, Some("Weird"))), "Weird is an invalid volume type");
        assert!(msg(prepare("rel/path", None)).contains("absolute"));
    }

    #[test]
    fn creates_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let nd = dir.path().join("a/b");
        prepare(nd.to_str().unwrap(), Some("DirectoryOrCreate")).unwrap();
        assert!(nd.is_dir());
        let nf = dir.path().join("a/d.txt");
        prepare(nf.to_str().unwrap(), Some("FileOrCreate")).unwrap();
        assert!(nf.is_file());
        let err = msg(prepare(nf.to_str().unwrap(), Some("DirectoryOrCreate")));
        assert!(err.ends_with("is not a directory"), "{err}");
    }

    #[test]
    fn socket_check() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&s).unwrap();
        assert!(prepare(s.to_str().unwrap(), Some("Socket")).is_ok());
    }
}
