//! The rules: each looks at a [`MailView`] and reports a symbol when it
//! fires. Weights are not decided here (see [`crate::Weights`]), so every
//! rule is a pure function tested on its own.

use std::collections::{BTreeMap, BTreeSet};

use crate::mail::{self, MailView, Piece, Words};
use crate::mime;

/// A rule that fired: its symbol and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The symbol, e.g. `MISSING_DATE`.
    pub symbol: &'static str,
    /// A short explanation for the summary header and the log.
    pub description: String,
    /// How many times the weight counts (forbidden phrases: one per phrase).
    pub count: u32,
}

fn hit(symbol: &'static str, description: impl Into<String>) -> Hit {
    Hit {
        symbol,
        description: description.into(),
        count: 1,
    }
}

/// Tunables of the rules (from the plugin config).
#[derive(Debug, Clone)]
pub struct Limits {
    /// A Date more than this many seconds ahead is in the future.
    pub future_secs: i64,
    /// A Date more than this many seconds old is in the past.
    pub past_secs: i64,
    /// More distinct URLs than this are many.
    pub many_urls: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            future_secs: 12 * 3600,
            past_secs: 7 * 86400,
            many_urls: 10,
        }
    }
}

/// The header rules.
pub fn header_rules(m: &MailView, limits: &Limits) -> Vec<Hit> {
    let mut hits = Vec::new();
    date_rules(m, limits, &mut hits);
    message_id_rules(m, &mut hits);
    from_rules(m, &mut hits);
    subject_rules(m, &mut hits);
    received_rules(m, &mut hits);
    hits
}

fn date_rules(m: &MailView, limits: &Limits, hits: &mut Vec<Hit>) {
    let Some(date) = m.first("date") else {
        hits.push(hit("MISSING_DATE", "no Date header"));
        return;
    };
    let Some(t) = mail::parse_date(date) else {
        hits.push(hit("INVALID_DATE", "Date is not an RFC 5322 date"));
        return;
    };
    let now = m.now as i64;
    if t - now > limits.future_secs {
        hits.push(hit(
            "DATE_IN_FUTURE",
            format!("Date is {} h in the future", (t - now) / 3600),
        ));
    } else if now - t > limits.past_secs {
        hits.push(hit(
            "DATE_IN_PAST",
            format!("Date is {} days in the past", (now - t) / 86400),
        ));
    }
}

fn message_id_rules(m: &MailView, hits: &mut Vec<Hit>) {
    match m.first("message-id").map(str::trim) {
        None | Some("") => hits.push(hit("MISSING_MID", "no Message-ID header")),
        Some(id) if !(id.starts_with('<') && id.ends_with('>') && id.contains('@')) => {
            hits.push(hit("INVALID_MSGID", "Message-ID is not <left@right>"))
        }
        _ => {}
    }
}

fn from_rules(m: &MailView, hits: &mut Vec<Hit>) {
    let Some(from) = m.from.as_deref().or(m.first("from")) else {
        hits.push(hit("MISSING_FROM", "no From header"));
        return;
    };
    let from = mail::parse_mailbox(from);
    let from_domain = mail::domain_of(&from.address).to_string();
    let from_org = mail::org_domain(&from_domain);
    if let Some(shown) = mail::addresses_in(&from.name)
        .into_iter()
        .find(|a| *a != from.address)
    {
        hits.push(hit(
            "FROM_NAME_HAS_ADDR",
            format!("From name shows {shown}, the address is {}", from.address),
        ));
    } else if let Some(shown) = mail::domains_in(&from.name)
        .into_iter()
        .find(|d| mail::org_domain(d) != from_org)
    {
        hits.push(hit(
            "FROM_NAME_DOMAIN_MISMATCH",
            format!("From name shows {shown}, the address is in {from_domain}"),
        ));
    }
    if let Some(rt) = m.first("reply-to") {
        let rt = mail::parse_mailbox(rt);
        let rt_org = mail::org_domain(mail::domain_of(&rt.address));
        if !rt_org.is_empty() && !from_org.is_empty() && rt_org != from_org {
            hits.push(hit(
                "REPLYTO_DOM_NEQ_FROM_DOM",
                format!("Reply-To in {rt_org}, From in {from_org}"),
            ));
        }
    }
}

