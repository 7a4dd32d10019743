//! `spam-rules`: an rspamd/SpamAssassin-style scorer with a naive-Bayes
//! classifier whose token counts live in the key-value store.
//!
//! Hooks: `headers` (the header rules of [`rules::header_rules`]) and `body`
//! (the body rules, the forbidden phrases and Bayes). Each rule that fires
//! adds a symbol with its configured weight; the host's `[scores]`
//! thresholds turn the sum into tag / junk / reject.
//!
//! Training: with `bayes_train = "spam"` or `"ham"` in its config the body
//! hook adds the message's tokens to the store instead of scoring (that is
//! what `poczta plugin train` does). See README.md here for the config.

pub mod bayes;
pub mod mail;
pub mod mime;
pub mod rules;

#[cfg(test)]
mod reference;

use std::collections::{BTreeMap, BTreeSet};

use poczta_plugin::{Envelope, Hook, HookResult, HostError, Message, Plugin, Verdict, assets, kv};
use serde::Deserialize;

use mail::{MailView, Part};

/// The default weight of every symbol.
pub const DEFAULT_WEIGHTS: &[(&str, f64)] = &[
    ("MISSING_DATE", 1.0),
    ("INVALID_DATE", 1.5),
    ("DATE_IN_FUTURE", 2.0),
    ("DATE_IN_PAST", 1.0),
    ("MISSING_MID", 1.0),
    ("INVALID_MSGID", 0.5),
    ("MISSING_FROM", 2.0),
    ("FROM_NAME_HAS_ADDR", 2.5),
    ("FROM_NAME_DOMAIN_MISMATCH", 2.0),
    ("REPLYTO_DOM_NEQ_FROM_DOM", 1.5),
    ("SUBJ_ALL_CAPS", 1.5),
    ("SUBJ_EXCESS_PUNCT", 1.5),
    ("RCVD_NONE", 1.0),
    ("RCVD_MALFORMED", 1.0),
    ("MIME_HTML_ONLY", 1.0),
    ("HTML_HIDDEN_TEXT", 2.0),
    ("MANY_URLS", 1.0),
    ("URL_IP_HOST", 2.0),
    ("HTML_LINK_TEXT_MISMATCH", 2.5),
    ("FORBIDDEN_PHRASE", 1.0),
    ("TEXT_B64_NO_REASON", 1.0),
    ("BAYES_SPAM", 4.0),
    ("BAYES_HAM", -3.0),
];

/// Phrases used when neither the config nor an asset gives any (and
/// `default_phrases` is on).
pub const BUILTIN_PHRASES: &str = include_str!("../phrases.txt");

/// The Bayes part of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BayesConfig {
    /// Classify at all.
    pub enabled: bool,
    /// Spam messages trained before Bayes scores.
    pub min_spam: u64,
    /// Ham messages trained before Bayes scores.
    pub min_ham: u64,
    /// The most significant tokens combined per message.
    pub max_tokens: usize,
}

impl Default for BayesConfig {
    fn default() -> Self {
        BayesConfig {
            enabled: true,
            min_spam: 20,
            min_ham: 20,
            max_tokens: 150,
        }
    }
}

/// The plugin's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Symbol → weight, over [`DEFAULT_WEIGHTS`]; 0 turns a rule off.
    pub weights: BTreeMap<String, f64>,
    /// Hours ahead a Date may be before `DATE_IN_FUTURE`.
    pub date_future_hours: u64,
    /// Days back a Date may be before `DATE_IN_PAST`.
    pub date_past_days: u64,
    /// Distinct link hosts allowed before `MANY_URLS`.
    pub many_urls: usize,
    /// Extra forbidden phrases.
    pub phrases: Vec<String>,
    /// The asset holding more phrases (read with the `assets` grant).
    pub phrases_asset: String,
    /// Use the built-in phrase list when no asset is readable.
    pub default_phrases: bool,
    /// The most `FORBIDDEN_PHRASE` may add, however many phrases match.
    pub phrases_max: f64,
    /// Bayes settings.
    pub bayes: BayesConfig,
    /// Training mode (set by `poczta plugin train`): `"spam"` or `"ham"`.
    pub bayes_train: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            weights: BTreeMap::new(),
            date_future_hours: 12,
            date_past_days: 7,
            many_urls: 10,
            phrases: Vec::new(),
            phrases_asset: "phrases".into(),
            default_phrases: true,
            phrases_max: 4.0,
            bayes: BayesConfig::default(),
            bayes_train: None,
        }
    }
}

