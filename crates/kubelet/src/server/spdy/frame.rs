//! SPDY/3.1 frames: reading and writing control and data frames, with header blocks compressed by zlib
//! over SPDY/3's preset dictionary (one compression context per direction for the whole connection).

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Header names and values of a SYN_STREAM, SYN_REPLY or HEADERS frame; several values of one name are
/// joined by NUL bytes on the wire.
pub type Headers = Vec<(String, String)>;

/// The largest frame payload accepted from a peer (SPDY allows 2^24 - 1).
const MAX_FRAME_PAYLOAD: usize = (1 << 24) - 1;
/// The most a decompressed header block may grow to.
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// Data written in one DATA frame at most.
pub const MAX_DATA_CHUNK: usize = 32 * 1024;

pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_CANCEL: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY connection I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
}

/// One SPDY/3.1 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream { stream_id: u32, associated_to: u32, priority: u8, fin: bool, headers: Headers },
    SynReply { stream_id: u32, fin: bool, headers: Headers },
    RstStream { stream_id: u32, status: u32 },
    Settings,
    Ping { id: u32 },
    GoAway { last_good_stream_id: u32, status: u32 },
    Headers { stream_id: u32, fin: bool, headers: Headers },
    WindowUpdate { stream_id: u32, delta: u32 },
    Data { stream_id: u32, fin: bool, data: Bytes },
    /// A control frame of a type this implementation ignores (CREDENTIAL, NOOP ...).
    Unknown { frame_type: u16 },
}

/// SPDY/3's zlib dictionary (section 2.6.10.1 of the draft): length-prefixed header names and values,
/// then common status lines, dates and media types. 1423 bytes.
pub fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
        "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
        "content-base", "content-encoding", "content-language", "content-length", "content-location",
        "content-md5", "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
        "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified",
        "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
        "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via",
        "warning", "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
        "public", "set-cookie", "keep-alive", "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
        "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut out = Vec::with_capacity(1423);
    for w in WORDS {
        out.extend_from_slice(&(w.len() as u32).to_be_bytes());
        out.extend_from_slice(w.as_bytes());
    }
    out.extend_from_slice(TAIL.as_bytes());
    out
}

/// Reads frames from the peer, inflating header blocks with the peer's compression context.
pub struct FrameReader<R> {
    io: R,
    inflate: Decompress,
    dictionary: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        FrameReader { io, inflate: Decompress::new(true), dictionary: dictionary() }
    }

    /// The next frame, or `None` when the peer closed the connection between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, SpdyError> {
        let mut head = [0u8; 8];
        match self.io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME_PAYLOAD {
            return Err(SpdyError::Protocol(format!("frame of {len} bytes is too large")));
        }
        let mut payload = vec![0u8; len];
        self.io.read_exact(&mut payload).await?;
        if head[0] & 0x80 == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
            return Ok(Some(Frame::Data { stream_id, fin: flags & FLAG_FIN != 0, data: Bytes::from(payload) }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != 3 {
            return Err(SpdyError::Protocol(format!("unsupported SPDY version {version}")));
        }
        let frame_type = u16::from_be_bytes([head[2], head[3]]);
        let fin = flags & FLAG_FIN != 0;
        let word = |i: usize| -> Result<u32, SpdyError> {
            payload
                .get(i..i + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| SpdyError::Protocol(format!("control frame type {frame_type} is too short")))
        };
        let frame = match frame_type {
            1 => {
                let stream_id = word(0)? & 0x7fff_ffff;
                let associated_to = word(4)? & 0x7fff_ffff;
                let priority = payload.get(8).copied().unwrap_or(0) >> 5;
                let headers = self.read_headers(payload.get(10..).unwrap_or(&[]))?;
                Frame::SynStream { stream_id, associated_to, priority, fin, headers }
            }
            2 => {
                let stream_id = word(0)? & 0x7fff_ffff;
                let headers = self.read_headers(&payload[4..])?;
                Frame::SynReply { stream_id, fin, headers }
            }
            3 => Frame::RstStream { stream_id: word(0)? & 0x7fff_ffff, status: word(4)? },
            4 => Frame::Settings,
            6 => Frame::Ping { id: word(0)? },
            7 => Frame::GoAway { last_good_stream_id: word(0)? & 0x7fff_ffff, status: word(4).unwrap_or(0) },
            8 => {
                let stream_id = word(0)? & 0x7fff_ffff;
                let headers = self.read_headers(&payload[4..])?;
                Frame::Headers { stream_id, fin, headers }
            }
            9 => Frame::WindowUpdate { stream_id: word(0)? & 0x7fff_ffff, delta: word(4)? & 0x7fff_ffff },
            other => Frame::Unknown { frame_type: other },
        };
        Ok(Some(frame))
    }

    fn read_headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let raw = self.inflate_block(block)?;
        decode_header_block(&raw)
    }

    fn inflate_block(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out: Vec<u8> = Vec::with_capacity(input.len() * 4 + 256);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(4096);
            }
            let (in_before, out_before) = (self.inflate.total_in(), out.len());
            let result = self.inflate.decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.inflate.total_in() - in_before) as usize;
            match result {
                Ok(Status::Ok | Status::BufError | Status::StreamEnd) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&self.dictionary)
                        .map_err(|e| SpdyError::Protocol(format!("header block dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(SpdyError::Protocol(format!("header block decompression: {e}"))),
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::Protocol("header block is too large".into()));
            }
            let progressed = out.len() > out_before || self.inflate.total_in() > in_before;
            if (pos >= input.len() && out.len() < out.capacity()) || !progressed {
                break;
            }
        }
        Ok(out)
    }
}