/// Whether a subject shouts: at least 8 letters, all upper case.
pub fn all_caps(subject: &str) -> bool {
    let letters: Vec<char> = subject.chars().filter(|c| c.is_alphabetic()).collect();
    letters.len() >= 8 && letters.iter().all(|c| !c.is_lowercase())
}

/// Whether a subject is full of `!`, `$` or `?`: a run of three, or four in all.
pub fn excess_punct(subject: &str) -> bool {
    let loud = |c: char| matches!(c, '!' | '$' | '?');
    let total = subject.chars().filter(|&c| c == '!' || c == '$').count();
    let mut run = 0;
    let mut max_run = 0;
    for c in subject.chars() {
        run = if loud(c) { run + 1 } else { 0 };
        max_run = max_run.max(run);
    }
    max_run >= 3 || total >= 4
}

fn subject_rules(m: &MailView, hits: &mut Vec<Hit>) {
    let Some(subject) = m.subject.as_deref().or(m.first("subject")) else {
        return;
    };
    if all_caps(subject) {
        hits.push(hit("SUBJ_ALL_CAPS", "Subject is all capitals"));
    }
    if excess_punct(subject) {
        hits.push(hit("SUBJ_EXCESS_PUNCT", "Subject is full of !, $ or ?"));
    }
}

/// Whether a Received field looks right: a `from` or `by` clause and a
/// parseable date after the `;`.
pub fn received_ok(value: &str) -> bool {
    let lower = value.to_lowercase();
    let Some((clauses, date)) = lower.rsplit_once(';') else {
        return false;
    };
    let words: Vec<&str> = clauses.split_whitespace().collect();
    (words.contains(&"from") || words.contains(&"by")) && mail::parse_date(date).is_some()
}

fn received_rules(m: &MailView, hits: &mut Vec<Hit>) {
    let received = m.header("received");
    if received.is_empty() {
        // Mail from a mail program comes through submission without one;
        // mail arriving at the MX from the Internet has passed a server.
        if m.listener == "smtp" {
            hits.push(hit("RCVD_NONE", "no Received header on mail to the MX"));
        }
        return;
    }
    if let Some(bad) = received.iter().position(|r| !received_ok(r)) {
        hits.push(hit(
            "RCVD_MALFORMED",
            format!("Received field {} is malformed", bad + 1),
        ));
    }
}

// ---------------------------------------------------------------- body

/// The body rules (the forbidden phrases are separate: [`phrase_hits`]).
pub fn body_rules(m: &MailView, limits: &Limits) -> Vec<Hit> {
    body_rules_on(m, &mail::body_pieces(&m.parts), limits)
}

/// [`body_rules`] with the message's [`mail::body_pieces`] already made.
pub fn body_rules_on(m: &MailView, pieces: &[Piece], limits: &Limits) -> Vec<Hit> {
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
    url_rules(pieces, limits, &mut hits);
    if base64_text_without_reason(&m.raw) {
        hits.push(hit(
            "TEXT_B64_NO_REASON",
            "text/plain part base64-encoded though it is plain ASCII",
        ));
    }
    hits
}

/// An HTML source lower-cased, without white space and quotes, so that
/// `style="display: none"` and `style=display:none` read the same.
fn squeeze(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    for c in html.chars() {
        if c.is_ascii() {
            if !(c.is_ascii_whitespace() || c == '\x0b' || c == '"' || c == '\'') {
                out.push(c.to_ascii_lowercase());
            }
        } else {
            // Per char rather than `str::to_lowercase`: they differ only in
            // the final sigma, which no pattern below contains.
            out.extend(c.to_lowercase().filter(|l| !l.is_whitespace()));
        }
    }
    out
}

/// How an HTML part hides text, if it does: `display:none`,
/// `visibility:hidden`, a zero or one pixel font, or white text on a page
/// that sets no dark background.
pub fn hidden_text(html: &str) -> Option<&'static str> {
    hidden_in_squeezed(&squeeze(html))
}

