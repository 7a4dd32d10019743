//! The POP3 session state machine (RFC 1939 §3–§6).
//!
//! The session never touches the network, the clock or the store: the
//! driver [`feed`](Session::feed)s it bytes, [`poll`](Session::poll)s it for
//! [`Event`]s, performs each [`Ask`] and hands the result back through
//! [`answer`](Session::answer).
//!
//! STLS (RFC 2595 §4) is an [`Event::StartTls`] after `+OK Begin TLS
//! negotiation`: the session drops whatever was pipelined behind the STLS
//! line (plaintext a man in the middle could have injected, CVE-2011-0411),
//! reads nothing until the driver reports the handshake with
//! [`Session::tls_established`], and from then on allows clear-text
//! passwords. A POP3S connection (port 995) starts secure with
//! [`SessionConfig::implicit_tls`].

use std::collections::VecDeque;
use std::fmt;

use super::command::{Command, parse_command};
use super::response::{Response, write_message};
use crate::sasl::{self, SaslError};

/// The name in the greeting, the sign-off and CAPA's IMPLEMENTATION line.
const SERVER_NAME: &str = "Poczta";

/// The one SASL mechanism on offer.
const PLAIN: &str = "PLAIN";

/// Per-connection limits and policy, set by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The longest accepted line, in octets including its CRLF. RFC 2449 §4
    /// caps command lines at 255 octets, but the default is 512: long
    /// passwords (PASS takes its whole argument verbatim) and AUTH PLAIN
    /// responses, which base64 inflates by a third, do not fit in 255. A
    /// longer line is discarded up to its end and answered with
    /// `-ERR Line too long`, so memory stays bounded by this value.
    pub max_line_length: usize,
    /// How many `-ERR` responses end the session: the one that reaches this
    /// count is followed by `-ERR Too many errors, closing` and
    /// [`Event::Close`]. Failed logins count, which bounds password guesses
    /// per connection. 0 behaves like 1.
    pub max_errors: u32,
    /// Whether USER/PASS and AUTH PLAIN are offered on a connection that
    /// is not under TLS. The driver sets it when the connection is on
    /// loopback, or when the configuration explicitly allows clear-text
    /// passwords. Under TLS (STLS or `implicit_tls`) they are always
    /// offered.
    pub plaintext_allowed: bool,
    /// Whether the driver can upgrade this connection with STLS
    /// (RFC 2595). When set, CAPA lists STLS and STLS is accepted until the
    /// connection is secure.
    pub tls_available: bool,
    /// The connection is under TLS from its first byte (POP3S, port 995,
    /// RFC 8314 §3.3): secure from the start, STLS never offered. The
    /// driver runs the handshake before sending the greeting.
    pub implicit_tls: bool,
}

impl Default for SessionConfig {
    /// 512-octet lines, 10 errors, and no clear-text login until the driver
    /// has decided the connection is safe for it.
    fn default() -> Self {
        SessionConfig {
            max_line_length: 512,
            max_errors: 10,
            plaintext_allowed: false,
            tls_available: false,
            implicit_tls: false,
        }
    }
}

/// One message of the maildrop as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildropEntry {
    /// The store's identifier for the message; opaque to the session, which
    /// only hands it back in [`Ask::Fetch`] and [`Ask::Commit`].
    pub key: u64,
    /// The UIDL string: unique in the maildrop and stable across sessions
    /// (RFC 1939 §7: 1 to 70 printable ASCII characters).
    pub uid: String,
    /// The size in octets that LIST and STAT report.
    pub size: u64,
}

/// What the driver must do next.
#[derive(Clone, PartialEq, Eq)]
pub enum Event {
    /// Write these bytes to the client: one complete, serialised response.
    Respond(Vec<u8>),
    /// Perform this request, then call [`Session::answer`]. The session
    /// makes no progress until it is answered.
    Ask(Ask),
    /// Flush the `+OK` written before it, run the server side of a TLS
    /// handshake on the connection, then call
    /// [`Session::tls_established`]; `poll` returns `None` and `feed` drops
    /// its bytes until then. If the handshake fails, close the connection.
    StartTls,
    /// Close the connection once everything written so far is flushed.
    /// Unless a [`Ask::Commit`] preceded it, no deletion is applied and the
    /// driver only releases the maildrop lock, if it holds one.
    Close,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A whole message would drown a test failure or a log line;
            // short responses are the ones worth reading.
            Event::Respond(bytes) if bytes.len() <= 1024 => f
                .debug_tuple("Respond")
                .field(&format_args!("\"{}\"", bytes.escape_ascii()))
                .finish(),
            Event::Respond(bytes) => f
                .debug_tuple("Respond")
                .field(&format_args!("<{} bytes>", bytes.len()))
                .finish(),
            Event::Ask(ask) => f.debug_tuple("Ask").field(ask).finish(),
            Event::StartTls => f.write_str("StartTls"),
            Event::Close => f.write_str("Close"),
        }
    }
}

/// A request from the session to the driver.
#[derive(Clone, PartialEq, Eq)]
pub enum Ask {
    /// USER+PASS or AUTH PLAIN completed: verify the password and lock the
    /// maildrop, then answer [`Answer::LoginOk`], [`Answer::LoginFailed`],
    /// [`Answer::InUse`] or [`Answer::LoginUnavailable`]. For AUTH PLAIN the
    /// session has already checked that the authorization identity is empty
    /// or equal to `user`, and failed the login itself otherwise.
    Login {
        /// The user name (USER argument or SASL authentication identity).
        user: String,
        /// The password, never logged (`Debug` redacts it).
        password: String,
    },
    /// RETR or TOP: fetch the bytes of `key`, then answer
    /// [`Answer::Message`] or [`Answer::FetchFailed`].
    Fetch {
        /// The message's [`MaildropEntry::key`].
        key: u64,
        /// `Some(n)` for `TOP msg n`. Informational: the driver may fetch
        /// the whole message, the session cuts it.
        top_lines: Option<u32>,
    },
    /// QUIT in TRANSACTION (RFC 1939 §6, UPDATE state): delete these keys
    /// atomically and release the lock, then answer [`Answer::Committed`]
    /// or [`Answer::CommitFailed`]. Asked even when `delete` is empty,
    /// because the lock must be released either way.
    Commit {
        /// Keys of the messages marked deleted, in message-number order.
        delete: Vec<u64>,
    },
}

impl fmt::Debug for Ask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ask::Login { user, .. } => f
                .debug_struct("Login")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Ask::Fetch { key, top_lines } => f
                .debug_struct("Fetch")
                .field("key", key)
                .field("top_lines", top_lines)
                .finish(),
            Ask::Commit { delete } => f.debug_struct("Commit").field("delete", delete).finish(),
        }
    }
}

/// The driver's reply to an [`Ask`].
#[derive(Clone, PartialEq, Eq)]
pub enum Answer {
    /// Login verified and maildrop locked; its messages in order (message
    /// number 1 is the first entry).
    LoginOk(Vec<MaildropEntry>),
    /// Wrong password or unknown user: deliberately one answer, so the
    /// client cannot tell them apart.
    LoginFailed,
    /// The credentials were right but another session holds the lock.
    InUse,
    /// The store could not verify or lock (`-ERR [SYS/TEMP]`).
    LoginUnavailable,
    /// The bytes of the fetched message, in wire (CRLF) form.
    Message(Vec<u8>),
    /// The message could not be read.
    FetchFailed,
    /// The deletions were applied and the lock released.
    Committed,
    /// The deletions could not all be applied.
    CommitFailed,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::LoginOk(entries) => f.debug_tuple("LoginOk").field(entries).finish(),
            Answer::LoginFailed => f.write_str("LoginFailed"),
            Answer::InUse => f.write_str("InUse"),
            Answer::LoginUnavailable => f.write_str("LoginUnavailable"),
            Answer::Message(bytes) => f
                .debug_tuple("Message")
                .field(&format_args!("<{} bytes>", bytes.len()))
                .finish(),
            Answer::FetchFailed => f.write_str("FetchFailed"),
            Answer::Committed => f.write_str("Committed"),
            Answer::CommitFailed => f.write_str("CommitFailed"),
        }
    }
}

/// One POP3 connection's protocol state, from greeting to close.
///
/// Driver loop: write [`greeting`](Self::greeting); then repeatedly
/// [`poll`](Self::poll): write each [`Event::Respond`], perform each
/// [`Event::Ask`] and [`answer`](Self::answer) it, stop at
/// [`Event::Close`]; on `None`, flush and read, then [`feed`](Self::feed)
/// what was read. Reading only when `poll` returns `None` keeps the input
/// buffer to one read plus one partial line.
pub struct Session {
    config: SessionConfig,
    state: State,
    input: LineReader,
    events: VecDeque<Event>,
    user: Option<String>,
    errors: u32,
    retrieved: u32,
    deleted: u32,
    /// Whether the connection is under TLS (after STLS, or implicit).
    secure: bool,
    /// [`Event::StartTls`] was queued and the handshake is not reported
    /// yet: nothing is read meanwhile.
    starting_tls: bool,
}

