//! `antivirus`: viruses, test files and dangerous attachments.
//!
//! Hook: `body`. Grant: `assets` (for signature files; without it only the
//! built-in rules run). See README.md for the config and an example.
//!
//! Every decoded MIME leaf is scanned ([`scan::Scanner`]): the EICAR test
//! string, the ClamAV-format signatures loaded from the plugin's assets
//! ([`sigs::SigDb`]: `.hdb`/`.hsb` hashes, `.ndb` body patterns), blocked
//! file names (extensions, double extensions), sniffed executables and
//! scripts in attachments, and the members of zip archives, recursively
//! ([`zip`]). The first finding decides: `reject` answers
//! `554 5.7.1 … <signature name> …`, `quarantine` accepts the message into
//! the recipients' quarantine with a notice header.
//!
//! **No `strip` action**: the plugin interface (`poczta:plugin@0.1.0`) lets a
//! plugin add and remove header fields but not rewrite the body, so a part
//! cannot be cut out of a message. `strip` is refused as a config value
//! rather than silently acting as something else.

pub mod ndb;
pub mod scan;
pub mod sigs;
pub mod zip;

use poczta_plugin::{Envelope, Hook, HookResult, Message, Plugin, Reply, Verdict, assets};
use serde::Deserialize;

use crate::scan::{Finding, Policy, Scanner};
use crate::sigs::SigDb;

/// What a finding does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `554 5.7.1` with the signature name; the sender keeps the bounce.
    Reject,
    /// Accept into every recipient's quarantine, with the notice header.
    Quarantine,
}

/// The plugin's config (`config = { … }` in the `[[plugins]]` entry).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `reject` (default) or `quarantine`.
    pub action: Action,
    /// Replaces the default extension list (lower case, no dot).
    pub blocked_extensions: Option<Vec<String>>,
    /// Added to the (default or given) list.
    pub extra_blocked_extensions: Vec<String>,
    /// Removed from the list (e.g. `["iso"]` where disk images are normal).
    pub allowed_extensions: Vec<String>,
    /// Block sniffed executables and `#!` scripts in attachments.
    pub block_executables: bool,
    /// Block `invoice.pdf.exe`-style names and right-to-left override tricks.
    pub block_double_extensions: bool,
    /// Block encrypted archive members.
    pub block_encrypted_archives: bool,
    /// Block what cannot be scanned (unsupported compression, over the
    /// limits, nested too deep). Off by default: such files are logged.
    pub block_unscannable: bool,
    /// Look inside zip archives.
    pub scan_archives: bool,
    /// Archive nesting looked into.
    pub max_archive_depth: usize,
    /// Bytes inflated from archives per message.
    pub max_inflated_bytes: usize,
    /// The notice header added in quarantine mode (empty: none).
    pub header: String,
}

impl Default for Config {
    fn default() -> Config {
        let p = Policy::default();
        Config {
            action: Action::Reject,
            blocked_extensions: None,
            extra_blocked_extensions: Vec::new(),
            allowed_extensions: Vec::new(),
            block_executables: p.block_executables,
            block_double_extensions: p.block_double_extensions,
            block_encrypted_archives: p.block_encrypted,
            block_unscannable: p.block_unscannable,
            scan_archives: p.scan_archives,
            max_archive_depth: p.max_depth,
            max_inflated_bytes: p.max_inflated,
            header: "X-Poczta-Antivirus".into(),
        }
    }
}

fn ext_list(v: &[String]) -> impl Iterator<Item = String> + '_ {
    v.iter().map(|e| e.trim().trim_start_matches('.').to_lowercase())
}

impl Config {
    /// Parses the JSON config; `action = "strip"` is refused with the reason.
    pub fn parse(json: &str) -> Result<Config, String> {
        if serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .is_some_and(|v| v.get("action").and_then(|a| a.as_str()) == Some("strip"))
        {
            return Err(
                "invalid plugin config: action \"strip\" is not possible: plugins cannot \
                        rewrite the message body (use \"reject\" or \"quarantine\")"
                    .into(),
            );
        }
        let c: Config = poczta_plugin::parse_config(json)?;
        if c.max_archive_depth > 16 {
            return Err("invalid plugin config: max_archive_depth is at most 16".into());
        }
        Ok(c)
    }

