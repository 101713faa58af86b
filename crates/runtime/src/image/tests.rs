//! Tests of the image store with archives built here: OCI layouts and docker archives, whiteouts, sharing,
//! removal, digest checks and hostile layer entries.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::Result;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::*;

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a str, u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// A tar header with the name written raw, so hostile names (`..`, absolute) can be built.
fn header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let bytes = name.as_bytes();
    h.as_gnu_mut().unwrap().name[..bytes.len()].copy_from_slice(bytes);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(p) => {
                let mut h = header(p, tar::EntryType::Directory, 0, 0o755);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::File(p, content, mode) => {
                let mut h = header(p, tar::EntryType::Regular, content.len() as u64, *mode);
                h.set_cksum();
                b.append(&h, content.as_bytes()).unwrap();
            }
            E::Symlink(p, target) | E::Hardlink(p, target) => {
                let kind = if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = header(p, kind, 0, 0o777);
                let t = target.as_bytes();
                h.as_gnu_mut().unwrap().linkname[..t.len()].copy_from_slice(t);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn base_layer() -> Vec<u8> {
    layer(&[
        E::Dir("etc/"),
        E::File("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
        E::File("etc/gone", "to be deleted", 0o644),
        E::Dir("opq/"),
        E::File("opq/old", "old", 0o600),
        E::Dir("bin/"),
        E::File("bin/sh", "#!shell", 0o755),
        E::Symlink("bin/link", "sh"),
        E::Hardlink("bin/hard", "bin/sh"),
    ])
}

fn whiteout_layer() -> Vec<u8> {
    layer(&[
        E::File("etc/.wh.gone", "", 0o644),
        E::File("opq/.wh..wh..opq", "", 0o644),
        E::File("opq/new", "new", 0o644),
        E::File("etc/added", "added", 0o644),
    ])
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn config(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sh"],
            "Cmd": ["-c", "echo hi"],
            "Env": ["PATH=/bin"],
            "WorkingDir": "/work",
            "User": "1000:1000"
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap()
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = header(name, tar::EntryType::Regular, data.len() as u64, 0o644);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// Options for the OCI layout built by `oci_archive`.
struct Oci<'a> {
    annotations: serde_json::Value,
    layers: Vec<Vec<u8>>,
    /// Replaces the stored bytes of layer N (the manifest keeps the original digest).
    tamper_layer: Option<usize>,
    /// Diff IDs written in the config instead of the real ones.
    diff_ids: Option<Vec<String>>,
    media_type: &'a str,
}

fn oci_archive(dir: &Path, file: &str, o: Oci) -> std::path::PathBuf {
    let real_diff_ids: Vec<String> = o.layers.iter().map(|l| sha(l)).collect();
    let cfg = config(o.diff_ids.as_ref().unwrap_or(&real_diff_ids));
    let blobs: Vec<Vec<u8>> = o.layers.iter().map(|l| gzip(l)).collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&cfg), "size": cfg.len()},
        "layers": blobs.iter().map(|b| json!({"mediaType": o.media_type, "digest": sha(b), "size": b.len()})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&manifest),
                       "size": manifest.len(), "annotations": o.annotations}],
    }))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add_file(&mut b, "index.json", &index);
    add_file(
        &mut b,
        &format!("blobs/sha256/{}", &sha(&manifest)[7..]),
        &manifest,
    );
    add_file(&mut b, &format!("blobs/sha256/{}", &sha(&cfg)[7..]), &cfg);
    for (i, blob) in blobs.iter().enumerate() {
        let data = if o.tamper_layer == Some(i) {
            gzip(b"not the layer")
        } else {
            blob.clone()
        };
        add_file(&mut b, &format!("blobs/sha256/{}", &sha(blob)[7..]), &data);
    }
    let path = dir.join(file);
    fs::write(&path, b.into_inner().unwrap()).unwrap();
    path
}