/// RFC 1939's states, each holding the data that only exists in it.
enum State {
    /// Before a successful login.
    Authorization(Auth),
    /// Logged in, maildrop locked.
    Transaction(Maildrop),
    /// QUIT accepted in TRANSACTION; [`Ask::Commit`] is outstanding.
    Update {
        /// How many messages the commit deletes, for the sign-off and stats.
        deleting: u32,
    },
    /// Nothing more will be read or answered.
    Closed,
}

/// Progress through login within AUTHORIZATION.
enum Auth {
    Idle,
    /// USER accepted; PASS is expected next.
    GotUser(String),
    /// `+ ` sent after AUTH PLAIN; the next line is the client's response.
    PlainResponse,
    /// [`Ask::Login`] is outstanding for this user.
    Verifying(String),
}

/// The locked maildrop during TRANSACTION.
struct Maildrop {
    entries: Vec<MaildropEntry>,
    /// Parallel to `entries`: the DELE marks that RSET clears.
    deleted: Vec<bool>,
    total_size: u64,
    deleted_count: usize,
    deleted_size: u64,
    /// What an outstanding [`Ask::Fetch`] was for.
    fetching: Option<Fetch>,
}

#[derive(Clone, Copy)]
enum Fetch {
    Retr,
    Top(u32),
}

impl Maildrop {
    fn new(entries: Vec<MaildropEntry>) -> Self {
        // Saturating: sizes come from the store, and a corrupt one must not
        // panic the connection.
        let total_size = entries
            .iter()
            .fold(0u64, |sum, entry| sum.saturating_add(entry.size));
        Maildrop {
            deleted: vec![false; entries.len()],
            entries,
            total_size,
            deleted_count: 0,
            deleted_size: 0,
            fetching: None,
        }
    }

    fn visible_count(&self) -> usize {
        self.entries.len() - self.deleted_count
    }

    fn visible_size(&self) -> u64 {
        self.total_size.saturating_sub(self.deleted_size)
    }

    /// "n messages (s octets)" for the not-deleted messages.
    fn summary(&self) -> String {
        format!(
            "{} ({} octets)",
            messages(self.visible_count()),
            self.visible_size()
        )
    }

    /// Message numbers and entries of the messages not marked deleted.
    fn visible(&self) -> impl Iterator<Item = (usize, &MaildropEntry)> {
        self.entries
            .iter()
            .zip(&self.deleted)
            .enumerate()
            .filter(|(_, (_, deleted))| !**deleted)
            .map(|(i, (entry, _))| (i + 1, entry))
    }

    /// The index of message `number`, or the `-ERR` for a number that does
    /// not name a live message.
    fn index(&self, number: u32) -> Result<usize, Response> {
        // Message numbers are 1-based; 0 cannot come from the parser, but
        // must not underflow if it ever does.
        let index = number
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .unwrap_or(usize::MAX);
        match self.deleted.get(index) {
            None => Err(Response::err(format!(
                "no such message, only {} in maildrop",
                messages(self.entries.len())
            ))),
            Some(true) => Err(Response::err(format!("message {number} already deleted"))),
            Some(false) => Ok(index),
        }
    }

    fn delete(&mut self, index: usize) {
        self.deleted[index] = true;
        self.deleted_count += 1;
        self.deleted_size = self.deleted_size.saturating_add(self.entries[index].size);
    }

    fn reset(&mut self) {
        self.deleted.fill(false);
        self.deleted_count = 0;
        self.deleted_size = 0;
    }

    fn deleted_keys(&self) -> Vec<u64> {
        self.entries
            .iter()
            .zip(&self.deleted)
            .filter(|(_, deleted)| **deleted)
            .map(|(entry, _)| entry.key)
            .collect()
    }
}

/// "1 message", "2 messages".
fn messages(count: usize) -> String {
    if count == 1 {
        "1 message".to_owned()
    } else {
        format!("{count} messages")
    }
}

/// One input line as the session sees it.
enum Line {
    /// A line within the limit, without its LF and without a CR before it.
    Complete(Vec<u8>),
    /// A line over the limit, already discarded.
    TooLong,
}

/// Splits input into lines while holding at most one partial line of at
/// most `max` octets, whatever the client sends.
struct LineReader {
    max: usize,
    lines: VecDeque<Line>,
    partial: Vec<u8>,
    /// Inside an overlong line: drop everything up to the next LF.
    discarding: bool,
}

impl LineReader {
    fn new(max: usize) -> Self {
        LineReader {
            max,
            lines: VecDeque::new(),
            partial: Vec::new(),
            discarding: false,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(lf) => {
                    if self.discarding {
                        self.discarding = false;
                        self.lines.push_back(Line::TooLong);
                    } else if self.partial.len() + lf + 1 > self.max {
                        self.partial.clear();
                        self.lines.push_back(Line::TooLong);
                    } else {
                        self.partial.extend_from_slice(&bytes[..lf]);
                        let mut line = std::mem::take(&mut self.partial);
                        // Bare LF is accepted too: lenient with clients that
                        // forget the CR, as RFC 1939 §3 servers commonly are.
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        self.lines.push_back(Line::Complete(line));
                    }
                    bytes = &bytes[lf + 1..];
                }
                None => {
                    if !self.discarding {
                        // Once even a bare LF could not end this line within
                        // the limit, nothing more of it is worth keeping.
                        if self.partial.len() + bytes.len() >= self.max {
                            self.partial = Vec::new();
                            self.discarding = true;
                        } else {
                            self.partial.extend_from_slice(bytes);
                        }
                    }
                    bytes = &[];
                }
            }
        }
    }

    fn next_line(&mut self) -> Option<Line> {
        self.lines.pop_front()
    }

    fn clear(&mut self) {
        self.lines.clear();
        self.partial = Vec::new();
        self.discarding = false;
    }
}

impl Session {
    /// A session in AUTHORIZATION, before the greeting is sent.
    pub fn new(config: SessionConfig) -> Session {
        Session {
            input: LineReader::new(config.max_line_length),
            secure: config.implicit_tls,
            config,
            state: State::Authorization(Auth::Idle),
            events: VecDeque::new(),
            user: None,
            errors: 0,
            retrieved: 0,
            deleted: 0,
            starting_tls: false,
        }
    }

    /// The greeting to send on connect: `+OK Poczta POP3 server ready`.
    /// No APOP timestamp, since APOP is not offered.
    pub fn greeting(&self) -> Response {
        Response::ok(format!("{SERVER_NAME} POP3 server ready"))
    }

