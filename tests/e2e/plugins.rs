//! The plugin runtime end to end: verdicts of every hook, scores and
//! header edits, capabilities, hostile plugins, hot reload, and plugins in
//! Rust, Python and JavaScript. The plugins are the examples built by
//! `plugins/build` into plugins/dist.

use std::time::{Duration, Instant};

use crate::harness::{POCZTA, Raw, Server, plugin, plugin_entry, pop3_fetch_all, try_send};

fn verdicts(config: &str) -> Server {
    Server::start_with(&plugin_entry("v", "verdicts", &format!("config = {config}")))
}

fn header_of(msg: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let prefix = format!("{name}: ");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .map(|l| l[prefix.len()..].to_string())
}

#[test]
fn connect_helo_and_mail_from_verdicts_become_smtp_replies() {
    let s = verdicts("{ connect = { reject = [554, \"5.7.1\", \"go away\"] } }");
    let (mut c, g) = Raw::connect(s.smtp);
    assert_eq!(g, "554 5.7.1 go away");
    assert!(c.closed());

    let s = verdicts("{ helo = { tempfail = [450, \"4.7.1\", \"later\"] } }");
    let (mut c, _) = Raw::connect(s.smtp);
    assert_eq!(c.cmd("EHLO x.test"), "450 4.7.1 later");
    assert!(
        c.cmd("MAIL FROM:<a@b.test>").starts_with("503"),
        "a refused EHLO leaves no session"
    );

    let s = verdicts("{ mail-from = { reject = [553, \"5.7.1\", \"sender refused\"] } }");
    let (mut c, _) = Raw::connect(s.smtp);
    c.cmd("EHLO x.test");
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>"), "553 5.7.1 sender refused");

    let s = verdicts("{ mail-from = { disconnect = [421, \"4.7.0\", \"bye\"] } }");
    let (mut c, _) = Raw::connect(s.smtp);
    c.cmd("EHLO x.test");
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>"), "421 4.7.0 bye");
    assert!(c.closed());

    // A plugin cannot answer 250 to a reject: the host's default replaces it.
    let s = verdicts("{ mail-from = { reject = [250, \"2.0.0\", \"sneaky\"] } }");
    let (mut c, _) = Raw::connect(s.smtp);
    c.cmd("EHLO x.test");
    let r = c.cmd("MAIL FROM:<a@b.test>");
    assert!(r.starts_with("550 5.7.1"), "{r}");
}

#[test]
fn rcpt_verdicts_route_reject_and_redirect() {
    let s = verdicts("{ rcpt = { reject = [550, \"5.1.1\", \"no such list\"] } }");
    assert_eq!(
        try_send(s.smtp, "alice@example.test", "x"),
        "550 5.1.1 no such list"
    );

    // Redirect: alice's mail goes to bob (an alias), once.
    let s = verdicts("{ rcpt = { redirect = [\"bob@example.test\"] } }");
    assert!(try_send(s.smtp, "alice@example.test", "aliased").starts_with("250"));
    assert!(pop3_fetch_all(s.pop3, "alice", "secret", false).is_empty());
    let bob = pop3_fetch_all(s.pop3, "bob", "secret", false);
    assert_eq!(bob.len(), 1);

    // A plugin cannot make Poczta relay: redirecting an address that is not
    // ours is refused like the address itself; forwarding one of ours to
    // another domain is the administrator's policy, and goes to the queue.
    let s = verdicts("{ rcpt = { redirect = [\"someone@elsewhere.test\"] } }");
    assert!(try_send(s.smtp, "x@another.test", "x").starts_with("550 5.7.1"));
    assert!(try_send(s.smtp, "alice@example.test", "x").starts_with("250"));
    assert!(s.log().contains("someone@elsewhere.test:Queued"), "{}", s.log());
    // Nor can `accept` make an unknown or remote recipient deliverable.
    let s = verdicts("{ rcpt = \"accept\" }");
    assert!(try_send(s.smtp, "nobody@example.test", "x").starts_with("550 5.1.1"));
    assert!(try_send(s.smtp, "x@elsewhere.test", "x").starts_with("550 5.7.1"));
    assert!(try_send(s.smtp, "alice@example.test", "x").starts_with("250"));
}

