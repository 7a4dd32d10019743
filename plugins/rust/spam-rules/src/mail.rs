//! The plugin's view of a message (filled from the host's `message`
//! resource, or from raw bytes in native tests) and the text helpers the
//! rules share: addresses, domains, dates, URLs and HTML.

use std::borrow::Cow;

use crate::mime;

/// One MIME leaf as the rules see it.
#[derive(Debug, Clone, Default)]
pub struct Part {
    /// Lower-cased `type/subtype`.
    pub content_type: String,
    /// The decoded text of a text part.
    pub text: Option<String>,
    /// Whether the part is an attachment.
    pub is_attachment: bool,
}

/// Everything the rules and the tokenizer look at.
#[derive(Debug, Clone, Default)]
pub struct MailView {
    /// Every header field, in order, unfolded, not RFC 2047-decoded.
    pub headers: Vec<(String, String)>,
    /// The decoded Subject.
    pub subject: Option<String>,
    /// The decoded From.
    pub from: Option<String>,
    /// The MIME leaves.
    pub parts: Vec<Part>,
    /// The raw message (at most the first MiB), for what the parsed view
    /// hides (transfer encodings).
    pub raw: Vec<u8>,
    /// The listener: `smtp` (MX) or `submission`.
    pub listener: String,
    /// Unix seconds now.
    pub now: u64,
}

impl MailView {
    /// Every value of header `name`, case-insensitive.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of `name`.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.header(name).into_iter().next()
    }

    /// Builds the view from raw bytes (native tests and tools; the plugin
    /// asks the host instead). No RFC 2047 or charset decoding.
    pub fn from_raw(raw: &[u8], listener: &str, now: u64) -> MailView {
        let (headers, _) = mime::split_header(raw);
        let subject = mime::field(&headers, "subject").map(str::to_owned);
        let from = mime::field(&headers, "from").map(str::to_owned);
        let parts = mime::leaves(raw)
            .into_iter()
            .map(|l| Part {
                text: l
                    .content_type
                    .starts_with("text/")
                    .then(|| String::from_utf8_lossy(&l.body).into_owned()),
                content_type: l.content_type,
                is_attachment: l.is_attachment,
            })
            .collect();
        MailView {
            headers,
            subject,
            from,
            parts,
            raw: raw.to_vec(),
            listener: listener.to_owned(),
            now,
        }
    }

    /// The text of the non-attachment text parts: plain as it is, HTML with
    /// its tags removed, each followed by a line break.
    pub fn body_text(&self) -> String {
        let mut out = String::new();
        for p in body_pieces(&self.parts) {
            out.push_str(&p.text);
            out.push('\n');
        }
        out
    }

    /// The HTML parts' sources.
    pub fn html_parts(&self) -> impl Iterator<Item = &str> {
        self.parts
            .iter()
            .filter(|p| !p.is_attachment && p.content_type == "text/html")
            .filter_map(|p| p.text.as_deref())
    }
}

/// A non-attachment text part as the body rules read it.
#[derive(Debug, Clone)]
pub struct Piece<'a> {
    /// The HTML source, for an HTML part.
    pub html: Option<&'a str>,
    /// The text: a plain part as it is, an HTML part without its tags.
    pub text: Cow<'a, str>,
}

/// The non-attachment text parts, HTML ones stripped of tags. Built once
/// per message so that the rules, the phrases and Bayes share one
/// [`strip_tags`] per HTML part. Takes the parts, not the view, so that the
/// other fields of a view can still be filled while the pieces live.
pub fn body_pieces(parts: &[Part]) -> Vec<Piece<'_>> {
    parts
        .iter()
        .filter(|p| !p.is_attachment)
        .filter_map(|p| {
            let t = p.text.as_deref()?;
            Some(if p.content_type == "text/html" {
                Piece {
                    html: Some(t),
                    text: Cow::Owned(strip_tags(t)),
                }
            } else {
                Piece {
                    html: None,
                    text: Cow::Borrowed(t),
                }
            })
        })
        .collect()
}

// ---------------------------------------------------------------- words

/// A byte class table for [`Words`]: `WORD` for the ASCII bytes that
/// belong to a word (letters, digits and `extra`), `WIDE` for the bytes
/// of other chars, 0 for ASCII separators.
const fn word_table(extra: &[u8]) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = if b >= 0x80 {
            WIDE
        } else if (b as u8).is_ascii_alphanumeric() {
            WORD
        } else {
            0
        };
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = WORD;
        i += 1;
    }
    t
}