fn oci(name: &str, layers: Vec<Vec<u8>>) -> Oci<'static> {
    Oci {
        annotations: json!({"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "1"}),
        layers,
        tamper_layer: None,
        diff_ids: None,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
    }
}

/// A `docker save` archive with uncompressed layers; `missing_layer` names a layer not put in the tar.
fn docker_archive(
    dir: &Path,
    file: &str,
    tags: &[&str],
    layers: &[Vec<u8>],
    missing_layer: bool,
) -> std::path::PathBuf {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let cfg = config(&diff_ids);
    let cfg_name = format!("{}.json", &sha(&cfg)[7..]);
    let mut layer_names: Vec<String> = layers
        .iter()
        .map(|l| format!("{}/layer.tar", &sha(l)[7..19]))
        .collect();
    if missing_layer {
        layer_names.push("deadbeef/layer.tar".into());
    }
    let manifest =
        serde_json::to_vec(&json!([{"Config": cfg_name, "RepoTags": tags, "Layers": layer_names}]))
            .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, "manifest.json", &manifest);
    add_file(&mut b, &cfg_name, &cfg);
    for (l, n) in layers.iter().zip(&layer_names) {
        add_file(&mut b, n, l);
    }
    let path = dir.join(file);
    fs::write(&path, b.into_inner().unwrap()).unwrap();
    path
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).unwrap().count()
}

fn assert_empty_store(root: &Path) {
    assert_eq!(count(&root.join("blobs/sha256")), 0, "no blob may remain");
    assert_eq!(count(&root.join("layers")), 0, "no layer may remain");
    assert_eq!(count(&root.join("tmp")), 0, "no staging may remain");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn opaque_xattr(path: &Path) -> Option<Vec<u8>> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let name = c"trusted.overlay.opaque";
    let mut buf = [0u8; 16];
    // SAFETY: valid C strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[test]
fn imports_oci_and_docker_archives_and_shares_layers() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("store");
    let store = ImageStore::open(&root)?;
    let oci_path = oci_archive(
        tmp.path(),
        "oci.tar",
        oci(
            "docker.io/library/app:1",
            vec![base_layer(), whiteout_layer()],
        ),
    );
    let refs = store.import_archive(&oci_path)?;
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name, "docker.io/library/app:1");
    let docker_path = docker_archive(
        tmp.path(),
        "docker.tar",
        &["app2"],
        &[base_layer(), whiteout_layer()],
        false,
    );
    let refs2 = store.import_archive(&docker_path)?;
    assert_eq!(refs2[0].name, "docker.io/library/app2:latest");

    let a = store.resolve("app:1").expect("app:1 resolves");
    let b = store
        .resolve("docker.io/library/app2:latest")
        .expect("app2 resolves");
    assert_eq!(
        a.layers, b.layers,
        "both images use the same unpacked layers"
    );
    assert_eq!(a.layers.len(), 2);
    assert_eq!(count(&root.join("layers")), 2, "each layer unpacked once");
    let proc = a.config.config().as_ref().expect("process config");
    assert_eq!(
        proc.entrypoint().as_deref(),
        Some(&["/bin/sh".to_string()][..])
    );
    assert_eq!(proc.cmd().as_ref().unwrap().len(), 2);
    assert_eq!(proc.env().as_ref().unwrap()[0], "PATH=/bin");
    assert_eq!(proc.working_dir().as_deref(), Some("/work"));
    assert_eq!(proc.user().as_deref(), Some("1000:1000"));

    // Lower layer: files, modes, symlink, hardlink.
    let l0 = &a.layers[0];
    assert_eq!(
        fs::read_to_string(l0.join("etc/passwd"))?,
        "root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(fs::metadata(l0.join("bin/sh"))?.mode() & 0o7777, 0o755);
    assert_eq!(fs::metadata(l0.join("opq/old"))?.mode() & 0o7777, 0o600);
    assert_eq!(fs::read_link(l0.join("bin/link"))?, Path::new("sh"));
    assert_eq!(
        fs::metadata(l0.join("bin/hard"))?.ino(),
        fs::metadata(l0.join("bin/sh"))?.ino()
    );
    assert_eq!(fs::metadata(l0.join("etc/passwd"))?.mtime(), 1_700_000_000);

    // Upper layer: whiteouts in overlayfs form as root, recorded in the sidecar otherwise.
    let l1 = &a.layers[1];
    assert_eq!(fs::read_to_string(l1.join("opq/new"))?, "new");
    assert!(!l1.join("etc/.wh.gone").exists() && !l1.join("opq/.wh..wh..opq").exists());
    if is_root() && a.recorded_whiteouts.is_empty() {
        let wh = fs::symlink_metadata(l1.join("etc/gone"))?;
        assert!(
            wh.file_type().is_char_device(),
            "a whiteout is a character device"
        );
        assert_eq!(wh.rdev(), 0, "a whiteout is device 0/0");
        assert_eq!(opaque_xattr(&l1.join("opq")).as_deref(), Some(&b"y"[..]));
        assert_eq!(fs::symlink_metadata(l0.join("etc/passwd"))?.uid(), 0);
        check_overlay_view(tmp.path(), &a.layers)?;
    } else {
        let mut got = a.recorded_whiteouts.clone();
        got.sort_by(|x, y| x.1.path.cmp(&y.1.path));
        assert_eq!(
            got,
            vec![
                (
                    1,
                    RecordedWhiteout {
                        path: "etc/gone".into(),
                        kind: WhiteoutKind::Remove
                    }
                ),
                (
                    1,
                    RecordedWhiteout {
                        path: "opq".into(),
                        kind: WhiteoutKind::Opaque
                    }
                ),
            ]
        );
        assert!(fs::symlink_metadata(l1.join("etc/gone")).is_err());
    }

    let list = store.list();
    assert_eq!(
        list.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["docker.io/library/app2:latest", "docker.io/library/app:1"]
    );
    assert!(
        list.iter()
            .all(|i| i.size > 0 && i.digest.starts_with("sha256:"))
    );
    assert_eq!(list[1].digest, refs[0].digest);

    // The index survives a reopen.
    drop(store);
    let store = ImageStore::open(&root)?;
    assert!(store.resolve("app2").is_some());
    store.remove("app:1")?;
    assert!(store.resolve("app:1").is_none());
    assert!(
        a.layers.iter().all(|l| l.exists()),
        "layers still used by app2 stay"
    );
    store.remove("app2")?;
    assert!(store.list().is_empty());
    assert_empty_store(&root);
    assert!(matches!(store.remove("app2"), Err(ImageError::NotFound(_))));
    Ok(())
}

