//! The naive-Bayes classifier: tokenizer, the token table and its storage
//! layout in the key-value store, and Robinson's combination (Fisher's
//! chi-square over Robinson's per-token probabilities, as in SpamBayes).
//!
//! Storage: the host allows 100 kv operations per hook call, so tokens are
//! not one key each. A token is its 64-bit FNV-1a hash; hashes fall into
//! [`SHARDS`] shards by `hash % SHARDS`, and a shard is one kv value
//! (`bayes:shard:NN`): sorted 16-byte records `hash u64 LE, spam u32 LE,
//! ham u32 LE`. Classifying reads at most `SHARDS` values; training reads
//! and writes them once per message. The message totals are two counters,
//! `bayes:nspam` and `bayes:nham`. A shard never exceeds
//! [`MAX_SHARD_RECORDS`] (the host's 64 KiB value limit): the rarest tokens
//! go first.

use std::collections::{BTreeMap, BTreeSet};

use crate::mail::{self, MailView, Piece, Words};

/// Number of shards.
pub const SHARDS: u64 = 32;
/// Most records in one shard (16 bytes each, under the 64 KiB value cap).
pub const MAX_SHARD_RECORDS: usize = 4000;
/// Most distinct tokens taken from one message.
pub const MAX_TOKENS: usize = 1500;
/// The kv key of the spam message counter.
pub const KEY_NSPAM: &str = "bayes:nspam";
/// The kv key of the ham message counter.
pub const KEY_NHAM: &str = "bayes:nham";

/// The kv key of shard `i`.
pub fn shard_key(i: u64) -> String {
    format!("bayes:shard:{i:02}")
}

/// FNV-1a, 64 bits: stable across builds and platforms.
pub fn hash(token: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The shard a hash lives in.
pub fn shard_of(h: u64) -> u64 {
    h % SHARDS
}

/// Spam and ham message counts of one token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Spam messages that contained the token.
    pub spam: u32,
    /// Ham messages that contained the token.
    pub ham: u32,
}

/// One shard: hash → counts.
pub type Shard = BTreeMap<u64, Counts>;

/// Decodes a shard value (a truncated trailing record is ignored).
pub fn decode_shard(bytes: &[u8]) -> Shard {
    bytes
        .chunks_exact(16)
        .map(|r| {
            let h = u64::from_le_bytes(r[0..8].try_into().unwrap_or_default());
            let spam = u32::from_le_bytes(r[8..12].try_into().unwrap_or_default());
            let ham = u32::from_le_bytes(r[12..16].try_into().unwrap_or_default());
            (h, Counts { spam, ham })
        })
        .collect()
}

/// Encodes a shard, dropping the rarest tokens beyond [`MAX_SHARD_RECORDS`].
pub fn encode_shard(shard: &Shard) -> Vec<u8> {
    let mut records: Vec<(&u64, &Counts)> = shard.iter().collect();
    if records.len() > MAX_SHARD_RECORDS {
        // Keep the most frequent; ties by hash, so the result is deterministic.
        records.sort_by_key(|(h, c)| (std::cmp::Reverse(c.spam + c.ham), **h));
        records.truncate(MAX_SHARD_RECORDS);
        records.sort_by_key(|(h, _)| **h);
    }
    let mut out = Vec::with_capacity(records.len() * 16);
    for (h, c) in records {
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(&c.spam.to_le_bytes());
        out.extend_from_slice(&c.ham.to_le_bytes());
    }
    out
}

/// Adds one message's tokens to the shards it touches.
pub fn train(shards: &mut BTreeMap<u64, Shard>, hashes: &BTreeSet<u64>, spam: bool) {
    for h in hashes {
        let c = shards.entry(shard_of(*h)).or_default().entry(*h).or_default();
        if spam {
            c.spam = c.spam.saturating_add(1);
        } else {
            c.ham = c.ham.saturating_add(1);
        }
    }
}

