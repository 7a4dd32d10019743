//! The policy plugins written in Python and JavaScript, end to end through
//! the real server: `py-greylist` (RFC 6647 greylisting; `mail-from` and
//! `rcpt` hooks, state in the kv store) and `js-uribl` (URI blocklists;
//! `body` hook, look-ups answered by a hickory-server zone on loopback).
//! Both components are big (CPython, SpiderMonkey): the harness's shared
//! `plugin_cache_dir` makes their compile a once-per-run cost.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use crate::dns::{TestDns, Zone};
use crate::harness::{POCZTA, Raw, Server, WAIT, plugin, plugin_entry, pop3_fetch_all, send_raw_message};

const GREYLISTED: &str = "451 4.7.1 Greylisted, try again later";

/// Compiles a built plugin into the e2e compile cache (the harness's
/// `plugin_cache_dir`) once per test run, before any server needs it. A
/// server compiles before it listens, and a CPython or SpiderMonkey
/// component takes far longer than the harness waits for the ports when
/// several tests compile at once on a busy machine. Tests that need the
/// same file wait for the one compile.
fn warm(file: &str) {
    crate::harness::warm_components(&format!("\"{}\"", plugin(file).display()));
}

fn header_of(msg: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let prefix = format!("{name}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

// ------------------------------------------------------------ py-greylist

fn greylist(config: &str) -> String {
    warm("py-greylist");
    plugin_entry(
        "greylist",
        "py-greylist",
        &format!("grants = [\"kv\"]\ntimeout = \"3s\"\nconfig = {config}"),
    )
}

/// Opens a transaction on `addr` up to RCPT; the client (for DATA) and the
/// RCPT reply. `from` empty is the null sender.
fn rcpt(addr: std::net::SocketAddr, from: &str, to: &str) -> (Raw, String) {
    let (mut c, g) = Raw::connect(addr);
    assert!(g.starts_with("220 "), "{g}");
    assert!(
        c.cmd("EHLO relay.remote.test").starts_with("250"),
        "{}",
        c.transcript
    );
    assert!(
        c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"),
        "{}",
        c.transcript
    );
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    (c, r)
}

/// DATA on an open transaction; the final reply.
fn data(c: &mut Raw, subject: &str) -> String {
    assert!(c.cmd("DATA").starts_with("354"), "{}", c.transcript);
    c.send(format!("From: carol@remote.test\r\nSubject: {subject}\r\n\r\nhello\r\n.\r\n").as_bytes());
    let r = c.reply();
    c.cmd("QUIT");
    r
}

fn rcpt_reply(addr: std::net::SocketAddr, from: &str, to: &str) -> String {
    let (mut c, r) = rcpt(addr, from, to);
    c.cmd("QUIT");
    r
}

#[test]
fn greylist_tempfails_a_new_triplet_and_passes_its_retry() {
    // Loopback is exempt by default: this test is the unknown MTA.
    let s = Server::start_with(&greylist("{ delay = 1, allow_networks = [] }"));
    let (from, to) = ("carol@remote.test", "alice@example.test");
    assert_eq!(rcpt_reply(s.smtp, from, to), GREYLISTED, "first attempt");

    // The retry after the delay (1 s; `now()` has whole seconds, so up to
    // 2 s): bounded polling, every refusal must be the greylisting one.
    let deadline = Instant::now() + WAIT;
    let mut c = loop {
        std::thread::sleep(Duration::from_millis(300));
        let (mut c, r) = rcpt(s.smtp, from, to);
        if r.starts_with("250") {
            break c;
        }
        assert_eq!(r, GREYLISTED, "only greylisting refuses");
        c.cmd("QUIT");
        assert!(Instant::now() < deadline, "the retry never passed: {}", s.log());
    };
    let r = data(&mut c, "after greylisting");
    assert!(r.starts_with("250"), "{r}");
    let msgs = pop3_fetch_all(s.pop3, "alice", "secret", true);
    assert_eq!(msgs.len(), 1, "delivered once");
    let delayed = header_of(&msgs[0], "X-Greylist").expect("X-Greylist header");
    assert!(
        delayed.starts_with("delayed ") && delayed.ends_with("seconds by py-greylist"),
        "{delayed}"
    );

    // The triplet is now whitelisted: its next message passes at once.
    let (mut c, r) = rcpt(s.smtp, from, to);
    assert!(r.starts_with("250"), "whitelisted triplet: {r}");
    assert!(data(&mut c, "second").starts_with("250"));
    let msgs = pop3_fetch_all(s.pop3, "alice", "secret", true);
    assert_eq!(msgs.len(), 1);
    assert!(
        header_of(&msgs[0], "X-Greylist").is_none(),
        "not delayed this time"
    );

    // Any other triplet is new: another recipient, another sender, and the
    // null sender (greylisted by default, see the plugin's README).
    assert_eq!(rcpt_reply(s.smtp, from, "bob@example.test"), GREYLISTED);
    assert_eq!(rcpt_reply(s.smtp, "dave@remote.test", to), GREYLISTED);
    assert_eq!(rcpt_reply(s.smtp, "", to), GREYLISTED);
    assert!(pop3_fetch_all(s.pop3, "bob", "secret", false).is_empty());
}

#[test]
fn greylist_refuses_a_retry_before_the_delay_without_resetting() {
    let s = Server::start_with(&greylist("{ delay = \"1h\", allow_networks = [] }"));
    let (from, to) = ("carol@remote.test", "alice@example.test");
    assert_eq!(rcpt_reply(s.smtp, from, to), GREYLISTED);
    assert_eq!(rcpt_reply(s.smtp, from, to), GREYLISTED);
    let log = s.log();
    assert!(log.contains("new triplet"), "{log}");
    assert!(
        log.contains("retry too early"),
        "the second one is an early retry: {log}"
    );
}

fn lettre_tls(server: &Server) -> TlsParameters {
    let pem = std::fs::read(server.cert_path()).unwrap();
    TlsParameters::builder("mx.example.test".to_owned())
        .add_root_certificate(Certificate::from_pem(&pem).unwrap())
        .build_rustls()
        .unwrap()
}

#[test]
fn greylist_exempts_authenticated_users_and_allow_lists() {
    let s = Server::start_with(&greylist(
        "{ delay = \"1h\", allow_networks = [], allow_sender_domains = [\"trusted.test\"], \
         allow_recipients = [\"bob@example.test\"] }",
    ));
    // The control: an unknown MTA is greylisted.
    assert_eq!(
        rcpt_reply(s.smtp, "carol@remote.test", "alice@example.test"),
        GREYLISTED
    );
    // An allow-listed sender domain (and its subdomains) and recipient pass at once.
    assert!(rcpt_reply(s.smtp, "news@mail.trusted.test", "alice@example.test").starts_with("250"));
    assert!(rcpt_reply(s.smtp, "carol@remote.test", "bob@example.test").starts_with("250"));

    // An authenticated submission client (STARTTLS + AUTH, lettre) is a
    // user, not an unknown MTA: its first attempt is delivered.
    let sub = SmtpTransport::builder_dangerous("127.0.0.1")
        .port(s.submission.port())
        .tls(Tls::Required(lettre_tls(&s)))
        .credentials(Credentials::new("bob@example.test".into(), "secret".into()))
        .timeout(Some(Duration::from_secs(20)))
        .build();
    let msg = Message::builder()
        .from("bob@example.test".parse::<Mailbox>().unwrap())
        .to("alice@example.test".parse().unwrap())
        .subject("from a user")
        .body("not greylisted\r\n".to_string())
        .unwrap();
    sub.send(&msg).expect("an authenticated user is not greylisted");
    let msgs = pop3_fetch_all(s.pop3, "alice", "secret", false);
    assert_eq!(msgs.len(), 1);
    assert_eq!(header_of(&msgs[0], "Subject").as_deref(), Some("from a user"));

    // The default allow-list holds loopback (local applications).
    let s = Server::start_with(&greylist("{ delay = \"1h\" }"));
    assert!(rcpt_reply(s.smtp, "carol@remote.test", "alice@example.test").starts_with("250"));
}

// ---------------------------------------------------------------- js-uribl

fn uribl(config: &str) -> String {
    warm("js-uribl");
    plugin_entry(
        "uribl",
        "js-uribl",
        &format!("grants = [\"dns\"]\ntimeout = \"3s\"\nconfig = {config}"),
    )
}

/// The test blocklist `uribl.test`: `bad-domain.test` and the IP
/// 192.0.2.99 (reversed-octet form) are listed.
fn uribl_zone() -> TestDns {
    TestDns::start(
        Zone::standard()
            .a(
                "bad-domain.test.uribl.test",
                std::net::Ipv4Addr::new(127, 0, 0, 2),
            )
            .a("99.2.0.192.uribl.test", std::net::Ipv4Addr::new(127, 0, 0, 2)),
    )
}

/// HTML whose link is split by a quoted-printable soft line break: only the
/// decoded part text shows the host.
fn qp_html_message(subject: &str) -> String {
    format!(
        "From: s@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the HTML part.\r\n\
         --b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         <p>Your account: <a href=3D\"http://www.bad-dom=\r\nain.test/x\">log in</a></p>\r\n\
         --b1--\r\n"
    )
}

fn plain_message(subject: &str, body: &str) -> String {
    format!("From: s@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\n{body}\r\n")
}

fn send(s: &Server, msg: &str) -> String {
    send_raw_message(s.smtp, "s@remote.test", &["alice@example.test"], msg.as_bytes())
}

fn by_subject<'a>(msgs: &'a [Vec<u8>], subject: &str) -> &'a [u8] {
    msgs.iter()
        .find(|m| header_of(m, "Subject").as_deref() == Some(subject))
        .unwrap_or_else(|| panic!("no message with subject {subject:?}"))
}

