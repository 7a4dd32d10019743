//! Starts the real `poczta` binary on free loopback ports with a temporary
//! data directory, waits until it listens, and ends it by PID. Also small
//! independent clients: a raw line-based SMTP/POP3 client for byte-level
//! probes, and wrappers around Python's smtplib/poplib and curl.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test (cargo builds it for this test target).
pub const POCZTA: &str = env!("CARGO_BIN_EXE_poczta");

/// How long anything in a test may wait for the server.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running server.
pub struct Server {
    child: Option<Child>,
    /// Holds the data dir, the config and the log.
    pub dir: tempfile::TempDir,
    /// MX listener.
    pub smtp: SocketAddr,
    /// Submission listener.
    pub submission: SocketAddr,
    /// POP3 listener.
    pub pop3: SocketAddr,
    /// Submission with implicit TLS.
    pub submissions: SocketAddr,
    /// POP3 with implicit TLS.
    pub pop3s: SocketAddr,
    /// The config file.
    pub config: PathBuf,
    starts: u32,
    /// TOML appended to the generated config.
    extra: String,
    /// `server.hostname` and `server.domains` of the generated config.
    identity: (String, Vec<String>),
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().unwrap()
}

impl Server {
    /// Domain `example.test`, users alice and bob (password "secret"), any
    /// extra TOML appended (e.g. a `[limits]` table).
    pub fn start_with(extra: &str) -> Server {
        Self::start_as(
            "mx.example.test",
            &["example.test", "other.test"],
            &["alice@example.test", "bob@example.test"],
            extra,
        )
    }

    /// A server with its own host name, local domains and users (password
    /// "secret"), e.g. a second server acting as a remote MX.
    pub fn start_as(hostname: &str, domains: &[&str], users: &[&str], extra: &str) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("poczta.toml");
        let unset: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut s = Server {
            child: None,
            dir,
            smtp: unset,
            submission: unset,
            pop3: unset,
            submissions: unset,
            pop3s: unset,
            config,
            starts: 0,
            extra: extra.to_owned(),
            identity: (
                hostname.to_owned(),
                domains.iter().map(|d| d.to_string()).collect(),
            ),
        };
        s.pick_ports();
        for user in users {
            s.add_user(user, "secret");
        }
        // An ephemeral port picked here can be taken by another test before
        // the server binds it: pick again (bounded) when that happens.
        for attempt in 1..=5 {
            match s.try_spawn() {
                Ok(()) => return s,
                Err(log) if attempt < 5 && log.contains("cannot listen") => s.pick_ports(),
                Err(log) => panic!("poczta did not start:\n{log}"),
            }
        }
        unreachable!()
    }

    /// Chooses free ports and writes the config for them.
    fn pick_ports(&mut self) {
        let (smtp, submission, pop3) = (free_port(), free_port(), free_port());
        let (submissions, pop3s) = (free_port(), free_port());
        (
            self.smtp,
            self.submission,
            self.pop3,
            self.submissions,
            self.pop3s,
        ) = (smtp, submission, pop3, submissions, pop3s);
        let data = self.dir.path().join("data");
        // `submission.KEY = VALUE` lines of `extra` belong in the
        // [submission] table written here (TOML forbids a second one).
        let (submission_keys, rest): (Vec<&str>, Vec<&str>) =
            self.extra.lines().partition(|l| l.starts_with("submission."));
        let submission_keys: String = submission_keys
            .iter()
            .map(|l| format!("{}\n", &l["submission.".len()..]))
            .collect();
        let rest = rest.join("\n");
        std::fs::write(
            &self.config,
            format!(
                "[server]\nhostname = \"{}\"\ndata_dir = \"{}\"\ndomains = {:?}\nshutdown_timeout = \"5s\"\n\
                 plugin_cache_dir = \"{}\"\n\n\
                 [smtp]\nlisten = [\"{smtp}\"]\n[submission]\nlisten = [\"{submission}\"]\n{}[pop3]\nlisten = [\"{pop3}\"]\n\
                 [submissions]\nlisten = [\"{submissions}\"]\n[pop3s]\nlisten = [\"{pop3s}\"]\n\n{}\n",
                self.identity.0,
                data.display(),
                self.identity.1,
                // Shared by every test: Python and JavaScript components take
                // tens of seconds to compile; the cache makes that once per run.
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache").display(),
                submission_keys,
                rest,
            ),
        )
        .unwrap();
    }

    /// The default test server.
    pub fn start() -> Server {
        Self::start_with("")
    }

    /// Runs `poczta --config <ours> ARGS…` with `stdin`, to completion.
    pub fn cli(&self, args: &[&str], stdin: &str) -> Output {
        run_with_stdin(
            Command::new(POCZTA).arg("--config").arg(&self.config).args(args),
            stdin,
        )
    }

    /// Creates a user through the CLI (works while the server runs).
    pub fn add_user(&self, address: &str, password: &str) {
        let out = self.cli(
            &["user", "add", address, "--password-stdin"],
            &format!("{password}\n"),
        );
        assert!(
            out.status.success(),
            "user add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("server-{}.log", self.starts))
    }

    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("poczta did not start:\n{log}");
        }
    }

    /// Starts the process and waits for its ports; on an early exit,
    /// returns its log.
    fn try_spawn(&mut self) -> Result<(), String> {
        warm_components(&std::fs::read_to_string(&self.config).unwrap_or_default());
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        // The CONTRACT form `poczta serve --config FILE` (the CLI tests use
        // the `poczta --config FILE serve` form).
        let child = Command::new(POCZTA)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start poczta");
        self.child = Some(child);
        let log = self.log_path();
        for addr in [
            self.smtp,
            self.submission,
            self.pop3,
            self.submissions,
            self.pop3s,
        ] {
            wait_for_port(addr, self.child.as_mut().unwrap(), &log)?;
        }
        Ok(())
    }

    /// The server's certificate (generated into the data dir unless the
    /// config names one).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("data").join("cert.pem")
    }

    /// Everything the current process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// All logs of every start.
    pub fn all_logs(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("server-{i}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            c.wait().unwrap();
        }
    }

    /// Starts again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.pid();
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(st.success());
        self.terminate_wait()
    }

    /// Waits (bounded) for the process to exit by itself, e.g. after a SIGTERM.
    pub fn terminate_wait(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("poczta did not exit within {WAIT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The PID, for tests that measure the process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- poczta logs ----\n{}", self.all_logs());
        }
    }
}

