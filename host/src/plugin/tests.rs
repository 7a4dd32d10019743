//! Host-level tests with the real test plugins from `plugins/dist/`
//! (built by `plugins/build`). A test whose plugin is not built prints
//! `SKIP: <file> not built` and returns; every other outcome is asserted.
//!
//! `POCZTA_PLUGINS_DIST` overrides the directory (default
//! `$CARGO_MANIFEST_DIR/../plugins/dist`). Compiled components are cached
//! in `$TMPDIR/poczta-plugin-tests-cache`, so only the first run pays for
//! compiling the Python and JavaScript plugins.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

// ---------------------------------------------------------------- helpers

fn dist(file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("POCZTA_PLUGINS_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/dist")));
    let path = dir.join(file);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("SKIP: {} not built (run plugins/build)", path.display());
        None
    }
}

macro_rules! plugin_or_skip {
    ($file:expr) => {
        match dist($file) {
            Some(p) => p,
            None => return,
        }
    };
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::new(Some(std::env::temp_dir().join("poczta-plugin-tests-cache"))).expect("runtime")
    })
}

fn dead_resolver() -> Arc<crate::dns::Resolver> {
    // Nothing listens on port 9 of loopback: look-ups fail fast.
    Arc::new(
        crate::dns::Resolver::new(&crate::dns::ResolverConfig {
            nameservers: vec![SocketAddr::from(([127, 0, 0, 1], 9))],
            timeout: Duration::from_millis(300),
            cache_size: 16,
        })
        .expect("resolver"),
    )
}

fn services() -> Services {
    Services {
        kv: Arc::new(MemoryKv::new()),
        dns: dead_resolver(),
    }
}

fn cfg(name: &str, path: &std::path::Path, config: serde_json::Value) -> PluginConfig {
    let mut c = PluginConfig::new(name, path);
    c.config_json = config.to_string();
    c
}

fn load_with(cfgs: &[PluginConfig], thresholds: ScoreThresholds, services: Services) -> Arc<PluginSet> {
    Arc::new(PluginSet::load(runtime(), cfgs, thresholds, services).expect("load"))
}

fn load(cfgs: &[PluginConfig]) -> Arc<PluginSet> {
    load_with(cfgs, ScoreThresholds::default(), services())
}

fn conn() -> ConnInfo {
    ConnInfo {
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        client_port: 40000,
        listener: "smtp".into(),
        tls: false,
        authenticated: None,
        helo: String::new(),
    }
}

const MSG: &str = "From: Ann <a@example.net>\r\n\
To: b@example.test\r\n\
Subject: hello python\r\n\
X-Remove-Me: 1\r\n\
X-Spam-Flag: YES\r\n\
X-Spam-Score: -100\r\n\
\r\n\
Hello.\r\n";

fn env() -> Envelope {
    Envelope {
        mail_from: "a@example.net".into(),
        rcpts: vec!["b@example.test".into()],
    }
}

/// connect, helo, mail-from, rcpt, data — stopping at nothing.
async fn transaction(session: &mut Session, raw: &str) -> DataOutcome {
    session.connect().await;
    session.helo("client.example.net").await;
    let mut e = env();
    e.rcpts.clear();
    session.mail_from(&e).await;
    session.rcpt(&e, "b@example.test").await;
    session.data(&env(), Arc::new(raw.as_bytes().to_vec())).await
}

fn header<'a>(outcome: &'a DataOutcome, name: &str) -> Option<&'a str> {
    outcome
        .add_headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn tempfail_default() -> Decision {
    Decision::Tempfail(PluginReply {
        code: 451,
        enhanced: "4.7.1".into(),
        text: "Temporary policy failure, try again later".into(),
    })
}

/// Captures tracing events of the current thread (tests run on a
/// current-thread runtime, so every hook runs here).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        struct V(String);
        impl tracing::field::Visit for V {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                let _ = write!(self.0, " {}={:?}", f.name(), v);
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                let _ = write!(self.0, " {}={}", f.name(), v);
            }
        }
        let m = event.metadata();
        let mut v = V(format!("{} {}", m.level(), m.target()));
        event.record(&mut v);
        self.0.lock().unwrap().push(v.0);
    }
}

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    use tracing_subscriber::layer::SubscriberExt as _;
    let c = Captured::default();
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(c.clone()));
    (c, guard)
}

// ------------------------------------------------------------------ load

#[tokio::test]
async fn load_and_describe() {
    let tag = plugin_or_skip!("tag-score.wasm");
    let verdicts = plugin_or_skip!("verdicts.wasm");
    let set = load(&[cfg("tagger", &tag, json!({})), cfg("v", &verdicts, json!({}))]);
    let d = set.describe();
    assert_eq!(d[0].0, "tagger");
    assert_eq!(d[0].1.name, "tag-score");
    assert_eq!(d[0].1.hooks, vec!["headers"]);
    assert_eq!(d[1].1.name, "verdicts");
    assert_eq!(
        d[1].1.hooks,
        vec![
            "connect",
            "helo",
            "mail-from",
            "rcpt",
            "headers",
            "body",
            "deliver"
        ]
    );
    assert!(set.has_hook(Hook::Headers) && set.has_hook(Hook::Deliver));
    let only_tag = load(&[cfg("tagger", &tag, json!({}))]);
    assert!(!only_tag.has_hook(Hook::Connect) && !only_tag.has_hook(Hook::Body));
}

