//! `pop3` subcommand: log in, RETR every message, and measure retrieval
//! throughput and per-RETR latency. Never deletes anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::Limits;
use crate::net::{self, Conn, MAX_DATA_LINE, MAX_REPLY_LINE, timed};
use crate::stats::{self, ErrorCount, ErrorTally, Latency};

/// Arguments of `poczta-bench pop3`.
#[derive(Debug, Args)]
pub struct Pop3Args {
    /// POP3 server as HOST:PORT. Must be loopback.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:2110")]
    addr: String,

    /// Mailbox user name (sent with USER).
    #[arg(long)]
    user: String,

    /// Mailbox password, sent with PASS in clear text. It is visible in the
    /// process list too: use throwaway test accounts only.
    #[arg(long, value_name = "PASSWORD")]
    pass: String,

    /// Concurrent POP3 sessions. Many servers lock a mailbox while a session
    /// is open (RFC 1939), so values above 1 may see "-ERR [IN-USE]".
    #[arg(short = 'c', long, value_name = "C", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    connections: u64,

    /// Sessions each connection runs one after another (log in, RETR all, QUIT).
    #[arg(short = 'r', long, value_name = "R", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    repeat: u64,

    #[command(flatten)]
    limits: Limits,

    /// Print one JSON object instead of the human-readable table.
    #[arg(long)]
    json: bool,
}

struct Plan {
    addr: std::net::SocketAddr,
    user: String,
    pass: String,
    repeat: u64,
    step: Duration,
    cap: Duration,
    start: Instant,
    capped: AtomicBool,
    stats: Mutex<Counters>,
}

impl Plan {
    /// False once the duration cap has passed: start nothing new.
    fn may_start(&self) -> bool {
        let ok = self.start.elapsed() < self.cap;
        if !ok {
            self.capped.store(true, Ordering::Relaxed);
        }
        ok
    }

    fn record(&self, f: impl FnOnce(&mut Counters)) {
        let mut counters = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut counters);
    }
}

#[derive(Default)]
struct Counters {
    sessions_ok: u64,
    sessions_failed: u64,
    retrieved: u64,
    retr_failed: u64,
    bytes: u64,
    latencies_us: Vec<u64>,
    errors: ErrorTally,
}

#[derive(Serialize)]
struct Report {
    command: &'static str,
    addr: String,
    user: String,
    connections: u64,
    repeat: u64,
    sessions_ok: u64,
    sessions_failed: u64,
    messages_retrieved: u64,
    retr_failed: u64,
    bytes_retrieved: u64,
    wall_secs: f64,
    msgs_per_sec: f64,
    mb_per_sec: f64,
    stopped_by_duration_cap: bool,
    aborted_at_hard_stop: bool,
    latency: Latency,
    errors: Vec<ErrorCount>,
}

