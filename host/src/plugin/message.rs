//! Parse-once message data behind the WIT `message` resource.
//!
//! The server hands the raw message in as `Arc<Vec<u8>>`; [`ParsedMessage`]
//! parses it once with mail-parser and keeps only what the resource methods
//! answer from: the top-level header fields (as offsets into the raw bytes
//! plus their unfolded values) and the MIME leaves (decoded bodies as ranges
//! of the raw bytes when nothing had to be decoded, owned bytes otherwise).
//! Every plugin of a transaction shares one `Arc<ParsedMessage>`; a call
//! copies into the guest only what the plugin asks for.

use std::ops::Range;
use std::sync::Arc;

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{Encoding, Message, MessageParser, MimeHeaders, PartType};

/// The largest slice `raw(offset, len)` returns in one call (1 MiB): a
/// plugin that wants more calls again.
pub const MAX_RAW_CHUNK: u32 = 1 << 20;

/// What the `message` resource points at: a shared handle, so pushing it
/// into a plugin's resource table copies no message data.
pub struct MessageHandle(pub Arc<ParsedMessage>);

/// One top-level header field.
#[derive(Debug, Clone)]
pub struct HeaderField {
    /// The name as written in the message.
    pub name: String,
    /// The name lower-cased, for case-insensitive look-ups.
    lower: String,
    /// Unfolded, leading white space removed, not RFC 2047-decoded.
    pub value: String,
}

/// Bytes that are either a slice of the raw message or decoded copies.
#[derive(Debug, Clone)]
enum Bytes {
    Raw(Range<usize>),
    Owned(Box<[u8]>),
}

/// One MIME leaf.
#[derive(Debug, Clone)]
pub struct Part {
    /// Lower-cased `type/subtype`.
    pub content_type: String,
    /// From Content-Disposition `filename` or Content-Type `name`.
    pub filename: Option<String>,
    /// Content-Disposition: attachment, or a non-text type with a file name.
    pub is_attachment: bool,
    /// The transfer-decoded body (base64 / quoted-printable undone).
    body: Bytes,
    /// For text parts: the body converted to UTF-8 from its charset.
    text: Option<Bytes>,
}

/// A message parsed once, shared by every plugin of a transaction.
#[derive(Debug)]
pub struct ParsedMessage {
    raw: Arc<Vec<u8>>,
    headers: Vec<HeaderField>,
    parts: Vec<Part>,
}

impl ParsedMessage {
    /// Parses `raw` (the message as received, CRLF or LF line ends).
    /// Never fails: unparseable input becomes a message without header
    /// fields and one `text/plain` part holding all the bytes.
    pub fn parse(raw: Arc<Vec<u8>>) -> ParsedMessage {
        let (headers, parts) = match MessageParser::new().parse(raw.as_slice()) {
            Some(msg) => {
                let headers = top_headers(&raw, &msg);
                let mut parts = Vec::new();
                collect_leaves(&raw, &msg, 0, &mut parts, 0);
                (headers, parts)
            }
            None => (Vec::new(), Vec::new()),
        };
        let parts = if parts.is_empty() {
            vec![Part {
                content_type: "text/plain".into(),
                filename: None,
                is_attachment: false,
                body: Bytes::Raw(0..raw.len()),
                text: Some(Bytes::Owned(
                    String::from_utf8_lossy(&raw).into_owned().into_bytes().into(),
                )),
            }]
        } else {
            parts
        };
        ParsedMessage { raw, headers, parts }
    }

    /// The raw bytes as received.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Every top-level header field, in order.
    pub fn headers(&self) -> &[HeaderField] {
        &self.headers
    }

    /// All values of header `name` (case-insensitive), in order.
    pub fn header(&self, name: &str) -> Vec<String> {
        let lower = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|h| h.lower == lower)
            .map(|h| h.value.clone())
            .collect()
    }

    /// The first value of header `name`, RFC 2047-decoded to UTF-8.
    pub fn header_decoded(&self, name: &str) -> Option<String> {
        let lower = name.to_ascii_lowercase();
        let field = self.headers.iter().find(|h| h.lower == lower)?;
        Some(decode_rfc2047(&field.value))
    }

    /// The MIME leaves, depth first.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The decoded body of part `index`.
    pub fn part_body(&self, index: u32) -> Option<&[u8]> {
        let part = self.parts.get(index as usize)?;
        Some(self.bytes(&part.body))
    }

    /// The UTF-8 text of part `index`, if it is a text part.
    pub fn part_text(&self, index: u32) -> Option<&str> {
        let part = self.parts.get(index as usize)?;
        let bytes = self.bytes(part.text.as_ref()?);
        // Built from `&str`s only; a failure here would be a host bug, and
        // "not text" is the honest answer then.
        std::str::from_utf8(bytes).ok()
    }

    /// The decoded size of part `index`'s body.
    pub fn part_size(&self, index: usize) -> u64 {
        self.parts
            .get(index)
            .map(|p| self.bytes(&p.body).len() as u64)
            .unwrap_or(0)
    }

    /// Raw bytes from `offset`, at most `min(len, MAX_RAW_CHUNK)`.
    pub fn raw_slice(&self, offset: u64, len: u32) -> &[u8] {
        let size = self.raw.len() as u64;
        let start = offset.min(size);
        let end = start.saturating_add(u64::from(len.min(MAX_RAW_CHUNK))).min(size);
        &self.raw[start as usize..end as usize]
    }

    fn bytes<'a>(&'a self, bytes: &'a Bytes) -> &'a [u8] {
        match bytes {
            Bytes::Raw(range) => &self.raw[range.clone()],
            Bytes::Owned(owned) => owned,
        }
    }
}