/// Parses an inflated header block: u32 count, then (u32 length, name, u32 length, value) pairs.
pub fn decode_header_block(raw: &[u8]) -> Result<Headers, SpdyError> {
    let bad = || SpdyError::Protocol("malformed header block".into());
    let mut pos = 0usize;
    let take_u32 = |pos: &mut usize| -> Result<usize, SpdyError> {
        let b = raw.get(*pos..*pos + 4).ok_or_else(bad)?;
        *pos += 4;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = take_u32(&mut pos)?;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = take_u32(&mut pos)?;
        let name = raw.get(pos..pos + n).ok_or_else(bad)?;
        pos += n;
        let v = take_u32(&mut pos)?;
        let value = raw.get(pos..pos + v).ok_or_else(bad)?;
        pos += v;
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        for part in value.split(|b| *b == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(part).into_owned()));
        }
    }
    Ok(headers)
}

/// Serializes a header block (uncompressed), joining repeated names with NUL.
pub fn encode_header_block(headers: &Headers) -> Vec<u8> {
    let mut grouped: Vec<(String, Vec<&str>)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match grouped.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => grouped.push((name, vec![value])),
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(grouped.len() as u32).to_be_bytes());
    for (name, values) in grouped {
        let value = values.join("\0");
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Encodes frames for the peer, deflating header blocks with this side's compression context.
pub struct FrameWriter {
    deflate: Compress,
}

impl Default for FrameWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameWriter {
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(&dictionary()).expect("a fresh zlib stream accepts a dictionary");
        FrameWriter { deflate }
    }

    /// The frame's bytes as they go on the wire.
    pub fn encode(&mut self, frame: &Frame) -> Vec<u8> {
        match frame {
            Frame::Data { stream_id, fin, data } => {
                let mut out = Vec::with_capacity(8 + data.len());
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.push(if *fin { FLAG_FIN } else { 0 });
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
                out
            }
            Frame::SynStream { stream_id, associated_to, priority, fin, headers } => {
                let mut p = Vec::new();
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
                p.push((priority & 0x7) << 5);
                p.push(0);
                p.extend_from_slice(&self.deflate_block(&encode_header_block(headers)));
                control(1, if *fin { FLAG_FIN } else { 0 }, &p)
            }
            Frame::SynReply { stream_id, fin, headers } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&self.deflate_block(&encode_header_block(headers)));
                control(2, if *fin { FLAG_FIN } else { 0 }, &p)
            }
            Frame::RstStream { stream_id, status } => control(3, 0, &words(&[stream_id & 0x7fff_ffff, *status])),
            Frame::Settings => control(4, 0, &0u32.to_be_bytes()),
            Frame::Ping { id } => control(6, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good_stream_id, status } => control(7, 0, &words(&[*last_good_stream_id, *status])),
            Frame::Headers { stream_id, fin, headers } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&self.deflate_block(&encode_header_block(headers)));
                control(8, if *fin { FLAG_FIN } else { 0 }, &p)
            }
            Frame::WindowUpdate { stream_id, delta } => control(9, 0, &words(&[*stream_id, *delta])),
            Frame::Unknown { .. } => Vec::new(),
        }
    }

    fn deflate_block(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::with_capacity(input.len() + 128);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(1024);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&input[pos..], &mut out, FlushCompress::Sync)
                .expect("deflating into a growing buffer does not fail");
            pos += (self.deflate.total_in() - before) as usize;
            if pos >= input.len() && out.len() < out.capacity() {
                break;
            }
        }
        out
    }
}

fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn control(frame_type: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[0x80, 0x03]);
    out.extend_from_slice(&frame_type.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out
}

/// The first value of header `name`.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        // The digest of the dictionary compiled into kubectl (Go's spdy package).
        assert_eq!(hex(&Sha256::digest(&d)), "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02");
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[tokio::test]
    async fn frames_round_trip_with_shared_compression_contexts() {
        let mut w = FrameWriter::new();
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                fin: false,
                headers: vec![("streamtype".into(), "error".into()), ("port".into(), "80".into())],
            },
            Frame::SynStream { stream_id: 3, associated_to: 0, priority: 0, fin: true, headers: vec![("streamtype".into(), "data".into())] },
            Frame::SynReply { stream_id: 3, fin: false, headers: vec![] },
            Frame::Data { stream_id: 3, fin: true, data: Bytes::from_static(b"hello") },
            Frame::Ping { id: 7 },
            Frame::RstStream { stream_id: 3, status: RST_CANCEL },
            Frame::GoAway { last_good_stream_id: 3, status: 0 },
            Frame::Headers { stream_id: 1, fin: true, headers: vec![("a".into(), "1".into()), ("a".into(), "2".into())] },
            Frame::WindowUpdate { stream_id: 1, delta: 1000 },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(w.encode(f));
        }
        let mut r = FrameReader::new(&wire[..]);
        for f in &frames {
            assert_eq!(r.read_frame().await.unwrap().as_ref(), Some(f));
        }
        assert_eq!(r.read_frame().await.unwrap(), None);
    }

    /// Header blocks as zlib (the library Go's compressor is compatible with) writes them with SPDY's
    /// dictionary at level 9, two blocks on one compression context.
    #[tokio::test]
    async fn reads_header_blocks_from_another_zlib_implementation() {
        let hex_bytes = |s: &str| (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect::<Vec<u8>>();
        let blocks = [
            hex_bytes("78f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45a024cc64610024398b209198094adc8c0600000000ffff"),
            hex_bytes("c2aa15540a2512d209000000ffff"),
        ];
        let mut wire = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            let mut p = vec![0, 0, 0, (2 * i + 1) as u8, 0, 0, 0, 0, 0, 0];
            p.extend_from_slice(b);
            wire.extend(control(1, 0, &p));
        }
        let mut r = FrameReader::new(&wire[..]);
        let h = |t: &str| vec![("streamtype".to_string(), t.to_string()), ("port".into(), "80".into()), ("requestid".into(), "0".into())];
        for (id, t) in [(1, "error"), (3, "data")] {
            assert_eq!(
                r.read_frame().await.unwrap(),
                Some(Frame::SynStream { stream_id: id, associated_to: 0, priority: 0, fin: false, headers: h(t) })
            );
        }
    }

    #[tokio::test]
    async fn a_header_block_that_is_not_zlib_is_a_protocol_error() {
        let wire = control(2, 0, &[0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
        let mut r = FrameReader::new(&wire[..]);
        let err = r.read_frame().await.unwrap_err();
        assert!(matches!(err, SpdyError::Protocol(_)), "{err}");
    }
}
