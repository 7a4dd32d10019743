//! Outbound delivery end to end: authenticated submission relays through
//! the durable queue to a second `poczta` found by MX records that a
//! hickory-server zone on loopback serves; retries, bounces (one DSN),
//! null MX, kill -9 with a queued message, the queue CLI, relay networks
//! and gateway mode. A scripted SMTP peer (`FakeMx`) stands in where the
//! test must choose the remote's answers (451, then 250; 550).

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::dns::{TestDns, Zone};
use crate::harness::{Raw, Server, WAIT, plugin_entry, pop3_fetch_all};

/// Generous: a retry is scheduled 1 s after a failure in these configs.
const DELIVERY_WAIT: Duration = Duration::from_secs(40);

/// The queue settings of a sending server in these tests: fast retries.
fn fast_queue(mx_port: u16) -> String {
    format!(
        "[queue]\nmx_port = {mx_port}\nretry_first = \"1s\"\nretry_max = \"2s\"\npoll_interval = \"1s\"\n\
         connect_timeout = \"3s\"\ncommand_timeout = \"10s\"\n"
    )
}

/// The sending server: example.test, AUTH allowed without TLS (the
/// STARTTLS path has its own tests), `extra` appended.
fn sender(extra: &str) -> Server {
    Server::start_with(&format!("submission.auth_without_tls = true\n{extra}"))
}

/// The remote MX: `remote.test` with user carol.
fn remote() -> Server {
    Server::start_as(
        "mx.remote.test",
        &["remote.test"],
        &["carol@remote.test", "dave@remote.test"],
        "",
    )
}

/// AUTH PLAIN on the submission port, then one message; the final reply.
fn submit(server: &Server, user: &str, from: &str, to: &[&str], data: &str) -> String {
    let (mut c, g) = Raw::connect(server.submission);
    assert!(g.starts_with("220"), "{g}");
    assert!(c.cmd("EHLO client.test").starts_with("250"), "{}", c.transcript);
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0secret"));
    let auth = c.cmd(&format!("AUTH PLAIN {token}"));
    assert!(auth.starts_with("235"), "{}", c.transcript);
    let r = c.cmd(&format!("MAIL FROM:<{from}>"));
    if !r.starts_with("250") {
        return r;
    }
    for t in to {
        let r = c.cmd(&format!("RCPT TO:<{t}>"));
        if !r.starts_with("250") {
            return r;
        }
    }
    assert!(c.cmd("DATA").starts_with("354"), "{}", c.transcript);
    c.send(data.replace('\n', "\r\n").as_bytes());
    c.send(b".\r\n");
    let r = c.reply();
    c.cmd("QUIT");
    r
}

/// Polls `f` until it returns `Some`, for at most `limit`.
fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `poczta queue list --json` of a server, parsed.
fn queue_json(server: &Server) -> serde_json::Value {
    let out = server.cli(&["queue", "list", "--json"], "");
    assert!(
        out.status.success(),
        "queue list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("queue list --json prints JSON")
}

fn queue_len(server: &Server) -> usize {
    queue_json(server).as_array().map_or(0, Vec::len)
}

/// One scripted answer to RCPT per transaction (MAIL), in order; the last
/// repeats.
#[derive(Clone, Copy, Debug)]
enum Rcpt {
    Accept,
    Tempfail,
    Reject,
}

/// What a [`FakeMx`] saw.
#[derive(Default)]
struct Seen {
    /// (RCPT lines, data) of every accepted message.
    messages: Vec<(Vec<String>, String)>,
    /// Connections.
    sessions: usize,
    /// MAIL commands.
    transactions: usize,
    /// Their lines, in order.
    mail_from: Vec<String>,
}

/// A minimal SMTP server on loopback that answers RCPT as scripted per
/// transaction and records every message it accepts. A thread per
/// connection, so a session parked by the client does not stall others.
struct FakeMx {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl FakeMx {
    fn start(script: Vec<Rcpt>) -> FakeMx {
        Self::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), script)
    }

    fn start_on(listener: TcpListener, script: Vec<Rcpt>) -> FakeMx {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        let script = Arc::new(script);
        std::thread::spawn(move || {
            // Bounded: a test needs a handful of sessions.
            for stream in listener.incoming().take(50) {
                let Ok(stream) = stream else { continue };
                shared.lock().unwrap().sessions += 1;
                let (seen, script) = (shared.clone(), script.clone());
                std::thread::spawn(move || {
                    let _ = serve_fake(stream, &script, &seen);
                });
            }
        });
        FakeMx { addr, seen }
    }

    fn messages(&self) -> Vec<(Vec<String>, String)> {
        self.seen.lock().unwrap().messages.clone()
    }

    fn sessions(&self) -> usize {
        self.seen.lock().unwrap().sessions
    }

    fn transactions(&self) -> usize {
        self.seen.lock().unwrap().transactions
    }

    /// The messages once there are some; panics with `why()` if none come.
    fn wait_messages(&self, why: impl Fn() -> String) -> Vec<(Vec<String>, String)> {
        wait_for(DELIVERY_WAIT, || {
            let m = self.messages();
            (!m.is_empty()).then_some(m)
        })
        .unwrap_or_else(|| panic!("{}", why()))
    }
}

