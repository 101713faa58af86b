//! `skiff shim`: one process per container, started by the agent and detached from it (double fork,
//! `setsid`), so containers outlive agent restarts and `kill -9`. Like containerd-shim-runc-v2 it is the
//! child subreaper of the container: it runs `runc create` (with the container's stdio pipes, or a pty received
//! through runc's `--console-socket` when the container has a TTY), then `runc start`, reaps the container's
//! init process, and
//! - writes the container's output to its CRI log file ([`crate::logs`]),
//! - serves attach on `attach.sock` in the container directory ([`protocol`]): stdin, output fan-out, resize,
//! - records start and exit (exit code, `OOMKilled` from the memory cgroup's OOM-kill count) in `state.json`
//!   ([`state`]), then runs `runc delete` and ends.
//!
//! The agent learns the outcome of the start through a pipe on fd 3: `ok` or `error <runc's message>`, sent
//! once the container runs (or failed to).
//!
//! Arguments: `--id ID --bundle DIR --runc PATH --runc-root DIR --log-path FILE --cgroup PATH [--tty] [--stdin]`.
//! The bundle directory is also where the shim keeps its files (`state.json`, `init.pid`, `runc.log`,
//! `attach.sock`, `console.sock`).

pub mod client;
pub mod protocol;
pub mod state;

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::cgroups::Cgroups;
use crate::logs::{LineSplitter, Stream};
use state::{ShimState, Status};

/// The shim's command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShimArgs {
    pub id: String,
    pub bundle: PathBuf,
    pub runc: PathBuf,
    pub runc_root: PathBuf,
    pub log_path: PathBuf,
    pub cgroup: PathBuf,
    pub tty: bool,
    pub stdin: bool,
}

impl ShimArgs {
    /// The arguments as the agent passes them (after `shim`).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        let mut kv = |k: &str, val: &Path| {
            v.push(k.into());
            v.push(val.as_os_str().to_owned());
        };
        kv("--id", Path::new(&self.id));
        kv("--bundle", &self.bundle);
        kv("--runc", &self.runc);
        kv("--runc-root", &self.runc_root);
        kv("--log-path", &self.log_path);
        kv("--cgroup", &self.cgroup);
        if self.tty {
            v.push("--tty".into());
        }
        if self.stdin {
            v.push("--stdin".into());
        }
        v
    }

    pub fn parse(args: &[OsString]) -> Result<ShimArgs, String> {
        let mut a = ShimArgs::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let key = arg.to_string_lossy().to_string();
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{key} needs a value"))
            };
            match key.as_str() {
                "--id" => a.id = value()?.to_string_lossy().to_string(),
                "--bundle" => a.bundle = value()?.into(),
                "--runc" => a.runc = value()?.into(),
                "--runc-root" => a.runc_root = value()?.into(),
                "--log-path" => a.log_path = value()?.into(),
                "--cgroup" => a.cgroup = value()?.into(),
                "--tty" => a.tty = true,
                "--stdin" => a.stdin = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        for (name, empty) in [
            ("--id", a.id.is_empty()),
            ("--bundle", a.bundle.as_os_str().is_empty()),
            ("--runc", a.runc.as_os_str().is_empty()),
            ("--runc-root", a.runc_root.as_os_str().is_empty()),
            ("--log-path", a.log_path.as_os_str().is_empty()),
        ] {
            if empty {
                return Err(format!("missing {name}"));
            }
        }
        Ok(a)
    }
}

/// The file descriptor on which the agent waits for `ok` or `error <message>`.
pub const READY_FD: RawFd = 3;

/// Entry point of `skiff shim ARGS`: returns the process exit code. Must run before any thread exists (it
/// forks).
pub fn main(args: &[OsString]) -> i32 {
    let args = match ShimArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("skiff shim: {e}");
            return 2;
        }
    };
    // SAFETY: called at program start with a single thread; the parent only exits.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("skiff shim: fork: {}", io::Error::last_os_error());
            return 1;
        }
        0 => {}
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: plain syscalls on this process; fd 3 must not leak into runc and the container.
    unsafe {
        libc::setsid();
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::fcntl(READY_FD, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    // SAFETY: the agent passes the write end of its ready pipe as fd 3; nothing else owns it.
    let ready = unsafe { File::from_raw_fd(READY_FD) };
    match run(&args, ready) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("skiff shim {}: {e}", args.id);
            1
        }
    }
}

