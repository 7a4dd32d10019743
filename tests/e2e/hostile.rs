//! Hostile plugins against the real server: deep recursion, a DNS call that
//! never returns, huge return values, floods of host calls, replies outside
//! their class, and a hot reload to a component that cannot be
//! instantiated. For each: the server stays up, other sessions are served
//! while the plugin misbehaves, the transaction gets the plugin's
//! `on_error` (451 4.7.1 by default) or the host's bound, and the log names
//! the plugin and the cause. (The infinite loop, the panic and the memory
//! bomb are in `plugins.rs`; the in-process limits in
//! `host/src/plugin/tests.rs`.)

use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use crate::harness::{Raw, Server, WAIT, plugin, plugin_entry, pop3_fetch_all, try_send};

fn chaos(mode: &str, extra: &str) -> String {
    plugin_entry(
        "chaos",
        "hostile-chaos",
        &format!("config = {{ mode = \"{mode}\" }}\n{extra}"),
    )
}

fn header_of(msg: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(msg);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_string())
        .collect()
}

/// A fresh SMTP session and a POP3 session are answered normally.
fn others_are_served(s: &Server) {
    let (mut c, g) = Raw::connect(s.smtp);
    assert!(g.starts_with("220"), "{g}");
    assert!(c.cmd("EHLO other.test").starts_with("250"), "{}", c.transcript);
    c.cmd("QUIT");
    pop3_fetch_all(s.pop3, "bob", "secret", false);
}

/// Sends a hostile transaction in a thread and, while it runs, checks that
/// other sessions are served; returns the hostile transaction's reply.
fn send_while_serving_others(s: &Server) -> String {
    let addr = s.smtp;
    let hostile = std::thread::spawn(move || try_send(addr, "alice@example.test", "hostile"));
    std::thread::sleep(Duration::from_millis(100));
    others_are_served(s);
    hostile.join().unwrap()
}

/// Waits (bounded) until the log holds every needle.
fn log_shows(s: &Server, needles: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = s.log();
        if needles.iter().all(|n| log.contains(n)) {
            return;
        }
        assert!(Instant::now() < deadline, "log lacks {needles:?}:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn deep_recursion_traps_and_gets_on_error() {
    let strict = Server::start_with(&chaos("recursion", "timeout = \"5s\""));
    let r = send_while_serving_others(&strict);
    assert!(r.starts_with("451 4.7.1"), "{r}");
    log_shows(
        &strict,
        &[
            "plugin failed",
            "plugin=chaos",
            "hook=\"headers\"",
            "cause=\"trap",
        ],
    );
    // Rust's wasm32 shadow stack lives in linear memory below the data:
    // overflowing it runs off the bottom of memory, which wasmtime reports
    // as an out-of-bounds access (a native-stack overflow says "stack").
    let log = strict.log();
    assert!(
        log.contains("out of bounds memory access") || log.to_lowercase().contains("stack"),
        "the cause is the overflow:\n{log}"
    );
    assert!(pop3_fetch_all(strict.pop3, "alice", "secret", false).is_empty());

    let lenient = Server::start_with(&chaos("recursion", "timeout = \"5s\"\non_error = \"continue\""));
    assert!(try_send(lenient.smtp, "alice@example.test", "x").starts_with("250 2.0.0"));
}

/// A UDP and a TCP socket on one loopback port that never answer: a DNS
/// server that has gone silent.
fn silent_nameserver() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
            return (udp, tcp);
        }
    }
    panic!("no free port for a silent nameserver");
}

#[test]
fn a_plugin_blocked_in_dns_hits_its_deadline_and_others_are_served() {
    let (udp, _tcp) = silent_nameserver();
    let ns = udp.local_addr().unwrap();
    let dns = format!("[dns]\nnameservers = [\"{ns}\"]\ntimeout = \"30s\"\n");
    let strict = Server::start_with(&format!(
        "{dns}{}",
        chaos("dns-block", "timeout = \"2s\"\ngrants = [\"dns\"]")
    ));
    let r = send_while_serving_others(&strict);
    assert!(r.starts_with("451 4.7.1"), "{r}");
    log_shows(&strict, &["plugin failed", "plugin=chaos", "deadline exceeded"]);
    // The queries really went out and were never answered.
    udp.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buf = [0u8; 512];
    assert!(
        udp.recv_from(&mut buf).is_ok(),
        "the plugin's query reached the silent server"
    );

    let lenient = Server::start_with(&format!(
        "{dns}{}",
        chaos(
            "dns-block",
            "timeout = \"1s\"\ngrants = [\"dns\"]\non_error = \"continue\""
        )
    ));
    assert!(try_send(lenient.smtp, "alice@example.test", "x").starts_with("250 2.0.0"));
}

