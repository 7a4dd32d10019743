//! `idle` subcommand: hold many greeted SMTP connections open and measure
//! how much resident memory the server spends per connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::Limits;
use crate::net::{self, Conn, timed};
use crate::reply::read_reply;
use crate::stats::{ErrorCount, ErrorTally, print_errors};

/// Connections being set up at the same time. Opening 10 000 at once would
/// measure the server's accept backlog rather than its idle cost.
const OPEN_CONCURRENCY: usize = 64;

/// File descriptors the process needs besides the connections themselves
/// (stdio, the runtime's epoll and wakeup fds, resolver...).
const FD_HEADROOM: u64 = 64;

/// Arguments of `poczta-bench idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// SMTP server as HOST:PORT. Must be loopback.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:2525")]
    addr: String,

    /// Number of idle connections to open and hold. Each needs one file
    /// descriptor here and one in the server: raise `ulimit -n` for big values.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    connections: u64,

    /// Server process id. When given, its VmRSS is read from
    /// /proc/PID/status before opening and at the end of the hold, and the
    /// difference per connection is reported.
    #[arg(long)]
    pid: Option<u32>,

    /// Seconds to hold the connections open once they are all set up.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    hold: u64,

    /// Name the client gives in EHLO.
    #[arg(long, value_name = "NAME", default_value = "bench.localhost")]
    ehlo: String,

    /// --duration-cap bounds the opening phase here.
    #[command(flatten)]
    limits: Limits,

    /// Print one JSON object instead of the human-readable text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    command: &'static str,
    addr: String,
    connections_requested: u64,
    opened: u64,
    open_failed: u64,
    open_secs: f64,
    hold_secs: u64,
    still_open_at_end: u64,
    pid: Option<u32>,
    rss_before_kib: Option<u64>,
    rss_after_kib: Option<u64>,
    rss_delta_kib: Option<i64>,
    rss_per_connection_kib: Option<f64>,
    errors: Vec<ErrorCount>,
}

/// Runs the idle-connection test; `Ok(true)` when every connection opened
/// and was still answering at the end.
pub async fn run(args: IdleArgs) -> Result<bool> {
    let addr = net::resolve_loopback(&args.addr).await?;
    check_fd_limit(args.connections)?;
    let rss_before = args.pid.map(read_rss_kib).transpose()?;

    let started = Instant::now();
    let (conns, open_failed, mut errors) = open_all(&args, addr).await?;
    let open_secs = started.elapsed().as_secs_f64();
    let opened = conns.len() as u64;
    if !args.json {
        println!(
            "opened {opened} of {} connections in {open_secs:.2} s; holding for {} s...",
            args.connections, args.hold
        );
    }

    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    // Read before closing anything: the point is the cost of open connections.
    let rss_after = args.pid.map(read_rss_kib).transpose()?;
    let still_open = quit_all(conns, args.limits.step(), &mut errors).await;

    let delta = rss_before
        .zip(rss_after)
        .map(|(before, after)| after as i64 - before as i64);
    let report = Report {
        command: "idle",
        addr: addr.to_string(),
        connections_requested: args.connections,
        opened,
        open_failed,
        open_secs,
        hold_secs: args.hold,
        still_open_at_end: still_open,
        pid: args.pid,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        rss_delta_kib: delta,
        rss_per_connection_kib: delta.filter(|_| opened > 0).map(|d| d as f64 / opened as f64),
        errors: errors.into_list(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_human(&report);
    }
    Ok(open_failed == 0 && still_open == opened)
}

fn print_human(r: &Report) {
    println!("poczta-bench idle -> {}", r.addr);
    println!(
        "  opened          {:>10} of {} ({} failed) in {:.2} s",
        r.opened, r.connections_requested, r.open_failed, r.open_secs
    );
    println!(
        "  still open      {:>10} after {} s (answered QUIT)",
        r.still_open_at_end, r.hold_secs
    );
    match (r.pid, r.rss_before_kib, r.rss_after_kib, r.rss_delta_kib) {
        (Some(pid), Some(before), Some(after), Some(delta)) => {
            println!("  server RSS      {before} KiB -> {after} KiB (pid {pid}), delta {delta} KiB");
            if let Some(per) = r.rss_per_connection_kib {
                println!("  per connection  {per:>10.2} KiB");
            }
        }
        _ => println!("  server RSS      not measured (pass --pid PID)"),
    }
    print_errors(&r.errors);
}

/// Fails early, with the fix spelled out, when the soft descriptor limit is
/// too low; the alternative is hundreds of confusing EMFILE errors.
fn check_fd_limit(connections: u64) -> Result<()> {
    let needed = connections + FD_HEADROOM;
    let Some((Some(soft), hard)) = net::nofile_limits() else {
        return Ok(()); // unlimited or unknown: let EMFILE handling speak if needed
    };
    if soft >= needed {
        return Ok(());
    }
    let hard_text = hard.map_or("unlimited".to_owned(), |h| h.to_string());
    match hard {
        Some(hard) if hard < needed => bail!(
            "{connections} connections need about {needed} open files, but the limit is \
             {soft} (hard limit {hard_text}). Raise the hard limit as root (e.g. \
             `ulimit -Hn {needed}` or limits.conf), then run `ulimit -n {needed}` in this shell."
        ),
        _ => bail!(
            "{connections} connections need about {needed} open files, but the soft limit is \
             {soft} (hard limit {hard_text}). Run `ulimit -n {needed}` in this shell and try again."
        ),
    }
}

/// Opens, greets and EHLOs every connection, at most [`OPEN_CONCURRENCY`] at a time.
async fn open_all(args: &IdleArgs, addr: std::net::SocketAddr) -> Result<(Vec<Conn>, u64, ErrorTally)> {
    let step = args.limits.step();
    let gate = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let ehlo = Arc::new(format!("EHLO {}\r\n", args.ehlo));
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections {
        let gate = Arc::clone(&gate);
        let ehlo = Arc::clone(&ehlo);
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            open_one(addr, step, &ehlo).await
        });
    }

    let mut conns = Vec::with_capacity(args.connections as usize);
    let mut failed = 0u64;
    let mut errors = ErrorTally::default();
    let mut emfile = false;
    let collected = tokio::time::timeout(args.limits.cap(), async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(conn)) => conns.push(conn),
                Ok(Err(err)) => {
                    emfile |= net::is_emfile(&err);
                    failed += 1;
                    errors.add(format!("{err:#}"));
                }
                Err(err) => {
                    failed += 1;
                    errors.add(format!("task died: {err}"));
                }
            }
        }
    })
    .await;
    if collected.is_err() {
        // Whatever is still connecting at the cap counts as failed.
        failed += tasks.len() as u64;
        errors.add("not set up before --duration-cap".to_owned());
        tasks.abort_all();
    }
    if emfile {
        bail!(
            "ran out of file descriptors (EMFILE) after {} connections; \
             raise the limit with `ulimit -n` (see --help) and try again",
            conns.len()
        );
    }
    Ok((conns, failed, errors))
}

