//! Pulls against Debian's docker-registry on 127.0.0.1 (run as root, with docker-registry, skopeo and
//! busybox-static installed): OCI and Docker v2s2 manifests, a multi-arch index, a missing tag, a registry
//! that never answers, a registries.yaml mirror with a rewrite, basic auth, and shared concurrent pulls.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest as _, Sha256};
use skiff_runtime::cri::{ImageService, RegistryAuth, RuntimeError};
use skiff_runtime::image::{ImageStore, Images, PullOptions, RegistriesConfig};
use skiff_runtime::testing::{
    ManifestFormat, SilentServer, TestImage, TestRegistry, busybox_image,
};

struct Fixture {
    _dir: tempfile::TempDir,
    image: TestImage,
    store: Arc<ImageStore>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_image(&dir.path().join("image").tap_mkdir()).unwrap();
    let store = Arc::new(ImageStore::open(&dir.path().join("store")).unwrap());
    Fixture {
        _dir: dir,
        image,
        store,
    }
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

fn short_timeouts() -> PullOptions {
    PullOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        ..PullOptions::default()
    }
}

/// Checks the pulled image is in the store with busybox in its layer.
fn assert_stored(store: &ImageStore, name: &str, image: &TestImage) {
    let resolved = store
        .resolve(name)
        .unwrap_or_else(|| panic!("{name} is not in the store: {:?}", store.list()));
    assert_eq!(resolved.layers.len(), 1);
    let busybox = std::fs::read(resolved.layers[0].join("bin/busybox")).unwrap();
    assert_eq!(
        busybox,
        std::fs::read(skiff_runtime::testing::BUSYBOX).unwrap()
    );
    let row = store
        .list()
        .into_iter()
        .find(|r| r.name == resolved.name)
        .unwrap();
    assert_eq!(row.config_digest, image.config_digest);
}

