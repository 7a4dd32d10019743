//! SMTP in: standard clients, RFC behaviour, limits and hostile input.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{Message, SmtpTransport, Transport};

use crate::harness::{Raw, Server, pop3_fetch_all, send_raw_message, strip_trace_headers};

fn lettre_to(server: &Server) -> SmtpTransport {
    SmtpTransport::builder_dangerous("127.0.0.1")
        .port(server.smtp.port())
        .timeout(Some(Duration::from_secs(20)))
        .build()
}

#[test]
fn lettre_sends_and_poplib_retrieves_with_trace_headers() {
    let server = Server::start();
    let msg = Message::builder()
        .from("Carol <carol@remote.test>".parse::<Mailbox>().unwrap())
        .to("alice@example.test".parse().unwrap())
        .subject("Hello from lettre")
        .body("Zażółć gęślą jaźń\r\n".to_string())
        .unwrap();
    let resp = lettre_to(&server).send(&msg).expect("lettre send");
    let text = resp.message().collect::<Vec<_>>().join(" ");
    assert!(text.contains("queued as"), "{text}");
    let queue_id = text.rsplit(' ').next().unwrap().to_string();

    let msgs = pop3_fetch_all(server.pop3, "alice@example.test", "secret", false);
    assert_eq!(msgs.len(), 1);
    let m = String::from_utf8_lossy(&msgs[0]);
    assert!(
        m.starts_with("Return-Path: <carol@remote.test>\r\nReceived: from "),
        "{m}"
    );
    assert!(m.contains(&format!("id {queue_id}")), "{m}");
    assert!(m.contains("by mx.example.test"), "{m}");
    assert!(m.contains("Subject: Hello from lettre"), "{m}");
    assert!(
        server.log().contains(&format!("queue_id={queue_id}")),
        "one log line per message"
    );
}

#[test]
fn eight_bit_and_dot_leading_lines_round_trip_byte_exact() {
    let server = Server::start();
    let body: &[u8] = b"From: x@remote.test\r\nTo: alice@example.test\r\nSubject: dots\r\n\r\n\
        .leading dot\r\n..two dots\r\n.\r\n...\r\n\xc5\xbc\xc3\xb3\xc5\x82w 8-bit \xff\xfe raw\r\nend\r\n";
    // Dot-stuff exactly as a client must (RFC 5321 §4.5.2).
    let mut stuffed = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    let (mut c, _) = Raw::connect(server.smtp);
    c.cmd("EHLO client.test");
    assert!(
        c.cmd("MAIL FROM:<x@remote.test> BODY=8BITMIME")
            .starts_with("250 ")
    );
    assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("250 "));
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(&stuffed);
    c.send(b".\r\n");
    assert!(c.reply().starts_with("250 2.0.0"), "{}", c.transcript);

    let msgs = pop3_fetch_all(server.pop3, "alice", "secret", false);
    assert_eq!(strip_trace_headers(&msgs[0]), body);
}

