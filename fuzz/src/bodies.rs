//! Fuzz target bodies (shared by the libFuzzer binaries and the corpus
//! replay test of the e2e binary). Each must never panic on any input;
//! beyond that, each checks a property that a bug would break.

use std::sync::Arc;

use poczta::pop3;
use poczta::smtp::{self, Answer, Ask, Command, Event, Reply, Session, SessionConfig, TlsInfo};

/// SMTP command parser: no panic, and an accepted recipient prints back to
/// a command that parses to the same address.
pub fn smtp_command(data: &[u8]) {
    if let Ok(Command::Rcpt { to, .. }) = smtp::parse_command(data) {
        let again = format!("RCPT TO:<{to}>");
        match smtp::parse_command(again.as_bytes()) {
            Ok(Command::Rcpt { to: back, .. }) => assert_eq!(back, to, "{again}"),
            other => panic!("{again:?} does not parse back: {other:?}"),
        }
    }
}

fn smtp_decide(ask: &Ask) -> Answer {
    match ask {
        Ask::Auth { password, .. } if password != "secret" => Answer::Reject(Reply::auth_failed()),
        Ask::Rcpt { to } if to.local.starts_with('x') => Answer::Reject(Reply::no_such_user()),
        Ask::Message { data, .. } if data.windows(6).any(|w| w == b"REJECT") => {
            Answer::Reject(Reply::storage_full())
        }
        Ask::Message { .. } => Answer::AcceptWith(Reply::queued("F1")),
        _ => Answer::Accept,
    }
}

fn run_smtp(config: &SessionConfig, input: &[u8], chunk: usize) -> Vec<Event> {
    let mut s = Session::new(config.clone());
    let mut events = Vec::new();
    for piece in input.chunks(chunk) {
        s.feed(piece);
        while let Some(event) = s.poll() {
            match &event {
                Event::Ask(ask) => {
                    if let Ask::Message { data, envelope } = ask {
                        assert!(data.len() <= config.max_message_size, "message over the size cap");
                        assert!(!envelope.rcpts.is_empty(), "a message without recipients");
                        assert!(envelope.rcpts.len() <= config.max_recipients);
                    }
                    s.answer(smtp_decide(ask));
                }
                Event::StartTls => s.tls_established(TlsInfo {
                    version: "TLSv1.3".into(),
                    cipher: "TLS_AES_128_GCM_SHA256".into(),
                }),
                Event::Reply(_) | Event::Close => {}
            }
            events.push(event);
        }
        if s.is_closed() {
            break;
        }
    }
    events
}

/// The SMTP session fed an arbitrary byte stream (commands, DATA, BDAT,
/// AUTH): no panic, messages within the limits, and — without STARTTLS,
/// which by design drops what was pipelined behind it — the same events
/// however the input is split into reads.
pub fn smtp_session(data: &[u8]) {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let config = SessionConfig {
        hostname: "mx.fuzz.test".into(),
        // Small limits, so that short inputs reach the edges.
        max_line_length: 64 + usize::from(ctl & 0x0f) * 32,
        max_message_size: 256 << ((ctl >> 4) & 3),
        max_recipients: 3,
        max_errors: 20,
        starttls: ctl & 0x40 != 0,
        auth: ctl & 0x80 != 0,
        auth_without_tls: true,
        require_auth: false,
        implicit_tls: None,
    };
    let whole = run_smtp(&config, input, input.len().max(1));
    if !config.starttls {
        for chunk in [1, 3, 64] {
            assert_eq!(
                run_smtp(&config, input, chunk),
                whole,
                "split into {chunk}-byte reads"
            );
        }
    }
}

fn run_pop3(config: &pop3::SessionConfig, input: &[u8], chunk: usize) -> Vec<pop3::Event> {
    let mut s = pop3::Session::new(config.clone());
    let mut events = Vec::new();
    let maildrop: Vec<pop3::MaildropEntry> = (1..=3u64)
        .map(|key| pop3::MaildropEntry {
            key,
            uid: format!("uid{key}"),
            size: 20 * key,
        })
        .collect();
    for piece in input.chunks(chunk) {
        s.feed(piece);
        while let Some(event) = s.poll() {
            match &event {
                pop3::Event::Ask(pop3::Ask::Login { password, .. }) => s.answer(if password == "secret" {
                    pop3::Answer::LoginOk(maildrop.clone())
                } else {
                    pop3::Answer::LoginFailed
                }),
                pop3::Event::Ask(pop3::Ask::Fetch { key, .. }) => {
                    assert!((1..=3).contains(key), "fetch of a key not in the listing: {key}");
                    let body = format!("Subject: m{key}\r\n\r\n.dot\r\nline\r\n");
                    s.answer(pop3::Answer::Message(body.into_bytes()))
                }
                pop3::Event::Ask(pop3::Ask::Commit { delete }) => {
                    let mut d = delete.clone();
                    d.sort_unstable();
                    d.dedup();
                    assert_eq!(d.len(), delete.len(), "a key deleted twice");
                    assert!(delete.iter().all(|k| (1..=3).contains(k)));
                    s.answer(pop3::Answer::Committed)
                }
                pop3::Event::StartTls => s.tls_established(),
                pop3::Event::Respond(_) | pop3::Event::Close => {}
            }
            events.push(event);
        }
        if s.is_closed() {
            break;
        }
    }
    events
}

