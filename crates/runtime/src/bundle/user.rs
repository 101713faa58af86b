//! Resolution of a container's user (uid, gid, supplementary groups) from Kubernetes' runAsUser/runAsGroup and
//! the image's `User`, looking names up in the rootfs's `/etc/passwd` and `/etc/group` without leaving it.

use std::path::{Component, Path, PathBuf};

use super::{BundleError, UserConfig};

/// The identity the container process runs as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the user's memberships in `/etc/group`, then the pod's supplemental groups.
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves the user as containerd's CRI does with the kubelet's inputs:
/// - `run_as_username` or `run_as_user` replace the image's user part (the image's group goes with it);
/// - `run_as_group` replaces the group; otherwise the image's group part, otherwise the user's primary group from
///   `/etc/passwd`, otherwise 0;
/// - image `User` forms: `uid`, `name`, `uid:gid`, `name:group`, `uid:group`, `name:gid`.
///
/// Names that are not in the rootfs's files are an error; numeric ids need no entry.
pub fn resolve_user(user: &UserConfig, image_user: &str, rootfs: &Path) -> Result<ResolvedUser, BundleError> {
    let (image_user_part, image_group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u.trim(), Some(g.trim())),
        None => (image_user.trim(), None),
    };
    let overridden = user.run_as_username.is_some() || user.run_as_user.is_some();
    let user_part: String = match (&user.run_as_username, user.run_as_user) {
        (Some(name), _) => name.clone(),
        (None, Some(uid)) => uid.to_string(),
        (None, None) => image_user_part.to_string(),
    };
    let group_part: Option<String> = match user.run_as_group {
        Some(gid) => Some(gid.to_string()),
        None if overridden => None,
        None => image_group_part.filter(|g| !g.is_empty()).map(str::to_string),
    };

    let entries = read_passwd(rootfs)?;

    let (uid, entry) = if user_part.is_empty() {
        (0, entries.iter().find(|e| e.uid == 0))
    } else if let Ok(uid) = user_part.parse::<u32>() {
        (uid, entries.iter().find(|e| e.uid == uid))
    } else {
        let entry = entries
            .iter()
            .find(|e| e.name == user_part)
            .ok_or_else(|| BundleError::UnknownUser {
                name: user_part.clone(),
                rootfs: rootfs.to_path_buf(),
            })?;
        (entry.uid, Some(entry))
    };

    let groups = read_group(rootfs)?;
    let gid = match &group_part {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                groups
                    .iter()
                    .find(|e| &e.name == g)
                    .ok_or_else(|| BundleError::UnknownGroup {
                        name: g.clone(),
                        rootfs: rootfs.to_path_buf(),
                    })?
                    .gid
            }
        },
        None => entry.map_or(0, |e| e.gid),
    };

    let mut additional_gids = Vec::new();
    if let Some(entry) = entry {
        for group in &groups {
            if group.members.iter().any(|m| m == &entry.name) && !additional_gids.contains(&group.gid) {
                additional_gids.push(group.gid);
            }
        }
    }
    for &g in &user.supplemental_groups {
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

fn read_passwd(rootfs: &Path) -> Result<Vec<PasswdEntry>, BundleError> {
    let Some(text) = read_in_rootfs(rootfs, "etc/passwd")? else {
        return Ok(Vec::new());
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.to_string();
            let _password = f.next()?;
            let uid = f.next()?.trim().parse().ok()?;
            let gid = f.next()?.trim().parse().ok()?;
            Some(PasswdEntry { name, uid, gid })
        })
        .collect())
}

fn read_group(rootfs: &Path) -> Result<Vec<GroupEntry>, BundleError> {
    let Some(text) = read_in_rootfs(rootfs, "etc/group")? else {
        return Ok(Vec::new());
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.to_string();
            let _password = f.next()?;
            let gid = f.next()?.trim().parse().ok()?;
            let members = f
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            Some(GroupEntry { name, gid, members })
        })
        .collect())
}

/// Reads `rel` inside `rootfs`, following symlinks as if `rootfs` were `/` so an image cannot point the lookup
/// at the host's files. A missing file is `None`.
fn read_in_rootfs(rootfs: &Path, rel: &str) -> Result<Option<String>, BundleError> {
    let Some(path) = resolve_in_root(rootfs, Path::new(rel))? else {
        return Ok(None);
    };
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BundleError::Read { path, source }),
    }
}

