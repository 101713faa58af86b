//! `skiff image import/ls/rm/pull` against the built binary, with the busybox test image from
//! `skiff_runtime::testing` (busybox-static; docker-registry and skopeo for the pull).

use std::path::Path;
use std::process::{Command, Output};

use skiff_runtime::testing::{ManifestFormat, TestRegistry, build_busybox_image, busybox_image};

fn skiff(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("image")
        .args(args)
        .env("SKIFF_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("failed to run skiff")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn import_ls_rm_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_image(&dir.path().join("a").tap_mkdir()).unwrap();
    let other =
        build_busybox_image(&dir.path().join("b").tap_mkdir(), "example.com/tools/bb:2").unwrap();
    let data = dir.path().join("data");

    let o = skiff(
        &data,
        &[
            "import",
            image.oci_archive.to_str().unwrap(),
            other.docker_archive.to_str().unwrap(),
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("imported docker.io/library/busybox:test"),
        "{out}"
    );
    assert!(out.contains("imported example.com/tools/bb:2"), "{out}");
    assert!(data.join("agent/images/images.json").is_file());

    let o = skiff(&data, &["ls"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]);
    let id = |d: &str| d.trim_start_matches("sha256:")[..13].to_string();
    assert_eq!(
        lines[1][..3],
        [
            "docker.io/library/busybox",
            "test",
            id(&image.config_digest).as_str()
        ]
    );
    assert_eq!(lines[2][..2], ["example.com/tools/bb", "2"]);
    assert!(lines[1][3].ends_with("MB"), "{out}");

    // --data-dir as a flag works as well as the environment.
    let o = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["image", "rm", "busybox:test", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("deleted docker.io/library/busybox:test"),
        "{out}"
    );

    // Unknown names fail and say so.
    let o = skiff(&data, &["rm", "busybox:test"]);
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("docker.io/library/busybox:test is not in the store"),
        "{out}{err}"
    );

    let o = skiff(&data, &["ls", "-q"]);
    assert_eq!(text(&o).0.trim(), other.config_digest);
}

#[test]
fn a_file_that_is_not_an_image_archive_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "just some text, not a tar\n".repeat(50)).unwrap();
    let o = skiff(&data, &["import", junk.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("notes.txt is not an image archive"),
        "{out}{err}"
    );
    assert!(
        err.contains("expected an OCI image layout tar or a docker-archive tar"),
        "{err}"
    );

    // A tar that holds no image.
    let tar_path = dir.path().join("plain.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "hello.txt", &b"hello"[..]).unwrap();
    b.into_inner().unwrap();
    let o = skiff(&data, &["import", tar_path.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("plain.tar was not imported"), "{out}{err}");
    assert!(
        err.contains(
            "neither an OCI image layout (index.json) nor a docker archive (manifest.json)"
        ),
        "{err}"
    );

    let o = skiff(
        &data,
        &["import", dir.path().join("missing.tar").to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("missing.tar is not a file"),
        "{}",
        text(&o).1
    );
}

#[test]
fn pull_from_a_local_registry() {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_image(&dir.path().join("a").tap_mkdir()).unwrap();
    let registry = TestRegistry::start().unwrap();
    let name = registry
        .push(&image, "busybox:cli", ManifestFormat::DockerV2S2)
        .unwrap();
    let data = dir.path().join("data");
    let o = skiff(&data, &["pull", &name]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert_eq!(
        out.trim(),
        format!("Image is up to date for {}", image.config_digest)
    );
    let ls = text(&skiff(&data, &["ls"])).0;
    assert!(ls.contains(&format!("{}/busybox", registry.host())), "{ls}");

    let o = skiff(
        &data,
        &["pull", &format!("{}/busybox:absent", registry.host())],
    );
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("manifest unknown"), "{out}{err}");
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