#[test]
fn fifty_concurrent_senders_five_messages_each_none_lost_or_duplicated() {
    let server = Server::start_with("[limits]\nmax_connections_per_ip = 100\n");
    let port = server.smtp.port();
    let threads: Vec<_> = (0..50)
        .map(|t| {
            std::thread::spawn(move || {
                let mailer = SmtpTransport::builder_dangerous("127.0.0.1")
                    .port(port)
                    .timeout(Some(Duration::from_secs(30)))
                    .build();
                for i in 0..5 {
                    let msg = Message::builder()
                        .from("load@remote.test".parse::<Mailbox>().unwrap())
                        .to("bob@example.test".parse().unwrap())
                        .subject(format!("msg-{t}-{i}"))
                        .body(format!("body {t} {i}\r\n"))
                        .unwrap();
                    mailer.send(&msg).expect("send");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let msgs = pop3_fetch_all(server.pop3, "bob@example.test", "secret", false);
    let mut subjects: Vec<String> = msgs
        .iter()
        .map(|m| {
            let s = String::from_utf8_lossy(m);
            s.lines()
                .find(|l| l.starts_with("Subject: "))
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(subjects.len(), 250);
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 250, "no duplicates");
}

#[test]
fn recipients_are_routed_no_relay_unknown_users_refused_null_sender_ok() {
    let server = Server::start();
    let (mut c, g) = Raw::connect(server.smtp);
    assert!(g.starts_with("220 mx.example.test"), "{g}");
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<>").starts_with("250 2.1.0"), "{}", c.transcript);
    // RFC 5321's grammar has no trailing dot: a syntax error, not a local domain.
    assert!(
        c.cmd("RCPT TO:<alice@example.test.>").starts_with("501 "),
        "{}",
        c.transcript
    );
    for relay in [
        "RCPT TO:<someone@elsewhere.test>",
        "RCPT TO:<alice@sub.example.test>",
        "RCPT TO:<alice@[127.0.0.1]>",
        "RCPT TO:<@example.test:someone@elsewhere.test>",
    ] {
        assert!(c.cmd(relay).starts_with("550 5.7.1"), "{relay}: {}", c.transcript);
    }
    for unknown in [
        "RCPT TO:<nobody@example.test>",
        "RCPT TO:<alice%elsewhere.test@example.test>",
        "RCPT TO:<\"alice@elsewhere.test\"@example.test>",
    ] {
        assert!(
            c.cmd(unknown).starts_with("550 5.1.1"),
            "{unknown}: {}",
            c.transcript
        );
    }
    assert!(
        c.cmd("RCPT TO:<ALICE@Example.TEST>").starts_with("250 2.1.5"),
        "{}",
        c.transcript
    );
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: bounce-ish\r\n\r\nhi\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0"), "{}", c.transcript);
    assert!(c.cmd("QUIT").starts_with("221 2.0.0"));
    let msgs = pop3_fetch_all(server.pop3, "alice@example.test", "secret", false);
    assert!(msgs[0].starts_with(b"Return-Path: <>\r\n"));
}

#[test]
fn ehlo_advertises_the_extensions_and_every_reply_has_an_enhanced_code() {
    let server = Server::start();
    let (mut c, _) = Raw::connect(server.smtp);
    c.send(b"EHLO client.test\r\n");
    let mut lines = Vec::new();
    loop {
        let l = c.line();
        let last = l.as_bytes().get(3) == Some(&b' ');
        lines.push(l);
        if last {
            break;
        }
    }
    let ehlo = lines.join("\n");
    for ext in [
        "PIPELINING",
        "SIZE 26214400",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
    ] {
        assert!(ehlo.contains(ext), "{ext} missing:\n{ehlo}");
    }
    for (cmd, want) in [
        ("NOOP", "250 2.0.0"),
        ("VRFY alice", "252 2.5.0"),
        ("HELP", "214 2.0.0"),
        ("RCPT TO:<alice@example.test>", "503 5.5.1"),
        ("DATA", "503 5.5.1"),
        ("FROB", "500 5.5.2"),
        ("MAIL FROM:alice", "501 5."),
        ("RSET", "250 2.0.0"),
    ] {
        let r = c.cmd(cmd);
        assert!(r.starts_with(want), "{cmd} → {r}\n{}", c.transcript);
    }
}

#[test]
fn pipelined_transaction_and_bdat_chunks() {
    let server = Server::start();
    let (mut c, _) = Raw::connect(server.smtp);
    c.cmd("EHLO client.test");
    c.send(
        b"MAIL FROM:<p@remote.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT 20\r\nSubject: chunked\r\n\r\nBDAT 13 LAST\r\nhello world\r\n",
    );
    let replies: Vec<String> = (0..5).map(|_| c.reply()).collect();
    assert!(replies[0].starts_with("250 2.1.0"), "{replies:?}");
    assert!(
        replies[1].starts_with("250 2.1.5") && replies[2].starts_with("250 2.1.5"),
        "{replies:?}"
    );
    assert!(replies[3].starts_with("250 "), "{replies:?}");
    assert!(
        replies[4].starts_with("250 2.0.0") && replies[4].contains("queued as"),
        "{replies:?}"
    );
    for user in ["alice", "bob"] {
        let m = pop3_fetch_all(server.pop3, user, "secret", false);
        assert_eq!(
            strip_trace_headers(&m[0]),
            b"Subject: chunked\r\n\r\nhello world\r\n"
        );
    }
}

#[test]
fn smtp_smuggling_bare_lf_dot_does_not_end_data() {
    let server = Server::start();
    let (mut c, _) = Raw::connect(server.smtp);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@remote.test>");
    c.cmd("RCPT TO:<alice@example.test>");
    assert!(c.cmd("DATA").starts_with("354"));
    // Each of these would end the data for a lenient server and smuggle a
    // second message (CVE-2023-51766 class).
    let smuggle: &[u8] =
        b"Subject: first\r\n\r\nbody\n.\nMAIL FROM:<evil@remote.test>\nRCPT TO:<bob@example.test>\nDATA\n\
        smuggled\r.\rline\n.\r\nx\r\n.\nend\r\n";
    c.send(smuggle);
    c.send(b".\r\n");
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0"), "{r}\n{}", c.transcript);
    assert!(
        c.cmd("NOOP").starts_with("250"),
        "no smuggled replies pending: {}",
        c.transcript
    );
    let alice = pop3_fetch_all(server.pop3, "alice", "secret", false);
    assert_eq!(alice.len(), 1);
    // Stored as received; POP3 (RFC 1939) sends every line with CRLF, so
    // the bare LFs come back as CRLF and the bare CRs stay.
    let mut expected = Vec::new();
    for (i, &b) in smuggle.iter().enumerate() {
        if b == b'\n' && (i == 0 || smuggle[i - 1] != b'\r') {
            expected.push(b'\r');
        }
        expected.push(b);
    }
    assert_eq!(
        strip_trace_headers(&alice[0]),
        expected.as_slice(),
        "kept as content"
    );
    assert!(
        pop3_fetch_all(server.pop3, "bob", "secret", false).is_empty(),
        "nothing smuggled to bob"
    );
}

#[test]
fn overlong_lines_nul_bytes_and_errors_get_clear_replies() {
    let server = Server::start_with("[limits]\nmax_errors = 5\n");
    let (mut c, _) = Raw::connect(server.smtp);
    c.cmd("EHLO client.test");
    let long = format!("MAIL FROM:<{}@remote.test>", "a".repeat(5000));
    assert!(c.cmd(&long).starts_with("500 5.5.2"), "{}", c.transcript);
    assert!(
        c.cmd("NOOP").starts_with("250"),
        "session goes on after an overlong line"
    );
    c.send(b"NO\0OP\r\n");
    assert!(c.reply().starts_with("500 5.5.2"), "{}", c.transcript);
    c.cmd("MAIL FROM:<a@remote.test>");
    c.cmd("RCPT TO:<alice@example.test>");
    c.cmd("DATA");
    c.send(b"Subject: nul\r\n\r\nbad\0byte\r\n.\r\n");
    assert!(c.reply().starts_with("554 5.6.0"), "{}", c.transcript);
    // Errors so far: overlong, NUL command, NUL data = 3; two more reach 5.
    c.cmd("FROB");
    let last = c.cmd("FROB");
    assert!(last.starts_with("500"), "{}", c.transcript);
    assert!(c.reply().starts_with("421 4.7.0"), "{}", c.transcript);
    assert!(c.closed());
    assert!(pop3_fetch_all(server.pop3, "alice", "secret", false).is_empty());
    // The server is untouched: another client is served.
    let r = send_raw_message(
        server.smtp,
        "a@remote.test",
        &["alice@example.test"],
        b"Subject: ok\r\n\r\nok\r\n",
    );
    assert!(r.starts_with("250 2.0.0"), "{r}");
}

#[test]
fn size_limits_at_mail_and_at_end_of_data() {
    let server = Server::start_with("[limits]\nmax_message_size = 4096\nmax_recipients = 2\n");
    let (mut c, _) = Raw::connect(server.smtp);
    let ehlo = {
        c.send(b"EHLO client.test\r\n");
        let mut all = String::new();
        loop {
            let l = c.line();
            all.push_str(&l);
            all.push('\n');
            if l.as_bytes().get(3) == Some(&b' ') {
                break all;
            }
        }
    };
    assert!(ehlo.contains("SIZE 4096"), "{ehlo}");
    assert!(
        c.cmd("MAIL FROM:<a@remote.test> SIZE=5000")
            .starts_with("552 5.3.4")
    );
    assert!(c.cmd("MAIL FROM:<a@remote.test> SIZE=100").starts_with("250"));
    c.cmd("RCPT TO:<alice@example.test>");
    c.cmd("RCPT TO:<bob@example.test>");
    assert!(
        c.cmd("RCPT TO:<alice@example.test>").starts_with("452 4.5.3"),
        "{}",
        c.transcript
    );
    c.cmd("DATA");
    let big = format!(
        "Subject: big\r\n\r\n{}",
        format!("{}\r\n", "x".repeat(70)).repeat(100)
    );
    c.send(big.as_bytes());
    c.send(b".\r\n");
    assert!(c.reply().starts_with("552 5.3.4"), "{}", c.transcript);
    assert!(c.cmd("NOOP").starts_with("250"));
    assert!(pop3_fetch_all(server.pop3, "alice", "secret", false).is_empty());
}

#[test]
fn per_ip_connection_limit_answers_421_and_others_are_still_served() {
    let server = Server::start_with("[limits]\nmax_connections_per_ip = 3\n");
    // The harness's readiness probes may still hold a slot for a moment:
    // take the three slots as they come free (bounded).
    let mut held = Vec::new();
    for _ in 0..200 {
        if held.len() == 3 {
            break;
        }
        let (c, g) = Raw::connect(server.smtp);
        if g.starts_with("220") {
            held.push(c);
        } else {
            assert!(g.starts_with("421 4.7.0"), "{g}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(held.len(), 3, "three connections admitted");
    let (mut extra, g) = Raw::connect(server.smtp);
    assert!(g.starts_with("421 4.7.0"), "{g}");
    assert!(extra.closed());
    drop(held);
    // The slots come back once those sessions end (bounded retry).
    let mut ok = false;
    for _ in 0..100 {
        let (_c, g) = Raw::connect(server.smtp);
        if g.starts_with("220") {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ok, "slots freed after the held connections closed");
}

#[test]
fn idle_clients_are_timed_out_with_421() {
    let server = Server::start_with("[limits]\ncommand_timeout = 1\n");
    let (mut c, _) = Raw::connect(server.smtp);
    assert!(c.reply().starts_with("421 4.4.2"), "{}", c.transcript);
    assert!(c.closed());
}

#[test]
fn swaks_sends_through_the_mx_listener() {
    let server = Server::start();
    let out = std::process::Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &server.smtp.port().to_string()])
        .args([
            "--from",
            "swaks@remote.test",
            "--to",
            "bob@example.test",
            "--helo",
            "swaks.test",
        ])
        .args([
            "--header",
            "Subject: via swaks",
            "--body",
            "hello from swaks",
            "--timeout",
            "20",
        ])
        .output()
        .expect("swaks is installed by scripts/test");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("250 2.0.0"), "{log}");
    let m = pop3_fetch_all(server.pop3, "bob", "secret", false);
    assert!(String::from_utf8_lossy(&m[0]).contains("Subject: via swaks"));
}
