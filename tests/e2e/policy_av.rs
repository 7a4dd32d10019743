//! The policy plugins `dnsbl`, `antivirus` and `bulk-limit` through the real
//! server: blocklists answered by a hickory-server zone on loopback (a
//! client socket bound to 127.0.0.2 is the listed host), the sample messages
//! of examples/messages sent over SMTP and read back over POP3, and the
//! bulk limit's kv window across transactions. Also `poczta plugin run` on
//! the samples.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::dns::{TestDns, Zone};
use crate::harness::{POCZTA, Server, WAIT, plugin, plugin_entry, pop3_fetch_all, send_raw_message};

/// A sample message from examples/messages.
fn sample(name: &str) -> Vec<u8> {
    let p = samples_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/messages")
}

fn header_of(msg: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let prefix = format!("{name}: ");
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

/// An SMTP client whose socket is bound to `source` before connecting, so
/// the server sees that client address (any 127.0.0.0/8 address is local).
struct BoundClient {
    reader: BufReader<TcpStream>,
    transcript: String,
}

impl BoundClient {
    /// Connects from `source` and returns the client and the greeting line.
    fn connect(source: IpAddr, server: SocketAddr) -> (BoundClient, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let stream = rt
            .block_on(async {
                let sock = tokio::net::TcpSocket::new_v4()?;
                sock.bind(SocketAddr::new(source, 0))?;
                sock.connect(server).await?.into_std()
            })
            .unwrap_or_else(|e| panic!("connect from {source}: {e}"));
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut c = BoundClient {
            reader: BufReader::new(stream),
            transcript: String::new(),
        };
        let greeting = c.reply();
        (c, greeting)
    }

    /// The last line of the next reply; empty at EOF.
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return String::new();
            }
            let line = line.trim_end().to_string();
            self.transcript.push_str(&format!("S: {line}\n"));
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return line;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.transcript.push_str(&format!("C: {line}\n"));
        self.reader
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// One message to alice; the final reply.
    fn send_to_alice(&mut self, subject: &str) -> String {
        for c in [
            "EHLO client.test",
            "MAIL FROM:<s@remote.test>",
            "RCPT TO:<alice@example.test>",
            "DATA",
        ] {
            let r = self.cmd(c);
            assert!(
                r.starts_with('2') || r.starts_with("354"),
                "{c}: {r}\n{}",
                self.transcript
            );
        }
        let msg = format!("Subject: {subject}\r\n\r\nhello\r\n.\r\n");
        self.reader.get_mut().write_all(msg.as_bytes()).unwrap();
        let r = self.reply();
        self.cmd("QUIT");
        r
    }
}

const LISTED: &str = "127.0.0.2";
const CLEAN: &str = "127.0.0.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A server with the dnsbl plugin (`config`) resolving through `ns`.
fn dnsbl_server(config: &str, ns: SocketAddr, dns_extra: &str) -> Server {
    Server::start_with(&format!(
        "{}[dns]\nnameservers = [\"{ns}\"]\n{dns_extra}\n",
        plugin_entry(
            "dnsbl",
            "dnsbl",
            &format!("grants = [\"dns\"]\ntimeout = \"3s\"\nconfig = {config}"),
        )
    ))
}

#[test]
fn dnsbl_rejects_a_listed_client_with_the_zone_reason() {
    let dns = TestDns::start(Zone::standard());
    let s = dnsbl_server("{ zones = [{ zone = \"zen.test\" }] }", dns.addr(), "");
    let (mut c, greeting) = BoundClient::connect(ip(LISTED), s.smtp);
    assert_eq!(
        greeting,
        "554 5.7.1 Service unavailable; client [127.0.0.2] blocked using zen.test: listed for testing"
    );
    assert_eq!(c.reply(), "", "the connection is closed after the refusal");

    let (mut c, greeting) = BoundClient::connect(ip(CLEAN), s.smtp);
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(c.send_to_alice("clean").starts_with("250"), "{}", c.transcript);
    assert_eq!(pop3_fetch_all(s.pop3, "alice", "secret", true).len(), 1);

    // The allow-list wins over the listing.
    let s = dnsbl_server(
        "{ zones = [{ zone = \"zen.test\" }], allow = [\"127.0.0.0/30\", \"::1\"] }",
        dns.addr(),
        "",
    );
    let (mut c, greeting) = BoundClient::connect(ip(LISTED), s.smtp);
    assert!(greeting.starts_with("220 "), "allow-listed: {greeting}");
    assert!(c.send_to_alice("allowed").starts_with("250"), "{}", c.transcript);
}