#[test]
fn removing_an_image_keeps_shared_layers_and_drops_its_own() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("store");
    let store = ImageStore::open(&root)?;
    let third = layer(&[E::File("only-in-y", "y", 0o644)]);
    store.import_archive(&oci_archive(
        tmp.path(),
        "x.tar",
        oci("example.com/x:1", vec![base_layer(), whiteout_layer()]),
    ))?;
    store.import_archive(&oci_archive(
        tmp.path(),
        "y.tar",
        oci("example.com/y:1", vec![base_layer(), third]),
    ))?;
    let x = store.resolve("example.com/x:1").unwrap();
    let y = store.resolve("example.com/y:1").unwrap();
    assert_eq!(x.layers[0], y.layers[0], "the common layer is shared");
    assert_eq!(count(&root.join("layers")), 3);
    store.remove("example.com/x:1")?;
    assert!(x.layers[0].exists(), "the shared layer stays");
    assert!(!x.layers[1].exists(), "the layer only x used is gone");
    assert!(y.layers[1].join("only-in-y").exists());
    store.remove("example.com/y:1")?;
    assert!(
        !y.layers[0].exists(),
        "the last user gone, the shared layer is gone"
    );
    assert_empty_store(&root);
    Ok(())
}

#[test]
fn digest_mismatches_are_rejected_leaving_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("store");
    let store = ImageStore::open(&root)?;

    let mut o = oci("example.com/bad:1", vec![base_layer(), whiteout_layer()]);
    o.tamper_layer = Some(1);
    let err = store
        .import_archive(&oci_archive(tmp.path(), "tampered.tar", o))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("failed to import ") && err.contains("has digest"),
        "{err}"
    );
    assert!(store.list().is_empty());
    assert_empty_store(&root);

    let mut o = oci("example.com/bad:1", vec![base_layer()]);
    o.diff_ids = Some(vec![sha(b"something else")]);
    let err = store
        .import_archive(&oci_archive(tmp.path(), "diffid.tar", o))
        .unwrap_err()
        .to_string();
    assert!(err.contains("diff ID"), "{err}");
    assert_empty_store(&root);

    let path = docker_archive(
        tmp.path(),
        "missing.tar",
        &["busybox:1"],
        &[base_layer()],
        true,
    );
    let err = store.import_archive(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "failed to import {}: manifest.json names layer deadbeef/layer.tar which is not in the archive",
            path.display()
        )
    );
    assert_empty_store(&root);

    let mut o = oci("example.com/z:1", vec![base_layer()]);
    o.media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
    let err = store
        .import_archive(&oci_archive(tmp.path(), "zstd.tar", o))
        .unwrap_err()
        .to_string();
    assert!(err.contains("zstd"), "{err}");
    assert_empty_store(&root);
    assert!(store.list().is_empty());
    Ok(())
}