/// Everything the I/O threads share.
struct Shared {
    log: Mutex<File>,
    clients: Mutex<Vec<Client>>,
    stdin: Mutex<Option<File>>,
    /// The pty master, for resizes.
    pty: Option<RawFd>,
    exit: Mutex<Option<i32>>,
}

struct Client {
    id: u64,
    stream: UnixStream,
    hello: protocol::Hello,
}

impl Shared {
    fn broadcast(&self, stream: Stream, data: &[u8]) {
        let kind = match stream {
            Stream::Stdout => protocol::STDOUT,
            Stream::Stderr => protocol::STDERR,
        };
        let frame = protocol::encode(kind, data);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain_mut(|c| {
            let wanted = match stream {
                Stream::Stdout => c.hello.stdout,
                Stream::Stderr => c.hello.stderr,
            };
            !wanted || c.stream.write_all(&frame).is_ok()
        });
    }
}

fn runc(args: &ShimArgs) -> Command {
    let mut c = Command::new(&args.runc);
    c.arg("--root").arg(&args.runc_root);
    c.arg("--log")
        .arg(args.bundle.join("runc.log"))
        .arg("--log-format")
        .arg("json");
    c
}

/// The last error runc logged (its `--log` JSON lines), else what it printed.
pub fn runc_error(log: &Path, output: &str) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let from_log = text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error" || v["level"] == "fatal")
        .and_then(|v| v["msg"].as_str().map(str::to_string));
    from_log.unwrap_or_else(|| output.trim().to_string())
}