/// The header fields of the top-level entity, names as written, values
/// unfolded.
fn top_headers(raw: &[u8], msg: &Message<'_>) -> Vec<HeaderField> {
    let Some(root) = msg.parts.first() else {
        return Vec::new();
    };
    root.headers
        .iter()
        .filter_map(|h| {
            let field = raw.get(h.offset_field as usize..h.offset_start as usize)?;
            let value = raw.get(h.offset_start as usize..h.offset_end as usize)?;
            let name = String::from_utf8_lossy(field);
            let name = name.trim_end_matches(':').trim().to_string();
            if name.is_empty() {
                return None;
            }
            Some(HeaderField {
                lower: name.to_ascii_lowercase(),
                name,
                value: unfold(value),
            })
        })
        .collect()
}

/// Removes line breaks that precede white space (RFC 5322 unfolding), the
/// leading white space and the final line break.
fn unfold(value: &[u8]) -> String {
    // Inside one field every line break is followed by white space (or is
    // the final one), so dropping CR and LF is exactly unfolding.
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let mut bytes: Vec<u8> = value[start..]
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    while bytes.last().is_some_and(|&b| b == b' ' || b == b'\t') {
        bytes.pop();
    }
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// RFC 2047-decodes an unstructured header value.
fn decode_rfc2047(value: &str) -> String {
    let mut line = Vec::with_capacity(value.len() + 2);
    line.extend_from_slice(value.as_bytes());
    line.extend_from_slice(b"\r\n");
    let mut stream = mail_parser::parsers::MessageStream::new(&line);
    match stream.parse_unstructured() {
        mail_parser::HeaderValue::Text(text) => text.into_owned(),
        mail_parser::HeaderValue::TextList(list) => list.join(" "),
        _ => value.to_string(),
    }
}

/// Nesting limit for multipart trees (mail-parser has its own for encoded
/// nested messages; this one bounds our recursion).
const MAX_DEPTH: usize = 64;

/// Walks the MIME tree from part `id` depth first and appends its leaves.
fn collect_leaves(raw: &[u8], msg: &Message<'_>, id: usize, out: &mut Vec<Part>, depth: usize) {
    let Some(part) = msg.parts.get(id) else {
        return;
    };
    if let PartType::Multipart(children) = &part.body {
        if depth < MAX_DEPTH {
            for &child in children {
                collect_leaves(raw, msg, child as usize, out, depth + 1);
            }
        }
        return;
    }
    let content_type = part
        .content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        })
        .unwrap_or_else(|| match part.body {
            PartType::Message(_) => "message/rfc822".to_string(),
            _ => "text/plain".to_string(),
        })
        .to_ascii_lowercase();
    let filename = part.attachment_name().map(str::to_string);
    let disposition_attachment = part
        .content_disposition()
        .is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"));
    let is_text = content_type.starts_with("text/");
    let is_attachment = disposition_attachment || (!is_text && filename.is_some());

    let (body, text) = match &part.body {
        PartType::Text(text) | PartType::Html(text) => {
            let body = transfer_decoded(raw, part.encoding, part.offset_body, part.offset_end)
                .unwrap_or_else(|| Bytes::Owned(text.as_bytes().into()));
            (body, Some(slice_or_own(raw, text.as_bytes())))
        }
        PartType::Binary(bin) | PartType::InlineBinary(bin) => (slice_or_own(raw, bin), None),
        PartType::Message(nested) => (slice_or_own(raw, nested.raw_message()), None),
        PartType::Multipart(_) => return,
    };
    out.push(Part {
        content_type,
        filename,
        is_attachment,
        body,
        text,
    });
}

