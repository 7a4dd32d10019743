//! Turning what plugins return into host decisions: reply-class checks,
//! the default replies, recipient redirects, and the score thresholds with
//! the summary headers.
//!
//! A plugin can never make the host send a reply outside its verdict's
//! class: `reject` is 5xx, `tempfail` 4xx, `disconnect` 421 or 5xx. A code
//! outside the class replaces the whole reply with the class default (with
//! a warning); a bad or mismatched enhanced code is replaced by the class
//! default enhanced code; text loses control characters and is cut to
//! [`MAX_REPLY_TEXT`].

use super::bindings::types::{Delivery, Reply, Verdict};
use super::{Decision, Folder, Hook, PluginReply, ScoreThresholds, Symbol};

/// Longest reply text kept (an SMTP reply line is at most 512 octets).
pub const MAX_REPLY_TEXT: usize = 400;
/// Longest quarantine reason kept.
pub const MAX_REASON: usize = 200;
/// Most redirect targets for one recipient.
pub const MAX_REDIRECTS: usize = 100;

/// Which verdict a reply belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyClass {
    Reject,
    Tempfail,
    Disconnect,
}

impl ReplyClass {
    /// The host default for this class.
    pub fn default_reply(self) -> PluginReply {
        let (code, enhanced, text) = match self {
            ReplyClass::Reject => (550, "5.7.1", "Rejected by policy"),
            ReplyClass::Tempfail => (451, "4.7.1", "Try again later"),
            ReplyClass::Disconnect => (421, "4.7.0", "Closing connection"),
        };
        PluginReply {
            code,
            enhanced: enhanced.into(),
            text: text.into(),
        }
    }

    fn accepts(self, code: u16) -> bool {
        let valid = (400..=599).contains(&code) && (code / 10) % 10 <= 5;
        valid
            && match self {
                ReplyClass::Reject => code >= 500,
                ReplyClass::Tempfail => code < 500,
                ReplyClass::Disconnect => code == 421 || code >= 500,
            }
    }
}

/// The reply used when a plugin fails and its policy is tempfail.
pub fn failure_reply() -> PluginReply {
    PluginReply {
        code: 451,
        enhanced: "4.7.1".into(),
        text: "Temporary policy failure, try again later".into(),
    }
}

/// Validates a plugin's reply for `class`; `warn` receives each refusal.
pub fn validate_reply(reply: Reply, class: ReplyClass, mut warn: impl FnMut(String)) -> PluginReply {
    let default = class.default_reply();
    if !class.accepts(reply.code) {
        warn(format!(
            "reply code {} is not valid for {class:?}; using {} {}",
            reply.code, default.code, default.enhanced
        ));
        return default;
    }
    let class_digit = char::from(b'0' + (reply.code / 100) as u8);
    let enhanced = reply.enhanced.trim();
    let enhanced = if enhanced.is_empty() {
        default_enhanced(reply.code)
    } else if valid_enhanced(enhanced, class_digit) {
        enhanced.to_string()
    } else {
        let fallback = default_enhanced(reply.code);
        warn(format!(
            "enhanced code {enhanced:?} does not match reply code {}; using {fallback}",
            reply.code
        ));
        fallback
    };
    let text = clean_line(&reply.text, MAX_REPLY_TEXT);
    PluginReply {
        code: reply.code,
        enhanced,
        text: if text.is_empty() { default.text } else { text },
    }
}

fn default_enhanced(code: u16) -> String {
    match code {
        421 => "4.7.0".into(),
        c if c >= 500 => "5.7.1".into(),
        _ => "4.7.1".into(),
    }
}

/// RFC 3463 `class.subject.detail`, class matching the reply's first digit.
fn valid_enhanced(s: &str, class_digit: char) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts[0].len() == 1
        && parts[0].starts_with(class_digit)
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// One line: control characters (CR, LF, …) removed, trimmed, cut at a
/// char boundary.
pub fn clean_line(s: &str, max: usize) -> String {
    let cleaned: String = s.chars().filter(|c| !c.is_control()).collect();
    truncate(cleaned.trim(), max).to_string()
}

