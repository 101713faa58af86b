//! Child processes of the benchmark: `skiff server` and a throwaway etcd, each behind a guard that stops
//! the process when dropped (SIGTERM, then SIGKILL), also when the benchmark fails half way.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{Conn, ConnectError};

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(2);
/// How long a process may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// SIGTERM, wait, then SIGKILL; returns whether the process exited on SIGTERM.
fn stop_child(child: &mut Child) -> bool {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return true;
    }
    signal(child.id(), "TERM");
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Reads a `kB` field such as `VmRSS` from /proc/<pid>/status.
pub fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    status_kib_from(&format!("/proc/{pid}/status"), field)
}

/// Reads a `Name:   123 kB` field from a /proc file.
pub fn status_kib_from(path: &str, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(path).with_context(|| format!("failed to read {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

/// User plus system CPU time of a process, from /proc/<pid>/stat (USER_HZ is 100 on Linux).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .context("failed to read /proc/<pid>/stat")?;
    let after_name = stat
        .rsplit_once(')')
        .context("malformed /proc/<pid>/stat")?
        .1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the name.
    let ticks: u64 = fields.get(11).context("no utime")?.parse::<u64>()?
        + fields.get(12).context("no stime")?.parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

/// A running `skiff server`.
pub struct Skiff {
    child: Child,
    pub port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    spawned: Instant,
}

impl Skiff {
    /// Starts `skiff server` on a free port; its output goes to `log`.
    pub fn spawn(
        binary: &Path,
        node_ip: &str,
        data_dir: &Path,
        log: &Path,
        datastore: Option<&str>,
    ) -> anyhow::Result<Skiff> {
        let port = free_port()?;
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("failed to create {}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--https-listen-port")
            .arg(port.to_string())
            .args([
                "--bind-address",
                "127.0.0.1",
                "--node-ip",
                node_ip,
                "--disable-agent",
            ]);
        if let Some(endpoint) = datastore {
            command.arg("--datastore-endpoint").arg(endpoint);
        }
        // As a user would run it: no backtrace captured on every error.
        command
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .context("failed to open the server log")?,
            )
            .stderr(log_file);
        let spawned = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;
        Ok(Skiff {
            child,
            port,
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
            spawned,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/readyz` over HTTPS with the admin certificate every 2 ms; returns the time from spawning to
    /// the first `ok` and the TLS configuration that worked.
    pub async fn wait_ready(&mut self) -> anyhow::Result<(Duration, Arc<rustls::ClientConfig>)> {
        let tls_dir = self.data_dir.join("server").join("tls");
        let mut tls = None;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("failed to check on skiff server")?
            {
                bail!(
                    "skiff server exited while starting ({status}); its log:\n{}",
                    log_tail(&self.log)
                );
            }
            if self.spawned.elapsed() > START_TIMEOUT {
                bail!(
                    "skiff server was not ready within {START_TIMEOUT:?}; its log:\n{}",
                    log_tail(&self.log)
                );
            }
            if tls.is_none() {
                tls = crate::client::tls_config(&tls_dir).ok();
            }
            if let Some(config) = &tls {
                match Conn::try_connect(self.port, config).await {
                    Ok(mut conn) => {
                        let ready = conn
                            .expect(
                                http::Method::GET,
                                "/readyz",
                                None,
                                None,
                                http::StatusCode::OK,
                            )
                            .await;
                        if ready.is_ok_and(|body| body.starts_with(b"ok")) {
                            return Ok((self.spawned.elapsed(), config.clone()));
                        }
                    }
                    Err(ConnectError::Refused(_)) => {}
                    // A TLS failure: the files may have been read while being written. Read them again.
                    Err(ConnectError::Other(_)) => tls = None,
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        status_kib(self.pid(), "VmRSS")
    }

    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(self.pid())
    }

    /// Stops the server with SIGTERM (SIGKILL after a time-out).
    pub fn stop(mut self) -> anyhow::Result<()> {
        if !stop_child(&mut self.child) {
            bail!("skiff server did not stop within {STOP_TIMEOUT:?} of SIGTERM; it was killed");
        }
        Ok(())
    }
}

impl Drop for Skiff {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// A throwaway etcd on free loopback ports with its own temporary data directory.
pub struct Etcd {
    child: Child,
    pub endpoint: String,
    // Removed after `child` has been stopped in `drop`.
    dir: tempfile::TempDir,
}

impl Etcd {
    pub async fn start() -> anyhow::Result<Etcd> {
        let mut failures = Vec::new();
        // Another process may take a free port before etcd binds it: try again.
        for _ in 0..3 {
            let mut etcd = Self::spawn()?;
            match etcd.wait_ready().await {
                Ok(()) => return Ok(etcd),
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        bail!("starting etcd failed 3 times: {}", failures.join("; "))
    }

    fn spawn() -> anyhow::Result<Etcd> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-bench-etcd-")
            .tempdir()
            .context("failed to create a directory for etcd")?;
        let client = format!("http://127.0.0.1:{}", free_port()?);
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let log = std::fs::File::create(dir.path().join("etcd.log"))
            .context("failed to create the etcd log")?;
        let child = Command::new("etcd")
            .arg("--name=skiff-bench")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=skiff-bench={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("failed to open the etcd log")?)
            .stderr(log)
            .spawn()
            .context("failed to start etcd (install it with `apt-get install etcd-server`)")?;
        Ok(Etcd {
            child,
            endpoint: client,
            dir,
        })
    }

    /// Polls etcd's `/health` until it reports healthy.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let address = self.endpoint.trim_start_matches("http://").to_string();
        loop {
            if let Some(status) = self.child.try_wait().context("failed to check on etcd")? {
                bail!(
                    "etcd exited while starting ({status}); its log:\n{}",
                    log_tail(&self.dir.path().join("etcd.log"))
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("etcd was not healthy within {START_TIMEOUT:?}");
            }
            if let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await {
                let mut answer = String::new();
                let asked = stream.write_all(b"GET /health HTTP/1.0\r\n\r\n").await;
                if asked.is_ok()
                    && stream.read_to_string(&mut answer).await.is_ok()
                    && answer.contains("\"health\":\"true\"")
                {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        status_kib(self.child.id(), "VmRSS")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}