#[test]
fn load_errors_name_the_plugin() {
    let tag = match dist("tag-score.wasm") {
        Some(p) => p,
        None => return,
    };
    let missing = PluginConfig::new("ghost", "/nonexistent/ghost.wasm");
    let err = PluginSet::load(runtime(), &[missing], ScoreThresholds::default(), services()).unwrap_err();
    assert!(
        matches!(err, PluginError::Read { ref plugin, .. } if plugin == "ghost"),
        "{err}"
    );

    let dup = [PluginConfig::new("a", &tag), PluginConfig::new("a", &tag)];
    let err = PluginSet::load(runtime(), &dup, ScoreThresholds::default(), services()).unwrap_err();
    assert!(err.to_string().contains("duplicate"), "{err}");

    let mut big = PluginConfig::new("big", &tag);
    big.memory = 1 << 30;
    let err = PluginSet::load(runtime(), &[big], ScoreThresholds::default(), services()).unwrap_err();
    assert!(matches!(err, PluginError::Config { .. }), "{err}");

    // A file that is not a component.
    let junk = std::env::temp_dir().join(format!("poczta-not-a-component-{}.wasm", std::process::id()));
    std::fs::write(&junk, b"\0asm\x01\0\0\0").unwrap();
    let err = PluginSet::load(
        runtime(),
        &[PluginConfig::new("junk", &junk)],
        ScoreThresholds::default(),
        services(),
    )
    .unwrap_err();
    let _ = std::fs::remove_file(&junk);
    assert!(
        matches!(err, PluginError::Compile { ref plugin, .. } if plugin == "junk"),
        "{err}"
    );
}

// -------------------------------------------------------------- verdicts

fn obj(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert(key.to_string(), value);
    serde_json::Value::Object(m)
}

fn reply(code: u16, enhanced: &str, text: &str) -> PluginReply {
    PluginReply {
        code,
        enhanced: enhanced.into(),
        text: text.into(),
    }
}

#[tokio::test]
async fn every_verdict_of_every_hook() {
    let path = plugin_or_skip!("verdicts.wasm");
    let r = |c: u16, e: &str, t: &str| json!([c, e, t]);
    // (config value, expected decision) for the five verdict hooks.
    let cases: Vec<(serde_json::Value, Decision)> = vec![
        (json!("continue"), Decision::Continue),
        (json!("accept"), Decision::Accept),
        (
            json!({"reject": r(554, "5.7.1", "no")}),
            Decision::Reject(reply(554, "5.7.1", "no")),
        ),
        (
            json!({"tempfail": r(450, "4.2.0", "later")}),
            Decision::Tempfail(reply(450, "4.2.0", "later")),
        ),
        (
            json!({"disconnect": r(421, "4.7.0", "bye")}),
            Decision::Disconnect(reply(421, "4.7.0", "bye")),
        ),
        (json!({"quarantine": "odd"}), Decision::Quarantine("odd".into())),
    ];
    for hook in ["connect", "helo", "mail-from", "headers", "body"] {
        for (value, want) in &cases {
            let set = load(&[cfg("v", &path, obj(hook, value.clone()))]);
            let mut s = set.session(conn());
            let got = match hook {
                "connect" => s.connect().await,
                "helo" => s.helo("h.example").await,
                "mail-from" => s.mail_from(&env()).await,
                _ => {
                    s.mail_from(&env()).await;
                    let out = s.data(&env(), Arc::new(MSG.as_bytes().to_vec())).await;
                    out.decision
                }
            };
            assert_eq!(&got, want, "hook {hook}, config {value}");
        }
        // discard: meaningful only in headers/body, a default reject elsewhere.
        let set = load(&[cfg("v", &path, obj(hook, json!("discard")))]);
        let mut s = set.session(conn());
        let got = match hook {
            "connect" => s.connect().await,
            "helo" => s.helo("h").await,
            "mail-from" => s.mail_from(&env()).await,
            _ => s.data(&env(), Arc::new(MSG.as_bytes().to_vec())).await.decision,
        };
        let want = if matches!(hook, "headers" | "body") {
            Decision::Discard
        } else {
            Decision::Reject(reply(550, "5.7.1", "Rejected by policy"))
        };
        assert_eq!(got, want, "discard at {hook}");
    }

    let rcpt_cases: Vec<(serde_json::Value, RcptDecision)> = vec![
        (json!("continue"), RcptDecision::Continue),
        (json!("accept"), RcptDecision::Accept),
        (
            json!({"reject": r(550, "5.1.1", "no such user")}),
            RcptDecision::Reject(reply(550, "5.1.1", "no such user")),
        ),
        (
            json!({"tempfail": r(452, "4.2.2", "full")}),
            RcptDecision::Tempfail(reply(452, "4.2.2", "full")),
        ),
        (
            json!({"redirect": ["x@example.test", "y@example.test"]}),
            RcptDecision::Redirect(vec!["x@example.test".into(), "y@example.test".into()]),
        ),
        // An empty redirect is a plugin failure: on_error (tempfail).
        (
            json!({"redirect": []}),
            RcptDecision::Tempfail(reply(451, "4.7.1", "Temporary policy failure, try again later")),
        ),
    ];
    for (value, want) in rcpt_cases {
        let set = load(&[cfg("v", &path, obj("rcpt", value.clone()))]);
        let mut s = set.session(conn());
        s.mail_from(&env()).await;
        assert_eq!(s.rcpt(&env(), "b@example.test").await, want, "rcpt {value}");
    }

    let deliver_cases: Vec<(serde_json::Value, Folder)> = vec![
        (json!("continue"), Folder::Inbox),
        (json!("inbox"), Folder::Inbox),
        (json!("junk"), Folder::Junk),
        (json!("discard"), Folder::Discard),
        (json!({"quarantine": "held"}), Folder::Quarantine("held".into())),
    ];
    for (value, want) in deliver_cases {
        let set = load(&[cfg("v", &path, obj("deliver", value.clone()))]);
        let mut s = set.session(conn());
        let out = transaction(&mut s, MSG).await;
        assert_eq!(out.decision, Decision::Continue);
        assert_eq!(s.deliver(&env(), "b@example.test").await, want, "deliver {value}");
    }
}

