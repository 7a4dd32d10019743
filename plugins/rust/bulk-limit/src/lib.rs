//! `bulk-limit`: stops one sender from sending the same message to many
//! addresses.
//!
//! Hook: `body`. Grant: `kv`. See README.md for the config and an example.
//!
//! For each message: the sender is the authenticated user, else the client
//! IP (an IPv6 client by its /64 — one host usually owns the whole prefix);
//! the message's fingerprint is a hash of its normalised text (lower case,
//! white space removed, digit runs folded to one `0`, so "Dear 123" and
//! "dear 456" agree) plus the raw bytes of its attachments. The plugin keeps,
//! per (sender, fingerprint), the distinct recipients seen in the last
//! `window_secs` with their last-seen time (one kv value, so a message costs
//! one read and one durable write whatever its recipient count). Past
//! `threshold` distinct recipients the message is tempfailed (`450 4.7.1`),
//! past `hard_threshold` refused (`550 5.7.1`). Its recipients are counted
//! either way: a spammer's retries do not reset anything, and a legitimate
//! sender's retries of the same recipients do not raise the count.
//!
//! Why `body` and not `rcpt`: the fingerprint needs the message. Why not a
//! per-sender block from `mail-from`: a sender over the limit for one
//! message may still send a different one.
//!
//! Mailing lists are exempt: any message with a `List-Id` (unless
//! `exempt_any_list_id = false`), the `List-Id`s and envelope senders named
//! in the config. A kv failure never blocks mail: it is logged and the
//! message goes on. Two transactions of one sender with one fingerprint
//! racing each other can both read the old set, so a burst of parallel
//! connections can undercount by the messages in flight; the next message
//! sees the merged count of whichever wrote last.

use std::net::IpAddr;

use poczta_plugin::{Envelope, Hook, HookResult, Message, Plugin, Reply, Verdict, kv};
use serde::Deserialize;

/// The plugin's config (`config = { … }` in the `[[plugins]]` entry).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The sliding window, seconds.
    pub window_secs: u64,
    /// More distinct recipients than this (same sender, same body, in the
    /// window) → `450 4.7.1`.
    pub threshold: usize,
    /// More than this → `550 5.7.1`.
    pub hard_threshold: usize,
    /// Any message with a `List-Id` header is exempt.
    pub exempt_any_list_id: bool,
    /// List-Ids exempt (the part in angle brackets, e.g.
    /// `"announce.example.org"`), for `exempt_any_list_id = false`.
    pub exempt_list_ids: Vec<String>,
    /// Envelope senders exempt: full addresses, or `@domain`.
    pub exempt_senders: Vec<String>,
    /// Authenticated users exempt (e.g. a newsletter account).
    pub exempt_users: Vec<String>,
    /// Bytes of normalised text that make the fingerprint.
    pub fingerprint_bytes: usize,
    /// IPv6 clients are counted by this prefix.
    pub ipv6_prefix: u8,
    /// Recipients tracked per (sender, fingerprint); older ones are dropped
    /// first. Keeps the kv value small (≈ 30 bytes an entry).
    pub max_tracked: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            window_secs: 3600,
            threshold: 50,
            hard_threshold: 200,
            exempt_any_list_id: true,
            exempt_list_ids: Vec::new(),
            exempt_senders: Vec::new(),
            exempt_users: Vec::new(),
            fingerprint_bytes: 64 << 10,
            ipv6_prefix: 64,
            max_tracked: 2000,
        }
    }
}

impl Config {
    /// Parses and checks the JSON config.
    pub fn parse(json: &str) -> Result<Config, String> {
        let c: Config = poczta_plugin::parse_config(json)?;
        let bad = |m: &str| Err(format!("invalid plugin config: {m}"));
        if c.window_secs == 0 {
            return bad("window_secs must be > 0");
        }
        if c.threshold == 0 || c.hard_threshold < c.threshold {
            return bad("need 0 < threshold <= hard_threshold");
        }
        if c.max_tracked <= c.hard_threshold {
            return bad("max_tracked must be more than hard_threshold");
        }
        if c.ipv6_prefix > 128 || c.fingerprint_bytes == 0 {
            return bad("ipv6_prefix is at most 128 and fingerprint_bytes > 0");
        }
        Ok(c)
    }
}