#[test]
fn dnsbl_outage_never_blocks_mail() {
    // A closed port: every look-up fails at once (and TCP is refused).
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let s = dnsbl_server(
        "{ zones = [{ zone = \"zen.test\" }], check_ptr = true }",
        closed,
        "timeout = \"500ms\"",
    );
    let (mut c, greeting) = BoundClient::connect(ip(LISTED), s.smtp);
    assert!(greeting.starts_with("220 "), "DNS down: {greeting}");
    assert!(c.send_to_alice("dns down").starts_with("250"), "{}", c.transcript);
    let m = pop3_fetch_all(s.pop3, "alice", "secret", false);
    assert_eq!(m.len(), 1);
    let score = header_of(&m[0], "X-Poczta-Score").unwrap_or_default();
    assert!(
        !score.contains("RDNS_NONE"),
        "a failed PTR look-up is no finding: {score}"
    );
    assert!(
        s.log().contains("not blocking"),
        "the failure is logged:\n{}",
        s.log()
    );
}

#[test]
fn dnsbl_score_zone_and_helo_checks() {
    let dns = TestDns::start(Zone::standard());
    let s = dnsbl_server(
        "{ zones = [{ zone = \"zen.test\", action = \"score\", weight = 3.5, symbol = \"RBL_ZEN_TEST\" }], \
         check_ptr = true, helo_bare_ip = \"reject\", helo_own_name = \"score\", own_names = [\"example.test\"] }",
        dns.addr(),
        "",
    );
    let (mut c, greeting) = BoundClient::connect(ip(LISTED), s.smtp);
    assert!(
        greeting.starts_with("220 "),
        "a score zone does not refuse: {greeting}"
    );
    assert!(c.send_to_alice("scored").starts_with("250"), "{}", c.transcript);
    let m = pop3_fetch_all(s.pop3, "alice", "secret", true);
    let score = header_of(&m[0], "X-Poczta-Score").expect("score header");
    assert!(score.contains("RBL_ZEN_TEST=3.5"), "{score}");
    // The resolver answers loopback PTR queries itself ("localhost"), so a
    // loopback client always has reverse DNS: the check runs and finds it.
    assert!(!score.contains("RDNS_NONE"), "{score}");

    // The clean client gets neither the zone's symbol nor a refusal.
    let (mut c, _) = BoundClient::connect(ip(CLEAN), s.smtp);
    assert!(c.send_to_alice("clean").starts_with("250"));
    let m = pop3_fetch_all(s.pop3, "alice", "secret", true);
    let score = header_of(&m[0], "X-Poczta-Score").unwrap_or_default();
    assert!(!score.contains("RBL_ZEN_TEST"), "{score}");

    // HELO checks: a bare IP is refused, our own name is scored.
    let (mut c, _) = BoundClient::connect(ip(CLEAN), s.smtp);
    let r = c.cmd("EHLO 192.0.2.1");
    assert!(r.starts_with("550 5.7.1") && r.contains("bare IP"), "{r}");
    let r = c.cmd("EHLO mx.example.test");
    assert!(r.starts_with("250"), "{r}");
    for cmd in [
        "MAIL FROM:<s@remote.test>",
        "RCPT TO:<alice@example.test>",
        "DATA",
    ] {
        c.cmd(cmd);
    }
    c.reader
        .get_mut()
        .write_all(b"Subject: forged helo\r\n\r\nx\r\n.\r\n")
        .unwrap();
    assert!(c.reply().starts_with("250"), "{}", c.transcript);
    let m = pop3_fetch_all(s.pop3, "alice", "secret", true);
    let score = header_of(&m[0], "X-Poczta-Score").unwrap_or_default();
    assert!(score.contains("HELO_FORGED_OWN=4"), "{score}");
}

// ---------------------------------------------------------------- antivirus

fn signatures() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/rust/antivirus/signatures");
    format!(
        "assets = {{ example_hdb = \"{}\", example_ndb = \"{}\" }}",
        dir.join("example.hdb").display(),
        dir.join("example.ndb").display()
    )
}