#[tokio::test]
async fn replies_outside_their_class_get_defaults() {
    let path = plugin_or_skip!("verdicts.wasm");
    let (logs, _g) = capture();
    let cases = [
        (
            json!({"headers": {"reject": [250, "2.0.0", "ok"]}}),
            Decision::Reject(reply(550, "5.7.1", "Rejected by policy")),
        ),
        (
            json!({"headers": {"tempfail": [550, "5.7.1", "x"]}}),
            Decision::Tempfail(reply(451, "4.7.1", "Try again later")),
        ),
        (
            json!({"headers": {"disconnect": [450, "4.7.1", "x"]}}),
            Decision::Disconnect(reply(421, "4.7.0", "Closing connection")),
        ),
        (
            json!({"headers": {"reject": [550, "4.7.1", "mismatch"]}}),
            Decision::Reject(reply(550, "5.7.1", "mismatch")),
        ),
        (
            json!({"headers": {"reject": [553, "", "line\r\nbreak"]}}),
            Decision::Reject(reply(553, "5.7.1", "linebreak")),
        ),
    ];
    for (config, want) in cases {
        let set = load(&[cfg("v", &path, config.clone())]);
        let mut s = set.session(conn());
        let out = transaction(&mut s, MSG).await;
        assert_eq!(out.decision, want, "{config}");
    }
    assert!(logs.count("is not valid for") >= 3, "{:?}", logs.lines());
}

#[tokio::test]
async fn chain_stops_at_first_terminal_and_accept_stops_only_its_hook() {
    let path = plugin_or_skip!("verdicts.wasm");
    let set = load(&[
        cfg(
            "first",
            &path,
            json!({"headers": {"reject": [550, "5.7.1", "first"]}}),
        ),
        cfg(
            "second",
            &path,
            json!({"headers": {"reject": [554, "5.7.1", "second"]}}),
        ),
    ]);
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(out.decision, Decision::Reject(reply(550, "5.7.1", "first")));
    let headers: Vec<&(String, String, String)> = out.verdicts.iter().filter(|v| v.1 == "headers").collect();
    assert_eq!(headers.len(), 1, "second plugin must not run: {:?}", out.verdicts);
    assert!(
        !out.verdicts.iter().any(|v| v.1 == "body"),
        "body must not run after a terminal headers verdict"
    );

    let set = load(&[
        cfg("first", &path, json!({"headers": "accept"})),
        cfg(
            "second",
            &path,
            json!({"headers": {"reject": [550, "5.7.1", "x"]}, "body": "continue"}),
        ),
    ]);
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(out.decision, Decision::Accept);
    assert!(
        out.verdicts
            .contains(&("second".into(), "body".into(), "continue".into())),
        "{:?}",
        out.verdicts
    );
    assert!(
        !out.verdicts
            .contains(&("second".into(), "headers".into(), "reject".into()))
    );
}

#[tokio::test]
async fn quarantine_before_data_applies_to_the_message() {
    let path = plugin_or_skip!("verdicts.wasm");
    let set = load(&[cfg(
        "v",
        &path,
        json!({"mail-from": {"quarantine": "suspicious sender"}}),
    )]);
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(out.decision, Decision::Quarantine("suspicious sender".into()));
    assert_eq!(
        s.deliver(&env(), "b@example.test").await,
        Folder::Quarantine("suspicious sender".into())
    );
    // The next transaction starts clean.
    s.end_transaction();
    let mut e = env();
    e.rcpts.clear();
    s.mail_from(&e).await;
    let out = s.data(&env(), Arc::new(MSG.as_bytes().to_vec())).await;
    assert_eq!(
        out.decision,
        Decision::Quarantine("suspicious sender".into()),
        "mail-from runs again"
    );
}

// ------------------------------------------------------- scores, headers

fn thresholds() -> ScoreThresholds {
    ScoreThresholds::default() // 5, 6, 15
}

#[tokio::test]
async fn scores_are_summed_and_thresholds_applied() {
    let tag = plugin_or_skip!("tag-score.wasm");
    // Below every threshold: only the summary header.
    let set = load(&[
        cfg("t1", &tag, json!({"weight": 1.5})),
        cfg("t2", &tag, json!({"weight": 2.0})),
    ]);
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(out.score, 3.5);
    assert_eq!(out.symbols.len(), 2);
    assert_eq!(out.symbols[0].plugin, "t1");
    assert!(!out.junk);
    assert_eq!(out.decision, Decision::Continue);
    assert_eq!(
        header(&out, "X-Poczta-Score"),
        Some("3.5 (TAGGED=1.5, TAGGED=2.0)")
    );
    assert_eq!(header(&out, "X-Spam-Flag"), None);
    assert_eq!(s.deliver(&env(), "b@example.test").await, Folder::Inbox);

    // add_header (5) but not junk (6).
    let set = load_with(
        &[cfg("t", &tag, json!({"weight": 5.5}))],
        thresholds(),
        services(),
    );
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert!(!out.junk);
    assert_eq!(header(&out, "X-Spam-Score"), Some("5.5"));
    assert_eq!(header(&out, "X-Spam-Flag"), Some("NO"));

    // junk.
    let set = load_with(
        &[cfg("t", &tag, json!({"weight": 7.5}))],
        thresholds(),
        services(),
    );
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert!(out.junk);
    assert_eq!(out.decision, Decision::Continue);
    assert_eq!(header(&out, "X-Spam-Flag"), Some("YES"));
    assert_eq!(header(&out, "X-Spam-Status"), Some("Yes, score=7.5 required=6.0"));
    assert_eq!(s.deliver(&env(), "b@example.test").await, Folder::Junk);

    // reject.
    let set = load_with(&[cfg("t", &tag, json!({"weight": 20}))], thresholds(), services());
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(
        out.decision,
        Decision::Reject(reply(550, "5.7.1", "Message rejected as spam (score 20.0)"))
    );

    // Thresholds switched off.
    let off = ScoreThresholds {
        add_header: None,
        junk: None,
        reject: None,
    };
    let set = load_with(&[cfg("t", &tag, json!({"weight": 20}))], off, services());
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(out.decision, Decision::Continue);
    assert!(!out.junk);
    assert_eq!(header(&out, "X-Spam-Score"), None);
}

