//! CRI container logs: the writer the shim uses (`<RFC3339Nano> stdout|stderr F|P <content>` lines, long lines
//! split into 16 KiB partial pieces as containerd does) and the parser the kubelet's log reader uses.
//!
//! A line of output becomes one `F` (full) record; output longer than [`MAX_LINE`] bytes without a newline is
//! written as `P` (partial) records of `MAX_LINE` bytes, the last piece as `F`. The newline itself is not
//! written (a reader appends it to full records), and a trailing `\r` is dropped like Go's `ReadLine` does.
//! Output still unterminated when the stream ends is written as a full record.

use std::io::{self, Write};
use std::time::SystemTime;

/// The longest content of one record (containerd's default `max_container_log_line_size`).
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed record of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub timestamp: SystemTime,
    pub stream: Stream,
    /// `P`: the content continues in the next record of the same stream.
    pub partial: bool,
    /// The content, without the newline (append `\n` for full records to rebuild the output).
    pub content: Vec<u8>,
}

/// Why a log line could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogParseError {
    #[error("log line has no timestamp")]
    NoTimestamp,
    #[error("invalid timestamp {0:?} in log line")]
    BadTimestamp(String),
    #[error("log line has no stream")]
    NoStream,
    #[error("unknown stream {0:?} in log line")]
    BadStream(String),
    #[error("log line has no tag")]
    NoTag,
    #[error("unknown tag {0:?} in log line")]
    BadTag(String),
}

/// The timestamp as Go's `time.RFC3339Nano` prints it in UTC (`2026-11-25T13:55:01.123456789Z`, trailing
/// zeros of the fraction dropped).
pub fn format_timestamp(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.to_string(),
        Err(_) => "1970-01-01T00:00:00Z".to_string(),
    }
}

/// Parses one record (without its trailing newline), the way the kubelet's `parseCRILog` does: the tag field
/// may carry more `:`-separated tags after `P`/`F`; the content is everything after the tag's space.
pub fn parse_line(line: &[u8]) -> Result<LogLine, LogParseError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (ts, rest) = split_field(line).ok_or(LogParseError::NoTimestamp)?;
    let ts = std::str::from_utf8(ts)
        .map_err(|_| LogParseError::BadTimestamp(String::from_utf8_lossy(ts).into()))?;
    let timestamp: jiff::Timestamp = ts
        .parse()
        .map_err(|_| LogParseError::BadTimestamp(ts.to_string()))?;
    let (stream, rest) = split_field(rest).ok_or(LogParseError::NoStream)?;
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        other => {
            return Err(LogParseError::BadStream(
                String::from_utf8_lossy(other).into(),
            ));
        }
    };
    let (tag, content) = match split_field(rest) {
        Some((tag, content)) => (tag, content),
        // A record with an empty content may lose its last space to trimming: accept it.
        None if !rest.is_empty() => (rest, &b""[..]),
        None => return Err(LogParseError::NoTag),
    };
    let first = tag.split(|b| *b == b':').next().unwrap_or_default();
    let partial = match first {
        b"P" => true,
        b"F" => false,
        other => return Err(LogParseError::BadTag(String::from_utf8_lossy(other).into())),
    };
    Ok(LogLine {
        timestamp: timestamp.into(),
        stream,
        partial,
        content: content.to_vec(),
    })
}

fn split_field(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|b| *b == b' ')?;
    Some((&s[..i], &s[i + 1..]))
}

/// Writes one record.
pub fn write_record(
    out: &mut impl Write,
    time: SystemTime,
    stream: Stream,
    partial: bool,
    content: &[u8],
) -> io::Result<()> {
    let mut rec = Vec::with_capacity(content.len() + 48);
    rec.extend_from_slice(format_timestamp(time).as_bytes());
    rec.push(b' ');
    rec.extend_from_slice(stream.as_str().as_bytes());
    rec.extend_from_slice(if partial { b" P " } else { b" F " });
    rec.extend_from_slice(content);
    rec.push(b'\n');
    out.write_all(&rec)
}

