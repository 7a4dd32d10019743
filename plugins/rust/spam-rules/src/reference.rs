//! The rules as they were before they were made cheap, verbatim but for
//! paths: the oracle that the differential tests compare the new code with,
//! and the "before" of `measure_rule_cost`. Test-only.

use std::collections::BTreeSet;

use crate::mail::{self, Link, MailView};
use crate::mime;
use crate::rules::{Hit, Limits};

fn hit(symbol: &'static str, description: impl Into<String>) -> Hit {
    Hit {
        symbol,
        description: description.into(),
        count: 1,
    }
}

/// The old `MailView::body_text`.
pub fn body_text(m: &MailView) -> String {
    let mut out = String::new();
    for p in m.parts.iter().filter(|p| !p.is_attachment) {
        match (&p.text, p.content_type.as_str()) {
            (Some(t), "text/html") => out.push_str(&strip_tags(t)),
            (Some(t), _) => out.push_str(t),
            _ => continue,
        }
        out.push('\n');
    }
    out
}

/// The body rules (the forbidden phrases are separate: [`phrase_hits`]).
pub fn body_rules(m: &MailView, limits: &Limits) -> Vec<Hit> {
    let mut hits = Vec::new();
    let leaves: Vec<_> = m.parts.iter().filter(|p| !p.is_attachment).collect();
    let has_html = leaves.iter().any(|p| p.content_type == "text/html");
    let has_plain = leaves.iter().any(|p| p.content_type == "text/plain");
    if has_html && !has_plain {
        hits.push(hit("MIME_HTML_ONLY", "HTML without a text/plain alternative"));
    }
    if let Some(how) = m.html_parts().find_map(hidden_text) {
        hits.push(hit("HTML_HIDDEN_TEXT", format!("HTML hides text ({how})")));
    }
    url_rules(m, limits, &mut hits);
    if base64_text_without_reason(&m.raw) {
        hits.push(hit(
            "TEXT_B64_NO_REASON",
            "text/plain part base64-encoded though it is plain ASCII",
        ));
    }
    hits
}

/// How an HTML part hides text, if it does: `display:none`,
/// `visibility:hidden`, a zero or one pixel font, or white text on a page
/// that sets no dark background.
pub fn hidden_text(html: &str) -> Option<&'static str> {
    let squeezed: String = html
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    // Only the squeezing changed; the checks on its result are shared.
    crate::rules::hidden_in_squeezed(&squeezed.replace(['"', '\''], ""))
}

fn url_rules(m: &MailView, limits: &Limits, hits: &mut Vec<Hit>) {
    let mut links = Vec::new();
    for p in m.parts.iter().filter(|p| !p.is_attachment) {
        let Some(t) = &p.text else { continue };
        if p.content_type == "text/html" {
            links.extend(html_links(t));
            links.extend(text_links(&strip_tags(t)));
        } else {
            links.extend(text_links(t));
        }
    }
    let hosts: BTreeSet<&str> = links.iter().map(|l| l.host.as_str()).collect();
    if hosts.len() > limits.many_urls {
        // Distinct hosts: one newsletter links its own site many times.
        hits.push(hit(
            "MANY_URLS",
            format!(
                "{} distinct link hosts (more than {})",
                hosts.len(),
                limits.many_urls
            ),
        ));
    }
    if let Some(ip) = hosts.iter().find(|h| mail::is_ip_host(h)) {
        hits.push(hit("URL_IP_HOST", format!("link to an IP address ({ip})")));
    }
    for l in &links {
        let Some(text) = &l.text else { continue };
        let shown = text_links(text)
            .into_iter()
            .map(|t| t.host)
            .chain(mail::domains_in(text))
            .find(|d| mail::org_domain(d) != mail::org_domain(&l.host));
        if let Some(shown) = shown {
            hits.push(hit(
                "HTML_LINK_TEXT_MISMATCH",
                format!("link text shows {shown}, goes to {}", l.host),
            ));
            break;
        }
    }
}