/// The POP3 parser and session: no panic, only listed keys fetched or
/// deleted, each at most once, and split-invariant without STLS.
pub fn pop3(data: &[u8]) {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    for line in input.split(|b| *b == b'\n') {
        let _ = pop3::parse_command(line);
    }
    let config = pop3::SessionConfig {
        max_line_length: 64 + usize::from(ctl & 0x0f) * 32,
        max_errors: 20,
        plaintext_allowed: true,
        tls_available: ctl & 0x40 != 0,
        implicit_tls: false,
    };
    let whole = run_pop3(&config, input, input.len().max(1));
    if !config.tls_available {
        for chunk in [1, 5] {
            assert_eq!(
                run_pop3(&config, input, chunk),
                whole,
                "split into {chunk}-byte reads"
            );
        }
    }
}

/// The message view plugins get (mail-parser over arbitrary MIME): no
/// panic, every accessor stays inside the raw bytes.
pub fn message_view(data: &[u8]) {
    let m = poczta::plugin::ParsedMessage::parse(Arc::new(data.to_vec()));
    assert_eq!(m.raw(), data);
    for name in ["subject", "from", "to", "content-type", "received", "x-nope"] {
        let _ = m.header(name);
        let _ = m.header_decoded(name);
    }
    for h in m.headers() {
        let _ = m.header(&h.name);
    }
    for i in 0..m.parts().len() as u32 + 2 {
        if let Some(b) = m.part_body(i) {
            assert!(
                b.len() <= data.len() || m.part_text(i).is_some(),
                "a part larger than the message"
            );
        }
        let _ = m.part_text(i);
    }
    let len = data.len() as u64;
    for (off, n) in [
        (0, u32::MAX),
        (len / 2, 7),
        (len, 1),
        (len + 5, 10),
        (u64::MAX, u32::MAX),
    ] {
        let s = m.raw_slice(off, n);
        assert!(s.len() <= n as usize && s.len() as u64 <= len.saturating_sub(off.min(len)));
    }
}

/// Config parsing: no panic on any TOML, and an accepted config's values
/// are resolved (every listener has an address, the limits are positive).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = poczta::Config::parse(text, "fuzz.toml") {
        assert!(!c.domains.is_empty(), "a config without local domains");
        assert!(c.limits.max_message_size >= 1024);
    }
}

#[cfg(test)]
mod replay {
    use std::path::PathBuf;

    /// `fuzz/corpus/<target>` from the fuzz crate or from the host crate.
    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = [here.join("corpus"), here.join("../fuzz/corpus")]
            .into_iter()
            .find(|d| d.is_dir())
            .expect("fuzz/corpus")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        files
            .into_iter()
            .map(|p| {
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect()
    }

    fn replay(target: &str, body: fn(&[u8])) {
        for (path, bytes) in corpus(target) {
            let r = std::panic::catch_unwind(|| body(&bytes));
            assert!(r.is_ok(), "{target}: {} fails", path.display());
        }
    }

    /// A bounded fuzz smoke for CI, where an instrumented build does not
    /// fit: deterministic mutations of the corpus (bit flips, byte
    /// insertions and deletions, truncations, splices of two inputs, CR/LF/
    /// NUL/dot injections) run through the target's body. Count-bounded
    /// (`MUTATIONS` per target), so its time does not depend on the machine.
    fn mutate(target: &str, body: fn(&[u8])) {
        const MUTATIONS: usize = 3_000;
        const SPECIAL: &[u8] = b"\r\n.\0:<>@ \t\xff";
        let inputs = corpus(target);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ target.len() as u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..MUTATIONS {
            let (_, base) = &inputs[i % inputs.len()];
            let mut data = base.clone();
            for _ in 0..1 + next() % 4 {
                let len = data.len().max(1);
                let at = (next() as usize) % len;
                match next() % 6 {
                    0 if !data.is_empty() => data[at] ^= 1 << (next() % 8),
                    1 => data.insert(at.min(data.len()), next() as u8),
                    2 if !data.is_empty() => {
                        data.remove(at);
                    }
                    3 => data.truncate(at),
                    4 => {
                        let (_, other) = &inputs[(next() as usize) % inputs.len()];
                        let from = (next() as usize) % other.len().max(1);
                        data.splice(
                            at.min(data.len())..at.min(data.len()),
                            other[from.min(other.len())..].iter().copied(),
                        );
                    }
                    _ => data.insert(at.min(data.len()), SPECIAL[(next() as usize) % SPECIAL.len()]),
                }
            }
            let r = std::panic::catch_unwind(|| body(&data));
            assert!(
                r.is_ok(),
                "{target}: mutation {i} fails on {:?}",
                String::from_utf8_lossy(&data)
            );
        }
    }

    #[test]
    fn mutations_do_not_crash_any_target() {
        mutate("smtp_command", super::smtp_command);
        mutate("smtp_session", super::smtp_session);
        mutate("pop3", super::pop3);
        mutate("message_view", super::message_view);
        mutate("config", super::config);
    }

    #[test]
    fn smtp_command_corpus() {
        replay("smtp_command", super::smtp_command);
    }

    #[test]
    fn smtp_session_corpus() {
        replay("smtp_session", super::smtp_session);
    }

    #[test]
    fn pop3_corpus() {
        replay("pop3", super::pop3);
    }

    #[test]
    fn message_view_corpus() {
        replay("message_view", super::message_view);
    }

    #[test]
    fn config_corpus() {
        replay("config", super::config);
    }
}