// ---------------------------------------------------------------- fingerprint

/// 64-bit FNV-1a: stable across builds and platforms (the values live in
/// the kv store), and plenty to tell one sender's messages apart.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Adds one byte.
    #[inline(always)]
    pub fn write_byte(&mut self, b: u8) {
        self.0 ^= u64::from(b);
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }
    /// Adds bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }
    /// The hash as 16 hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The normalised form of a text: lower case, no white space, each run of
/// digits one `0`; at most `limit` bytes. What [`normalize_into`] hashes,
/// as a string for the tests.
#[cfg(test)]
pub fn normalize(text: &str, limit: usize) -> String {
    let mut out = Vec::with_capacity(text.len().min(limit));
    normalize_into(text, limit, &mut out);
    // Whole characters go out, so the bytes are UTF-8.
    String::from_utf8(out).expect("normalized text is UTF-8")
}

/// Where [`normalize_into`] puts bytes. A trait with an always-inlined
/// method rather than a closure: this loop is most of the plugin's work, and
/// under the release profile's `opt-level = "s"` the closure measured
/// slower in the wasm build.
trait Sink {
    fn byte(&mut self, b: u8);
}

impl Sink for Fnv {
    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.write_byte(b);
    }
}

#[cfg(test)]
impl Sink for Vec<u8> {
    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.push(b);
    }
}

/// [`normalize`], giving the bytes to `out` as they come instead of
/// collecting them (the fingerprint only hashes them); returns their count.
///
/// Stops after the first non-space character that brings the count to
/// `limit` or past it (a multi-byte lower case goes out whole; a digit
/// inside a run counts as reaching it too): the fingerprint values in the
/// kv store depend on exactly where this stops. ASCII, nearly all of most
/// mail, takes a byte-wise path; anything else goes through `char`'s own
/// white space and lower-case rules.
fn normalize_into(text: &str, limit: usize, out: &mut impl Sink) -> usize {
    let bytes = text.as_bytes();
    let mut n = 0;
    let mut in_digits = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii() {
            i += 1;
            match b {
                // `char::is_whitespace` in ASCII: U+0009..=U+000D and space
                // (unlike `u8::is_ascii_whitespace`, it includes U+000B).
                b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => continue,
                b'0'..=b'9' => {
                    if !in_digits {
                        out.byte(b'0');
                        n += 1;
                    }
                    in_digits = true;
                }
                _ => {
                    in_digits = false;
                    out.byte(b.to_ascii_lowercase());
                    n += 1;
                }
            }
        } else {
            let Some(c) = text[i..].chars().next() else { break };
            i += c.len_utf8();
            if c.is_whitespace() {
                continue;
            }
            in_digits = false;
            let mut buf = [0u8; 4];
            for l in c.to_lowercase() {
                for &x in l.encode_utf8(&mut buf).as_bytes() {
                    out.byte(x);
                    n += 1;
                }
            }
        }
        if n >= limit {
            break;
        }
    }
    n
}

/// A message's content, as the fingerprint sees it (the tests' form of
/// what [`Fingerprinter`] is fed part by part).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A text part (decoded to UTF-8).
    Text(String),
    /// Another part: its decoded bytes.
    Bytes(Vec<u8>),
}

/// A fingerprint being computed, one part at a time (so a message's parts
/// need not all be held at once).
#[derive(Debug, Clone)]
pub struct Fingerprinter {
    h: Fnv,
    any: bool,
    /// Normalised text bytes left to hash, over all text parts.
    budget: usize,
}

