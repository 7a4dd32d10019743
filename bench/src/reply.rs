//! SMTP reply parsing (RFC 5321 §4.2), including multi-line replies.

use anyhow::{Context, Result, bail};
use tokio::io::AsyncRead;

use crate::net::{LineReader, MAX_REPLY_LINE};

/// Most lines one reply may have. EHLO answers run to a dozen or two; this
/// only stops a server that streams "250-" forever.
const MAX_REPLY_LINES: usize = 512;

/// One complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code.
    pub code: u16,
    /// Text of every line, without code, separator or CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2 for success, 3 for "go on", 4 for temporary and 5 for permanent failure.
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// True for 2xx.
    pub fn is_ok(&self) -> bool {
        self.class() == 2
    }

    /// Code plus first line, shortened: enough to recognise an error in a
    /// report without letting one server message flood it.
    pub fn summary(&self) -> String {
        let first = self.lines.first().map_or("", String::as_str);
        let mut text: String = first.chars().take(100).collect();
        if text.len() < first.len() {
            text.push_str("...");
        }
        format!("{} {}", self.code, text).trim_end().to_owned()
    }

    /// EHLO keywords (first word of each line after the greeting), upper-cased.
    pub fn ehlo_keywords(&self) -> impl Iterator<Item = String> + '_ {
        self.lines.iter().skip(1).filter_map(|line| {
            line.split_whitespace()
                .next()
                .map(|word| word.to_ascii_uppercase())
        })
    }
}

/// One parsed reply line: code, whether it is the last line, and its text.
#[derive(Debug, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    /// Three-digit code.
    pub code: u16,
    /// False when the line was "NNN-": more lines follow.
    pub last: bool,
    /// Text after the separator, CRLF removed.
    pub text: &'a str,
}

/// Parses a single reply line such as `250-PIPELINING\r\n` or `354 go ahead\r\n`.
pub fn parse_reply_line(raw: &[u8]) -> Result<ReplyLine<'_>> {
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    // Tolerate a bare LF: some test sinks send one, and it is unambiguous.
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let shown = || String::from_utf8_lossy(line).chars().take(80).collect::<String>();
    let digits = line
        .get(..3)
        .filter(|d| (b'2'..=b'5').contains(&d[0]) && d[1].is_ascii_digit() && d[2].is_ascii_digit());
    let Some(digits) = digits else {
        bail!("malformed SMTP reply line {:?}", shown());
    };
    let code = digits.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    let last = match line.get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        Some(_) => bail!("malformed SMTP reply line {:?}", shown()),
    };
    let text = line.get(4..).unwrap_or_default();
    let text = std::str::from_utf8(text).unwrap_or("(non-UTF-8 text)");
    Ok(ReplyLine { code, last, text })
}

/// Collects reply lines until a complete reply is formed.
#[derive(Debug, Default)]
pub struct ReplyBuilder {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyBuilder {
    /// Adds one raw line; returns the reply once its last line arrived.
    pub fn push(&mut self, raw: &[u8]) -> Result<Option<Reply>> {
        let parsed = parse_reply_line(raw)?;
        match self.code {
            Some(code) if code != parsed.code => {
                bail!("multi-line reply changed code from {code} to {}", parsed.code)
            }
            _ => self.code = Some(parsed.code),
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            bail!("reply has more than {MAX_REPLY_LINES} lines");
        }
        self.lines.push(parsed.text.to_owned());
        if !parsed.last {
            return Ok(None);
        }
        self.code = None;
        Ok(Some(Reply {
            code: parsed.code,
            lines: std::mem::take(&mut self.lines),
        }))
    }
}

/// Reads one complete (possibly multi-line) reply. The caller bounds the wait.
pub async fn read_reply<R: AsyncRead + Unpin>(reader: &mut LineReader<R>) -> Result<Reply> {
    let mut builder = ReplyBuilder::default();
    loop {
        let line = reader
            .read_line(MAX_REPLY_LINE)
            .await
            .context("reading SMTP reply")?;
        if let Some(reply) = builder.push(line)? {
            return Ok(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_lines() {
        let l = parse_reply_line(b"250 OK\r\n").unwrap();
        assert_eq!((l.code, l.last, l.text), (250, true, "OK"));
        let l = parse_reply_line(b"250-PIPELINING\r\n").unwrap();
        assert_eq!((l.code, l.last, l.text), (250, false, "PIPELINING"));
        let l = parse_reply_line(b"354\r\n").unwrap();
        assert_eq!((l.code, l.last, l.text), (354, true, ""));
        let l = parse_reply_line(b"421 bye\n").unwrap();
        assert_eq!((l.code, l.last, l.text), (421, true, "bye"));
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            &b"25\r\n"[..],
            b"OK 250\r\n",
            b"250x\r\n",
            b"199 too low\r\n",
            b"600 too high\r\n",
            b"\r\n",
        ] {
            assert!(parse_reply_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn assembles_multi_line_replies() {
        let mut b = ReplyBuilder::default();
        assert_eq!(b.push(b"250-mail.example greets you\r\n").unwrap(), None);
        assert_eq!(b.push(b"250-SIZE 10240000\r\n").unwrap(), None);
        assert_eq!(b.push(b"250-pipelining\r\n").unwrap(), None);
        let reply = b.push(b"250 8BITMIME\r\n").unwrap().unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.lines.len(), 4);
        let keywords: Vec<String> = reply.ehlo_keywords().collect();
        assert_eq!(keywords, ["SIZE", "PIPELINING", "8BITMIME"]);
        // The builder is reusable for the next reply.
        assert_eq!(b.push(b"221 bye\r\n").unwrap().unwrap().code, 221);
    }

    #[test]
    fn rejects_code_change_mid_reply() {
        let mut b = ReplyBuilder::default();
        b.push(b"250-first\r\n").unwrap();
        assert!(b.push(b"550 second\r\n").is_err());
    }

    #[test]
    fn summary_is_short() {
        let reply = Reply {
            code: 550,
            lines: vec!["x".repeat(300), "second".into()],
        };
        let s = reply.summary();
        assert!(s.starts_with("550 xxx") && s.ends_with("...") && s.len() < 120);
    }

    #[tokio::test]
    async fn reads_reply_from_stream() {
        let data: &[u8] = b"220-hello\r\n220 ready\r\n250 ok\r\n";
        let mut reader = LineReader::new(data);
        let first = read_reply(&mut reader).await.unwrap();
        assert_eq!(first.code, 220);
        assert_eq!(first.lines, ["hello", "ready"]);
        assert_eq!(read_reply(&mut reader).await.unwrap().code, 250);
        assert!(read_reply(&mut reader).await.is_err());
    }
}