#[test]
fn hostile_layer_entries_never_write_outside_the_store() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("store");
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside)?;
    fs::write(outside.join("file"), "secret")?;
    let store = ImageStore::open(&root)?;
    let outside_abs = outside.to_str().unwrap().to_string();
    let rel_escape = "../../../../../../../../../../../..".to_string() + &outside_abs;

    let through = "would be written through the symlink esc";
    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            layer(&[E::File("../evil", "x", 0o644)]),
            "entry ../evil contains a '..' component",
        ),
        (
            "deep-dotdot",
            layer(&[E::Dir("a/"), E::File("a/../../evil", "x", 0o644)]),
            "'..'",
        ),
        (
            "abs-symlink",
            layer(&[
                E::Symlink("esc", &outside_abs),
                E::File("esc/pwned", "x", 0o644),
            ]),
            through,
        ),
        (
            "rel-symlink",
            layer(&[
                E::Symlink("esc", &rel_escape),
                E::File("esc/pwned", "x", 0o644),
            ]),
            through,
        ),
        (
            "symlink-dir",
            layer(&[E::Symlink("esc", &outside_abs), E::Dir("esc/sub/")]),
            through,
        ),
        (
            "hardlink-out",
            layer(&[E::Hardlink("h", &format!("../../{outside_abs}/file"))]),
            "'..'",
        ),
        (
            "hardlink-through-symlink",
            layer(&[
                E::Symlink("esc", &outside_abs),
                E::Hardlink("h", "esc/file"),
            ]),
            through,
        ),
    ];
    for (what, l, want) in hostile {
        let path = oci_archive(
            tmp.path(),
            &format!("{what}.tar"),
            oci("example.com/evil:1", vec![l]),
        );
        let err = store.import_archive(&path).expect_err(what).to_string();
        assert!(err.contains(want), "{what}: {err}");
        assert_empty_store(&root);
    }
    assert_eq!(
        fs::read_dir(&outside)?
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>(),
        ["file"]
    );
    assert_eq!(fs::read_to_string(outside.join("file"))?, "secret");
    assert!(!tmp.path().join("evil").exists() && !root.join("evil").exists());

    // An absolute entry path is taken relative to the layer root; a symlink itself is kept as written.
    let unique = format!("skiff-abs-test-{}", std::process::id());
    let l = layer(&[
        E::File(&format!("/{unique}"), "inside", 0o644),
        E::Symlink("etc-link", "/etc"),
    ]);
    store.import_archive(&oci_archive(
        tmp.path(),
        "abs.tar",
        oci("example.com/abs:1", vec![l]),
    ))?;
    assert!(
        !Path::new("/").join(&unique).exists(),
        "nothing written at the host root"
    );
    let img = store.resolve("example.com/abs:1").unwrap();
    assert_eq!(fs::read_to_string(img.layers[0].join(&unique))?, "inside");
    assert_eq!(
        fs::read_link(img.layers[0].join("etc-link"))?,
        Path::new("/etc")
    );
    Ok(())
}

#[test]
fn open_clears_interrupted_imports_and_unreferenced_content() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("store");
    drop(ImageStore::open(&root)?);
    fs::create_dir_all(root.join("tmp/import-1-0/half-layer"))?;
    fs::create_dir_all(root.join(format!("layers/{}", "a".repeat(64))))?;
    fs::write(
        root.join(format!("blobs/sha256/{}", "b".repeat(64))),
        "orphan",
    )?;
    let store = ImageStore::open(&root)?;
    assert_empty_store(&root);
    assert!(store.list().is_empty());
    let err = ImageStore::open(Path::new("/proc/self/no-such-store"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("failed to open the image store at /proc/self/no-such-store"),
        "{err}"
    );
    Ok(())
}