fn run(args: &ShimArgs, mut ready: File) -> io::Result<()> {
    let dir = &args.bundle;
    let shim_pid = std::process::id();
    let shim_start = state::process_start(shim_pid).unwrap_or(0);
    let mut st = ShimState {
        status: Status::Exited,
        shim_pid,
        shim_start,
        pid: None,
        pid_start: None,
        started_at_ns: None,
        finished_at_ns: None,
        exit_code: None,
        reason: String::new(),
        message: String::new(),
    };
    let fail = |st: &mut ShimState, ready: &mut File, msg: String| -> io::Result<()> {
        let _ = runc(args)
            .arg("delete")
            .arg("--force")
            .arg(&args.id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        st.status = Status::Exited;
        st.exit_code = Some(128);
        st.reason = "StartError".into();
        st.message = msg.clone();
        st.finished_at_ns = Some(state::now_ns());
        state::write(dir, st)?;
        let _ = writeln!(ready, "error {}", msg.replace('\n', " "));
        Err(io::Error::other(msg))
    };

    if let Some(parent) = args.log_path.parent() {
        fs::create_dir_all(parent)?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log_path)?;
    let _ = fs::remove_file(dir.join("runc.log"));

    // The container's stdio.
    let mut outputs: Vec<(Stream, File)> = Vec::new();
    let mut stdin_writer: Option<File> = None;
    let mut cmd = runc(args);
    cmd.arg("create")
        .arg("--bundle")
        .arg(dir)
        .arg("--pid-file")
        .arg(dir.join("init.pid"));
    // Sockets are bound by names relative to the bundle directory: a long data dir must not hit the
    // 108-byte limit of socket paths (runc resolves `--console-socket` from the bundle directory too).
    std::env::set_current_dir(dir)?;
    let console = PathBuf::from("console.sock");
    let mut console_thread = None;
    if args.tty {
        let _ = fs::remove_file(&console);
        let listener = UnixListener::bind(&console)?;
        console_thread = Some(std::thread::spawn(move || -> io::Result<OwnedFd> {
            let (conn, _) = listener.accept()?;
            receive_fd(&conn)
        }));
        cmd.arg("--console-socket").arg(&console);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    } else {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        outputs.push((Stream::Stdout, out_r));
        outputs.push((Stream::Stderr, err_r));
        if args.stdin {
            let (in_r, in_w) = pipe()?;
            stdin_writer = Some(in_w);
            cmd.stdin(Stdio::from(in_r));
        } else {
            cmd.stdin(Stdio::null());
        }
        cmd.stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
    }
    cmd.arg(&args.id);
    let created = cmd.output();
    drop(cmd); // closes our copies of the container's ends of the pipes
    match created {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let msg = runc_error(&dir.join("runc.log"), &String::from_utf8_lossy(&out.stderr));
            return fail(&mut st, &mut ready, msg);
        }
        Err(e) => {
            return fail(
                &mut st,
                &mut ready,
                format!("run {}: {e}", args.runc.display()),
            );
        }
    }
    let pty: Option<File> = match console_thread {
        Some(t) => match t.join() {
            Ok(Ok(fd)) => Some(File::from(fd)),
            Ok(Err(e)) => {
                return fail(
                    &mut st,
                    &mut ready,
                    format!("receive the container's pty: {e}"),
                );
            }
            Err(_) => return fail(&mut st, &mut ready, "the console thread panicked".into()),
        },
        None => None,
    };
    let _ = fs::remove_file(&console);
    let pid: u32 = match fs::read_to_string(dir.join("init.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        Some(p) => p,
        None => return fail(&mut st, &mut ready, "runc create wrote no pid file".into()),
    };
    st.pid = Some(pid);
    st.pid_start = state::process_start(pid);
    let started = runc(args)
        .arg("start")
        .arg(&args.id)
        .stdin(Stdio::null())
        .output();
    match started {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let msg = runc_error(&dir.join("runc.log"), &String::from_utf8_lossy(&out.stderr));
            return fail(&mut st, &mut ready, msg);
        }
        Err(e) => {
            return fail(
                &mut st,
                &mut ready,
                format!("run {}: {e}", args.runc.display()),
            );
        }
    }
    st.status = Status::Running;
    st.started_at_ns = Some(state::now_ns());
    state::write(dir, &st)?;

    // Output, attach and the wait.
    if let Some(p) = &pty {
        outputs.push((Stream::Stdout, p.try_clone()?));
        if args.stdin {
            stdin_writer = Some(p.try_clone()?);
        }
    }
    let shared = Arc::new(Shared {
        log: Mutex::new(log),
        clients: Mutex::new(Vec::new()),
        stdin: Mutex::new(stdin_writer),
        pty: pty.as_ref().map(|p| p.as_raw_fd()),
        exit: Mutex::new(None),
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let readers = outputs.len();
    for (stream, file) in outputs {
        let shared = shared.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            copy_output(stream, file, &shared);
            let _ = done.send(());
        });
    }
    let socket = PathBuf::from("attach.sock");
    let _ = fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    {
        let shared = shared.clone();
        std::thread::spawn(move || serve_attach(listener, shared));
    }
    let _ = writeln!(ready, "ok {pid}");
    drop(ready);

    let code = wait_for(pid);
    // Output still in flight: the pipes end once every process of the container is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    for _ in 0..readers {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let cgroups = Cgroups::detect().ok();
    let oom = cgroups.and_then(|c| c.oom_kills(&args.cgroup)).unwrap_or(0) > 0;
    st.status = Status::Exited;
    st.exit_code = Some(code);
    st.finished_at_ns = Some(state::now_ns());
    if oom {
        st.reason = "OOMKilled".into();
    }
    state::write(dir, &st)?;
    *shared.exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(code);
    {
        let mut clients = shared.clients.lock().unwrap_or_else(|e| e.into_inner());
        for c in clients.iter_mut() {
            let _ = protocol::write_frame(&mut c.stream, protocol::EXIT, &code.to_be_bytes());
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        clients.clear();
    }
    let _ = fs::remove_file(&socket);
    drop(pty);
    let _ = runc(args)
        .arg("delete")
        .arg("--force")
        .arg(&args.id)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    Ok(())
}

/// Reaps children until `pid` exits; returns its exit code (128 + signal when signalled).
fn wait_for(pid: u32) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // No children left: the init process is gone without us seeing its status.
            while Path::new(&format!("/proc/{pid}")).exists() {
                std::thread::sleep(Duration::from_millis(100));
            }
            return 255;
        }
        if r as u32 == pid {
            if libc::WIFEXITED(status) {
                return libc::WEXITSTATUS(status);
            }
            if libc::WIFSIGNALED(status) {
                return 128 + libc::WTERMSIG(status);
            }
        }
    }
}