#[tokio::test]
async fn headers_added_and_removed() {
    let tag = plugin_or_skip!("tag-score.wasm");
    let set = load(&[cfg("t", &tag, json!({}))]);
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(
        out.add_headers[0],
        ("X-Poczta-Tagged".to_string(), "yes".to_string())
    );
    assert!(out.add_headers.last().is_some_and(|(n, _)| n == "X-Poczta-Score"));
    for name in ["x-remove-me", "x-spam-flag", "x-spam-score"] {
        assert!(
            out.remove_headers.contains(&name.to_string()),
            "{name} in {:?}",
            out.remove_headers
        );
    }

    // Without plugins: nothing added, untrusted headers still stripped.
    let empty = Arc::new(PluginSet::empty(ScoreThresholds::default()));
    let mut s = empty.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert!(out.add_headers.is_empty(), "{:?}", out.add_headers);
    assert_eq!(out.remove_headers, vec!["x-spam-flag", "x-spam-score"]);
    assert_eq!(out.decision, Decision::Continue);
    assert_eq!(s.deliver(&env(), "b@example.test").await, Folder::Inbox);
}

#[tokio::test]
async fn notes_are_shared_within_a_transaction_only() {
    // No test plugin uses notes, so this drives the `transaction` host
    // functions directly on two plugins' stores sharing one transaction.
    use super::bindings::poczta::plugin::transaction::Host as _;
    let tag = plugin_or_skip!("tag-score.wasm");
    let set = load(&[cfg("a", &tag, json!({})), cfg("b", &tag, json!({}))]);
    let txn: state::SharedTxn = Arc::new(Mutex::new(state::TxnData::default()));
    let mut a = state::new_store(&set.plugins[0], Arc::clone(&txn), 1, true);
    let mut b = state::new_store(&set.plugins[1], Arc::clone(&txn), 1, true);
    a.data_mut().set_note("spf".into(), "pass".into()).unwrap();
    assert_eq!(
        b.data_mut().get_note("spf".into()).unwrap().as_deref(),
        Some("pass")
    );
    b.data_mut().add_symbol("B".into(), 2.0, "".into()).unwrap();
    assert_eq!(a.data_mut().score().unwrap(), 2.0);
    // Invalid requests are ignored, not stored.
    a.data_mut().add_header("Bad Name".into(), "x".into()).unwrap();
    a.data_mut()
        .add_header("X-Ok".into(), "a\r\nBcc: evil@example".into())
        .unwrap();
    a.data_mut()
        .add_symbol("NAN".into(), f64::NAN, "".into())
        .unwrap();
    let data = state::lock(&txn).clone();
    assert!(data.add_headers.is_empty());
    assert_eq!(data.symbols.len(), 1);

    // A fresh transaction does not see them.
    let fresh: state::SharedTxn = Arc::new(Mutex::new(state::TxnData::default()));
    let mut c = state::new_store(&set.plugins[0], fresh, 2, true);
    assert_eq!(c.data_mut().get_note("spf".into()).unwrap(), None);
}

// ----------------------------------------------------- failures, limits

async fn hostile(
    file: &str,
    on_error: OnError,
    memory: usize,
) -> Option<(DataOutcome, Vec<(String, String, String)>, Captured)> {
    let path = dist(file)?;
    let tag = dist("tag-score.wasm")?;
    let mut h = PluginConfig::new("hostile", &path);
    h.on_error = on_error;
    h.memory = memory;
    let set = load(&[h, cfg("tagger", &tag, json!({}))]);
    let (logs, _g) = capture();
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    let failures = s.failures();
    // A second transaction on the same session works (fresh instances).
    s.end_transaction();
    let again = transaction(&mut s, MSG).await;
    assert_eq!(
        again.decision, out.decision,
        "second transaction behaves the same"
    );
    Some((out, failures, logs))
}

async fn check_hostile(file: &str, memory: usize, want_cause: &str) {
    let Some((out, failures, logs)) = hostile(file, OnError::Tempfail, memory).await else {
        return;
    };
    assert_eq!(out.decision, tempfail_default(), "{file} with on_error=tempfail");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        (failures[0].0.as_str(), failures[0].1.as_str()),
        ("hostile", "headers")
    );
    assert!(
        failures[0].2.contains(want_cause),
        "{file}: cause {:?}, want {want_cause:?}",
        failures[0].2
    );
    let warn = logs
        .lines()
        .into_iter()
        .find(|l| l.contains("plugin failed"))
        .expect("a warn line");
    assert!(
        warn.starts_with("WARN")
            && warn.contains("plugin=hostile")
            && warn.contains("hook=headers")
            && warn.contains(want_cause),
        "{warn}"
    );

    let Some((out, failures, _)) = hostile(file, OnError::Continue, memory).await else {
        return;
    };
    assert_eq!(out.decision, Decision::Continue, "{file} with on_error=continue");
    assert_eq!(failures.len(), 1);
    assert_eq!(
        header(&out, "X-Poczta-Tagged"),
        Some("yes"),
        "the next plugin still ran"
    );
}

#[tokio::test]
async fn hostile_trap_is_contained() {
    check_hostile("hostile-trap.wasm", DEFAULT_MEMORY, "trap").await;
}

#[tokio::test]
async fn hostile_loop_hits_the_deadline() {
    check_hostile("hostile-loop.wasm", DEFAULT_MEMORY, "deadline exceeded").await;
}

#[tokio::test]
async fn hostile_memory_hits_the_cap() {
    check_hostile("hostile-memory.wasm", 16 << 20, "out of memory").await;
}

#[tokio::test]
async fn fuel_stops_a_loop() {
    let path = plugin_or_skip!("hostile-loop.wasm");
    let mut h = PluginConfig::new("hostile", &path);
    h.fuel = Some(5_000_000);
    h.timeout = Duration::from_secs(5); // fuel, not the deadline, must stop it
    let set = load(&[h]);
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(out.decision, tempfail_default());
    assert!(s.failures()[0].2.contains("fuel exhausted"), "{:?}", s.failures());
}

