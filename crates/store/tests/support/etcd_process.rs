//! A throwaway etcd server for tests and benchmarks: started on free loopback ports in a temporary data
//! directory, killed (and its directory removed) when dropped, also when the test fails.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use skiff_store::etcd::EtcdBackend;

/// How long etcd may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts, in case another process takes one of the free ports before etcd binds it.
const START_ATTEMPTS: usize = 3;

pub struct EtcdProcess {
    child: Child,
    endpoint: String,
    // Dropped after `child` has been killed in `drop`.
    dir: tempfile::TempDir,
}

impl EtcdProcess {
    /// Starts etcd and returns it with a backend connected to it. Fails with a message saying how to
    /// install etcd when the binary is missing.
    pub async fn start() -> anyhow::Result<(EtcdProcess, EtcdBackend)> {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let mut process = Self::spawn()?;
            match process.wait_until_ready().await {
                Ok(backend) => return Ok((process, backend)),
                Err(err) => failures.push(format!("{err:#}")),
            }
        }
        bail!(
            "starting etcd failed {START_ATTEMPTS} times: {}",
            failures.join("; ")
        )
    }

    #[allow(dead_code, reason = "the benchmark uses it, the tests do not")]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn spawn() -> anyhow::Result<EtcdProcess> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-etcd-")
            .tempdir()
            .context("creating a data directory for etcd")?;
        let client = format!("http://127.0.0.1:{}", free_port()?);
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let log = std::fs::File::create(dir.path().join("etcd.log"))
            .context("creating the etcd log file")?;
        let spawned = Command::new("etcd")
            .arg("--name=skiff-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=skiff-test={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("opening the etcd log file")?)
            .stderr(log)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
                "the `etcd` binary was not found on PATH; the etcd backend tests need it: \
                 install it with `apt-get install etcd-server`"
            ),
            Err(err) => return Err(err).context("starting etcd"),
        };
        Ok(EtcdProcess {
            child,
            endpoint: client,
            dir,
        })
    }

    /// Polls etcd until it answers, it exits, or the deadline passes.
    async fn wait_until_ready(&mut self) -> anyhow::Result<EtcdBackend> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("checking on etcd")? {
                bail!(
                    "etcd exited while starting ({status}); its log: {}",
                    log_tail(self.dir.path())
                );
            }
            match EtcdBackend::connect(std::slice::from_ref(&self.endpoint)).await {
                Ok(backend) => return Ok(backend),
                Err(err) if Instant::now() > deadline => bail!(
                    "etcd at {} did not answer within {START_TIMEOUT:?}: {err}; its log: {}",
                    self.endpoint,
                    log_tail(self.dir.path())
                ),
                // Polling with a deadline: etcd usually answers within half a second.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        // SIGKILL: nothing in the data directory is kept.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port for etcd")?;
    Ok(listener.local_addr()?.port())
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
