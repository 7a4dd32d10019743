//! Connection plumbing shared by every subcommand: loopback-only address
//! resolution, bounded line reads and timeouts around every network wait.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Longest command-reply or status line accepted (SMTP allows 512; leave room
/// for chatty servers without letting a broken one eat memory).
pub const MAX_REPLY_LINE: usize = 8 * 1024;

/// Longest message-content line accepted from a POP3 server. RFC 5322 caps
/// lines at 1000 octets, but mailboxes often hold mail from sloppier senders,
/// so this is generous while still bounded.
pub const MAX_DATA_LINE: usize = 1024 * 1024;

/// Resolves `addr` and refuses anything that is not loopback.
///
/// This tool generates real load; pointing it at someone else's machine by a
/// typo must fail loudly instead of quietly hammering a remote host.
pub async fn resolve_loopback(addr: &str) -> Result<SocketAddr> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr:?} (expected HOST:PORT)"))?
        .collect();
    if resolved.is_empty() {
        bail!("{addr:?} resolved to no address");
    }
    if let Some(remote) = resolved.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "{addr:?} resolves to {remote}, which is not a loopback address; \
             poczta-bench only targets servers on this machine (127.0.0.0/8 or [::1])"
        );
    }
    Ok(resolved[0])
}

/// Runs `fut`, turning "took longer than `limit`" into an error naming `what`.
pub async fn timed<T>(limit: Duration, what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => Err(anyhow!("timed out after {limit:?} waiting for {what}")),
    }
}

/// True when `err` (or anything it wraps) is "too many open files".
pub fn is_emfile(err: &anyhow::Error) -> bool {
    // EMFILE is 24 on every Linux architecture; std has no named constant for it.
    const EMFILE: i32 = 24;
    err.chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.raw_os_error() == Some(EMFILE))
}

/// Reads CRLF-terminated lines with a hard per-line size limit.
///
/// `tokio`'s own `read_line` grows its buffer without bound, which would let a
/// misbehaving server exhaust the benchmark's memory.
pub struct LineReader<R> {
    inner: BufReader<R>,
    line: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Wraps a raw reader.
    pub fn new(inner: R) -> Self {
        Self {
            inner: BufReader::with_capacity(64 * 1024, inner),
            line: Vec::with_capacity(256),
        }
    }

    /// Returns the next line, including its terminator, or fails if it is
    /// longer than `limit` bytes or the peer closed the connection first.
    pub async fn read_line(&mut self, limit: usize) -> Result<&[u8]> {
        self.line.clear();
        loop {
            let available = self.inner.fill_buf().await.context("read failed")?;
            if available.is_empty() {
                bail!("server closed the connection");
            }
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(pos) => (pos + 1, true),
                None => (available.len(), false),
            };
            if self.line.len() + take > limit {
                bail!("server sent a line longer than {limit} bytes");
            }
            self.line.extend_from_slice(&available[..take]);
            self.inner.consume(take);
            if done {
                return Ok(&self.line);
            }
        }
    }
}

/// A TCP connection split into a bounded line reader and a buffered writer,
/// with one timeout applied to every wait on the network.
pub struct Conn {
    /// Incoming side.
    pub reader: LineReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
    /// Limit for each single network wait (connect, one reply, one write).
    pub timeout: Duration,
}

impl Conn {
    /// Opens a TCP connection to `addr` within `timeout`.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self> {
        let stream = timed(timeout, "TCP connect", async {
            TcpStream::connect(addr)
                .await
                .with_context(|| format!("connect to {addr} failed"))
        })
        .await?;
        // Commands are tiny and latency is what we measure: never let Nagle
        // hold one back waiting for an ACK.
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (read, write) = stream.into_split();
        Ok(Self {
            reader: LineReader::new(read),
            writer: BufWriter::with_capacity(64 * 1024, write),
            timeout,
        })
    }

    /// Queues bytes without sending them; [`Conn::flush`] puts them on the wire.
    pub async fn queue(&mut self, bytes: &[u8]) -> Result<()> {
        write_all_timed(&mut self.writer, bytes, self.timeout).await
    }

    /// Sends everything queued so far.
    pub async fn flush(&mut self) -> Result<()> {
        let limit = self.timeout;
        timed(limit, "the server to accept data", async {
            self.writer.flush().await.context("write failed")
        })
        .await
    }

    /// Queues and sends `bytes` in one go.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.queue(bytes).await?;
        self.flush().await
    }
}

async fn write_all_timed<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8], limit: Duration) -> Result<()> {
    // A large message may fill the buffer and block on the socket, so even
    // "queueing" is a network wait that needs a bound.
    timed(limit, "the server to accept data", async {
        writer.write_all(bytes).await.context("write failed")
    })
    .await
}

/// Reads the soft and hard `RLIMIT_NOFILE` of this process from
/// `/proc/self/limits` (no libc needed). `None` means unlimited or unknown.
pub fn nofile_limits() -> Option<(Option<u64>, Option<u64>)> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let parse = |s: Option<&str>| s.and_then(|v| v.parse::<u64>().ok());
    let soft = parse(fields.next());
    let hard = parse(fields.next());
    Some((soft, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn line_reader_splits_and_limits() {
        let data: &[u8] = b"250-first\r\n250 second\r\ntoo long line\r\n";
        let mut reader = LineReader::new(data);
        assert_eq!(reader.read_line(64).await.unwrap(), b"250-first\r\n");
        assert_eq!(reader.read_line(64).await.unwrap(), b"250 second\r\n");
        assert!(reader.read_line(5).await.is_err());
    }

    #[tokio::test]
    async fn line_reader_reports_eof() {
        let mut reader = LineReader::new(&b"partial"[..]);
        let err = reader.read_line(64).await.unwrap_err();
        assert!(err.to_string().contains("closed"));
    }

    #[tokio::test]
    async fn non_loopback_is_refused() {
        assert!(resolve_loopback("127.0.0.1:25").await.is_ok());
        assert!(resolve_loopback("[::1]:25").await.is_ok());
        assert!(resolve_loopback("192.0.2.1:25").await.is_err());
    }
}