/// Turns a stream's raw output into records: feed it bytes as they arrive, then [`LineSplitter::finish`] at
/// the end of the stream.
#[derive(Debug)]
pub struct LineSplitter {
    stream: Stream,
    max: usize,
    buf: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: Stream) -> Self {
        Self::with_max(stream, MAX_LINE)
    }

    /// A splitter with another maximum record size (at least 1).
    pub fn with_max(stream: Stream, max: usize) -> Self {
        Self {
            stream,
            max: max.max(1),
            buf: Vec::new(),
        }
    }

    /// Writes every complete record found in `data` (plus what was buffered) to `out`.
    pub fn feed(&mut self, data: &[u8], time: SystemTime, out: &mut impl Write) -> io::Result<()> {
        let mut data = data;
        while !data.is_empty() {
            let room = self.max - self.buf.len();
            let window = &data[..data.len().min(room + 1)];
            if let Some(nl) = window.iter().position(|b| *b == b'\n')
                && nl <= room
            {
                self.buf.extend_from_slice(&data[..nl]);
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
                write_record(out, time, self.stream, false, &self.buf)?;
                self.buf.clear();
                data = &data[nl + 1..];
                continue;
            }
            let take = data.len().min(room);
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.max && !data.is_empty() && data[0] != b'\n' {
                write_record(out, time, self.stream, true, &self.buf)?;
                self.buf.clear();
            }
        }
        // A full buffer followed by nothing yet: wait for the next read to tell P from F.
        Ok(())
    }

    /// Ends the stream: buffered output without a newline becomes a full record.
    pub fn finish(&mut self, time: SystemTime, out: &mut impl Write) -> io::Result<()> {
        if !self.buf.is_empty() {
            write_record(out, time, self.stream, false, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(1_764_078_901, 123_450_000)
    }

    fn records(out: &[u8]) -> Vec<LogLine> {
        out.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse_line(l).unwrap())
            .collect()
    }

    #[test]
    fn timestamps_are_rfc3339_nano_utc() {
        assert_eq!(format_timestamp(t()), "2025-11-25T13:55:01.12345Z");
        assert_eq!(
            format_timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1)),
            "1970-01-01T00:00:01Z"
        );
    }

    #[test]
    fn lines_become_full_records() {
        let mut out = Vec::new();
        let mut s = LineSplitter::new(Stream::Stdout);
        s.feed(b"hello\nwor", t(), &mut out).unwrap();
        s.feed(b"ld\r\n\n", t(), &mut out).unwrap();
        s.feed(b"tail", t(), &mut out).unwrap();
        s.finish(t(), &mut out).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            "2025-11-25T13:55:01.12345Z stdout F hello\n\
             2025-11-25T13:55:01.12345Z stdout F world\n\
             2025-11-25T13:55:01.12345Z stdout F \n\
             2025-11-25T13:55:01.12345Z stdout F tail\n"
        );
        let recs = records(&out);
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[2].content, b"");
        assert!(
            recs.iter()
                .all(|r| !r.partial && r.stream == Stream::Stdout && r.timestamp == t())
        );
    }

    #[test]
    fn long_lines_are_split_into_partial_records() {
        let mut out = Vec::new();
        let mut s = LineSplitter::with_max(Stream::Stderr, 4);
        s.feed(b"abcdefghij\nabcd\nabcd", t(), &mut out).unwrap();
        s.feed(b"e\n", t(), &mut out).unwrap();
        let recs = records(&out);
        let got: Vec<(bool, &[u8])> = recs
            .iter()
            .map(|r| (r.partial, r.content.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                (true, &b"abcd"[..]),
                (true, b"efgh"),
                (false, b"ij"),
                (false, b"abcd"),
                (true, b"abcd"),
                (false, b"e"),
            ]
        );
        assert!(recs.iter().all(|r| r.stream == Stream::Stderr));
    }

    #[test]
    fn a_16k_line_is_split_at_16k() {
        let mut out = Vec::new();
        let mut s = LineSplitter::new(Stream::Stdout);
        let mut line = vec![b'x'; MAX_LINE * 2 + 10];
        line.push(b'\n');
        s.feed(&line, t(), &mut out).unwrap();
        let recs = records(&out);
        assert_eq!(recs.len(), 3);
        assert!(recs[0].partial && recs[1].partial && !recs[2].partial);
        assert_eq!(recs[0].content.len(), MAX_LINE);
        assert_eq!(recs[2].content.len(), 10);
    }

    #[test]
    fn parser_accepts_upstream_records_and_rejects_garbage() {
        let l = parse_line(b"2016-10-06T00:17:09.669794202Z stdout P log content 1").unwrap();
        assert_eq!(l.stream, Stream::Stdout);
        assert!(l.partial);
        assert_eq!(l.content, b"log content 1");
        let nanos = l
            .timestamp
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        assert_eq!(nanos, 669_794_202);
        let l = parse_line(b"2016-10-06T00:17:09.669794203+02:00 stderr F:extra  two spaces\n")
            .unwrap();
        assert_eq!(l.stream, Stream::Stderr);
        assert!(!l.partial);
        assert_eq!(l.content, b" two spaces");
        assert_eq!(
            parse_line(b"2016-10-06T00:17:09Z stdout F")
                .unwrap()
                .content,
            b""
        );

        assert_eq!(parse_line(b"nothing"), Err(LogParseError::NoTimestamp));
        assert!(matches!(
            parse_line(b"yesterday stdout F x"),
            Err(LogParseError::BadTimestamp(_))
        ));
        assert_eq!(
            parse_line(b"2016-10-06T00:17:09Z stdout"),
            Err(LogParseError::NoStream)
        );
        assert!(matches!(
            parse_line(b"2016-10-06T00:17:09Z stdin F x"),
            Err(LogParseError::BadStream(_))
        ));
        assert!(matches!(
            parse_line(b"2016-10-06T00:17:09Z stdout X x"),
            Err(LogParseError::BadTag(_))
        ));
    }
}
