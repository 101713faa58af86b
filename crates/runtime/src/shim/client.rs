//! The agent's side of the shim: launching `skiff shim` detached and waiting for its `ok`/`error` line, and
//! attaching to a running container through the shim's socket.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::protocol::{self, Hello};
use super::{READY_FD, ShimArgs};
use crate::cri::{RuntimeError, StreamOptions, StreamSession, TerminalSize};

/// How to run the shim: `exe` with `prefix` arguments before the shim's own (`skiff` + `["shim"]`).
#[derive(Clone, Debug)]
pub struct ShimCommand {
    pub exe: PathBuf,
    pub prefix: Vec<OsString>,
}

/// How long a launch may take until the container runs (runc create + start; minutes only when the host
/// is badly overloaded).
pub const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The outcome of a launch.
#[derive(Debug)]
pub enum LaunchError {
    /// runc refused (the message is runc's).
    Start(String),
    /// The shim itself could not run.
    Shim(String),
}

/// Starts a detached shim for `args` and waits until the container runs (or failed to start). The shim's
/// own diagnostics go to `shim_log`. Returns the container's init pid.
pub fn launch(cmd: &ShimCommand, args: &ShimArgs, shim_log: &Path) -> Result<u32, LaunchError> {
    let shim = |e: String| LaunchError::Shim(e);
    let (ready_r, ready_w) = super::pipe().map_err(|e| shim(format!("pipe: {e}")))?;
    let log =
        File::create(shim_log).map_err(|e| shim(format!("create {}: {e}", shim_log.display())))?;
    let w = ready_w.as_raw_fd();
    let mut c = Command::new(&cmd.exe);
    c.args(&cmd.prefix)
        .args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if w == READY_FD {
                if libc::fcntl(w, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(w, READY_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = c
        .spawn()
        .map_err(|e| shim(format!("start {}: {e}", cmd.exe.display())))?;
    drop(ready_w);
    // The first process forks the real shim and exits at once.
    let _ = child.wait();
    let mut pfd = libc::pollfd {
        fd: ready_r.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid fd.
    let polled = unsafe { libc::poll(&mut pfd, 1, START_TIMEOUT.as_millis() as libc::c_int) };
    if polled == 0 {
        return Err(shim(format!(
            "the shim did not report within {START_TIMEOUT:?} (see {})",
            shim_log.display()
        )));
    }
    let mut line = String::new();
    BufReader::new(ready_r)
        .read_line(&mut line)
        .map_err(|e| shim(format!("read the shim's answer: {e}")))?;
    let line = line.trim_end();
    if let Some(pid) = line.strip_prefix("ok ") {
        return pid
            .trim()
            .parse()
            .map_err(|_| shim(format!("bad answer from the shim: {line:?}")));
    }
    if let Some(msg) = line.strip_prefix("error ") {
        return Err(LaunchError::Start(msg.to_string()));
    }
    let diag = std::fs::read_to_string(shim_log).unwrap_or_default();
    Err(shim(format!(
        "the shim exited without an answer: {}",
        diag.trim()
    )))
}

/// Attaches to the container served on `socket`. `exit` resolves to the code the shim reports when the
/// container ends, or 0 when the connection closes first.
pub async fn attach(socket: &Path, options: &StreamOptions) -> Result<StreamSession, RuntimeError> {
    // Long paths go through the directory's fd (socket paths are limited to 108 bytes).
    let dir_fd = match socket.parent() {
        Some(dir) if socket.as_os_str().len() > 100 => Some(
            File::open(dir)
                .map_err(|e| RuntimeError::Other(format!("attach: open {}: {e}", dir.display())))?,
        ),
        _ => None,
    };
    let connect_path = match &dir_fd {
        Some(d) => PathBuf::from(format!(
            "/proc/self/fd/{}/{}",
            d.as_raw_fd(),
            socket.file_name().unwrap_or_default().to_string_lossy()
        )),
        None => socket.to_path_buf(),
    };
    let stream = UnixStream::connect(&connect_path).await.map_err(|e| {
        RuntimeError::Other(format!(
            "attach: connect to the shim at {}: {e}",
            socket.display()
        ))
    })?;
    let hello = Hello {
        stdin: options.stdin,
        stdout: options.stdout,
        stderr: options.stderr && !options.tty,
    };
    let (mut rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_vec(&hello).map_err(|e| RuntimeError::Other(e.to_string()))?;
    line.push(b'\n');
    wr.write_all(&line)
        .await
        .map_err(|e| RuntimeError::Other(format!("attach: {e}")))?;

    let mut session = StreamSession {
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
        exit: Box::pin(async { Ok(0) }),
    };
    let mut out_tx = None;
    let mut err_tx = None;
    if hello.stdout {
        let (a, b) = tokio::io::duplex(64 * 1024);
        out_tx = Some(a);
        session.stdout = Some(Box::pin(b));
    }
    if hello.stderr {
        let (a, b) = tokio::io::duplex(64 * 1024);
        err_tx = Some(a);
        session.stderr = Some(Box::pin(b));
    }
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel::<i32>();
    let (closed_tx, mut closed_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut code = 0;
        while let Ok(Some((kind, payload))) = protocol::read_frame_async(&mut rd).await {
            let target = match kind {
                protocol::STDOUT => out_tx.as_mut(),
                protocol::STDERR => err_tx.as_mut(),
                protocol::EXIT => {
                    if payload.len() == 4 {
                        code = i32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    }
                    break;
                }
                _ => None,
            };
            if let Some(t) = target
                && t.write_all(&payload).await.is_err()
            {
                // The reader went away: keep draining the socket.
            }
        }
        drop(out_tx);
        drop(err_tx);
        let _ = closed_tx.send(());
        let _ = exit_tx.send(code);
    });

    let mut stdin_rx = None;
    if hello.stdin {
        let (a, b) = tokio::io::duplex(64 * 1024);
        stdin_rx = Some(a);
        session.stdin = Some(Box::pin(b));
    }
    let (resize_tx, mut resize_rx) = tokio::sync::mpsc::channel::<TerminalSize>(8);
    if options.tty {
        session.resize = Some(resize_tx);
    } else {
        drop(resize_tx);
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        let mut resize_open = true;
        loop {
            tokio::select! {
                _ = &mut closed_rx => break,
                r = async {
                    match stdin_rx.as_mut() {
                        Some(s) => s.read(&mut buf).await,
                        None => std::future::pending().await,
                    }
                } => {
                    match r {
                        Ok(0) | Err(_) => {
                            stdin_rx = None;
                            if protocol::write_frame_async(&mut wr, protocol::STDIN_CLOSE, &[]).await.is_err() {
                                break;
                            }
                        }
                        Ok(n) => {
                            if protocol::write_frame_async(&mut wr, protocol::STDIN, &buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                size = async {
                    if resize_open { resize_rx.recv().await } else { std::future::pending().await }
                } => {
                    match size {
                        Some(s) => {
                            let p = protocol::resize_payload(s.width, s.height);
                            if protocol::write_frame_async(&mut wr, protocol::RESIZE, &p).await.is_err() {
                                break;
                            }
                        }
                        None => resize_open = false,
                    }
                }
            }
        }
    });
    session.exit = Box::pin(async move { Ok(exit_rx.await.unwrap_or(0)) });
    Ok(session)
}