/// Whether a text/plain part is base64-encoded although its content is
/// short-lined 7-bit text, which a mail program would send as it is.
pub fn base64_text_without_reason(raw: &[u8]) -> bool {
    mime::leaves(raw).iter().any(|l| {
        l.content_type == "text/plain"
            && !l.is_attachment
            && l.encoding == "base64"
            && !l.body.is_empty()
            && l.body
                .iter()
                .all(|&b| b == b'\t' || b == b'\r' || b == b'\n' || (32..127).contains(&b))
            && l.body.split(|&b| b == b'\n').all(|line| line.len() <= 998)
    })
}

/// Lower-case words separated by single spaces, with a space at each end,
/// so a phrase matches on word boundaries with `contains(" phrase ")`.
pub fn word_text(text: &str) -> String {
    let mut out = String::from(" ");
    for w in text
        .split(|c: char| !(c.is_alphanumeric() || c == '$' || c == '%' || c == '\''))
        .filter(|w| !w.is_empty())
    {
        out.push_str(&w.to_lowercase());
        out.push(' ');
    }
    out
}

/// The forbidden phrases present in `text` (each once, in list order).
pub fn phrase_hits<'a>(text: &str, phrases: &'a [String]) -> Vec<&'a str> {
    let hay = word_text(text);
    phrases
        .iter()
        .filter(|p| {
            let needle = word_text(p);
            needle.trim().len() > 1 && hay.contains(&needle)
        })
        .map(String::as_str)
        .collect()
}

/// URLs in plain text (`http://`, `https://`, `www.`).
pub fn text_links(text: &str) -> Vec<Link> {
    text.split(|c: char| c.is_whitespace() || "<>\"'()[]".contains(c))
        .filter(|w| {
            let l = w.to_lowercase();
            l.starts_with("http://") || l.starts_with("https://") || l.starts_with("www.")
        })
        .filter_map(mail::url_host)
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
        let Some(href) = mail::attr(tag, "href") else {
            continue;
        };
        let close = lower[pos..].find("</a").map(|e| pos + e).unwrap_or(lower.len());
        let text = strip_tags(&html[pos..close]).trim().to_string();
        if let Some(host) = mail::url_host(&href) {
            out.push(Link {
                host,
                text: Some(text),
            });
        }
    }
    out
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

fn push_words(out: &mut BTreeSet<String>, prefix: &str, text: &str) {
    for w in text
        .split(|c: char| !(c.is_alphanumeric() || c == '$' || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| (3..=20).contains(&w.chars().count()))
    {
        if out.len() >= crate::bayes::MAX_TOKENS {
            return;
        }
        out.insert(format!("{prefix}{}", w.to_lowercase()));
    }
}

/// The tokens of a message: lower-cased words of the subject (`s:`) and
/// body, link hosts and their organisational domains (`url:`), and a few
/// header tokens (From domain, Reply-To domain, mail program, top-level
/// content type, the presence of HTML).
pub fn tokenize(m: &MailView) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // The header part is shared; the old word splitter is what it is given.
    crate::bayes::header_tokens(m, &mut out, push_words);
    for p in m.parts.iter().filter(|p| !p.is_attachment) {
        let Some(t) = &p.text else { continue };
        let links = if p.content_type == "text/html" {
            html_links(t)
        } else {
            text_links(t)
        };
        for l in links {
            out.insert(format!("url:{}", mail::org_domain(&l.host)));
            out.insert(format!("url:{}", l.host));
        }
    }
    push_words(&mut out, "", &body_text(m));
    out
}