impl Fingerprinter {
    /// A fingerprint of at most `limit` normalised text bytes.
    pub fn new(limit: usize) -> Fingerprinter {
        Fingerprinter {
            h: Fnv::default(),
            any: false,
            budget: limit,
        }
    }

    /// Adds a text part. With the budget spent a part still adds its first
    /// character ([`normalize`] stops only after one).
    pub fn text(&mut self, t: &str) {
        self.h.write(b"t");
        let n = normalize_into(t, self.budget, &mut self.h);
        self.budget = self.budget.saturating_sub(n);
        self.any |= n > 0;
    }

    /// Adds another part, by all its bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.any |= !b.is_empty();
        self.h.write(b"b");
        self.h.write(b);
    }

    /// The fingerprint; `None` when there was no content at all (an empty
    /// body says nothing about duplication).
    pub fn finish(&self) -> Option<String> {
        self.any.then(|| self.h.hex())
    }
}

/// The fingerprint of the parts; `None` when there is no content at all
/// (an empty body says nothing about duplication).
#[cfg(test)]
pub fn fingerprint(parts: &[Content], limit: usize) -> Option<String> {
    let mut f = Fingerprinter::new(limit);
    for p in parts {
        match p {
            Content::Text(t) => f.text(t),
            Content::Bytes(b) => f.bytes(b),
        }
    }
    f.finish()
}

// ---------------------------------------------------------------- senders

/// Who is counted: `u:<user>` when authenticated, else `ip:<address>` (IPv6
/// by its `prefix`).
pub fn sender_key(authenticated: Option<&str>, client_ip: &str, prefix: u8) -> String {
    if let Some(u) = authenticated.filter(|u| !u.is_empty()) {
        return format!("u:{}", u.to_lowercase());
    }
    match client_ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            let net = std::net::Ipv6Addr::from(u128::from(v6) & mask);
            format!("ip:{net}/{prefix}")
        }
        Ok(IpAddr::V6(v6)) => format!(
            "ip:{}",
            v6.to_ipv4_mapped().map_or(v6.to_string(), |v| v.to_string())
        ),
        Ok(v4) => format!("ip:{v4}"),
        Err(_) => format!("ip:{client_ip}"),
    }
}

/// Why a message is exempt, if it is.
pub fn exemption(cfg: &Config, mail_from: &str, user: Option<&str>, list_ids: &[String]) -> Option<String> {
    let from = mail_from.to_lowercase();
    if !from.is_empty()
        && cfg.exempt_senders.iter().any(|s| {
            let s = s.to_lowercase();
            if s.starts_with('@') {
                from.ends_with(&s)
            } else {
                from == s
            }
        })
    {
        return Some(format!("sender {mail_from}"));
    }
    if let Some(u) = user.filter(|u| cfg.exempt_users.iter().any(|x| x.eq_ignore_ascii_case(u))) {
        return Some(format!("user {u}"));
    }
    for id in list_ids {
        if cfg.exempt_any_list_id {
            return Some("List-Id".into());
        }
        // `Name <list.id.example>` or a bare id.
        let bare = id
            .rsplit_once('<')
            .map_or(id.as_str(), |(_, r)| r.split('>').next().unwrap_or(r))
            .trim()
            .to_lowercase();
        if cfg
            .exempt_list_ids
            .iter()
            .any(|x| x.trim().to_lowercase() == bare)
        {
            return Some(format!("List-Id {bare}"));
        }
    }
    None
}

// ---------------------------------------------------------------- the window

/// The recipients seen for one (sender, fingerprint): hashed address and
/// last-seen time, oldest first. Stored as `hash time` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    entries: Vec<(String, u64)>,
}

impl Seen {
    /// Parses a stored value, dropping entries that left the window
    /// (and lines it cannot read: the value is only ours, but a bad one
    /// must not wedge a sender).
    pub fn parse(value: &str, now: u64, window: u64) -> Seen {
        let entries = value
            .lines()
            .filter_map(|l| {
                let (h, t) = l.split_once(' ')?;
                let t: u64 = t.parse().ok()?;
                (t.saturating_add(window) > now && h.len() == 16).then(|| (h.to_string(), t))
            })
            .collect();
        Seen { entries }
    }

