//! The plugin's view of a message (filled from the host's `message`
//! resource, or from raw bytes in native tests) and the text helpers the
//! rules share: addresses, domains, dates, URLs and HTML.

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
    /// its tags removed.
    pub fn body_text(&self) -> String {
        let mut out = String::new();
        for p in self.parts.iter().filter(|p| !p.is_attachment) {
            match (&p.text, p.content_type.as_str()) {
                (Some(t), "text/html") => out.push_str(&strip_tags(t)),
                (Some(t), _) => out.push_str(t),
                _ => continue,
            }
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

/// URLs in plain text (`http://`, `https://`, `www.`).
pub fn text_links(text: &str) -> Vec<Link> {
    text.split(|c: char| c.is_whitespace() || "<>\"'()[]".contains(c))
        .filter(|w| {
            let l = w.to_lowercase();
            l.starts_with("http://") || l.starts_with("https://") || l.starts_with("www.")
        })
        .filter_map(url_host)
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
fn attr(tag: &str, name: &str) -> Option<String> {
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
    let mut out = String::with_capacity(html.len());
    // ASCII lower-casing keeps byte offsets equal to the original's.
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        let next = lower[i..].find('<').map(|e| i + e).unwrap_or(html.len());
        out.push_str(&html[i..next]);
        i = next;
        if i >= html.len() {
            break;
        }
        let skip_to = [("<style", "</style"), ("<script", "</script"), ("<!--", "-->")]
            .iter()
            .find(|(open, _)| lower[i..].starts_with(open))
            .map(|(_, close)| lower[i..].find(close).map(|e| i + e).unwrap_or(html.len()));
        if let Some(at) = skip_to {
            i = at;
            if lower[i..].starts_with("-->") {
                i += 3;
                continue;
            }
        }
        i = lower[i..].find('>').map(|e| i + e + 1).unwrap_or(html.len());
        out.push(' ');
    }
    out.replace("&nbsp;", " ")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
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