/// `user`'s messages at `server` once there are some (POP3, not deleted).
fn mail_for(server: &Server, user: &str) -> Option<Vec<Vec<u8>>> {
    wait_for(DELIVERY_WAIT, || {
        let m = pop3_fetch_all(server.pop3, user, "secret", false);
        (!m.is_empty()).then_some(m)
    })
}

fn serve_fake(stream: TcpStream, script: &[Rcpt], seen: &Mutex<Seen>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(WAIT))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"220 fake.test ESMTP\r\n")?;
    let mut rcpts = Vec::new();
    let mut rcpt = Rcpt::Accept;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-fake.test\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n")?;
        } else if upper.starts_with("MAIL") {
            rcpts.clear();
            let mut s = seen.lock().unwrap();
            rcpt = script[s.transactions.min(script.len() - 1)];
            s.transactions += 1;
            s.mail_from.push(line.trim().to_owned());
            w.write_all(b"250 2.1.0 OK\r\n")?;
        } else if upper.starts_with("RCPT") {
            match rcpt {
                Rcpt::Accept => {
                    rcpts.push(line.trim().to_owned());
                    w.write_all(b"250 2.1.5 OK\r\n")?;
                }
                Rcpt::Tempfail => w.write_all(b"451 4.3.0 Try again later\r\n")?,
                Rcpt::Reject => w.write_all(b"550 5.1.1 No such user here\r\n")?,
            }
        } else if upper.starts_with("DATA") {
            w.write_all(b"354 go\r\n")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(&l);
            }
            seen.lock().unwrap().messages.push((rcpts.clone(), data));
            w.write_all(b"250 2.0.0 accepted\r\n")?;
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"250 OK\r\n")?;
        }
    }
}

#[test]
fn submitted_mail_reaches_the_remote_mx_found_by_dns() {
    let b = remote();
    let dns = TestDns::start(
        Zone::standard()
            .mx("remote.test", 10, "mx.remote.test")
            .a("mx.remote.test", Ipv4Addr::LOCALHOST),
    );
    let a = sender(&format!("{}\n{}", dns.config(), fast_queue(b.smtp.port())));
    // No Message-ID or Date: submission adds them (RFC 6409 §8.3).
    let r = submit(
        &a,
        "alice@example.test",
        "alice@example.test",
        &["carol@remote.test", "dave@remote.test"],
        "From: alice@example.test\nTo: carol@remote.test\nSubject: over the wire\n\nHello from A.\n",
    );
    assert!(r.starts_with("250"), "{r}");
    let got = mail_for(&b, "carol@remote.test")
        .unwrap_or_else(|| panic!("not delivered to carol at B\nA:\n{}\nB:\n{}", a.log(), b.log()));
    assert_eq!(got.len(), 1);
    let text = String::from_utf8_lossy(&got[0]);
    assert!(text.contains("Subject: over the wire"), "{text}");
    assert!(text.contains("Hello from A."), "{text}");
    assert!(text.contains("by mx.example.test"), "A's Received header: {text}");
    assert!(text.contains("by mx.remote.test"), "B's Received header: {text}");
    assert!(
        text.contains("Message-ID: <"),
        "submission adds a Message-ID: {text}"
    );
    assert!(text.contains("\r\nDate: "), "submission adds a Date: {text}");
    assert!(
        text.starts_with("Return-Path: <alice@example.test>"),
        "the envelope sender survives the hop: {text}"
    );
    // One SMTP transaction carried both recipients of the domain.
    let dave = pop3_fetch_all(b.pop3, "dave@remote.test", "secret", false);
    assert_eq!(dave.len(), 1);
    assert!(
        wait_for(WAIT, || (queue_len(&a) == 0).then_some(())).is_some(),
        "the queue empties after delivery: {}",
        queue_json(&a)
    );
    let log = a.log();
    assert!(
        log.contains("result=\"sent\"") || log.contains("result=sent"),
        "{log}"
    );
}