/// The body bytes of a part with its transfer encoding undone, in the
/// part's own charset (mail-parser only keeps the UTF-8 conversion of text).
fn transfer_decoded(raw: &[u8], encoding: Encoding, start: u32, end: u32) -> Option<Bytes> {
    let (start, end) = (start as usize, end as usize);
    let slice = raw.get(start..end)?;
    match encoding {
        Encoding::None => Some(Bytes::Raw(start..end)),
        Encoding::Base64 => base64_decode(slice).map(|v| Bytes::Owned(v.into())),
        Encoding::QuotedPrintable => quoted_printable_decode(slice).map(|v| Bytes::Owned(v.into())),
    }
}

/// A range of `raw` when `bytes` lies inside it (mail-parser borrowed it),
/// else an owned copy (mail-parser decoded it).
fn slice_or_own(raw: &[u8], bytes: &[u8]) -> Bytes {
    let base = raw.as_ptr() as usize;
    let start = bytes.as_ptr() as usize;
    if start >= base && start + bytes.len() <= base + raw.len() {
        let offset = start - base;
        Bytes::Raw(offset..offset + bytes.len())
    } else {
        Bytes::Owned(bytes.into())
    }
}

/// Names (lower-case) of the top-level header fields the host never trusts
/// from outside and always strips: `X-Spam-*` and `X-Poczta-Score`. A cheap
/// scan of the header block, so it runs even when no plugin parsed the
/// message.
pub fn untrusted_header_names(raw: &[u8]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon])
            .trim()
            .to_ascii_lowercase();
        if (name.starts_with("x-spam-") || name == "x-poczta-score") && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIME: &str = "From: =?utf-8?q?J=C3=B6rg?= <j@example.test>\r\n\
Subject: =?utf-8?b?WmHFvMOzxYLEhw==?=\r\n\
\x20continued\r\n\
X-Spam-Flag: YES\r\n\
x-poczta-score: 99\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=iso-8859-2\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Za=BF=F3=B3=E6\r\n\
--b1\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b1--\r\n";

    #[test]
    fn headers_are_unfolded_case_insensitive_and_decoded() {
        let msg = ParsedMessage::parse(Arc::new(MIME.as_bytes().to_vec()));
        assert_eq!(msg.headers()[0].name, "From");
        assert_eq!(
            msg.header("SUBJECT"),
            vec!["=?utf-8?b?WmHFvMOzxYLEhw==?= continued"]
        );
        assert_eq!(msg.header_decoded("subject").as_deref(), Some("Zażółć continued"));
        assert!(msg.header_decoded("from").unwrap().contains("Jörg"));
        assert!(msg.header("missing").is_empty());
        assert_eq!(msg.header_decoded("missing"), None);
    }

    #[test]
    fn parts_are_leaves_with_decoded_bodies() {
        let msg = ParsedMessage::parse(Arc::new(MIME.as_bytes().to_vec()));
        let parts = msg.parts();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_type, "text/plain");
        assert!(!parts[0].is_attachment);
        assert_eq!(msg.part_text(0).unwrap().trim_end(), "Zażółć");
        // part-body keeps the part's charset (ISO-8859-2), QP undone.
        assert_eq!(
            msg.part_body(0)
                .unwrap()
                .strip_suffix(b"\r\n")
                .unwrap_or(msg.part_body(0).unwrap()),
            b"Za\xbf\xf3\xb3\xe6"
        );
        assert_eq!(parts[1].content_type, "application/pdf");
        assert_eq!(parts[1].filename.as_deref(), Some("a.pdf"));
        assert!(parts[1].is_attachment);
        assert_eq!(msg.part_body(1).unwrap(), b"%PDF-1.4\n");
        assert_eq!(msg.part_size(1), 9);
        assert_eq!(msg.part_text(1), None);
        assert_eq!(msg.part_body(2), None);
    }

    #[test]
    fn raw_is_capped_and_clamped() {
        let msg = ParsedMessage::parse(Arc::new(MIME.as_bytes().to_vec()));
        assert_eq!(msg.raw_slice(0, 4), b"From");
        assert!(msg.raw_slice(10_000_000, 4).is_empty());
        assert_eq!(msg.raw_slice(0, u32::MAX).len(), MIME.len());
    }

    #[test]
    fn non_mime_message_is_one_text_part() {
        let msg = ParsedMessage::parse(Arc::new(b"Subject: hi\n\nhello\n".to_vec()));
        assert_eq!(msg.parts().len(), 1);
        assert_eq!(msg.parts()[0].content_type, "text/plain");
        assert_eq!(msg.part_text(0), Some("hello\n"));
    }

    #[test]
    fn untrusted_headers_found_in_header_block_only() {
        assert_eq!(
            untrusted_header_names(MIME.as_bytes()),
            vec!["x-spam-flag", "x-poczta-score"]
        );
        assert!(untrusted_header_names(b"Subject: a\r\n\r\nX-Spam-Flag: YES\r\n").is_empty());
    }
}
