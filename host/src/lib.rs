//! Poczta: a mail server whose policy runs in sandboxed WebAssembly plugins.
//!
//! # Layout
//!
//! - [`smtp`] and [`pop3`]: each a sans-IO core (command parser, replies,
//!   session state machine: bytes in, events out) plus a tokio driver
//!   (`conn`) that performs what the session asks for.
//! - [`store`]: the redb database (users, messages, maildrops) and the
//!   committer, the single writer that makes acceptance durable with group
//!   commit.
//! - [`server`]: `run(config, shutdown)`: listeners, connection limits,
//!   bounded graceful shutdown. [`listener`] is the shared accept loop.
//! - [`config`]: the TOML file resolved into typed values.
//! - [`auth`]: argon2id password hashes.
//!
//! Dependencies point one way: `server` → `smtp`/`pop3` drivers → `store`,
//! `auth`, `config`. The sans-IO cores import nothing of tokio or redb.

pub mod admin;
pub mod auth;
pub mod clock;
pub mod config;
pub mod dns;
pub mod headers;
pub mod listener;
pub mod plugin;
pub mod policy;
pub mod pop3;
pub mod queue;
pub mod sasl;
pub mod server;
pub mod shared;
pub mod smtp;
pub mod store;
pub mod tls;

pub use config::{Config, ConfigError};
pub use server::{ServerError, run};