fn copy_output(stream: Stream, mut file: File, shared: &Shared) {
    let mut splitter = LineSplitter::new(stream);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break, // EIO on a pty once the container side is closed
        };
        let now = SystemTime::now();
        {
            let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = Vec::with_capacity(n + 64);
            let _ = splitter.feed(&buf[..n], now, &mut out);
            let _ = log.write_all(&out);
        }
        shared.broadcast(stream, &buf[..n]);
    }
    let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    let _ = splitter.finish(SystemTime::now(), &mut out);
    let _ = log.write_all(&out);
}

fn serve_attach(listener: UnixListener, shared: Arc<Shared>) {
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        next_id += 1;
        let id = next_id;
        let shared = shared.clone();
        std::thread::spawn(move || {
            let _ = serve_client(id, conn, &shared);
            let mut clients = shared.clients.lock().unwrap_or_else(|e| e.into_inner());
            clients.retain(|c| c.id != id);
        });
    }
}

fn serve_client(id: u64, conn: UnixStream, shared: &Shared) -> io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let hello: protocol::Hello = serde_json::from_str(line.trim())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut writer = conn.try_clone()?;
    writer.set_write_timeout(Some(Duration::from_secs(10)))?;
    {
        let exit = shared.exit.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(code) = *exit {
            protocol::write_frame(&mut writer, protocol::EXIT, &code.to_be_bytes())?;
            return Ok(());
        }
        shared
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Client {
                id,
                stream: writer,
                hello,
            });
    }
    while let Some((kind, payload)) = protocol::read_frame(&mut reader)? {
        match kind {
            protocol::STDIN if hello.stdin => {
                let mut stdin = shared.stdin.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(f) = stdin.as_mut()
                    && f.write_all(&payload).is_err()
                {
                    *stdin = None;
                }
            }
            protocol::RESIZE => {
                if let (Some(fd), Some((w, h))) = (shared.pty, protocol::parse_resize(&payload)) {
                    set_window_size(fd, w, h);
                }
            }
            // The container's stdin stays open for the next attach (no stdinOnce).
            _ => {}
        }
    }
    Ok(())
}

/// Sets a pty's window size (the kernel signals SIGWINCH to its foreground process group).
pub fn set_window_size(fd: RawFd, width: u16, height: u16) {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    unsafe {
        libc::ioctl(fd, libc::TIOCSWINSZ, &ws);
    }
}

/// A pipe as (read end, write end), both close-on-exec.
pub fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are new and owned here.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Receives one file descriptor sent with SCM_RIGHTS (runc's `--console-socket` protocol).
pub fn receive_fd(conn: &UnixStream) -> io::Result<OwnedFd> {
    let mut data = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: zeroed msghdr, then fields set to valid buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: recvmsg on a connected socket with the buffers above.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: walking the control messages recvmsg filled in.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
                return Ok(OwnedFd::from_raw_fd(fd));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no file descriptor received on the console socket",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = ShimArgs {
            id: "abc".into(),
            bundle: "/b".into(),
            runc: "/usr/sbin/runc".into(),
            runc_root: "/r".into(),
            log_path: "/l/0.log".into(),
            cgroup: "/kubepods/podx/abc".into(),
            tty: true,
            stdin: false,
        };
        assert_eq!(ShimArgs::parse(&a.to_args()).unwrap(), a);
        assert!(
            ShimArgs::parse(&["--id".into()])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            ShimArgs::parse(&["--bogus".into()])
                .unwrap_err()
                .contains("unknown argument")
        );
        assert!(ShimArgs::parse(&[]).unwrap_err().contains("missing --id"));
    }

    #[test]
    fn runc_errors_come_from_its_json_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runc.log");
        fs::write(
            &log,
            "{\"level\":\"warning\",\"msg\":\"meh\"}\n{\"level\":\"error\",\"msg\":\"runc create failed: unable to start container process: exec: \\\"nosuch\\\": executable file not found in $PATH\"}\n",
        )
        .unwrap();
        assert_eq!(
            runc_error(&log, "ignored"),
            "runc create failed: unable to start container process: exec: \"nosuch\": executable file not found in $PATH"
        );
        assert_eq!(
            runc_error(&dir.path().join("none"), " printed \n"),
            "printed"
        );
    }
}