    /// Records `rcpts` at `now`, keeping at most `max` entries (the oldest go).
    pub fn add<'a>(&mut self, rcpts: impl IntoIterator<Item = &'a str>, now: u64, max: usize) {
        for r in rcpts {
            let mut h = Fnv::default();
            h.write(r.trim().to_lowercase().as_bytes());
            let h = h.hex();
            self.entries.retain(|(x, _)| *x != h);
            self.entries.push((h, now));
        }
        let excess = self.entries.len().saturating_sub(max);
        self.entries.drain(..excess);
    }

    /// Distinct recipients in the window.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// The value to store.
    pub fn encode(&self) -> String {
        self.entries.iter().map(|(h, t)| format!("{h} {t}\n")).collect()
    }
}

/// What a count means.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Under the threshold.
    Pass,
    /// Over `threshold`: `450 4.7.1`.
    Tempfail(Reply),
    /// Over `hard_threshold`: `550 5.7.1`.
    Reject(Reply),
}

/// The decision for `count` distinct recipients.
pub fn decide(cfg: &Config, count: usize) -> Decision {
    if count > cfg.hard_threshold {
        Decision::Reject(Reply::reject(
            "5.7.1",
            format!(
                "Bulk mail refused: the same message to {count} recipients (limit {})",
                cfg.hard_threshold
            ),
        ))
    } else if count > cfg.threshold {
        Decision::Tempfail(Reply::tempfail(
            "4.7.1",
            format!(
                "Too many copies of the same message ({count} recipients, limit {}); try again later",
                cfg.threshold
            ),
        ))
    } else {
        Decision::Pass
    }
}

// ---------------------------------------------------------------- hook

/// The message's fingerprint, each part fetched, hashed and dropped in turn.
fn message_fingerprint(msg: &Message, limit: usize) -> Option<String> {
    let mut f = Fingerprinter::new(limit);
    for p in msg.parts() {
        if p.content_type.starts_with("text/") && !p.is_attachment {
            if let Some(t) = msg.part_text(p.index) {
                f.text(&t);
            }
        } else if let Some(b) = msg.part_body(p.index) {
            f.bytes(&b);
        }
    }
    f.finish()
}

struct BulkLimit;

impl Plugin for BulkLimit {
    const NAME: &'static str = "bulk-limit";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Body];

    fn body(env: Envelope, msg: &Message) -> HookResult<Verdict> {
        // Parsed once per instance: the config cannot change while it lives.
        let cfg = poczta_plugin::per_instance(Config::parse)?;
        let conn = &env.connection;
        let user = conn.authenticated.as_deref();
        if let Some(why) = exemption(&cfg, &env.mail_from, user, &msg.header("list-id")) {
            poczta_plugin::debug(format!("exempt: {why}"));
            return Ok(Verdict::Continue);
        }
        let Some(fp) = message_fingerprint(msg, cfg.fingerprint_bytes) else {
            return Ok(Verdict::Continue);
        };
        let sender = sender_key(user, &conn.client_ip, cfg.ipv6_prefix);
        let key = format!("{sender}|{fp}");
        let now = poczta_plugin::now();
        let stored = match kv::get_string(&key) {
            Ok(v) => v.unwrap_or_default(),
            Err(e) => {
                poczta_plugin::warn(format!("kv read failed ({}); not limiting", e.text()));
                return Ok(Verdict::Continue);
            }
        };
        let mut seen = Seen::parse(&stored, now, cfg.window_secs);
        seen.add(env.rcpts.iter().map(String::as_str), now, cfg.max_tracked);
        if let Err(e) = kv::set(&key, seen.encode(), cfg.window_secs) {
            poczta_plugin::warn(format!("kv write failed ({}); not limiting", e.text()));
        }
        let count = seen.count();
        Ok(match decide(&cfg, count) {
            Decision::Pass => Verdict::Continue,
            Decision::Tempfail(r) => {
                poczta_plugin::info(format!("{sender}: {count} recipients of {fp}: tempfail"));
                Verdict::Tempfail(r)
            }
            Decision::Reject(r) => {
                poczta_plugin::info(format!("{sender}: {count} recipients of {fp}: reject"));
                Verdict::Reject(r)
            }
        })
    }
}

