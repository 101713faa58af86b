//! Processes run in a running container with `runc exec`, in the foreground so runc's exit status is the
//! process's. The process spec is the container's (`config.json`'s env, cwd, user, capabilities) with the
//! new args. Without a TTY the streams are pipes; with a TTY, runc is given a pty of ours as its controlling
//! terminal: runc puts the container's pty behind it, and a resize of ours reaches runc as SIGWINCH, which it
//! forwards to the container's pty.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Inner;
use crate::cri::{
    ExecSyncResult, Result, RuntimeError, StreamOptions, StreamSession, TerminalSize,
};
use crate::shim::state::{self, Status};

fn other(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Other(e.to_string())
}

/// The exit status runc uses for its own failures (`runc exec failed: ...`).
const RUNC_FAILED: i32 = 255;

#[derive(Clone)]
struct Prepared {
    runc: PathBuf,
    runc_root: PathBuf,
    id: String,
    process_file: PathBuf,
    log_file: PathBuf,
}

impl Prepared {
    fn command(&self, tty: bool) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.runc);
        c.arg("--root").arg(&self.runc_root);
        c.arg("--log")
            .arg(&self.log_file)
            .arg("--log-format")
            .arg("json");
        c.arg("exec").arg("--process").arg(&self.process_file);
        if tty {
            c.arg("--tty");
        }
        c.arg(&self.id);
        c
    }

    /// runc's own error, when the exit status is its failure code and it logged one.
    fn runc_failure(&self, code: i32) -> Option<String> {
        if code != RUNC_FAILED {
            return None;
        }
        let msg = crate::shim::runc_error(&self.log_file, "");
        (!msg.is_empty()).then_some(msg)
    }

    fn cleanup(&self) {
        let _ = std::fs::remove_file(&self.process_file);
        let _ = std::fs::remove_file(&self.log_file);
    }
}

fn prepare(inner: &Inner, id: &str, cmd: &[String], tty: bool) -> Result<Prepared> {
    if cmd.is_empty() {
        return Err(other("exec needs a command"));
    }
    let _rec = inner.load_container(id)?;
    let dir = inner.container_dir(id);
    match state::read(&dir).map_err(other)? {
        Some(s) if s.status == Status::Running => {}
        _ => return Err(other(format!("container {id} is not running"))),
    }
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("config.json"))
            .map_err(|e| other(format!("read the bundle of {id}: {e}")))?,
    )
    .map_err(|e| other(format!("bad bundle of {id}: {e}")))?;
    let mut process = config.get("process").cloned().unwrap_or_default();
    process["args"] = serde_json::json!(cmd);
    process["terminal"] = serde_json::json!(tty);
    if let Some(obj) = process.as_object_mut() {
        obj.remove("consoleSize");
    }
    let nonce = super::store::new_id().map_err(other)?;
    let process_file = dir.join(format!("exec-{}.json", &nonce[..12]));
    let log_file = dir.join(format!("exec-{}.log", &nonce[..12]));
    std::fs::write(&process_file, serde_json::to_vec(&process).map_err(other)?).map_err(other)?;
    Ok(Prepared {
        runc: inner.runc.clone(),
        runc_root: inner.runc_root(),
        id: id.to_string(),
        process_file,
        log_file,
    })
}

pub(crate) async fn exec_sync(
    inner: &Arc<Inner>,
    id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Result<ExecSyncResult> {
    let p = {
        let (inner, id, cmd) = (inner.clone(), id.to_string(), cmd.to_vec());
        tokio::task::spawn_blocking(move || prepare(&inner, &id, &cmd, false))
            .await
            .map_err(other)??
    };
    let mut c = p.command(false);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = c.spawn().map_err(|e| other(format!("run runc exec: {e}")));
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            p.cleanup();
            return Err(e);
        }
    };
    let waited = if timeout.is_zero() {
        Ok(child.wait_with_output().await)
    } else {
        tokio::time::timeout(timeout, child.wait_with_output()).await
    };
    let result = match waited {
        Err(_) => Err(other(format!(
            "command {cmd:?} in container {id} timed out after {timeout:?}"
        ))),
        Ok(Err(e)) => Err(other(format!("runc exec: {e}"))),
        Ok(Ok(out)) => {
            let code = exit_code(out.status);
            match p.runc_failure(code) {
                Some(msg) => Err(other(msg)),
                None => Ok(ExecSyncResult {
                    stdout: out.stdout,
                    stderr: out.stderr,
                    exit_code: code,
                }),
            }
        }
    };
    p.cleanup();
    result
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

pub(crate) async fn exec(
    inner: &Arc<Inner>,
    id: &str,
    cmd: &[String],
    options: &StreamOptions,
) -> Result<StreamSession> {
    let p = {
        let (inner, id, cmd, tty) = (inner.clone(), id.to_string(), cmd.to_vec(), options.tty);
        tokio::task::spawn_blocking(move || prepare(&inner, &id, &cmd, tty))
            .await
            .map_err(other)??
    };
    let r = if options.tty {
        exec_tty(&p, options)
    } else {
        exec_pipes(&p, options)
    };
    if r.is_err() {
        p.cleanup();
    }
    r.map(|(session, _)| session)
}