/// A limit for the whole test so a hang fails instead of blocking the suite.
async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("the test did not finish within 60 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_oci_and_docker_v2s2_manifests_from_a_local_registry() {
    let f = fixture();
    let registry = TestRegistry::start().unwrap();
    let oci = registry
        .push(&f.image, "busybox:1", ManifestFormat::Oci)
        .unwrap();
    let v2s2 = registry
        .push(&f.image, "busybox:1-v2s2", ManifestFormat::DockerV2S2)
        .unwrap();
    let images = Images::with_options(
        f.store.clone(),
        RegistriesConfig::default(),
        short_timeouts(),
    );

    let id = bounded(images.pull_image(&oci, None)).await.unwrap();
    assert_eq!(id, f.image.config_digest);
    assert_stored(&f.store, &oci, &f.image);
    let status = images.image_status(&oci).await.unwrap().unwrap();
    assert_eq!(status.repo_tags, vec![oci.clone()]);
    // The OCI manifest is stored as pushed: same digest as the layout's.
    let repo = oci.trim_end_matches(":1");
    assert_eq!(
        status.repo_digests,
        vec![format!("{repo}@{}", f.image.manifest_digest)]
    );

    let id = bounded(images.pull_image(&v2s2, None)).await.unwrap();
    assert_eq!(id, f.image.config_digest);
    assert_stored(&f.store, &v2s2, &f.image);
    // Both names are one image (same config); the Docker manifest has its own digest.
    let listed = images.list_images().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].repo_tags, vec![oci.clone(), v2s2.clone()]);
    assert_eq!(listed[0].repo_digests.len(), 2, "{listed:?}");

    // The layer was unpacked once: one layer directory shared by both names.
    let layers = std::fs::read_dir(f.store.root().join("layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 1);

    // Pull by digest.
    let by_digest = format!("{repo}@{}", f.image.manifest_digest);
    assert_eq!(
        bounded(images.pull_image(&by_digest, None)).await.unwrap(),
        f.image.config_digest
    );
    assert!(f.store.resolve(&by_digest).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_is_an_image_pull_error_with_the_registry_message() {
    let f = fixture();
    let registry = TestRegistry::start().unwrap();
    registry
        .push(&f.image, "busybox:1", ManifestFormat::Oci)
        .unwrap();
    let images = Images::with_options(
        f.store.clone(),
        RegistriesConfig::default(),
        short_timeouts(),
    );
    let missing = format!("{}/busybox:nope", registry.host());
    match bounded(images.pull_image(&missing, None)).await {
        Err(RuntimeError::ImagePull { image, message }) => {
            assert_eq!(image, missing);
            assert!(message.contains("manifest unknown"), "{message}");
            assert!(message.contains(&missing), "{message}");
        }
        other => panic!("expected ImagePull, got {other:?}"),
    }
    let missing_repo = format!("{}/nothing/here:1", registry.host());
    match bounded(images.pull_image(&missing_repo, None)).await {
        Err(RuntimeError::ImagePull { message, .. }) => {
            assert!(message.contains("unknown"), "{message}")
        }
        other => panic!("expected ImagePull, got {other:?}"),
    }
    assert!(f.store.list().is_empty());
    // Nothing is left staged.
    assert_eq!(
        std::fs::read_dir(f.store.root().join("tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_never_answers_times_out() {
    let f = fixture();
    // Accepts connections and holds them open without a word.
    let silent = SilentServer::start().unwrap();
    let options = PullOptions {
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        ..PullOptions::default()
    };
    let images = Images::with_options(f.store.clone(), RegistriesConfig::default(), options);
    let result = bounded(images.pull_image(&format!("{}/busybox:1", silent.host()), None)).await;
    drop(silent);
    match result {
        Err(RuntimeError::ImagePull { message, .. }) => {
            assert!(message.contains("timed out"), "{message}")
        }
        other => panic!("expected a time-out, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registries_yaml_mirror_serves_docker_hub_names() {
    let f = fixture();
    let registry = TestRegistry::start().unwrap();
    registry
        .push(&f.image, "library/busybox:mirrored", ManifestFormat::Oci)
        .unwrap();
    registry
        .push(&f.image, "rewritten/busybox:rw", ManifestFormat::DockerV2S2)
        .unwrap();
    let yaml = format!(
        "mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n  quay.io:\n    endpoint: [\"http://{}\"]\n    rewrite:\n      \"^team/(.*)$\": \"rewritten/$1\"\n",
        registry.host(),
        registry.host()
    );
    let config = RegistriesConfig::parse(&yaml).unwrap();
    let images = Images::with_options(f.store.clone(), config, short_timeouts());
    // `busybox:mirrored` is docker.io/library/busybox:mirrored; the mirror has it, Docker Hub is never asked.
    let id = bounded(images.pull_image("busybox:mirrored", None))
        .await
        .unwrap();
    assert_eq!(id, f.image.config_digest);
    assert_stored(&f.store, "docker.io/library/busybox:mirrored", &f.image);
    // A rewrite maps quay.io/team/busybox to rewritten/busybox on the mirror.
    bounded(images.pull_image("quay.io/team/busybox:rw", None))
        .await
        .unwrap();
    assert_stored(&f.store, "quay.io/team/busybox:rw", &f.image);
    // The mirror was really asked (with containerd's ns parameter).
    let log = registry.log();
    assert!(
        log.contains("/v2/library/busybox/manifests/mirrored"),
        "{log}"
    );
    assert!(log.contains("/v2/rewritten/busybox/manifests/rw"), "{log}");
}

fn htpasswd(user: &str, password: &str) -> String {
    format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_pull_secrets_or_registries_yaml() {
    let f = fixture();
    let registry = TestRegistry::start_with_htpasswd(&htpasswd("alice", "s3cret")).unwrap();
    registry
        .push_with_credentials(
            &f.image,
            "private/busybox:1",
            ManifestFormat::Oci,
            Some(("alice", "s3cret")),
        )
        .unwrap();
    let name = format!("{}/private/busybox:1", registry.host());

    // Anonymous: refused with the registry's word.
    let images = Images::with_options(
        f.store.clone(),
        RegistriesConfig::default(),
        short_timeouts(),
    );
    match bounded(images.pull_image(&name, None)).await {
        Err(RuntimeError::ImagePull { message, .. }) => {
            assert!(message.contains("unauthorized"), "{message}")
        }
        other => panic!("expected ImagePull, got {other:?}"),
    }
    // Wrong password.
    let wrong = RegistryAuth {
        username: "alice".into(),
        password: "nope".into(),
    };
    assert!(matches!(
        bounded(images.pull_image(&name, Some(&wrong))).await,
        Err(RuntimeError::ImagePull { .. })
    ));
    assert!(f.store.list().is_empty());

    // Credentials from imagePullSecrets.
    let right = RegistryAuth {
        username: "alice".into(),
        password: "s3cret".into(),
    };
    assert_eq!(
        bounded(images.pull_image(&name, Some(&right)))
            .await
            .unwrap(),
        f.image.config_digest
    );
    assert_stored(&f.store, &name, &f.image);
    images.remove_image(&name).await.unwrap();

    // Credentials from registries.yaml, and the pull secret's win over them.
    let yaml = format!(
        "configs:\n  \"{}\":\n    auth:\n      username: alice\n      password: s3cret\n",
        registry.host()
    );
    let images = Images::with_options(
        f.store.clone(),
        RegistriesConfig::parse(&yaml).unwrap(),
        short_timeouts(),
    );
    assert!(
        matches!(
            bounded(images.pull_image(&name, Some(&wrong))).await,
            Err(RuntimeError::ImagePull { .. })
        ),
        "the pull secret's (wrong) credentials must be used over registries.yaml's"
    );
    assert_eq!(
        bounded(images.pull_image(&name, None)).await.unwrap(),
        f.image.config_digest
    );
    assert_stored(&f.store, &name, &f.image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_image_share_one_download() {
    let f = fixture();
    let registry = TestRegistry::start().unwrap();
    let name = registry
        .push(&f.image, "busybox:shared", ManifestFormat::Oci)
        .unwrap();
    let images = Images::with_options(
        f.store.clone(),
        RegistriesConfig::default(),
        short_timeouts(),
    );
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            let images = images.clone();
            let name = name.clone();
            tokio::spawn(async move { images.pull_image(&name, None).await })
        })
        .collect();
    for p in pulls {
        assert_eq!(bounded(p).await.unwrap().unwrap(), f.image.config_digest);
    }
    // Give the registry a moment to flush its access log lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = registry.log();
    let gets = |path: &str| {
        log.lines()
            .filter(|l| {
                l.contains("response completed")
                    && l.contains("http.request.method=GET")
                    && l.contains(path)
            })
            .count()
    };
    assert_eq!(gets("/v2/busybox/manifests/shared"), 1, "{log}");
    // The config and the layer, once each.
    assert_eq!(gets("/v2/busybox/blobs/sha256:"), 2, "{log}");
    assert_stored(&f.store, &name, &f.image);
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_arch_index_resolves_to_the_host_platform() {
    let f = fixture();
    // Turn the test layout into a two-platform index: the real image for the host, and an "other" platform
    // whose config says so (same layer).
    let layout = &f.image.layout;
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let host_arch = skiff_runtime::image::pull::host_architecture();
    let other_arch = if host_arch == "amd64" {
        "arm64"
    } else {
        "amd64"
    };
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&f.image.config_digest)).unwrap()).unwrap();
    config["architecture"] = json!(other_arch);
    let other_config = serde_json::to_vec(&config).unwrap();
    std::fs::write(blob(&sha(&other_config)), &other_config).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&f.image.manifest_digest)).unwrap()).unwrap();
    let host_manifest_size = std::fs::read(blob(&f.image.manifest_digest)).unwrap().len();
    manifest["config"]["digest"] = json!(sha(&other_config));
    manifest["config"]["size"] = json!(other_config.len());
    let other_manifest = serde_json::to_vec(&manifest).unwrap();
    std::fs::write(blob(&sha(&other_manifest)), &other_manifest).unwrap();
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": mt, "digest": sha(&other_manifest), "size": other_manifest.len(), "platform": {"os": "linux", "architecture": other_arch}},
            {"mediaType": mt, "digest": f.image.manifest_digest, "size": host_manifest_size, "platform": {"os": "linux", "architecture": host_arch}},
        ],
    }))
    .unwrap();
    std::fs::write(blob(&sha(&index)), &index).unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(&index), "size": index.len(),
                           "annotations": {"org.opencontainers.image.ref.name": f.image.tag}}],
        }))
        .unwrap(),
    )
    .unwrap();

    let registry = TestRegistry::start().unwrap();
    let skopeo = std::process::Command::new("skopeo")
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(f.image.skopeo_source())
        .arg(format!("docker://{}/multi:1", registry.host()))
        .output()
        .expect("skopeo is not installed (install Debian's skopeo)");
    assert!(
        skopeo.status.success(),
        "{}",
        String::from_utf8_lossy(&skopeo.stderr)
    );

    let images = Images::with_options(
        f.store.clone(),
        RegistriesConfig::default(),
        short_timeouts(),
    );
    let name = format!("{}/multi:1", registry.host());
    assert_eq!(
        bounded(images.pull_image(&name, None)).await.unwrap(),
        f.image.config_digest
    );
    let status = images.image_status(&name).await.unwrap().unwrap();
    assert_eq!(
        status.repo_digests,
        vec![format!(
            "{}/multi@{}",
            registry.host(),
            f.image.manifest_digest
        )]
    );
    // The other platform asks for a config of its own.
    let other = Images::with_options(
        f.store.clone(),
        RegistriesConfig::default(),
        PullOptions {
            architecture: other_arch.into(),
            ..short_timeouts()
        },
    );
    assert_eq!(
        bounded(other.pull_image(&name, None)).await.unwrap(),
        sha(&other_config)
    );
}
