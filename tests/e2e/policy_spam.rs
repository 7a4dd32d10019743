//! The spam-rules and forward policy plugins through the real server:
//! scores turning into tag / junk / reject, Bayes trained by `poczta plugin
//! train` while the server runs, `plugin run` on the sample messages, and
//! aliases, lists, forwards and loops delivered over SMTP and read over POP3.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{POCZTA, Raw, Server, plugin, plugin_entry, pop3_fetch_all};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/messages")
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(examples().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The value of the first header field `name` (unfolded) of a message.
fn header_of(msg: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line),
            Some(_) => break,
            None => {
                if let Some((n, v)) = line.split_once(':')
                    && n.eq_ignore_ascii_case(name)
                {
                    value = Some(v.trim().to_string());
                }
            }
        }
    }
    value
}

/// The symbol names of the `X-Poczta-Score` summary.
fn symbols_of(msg: &[u8]) -> Vec<String> {
    let summary = header_of(msg, "X-Poczta-Score").unwrap_or_default();
    let Some((_, list)) = summary.split_once('(') else {
        return Vec::new();
    };
    list.trim_end_matches(')')
        .split(',')
        .filter_map(|s| s.trim().split('=').next().map(str::to_owned))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Replaces the Date field with the current time, so a fixed sample does
/// not look old.
fn dated_now(msg: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(msg);
    let out = Command::new("date").args(["-R", "-u"]).output().expect("date");
    let now = String::from_utf8_lossy(&out.stdout).trim().to_string();
    text.split("\r\n")
        .map(|l| {
            if l.starts_with("Date:") {
                format!("Date: {now}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes()
}

/// One transaction over a raw connection; returns the replies to each RCPT
/// and the final reply (None when no RCPT was accepted).
fn transaction(s: &Server, from: &str, to: &[&str], data: &[u8]) -> (Vec<String>, Option<String>) {
    let (mut c, g) = Raw::connect(s.smtp);
    assert!(g.starts_with("220"), "{g}");
    assert!(c.cmd("EHLO client.test").starts_with("250"), "{}", c.transcript);
    assert!(
        c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"),
        "{}",
        c.transcript
    );
    let replies: Vec<String> = to.iter().map(|t| c.cmd(&format!("RCPT TO:<{t}>"))).collect();
    if !replies.iter().any(|r| r.starts_with("250")) {
        c.cmd("QUIT");
        return (replies, None);
    }
    assert!(c.cmd("DATA").starts_with("354"), "{}", c.transcript);
    let mut data = data.to_vec();
    if !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    c.send(&data);
    c.send(b".\r\n");
    let r = c.reply();
    c.cmd("QUIT");
    (replies, Some(r))
}

fn simple(subject: &str) -> Vec<u8> {
    format!(
        "From: s@remote.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@remote.test>\r\n\r\nhello\r\n"
    )
    .into_bytes()
}

// ---------------------------------------------------------------- spam-rules

fn spam_rules_server(config: &str) -> Server {
    let phrases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/rust/spam-rules/phrases.txt");
    Server::start_with(&format!(
        "{}\n[scores]\nadd_header = 5.0\njunk = 6.0\nreject = 15.0\n",
        plugin_entry(
            "spam-rules",
            "spam-rules",
            &format!(
                "grants = [\"kv\", \"assets\"]\nassets = {{ phrases = \"{}\" }}\nconfig = {config}",
                phrases.display()
            ),
        )
    ))
}

#[test]
fn spam_rules_scores_samples_into_tag_junk_and_reject() {
    let s = spam_rules_server("{}");
    // Ham passes untouched: delivered, no X-Spam headers.
    let (_, r) = transaction(
        &s,
        "marek@example.org",
        &["alice@example.test"],
        &dated_now(&sample("ham-1.eml")),
    );
    assert!(r.as_deref().unwrap().starts_with("250"), "{r:?}");
    let (_, r) = transaction(
        &s,
        "news@news.example.org",
        &["alice@example.test"],
        &dated_now(&sample("ham-2.eml")),
    );
    assert!(r.as_deref().unwrap().starts_with("250"), "{r:?}");
    let got = pop3_fetch_all(s.pop3, "alice", "secret", true);
    assert_eq!(got.len(), 2);
    for m in &got {
        assert_eq!(
            header_of(m, "X-Spam-Flag"),
            None,
            "{}",
            String::from_utf8_lossy(m)
        );
        assert_eq!(
            symbols_of(m),
            Vec::<String>::new(),
            "{}",
            String::from_utf8_lossy(m)
        );
    }

    // A moderately spammy message is tagged and junked by its score.
    let (_, r) = transaction(
        &s,
        "offers@deals.example",
        &["alice@example.test"],
        &sample("spam-2.eml"),
    );
    assert!(r.as_deref().unwrap().starts_with("250"), "{r:?}");
    let got = pop3_fetch_all(s.pop3, "alice", "secret", true);
    assert_eq!(got.len(), 1);
    assert_eq!(header_of(&got[0], "X-Spam-Flag").as_deref(), Some("YES"));
    let syms = symbols_of(&got[0]);
    for want in [
        "DATE_IN_FUTURE",
        "SUBJ_EXCESS_PUNCT",
        "TEXT_B64_NO_REASON",
        "FORBIDDEN_PHRASE",
        "RCVD_NONE",
    ] {
        assert!(syms.iter().any(|s| s == want), "{want} missing from {syms:?}");
    }

    // The phishing sample is over the reject threshold.
    let (_, r) = transaction(
        &s,
        "x@account-verify.example",
        &["alice@example.test"],
        &sample("spam-1.eml"),
    );
    assert!(r.as_deref().unwrap().starts_with("550 5.7.1"), "{r:?}");
    assert!(pop3_fetch_all(s.pop3, "alice", "secret", false).is_empty());
}

#[test]
fn spam_rules_weights_come_from_the_config() {
    // RCVD_NONE off, MISSING_DATE heavy enough to junk on its own.
    let s = spam_rules_server("{ weights = { RCVD_NONE = 0, MISSING_DATE = 6.5 } }");
    let (_, r) = transaction(&s, "s@remote.test", &["bob@example.test"], &simple("weights"));
    assert!(r.unwrap().starts_with("250"));
    let got = pop3_fetch_all(s.pop3, "bob", "secret", true);
    assert_eq!(symbols_of(&got[0]), ["MISSING_DATE"]);
    assert_eq!(header_of(&got[0], "X-Spam-Flag").as_deref(), Some("YES"));
}

fn copy_emls(from: &Path, to: &Path, range: std::ops::Range<usize>) -> Vec<PathBuf> {
    std::fs::create_dir_all(to).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(from)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in &files[range] {
        let dst = to.join(f.file_name().unwrap());
        std::fs::copy(f, &dst).unwrap();
        out.push(dst);
    }
    out
}

/// Trains Bayes with `poczta plugin train` on two thirds of the labelled
/// set while the server runs, then sends the held-out third through SMTP:
/// at least 80 % must get the right Bayes symbol (chance is 50 %).
#[test]
fn spam_rules_bayes_trained_by_the_cli_classifies_held_out_mail() {
    let s = spam_rules_server("{ bayes = { min_spam = 10, min_ham = 10 } }");
    let bayes = examples().join("bayes");
    let train = s.dir.path().join("train");
    copy_emls(&bayes.join("spam"), &train.join("spam"), 0..16);
    copy_emls(&bayes.join("ham"), &train.join("ham"), 0..16);
    let held_spam = copy_emls(&bayes.join("spam"), &s.dir.path().join("held/spam"), 16..24);
    let held_ham = copy_emls(&bayes.join("ham"), &s.dir.path().join("held/ham"), 16..24);

    // Untrained: Bayes abstains.
    let (_, r) = transaction(
        &s,
        "s@remote.test",
        &["bob@example.test"],
        &std::fs::read(&held_spam[0]).unwrap(),
    );
    assert!(r.unwrap().starts_with("250"));
    let got = pop3_fetch_all(s.pop3, "bob", "secret", true);
    assert!(
        !symbols_of(&got[0]).iter().any(|s| s.starts_with("BAYES")),
        "{:?}",
        symbols_of(&got[0])
    );

    let out = s.cli(
        &[
            "plugin",
            "train",
            "--plugin",
            "spam-rules",
            "--spam",
            train.join("spam").to_str().unwrap(),
            "--ham",
            train.join("ham").to_str().unwrap(),
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("trained spam-rules: 16 spam, 16 ham"), "{stderr}");

    let mut right = 0;
    let mut wrong = Vec::new();
    for (files, want) in [(&held_spam, "BAYES_SPAM"), (&held_ham, "BAYES_HAM")] {
        for f in files.iter() {
            let (_, r) = transaction(
                &s,
                "s@remote.test",
                &["alice@example.test"],
                &std::fs::read(f).unwrap(),
            );
            assert!(r.as_deref().unwrap().starts_with("250"), "{r:?}");
            let got = pop3_fetch_all(s.pop3, "alice", "secret", true);
            assert_eq!(got.len(), 1);
            let syms = symbols_of(&got[0]);
            if syms.iter().any(|s| s == want) {
                right += 1;
            } else {
                wrong.push((f.display().to_string(), syms));
            }
        }
    }
    let total = held_spam.len() + held_ham.len();
    eprintln!("held-out Bayes accuracy through the server: {right}/{total}");
    assert!(
        right * 100 >= total * 80,
        "{right}/{total} right; wrong: {wrong:?}"
    );

    // A second run adds to the counts (the store is not reset).
    let out = s.cli(
        &[
            "plugin",
            "train",
            "--plugin",
            "spam-rules",
            "--ham",
            train.join("ham").to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // An unknown plugin name is a usage error.
    let out = s.cli(
        &[
            "plugin",
            "train",
            "--plugin",
            "nope",
            "--ham",
            train.join("ham").to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `poczta plugin run --json` on every spam-rules sample: the symbols each
/// one must show.
#[test]
fn plugin_run_prints_the_expected_symbols_for_the_samples() {
    let cases: &[(&str, &[&str])] = &[
        ("ham-1.eml", &["DATE_IN_PAST"]),
        ("ham-2.eml", &["DATE_IN_PAST"]),
        ("list-1.eml", &["DATE_IN_PAST"]),
        (
            "spam-1.eml",
            &[
                "MISSING_DATE",
                "MISSING_MID",
                "FROM_NAME_HAS_ADDR",
                "REPLYTO_DOM_NEQ_FROM_DOM",
                "SUBJ_ALL_CAPS",
                "SUBJ_EXCESS_PUNCT",
                "RCVD_MALFORMED",
                "MIME_HTML_ONLY",
                "HTML_HIDDEN_TEXT",
                "URL_IP_HOST",
                "HTML_LINK_TEXT_MISMATCH",
                "FORBIDDEN_PHRASE",
            ],
        ),
        (
            "spam-2.eml",
            &[
                "DATE_IN_FUTURE",
                "SUBJ_EXCESS_PUNCT",
                "RCVD_NONE",
                "TEXT_B64_NO_REASON",
                "FORBIDDEN_PHRASE",
            ],
        ),
        (
            "spam-3.eml",
            &[
                "DATE_IN_PAST",
                "FROM_NAME_DOMAIN_MISMATCH",
                "REPLYTO_DOM_NEQ_FROM_DOM",
                "MANY_URLS",
                "FORBIDDEN_PHRASE",
            ],
        ),
    ];
    let wasm = plugin("spam-rules");
    for (file, want) in cases {
        let out = Command::new(POCZTA)
            .args(["plugin", "run"])
            .arg(&wasm)
            .arg("--eml")
            .arg(examples().join(file))
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut got: Vec<&str> = report["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        got.sort();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(got, want, "{file}: {}", String::from_utf8_lossy(&out.stdout));
        let score = report["score"].as_f64().unwrap();
        if file.starts_with("spam-1") {
            assert_eq!(report["verdict"], "reject", "{file}: score {score}");
        } else if file.starts_with("spam") {
            assert!(score >= 6.0, "{file}: score {score}");
        } else {
            assert!(score < 5.0, "{file}: score {score}");
        }
    }
}

// ---------------------------------------------------------------- forward

const FORWARD_CONFIG: &str = r#"{ aliases = { "sales@example.test" = ["alice@example.test", "bob@example.test"], "support@example.test" = ["bob@example.test"], "self@example.test" = ["self@example.test"] }, lists = { "team@example.test" = { members = ["alice@example.test", "bob@example.test", "carol@example.test"] }, "news@example.test" = { members = ["alice@example.test"], name = "News", senders = ["boss@remote.test"] } }, forwards = { "dave@example.test" = { to = ["carol@example.test"], keep_copy = true }, "erin@example.test" = { to = ["frank@example.test"] }, "frank@example.test" = { to = ["erin@example.test"] } } }"#;

fn forward_server() -> Server {
    let s = Server::start_with(&plugin_entry(
        "forward",
        "forward",
        &format!("config = {FORWARD_CONFIG}"),
    ));
    for u in ["carol", "dave", "erin", "frank"] {
        s.add_user(&format!("{u}@example.test"), "secret");
    }
    s
}

fn count(s: &Server, user: &str) -> Vec<Vec<u8>> {
    pop3_fetch_all(s.pop3, user, "secret", true)
}

#[test]
fn forward_aliases_lists_and_forwards_deliver_once_to_each() {
    let s = forward_server();
    // An alias with two local members: one copy each.
    let (rc, r) = transaction(&s, "s@remote.test", &["sales@example.test"], &simple("alias"));
    assert!(
        rc[0].starts_with("250") && r.unwrap().starts_with("250"),
        "{rc:?}"
    );
    assert_eq!(count(&s, "alice").len(), 1);
    assert_eq!(count(&s, "bob").len(), 1);

    // A list: every member once, with List-Id and Precedence.
    let (_, r) = transaction(&s, "s@remote.test", &["team@example.test"], &simple("list"));
    assert!(r.unwrap().starts_with("250"));
    for u in ["alice", "bob", "carol"] {
        let got = count(&s, u);
        assert_eq!(got.len(), 1, "{u}");
        assert_eq!(
            header_of(&got[0], "List-Id").as_deref(),
            Some("<team.example.test>")
        );
        assert_eq!(header_of(&got[0], "Precedence").as_deref(), Some("list"));
        assert_eq!(
            header_of(&got[0], "List-Post").as_deref(),
            Some("<mailto:team@example.test>")
        );
        assert_eq!(
            header_of(&got[0], "Delivered-To").as_deref(),
            Some("team@example.test")
        );
    }

    // A forward with keep-a-copy: the user and the target.
    let (_, r) = transaction(&s, "s@remote.test", &["dave@example.test"], &simple("fwd"));
    assert!(r.unwrap().starts_with("250"));
    assert_eq!(count(&s, "dave").len(), 1);
    let carol = count(&s, "carol");
    assert_eq!(carol.len(), 1);
    assert_eq!(header_of(&carol[0], "List-Id"), None);

    // Bob through two aliases in one transaction: one copy. (The host keeps
    // one mailbox entry per user per message.)
    let (rc, r) = transaction(
        &s,
        "s@remote.test",
        &["sales@example.test", "support@example.test", "bob@example.test"],
        &simple("twice"),
    );
    assert!(rc.iter().all(|r| r.starts_with("250")), "{rc:?}");
    assert!(r.unwrap().starts_with("250"));
    assert_eq!(count(&s, "bob").len(), 1);
    assert_eq!(count(&s, "alice").len(), 1);
}

#[test]
fn forward_loops_are_stopped_with_a_clear_reply() {
    let s = forward_server();
    // erin → frank → erin, neither keeps a copy: refused at RCPT.
    let (rc, r) = transaction(&s, "s@remote.test", &["erin@example.test"], &simple("loop"));
    assert!(rc[0].starts_with("554 5.4.6") && rc[0].contains("loop"), "{rc:?}");
    assert_eq!(r, None);
    let (rc, _) = transaction(&s, "s@remote.test", &["self@example.test"], &simple("self"));
    assert!(rc[0].starts_with("554 5.4.6"), "{rc:?}");
    // A refused recipient does not spoil the others of the transaction.
    let (rc, r) = transaction(
        &s,
        "s@remote.test",
        &["frank@example.test", "alice@example.test"],
        &simple("mixed"),
    );
    assert!(
        rc[0].starts_with("554 5.4.6") && rc[1].starts_with("250"),
        "{rc:?}"
    );
    assert!(r.unwrap().starts_with("250"));
    // No storm: exactly the one good copy exists anywhere.
    assert_eq!(count(&s, "alice").len(), 1);
    for u in ["erin", "frank", "bob", "carol"] {
        assert!(count(&s, u).is_empty(), "{u}");
    }

    // A message that already went through our alias (Delivered-To) and
    // came back: refused at the end of DATA.
    let back = b"From: s@remote.test\r\nDelivered-To: sales@example.test\r\nSubject: back\r\n\r\nagain\r\n";
    let (_, r) = transaction(&s, "s@remote.test", &["sales@example.test"], back);
    let r = r.unwrap();
    assert!(
        r.starts_with("554 5.4.6") && r.contains("sales@example.test"),
        "{r}"
    );
    // Too many hops.
    let mut hops = String::new();
    for i in 0..31 {
        hops.push_str(&format!(
            "Received: from h{i}.test by h{}.test; Mon, 16 Jun 2025 09:00:00 +0000\r\n",
            i + 1
        ));
    }
    let (_, r) = transaction(
        &s,
        "s@remote.test",
        &["alice@example.test"],
        format!("{hops}Subject: hops\r\n\r\nx\r\n").as_bytes(),
    );
    assert!(
        r.as_deref().unwrap().starts_with("554 5.4.6 Too many hops"),
        "{r:?}"
    );
    assert!(count(&s, "alice").is_empty() && count(&s, "bob").is_empty());
}

/// The `rcpt` hook's envelope carries the transaction's MAIL FROM: an
/// announcement list takes posts only from its configured sender.
#[test]
fn forward_rcpt_hook_sees_the_envelope_sender() {
    let s = forward_server();
    let (rc, _) = transaction(&s, "someone@remote.test", &["news@example.test"], &simple("nope"));
    assert!(
        rc[0].starts_with("550 5.7.1") && rc[0].contains("only from its senders"),
        "{rc:?}"
    );
    let (rc, r) = transaction(&s, "Boss@Remote.test", &["news@example.test"], &simple("news"));
    assert!(rc[0].starts_with("250"), "{rc:?}");
    assert!(r.unwrap().starts_with("250"));
    let got = count(&s, "alice");
    assert_eq!(got.len(), 1);
    assert_eq!(
        header_of(&got[0], "List-Id").as_deref(),
        Some("News <news.example.test>")
    );
    // The plugin's log line names the sender it saw.
    let log = s.log();
    assert!(
        log.contains("news@example.test from <Boss@Remote.test> -> alice@example.test"),
        "{log}"
    );
}