/// The host path of `rel` inside `root`, with every symlink resolved relative to `root`. `None` if a
/// component does not exist.
fn resolve_in_root(root: &Path, rel: &Path) -> Result<Option<PathBuf>, BundleError> {
    const MAX_LINKS: usize = 40;
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    // Components left to right; a symlink's target is spliced in front of the remaining ones.
    let mut queue: std::collections::VecDeque<std::ffi::OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    while let Some(part) = queue.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&part);
        let meta = match std::fs::symlink_metadata(&candidate) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(BundleError::Read {
                    path: candidate,
                    source,
                })
            }
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(BundleError::SymlinkLoop(candidate));
            }
            let target = std::fs::read_link(&candidate).map_err(|source| BundleError::Read {
                path: candidate.clone(),
                source,
            })?;
            if target.is_absolute() {
                resolved.clear();
            }
            let parts: Vec<std::ffi::OsString> = target
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_os_string()),
                    Component::ParentDir => Some("..".into()),
                    _ => None,
                })
                .collect();
            for p in parts.into_iter().rev() {
                queue.push_front(p);
            }
        } else {
            resolved.push(part);
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\nnobody:x:65534:65534:nobody:/:/bin/false\n\
             app:x:1000:1001:app:/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:root,app\nappgrp:x:1001:\nvideo:x:44:app\nnogroup:x:65534:\n",
        )
        .unwrap();
        dir
    }

    fn ids(u: &ResolvedUser) -> (u32, u32, Vec<u32>) {
        (u.uid, u.gid, u.additional_gids.clone())
    }

    #[test]
    fn image_user_forms() {
        let r = rootfs();
        let none = UserConfig::default();
        assert_eq!(ids(&resolve_user(&none, "", r.path()).unwrap()), (0, 0, vec![10]));
        assert_eq!(
            ids(&resolve_user(&none, "app", r.path()).unwrap()),
            (1000, 1001, vec![10, 44])
        );
        assert_eq!(
            ids(&resolve_user(&none, "1000", r.path()).unwrap()),
            (1000, 1001, vec![10, 44])
        );
        assert_eq!(
            ids(&resolve_user(&none, "app:video", r.path()).unwrap()),
            (1000, 44, vec![10, 44])
        );
        assert_eq!(
            ids(&resolve_user(&none, "1000:7", r.path()).unwrap()),
            (1000, 7, vec![10, 44])
        );
        assert_eq!(ids(&resolve_user(&none, "4242", r.path()).unwrap()), (4242, 0, vec![]));
        assert_eq!(
            ids(&resolve_user(&none, "4242:nogroup", r.path()).unwrap()),
            (4242, 65534, vec![])
        );
    }

    #[test]
    fn security_context_overrides_image_user() {
        let r = rootfs();
        let uid_only = UserConfig {
            run_as_user: Some(65534),
            ..Default::default()
        };
        assert_eq!(
            ids(&resolve_user(&uid_only, "app:video", r.path()).unwrap()),
            (65534, 65534, vec![])
        );
        let group_only = UserConfig {
            run_as_group: Some(5),
            ..Default::default()
        };
        assert_eq!(
            ids(&resolve_user(&group_only, "app:video", r.path()).unwrap()),
            (1000, 5, vec![10, 44])
        );
        let both = UserConfig {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: vec![2000, 44],
            ..Default::default()
        };
        assert_eq!(
            ids(&resolve_user(&both, "", r.path()).unwrap()),
            (1000, 3000, vec![10, 44, 2000])
        );
        let by_name = UserConfig {
            run_as_username: Some("app".into()),
            ..Default::default()
        };
        assert_eq!(
            ids(&resolve_user(&by_name, "root", r.path()).unwrap()),
            (1000, 1001, vec![10, 44])
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        let r = rootfs();
        let none = UserConfig::default();
        assert!(matches!(
            resolve_user(&none, "ghost", r.path()),
            Err(BundleError::UnknownUser { .. })
        ));
        assert!(matches!(
            resolve_user(&none, "app:ghosts", r.path()),
            Err(BundleError::UnknownGroup { .. })
        ));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            ids(&resolve_user(&none, "123:456", empty.path()).unwrap()),
            (123, 456, vec![])
        );
        assert!(resolve_user(&none, "app", empty.path()).is_err(), "no /etc/passwd");
    }

    #[test]
    fn symlinks_stay_inside_the_rootfs() {
        let r = rootfs();
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        let fake = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(fake.path().join("real")).unwrap();
        std::fs::copy(r.path().join("etc/passwd"), fake.path().join("real/passwd")).unwrap();
        std::fs::write(fake.path().join("real/group"), "").unwrap();
        // /etc -> /real (absolute, must resolve inside the rootfs), and an escape attempt through ../..
        std::os::unix::fs::symlink("/real", fake.path().join("etc")).unwrap();
        let none = UserConfig::default();
        assert_eq!(resolve_user(&none, "app", fake.path()).unwrap().uid, 1000);
        std::fs::remove_file(fake.path().join("real/passwd")).unwrap();
        let escape = format!("../../../../../../..{}", outer.path().join("passwd").display());
        std::os::unix::fs::symlink(escape, fake.path().join("real/passwd")).unwrap();
        assert!(matches!(
            resolve_user(&none, "evil", fake.path()),
            Err(BundleError::UnknownUser { .. })
        ));
    }
}
