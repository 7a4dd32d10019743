//! The POP3 server protocol core (RFC 1939), without I/O.
//!
//! Supported extensions: CAPA and response codes (RFC 2449), SASL AUTH with
//! the PLAIN mechanism (RFC 5034, RFC 4616), AUTH-RESP-CODE (RFC 3206),
//! TOP, UIDL, PIPELINING and STLS (RFC 2595). APOP is refused.
//!
//! This module is sans-IO: it parses bytes and produces bytes and requests,
//! and owns no socket, clock, store or TLS library (TLS is one event,
//! [`Event::StartTls`]; SASL decoding is the pure [`crate::sasl`]). A
//! driver feeds it what it reads, writes what it is told to, performs its
//! [`Ask`]s against the store and enforces timeouts. That split keeps
//! every protocol decision testable byte for byte, and lets the driver
//! change (tokio, tests, fuzzing) without touching the protocol.
//!
//! - [`command`]: one command line to a [`Command`].
//! - [`response`]: [`Response`] and message serialisation.
//! - [`session`]: the per-connection state machine, [`Session`].
#![warn(missing_docs)]

pub mod command;
pub mod conn;
pub mod response;
pub mod session;

pub use command::{Command, ParseError, parse_command};
pub use response::{Response, write_message};
pub use session::{Answer, Ask, Event, MaildropEntry, Session, SessionConfig};