#[tokio::test]
async fn error_result_keeps_policy_and_repeated_failures_stop_running() {
    let path = plugin_or_skip!("verdicts.wasm");
    let mut c = cfg("v", &path, json!({"rcpt": {"error": "db down"}}));
    c.on_error = OnError::Continue;
    let set = load(&[c]);
    let mut s = set.session(conn());
    s.mail_from(&env()).await;
    for _ in 0..5 {
        assert_eq!(s.rcpt(&env(), "b@example.test").await, RcptDecision::Continue);
    }
    let f = s.failures();
    assert_eq!(f.len(), 5);
    assert!(f[0].2.contains("db down"), "{f:?}");
    assert!(
        f[4].2.contains("not run"),
        "after 3 failures the plugin is skipped: {f:?}"
    );

    let set = load(&[cfg("v", &path, json!({"helo": "trap"}))]);
    let mut s = set.session(conn());
    assert_eq!(s.helo("a").await, tempfail_default());
    // A later hook in the same scope gets a fresh instance.
    assert_eq!(s.helo("b").await, tempfail_default());
    assert!(
        s.failures().iter().all(|f| f.2.starts_with("trap")),
        "{:?}",
        s.failures()
    );
}

#[tokio::test]
async fn reused_instances_go_back_to_the_pool_only_when_clean() {
    let tag = plugin_or_skip!("tag-score.wasm");
    let trap = plugin_or_skip!("hostile-trap.wasm");
    let looping = plugin_or_skip!("hostile-loop.wasm");
    let idle = |set: &Arc<PluginSet>| set.plugins[0].pool.idle();

    let mut t = cfg("tagger", &tag, json!({}));
    t.reuse = 2;
    let set = load(&[t.clone()]);
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(header(&out, "X-Poczta-Tagged"), Some("yes"));
    assert_eq!(idle(&set), 0, "in use during the transaction");
    s.end_transaction();
    assert_eq!(idle(&set), 1, "back after the transaction");
    let out = transaction(&mut s, MSG).await;
    assert_eq!(idle(&set), 0, "taken by the next transaction");
    assert_eq!(
        header(&out, "X-Poczta-Tagged"),
        Some("yes"),
        "a reused instance answers the same"
    );
    s.end_transaction();
    assert_eq!(idle(&set), 0, "retired after `reuse` transactions");
    let weak = Arc::downgrade(&set.plugins[0]);
    transaction(&mut s, MSG).await;
    drop(s);
    assert_eq!(idle(&set), 1, "a closed connection gives its instance back");
    drop(set);
    assert!(
        weak.upgrade().is_none(),
        "a dropped set frees its plugins and their idle instances"
    );

    t.reuse = 1;
    let set = load(&[t]);
    let mut s = set.session(conn());
    transaction(&mut s, MSG).await;
    s.end_transaction();
    assert_eq!(idle(&set), 0, "reuse = 1: a fresh instance every time");

    let mut h = PluginConfig::new("hostile", &trap);
    h.reuse = 100;
    let set = load(&[h]);
    let mut s = set.session(conn());
    assert_eq!(transaction(&mut s, MSG).await.decision, tempfail_default());
    s.end_transaction();
    assert_eq!(idle(&set), 0, "a trapped instance is never reused");

    let mut h = PluginConfig::new("hostile", &looping);
    h.reuse = 100;
    h.timeout = Duration::from_secs(30);
    let set = load(&[h]);
    let mut s = set.session(conn());
    let abandoned = tokio::time::timeout(Duration::from_millis(300), transaction(&mut s, MSG)).await;
    assert!(abandoned.is_err(), "the loop is still running when dropped");
    drop(s);
    assert_eq!(
        idle(&set),
        0,
        "an instance dropped in the middle of a call is never reused"
    );
}

#[tokio::test]
async fn hostile_flood_is_rate_limited() {
    let path = plugin_or_skip!("hostile-flood.wasm");
    let mut c = PluginConfig::new("flood", &path);
    c.grants = Grants {
        kv: true,
        ..Grants::default()
    };
    // Long enough to finish 200,000 host calls in a debug build: this test
    // is about the log limit and kv quota, not the deadline.
    c.timeout = Duration::from_secs(30);
    let set = load(&[c]);
    let (logs, _g) = capture();
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(out.decision, Decision::Continue, "{:?}", s.failures());
    let guest_lines = logs.count("poczta::plugin::guest");
    assert_eq!(
        guest_lines,
        state::MAX_LOG_LINES_PER_CALL as usize,
        "guest log lines kept"
    );
    assert_eq!(logs.count("log lines dropped"), 1);
    assert!(
        logs.lines().iter().any(|l| l.contains("dropped=99900")),
        "{:?}",
        logs.lines().iter().rev().take(3).collect::<Vec<_>>()
    );

    // With the default deadline it may or may not finish; either way the
    // host answers and the next transaction works.
    let mut c = PluginConfig::new("flood", &path);
    c.on_error = OnError::Continue;
    let set = load(&[c]);
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(out.decision, Decision::Continue);
}

// ------------------------------------------------------------ kv, dns

#[tokio::test]
async fn kv_needs_the_grant() {
    let path = plugin_or_skip!("kv-counter.wasm");
    let set = load(&[PluginConfig::new("counter", &path)]);
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(header(&out, "X-Poczta-Count"), Some("not-granted"));
    assert_eq!(header(&out, "X-Poczta-Dns"), Some("not-granted"));
}

