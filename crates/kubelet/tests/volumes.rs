//! Pod volumes against the in-process API server and the real host (runs as root for tmpfs): configMap and
//! secret items and modes, optional sources, error texts, the atomic `..data` swap on refresh, downwardAPI,
//! projected, emptyDir on disk and in memory, hostPath checks, and a teardown that leaves nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_kubelet::volumes::{DATA_DIR_NAME, VolumeManager};

/// A temporary pods root that unmounts anything left under it when dropped (also when a test fails).
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn mounts_under(root: &Path) -> Vec<(PathBuf, String, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let point = PathBuf::from(f[4]);
            point.starts_with(root).then(|| (point, f[sep + 1].to_string(), f.get(sep + 3).unwrap_or(&"").to_string()))
        })
        .collect()
}

impl Drop for Root {
    fn drop(&mut self) {
        let mut left = mounts_under(self.dir.path());
        left.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (p, _, _) in left {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "these tests mount tmpfs and need root");
}

struct Env {
    _server: skiff_apiserver::testing::InProcess,
    client: kube::Client,
}

async fn env() -> Env {
    let server = skiff_apiserver::testing::start_admin().await;
    let client = kube::Client::new(server.router.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cfg"},
        "data": {"app.conf": "port=80\n", "level": "info"},
        "binaryData": {"blob.bin": "AAEC"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "default").create(&PostParams::default(), &cm).await.unwrap();
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"},
        "stringData": {"password": "hunter2", "user": "admin"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "default").create(&PostParams::default(), &s).await.unwrap();
    Env { _server: server, client }
}

fn pod(uid: &str, volumes: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": uid,
                     "labels": {"app": "web", "tier": "front"}, "annotations": {"build": "42"}},
        "spec": {
            "volumes": volumes,
            "containers": [{"name": "app", "image": "busybox",
                            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]
        }
    }))
    .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn config_map_volume_items_modes_and_atomic_refresh() {
    let e = env().await;
    let root = Root::new();
    let vm = VolumeManager::new(root.path().to_path_buf(), e.client.clone());
    let p = pod(
        "u-cm",
        json!([
            {"name": "all", "configMap": {"name": "cfg"}},
            {"name": "some", "configMap": {"name": "cfg", "defaultMode": 0o640,
                "items": [{"key": "app.conf", "path": "conf/app.conf", "mode": 0o600}, {"key": "level", "path": "lvl"}]}}
        ]),
    );
    let mounted = vm.setup(&p).await.unwrap();
    let all = &mounted.paths["all"];
    assert_eq!(all, &root.path().join("u-cm/volumes/kubernetes.io~configmap/all"));
    assert_eq!(read(&all.join("app.conf")), "port=80\n");
    assert_eq!(read(&all.join("level")), "info");
    assert_eq!(std::fs::read(all.join("blob.bin")).unwrap(), [0, 1, 2]);
    assert_eq!(mode(&all.join("level")), 0o644, "default mode 0644");
    assert!(
        std::fs::symlink_metadata(all.join("level")).unwrap().file_type().is_symlink(),
        "user-visible names are symlinks"
    );
    assert_eq!(std::fs::read_link(all.join("level")).unwrap(), Path::new("..data/level"));

    let some = &mounted.paths["some"];
    assert_eq!(read(&some.join("conf/app.conf")), "port=80\n");
    assert_eq!(mode(&some.join("conf/app.conf")), 0o600, "an item's mode wins");
    assert_eq!(mode(&some.join("lvl")), 0o640, "defaultMode");
    assert!(!some.join("level").exists(), "only the listed items");

    // A subPath onto a configMap key resolves to the file in the current timestamped dir (so, as upstream, it
    // does not follow later updates).
    let sub = skiff_kubelet::container_config::prepare_subpath(all, "level").unwrap();
    let ts = std::fs::read_link(all.join(DATA_DIR_NAME)).unwrap();
    assert_eq!(sub, all.canonicalize().unwrap().join(&ts).join("level"));

    // Update the ConfigMap: refresh swaps `..data` to a new timestamped dir and removes the old one.
    let before = std::fs::read_link(all.join(DATA_DIR_NAME)).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(e.client.clone(), "default");
    api.patch("cfg", &PatchParams::default(), &Patch::Merge(json!({"data": {"level": "debug", "app.conf": null}})))
        .await
        .unwrap();
    // `some` lists the removed key: its refresh fails (and keeps its files); `all` is still refreshed.
    let err = vm.refresh(&p).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "MountVolume.SetUp failed for volume \"some\" : configmap references non-existent config key: app.conf"
    );
    assert_eq!(read(&some.join("conf/app.conf")), "port=80\n", "a failed refresh keeps the old files");
    let after = std::fs::read_link(all.join(DATA_DIR_NAME)).unwrap();
    assert_ne!(before, after);
    assert!(after.to_string_lossy().starts_with(".."), "{}", after.display());
    assert!(!all.join(&before).exists(), "the old timestamped dir is removed");
    assert_eq!(read(&all.join("level")), "debug");
    assert!(std::fs::symlink_metadata(all.join("app.conf")).is_err(), "a removed key disappears");

    // Nothing changed: the same `..data`.
    api.patch("cfg", &PatchParams::default(), &Patch::Merge(json!({"data": {"app.conf": "port=81\n"}}))).await.unwrap();
    vm.refresh(&p).await.unwrap();
    let third = std::fs::read_link(all.join(DATA_DIR_NAME)).unwrap();
    vm.refresh(&p).await.unwrap();
    assert_eq!(std::fs::read_link(all.join(DATA_DIR_NAME)).unwrap(), third);
    assert_eq!(read(&some.join("conf/app.conf")), "port=81\n");

    vm.teardown("u-cm").await.unwrap();
    assert!(!root.path().join("u-cm").exists());
}

