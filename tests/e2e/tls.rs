//! TLS and SMTP AUTH: STARTTLS on the MX and submission listeners, STLS,
//! implicit TLS on submissions and pop3s, the STARTTLS injection probe,
//! AUTH PLAIN/LOGIN on submission, sender ownership and relay refusals,
//! the certificate reload on SIGHUP. Clients: lettre (rustls), curl,
//! openssl s_client, and a line client over rustls for byte-level probes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::harness::{Raw, Server, WAIT, pop3_fetch_all};

const HOST: &str = "mx.example.test";

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A line client over any stream (TCP, or TLS over TCP).
struct Lines<S: Read + Write> {
    r: BufReader<S>,
    transcript: String,
}

impl<S: Read + Write> Lines<S> {
    fn new(s: S) -> Self {
        Lines {
            r: BufReader::new(s),
            transcript: String::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.transcript
            .push_str(&format!("C: {}\n", String::from_utf8_lossy(bytes).escape_debug()));
        self.r.get_mut().write_all(bytes).expect("send");
        self.r.get_mut().flush().expect("flush");
    }

    fn line(&mut self) -> String {
        let mut buf = Vec::new();
        let _ = self.r.read_until(b'\n', &mut buf);
        let l = String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        self.transcript.push_str(&format!("S: {l}\n"));
        l
    }

    /// All lines of one SMTP reply.
    fn reply_lines(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line();
            let last = l.len() < 4 || l.as_bytes()[3] != b'-';
            lines.push(l);
            if last {
                return lines;
            }
        }
    }