#[test]
fn remote_tempfail_is_retried_and_delivered_once() {
    let fake = FakeMx::start(vec![Rcpt::Tempfail, Rcpt::Accept]);
    let a = sender(&format!(
        "{}\n[[routes]]\ndomain = \"remote.test\"\nnext_hop = \"{}\"\n",
        fast_queue(25),
        fake.addr
    ));
    let r = submit(
        &a,
        "alice@example.test",
        "alice@example.test",
        &["carol@remote.test"],
        "Subject: retry me\n\nbody\n",
    );
    assert!(r.starts_with("250"), "{r}");
    let msgs = fake.wait_messages(|| format!("never delivered after the 451\n{}", a.log()));
    assert!(fake.transactions() >= 2, "the first attempt was deferred");
    assert!(msgs[0].1.contains("Subject: retry me"));
    assert!(wait_for(WAIT, || (queue_len(&a) == 0).then_some(())).is_some());
    // Two more retry intervals: nothing is sent again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(fake.messages().len(), 1, "delivered exactly once");
    assert!(a.log().contains("deferred"), "{}", a.log());
}

#[test]
fn remote_rejection_bounces_one_dsn_to_the_sender() {
    let fake = FakeMx::start(vec![Rcpt::Reject]);
    let a = sender(&format!(
        "{}\n[[routes]]\ndomain = \"remote.test\"\nnext_hop = \"{}\"\n",
        fast_queue(25),
        fake.addr
    ));
    let r = submit(
        &a,
        "alice@example.test",
        "alice@example.test",
        &["nobody1@remote.test", "nobody2@remote.test"],
        "Subject: will bounce\nMessage-ID: <orig@example.test>\n\nbody\n",
    );
    assert!(r.starts_with("250"), "{r}");
    let inbox = mail_for(&a, "alice@example.test").unwrap_or_else(|| panic!("no bounce\n{}", a.log()));
    std::thread::sleep(Duration::from_secs(2));
    let inbox = {
        let again = pop3_fetch_all(a.pop3, "alice@example.test", "secret", false);
        assert_eq!(again.len(), inbox.len());
        again
    };
    assert_eq!(inbox.len(), 1, "one DSN for both recipients");
    let dsn = String::from_utf8_lossy(&inbox[0]);
    assert!(dsn.starts_with("Return-Path: <>"), "{dsn}");
    assert!(
        dsn.contains("multipart/report; report-type=delivery-status"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Final-Recipient: rfc822; nobody1@remote.test"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Final-Recipient: rfc822; nobody2@remote.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    assert!(dsn.contains("550 5.1.1 No such user here"), "{dsn}");
    assert!(
        dsn.contains("Message-ID: <orig@example.test>"),
        "original headers: {dsn}"
    );
    assert!(fake.messages().is_empty());
    assert_eq!(queue_len(&a), 0);
}

#[test]
fn null_mx_bounces_at_once_and_no_mx_falls_back_to_the_address() {
    let b = remote();
    let dns = TestDns::start(
        Zone::standard()
            .mx("nomail.test", 0, ".")
            // remote.test has no MX: its own A record is the implicit MX.
            .a("remote.test", Ipv4Addr::LOCALHOST),
    );
    let a = sender(&format!("{}\n{}", dns.config(), fast_queue(b.smtp.port())));
    let r = submit(
        &a,
        "alice@example.test",
        "alice@example.test",
        &["x@nomail.test", "carol@remote.test"],
        "Subject: two ways\n\nbody\n",
    );
    assert!(r.starts_with("250"), "{r}");
    let dsn = mail_for(&a, "alice@example.test")
        .unwrap_or_else(|| panic!("no bounce for the null MX\n{}", a.log()));
    let dsn = String::from_utf8_lossy(&dsn[0]);
    assert!(dsn.contains("x@nomail.test"), "{dsn}");
    assert!(dsn.contains("Status: 5.1.10"), "{dsn}");
    assert!(
        !dsn.contains("carol@remote.test\r\nAction"),
        "carol was not bounced: {dsn}"
    );
    let carol = mail_for(&b, "carol@remote.test");
    assert!(carol.is_some(), "A/AAAA fallback without MX\n{}", a.log());
}

#[test]
fn queued_message_survives_kill9_and_is_delivered_once() {
    // Reserve a port for the next hop that nothing answers on yet.
    let spot = TcpListener::bind("127.0.0.1:0").unwrap();
    let hop = spot.local_addr().unwrap();
    drop(spot);
    let mut a = sender(&format!(
        "{}\n[[routes]]\ndomain = \"remote.test\"\nnext_hop = \"{hop}\"\n",
        fast_queue(25)
    ));
    let r = submit(
        &a,
        "alice@example.test",
        "alice@example.test",
        &["carol@remote.test"],
        "Subject: survive\n\nbody\n",
    );
    assert!(r.starts_with("250"), "{r}");
    assert!(
        wait_for(WAIT, || a.log().contains("deferred").then_some(())).is_some(),
        "the first attempt fails: nothing listens\n{}",
        a.log()
    );
    a.kill9();
    // With the server down, the CLI reads the database itself.
    let q = queue_json(&a);
    assert_eq!(q.as_array().map(Vec::len), Some(1), "{q}");
    assert_eq!(q[0]["rcpts"][0]["state"], "pending");
    // Submission gave it a Message-ID; the listing shows it.
    assert!(
        q[0]["message_id"]
            .as_str()
            .is_some_and(|m| m.ends_with("@mx.example.test")),
        "{q}"
    );
    let id = q[0]["queue_id"].as_str().unwrap().to_owned();
    let show = a.cli(&["queue", "show", &id], "");
    assert!(show.status.success());
    assert!(String::from_utf8_lossy(&show.stdout).contains("Subject: survive"));

    let fake = FakeMx::start_on(
        TcpListener::bind(hop).expect("the reserved port is free again"),
        vec![Rcpt::Accept],
    );
    a.restart();
    let msgs = fake.wait_messages(|| format!("not delivered after the restart\n{}", a.all_logs()));
    assert!(msgs[0].1.contains("Subject: survive"));
    assert!(wait_for(WAIT, || (queue_len(&a) == 0).then_some(())).is_some());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(fake.messages().len(), 1, "exactly once");
}

#[test]
fn queue_cli_retries_and_deletes_through_the_running_server() {
    let spot = TcpListener::bind("127.0.0.1:0").unwrap();
    let hop = spot.local_addr().unwrap();
    drop(spot);
    // Long retry delay: only `queue retry` makes a second attempt soon.
    let a = sender(&format!(
        "[queue]\nretry_first = \"1h\"\npoll_interval = \"1s\"\nconnect_timeout = \"2s\"\n\
         [[routes]]\ndomain = \"remote.test\"\nnext_hop = \"{hop}\"\n"
    ));
    for subject in ["one", "two"] {
        let r = submit(
            &a,
            "alice@example.test",
            "alice@example.test",
            &["carol@remote.test"],
            &format!("Subject: {subject}\n\nbody\n"),
        );
        assert!(r.starts_with("250"), "{r}");
    }
    assert!(
        wait_for(WAIT, || (a.log().matches("deferred").count() >= 2).then_some(())).is_some(),
        "{}",
        a.log()
    );
    let q = queue_json(&a);
    let ids: Vec<String> = q
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["queue_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{q}");
    let del = a.cli(&["queue", "delete", &ids[0]], "");
    assert!(del.status.success(), "{}", String::from_utf8_lossy(&del.stderr));
    assert!(a.log().contains("admin request"), "went through the admin socket");
    assert_eq!(queue_len(&a), 1);
    let missing = a.cli(&["queue", "delete", &ids[0]], "");
    assert_eq!(missing.status.code(), Some(2), "deleting twice is an error");

    let fake = FakeMx::start_on(TcpListener::bind(hop).unwrap(), vec![Rcpt::Accept]);
    let retry = a.cli(&["queue", "retry", "all"], "");
    assert!(
        retry.status.success(),
        "{}",
        String::from_utf8_lossy(&retry.stderr)
    );
    let msgs = fake.wait_messages(|| format!("retry did not deliver\n{}", a.log()));
    assert_eq!(msgs.len(), 1, "the deleted message stays deleted");
    assert!(msgs[0].1.contains("Subject: two"));
    assert!(wait_for(WAIT, || (queue_len(&a) == 0).then_some(())).is_some());
}

#[test]
fn relaying_needs_auth_or_a_relay_network() {
    let a = sender("");
    // The MX listener never relays for an unauthenticated client.
    let (mut c, _) = Raw::connect(a.smtp);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<x@outside.test>");
    let r = c.cmd("RCPT TO:<carol@remote.test>");
    assert!(r.starts_with("550 5.7.1"), "{r}");
    // Submission without AUTH: not even MAIL.
    let (mut c, _) = Raw::connect(a.submission);
    c.cmd("EHLO client.test");
    let r = c.cmd("MAIL FROM:<alice@example.test>");
    assert!(r.starts_with("530"), "{r}");
    // An authenticated user may not send as someone else.
    let r = submit(
        &a,
        "alice@example.test",
        "bob@example.test",
        &["carol@remote.test"],
        "x\n",
    );
    assert!(r.starts_with("553 5.7.1"), "{r}");
    // Nor put someone else in From:.
    let r = submit(
        &a,
        "alice@example.test",
        "alice@example.test",
        &["carol@remote.test"],
        "From: Bob <bob@example.test>\nSubject: forged\n\nx\n",
    );
    assert!(r.starts_with("553 5.7.1"), "{r}");
    // Relay tricks stay refused even for an authenticated user: the next
    // hop could honour them.
    for trick in ["carol%remote.test@other2.test", "remote.test!carol@other2.test"] {
        let r = submit(&a, "alice@example.test", "alice@example.test", &[trick], "x\n");
        assert!(r.starts_with("550 5.7.1"), "{trick}: {r}");
    }
    assert_eq!(queue_len(&a), 0);

    // A relay network may relay without AUTH, on the MX listener too.
    let fake = FakeMx::start(vec![Rcpt::Accept]);
    let n = sender(&format!(
        "[relay]\nnetworks = [\"127.0.0.0/8\"]\n{}\n[[routes]]\ndomain = \"*\"\nnext_hop = \"{}\"\n",
        fast_queue(25),
        fake.addr
    ));
    let (mut c, _) = Raw::connect(n.smtp);
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<app@example.test>").starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<carol@remote.test>").starts_with("250"),
        "{}",
        c.transcript
    );
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: from a relay network\r\n\r\nhi\r\n.\r\n");
    assert!(c.reply().starts_with("250"), "{}", c.transcript);
    let msgs =
        fake.wait_messages(|| format!("relay network mail not delivered via the smart host\n{}", n.log()));
    assert!(msgs[0].1.contains("from a relay network"));
}

