//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log from its CRI-format file
//! (`<RFC3339Nano> stdout|stderr F|P <text>`), with upstream's options: `follow`, `previous`, `tailLines`,
//! `sinceSeconds`, `sinceTime`, `timestamps`, `limitBytes`. Partial (`P`) entries are joined into one line.
//! With `follow` the stream ends once the container has exited and its log has been read to the end.
//! Records are parsed by `skiff_runtime::logs` (the same module the shim's writer lives in).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, State as AxState};
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use jiff::Timestamp;
use skiff_runtime::cri::{ContainerState, RuntimeError, RuntimeService};
use skiff_runtime::logs;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::{State, error, pods};

/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The log options of a request (upstream's `PodLogOptions` as the kubelet reads them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    pub since: Option<Timestamp>,
}

/// Go's `strconv.ParseBool`, which Kubernetes' query decoding uses.
pub fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" | "" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value {v:?} for {name}: must be a boolean")),
    }
}

impl LogOptions {
    /// Parses and validates the query string, with upstream's messages.
    pub fn parse(query: Option<&str>, now: Timestamp) -> Result<LogOptions, String> {
        let mut o = LogOptions::default();
        let mut since_seconds: Option<i64> = None;
        let mut since_time: Option<Timestamp> = None;
        let int = |name: &str, v: &str| v.parse::<i64>().map_err(|_| format!("invalid value {v:?} for {name}: must be an integer"));
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "follow" => o.follow = parse_bool("follow", &v)?,
                "previous" => o.previous = parse_bool("previous", &v)?,
                "timestamps" => o.timestamps = parse_bool("timestamps", &v)?,
                "tailLines" => {
                    let n = int("tailLines", &v)?;
                    if n < 0 {
                        return Err("tailLines: Invalid value: must be greater than or equal to 0".into());
                    }
                    o.tail_lines = Some(n as u64);
                }
                "limitBytes" => {
                    let n = int("limitBytes", &v)?;
                    if n < 1 {
                        return Err("limitBytes: Invalid value: must be greater than 0".into());
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n = int("sinceSeconds", &v)?;
                    if n < 1 {
                        return Err("sinceSeconds: Invalid value: must be greater than 0".into());
                    }
                    since_seconds = Some(n);
                }
                "sinceTime" => {
                    since_time = Some(v.parse::<Timestamp>().map_err(|e| format!("invalid value {v:?} for sinceTime: {e}"))?);
                }
                _ => {}
            }
        }
        o.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => return Err("at most one of `sinceTime` or `sinceSeconds` may be specified".into()),
            (Some(s), None) => Some(now - jiff::SignedDuration::from_secs(s)),
            (None, t) => t,
        };
        Ok(o)
    }
}

/// A whole log line (partial entries joined), ready to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The time of the line's first record.
    pub time: SystemTime,
    /// The text, with its `\n` unless it was cut off by the end of the log.
    pub content: Vec<u8>,
}

/// Turns a CRI log byte stream into lines: splits on `\n`, parses entries, joins partial entries per stream.
#[derive(Default)]
pub struct LogParser {
    pending_bytes: Vec<u8>,
    partial: [Option<LogLine>; 2],
}

impl LogParser {
    /// Feeds bytes read from the file; returns the lines completed by them.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<LogLine>) {
        self.pending_bytes.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = self.pending_bytes[start..].iter().position(|b| *b == b'\n') {
            let end = start + i;
            let line = self.pending_bytes[start..end].to_vec();
            self.entry(&line, out);
            start = end + 1;
        }
        self.pending_bytes.drain(..start);
    }

    fn entry(&mut self, line: &[u8], out: &mut Vec<LogLine>) {
        let record = match logs::parse_line(line) {
            Ok(r) => r,
            Err(e) => {
                if !line.is_empty() {
                    tracing::debug!(error = %e, line = %String::from_utf8_lossy(line), "skipping a malformed CRI log line");
                }
                return;
            }
        };
        let slot = &mut self.partial[usize::from(record.stream == logs::Stream::Stderr)];
        let mut acc = slot.take().unwrap_or_else(|| LogLine { time: record.timestamp, content: Vec::new() });
        acc.content.extend_from_slice(&record.content);
        if record.partial {
            *slot = Some(acc);
        } else {
            acc.content.push(b'\n');
            out.push(acc);
        }
    }

    /// At the end of the log: a last unterminated line and pending partial entries, as they are.
    pub fn finish(&mut self, out: &mut Vec<LogLine>) {
        if !self.pending_bytes.is_empty() {
            let line = std::mem::take(&mut self.pending_bytes);
            self.entry(&line, out);
        }
        let mut rest: Vec<LogLine> = self.partial.iter_mut().filter_map(Option::take).collect();
        rest.sort_by_key(|l| l.time);
        out.extend(rest);
    }
}