    /// The scanner policy this config gives.
    pub fn policy(&self) -> Policy {
        let mut blocked: Vec<String> = match &self.blocked_extensions {
            Some(list) => ext_list(list).collect(),
            None => Policy::default().blocked_extensions,
        };
        blocked.extend(ext_list(&self.extra_blocked_extensions));
        let allowed: Vec<String> = ext_list(&self.allowed_extensions).collect();
        blocked.retain(|e| !e.is_empty() && !allowed.contains(e));
        blocked.sort();
        blocked.dedup();
        Policy {
            blocked_extensions: blocked,
            block_executables: self.block_executables,
            block_double_extensions: self.block_double_extensions,
            block_encrypted: self.block_encrypted_archives,
            block_unscannable: self.block_unscannable,
            scan_archives: self.scan_archives,
            max_depth: self.max_archive_depth,
            max_inflated: self.max_inflated_bytes,
        }
    }
}

/// One MIME leaf as the scanner needs it (the host's `mime-part`, minus the
/// handle), so [`scan_parts`] is testable without a host.
#[derive(Debug, Clone)]
pub struct PartInfo {
    /// Index for `part-body`.
    pub index: u32,
    /// File name, if any.
    pub filename: Option<String>,
    /// Whether it is an attachment.
    pub is_attachment: bool,
}

/// Scans the parts of a message; `body(i)` gives the decoded bytes of part `i`.
pub fn scan_parts(
    scanner: &mut Scanner<'_>,
    policy: &Policy,
    parts: &[PartInfo],
    mut body: impl FnMut(u32) -> Option<Vec<u8>>,
) -> Option<Finding> {
    for (n, p) in parts.iter().enumerate() {
        let location = match &p.filename {
            Some(f) => format!("part {} ({})", n + 1, scan::clean(f)),
            None => format!("part {}", n + 1),
        };
        if let Some(rule) = p.filename.as_deref().and_then(|f| policy.check_name(f)) {
            return Some(Finding { name: rule, location });
        }
        let Some(data) = body(p.index) else { continue };
        // A file name makes it a file even when the sender called it inline.
        let is_file = p.is_attachment || p.filename.is_some();
        if let Some(f) = scanner.scan(&data, is_file, 0, &location) {
            return Some(f);
        }
    }
    None
}

/// The reject reply for a finding.
pub fn reject_reply(f: &Finding) -> Reply {
    Reply::new(
        554,
        "5.7.1",
        format!("Message rejected: {} found in {}", f.name, f.location),
    )
}

/// What the config and the assets give: built on an instance's first
/// message and kept while it serves more (`reuse` in the plugin's entry), as
/// parsing the signature files costs far more than scanning a typical part.
#[derive(Debug)]
pub struct State {
    /// The parsed config.
    pub cfg: Config,
    /// The scanner policy it gives.
    pub policy: Policy,
    /// The signatures from the assets.
    pub db: SigDb,
}

impl State {
    /// Parses the config, then loads the signatures with `load` (not called
    /// for a bad config, which fails without reading assets).
    pub fn build(json: &str, load: impl FnOnce() -> SigDb) -> Result<State, String> {
        let cfg = Config::parse(json)?;
        let policy = cfg.policy();
        Ok(State {
            cfg,
            policy,
            db: load(),
        })
    }
}

/// Loads every granted asset into one database; bad lines are logged.
fn load_signatures() -> SigDb {
    let mut db = SigDb::default();
    for name in assets::names() {
        match assets::read_string(&name) {
            Ok(text) => db.load(&name, &text),
            Err(e) => poczta_plugin::warn(format!("asset {name}: {}", e.text())),
        }
    }
    for r in db.refused.iter().take(5) {
        poczta_plugin::warn(format!("signature refused: {r}"));
    }
    if db.refused.len() > 5 {
        poczta_plugin::warn(format!("{} more signature lines refused", db.refused.len() - 5));
    }
    db
}

struct Antivirus;

impl Plugin for Antivirus {
    const NAME: &'static str = "antivirus";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Body];

