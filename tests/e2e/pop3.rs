//! POP3: standard clients, deletion rules, locking, login failures.

use crate::harness::{Raw, Server, pop3_fetch_all, python, send_raw_message, strip_trace_headers};

fn deliver(server: &Server, to: &str, subject: &str) {
    let r = send_raw_message(
        server.smtp,
        "s@remote.test",
        &[to],
        format!("Subject: {subject}\r\n\r\nbody of {subject}\r\n").as_bytes(),
    );
    assert!(r.starts_with("250 "), "{r}");
}

fn login(server: &Server, user: &str) -> Raw {
    let (mut c, g) = Raw::connect(server.pop3);
    assert!(g.starts_with("+OK"), "{g}");
    assert!(c.cmd(&format!("USER {user}")).starts_with("+OK"));
    let r = c.cmd("PASS secret");
    assert!(r.starts_with("+OK"), "{r}");
    c
}

#[test]
fn curl_lists_and_retrieves() {
    let server = Server::start();
    deliver(&server, "alice@example.test", "one");
    deliver(&server, "alice@example.test", "two");
    let url = format!("pop3://127.0.0.1:{}/", server.pop3.port());
    let list = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-u", "alice@example.test:secret", &url])
        .output()
        .unwrap();
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let text = String::from_utf8_lossy(&list.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    let two = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-u",
            "alice@example.test:secret",
            &format!("{url}2"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&two.stdout);
    assert!(
        text.contains("Subject: two") && text.contains("body of two"),
        "{text}"
    );
}

#[test]
fn capa_stat_list_uidl_top_and_byte_stuffing() {
    let server = Server::start();
    let r = send_raw_message(
        server.smtp,
        "s@remote.test",
        &["alice@example.test"],
        b"Subject: s\r\n\r\n..dot line\r\nsecond\r\nthird\r\n",
    );
    assert!(r.starts_with("250"));
    let (mut c, _) = Raw::connect(server.pop3);
    assert!(c.cmd("CAPA").starts_with("+OK"));
    let capa = String::from_utf8_lossy(&c.pop3_multiline()).to_string();
    for cap in [
        "USER",
        "TOP",
        "UIDL",
        "SASL PLAIN",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "IMPLEMENTATION",
    ] {
        assert!(capa.contains(cap), "{cap}: {capa}");
    }
    c.cmd("USER alice@example.test");
    c.cmd("PASS secret");
    let stat = c.cmd("STAT");
    assert!(stat.starts_with("+OK 1 "), "{stat}");
    assert!(c.cmd("LIST").starts_with("+OK"));
    let list = String::from_utf8_lossy(&c.pop3_multiline()).to_string();
    let size: usize = list.trim().split(' ').nth(1).unwrap().parse().unwrap();
    assert!(c.cmd("UIDL").starts_with("+OK"));
    let uidl1 = String::from_utf8_lossy(&c.pop3_multiline()).to_string();
    assert!(c.cmd("RETR 1").starts_with("+OK"));
    let body = c.pop3_multiline();
    assert_eq!(
        body.len(),
        size + 1,
        "the wire form has one stuffed dot more than LIST's size"
    );
    assert!(
        String::from_utf8_lossy(&body).contains("\r\n..dot line\r\n"),
        "stuffed on the wire"
    );
    assert!(c.cmd("TOP 1 1").starts_with("+OK"));
    let top = String::from_utf8_lossy(&c.pop3_multiline()).to_string();
    assert!(top.ends_with("\r\n\r\n..dot line\r\n"), "{top:?}");
    c.cmd("QUIT");
    // UIDs are stable across sessions.
    let mut c = login(&server, "alice");
    c.cmd("UIDL");
    assert_eq!(String::from_utf8_lossy(&c.pop3_multiline()), uidl1);
    c.cmd("QUIT");
    let msgs = pop3_fetch_all(server.pop3, "alice", "secret", false);
    // The client sent "..dot line" (stuffed): stored unstuffed, as the sender meant it.
    assert_eq!(
        strip_trace_headers(&msgs[0]),
        b"Subject: s\r\n\r\n.dot line\r\nsecond\r\nthird\r\n"
    );
}

#[test]
fn deletions_apply_only_at_quit_and_rset_undoes_them() {
    let server = Server::start();
    for s in ["a", "b", "c"] {
        deliver(&server, "bob@example.test", s);
    }
    // DELE then drop the connection: nothing is deleted.
    let mut c = login(&server, "bob");
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    assert!(c.cmd("DELE 1").starts_with("-ERR"), "already deleted");
    assert!(
        c.cmd("RETR 1").starts_with("-ERR"),
        "deleted messages are invisible"
    );
    drop(c);
    // DELE, RSET, QUIT: nothing is deleted.
    let mut c = login(&server, "bob");
    assert!(c.cmd("STAT").starts_with("+OK 3 "), "{}", c.transcript);
    c.cmd("DELE 2");
    assert!(c.cmd("STAT").starts_with("+OK 2 "));
    assert!(c.cmd("RSET").starts_with("+OK"));
    assert!(c.cmd("STAT").starts_with("+OK 3 "));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    // DELE 2, QUIT: exactly that one goes.
    let mut c = login(&server, "bob");
    c.cmd("DELE 2");
    let bye = c.cmd("QUIT");
    assert!(bye.starts_with("+OK"), "{bye}");
    let left = pop3_fetch_all(server.pop3, "bob", "secret", false);
    let subjects: Vec<String> = left
        .iter()
        .map(|m| {
            String::from_utf8_lossy(m)
                .lines()
                .find(|l| l.starts_with("Subject"))
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(subjects, vec!["Subject: a", "Subject: c"]);
    // poplib: delete everything.
    pop3_fetch_all(server.pop3, "bob", "secret", true);
    assert!(pop3_fetch_all(server.pop3, "bob", "secret", false).is_empty());
}

#[test]
fn a_maildrop_has_one_holder_at_a_time() {
    let server = Server::start();
    let mut first = login(&server, "alice@example.test");
    let (mut second, _) = Raw::connect(server.pop3);
    second.cmd("USER alice@example.test");
    let r = second.cmd("PASS secret");
    assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
    first.cmd("QUIT");
    assert!(first.closed());
    let mut third = login(&server, "alice@example.test");
    assert!(third.cmd("STAT").starts_with("+OK"));
    // A vanished client frees the lock too.
    drop(third);
    let mut fourth = None;
    for _ in 0..100 {
        let (mut c, _) = Raw::connect(server.pop3);
        c.cmd("USER alice@example.test");
        if c.cmd("PASS secret").starts_with("+OK") {
            fourth = Some(c);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(fourth.is_some(), "lock released after the client vanished");
}

#[test]
fn failed_logins_do_not_reveal_users_and_are_slowed() {
    let server = Server::start_with("[limits]\nlogin_failure_delay = \"50ms\"\n");
    let (mut c, _) = Raw::connect(server.pop3);
    assert!(
        c.cmd("USER nobody@example.test").starts_with("+OK"),
        "USER never reveals"
    );
    let unknown = c.cmd("PASS secret");
    c.cmd("USER alice@example.test");
    let wrong = c.cmd("PASS wrong");
    assert!(unknown.starts_with("-ERR [AUTH]"), "{unknown}");
    assert_eq!(unknown, wrong, "same answer for unknown user and wrong password");
    let log = server.log();
    assert!(log.matches("pop3 login failed").count() >= 2, "{log}");
    assert!(
        log.contains("delay_ms=100"),
        "the second failure waits longer: {log}"
    );
    // AUTH PLAIN works (RFC 5034), with the initial response.
    let (mut c, _) = Raw::connect(server.pop3);
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(b"\0alice@example.test\0secret");
    let r = c.cmd(&format!("AUTH PLAIN {token}"));
    assert!(r.starts_with("+OK"), "{r}");
}

#[test]
fn poplib_apop_less_client_and_top_via_python() {
    let server = Server::start();
    deliver(&server, "alice@example.test", "py");
    let out = python(
        r#"
import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=20)
caps = p.capa()
assert "UIDL" in caps and "TOP" in caps, caps
p.user("alice@example.test"); p.pass_("secret")
resp, lines, _ = p.top(1, 0)
assert any(l == b"Subject: py" for l in lines), lines
assert lines[-1] == b"", lines
print(p.uidl(1).decode())
p.quit()
"#,
        &[server.pop3.port().to_string()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("+OK 1 "));
}
