//! The command line: help, exit codes, config errors, user management,
//! graceful shutdown.

use std::process::Command;

use crate::harness::{POCZTA, Server, pop3_fetch_all, run_with_stdin, send_raw_message};

#[test]
fn help_explains_the_commands() {
    let out = Command::new(POCZTA).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "user", "--config", "Quick start"] {
        assert!(help.contains(word), "{word}: {help}");
    }
    let out = Command::new(POCZTA)
        .args(["user", "add", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--password-stdin"));
    let out = Command::new(POCZTA).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "bad usage exits 2");
}

#[test]
fn bad_config_exits_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    for (text, needle) in [
        (
            "[server]\nhostname = \"h\"\ndata_dir = \"d\"\ndomains = [\"x.test\"]\n[smtp]\nlisten = [\"127.0.0.1:1\"]\nlisen = 1\n",
            "lisen",
        ),
        (
            "[server]\nhostname = \"h\"\ndata_dir = \"d\"\ndomains = [\"x.test\"]\n[limits]\nmax_message_size = \"big\"\n",
            "limits.max_message_size",
        ),
        ("[server]\nhostname = \"h\"\n", "missing field"),
    ] {
        std::fs::write(&path, text).unwrap();
        let out = Command::new(POCZTA)
            .arg("--config")
            .arg(&path)
            .arg("serve")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("bad.toml") && err.contains(needle),
            "{needle}: {err}"
        );
    }
    let out = Command::new(POCZTA)
        .args(["--config", "/nonexistent/poczta.toml", "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn users_are_managed_while_the_server_runs() {
    let server = Server::start();
    let out = server.cli(&["user", "list"], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "alice@example.test\nbob@example.test\n"
    );
    server.add_user("Carol@Other.Test", "pw");
    let r = send_raw_message(
        server.smtp,
        "x@remote.test",
        &["carol@other.test"],
        b"Subject: hi carol\r\n\r\nx\r\n",
    );
    assert!(
        r.starts_with("250"),
        "a user added while running receives mail: {r}"
    );
    assert_eq!(
        pop3_fetch_all(server.pop3, "carol@other.test", "pw", false).len(),
        1
    );

    let out = server.cli(
        &["user", "passwd", "carol@other.test", "--password-stdin"],
        "newpw\n",
    );
    assert!(out.status.success());
    assert_eq!(
        pop3_fetch_all(server.pop3, "carol@other.test", "newpw", false).len(),
        1
    );

    let out = server.cli(
        &["user", "add", "dave@elsewhere.test", "--password-stdin"],
        "pw\n",
    );
    assert_eq!(out.status.code(), Some(2), "not a local domain");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a local domain"));
    let out = server.cli(&["user", "add", "alice@example.test", "--password-stdin"], "pw\n");
    assert_eq!(out.status.code(), Some(1), "exists");
    let out = server.cli(&["user", "add", "eve@example.test", "--password-stdin"], "\n");
    assert_eq!(out.status.code(), Some(2), "empty password");

    let out = server.cli(&["user", "del", "carol@other.test"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = send_raw_message_expect(server.smtp, "carol@other.test");
    assert!(r.starts_with("550 5.1.1"), "{r}");
}

fn send_raw_message_expect(addr: std::net::SocketAddr, rcpt: &str) -> String {
    let (mut c, _) = crate::harness::Raw::connect(addr);
    c.cmd("EHLO c.test");
    c.cmd("MAIL FROM:<x@remote.test>");
    c.cmd(&format!("RCPT TO:<{rcpt}>"))
}

#[test]
fn sigterm_finishes_the_session_in_flight_and_exits_0() {
    let mut server = Server::start();
    let (mut c, _) = crate::harness::Raw::connect(server.smtp);
    c.cmd("EHLO c.test");
    c.cmd("MAIL FROM:<t@remote.test>");
    c.cmd("RCPT TO:<alice@example.test>");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: in flight\r\n\r\nstarted before SIGTERM\r\n");
    let pid = server.pid();
    let killer = std::thread::spawn(move || {
        Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap()
    });
    assert!(killer.join().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    c.send(b".\r\n");
    assert!(
        c.reply().starts_with("250 2.0.0"),
        "the message in flight is finished: {}",
        c.transcript
    );
    assert!(
        c.reply().starts_with("421 4.3.2"),
        "then the session is told: {}",
        c.transcript
    );
    let status = server.terminate_wait();
    assert_eq!(status.code(), Some(0));
    server.restart();
    assert_eq!(pop3_fetch_all(server.pop3, "alice", "secret", false).len(), 1);
}

#[test]
fn user_add_reads_the_password_from_stdin_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nhostname = \"h\"\ndata_dir = \"{}\"\ndomains = [\"x.test\"]\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = run_with_stdin(
        Command::new(POCZTA)
            .arg("--config")
            .arg(&cfg)
            .args(["user", "add", "u@x.test", "--password-stdin"]),
        "pw\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(POCZTA)
        .arg("--config")
        .arg(&cfg)
        .args(["user", "list"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "u@x.test\n");
}

#[test]
fn sigterm_tells_idle_sessions_and_exits_0() {
    let mut server = Server::start();
    let (mut smtp, _) = crate::harness::Raw::connect(server.smtp);
    smtp.cmd("EHLO c.test");
    let (mut pop, _) = crate::harness::Raw::connect(server.pop3);
    pop.cmd("USER alice@example.test");
    assert!(pop.cmd("PASS secret").starts_with("+OK"));
    pop.cmd("DELE 1");
    let status = server.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(smtp.line().starts_with("421 4.3.2"), "{}", smtp.transcript);
    assert!(pop.line().starts_with("-ERR [SYS/TEMP]"), "{}", pop.transcript);
    assert!(server.log().contains("stopped"), "{}", server.log());
}

/// The README's run command: `poczta serve` on the embedded default (fixed
/// ports 2525/2587/2110), and the quick-start example config; both from a
/// scratch directory, so data lands there.
#[test]
fn embedded_default_and_quick_start_config_serve() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
    // The example as shipped, but sharing the tests' compile cache (Python
    // and JavaScript take tens of seconds to compile) and found from here.
    let example = std::fs::read_to_string(repo.join("examples/poczta.toml"))
        .unwrap()
        .replace(
            "data_dir = \"./poczta-data\"",
            &format!(
                "data_dir = \"./poczta-data\"\nplugin_cache_dir = \"{}\"",
                cache.display()
            ),
        )
        // Plugins and their assets.
        .replace("\"../plugins/", &format!("\"{}/", repo.join("plugins").display()));
    crate::harness::warm_components(&example);
    for config in [None, Some(example)] {
        let dir = tempfile::tempdir().unwrap();
        let config = config.map(|text| {
            let path = dir.path().join("poczta.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        let mut cmd = Command::new(POCZTA);
        cmd.current_dir(dir.path()).arg("serve");
        if let Some(c) = &config {
            cmd.arg("--config").arg(c);
        }
        let log = dir.path().join("log");
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let addr: std::net::SocketAddr = "127.0.0.1:2525".parse().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let mut up = false;
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect(addr).is_ok() {
                up = true;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let (mut c, g) = crate::harness::Raw::connect(addr);
        assert!(up && g.starts_with("220 localhost"), "{config:?}: {g}\n{text}");
        c.cmd("EHLO c.test");
        c.cmd("MAIL FROM:<a@b.test>");
        assert!(c.cmd("RCPT TO:<nobody@localhost>").starts_with("550 5.1.1"));
        assert!(c.cmd("RCPT TO:<x@elsewhere.test>").starts_with("550 5.7.1"));
        let _ = child.kill();
        child.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if config.is_some() {
            for p in ["subject-reject", "py-subject-tag", "js-header-tag"] {
                assert!(
                    text.contains(&format!("plugin={p}")) && text.contains("plugin loaded"),
                    "{p}: {text}"
                );
            }
        }
        assert!(
            dir.path().join("poczta-data/poczta.redb").exists(),
            "data in ./poczta-data"
        );
    }
}