    fn reply(&mut self) -> String {
        self.reply_lines().pop().unwrap()
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Reads POP3 multi-line lines up to the dot.
    fn pop3_lines(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        loop {
            let l = self.line();
            if l == "." || l.is_empty() {
                return v;
            }
            v.push(l);
        }
    }
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// A rustls client that trusts the server's certificate for `HOST`.
fn client_config(server: &Server) -> Arc<rustls::ClientConfig> {
    poczta::tls::client_config(true, Some(&server.cert_path())).expect("client config")
}

/// The TLS handshake over an established TCP connection.
fn tls_over(server: &Server, s: TcpStream) -> TlsStream {
    let conn = ClientConnection::new(client_config(server), ServerName::try_from(HOST).unwrap()).unwrap();
    let mut tls = StreamOwned::new(conn, s);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("tls handshake");
    }
    tls
}

/// Implicit TLS: connects and reads the greeting.
fn connect_tls(server: &Server, addr: SocketAddr) -> (Lines<TlsStream>, String) {
    let mut c = Lines::new(tls_over(server, tcp(addr)));
    let g = c.line();
    (c, g)
}

/// Connects in clear, EHLOs, STARTTLS, and hands back the TLS client.
fn starttls(server: &Server, addr: SocketAddr) -> Lines<TlsStream> {
    let mut c = Lines::new(tcp(addr));
    assert!(c.line().starts_with("220 "));
    let ehlo = c.send_ehlo();
    assert!(ehlo.iter().any(|l| l.ends_with("STARTTLS")), "{ehlo:?}");
    assert!(c.cmd("STARTTLS").starts_with("220 "), "{}", c.transcript);
    assert!(c.r.buffer().is_empty());
    Lines::new(tls_over(server, c.r.into_inner()))
}

impl<S: Read + Write> Lines<S> {
    fn send_ehlo(&mut self) -> Vec<String> {
        self.send(b"EHLO client.test\r\n");
        self.reply_lines()
    }
}

fn b64(s: &str) -> String {
    poczta::sasl::encode_base64(s.as_bytes())
}

fn auth_plain<S: Read + Write>(c: &mut Lines<S>, user: &str, pass: &str) -> String {
    c.cmd(&format!("AUTH PLAIN {}", b64(&format!("\0{user}\0{pass}"))))
}

fn lettre_tls(server: &Server) -> TlsParameters {
    let pem = std::fs::read(server.cert_path()).unwrap();
    TlsParameters::builder(HOST.to_owned())
        .add_root_certificate(Certificate::from_pem(&pem).unwrap())
        .build_rustls()
        .unwrap()
}

fn message(from: &str, to: &str, subject: &str) -> Message {
    Message::builder()
        .from(from.parse::<Mailbox>().unwrap())
        .to(to.parse().unwrap())
        .subject(subject)
        .body("Over TLS.\r\n".to_string())
        .unwrap()
}

#[test]
fn lettre_starttls_on_mx_and_received_records_tls() {
    let server = Server::start();
    let mx = SmtpTransport::builder_dangerous("127.0.0.1")
        .port(server.smtp.port())
        .tls(Tls::Required(lettre_tls(&server)))
        .timeout(Some(Duration::from_secs(20)))
        .build();
    let resp = mx
        .send(&message("carol@remote.test", "alice@example.test", "tls mx"))
        .expect("lettre send over STARTTLS");
    assert!(resp.code().is_positive());
    let msgs = pop3_fetch_all(server.pop3, "alice@example.test", "secret", false);
    assert_eq!(msgs.len(), 1);
    let m = String::from_utf8_lossy(&msgs[0]);
    let received = m.split("\r\n").skip(1).take(3).collect::<Vec<_>>().join(" ");
    assert!(received.starts_with("Received: from "), "{m}");
    assert!(received.contains("with ESMTPS"), "{m}");
    assert!(received.contains("using TLSv1."), "{m}");
    assert!(received.contains("with cipher TLS_"), "{m}");
}

#[test]
fn openssl_s_client_starttls_verifies_the_generated_certificate() {
    let server = Server::start();
    let out = Command::new("openssl")
        .args(["s_client", "-brief", "-starttls", "smtp", "-connect"])
        .arg(server.smtp.to_string())
        .arg("-CAfile")
        .arg(server.cert_path())
        .args([
            "-verify_hostname",
            HOST,
            "-verify_return_error",
            "-servername",
            HOST,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Verification: OK"), "{text}");
    assert!(text.contains("Protocol version: TLSv1.3"), "{text}");
}

#[test]
fn starttls_drops_commands_pipelined_before_the_handshake() {
    let server = Server::start();
    let mut c = Lines::new(tcp(server.smtp));
    assert!(c.line().starts_with("220 "));
    c.send_ehlo();
    // The injection: RSET rides in the same segment as STARTTLS.
    c.send(b"STARTTLS\r\nRSET\r\n");
    assert!(c.reply().starts_with("220 "), "{}", c.transcript);
    assert!(c.r.buffer().is_empty(), "{}", c.transcript);
    let mut t = Lines::new(tls_over(&server, c.r.into_inner()));
    // Had the injected RSET been run, its 250 would come first.
    let mail = t.cmd("MAIL FROM:<carol@remote.test>");
    assert!(mail.starts_with("503 "), "{mail}\n{}", t.transcript);
    // Under TLS: a fresh EHLO, without STARTTLS.
    let ehlo = t.send_ehlo();
    assert!(ehlo[0].starts_with("250"), "{ehlo:?}");
    assert!(!ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    assert!(t.cmd("STARTTLS").starts_with("5"), "{}", t.transcript);
    assert!(t.cmd("MAIL FROM:<carol@remote.test>").starts_with("250 "));
    assert!(t.cmd("RCPT TO:<alice@example.test>").starts_with("250 "));
    assert!(t.cmd("QUIT").starts_with("221 "));
}

#[test]
fn submission_offers_auth_only_under_tls_and_requires_it() {
    let server = Server::start();
    let mut c = Lines::new(tcp(server.submission));
    assert!(c.line().starts_with("220 "));
    let ehlo = c.send_ehlo();
    assert!(!ehlo.iter().any(|l| l.contains("AUTH")), "{ehlo:?}");
    let r = auth_plain(&mut c, "alice@example.test", "secret");
    assert!(r.starts_with("538 ") || r.starts_with("530 "), "{r}");
    let r = c.cmd("MAIL FROM:<alice@example.test>");
    assert!(r.starts_with("530 "), "{r}");

    let mut t = starttls(&server, server.submission);
    let ehlo = t.send_ehlo();
    assert!(
        ehlo.iter()
            .any(|l| l.contains("AUTH") && l.contains("PLAIN") && l.contains("LOGIN")),
        "{ehlo:?}"
    );
    assert!(!ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    let r = t.cmd("MAIL FROM:<alice@example.test>");
    assert!(r.starts_with("530 "), "{r}");
}

#[test]
fn lettre_auth_plain_and_login_submit_to_local_users() {
    let server = Server::start();
    for mechanism in [Mechanism::Plain, Mechanism::Login] {
        let sub = SmtpTransport::builder_dangerous("127.0.0.1")
            .port(server.submission.port())
            .tls(Tls::Required(lettre_tls(&server)))
            .credentials(Credentials::new("alice@example.test".into(), "secret".into()))
            .authentication(vec![mechanism])
            .timeout(Some(Duration::from_secs(20)))
            .build();
        sub.send(&message(
            "alice@example.test",
            "bob@example.test",
            &format!("{mechanism:?}"),
        ))
        .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
    }
    let msgs = pop3_fetch_all(server.pop3, "bob@example.test", "secret", false);
    assert_eq!(msgs.len(), 2);
    for m in &msgs {
        let m = String::from_utf8_lossy(m);
        assert!(m.contains("with ESMTPSA"), "{m}");
    }
    // The bare local part logs in too, as with POP3.
    let mut t = starttls(&server, server.submission);
    t.send_ehlo();
    t.send(format!("AUTH LOGIN {}\r\n", b64("alice")).as_bytes());
    assert!(t.reply().starts_with("334 "), "{}", t.transcript);
    assert!(t.cmd(&b64("secret")).starts_with("235 "), "{}", t.transcript);
}

#[test]
fn bad_password_is_535_and_slowed_down() {
    let server = Server::start_with("[limits]\nlogin_failure_delay = \"50ms\"\n");
    let mut t = starttls(&server, server.submission);
    t.send_ehlo();
    assert!(auth_plain(&mut t, "alice@example.test", "wrong").starts_with("535 "));
    assert!(auth_plain(&mut t, "nobody@example.test", "secret").starts_with("535 "));
    assert!(auth_plain(&mut t, "alice@example.test", "secret").starts_with("235 "));
    let log = server.log();
    assert!(log.contains("smtp auth failed"), "{log}");
    assert!(
        log.contains("delay_ms=100"),
        "the second failure waits longer:\n{log}"
    );
    assert!(!log.contains("wrong"), "a password was logged:\n{log}");
}

#[test]
fn authenticated_sender_must_be_own_address_and_only_it_relays() {
    let server = Server::start();
    let (mut t, g) = connect_tls(&server, server.submissions);
    assert!(g.starts_with("220 "), "{g}");
    let ehlo = t.send_ehlo();
    assert!(!ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    assert!(auth_plain(&mut t, "alice@example.test", "secret").starts_with("235 "));
    let r = t.cmd("MAIL FROM:<bob@example.test>");
    assert!(
        r.starts_with("553 5.7.1 Sender address not owned by the authenticated user"),
        "{r}"
    );
    assert!(
        t.cmd("MAIL FROM:<Alice@Example.Test>").starts_with("250 "),
        "{}",
        t.transcript
    );
    // Authenticated, the user may send to other domains (the queue).
    let r = t.cmd("RCPT TO:<dave@remote.test>");
    assert!(r.starts_with("250 "), "{r}");
    assert!(t.cmd("RCPT TO:<bob@example.test>").starts_with("250 "));
    assert!(t.cmd("DATA").starts_with("354 "));
    let r = t.cmd("Subject: implicit\r\n\r\nhi\r\n.");
    assert!(r.starts_with("250 "), "{r}");
    assert!(t.cmd("QUIT").starts_with("221 "));

    // The MX listener: no AUTH, no relaying.
    let (mut c, _) = Raw::connect(server.smtp);
    c.cmd("EHLO client.test");
    assert!(
        c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==").starts_with("5"),
        "{}",
        c.transcript
    );
    assert!(c.cmd("MAIL FROM:<carol@remote.test>").starts_with("250 "));
    let r = c.cmd("RCPT TO:<dave@remote.test>");
    assert!(r.starts_with("550 5.7.1 Relay access denied"), "{r}");
    let msgs = pop3_fetch_all(server.pop3, "bob@example.test", "secret", false);
    assert_eq!(msgs.len(), 1);
    // dave went to the outbound queue (whatever became of it since: this
    // server has no route to remote.test).
    let log = server.log();
    assert!(log.contains("dave@remote.test:Queued"), "{log}");
}

fn curl_pop3(server: &Server, url_scheme: &str, addr: SocketAddr, extra: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(server.cert_path())
        .arg("--resolve")
        .arg(format!("{HOST}:{}:127.0.0.1", addr.port()))
        .args(extra)
        .args(["-u", "alice@example.test:secret"])
        .arg(format!("{url_scheme}://{HOST}:{}/1", addr.port()))
        .output()
        .expect("run curl")
}

#[test]
fn curl_reads_over_pop3s_and_stls() {
    let server = Server::start();
    crate::harness::send_raw_message(
        server.smtp,
        "carol@remote.test",
        &["alice@example.test"],
        b"Subject: for curl\r\n\r\nbody\r\n",
    );
    for (scheme, addr, extra) in [
        ("pop3s", server.pop3s, &[][..]),
        ("pop3", server.pop3, &["--ssl-reqd"][..]),
    ] {
        let out = curl_pop3(&server, scheme, addr, extra);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Subject: for curl"),
            "{scheme}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn pop3_stls_and_capa_inside_tls() {
    let server = Server::start();
    let mut c = Lines::new(tcp(server.pop3));
    assert!(c.line().starts_with("+OK"));
    c.send(b"CAPA\r\n");
    assert!(c.line().starts_with("+OK"));
    assert!(c.pop3_lines().iter().any(|l| l == "STLS"), "{}", c.transcript);
    c.send(b"STLS\r\nNOOP\r\n");
    assert!(c.line().starts_with("+OK"), "{}", c.transcript);
    assert!(c.r.buffer().is_empty());
    let mut t = Lines::new(tls_over(&server, c.r.into_inner()));
    t.send(b"CAPA\r\n");
    // The injected NOOP got no reply: CAPA's is the first.
    assert!(t.line().starts_with("+OK"), "{}", t.transcript);
    let capa = t.pop3_lines();
    assert!(!capa.iter().any(|l| l == "STLS"), "{capa:?}");
    assert!(t.cmd("USER alice@example.test").starts_with("+OK"));
    assert!(t.cmd("PASS secret").starts_with("+OK"), "{}", t.transcript);
    assert!(t.cmd("QUIT").starts_with("+OK"));

    let (mut s, g) = connect_tls(&server, server.pop3s);
    assert!(g.starts_with("+OK"), "{g}");
    s.send(b"CAPA\r\n");
    assert!(s.line().starts_with("+OK"));
    assert!(!s.pop3_lines().iter().any(|l| l == "STLS"));
}

/// The leaf certificate a fresh implicit-TLS connection is given.
fn peer_cert(server: &Server) -> Vec<u8> {
    let conn = ClientConnection::new(
        poczta::tls::client_config(false, None).unwrap(),
        ServerName::try_from(HOST).unwrap(),
    )
    .unwrap();
    let mut tls = StreamOwned::new(conn, tcp(server.pop3s));
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("tls handshake");
    }
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

fn make_cert(dir: &Path, cn: &str) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{cn}"))
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections() {
    let certs = tempfile::tempdir().unwrap();
    make_cert(certs.path(), HOST);
    let server = Server::start_with(&format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        certs.path().join("cert.pem").display(),
        certs.path().join("key.pem").display()
    ));
    let first = peer_cert(&server);
    make_cert(certs.path(), HOST);
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    loop {
        if peer_cert(&server) != first {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "the new certificate was not loaded:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.log().contains("tls certificate reloaded"));
}
