//! The command line: clap definitions and their help texts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Poczta: a mail server (SMTP in, POP3 out, durable redb mailboxes) whose
/// policy runs in sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "poczta", version, propagate_version = true)]
#[command(after_help = "Quick start: `poczta serve` runs on the embedded default \
(domain `localhost`, SMTP 127.0.0.1:2525, submission 127.0.0.1:2587 (STARTTLS) and \
127.0.0.1:2465 (implicit TLS), POP3 127.0.0.1:2110 (STLS) and POP3S 127.0.0.1:2995, \
data in ./poczta-data, a self-signed certificate generated there). Add a mailbox with `poczta user add alice@localhost`.\n\
Logging: set RUST_LOG (e.g. RUST_LOG=debug); logs go to stderr.")]
pub struct Cli {
    /// Config file (TOML). Without it, the embedded default is used.
    /// (`serve` also takes it after the command: `poczta serve --config FILE`.)
    #[arg(long, short = 'c', value_name = "FILE")]
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
    /// and exits 0. SIGHUP reloads the plugins (as does changing a plugin
    /// file or the config file).
    Serve {
        /// Config file (TOML). Without it, the embedded default is used.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Manage mailbox users (works whether or not the server is running).
    #[command(subcommand)]
    User(UserCommand),
    /// Inspect the outbound queue, retry or delete queued messages
    /// (through the running server's admin socket, or the database when
    /// the server is stopped).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Inspect and try out WebAssembly plugins without a server.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// `poczta queue …`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// One line per queued message: queue id, age, sender, and each
    /// pending recipient with its attempts and last reply.
    List {
        /// Print the records as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one queued message, with its header section.
    Show {
        /// The queue id (as `queue list` prints it).
        id: String,
    },
    /// Try a message's pending recipients now (`all`: every message).
    Retry {
        /// The queue id, or `all`.
        id: String,
    },
    /// Remove a message from the queue without a bounce.
    Delete {
        /// The queue id.
        id: String,
    },
}

/// `poczta plugin …`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Check that FILE is a Poczta plugin: prints its name, version, hooks
    /// and the WIT package it targets; exits 2 with the reason if not.
    Check {
        /// The component (.wasm).
        file: PathBuf,
    },
    /// Run a plugin's hooks on a message, as the server would, and print
    /// the verdicts, the headers it adds and the score. Every capability is
    /// granted; the key-value store is in memory.
    Run(PluginRunArgs),
    /// Train a plugin's classifier (spam-rules' Bayes) from folders of
    /// labelled .eml files, into the server's store. Each message goes
    /// through the plugin's hooks with `"bayes_train": "spam"` or `"ham"`
    /// added to its config; the kv writes land in one transaction at the
    /// end (nothing is written if a message fails). Works while the server
    /// runs.
    Train(PluginTrainArgs),
}

/// Arguments of `poczta plugin train`.
#[derive(Debug, Args)]
pub struct PluginTrainArgs {
    /// The server's config file (default: the global --config, else the
    /// embedded default).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The `[[plugins]]` entry to train, by its `name`.
    #[arg(long, value_name = "NAME")]
    pub plugin: String,
    /// A folder of spam .eml files; repeat for several.
    #[arg(long, value_name = "DIR")]
    pub spam: Vec<PathBuf>,
    /// A folder of ham .eml files; repeat for several.
    #[arg(long, value_name = "DIR")]
    pub ham: Vec<PathBuf>,
}

/// Arguments of `poczta plugin run`.
#[derive(Debug, Args)]
pub struct PluginRunArgs {
    /// The component (.wasm).
    pub file: PathBuf,
    /// The message (RFC 5322 .eml file).
    #[arg(long, value_name = "FILE")]
    pub eml: PathBuf,
    /// Envelope sender (empty for the null sender).
    #[arg(long, default_value = "sender@example.org", value_name = "ADDR")]
    pub from: String,
    /// Envelope recipient; repeat for several.
    #[arg(long, value_name = "ADDR", default_values_t = vec!["rcpt@example.test".to_string()])]
    pub to: Vec<String>,
    /// Client IP address.
    #[arg(long, default_value = "192.0.2.1")]
    pub ip: std::net::IpAddr,
    /// HELO/EHLO name.
    #[arg(long, default_value = "client.example.org")]
    pub helo: String,
    /// The plugin's config, as JSON (what `config = {…}` gives it in the server).
    #[arg(long = "config", value_name = "JSON", default_value = "{}")]
    pub plugin_config: String,
    /// Print one JSON object instead of a human-readable report.
    #[arg(long)]
    pub json: bool,
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