/// [`hidden_text`] on HTML already lower-cased, without white space and
/// quotes.
pub(crate) fn hidden_in_squeezed(squeezed: &str) -> Option<&'static str> {
    if squeezed.contains("display:none") {
        return Some("display:none");
    }
    if squeezed.contains("visibility:hidden") {
        return Some("visibility:hidden");
    }
    for tiny in [
        "font-size:0",
        "font-size:1px",
        "font-size:0.",
        "<fontsize=0",
        "<fontsize=1>",
    ] {
        if let Some(i) = squeezed.find(tiny) {
            // font-size:0 but not font-size:0.9em
            let rest = &squeezed[i + tiny.len()..];
            if tiny == "font-size:0." && !rest.starts_with('0') {
                continue;
            }
            if tiny == "font-size:0" && rest.starts_with('.') {
                continue;
            }
            return Some("zero-size font");
        }
    }
    let white = [
        "color:#fff;",
        "color:#fff}",
        "color:#ffffff",
        "color:white",
        "fontcolor=#ffffff",
        "fontcolor=white",
        "fontcolor=#fff>",
    ];
    let dark_bg = [
        "background:#000",
        "background-color:#000",
        "background:black",
        "background-color:black",
        "bgcolor=#000",
        "bgcolor=black",
        "background-color:#1",
        "background-color:#2",
        "background-color:#3",
    ];
    let has_white = white.iter().any(|w| {
        squeezed
            .match_indices(w)
            // `background-color:#ffffff` is a background, not text colour.
            .any(|(i, _)| !squeezed[..i].ends_with("background-") && !squeezed[..i].ends_with("bg"))
    });
    if has_white && !dark_bg.iter().any(|d| squeezed.contains(d)) {
        return Some("white text on white");
    }
    None
}

fn url_rules(pieces: &[Piece], limits: &Limits, hits: &mut Vec<Hit>) {
    let mut links = Vec::new();
    for p in pieces {
        if let Some(html) = p.html {
            links.extend(mail::html_links(html));
        }
        links.extend(mail::text_links(&p.text));
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
        let shown = mail::text_links(text)
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
    // The encoding is a header value equal to "base64" after lower-casing,
    // so without those six bytes (ignoring ASCII case; no other char
    // lower-cases to them) in the message no part is base64: skip the
    // MIME walk, which copies every body.
    let named =
        memchr::memmem::find_iter(raw, b"64").any(|i| i >= 4 && raw[i - 4..i].eq_ignore_ascii_case(b"base"));
    if !named {
        return false;
    }
    let mut found = false;
    mime::walk_leaves(raw, |l| {
        found = l.content_type == "text/plain" && !l.is_attachment && l.encoding == "base64" && {
            let body = l.decode();
            !body.is_empty()
                && body
                    .iter()
                    .all(|&b| b == b'\t' || b == b'\r' || b == b'\n' || (32..127).contains(&b))
                && body.split(|&b| b == b'\n').all(|line| line.len() <= 998)
        };
        !found
    });
    found
}

/// Lower-case words separated by single spaces, with a space at each end,
/// so a phrase matches on word boundaries with `contains(" phrase ")`.
pub fn word_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push(' ');
    for (w, ascii) in Words::new(text, &mail::PHRASE_WORD) {
        mail::push_lower(&mut out, w, ascii);
        out.push(' ');
    }
    out
}

/// The bucket of a lower-cased word among `1 << bits`: cheap enough for
/// every word of a body (first and last byte, length, one multiplication),
/// and few body words share one with a phrase word.
#[inline]
fn bucket(first: u8, last: u8, len: usize, bits: u32) -> usize {
    let key = u32::from(first) | u32::from(last) << 8 | (len.min(0xffff) as u32) << 16;
    (key.wrapping_mul(0x9e37_79b1) >> (32 - bits)) as usize
}

