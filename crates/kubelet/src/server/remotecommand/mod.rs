//! `exec` and `attach` (upstream's remotecommand): options from the query, the container lookup, then the
//! runtime's stream session pumped over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`) or SPDY/3.1,
//! ending with the v1 `Status` that kubectl turns into its exit code.

pub(crate) mod spdy;
mod websocket;

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Request, State as AxState};
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use skiff_runtime::cri::{RuntimeError, StreamOptions, StreamSession, TerminalSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::logs::parse_bool;
use super::{State, error, pods};

/// Upstream's `remotecommand` protocol versions that carry a `Status` on the error stream, best first.
pub const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// What was asked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub command: Vec<String>,
    pub streams: StreamOptions,
}

impl Options {
    /// Parses `command` (repeated), `stdin`, `stdout`, `stderr`, `tty`, with upstream's rules.
    pub fn parse(query: Option<&str>, exec: bool) -> Result<Options, String> {
        let mut o = Options::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "command" => o.command.push(v.into_owned()),
                "stdin" | "input" => o.streams.stdin = parse_bool("stdin", &v)?,
                "stdout" | "output" => o.streams.stdout = parse_bool("stdout", &v)?,
                "stderr" | "error" => o.streams.stderr = parse_bool("stderr", &v)?,
                "tty" => o.streams.tty = parse_bool("tty", &v)?,
                _ => {}
            }
        }
        if !(o.streams.stdin || o.streams.stdout || o.streams.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        if exec && o.command.is_empty() {
            return Err("you must specify at least one command for the container".into());
        }
        // With a TTY, stderr is merged into stdout (upstream drops the stderr stream).
        if o.streams.tty {
            o.streams.stderr = false;
        }
        Ok(o)
    }
}

/// What the client sends, whatever the transport.
pub enum Input {
    Stdin(Bytes),
    StdinClosed,
    Resize(TerminalSize),
}

/// What goes to the client.
pub enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// Parses resize messages (`{"Width":120,"Height":40}`) from `buf`, keeping an incomplete tail.
pub fn parse_resizes(buf: &mut Vec<u8>) -> Vec<TerminalSize> {
    #[derive(serde::Deserialize)]
    struct Size {
        #[serde(rename = "Width")]
        width: u16,
        #[serde(rename = "Height")]
        height: u16,
    }
    let mut sizes = Vec::new();
    let mut iter = serde_json::Deserializer::from_slice(buf).into_iter::<Size>();
    let mut consumed = 0;
    loop {
        match iter.next() {
            Some(Ok(s)) => {
                sizes.push(TerminalSize { width: s.width, height: s.height });
                consumed = iter.byte_offset();
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(_)) => {
                // Not a size: drop what is buffered.
                consumed = buf.len();
                break;
            }
            None => {
                consumed = buf.len();
                break;
            }
        }
    }
    buf.drain(..consumed);
    sizes
}

/// Runs the session: client input to the process, its output to the client, until the output streams end
/// and the process exits. Returns the exit code (or the runtime's error).
pub async fn pump(session: StreamSession, mut input: mpsc::Receiver<Input>, output: mpsc::Sender<Output>) -> Result<i32, RuntimeError> {
    let StreamSession { stdin, stdout, stderr, resize, exit } = session;
    let input_task = tokio::spawn(async move {
        let mut stdin = stdin;
        while let Some(msg) = input.recv().await {
            match msg {
                Input::Stdin(b) => {
                    if let Some(w) = stdin.as_mut()
                        && (w.write_all(&b).await.is_err() || w.flush().await.is_err())
                    {
                        stdin = None;
                    }
                }
                Input::StdinClosed => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                Input::Resize(size) => {
                    if let Some(r) = &resize {
                        let _ = r.try_send(size);
                    }
                }
            }
        }
    });
    let copy = |reader: Option<skiff_runtime::cri::BoxReader>, wrap: fn(Bytes) -> Output| {
        let output = output.clone();
        async move {
            let Some(mut r) = reader else { return };
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if output.send(wrap(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    };
    let (code, _, _) = tokio::join!(exit, copy(stdout, Output::Stdout), copy(stderr, Output::Stderr));
    input_task.abort();
    code
}

/// The v1 Status written on the error channel at the end (`v4.channel.k8s.io` and later).
pub fn exit_status(result: &Result<i32, RuntimeError>, command: &[String]) -> Value {
    match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => failure_status(&e.to_string()),
    }
}

pub fn failure_status(message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500})
}