const WORD: u8 = 1;
const WIDE: u8 = 2;

/// Word characters of the forbidden phrases: alphanumerics, `$`, `%`, `'`.
pub const PHRASE_WORD: [u8; 256] = word_table(b"$%'");
/// Word characters of the Bayes tokens: alphanumerics, `$`, `'`.
pub const TOKEN_WORD: [u8; 256] = word_table(b"$'");

/// The maximal runs of word characters of a text (ASCII ones per a table,
/// others when alphanumeric), each with whether it is all ASCII: what
/// `text.split(|c| !is_word(c)).filter(|w| !w.is_empty())` gives, without
/// decoding ASCII bytes as chars.
pub struct Words<'a> {
    text: &'a str,
    pos: usize,
    table: &'static [u8; 256],
}

impl<'a> Words<'a> {
    /// The words of `text` by `table` (e.g. [`PHRASE_WORD`]).
    pub fn new(text: &'a str, table: &'static [u8; 256]) -> Self {
        Words { text, pos: 0, table }
    }

    /// Whether the (non-ASCII) char at byte `i` is a word char, and its length.
    fn wide(&self, i: usize) -> (bool, usize) {
        let c = self.text[i..].chars().next().unwrap_or(' ');
        (c.is_alphanumeric(), c.len_utf8())
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = (&'a str, bool);

    // Inlined: called once a word, for a few bytes of work.
    #[inline(always)]
    fn next(&mut self) -> Option<(&'a str, bool)> {
        let b = self.text.as_bytes();
        let table = self.table;
        // ASCII runs cost one table look-up a byte; a non-ASCII byte stops
        // the run and its char is decoded.
        let mut i = self.pos;
        loop {
            i += b[i..]
                .iter()
                .position(|&c| table[c as usize] != 0)
                .unwrap_or(b.len() - i);
            if i >= b.len() {
                self.pos = i;
                return None;
            }
            if b[i] < 0x80 {
                break;
            }
            let (word, n) = self.wide(i);
            if word {
                break;
            }
            i += n;
        }
        let start = i;
        let mut ascii = true;
        loop {
            i += b[i..]
                .iter()
                .position(|&c| table[c as usize] != WORD)
                .unwrap_or(b.len() - i);
            if i >= b.len() || b[i] < 0x80 {
                break;
            }
            let (word, n) = self.wide(i);
            if !word {
                break;
            }
            ascii = false;
            i += n;
        }
        self.pos = i;
        Some((&self.text[start..i], ascii))
    }
}

/// Appends `w` lower-cased as `str::to_lowercase` does, without an
/// allocation unless `w` has a capital sigma.
pub fn push_lower(out: &mut String, w: &str, ascii: bool) {
    if ascii {
        let from = out.len();
        out.push_str(w);
        out[from..].make_ascii_lowercase();
    } else if w.contains('Σ') {
        // The one mapping that depends on the neighbours (final ς):
        // `str::to_lowercase` knows it, `char::to_lowercase` does not.
        out.push_str(&w.to_lowercase());
    } else {
        out.extend(w.chars().flat_map(char::to_lowercase));
    }
}

// ---------------------------------------------------------------- addresses

/// A parsed mailbox: display name and address.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mailbox {
    /// The display name, unquoted (may be empty).
    pub name: String,
    /// The address, lower-cased (may be empty when unparseable).
    pub address: String,
}

/// Parses the first mailbox of an address field: `Name <a@b>`, `a@b`, or
/// `a@b (Comment)`.
pub fn parse_mailbox(value: &str) -> Mailbox {
    let value = value.trim();
    if let Some(open) = value.rfind('<') {
        let close = value[open..].find('>').map(|i| open + i).unwrap_or(value.len());
        let name = value[..open].trim().trim_matches('"').trim().to_string();
        return Mailbox {
            name,
            address: value[open + 1..close].trim().to_lowercase(),
        };
    }
    let address = value.split_whitespace().next().unwrap_or("").to_lowercase();
    Mailbox {
        name: String::new(),
        address,
    }
}

/// The domain of an address, lower-cased.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

/// The organisational domain, approximated as the last two labels (three
/// when the second-level label is a common public suffix part like `co`).
pub fn org_domain(host: &str) -> String {
    let host = host.trim().trim_end_matches('.').to_lowercase();
    let labels: Vec<&str> = host.split('.').filter(|l| !l.is_empty()).collect();
    if labels.len() <= 2 {
        return labels.join(".");
    }
    let n = labels.len();
    let take = if matches!(labels[n - 2], "co" | "com" | "net" | "org" | "ac" | "gov" | "edu")
        && labels[n - 1].len() == 2
    {
        3
    } else {
        2
    };
    labels[n - take..].join(".")
}

/// Address-like tokens (`x@y.z`) in a text.
pub fn addresses_in(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || "<>()[]\"',;:".contains(c))
        .filter(|w| {
            let Some((l, d)) = w.split_once('@') else {
                return false;
            };
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        })
        .map(|w| w.to_lowercase())
        .collect()
}