fn wait_for_port(addr: SocketAddr, child: &mut Child, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(st) = child.try_wait().unwrap() {
            return Err(format!(
                "poczta exited ({st}) before listening on {addr}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        assert!(
            Instant::now() < deadline,
            "poczta did not listen on {addr} within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Compiles every Python and JavaScript component that `config` names
/// (`py-*.wasm`, `js-*.wasm`) into the tests' shared compile cache, once
/// per test run. A server compiles its plugins before it listens, and a
/// CPython or SpiderMonkey component takes far longer than [`WAIT`] when
/// several tests compile it at once on a busy machine; with this, one
/// compile happens and every other test waits for it here.
pub fn warm_components(config: &str) {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static WARM: OnceLock<Mutex<HashMap<PathBuf, Arc<OnceLock<()>>>>> = OnceLock::new();
    for word in config.split('"') {
        let path = Path::new(word);
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !(name.starts_with("py-") || name.starts_with("js-")) || !name.ends_with(".wasm") || !path.exists()
        {
            continue;
        }
        let once = WARM
            .get_or_init(Default::default)
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .clone();
        once.get_or_init(|| {
            use poczta::plugin::{MemoryKv, PluginConfig, PluginSet, Runtime, ScoreThresholds, Services};
            let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
            let runtime = Runtime::new(Some(cache)).expect("plugin runtime");
            let dns = poczta::dns::Resolver::new(&poczta::dns::ResolverConfig {
                nameservers: vec![SocketAddr::from(([127, 0, 0, 1], 9))],
                ..Default::default()
            })
            .expect("resolver");
            let services = Services {
                kv: Arc::new(MemoryKv::new()),
                dns: Arc::new(dns),
            };
            let cfg = PluginConfig::new("warm-up", path.to_owned());
            // A component that does not load is the test's to report.
            let _ = PluginSet::load(&runtime, &[cfg], ScoreThresholds::default(), services);
        });
    }
}

/// Runs a command with `stdin` fed and output captured.
pub fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs a Python script (smtplib/poplib are independent clients) with args.
pub fn python(script: &str, args: &[String]) -> Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 is needed for the e2e tests")
}

/// A raw client that speaks lines, for byte-level protocol probes.
pub struct Raw {
    reader: BufReader<TcpStream>,
    /// Everything exchanged, for failure messages.
    pub transcript: String,
}

impl Raw {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> (Raw, String) {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut r = Raw {
            reader: BufReader::new(s),
            transcript: String::new(),
        };
        let greeting = r.line();
        (r, greeting)
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.transcript
            .push_str(&format!("C: {}\n", String::from_utf8_lossy(bytes).escape_debug()));
        self.reader.get_mut().write_all(bytes).expect("send");
    }

    /// Reads one line (without CRLF); empty string on EOF.
    pub fn line(&mut self) -> String {
        let mut buf = Vec::new();
        self.reader.read_until(b'\n', &mut buf).expect("read a line");
        let l = String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        self.transcript.push_str(&format!("S: {l}\n"));
        l
    }

    /// Reads one SMTP reply (all lines of a multi-line one), returns the last line.
    pub fn reply(&mut self) -> String {
        loop {
            let l = self.line();
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return l;
            }
        }
    }

    /// Sends a command line and returns the reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Reads a POP3 multi-line body up to the terminating dot line.
    pub fn pop3_multiline(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let mut buf = Vec::new();
            let n = self.reader.read_until(b'\n', &mut buf).expect("read");
            assert!(n > 0, "EOF inside a multi-line response");
            if buf == b".\r\n" {
                return body;
            }
            body.extend_from_slice(&buf);
        }
    }

    /// Whether the server closed the connection (reads EOF within the wait).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

/// Sends one message over a raw connection; returns the final reply line.
pub fn send_raw_message(addr: SocketAddr, from: &str, to: &[&str], data: &[u8]) -> String {
    let (mut c, g) = Raw::connect(addr);
    assert!(g.starts_with("220 "), "{g}");
    assert!(c.cmd("EHLO client.test").starts_with("250 "), "{}", c.transcript);
    assert!(
        c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250 "),
        "{}",
        c.transcript
    );
    for t in to {
        assert!(
            c.cmd(&format!("RCPT TO:<{t}>")).starts_with("250 "),
            "{}",
            c.transcript
        );
    }
    assert!(c.cmd("DATA").starts_with("354 "), "{}", c.transcript);
    c.send(data);
    c.send(b".\r\n");
    let r = c.reply();
    c.cmd("QUIT");
    r
}

/// Retrieves every message of a user with Python's poplib, deleting them
/// when `delete`; returns the raw bytes of each, as retrieved.
pub fn pop3_fetch_all(addr: SocketAddr, user: &str, pass: &str, delete: bool) -> Vec<Vec<u8>> {
    let script = r#"
import poplib, sys, json, base64
host, port, user, pw, delete = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "1"
p = poplib.POP3(host, port, timeout=20)
p.user(user); p.pass_(pw)
n, _ = p.stat()
out = []
for i in range(1, n + 1):
    resp, lines, octets = p.retr(i)
    out.append(base64.b64encode(b"\r\n".join(lines) + b"\r\n").decode())
    if delete:
        p.dele(i)
p.quit()
print(json.dumps(out))
"#;
    let out = python(
        script,
        &[
            addr.ip().to_string(),
            addr.port().to_string(),
            user.into(),
            pass.into(),
            if delete { "1" } else { "0" }.into(),
        ],
    );
    assert!(
        out.status.success(),
        "poplib failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<String> = serde_json::from_slice(&out.stdout).expect("json from the poplib script");
    use base64::Engine;
    list.iter()
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
        .collect()
}

/// Strips the two header lines Poczta prepends (Return-Path and the folded
/// Received) so a test can compare with what the client sent.
pub fn strip_trace_headers(msg: &[u8]) -> &[u8] {
    assert!(
        msg.starts_with(b"Return-Path: "),
        "{}",
        String::from_utf8_lossy(msg)
    );
    let mut rest = &msg[msg.windows(2).position(|w| w == b"\r\n").unwrap() + 2..];
    assert!(
        rest.starts_with(b"Received: "),
        "{}",
        String::from_utf8_lossy(msg)
    );
    // The Received header continues on lines that start with white space.
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        rest = &rest[end..];
        if !rest.starts_with(b" ") && !rest.starts_with(b"\t") {
            return rest;
        }
    }
}

/// A built example plugin (`plugins/build` puts them in plugins/dist).
pub fn plugin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run plugins/build (scripts/test does)",
        p.display()
    );
    p
}