#[test]
fn huge_return_values_are_bounded() {
    // 100 MB header value: the plugin needs a bigger cap to even build it.
    let s = Server::start_with(&format!(
        "{}{}",
        chaos("huge-header", "timeout = \"10s\"\nmemory = \"256MiB\""),
        plugin_entry(
            "rejecter",
            "hostile-chaos",
            "config = { mode = \"huge-reject\", size = 10000000 }\ntimeout = \"10s\"\nmemory = \"128MiB\""
        ),
    ));
    let r = try_send(s.smtp, "alice@example.test", "huge");
    // The huge header is refused (logged); the 10 MB reject text is cut.
    assert!(r.starts_with("550 5.7.1") || r.starts_with("554 5.7.1"), "{r}");
    assert!(r.len() < 1024, "reply text bounded: {} bytes", r.len());
    log_shows(&s, &["add-header ignored", "plugin=chaos"]);
    assert!(pop3_fetch_all(s.pop3, "alice", "secret", false).is_empty());
    others_are_served(&s);

    // Alone, the 100 MB header is dropped and the message is accepted.
    let s = Server::start_with(&chaos("huge-header", "timeout = \"10s\"\nmemory = \"256MiB\""));
    assert!(try_send(s.smtp, "alice@example.test", "huge").starts_with("250 2.0.0"));
    let m = pop3_fetch_all(s.pop3, "alice", "secret", false);
    assert!(header_of(&m[0], "X-Huge").is_empty());
    assert!(m[0].len() < 10_000, "{} bytes stored", m[0].len());
}

#[test]
fn floods_of_host_calls_hit_the_caps() {
    // 100,000 add-header calls: at most the per-plugin cap is kept.
    let s = Server::start_with(&chaos("many-headers", "timeout = \"20s\""));
    assert!(try_send(s.smtp, "alice@example.test", "many").starts_with("250 2.0.0"));
    let m = pop3_fetch_all(s.pop3, "alice", "secret", false);
    let text = String::from_utf8_lossy(&m[0]);
    let kept = text.lines().filter(|l| l.starts_with("X-Many-")).count();
    assert_eq!(kept, 32, "per-plugin header cap");
    log_shows(
        &s,
        &[
            "more than 32 headers",
            "further warnings about this plugin's requests suppressed",
        ],
    );

    // 5,000 DNS look-ups against a closed port and 5,000 kv writes in one
    // hook: the first ones run, the rest are quota errors, mail flows.
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let s = Server::start_with(&format!(
        "[dns]\nnameservers = [\"{closed}\"]\ntimeout = \"200ms\"\n{}{}",
        chaos("dns-flood", "timeout = \"20s\"\ngrants = [\"dns\"]"),
        plugin_entry(
            "kvflood",
            "hostile-chaos",
            "config = { mode = \"kv-flood\" }\ntimeout = \"20s\"\ngrants = [\"kv\"]"
        ),
    ));
    assert!(try_send(s.smtp, "alice@example.test", "flood").starts_with("250 2.0.0"));
    let m = pop3_fetch_all(s.pop3, "alice", "secret", false);
    let errors = header_of(&m[0], "X-Chaos-Errors");
    assert_eq!(errors.len(), 2, "{errors:?}");
    let mut errors: Vec<u32> = errors.iter().map(|e| e.parse().unwrap()).collect();
    errors.sort();
    // kv: 100 writes per call allowed; dns: every look-up fails (closed
    // port, then quota).
    assert_eq!(errors, vec![4_900, 5_000]);
    others_are_served(&s);
}

#[test]
fn replies_outside_their_class_never_accept() {
    for (hook, verdict, bad) in [
        ("headers", "reject", "[250, \"2.0.0\", \"fake ok\"]"),
        ("headers", "tempfail", "[250, \"2.0.0\", \"fake ok\"]"),
        ("body", "reject", "[354, \"\", \"go on\"]"),
        ("mail-from", "reject", "[221, \"2.0.0\", \"bye\"]"),
        ("rcpt", "reject", "[250, \"2.1.5\", \"fake ok\"]"),
    ] {
        let s = Server::start_with(&plugin_entry(
            "v",
            "verdicts",
            &format!("config = {{ \"{hook}\" = {{ {verdict} = {bad} }} }}"),
        ));
        let r = try_send(s.smtp, "alice@example.test", "class");
        let want = if verdict == "reject" { '5' } else { '4' };
        assert!(r.starts_with(want), "{hook} {verdict} {bad}: {r}");
        assert!(
            pop3_fetch_all(s.pop3, "alice", "secret", false).is_empty(),
            "{hook}: stored"
        );
    }
}

#[test]
fn reload_to_a_component_that_cannot_instantiate_keeps_the_old_set() {
    // The component alone is refused with a cause.
    let check = std::process::Command::new(crate::harness::POCZTA)
        .args(["plugin", "check"])
        .arg(plugin("hostile-instantiate"))
        .output()
        .unwrap();
    assert!(
        !check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.wasm");
    std::fs::copy(plugin("tag-score"), &live).unwrap();
    let s = Server::start_with(&format!(
        "[[plugins]]\nname = \"live\"\npath = \"{}\"\ntimeout = \"10s\"\n",
        live.display()
    ));
    assert!(try_send(s.smtp, "alice@example.test", "before").starts_with("250"));
    let tmp = dir.path().join("live.wasm.new");
    std::fs::copy(plugin("hostile-instantiate"), &tmp).unwrap();
    std::fs::rename(&tmp, &live).unwrap();
    log_shows(&s, &["reload refused", "live"]);
    assert!(try_send(s.smtp, "alice@example.test", "after").starts_with("250"));
    let m = pop3_fetch_all(s.pop3, "alice", "secret", false);
    assert_eq!(m.len(), 2);
    assert_eq!(
        header_of(&m[1], "X-Poczta-Tagged"),
        vec!["yes".to_string()],
        "the old set still serves"
    );
}