fn antivirus_server(config: &str) -> Server {
    Server::start_with(&plugin_entry(
        "antivirus",
        "antivirus",
        &format!("grants = [\"assets\"]\n{}\nconfig = {config}", signatures()),
    ))
}

fn send_sample(s: &Server, name: &str) -> String {
    send_raw_message(
        s.smtp,
        "sender@example.org",
        &["alice@example.test"],
        &sample(name),
    )
}

#[test]
fn antivirus_rejects_eicar_signatures_and_dangerous_attachments() {
    let s = antivirus_server("{ action = \"reject\" }");
    for (file, name) in [
        ("eicar-plain.eml", "Eicar-Test-Signature"),
        ("eicar-base64.eml", "Eicar-Test-Signature"),
        ("eicar-qp.eml", "Eicar-Test-Signature"),
        ("eicar-zip.eml", "Eicar-Test-Signature"),
        ("attachment-exe.eml", "Policy.BlockedExtension.exe"),
        ("attachment-double-ext.eml", "Heuristics.DoubleExtension"),
        ("attachment-encrypted-zip.eml", "Heuristics.Encrypted.Zip"),
        ("attachment-signature.eml", "Poczta.Test.Ndb"),
    ] {
        let r = send_sample(&s, file);
        assert!(r.starts_with("554 5.7.1 "), "{file}: {r}");
        assert!(r.contains(name), "{file}: expected {name} in {r:?}");
    }
    assert!(
        s.log().contains("docs/eicar.txt"),
        "the zip member is named in the log"
    );
    assert!(
        pop3_fetch_all(s.pop3, "alice", "secret", false).is_empty(),
        "nothing reached the mailbox"
    );

    // A clean message with a PDF attachment passes, its bytes untouched.
    let clean = sample("attachment-pdf.eml");
    let r = send_sample(&s, "attachment-pdf.eml");
    assert!(r.starts_with("250 "), "{r}");
    let m = pop3_fetch_all(s.pop3, "alice", "secret", false);
    assert_eq!(m.len(), 1);
    assert!(
        m[0].ends_with(&clean),
        "the sent message is delivered byte for byte after the trace headers"
    );
    assert!(header_of(&m[0], "X-Poczta-Antivirus").is_none());
}

#[test]
fn antivirus_quarantine_mode_holds_the_message() {
    let s = antivirus_server("{ action = \"quarantine\" }");
    for file in ["eicar-zip.eml", "attachment-double-ext.eml"] {
        let r = send_sample(&s, file);
        assert!(r.starts_with("250 "), "{file}: quarantine accepts: {r}");
    }
    assert!(
        pop3_fetch_all(s.pop3, "alice", "secret", false).is_empty(),
        "held in quarantine, not in the inbox"
    );
    let log = s.log();
    assert!(log.contains("alice@example.test:Quarantine"), "{log}");
    assert!(log.contains("Eicar-Test-Signature"), "{log}");
    // A clean one still reaches the inbox.
    assert!(send_sample(&s, "attachment-pdf.eml").starts_with("250 "));
    assert_eq!(pop3_fetch_all(s.pop3, "alice", "secret", false).len(), 1);
}

// ---------------------------------------------------------------- bulk-limit