/// A phrase list compiled for [`PhraseMatcher::find`]: what [`phrase_hits`]
/// reports, in one pass over the text however long the list.
///
/// A phrase matches where its words ([`word_text`]'s: lower-cased, split at
/// what is not a word char) are consecutive words of the text. So each
/// text word is looked up among the phrases' words (a bucket by first and
/// last byte and length, then a comparison), and the ids of those words
/// drive an Aho-Corasick automaton whose patterns are the phrases as word
/// id sequences. A word that is in no phrase sends it back to the root.
/// Nothing of the text is copied, and ASCII words are compared as they are.
#[derive(Debug, Clone)]
pub struct PhraseMatcher {
    /// The distinct words of the phrases, lower-cased, by id.
    vocab: Vec<Box<str>>,
    /// Word ids by bucket: bucket `b` holds `ids[starts[b]..starts[b + 1]]`.
    starts: Vec<u32>,
    ids: Vec<u32>,
    /// `starts.len() == (1 << bits) + 1`.
    bits: u32,
    /// Per automaton state (0 is the root): the (word id, state) edges of
    /// the trie, sorted, and the failure link.
    edges: Vec<Vec<(u32, u32)>>,
    fail: Vec<u32>,
    /// Per state: the list entries that end there, also through `fail`.
    ends: Vec<Vec<u32>>,
    /// The number of list entries.
    entries: usize,
}

impl PhraseMatcher {
    /// Compiles a phrase list. An entry with at most one byte of word in it
    /// (`"a"`, `"!!"`) never matches, as before.
    pub fn new<S: AsRef<str>>(phrases: &[S]) -> PhraseMatcher {
        let mut words: BTreeMap<String, u32> = BTreeMap::new();
        let mut vocab: Vec<Box<str>> = Vec::new();
        let mut edges: Vec<Vec<(u32, u32)>> = vec![Vec::new()];
        let mut ends: Vec<Vec<u32>> = vec![Vec::new()];
        for (entry, p) in phrases.iter().enumerate() {
            let norm = word_text(p.as_ref());
            let norm = norm.trim_matches(' ');
            if norm.len() <= 1 {
                continue;
            }
            let mut state = 0usize;
            for w in norm.split(' ') {
                let id = *words.entry(w.to_owned()).or_insert_with(|| {
                    vocab.push(w.into());
                    vocab.len() as u32 - 1
                });
                state = match edges[state].binary_search_by_key(&id, |e| e.0) {
                    Ok(k) => edges[state][k].1 as usize,
                    Err(k) => {
                        let new = edges.len();
                        edges[state].insert(k, (id, new as u32));
                        edges.push(Vec::new());
                        ends.push(Vec::new());
                        new
                    }
                };
            }
            ends[state].push(entry as u32);
        }
        // Failure links, breadth first, so a state's link is done before
        // its children's.
        let mut fail = vec![0u32; edges.len()];
        let mut queue: std::collections::VecDeque<usize> =
            edges[0].iter().map(|&(_, s)| s as usize).collect();
        while let Some(s) = queue.pop_front() {
            for &(id, child) in &edges[s].clone() {
                let mut f = fail[s] as usize;
                let target = loop {
                    if let Some(t) = Self::edge(&edges, f, id) {
                        break t;
                    }
                    if f == 0 {
                        break 0;
                    }
                    f = fail[f] as usize;
                };
                let child = child as usize;
                fail[child] = target as u32;
                let inherited = ends[target].clone();
                ends[child].extend(inherited);
                queue.push_back(child);
            }
        }
        // Mostly empty buckets: most body words are rejected by one load.
        let bits = (vocab.len() * 8).next_power_of_two().max(1024).trailing_zeros();
        let key = |w: &str| {
            let b = w.as_bytes();
            bucket(b[0], b[b.len() - 1], b.len(), bits)
        };
        let mut starts = vec![0u32; (1 << bits) + 1];
        for w in &vocab {
            starts[key(w) + 1] += 1;
        }
        for b in 0..1 << bits {
            starts[b + 1] += starts[b];
        }
        let mut fill = starts.clone();
        let mut ids = vec![0u32; vocab.len()];
        for (id, w) in vocab.iter().enumerate() {
            let b = key(w);
            ids[fill[b] as usize] = id as u32;
            fill[b] += 1;
        }
        PhraseMatcher {
            vocab,
            starts,
            ids,
            bits,
            edges,
            fail,
            ends,
            entries: phrases.len(),
        }
    }

    fn edge(edges: &[Vec<(u32, u32)>], state: usize, id: u32) -> Option<usize> {
        let e = &edges[state];
        e.binary_search_by_key(&id, |e| e.0).ok().map(|k| e[k].1 as usize)
    }