    /// Adds bytes read from the client. Ignored once the session is closed,
    /// and between [`Event::StartTls`] and
    /// [`tls_established`](Self::tls_established): bytes then can only be
    /// plaintext sent before the handshake, which STLS must not let through.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !self.is_closed() && !self.starting_tls {
            self.input.feed(bytes);
        }
    }

    /// The TLS handshake that [`Event::StartTls`] asked for succeeded. The
    /// session stays in AUTHORIZATION with nothing buffered and nothing
    /// remembered of the client (RFC 2595 §4), clear-text passwords are now
    /// accepted, and CAPA no longer lists STLS. Call it before feeding
    /// anything read over TLS. Ignored once the session is closed.
    pub fn tls_established(&mut self) {
        debug_assert!(
            self.starting_tls || self.is_closed(),
            "tls_established without Event::StartTls"
        );
        if self.is_closed() {
            return;
        }
        self.starting_tls = false;
        self.secure = true;
        self.input.clear();
        self.state = State::Authorization(Auth::Idle);
    }

    /// Whether the connection is under TLS (after STLS, or implicit).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The next thing the driver must do, or `None` when the session needs
    /// more input, or is waiting for an [`answer`](Self::answer), or is
    /// closed.
    ///
    /// Pipelined commands (RFC 2449 §6.6) are handled one at a time, in
    /// order: the next buffered line is only looked at once everything the
    /// previous one produced has been polled and its Ask answered.
    pub fn poll(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            if self.is_closed() || self.awaiting_answer() || self.starting_tls {
                return None;
            }
            let line = self.input.next_line()?;
            self.handle_line(line);
        }
    }

    /// Delivers the result of the outstanding [`Ask`].
    ///
    /// An answer after the session closed (say, a commit that finished after
    /// [`shutdown`](Self::shutdown)) is ignored. An answer that does not fit
    /// the outstanding Ask is a driver bug; the session then sends
    /// `-ERR [SYS/PERM] Internal error` and closes rather than guess.
    pub fn answer(&mut self, answer: Answer) {
        let state = std::mem::replace(&mut self.state, State::Closed);
        match (state, answer) {
            (State::Authorization(Auth::Verifying(user)), answer) => match answer {
                Answer::LoginOk(entries) => {
                    let maildrop = Maildrop::new(entries);
                    let text = format!("maildrop has {}", maildrop.summary());
                    self.user = Some(user);
                    self.state = State::Transaction(maildrop);
                    self.respond(Response::ok(text));
                }
                Answer::LoginFailed => self.login_failed("AUTH", "Authentication failed"),
                Answer::InUse => self.login_failed("IN-USE", "Mailbox is locked by another session"),
                Answer::LoginUnavailable => self.login_failed("SYS/TEMP", "Mailbox temporarily unavailable"),
                _ => self.internal_error(),
            },
            (State::Transaction(mut maildrop), answer) if maildrop.fetching.is_some() => {
                let fetch = maildrop.fetching.take();
                self.state = State::Transaction(maildrop);
                match (fetch, answer) {
                    (Some(fetch), Answer::Message(bytes)) => {
                        let top_lines = match fetch {
                            Fetch::Retr => {
                                self.retrieved = self.retrieved.saturating_add(1);
                                None
                            }
                            Fetch::Top(lines) => Some(lines),
                        };
                        let mut out = Vec::new();
                        write_message(&mut out, &bytes, top_lines);
                        self.events.push_back(Event::Respond(out));
                    }
                    (_, Answer::FetchFailed) => {
                        self.respond(Response::err_with_code("SYS/TEMP", "Unable to read message"))
                    }
                    _ => self.internal_error(),
                }
            }
            (State::Update { deleting }, Answer::Committed) => {
                self.deleted = deleting;
                self.close_with(Response::ok(format!(
                    "{SERVER_NAME} POP3 server signing off ({} deleted)",
                    messages(deleting as usize)
                )));
            }
            (State::Update { .. }, Answer::CommitFailed) => self.close_with(Response::err_with_code(
                "SYS/TEMP",
                "some deleted messages not removed",
            )),
            (State::Closed, _) => {}
            (state, _) => {
                self.state = state;
                self.internal_error();
            }
        }
    }

    /// Ends the session because the client was idle too long; the driver
    /// sends the returned `-ERR Connection timed out` and closes. No
    /// deletion is applied (RFC 1939 §3: an autologout timer does not enter
    /// UPDATE). No response code fits: SYS/TEMP would tell the client the
    /// server is in trouble, which it is not.
    pub fn idle_timeout(&mut self) -> Response {
        self.abort();
        Response::err("Connection timed out")
    }

    /// Ends the session because the server is stopping; the driver sends
    /// the returned `-ERR [SYS/TEMP] Server shutting down` and closes. No
    /// deletion is applied.
    pub fn shutdown(&mut self) -> Response {
        self.abort();
        Response::err_with_code("SYS/TEMP", "Server shutting down")
    }

    /// Whether the session has ended (a [`Event::Close`] was queued, or
    /// [`idle_timeout`](Self::idle_timeout) or [`shutdown`](Self::shutdown)
    /// was called).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The authenticated user, for logs; `None` before a successful login.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// `(messages retrieved with RETR, messages deleted by a successful
    /// commit)`.
    pub fn stats(&self) -> (u32, u32) {
        (self.retrieved, self.deleted)
    }

    /// The number of `-ERR` responses sent so far, for logs.
    pub fn errors(&self) -> u32 {
        self.errors
    }

    fn awaiting_answer(&self) -> bool {
        match &self.state {
            State::Authorization(auth) => matches!(auth, Auth::Verifying(_)),
            State::Transaction(maildrop) => maildrop.fetching.is_some(),
            State::Update { .. } => true,
            State::Closed => false,
        }
    }

    /// Closes without a Close event: the caller sends its own last response
    /// and closes the connection itself. Queued responses are dropped so
    /// that nothing is written after that last response.
    fn abort(&mut self) {
        self.state = State::Closed;
        self.events.clear();
        self.input.clear();
    }

    /// Queues a response, counting `-ERR`s toward `max_errors`.
    fn respond(&mut self, response: Response) {
        let is_err = response.is_err();
        self.events.push_back(Event::Respond(response.to_bytes()));
        if is_err && !self.is_closed() {
            self.errors = self.errors.saturating_add(1);
            if self.errors >= self.config.max_errors {
                self.close_with(Response::err("Too many errors, closing"));
            }
        }
    }

    /// Queues a last response and [`Event::Close`].
    fn close_with(&mut self, response: Response) {
        self.state = State::Closed;
        self.events.push_back(Event::Respond(response.to_bytes()));
        self.events.push_back(Event::Close);
    }

    fn internal_error(&mut self) {
        self.close_with(Response::err_with_code("SYS/PERM", "Internal error"));
    }

    fn login_failed(&mut self, code: &'static str, text: &str) {
        // Back to the start of AUTHORIZATION: RFC 1939 §7 lets the client
        // try again (with USER again), the error count bounds how often.
        self.state = State::Authorization(Auth::Idle);
        self.respond(Response::err_with_code(code, text));
    }

    fn handle_line(&mut self, line: Line) {
        let sasl = matches!(self.state, State::Authorization(Auth::PlainResponse));
        if sasl {
            // Whatever the line holds, the exchange ends with it.
            self.state = State::Authorization(Auth::Idle);
        }
        let line = match line {
            Line::Complete(line) => line,
            Line::TooLong => return self.respond(Response::err("Line too long")),
        };
        if sasl {
            return self.sasl_response(&line);
        }
        match parse_command(&line) {
            Ok(command) => self.command(command),
            Err(error) => self.respond(Response::err(error.to_string())),
        }
    }

    fn command(&mut self, command: Command) {
        match (&self.state, command) {
            (_, Command::Capa) => {
                let capabilities = self.capabilities();
                self.respond(capabilities);
            }
            (State::Authorization(_), command) => self.authorization_command(command),
            (State::Transaction(_), command) => self.transaction_command(command),
            // No line is read while an Ask is outstanding or after close.
            (State::Update { .. } | State::Closed, _) => {}
        }
    }

    /// RFC 2449 §5 wants the AUTHORIZATION capabilities announced in both
    /// states, so the list does not depend on the state.
    fn capabilities(&self) -> Response {
        let mut lines = vec!["TOP", "UIDL"];
        if self.plaintext_ok() {
            lines.extend(["USER", "SASL PLAIN"]);
        }
        lines.extend(["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]);
        if self.config.tls_available && !self.secure {
            lines.push("STLS");
        }
        let implementation = format!("IMPLEMENTATION {SERVER_NAME}");
        Response::MultiLine {
            first: "Capability list follows".to_owned(),
            lines: lines
                .into_iter()
                .map(str::to_owned)
                .chain([implementation])
                .collect(),
        }
    }

    /// Whether passwords may be sent now: under TLS, or where the driver
    /// allowed them in clear.
    fn plaintext_ok(&self) -> bool {
        self.secure || self.config.plaintext_allowed
    }

    fn authorization_command(&mut self, command: Command) {
        let plaintext = self.plaintext_ok();
        match command {
            Command::Quit => self.close_with(Response::ok(format!("{SERVER_NAME} POP3 server signing off"))),
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } if !plaintext => {
                self.state = State::Authorization(Auth::Idle);
                self.respond(Response::err_with_code(
                    "AUTH",
                    "Plaintext authentication requires TLS",
                ));
            }
            Command::User(user) => {
                // The same answer for every name: whether the user exists is
                // only ever decided together with the password.
                self.state = State::Authorization(Auth::GotUser(user));
                self.respond(Response::ok("send PASS"));
            }
            Command::Pass(password) => {
                match std::mem::replace(&mut self.state, State::Authorization(Auth::Idle)) {
                    State::Authorization(Auth::GotUser(user)) => self.ask_login(user, password),
                    _ => self.respond(Response::err("send USER first")),
                }
            }
            Command::Auth { mechanism: None, .. } => self.respond(Response::MultiLine {
                first: "Supported mechanisms".to_owned(),
                lines: vec![PLAIN.to_owned()],
            }),
            Command::Auth {
                mechanism: Some(mechanism),
                initial,
            } => {
                // AUTH abandons a USER that was never followed by PASS.
                self.state = State::Authorization(Auth::Idle);
                if mechanism != PLAIN {
                    self.respond(Response::err("Unsupported authentication mechanism"));
                } else if let Some(initial) = initial {
                    // "=" is RFC 5034's spelling of an empty initial response.
                    let initial = if initial == "=" { "" } else { &initial };
                    self.sasl_plain(initial.as_bytes());
                } else {
                    self.state = State::Authorization(Auth::PlainResponse);
                    self.respond(Response::Continue(String::new()));
                }
            }
            Command::Apop => self.respond(Response::err("APOP not supported")),
            Command::Stls => self.stls(),
            Command::Stat
            | Command::List(_)
            | Command::Retr(_)
            | Command::Dele(_)
            | Command::Noop
            | Command::Rset
            | Command::Top(..)
            | Command::Uidl(_) => self.respond(Response::err("Not authenticated")),
            // Answered before the state is consulted.
            Command::Capa => {}
        }
    }

    fn stls(&mut self) {
        if self.secure {
            return self.respond(Response::err("Already using TLS"));
        }
        if !self.config.tls_available {
            return self.respond(Response::err("TLS not available"));
        }
        // A USER given in clear is forgotten: the client starts over under
        // TLS (RFC 2595 §4).
        self.state = State::Authorization(Auth::Idle);
        self.respond(Response::ok("Begin TLS negotiation"));
        self.events.push_back(Event::StartTls);
        self.starting_tls = true;
        // Commands pipelined behind STLS were sent in clear and could have
        // been injected by a man in the middle, to be run as if sent under
        // TLS (CVE-2011-0411): they are dropped unread.
        self.input.clear();
    }

    fn ask_login(&mut self, user: String, password: String) {
        self.state = State::Authorization(Auth::Verifying(user.clone()));
        self.events.push_back(Event::Ask(Ask::Login { user, password }));
    }

    /// The line after `+ `: `*` cancels (RFC 5034 §4), anything else is the
    /// base64 PLAIN message.
    fn sasl_response(&mut self, line: &[u8]) {
        if line == b"*" {
            self.respond(Response::err("Authentication cancelled"));
        } else {
            self.sasl_plain(line);
        }
    }

    fn sasl_plain(&mut self, encoded: &[u8]) {
        match sasl::decode_base64(encoded).and_then(|decoded| sasl::decode_plain(&decoded)) {
            Ok(credentials) => self.ask_login(credentials.username, credentials.password),
            Err(SaslError::AuthzidMismatch) => self.respond(Response::err_with_code(
                "AUTH",
                "Authorization identity must be empty or match the user",
            )),
            Err(SaslError::BadBase64 | SaslError::Malformed | SaslError::Cancelled) => {
                self.respond(Response::err_with_code("AUTH", "Malformed SASL PLAIN response"))
            }
        }
    }

    fn transaction_command(&mut self, command: Command) {
        let State::Transaction(maildrop) = &mut self.state else {
            return;
        };
        let response = match command {
            Command::Stat => Response::ok(format!(
                "{} {}",
                maildrop.visible_count(),
                maildrop.visible_size()
            )),
            Command::List(None) => Response::MultiLine {
                first: maildrop.summary(),
                lines: maildrop
                    .visible()
                    .map(|(number, entry)| format!("{number} {}", entry.size))
                    .collect(),
            },
            Command::List(Some(number)) => match maildrop.index(number) {
                Ok(i) => Response::ok(format!("{number} {}", maildrop.entries[i].size)),
                Err(response) => response,
            },
            Command::Uidl(None) => Response::MultiLine {
                first: "unique-id listing follows".to_owned(),
                lines: maildrop
                    .visible()
                    .map(|(number, entry)| format!("{number} {}", entry.uid))
                    .collect(),
            },
            Command::Uidl(Some(number)) => match maildrop.index(number) {
                Ok(i) => Response::ok(format!("{number} {}", maildrop.entries[i].uid)),
                Err(response) => response,
            },
            Command::Retr(number) | Command::Top(number, _) => match maildrop.index(number) {
                Ok(i) => {
                    let (fetch, top_lines) = match command {
                        Command::Top(_, lines) => (Fetch::Top(lines), Some(lines)),
                        _ => (Fetch::Retr, None),
                    };
                    maildrop.fetching = Some(fetch);
                    let key = maildrop.entries[i].key;
                    self.events.push_back(Event::Ask(Ask::Fetch { key, top_lines }));
                    return;
                }
                Err(response) => response,
            },
            Command::Dele(number) => match maildrop.index(number) {
                Ok(i) => {
                    maildrop.delete(i);
                    Response::ok(format!("message {number} deleted"))
                }
                Err(response) => response,
            },
            Command::Noop => Response::ok(""),
            Command::Rset => {
                maildrop.reset();
                Response::ok(format!("maildrop has {}", maildrop.summary()))
            }
            Command::Quit => {
                let delete = maildrop.deleted_keys();
                let deleting = u32::try_from(delete.len()).unwrap_or(u32::MAX);
                self.state = State::Update { deleting };
                self.events.push_back(Event::Ask(Ask::Commit { delete }));
                return;
            }
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } | Command::Apop | Command::Stls => {
                Response::err("Already authenticated")
            }
            // Answered before the state is consulted.
            Command::Capa => return,
        };
        self.respond(response);
    }
}