    fn body(_env: Envelope, msg: &Message) -> HookResult<Verdict> {
        let state = poczta_plugin::per_instance(|json| State::build(json, load_signatures))?;
        let State { cfg, policy, db } = &*state;
        let parts: Vec<PartInfo> = msg
            .parts()
            .into_iter()
            .map(|p| PartInfo {
                index: p.index,
                filename: p.filename,
                is_attachment: p.is_attachment,
            })
            .collect();
        let mut scanner = Scanner::new(policy, db);
        let finding = scan_parts(&mut scanner, policy, &parts, |i| msg.part_body(i));
        for s in scanner.skipped.iter().take(5) {
            poczta_plugin::info(format!("not scanned: {s}"));
        }
        let Some(f) = finding else {
            return Ok(Verdict::Continue);
        };
        poczta_plugin::info(format!("{} found in {}: {:?}", f.name, f.location, cfg.action));
        Ok(match cfg.action {
            Action::Reject => Verdict::Reject(reject_reply(&f)),
            Action::Quarantine => {
                if !cfg.header.is_empty() {
                    poczta_plugin::add_header(&cfg.header, &format!("{} found in {}", f.name, f.location));
                }
                Verdict::quarantine(format!("antivirus: {} in {}", f.name, f.location))
            }
        })
    }
}

