//! A minimal SPDY/3.1 server connection, as kubectl's (client-go's spdystream) streams need it: the client
//! opens streams with SYN_STREAM, the server answers each with SYN_REPLY, data flows in DATA frames, PINGs are
//! echoed. No flow control is enforced (spdystream sends no WINDOW_UPDATE).

pub mod frame;

use std::collections::HashMap;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use frame::{Frame, Headers, SpdyError};

/// A stream the client opened.
pub struct IncomingStream {
    pub id: u32,
    pub headers: Headers,
    /// The client's data; ends when the client half-closes (FIN), resets the stream or the connection ends.
    pub data: mpsc::Receiver<Bytes>,
    /// Cancelled when the client resets the stream or the connection ends.
    pub reset: CancellationToken,
}

impl IncomingStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        frame::header(&self.headers, name)
    }
}

enum Command {
    Frame(Frame),
    Close,
}

/// Writes frames on the connection; cheap to clone.
#[derive(Clone)]
pub struct StreamWriter {
    tx: mpsc::Sender<Command>,
}

impl StreamWriter {
    /// Sends `data` on stream `id` (split into frames of at most 32 KiB).
    pub async fn data(&self, id: u32, data: &[u8]) -> Result<(), SpdyError> {
        for chunk in data.chunks(frame::MAX_DATA_CHUNK) {
            self.frame(Frame::Data { stream_id: id, fin: false, data: Bytes::copy_from_slice(chunk) }).await?;
        }
        Ok(())
    }

    /// Half-closes stream `id` from this side.
    pub async fn fin(&self, id: u32) -> Result<(), SpdyError> {
        self.frame(Frame::Data { stream_id: id, fin: true, data: Bytes::new() }).await
    }

    pub async fn reset(&self, id: u32, status: u32) -> Result<(), SpdyError> {
        self.frame(Frame::RstStream { stream_id: id, status }).await
    }

    async fn frame(&self, f: Frame) -> Result<(), SpdyError> {
        self.tx.send(Command::Frame(f)).await.map_err(|_| closed())
    }

    /// Sends GOAWAY, flushes what is queued and closes the connection's write side.
    pub async fn close(&self) {
        let _ = self.tx.send(Command::Frame(Frame::GoAway { last_good_stream_id: 0, status: 0 })).await;
        let _ = self.tx.send(Command::Close).await;
    }
}

fn closed() -> SpdyError {
    SpdyError::Io(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the SPDY connection is closed"))
}

/// A running server connection: the streams the client opens and a writer.
pub struct Connection {
    pub incoming: mpsc::Receiver<IncomingStream>,
    pub writer: StreamWriter,
    reader: JoinHandle<()>,
    writer_task: JoinHandle<()>,
}

impl Connection {
    /// Starts serving SPDY/3.1 on `io` (the upgraded HTTP connection, or a WebSocket tunnel).
    pub fn serve<IO>(io: IO) -> Connection
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, mut wr) = tokio::io::split(io);
        let (tx, mut rx) = mpsc::channel::<Command>(64);
        let writer = StreamWriter { tx };
        let writer_task = tokio::spawn(async move {
            let mut enc = frame::FrameWriter::new();
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    Command::Frame(f) => {
                        let bytes = enc.encode(&f);
                        if wr.write_all(&bytes).await.is_err() {
                            break;
                        }
                        // Write out at once unless more is already queued.
                        if rx.is_empty() && wr.flush().await.is_err() {
                            break;
                        }
                    }
                    Command::Close => break,
                }
            }
            let _ = wr.flush().await;
            let _ = wr.shutdown().await;
        });
        let (in_tx, incoming) = mpsc::channel(16);
        let reader = tokio::spawn(read_loop(frame::FrameReader::new(rd), writer.clone(), in_tx));
        Connection { incoming, writer, reader, writer_task }
    }

    /// Closes the connection: GOAWAY, flush, shut down; stops reading.
    pub async fn close(self) {
        self.writer.close().await;
        drop(self.writer);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.writer_task).await;
        self.reader.abort();
    }
}

struct OpenStream {
    data: Option<mpsc::Sender<Bytes>>,
    reset: CancellationToken,
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: frame::FrameReader<R>,
    writer: StreamWriter,
    incoming: mpsc::Sender<IncomingStream>,
) {
    let mut streams: HashMap<u32, OpenStream> = HashMap::new();
    loop {
        let f = match reader.read_frame().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "SPDY connection ended");
                break;
            }
        };
        match f {
            Frame::SynStream { stream_id, fin, headers, .. } => {
                if streams.contains_key(&stream_id) || stream_id % 2 == 0 {
                    let _ = writer.reset(stream_id, frame::RST_PROTOCOL_ERROR).await;
                    continue;
                }
                let (tx, rx) = mpsc::channel(32);
                let reset = CancellationToken::new();
                streams.insert(stream_id, OpenStream { data: (!fin).then_some(tx), reset: reset.clone() });
                if writer.frame(Frame::SynReply { stream_id, fin: false, headers: Vec::new() }).await.is_err() {
                    break;
                }
                if incoming.send(IncomingStream { id: stream_id, headers, data: rx, reset }).await.is_err() {
                    break;
                }
            }
            Frame::Data { stream_id, fin, data } => {
                let Some(s) = streams.get_mut(&stream_id) else { continue };
                if !data.is_empty()
                    && let Some(tx) = &s.data
                    && tx.send(data).await.is_err()
                {
                    s.data = None;
                }
                if fin {
                    s.data = None;
                }
            }
            Frame::RstStream { stream_id, .. } => {
                if let Some(s) = streams.remove(&stream_id) {
                    s.reset.cancel();
                }
            }
            Frame::Ping { id } => {
                if writer.frame(Frame::Ping { id }).await.is_err() {
                    break;
                }
            }
            Frame::GoAway { .. } => break,
            Frame::SynReply { .. } | Frame::Settings | Frame::Headers { .. } | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
        }
    }
    for (_, s) in streams {
        s.reset.cancel();
    }
}