fn push_words(out: &mut BTreeSet<String>, prefix: &str, text: &str) {
    // Most words of a long body repeat. A word met before (as it is
    // written) was inserted already, so it is skipped before lower-casing
    // and the set look-up; the cache forgets words on collisions, which
    // only costs a look-up. After the cap nothing is inserted either way.
    let mut seen: [&str; 256] = [""; 256];
    let mut token = String::with_capacity(prefix.len() + 32);
    for (w, ascii) in Words::new(text, &mail::TOKEN_WORD) {
        let w = w.trim_matches('\'');
        let chars = if ascii { w.len() } else { w.chars().count() };
        if !(3..=20).contains(&chars) {
            continue;
        }
        let b = w.as_bytes();
        let slot = (usize::from(b[0]) ^ usize::from(b[b.len() - 1]).wrapping_mul(7) ^ (b.len() * 37)) & 255;
        if seen[slot] == w {
            continue;
        }
        if out.len() >= MAX_TOKENS {
            return;
        }
        token.clear();
        token.push_str(prefix);
        mail::push_lower(&mut token, w, ascii);
        if !out.contains(token.as_str()) {
            out.insert(token.clone());
        }
        seen[slot] = w;
    }
}

/// The header tokens (From domain and display name, Reply-To domain, mail
/// program, top-level content type, the presence of HTML, the subject's
/// words), with `words` splitting the free text: the one part of
/// tokenizing that is the same whatever scans the body.
pub(crate) fn header_tokens(
    m: &MailView,
    out: &mut BTreeSet<String>,
    words: fn(&mut BTreeSet<String>, &str, &str),
) {
    if let Some(from) = m.from.as_deref().or(m.first("from")) {
        let mb = mail::parse_mailbox(from);
        out.insert(format!("from:{}", mail::domain_of(&mb.address)));
        words(out, "fromname:", &mb.name);
    }
    if let Some(rt) = m.first("reply-to") {
        out.insert(format!(
            "replyto:{}",
            mail::org_domain(mail::domain_of(&mail::parse_mailbox(rt).address))
        ));
    }
    if let Some(mailer) = m.first("x-mailer").or(m.first("user-agent")) {
        let first = mailer.split_whitespace().next().unwrap_or("").to_lowercase();
        out.insert(format!("mailer:{first}"));
    }
    if let Some(ct) = m.first("content-type") {
        let t = ct.split(';').next().unwrap_or("").trim().to_lowercase();
        out.insert(format!("ct:{t}"));
    }
    if m.html_parts().next().is_some() {
        out.insert("has:html".into());
    }
    if let Some(s) = m.subject.as_deref().or(m.first("subject")) {
        words(out, "s:", s);
    }
}

/// The tokens of a message: lower-cased words of the subject (`s:`) and
/// body, link hosts and their organisational domains (`url:`), and a few
/// header tokens (From domain, Reply-To domain, mail program, top-level
/// content type, the presence of HTML).
pub fn tokenize(m: &MailView) -> BTreeSet<String> {
    tokenize_on(m, &mail::body_pieces(&m.parts))
}

/// [`tokenize`] with the message's [`mail::body_pieces`] already made.
pub fn tokenize_on(m: &MailView, pieces: &[Piece]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    header_tokens(m, &mut out, push_words);
    for p in pieces {
        let links = match p.html {
            Some(html) => mail::html_links(html),
            None => mail::text_links(&p.text),
        };
        for l in links {
            out.insert(format!("url:{}", mail::org_domain(&l.host)));
            out.insert(format!("url:{}", l.host));
        }
    }
    // The body text is the pieces each followed by a line break, which
    // ends a word: reading them one by one gives the same words.
    for p in pieces {
        push_words(&mut out, "", &p.text);
    }
    out
}

/// Robinson's degree of belief that a message with this token is spam:
/// the ratio of the token's spam and ham frequencies, pulled towards 0.5
/// for rare tokens (strength 1, assumed probability 0.5).
pub fn token_probability(c: Counts, nspam: u64, nham: u64) -> Option<f64> {
    let (s, h) = (f64::from(c.spam), f64::from(c.ham));
    let n = s + h;
    if n == 0.0 || nspam == 0 || nham == 0 {
        return None;
    }
    let sr = (s / nspam as f64).min(1.0);
    let hr = (h / nham as f64).min(1.0);
    let p = sr / (sr + hr);
    let f = (0.5 + n * p) / (1.0 + n);
    Some(f.clamp(0.01, 0.99))
}

/// The chi-square survival function for even degrees of freedom `v`.
pub fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

