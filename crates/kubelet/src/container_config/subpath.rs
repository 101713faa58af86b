//! `subPath` and `subPathExpr` of a volume mount: checked against escapes and created inside the volume
//! (as the kubelet's `makeMounts` with `ValidatePathNoBacksteps` and the subpath safe-mkdir).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The host path of `sub_path` inside `volume_path`, created as directories when missing (with the volume's
/// own mode). Refuses absolute paths, `..` elements and symlinks that lead out of the volume. The error is
/// the reason, without the mount's name.
pub fn prepare_subpath(volume_path: &Path, sub_path: &str) -> Result<PathBuf, String> {
    let rel = Path::new(sub_path);
    if rel.is_absolute() {
        return Err(format!("error SubPath `{sub_path}` must not be an absolute path"));
    }
    if rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("unable to provision SubPath `{sub_path}`: must not contain '..'"));
    }
    let root = volume_path
        .canonicalize()
        .map_err(|e| format!("failed to resolve volume path {}: {e}", volume_path.display()))?;
    let mode = std::fs::metadata(&root).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o755);
    let mut current = root.clone();
    for comp in rel.components() {
        let Component::Normal(name) = comp else { continue };
        let next = current.join(name);
        match std::fs::symlink_metadata(&next) {
            Ok(_) => {
                let resolved =
                    next.canonicalize().map_err(|e| format!("failed to resolve subpath {}: {e}", next.display()))?;
                if !resolved.starts_with(&root) {
                    return Err(format!(
                        "subpath {:?} not within volume path {:?}",
                        resolved.display().to_string(),
                        root.display().to_string()
                    ));
                }
                current = resolved;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .mode(mode)
                    .create(&next)
                    .map_err(|e| format!("failed to create subpath {}: {e}", next.display()))?;
                // The umask may have narrowed the mode.
                let _ = std::fs::set_permissions(&next, std::fs::Permissions::from_mode(mode));
                current = next;
            }
            Err(e) => return Err(format!("failed to check subpath {}: {e}", next.display())),
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_missing_dirs_inside_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let p = prepare_subpath(dir.path(), "a/b").unwrap();
        assert!(p.is_dir());
        assert!(p.starts_with(dir.path().canonicalize().unwrap()));
        // An existing file is fine (a file subPath).
        std::fs::write(dir.path().join("f.conf"), "x").unwrap();
        assert!(prepare_subpath(dir.path(), "f.conf").unwrap().is_file());
    }

    #[test]
    fn refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        let err = prepare_subpath(&vol, "../x").unwrap_err();
        assert!(err.contains("must not contain '..'"), "{err}");
        assert!(prepare_subpath(&vol, "a/../../x").is_err());
        let err = prepare_subpath(&vol, "/etc").unwrap_err();
        assert!(err.contains("absolute"), "{err}");
        // A symlink inside the volume pointing out of it.
        std::os::unix::fs::symlink(dir.path(), vol.join("out")).unwrap();
        let err = prepare_subpath(&vol, "out/x").unwrap_err();
        assert!(err.contains("not within volume path"), "{err}");
        assert!(!dir.path().join("x").exists());
    }
}