poczta_plugin::export_plugin!(BulkLimit);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Config {
        Config::parse(json).unwrap()
    }

    #[test]
    fn normalization_folds_case_space_and_numbers() {
        assert_eq!(
            normalize("Dear  John,\r\n your order 12345 ships", 1000),
            "dearjohn,yourorder0ships"
        );
        assert_eq!(normalize("Order 1 2", 1000), "order0", "white space goes first");
        assert_eq!(normalize("ÉTÉ", 1000), "été");
        assert_eq!(normalize("abcdef", 3), "abc");
        assert_eq!(normalize(" \t\n", 10), "");
    }

    #[test]
    fn fingerprints_match_near_duplicates_only() {
        let a = fingerprint(&[Content::Text("Hello Alice, code 1234\r\n".into())], 1000);
        let b = fingerprint(&[Content::Text("hello  alice,\ncode 98".into())], 1000);
        let c = fingerprint(&[Content::Text("Hello Alice, another text".into())], 1000);
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(fingerprint(&[], 1000), None);
        assert_eq!(fingerprint(&[Content::Text("  \r\n".into())], 1000), None);
        // Attachments count by their bytes.
        let t = Content::Text("see attached".into());
        let x = fingerprint(&[t.clone(), Content::Bytes(b"%PDF-1".to_vec())], 1000);
        let y = fingerprint(&[t.clone(), Content::Bytes(b"%PDF-2".to_vec())], 1000);
        assert_ne!(x, y);
        // Only the first `limit` normalised bytes count.
        let long1 = fingerprint(&[Content::Text(format!("{} tail one", "x".repeat(50)))], 50);
        let long2 = fingerprint(&[Content::Text(format!("{} tail two", "x".repeat(50)))], 50);
        assert_eq!(long1, long2);
        assert_eq!(Fnv::default().hex(), "cbf29ce484222325");
    }

    #[test]
    fn senders() {
        assert_eq!(
            sender_key(Some("Alice@Example.test"), "192.0.2.1", 64),
            "u:alice@example.test"
        );
        assert_eq!(sender_key(None, "192.0.2.1", 64), "ip:192.0.2.1");
        assert_eq!(sender_key(Some(""), "192.0.2.1", 64), "ip:192.0.2.1");
        assert_eq!(
            sender_key(None, "2001:db8:1:2:3:4:5:6", 64),
            "ip:2001:db8:1:2::/64"
        );
        assert_eq!(
            sender_key(None, "2001:db8:1:2:ffff::1", 64),
            sender_key(None, "2001:db8:1:2::9", 64)
        );
        assert_eq!(sender_key(None, "2001:db8::1", 128), "ip:2001:db8::1/128");
        assert_eq!(sender_key(None, "::ffff:192.0.2.7", 64), "ip:192.0.2.7");
    }

    #[test]
    fn exemptions() {
        let c = cfg(
            r#"{"exempt_senders": ["news@shop.test", "@lists.test"], "exempt_users": ["mailer@example.test"]}"#,
        );
        assert!(exemption(&c, "News@Shop.test", None, &[]).is_some());
        assert!(exemption(&c, "owner-x@lists.test", None, &[]).is_some());
        assert!(exemption(&c, "x@notlists.test", None, &[]).is_none());
        assert!(exemption(&c, "a@b.test", Some("mailer@example.test"), &[]).is_some());
        assert!(exemption(&c, "a@b.test", None, &["Any <x.test>".into()]).is_some());
        assert!(exemption(&c, "", None, &[]).is_none());
        let strict = cfg(r#"{"exempt_any_list_id": false, "exempt_list_ids": ["announce.example.test"]}"#);
        assert!(exemption(&strict, "a@b.test", None, &["Spam <spam.test>".into()]).is_none());
        assert!(
            exemption(
                &strict,
                "a@b.test",
                None,
                &["Announce <Announce.Example.test>".into()]
            )
            .is_some()
        );
        assert!(exemption(&strict, "a@b.test", None, &["announce.example.test".into()]).is_some());
    }

    #[test]
    fn sliding_window_of_distinct_recipients() {
        let mut s = Seen::parse("", 1000, 60);
        s.add(["a@x.test", "B@x.test"], 1000, 100);
        s.add(["b@x.test"], 1010, 100);
        assert_eq!(s.count(), 2, "distinct, case-insensitive");
        let stored = s.encode();
        assert_eq!(Seen::parse(&stored, 1050, 60).count(), 2);
        // a@ was last seen at 1000: it leaves the window at 1060; b@ at 1070.
        assert_eq!(Seen::parse(&stored, 1060, 60).count(), 1);
        assert_eq!(Seen::parse(&stored, 1070, 60).count(), 0);
        assert_eq!(
            Seen::parse("garbage\nzz 1\n0123456789abcdef x\n", 0, 60).count(),
            0
        );
        let mut capped = Seen::default();
        capped.add(["1@x", "2@x", "3@x", "4@x"], 5, 3);
        assert_eq!(capped.count(), 3);
    }

    #[test]
    fn thresholds() {
        let c = cfg(r#"{"threshold": 3, "hard_threshold": 5}"#);
        assert!(matches!(decide(&c, 3), Decision::Pass));
        match decide(&c, 4) {
            Decision::Tempfail(r) => assert_eq!((r.code, r.enhanced.as_str()), (450, "4.7.1")),
            d => panic!("{d:?}"),
        }
        assert!(matches!(decide(&c, 5), Decision::Tempfail(_)));
        match decide(&c, 6) {
            Decision::Reject(r) => assert_eq!((r.code, r.enhanced.as_str()), (550, "5.7.1")),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn config_defaults_and_validation() {
        let c = cfg("");
        assert_eq!((c.window_secs, c.threshold, c.hard_threshold), (3600, 50, 200));
        assert!(c.exempt_any_list_id);
        for bad in [
            r#"{"window_secs": 0}"#,
            r#"{"threshold": 0}"#,
            r#"{"threshold": 10, "hard_threshold": 5}"#,
            r#"{"hard_threshold": 5000}"#,
            r#"{"ipv6_prefix": 129}"#,
            r#"{"thresold": 3}"#,
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }

    /// `normalize` and `fingerprint` as they were before the streaming,
    /// byte-wise rewrite: the stored fingerprints must not change.
    fn old_normalize(text: &str, limit: usize) -> String {
        let mut out = String::with_capacity(text.len().min(limit));
        let mut in_digits = false;
        for c in text.chars() {
            if c.is_whitespace() {
                continue;
            }
            if c.is_ascii_digit() {
                if !in_digits {
                    out.push('0');
                }
                in_digits = true;
            } else {
                in_digits = false;
                out.extend(c.to_lowercase());
            }
            if out.len() >= limit {
                break;
            }
        }
        out
    }

    fn old_fingerprint(parts: &[Content], limit: usize) -> Option<String> {
        let mut h = Fnv::default();
        let mut any = false;
        let mut budget = limit;
        for p in parts {
            match p {
                Content::Text(t) => {
                    let n = old_normalize(t, budget);
                    budget = budget.saturating_sub(n.len());
                    any |= !n.is_empty();
                    h.write(b"t");
                    h.write(n.as_bytes());
                }
                Content::Bytes(b) => {
                    any |= !b.is_empty();
                    h.write(b"b");
                    h.write(b);
                }
            }
        }
        any.then(|| h.hex())
    }

    #[test]
    fn normalization_agrees_with_the_char_wise_original() {
        // Every ASCII character (white space by `char`'s rules: VT is in,
        // the separators U+001C..U+001F are not), and non-ASCII white space,
        // digits, multi-byte and expanding lower cases.
        let ascii: String = (0u8..128).map(char::from).collect();
        let samples = [
            ascii.as_str(),
            "a\u{0b}b\u{1c}c\u{85}d\u{a0}e\u{2003}f\u{3000}g",
            "12 34\u{a0}56 x7 \u{0663}\u{0664} 8",
            "ÉTÉ İstanbul ΣΑΣ ß Ǆ ﬁ",
            "\u{130}\u{130}\u{130}\u{130}",
            "",
            "   ",
        ];
        for text in samples {
            for limit in 0..text.len() + 3 {
                assert_eq!(
                    normalize(text, limit),
                    old_normalize(text, limit),
                    "{text:?} {limit}"
                );
            }
        }
    }

    #[test]
    fn fingerprints_of_large_texts_agree_with_the_original() {
        let big = bench_text(100 << 10);
        let mixed = format!(
            "{}\r\nÉTÉ 2024 İ \u{a0} Ünïcödé\r\n{}",
            bench_text(40 << 10),
            bench_text(40 << 10)
        );
        let parts_sets = [
            vec![Content::Text(big.clone())],
            vec![Content::Text(mixed.clone())],
            vec![
                Content::Text(big.clone()),
                Content::Bytes(b"%PDF-1.7 ...".to_vec()),
                Content::Text("  After the budget: still its first character".into()),
                Content::Text("\u{130} expands".into()),
            ],
            vec![
                Content::Text(mixed),
                Content::Text(big),
                Content::Bytes(Vec::new()),
            ],
        ];
        for parts in &parts_sets {
            for limit in [1, 77, 1000, 64 << 10, 1 << 20] {
                assert_eq!(
                    fingerprint(parts, limit),
                    old_fingerprint(parts, limit),
                    "limit {limit}"
                );
            }
        }
        // Pinned (checked independently), so a change to the hash itself shows too.
        assert_eq!(
            fingerprint(&[Content::Text(bench_text(100 << 10))], 64 << 10).as_deref(),
            Some("1184b163f754c2a3")
        );
    }

    /// The benchmark's message text: CRLF lines of 78 characters.
    fn bench_text(size: usize) -> String {
        let phrase =
            "The quick brown fox jumps over the lazy dog. 0123456789 PACK MY BOX WITH FIVE DOZEN JUGS! ";
        let mut chars = phrase.chars().cycle();
        let mut out = String::with_capacity(size + 80);
        while out.len() < size {
            out.extend(chars.by_ref().take(78));
            out.push_str("\r\n");
        }
        out
    }

    /// Per-message cost, natively (a proxy for the wasm cost):
    /// `cargo test --release -p bulk-limit -- --ignored --nocapture measure`.
    #[test]
    #[ignore]
    fn measure_fingerprint_cost() {
        use std::time::Instant;
        for size in [2 << 10, 100 << 10] {
            let text = bench_text(size);
            let iters = if size < 10_000 { 2000 } else { 200 };
            // What the hook does per message (the clone stands for the copy
            // `part-text` makes).
            let t = Instant::now();
            for _ in 0..iters {
                let cfg = poczta_plugin::per_config_text("{}", Config::parse).unwrap();
                let mut f = Fingerprinter::new(cfg.fingerprint_bytes);
                f.text(&text.clone());
                assert!(f.finish().is_some());
            }
            let hook = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
            let parts = vec![Content::Text(text.clone())];
            let t = Instant::now();
            for _ in 0..iters {
                assert!(fingerprint(&parts, 64 << 10).is_some());
            }
            let fp = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
            println!(
                "bulk-limit {} KB: per message {hook:.1} µs, fingerprint only {fp:.1} µs",
                size >> 10
            );
        }
    }
}