#[tokio::test]
async fn missing_and_optional_sources() {
    let e = env().await;
    let root = Root::new();
    let vm = VolumeManager::new(root.path().to_path_buf(), e.client.clone());
    let err =
        vm.setup(&pod("u-miss", json!([{"name": "cfg", "configMap": {"name": "app-config"}}]))).await.unwrap_err();
    assert_eq!(err.to_string(), "MountVolume.SetUp failed for volume \"cfg\" : configmap \"app-config\" not found");
    assert_eq!(err.volume(), Some("cfg"));
    let err = vm.setup(&pod("u-miss", json!([{"name": "s", "secret": {"secretName": "nope"}}]))).await.unwrap_err();
    assert_eq!(err.to_string(), "MountVolume.SetUp failed for volume \"s\" : secret \"nope\" not found");
    let err = vm
        .setup(&pod(
            "u-miss",
            json!([{"name": "s", "secret": {"secretName": "creds", "items": [{"key": "token", "path": "t"}]}}]),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"s\" : references non-existent secret key: token"
    );
    let err = vm
        .setup(&pod("u-miss", json!([{"name": "claim", "persistentVolumeClaim": {"claimName": "c"}}])))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"claim\" : persistentvolumeclaim \"c\" not found"
    );

    let err = vm.setup(&pod("u-miss", json!([{"name": "huge", "emptyDir": {"medium": "HugePages"}}]))).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"huge\" : emptyDir medium \"HugePages\" is not supported"
    );

    let p = pod(
        "u-opt",
        json!([
            {"name": "cfg", "configMap": {"name": "absent", "optional": true}},
            {"name": "s", "secret": {"secretName": "creds", "optional": true, "items": [{"key": "absent", "path": "x"}, {"key": "user", "path": "u"}]}}
        ]),
    );
    let mounted = vm.setup(&p).await.unwrap();
    let cfg = &mounted.paths["cfg"];
    assert!(cfg.join(DATA_DIR_NAME).is_dir(), "an optional missing configMap is an empty volume");
    let visible: Vec<String> = std::fs::read_dir(cfg)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect();
    assert!(visible.is_empty(), "{visible:?}");
    assert_eq!(read(&mounted.paths["s"].join("u")), "admin");
    assert!(!mounted.paths["s"].join("x").exists());
    vm.teardown("u-opt").await.unwrap();
    vm.teardown("u-miss").await.unwrap();
    assert!(mounts_under(root.path()).is_empty());
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn secrets_live_on_tmpfs_and_teardown_leaves_nothing() {
    require_root();
    let e = env().await;
    let root = Root::new();
    let vm = VolumeManager::new(root.path().to_path_buf(), e.client.clone());
    let p = pod(
        "u-sec",
        json!([
            {"name": "creds", "secret": {"secretName": "creds"}},
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            {"name": "mem-default", "emptyDir": {"medium": "Memory"}},
            {"name": "disk", "emptyDir": {}}
        ]),
    );
    let mounted = vm.setup(&p).await.unwrap();
    let creds = &mounted.paths["creds"];
    assert_eq!(read(&creds.join("password")), "hunter2");
    assert_eq!(mode(&creds.join("password")), 0o644, "secret files default to 0644");
    let mounts = mounts_under(root.path());
    let find = |p: &Path| mounts.iter().find(|(m, _, _)| m == p).cloned();
    let (_, fstype, _) = find(creds).expect("the secret volume is a mount");
    assert_eq!(fstype, "tmpfs");
    let (_, fstype, opts) = find(&mounted.paths["mem"]).expect("the memory emptyDir is a mount");
    assert_eq!(fstype, "tmpfs");
    assert!(opts.contains("size=16384k"), "sizeLimit is the tmpfs size: {opts}");
    let (_, _, opts) = find(&mounted.paths["mem-default"]).expect("mounted");
    assert!(opts.contains("size=65536k"), "without sizeLimit the pod's memory limit: {opts}");
    assert!(find(&mounted.paths["disk"]).is_none(), "a disk emptyDir is a plain directory");
    assert_eq!(mode(&mounted.paths["disk"]), 0o777);
    std::fs::write(mounted.paths["mem"].join("scratch"), "x").unwrap();

    // Setting up again (a kubelet restart) does not stack mounts.
    let again = vm.setup(&p).await.unwrap();
    assert_eq!(again.paths, mounted.paths);
    assert_eq!(mounts_under(root.path()).len(), 3);

    vm.teardown("u-sec").await.unwrap();
    assert!(mounts_under(root.path()).is_empty(), "every tmpfs is unmounted");
    assert!(!root.path().join("u-sec").exists());
    vm.teardown("u-sec").await.unwrap();
}