#[test]
fn gateway_filters_relay_domain_mail_and_forwards_it_to_the_next_hop() {
    let b = Server::start_as(
        "mail.internal.test",
        &["internal.test"],
        &["erin@internal.test"],
        "",
    );
    let gw = Server::start_as(
        "gw.example.test",
        &["example.test"],
        &[],
        &format!(
            "[relay]\ndomains = [\"internal.test\"]\nverify_recipients = true\n{}\n[[routes]]\ndomain = \"internal.test\"\nnext_hop = \"{}\"\ntls = \"none\"\n\n{}",
            fast_queue(25),
            b.smtp,
            plugin_entry("tag-score", "tag-score", ""),
        ),
    );
    // From anywhere, no AUTH: mail for the relay domain is accepted...
    let (mut c, _) = Raw::connect(gw.smtp);
    c.cmd("EHLO outside.test");
    assert!(c.cmd("MAIL FROM:<someone@outside.test>").starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<erin@internal.test>").starts_with("250"),
        "{}",
        c.transcript
    );
    // ...unless the next hop does not know the recipient (verified by an
    // RCPT probe, so the gateway never has to bounce)...
    assert!(
        c.cmd("RCPT TO:<nobody@internal.test>").starts_with("550 5.1.1"),
        "{}",
        c.transcript
    );
    // ...and other domains are still refused.
    assert!(
        c.cmd("RCPT TO:<x@elsewhere.test>").starts_with("550 5.7.1"),
        "{}",
        c.transcript
    );
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: through the gateway\r\n\r\nhello erin\r\n.\r\n");
    assert!(c.reply().starts_with("250"), "{}", c.transcript);
    let got = mail_for(&b, "erin@internal.test")
        .unwrap_or_else(|| panic!("not forwarded\nGW:\n{}\nB:\n{}", gw.log(), b.log()));
    let text = String::from_utf8_lossy(&got[0]);
    assert!(
        text.contains("X-Poczta-Tagged: yes"),
        "the gateway's plugin ran: {text}"
    );
    assert!(text.contains("by gw.example.test"), "{text}");
    assert!(text.contains("hello erin"), "{text}");
}

