//! End-to-end tests: the real `poczta` binary on loopback, driven by
//! independent clients (lettre, Python smtplib/poplib, curl, swaks, and a raw
//! socket client for byte-level probes). No wall-clock assertions; every wait
//! is bounded by `harness::WAIT`.

mod harness;

/// Relay and abuse batteries: open-relay probes on every listener, SMTP
/// smuggling, TLS injection, length bombs, garbage, connection limits,
/// brute force.
mod abuse;
/// Command line and configuration: exit codes, help, user management.
mod cli;
/// Crash safety: kill -9 after 250, disconnects mid-DATA.
mod crash;
/// DNS through the host, answered by a hickory-server zone on loopback.
mod dns;
/// The fuzz target bodies (fuzz/src/bodies.rs), compiled here so that
/// `cargo test` replays the committed corpora (fuzz/corpus) without nightly.
#[path = "../../fuzz/src/bodies.rs"]
mod fuzz_bodies;
/// Hostile plugins: each failure mode is contained, logged and answered
/// with the plugin's on_error while other sessions are served.
mod hostile;
/// Outbound delivery: the queue, MX routing, retries, bounces, gateway.
mod outbound;
/// The plugin runtime end to end.
mod plugins;
/// The policy plugins dnsbl, antivirus and bulk-limit through the server.
mod policy_av;
/// The policy plugins in Python (greylisting) and JavaScript (URI blocklists).
mod policy_lang;
/// The spam-rules and forward policy plugins: scores, Bayes training, aliases, lists, loops.
mod policy_spam;
/// POP3 retrieval, deletion rules, locking, login failures.
mod pop3;
/// The quick start's plugin suite as one chain over the sample messages.
mod quickstart;
/// SMTP acceptance, limits, hostile input, concurrency.
mod smtp;
/// TLS (STARTTLS, STLS, implicit) and SMTP AUTH on submission.
mod tls;
