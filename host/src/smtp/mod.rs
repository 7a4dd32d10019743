//! The SMTP server core, sans-IO: bytes in, events out.
//!
//! # The split
//!
//! Everything here is pure: no sockets, no clocks, no tokio, no storage.
//! [`session::Session`] takes the client's bytes and hands back
//! [`session::Event`]s: replies to write, [`session::Ask`]s for decisions it
//! cannot make itself (policy, routing, storing a message), and when to close.
//! The driver next to this module performs them. The protocol (RFC 5321 and
//! the advertised extensions) can therefore be tested exhaustively with plain
//! byte strings, split at any point, without a network.
//!
//! - [`reply`]: replies and their wire form; every reply text lives there.
//! - [`command`]: the command-line parser.
//! - [`data`]: the DATA (dot-unstuffing, smuggling-safe) and BDAT readers.
//! - [`session`]: the state machine, STARTTLS and AUTH included.
//! - [`received`]: the `Received:` and `Return-Path:` header builders, with
//!   the time passed in.
//! - `conn`: the tokio driver, the one module here that does I/O.
//!
//! # The dependency rule
//!
//! The sans-IO modules (all but `conn`) use only `std`, `thiserror`, each
//! other (through `super::`) and the pure [`crate::sasl`] (SASL decoding
//! with `base64`, shared with POP3). Nothing in them may import the driver, the store, the
//! configuration, a TLS library or an async runtime: the dependencies point
//! from the driver to this core, never back. TLS reaches the session as
//! plain facts ([`TlsInfo`]) and one event ([`Event::StartTls`]).

pub mod client;
pub mod command;
pub mod conn;
pub mod data;
pub mod received;
pub mod reply;
pub mod session;

pub use command::{Address, Body, Command, MailParams, ParseError, RcptParams, ReversePath, parse_command};
pub use data::{BdatReader, DataReader};
pub use received::{ReceivedInfo, received_header, return_path_header, rfc5322_date};
pub use reply::{EnhancedCode, Reply};
pub use session::{Answer, Ask, Envelope, Event, MAX_SASL_LINE, Session, SessionConfig, TlsInfo};