/// Cuts `s` to at most `max` bytes at a char boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A plugin verdict as a host decision. `discard` is only meaningful from
/// `headers` and `body`; elsewhere it acts as reject (WIT contract).
pub fn decision(v: Verdict, hook: Hook, mut warn: impl FnMut(String)) -> Decision {
    match v {
        Verdict::Continue => Decision::Continue,
        Verdict::Accept => Decision::Accept,
        Verdict::Reject(r) => Decision::Reject(validate_reply(r, ReplyClass::Reject, &mut warn)),
        Verdict::Tempfail(r) => Decision::Tempfail(validate_reply(r, ReplyClass::Tempfail, &mut warn)),
        Verdict::Disconnect(r) => Decision::Disconnect(validate_reply(r, ReplyClass::Disconnect, &mut warn)),
        Verdict::Discard if matches!(hook, Hook::Headers | Hook::Body) => Decision::Discard,
        Verdict::Discard => {
            warn(format!("discard is not allowed in {hook}; rejecting instead"));
            Decision::Reject(ReplyClass::Reject.default_reply())
        }
        Verdict::Quarantine(reason) => Decision::Quarantine(reason_or_default(&reason)),
    }
}

fn reason_or_default(reason: &str) -> String {
    let reason = clean_line(reason, MAX_REASON);
    if reason.is_empty() {
        "quarantined by policy".into()
    } else {
        reason
    }
}

