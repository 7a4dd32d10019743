//! A small raw MIME walker: header fields, multipart splitting and the
//! base64 / quoted-printable decoders. The host parses messages for the
//! plugin (and decodes charsets and RFC 2047 words); this walker is for what
//! the host's view hides — the transfer encoding of a part — and for
//! building a [`crate::mail::MailView`] from an `.eml` file in native tests.

/// One MIME entity: its header fields and its leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// Lower-cased `type/subtype` (`text/plain` when absent).
    pub content_type: String,
    /// Lower-cased `Content-Transfer-Encoding` (`7bit` when absent).
    pub encoding: String,
    /// Whether Content-Disposition says attachment or a file name is given.
    pub is_attachment: bool,
    /// The body, transfer-decoded.
    pub body: Vec<u8>,
}

/// Most nested multiparts followed (a bomb of nested parts ends here).
const MAX_DEPTH: usize = 8;
/// Most leaves collected.
const MAX_LEAVES: usize = 64;

/// Splits `raw` into its header fields (unfolded, in order) and its body.
pub fn split_header(raw: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let (head, body) = match find(raw, b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match find(raw, b"\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => (raw, &raw[raw.len()..]),
        },
    };
    let text = String::from_utf8_lossy(head);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((n, v)) = line.split_once(':') {
            fields.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    (fields, body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// The first value of `name` (case-insensitive).
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A parameter of a structured field value (`boundary`, `charset`, `name`).
pub fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// A MIME leaf before transfer decoding, borrowing the message.
#[derive(Debug, Clone, PartialEq)]
pub struct RawLeaf<'a> {
    /// Lower-cased `type/subtype` (`text/plain` when absent).
    pub content_type: String,
    /// Lower-cased `Content-Transfer-Encoding` (`7bit` when absent).
    pub encoding: String,
    /// Whether Content-Disposition says attachment or a file name is given.
    pub is_attachment: bool,
    /// The body as it is in the message.
    pub body: &'a [u8],
}

impl RawLeaf<'_> {
    /// The body, transfer-decoded.
    pub fn decode(&self) -> Vec<u8> {
        match self.encoding.as_str() {
            "base64" => base64_decode(self.body),
            "quoted-printable" => qp_decode(self.body),
            _ => self.body.to_vec(),
        }
    }
}

/// The leaves of the MIME tree of a whole message, depth first.
pub fn leaves(raw: &[u8]) -> Vec<Leaf> {
    let mut out = Vec::new();
    walk_leaves(raw, |l| {
        out.push(Leaf {
            body: l.decode(),
            content_type: l.content_type,
            encoding: l.encoding,
            is_attachment: l.is_attachment,
        });
        true
    });
    out
}

/// Calls `visit` with each leaf, depth first, undecoded (a rule that
/// looks at one kind of part decodes only those), until it returns false.
pub fn walk_leaves<'a>(raw: &'a [u8], mut visit: impl FnMut(RawLeaf<'a>) -> bool) {
    let mut count = 0;
    walk(raw, 0, &mut count, &mut visit);
}

/// Returns false once the walk is to stop.
fn walk<'a>(
    entity: &'a [u8],
    depth: usize,
    count: &mut usize,
    visit: &mut impl FnMut(RawLeaf<'a>) -> bool,
) -> bool {
    if *count >= MAX_LEAVES {
        return false;
    }
    let (fields, body) = split_header(entity);
    let ct_value = field(&fields, "content-type").unwrap_or("text/plain");
    let content_type = ct_value.split(';').next().unwrap_or("").trim().to_lowercase();
    if content_type.starts_with("multipart/") && depth < MAX_DEPTH {
        if let Some(boundary) = param(ct_value, "boundary").filter(|b| !b.is_empty()) {
            for part in split_multipart(body, &boundary) {
                if !walk(part, depth + 1, count, visit) {
                    return false;
                }
            }
            return true;
        }
    }
    let encoding = field(&fields, "content-transfer-encoding")
        .unwrap_or("7bit")
        .trim()
        .to_lowercase();
    let disposition = field(&fields, "content-disposition").unwrap_or("");
    let is_attachment = disposition.trim().to_lowercase().starts_with("attachment")
        || param(disposition, "filename").is_some()
        || param(ct_value, "name").is_some();
    *count += 1;
    visit(RawLeaf {
        content_type: if content_type.is_empty() {
            "text/plain".into()
        } else {
            content_type
        },
        encoding,
        is_attachment,
        body,
    })
}

/// The parts between `--boundary` lines (preamble and epilogue dropped).
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    while pos < body.len() {
        let end = memchr::memchr(b'\n', &body[pos..])
            .map(|i| pos + i + 1)
            .unwrap_or(body.len());
        let line = &body[pos..end];
        let trimmed = trim_eol(line);
        if trimmed.starts_with(delim.as_bytes()) {
            if let Some(s) = start {
                // The line break before the delimiter belongs to it.
                let mut e = pos;
                if e > s && body[e - 1] == b'\n' {
                    e -= 1;
                }
                if e > s && body[e - 1] == b'\r' {
                    e -= 1;
                }
                parts.push(&body[s..e]);
            }
            if trimmed[delim.len()..].starts_with(b"--") {
                return parts;
            }
            start = Some(end);
        }
        pos = end;
    }
    if let Some(s) = start {
        parts.push(&body[s..]);
    }
    parts
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\r' | b'\n' | b' ' | b'\t'] = l {
        l = rest;
    }
    l
}

/// Decodes base64, skipping anything outside the alphabet.
pub fn base64_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Decodes quoted-printable (soft line breaks removed).
pub fn qp_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'=' {
            let rest = &input[i + 1..];
            if rest.starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if rest.starts_with(b"\n") {
                i += 2;
                continue;
            }
            if rest.len() >= 2 {
                if let (Some(h), Some(l)) = (hex(rest[0]), hex(rest[1])) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders() {
        assert_eq!(base64_decode(b"SGVsbG8s\r\nIHdvcmxkIQ=="), b"Hello, world!");
        assert_eq!(qp_decode(b"caf=C3=A9 =\r\nend=3D"), "café end=".as_bytes());
    }

    #[test]
    fn header_unfolding_and_params() {
        let (f, body) = split_header(
            b"Subject: a\r\n b\r\nContent-Type: multipart/mixed;\r\n\tboundary=\"XX\"\r\n\r\nbody",
        );
        assert_eq!(field(&f, "subject"), Some("a b"));
        assert_eq!(
            param(field(&f, "content-type").unwrap(), "boundary").as_deref(),
            Some("XX")
        );
        assert_eq!(body, b"body");
    }

    #[test]
    fn multipart_leaves() {
        let raw = b"Content-Type: multipart/mixed; boundary=b1\r\n\r\npreamble\r\n--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n--b2\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b2\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b2--\r\n--b1\r\nContent-Type: application/pdf; name=x.pdf\r\n\r\n%PDF\r\n--b1--\r\n";
        let l = leaves(raw);
        assert_eq!(l.len(), 3);
        assert_eq!(
            (l[0].content_type.as_str(), l[0].encoding.as_str()),
            ("text/plain", "base64")
        );
        assert_eq!(l[0].body, b"hello");
        assert_eq!(l[1].body, b"<p>hi</p>");
        assert!(l[2].is_attachment && !l[1].is_attachment);
    }
}
