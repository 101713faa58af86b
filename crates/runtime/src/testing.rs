//! Test fixtures for the node agent's tests (this crate's, other crates' and the e2e suite): a busybox
//! image built from Debian's busybox-static (`/bin/busybox`) as an OCI layout directory, an OCI-layout tar
//! and a docker-archive tar, and Debian's `docker-registry` started on 127.0.0.1 to push it to and pull it
//! from. Not for production use; public (not `cfg(test)`) so other crates' tests can use it.
//!
//! ```no_run
//! # fn main() -> Result<(), skiff_runtime::testing::TestingError> {
//! use skiff_runtime::testing::{busybox_image, ManifestFormat, TestRegistry};
//! let dir = tempfile::tempdir().unwrap();
//! let image = busybox_image(dir.path())?; // docker.io/library/busybox:test
//! // image.oci_archive / image.docker_archive for ImageStore::import_archive
//! let registry = TestRegistry::start()?; // killed on drop
//! let reference = registry.push(&image, "busybox:1", ManifestFormat::Oci)?; // "127.0.0.1:PORT/busybox:1"
//! # Ok(()) }
//! ```

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest as _, Sha256};

/// Where Debian's busybox-static installs the static binary.
pub const BUSYBOX: &str = "/bin/busybox";
/// The default name of the test image.
pub const BUSYBOX_TEST_IMAGE: &str = "docker.io/library/busybox:test";
/// The `PATH` of the test image's config.
pub const IMAGE_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Applets linked to `/bin/busybox` in the test image.
pub const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "echo",
    "cat",
    "sleep",
    "ls",
    "ps",
    "wget",
    "nc",
    "httpd",
    "ping",
    "id",
    "true",
    "false",
    "env",
    "hostname",
    "head",
    "dd",
    "tail",
    "yes",
    "mkdir",
    "rm",
    "rmdir",
    "touch",
    "cp",
    "mv",
    "ln",
    "chmod",
    "chown",
    "grep",
    "sed",
    "awk",
    "wc",
    "sort",
    "uniq",
    "cut",
    "tr",
    "tee",
    "xargs",
    "find",
    "test",
    "[",
    "[[",
    "printf",
    "expr",
    "seq",
    "date",
    "uname",
    "kill",
    "pwd",
    "whoami",
    "basename",
    "dirname",
    "stat",
    "du",
    "df",
    "free",
    "top",
    "mount",
    "umount",
    "ip",
    "ifconfig",
    "route",
    "netstat",
    "nslookup",
    "timeout",
    "usleep",
    "mkfifo",
    "md5sum",
    "sha256sum",
    "readlink",
    "realpath",
    "nproc",
    "stty",
    "vi",
    "less",
    "more",
    "sync",
    "which",
    "watch",
    "hexdump",
    "od",
    "base64",
    "gzip",
    "gunzip",
    "tar",
    "arping",
    "traceroute",
    "telnet",
    "nohup",
    "setsid",
    "chroot",
    "pidof",
    "pkill",
    "killall",
    "logger",
    "mktemp",
    "ping6",
    "time",
    "getopt",
    "rev",
    "fold",
    "diff",
    "cmp",
    "split",
    "nice",
];

/// A failure to build a fixture or to run a tool; the message says what is missing or what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TestingError(pub String);

fn err(msg: impl Into<String>) -> TestingError {
    TestingError(msg.into())
}

fn io_ctx(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> TestingError {
    move |e| err(format!("{what}: {e}"))
}

/// The busybox test image written to disk in three forms.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The normalised name (`docker.io/library/busybox:test`), as `ImageStore` lists it after an import.
    pub name: String,
    /// The tag of `name`; the OCI layout's `org.opencontainers.image.ref.name` (skopeo's `oci:DIR:TAG`).
    pub tag: String,
    /// The OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/...`).
    pub layout: PathBuf,
    /// The same layout as a tar.
    pub oci_archive: PathBuf,
    /// A `docker save`-style tar (`manifest.json` with `RepoTags: [name]`, uncompressed layer).
    pub docker_archive: PathBuf,
    /// The OCI manifest's digest (`sha256:...`) in the layout and the OCI archive.
    pub manifest_digest: String,
    /// The config digest: the image id.
    pub config_digest: String,
    /// The layer's diff ID (digest of the uncompressed tar).
    pub diff_id: String,
}