/// Combines token probabilities (Fisher's method, SpamBayes' "chi2"):
/// the `max` tokens farthest from 0.5 that are at least 0.1 away count.
/// 0 is surely ham, 1 surely spam, 0.5 undecided (also with no tokens).
pub fn combine(mut probs: Vec<f64>, max: usize) -> f64 {
    probs.retain(|p| (p - 0.5).abs() >= 0.1);
    probs.sort_by(|a, b| (b - 0.5).abs().total_cmp(&(a - 0.5).abs()));
    probs.truncate(max);
    if probs.is_empty() {
        return 0.5;
    }
    let n = probs.len();
    let ln_spam: f64 = probs.iter().map(|p| p.ln()).sum();
    let ln_ham: f64 = probs.iter().map(|p| (1.0 - p).ln()).sum();
    let s = 1.0 - chi2q(-2.0 * ln_ham, 2 * n);
    let h = 1.0 - chi2q(-2.0 * ln_spam, 2 * n);
    ((s - h + 1.0) / 2.0).clamp(0.0, 1.0)
}

/// The spam probability of a message from its token hashes and the shards.
pub fn classify(
    shards: &BTreeMap<u64, Shard>,
    hashes: &BTreeSet<u64>,
    nspam: u64,
    nham: u64,
    max_tokens: usize,
) -> f64 {
    let probs = hashes
        .iter()
        .filter_map(|h| shards.get(&shard_of(*h))?.get(h))
        .filter_map(|c| token_probability(*c, nspam, nham))
        .collect();
    combine(probs, max_tokens)
}

/// The hashes of a token set.
pub fn hashes(tokens: &BTreeSet<String>) -> BTreeSet<u64> {
    tokens.iter().map(|t| hash(t)).collect()
}