/// Starts the exec or attach in the runtime.
pub async fn start(state: &State, container_id: &str, opts: &Options, exec: bool) -> Result<StreamSession, RuntimeError> {
    if exec {
        state.runtime.exec(container_id, &opts.command, &opts.streams).await
    } else {
        state.runtime.attach(container_id, &opts.streams).await
    }
}

/// A stream request resolved against the runtime, ready for a transport.
pub struct Prepared {
    pub state: Arc<State>,
    pub container_id: String,
    pub options: Options,
    pub exec: bool,
}

async fn serve(state: Arc<State>, ns: String, pod: String, uid: Option<String>, container: String, req: Request, exec: bool) -> Response {
    let options = match Options::parse(req.uri().query(), exec) {
        Ok(o) => o,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    if let Some(uid) = uid.as_deref()
        && let Err(e) = pods::sandbox(state.runtime.as_ref(), &ns, &pod, Some(uid)).await
    {
        return error(e.status, e.message);
    }
    let c = match pods::running_container(state.runtime.as_ref(), &ns, &pod, &container).await {
        Ok(c) => c,
        Err(e) => return error(e.status, e.message),
    };
    let prepared = Prepared { state, container_id: c.id, options, exec };
    if super::websocket::is_websocket(req.headers()) {
        websocket::serve(prepared, req).await
    } else if spdy::is_spdy(req.headers()) {
        spdy::serve(prepared, req).await
    } else {
        error(StatusCode::BAD_REQUEST, "Upgrade request required")
    }
}

pub async fn exec(AxState(state): AxState<Arc<State>>, UrlPath((ns, pod, container)): UrlPath<(String, String, String)>, req: Request) -> Response {
    serve(state, ns, pod, None, container, req, true).await
}

pub async fn exec_with_uid(
    AxState(state): AxState<Arc<State>>,
    UrlPath((ns, pod, uid, container)): UrlPath<(String, String, String, String)>,
    req: Request,
) -> Response {
    serve(state, ns, pod, Some(uid), container, req, true).await
}

pub async fn attach(AxState(state): AxState<Arc<State>>, UrlPath((ns, pod, container)): UrlPath<(String, String, String)>, req: Request) -> Response {
    serve(state, ns, pod, None, container, req, false).await
}

pub async fn attach_with_uid(
    AxState(state): AxState<Arc<State>>,
    UrlPath((ns, pod, uid, container)): UrlPath<(String, String, String, String)>,
    req: Request,
) -> Response {
    serve(state, ns, pod, Some(uid), container, req, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_kubectl_queries() {
        let o = Options::parse(Some("command=sh&command=-c&command=exit+3&container=c&stderr=true&stdout=true"), true).unwrap();
        assert_eq!(o.command, vec!["sh", "-c", "exit 3"]);
        assert!(o.streams.stdout && o.streams.stderr && !o.streams.stdin && !o.streams.tty);
        let tty = Options::parse(Some("command=sh&stdin=true&stdout=true&stderr=true&tty=true"), true).unwrap();
        assert!(tty.streams.tty && !tty.streams.stderr);
        assert!(Options::parse(Some("command=ls"), true).unwrap_err().contains("at least 1 of stdin"));
        assert!(Options::parse(Some("stdout=1"), true).unwrap_err().contains("at least one command"));
        assert!(Options::parse(Some("stdout=1"), false).is_ok());
    }

    #[test]
    fn resizes_parse_across_chunks() {
        let mut buf = b"{\"Width\":120,\"Height\":40}\n{\"Width\":8".to_vec();
        assert_eq!(parse_resizes(&mut buf), vec![TerminalSize { width: 120, height: 40 }]);
        buf.extend_from_slice(b"0,\"Height\":24}\n");
        assert_eq!(parse_resizes(&mut buf), vec![TerminalSize { width: 80, height: 24 }]);
        assert!(buf.iter().all(|b| b.is_ascii_whitespace()));
    }

    #[test]
    fn exit_status_is_what_kubectl_reads() {
        assert_eq!(exit_status(&Ok(0), &[])["status"], "Success");
        let s = exit_status(&Ok(3), &["sh".into()]);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
    }
}