/// Runs the POP3 benchmark; `Ok(true)` when every session and RETR succeeded.
pub async fn run(args: Pop3Args) -> Result<bool> {
    for (name, value) in [("--user", &args.user), ("--pass", &args.pass)] {
        if value.is_empty() || value.chars().any(|c| c.is_control()) {
            bail!("{name} must be non-empty and contain no control characters");
        }
    }
    let addr = net::resolve_loopback(&args.addr).await?;
    let plan = Arc::new(Plan {
        addr,
        user: args.user.clone(),
        pass: args.pass.clone(),
        repeat: args.repeat,
        step: args.limits.step(),
        cap: args.limits.cap(),
        start: Instant::now(),
        capped: AtomicBool::new(false),
        stats: Mutex::new(Counters::default()),
    });
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections {
        tasks.spawn(worker(Arc::clone(&plan)));
    }
    let finished = tokio::time::timeout(args.limits.hard_stop(), async {
        while let Some(joined) = tasks.join_next().await {
            if let Err(err) = joined {
                plan.record(|c| c.errors.add(format!("worker task died: {err}")));
            }
        }
    })
    .await;
    let aborted = finished.is_err();
    if aborted {
        tasks.abort_all();
    }
    let wall = plan.start.elapsed();

    let mut c = std::mem::take(&mut *plan.stats.lock().unwrap_or_else(|e| e.into_inner()));
    let report = Report {
        command: "pop3",
        addr: addr.to_string(),
        user: args.user.clone(),
        connections: args.connections,
        repeat: args.repeat,
        sessions_ok: c.sessions_ok,
        sessions_failed: c.sessions_failed,
        messages_retrieved: c.retrieved,
        retr_failed: c.retr_failed,
        bytes_retrieved: c.bytes,
        wall_secs: wall.as_secs_f64(),
        msgs_per_sec: stats::rate(c.retrieved, wall),
        mb_per_sec: stats::mb_per_sec(c.bytes, wall),
        stopped_by_duration_cap: plan.capped.load(Ordering::Relaxed),
        aborted_at_hard_stop: aborted,
        latency: Latency::from_micros(&mut c.latencies_us),
        errors: c.errors.into_list(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_human(&report);
    }
    Ok(report.sessions_failed == 0 && report.retr_failed == 0 && !aborted)
}

fn print_human(r: &Report) {
    println!(
        "poczta-bench pop3 -> {} as {}: {} connections x {} sessions",
        r.addr, r.user, r.connections, r.repeat
    );
    println!(
        "  sessions        {:>10} ok, {} failed",
        r.sessions_ok, r.sessions_failed
    );
    println!("  retrieved       {:>10} messages", r.messages_retrieved);
    println!("  RETR failed     {:>10}", r.retr_failed);
    println!("  wall time       {:>10.3} s", r.wall_secs);
    println!("  throughput      {:>10.1} msg/s", r.msgs_per_sec);
    println!(
        "                  {:>10.2} MB/s  ({} message bytes)",
        r.mb_per_sec, r.bytes_retrieved
    );
    println!("  latency         {}", r.latency.human());
    println!("                  (RETR sent -> terminating \".\" received)");
    if r.sessions_ok > 0 && r.messages_retrieved == 0 && r.retr_failed == 0 {
        println!("  note: the mailbox is empty; fill it first, e.g. with `poczta-bench smtp`");
    }
    if r.stopped_by_duration_cap {
        println!("  note: --duration-cap reached before all sessions finished");
    }
    if r.aborted_at_hard_stop {
        println!("  note: in-flight work was aborted at the hard stop (cap + 8 x timeout)");
    }
    stats::print_errors(&r.errors);
}

async fn worker(plan: Arc<Plan>) {
    for _ in 0..plan.repeat {
        if !plan.may_start() {
            break;
        }
        match session(&plan).await {
            Ok(()) => plan.record(|c| c.sessions_ok += 1),
            Err(err) => plan.record(|c| {
                c.sessions_failed += 1;
                c.errors.add(format!("{err:#}"));
            }),
        }
    }
}

/// One POP3 session: login, STAT, RETR 1..=n, QUIT.
async fn session(plan: &Plan) -> Result<()> {
    let mut conn = Conn::connect(plan.addr, plan.step).await?;
    status(&mut conn, None, "greeting").await?;
    status(&mut conn, Some(&format!("USER {}\r\n", plan.user)), "USER").await?;
    status(&mut conn, Some(&format!("PASS {}\r\n", plan.pass)), "PASS").await?;
    let stat = status(&mut conn, Some("STAT\r\n"), "STAT").await?;
    let count = parse_stat(&stat)?;
    for number in 1..=count {
        if !plan.may_start() {
            break;
        }
        let started = Instant::now();
        conn.send(format!("RETR {number}\r\n").as_bytes()).await?;
        match timed(conn.timeout, "the RETR response", retr_body(&mut conn)).await {
            Ok(Ok(bytes)) => {
                let latency = started.elapsed();
                plan.record(|c| {
                    c.retrieved += 1;
                    c.bytes += bytes;
                    c.latencies_us.push(stats::micros(latency));
                });
            }
            // -ERR for one message (e.g. deleted meanwhile): the session
            // itself is still fine.
            Ok(Err(refusal)) => plan.record(|c| {
                c.retr_failed += 1;
                c.errors.add(format!("RETR: {refusal}"));
            }),
            Err(err) => {
                plan.record(|c| c.retr_failed += 1);
                return Err(err.context(format!("RETR {number}")));
            }
        }
    }
    // QUIT ends the session; with no DELE issued nothing changes on the server.
    status(&mut conn, Some("QUIT\r\n"), "QUIT").await?;
    Ok(())
}

/// Sends `command` (if any) and expects a `+OK` status line, returning its text.
async fn status(conn: &mut Conn, command: Option<&str>, what: &str) -> Result<String> {
    if let Some(command) = command {
        conn.send(command.as_bytes()).await?;
    }
    let line = timed(conn.timeout, what, async {
        let raw = conn.reader.read_line(MAX_REPLY_LINE).await?;
        Ok(String::from_utf8_lossy(raw).into_owned())
    })
    .await?;
    parse_status(&line).map_err(|refusal| anyhow::anyhow!("{what}: -ERR {refusal}"))
}

/// Reads a RETR response: `Ok(Ok(bytes))` with the message size after
/// un-stuffing, `Ok(Err(text))` for `-ERR`, `Err` for I/O or protocol errors.
async fn retr_body(conn: &mut Conn) -> Result<std::result::Result<u64, String>> {
    let first = conn.reader.read_line(MAX_REPLY_LINE).await?;
    if let Err(refusal) = parse_status(&String::from_utf8_lossy(first)) {
        return Ok(Err(refusal));
    }
    let mut bytes = 0u64;
    loop {
        let line = conn
            .reader
            .read_line(MAX_DATA_LINE)
            .await
            .context("reading message data")?;
        match data_line(line) {
            DataLine::End => return Ok(Ok(bytes)),
            DataLine::Content(len) => bytes += len as u64,
        }
    }
}

/// A line of a POP3 multi-line response.
#[derive(Debug, PartialEq, Eq)]
enum DataLine {
    /// The lone "." that ends the response (the "\r\n.\r\n" sequence).
    End,
    /// Content; the length is what the line is after removing dot-stuffing.
    Content(usize),
}

fn data_line(line: &[u8]) -> DataLine {
    let bare = line.strip_suffix(b"\n").unwrap_or(line);
    let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
    if bare == b"." {
        DataLine::End
    } else if line.starts_with(b".") {
        DataLine::Content(line.len() - 1)
    } else {
        DataLine::Content(line.len())
    }
}

/// Splits a status line into `Ok(text)` for `+OK` and `Err(text)` otherwise.
fn parse_status(line: &str) -> std::result::Result<String, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let text = |rest: &str| rest.trim_start().to_owned();
    if let Some(rest) = line.strip_prefix("+OK") {
        Ok(text(rest))
    } else if let Some(rest) = line.strip_prefix("-ERR") {
        Err(text(rest))
    } else {
        Err(format!(
            "(not a POP3 status line) {}",
            line.chars().take(80).collect::<String>()
        ))
    }
}