#[tokio::test]
async fn downward_api_and_projected() {
    require_root();
    let e = env().await;
    let root = Root::new();
    let vm = VolumeManager::new(root.path().to_path_buf(), e.client.clone());
    Api::<ServiceAccount>::namespaced(e.client.clone(), "default")
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap())
        .await
        .ok();
    let p = pod(
        "u-dapi",
        json!([
            {"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
                {"path": "meta/build", "fieldRef": {"fieldPath": "metadata.annotations['build']"}},
                {"path": "cpu", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}
            ]}},
            {"name": "all-in-one", "projected": {"defaultMode": 0o440, "sources": [
                {"configMap": {"name": "cfg", "items": [{"key": "level", "path": "cfg/level"}]}},
                {"secret": {"name": "creds", "items": [{"key": "user", "path": "secret/user"}]}},
                {"downwardAPI": {"items": [{"path": "pod/name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}
            ]}}
        ]),
    );
    let mounted = vm.setup(&p).await.unwrap();
    let info = &mounted.paths["info"];
    assert_eq!(info, &root.path().join("u-dapi/volumes/kubernetes.io~downward-api/info"));
    assert_eq!(read(&info.join("labels")), "app=\"web\"\ntier=\"front\"");
    assert_eq!(read(&info.join("name")), "web");
    assert_eq!(mode(&info.join("name")), 0o600);
    assert_eq!(read(&info.join("meta/build")), "42");
    assert_eq!(read(&info.join("cpu")), "500");
    assert_eq!(read(&info.join("mem")), "64");

    let proj = &mounted.paths["all-in-one"];
    assert_eq!(read(&proj.join("cfg/level")), "info");
    assert_eq!(read(&proj.join("secret/user")), "admin");
    assert_eq!(read(&proj.join("pod/name")), "web");
    assert_eq!(mode(&proj.join("secret/user")), 0o440);
    assert!(mounts_under(root.path()).iter().any(|(m, t, _)| m == proj && t == "tmpfs"), "projected is memory-backed");
    // The token is written exactly when the API server serves TokenRequest.
    let token_request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": []}})).unwrap();
    let served = Api::<ServiceAccount>::namespaced(e.client.clone(), "default")
        .create_token_request("default", &PostParams::default(), &token_request)
        .await
        .is_ok();
    assert_eq!(proj.join("token").exists(), served);

    // A label change reaches the downwardAPI file on refresh.
    let mut changed = p.clone();
    changed.metadata.labels.as_mut().unwrap().insert("tier".into(), "back".into());
    vm.refresh(&changed).await.unwrap();
    assert_eq!(read(&info.join("labels")), "app=\"web\"\ntier=\"back\"");

    vm.teardown("u-dapi").await.unwrap();
    assert!(mounts_under(root.path()).is_empty());
    assert!(!root.path().join("u-dapi").exists());
}

#[tokio::test]
async fn host_path_types() {
    let e = env().await;
    let root = Root::new();
    let host = tempfile::tempdir().unwrap();
    let vm = VolumeManager::new(root.path().to_path_buf(), e.client.clone());
    let file = host.path().join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let created = host.path().join("made/here");
    let p = pod(
        "u-hp",
        json!([
            {"name": "dir", "hostPath": {"path": created, "type": "DirectoryOrCreate"}},
            {"name": "file", "hostPath": {"path": file, "type": "File"}},
            {"name": "new-file", "hostPath": {"path": host.path().join("new.txt"), "type": "FileOrCreate"}},
            {"name": "dev", "hostPath": {"path": "/dev/null", "type": "CharDevice"}}
        ]),
    );
    let mounted = vm.setup(&p).await.unwrap();
    assert_eq!(mounted.paths["dir"], created);
    assert!(created.is_dir());
    assert_eq!(mounted.paths["file"], file);
    assert!(host.path().join("new.txt").is_file());

    let bad = pod("u-hp", json!([{"name": "hp", "hostPath": {"path": file, "type": "Directory"}}]));
    let err = vm.setup(&bad).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "MountVolume.SetUp failed for volume \"hp\" : hostPath type check failed: {} is not a directory",
            file.display()
        )
    );
    vm.teardown("u-hp").await.unwrap();
    assert!(file.exists() && created.exists(), "teardown never touches hostPath contents");
    assert!(!root.path().join("u-hp").exists());
}
