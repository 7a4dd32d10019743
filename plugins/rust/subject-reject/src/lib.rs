//! `subject-reject`: refuses a message whose Subject contains a configured word.
//!
//! Hook: `headers`. It reads the RFC 2047-decoded Subject and, if it contains
//! any of the configured words (case-insensitive, Unicode lower-casing), it
//! answers
//!
//! ```text
//! 550 5.7.1 Message rejected: subject contains '<word>'
//! ```
//!
//! (the word as written in the config; the first matching word in config
//! order). Otherwise, or without a Subject, it continues.
//!
//! Config (all optional):
//!
//! ```toml
//! config = { words = ["viagra"], code = 550 }
//! ```
//!
//! * `words`: the words to look for; empty words are ignored. Default: none.
//! * `code`: the reply code, default 550. A 5xx code rejects (`5.7.1`); a 4xx
//!   code tempfails instead (`450 4.7.1 …`); any other code is a config error
//!   (the hook returns `Err`, so the plugin's `on_error` policy applies).

use poczta_plugin::{Envelope, Hook, HookResult, Message, Plugin, Reply, Verdict};

/// The plugin's config.
#[derive(serde::Deserialize, Debug)]
#[serde(default)]
pub struct Config {
    /// Words that get a message refused.
    pub words: Vec<String>,
    /// The SMTP reply code (4xx or 5xx).
    pub code: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            words: Vec::new(),
            code: 550,
        }
    }
}

/// The first configured word found in `subject`, case-insensitively.
pub fn find_word<'a>(subject: &str, words: &'a [String]) -> Option<&'a str> {
    let subject = subject.to_lowercase();
    words
        .iter()
        .filter(|w| !w.trim().is_empty())
        .find(|w| subject.contains(&w.to_lowercase()))
        .map(String::as_str)
}

/// The verdict for `subject` under `cfg`.
pub fn decide(subject: Option<&str>, cfg: &Config) -> HookResult<Verdict> {
    let Some(subject) = subject else {
        return Ok(Verdict::Continue);
    };
    let Some(word) = find_word(subject, &cfg.words) else {
        return Ok(Verdict::Continue);
    };
    let text = format!("Message rejected: subject contains '{word}'");
    match cfg.code {
        500..=599 => Ok(Verdict::Reject(Reply::new(cfg.code, "5.7.1", text))),
        400..=499 => Ok(Verdict::Tempfail(Reply::new(cfg.code, "4.7.1", text))),
        other => Err(format!(
            "subject-reject: config code {other} is not a 4xx or 5xx code"
        )),
    }
}

struct SubjectReject;

impl Plugin for SubjectReject {
    const NAME: &'static str = "subject-reject";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Headers];

    fn headers(_env: Envelope, msg: &Message) -> HookResult<Verdict> {
        let cfg: Config = poczta_plugin::config()?;
        decide(msg.subject().as_deref(), &cfg)
    }
}

poczta_plugin::export_plugin!(SubjectReject);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Config {
        poczta_plugin::parse_config(json).unwrap()
    }

    #[test]
    fn defaults() {
        let c = cfg("{}");
        assert!(c.words.is_empty());
        assert_eq!(c.code, 550);
        assert!(poczta_plugin::parse_config::<Config>(r#"{"words": "x"}"#).is_err());
    }

    #[test]
    fn matches_case_insensitively() {
        let words = vec!["viagra".to_string(), "Casino".to_string()];
        assert_eq!(find_word("Cheap VIAGRA now", &words), Some("viagra"));
        assert_eq!(find_word("best casino deals", &words), Some("Casino"));
        assert_eq!(find_word("Meeting at noon", &words), None);
        assert_eq!(find_word("ŻÓŁW viagra", &["żółw".to_string()]), Some("żółw"));
        assert_eq!(find_word("anything", &["".to_string(), " ".to_string()]), None);
    }

    #[test]
    fn rejects_with_configured_code() {
        let c = cfg(r#"{"words": ["viagra"], "code": 550}"#);
        match decide(Some("Buy Viagra"), &c).unwrap() {
            Verdict::Reject(r) => {
                assert_eq!(r.code, 550);
                assert_eq!(r.enhanced, "5.7.1");
                assert_eq!(r.text, "Message rejected: subject contains 'viagra'");
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(decide(Some("hello"), &c), Ok(Verdict::Continue)));
        assert!(matches!(decide(None, &c), Ok(Verdict::Continue)));
    }

    #[test]
    fn other_codes() {
        let c = cfg(r#"{"words": ["x"], "code": 451}"#);
        assert!(matches!(
            decide(Some("x"), &c),
            Ok(Verdict::Tempfail(Reply { code: 451, .. }))
        ));
        let c = cfg(r#"{"words": ["x"], "code": 250}"#);
        assert!(decide(Some("x"), &c).is_err());
        assert!(decide(Some("y"), &c).is_ok());
    }
}