impl fmt::Debug for Session {
    /// Only what is safe to log: never buffered input, which may hold a
    /// password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Authorization(_) => "AUTHORIZATION",
            State::Transaction(_) => "TRANSACTION",
            State::Update { .. } => "UPDATE",
            State::Closed => "CLOSED",
        };
        f.debug_struct("Session")
            .field("state", &state)
            .field("user", &self.user)
            .field("errors", &self.errors)
            .field("retrieved", &self.retrieved)
            .field("deleted", &self.deleted)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREETING: &str = "+OK Poczta POP3 server ready\r\n";
    const LOGGED_IN: &str = "+OK maildrop has 3 messages (620 octets)\r\n";
    const CAPA_OPEN: &str = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\n\
                             RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION Poczta\r\n.\r\n";
    const REFUSED: &str = "-ERR [AUTH] Plaintext authentication requires TLS\r\n";
    const STLS_OK: &str = "+OK Begin TLS negotiation\r\n";
    const AUTH_FAILED: &str = "-ERR [AUTH] Authentication failed\r\n";
    const MALFORMED: &str = "-ERR [AUTH] Malformed SASL PLAIN response\r\n";
    /// base64("\0alice\0secret")
    const ALICE_PLAIN: &str = "AGFsaWNlAHNlY3JldA==";

    /// Message 1: dot-led lines and no final CRLF.
    const MESSAGE_1: &[u8] = b"Subject: one\r\n\r\n.\r\n.x\r\n..\r\nlast line";
    const RETR_1: &str = "+OK 36 octets\r\nSubject: one\r\n\r\n..\r\n..x\r\n...\r\nlast line\r\n.\r\n";
    /// Message 2 is empty.
    const RETR_2: &str = "+OK 0 octets\r\n.\r\n";
    const MESSAGE_3: &[u8] = b"Subject: three\r\n\r\nb1\r\nb2\r\n";

    fn open() -> SessionConfig {
        SessionConfig {
            plaintext_allowed: true,
            max_errors: 100,
            ..SessionConfig::default()
        }
    }

    fn open_with_tls() -> SessionConfig {
        SessionConfig {
            tls_available: true,
            ..open()
        }
    }

    fn mailbox() -> Vec<MaildropEntry> {
        [(11, "uid-one", 100), (22, "uid-two", 200), (33, "uid-three", 320)]
            .into_iter()
            .map(|(key, uid, size)| MaildropEntry {
                key,
                uid: uid.to_owned(),
                size,
            })
            .collect()
    }

    fn message(key: u64) -> Vec<u8> {
        match key {
            11 => MESSAGE_1.to_vec(),
            22 => Vec::new(),
            33 => MESSAGE_3.to_vec(),
            _ => panic!("no message {key}"),
        }
    }

    fn login(user: &str, password: &str) -> Ask {
        Ask::Login {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    fn fetch(key: u64, top_lines: Option<u32>) -> Ask {
        Ask::Fetch { key, top_lines }
    }

    fn commit(delete: &[u64]) -> Ask {
        Ask::Commit {
            delete: delete.to_vec(),
        }
    }

    /// One step of a scripted dialogue.
    enum Step {
        /// The client sends these bytes.
        C(Vec<u8>),
        /// The server has written exactly this since the previous check.
        S(String),
        /// The session asks this, and the driver answers that.
        A(Ask, Answer),
        /// The session asked for a TLS handshake, which the driver
        /// completes.
        Tls,
        /// The session has closed.
        Closed,
    }
    use Step::{A, Closed, Tls};

    fn c(text: &str) -> Step {
        Step::C(text.as_bytes().to_vec())
    }

    fn s(text: &str) -> Step {
        Step::S(text.to_owned())
    }

    /// Greeting and a USER/PASS login as alice, then `rest`.
    fn logged_in(rest: Vec<Step>) -> Vec<Step> {
        let mut steps = vec![
            s(GREETING),
            c("USER alice\r\n"),
            s("+OK send PASS\r\n"),
            c("PASS secret\r\n"),
            A(login("alice", "secret"), Answer::LoginOk(mailbox())),
            s(LOGGED_IN),
        ];
        steps.extend(rest);
        steps
    }

    /// A test driver: collects output, records every Ask.
    struct Driver {
        session: Session,
        out: Vec<u8>,
        asked: Vec<Ask>,
        /// An Ask met while collecting output, not yet checked.
        pending: Option<Ask>,
        /// A StartTls met while collecting output, not yet checked.
        starttls: bool,
        closed: bool,
    }

    impl Driver {
        fn new(config: SessionConfig) -> Self {
            let session = Session::new(config);
            let out = session.greeting().to_bytes();
            Driver {
                session,
                out,
                asked: Vec::new(),
                pending: None,
                starttls: false,
                closed: false,
            }
        }

        /// Polls until the session needs input or an answer.
        fn pump(&mut self) {
            while let Some(event) = self.session.poll() {
                assert!(!self.closed, "{event:?} after Close");
                match event {
                    Event::Respond(bytes) => self.out.extend_from_slice(&bytes),
                    Event::Ask(ask) => {
                        assert!(self.pending.is_none(), "two Asks outstanding");
                        assert_eq!(self.session.poll(), None, "poll during {ask:?}");
                        self.asked.push(ask.clone());
                        self.pending = Some(ask);
                    }
                    Event::StartTls => {
                        assert!(!self.starttls, "two StartTls outstanding");
                        assert_eq!(self.session.poll(), None, "poll during the handshake");
                        self.starttls = true;
                    }
                    Event::Close => {
                        assert!(self.session.is_closed());
                        self.closed = true;
                    }
                }
            }
        }

        fn take_output(&mut self) -> String {
            String::from_utf8_lossy(&std::mem::take(&mut self.out)).into_owned()
        }
    }

    fn converse(name: &str, config: SessionConfig, script: Vec<Step>) -> Driver {
        let mut driver = Driver::new(config);
        for (i, step) in script.into_iter().enumerate() {
            match step {
                Step::C(bytes) => driver.session.feed(&bytes),
                Step::S(expected) => {
                    driver.pump();
                    assert_eq!(driver.take_output(), expected, "{name}: step {i}");
                }
                A(ask, answer) => {
                    driver.pump();
                    assert_eq!(driver.pending.take(), Some(ask), "{name}: step {i}");
                    driver.session.answer(answer);
                }
                Tls => {
                    driver.pump();
                    assert!(driver.starttls, "{name}: step {i}: no StartTls");
                    driver.starttls = false;
                    driver.session.tls_established();
                }
                Closed => {
                    driver.pump();
                    assert!(driver.closed, "{name}: step {i}: not closed");
                }
            }
        }
        driver.pump();
        assert_eq!(driver.take_output(), "", "{name}: unchecked output");
        assert_eq!(driver.pending, None, "{name}: unchecked Ask");
        assert!(!driver.starttls, "{name}: unchecked StartTls");
        driver
    }

    fn run_cases(cases: Vec<(&str, SessionConfig, Vec<Step>)>) {
        for (name, config, script) in cases {
            converse(name, config, script);
        }
    }

    #[test]
    fn user_pass_login() {
        run_cases(vec![
            (
                "success, then QUIT without deletions",
                open(),
                logged_in(vec![
                    c("QUIT\r\n"),
                    A(commit(&[]), Answer::Committed),
                    s("+OK Poczta POP3 server signing off (0 messages deleted)\r\n"),
                    Closed,
                ]),
            ),
            (
                "wrong password, USER needed again, then retry succeeds",
                open(),
                vec![
                    s(GREETING),
                    c("USER alice\r\nPASS wrong\r\n"),
                    s("+OK send PASS\r\n"),
                    A(login("alice", "wrong"), Answer::LoginFailed),
                    s(AUTH_FAILED),
                    c("PASS secret\r\n"),
                    s("-ERR send USER first\r\n"),
                    c("USER alice\r\nPASS secret\r\n"),
                    A(login("alice", "secret"), Answer::LoginOk(mailbox())),
                    s(&format!("+OK send PASS\r\n{LOGGED_IN}")),
                ],
            ),
            (
                "unknown user gets the same text as a wrong password",
                open(),
                vec![
                    s(GREETING),
                    c("USER nobody\r\n"),
                    s("+OK send PASS\r\n"),
                    c("PASS secret\r\n"),
                    A(login("nobody", "secret"), Answer::LoginFailed),
                    s(AUTH_FAILED),
                ],
            ),
            (
                "mailbox in use",
                open(),
                vec![
                    s(GREETING),
                    c("USER alice\r\nPASS secret\r\n"),
                    A(login("alice", "secret"), Answer::InUse),
                    s("+OK send PASS\r\n-ERR [IN-USE] Mailbox is locked by another session\r\n"),
                ],
            ),
            (
                "store unavailable",
                open(),
                vec![
                    s(GREETING),
                    c("USER alice\r\nPASS secret\r\n"),
                    A(login("alice", "secret"), Answer::LoginUnavailable),
                    s("+OK send PASS\r\n-ERR [SYS/TEMP] Mailbox temporarily unavailable\r\n"),
                ],
            ),
            (
                "PASS without USER",
                open(),
                vec![s(GREETING), c("PASS secret\r\n"), s("-ERR send USER first\r\n")],
            ),
            (
                "a second USER replaces the first",
                open(),
                vec![
                    s(GREETING),
                    c("USER bob\r\nUSER alice\r\nPASS secret\r\n"),
                    A(login("alice", "secret"), Answer::LoginOk(mailbox())),
                    s(&format!("+OK send PASS\r\n+OK send PASS\r\n{LOGGED_IN}")),
                ],
            ),
            (
                "PASS keeps spaces, lower-case keywords, bare LF",
                open(),
                vec![
                    s(GREETING),
                    c("user alice\npass  my pass \n"),
                    A(login("alice", " my pass "), Answer::LoginOk(vec![])),
                    s("+OK send PASS\r\n+OK maildrop has 0 messages (0 octets)\r\n"),
                    c("stat\n"),
                    s("+OK 0 0\r\n"),
                ],
            ),
            (
                "QUIT in AUTHORIZATION asks nothing",
                open(),
                vec![
                    s(GREETING),
                    c("USER alice\r\nQUIT\r\nNOOP\r\n"),
                    s("+OK send PASS\r\n+OK Poczta POP3 server signing off\r\n"),
                    Closed,
                ],
            ),
        ]);
    }

    #[test]
    fn auth_plain() {
        let plain = |initial: &str, expected: &str| {
            vec![s(GREETING), c(&format!("AUTH PLAIN {initial}\r\n")), s(expected)]
        };
        run_cases(vec![
            (
                "initial response",
                open(),
                vec![
                    s(GREETING),
                    c(&format!("AUTH PLAIN {ALICE_PLAIN}\r\n")),
                    A(login("alice", "secret"), Answer::LoginOk(mailbox())),
                    s(LOGGED_IN),
                ],
            ),
            (
                "continuation",
                open(),
                vec![
                    s(GREETING),
                    c("AUTH PLAIN\r\n"),
                    s("+ \r\n"),
                    c(&format!("{ALICE_PLAIN}\r\n")),
                    A(login("alice", "secret"), Answer::LoginOk(mailbox())),
                    s(LOGGED_IN),
                ],
            ),
            (
                "lower case, unpadded",
                open(),
                vec![
                    s(GREETING),
                    c("auth plain AGFsaWNlAHNlY3JldA\r\n"),
                    A(login("alice", "secret"), Answer::LoginOk(mailbox())),
                    s(LOGGED_IN),
                ],
            ),
            (
                "authzid equal to the user",
                open(),
                vec![
                    s(GREETING),
                    c("AUTH PLAIN YWxpY2UAYWxpY2UAc2VjcmV0\r\n"),
                    A(login("alice", "secret"), Answer::LoginOk(mailbox())),
                    s(LOGGED_IN),
                ],
            ),
            (
                "password with a space",
                open(),
                vec![
                    s(GREETING),
                    c("AUTH PLAIN AGFsaWNlAHBhc3Mgd29yZA==\r\n"),
                    A(login("alice", "pass word"), Answer::LoginFailed),
                    s(AUTH_FAILED),
                ],
            ),
            (
                "authzid mismatch fails without asking",
                open(),
                plain(
                    "Ym9iAGFsaWNlAHNlY3JldA==",
                    "-ERR [AUTH] Authorization identity must be empty or match the user\r\n",
                ),
            ),
            (
                "cancelled",
                open(),
                vec![
                    s(GREETING),
                    c("AUTH PLAIN\r\n"),
                    s("+ \r\n"),
                    c("*\r\nNOOP\r\n"),
                    s("-ERR Authentication cancelled\r\n-ERR Not authenticated\r\n"),
                ],
            ),
            (
                "malformed base64 in the continuation",
                open(),
                vec![
                    s(GREETING),
                    c("AUTH PLAIN\r\n"),
                    s("+ \r\n"),
                    c("%%%\r\n"),
                    s(MALFORMED),
                ],
            ),
            (
                "empty continuation line",
                open(),
                vec![
                    s(GREETING),
                    c("AUTH PLAIN\r\n\r\n"),
                    s(&format!("+ \r\n{MALFORMED}")),
                ],
            ),
            (
                "control character in the continuation",
                open(),
                vec![
                    s(GREETING),
                    c("AUTH PLAIN\r\nAGFsaWNl\0AHNlY3JldA==\r\n"),
                    s(&format!("+ \r\n{MALFORMED}")),
                ],
            ),
            ("malformed base64", open(), plain("!!!notbase64", MALFORMED)),
            ("no password", open(), plain("AGFsaWNl", MALFORMED)),
            ("empty user", open(), plain("AABzZWNyZXQ=", MALFORMED)),
            ("empty password", open(), plain("AGFsaWNlAA==", MALFORMED)),
            (
                "NUL in password",
                open(),
                plain("AGFsaWNlAHNlYwByZXQ=", MALFORMED),
            ),
            ("user not UTF-8", open(), plain("AGFs/2ljZQBzZWNyZXQ=", MALFORMED)),
            ("LF in user", open(), plain("AGFsaQpjZQBzZWNyZXQ=", MALFORMED)),
            ("empty initial response", open(), plain("=", MALFORMED)),
            (
                "unknown mechanism",
                open(),
                plain("", "-ERR Unsupported authentication mechanism\r\n")
                    .into_iter()
                    .take(1)
                    .chain([
                        c("AUTH CRAM-MD5\r\n"),
                        s("-ERR Unsupported authentication mechanism\r\n"),
                    ])
                    .collect(),
            ),
            (
                "bare AUTH lists mechanisms",
                open(),
                vec![
                    s(GREETING),
                    c("AUTH\r\n"),
                    s("+OK Supported mechanisms\r\nPLAIN\r\n.\r\n"),
                ],
            ),
            (
                "AUTH abandons a pending USER",
                open(),
                vec![
                    s(GREETING),
                    c(&format!("USER bob\r\nAUTH PLAIN {ALICE_PLAIN}\r\n")),
                    A(login("alice", "secret"), Answer::LoginFailed),
                    c("PASS x\r\n"),
                    s(&format!("+OK send PASS\r\n{AUTH_FAILED}-ERR send USER first\r\n")),
                ],
            ),
            (
                "APOP refused",
                open(),
                vec![
                    s(GREETING),
                    c("APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n"),
                    s("-ERR APOP not supported\r\n"),
                ],
            ),
        ]);
    }

    #[test]
    fn plaintext_refused_without_tls() {
        let capa = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n\
                    AUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION Poczta\r\n.\r\n";
        let config = SessionConfig {
            max_errors: 100,
            ..SessionConfig::default()
        };
        run_cases(vec![(
            "plaintext refused",
            config,
            vec![
                s(GREETING),
                c("CAPA\r\n"),
                s(capa),
                c("USER alice\r\n"),
                s(REFUSED),
                c("PASS secret\r\n"),
                s(REFUSED),
                c("AUTH\r\n"),
                s(REFUSED),
                c("AUTH PLAIN\r\n"),
                s(REFUSED),
                c(&format!("AUTH PLAIN {ALICE_PLAIN}\r\n")),
                s(REFUSED),
                c("QUIT\r\n"),
                s("+OK Poczta POP3 server signing off\r\n"),
                Closed,
            ],
        )]);
    }

    #[test]
    fn capa_in_both_states() {
        let with_stls = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\n\
                         RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\n\
                         IMPLEMENTATION Poczta\r\n.\r\n";
        let tls = SessionConfig {
            tls_available: true,
            ..open()
        };
        run_cases(vec![
            (
                "plaintext allowed",
                open(),
                vec![
                    s(GREETING),
                    c("CAPA\r\n"),
                    s(CAPA_OPEN),
                    c("USER alice\r\nPASS secret\r\n"),
                    A(login("alice", "secret"), Answer::LoginOk(mailbox())),
                    c("capa\r\n"),
                    s(&format!("+OK send PASS\r\n{LOGGED_IN}{CAPA_OPEN}")),
                ],
            ),
            (
                "TLS available lists STLS until it is used",
                tls.clone(),
                vec![
                    s(GREETING),
                    c("CAPA\r\n"),
                    s(with_stls),
                    c("STLS\r\n"),
                    s(STLS_OK),
                    Tls,
                    c("CAPA\r\n"),
                    s(CAPA_OPEN),
                ],
            ),
            (
                "not listed in TRANSACTION once secure",
                tls,
                vec![
                    s(GREETING),
                    c("STLS\r\n"),
                    s(STLS_OK),
                    Tls,
                    c("USER alice\r\nPASS secret\r\n"),
                    A(login("alice", "secret"), Answer::LoginOk(mailbox())),
                    c("CAPA\r\n"),
                    s(&format!("+OK send PASS\r\n{LOGGED_IN}{CAPA_OPEN}")),
                ],
            ),
        ]);
    }

    /// A connection that needs TLS before passwords, with STLS offered.
    fn stls_only() -> SessionConfig {
        SessionConfig {
            tls_available: true,
            max_errors: 100,
            ..SessionConfig::default()
        }
    }

    #[test]
    fn stls_upgrade() {
        let capa_before = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n\
                           AUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nIMPLEMENTATION Poczta\r\n.\r\n";
        run_cases(vec![
            (
                "plaintext refused, STLS, then USER/PASS allowed",
                stls_only(),
                vec![
                    s(GREETING),
                    c("CAPA\r\nUSER alice\r\n"),
                    s(&format!("{capa_before}{REFUSED}")),
                    c("STLS\r\n"),
                    s(STLS_OK),
                    Tls,
                    c("CAPA\r\nUSER alice\r\nPASS secret\r\n"),
                    A(login("alice", "secret"), Answer::LoginOk(mailbox())),
                    s(&format!("{CAPA_OPEN}+OK send PASS\r\n{LOGGED_IN}")),
                ],
            ),
            (
                "AUTH PLAIN after STLS",
                stls_only(),
                vec![
                    s(GREETING),
                    c("STLS\r\n"),
                    s(STLS_OK),
                    Tls,
                    c(&format!("AUTH PLAIN {ALICE_PLAIN}\r\n")),
                    A(login("alice", "secret"), Answer::LoginOk(mailbox())),
                    s(LOGGED_IN),
                ],
            ),
            (
                "a USER sent in clear is forgotten",
                open_with_tls(),
                vec![
                    s(GREETING),
                    c("USER alice\r\n"),
                    s("+OK send PASS\r\n"),
                    c("STLS\r\n"),
                    s(STLS_OK),
                    Tls,
                    c("PASS secret\r\n"),
                    s("-ERR send USER first\r\n"),
                ],
            ),
            (
                "STLS twice",
                stls_only(),
                vec![
                    s(GREETING),
                    c("STLS\r\n"),
                    s(STLS_OK),
                    Tls,
                    c("STLS\r\n"),
                    s("-ERR Already using TLS\r\n"),
                ],
            ),
            (
                "STLS in TRANSACTION",
                open_with_tls(),
                logged_in(vec![c("STLS\r\n"), s("-ERR Already authenticated\r\n")]),
            ),
            (
                "STLS not available",
                open(),
                vec![s(GREETING), c("STLS\r\n"), s("-ERR TLS not available\r\n")],
            ),
        ]);
    }

    #[test]
    fn stls_discards_injected_plaintext() {
        // Commands pipelined behind STLS in the same packet, and plaintext
        // arriving before the handshake is reported, are never run.
        let mut driver = Driver::new(stls_only());
        driver
            .session
            .feed(b"STLS\r\nUSER alice\r\nPASS secret\r\nQUIT\r\n");
        driver.pump();
        assert_eq!(driver.take_output(), format!("{GREETING}{STLS_OK}"));
        assert!(driver.starttls);
        driver.session.feed(b"QUIT\r\n");
        driver.pump();
        assert_eq!(driver.take_output(), "");
        assert!(!driver.session.is_secure());
        driver.session.tls_established();
        assert!(driver.session.is_secure());
        driver.pump();
        assert_eq!(driver.take_output(), "");
        assert!(driver.asked.is_empty() && !driver.closed);
        driver.session.feed(b"PASS secret\r\n");
        driver.pump();
        assert_eq!(driver.take_output(), "-ERR send USER first\r\n");

        // The same at every split point of the injected packet.
        let input = b"STLS\r\nQUIT\r\n";
        for split in 0..=input.len() {
            let mut driver = Driver::new(stls_only());
            driver.session.feed(&input[..split]);
            driver.pump();
            driver.session.feed(&input[split..]);
            driver.pump();
            assert_eq!(
                driver.take_output(),
                format!("{GREETING}{STLS_OK}"),
                "split {split}"
            );
            driver.session.tls_established();
            driver.pump();
            assert!(!driver.closed, "split {split}");
            assert_eq!(driver.take_output(), "", "split {split}");
        }
    }

    #[test]
    fn implicit_tls_is_secure_from_the_start() {
        let pop3s = SessionConfig {
            implicit_tls: true,
            tls_available: true,
            ..stls_only()
        };
        assert!(Session::new(pop3s.clone()).is_secure());
        converse(
            "POP3S",
            pop3s,
            vec![
                s(GREETING),
                c("CAPA\r\nSTLS\r\n"),
                s(&format!("{CAPA_OPEN}-ERR Already using TLS\r\n")),
                c("USER alice\r\nPASS secret\r\n"),
                A(login("alice", "secret"), Answer::LoginOk(mailbox())),
                s(&format!("+OK send PASS\r\n{LOGGED_IN}")),
            ],
        );
    }

    #[test]
    fn listings() {
        run_cases(vec![
            (
                "STAT, LIST, UIDL with and without argument",
                open(),
                logged_in(vec![
                    c("STAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nUIDL 3\r\n"),
                    s("+OK 3 620\r\n\
                       +OK 3 messages (620 octets)\r\n1 100\r\n2 200\r\n3 320\r\n.\r\n\
                       +OK 2 200\r\n\
                       +OK unique-id listing follows\r\n1 uid-one\r\n2 uid-two\r\n3 uid-three\r\n.\r\n\
                       +OK 3 uid-three\r\n"),
                ]),
            ),
            (
                "deleted messages are invisible",
                open(),
                logged_in(vec![
                    c("DELE 2\r\nSTAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nUIDL 2\r\nRETR 2\r\nTOP 2 0\r\n"),
                    s("+OK message 2 deleted\r\n\
                       +OK 2 420\r\n\
                       +OK 2 messages (420 octets)\r\n1 100\r\n3 320\r\n.\r\n\
                       -ERR message 2 already deleted\r\n\
                       +OK unique-id listing follows\r\n1 uid-one\r\n3 uid-three\r\n.\r\n\
                       -ERR message 2 already deleted\r\n\
                       -ERR message 2 already deleted\r\n\
                       -ERR message 2 already deleted\r\n"),
                    c("DELE 1\r\nDELE 3\r\nSTAT\r\nLIST\r\n"),
                    s("+OK message 1 deleted\r\n+OK message 3 deleted\r\n\
                       +OK 0 0\r\n+OK 0 messages (0 octets)\r\n.\r\n"),
                ]),
            ),
            (
                "empty maildrop",
                open(),
                vec![
                    s(GREETING),
                    c(&format!("AUTH PLAIN {ALICE_PLAIN}\r\n")),
                    A(login("alice", "secret"), Answer::LoginOk(vec![])),
                    c("STAT\r\nLIST\r\nUIDL\r\nLIST 1\r\n"),
                    s("+OK maildrop has 0 messages (0 octets)\r\n+OK 0 0\r\n\
                       +OK 0 messages (0 octets)\r\n.\r\n\
                       +OK unique-id listing follows\r\n.\r\n\
                       -ERR no such message, only 0 messages in maildrop\r\n"),
                ],
            ),
        ]);
    }

    #[test]
    fn retr_and_top() {
        let driver = converse(
            "RETR and TOP",
            open(),
            logged_in(vec![
                c("RETR 1\r\nRETR 2\r\nTOP 3 0\r\nTOP 3 1\r\nTOP 3 99\r\nTOP 2 5\r\n"),
                A(fetch(11, None), Answer::Message(message(11))),
                A(fetch(22, None), Answer::Message(message(22))),
                A(fetch(33, Some(0)), Answer::Message(message(33))),
                A(fetch(33, Some(1)), Answer::Message(message(33))),
                A(fetch(33, Some(99)), Answer::Message(message(33))),
                A(fetch(22, Some(5)), Answer::Message(message(22))),
                s(&format!(
                    "{RETR_1}{RETR_2}\
                     +OK top of message follows\r\nSubject: three\r\n\r\n.\r\n\
                     +OK top of message follows\r\nSubject: three\r\n\r\nb1\r\n.\r\n\
                     +OK top of message follows\r\nSubject: three\r\n\r\nb1\r\nb2\r\n.\r\n\
                     +OK top of message follows\r\n.\r\n"
                )),
                c("RETR 3\r\nNOOP\r\n"),
                A(fetch(33, None), Answer::FetchFailed),
                s("-ERR [SYS/TEMP] Unable to read message\r\n+OK\r\n"),
            ]),
        );
        // TOP and failed fetches are not retrievals.
        assert_eq!(driver.session.stats(), (2, 0));
        assert_eq!(driver.session.user(), Some("alice"));
    }

    #[test]
    fn dele_rset_quit() {
        run_cases(vec![
            (
                "DELE twice",
                open(),
                logged_in(vec![
                    c("DELE 1\r\nDELE 1\r\n"),
                    s("+OK message 1 deleted\r\n-ERR message 1 already deleted\r\n"),
                ]),
            ),
            (
                "RSET undeletes",
                open(),
                logged_in(vec![
                    c("DELE 1\r\nDELE 3\r\nRSET\r\nSTAT\r\nRETR 1\r\n"),
                    A(fetch(11, None), Answer::Message(message(11))),
                    s(&format!(
                        "+OK message 1 deleted\r\n+OK message 3 deleted\r\n\
                         {LOGGED_IN}+OK 3 620\r\n{RETR_1}"
                    )),
                    c("QUIT\r\n"),
                    A(commit(&[]), Answer::Committed),
                    s("+OK Poczta POP3 server signing off (0 messages deleted)\r\n"),
                    Closed,
                ]),
            ),
            (
                "commit failure",
                open(),
                logged_in(vec![
                    c("DELE 2\r\nQUIT\r\n"),
                    A(commit(&[22]), Answer::CommitFailed),
                    s("+OK message 2 deleted\r\n\
                       -ERR [SYS/TEMP] some deleted messages not removed\r\n"),
                    Closed,
                ]),
            ),
        ]);

        let driver = converse(
            "QUIT commits exactly the deleted keys",
            open(),
            logged_in(vec![
                c("DELE 3\r\nDELE 1\r\nRETR 2\r\nQUIT\r\nNOOP\r\n"),
                A(fetch(22, None), Answer::Message(message(22))),
                A(commit(&[11, 33]), Answer::Committed),
                s(&format!(
                    "+OK message 3 deleted\r\n+OK message 1 deleted\r\n{RETR_2}\
                     +OK Poczta POP3 server signing off (2 messages deleted)\r\n"
                )),
                Closed,
            ]),
        );
        assert_eq!(driver.session.stats(), (1, 2));

        let driver = converse(
            "a single deletion",
            open(),
            logged_in(vec![
                c("DELE 2\r\nQUIT\r\n"),
                A(commit(&[22]), Answer::Committed),
                s("+OK message 2 deleted\r\n\
                   +OK Poczta POP3 server signing off (1 message deleted)\r\n"),
                Closed,
            ]),
        );
        assert_eq!(driver.session.stats(), (0, 1));
    }

    #[test]
    fn dropped_session_never_commits() {
        for end in ["idle", "shutdown"] {
            let mut driver = converse(
                end,
                open(),
                logged_in(vec![
                    c("DELE 1\r\nRETR 2\r\n"),
                    A(fetch(22, None), Answer::Message(message(22))),
                    s(&format!("+OK message 1 deleted\r\n{RETR_2}")),
                ]),
            );
            // The connection ends with a deletion marked and a fetch in
            // flight.
            driver.session.feed(b"DELE 2\r\nRETR 3\r\n");
            driver.pump();
            assert_eq!(driver.take_output(), "+OK message 2 deleted\r\n");
            assert_eq!(driver.pending.take(), Some(fetch(33, None)));
            let last = match end {
                "idle" => driver.session.idle_timeout(),
                _ => driver.session.shutdown(),
            };
            let expected = match end {
                "idle" => "-ERR Connection timed out\r\n",
                _ => "-ERR [SYS/TEMP] Server shutting down\r\n",
            };
            assert_eq!(String::from_utf8(last.to_bytes()).unwrap(), expected);
            assert!(driver.session.is_closed());
            // A late answer and further input are ignored.
            driver.session.answer(Answer::Message(message(33)));
            driver.session.feed(b"QUIT\r\n");
            assert_eq!(driver.session.poll(), None);
            assert!(
                !driver.asked.iter().any(|ask| matches!(ask, Ask::Commit { .. })),
                "{end}: {:?}",
                driver.asked
            );
            assert_eq!(driver.session.stats(), (1, 0));
        }
    }

    #[test]
    fn commands_in_the_wrong_state() {
        let not_authenticated = [
            "STAT", "LIST", "LIST 1", "UIDL", "UIDL 1", "RETR 1", "TOP 1 1", "DELE 1", "NOOP", "RSET",
        ];
        for command in not_authenticated {
            converse(
                command,
                open(),
                vec![
                    s(GREETING),
                    c(&format!("{command}\r\n")),
                    s("-ERR Not authenticated\r\n"),
                    // Still in AUTHORIZATION, and nothing was asked.
                    c("QUIT\r\n"),
                    s("+OK Poczta POP3 server signing off\r\n"),
                    Closed,
                ],
            );
        }
        let already_authenticated = [
            "USER bob",
            "PASS secret",
            "AUTH",
            "AUTH PLAIN",
            "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
            "AUTH CRAM-MD5",
            "APOP bob c4c9334bac560ecc979e58001b3e22fb",
            "STLS",
        ];
        for command in already_authenticated {
            converse(
                command,
                open(),
                logged_in(vec![
                    c(&format!("{command}\r\n")),
                    s("-ERR Already authenticated\r\n"),
                    c("STAT\r\n"),
                    s("+OK 3 620\r\n"),
                ]),
            );
        }
    }

    #[test]
    fn bad_message_numbers() {
        let no_such = "-ERR no such message, only 3 messages in maildrop\r\n";
        let invalid = "-ERR Invalid message number\r\n";
        let cases = [
            ("RETR 0", invalid),
            ("RETR 4", no_such),
            ("RETR 4294967295", no_such),
            ("RETR 4294967296", invalid),
            ("RETR x", invalid),
            ("RETR -1", invalid),
            ("RETR", "-ERR Missing argument\r\n"),
            ("LIST 0", invalid),
            ("LIST 4", no_such),
            ("LIST one", invalid),
            ("LIST 1 2", "-ERR Too many arguments\r\n"),
            ("UIDL 0", invalid),
            ("UIDL 9", no_such),
            ("DELE 0", invalid),
            ("DELE 4", no_such),
            ("DELE 1.5", invalid),
            ("TOP 0 1", invalid),
            ("TOP 4 1", no_such),
            ("TOP 1 x", "-ERR Invalid line count\r\n"),
            ("TOP 1", "-ERR Missing argument\r\n"),
        ];
        for (command, expected) in cases {
            converse(
                command,
                open(),
                logged_in(vec![
                    c(&format!("{command}\r\n")),
                    s(expected),
                    c("STAT\r\n"),
                    s("+OK 3 620\r\n"),
                ]),
            );
        }
    }

    #[test]
    fn malformed_lines() {
        run_cases(vec![(
            "unknown, empty, control characters, invalid UTF-8",
            open(),
            vec![
                s(GREETING),
                c("XYZZY\r\n\r\nNO\0OP\r\nUSER a\x01b\r\n"),
                Step::C(b"USER \xc3\x28\r\nNOOP\r\r\n".to_vec()),
                s("-ERR Unknown command\r\n-ERR Empty command\r\n\
                   -ERR Invalid characters in command\r\n-ERR Invalid characters in command\r\n\
                   -ERR Command is not valid UTF-8\r\n-ERR Invalid characters in command\r\n"),
            ],
        )]);
        let mut driver = Driver::new(open());
        driver.session.feed(b"USER \xff\r\n");
        driver.pump();
        assert!(
            driver
                .take_output()
                .ends_with("-ERR Command is not valid UTF-8\r\n")
        );
        assert_eq!(driver.session.errors(), 1);
    }

    #[test]
    fn overlong_lines() {
        let small = SessionConfig {
            max_line_length: 16,
            ..open()
        };
        run_cases(vec![
            (
                "at the limit, one over, and recovery",
                small.clone(),
                vec![
                    s(GREETING),
                    // 16 octets with CRLF, 16 with a bare LF, then 17.
                    c("USER abcdefghi\r\nUSER abcdefghij\nUSER abcdefghij\r\nCAPA\r\n"),
                    s(&format!(
                        "+OK send PASS\r\n+OK send PASS\r\n-ERR Line too long\r\n{CAPA_OPEN}"
                    )),
                    c("PASS 123456789\r\n"),
                    A(login("abcdefghij", "123456789"), Answer::LoginFailed),
                    s(AUTH_FAILED),
                ],
            ),
            (
                "overlong line spread over many reads",
                small.clone(),
                vec![
                    s(GREETING),
                    c("NOOP xxxxxxxx"),
                    c("xxxxxxxxxxxxxxxxx"),
                    c("xxxxxxxxxxxxxx\r"),
                    s(""),
                    c("\nQUIT\r\n"),
                    s("-ERR Line too long\r\n+OK Poczta POP3 server signing off\r\n"),
                    Closed,
                ],
            ),
            (
                "overlong SASL response ends the exchange",
                small,
                vec![
                    s(GREETING),
                    c("AUTH PLAIN\r\n"),
                    s("+ \r\n"),
                    c(&format!("{ALICE_PLAIN}\r\nNOOP\r\n")),
                    s("-ERR Line too long\r\n-ERR Not authenticated\r\n"),
                ],
            ),
        ]);

        // A long password fits the default limit: 512 octets with CRLF.
        let password = "p".repeat(512 - "PASS \r\n".len());
        converse(
            "long password",
            open(),
            vec![
                s(GREETING),
                c(&format!("USER alice\r\nPASS {password}\r\n")),
                A(login("alice", &password), Answer::LoginFailed),
                c(&format!("USER alice\r\nPASS {password}p\r\n")),
                s(&format!(
                    "+OK send PASS\r\n{AUTH_FAILED}+OK send PASS\r\n-ERR Line too long\r\n"
                )),
            ],
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let mut driver = Driver::new(open());
        let chunk = [b'x'; 4096];
        for _ in 0..256 {
            driver.session.feed(&chunk);
            driver.pump();
            assert!(driver.session.input.partial.len() < 512);
            assert!(driver.session.input.lines.is_empty());
        }
        driver.session.feed(b"\r\nQUIT\r\n");
        driver.pump();
        assert_eq!(
            driver.take_output(),
            format!("{GREETING}-ERR Line too long\r\n+OK Poczta POP3 server signing off\r\n")
        );
        assert!(driver.closed);
    }

    #[test]
    fn too_many_errors() {
        let strict = SessionConfig {
            max_errors: 3,
            ..open()
        };
        run_cases(vec![
            (
                "unknown commands and a failed login count",
                strict.clone(),
                vec![
                    s(GREETING),
                    c("XYZZY\r\nUSER alice\r\nPASS wrong\r\nRETR 1\r\nQUIT\r\n"),
                    A(login("alice", "wrong"), Answer::LoginFailed),
                    s(&format!(
                        "-ERR Unknown command\r\n+OK send PASS\r\n{AUTH_FAILED}\
                         -ERR Not authenticated\r\n-ERR Too many errors, closing\r\n"
                    )),
                    Closed,
                ],
            ),
            (
                "in TRANSACTION, closing applies no deletion",
                strict,
                logged_in(vec![
                    c("DELE 1\r\nDELE 1\r\nRETR 9\r\nFOO\r\nQUIT\r\n"),
                    s("+OK message 1 deleted\r\n-ERR message 1 already deleted\r\n\
                       -ERR no such message, only 3 messages in maildrop\r\n\
                       -ERR Unknown command\r\n-ERR Too many errors, closing\r\n"),
                    Closed,
                ]),
            ),
        ]);
    }

    #[test]
    fn mismatched_answer_closes() {
        let cases = [
            ("no Ask outstanding", Answer::Committed),
            ("not a login answer", Answer::Message(vec![])),
        ];
        for (name, answer) in cases {
            let mut driver = Driver::new(open());
            if name == "not a login answer" {
                driver.session.feed(b"USER a\r\nPASS b\r\n");
                driver.pump();
                assert_eq!(driver.pending.take(), Some(login("a", "b")));
                driver.take_output();
            }
            driver.session.answer(answer);
            driver.pump();
            assert_eq!(
                driver.take_output(),
                format!(
                    "{}-ERR [SYS/PERM] Internal error\r\n",
                    if name == "no Ask outstanding" {
                        GREETING
                    } else {
                        ""
                    }
                ),
                "{name}"
            );
            assert!(driver.closed, "{name}");
        }
    }

    /// A pipelined dialogue exercising every kind of event, answered by a
    /// driver that reads `chunk` bytes at a time.
    fn pipelined_output(input: &[u8], chunk: usize) -> (String, Vec<Ask>) {
        let config = SessionConfig {
            max_line_length: 64,
            ..open()
        };
        let mut session = Session::new(config);
        let mut out = session.greeting().to_bytes();
        let mut asked = Vec::new();
        let mut closed = false;
        for piece in input.chunks(chunk) {
            session.feed(piece);
            while let Some(event) = session.poll() {
                assert!(!closed, "{event:?} after Close");
                match event {
                    Event::Respond(bytes) => out.extend_from_slice(&bytes),
                    Event::Ask(ask) => {
                        assert_eq!(session.poll(), None);
                        let answer = match &ask {
                            Ask::Login { .. } => Answer::LoginOk(mailbox()),
                            Ask::Fetch { key, .. } => Answer::Message(message(*key)),
                            Ask::Commit { .. } => Answer::Committed,
                        };
                        asked.push(ask);
                        session.answer(answer);
                    }
                    Event::StartTls => panic!("no STLS in this dialogue"),
                    Event::Close => closed = true,
                }
            }
        }
        assert!(closed, "chunk {chunk}: not closed");
        (String::from_utf8(out).unwrap(), asked)
    }

    #[test]
    fn chunk_split_gives_identical_output() {
        let long = "x".repeat(100);
        let input = format!(
            "CAPA\r\nAUTH PLAIN\r\n*\r\nUSER alice\r\nPASS secret\r\nSTAT\nLIST\r\n\
             UIDL 2\r\nRETR 1\r\nTOP 3 1\r\nNOOP {long}\r\nDELE 2\r\nLIST 2\r\nXYZZY\r\n\
             RSET\r\nDELE 1\r\nNOOP\r\nQUIT\r\nNOOP\r\n"
        );
        let expected = format!(
            "{GREETING}{CAPA_OPEN}+ \r\n-ERR Authentication cancelled\r\n+OK send PASS\r\n\
             {LOGGED_IN}+OK 3 620\r\n\
             +OK 3 messages (620 octets)\r\n1 100\r\n2 200\r\n3 320\r\n.\r\n\
             +OK 2 uid-two\r\n{RETR_1}\
             +OK top of message follows\r\nSubject: three\r\n\r\nb1\r\n.\r\n\
             -ERR Line too long\r\n+OK message 2 deleted\r\n\
             -ERR message 2 already deleted\r\n-ERR Unknown command\r\n{LOGGED_IN}\
             +OK message 1 deleted\r\n+OK\r\n\
             +OK Poczta POP3 server signing off (1 message deleted)\r\n"
        );
        let expected_asks = vec![
            login("alice", "secret"),
            fetch(11, None),
            fetch(33, Some(1)),
            commit(&[11]),
        ];
        for chunk in [1, 2, 3, 5, 8, 64, 512, input.len()] {
            let (output, asked) = pipelined_output(input.as_bytes(), chunk);
            assert_eq!(output, expected, "chunk {chunk}");
            assert_eq!(asked, expected_asks, "chunk {chunk}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let ask = format!("{:?}", login("alice", "hunter2"));
        assert!(ask.contains("alice") && !ask.contains("hunter2"), "{ask}");
        let mut session = Session::new(open());
        session.feed(b"USER alice\r\nPASS hunter2\r\n");
        let session_debug = format!("{session:?}");
        assert!(!session_debug.contains("hunter2"), "{session_debug}");
        let event = format!("{:?}", Event::Ask(login("alice", "hunter2")));
        assert!(!event.contains("hunter2"), "{event}");
        let big = format!("{:?}", Answer::Message(vec![b'a'; 10_000]));
        assert_eq!(big, "Message(<10000 bytes>)");
    }
}