/// Message count from the text of a `+OK nn mm` STAT reply.
fn parse_stat(text: &str) -> Result<u64> {
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("STAT reply has no message count: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status("+OK 2 320\r\n"), Ok("2 320".into()));
        assert_eq!(parse_status("+OK\r\n"), Ok(String::new()));
        assert_eq!(
            parse_status("-ERR [IN-USE] locked\r\n"),
            Err("[IN-USE] locked".into())
        );
        assert!(parse_status("* OK imap?\r\n").is_err());
    }

    #[test]
    fn stat_counts() {
        assert_eq!(parse_stat("2 320").unwrap(), 2);
        assert_eq!(parse_stat("0 0").unwrap(), 0);
        assert!(parse_stat("maildrop ready").is_err());
    }

    #[test]
    fn multi_line_terminator_and_unstuffing() {
        assert_eq!(data_line(b".\r\n"), DataLine::End);
        assert_eq!(data_line(b"..\r\n"), DataLine::Content(3));
        assert_eq!(data_line(b"..x\r\n"), DataLine::Content(4));
        assert_eq!(data_line(b"hello\r\n"), DataLine::Content(7));
        assert_eq!(data_line(b"\r\n"), DataLine::Content(2));
    }

    #[tokio::test]
    async fn reads_a_retr_response() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut sock, _) = listener.accept().await.unwrap();
            sock.write_all(b"+OK 12 octets\r\nSubject: x\r\n\r\n..dot\r\n.\r\n-ERR no such message\r\n")
                .await
                .unwrap();
        });
        let mut conn = Conn::connect(addr, Duration::from_secs(5)).await.unwrap();
        // "Subject: x\r\n" (12) + "\r\n" (2) + ".dot\r\n" (6)
        assert_eq!(retr_body(&mut conn).await.unwrap(), Ok(20));
        assert_eq!(retr_body(&mut conn).await.unwrap(), Err("no such message".into()));
        server.await.unwrap();
    }
}