#[test]
fn one_connection_carries_several_messages_to_the_same_host() {
    let fake = FakeMx::start(vec![Rcpt::Accept]);
    let a = sender(&format!(
        "{}\n[[routes]]\ndomain = \"remote.test\"\nnext_hop = \"{}\"\n",
        fast_queue(25),
        fake.addr
    ));
    for n in 1..=3 {
        let r = submit(
            &a,
            "alice@example.test",
            "alice@example.test",
            &["carol@remote.test"],
            &format!("Subject: number {n}\n\nbody\n"),
        );
        assert!(r.starts_with("250"), "{r}");
        assert!(
            wait_for(DELIVERY_WAIT, || (fake.messages().len() == n).then_some(())).is_some(),
            "message {n} not delivered\n{}",
            a.log()
        );
    }
    assert_eq!(
        fake.sessions(),
        1,
        "the idle session was reused (RSET between messages)"
    );
    assert_eq!(fake.transactions(), 3);
}

#[test]
fn an_alias_forwards_to_a_remote_address_but_no_redirect_opens_a_relay() {
    let fake = FakeMx::start(vec![Rcpt::Accept]);
    let a = Server::start_with(&format!(
        "{}\n[[routes]]\ndomain = \"remote.test\"\nnext_hop = \"{}\"\n\n{}",
        fast_queue(25),
        fake.addr,
        plugin_entry(
            "forward",
            "forward",
            "config = { aliases = { \"sales@example.test\" = [\"alice@example.test\", \"carol@remote.test\"], \
             \"x@elsewhere.test\" = [\"carol@remote.test\"] } }",
        ),
    ));
    // An unauthenticated sender on the MX listener: the alias is ours, so
    // its remote member is queued, and alice gets her copy.
    let (mut c, _) = Raw::connect(a.smtp);
    c.cmd("EHLO outside.test");
    assert!(c.cmd("MAIL FROM:<someone@outside.test>").starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<sales@example.test>").starts_with("250"),
        "{}",
        c.transcript
    );
    // An alias for an address that is not ours is routed like any
    // recipient: refused, whatever the plugin says.
    assert!(
        c.cmd("RCPT TO:<x@elsewhere.test>").starts_with("550 5.7.1"),
        "{}",
        c.transcript
    );
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: for sales\r\n\r\nhello\r\n.\r\n");
    assert!(c.reply().starts_with("250"), "{}", c.transcript);
    let msgs = fake.wait_messages(|| format!("the remote member got nothing\n{}", a.log()));
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0, vec!["RCPT TO:<carol@remote.test>".to_string()]);
    assert!(msgs[0].1.contains("Subject: for sales"));
    let alice = pop3_fetch_all(a.pop3, "alice@example.test", "secret", false);
    assert_eq!(alice.len(), 1);
}

