//! `smtp` subcommand: concurrent SMTP submission with throughput and
//! per-transaction latency.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::Limits;
use crate::message::{self, Headers};
use crate::net::{self, Conn, timed};
use crate::reply::{Reply, read_reply};
use crate::stats::{self, ErrorCount, ErrorTally, Latency};

/// Arguments of `poczta-bench smtp`.
#[derive(Debug, Args)]
pub struct SmtpArgs {
    /// SMTP server as HOST:PORT. Must be loopback.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:2525")]
    addr: String,

    /// Total number of messages to send across all connections.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    messages: u64,

    /// Body size of each message in bytes (CRLF lines of at most 78
    /// characters; about 250 bytes of headers come on top). 1 is not possible.
    #[arg(short = 's', long, value_name = "BYTES", default_value_t = 1024, value_parser = parse_size)]
    size: usize,

    /// Number of concurrent SMTP connections (client tasks).
    #[arg(short = 'c', long, value_name = "C", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    connections: u64,

    /// Messages per SMTP session before QUIT and reconnect. 1 opens a new
    /// session for every message, like Postfix's smtp-source.
    #[arg(short = 'k', long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    per_connection: u64,

    /// Envelope and header sender.
    #[arg(long, value_name = "ADDRESS", default_value = "bench@localhost", value_parser = parse_mailbox)]
    from: String,

    /// Recipient; repeat the option to spread messages round-robin over
    /// several recipients (one recipient per message).
    #[arg(long, value_name = "ADDRESS", default_value = "user@localhost", value_parser = parse_mailbox)]
    to: Vec<String>,

    /// Name the client gives in EHLO (or HELO if EHLO is refused).
    #[arg(long, value_name = "NAME", default_value = "bench.localhost")]
    ehlo: String,

    /// Send MAIL, RCPT and DATA one at a time even when the server
    /// advertises PIPELINING (RFC 2920).
    #[arg(long)]
    no_pipelining: bool,

    #[command(flatten)]
    limits: Limits,

    /// Print one JSON object instead of the human-readable table.
    #[arg(long)]
    json: bool,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let size: usize = s.parse().map_err(|e| format!("{e}"))?;
    match size {
        1 => Err("a body of 1 byte can't end in CRLF; use 0 or at least 2".into()),
        // The body is built once and held in memory per run; keep it sane.
        s if s > 64 * 1024 * 1024 => Err("at most 67108864 (64 MiB)".into()),
        s => Ok(s),
    }
}

/// Rejects anything that would break the command line it is pasted into.
fn parse_mailbox(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 254 {
        return Err("must be 1 to 254 characters".into());
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || "<>".contains(c))
    {
        return Err("write a bare address like user@example.test (no spaces or <>)".into());
    }
    Ok(s.to_owned())
}

/// Everything the worker tasks share.
struct Plan {
    addr: SocketAddr,
    from: String,
    to: Vec<String>,
    ehlo: String,
    per_connection: u64,
    messages: u64,
    allow_pipelining: bool,
    /// Body, already dot-stuffed, shared by every message.
    stuffed_body: Vec<u8>,
    /// Body length before stuffing: what the recipient's mailbox receives.
    body_len: usize,
    run_id: String,
    step: Duration,
    cap: Duration,
    start: Instant,
    next: AtomicU64,
    capped: AtomicBool,
    stats: Mutex<Counters>,
}

impl Plan {
    /// Hands out the next message number (1-based), or `None` once all are
    /// taken or the duration cap has passed.
    fn claim(&self) -> Option<u64> {
        if self.start.elapsed() >= self.cap {
            self.capped.store(true, Ordering::Relaxed);
            return None;
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        (seq <= self.messages).then_some(seq)
    }

    fn record(&self, f: impl FnOnce(&mut Counters)) {
        // A panicking worker can't leave the counters half-updated in a way
        // that matters, so a poisoned lock is still worth reading.
        let mut counters = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut counters);
    }
}

#[derive(Default)]
struct Counters {
    sent: u64,
    acknowledged: u64,
    temp_failed: u64,
    failed: u64,
    bytes_acknowledged: u64,
    sessions: u64,
    pipelined_sessions: u64,
    setup_failures: u64,
    latencies_us: Vec<u64>,
    errors: ErrorTally,
}

/// The result of one mail transaction.
enum Outcome {
    /// Final reply 2xx: the server took responsibility for the message.
    Acked { latency: Duration, bytes: u64 },
    /// A 4xx reply somewhere in the transaction.
    TempFailed(String),
    /// A 5xx reply, an unexpected reply, or an I/O failure.
    Failed(String),
}