/// A probability band: `(symbol, fraction of the symbol's weight)`, or
/// `None` in the undecided middle.
pub fn band(p: f64) -> Option<(&'static str, f64)> {
    Some(match p {
        p if p >= 0.99 => ("BAYES_SPAM", 1.0),
        p if p >= 0.95 => ("BAYES_SPAM", 0.7),
        p if p >= 0.80 => ("BAYES_SPAM", 0.4),
        p if p <= 0.01 => ("BAYES_HAM", 1.0),
        p if p <= 0.05 => ("BAYES_HAM", 0.7),
        p if p <= 0.20 => ("BAYES_HAM", 0.4),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn hash_is_fnv1a() {
        assert_eq!(hash(""), 0xcbf29ce484222325);
        assert_eq!(hash("a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn shard_codec_round_trips_and_prunes_the_rarest() {
        let mut s = Shard::new();
        s.insert(7, Counts { spam: 3, ham: 1 });
        s.insert(1, Counts { spam: 0, ham: 9 });
        assert_eq!(decode_shard(&encode_shard(&s)), s);
        let mut big = Shard::new();
        for h in 0..(MAX_SHARD_RECORDS as u64 + 10) {
            big.insert(
                h,
                Counts {
                    spam: if h < 10 { 0 } else { 2 },
                    ham: 0,
                },
            );
        }
        let back = decode_shard(&encode_shard(&big));
        assert_eq!(back.len(), MAX_SHARD_RECORDS);
        assert!(encode_shard(&big).len() <= 64 << 10);
        assert!(!back.contains_key(&0), "a rare token was dropped");
        assert!(back.contains_key(&(MAX_SHARD_RECORDS as u64 + 9)));
    }

    #[test]
    fn token_probabilities() {
        assert_eq!(token_probability(Counts::default(), 10, 10), None);
        assert_eq!(token_probability(Counts { spam: 1, ham: 0 }, 0, 10), None);
        // Seen in 10 of 10 spams and no ham: close to 0.99.
        let p = token_probability(Counts { spam: 10, ham: 0 }, 10, 10).unwrap();
        assert!(p > 0.9, "{p}");
        // Seen once in spam: pulled towards 0.5.
        let p = token_probability(Counts { spam: 1, ham: 0 }, 10, 10).unwrap();
        assert!((0.7..0.8).contains(&p), "{p}");
        // Equal frequencies: 0.5.
        let p = token_probability(Counts { spam: 2, ham: 4 }, 10, 20).unwrap();
        assert!((p - 0.5).abs() < 1e-9, "{p}");
    }

    #[test]
    fn chi_square_and_combination() {
        // chi2q(x, 2) = e^(-x/2).
        assert!((chi2q(2.0, 2) - (-1.0f64).exp()).abs() < 1e-12);
        assert!((chi2q(0.0, 10) - 1.0).abs() < 1e-12);
        assert_eq!(combine(vec![], 150), 0.5);
        assert_eq!(combine(vec![0.55, 0.45], 150), 0.5, "near 0.5 is ignored");
        assert!(combine(vec![0.99; 20], 150) > 0.99);
        assert!(combine(vec![0.01; 20], 150) < 0.01);
        let mixed = combine(vec![0.99, 0.99, 0.01, 0.01], 150);
        assert!((mixed - 0.5).abs() < 0.05, "{mixed}");
        // Only the most extreme `max` count.
        assert!(combine(vec![0.99, 0.99, 0.3, 0.3, 0.3], 2) > 0.9);
        assert_eq!(band(0.995), Some(("BAYES_SPAM", 1.0)));
        assert_eq!(band(0.5), None);
        assert_eq!(band(0.03), Some(("BAYES_HAM", 0.7)));
    }

    #[test]
    fn tokens() {
        let m = MailView::from_raw(
            b"From: \"Shop\" <deals@Shop.example>\r\nSubject: Cheap watches\r\nContent-Type: text/html\r\n\r\n<p>Buy <a href='http://x.promo.test/a'>now</a> it's great, I'd say</p>",
            "smtp",
            0,
        );
        let t = tokenize(&m);
        for want in [
            "from:shop.example",
            "s:cheap",
            "s:watches",
            "url:promo.test",
            "url:x.promo.test",
            "buy",
            "it's",
            "great",
            "has:html",
            "ct:text/html",
        ] {
            assert!(t.contains(want), "{want} missing from {t:?}");
        }
        assert!(!t.contains("a") && !t.contains("p"), "short words are skipped");
    }

    fn load(dir: &str) -> Vec<MailView> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../examples/messages/bayes")
            .join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| MailView::from_raw(&std::fs::read(f).unwrap(), "smtp", 0))
            .collect()
    }

    /// Trains on the first two thirds of each labelled folder, through the
    /// same shard encoding the plugin stores, and classifies the rest.
    #[test]
    fn held_out_accuracy_beats_chance_by_a_wide_margin() {
        let (spam, ham) = (load("spam"), load("ham"));
        assert!(
            spam.len() >= 20 && ham.len() >= 20,
            "{} spam, {} ham",
            spam.len(),
            ham.len()
        );
        let split = |v: &Vec<MailView>| v.len() * 2 / 3;
        let mut shards: BTreeMap<u64, Shard> = BTreeMap::new();
        for m in &spam[..split(&spam)] {
            train(&mut shards, &hashes(&tokenize(m)), true);
        }
        for m in &ham[..split(&ham)] {
            train(&mut shards, &hashes(&tokenize(m)), false);
        }
        // Through the kv encoding, as the plugin reads it.
        let shards: BTreeMap<u64, Shard> = shards
            .iter()
            .map(|(i, s)| (*i, decode_shard(&encode_shard(s))))
            .collect();
        let (ns, nh) = (split(&spam) as u64, split(&ham) as u64);
        let mut right = 0;
        let mut total = 0;
        for (msgs, is_spam) in [(&spam, true), (&ham, false)] {
            for m in &msgs[split(msgs)..] {
                let p = classify(&shards, &hashes(&tokenize(m)), ns, nh, 150);
                total += 1;
                if (p > 0.5) == is_spam {
                    right += 1;
                } else {
                    eprintln!(
                        "misclassified ({}): p={p:.3} {:?}",
                        if is_spam { "spam" } else { "ham" },
                        m.subject
                    );
                }
            }
        }
        let accuracy = right as f64 / total as f64;
        eprintln!("held-out accuracy: {right}/{total} = {accuracy:.2}");
        assert!(
            accuracy >= 0.8,
            "accuracy {accuracy:.2} on {total} held-out messages"
        );
    }
}