    /// The id of a text word (as [`mail::Words`] gives it) if a phrase has
    /// it; `scratch` holds the lower-cased form of a non-ASCII word.
    #[inline(always)]
    fn word_id(&self, w: &str, ascii: bool, scratch: &mut String) -> Option<u32> {
        if ascii {
            let b = w.as_bytes();
            let (first, last) = (b[0].to_ascii_lowercase(), b[b.len() - 1].to_ascii_lowercase());
            let k = bucket(first, last, b.len(), self.bits);
            let (lo, hi) = (self.starts[k] as usize, self.starts[k + 1] as usize);
            // The vocabulary is lower-cased already.
            self.ids[lo..hi]
                .iter()
                .copied()
                .find(|&id| self.vocab[id as usize].eq_ignore_ascii_case(w))
        } else {
            scratch.clear();
            mail::push_lower(scratch, w, false);
            let b = scratch.as_bytes();
            let k = bucket(b[0], b[b.len() - 1], b.len(), self.bits);
            let (lo, hi) = (self.starts[k] as usize, self.starts[k + 1] as usize);
            self.ids[lo..hi]
                .iter()
                .copied()
                .find(|&id| *self.vocab[id as usize] == **scratch)
        }
    }

    /// The indices of the list entries found in the texts, read as one
    /// text with a line break after each (so a phrase may span two), in
    /// list order.
    pub fn find<'t>(&self, texts: impl IntoIterator<Item = &'t str>) -> Vec<usize> {
        let mut found = vec![false; self.entries];
        if self.vocab.is_empty() {
            return Vec::new();
        }
        let mut state = 0usize;
        let mut scratch = String::new();
        for text in texts {
            for (w, ascii) in Words::new(text, &mail::PHRASE_WORD) {
                let Some(id) = self.word_id(w, ascii, &mut scratch) else {
                    state = 0;
                    continue;
                };
                state = loop {
                    if let Some(next) = Self::edge(&self.edges, state, id) {
                        break next;
                    }
                    if state == 0 {
                        break 0;
                    }
                    state = self.fail[state] as usize;
                };
                for &e in &self.ends[state] {
                    found[e as usize] = true;
                }
            }
        }
        (0..found.len()).filter(|&i| found[i]).collect()
    }
}

/// The forbidden phrases present in `text` (each once, in list order).
pub fn phrase_hits<'a>(text: &str, phrases: &'a [String]) -> Vec<&'a str> {
    PhraseMatcher::new(phrases)
        .find([text])
        .into_iter()
        .map(|i| phrases[i].as_str())
        .collect()
}