#[test]
fn data_verdicts_reject_discard_and_quarantine() {
    let s = verdicts("{ headers = { reject = [554, \"5.7.1\", \"content refused\"] } }");
    assert_eq!(
        try_send(s.smtp, "alice@example.test", "x"),
        "554 5.7.1 content refused"
    );
    assert!(pop3_fetch_all(s.pop3, "alice", "secret", false).is_empty());

    let s = verdicts("{ body = { tempfail = [451, \"4.7.1\", \"scanner busy\"] } }");
    assert_eq!(
        try_send(s.smtp, "alice@example.test", "x"),
        "451 4.7.1 scanner busy"
    );

    let s = verdicts("{ body = \"discard\" }");
    assert!(try_send(s.smtp, "alice@example.test", "x").starts_with("250 2.0.0"));
    assert!(
        pop3_fetch_all(s.pop3, "alice", "secret", false).is_empty(),
        "discarded"
    );

    let s = verdicts("{ headers = { quarantine = \"looks odd\" } }");
    assert!(try_send(s.smtp, "alice@example.test", "x").starts_with("250 2.0.0"));
    assert!(
        pop3_fetch_all(s.pop3, "alice", "secret", false).is_empty(),
        "held, not in the inbox"
    );
    assert!(s.log().contains("alice@example.test:Quarantine"), "{}", s.log());
}

#[test]
fn deliver_verdicts_file_per_recipient() {
    let s = verdicts("{ deliver = \"discard\" }");
    assert!(try_send(s.smtp, "alice@example.test", "x").starts_with("250"));
    assert!(pop3_fetch_all(s.pop3, "alice", "secret", false).is_empty());

    let s = verdicts("{ deliver = \"junk\" }");
    assert!(try_send(s.smtp, "alice@example.test", "x").starts_with("250"));
    assert_eq!(
        pop3_fetch_all(s.pop3, "alice", "secret", false).len(),
        1,
        "junk is tagged and delivered for POP3"
    );
}

#[test]
fn scores_sum_across_plugins_and_thresholds_act() {
    let two = format!(
        "{}{}[scores]\nadd_header = 2.0\njunk = 2.5\nreject = 100.0\n",
        plugin_entry("tag1", "tag-score", "config = { weight = 1.5 }"),
        plugin_entry("tag2", "tag-score", "config = { weight = 1.25 }"),
    );
    let s = Server::start_with(&two);
    assert!(try_send(s.smtp, "alice@example.test", "hello").starts_with("250"));
    let m = &pop3_fetch_all(s.pop3, "alice", "secret", false)[0];
    assert_eq!(
        header_of(m, "X-Poczta-Tagged").as_deref(),
        Some("yes"),
        "added by the plugin"
    );
    assert!(header_of(m, "X-Remove-Me").is_none(), "removed by the plugin");
    let summary = header_of(m, "X-Poczta-Score").expect("summary header");
    assert!(summary.starts_with("2.75"), "{summary}");
    assert!(summary.contains("TAGGED"), "{summary}");
    let flag = header_of(m, "X-Spam-Flag").expect("over the junk threshold");
    assert_eq!(flag, "YES", "ours, not the forged one");
    assert!(header_of(m, "X-Spam-Score").is_some(), "over add_header");
    assert_eq!(
        String::from_utf8_lossy(m).matches("X-Spam-Flag").count(),
        1,
        "incoming X-Spam-* stripped"
    );
    assert!(s.log().contains("score=2.75"), "{}", s.log());

    let reject = format!(
        "{}[scores]\nreject = 1.0\n",
        plugin_entry("tag1", "tag-score", "config = { weight = 1.5 }")
    );
    let s = Server::start_with(&reject);
    let r = try_send(s.smtp, "alice@example.test", "x");
    assert!(r.starts_with("550 5.7.1"), "{r}");
}

