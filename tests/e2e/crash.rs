//! Crash safety: what got 250 survives kill -9; what did not leaves no trace.

use crate::harness::{Raw, Server, pop3_fetch_all, send_raw_message};

#[test]
fn kill_9_right_after_250_keeps_the_message() {
    let mut server = Server::start();
    for i in 0..5 {
        let r = send_raw_message(
            server.smtp,
            "k@remote.test",
            &["alice@example.test", "bob@example.test"],
            format!("Subject: durable {i}\r\n\r\nkeep me\r\n").as_bytes(),
        );
        assert!(r.starts_with("250 2.0.0"), "{r}");
    }
    server.kill9();
    server.restart();
    for user in ["alice", "bob"] {
        let msgs = pop3_fetch_all(server.pop3, user, "secret", false);
        assert_eq!(msgs.len(), 5, "{user} lost messages acknowledged before kill -9");
    }
}

#[test]
fn kill_9_with_the_250_in_flight_in_a_pipelined_session() {
    // The client sends a whole transaction and the server is killed as soon
    // as the 250 arrives: the message must be there after the restart.
    let mut server = Server::start();
    let (mut c, _) = Raw::connect(server.smtp);
    c.cmd("EHLO c.test");
    c.send(b"MAIL FROM:<k@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n");
    for _ in 0..3 {
        c.reply();
    }
    c.send(b"Subject: last words\r\n\r\nx\r\n.\r\n");
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0"), "{r}");
    server.kill9();
    server.restart();
    let msgs = pop3_fetch_all(server.pop3, "alice", "secret", false);
    assert_eq!(msgs.len(), 1);
    assert!(String::from_utf8_lossy(&msgs[0]).contains("Subject: last words"));
}

#[test]
fn a_client_vanishing_mid_data_leaves_no_trace() {
    let mut server = Server::start();
    let (mut c, _) = Raw::connect(server.smtp);
    c.cmd("EHLO c.test");
    c.cmd("MAIL FROM:<v@remote.test>");
    c.cmd("RCPT TO:<alice@example.test>");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: half\r\n\r\nthis message never ends\r\n");
    drop(c);
    // A BDAT transaction cut off before LAST, too.
    let (mut c, _) = Raw::connect(server.smtp);
    c.cmd("EHLO c.test");
    c.cmd("MAIL FROM:<v@remote.test>");
    c.cmd("RCPT TO:<alice@example.test>");
    c.send(b"BDAT 10\r\n0123456789");
    assert!(c.reply().starts_with("250"));
    drop(c);
    // Let the server notice, then make sure it is all gone, also after a restart.
    let r = send_raw_message(
        server.smtp,
        "v@remote.test",
        &["bob@example.test"],
        b"Subject: sync\r\n\r\nx\r\n",
    );
    assert!(r.starts_with("250"));
    assert!(pop3_fetch_all(server.pop3, "alice", "secret", false).is_empty());
    server.restart();
    assert!(pop3_fetch_all(server.pop3, "alice", "secret", false).is_empty());
    assert!(
        server
            .all_logs()
            .contains("client vanished in the middle of a message")
    );
}

#[test]
fn crash_harness_two_rounds_lose_nothing() {
    // The bounded CI form of `scripts/crash` (RELIABILITY.md): two rounds of
    // concurrent SMTP and POP3 deletions, kill -9 at a random instant,
    // restart, and a ledger check. It exits non-zero on any loss,
    // duplicate, phantom, corrupt or resurrected message or UID change.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/crash");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["--rounds", "2", "--senders", "3", "--max-kill-after", "2"])
        .args(["--binary", crate::harness::POCZTA])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("lost=0 duplicated=0"), "{text}");
}
