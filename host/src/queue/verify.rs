//! Recipient verification for gateway domains: before accepting a
//! recipient of a `relay.domains` domain, ask its next hop with `MAIL
//! FROM:<>` / `RCPT TO:` / `QUIT` (Postfix's `reject_unverified_recipient`),
//! so that the gateway refuses unknown users at RCPT time instead of
//! accepting mail it would later have to bounce (backscatter).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What the next hop said about a recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx to RCPT.
    Exists,
    /// 5xx to RCPT: the reply line.
    Unknown(String),
    /// Anything else (4xx, no answer): we cannot tell now.
    Unsure(String),
}

/// Longest reply line read from the next hop.
const MAX_LINE: usize = 2048;

/// Asks the server at `addr` whether it accepts `rcpt`.
pub async fn probe(addr: SocketAddr, helo: &str, rcpt: &str, limit: Duration) -> Verdict {
    match tokio::time::timeout(limit, dialogue(addr, helo, rcpt)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => Verdict::Unsure(format!("{addr}: {e}")),
        Err(_) => Verdict::Unsure(format!("{addr}: timed out")),
    }
}

async fn dialogue(addr: SocketAddr, helo: &str, rcpt: &str) -> std::io::Result<Verdict> {
    let stream = TcpStream::connect(addr).await?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let greeting = reply(&mut read).await?;
    if !greeting.starts_with('2') {
        return Ok(Verdict::Unsure(greeting));
    }
    for cmd in [format!("EHLO {helo}"), "MAIL FROM:<>".to_owned()] {
        write.write_all(format!("{cmd}\r\n").as_bytes()).await?;
        let r = reply(&mut read).await?;
        if !r.starts_with('2') {
            return Ok(Verdict::Unsure(r));
        }
    }
    write
        .write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())
        .await?;
    let r = reply(&mut read).await?;
    let _ = write.write_all(b"QUIT\r\n").await;
    Ok(match r.as_bytes().first() {
        Some(b'2') => Verdict::Exists,
        Some(b'5') => Verdict::Unknown(r),
        _ => Verdict::Unsure(r),
    })
}

/// The last line of one (possibly multi-line) reply.
async fn reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<String> {
    for _ in 0..128 {
        let mut line = Vec::new();
        let n = (&mut *r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if text.as_bytes().get(3) != Some(&b'-') {
            return Ok(text);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "reply too long",
    ))
}