/// What the worker should do with the connection after a transaction.
#[derive(PartialEq)]
enum Next {
    Reuse,
    /// The transaction was refused but the session is sane: RSET first.
    Reset,
    Drop,
}

/// The JSON report (the human table shows the same figures).
#[derive(Serialize)]
struct Report {
    command: &'static str,
    addr: String,
    messages_requested: u64,
    connections: u64,
    per_connection: u64,
    body_bytes: usize,
    pipelining_allowed: bool,
    sessions: u64,
    pipelined_sessions: u64,
    setup_failures: u64,
    sent: u64,
    acknowledged: u64,
    temp_failed: u64,
    failed: u64,
    bytes_acknowledged: u64,
    wall_secs: f64,
    msgs_per_sec: f64,
    mb_per_sec: f64,
    stopped_by_duration_cap: bool,
    aborted_at_hard_stop: bool,
    latency: Latency,
    errors: Vec<ErrorCount>,
}

/// Runs the SMTP benchmark; `Ok(true)` when every message was acknowledged.
pub async fn run(args: SmtpArgs) -> Result<bool> {
    let addr = net::resolve_loopback(&args.addr).await?;
    let body = message::body(args.size).context("invalid --size")?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let plan = Arc::new(Plan {
        addr,
        from: args.from.clone(),
        to: args.to.clone(),
        ehlo: args.ehlo.clone(),
        per_connection: args.per_connection,
        messages: args.messages,
        allow_pipelining: !args.no_pipelining,
        stuffed_body: message::dot_stuff(&body),
        body_len: body.len(),
        run_id: format!("{nanos:x}.{}", std::process::id()),
        step: args.limits.step(),
        cap: args.limits.cap(),
        start: Instant::now(),
        next: AtomicU64::new(0),
        capped: AtomicBool::new(false),
        stats: Mutex::new(Counters::default()),
    });
    drop(body);

    // No point starting more tasks than there are messages.
    let workers = args.connections.min(args.messages);
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
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
        command: "smtp",
        addr: addr.to_string(),
        messages_requested: args.messages,
        connections: workers,
        per_connection: args.per_connection,
        body_bytes: args.size,
        pipelining_allowed: !args.no_pipelining,
        sessions: c.sessions,
        pipelined_sessions: c.pipelined_sessions,
        setup_failures: c.setup_failures,
        sent: c.sent,
        acknowledged: c.acknowledged,
        temp_failed: c.temp_failed,
        failed: c.failed,
        bytes_acknowledged: c.bytes_acknowledged,
        wall_secs: wall.as_secs_f64(),
        msgs_per_sec: stats::rate(c.acknowledged, wall),
        mb_per_sec: stats::mb_per_sec(c.bytes_acknowledged, wall),
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
    Ok(report.acknowledged == args.messages)
}

fn print_human(r: &Report) {
    let pipelining = match (r.pipelining_allowed, r.pipelined_sessions) {
        (false, _) => "off (--no-pipelining)".to_owned(),
        (true, _) if r.sessions == 0 => "unknown (no session was set up)".to_owned(),
        (true, 0) => "not advertised by server".to_owned(),
        (true, n) => format!("used in {n} of {} sessions", r.sessions),
    };
    println!(
        "poczta-bench smtp -> {}: {} connections, {} msg/session, {}-byte bodies",
        r.addr, r.connections, r.per_connection, r.body_bytes
    );
    println!("  pipelining      {pipelining}");
    println!("  sent            {:>10}", r.sent);
    println!("  acknowledged    {:>10}  (2xx)", r.acknowledged);
    println!("  temp-failed     {:>10}  (4xx)", r.temp_failed);
    println!("  failed          {:>10}  (5xx or I/O)", r.failed);
    println!(
        "  sessions        {:>10}  ({} failed to set up)",
        r.sessions, r.setup_failures
    );
    println!("  wall time       {:>10.3} s", r.wall_secs);
    println!("  throughput      {:>10.1} msg/s", r.msgs_per_sec);
    println!(
        "                  {:>10.2} MB/s  ({} message bytes acknowledged)",
        r.mb_per_sec, r.bytes_acknowledged
    );
    println!("  latency         {}", r.latency.human());
    println!("                  (MAIL sent -> final reply after DATA, acknowledged messages)");
    if r.stopped_by_duration_cap {
        println!(
            "  note: --duration-cap reached; {} of {} messages were started",
            r.sent, r.messages_requested
        );
    }
    if r.aborted_at_hard_stop {
        println!("  note: in-flight work was aborted at the hard stop (cap + 8 x timeout)");
    }
    stats::print_errors(&r.errors);
}