#[test]
fn uribl_scores_listed_links_and_passes_clean_mail() {
    let dns = uribl_zone();
    let s = Server::start_with(&format!(
        "{}{}",
        uribl("{ zones = [{ zone = \"uribl.test\", weight = 3.5, symbol = \"URIBL_TEST\" }] }"),
        dns.config()
    ));
    for (subject, msg) in [
        ("qp html", qp_html_message("qp html")),
        (
            "ip link",
            plain_message("ip link", "Log in at http://192.0.2.99/login now."),
        ),
        (
            "clean",
            plain_message(
                "clean",
                "See http://www.example.test/ok and https://good-domain.test/.",
            ),
        ),
    ] {
        let r = send(&s, &msg);
        assert!(r.starts_with("250"), "{subject}: {r}");
    }
    let msgs = pop3_fetch_all(s.pop3, "alice", "secret", false);
    assert_eq!(msgs.len(), 3);
    for subject in ["qp html", "ip link"] {
        let score = header_of(by_subject(&msgs, subject), "X-Poczta-Score")
            .unwrap_or_else(|| panic!("{subject}: no X-Poczta-Score"));
        assert!(score.contains("URIBL_TEST=3.5"), "{subject}: {score}");
    }
    let clean = header_of(by_subject(&msgs, "clean"), "X-Poczta-Score").unwrap_or_default();
    assert!(!clean.contains("URIBL"), "clean mail: {clean}");
}