/// Waits for a streaming `runc exec`: the process's exit code, or an error with runc's own failure; the
/// exec's files are removed either way.
fn wait_exec(
    mut child: tokio::process::Child,
    files: Prepared,
) -> Pin<Box<dyn std::future::Future<Output = Result<i32>> + Send>> {
    Box::pin(async move {
        let status = child
            .wait()
            .await
            .map_err(|e| other(format!("runc exec: {e}")));
        let r = status.and_then(|s| {
            let code = exit_code(s);
            match files.runc_failure(code) {
                Some(msg) => Err(other(msg)),
                None => Ok(code),
            }
        });
        files.cleanup();
        r
    })
}

fn exec_pipes(p: &Prepared, options: &StreamOptions) -> Result<(StreamSession, ())> {
    let mut c = p.command(false);
    let pipe_or_null = |b: bool| if b { Stdio::piped() } else { Stdio::null() };
    c.stdin(pipe_or_null(options.stdin))
        .stdout(pipe_or_null(options.stdout))
        .stderr(pipe_or_null(options.stderr));
    let mut child = c
        .spawn()
        .map_err(|e| other(format!("run runc exec: {e}")))?;
    let session = StreamSession {
        stdin: child.stdin.take().map(|s| Box::pin(s) as _),
        stdout: child.stdout.take().map(|s| Box::pin(s) as _),
        stderr: child.stderr.take().map(|s| Box::pin(s) as _),
        resize: None,
        exit: wait_exec(child, p.clone()),
    };
    Ok((session, ()))
}

fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut master: RawFd = -1;
    let mut slave: RawFd = -1;
    // SAFETY: openpty fills two fds; the other pointers may be null.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are new and owned here.
    let (m, s) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [m.as_raw_fd(), s.as_raw_fd()] {
        // SAFETY: fcntl on owned fds.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // Raw mode: the bytes pass through untouched (runc sets it too).
    // SAFETY: termios calls on a valid tty fd with a zeroed struct.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(s.as_raw_fd(), &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(s.as_raw_fd(), libc::TCSANOW, &t);
        }
    }
    Ok((m, s))
}

fn exec_tty(p: &Prepared, options: &StreamOptions) -> Result<(StreamSession, ())> {
    let (master, slave) = open_pty().map_err(|e| other(format!("open a pty: {e}")))?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| other(format!("dup: {e}")));
    let mut c = p.command(true);
    c.stdin(Stdio::from(dup(&slave)?))
        .stdout(Stdio::from(dup(&slave)?))
        .stderr(Stdio::from(dup(&slave)?));
    // SAFETY: only async-signal-safe calls between fork and exec: a new session with the pty as its
    // controlling terminal, so resizes reach runc as SIGWINCH.
    unsafe {
        c.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = c
        .spawn()
        .map_err(|e| other(format!("run runc exec: {e}")))?;
    drop(c);
    drop(slave);
    let resize_fd = dup(&master)?;
    let reader = PtyStream::new(dup(&master)?).map_err(other)?;
    let writer = PtyStream::new(master).map_err(other)?;
    let (resize_tx, mut resize_rx) = tokio::sync::mpsc::channel::<TerminalSize>(8);
    tokio::spawn(async move {
        while let Some(size) = resize_rx.recv().await {
            crate::shim::set_window_size(resize_fd.as_raw_fd(), size.width, size.height);
        }
    });
    let session = StreamSession {
        stdin: options.stdin.then(|| Box::pin(writer) as _),
        stdout: Some(Box::pin(reader)),
        stderr: None,
        resize: Some(resize_tx),
        exit: wait_exec(child, p.clone()),
    };
    Ok((session, ()))
}

/// A pty master as an async byte stream; the end of the terminal (EIO) reads as end of stream.
pub struct PtyStream {
    fd: AsyncFd<OwnedFd>,
}

impl PtyStream {
    pub fn new(fd: OwnedFd) -> io::Result<PtyStream> {
        // SAFETY: fcntl on an owned fd.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        // SAFETY: the fd is owned by the AsyncFd and stays open until it is dropped (deregistered).
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| io::Error::other(e.to_string()))?;
        Ok(PtyStream { fd })
    }
}

impl AsyncRead for PtyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let r = guard.try_io(|inner| {
                // SAFETY: reading into the caller's initialised buffer.
                let n = unsafe {
                    libc::read(
                        inner.as_raw_fd(),
                        unfilled.as_mut_ptr().cast(),
                        unfilled.len(),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            let r = guard.try_io(|inner| {
                // SAFETY: writing from the caller's buffer.
                let n = unsafe { libc::write(inner.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