/// A `[[plugins]]` TOML entry for an example plugin.
///
/// The deadline of a hook call is wall-clock time, host calls included, and
/// the tests run in parallel on two cores with fsyncs in flight: unless the
/// test sets its own `timeout` (or tests a hostile plugin, where the 100 ms
/// default is the point), give the plugin a generous one so a slow moment
/// does not turn into a tempfail.
pub fn plugin_entry(name: &str, file: &str, extra: &str) -> String {
    let timeout = if extra.contains("timeout") || file.starts_with("hostile") {
        ""
    } else {
        "timeout = \"10s\"\n"
    };
    format!(
        "[[plugins]]\nname = \"{name}\"\npath = \"{}\"\n{timeout}{extra}\n",
        plugin(file).display()
    )
}

/// Sends one message with the given subject; returns the final reply line
/// (or the first refusal).
pub fn try_send(addr: SocketAddr, to: &str, subject: &str) -> String {
    let (mut c, g) = Raw::connect(addr);
    if !g.starts_with("220") {
        return g;
    }
    for cmd in [
        "EHLO client.test",
        "MAIL FROM:<s@remote.test>",
        &format!("RCPT TO:<{to}>"),
    ] {
        let r = c.cmd(cmd);
        if !r.starts_with("250") {
            return r;
        }
    }
    let r = c.cmd("DATA");
    if !r.starts_with("354") {
        return r;
    }
    c.send(
        format!("Subject: {subject}\r\nX-Remove-Me: yes\r\nX-Spam-Flag: forged\r\n\r\nbody\r\n.\r\n")
            .as_bytes(),
    );
    let r = c.reply();
    c.send(b"QUIT\r\n");
    r
}