#[test]
fn bulk_limit_tempfails_then_refuses_duplicates_and_exempts_lists() {
    let s = Server::start_with(&plugin_entry(
        "bulk-limit",
        "bulk-limit",
        "grants = [\"kv\"]\ntimeout = \"3s\"\nconfig = { threshold = 2, hard_threshold = 4, window_secs = 600 }",
    ));
    for u in ["carol", "dave", "erin"] {
        s.add_user(&format!("{u}@example.test"), "secret");
    }
    let offer = sample("bulk-offer.eml");
    let rcpts = ["alice", "bob", "carol", "dave", "erin"];
    let replies: Vec<String> = rcpts
        .iter()
        .map(|u| {
            send_raw_message(
                s.smtp,
                "deals@remote.test",
                &[&format!("{u}@example.test")],
                &offer,
            )
        })
        .collect();
    let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
    assert_eq!(codes, ["250", "250", "450", "450", "550"], "{replies:#?}");
    assert!(replies[2].starts_with("450 4.7.1 "), "{}", replies[2]);
    assert!(replies[4].starts_with("550 5.7.1 "), "{}", replies[4]);
    // The same body with other numbers and spacing is the same message.
    let reworded = String::from_utf8(offer.clone())
        .unwrap()
        .replace("4711", "9999")
        .replace("Order now", "Order   now");
    let r = send_raw_message(
        s.smtp,
        "deals@remote.test",
        &["alice@example.test"],
        reworded.as_bytes(),
    );
    assert!(r.starts_with("550 "), "a near duplicate counts too: {r}");

    // A list message with the same body is not limited.
    let list = sample("bulk-newsletter.eml");
    let r = send_raw_message(s.smtp, "deals@remote.test", &["erin@example.test"], &list);
    assert!(r.starts_with("250 "), "List-Id exempts: {r}");
    // A different body from the same sender is not limited.
    let other = b"Subject: lunch?\r\n\r\nAre we still on for lunch on Friday?\r\n";
    let r = send_raw_message(s.smtp, "deals@remote.test", &["erin@example.test"], other);
    assert!(r.starts_with("250 "), "a different body: {r}");

    for (u, n) in [("alice", 1), ("bob", 1), ("carol", 0), ("erin", 2)] {
        assert_eq!(pop3_fetch_all(s.pop3, u, "secret", false).len(), n, "{u}");
    }
}

// ---------------------------------------------------------------- plugin run

/// `poczta plugin run <plugin> --eml <sample> --json` → the JSON report.
fn plugin_run(wasm: &str, eml: &str, config: &str) -> serde_json::Value {
    let out = Command::new(POCZTA)
        .args(["plugin", "run"])
        .arg(plugin(wasm))
        .arg("--eml")
        .arg(samples_dir().join(eml))
        .args(["--config", config, "--json"])
        .output()
        .expect("run poczta");
    assert!(
        out.status.success(),
        "{wasm} on {eml}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

#[test]
fn plugin_run_reports_the_samples() {
    for (eml, verdict, text) in [
        ("eicar-plain.eml", "reject", "Eicar-Test-Signature"),
        ("eicar-base64.eml", "reject", "Eicar-Test-Signature"),
        ("eicar-qp.eml", "reject", "Eicar-Test-Signature"),
        ("eicar-zip.eml", "reject", "Eicar-Test-Signature"),
        ("attachment-exe.eml", "reject", "Policy.BlockedExtension.exe"),
        (
            "attachment-double-ext.eml",
            "reject",
            "Heuristics.DoubleExtension",
        ),
        (
            "attachment-encrypted-zip.eml",
            "reject",
            "Heuristics.Encrypted.Zip",
        ),
        ("attachment-pdf.eml", "continue", ""),
        // `plugin run` hands no assets: the signature sample passes there.
        ("attachment-signature.eml", "continue", ""),
    ] {
        let report = plugin_run("antivirus", eml, "{}");
        assert_eq!(report["verdict"], verdict, "{eml}: {report}");
        if verdict == "reject" {
            assert_eq!(report["reply"]["code"], 554, "{eml}: {report}");
            let t = report["reply"]["text"].as_str().unwrap_or_default();
            assert!(t.contains(text), "{eml}: {t}");
        }
    }
    let q = plugin_run("antivirus", "eicar-zip.eml", r#"{"action": "quarantine"}"#);
    assert_eq!(q["verdict"], "quarantine", "{q}");
    for eml in ["bulk-offer.eml", "bulk-newsletter.eml"] {
        let r = plugin_run("bulk-limit", eml, "{}");
        assert_eq!(r["verdict"], "continue", "{eml}: {r}");
    }
    // Over a threshold of 1 with two recipients: the limit answers.
    let out = Command::new(POCZTA)
        .args(["plugin", "run"])
        .arg(plugin("bulk-limit"))
        .arg("--eml")
        .arg(samples_dir().join("bulk-offer.eml"))
        .args(["--to", "a@example.test", "--to", "b@example.test"])
        .args(["--config", r#"{"threshold": 1, "hard_threshold": 5}"#, "--json"])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(r["verdict"], "tempfail", "{r}");
    assert_eq!(r["reply"]["code"], 450, "{r}");
}