/// The new code against the old, on the sample messages and on random
/// text made of the pieces the rules care about.
#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{bayes, rules};

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    const WORDS: &[&str] = &[
        "act",
        "ACT",
        "Now",
        "now",
        "wire",
        "Transfer",
        "transfer",
        "100",
        "%",
        "100%",
        "free",
        "FREE",
        "viagra",
        "Viagra",
        "casino",
        "bonus",
        "a",
        "I",
        "it's",
        "'quoted'",
        "$$$",
        "$100",
        "you",
        "have",
        "been",
        "selected",
        "zażółć",
        "ZAŻÓŁĆ",
        "gęślą",
        "Straße",
        "STRASSE",
        "ΣΊΣΥΦΟΣ",
        "σίσυφος",
        "ΣΑΣ",
        "Σ",
        "İstanbul",
        "istanbul",
        "i\u{307}stanbul",
        "\u{212A}ing",
        "king",
        "KING",
        "naïve",
        "NAÏVE",
        "東京",
        "x1",
        "ǅ",
        "ﬁ",
        "ΐ",
    ];
    const SEPARATORS: &[&str] = &[
        " ", " ", " ", "  ", "\n", "\r\n", "-", ".", ". ", "!", "?", ", ", "\t", "\u{a0}", "\u{2003}", "/",
        "\"", "(", ")", "<", ">", "[", "]", "'", "\u{b}",
    ];
    const LINKS: &[&str] = &[
        "http://a.test/x",
        "HTTPS://B.Test:8080/y?z",
        "www.c.test",
        "WWW.D.test/p",
        "xhttp://e.test",
        "wwww.f.test",
        "http://[2001:db8::1]/",
        "https://user@g.test",
        "http://",
        "www.",
        "http://198.51.100.7/login",
        "hTtP://h.test",
        "ftp://i.test",
        "://j.test",
        "see:http://k.test",
    ];
    const HTML: &[&str] = &[
        "<p>",
        "</p>",
        "<a href='http://evil.test/pp'>",
        "<A HREF=\"https://www.a.test/\">",
        "www.paypal.com",
        "</a>",
        "</A >",
        "<style>p{color:#fff;}</style>",
        "<STYLE type=x>.a{display: none}</Style>",
        "<script>var a = '<b>';</script>",
        "<!-- comment <b> -->",
        "<!-->",
        "<!--",
        "-->",
        "&nbsp;",
        "&amp;",
        "&amp;lt;",
        "&amp;amp;lt;",
        "&lt;",
        "&gt;",
        "&quot;",
        "&amp;quot;",
        "&amp;nbsp;",
        "&",
        "&lt",
        "<font color=white>",
        "<td bgcolor=#000>",
        "<span style='font-size: 0.9em'>",
        "<span style=\"font-size:0px\">",
        "<div style=\"VISIBILITY: hidden\">",
        "background-color:#ffffff",
        "color: #FFF;",
        "<body style='background:black'>",
        "<",
        ">",
    ];

    fn text(rng: &mut Rng, len: usize, extra: &[&str]) -> String {
        let mut out = String::new();
        for _ in 0..len {
            out.push_str(match rng.below(10) {
                0 if !extra.is_empty() => rng.pick(extra),
                1 => rng.pick(LINKS),
                2..=5 => rng.pick(SEPARATORS),
                _ => rng.pick(WORDS),
            });
        }
        out
    }

    fn phrase_list() -> Vec<String> {
        let mut list = rules::parse_phrases(crate::BUILTIN_PHRASES);
        for p in [
            "act now",
            "now act",
            "act",
            "act now act",
            "a",
            "!!",
            "i",
            "$",
            "100% free",
            "act now", // a duplicate: reported twice, as before
            "Wire-Transfer",
            "zażółć gęślą",
            "ZAŻÓŁĆ",
            "straße",
            "σίσυφος",
            "ΣΊΣΥΦΟΣ",
            "σας",
            "σ",
            "naïve",
            "king",
            "istanbul",
            "İstanbul",
            "it's",
            "you have been",
            "been selected",
            "x1 x1 x1",
            "free free",
        ] {
            list.push(p.to_string());
        }
        list
    }

    #[test]
    fn words_split_as_str_split_does() {
        let mut rng = Rng(7);
        for _ in 0..500 {
            let t = text(&mut rng, 40, HTML);
            for (table, extra) in [(&mail::PHRASE_WORD, "$%'"), (&mail::TOKEN_WORD, "$'")] {
                let old: Vec<&str> = t
                    .split(|c: char| !(c.is_alphanumeric() || extra.contains(c)))
                    .filter(|w| !w.is_empty())
                    .collect();
                let new: Vec<&str> = mail::Words::new(&t, table).map(|(w, _)| w).collect();
                assert_eq!(new, old, "{t:?}");
                assert!(mail::Words::new(&t, table).all(|(w, ascii)| w.is_ascii() == ascii));
            }
        }
    }

    #[test]
    fn word_text_and_phrases_agree_with_the_old_search() {
        let list = phrase_list();
        let matcher = rules::PhraseMatcher::new(&list);
        let mut rng = Rng(1);
        for round in 0..3000 {
            let a = text(&mut rng, 1 + round % 60, &[]);
            assert_eq!(rules::word_text(&a), word_text(&a), "{a:?}");
            let want = phrase_hits(&a, &list);
            let got: Vec<&str> = matcher
                .find([a.as_str()])
                .into_iter()
                .map(|i| list[i].as_str())
                .collect();
            assert_eq!(got, want, "{a:?}");
            assert_eq!(rules::phrase_hits(&a, &list), want);
            // Several texts read as one, joined by line breaks.
            let b = text(&mut rng, 1 + round % 7, &[]);
            let c = text(&mut rng, 3, &[]);
            let want = phrase_hits(&format!("{a}\n{b}\n{c}\n"), &list);
            let got: Vec<&str> = matcher
                .find([&*a, &*b, &*c])
                .into_iter()
                .map(|i| list[i].as_str())
                .collect();
            assert_eq!(got, want, "{a:?} / {b:?} / {c:?}");
        }
        // Long texts, and the list found at all: the test is not vacuous.
        let long = text(&mut Rng(3), 200_000, &[]);
        let want = phrase_hits(&long, &list);
        assert!(want.len() > 20, "{want:?}");
        let got: Vec<&str> = matcher
            .find([long.as_str()])
            .into_iter()
            .map(|i| list[i].as_str())
            .collect();
        assert_eq!(got, want);
        assert!(
            rules::PhraseMatcher::new::<String>(&[])
                .find(["act now"])
                .is_empty()
        );
    }

    /// Few words, many overlapping phrases: what exercises the automaton's
    /// failure links (a phrase that starts inside another's partial match).
    #[test]
    fn overlapping_phrases_agree_with_the_old_search() {
        const ALPHABET: &[&str] = &["ab", "Cd", "ef", "ab", "-", " ", "\n"];
        let mut rng = Rng(9);
        for _ in 0..200 {
            let list: Vec<String> = (0..1 + rng.below(12))
                .map(|_| {
                    let n = 1 + rng.below(4);
                    (0..n)
                        .map(|_| rng.pick(&ALPHABET[..3]))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            let matcher = rules::PhraseMatcher::new(&list);
            for _ in 0..50 {
                let len = rng.below(16);
                let t: String = (0..len)
                    .map(|i| {
                        if i % 2 == 1 {
                            rng.pick(&ALPHABET[4..])
                        } else {
                            rng.pick(&ALPHABET[..4])
                        }
                    })
                    .collect();
                let got: Vec<&str> = matcher
                    .find([t.as_str()])
                    .into_iter()
                    .map(|i| list[i].as_str())
                    .collect();
                assert_eq!(got, phrase_hits(&t, &list), "{t:?} in {list:?}");
            }
        }
        let list = ["wire transfer now".to_string(), "transfer now act".to_string()];
        assert_eq!(rules::phrase_hits("WIRE transfer, now act!", &list), list);
    }

    #[test]
    fn links_and_html_helpers_agree_with_the_old_ones() {
        let mut rng = Rng(11);
        for round in 0..3000 {
            let t = text(&mut rng, 1 + round % 50, HTML);
            assert_eq!(mail::text_links(&t), text_links(&t), "{t:?}");
            assert_eq!(mail::strip_tags(&t), strip_tags(&t), "{t:?}");
            assert_eq!(rules::hidden_text(&t), hidden_text(&t), "{t:?}");
            assert_eq!(mail::html_links(&t), html_links(&t), "{t:?}");
        }
    }

    /// What the ASCII-only shortcuts rely on: no char but these two
    /// lower-cases to anything ASCII, and neither gives a letter of
    /// `http://`, `https://`, `www.` or `base64`.
    #[test]
    fn unicode_lowercase_into_ascii() {
        let into_ascii: Vec<char> = (0x80..=0x10ffff)
            .filter_map(char::from_u32)
            .filter(|c| c.to_lowercase().any(|l| l.is_ascii()))
            .collect();
        assert_eq!(into_ascii, ['\u{130}', '\u{212a}']);
        for c in into_ascii {
            assert!(c.to_lowercase().all(|l| !"htps:/w.base64".contains(l)));
        }
    }

    fn sample_messages() -> Vec<Vec<u8>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/messages");
        let mut out = Vec::new();
        for dir in [root.clone(), root.join("bayes/spam"), root.join("bayes/ham")] {
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect();
            files.sort();
            out.extend(files.iter().map(|f| std::fs::read(f).unwrap()));
        }
        assert!(out.len() > 60, "{} samples", out.len());
        out
    }

    /// Random multipart messages: plain and HTML parts, base64 or not,
    /// attachments, made of the same pieces.
    fn random_message(rng: &mut Rng) -> Vec<u8> {
        let mut raw =
            String::from("From: \"PayPal.com\" <x@evil.test>\r\nSubject: ACT NOW: wire transfer!!!\r\n");
        raw.push_str("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
        for _ in 0..1 + rng.below(4) {
            let len = 5 + rng.below(60);
            let body = text(rng, len, HTML);
            let (ct, extra) = match rng.below(5) {
                0 => ("text/html", ""),
                1 => ("text/plain", "; name=notes.txt"),
                2 => ("application/octet-stream", ""),
                _ => ("text/plain", ""),
            };
            raw.push_str(&format!("--b\r\nContent-Type: {ct}{extra}\r\n"));
            if rng.below(3) == 0 {
                let enc = *[" base64", " BASE64", "base64 ", "base 64"]
                    .get(rng.below(4))
                    .unwrap();
                raw.push_str(&format!(
                    "Content-Transfer-Encoding:{enc}\r\n\r\n{}\r\n",
                    base64(body.as_bytes())
                ));
            } else {
                raw.push_str(&format!("\r\n{body}\r\n"));
            }
        }
        raw.push_str("--b--\r\n");
        raw.into_bytes()
    }

    fn base64(data: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for (i, c) in data.chunks(3).enumerate() {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for k in 0..4 {
                out.push(if k <= c.len() {
                    A[(n >> (18 - 6 * k)) as usize & 63] as char
                } else {
                    '='
                });
            }
            if i % 19 == 18 {
                out.push_str("\r\n");
            }
        }
        out
    }

    #[test]
    fn body_rules_and_tokens_agree_with_the_old_ones() {
        let mut rng = Rng(5);
        let mut messages = sample_messages();
        messages.extend((0..300).map(|_| random_message(&mut rng)));
        messages.push(crate::tests::bench_message(100 << 10));
        let limits = Limits {
            many_urls: 3,
            ..Limits::default()
        };
        let mut fired = BTreeSet::new();
        for raw in &messages {
            let m = MailView::from_raw(raw, "smtp", 1_750_000_000);
            let what = String::from_utf8_lossy(&raw[..raw.len().min(300)]);
            let want = body_rules(&m, &limits);
            assert_eq!(rules::body_rules(&m, &limits), want, "{what}");
            fired.extend(want.iter().map(|h| h.symbol));
            assert_eq!(
                rules::base64_text_without_reason(raw),
                base64_text_without_reason(raw)
            );
            assert_eq!(m.body_text(), body_text(&m), "{what}");
            assert_eq!(bayes::tokenize(&m), tokenize(&m), "{what}");
        }
        // Every body rule was exercised both ways.
        for symbol in [
            "MIME_HTML_ONLY",
            "HTML_HIDDEN_TEXT",
            "MANY_URLS",
            "URL_IP_HOST",
            "HTML_LINK_TEXT_MISMATCH",
            "TEXT_B64_NO_REASON",
        ] {
            assert!(fired.contains(symbol), "{symbol} never fired: {fired:?}");
        }
    }

    #[test]
    fn tokens_stop_at_the_cap_as_before() {
        let mut body = String::new();
        for i in 0..3000 {
            body.push_str(&format!("Word{i} word{i} w{} ", i % 7));
        }
        let m = MailView::from_raw(format!("Subject: x\r\n\r\n{body}").as_bytes(), "smtp", 0);
        let t = bayes::tokenize(&m);
        assert_eq!(t, tokenize(&m));
        assert_eq!(t.len(), bayes::MAX_TOKENS);
    }
}