/// An open SMTP session that has been greeted and has said EHLO/HELO.
struct Session {
    conn: Conn,
    pipelining: bool,
}

impl Session {
    async fn open(plan: &Plan) -> Result<Self> {
        let mut conn = Conn::connect(plan.addr, plan.step).await?;
        let greeting = reply(&mut conn, "the greeting").await?;
        if greeting.code != 220 {
            bail!("greeting: {}", greeting.summary());
        }
        let ehlo = command(&mut conn, &format!("EHLO {}\r\n", plan.ehlo), "EHLO").await?;
        let pipelining = if ehlo.is_ok() {
            plan.allow_pipelining && ehlo.ehlo_keywords().any(|k| k == "PIPELINING")
        } else if ehlo.class() == 5 {
            // Pre-ESMTP servers: fall back to HELO, which implies no extensions.
            let helo = command(&mut conn, &format!("HELO {}\r\n", plan.ehlo), "HELO").await?;
            if !helo.is_ok() {
                bail!("HELO: {}", helo.summary());
            }
            false
        } else {
            bail!("EHLO: {}", ehlo.summary());
        };
        Ok(Self { conn, pipelining })
    }

    /// Runs one mail transaction for message `seq`.
    async fn transaction(&mut self, plan: &Plan, seq: u64) -> (Outcome, Next) {
        match self.try_transaction(plan, seq).await {
            Ok(result) => result,
            Err(err) => (Outcome::Failed(format!("{err:#}")), Next::Drop),
        }
    }

    async fn try_transaction(&mut self, plan: &Plan, seq: u64) -> Result<(Outcome, Next)> {
        // `seq` starts at 1 and `to` is never empty (clap supplies a default).
        let to = &plan.to[((seq - 1) % plan.to.len() as u64) as usize];
        let mail = format!("MAIL FROM:<{}>\r\n", plan.from);
        let rcpt = format!("RCPT TO:<{to}>\r\n");
        let started = Instant::now();

        let data_reply = if self.pipelining {
            // RFC 2920: MAIL, RCPT and DATA may go in one write; the replies
            // then come back in order and each must still be checked.
            self.conn.queue(mail.as_bytes()).await?;
            self.conn.queue(rcpt.as_bytes()).await?;
            self.conn.send(b"DATA\r\n").await?;
            let mut replies = Vec::with_capacity(3);
            for stage in ["MAIL", "RCPT", "DATA"] {
                let r = reply(&mut self.conn, &format!("the {stage} reply")).await?;
                if r.code == 421 {
                    // The server is closing: the remaining replies never come.
                    return Ok(refusal_outcome(stage, &r));
                }
                replies.push(r);
            }
            let data_reply = replies.pop().expect("three replies were read");
            let refused = ["MAIL", "RCPT"]
                .into_iter()
                .zip(&replies)
                .find(|(_, r)| !r.is_ok());
            if let Some((stage, refusal)) = refused {
                if data_reply.code == 354 {
                    // The server accepted DATA despite having no valid
                    // recipient; an empty message ends that cleanly.
                    self.conn.send(b".\r\n").await?;
                    reply(&mut self.conn, "the end-of-data reply").await?;
                }
                return Ok(refusal_outcome(stage, refusal));
            }
            data_reply
        } else {
            let mail_reply = command(&mut self.conn, &mail, "the MAIL reply").await?;
            if !mail_reply.is_ok() {
                return Ok(refusal_outcome("MAIL", &mail_reply));
            }
            let rcpt_reply = command(&mut self.conn, &rcpt, "the RCPT reply").await?;
            if !rcpt_reply.is_ok() {
                return Ok(refusal_outcome("RCPT", &rcpt_reply));
            }
            command(&mut self.conn, "DATA\r\n", "the DATA reply").await?
        };
        if data_reply.code != 354 {
            return Ok(refusal_outcome("DATA", &data_reply));
        }

        let headers = Headers {
            from: &plan.from,
            to,
            seq,
            run_id: &plan.run_id,
            domain: "poczta-bench.invalid",
        }
        .render(SystemTime::now());
        self.conn.queue(&headers).await?;
        self.conn.queue(&plan.stuffed_body).await?;
        self.conn.send(b".\r\n").await?;
        let final_reply = reply(&mut self.conn, "the end-of-data reply").await?;
        if final_reply.is_ok() {
            let bytes = (headers.len() + plan.body_len) as u64;
            let latency = started.elapsed();
            return Ok((Outcome::Acked { latency, bytes }, Next::Reuse));
        }
        // After the final reply the transaction is over either way: no RSET.
        let (outcome, next) = refusal_outcome("end of DATA", &final_reply);
        Ok((outcome, if next == Next::Drop { next } else { Next::Reuse }))
    }