/// Validates redirect targets: not empty, at most [`MAX_REDIRECTS`], each a
/// plausible address (no white space, controls or angle brackets, ≤ 320
/// bytes, one `@` with both sides non-empty). Duplicates are dropped.
pub fn redirect_targets(list: Vec<String>) -> Result<Vec<String>, String> {
    if list.is_empty() {
        return Err("redirect with an empty list".into());
    }
    if list.len() > MAX_REDIRECTS {
        return Err(format!(
            "redirect to {} addresses (max {MAX_REDIRECTS})",
            list.len()
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for addr in list {
        let addr = addr.trim().to_string();
        let ok = addr.len() <= 320
            && !addr
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
            && matches!(addr.rsplit_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty());
        if !ok {
            return Err(format!("invalid redirect address {:?}", truncate(&addr, 80)));
        }
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

/// A delivery verdict as a folder; `None` for continue.
pub fn folder(d: Delivery) -> Option<Folder> {
    match d {
        Delivery::Continue => None,
        Delivery::Inbox => Some(Folder::Inbox),
        Delivery::Junk => Some(Folder::Junk),
        Delivery::Quarantine(reason) => Some(Folder::Quarantine(reason_or_default(&reason))),
        Delivery::Discard => Some(Folder::Discard),
    }
}

/// A score for headers and replies: two decimals at most, at least one
/// (`7.5`, `2.0`, `0.25`).
pub fn fmt_score(x: f64) -> String {
    let x = if x == 0.0 { 0.0 } else { x }; // no "-0.0"
    let s = format!("{x:.2}");
    match s.strip_suffix('0') {
        Some(t) if !t.ends_with('.') => t.to_string(),
        _ => s,
    }
}

/// What the thresholds make of a score.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreAction {
    pub junk: bool,
    pub reject: Option<PluginReply>,
    /// X-Spam-* and X-Poczta-Score headers, in that order.
    pub headers: Vec<(String, String)>,
}

/// Applies `thresholds` to `symbols`. `summary`: whether to write the
/// `X-Poczta-Score` header.
pub fn score_action(symbols: &[Symbol], thresholds: &ScoreThresholds, summary: bool) -> (f64, ScoreAction) {
    // `+ 0.0` turns the empty sum's -0.0 into 0.0.
    let score: f64 = symbols.iter().map(|s| s.weight).sum::<f64>() + 0.0;
    let at = |t: Option<f64>| t.is_some_and(|t| score >= t);
    let junk = at(thresholds.junk);
    let mut headers = Vec::new();
    if at(thresholds.add_header) {
        headers.push(("X-Spam-Score".to_string(), fmt_score(score)));
        let required = thresholds
            .junk
            .map(|j| format!(" required={}", fmt_score(j)))
            .unwrap_or_default();
        headers.push((
            "X-Spam-Status".to_string(),
            format!(
                "{}, score={}{required}",
                if junk { "Yes" } else { "No" },
                fmt_score(score)
            ),
        ));
        headers.push((
            "X-Spam-Flag".to_string(),
            if junk { "YES" } else { "NO" }.to_string(),
        ));
    }
    if summary {
        let list: Vec<String> = symbols
            .iter()
            .map(|s| format!("{}={}", s.name, fmt_score(s.weight)))
            .collect();
        let value = if list.is_empty() {
            fmt_score(score)
        } else {
            format!("{} ({})", fmt_score(score), list.join(", "))
        };
        headers.push(("X-Poczta-Score".to_string(), value));
    }
    let reject = at(thresholds.reject).then(|| PluginReply {
        code: 550,
        enhanced: "5.7.1".into(),
        text: format!("Message rejected as spam (score {})", fmt_score(score)),
    });
    (
        score,
        ScoreAction {
            junk,
            reject,
            headers,
        },
    )
}

/// Whether a plugin may add a header with this name: RFC 5322 field-name
/// characters, ≤ 76 bytes, and not one of the host's own score headers.
pub fn valid_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 76 || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(format!("invalid header name {:?}", truncate(name, 80)));
    }
    if is_reserved_header(name) {
        return Err(format!("header {name} is reserved for the host"));
    }
    Ok(())
}

/// Headers only the host writes (and strips from incoming mail).
pub fn is_reserved_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("x-spam-") || lower == "x-poczta-score"
}

/// A header value: no CR, LF or other controls (tab allowed), ≤ 900 bytes
/// so `name: value` fits a 998-octet line.
pub fn valid_header_value(value: &str) -> Result<(), String> {
    if value.len() > 900 {
        return Err(format!("header value of {} bytes (max 900)", value.len()));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err("header value contains control characters".into());
    }
    Ok(())
}

/// A symbol name: 1–64 of `A-Z a-z 0-9 _ . -`.
pub fn valid_symbol(name: &str, weight: f64) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return Err(format!("invalid symbol name {:?}", truncate(name, 80)));
    }
    if !weight.is_finite() || weight.abs() > 1000.0 {
        return Err(format!(
            "symbol {name}: weight {weight} is not a finite number within ±1000"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, enhanced: &str, text: &str) -> Reply {
        Reply {
            code,
            enhanced: enhanced.into(),
            text: text.into(),
        }
    }

    #[test]
    fn reply_outside_class_gets_class_default() {
        let mut warnings = Vec::new();
        let r = validate_reply(reply(250, "2.0.0", "ok"), ReplyClass::Reject, |w| {
            warnings.push(w)
        });
        assert_eq!((r.code, r.enhanced.as_str()), (550, "5.7.1"));
        let r = validate_reply(reply(550, "5.7.1", "x"), ReplyClass::Tempfail, |w| {
            warnings.push(w)
        });
        assert_eq!((r.code, r.enhanced.as_str()), (451, "4.7.1"));
        let r = validate_reply(reply(450, "4.7.1", "x"), ReplyClass::Disconnect, |w| {
            warnings.push(w)
        });
        assert_eq!((r.code, r.enhanced.as_str()), (421, "4.7.0"));
        let r = validate_reply(reply(599, "", "x"), ReplyClass::Reject, |w| warnings.push(w));
        assert_eq!(r.code, 550, "x9x is not a reply code");
        assert_eq!(warnings.len(), 4);
    }

    #[test]
    fn valid_replies_are_kept_and_cleaned() {
        let mut warnings = Vec::new();
        let r = validate_reply(reply(554, "5.7.0", "go\r\naway\x07 "), ReplyClass::Reject, |w| {
            warnings.push(w)
        });
        assert_eq!(
            r,
            PluginReply {
                code: 554,
                enhanced: "5.7.0".into(),
                text: "goaway".into()
            }
        );
        let r = validate_reply(reply(421, "", ""), ReplyClass::Disconnect, |w| warnings.push(w));
        assert_eq!(
            (r.code, r.enhanced.as_str(), r.text.as_str()),
            (421, "4.7.0", "Closing connection")
        );
        let r = validate_reply(reply(553, "5.1.3", "bad"), ReplyClass::Disconnect, |w| {
            warnings.push(w)
        });
        assert_eq!(r.code, 553);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn mismatched_enhanced_code_is_replaced() {
        let mut warnings = Vec::new();
        let r = validate_reply(reply(550, "4.7.1", "x"), ReplyClass::Reject, |w| warnings.push(w));
        assert_eq!(r.enhanced, "5.7.1");
        let r = validate_reply(reply(451, "4.7", "x"), ReplyClass::Tempfail, |w| warnings.push(w));
        assert_eq!(r.enhanced, "4.7.1");
        let r = validate_reply(reply(451, "4.1234.1", "x"), ReplyClass::Tempfail, |w| {
            warnings.push(w)
        });
        assert_eq!(r.enhanced, "4.7.1");
        assert_eq!(warnings.len(), 3);
    }

    #[test]
    fn discard_outside_data_hooks_rejects() {
        assert_eq!(decision(Verdict::Discard, Hook::Body, |_| {}), Decision::Discard);
        assert!(
            matches!(decision(Verdict::Discard, Hook::Rcpt, |_| {}), Decision::Reject(r) if r.code == 550)
        );
        assert_eq!(
            decision(Verdict::Quarantine(" \r\n".into()), Hook::Headers, |_| {}),
            Decision::Quarantine("quarantined by policy".into())
        );
    }

    #[test]
    fn redirects_are_validated() {
        assert!(redirect_targets(vec![]).is_err());
        assert!(redirect_targets(vec!["a b@x".into()]).is_err());
        assert!(redirect_targets(vec!["nobody".into()]).is_err());
        assert!(redirect_targets(vec!["<a@x>".into()]).is_err());
        assert_eq!(
            redirect_targets(vec!["a@x".into(), " a@x".into(), "b@y".into()]).unwrap(),
            vec!["a@x", "b@y"]
        );
    }

    #[test]
    fn scores_format() {
        assert_eq!(fmt_score(7.5), "7.5");
        assert_eq!(fmt_score(2.0), "2.0");
        assert_eq!(fmt_score(0.25), "0.25");
        assert_eq!(fmt_score(-0.0), "0.0");
        assert_eq!(fmt_score(-1.5), "-1.5");
        assert_eq!(fmt_score(1.0 / 3.0), "0.33");
    }

    fn sym(name: &str, weight: f64) -> Symbol {
        Symbol {
            plugin: "p".into(),
            name: name.into(),
            weight,
            description: String::new(),
        }
    }

    #[test]
    fn thresholds_map_scores_to_actions() {
        let t = ScoreThresholds::default(); // 5, 6, 15
        let (score, a) = score_action(&[sym("A", 2.0), sym("B", 2.5)], &t, true);
        assert_eq!(score, 4.5);
        assert!(!a.junk && a.reject.is_none());
        assert_eq!(
            a.headers,
            vec![("X-Poczta-Score".into(), "4.5 (A=2.0, B=2.5)".into())]
        );

        let (_, a) = score_action(&[sym("A", 5.5)], &t, true);
        assert!(!a.junk);
        let names: Vec<&str> = a.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["X-Spam-Score", "X-Spam-Status", "X-Spam-Flag", "X-Poczta-Score"]
        );
        assert_eq!(a.headers[1].1, "No, score=5.5 required=6.0");
        assert_eq!(a.headers[2].1, "NO");

        let (_, a) = score_action(&[sym("A", 7.5)], &t, false);
        assert!(a.junk && a.reject.is_none());
        assert_eq!(a.headers[2].1, "YES");
        assert_eq!(a.headers.len(), 3);

        let (_, a) = score_action(&[sym("A", 10.0), sym("B", 5.0)], &t, true);
        let r = a.reject.unwrap();
        assert_eq!(
            (r.code, r.enhanced.as_str(), r.text.as_str()),
            (550, "5.7.1", "Message rejected as spam (score 15.0)")
        );

        let off = ScoreThresholds {
            add_header: None,
            junk: None,
            reject: None,
        };
        let (_, a) = score_action(&[sym("A", 100.0)], &off, false);
        assert!(!a.junk && a.reject.is_none() && a.headers.is_empty());
    }

    #[test]
    fn header_and_symbol_checks() {
        assert!(valid_header_name("X-Plugin-Tag").is_ok());
        assert!(valid_header_name("Bad Name").is_err());
        assert!(valid_header_name("X-Spam-Flag").is_err());
        assert!(valid_header_name("x-poczta-score").is_err());
        assert!(valid_header_value("a\tb").is_ok());
        assert!(valid_header_value("a\r\nBcc: evil@x").is_err());
        assert!(valid_symbol("MISSING_DATE", 1.0).is_ok());
        assert!(valid_symbol("bad name", 1.0).is_err());
        assert!(valid_symbol("A", f64::NAN).is_err());
        assert!(valid_symbol("A", 1e9).is_err());
    }
}