impl Config {
    /// The weight of a symbol (config over defaults; unknown = 0).
    pub fn weight(&self, symbol: &str) -> f64 {
        self.weights.get(symbol).copied().unwrap_or_else(|| {
            DEFAULT_WEIGHTS
                .iter()
                .find(|(s, _)| *s == symbol)
                .map(|(_, w)| *w)
                .unwrap_or(0.0)
        })
    }

    /// The rule tunables.
    pub fn limits(&self) -> rules::Limits {
        rules::Limits {
            future_secs: self.date_future_hours as i64 * 3600,
            past_secs: self.date_past_days as i64 * 86400,
            many_urls: self.many_urls,
        }
    }

    /// Training mode: `Some(true)` spam, `Some(false)` ham.
    pub fn training(&self) -> Result<Option<bool>, String> {
        match self.bayes_train.as_deref() {
            None => Ok(None),
            Some("spam") => Ok(Some(true)),
            Some("ham") => Ok(Some(false)),
            Some(other) => Err(format!("bayes_train must be \"spam\" or \"ham\", not {other:?}")),
        }
    }

    /// Checks what serde cannot: symbol names in `weights`.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(unknown) = self
            .weights
            .keys()
            .find(|k| !DEFAULT_WEIGHTS.iter().any(|(s, _)| s == k))
        {
            return Err(format!("weights: unknown symbol {unknown:?}"));
        }
        self.training().map(|_| ())
    }
}

