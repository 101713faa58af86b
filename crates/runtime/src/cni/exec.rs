//! Running one CNI plugin binary: environment, stdin, stdout/stderr capture and a deadline that kills the
//! plugin (and everything it started in its process group) when it hangs.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a plugin invocation produced.
#[derive(Debug)]
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a plugin could not be run to completion.
#[derive(Debug)]
pub(crate) enum ExecFailure {
    Spawn(std::io::Error),
    Timeout,
}

enum Event {
    Exit(std::io::Result<ExitStatus>),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// How long to wait for the pipes to close after the plugin's process group was killed.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// Runs `binary` with `env` (added to the inherited environment) and `stdin`, waiting at most `timeout`.
pub(crate) fn run(
    binary: &Path,
    env: &[(String, String)],
    stdin: &[u8],
    timeout: Duration,
) -> Result<Output, ExecFailure> {
    let mut cmd = Command::new(binary);
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a time-out kills what the plugin started too.
        .process_group(0);
    let mut child = cmd.spawn().map_err(ExecFailure::Spawn)?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();

    let mut child_stdin = child.stdin.take();
    let input = stdin.to_vec();
    std::thread::spawn(move || {
        if let Some(mut w) = child_stdin.take() {
            // A plugin that exits without reading its stdin gives EPIPE; its exit status tells the story.
            let _ = w.write_all(&input);
        }
    });
    if let Some(mut out) = child.stdout.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            let _ = tx.send(Event::Stdout(buf));
        });
    }
    if let Some(mut err) = child.stderr.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            let _ = tx.send(Event::Stderr(buf));
        });
    }
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Event::Exit(child.wait()));
        });
    }
    drop(tx);

    let deadline = Instant::now() + timeout;
    let mut status = None;
    let mut stdout = None;
    let mut stderr = None;
    let mut timed_out = false;
    while status.is_none() || stdout.is_none() || stderr.is_none() {
        let now = Instant::now();
        let wait = if timed_out {
            AFTER_KILL
        } else {
            deadline.saturating_duration_since(now)
        };
        match rx.recv_timeout(wait) {
            Ok(Event::Exit(s)) => status = Some(s),
            Ok(Event::Stdout(b)) => stdout = Some(b),
            Ok(Event::Stderr(b)) => stderr = Some(b),
            Err(mpsc::RecvTimeoutError::Timeout) if !timed_out => {
                timed_out = true;
                kill_group(pid);
            }
            Err(_) => break,
        }
    }
    if timed_out {
        return Err(ExecFailure::Timeout);
    }
    let status = match status {
        Some(Ok(s)) => s,
        Some(Err(e)) => return Err(ExecFailure::Spawn(e)),
        None => ExitStatus::from_raw(-1),
    };
    Ok(Output {
        status,
        stdout: stdout.unwrap_or_default(),
        stderr: stderr.unwrap_or_default(),
    })
}

fn kill_group(pid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals the process group the plugin leads; no memory is involved.
    let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if rc != 0 {
        tracing::debug!(pid, error = %std::io::Error::last_os_error(), "killing a timed-out CNI plugin");
    }
}

/// Finds the plugin binary `name` in the first of `dirs` that has it.
pub(crate) fn find_plugin(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}