    async fn reset(&mut self) -> Result<()> {
        let r = command(&mut self.conn, "RSET\r\n", "the RSET reply").await?;
        if !r.is_ok() {
            bail!("RSET: {}", r.summary());
        }
        Ok(())
    }

    /// Polite goodbye; errors don't matter since the session is over anyway.
    async fn quit(mut self) {
        let _ = command(&mut self.conn, "QUIT\r\n", "the QUIT reply").await;
    }
}

/// Maps a negative reply at `stage` to an outcome and what to do next.
fn refusal_outcome(stage: &str, refusal: &Reply) -> (Outcome, Next) {
    let text = format!("{stage}: {}", refusal.summary());
    // 421 means the server is closing the channel (RFC 5321 §3.8).
    let next = if refusal.code == 421 {
        Next::Drop
    } else {
        Next::Reset
    };
    let outcome = match refusal.class() {
        4 => Outcome::TempFailed(text),
        _ => Outcome::Failed(text),
    };
    (outcome, next)
}

async fn reply(conn: &mut Conn, what: &str) -> Result<Reply> {
    let limit = conn.timeout;
    timed(limit, what, read_reply(&mut conn.reader)).await
}

async fn command(conn: &mut Conn, line: &str, what: &str) -> Result<Reply> {
    conn.send(line.as_bytes()).await?;
    reply(conn, what).await
}

/// One client task: claims messages and delivers them over sessions of
/// `per_connection` messages each.
async fn worker(plan: Arc<Plan>) {
    let mut session: Option<Session> = None;
    let mut in_session = 0;
    while let Some(seq) = plan.claim() {
        plan.record(|c| c.sent += 1);
        let mut current = match session.take() {
            Some(s) => s,
            None => match Session::open(&plan).await {
                Ok(s) => {
                    let pipelined = s.pipelining;
                    plan.record(|c| {
                        c.sessions += 1;
                        c.pipelined_sessions += u64::from(pipelined);
                    });
                    in_session = 0;
                    s
                }
                Err(err) => {
                    plan.record(|c| {
                        c.setup_failures += 1;
                        c.failed += 1;
                        c.errors.add(format!("session setup: {err:#}"));
                    });
                    continue;
                }
            },
        };
        let (outcome, next) = current.transaction(&plan, seq).await;
        plan.record(|c| match outcome {
            Outcome::Acked { latency, bytes } => {
                c.acknowledged += 1;
                c.bytes_acknowledged += bytes;
                c.latencies_us.push(stats::micros(latency));
            }
            Outcome::TempFailed(e) => {
                c.temp_failed += 1;
                c.errors.add(e);
            }
            Outcome::Failed(e) => {
                c.failed += 1;
                c.errors.add(e);
            }
        });
        in_session += 1;
        let keep = match next {
            Next::Drop => false,
            Next::Reuse => true,
            Next::Reset => match current.reset().await {
                Ok(()) => true,
                Err(err) => {
                    plan.record(|c| c.errors.add(format!("{err:#}")));
                    false
                }
            },
        };
        if keep && in_session < plan.per_connection {
            session = Some(current);
        } else if keep {
            current.quit().await;
        }
    }
    if let Some(s) = session {
        s.quit().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_arguments_are_checked() {
        assert!(parse_mailbox("a@b.test").is_ok());
        assert!(parse_mailbox("a@b\r\nRCPT TO:<x@y>").is_err());
        assert!(parse_mailbox("<a@b>").is_err());
        assert!(parse_mailbox("").is_err());
    }

    #[test]
    fn size_one_is_refused() {
        assert!(parse_size("1").is_err());
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
    }

    #[test]
    fn refusals_are_classified() {
        let r = |code| Reply {
            code,
            lines: vec!["no".into()],
        };
        assert!(matches!(
            refusal_outcome("RCPT", &r(450)),
            (Outcome::TempFailed(_), Next::Reset)
        ));
        assert!(matches!(
            refusal_outcome("MAIL", &r(550)),
            (Outcome::Failed(_), Next::Reset)
        ));
        assert!(matches!(
            refusal_outcome("MAIL", &r(421)),
            (Outcome::TempFailed(_), Next::Drop)
        ));
    }
}
