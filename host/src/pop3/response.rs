//! Serialisation of POP3 responses (RFC 1939 §3, RFC 2449 §8 response
//! codes, RFC 5034 continuations) and of messages for `RETR` / `TOP`.

/// One POP3 response, before serialisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `+OK text`; an empty text gives a bare `+OK`.
    Ok(String),
    /// `-ERR [CODE] text`.
    Err {
        /// An RFC 2449 / RFC 3206 response code without its brackets, such
        /// as `"AUTH"`, `"IN-USE"`, `"SYS/TEMP"` or `"SYS/PERM"`.
        code: Option<&'static str>,
        /// Human-readable text.
        text: String,
    },
    /// `+ text`: a SASL continuation (RFC 5034 §4). The space is always
    /// sent, even with an empty text, as the RFC's examples do.
    Continue(String),
    /// `+OK first`, then each line byte-stuffed, then `.`: for CAPA, LIST,
    /// UIDL and the bare AUTH mechanism list.
    MultiLine {
        /// The text of the `+OK` line.
        first: String,
        /// The body lines, without line terminators.
        lines: Vec<String>,
    },
}

impl Response {
    /// `+OK text`.
    pub fn ok(text: impl Into<String>) -> Self {
        Response::Ok(text.into())
    }

    /// `-ERR text`, without a response code.
    pub fn err(text: impl Into<String>) -> Self {
        Response::Err {
            code: None,
            text: text.into(),
        }
    }

    /// `-ERR [code] text`.
    pub fn err_with_code(code: &'static str, text: impl Into<String>) -> Self {
        Response::Err {
            code: Some(code),
            text: text.into(),
        }
    }

    /// Whether this is a negative (`-ERR`) response.
    pub fn is_err(&self) -> bool {
        matches!(self, Response::Err { .. })
    }

    /// Appends the wire form of this response, CRLF-terminated, to `out`.
    ///
    /// Control characters in any text (CR and LF above all) are sent as
    /// spaces: texts can carry strings from the store, such as UIDs, and a
    /// line break in one must never forge an extra response line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Response::Ok(text) => status_line(out, b"+OK", None, text),
            Response::Err { code, text } => status_line(out, b"-ERR", *code, text),
            Response::Continue(text) => {
                out.extend_from_slice(b"+ ");
                push_text(out, text);
                out.extend_from_slice(b"\r\n");
            }
            Response::MultiLine { first, lines } => {
                status_line(out, b"+OK", None, first);
                for line in lines {
                    if line.starts_with('.') {
                        out.push(b'.');
                    }
                    push_text(out, line);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b".\r\n");
            }
        }
    }

    /// The wire form of this response.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

fn status_line(out: &mut Vec<u8>, status: &[u8], code: Option<&str>, text: &str) {
    out.extend_from_slice(status);
    if let Some(code) = code {
        out.extend_from_slice(b" [");
        push_text(out, code);
        out.push(b']');
    }
    if !text.is_empty() {
        out.push(b' ');
        push_text(out, text);
    }
    out.extend_from_slice(b"\r\n");
}

fn push_text(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().map(|b| if b.is_ascii_control() { b' ' } else { b }));
}

/// Appends a `RETR` (`top_lines: None`) or `TOP` (`Some(n)`) response for
/// `message` to `out`.
///
/// `RETR` starts with `+OK <n> octets`, `n` being `message.len()`, which is
/// the size the store reports for LIST when it keeps messages in wire
/// (CRLF) form. `TOP` starts with `+OK top of message follows`: it sends
/// only part of the message, so an octet count would be misleading. With
/// `Some(n)`, only the header, the blank line after it and the first `n`
/// body lines are sent; a message without a blank line is all header and
/// is sent whole.
///
/// The content is byte-stuffed (a line beginning with `.` gets another
/// `.`), every line ends in CRLF (a bare LF becomes CRLF, and a last line
/// without a terminator gets one), and `.` CRLF ends the response.
///
/// Messages can be tens of MiB, so the content is copied in runs between
/// the few places that need an edit, never byte by byte.
pub fn write_message(out: &mut Vec<u8>, message: &[u8], top_lines: Option<u32>) {
    let content = match top_lines {
        None => message,
        Some(lines) => &message[..top_end(message, lines)],
    };
    // Room for the content, the status line, the terminator and a little
    // stuffing, so that a typical message needs a single allocation.
    out.reserve(content.len() + content.len() / 512 + 64);
    match top_lines {
        None => out.extend_from_slice(format!("+OK {} octets\r\n", message.len()).as_bytes()),
        Some(_) => out.extend_from_slice(b"+OK top of message follows\r\n"),
    }
    write_stuffed(out, content);
    out.extend_from_slice(b".\r\n");
}