/// A symbol to add: name, weight, description.
pub type Symbol = (&'static str, f64, String);

/// Weighs rule hits; rules with weight 0 are dropped.
pub fn weigh(cfg: &Config, hits: Vec<rules::Hit>) -> Vec<Symbol> {
    hits.into_iter()
        .map(|h| (h.symbol, cfg.weight(h.symbol) * f64::from(h.count), h.description))
        .filter(|(_, w, _)| *w != 0.0)
        .collect()
}

/// The `FORBIDDEN_PHRASE` symbol for the phrases found, weight per phrase
/// capped at `phrases_max`.
pub fn phrase_symbol(cfg: &Config, found: &[&str]) -> Option<Symbol> {
    if found.is_empty() {
        return None;
    }
    let w = (cfg.weight("FORBIDDEN_PHRASE") * found.len() as f64).min(cfg.phrases_max);
    let mut list = found.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if found.len() > 5 {
        list.push_str(", …");
    }
    (w != 0.0).then(|| ("FORBIDDEN_PHRASE", w, format!("forbidden phrases: {list}")))
}

/// The Bayes symbol for probability `p`, if Bayes knows enough.
pub fn bayes_symbol(cfg: &Config, p: f64, nspam: u64, nham: u64) -> Option<Symbol> {
    if nspam < cfg.bayes.min_spam || nham < cfg.bayes.min_ham {
        return None;
    }
    let (symbol, fraction) = bayes::band(p)?;
    let w = cfg.weight(symbol) * fraction;
    (w != 0.0).then(|| (symbol, w, format!("Bayes spam probability {:.1}%", p * 100.0)))
}

/// What an instance derives from its config once: the validated config,
/// the rule tunables and the compiled phrase list.
pub struct State {
    /// The config.
    pub cfg: Config,
    /// `cfg.limits()`.
    pub limits: rules::Limits,
    /// `cfg.training()`.
    pub training: Option<bool>,
    /// The phrase list: the config's, then the asset's or the built-in one.
    pub phrases: Vec<String>,
    /// `phrases` compiled.
    pub matcher: rules::PhraseMatcher,
}

impl State {
    /// Parses and validates a config text.
    pub fn config(json: &str) -> Result<Config, String> {
        let cfg: Config = poczta_plugin::parse_config(json)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The state for a validated config and its phrase list.
    pub fn new(cfg: Config, phrases: Vec<String>) -> Result<State, String> {
        Ok(State {
            limits: cfg.limits(),
            training: cfg.training()?,
            matcher: rules::PhraseMatcher::new(&phrases),
            phrases,
            cfg,
        })
    }

    /// The phrase list entries found in the Subject and the body pieces,
    /// read as `Subject \n body_text` (see [`mail::MailView::body_text`]).
    pub fn phrase_hits(&self, subject: &str, pieces: &[mail::Piece]) -> Vec<&str> {
        let texts = std::iter::once(subject).chain(pieces.iter().map(|p| &*p.text));
        self.matcher
            .find(texts)
            .into_iter()
            .map(|i| self.phrases[i].as_str())
            .collect()
    }

    /// What the `body` hook adds when not training, but Bayes, which needs
    /// the kv store.
    pub fn body_symbols(&self, m: &MailView, pieces: &[mail::Piece]) -> Vec<Symbol> {
        let mut symbols = weigh(&self.cfg, rules::body_rules_on(m, pieces, &self.limits));
        let subject = m.subject.as_deref().unwrap_or("");
        symbols.extend(phrase_symbol(&self.cfg, &self.phrase_hits(subject, pieces)));
        symbols
    }
}

// ---------------------------------------------------------------- host glue

/// The instance's [`State`]: built on its first hook call (the asset is
/// read then), kept while the instance serves transactions.
fn state() -> HookResult<std::rc::Rc<State>> {
    poczta_plugin::per_instance(|json| {
        let cfg = State::config(json)?;
        let list = phrases(&cfg);
        State::new(cfg, list)
    })
}

/// The header fields, decoded Subject and From: all the header rules read.
fn header_view(env: &Envelope, msg: &Message) -> MailView {
    let mut m = MailView {
        subject: msg.subject(),
        listener: env.connection.listener.clone(),
        now: poczta_plugin::now(),
        ..MailView::default()
    };
    (m.headers, m.from) = header_fields(msg);
    m
}

/// Every header field and the decoded From, for [`MailView::headers`] and
/// [`MailView::from`].
fn header_fields(msg: &Message) -> (Vec<(String, String)>, Option<String>) {
    let headers = msg.headers().into_iter().map(|h| (h.name, h.value)).collect();
    (headers, msg.header_decoded("from"))
}

/// The parts and the Subject: what the phrases and Bayes read. Left out:
/// the raw message, which only the body rules read (the `body` hook adds
/// it when it scores); the header fields ([`header_fields`] adds them for
/// Bayes, which reads a few); the texts of attachments, which nothing reads.
fn body_view(env: &Envelope, msg: &Message) -> MailView {
    let parts = msg
        .parts()
        .into_iter()
        .map(|p| Part {
            text: (p.content_type.starts_with("text/") && !p.is_attachment)
                .then(|| msg.part_text(p.index))
                .flatten(),
            content_type: p.content_type,
            is_attachment: p.is_attachment,
        })
        .collect();
    MailView {
        subject: msg.subject(),
        parts,
        listener: env.connection.listener.clone(),
        now: poczta_plugin::now(),
        ..MailView::default()
    }
}

fn add(symbols: Vec<Symbol>) {
    for (name, weight, description) in symbols {
        poczta_plugin::add_symbol(name, weight, &description);
    }
}

fn phrases(cfg: &Config) -> Vec<String> {
    let mut list = cfg.phrases.clone();
    match assets::read_string(&cfg.phrases_asset) {
        Ok(text) => list.extend(rules::parse_phrases(&text)),
        Err(e) => {
            if !matches!(e, HostError::NotGranted) && assets::names().contains(&cfg.phrases_asset) {
                poczta_plugin::warn(format!("asset {}: {}", cfg.phrases_asset, e.text()));
            }
            if cfg.default_phrases {
                list.extend(rules::parse_phrases(BUILTIN_PHRASES));
            }
        }
    }
    list
}

fn counter(key: &str) -> Result<u64, HostError> {
    Ok(kv::get_string(key)?
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0))
}

/// Reads the shards the hashes fall into.
fn load_shards(hashes: &BTreeSet<u64>) -> Result<BTreeMap<u64, bayes::Shard>, HostError> {
    let wanted: BTreeSet<u64> = hashes.iter().map(|h| bayes::shard_of(*h)).collect();
    let mut shards = BTreeMap::new();
    for i in wanted {
        let shard = kv::get(&bayes::shard_key(i))?
            .map(|v| bayes::decode_shard(&v))
            .unwrap_or_default();
        shards.insert(i, shard);
    }
    Ok(shards)
}

fn train(m: &MailView, pieces: &[mail::Piece], spam: bool) -> Result<(), HostError> {
    let hashes = bayes::hashes(&bayes::tokenize_on(m, pieces));
    let mut shards = load_shards(&hashes)?;
    bayes::train(&mut shards, &hashes, spam);
    for (i, shard) in &shards {
        kv::set(&bayes::shard_key(*i), bayes::encode_shard(shard), 0)?;
    }
    kv::increment(if spam { bayes::KEY_NSPAM } else { bayes::KEY_NHAM }, 1, 0)?;
    Ok(())
}

/// The message counts Bayes was trained on, if they are enough to score.
fn trained_counts(cfg: &Config) -> Result<Option<(u64, u64)>, HostError> {
    let (nspam, nham) = (counter(bayes::KEY_NSPAM)?, counter(bayes::KEY_NHAM)?);
    Ok((nspam >= cfg.bayes.min_spam && nham >= cfg.bayes.min_ham).then_some((nspam, nham)))
}

fn classify(
    cfg: &Config,
    m: &MailView,
    pieces: &[mail::Piece],
    (nspam, nham): (u64, u64),
) -> Result<Option<Symbol>, HostError> {
    let hashes = bayes::hashes(&bayes::tokenize_on(m, pieces));
    let shards = load_shards(&hashes)?;
    let p = bayes::classify(&shards, &hashes, nspam, nham, cfg.bayes.max_tokens);
    poczta_plugin::debug(format!("bayes: p={p:.4} ({nspam} spam, {nham} ham trained)"));
    Ok(bayes_symbol(cfg, p, nspam, nham))
}

struct SpamRules;

impl Plugin for SpamRules {
    const NAME: &'static str = "spam-rules";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Headers, Hook::Body];

    fn headers(env: Envelope, msg: &Message) -> HookResult<Verdict> {
        let st = state()?;
        if st.training.is_some() {
            return Ok(Verdict::Continue);
        }
        let m = header_view(&env, msg);
        add(weigh(&st.cfg, rules::header_rules(&m, &st.limits)));
        Ok(Verdict::Continue)
    }

    fn body(env: Envelope, msg: &Message) -> HookResult<Verdict> {
        let st = state()?;
        let mut m = body_view(&env, msg);
        // Borrows only `m.parts`, so the header fields can be filled later.
        let pieces = mail::body_pieces(&m.parts);
        if let Some(spam) = st.training {
            (m.headers, m.from) = header_fields(msg);
            // A failed write must fail the training run, not pass silently.
            train(&m, &pieces, spam).map_err(|e| format!("bayes training: {}", e.text()))?;
            return Ok(Verdict::Continue);
        }
        m.raw = msg.raw(0, 1 << 20);
        add(st.body_symbols(&m, &pieces));
        if st.cfg.bayes.enabled {
            let scored = match trained_counts(&st.cfg) {
                Ok(Some(counts)) => {
                    (m.headers, m.from) = header_fields(msg);
                    classify(&st.cfg, &m, &pieces, counts)
                }
                other => other.map(|_| None),
            };
            match scored {
                Ok(s) => add(s.into_iter().collect()),
                // Without the kv grant (or with a slow store) the rules
                // still score; Bayes just abstains.
                Err(e) => poczta_plugin::debug(format!("bayes skipped: {}", e.text())),
            }
        }
        Ok(Verdict::Continue)
    }
}

poczta_plugin::export_plugin!(SpamRules);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Config {
        let c: Config = poczta_plugin::parse_config(json).unwrap();
        c.validate().unwrap();
        c
    }

    #[test]
    fn weights_default_and_override() {
        let c = cfg(r#"{"weights": {"MISSING_DATE": 3.5, "RCVD_NONE": 0}}"#);
        assert_eq!(c.weight("MISSING_DATE"), 3.5);
        assert_eq!(c.weight("MISSING_MID"), 1.0);
        let hits = vec![
            rules::Hit {
                symbol: "MISSING_DATE",
                description: "d".into(),
                count: 1,
            },
            rules::Hit {
                symbol: "RCVD_NONE",
                description: "r".into(),
                count: 1,
            },
        ];
        assert_eq!(weigh(&c, hits), vec![("MISSING_DATE", 3.5, "d".to_string())]);
    }

    #[test]
    fn config_errors() {
        let c: Config = poczta_plugin::parse_config(r#"{"weights": {"NOPE": 1}}"#).unwrap();
        assert!(c.validate().unwrap_err().contains("NOPE"));
        let c: Config = poczta_plugin::parse_config(r#"{"bayes_train": "maybe"}"#).unwrap();
        assert!(c.validate().is_err());
        assert!(poczta_plugin::parse_config::<Config>(r#"{"weight": {}}"#).is_err());
        assert_eq!(cfg(r#"{"bayes_train": "spam"}"#).training(), Ok(Some(true)));
        assert_eq!(cfg("{}").training(), Ok(None));
    }

    #[test]
    fn phrases_are_capped() {
        let c = cfg(r#"{"phrases_max": 2.5}"#);
        assert_eq!(phrase_symbol(&c, &[]), None);
        let (_, w, d) = phrase_symbol(&c, &["a", "b"]).unwrap();
        assert_eq!((w, d.as_str()), (2.0, "forbidden phrases: a, b"));
        assert_eq!(phrase_symbol(&c, &["a", "b", "c", "d"]).unwrap().1, 2.5);
        assert!(rules::parse_phrases(BUILTIN_PHRASES).len() >= 20);
    }

    #[test]
    fn bayes_needs_enough_training() {
        let c = cfg(r#"{"bayes": {"min_spam": 5, "min_ham": 5}}"#);
        assert_eq!(bayes_symbol(&c, 0.999, 4, 100), None);
        assert_eq!(bayes_symbol(&c, 0.999, 5, 5).unwrap().1, 4.0);
        assert!((bayes_symbol(&c, 0.96, 5, 5).unwrap().1 - 2.8).abs() < 1e-9);
        assert_eq!(bayes_symbol(&c, 0.001, 5, 5).unwrap().0, "BAYES_HAM");
        assert_eq!(bayes_symbol(&c, 0.5, 5, 5), None);
    }

    /// A benchmark-like message: ordinary headers and a plain-text body of
    /// about `size` bytes in 78-character CRLF lines, every 16th starting
    /// with '.'.
    pub(crate) fn bench_message(size: usize) -> Vec<u8> {
        let mut raw = String::from(
            "From: Alice Example <alice@example.org>\r\nTo: bob@example.net\r\nSubject: Quarterly report\r\nDate: Sun, 15 Jun 2025 13:59:00 +0000\r\nMessage-ID: <bench.1@example.org>\r\n\r\n",
        );
        let source =
            "The quick brown fox jumps over the lazy dog. 0123456789 PACK MY BOX WITH FIVE DOZEN JUGS! ";
        let mut stream = source.chars().cycle();
        let mut line_no = 0;
        while raw.len() < size {
            let mut line: String = (&mut stream).take(78).collect();
            if line_no % 16 == 15 {
                line.replace_range(0..1, ".");
            }
            raw.push_str(&line);
            raw.push_str("\r\n");
            line_no += 1;
        }
        raw.into_bytes()
    }

    /// The state the hooks build natively: the config text and the
    /// built-in phrases (there is no asset host).
    pub(crate) fn test_state(json: &str) -> std::rc::Rc<State> {
        poczta_plugin::per_config_text(json, |json| {
            let cfg = State::config(json)?;
            let mut list = cfg.phrases.clone();
            list.extend(rules::parse_phrases(BUILTIN_PHRASES));
            State::new(cfg, list)
        })
        .unwrap()
    }

    #[test]
    fn state_is_built_once_and_scores_like_the_old_body_hook() {
        let json = r#"{"phrases": ["quarterly report"], "weights": {"FORBIDDEN_PHRASE": 1.5}}"#;
        let st = test_state(json);
        assert!(std::rc::Rc::ptr_eq(&st, &test_state(json)), "cached per instance");
        assert!(
            !std::rc::Rc::ptr_eq(&st, &test_state("{}")),
            "another config text rebuilds"
        );
        let raw = bench_message(4 << 10);
        let m = mail::MailView::from_raw(&raw, "smtp", 1_750_000_000);
        let got = st.body_symbols(&m, &mail::body_pieces(&m.parts));
        // The old hook: rules, then the phrases over "Subject\nbody".
        let mut want = weigh(&st.cfg, reference::body_rules(&m, &st.limits));
        let text = format!(
            "{}\n{}",
            m.subject.as_deref().unwrap_or(""),
            reference::body_text(&m)
        );
        want.extend(phrase_symbol(
            &st.cfg,
            &reference::phrase_hits(&text, &st.phrases),
        ));
        assert_eq!(got, want);
        assert_eq!(
            got,
            [(
                "FORBIDDEN_PHRASE",
                1.5,
                "forbidden phrases: quarterly report".to_string()
            )]
        );
        let bad: Result<std::rc::Rc<State>, String> =
            poczta_plugin::per_config_text(r#"{"nope": 1}"#, |json| State::new(State::config(json)?, vec![]));
        assert!(bad.is_err());
    }

    /// Per-message cost of what the hooks compute (no host calls), natively,
    /// the old code (`reference`) next to the new.
    /// `cargo test --release -p spam-rules -- --ignored --nocapture measure`
    #[test]
    #[ignore]
    fn measure_rule_cost() {
        use std::time::Instant;
        const N: u32 = 200;
        let json = r#"{"phrases": ["quarterly bonus"]}"#;
        for size in [2 << 10, 100 << 10] {
            let raw = bench_message(size);
            let m = mail::MailView::from_raw(&raw, "smtp", 1_750_000_000);
            let time = |what: &str, f: &mut dyn FnMut()| {
                f();
                let t = Instant::now();
                for _ in 0..N {
                    f();
                }
                let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
                eprintln!("{:>4} KiB  {what:<40} {us:>9.1} µs", size >> 10);
            };
            time("old headers hook", &mut || {
                let cfg = State::config(json).unwrap();
                std::hint::black_box(weigh(&cfg, rules::header_rules(&m, &cfg.limits())));
            });
            time("new headers hook", &mut || {
                let st = test_state(json);
                std::hint::black_box(weigh(&st.cfg, rules::header_rules(&m, &st.limits)));
            });
            time("old body hook (untrained Bayes)", &mut || {
                let cfg = State::config(json).unwrap();
                std::hint::black_box(weigh(&cfg, reference::body_rules(&m, &cfg.limits())));
                let text = format!(
                    "{}\n{}",
                    m.subject.as_deref().unwrap_or(""),
                    reference::body_text(&m)
                );
                let mut list = cfg.phrases.clone();
                list.extend(rules::parse_phrases(BUILTIN_PHRASES));
                std::hint::black_box(phrase_symbol(&cfg, &reference::phrase_hits(&text, &list)));
            });
            time("new body hook (untrained Bayes)", &mut || {
                let st = test_state(json);
                std::hint::black_box(st.body_symbols(&m, &mail::body_pieces(&m.parts)));
            });
            let st = test_state(json);
            let pieces = mail::body_pieces(&m.parts);
            time("  old body_rules", &mut || {
                std::hint::black_box(reference::body_rules(&m, &st.limits));
            });
            time("  new body_rules", &mut || {
                std::hint::black_box(rules::body_rules_on(&m, &pieces, &st.limits));
            });
            time("  old phrases (list parsed, text joined)", &mut || {
                let text = format!(
                    "{}\n{}",
                    m.subject.as_deref().unwrap_or(""),
                    reference::body_text(&m)
                );
                let list = rules::parse_phrases(BUILTIN_PHRASES);
                std::hint::black_box(reference::phrase_hits(&text, &list));
            });
            time("  new phrases", &mut || {
                std::hint::black_box(st.phrase_hits(m.subject.as_deref().unwrap_or(""), &pieces));
            });
            time("  old word_text", &mut || {
                std::hint::black_box(reference::word_text(&pieces[0].text));
            });
            time("  new word_text", &mut || {
                std::hint::black_box(rules::word_text(&pieces[0].text));
            });
            time("old bayes tokenize + hashes", &mut || {
                std::hint::black_box(bayes::hashes(&reference::tokenize(&m)));
            });
            time("new bayes tokenize + hashes", &mut || {
                std::hint::black_box(bayes::hashes(&bayes::tokenize_on(&m, &pieces)));
            });
        }
    }
}