#[test]
fn subject_rule_rejects_only_matching_mail() {
    let s = Server::start_with(&plugin_entry(
        "words",
        "subject-reject",
        "config = { words = [\"viagra\"] }",
    ));
    let r = try_send(s.smtp, "alice@example.test", "Cheap VIAGRA now");
    assert!(r.starts_with("550 5.7.1") && r.contains("viagra"), "{r}");
    assert!(try_send(s.smtp, "alice@example.test", "lunch?").starts_with("250"));
    assert_eq!(pop3_fetch_all(s.pop3, "alice", "secret", false).len(), 1);
}

#[test]
fn capabilities_are_refused_unless_granted_and_kv_persists_across_restarts() {
    let s = Server::start_with(&plugin_entry("count", "kv-counter", ""));
    assert!(try_send(s.smtp, "alice@example.test", "x").starts_with("250"));
    let m = &pop3_fetch_all(s.pop3, "alice", "secret", false)[0];
    let dns = header_of(m, "X-Poczta-Dns").unwrap_or_default();
    assert!(
        dns.contains("not-granted"),
        "dns refused without the grant: {dns}"
    );
    let count = header_of(m, "X-Poczta-Count").unwrap_or_default();
    assert!(
        count.contains("not-granted"),
        "kv refused without the grant: {count}"
    );

    let mut s = Server::start_with(&plugin_entry("count", "kv-counter", "grants = [\"kv\"]"));
    for _ in 0..2 {
        assert!(try_send(s.smtp, "bob@example.test", "x").starts_with("250"));
    }
    s.restart();
    assert!(try_send(s.smtp, "bob@example.test", "x").starts_with("250"));
    let counts: Vec<String> = pop3_fetch_all(s.pop3, "bob", "secret", false)
        .iter()
        .map(|m| header_of(m, "X-Poczta-Count").unwrap())
        .collect();
    assert_eq!(counts, vec!["1", "2", "3"], "the counter survives a restart");
}

#[test]
fn hostile_plugins_are_contained_and_others_are_served() {
    for (file, cause) in [
        ("hostile-loop", "deadline"),
        ("hostile-trap", "trap"),
        ("hostile-memory", ""),
    ] {
        // Two servers: one with the default on_error (tempfail), one with continue.
        let strict = Server::start_with(&plugin_entry("bad", file, ""));
        let r = try_send(strict.smtp, "alice@example.test", "x");
        assert!(
            r.starts_with("451 4.7.1"),
            "{file}: a failing plugin never turns into acceptance: {r}"
        );
        // The server goes on: the next connection works the same way and
        // a plain POP3 session is served.
        assert!(try_send(strict.smtp, "alice@example.test", "y").starts_with("451"));
        assert!(pop3_fetch_all(strict.pop3, "alice", "secret", false).is_empty());
        let log = strict.log();
        assert!(
            log.contains("plugin=bad") || log.contains("plugin=\"bad\""),
            "{file}: the log names the plugin: {log}"
        );
        assert!(log.contains(cause), "{file}: the log names the cause: {log}");

        let lenient = Server::start_with(&plugin_entry("bad", file, "on_error = \"continue\""));
        assert!(
            try_send(lenient.smtp, "alice@example.test", "x").starts_with("250"),
            "{file}: continue"
        );
    }
}

#[test]
fn a_looping_plugin_does_not_stall_other_sessions() {
    let s = Server::start_with(&plugin_entry(
        "bad",
        "hostile-loop",
        "timeout = \"2s\"\non_error = \"continue\"",
    ));
    let addr = s.smtp;
    let slow = std::thread::spawn(move || try_send(addr, "alice@example.test", "slow"));
    // While the plugin spins for its 2 s deadline, POP3 and new SMTP
    // sessions are answered (bounded retry, no timing assertion).
    std::thread::sleep(Duration::from_millis(200));
    let (mut c, g) = Raw::connect(s.smtp);
    assert!(g.starts_with("220"), "{g}");
    assert!(c.cmd("EHLO x.test").starts_with("250"));
    assert!(pop3_fetch_all(s.pop3, "bob", "secret", false).is_empty());
    assert!(slow.join().unwrap().starts_with("250"));
}