/// The index of the first LF in `data`.
///
/// Looks at eight bytes per step: a byte-wise `position` is what dominated
/// writing a large message, and `std` offers no `memchr` on stable.
fn find_lf(data: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut words = data.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let bytes: [u8; 8] = word.try_into().unwrap_or_default();
        // `x` has a zero byte exactly where `word` has an LF. The classic
        // has-a-zero-byte test is exact as a yes/no answer, though the bit
        // it sets is not a reliable position, hence the byte-wise search.
        let x = u64::from_ne_bytes(bytes) ^ LFS;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            return word.iter().position(|&b| b == b'\n').map(|i| offset + i);
        }
        offset += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| offset + i)
}

/// The index just past the line starting at `start` (past its LF, or the
/// end of `data` for a last line without one).
fn line_end(data: &[u8], start: usize) -> usize {
    find_lf(&data[start..]).map_or(data.len(), |i| start + i + 1)
}

/// Where `TOP` stops: after the header, its blank line and `lines` body
/// lines.
fn top_end(message: &[u8], lines: u32) -> usize {
    let mut pos = 0;
    loop {
        if pos >= message.len() {
            return message.len();
        }
        let end = line_end(message, pos);
        let line = &message[pos..end];
        pos = end;
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    for _ in 0..lines {
        if pos >= message.len() {
            break;
        }
        pos = line_end(message, pos);
    }
    pos
}

/// Copies `data` to `out` byte-stuffed and with every line ending in CRLF.
fn write_stuffed(out: &mut Vec<u8>, data: &[u8]) {
    // `run_start` marks the first byte not yet copied: untouched stretches
    // are copied with one `extend_from_slice` each, broken only where a
    // dot must be inserted or a line terminator repaired.
    let mut run_start = 0;
    let mut line_start = 0;
    while line_start < data.len() {
        if data[line_start] == b'.' {
            out.extend_from_slice(&data[run_start..line_start]);
            out.push(b'.');
            run_start = line_start;
        }
        match find_lf(&data[line_start..]) {
            Some(offset) => {
                let lf = line_start + offset;
                // `lf > line_start` keeps the look-behind inside this line:
                // the byte before an empty line's LF is the previous LF.
                let crlf = lf > line_start && data[lf - 1] == b'\r';
                if !crlf {
                    out.extend_from_slice(&data[run_start..lf]);
                    out.extend_from_slice(b"\r\n");
                    run_start = lf + 1;
                }
                line_start = lf + 1;
            }
            None => {
                out.extend_from_slice(&data[run_start..]);
                // A trailing lone CR is half a terminator: complete it
                // rather than send CR CR LF.
                if data.last() == Some(&b'\r') {
                    out.push(b'\n');
                } else {
                    out.extend_from_slice(b"\r\n");
                }
                run_start = data.len();
                line_start = data.len();
            }
        }
    }
    out.extend_from_slice(&data[run_start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn serialises_responses() {
        let cases: Vec<(Response, &str)> = vec![
            (Response::ok(""), "+OK\r\n"),
            (Response::ok("done"), "+OK done\r\n"),
            (Response::err("no"), "-ERR no\r\n"),
            (
                Response::err_with_code("IN-USE", "locked"),
                "-ERR [IN-USE] locked\r\n",
            ),
            (Response::err_with_code("AUTH", ""), "-ERR [AUTH]\r\n"),
            (Response::Continue(String::new()), "+ \r\n"),
            (Response::Continue("abc=".into()), "+ abc=\r\n"),
            (
                Response::MultiLine {
                    first: "2 messages".into(),
                    lines: vec!["1 10".into(), ".hidden".into(), "..".into(), "".into()],
                },
                "+OK 2 messages\r\n1 10\r\n..hidden\r\n...\r\n\r\n.\r\n",
            ),
            (
                Response::MultiLine {
                    first: String::new(),
                    lines: vec![],
                },
                "+OK\r\n.\r\n",
            ),
            (Response::ok("evil\r\n+OK forged"), "+OK evil  +OK forged\r\n"),
            (
                Response::MultiLine {
                    first: "x".into(),
                    lines: vec!["1 a\nb".into()],
                },
                "+OK x\r\n1 a b\r\n.\r\n",
            ),
        ];
        for (response, expected) in cases {
            assert_eq!(text(&response.to_bytes()), expected, "{response:?}");
            let mut appended = b"prefix".to_vec();
            response.write_to(&mut appended);
            assert_eq!(text(&appended), format!("prefix{expected}"));
        }
    }

    #[test]
    fn retr_byte_stuffs_and_terminates() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "+OK 0 octets\r\n.\r\n"),
            (b"A: b\r\n\r\nhi\r\n", "+OK 12 octets\r\nA: b\r\n\r\nhi\r\n.\r\n"),
            (
                b"A: b\r\n\r\n.\r\n.x\r\n..\r\nend\r\n",
                "+OK 24 octets\r\nA: b\r\n\r\n..\r\n..x\r\n...\r\nend\r\n.\r\n",
            ),
            (
                b"A: b\r\n\r\nno newline",
                "+OK 18 octets\r\nA: b\r\n\r\nno newline\r\n.\r\n",
            ),
            (b".", "+OK 1 octets\r\n..\r\n.\r\n"),
            (b".\r\n", "+OK 3 octets\r\n..\r\n.\r\n"),
            (b"a\r\n.", "+OK 4 octets\r\na\r\n..\r\n.\r\n"),
            (b"a\nb\n\n.c\n", "+OK 8 octets\r\na\r\nb\r\n\r\n..c\r\n.\r\n"),
            (b"\n", "+OK 1 octets\r\n\r\n.\r\n"),
            (b"ends in cr\r", "+OK 11 octets\r\nends in cr\r\n.\r\n"),
            (b"mid\rcr\r\n", "+OK 8 octets\r\nmid\rcr\r\n.\r\n"),
            (b"a. b\r\n x.\r\n", "+OK 11 octets\r\na. b\r\n x.\r\n.\r\n"),
        ];
        for (message, expected) in cases {
            let mut out = Vec::new();
            write_message(&mut out, message, None);
            assert_eq!(text(&out), *expected, "{}", message.escape_ascii());
        }
    }

    #[test]
    fn top_sends_header_blank_line_and_n_body_lines() {
        let message = b"Subject: x\r\nFrom: y\r\n\r\none\r\n.two\r\nthree\r\n";
        let head = "+OK top of message follows\r\nSubject: x\r\nFrom: y\r\n\r\n";
        let cases: &[(&[u8], u32, String)] = &[
            (message, 0, format!("{head}.\r\n")),
            (message, 1, format!("{head}one\r\n.\r\n")),
            (message, 2, format!("{head}one\r\n..two\r\n.\r\n")),
            (message, 3, format!("{head}one\r\n..two\r\nthree\r\n.\r\n")),
            (message, 4, format!("{head}one\r\n..two\r\nthree\r\n.\r\n")),
            (message, u32::MAX, format!("{head}one\r\n..two\r\nthree\r\n.\r\n")),
            (
                b"A: b\r\n\r\nbody without newline",
                5,
                "+OK top of message follows\r\nA: b\r\n\r\nbody without newline\r\n.\r\n".into(),
            ),
            (
                b"A: b\r\nC: d\r\n",
                0,
                "+OK top of message follows\r\nA: b\r\nC: d\r\n.\r\n".into(),
            ),
            (
                b"\r\nbody\r\nmore\r\n",
                1,
                "+OK top of message follows\r\n\r\nbody\r\n.\r\n".into(),
            ),
            (
                b"A: b\n\none\ntwo\n",
                1,
                "+OK top of message follows\r\nA: b\r\n\r\none\r\n.\r\n".into(),
            ),
            (b"", 3, "+OK top of message follows\r\n.\r\n".into()),
        ];
        for (message, lines, expected) in cases {
            let mut out = Vec::new();
            write_message(&mut out, message, Some(*lines));
            assert_eq!(text(&out), *expected, "{} TOP {lines}", message.escape_ascii());
        }
    }

    #[test]
    fn find_lf_matches_a_byte_wise_search() {
        for len in 0..40 {
            for lf in (0..len).map(Some).chain([None]) {
                // Bytes on both sides of LF (0x0a), and 0x80+ bytes, probe
                // the carries of the word-wise test.
                let mut data: Vec<u8> = (0..len).map(|i| [0x09, 0x0b, 0x8a, 0xff, 0x00][i % 5]).collect();
                if let Some(at) = lf {
                    data[at] = b'\n';
                    if at + 3 < len {
                        data[at + 3] = b'\n';
                    }
                }
                assert_eq!(find_lf(&data), lf, "{data:?}");
            }
        }
    }

    #[test]
    fn large_message_round_trips() {
        // 4 MiB of lines, every tenth one dot-led: unstuffing the output
        // must give back exactly the input.
        let mut message = Vec::new();
        for i in 0..200_000u32 {
            if i % 10 == 0 {
                message.extend_from_slice(b".");
            }
            message.extend_from_slice(format!("line {i} of the message\r\n").as_bytes());
        }
        let mut out = Vec::new();
        write_message(&mut out, &message, None);
        let body = out
            .strip_prefix(format!("+OK {} octets\r\n", message.len()).as_bytes())
            .unwrap()
            .strip_suffix(b".\r\n")
            .unwrap();
        let mut unstuffed = Vec::with_capacity(body.len());
        for line in body.split_inclusive(|&b| b == b'\n') {
            unstuffed.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        assert_eq!(unstuffed, message);
    }
}