/// Domain-like tokens (`paypal.com`, `www.bank.example`) in a text: labels
/// of letters, digits and hyphens, a last label of 2-24 letters.
pub fn domains_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '@'))
        .filter(|w| !w.contains('@'))
        .map(|w| w.trim_matches('.').to_lowercase())
        .filter(|w| {
            let labels: Vec<&str> = w.split('.').collect();
            labels.len() >= 2
                && labels.iter().all(|l| !l.is_empty())
                && labels.last().is_some_and(|t| {
                    (2..=24).contains(&t.len()) && t.chars().all(|c| c.is_ascii_alphabetic())
                })
        })
        .collect()
}

// ---------------------------------------------------------------- dates

/// Parses an RFC 5322 date-time (`Tue, 1 Jul 2003 10:52:37 +0200`, with
/// the obsolete zone names) into unix seconds.
pub fn parse_date(value: &str) -> Option<i64> {
    // Comments such as "(CEST)" are dropped.
    let cleaned: String = {
        let mut depth = 0;
        value
            .chars()
            .filter(|&c| {
                match c {
                    '(' => depth += 1,
                    ')' if depth > 0 => {
                        depth -= 1;
                        return false;
                    }
                    _ => {}
                }
                depth == 0
            })
            .collect()
    };
    let mut words: Vec<&str> = cleaned
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    if words
        .first()
        .is_some_and(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
    {
        words.remove(0);
    }
    if words.len() < 4 {
        return None;
    }
    let day: i64 = words[0].parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| words[1].to_lowercase().starts_with(m))? as i64
        + 1;
    let mut year: i64 = words[2].parse().ok()?;
    if words[2].len() <= 2 {
        year += if year < 50 { 2000 } else { 1900 };
    }
    let hms: Vec<i64> = words[3]
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<i64>>>()?;
    let (h, m, s) = match hms.as_slice() {
        [h, m] => (*h, *m, 0),
        [h, m, s] => (*h, *m, *s),
        _ => return None,
    };
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let zone = words.get(4).copied().unwrap_or("+0000");
    let offset = zone_offset(zone)?;
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + s - offset)
}

fn zone_offset(zone: &str) -> Option<i64> {
    let z = zone.to_uppercase();
    if let Some(sign) = z
        .strip_prefix('+')
        .map(|r| (1, r))
        .or(z.strip_prefix('-').map(|r| (-1, r)))
    {
        let (sign, digits) = sign;
        if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let hh: i64 = digits[..2].parse().ok()?;
        let mm: i64 = digits[2..].parse().ok()?;
        return Some(sign * (hh * 3600 + mm * 60));
    }
    Some(match z.as_str() {
        "UT" | "GMT" | "Z" | "UTC" => 0,
        "EDT" => -4 * 3600,
        "EST" | "CDT" => -5 * 3600,
        "CST" | "MDT" => -6 * 3600,
        "MST" | "PDT" => -7 * 3600,
        "PST" => -8 * 3600,
        // RFC 5322 §4.3: other alphabetic zones are treated as +0000.
        _ if z.chars().all(|c| c.is_ascii_alphabetic()) => 0,
        _ => return None,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

// ---------------------------------------------------------------- URLs and HTML

/// A link found in a body.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The URL's host, lower-cased (no port, no user info).
    pub host: String,
    /// For an HTML anchor, its visible text.
    pub text: Option<String>,
}

/// The host of a URL (`http://user@host:port/path` → `host`).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .or_else(|| url.strip_prefix("www.").map(|_| url))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit('@').next()?;
    let host = if hostport.starts_with('[') {
        hostport.split(']').next()?.trim_start_matches('[')
    } else {
        hostport.split(':').next()?
    };
    let host = host.trim_end_matches('.').to_lowercase();
    (!host.is_empty()).then_some(host)
}

/// What ends a word that may be a URL.
fn is_link_sep(c: char) -> bool {
    c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '(' | ')' | '[' | ']')
}