#[test]
fn a_list_relays_with_its_bounce_address_as_the_envelope_sender() {
    let fake = FakeMx::start(vec![Rcpt::Accept]);
    let a = Server::start_with(&format!(
        "{}\n[[routes]]\ndomain = \"remote.test\"\nnext_hop = \"{}\"\n\n{}",
        fast_queue(25),
        fake.addr,
        plugin_entry(
            "forward",
            "forward",
            "config = { lists = { \"team@example.test\" = { members = [\"alice@example.test\", \"carol@remote.test\"], \
             bounce = \"bob@example.test\" } } }",
        ),
    ));
    let (mut c, _) = Raw::connect(a.smtp);
    c.cmd("EHLO outside.test");
    assert!(c.cmd("MAIL FROM:<poster@outside.test>").starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<team@example.test>").starts_with("250"),
        "{}",
        c.transcript
    );
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: to the team\r\n\r\nhello\r\n.\r\n");
    assert!(c.reply().starts_with("250"), "{}", c.transcript);
    let msgs = fake.wait_messages(|| format!("the remote member got nothing\n{}", a.log()));
    assert!(
        msgs[0].1.contains("List-Id: <team.example.test>"),
        "{}",
        msgs[0].1
    );
    let from = fake.seen.lock().unwrap().mail_from.clone();
    assert_eq!(from.len(), 1, "{from:?}");
    assert!(
        from[0].starts_with("MAIL FROM:<bob@example.test>"),
        "the list's bounce address: {from:?}"
    );
    let alice = pop3_fetch_all(a.pop3, "alice@example.test", "secret", false);
    assert_eq!(alice.len(), 1);
    let text = String::from_utf8_lossy(&alice[0]);
    assert!(text.starts_with("Return-Path: <bob@example.test>"), "{text}");
    assert!(a.log().contains("envelope sender replaced by a plugin"));
}