impl TestImage {
    /// skopeo's source reference for this image: `oci:<layout>:<tag>`.
    pub fn skopeo_source(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.tag)
    }
}

/// Builds the busybox test image named [`BUSYBOX_TEST_IMAGE`] under `dir` (see [`build_busybox_image`]).
pub fn busybox_image(dir: &Path) -> Result<TestImage, TestingError> {
    build_busybox_image(dir, BUSYBOX_TEST_IMAGE)
}

/// Builds a one-layer busybox image named `name` under `dir`: `dir/oci` (layout), `dir/busybox-oci.tar` and
/// `dir/busybox-docker.tar`. The layer holds `/bin/busybox` (copied from the host's busybox-static) with
/// [`APPLETS`] as symlinks in `/bin`, `/etc/passwd` and `/etc/group` (root, nobody), `/tmp` (1777),
/// `/root`, `/home`, `/var`, `/proc`, `/sys`, `/dev`, `/usr/bin`, `/sbin`; the config runs `sh` with
/// [`IMAGE_PATH_ENV`]. The output is byte-for-byte the same for the same busybox and name.
pub fn build_busybox_image(dir: &Path, name: &str) -> Result<TestImage, TestingError> {
    let busybox = fs::read(BUSYBOX).map_err(|e| {
        err(format!(
            "cannot build the busybox test image: {BUSYBOX} is not readable ({e}); install Debian's busybox-static"
        ))
    })?;
    let name = crate::image::reference::normalize(name)
        .map_err(|e| err(format!("invalid test image name {name:?}: {e}")))?;
    if name.contains('@') {
        return Err(err(format!(
            "the test image name {name:?} must be a tag, not a digest"
        )));
    }
    let tag = name
        .rsplit_once(':')
        .map(|(_, t)| t.to_string())
        .unwrap_or_default();

    let layer_tar = busybox_layer(&busybox).map_err(io_ctx("failed to build the busybox layer"))?;
    let diff_id = digest(&layer_tar);
    let layer_gz = {
        let mut enc = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::fast());
        enc.write_all(&layer_tar)
            .map_err(io_ctx("failed to compress the layer"))?;
        enc.finish()
            .map_err(io_ctx("failed to compress the layer"))?
    };
    let layer_digest = digest(&layer_gz);
    let config = serde_json::to_vec(&json!({
        "created": "2024-01-01T00:00:00Z",
        "author": "skiff-testing",
        "architecture": go_arch(),
        "os": "linux",
        "config": {"Env": [IMAGE_PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "skiff_runtime::testing (busybox-static)"}],
    }))
    .map_err(|e| err(format!("failed to encode the image config: {e}")))?;
    let config_digest = digest(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_gz.len()}],
    }))
    .map_err(|e| err(format!("failed to encode the image manifest: {e}")))?;
    let manifest_digest = digest(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .map_err(|e| err(format!("failed to encode the image index: {e}")))?;
    let oci_layout = br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec();

    // The layout directory.
    let layout = dir.join("oci");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_ctx(format!("failed to create {}", blobs.display())))?;
    let blob_files: [(&str, &[u8]); 3] = [
        (&config_digest, &config),
        (&layer_digest, &layer_gz),
        (&manifest_digest, &manifest),
    ];
    for (d, data) in blob_files {
        let p = blobs.join(hex_of(d));
        fs::write(&p, data).map_err(io_ctx(format!("failed to write {}", p.display())))?;
    }
    for (f, data) in [("oci-layout", &oci_layout), ("index.json", &index)] {
        let p = layout.join(f);
        fs::write(&p, data).map_err(io_ctx(format!("failed to write {}", p.display())))?;
    }

    // The OCI archive: the layout's files in a tar.
    let mut files: Vec<(String, &[u8])> = vec![
        ("oci-layout".into(), &oci_layout),
        ("index.json".into(), &index),
    ];
    for (d, data) in blob_files {
        files.push((format!("blobs/sha256/{}", hex_of(d)), data));
    }
    let oci_archive = dir.join("busybox-oci.tar");
    write_tar(&oci_archive, &files)?;

    // The docker archive.
    let docker_manifest = serde_json::to_vec(&json!([{
        "Config": format!("{}.json", hex_of(&config_digest)),
        "RepoTags": [name],
        "Layers": [format!("{}/layer.tar", hex_of(&diff_id))],
    }]))
    .map_err(|e| err(format!("failed to encode manifest.json: {e}")))?;
    let docker_archive = dir.join("busybox-docker.tar");
    write_tar(
        &docker_archive,
        &[
            (format!("{}.json", hex_of(&config_digest)), &config),
            (format!("{}/layer.tar", hex_of(&diff_id)), &layer_tar),
            ("manifest.json".into(), &docker_manifest),
        ],
    )?;

    Ok(TestImage {
        name,
        tag,
        layout,
        oci_archive,
        docker_archive,
        manifest_digest,
        config_digest,
        diff_id,
    })
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn hex_of(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// Go's name for the host architecture, as image configs and indexes spell it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_704_067_200);
    h
}