#[tokio::test]
async fn kv_counts_across_transactions_and_dns_answers() {
    let path = plugin_or_skip!("kv-counter.wasm");
    let dns = FakeDns::start(&[("example.test", Ipv4Addr::new(192, 0, 2, 7))]).await;
    let kv = Arc::new(MemoryKv::new());
    let mut c = PluginConfig::new("counter", &path);
    c.grants = Grants {
        kv: true,
        dns: true,
        assets: false,
    };
    c.timeout = Duration::from_secs(2);
    let set = load_with(
        &[c],
        thresholds(),
        Services {
            kv: kv.clone(),
            dns: dns.resolver(),
        },
    );
    let mut s = set.session(conn());
    let first = transaction(&mut s, MSG).await;
    s.end_transaction();
    let second = transaction(&mut s, MSG).await;
    assert_eq!(header(&first, "X-Poczta-Count"), Some("1"));
    assert_eq!(header(&second, "X-Poczta-Count"), Some("2"));
    assert_eq!(header(&first, "X-Poczta-Dns"), Some("192.0.2.7"));
    // Namespaced by config name, stored as decimal text.
    assert_eq!(
        kv.get("counter", "messages", 0).unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(kv.get("other", "messages", 0).unwrap(), None);
}

#[tokio::test]
async fn dns_failure_is_a_host_error_not_a_plugin_failure() {
    let path = plugin_or_skip!("kv-counter.wasm");
    let mut c = PluginConfig::new("counter", &path);
    c.grants = Grants {
        kv: true,
        dns: true,
        assets: false,
    };
    c.timeout = Duration::from_secs(2);
    let set = load(&[c]);
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    let v = header(&out, "X-Poczta-Dns").unwrap_or_default();
    assert!(v == "failed" || v == "timeout", "{v}");
    assert_eq!(out.decision, Decision::Continue);
}

#[tokio::test]
async fn resolver_dnsbl_against_fake_server() {
    let dns = FakeDns::start(&[("1.2.0.192.bl.test", Ipv4Addr::new(127, 0, 0, 2))]).await;
    let r = dns.resolver();
    let listed = r.dnsbl("192.0.2.1".parse().unwrap(), "bl.test").await.unwrap();
    assert_eq!(listed, vec![Ipv4Addr::new(127, 0, 0, 2)]);
    let clean = r.dnsbl("192.0.2.2".parse().unwrap(), "bl.test").await.unwrap();
    assert!(clean.is_empty(), "NXDOMAIN = not listed");
}

/// A minimal authoritative DNS server on loopback UDP: A records from a
/// table, NXDOMAIN for everything else.
struct FakeDns {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeDns {
    async fn start(records: &[(&str, Ipv4Addr)]) -> FakeDns {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let records: Vec<(String, Ipv4Addr)> = records.iter().map(|(n, a)| (n.to_string(), *a)).collect();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                if let Some(resp) = FakeDns::answer(&buf[..n], &records) {
                    let _ = sock.send_to(&resp, peer).await;
                }
            }
        });
        FakeDns { addr, task }
    }

    fn resolver(&self) -> Arc<crate::dns::Resolver> {
        Arc::new(
            crate::dns::Resolver::new(&crate::dns::ResolverConfig {
                nameservers: vec![self.addr],
                timeout: Duration::from_secs(1),
                cache_size: 0,
            })
            .unwrap(),
        )
    }

    fn answer(q: &[u8], records: &[(String, Ipv4Addr)]) -> Option<Vec<u8>> {
        if q.len() < 12 {
            return None;
        }
        let mut i = 12;
        let mut labels = Vec::new();
        while *q.get(i)? != 0 {
            let len = q[i] as usize;
            labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).to_ascii_lowercase());
            i += 1 + len;
        }
        let qend = i + 5; // zero byte, qtype, qclass
        let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
        let name = labels.join(".");
        let hits: Vec<Ipv4Addr> = records
            .iter()
            .filter(|(n, _)| *n == name && qtype == 1)
            .map(|(_, a)| *a)
            .collect();
        let exists = records.iter().any(|(n, _)| *n == name);
        let mut r = Vec::with_capacity(qend + 16 * hits.len());
        r.extend_from_slice(&q[0..2]);
        r.extend_from_slice(&[0x85, if exists { 0x80 } else { 0x83 }]); // QR AA RD, RA, rcode
        r.extend_from_slice(&[0, 1]);
        r.extend_from_slice(&(hits.len() as u16).to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0]);
        r.extend_from_slice(q.get(12..qend)?);
        for a in hits {
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&a.octets());
        }
        Some(r)
    }
}

// -------------------------------------------------------- compile cache

