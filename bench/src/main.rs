//! `poczta-bench`: a load generator for SMTP and POP3 servers on loopback.
//!
//! It speaks plain SMTP/POP3 and knows nothing about Poczta's internals, so
//! the same run can be pointed at Poczta, Postfix or Dovecot and compared.
//! Every subcommand is bounded in both count and time, and refuses any
//! address that is not loopback.

mod dns;
mod idle;
mod message;
mod net;
mod pop3;
mod reply;
mod smtp;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Load generator for SMTP and POP3 servers running on this machine.
///
/// Works against any standards-conforming server (Poczta, Postfix, Dovecot,
/// a Python sink...). Only loopback addresses (127.0.0.0/8, [::1],
/// localhost) are accepted. Every run stops by itself: counts are fixed and
/// each network wait has a timeout.
///
/// Exit status: 0 when every message/session succeeded, 1 when some failed
/// (the report is still printed), 2 for bad arguments or setup errors.
#[derive(Debug, Parser)]
#[command(name = "poczta-bench", version, max_term_width = 100)]
struct Cli {
    /// Tokio worker threads for the client. Keep it low: on a small machine
    /// the benchmark competes with the server for the same cores.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,

    #[command(subcommand)]
    command: Command,
}

/// One subcommand per kind of measurement; new ones (e.g. config reload
/// latency) slot in here with their own module.
#[derive(Debug, Subcommand)]
enum Command {
    /// Send messages over SMTP and measure throughput and per-message latency.
    ///
    /// Example: poczta-bench smtp --addr 127.0.0.1:2525 --messages 10000
    /// --size 4096 --connections 8 --to alice@example.test
    Smtp(smtp::SmtpArgs),
    /// Log in over POP3 and RETR every message; measure retrieval rate and latency.
    ///
    /// Example: poczta-bench pop3 --addr 127.0.0.1:2110 --user alice --pass secret
    Pop3(pop3::Pop3Args),
    /// Hold many idle SMTP connections open and measure the server's memory per connection.
    ///
    /// Example: poczta-bench idle --addr 127.0.0.1:2525 --connections 1000 --pid $(pidof poczta)
    Idle(idle::IdleArgs),
    /// Answer DNS on loopback UDP: NXDOMAIN for every name but the A records
    /// given, for measuring plugins that use DNS without the network.
    ///
    /// Example: poczta-bench dns --listen 127.0.0.1:5353 --a 2.0.0.127.bl.test=127.0.0.2
    Dns(dns::DnsArgs),
}

/// Time bounds shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Seconds to wait for any single network step (connect, one reply, one
    /// write) before counting it as failed.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,

    /// Stop starting new work after this many seconds; work already in
    /// flight finishes (each step still bounded by --timeout).
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration_cap: u64,
}

impl Limits {
    /// --timeout as a `Duration`.
    pub fn step(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// --duration-cap as a `Duration`.
    pub fn cap(&self) -> Duration {
        Duration::from_secs(self.duration_cap)
    }

    /// Absolute limit for a whole run: the cap plus room for the work in
    /// flight at the cap to finish or time out. Past this, tasks are aborted,
    /// so even a server that trickles bytes can't keep a run alive.
    pub fn hard_stop(&self) -> Duration {
        self.cap() + self.step() * 8
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(cli.threads))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("poczta-bench: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Smtp(args) => smtp::run(args).await,
            Command::Pop3(args) => pop3::run(args).await,
            Command::Idle(args) => idle::run(args).await,
            Command::Dns(args) => dns::run(args).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("poczta-bench: {err:#}");
            ExitCode::from(2)
        }
    }
}