/// Writes lines to the response under the options (`sinceTime`, `timestamps`, `limitBytes`).
struct Writer {
    tx: mpsc::Sender<Bytes>,
    since: Option<SystemTime>,
    timestamps: bool,
    remaining: Option<u64>,
}

impl Writer {
    /// False once the client is gone or the byte limit is reached.
    async fn write(&mut self, lines: Vec<LogLine>) -> bool {
        let mut buf = Vec::new();
        for l in lines {
            if !self.keep_since(&l) {
                continue;
            }
            if self.timestamps {
                buf.extend_from_slice(logs::format_timestamp(l.time).as_bytes());
                buf.push(b' ');
            }
            buf.extend_from_slice(&l.content);
        }
        if let Some(rem) = self.remaining.as_mut() {
            if buf.len() as u64 >= *rem {
                buf.truncate(*rem as usize);
                *rem = 0;
            } else {
                *rem -= buf.len() as u64;
            }
        }
        if !buf.is_empty() && self.tx.send(Bytes::from(buf)).await.is_err() {
            return false;
        }
        self.remaining != Some(0)
    }

    fn keep_since(&self, l: &LogLine) -> bool {
        self.since.is_none_or(|since| l.time >= since)
    }
}

pub async fn serve(
    AxState(state): AxState<Arc<State>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let opts = match LogOptions::parse(query.as_deref(), Timestamp::now()) {
        Ok(o) => o,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let runtime = state.runtime.as_ref();
    let found = match pods::containers(runtime, &ns, &pod, &container).await {
        Ok(f) => f,
        Err(e) => return error(e.status, e.message),
    };
    let Some(current) = found.first() else {
        if let Err(e) = pods::sandbox(runtime, &ns, &pod, None).await {
            return error(e.status, e.message);
        }
        return error(StatusCode::NOT_FOUND, format!("container \"{container}\" not found in pod \"{ns}/{pod}\""));
    };
    let (path, follow_id) = if opts.previous {
        let previous = found.get(1).map(|c| c.log_path.clone()).or_else(|| previous_attempt_log(&current.log_path, current.attempt));
        match previous {
            Some(p) => (p, None),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
                );
            }
        }
    } else {
        (current.log_path.clone(), opts.follow.then(|| current.id.clone()))
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let writer = Writer { tx, since: opts.since.map(SystemTime::from), timestamps: opts.timestamps, remaining: opts.limit_bytes };
    let runtime = state.runtime.clone();
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = stream_log(&path, opts.tail_lines, follow_id, runtime, writer, shutdown).await {
            tracing::debug!(path = %path.display(), error = %e, "container log stream ended with an error");
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    }));
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(body)
        .expect("a valid response")
}

/// `<dir>/<n>.log` with the largest `n` below `attempt`, beside the current log.
fn previous_attempt_log(current: &Path, attempt: u32) -> Option<PathBuf> {
    let dir = current.parent()?;
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".log")).and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if n < attempt && best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, entry.path()));
        }
    }
    best.map(|(_, p)| p)
}