#[test]
fn failed_logins_are_slowed_per_account_across_client_addresses() {
    let a = sender("[limits]\nlogin_failure_delay = \"40ms\"\nmax_errors = 50\n");
    // Three wrong passwords for bob from 127.0.0.2, then one from 127.0.0.3:
    // the fourth is slowed as the account's fourth failure, although it is
    // the first from its address.
    let script = r#"
import smtplib, sys
port = int(sys.argv[1])
for source in ["127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3"]:
    s = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=20)
    s.ehlo("client.test")
    try:
        s.login("bob@example.test", "wrong")
        print("logged in?!")
    except smtplib.SMTPAuthenticationError as e:
        print(e.smtp_code)
    s.quit()
"#;
    let out = crate::harness::python(script, &[a.submission.port().to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["535", "535", "535", "535"]);
    // smtplib tries each offered mechanism, so count the failures logged
    // before the first one from 127.0.0.3.
    let log = a.log();
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("smtp auth failed")).collect();
    let first3 = failures
        .iter()
        .position(|l| l.contains("client=127.0.0.3"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(first3 >= 3, "{log}");
    let expected = format!("delay_ms={}", 40 * (first3 + 1));
    assert!(
        failures[first3].contains(&expected),
        "the account's failure #{} from a fresh address waits {expected}: {}",
        first3 + 1,
        failures[first3]
    );
}
