//! Crash test of the embedded backend: every write acknowledged before a `kill -9` is in the store after
//! reopening, and the history replays in revision order.
//!
//! The `store-crash-writer` helper creates keys from 16 concurrent writers and prints each acknowledged
//! one; the test kills it with SIGKILL once enough writes were acknowledged (not after a fixed time).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use skiff_store::embedded::EmbeddedBackend;
use skiff_store::{Backend, EventKind};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

/// Acknowledged writes to wait for before the kill.
const ACKNOWLEDGED: usize = 4000;
/// The longest wait for the next acknowledged write.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

fn parse(line: &str) -> anyhow::Result<(i64, String)> {
    let (revision, key) = line
        .split_once(' ')
        .with_context(|| format!("malformed line {line:?}"))?;
    Ok((
        revision
            .parse()
            .with_context(|| format!("malformed revision in {line:?}"))?,
        key.to_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
        .arg(&path)
        .arg("16")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting store-crash-writer")?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let mut stderr = child.stderr.take().context("no stderr")?;

    let mut acked = Vec::with_capacity(ACKNOWLEDGED + 100);
    while acked.len() < ACKNOWLEDGED {
        match tokio::time::timeout(LINE_TIMEOUT, lines.next_line()).await {
            Err(_) => bail!(
                "no write acknowledged for {LINE_TIMEOUT:?} after {} writes",
                acked.len()
            ),
            Ok(Ok(Some(line))) => acked.push(parse(&line)?),
            Ok(Ok(None)) => {
                let mut message = String::new();
                stderr.read_to_string(&mut message).await?;
                bail!(
                    "the writer exited after {} writes: {}",
                    acked.len(),
                    message.trim()
                );
            }
            Ok(Err(err)) => return Err(err).context("reading the writer's output"),
        }
    }
    child.start_kill().context("killing the writer")?;
    let status = child.wait().await?;
    ensure!(
        !status.success(),
        "the writer was expected to die of SIGKILL, it exited with {status}"
    );
    // Lines printed before the kill are acknowledged writes too (a line cut by the kill is not complete).
    while let Some(line) = lines.next_line().await? {
        if let Ok(entry) = parse(&line) {
            acked.push(entry);
        }
    }

    let backend: Arc<dyn Backend> =
        Arc::new(EmbeddedBackend::open(&path).context("reopening after kill -9")?);
    let current = backend.current_revision().await?;
    ensure!(
        current >= acked.len() as i64,
        "revision {current} after {} acknowledged writes",
        acked.len()
    );
    for (revision, key) in &acked {
        let kv = backend
            .get(key)
            .await?
            .with_context(|| format!("acknowledged key {key} is missing"))?;
        ensure!(
            kv.mod_revision == *revision,
            "{key} acknowledged at {revision}, stored at {}",
            kv.mod_revision
        );
    }

    // The whole history replays in order, with no gap, and holds every acknowledged write.
    let oldest = backend.compacted_revision().await?;
    let mut watch = backend.watch("", oldest).await?;
    let mut by_key: HashMap<String, i64> = HashMap::new();
    for expected in oldest + 1..=current {
        let event = tokio::time::timeout(LINE_TIMEOUT, watch.next())
            .await
            .context("timed out replaying the history")?
            .context("the replay ended early")??;
        ensure!(
            event.revision == expected,
            "replay gave revision {} where {expected} was due",
            event.revision
        );
        ensure!(
            event.kind == EventKind::Create,
            "unexpected {:?} at {expected}",
            event.kind
        );
        ensure!(
            event.kv.value == format!("value of {}", event.kv.key).into_bytes(),
            "wrong value at {expected}"
        );
        by_key.insert(event.kv.key, event.revision);
    }
    for (revision, key) in &acked {
        ensure!(
            by_key.get(key) == Some(revision),
            "{key} missing from the replayed history"
        );
    }
    Ok(())
}