/// URLs in plain text (`http://`, `https://`, `www.`): the words (split at
/// white space and `<>"'()[]`) that start so, case-insensitively.
///
/// Only the places where `://` or `.` occurs can start such a word, so the
/// text is searched for those instead of lower-casing every word. ASCII
/// case folding is exact here: no other char lower-cases to any of
/// `htps:/w.` (see the test `unicode_lowercase_into_ascii`).
pub fn text_links(text: &str) -> Vec<Link> {
    let b = text.as_bytes();
    let mut starts: Vec<usize> = Vec::new();
    for p in memchr::memmem::find_iter(b, b"://") {
        if p >= 5 && b[p - 5..p].eq_ignore_ascii_case(b"https") {
            starts.push(p - 5);
        } else if p >= 4 && b[p - 4..p].eq_ignore_ascii_case(b"http") {
            starts.push(p - 4);
        }
    }
    for q in memchr::memchr_iter(b'.', b) {
        if q >= 3 && b[q - 3..q].eq_ignore_ascii_case(b"www") {
            starts.push(q - 3);
        }
    }
    starts.sort_unstable();
    starts.dedup();
    starts
        .into_iter()
        .filter(|&s| text[..s].chars().next_back().is_none_or(is_link_sep))
        .filter_map(|s| {
            let end = text[s..].find(is_link_sep).map_or(text.len(), |e| s + e);
            url_host(&text[s..end])
        })
        .map(|host| Link { host, text: None })
        .collect()
}

/// Anchors (`<a href="…">text</a>`) in HTML.
pub fn html_links(html: &str) -> Vec<Link> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(i) = lower[pos..].find("<a") {
        let start = pos + i;
        let Some(tag_end) = lower[start..].find('>').map(|e| start + e) else {
            break;
        };
        let tag = &html[start..tag_end];
        pos = tag_end + 1;
        let Some(href) = attr(tag, "href") else {
            continue;
        };
        let close = lower[pos..].find("</a").map(|e| pos + e).unwrap_or(lower.len());
        let text = strip_tags(&html[pos..close]).trim().to_string();
        if let Some(host) = url_host(&href) {
            out.push(Link {
                host,
                text: Some(text),
            });
        }
    }
    out
}

/// An attribute's value in a tag (quoted or bare).
pub(crate) fn attr(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let before_ok = at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace();
        let rest = lower[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let value_start = tag.len() - rest.len() + 1;
        let v = tag[value_start..].trim_start();
        return Some(match v.chars().next() {
            Some(q @ ('"' | '\'')) => v[1..].split(q).next().unwrap_or("").to_string(),
            _ => v
                .split(|c: char| c.is_whitespace() || c == '>')
                .next()
                .unwrap_or("")
                .to_string(),
        });
    }
    None
}

/// HTML without tags, `<style>`/`<script>` content and comments, with the
/// common entities decoded.
pub fn strip_tags(html: &str) -> String {
    let b = html.as_bytes();
    let len = b.len();
    let mut out = String::with_capacity(len);
    let mut i = 0;
    while i < len {
        let next = memchr::memchr(b'<', &b[i..]).map_or(len, |e| i + e);
        out.push_str(&html[i..next]);
        i = next;
        if i >= len {
            break;
        }
        let skip_to = [
            (&b"<style"[..], &b"</style"[..]),
            (b"<script", b"</script"),
            (b"<!--", b"-->"),
        ]
        .iter()
        .find(|(open, _)| starts_with_ci(&b[i..], open))
        .map(|(_, close)| find_ci(&b[i..], close).map_or(len, |e| i + e));
        if let Some(at) = skip_to {
            i = at;
            if b[i..].starts_with(b"-->") {
                i += 3;
                continue;
            }
        }
        i = memchr::memchr(b'>', &b[i..]).map_or(len, |e| i + e + 1);
        out.push(' ');
    }
    if out.contains('&') {
        decode_entities(&out)
    } else {
        out
    }
}

fn starts_with_ci(hay: &[u8], lower: &[u8]) -> bool {
    hay.len() >= lower.len() && hay[..lower.len()].eq_ignore_ascii_case(lower)
}