fn busybox_layer(busybox: &[u8]) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (d, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
    ] {
        let mut h = header(tar::EntryType::Directory, 0, mode);
        b.append_data(&mut h, format!("{d}/"), io::empty())?;
    }
    let mut h = header(tar::EntryType::Regular, busybox.len() as u64, 0o755);
    b.append_data(&mut h, "bin/busybox", busybox)?;
    for applet in APPLETS {
        let mut h = header(tar::EntryType::Symlink, 0, 0o777);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    let passwd =
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    let group = "root:x:0:\nnobody:x:65534:\n";
    for (p, content) in [("etc/passwd", passwd), ("etc/group", group)] {
        let mut h = header(tar::EntryType::Regular, content.len() as u64, 0o644);
        b.append_data(&mut h, p, content.as_bytes())?;
    }
    b.into_inner()
}

fn write_tar(path: &Path, files: &[(String, &[u8])]) -> Result<(), TestingError> {
    let ctx = || io_ctx(format!("failed to write {}", path.display()));
    let file = File::create(path).map_err(ctx())?;
    let mut b = tar::Builder::new(io::BufWriter::new(file));
    let mut dirs = std::collections::BTreeSet::new();
    for (name, _) in files {
        let mut p = Path::new(name).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_path_buf());
            p = d.parent();
        }
    }
    for d in &dirs {
        let mut h = header(tar::EntryType::Directory, 0, 0o755);
        b.append_data(&mut h, format!("{}/", d.display()), io::empty())
            .map_err(ctx())?;
    }
    for (name, data) in files {
        let mut h = header(tar::EntryType::Regular, data.len() as u64, 0o644);
        b.append_data(&mut h, name, *data).map_err(ctx())?;
    }
    b.into_inner().map_err(ctx())?.flush().map_err(ctx())
}

/// Which manifest format a push stores in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    /// `application/vnd.oci.image.manifest.v1+json` (skopeo's default from an OCI layout).
    Oci,
    /// `application/vnd.docker.distribution.manifest.v2+json` (`skopeo copy --format v2s2`).
    DockerV2S2,
}

/// Debian's `docker-registry` (distribution 2.8) serving plain HTTP on 127.0.0.1, with its storage in a
/// temporary directory. The process is killed and the directory removed on drop.
pub struct TestRegistry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRegistry")
            .field("port", &self.port)
            .field("pid", &self.child.id())
            .finish()
    }
}

/// A port free on 127.0.0.1 right now (the listener is closed again before returning).
pub fn free_port() -> Result<u16, TestingError> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(io_ctx("failed to find a free port on 127.0.0.1"))?;
    Ok(l.local_addr()
        .map_err(io_ctx("failed to find a free port"))?
        .port())
}

fn require_tool(tool: &str, package: &str) -> Result<PathBuf, TestingError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            err(format!(
                "`{tool}` is not installed (not found in PATH): install Debian's {package}"
            ))
        })
}

impl TestRegistry {
    /// Starts an open registry (no authentication).
    pub fn start() -> Result<TestRegistry, TestingError> {
        Self::start_inner(None)
    }

    /// Starts a registry that demands HTTP Basic authentication against `htpasswd` (the file's contents:
    /// `user:<bcrypt hash>` lines, which is all distribution accepts).
    pub fn start_with_htpasswd(htpasswd: &str) -> Result<TestRegistry, TestingError> {
        Self::start_inner(Some(htpasswd))
    }