poczta_plugin::export_plugin!(Antivirus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_lists() {
        let c = Config::parse("{}").unwrap();
        assert_eq!(c.action, Action::Reject);
        let p = c.policy();
        assert!(p.blocked_extensions.contains(&"exe".to_string()));
        assert!(p.block_executables && p.scan_archives && p.block_encrypted && !p.block_unscannable);
        let c = Config::parse(
            r#"{"action": "quarantine", "extra_blocked_extensions": [".DOCM"], "allowed_extensions": ["iso", "img"]}"#,
        )
        .unwrap();
        let p = c.policy();
        assert_eq!(c.action, Action::Quarantine);
        assert!(p.blocked_extensions.contains(&"docm".to_string()));
        assert!(!p.blocked_extensions.contains(&"iso".to_string()));
        let c = Config::parse(r#"{"blocked_extensions": ["exe"]}"#).unwrap();
        assert_eq!(c.policy().blocked_extensions, ["exe"]);
    }

    #[test]
    fn config_refusals() {
        let e = Config::parse(r#"{"action": "strip"}"#).unwrap_err();
        assert!(e.contains("cannot rewrite"), "{e}");
        for bad in [
            r#"{"action": "drop"}"#,
            r#"{"typo": 1}"#,
            r#"{"max_archive_depth": 99}"#,
            "[",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parts_are_scanned_in_order() {
        let policy = Policy::default();
        let db = SigDb::default();
        let parts = vec![
            PartInfo {
                index: 0,
                filename: None,
                is_attachment: false,
            },
            PartInfo {
                index: 1,
                filename: Some("invoice.pdf".into()),
                is_attachment: true,
            },
            PartInfo {
                index: 2,
                filename: Some("invoice.pdf.exe".into()),
                is_attachment: true,
            },
        ];
        let body = |i: u32| Some(format!("content {i}").into_bytes());
        let f = scan_parts(&mut Scanner::new(&policy, &db), &policy, &parts, body).unwrap();
        assert_eq!(f.name, "Heuristics.DoubleExtension");
        assert_eq!(f.location, "part 3 (invoice.pdf.exe)");
        let r = reject_reply(&f);
        assert_eq!((r.code, r.enhanced.as_str()), (554, "5.7.1"));
        assert_eq!(
            r.text,
            "Message rejected: Heuristics.DoubleExtension found in part 3 (invoice.pdf.exe)"
        );
        // Clean parts give nothing.
        let f = scan_parts(&mut Scanner::new(&policy, &db), &policy, &parts[..2], body);
        assert_eq!(f, None);
        // A missing body (no such part) is skipped.
        assert_eq!(
            scan_parts(&mut Scanner::new(&policy, &db), &policy, &parts[..2], |_| None),
            None
        );
    }

    fn example_db() -> SigDb {
        let mut db = SigDb::default();
        db.load("example.hdb", include_str!("../signatures/example.hdb"));
        db.load("example.ndb", include_str!("../signatures/example.ndb"));
        db
    }

    #[test]
    fn state_is_built_once_and_not_from_a_bad_config() {
        let loads = std::cell::Cell::new(0);
        let load = || {
            loads.set(loads.get() + 1);
            example_db()
        };
        let json = r#"{"action": "quarantine"}"#;
        let a = poczta_plugin::per_config_text(json, |j| State::build(j, load)).unwrap();
        let b = poczta_plugin::per_config_text(json, |j| State::build(j, load)).unwrap();
        assert!(std::rc::Rc::ptr_eq(&a, &b));
        assert_eq!((loads.get(), a.cfg.action), (1, Action::Quarantine));
        assert!(a.db.len() >= 3);
        assert!(State::build(r#"{"action": "strip"}"#, load).is_err());
        assert_eq!(loads.get(), 1, "assets are not read for a bad config");
    }

    #[test]
    fn example_signatures_in_large_text_parts() {
        let state = State::build("{}", example_db).unwrap();
        let scan = |text: &[u8]| {
            let mut s = Scanner::new(&state.policy, &state.db);
            s.scan(text, false, 0, "part 1").map(|f| f.name)
        };
        let mut text = bench_text(100 << 10);
        assert_eq!(scan(&text), None);
        let mid = text.len() / 2;
        text.splice(
            mid..mid,
            b"powershell -c \"IEX (New-Object Net.WebClient).DownloadString('x')\""
                .iter()
                .copied(),
        );
        assert_eq!(scan(&text).as_deref(), Some("Example.Script.DownloadCradle"));
        let mut text = bench_text(100 << 10);
        text.extend(b"POCZTA and WILDCARD-SIG POCZTA12345678WILDCARD SIG\r\n");
        assert_eq!(scan(&text).as_deref(), Some("Poczta.Test.Wildcard"));
        text.splice(10..10, b"POCZTA-TEST-SIGNATURE-NDB".iter().copied());
        assert_eq!(scan(&text).as_deref(), Some("Poczta.Test.Ndb"));
        text.splice(100..100, [scan::EICAR_HEAD, scan::EICAR_TAIL].concat());
        assert_eq!(scan(&text).as_deref(), Some(scan::EICAR_NAME));
    }

    /// The benchmark's message text: CRLF lines of 78 characters.
    fn bench_text(size: usize) -> Vec<u8> {
        let phrase =
            "The quick brown fox jumps over the lazy dog. 0123456789 PACK MY BOX WITH FIVE DOZEN JUGS! ";
        let mut chars = phrase.bytes().cycle();
        let mut out = Vec::with_capacity(size + 80);
        while out.len() < size {
            out.extend(chars.by_ref().take(78));
            out.extend(b"\r\n");
        }
        out
    }

    /// Per-message cost, natively (a proxy for the wasm cost):
    /// `cargo test --release -p antivirus -- --ignored --nocapture measure`.
    #[test]
    #[ignore]
    fn measure_scan_cost() {
        use std::time::Instant;
        let load = example_db;
        let parts = [PartInfo {
            index: 0,
            filename: None,
            is_attachment: false,
        }];
        for size in [2 << 10, 100 << 10] {
            let text = bench_text(size);
            let iters = if size < 10_000 { 2000 } else { 200 };
            // What the hook does per message (the clone stands for the copy
            // `part-body` makes).
            let t = Instant::now();
            for _ in 0..iters {
                let state = poczta_plugin::per_config_text("{}", |j| State::build(j, load)).unwrap();
                let (policy, db) = (&state.policy, &state.db);
                let f = scan_parts(&mut Scanner::new(policy, db), policy, &parts, |_| {
                    Some(text.clone())
                });
                assert_eq!(f, None);
            }
            let hook = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
            let state = State::build("{}", load).unwrap();
            let t = Instant::now();
            for _ in 0..iters {
                let f = Scanner::new(&state.policy, &state.db).scan(&text, false, 0, "part 1");
                assert_eq!(f, None);
            }
            let scan = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
            println!(
                "antivirus {} KB: per message {hook:.1} µs, scan only {scan:.1} µs",
                size >> 10
            );
        }
    }
}