/// Parses a phrase list: one phrase a line, `#` comments, blank lines skipped.
pub fn parse_phrases(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_750_000_000; // 2025-06-15

    fn view(head: &str, body: &str) -> MailView {
        MailView::from_raw(format!("{head}\r\n\r\n{body}").as_bytes(), "smtp", NOW)
    }

    fn symbols(hits: &[Hit]) -> Vec<&'static str> {
        hits.iter().map(|h| h.symbol).collect()
    }

    const GOOD: &str = "Received: from mx.a.test (mx.a.test [192.0.2.1]) by mx.b.test with ESMTP id 1; Sun, 15 Jun 2025 14:00:00 +0000\r\nDate: Sun, 15 Jun 2025 13:59:00 +0000\r\nMessage-ID: <1@a.test>\r\nFrom: Alice <alice@a.test>\r\nSubject: Lunch tomorrow?";

    #[test]
    fn a_clean_message_fires_nothing() {
        let m = view(GOOD, "See you at noon.\r\n");
        assert_eq!(header_rules(&m, &Limits::default()), vec![]);
        assert_eq!(body_rules(&m, &Limits::default()), vec![]);
    }

    #[test]
    fn dates_and_message_ids() {
        let l = Limits::default();
        let m = view("From: a@a.test", "x");
        assert_eq!(
            symbols(&header_rules(&m, &l)),
            ["MISSING_DATE", "MISSING_MID", "RCVD_NONE"]
        );
        let m = view("Date: next week\r\nMessage-ID: nope\r\nFrom: a@a.test", "x");
        assert_eq!(
            symbols(&header_rules(&m, &l)),
            ["INVALID_DATE", "INVALID_MSGID", "RCVD_NONE"]
        );
        let m = view(
            "Date: Mon, 16 Jun 2025 13:00:00 +0000\r\nMessage-ID: <a@b>\r\nFrom: a@a.test",
            "x",
        );
        let h = header_rules(&m, &l);
        assert_eq!(symbols(&h)[0], "DATE_IN_FUTURE");
        assert!(h[0].description.contains("21 h"));
        let m = view(
            "Date: Sun, 1 Jun 2025 13:00:00 +0000\r\nMessage-ID: <a@b>\r\nFrom: a@a.test",
            "x",
        );
        assert_eq!(symbols(&header_rules(&m, &l))[0], "DATE_IN_PAST");
        // Within the window: nothing about the date.
        let m = view(
            "Date: Sun, 15 Jun 2025 10:00:00 +0200\r\nMessage-ID: <a@b>\r\nFrom: a@a.test",
            "x",
        );
        assert_eq!(symbols(&header_rules(&m, &l)), ["RCVD_NONE"]);
    }

    #[test]
    fn from_tricks_and_reply_to() {
        let l = Limits::default();
        let rules = |from: &str| {
            let m = view(
                &format!("{GOOD}\r\nFrom: {from}").replace("From: Alice <alice@a.test>\r\n", ""),
                "x",
            );
            symbols(&header_rules(&m, &l))
        };
        assert_eq!(
            rules("\"service@paypal.com\" <x@evil.test>"),
            ["FROM_NAME_HAS_ADDR"]
        );
        assert_eq!(
            rules("\"PayPal.com Security\" <x@evil.test>"),
            ["FROM_NAME_DOMAIN_MISMATCH"]
        );
        assert!(
            rules("\"alice@a.test\" <alice@a.test>").is_empty(),
            "the same address is fine"
        );
        assert!(
            rules("\"News from a.test\" <news@mail.a.test>").is_empty(),
            "same organisation"
        );
        let m = view(&format!("{GOOD}\r\nReply-To: <collect@elsewhere.test>"), "x");
        assert_eq!(symbols(&header_rules(&m, &l)), ["REPLYTO_DOM_NEQ_FROM_DOM"]);
        let m = view(&format!("{GOOD}\r\nReply-To: <list@lists.a.test>"), "x");
        assert!(header_rules(&m, &l).is_empty());
        let m = view(
            "Date: Sun, 15 Jun 2025 13:59:00 +0000\r\nMessage-ID: <1@a.test>",
            "x",
        );
        assert!(symbols(&header_rules(&m, &l)).contains(&"MISSING_FROM"));
    }

    #[test]
    fn subjects() {
        assert!(all_caps("URGENT BUSINESS PROPOSAL"));
        assert!(!all_caps("URGENT: Meeting moved"));
        assert!(!all_caps("OK BYE"), "too short to shout");
        assert!(excess_punct("Act now!!!"));
        assert!(excess_punct("$$$ cash"));
        assert!(excess_punct("Win! Win! Win! Win!"));
        assert!(!excess_punct("Lunch? Sure!"));
        let m = view(&GOOD.replace("Lunch tomorrow?", "FREE MONEY WAITING!!!"), "x");
        assert_eq!(
            symbols(&header_rules(&m, &Limits::default())),
            ["SUBJ_ALL_CAPS", "SUBJ_EXCESS_PUNCT"]
        );
    }

    #[test]
    fn received_chain() {
        assert!(received_ok(
            "from a.test (a.test [192.0.2.1]) by b.test; Sun, 15 Jun 2025 14:00:00 +0000"
        ));
        assert!(received_ok("by mx.b.test with LMTP; 15 Jun 2025 14:00 -0700"));
        assert!(!received_ok("from a.test by b.test"), "no date");
        assert!(!received_ok("garbage; Sun, 15 Jun 2025 14:00:00 +0000"));
        let m = view(&format!("Received: hello\r\n{GOOD}"), "x");
        let h = header_rules(&m, &Limits::default());
        assert_eq!(symbols(&h), ["RCVD_MALFORMED"]);
        assert!(h[0].description.contains("field 1"));
        // Submission: no Received is normal.
        let mut m = view(
            "Date: Sun, 15 Jun 2025 13:59:00 +0000\r\nMessage-ID: <1@a.test>\r\nFrom: a@a.test",
            "x",
        );
        m.listener = "submission".into();
        assert!(header_rules(&m, &Limits::default()).is_empty());
    }

    #[test]
    fn html_only_and_hidden_text() {
        let l = Limits::default();
        let m = view(&format!("{GOOD}\r\nContent-Type: text/html"), "<p>Hello</p>");
        assert_eq!(symbols(&body_rules(&m, &l)), ["MIME_HTML_ONLY"]);
        let alt = format!("{GOOD}\r\nContent-Type: multipart/alternative; boundary=b");
        let m = view(
            &alt,
            "--b\r\nContent-Type: text/plain\r\n\r\nHello\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>Hello</p>\r\n--b--\r\n",
        );
        assert!(body_rules(&m, &l).is_empty());
        assert_eq!(
            hidden_text("<div style=\"display: none\">cheap meds</div>"),
            Some("display:none")
        );
        assert_eq!(
            hidden_text("<span style='font-size:0px'>x</span>"),
            Some("zero-size font")
        );
        assert_eq!(hidden_text("<span style='font-size:0.9em'>x</span>"), None);
        assert_eq!(
            hidden_text("<font color=\"#FFFFFF\">words</font>"),
            Some("white text on white")
        );
        assert_eq!(
            hidden_text("<body style='background-color:#000'><p style='color:#fff;'>x</p>"),
            None
        );
        assert_eq!(hidden_text("<td style='background-color: #ffffff'>ok</td>"), None);
        assert_eq!(hidden_text("<p style='color:#333'>fine</p>"), None);
    }

    #[test]
    fn urls() {
        let l = Limits {
            many_urls: 3,
            ..Limits::default()
        };
        let body: String = (0..5).map(|i| format!("http://h{i}.test/ ")).collect();
        let m = view(GOOD, &body);
        assert_eq!(symbols(&body_rules(&m, &l)), ["MANY_URLS"]);
        let m = view(
            GOOD,
            "http://a.test/1 http://a.test/2 http://a.test/3 http://a.test/4 http://a.test/5",
        );
        assert!(
            body_rules(&m, &l).is_empty(),
            "one host many times is not many URLs"
        );
        let m = view(GOOD, "log in at http://198.51.100.7/bank/login");
        assert_eq!(symbols(&body_rules(&m, &l)), ["URL_IP_HOST"]);
        let m = view(
            &format!("{GOOD}\r\nContent-Type: multipart/alternative; boundary=b"),
            "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\r\nContent-Type: text/html\r\n\r\n<a href=\"http://login.evil.test/\">https://www.mybank.com/login</a> <a href=\"https://www.a.test/\">www.a.test</a>\r\n--b--\r\n",
        );
        let h = body_rules(&m, &l);
        assert_eq!(symbols(&h), ["HTML_LINK_TEXT_MISMATCH"]);
        assert!(
            h[0].description.contains("www.mybank.com"),
            "{}",
            h[0].description
        );
    }

    #[test]
    fn base64_text_parts() {
        let plain = format!("{GOOD}\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64");
        // "Hello, this is plain ASCII." in base64.
        let m = view(&plain, "SGVsbG8sIHRoaXMgaXMgcGxhaW4gQVNDSUku\r\n");
        assert_eq!(
            symbols(&body_rules(&m, &Limits::default())),
            ["TEXT_B64_NO_REASON"]
        );
        // UTF-8 text ("zażółć") has a reason.
        let m = view(&plain, "emHFvMOzxYLEhw==\r\n");
        assert!(body_rules(&m, &Limits::default()).is_empty());
        // An attachment has a reason too.
        let att = format!("{GOOD}\r\nContent-Type: multipart/mixed; boundary=b");
        let m = view(
            &att,
            "--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n--b\r\nContent-Type: text/plain; name=notes.txt\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n",
        );
        assert!(body_rules(&m, &Limits::default()).is_empty());
    }

    #[test]
    fn phrases() {
        let list = parse_phrases("# comment\nviagra\n\nwire transfer  # inline\nact now\n100% free\n");
        assert_eq!(list, ["viagra", "wire transfer", "act now", "100% free"]);
        let found = phrase_hits("Please ACT NOW: a Wire-Transfer is 100% FREE!", &list);
        assert_eq!(found, ["wire transfer", "act now", "100% free"]);
        assert!(phrase_hits("react nowhere", &list).is_empty(), "word boundaries");
    }
}