    fn start_inner(htpasswd: Option<&str>) -> Result<TestRegistry, TestingError> {
        let binary = require_tool("docker-registry", "docker-registry")?;
        let dir = tempfile::Builder::new()
            .prefix("skiff-test-registry-")
            .tempdir()
            .map_err(io_ctx(
                "failed to create the registry's temporary directory",
            ))?;
        let storage = dir.path().join("data");
        fs::create_dir_all(&storage).map_err(io_ctx("failed to create the registry storage"))?;
        let auth = match htpasswd {
            Some(content) => {
                let p = dir.path().join("htpasswd");
                fs::write(&p, content).map_err(io_ctx("failed to write the htpasswd file"))?;
                format!(
                    "auth: {{htpasswd: {{realm: skiff-test, path: {}}}}}\n",
                    p.display()
                )
            }
            None => String::new(),
        };
        // A port picked now may be taken before the registry binds it: retry a few times.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let config = dir.path().join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog: {{level: info, formatter: text}}\n\
                     storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
                     http: {{addr: 127.0.0.1:{port}}}\n{auth}",
                    storage.display()
                ),
            )
            .map_err(io_ctx("failed to write the registry config"))?;
            let log_path = dir.path().join("registry.log");
            let log =
                File::create(&log_path).map_err(io_ctx("failed to create the registry log"))?;
            let log2 = log
                .try_clone()
                .map_err(io_ctx("failed to create the registry log"))?;
            let mut child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .map_err(io_ctx(format!("failed to start {}", binary.display())))?;
            match wait_ready(&mut child, port, Duration::from_secs(15)) {
                Ok(()) => return Ok(TestRegistry { child, port, dir }),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!(
                        "{e}; log: {}",
                        fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
            }
        }
        Err(err(format!("docker-registry did not start: {last}")))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The registry's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the registry host as image references name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log so far (for test failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes `image` as `<host>/<dest>` (e.g. `busybox:1`) with skopeo; returns the full reference.
    pub fn push(
        &self,
        image: &TestImage,
        dest: &str,
        format: ManifestFormat,
    ) -> Result<String, TestingError> {
        self.push_with_credentials(image, dest, format, None)
    }

    /// Like [`TestRegistry::push`], logging in with `(username, password)` (for a registry with htpasswd).
    pub fn push_with_credentials(
        &self,
        image: &TestImage,
        dest: &str,
        format: ManifestFormat,
        credentials: Option<(&str, &str)>,
    ) -> Result<String, TestingError> {
        let skopeo = require_tool("skopeo", "skopeo")?;
        let reference = format!("{}/{dest}", self.host());
        let mut cmd = Command::new(skopeo);
        cmd.arg("copy").arg("--dest-tls-verify=false");
        if format == ManifestFormat::DockerV2S2 {
            cmd.args(["--format", "v2s2"]);
        }
        if let Some((u, p)) = credentials {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        // skopeo wants a policy; Debian installs /etc/containers/policy.json, but do not depend on it.
        let policy = self.dir.path().join("policy.json");
        fs::write(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .map_err(io_ctx("failed to write skopeo's policy"))?;
        cmd.arg(format!("--policy={}", policy.display()));
        cmd.arg(image.skopeo_source())
            .arg(format!("docker://{reference}"));
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(io_ctx("failed to run skopeo"))?;
        if !out.status.success() {
            return Err(err(format!(
                "skopeo copy to {reference} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            )));
        }
        Ok(reference)
    }
}

fn wait_ready(child: &mut Child, port: u16, limit: Duration) -> Result<(), TestingError> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(err(format!("docker-registry exited with {status}")));
        }
        if let Ok(status) = http_get_status(port, "/v2/")
            && (status == 200 || status == 401)
        {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(err(format!(
                "docker-registry did not answer on 127.0.0.1:{port} within {limit:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP server on 127.0.0.1 that accepts connections and never says a word: a registry that hangs. The
/// connections are held until the server is dropped.
pub struct SilentServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentServer {
    pub fn start() -> Result<SilentServer, TestingError> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(io_ctx("failed to listen on 127.0.0.1"))?;
        let port = listener
            .local_addr()
            .map_err(io_ctx("failed to read the listening address"))?
            .port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    held.push(c);
                }
            }
        });
        Ok(SilentServer {
            port,
            stop,
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The status code of a plain HTTP GET to 127.0.0.1:`port` (a tiny client: enough for readiness checks).
fn http_get_status(port: u16, path: &str) -> io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let r = s.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an HTTP answer: {line:?}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageStore;

    #[test]
    fn busybox_image_imports_from_both_archives() {
        let dir = tempfile::tempdir().unwrap();
        let image = busybox_image(dir.path()).unwrap();
        assert_eq!(image.name, "docker.io/library/busybox:test");
        assert_eq!(image.tag, "test");
        // Deterministic: building again gives the same digests.
        let again = busybox_image(&dir.path().join("again").tap_mkdir()).unwrap();
        assert_eq!(again.manifest_digest, image.manifest_digest);

        for archive in [&image.oci_archive, &image.docker_archive] {
            let store_dir = tempfile::tempdir().unwrap();
            let store = ImageStore::open(store_dir.path()).unwrap();
            let refs = store.import_archive(archive).unwrap();
            assert_eq!(refs.len(), 1, "{}", archive.display());
            assert_eq!(refs[0].name, image.name);
            let resolved = store.resolve("busybox:test").unwrap();
            let cfg = resolved.config.config().as_ref().unwrap();
            assert_eq!(cfg.cmd().as_deref(), Some(&["sh".to_string()][..]));
            assert_eq!(
                cfg.env().as_deref(),
                Some(&[IMAGE_PATH_ENV.to_string()][..])
            );
            assert_eq!(resolved.layers.len(), 1);
            let fs_dir = &resolved.layers[0];
            let bb = fs::read(fs_dir.join("bin/busybox")).unwrap();
            assert_eq!(bb, fs::read(BUSYBOX).unwrap());
            for applet in ["sh", "echo", "sleep", "wget", "nc", "httpd", "yes"] {
                let link = fs::read_link(fs_dir.join("bin").join(applet)).unwrap();
                assert_eq!(link, Path::new("busybox"));
            }
            let passwd = fs::read_to_string(fs_dir.join("etc/passwd")).unwrap();
            assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
            assert!(passwd.contains("nobody:x:65534:65534:"));
            assert!(
                fs::read_to_string(fs_dir.join("etc/group"))
                    .unwrap()
                    .contains("nobody:x:65534:")
            );
            assert!(fs_dir.join("tmp").is_dir());
        }
        // The OCI archive keeps the layout's manifest digest.
        let store_dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(store_dir.path()).unwrap();
        let refs = store.import_archive(&image.oci_archive).unwrap();
        assert_eq!(refs[0].digest, image.manifest_digest);
    }

    #[test]
    fn custom_names_are_normalised_and_digests_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let image = build_busybox_image(dir.path(), "example.com/team/bb:v2").unwrap();
        assert_eq!(image.name, "example.com/team/bb:v2");
        assert_eq!(image.tag, "v2");
        let e = build_busybox_image(dir.path(), "Bad Name").unwrap_err();
        assert!(e.to_string().contains("invalid test image name"), "{e}");
    }

    #[test]
    fn registry_accepts_pushes_in_both_formats_and_stops_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let image = busybox_image(dir.path()).unwrap();
        let registry = TestRegistry::start().unwrap();
        let port = registry.port();
        let r = registry
            .push(&image, "busybox:1", ManifestFormat::Oci)
            .unwrap();
        assert_eq!(r, format!("127.0.0.1:{port}/busybox:1"));
        registry
            .push(&image, "busybox:1-v2s2", ManifestFormat::DockerV2S2)
            .unwrap();
        assert_eq!(http_get_status(port, "/v2/busybox/tags/list").unwrap(), 200);
        let pid = registry.child.id();
        drop(registry);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the registry process is still there"
        );
    }

    trait TapMkdir {
        fn tap_mkdir(self) -> Self;
    }
    impl TapMkdir for PathBuf {
        fn tap_mkdir(self) -> Self {
            fs::create_dir_all(&self).unwrap();
            self
        }
    }
}