#[test]
fn compile_cache_is_used_and_survives_corruption() {
    let tag = plugin_or_skip!("tag-score.wasm");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("poczta-cache-test-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let plugins = [PluginConfig::new("t", &tag)];

    let rt = Runtime::new(Some(dir.clone())).unwrap();
    PluginSet::load(&rt, &plugins, ScoreThresholds::default(), services()).unwrap();
    assert_eq!((rt.compiled_count(), rt.cache_hit_count()), (1, 0));
    let cwasm: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(cwasm.len(), 1, "one .cwasm in {}", dir.display());
    assert!(
        cwasm[0].file_name().unwrap().to_string_lossy().contains('-'),
        "<sha256>-<engine hash>.cwasm"
    );

    // A new runtime (a restart) loads from the cache without compiling.
    let rt2 = Runtime::new(Some(dir.clone())).unwrap();
    PluginSet::load(&rt2, &plugins, ScoreThresholds::default(), services()).unwrap();
    assert_eq!((rt2.compiled_count(), rt2.cache_hit_count()), (0, 1));

    // Corrupt it: recompiled, not fatal, and rewritten.
    let mut bytes = std::fs::read(&cwasm[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&cwasm[0], &bytes).unwrap();
    let rt3 = Runtime::new(Some(dir.clone())).unwrap();
    PluginSet::load(&rt3, &plugins, ScoreThresholds::default(), services()).unwrap();
    assert_eq!((rt3.compiled_count(), rt3.cache_hit_count()), (1, 0));
    // Truncated: same.
    std::fs::write(&cwasm[0], &bytes[..100]).unwrap();
    let rt4 = Runtime::new(Some(dir.clone())).unwrap();
    PluginSet::load(&rt4, &plugins, ScoreThresholds::default(), services()).unwrap();
    assert_eq!(rt4.compiled_count(), 1);
    // And the rewritten entry is good again.
    let rt5 = Runtime::new(Some(dir.clone())).unwrap();
    PluginSet::load(&rt5, &plugins, ScoreThresholds::default(), services()).unwrap();
    assert_eq!((rt5.compiled_count(), rt5.cache_hit_count()), (0, 1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Isolation across a pool slot: each fresh instance must start from the
/// module's image, whatever the one before it in the slot wrote. The probe
/// dirties 1 MiB, more than the in-place reset budget
/// (`LINEAR_MEMORY_KEEP_RESIDENT`), so both reset paths are crossed.
#[tokio::test]
async fn a_fresh_instance_never_sees_an_earlier_instances_memory() {
    let probe = plugin_or_skip!("memory-probe.wasm");
    let set = load(&[cfg("p", &probe, json!({}))]);
    for i in 0..20 {
        let mut s = set.session(conn());
        let out = transaction(&mut s, MSG).await;
        assert_eq!(header(&out, "X-Probe"), Some("clean"), "transaction {i}");
    }
    // The control: one instance reused sees its own marks, so the probe
    // does detect a memory that was not reset.
    let mut c = cfg("p", &probe, json!({}));
    c.reuse = 10;
    let set = load(&[c]);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut s = set.session(conn());
        let out = transaction(&mut s, MSG).await;
        seen.push(header(&out, "X-Probe").map(str::to_owned));
    }
    assert_eq!(seen, [Some("clean".to_string()), Some("dirty 256".to_string())]);
}

#[test]
fn perf_map_names_plugin_code_when_asked() {
    let tag = plugin_or_skip!("tag-score.wasm");
    let map = std::env::temp_dir().join(format!("perf-{}.map", std::process::id()));
    let rt = Runtime::with_perfmap(None, true).unwrap();
    PluginSet::load(
        &rt,
        &[PluginConfig::new("t", &tag)],
        ScoreThresholds::default(),
        services(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&map).unwrap_or_default();
    let _ = std::fs::remove_file(&map);
    // "ADDR SIZE wasm[0]::function[N]": perf's format, one line per function.
    assert!(
        text.lines()
            .any(|l| l.split(' ').nth(2).is_some_and(|n| n.starts_with("wasm["))),
        "no plugin functions in {}",
        map.display()
    );
}

// ------------------------------------------------------- other languages

#[tokio::test]
async fn python_plugin_runs_headers() {
    let path = plugin_or_skip!("py-subject-tag.wasm");
    let set = load(&[cfg("py", &path, json!({"word": "python"}))]);
    assert_eq!(set.describe()[0].1.name, "py-subject-tag");
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(out.decision, Decision::Continue, "{:?}", s.failures());
    assert_eq!(header(&out, "X-Poczta-Python"), Some("seen"));
    assert_eq!(
        out.symbols
            .iter()
            .map(|s| (s.name.as_str(), s.weight))
            .collect::<Vec<_>>(),
        vec![("PY_SUBJECT_TAG", 2.0)]
    );
    // No match: nothing added.
    let mut s = set.session(conn());
    let out = transaction(&mut s, &MSG.replace("hello python", "hello")).await;
    assert_eq!(header(&out, "X-Poczta-Python"), None);
}

#[tokio::test]
async fn javascript_plugin_runs_headers() {
    let path = plugin_or_skip!("js-header-tag.wasm");
    let set = load(&[PluginConfig::new("js", &path)]);
    assert_eq!(set.describe()[0].1.name, "js-header-tag");
    let mut s = set.session(conn());
    let out = transaction(&mut s, MSG).await;
    assert_eq!(out.decision, Decision::Continue, "{:?}", s.failures());
    assert_eq!(header(&out, "X-Poczta-JS"), Some("seen"));
    assert_eq!(out.score, 0.5);
}

// ----------------------------------------------------------------- runner

#[test]
fn runner_check_reports_the_plugin() {
    let path = plugin_or_skip!("tag-score.wasm");
    let report = runner::check(runtime(), &path).unwrap();
    assert_eq!(report.name, "tag-score");
    assert_eq!(report.hooks, vec!["headers"]);
    assert_eq!(report.wit_package, "poczta:plugin@0.1.0");
    assert!(
        report
            .imports
            .iter()
            .any(|i| i.starts_with("poczta:plugin/transaction")),
        "{:?}",
        report.imports
    );
    assert!(report.to_string().contains("targets: poczta:plugin@0.1.0"));
}

#[tokio::test]
async fn runner_run_produces_contract_json() {
    let path = plugin_or_skip!("verdicts.wasm");
    let opts = runner::RunOptions {
        eml: MSG.as_bytes().to_vec(),
        from: "a@example.net".into(),
        to: vec!["b@example.test".into(), "c@example.test".into()],
        ip: "192.0.2.1".parse().unwrap(),
        helo: "client.example.net".into(),
        config_json:
            json!({"rcpt": {"redirect": ["x@example.test"]}, "body": {"reject": [554, "5.7.1", "no"]}})
                .to_string(),
        grants: Grants::ALL,
        kv: Arc::new(MemoryKv::new()),
        dns: dead_resolver(),
    };
    let report = runner::run(runtime(), &path, opts).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(v["verdict"], "reject");
    assert_eq!(
        v["reply"],
        json!({"code": 554, "enhanced": "5.7.1", "text": "no"})
    );
    assert_eq!(v["score"].to_string(), "0.0", "no -0.0");
    assert!(v["symbols"].as_array().unwrap().is_empty());
    let hooks: Vec<(String, String)> = v["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["hook"].as_str().unwrap().to_string(),
                h["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("connect", "continue"),
        ("helo", "continue"),
        ("mail-from", "continue"),
        ("rcpt", "redirect"),
        ("rcpt", "redirect"),
        ("headers", "continue"),
        ("body", "reject"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(hooks, want);
    assert!(v["headers_added"].is_array());
    assert!(
        report.to_string().contains("verdict: reject (554 5.7.1 no)"),
        "{report}"
    );
    println!("{report}\n{}", report.to_json());

    // tag-score: only headers runs; the summary header is reported.
    let tag = plugin_or_skip!("tag-score.wasm");
    let opts = runner::RunOptions {
        eml: MSG.as_bytes().to_vec(),
        from: "a@example.net".into(),
        to: vec!["b@example.test".into()],
        ip: "192.0.2.1".parse().unwrap(),
        helo: "h".into(),
        config_json: "{}".into(),
        grants: Grants::ALL,
        kv: Arc::new(MemoryKv::new()),
        dns: dead_resolver(),
    };
    let report = runner::run(runtime(), &tag, opts).await.unwrap();
    assert_eq!(report.verdict, "continue");
    assert_eq!(report.hooks.len(), 1);
    assert_eq!(report.symbols[0].name, "TAGGED");
    assert!(
        report
            .headers_added
            .contains(&("X-Poczta-Tagged".into(), "yes".into()))
    );
}

// ----------------------------------------------------------- measurement

/// `cargo test -- --ignored --nocapture measure_fresh_instance_per_hook`
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "timing measurement, not a test"]
async fn measure_fresh_instance_per_hook() {
    let mut raw = String::new();
    for i in 0..18 {
        let _ = write!(raw, "X-Header-{i}: value number {i} of the test message\r\n");
    }
    raw.push_str("Subject: hello python\r\nFrom: a@example.net\r\n\r\nbody\r\n");
    let raw = Arc::new(raw.into_bytes());
    let parse = {
        let start = Instant::now();
        for _ in 0..1000 {
            std::hint::black_box(ParsedMessage::parse(Arc::clone(&raw)));
        }
        start.elapsed() / 1000
    };
    let mp = {
        let start = Instant::now();
        for _ in 0..1000 {
            std::hint::black_box(mail_parser::MessageParser::new().parse(raw.as_slice()));
        }
        start.elapsed() / 1000
    };
    println!("message parse (20 headers): ParsedMessage::parse {parse:?} (mail-parser alone {mp:?})");
    for (file, n) in [
        ("tag-score.wasm", 3000),
        ("py-subject-tag.wasm", 400),
        ("js-header-tag.wasm", 400),
    ] {
        let Some(path) = dist(file) else { continue };
        let mut c = PluginConfig::new("m", &path);
        c.timeout = Duration::from_secs(5);
        let set = load(&[c]);
        let plugin = Arc::clone(&set.plugins[0]);
        let msg = Arc::new(ParsedMessage::parse(Arc::clone(&raw)));
        let wenv = super::bindings::types::Envelope {
            connection: super::bindings::types::Connection {
                client_ip: "192.0.2.1".into(),
                client_port: 1,
                listener: "smtp".into(),
                tls: false,
                authenticated: None,
                helo: "h".into(),
            },
            mail_from: "a@example.net".into(),
            rcpts: vec!["b@example.test".into()],
        };
        let (mut inst, mut call, mut total, mut data) = (vec![], vec![], vec![], vec![]);
        for i in 0..n + 20 {
            // Fresh store + instance + one headers call, as a transaction does.
            let t0 = Instant::now();
            let txn: state::SharedTxn = Arc::new(Mutex::new(state::TxnData::default()));
            let mut store = state::new_store(&plugin, txn, 1, true);
            store.data_mut().begin_call(Some(Hook::Headers), plugin.timeout);
            let guest = plugin.pre.instantiate_async(&mut store).await.unwrap();
            let t1 = Instant::now();
            store.data_mut().begin_call(Some(Hook::Headers), plugin.timeout);
            let h = store
                .data_mut()
                .table
                .push(super::message::MessageHandle(Arc::clone(&msg)))
                .unwrap();
            let r = guest
                .poczta_plugin_hooks()
                .call_headers(
                    &mut store,
                    &wenv,
                    wasmtime::component::Resource::new_borrow(h.rep()),
                )
                .await;
            let t2 = Instant::now();
            assert!(matches!(r, Ok(Ok(_))));
            drop(store);
            // The same through the façade (adds parse, thresholds, headers).
            let mut s = set.session(conn());
            s.mail_from(&env()).await;
            let t3 = Instant::now();
            let out = s.data(&env(), Arc::clone(&raw)).await;
            let t4 = Instant::now();
            assert_eq!(out.decision, Decision::Continue);
            if i >= 20 {
                inst.push(t1 - t0);
                call.push(t2 - t1);
                total.push(t2 - t0);
                data.push(t4 - t3);
            }
        }
        // The same façade call with `reuse`: the instance comes from the pool.
        let mut c = PluginConfig::new("m", &path);
        c.timeout = Duration::from_secs(5);
        c.reuse = u32::MAX;
        let reused_set = load(&[c]);
        let mut reused = vec![];
        let mut s = reused_set.session(conn());
        for i in 0..n + 20 {
            s.mail_from(&env()).await;
            let t0 = Instant::now();
            let out = s.data(&env(), Arc::clone(&raw)).await;
            let t1 = Instant::now();
            assert_eq!(out.decision, Decision::Continue);
            s.end_transaction();
            if i >= 20 {
                reused.push(t1 - t0);
            }
        }
        let med = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        println!(
            "{file}: median instantiate {:?} + first headers call {:?} = fresh+call {:?}; Session::data() {:?}, with a reused instance {:?} (n={n}, pooling={})",
            med(&mut inst),
            med(&mut call),
            med(&mut total),
            med(&mut data),
            med(&mut reused),
            runtime().is_pooling()
        );
    }
}

/// The server spawns sessions on tokio tasks and swaps sets with ArcSwap:
/// the futures must be `Send`, the set and runtime `Send + Sync`.
#[allow(dead_code)]
fn session_futures_are_send(s: &mut Session, e: &Envelope) {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send(&s.connect());
    send(&s.helo("h"));
    send(&s.mail_from(e));
    send(&s.rcpt(e, "r"));
    send(&s.data(e, Arc::new(Vec::new())));
    send(&s.deliver(e, "r"));
    send_sync::<PluginSet>();
    send_sync::<Runtime>();
    send_sync::<Services>();
    send::<Session>(s);
}
