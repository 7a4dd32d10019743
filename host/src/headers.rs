//! Header edits on raw message bytes: removing fields by name and
//! prepending new ones, leaving every other byte as received.

/// Removes every header field whose name is in `remove` (ASCII
/// case-insensitive, with its folded continuation lines) and prepends
/// `add` (in order). The body and all other fields are untouched. A message
/// without a header/body separator is treated as all header.
pub fn edit(raw: &[u8], remove: &[String], add: &[(String, String)]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(raw.len() + add.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>());
    for (name, value) in add {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if remove.is_empty() {
        out.extend_from_slice(raw);
        return out;
    }
    let mut pos = 0;
    let mut skipping = false;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        if line == b"\r\n" || line == b"\n" {
            // The separator: the rest is the body.
            out.extend_from_slice(&raw[pos..]);
            return out;
        }
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if !continuation {
            skipping = line
                .iter()
                .position(|&b| b == b':')
                .map(|colon| {
                    let name = trim_ascii(&line[..colon]);
                    remove.iter().any(|r| r.as_bytes().eq_ignore_ascii_case(name))
                })
                .unwrap_or(false);
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        pos = end;
    }
    out
}

/// The `Message-ID` and `Date` fields a submitted message lacks (RFC 6409
/// §8.3), to prepend: the id is `<queue id>.<time>@<hostname>`.
pub fn missing_submission_headers(
    raw: &[u8],
    queue_id: &str,
    hostname: &str,
    now: i64,
) -> Vec<(String, String)> {
    let mut has_id = false;
    let mut has_date = false;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = trim_ascii(&line[..colon]);
            has_id |= name.eq_ignore_ascii_case(b"message-id");
            has_date |= name.eq_ignore_ascii_case(b"date");
        }
    }
    let mut add = Vec::new();
    if !has_id {
        add.push(("Message-ID".to_owned(), format!("<{queue_id}.{now}@{hostname}>")));
    }
    if !has_date {
        add.push(("Date".to_owned(), crate::smtp::received::rfc5322_date(now)));
    }
    add
}

/// The addresses of the `From:` field(s), lower-cased (none when absent
/// or unparsable: a missing From is the MUA's business, not a forgery).
pub fn from_addresses(raw: &[u8]) -> Vec<String> {
    let Some(message) = mail_parser::MessageParser::default().parse_headers(raw) else {
        return Vec::new();
    };
    message
        .from()
        .map(|list| {
            list.iter()
                .filter_map(|a| a.address())
                .map(str::to_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// Whether a header name and value are safe to write: a field name of
/// printable ASCII without colon, a value without CR, LF or other control
/// characters except TAB.
pub fn is_valid_field(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.len() <= 76
        && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
        && value.len() <= 8192
        && value.chars().all(|c| c == '\t' || !c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_header_addresses() {
        assert_eq!(
            from_addresses(b"From: \"Alice A\" <Alice@Example.test>, bob@example.test\r\nTo: x@y\r\n\r\nFrom: not@this\r\n"),
            vec!["alice@example.test".to_string(), "bob@example.test".to_string()]
        );
        assert!(from_addresses(b"Subject: none\r\n\r\n").is_empty());
    }

    #[test]
    fn submission_headers_only_when_missing() {
        let both = b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nmessage-ID: <x@y>\r\n\r\nDate: in body\r\n";
        assert!(missing_submission_headers(both, "Q", "h.test", 0).is_empty());
        let none = b"Subject: hi\r\n\r\nMessage-ID: <in body>\r\n";
        let add = missing_submission_headers(none, "Q", "h.test", 0);
        assert_eq!(add[0], ("Message-ID".into(), "<Q.0@h.test>".into()));
        assert_eq!(add[1].0, "Date");
    }

    #[test]
    fn removes_folded_fields_and_prepends() {
        let raw = b"X-Spam-Flag: YES\r\nSubject: hi\r\nX-Spam-Score: 9\r\n\tcontinued\r\nFrom: a@b\r\n\r\nX-Spam-Flag: body stays\r\n";
        let out = edit(
            raw,
            &["x-spam-flag".into(), "X-SPAM-SCORE".into()],
            &[("X-Poczta-Score".into(), "1.0".into())],
        );
        assert_eq!(
            out,
            b"X-Poczta-Score: 1.0\r\nSubject: hi\r\nFrom: a@b\r\n\r\nX-Spam-Flag: body stays\r\n".to_vec()
        );
    }

    #[test]
    fn untouched_without_edits_and_bare_lf_kept() {
        let raw = b"A: 1\nB: 2\n\nbody\n";
        assert_eq!(edit(raw, &[], &[]), raw.to_vec());
        assert_eq!(edit(raw, &["a".into()], &[]), b"B: 2\n\nbody\n".to_vec());
    }

    #[test]
    fn field_validation() {
        assert!(is_valid_field("X-Ok", "fine\tvalue"));
        assert!(!is_valid_field("X-Bad", "inject\r\nBcc: x"));
        assert!(!is_valid_field("X Bad", "v"));
        assert!(!is_valid_field("X:Bad", "v"));
        assert!(!is_valid_field("", "v"));
    }
}