async fn open_one(addr: std::net::SocketAddr, step: Duration, ehlo: &str) -> Result<Conn> {
    let mut conn = Conn::connect(addr, step).await?;
    let greeting = timed(step, "the greeting", read_reply(&mut conn.reader)).await?;
    if greeting.code != 220 {
        bail!("greeting: {}", greeting.summary());
    }
    conn.send(ehlo.as_bytes()).await?;
    let reply = timed(step, "the EHLO reply", read_reply(&mut conn.reader)).await?;
    if !reply.is_ok() {
        bail!("EHLO: {}", reply.summary());
    }
    Ok(conn)
}

/// Says QUIT on every connection and counts those that still answered;
/// a server may have dropped idle clients during the hold.
async fn quit_all(conns: Vec<Conn>, step: Duration, errors: &mut ErrorTally) -> u64 {
    let gate = Arc::new(Semaphore::new(OPEN_CONCURRENCY * 4));
    let mut tasks = JoinSet::new();
    for mut conn in conns {
        let gate = Arc::clone(&gate);
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            conn.send(b"QUIT\r\n").await?;
            let reply = timed(step, "the QUIT reply", read_reply(&mut conn.reader)).await?;
            anyhow::ensure!(reply.code == 221, "QUIT: {}", reply.summary());
            Ok::<_, anyhow::Error>(())
        });
    }
    let mut alive = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => alive += 1,
            Ok(Err(err)) => errors.add(format!("at end of hold: {err:#}")),
            Err(err) => errors.add(format!("task died: {err}")),
        }
    }
    alive
}

/// Resident set size of `pid` in KiB, from /proc/PID/status.
fn read_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {path} (is --pid right?)"))?;
    parse_vmrss(&text).with_context(|| format!("no VmRSS line in {path}"))
}

/// The `VmRSS:` value (always reported in kB by Linux) from a status file.
fn parse_vmrss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmrss_is_parsed() {
        let status = "Name:\tpoczta\nVmPeak:\t  20000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vmrss(status), Some(12345));
        assert_eq!(parse_vmrss("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(read_rss_kib(std::process::id()).unwrap() > 0);
    }
}