#[test]
fn uribl_rejects_by_zone_action_and_local_list() {
    let dns = uribl_zone();
    let s = Server::start_with(&format!(
        "{}{}",
        uribl(
            "{ zones = [{ zone = \"uribl.test\", action = \"reject\" }], \
             blocked_domains = [\"local-bad.test\"] }"
        ),
        dns.config()
    ));
    let r = send(&s, &qp_html_message("listed"));
    assert!(
        r.starts_with("554 5.7.1") && r.contains("bad-domain.test") && r.contains("uribl.test"),
        "{r}"
    );
    let r = send(
        &s,
        &plain_message("local", "Cheap: https://shop.local-bad.test/deal"),
    );
    assert!(r.starts_with("554 5.7.1") && r.contains("local-bad.test"), "{r}");
    let r = send(&s, &plain_message("clean", "https://good-domain.test/"));
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(pop3_fetch_all(s.pop3, "alice", "secret", false).len(), 1);
}

#[test]
fn uribl_dns_outage_never_blocks_mail() {
    // A name server that never answers: every look-up times out.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let s = Server::start_with(&format!(
        "{}[dns]\nnameservers = [\"{}\"]\ntimeout = \"500ms\"\n",
        uribl("{ zones = [{ zone = \"uribl.test\", action = \"reject\" }] }"),
        silent.local_addr().unwrap()
    ));
    // Under on_error = "tempfail" (the default): acceptance shows that the
    // plugin itself lets the mail through, not the host's error policy.
    let r = send(&s, &qp_html_message("outage"));
    assert!(r.starts_with("250"), "{r}");
    assert!(
        s.log().contains("no further URI look-ups"),
        "the time-out path ran: {}",
        s.log()
    );
}

// ----------------------------------------------------------- plugin run

fn plugin_run(file: &str, eml: &str, args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.eml");
    std::fs::write(&path, eml).unwrap();
    let out = Command::new(POCZTA)
        .args(["plugin", "run"])
        .arg(plugin(file))
        .arg("--eml")
        .arg(&path)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("plugin run --json prints JSON")
}

#[test]
fn python_and_javascript_policy_plugins_under_plugin_run() {
    // `plugin run` starts with an empty in-memory kv: a new triplet.
    let v = plugin_run(
        "py-greylist",
        &plain_message("hi", "hello"),
        &["--ip", "203.0.113.5", "--to", "alice@example.test"],
    );
    assert_eq!(v["verdict"], "tempfail", "{v}");
    assert_eq!(v["reply"]["code"], 451, "{v}");
    assert_eq!(v["reply"]["enhanced"], "4.7.1", "{v}");
    let hooks = v["hooks"].as_array().unwrap();
    assert!(
        hooks
            .iter()
            .any(|h| h["hook"] == "rcpt" && h["verdict"] == "tempfail"),
        "{v}"
    );

    // The local list needs no DNS. (`plugin run` has no compile cache: each
    // run compiles the component, so one run per plugin.)
    let v = plugin_run(
        "js-uribl",
        &qp_html_message("x"),
        &[
            "--config",
            "{\"blocked_domains\": [\"bad-domain.test\"], \"blocked_action\": \"score\", \"blocked_weight\": 6}",
        ],
    );
    assert_eq!(v["verdict"], "continue", "{v}");
    assert_eq!(v["score"], 6.0, "{v}");
    assert_eq!(v["symbols"][0]["name"], "URIBL_LOCAL", "{v}");
}