/// As root, mounts the layers with overlayfs and checks the merged view applies the whiteouts. Skipped when
/// this environment cannot mount overlayfs.
fn check_overlay_view(scratch: &Path, layers: &[std::path::PathBuf]) -> Result<()> {
    let (upper, work, merged) = (
        scratch.join("upper"),
        scratch.join("work"),
        scratch.join("merged"),
    );
    for d in [&upper, &work, &merged] {
        fs::create_dir_all(d)?;
    }
    let lower = layers
        .iter()
        .rev()
        .map(|l| l.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let (src, target, fstype, data) = (
        c("overlay"),
        c(merged.to_str().unwrap()),
        c("overlay"),
        c(&opts),
    );
    // SAFETY: valid C strings; data is a NUL-terminated option string.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        eprintln!(
            "overlayfs mount not possible here ({}); merged view not checked",
            std::io::Error::last_os_error()
        );
        return Ok(());
    }
    let seen = (
        merged.join("etc/gone").symlink_metadata().is_err(),
        merged.join("opq/old").symlink_metadata().is_err(),
        fs::read_to_string(merged.join("opq/new")).ok(),
        fs::read_to_string(merged.join("etc/passwd")).is_ok(),
    );
    // SAFETY: valid C string of a path we mounted.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    assert_eq!(rc, 0, "unmount the test overlay");
    assert_eq!(
        seen,
        (true, true, Some("new".to_string()), true),
        "whiteout, opaque dir, new file, lower file"
    );
    Ok(())
}

#[test]
fn unprivileged_unpacking_records_whiteouts() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let recorded = unpack::unpack_layer(&whiteout_layer()[..], tmp.path(), false)
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        recorded,
        vec![
            RecordedWhiteout {
                path: "etc/gone".into(),
                kind: WhiteoutKind::Remove
            },
            RecordedWhiteout {
                path: "opq".into(),
                kind: WhiteoutKind::Opaque
            },
        ]
    );
    assert!(tmp.path().join("etc/gone").symlink_metadata().is_err());
    assert_eq!(opaque_xattr(&tmp.path().join("opq")), None);
    assert_eq!(fs::read_to_string(tmp.path().join("opq/new"))?, "new");
    Ok(())
}

#[test]
fn docker_archive_with_symlinked_layer_and_several_tags() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = ImageStore::open(&tmp.path().join("store"))?;
    let l = base_layer();
    let cfg = config(&[sha(&l)]);
    let manifest = serde_json::to_vec(&json!([{
        "Config": "config.json", "RepoTags": ["busybox:1", "localhost:5000/bb:2"], "Layers": ["b/layer.tar"]
    }]))?;
    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, "manifest.json", &manifest);
    add_file(&mut b, "config.json", &cfg);
    add_file(&mut b, "a/layer.tar", &l);
    let mut h = header("b/layer.tar", tar::EntryType::Symlink, 0, 0o777);
    h.as_gnu_mut().unwrap().linkname[..14].copy_from_slice(b"../a/layer.tar");
    h.set_cksum();
    b.append(&h, &[][..])?;
    let path = tmp.path().join("legacy.tar");
    fs::write(&path, gzip(&b.into_inner()?))?;
    let refs = store.import_archive(&path)?;
    let names: Vec<_> = refs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["docker.io/library/busybox:1", "localhost:5000/bb:2"]
    );
    assert_eq!(refs[0].digest, refs[1].digest);
    let img = store.resolve("busybox:1").unwrap();
    assert!(img.layers[0].join("bin/sh").is_file());
    assert_eq!(
        store.resolve("localhost:5000/bb:2").unwrap().layers,
        img.layers
    );
    store.remove("busybox:1")?;
    assert!(img.layers[0].exists(), "the other tag still uses the layer");
    Ok(())
}

#[test]
fn a_bare_ref_name_tag_takes_the_given_base_name() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = ImageStore::open(&tmp.path().join("store"))?;
    let mut o = oci("unused", vec![base_layer()]);
    o.annotations = json!({"org.opencontainers.image.ref.name": "1"});
    let path = oci_archive(tmp.path(), "umoci.tar", o);
    let refs = store.import_archive_named(&path, "busybox")?;
    assert_eq!(
        refs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["docker.io/library/busybox:1"]
    );
    let mut o = oci("unused", vec![base_layer()]);
    o.annotations = json!({"org.opencontainers.image.ref.name": "example.com/full:2"});
    let refs = store.import_archive(&oci_archive(tmp.path(), "full.tar", o))?;
    assert_eq!(refs[0].name, "example.com/full:2");
    let mut o = oci("unused", vec![base_layer()]);
    o.annotations = json!({});
    let err = store
        .import_archive(&oci_archive(tmp.path(), "anon.tar", o))
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no name"), "{err}");
    assert_eq!(store.list().len(), 2);
    Ok(())
}