#[test]
fn python_and_javascript_plugins_run_end_to_end() {
    let cfg = format!(
        "{}{}",
        plugin_entry(
            "py",
            "py-subject-tag",
            "config = { word = \"python\" }\ntimeout = \"2s\""
        ),
        plugin_entry("js", "js-header-tag", "timeout = \"2s\""),
    );
    let s = Server::start_with(&cfg);
    assert!(try_send(s.smtp, "alice@example.test", "I like python").starts_with("250"));
    let m = &pop3_fetch_all(s.pop3, "alice", "secret", false)[0];
    assert_eq!(header_of(m, "X-Poczta-Python").as_deref(), Some("seen"));
    assert_eq!(header_of(m, "X-Poczta-JS").as_deref(), Some("seen"));
    let summary = header_of(m, "X-Poczta-Score").unwrap();
    assert!(
        summary.contains("PY_SUBJECT_TAG") && summary.contains("JS_SEEN"),
        "{summary}"
    );
}

#[test]
fn hot_reload_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.wasm");
    std::fs::copy(plugin("tag-score"), &live).unwrap();
    // With `reuse`: warm instances of the old file must not outlive the swap.
    let s = Server::start_with(&format!(
        "[[plugins]]\nname = \"live\"\npath = \"{}\"\nreuse = 1000\n",
        live.display()
    ));
    let addr = s.smtp;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut replies = Vec::new();
            // Bounded: at most 2000 messages or until told to stop.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && replies.len() < 2000 {
                replies.push(try_send(
                    addr,
                    "alice@example.test",
                    &format!("n{}", replies.len()),
                ));
            }
            replies
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // Replace the file the way a deploy does: write beside it, rename over it.
    let tmp = dir.path().join("live.wasm.new");
    std::fs::copy(plugin("kv-counter"), &tmp).unwrap();
    std::fs::rename(&tmp, &live).unwrap();
    let swapped = Instant::now();
    let deadline = swapped + Duration::from_secs(20);
    while !s.log().contains("plugins reloaded") {
        assert!(Instant::now() < deadline, "no reload: {}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("reload visible in the log after {:?}", swapped.elapsed());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let replies = sender.join().unwrap();
    let failed: Vec<&String> = replies.iter().filter(|r| !r.starts_with("250")).collect();
    assert!(
        failed.is_empty(),
        "no transaction fails during a reload: {failed:?}"
    );
    let msgs = pop3_fetch_all(s.pop3, "alice", "secret", false);
    assert_eq!(msgs.len(), replies.len(), "every accepted message is there");
    assert!(
        header_of(&msgs[0], "X-Poczta-Tagged").is_some(),
        "old behaviour first"
    );
    assert!(
        header_of(msgs.last().unwrap(), "X-Poczta-Dns").is_some(),
        "new behaviour last"
    );
    // A broken file is refused and the working set stays.
    std::fs::write(&tmp, b"not wasm").unwrap();
    std::fs::rename(&tmp, &live).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.log().contains("reload refused") {
        assert!(Instant::now() < deadline, "no refusal: {}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(try_send(s.smtp, "alice@example.test", "after").starts_with("250"));
}

#[test]
fn plugin_check_and_run_commands() {
    let out = std::process::Command::new(POCZTA)
        .args(["plugin", "check"])
        .arg(plugin("tag-score"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("tag-score") && text.contains("headers") && text.contains("0.1.0"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm garbage").unwrap();
    let out = std::process::Command::new(POCZTA)
        .args(["plugin", "check"])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let eml = dir.path().join("m.eml");
    std::fs::write(&eml, "From: a@b.test\r\nSubject: buy viagra\r\n\r\nhi\r\n").unwrap();
    let out = std::process::Command::new(POCZTA)
        .args(["plugin", "run"])
        .arg(plugin("subject-reject"))
        .arg("--eml")
        .arg(&eml)
        .args([
            "--from",
            "a@b.test",
            "--to",
            "c@d.test",
            "--config",
            "{\"words\":[\"viagra\"]}",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "reject");
    assert_eq!(v["reply"]["code"], 550);
    assert!(
        v["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["hook"] == "headers")
    );
    for key in ["score", "symbols", "headers_added"] {
        assert!(v.get(key).is_some(), "{key} in {v}");
    }
}