/// The first place of an ASCII-lower-case needle in `hay`, ignoring ASCII
/// case (what `to_ascii_lowercase` and `find` give, without the copy).
fn find_ci(hay: &[u8], lower: &[u8]) -> Option<usize> {
    let (&first, rest) = lower.split_first()?;
    let mut from = 0;
    while let Some(i) = memchr::memchr2(first, first.to_ascii_uppercase(), &hay[from..]) {
        let at = from + i;
        if starts_with_ci(&hay[at + 1..], rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// `&nbsp;`, `&amp;`, `&lt;`, `&gt;` and `&quot;` decoded in one pass, with
/// the result of replacing them one after the other in that order: the `&`
/// of an `&amp;` starts the `&lt;`, `&gt;` or `&quot;` that follows it, but
/// nothing else.
fn decode_entities(s: &str) -> String {
    const LATER: [(&str, char); 3] = [("lt;", '<'), ("gt;", '>'), ("quot;", '"')];
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let entity = [
            ("&nbsp;", ' '),
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
        ]
        .into_iter()
        .find(|(e, _)| rest.starts_with(e));
        match entity {
            Some(("&amp;", _)) => {
                rest = &rest[5..];
                match LATER.into_iter().find(|(e, _)| rest.starts_with(e)) {
                    Some((e, c)) => {
                        out.push(c);
                        rest = &rest[e.len()..];
                    }
                    None => out.push('&'),
                }
            }
            Some((e, c)) => {
                out.push(c);
                rest = &rest[e.len()..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether a host is an IP literal (dotted IPv4, an IPv6 literal, or the
/// all-digits / hex integer forms browsers accept).
pub fn is_ip_host(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
        || (!host.is_empty() && host.chars().all(|c| c.is_ascii_digit()) && host.len() >= 8)
        || (host.starts_with("0x") && host.len() > 2 && host[2..].chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes() {
        assert_eq!(
            parse_mailbox("\"PayPal\" <Service@PayPal.com>"),
            Mailbox {
                name: "PayPal".into(),
                address: "service@paypal.com".into()
            }
        );
        assert_eq!(parse_mailbox("a@b.test (Alice)").address, "a@b.test");
        assert_eq!(domain_of("x@Mail.b.test"), "Mail.b.test");
        assert_eq!(org_domain("mail.news.example.com"), "example.com");
        assert_eq!(org_domain("shop.example.co.uk"), "example.co.uk");
        assert_eq!(addresses_in("support@bank.com via x"), ["support@bank.com"]);
        assert_eq!(domains_in("PayPal.com Security Team"), ["paypal.com"]);
        assert!(domains_in("Dr. Smith, v1.2").is_empty());
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 +0000"), Some(0));
        assert_eq!(parse_date("1 Jan 1970 01:00 +0100"), Some(0));
        assert_eq!(parse_date("Tue, 1 Jul 2003 10:52:37 +0200"), Some(1057049557));
        assert_eq!(
            parse_date("Sat, 01 Mar 2025 12:00:00 GMT (UTC)"),
            Some(1740830400)
        );
        assert_eq!(parse_date("Fri, 31 Dec 99 23:59:59 EST"), Some(946702799));
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(parse_date("Mon, 32 Jan 2024 10:00:00 +0000"), None);
    }

    #[test]
    fn urls_and_html() {
        assert_eq!(
            url_host("https://user@Example.com:8080/x?y").as_deref(),
            Some("example.com")
        );
        assert_eq!(url_host("http://[2001:db8::1]/").as_deref(), Some("2001:db8::1"));
        assert_eq!(url_host("www.shop.test/a").as_deref(), Some("www.shop.test"));
        let l = text_links("see https://a.test/x and (www.b.test) or http://192.0.2.7/login");
        assert_eq!(
            l.iter().map(|l| l.host.as_str()).collect::<Vec<_>>(),
            ["a.test", "www.b.test", "192.0.2.7"]
        );
        let l = html_links(
            "<p><A class=x HREF='http://evil.test/pp'>www.paypal.com</A> <a href=http://ok.test>here</a>",
        );
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].host.as_str(), l[0].text.as_deref()),
            ("evil.test", Some("www.paypal.com"))
        );
        assert_eq!(l[1].host, "ok.test");
        assert_eq!(
            strip_tags("<style>p{}</style><p>Hi&nbsp;<b>you</b></p><!-- x -->")
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["Hi", "you"]
        );
        assert!(
            is_ip_host("192.0.2.1")
                && is_ip_host("::1")
                && is_ip_host("3232235777")
                && is_ip_host("0xc0a80001")
        );
        assert!(!is_ip_host("example.com") && !is_ip_host("2024"));
    }
}