/// Passes parsed lines on: written at once without tailLines, else kept in `tail` (the last `n` lines that
/// pass sinceTime). False once the response has ended.
async fn flush_initial(writer: &mut Writer, lines: &mut Vec<LogLine>, tail: &mut std::collections::VecDeque<LogLine>, tail_lines: Option<u64>) -> bool {
    match tail_lines {
        None => writer.write(std::mem::take(lines)).await,
        Some(n) => {
            for l in lines.drain(..) {
                if writer.keep_since(&l) {
                    tail.push_back(l);
                    if tail.len() as u64 > n {
                        tail.pop_front();
                    }
                }
            }
            true
        }
    }
}

async fn stream_log(
    path: &Path,
    tail_lines: Option<u64>,
    follow_id: Option<String>,
    runtime: Arc<dyn RuntimeService>,
    mut writer: Writer,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let mut parser = LogParser::default();
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; 64 * 1024];
    // What is in the file now, with sinceTime and tailLines applied: written as it is read, or, with
    // tailLines, only the last lines kept while reading.
    let mut tail: std::collections::VecDeque<LogLine> = std::collections::VecDeque::new();
    let mut lines = Vec::new();
    if let Some(f) = file.as_mut() {
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            parser.feed(&buf[..n], &mut lines);
            if !flush_initial(&mut writer, &mut lines, &mut tail, tail_lines).await {
                return Ok(());
            }
        }
    }
    if follow_id.is_none() {
        parser.finish(&mut lines);
    }
    if !flush_initial(&mut writer, &mut lines, &mut tail, tail_lines).await || !writer.write(tail.into()).await {
        return Ok(());
    }
    let Some(id) = follow_id else { return Ok(()) };
    let mut exited = false;
    loop {
        let mut lines = Vec::new();
        let mut got = 0;
        match file.as_mut() {
            Some(f) => loop {
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                got += n;
                parser.feed(&buf[..n], &mut lines);
            },
            None => {
                file = match tokio::fs::File::open(path).await {
                    Ok(f) => Some(f),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                };
                if file.is_some() {
                    continue;
                }
            }
        }
        if exited && got == 0 {
            parser.finish(&mut lines);
            writer.write(lines).await;
            return Ok(());
        }
        if !writer.write(lines).await {
            return Ok(());
        }
        if got == 0 {
            exited = match runtime.container_status(&id).await {
                Ok(s) => matches!(s.state, ContainerState::Exited | ContainerState::Unknown),
                Err(RuntimeError::NotFound(_)) => true,
                Err(_) => false,
            };
            if exited {
                // One more read: lines written between the last read and the exit.
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = writer.tx.closed() => return Ok(()),
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_records_join_per_stream() {
        let mut p = LogParser::default();
        let mut out = Vec::new();
        p.feed(b"2026-01-01T00:00:00.1Z stdout P hel", &mut out);
        assert!(out.is_empty());
        p.feed(b"\n2026-01-01T00:00:00.2Z stderr F oops\ngarbage\n2026-01-01T00:00:00.3Z stdout F lo\n", &mut out);
        let texts: Vec<String> = out.iter().map(|l| String::from_utf8_lossy(&l.content).into_owned()).collect();
        assert_eq!(texts, vec!["oops\n", "hello\n"]);
        assert_eq!(logs::format_timestamp(out[1].time), "2026-01-01T00:00:00.1Z");
        p.feed(b"2026-01-01T00:00:01Z stdout P cut", &mut out);
        p.finish(&mut out);
        assert_eq!(out.last().unwrap().content, b"cut");
    }

    #[test]
    fn options_follow_upstream_validation() {
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
        let o = LogOptions::parse(Some("follow=true&tailLines=2&timestamps=1&sinceSeconds=60&limitBytes=5"), now).unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(2), Some(5)));
        assert_eq!(o.since, Some("2026-01-01T00:09:00Z".parse().unwrap()));
        assert!(LogOptions::parse(Some("tailLines=-1"), now).unwrap_err().contains("greater than or equal to 0"));
        assert!(LogOptions::parse(Some("limitBytes=0"), now).unwrap_err().contains("greater than 0"));
        assert!(LogOptions::parse(Some("sinceSeconds=1&sinceTime=2026-01-01T00:00:00Z"), now).unwrap_err().contains("at most one"));
        assert!(LogOptions::parse(Some("follow=maybe"), now).is_err());
    }
}
