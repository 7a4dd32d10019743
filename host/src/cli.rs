//! The command line: clap definitions and their help texts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Poczta: a mail server (SMTP in, POP3 out, durable redb mailboxes) whose
/// policy runs in sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "poczta", version, propagate_version = true)]
#[command(after_help = "Quick start: `poczta serve` runs on the embedded default \
(domain `localhost`, SMTP 127.0.0.1:2525, submission 127.0.0.1:2587, POP3 127.0.0.1:2110, \
data in ./poczta-data). Add a mailbox with `poczta user add alice@localhost`.\n\
Logging: set RUST_LOG (e.g. RUST_LOG=debug); logs go to stderr.")]
pub struct Cli {
    /// Config file (TOML). Without it, the embedded default is used.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server in the foreground until SIGTERM or SIGINT.
    ///
    /// Logs go to stderr. On SIGTERM/SIGINT the server stops accepting,
    /// finishes the sessions in flight (bounded by server.shutdown_timeout)
    /// and exits 0.
    Serve,
    /// Manage mailbox users (works whether or not the server is running).
    #[command(subcommand)]
    User(UserCommand),
}

/// `poczta user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a mailbox user. The domain must be one of server.domains.
    Add(PasswordArgs),
    /// Print every user, one address a line.
    List,
    /// Delete a user and every message in their mailbox.
    Del {
        /// The user's address, e.g. alice@example.test.
        address: String,
    },
    /// Change a user's password.
    Passwd(PasswordArgs),
}

/// An address and where its password comes from.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// The user's address, e.g. alice@example.test.
    pub address: String,
    /// Read the password from the first line of standard input (for scripts:
    /// `printf 'secret\n' | poczta user add alice@localhost --password-stdin`).
    /// Without it, the password is prompted for on the terminal (it echoes).
    #[arg(long)]
    pub password_stdin: bool,
}
