//! The SMTP server state machine (RFC 5321 §3, §4.1.4 sequencing, RFC 2920
//! pipelining, RFC 3030 chunking).
//!
//! The driver feeds it client bytes with [`Session::feed`] and takes
//! [`Event`]s out of [`Session::poll`] until it returns `None`: replies to
//! write, [`Ask`]s to decide (policy, routing, storing) and answer with
//! [`Session::answer`], and finally [`Event::Close`]. Commands are taken
//! from the buffer one at a time and nothing after an outstanding `Ask` is
//! looked at, so replies always come out in command order however the
//! client pipelines.
//!
//! Lenient on one point, as Postfix is: a command line may end with a bare
//! LF instead of CRLF. Message content never: DATA ends only at
//! CRLF "." CRLF (see [`DataReader`]).
//!
//! # TLS and authentication
//!
//! STARTTLS (RFC 3207) is an [`Event::StartTls`] after the `220` reply: the
//! session drops every byte buffered behind the STARTTLS line (plaintext
//! that a man in the middle could have injected, CVE-2011-0411), reads
//! nothing until the driver reports the handshake with
//! [`Session::tls_established`], and then forgets the dialogue as RFC 3207
//! §4.2 requires. A listener with implicit TLS (port 465) starts with
//! [`SessionConfig::implicit_tls`] set instead.
//!
//! AUTH (RFC 4954) reads its `334` continuation lines in a mode of their
//! own, never as commands; the SASL mechanisms themselves are
//! [`crate::sasl`]'s. The credentials go to the driver as [`Ask::Auth`].

use std::collections::VecDeque;
use std::fmt;

use super::command::{Address, Command, MailParams, ReversePath, parse_command};
use super::data::{BdatReader, DataReader, find_byte};
use super::reply::Reply;
use crate::sasl::{Exchange, Mechanism, SaslError, Step};

/// Longest AUTH command line and SASL response line, CRLF included: RFC
/// 4954 §4 raises the command line limit to 12288 octets for AUTH, since an
/// initial response can be long. Longer lines are discarded as they stream.
pub const MAX_SASL_LINE: usize = 12288;

/// What the TLS layer negotiated, for `Received:` headers (RFC 3848 `with`
/// and a Postfix-style comment) and logs.
///
/// Plain strings so that the sans-IO cores need no TLS library: the driver
/// fills it from its TLS stack (`tls::info` does it for rustls).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsInfo {
    /// The protocol version, e.g. `TLSv1.3`.
    pub version: String,
    /// The cipher suite's IANA name, e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// The limits and identity of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// This server's name, used in the greeting and several replies.
    pub hostname: String,
    /// Longest command line accepted, CRLF included. Default 2048, Postfix's
    /// `line_length_limit` (RFC 5321 §4.5.3.1.4 requires at least 512).
    pub max_line_length: usize,
    /// Largest message accepted, as unstuffed content; advertised as
    /// `SIZE <n>`. Must be above 0: `SIZE 0` means "no limit" (RFC 1870).
    /// Default 25 MiB.
    pub max_message_size: usize,
    /// Most recipients accepted in one transaction. Default 100, the
    /// minimum RFC 5321 §4.5.3.1.8 requires.
    pub max_recipients: usize,
    /// Error replies (4xx/5xx to commands, refused answers included)
    /// tolerated: the one that reaches this count is followed by
    /// `421 4.7.0` and [`Event::Close`]. Failed AUTH attempts count, which
    /// bounds password guesses per connection. Default 10.
    pub max_errors: u32,
    /// Offer STARTTLS (RFC 3207): the driver can run a TLS handshake on this
    /// connection. Advertised until the connection is under TLS. Default
    /// false.
    pub starttls: bool,
    /// Offer AUTH PLAIN and LOGIN (RFC 4954) on this listener: under TLS
    /// only, unless `auth_without_tls`. Default false.
    pub auth: bool,
    /// Development only: offer AUTH without TLS too, i.e. accept passwords
    /// in clear. Default false.
    pub auth_without_tls: bool,
    /// Submission (RFC 6409 §4.3): MAIL before a successful AUTH is refused
    /// with `530 5.7.0`. Default false.
    pub require_auth: bool,
    /// The connection is under TLS from its first byte (SMTPS, port 465,
    /// RFC 8314 §3.3): STARTTLS is never offered, and AUTH (if `auth`) is
    /// from the start. The driver sets it after the handshake, before
    /// sending the greeting. Default `None`.
    pub implicit_tls: Option<TlsInfo>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".to_owned(),
            max_line_length: 2048,
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            starttls: false,
            auth: false,
            auth_without_tls: false,
            require_auth: false,
            implicit_tls: None,
        }
    }
}

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Send this reply (replies may be batched until `poll` returns `None`).
    Reply(Reply),
    /// Decide this and call [`Session::answer`]; `poll` returns `None`
    /// until then.
    Ask(Ask),
    /// Flush the `220` written before it, then run the server side of a TLS
    /// handshake on the connection and call [`Session::tls_established`];
    /// `poll` returns `None` and `feed` drops its bytes until then. If the
    /// handshake fails, close the connection (nothing more can be said in
    /// either clear text or TLS).
    StartTls,
    /// Flush what was written and close the connection.
    Close,
}

/// A decision the session needs from the driver.
#[derive(Clone, PartialEq, Eq)]
pub enum Ask {
    /// EHLO/HELO (policy seam). [`Answer::Accept`] sends the session's own
    /// EHLO/HELO reply and resets any transaction (RFC 5321 §4.1.4); a
    /// refusal leaves the session exactly as it was (same section).
    Helo {
        /// The argument as the client sent it.
        name: String,
        /// EHLO rather than HELO.
        extended: bool,
    },
    /// MAIL, already checked for sequence, size and SMTPUTF8. `Accept`
    /// starts the transaction with `250 2.1.0 Sender OK`.
    MailFrom {
        /// The reverse-path.
        from: ReversePath,
        /// Its parameters.
        params: MailParams,
    },
    /// RCPT, already checked for sequence, count and SMTPUTF8: the driver
    /// routes it (local user, unknown `550 5.1.1`, relay denied `550
    /// 5.7.1`). `Accept` adds it to the envelope with `250 2.1.5 Recipient
    /// OK`.
    Rcpt {
        /// The recipient (a bare `postmaster` has an empty domain).
        to: Address,
    },
    /// A complete message (unstuffed DATA, or joined BDAT chunks), within
    /// the size limit and free of NUL. Answer with
    /// `AcceptWith(Reply::queued(id))` or `Reject`; either way the
    /// transaction is then over.
    Message {
        /// Who and what it is for.
        envelope: Envelope,
        /// The content, exactly as received (CRLF line endings, ending
        /// with the last CRLF before the terminator for DATA).
        data: Vec<u8>,
    },
    /// A completed SASL exchange (RFC 4954): verify the password. `Accept`
    /// answers `235 2.7.0` and the session is authenticated as `username`
    /// ([`Session::authenticated`]); reject with [`Reply::auth_failed`]
    /// (`535 5.7.8`, the same for an unknown user and a wrong password) or
    /// [`Reply::auth_temporary_failure`] (`454 4.7.0`), which count toward
    /// `max_errors`. `Debug` redacts the password.
    Auth {
        /// `PLAIN` or `LOGIN`.
        mechanism: String,
        /// The authorization identity: empty or equal to `username` (the
        /// session refuses any other with `535 5.7.8` without asking).
        authzid: String,
        /// The authentication identity: not empty, no control characters.
        username: String,
        /// The password: not empty.
        password: String,
    },
}

impl fmt::Debug for Ask {
    // By hand so that a 25 MiB message is logged as its length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ask::Helo { name, extended } => f
                .debug_struct("Helo")
                .field("name", name)
                .field("extended", extended)
                .finish(),
            Ask::MailFrom { from, params } => f
                .debug_struct("MailFrom")
                .field("from", from)
                .field("params", params)
                .finish(),
            Ask::Rcpt { to } => f.debug_struct("Rcpt").field("to", to).finish(),
            Ask::Message { envelope, data } => f
                .debug_struct("Message")
                .field("envelope", envelope)
                .field("data_len", &data.len())
                .finish(),
            Ask::Auth {
                mechanism,
                authzid,
                username,
                password: _,
            } => f
                .debug_struct("Auth")
                .field("mechanism", mechanism)
                .field("authzid", authzid)
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// The driver's decision on an [`Ask`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Go ahead, with the session's own positive reply.
    Accept,
    /// Go ahead, with this positive reply instead (e.g. [`Reply::queued`]).
    /// For `Helo` it would replace the extension list: use `Accept`.
    AcceptWith(Reply),
    /// Refuse with this 4xx/5xx reply; it counts toward `max_errors`.
    Reject(Reply),
}

/// Everything about a message but its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The accepted EHLO/HELO argument.
    pub helo: String,
    /// Whether the client greeted with EHLO.
    pub esmtp: bool,
    /// The reverse-path.
    pub from: ReversePath,
    /// The MAIL parameters.
    pub params: MailParams,
    /// The accepted recipients, in order (at least one).
    pub rcpts: Vec<Address>,
    /// The user the client authenticated as with AUTH, if it did.
    pub authenticated: Option<String>,
    /// The TLS the message arrived under, if any.
    pub tls: Option<TlsInfo>,
}

impl Envelope {
    /// The `with` protocol of the `Received:` header: `SMTP` after HELO;
    /// after EHLO `ESMTP` plus `S` under TLS and `A` when authenticated
    /// (RFC 3848: `ESMTPS`, `ESMTPA`, `ESMTPSA`), or the `UTF8SMTP` family
    /// for a message sent with the SMTPUTF8 parameter (RFC 6531 §3.7.3).
    pub fn protocol(&self) -> &'static str {
        if !self.esmtp {
            return "SMTP";
        }
        match (
            self.params.smtputf8,
            self.tls.is_some(),
            self.authenticated.is_some(),
        ) {
            (false, false, false) => "ESMTP",
            (false, true, false) => "ESMTPS",
            (false, false, true) => "ESMTPA",
            (false, true, true) => "ESMTPSA",
            (true, false, false) => "UTF8SMTP",
            (true, true, false) => "UTF8SMTPS",
            (true, false, true) => "UTF8SMTPA",
            (true, true, true) => "UTF8SMTPSA",
        }
    }
}

/// The sans-IO SMTP server session; see the module documentation.
///
/// It owns its [`SessionConfig`] (one clone per connection: it is small).
pub struct Session {
    config: SessionConfig,
    /// Client bytes not yet processed start at `input[start]`; consuming
    /// only moves `start`, and `feed` compacts, so a pipelined buffer is
    /// not shifted once per command.
    input: Vec<u8>,
    start: usize,
    mode: Mode,
    helo: Option<Helo>,
    tx: Option<Transaction>,
    pending: Option<Pending>,
    events: VecDeque<Event>,
    errors: u32,
    life: Life,
    /// The connection's TLS, once established (or from the start).
    tls: Option<TlsInfo>,
    /// [`Event::StartTls`] was queued and the handshake is not reported
    /// yet: nothing is read meanwhile.
    starting_tls: bool,
    /// The user of a successful AUTH.
    authenticated: Option<String>,
}

/// What the bytes at the head of the input buffer are.
enum Mode {
    /// A command line.
    Command,
    /// The rest of an over-long command line, discarded up to its LF.
    SkipLine,
    /// A SASL response line answering the `334` just sent.
    Sasl {
        mechanism: Mechanism,
        exchange: Exchange,
    },
    /// The rest of an over-long SASL response, discarded up to its LF;
    /// the exchange is over.
    SkipSasl,
    /// DATA content; the transaction travels with it.
    Data { reader: DataReader, tx: Transaction },
    /// A BDAT chunk.
    Chunk(Chunk),
}

struct Chunk {
    reader: BdatReader,
    size: u64,
    last: bool,
    fate: Fate,
}

/// What becomes of a BDAT chunk, decided when its command is read; the
/// reply is sent only once all of its octets are in (RFC 3030 §2), and
/// until then the octets must be consumed whatever the verdict, or they
/// would be read as commands.
enum Fate {
    /// Appended to the transaction.
    Keep(Transaction),
    /// Over the size limit now or earlier in this transaction: discarded,
    /// answered 552, and the transaction stays failed (each further chunk
    /// also gets 552) until RSET or the LAST chunk ends it. The client sees
    /// the same reason for every chunk it had already pipelined, and only
    /// the first 552 counts toward `max_errors`: RFC 3030 §4 expects the
    /// chunks already in the pipeline to arrive, that is no misbehaviour.
    TooBig { tx: Transaction, first: bool },
    /// Out of sequence: discarded and answered with this reply; any
    /// transaction stays as it was in `Session::tx`.
    Refuse(Reply),
}

struct Helo {
    name: String,
    esmtp: bool,
}

/// A mail transaction: from an accepted MAIL to the end of its message,
/// RSET, or EHLO/HELO.
struct Transaction {
    helo: String,
    esmtp: bool,
    from: ReversePath,
    params: MailParams,
    rcpts: Vec<Address>,
    /// A BDAT chunk has been accepted or refused for size: DATA and RCPT
    /// are now out of sequence.
    chunked: bool,
    /// The BDAT content so far.
    chunks: Vec<u8>,
    /// A NUL occurred in `chunks`.
    chunks_nul: bool,
    /// The BDAT content went over the size limit: see `Fate::TooBig`.
    too_big: bool,
}

/// What the outstanding [`Ask`] was about, with what acceptance needs.
enum Pending {
    Helo {
        name: String,
        esmtp: bool,
    },
    Mail {
        from: ReversePath,
        params: MailParams,
    },
    Rcpt(Address),
    Message,
    /// The user name of the credentials asked about.
    Auth(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Life {
    Open,
    /// Close decided (QUIT, error limit): queued events still go out,
    /// input is ignored.
    Closing,
    /// `Close` delivered, or the driver ended the session itself.
    Closed,
}

impl Session {
    /// A session at the start of a connection; send [`Session::greeting`]
    /// first.
    pub fn new(config: SessionConfig) -> Session {
        Session {
            tls: config.implicit_tls.clone(),
            starting_tls: false,
            authenticated: None,
            config,
            input: Vec::new(),
            start: 0,
            mode: Mode::Command,
            helo: None,
            tx: None,
            pending: None,
            events: VecDeque::new(),
            errors: 0,
            life: Life::Open,
        }
    }

    /// `220 <hostname> ESMTP Poczta`.
    pub fn greeting(&self) -> Reply {
        Reply::greeting(&self.config.hostname)
    }

    /// Appends client bytes to the input buffer; ignored once the session
    /// is closing, and between [`Event::StartTls`] and
    /// [`Session::tls_established`] (bytes then can only be plaintext sent
    /// before the handshake: the injection STARTTLS must not let through).
    /// Nothing is processed until [`Session::poll`].
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.life != Life::Open || self.starting_tls {
            return;
        }
        if self.start > 0 {
            self.input.drain(..self.start);
            self.start = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// The next thing to do; `None` means "need more input" (the driver
    /// then flushes replies and reads). While an [`Ask`] is outstanding it
    /// returns `None` (pipelined commands wait in the buffer), and after
    /// [`Event::Close`] it returns `None` forever.
    ///
    /// When it returns `None` in command mode, at most `max_line_length`
    /// bytes are buffered ([`MAX_SASL_LINE`] for an AUTH line or a SASL
    /// response): longer lines are discarded as they arrive.
    pub fn poll(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                if event == Event::Close {
                    self.life = Life::Closed;
                    self.events.clear();
                }
                return Some(event);
            }
            if self.life != Life::Open || self.pending.is_some() || self.starting_tls || !self.step() {
                return None;
            }
        }
    }

    /// The TLS handshake that [`Event::StartTls`] asked for succeeded: the
    /// session continues under TLS, back in the state right after the
    /// greeting (RFC 3207 §4.2: no EHLO/HELO, no transaction, not
    /// authenticated, nothing buffered), so the client must EHLO again.
    /// The error count is kept: a handshake does not buy more tries.
    /// Call it before feeding anything read over TLS.
    pub fn tls_established(&mut self, info: TlsInfo) {
        debug_assert!(
            self.starting_tls || self.life != Life::Open,
            "tls_established without Event::StartTls"
        );
        if self.life != Life::Open {
            return;
        }
        self.starting_tls = false;
        self.tls = Some(info);
        self.helo = None;
        self.tx = None;
        self.authenticated = None;
        self.discard_input();
    }

    /// Whether the connection is under TLS (after STARTTLS, or implicit).
    pub fn in_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The connection's TLS parameters, once under TLS.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The user the client authenticated as, after a successful AUTH (and
    /// until a STARTTLS resets the session).
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// Answers the outstanding [`Ask`]. Panics in debug builds if none is
    /// outstanding (ignored once the session is closed, e.g. by
    /// [`Session::shutdown`] while the driver was storing).
    pub fn answer(&mut self, answer: Answer) {
        let Some(pending) = self.pending.take() else {
            debug_assert!(
                self.life != Life::Open,
                "Session::answer without an outstanding Ask"
            );
            return;
        };
        match answer {
            Answer::Accept => self.accept(pending, None),
            Answer::AcceptWith(reply) => {
                debug_assert!(reply.is_positive(), "AcceptWith({reply})");
                self.accept(pending, Some(reply));
            }
            Answer::Reject(reply) => {
                debug_assert!(reply.is_error(), "Reject({reply})");
                // The message's transaction already ended when it was
                // asked about; every other refusal leaves the state as is.
                self.reply(reply);
            }
        }
    }

    /// `421 4.4.2 <hostname> Error: timeout exceeded`; the session is over
    /// (the driver writes this and closes).
    pub fn idle_timeout(&mut self) -> Reply {
        self.end();
        Reply::idle_timeout(&self.config.hostname)
    }

    /// `421 4.3.2 <hostname> Service shutting down`; the session is over
    /// (the driver writes this and closes).
    pub fn shutdown(&mut self) -> Reply {
        self.end();
        Reply::shutting_down(&self.config.hostname)
    }

    /// True while reading DATA or BDAT content (the driver uses a different
    /// timeout then, RFC 5321 §4.5.3.2).
    pub fn in_data(&self) -> bool {
        self.life == Life::Open && matches!(self.mode, Mode::Data { .. } | Mode::Chunk(_))
    }

    /// True once [`Event::Close`] has been returned by `poll`, or
    /// `idle_timeout`/`shutdown` was called.
    pub fn is_closed(&self) -> bool {
        self.life == Life::Closed
    }

    /// Bytes waiting in the input buffer (the driver bounds memory with it,
    /// e.g. by not reading while an `Ask` is outstanding).
    pub fn buffered(&self) -> usize {
        self.input.len() - self.start
    }

    /// The EHLO keywords, in the order they are advertised.
    fn extensions(&self) -> Vec<String> {
        let mut extensions = vec![
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.config.max_message_size),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
            "CHUNKING".to_owned(),
        ];
        // RFC 3207 §4.2: never offered again once under TLS.
        if self.config.starttls && self.tls.is_none() {
            extensions.push("STARTTLS".to_owned());
        }
        if self.auth_allowed() {
            extensions.push("AUTH PLAIN LOGIN".to_owned());
        }
        extensions.push("HELP".to_owned());
        extensions
    }

    /// Whether AUTH may run now: offered on this listener, and under TLS
    /// unless clear-text passwords were explicitly allowed.
    fn auth_allowed(&self) -> bool {
        self.config.auth && (self.tls.is_some() || self.config.auth_without_tls)
    }

    fn max_size(&self) -> u64 {
        u64::try_from(self.config.max_message_size).unwrap_or(u64::MAX)
    }

    /// Queues a reply, counting errors toward `max_errors`.
    fn reply(&mut self, reply: Reply) {
        // Only while open: nothing is counted once a close is decided.
        let error = reply.is_error() && self.life == Life::Open;
        self.events.push_back(Event::Reply(reply));
        if error {
            self.errors = self.errors.saturating_add(1);
            if self.errors >= self.config.max_errors {
                self.events.push_back(Event::Reply(Reply::too_many_errors()));
                self.close();
            }
        }
    }

    fn ask(&mut self, pending: Pending, ask: Ask) {
        self.pending = Some(pending);
        self.events.push_back(Event::Ask(ask));
    }

    /// Queues `Close` and stops reading: whatever the client sent after
    /// QUIT or its last tolerated error is never interpreted.
    fn close(&mut self) {
        self.events.push_back(Event::Close);
        self.life = Life::Closing;
        self.discard_input();
    }

    /// The driver ended the session: nothing more is sent or read.
    fn end(&mut self) {
        self.life = Life::Closed;
        self.events.clear();
        self.pending = None;
        self.tx = None;
        self.discard_input();
    }

    fn discard_input(&mut self) {
        self.input = Vec::new();
        self.start = 0;
        self.mode = Mode::Command;
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.input.len() {
            self.input.clear();
            self.start = 0;
        }
    }

    /// Processes what the head of the buffer allows; false when more input
    /// is needed.
    fn step(&mut self) -> bool {
        // The mode is taken out and put back by the step that continues it,
        // so that each step owns its reader and transaction.
        match std::mem::replace(&mut self.mode, Mode::Command) {
            Mode::Command => self.step_command(),
            Mode::SkipLine => self.step_skip_line(),
            Mode::Data { reader, tx } => self.step_data(reader, tx),
            Mode::Chunk(chunk) => self.step_chunk(chunk),
            Mode::Sasl { mechanism, exchange } => self.step_sasl(mechanism, exchange),
            Mode::SkipSasl => self.step_skip_sasl(),
        }
    }

    fn step_command(&mut self) -> bool {
        let avail = &self.input[self.start..];
        // An AUTH line may carry a long initial response (RFC 4954 §4).
        let max = if avail.len() >= 5 && avail[..5].eq_ignore_ascii_case(b"AUTH ") {
            self.config.max_line_length.max(MAX_SASL_LINE)
        } else {
            self.config.max_line_length
        };
        let Some(lf) = find_byte(b'\n', &avail[..avail.len().min(max)]) else {
            // No LF within the limit: the line, terminator included, is
            // longer than allowed. Drop it now rather than buffer it whole;
            // SkipLine finds its end (and only its end: what follows is the
            // next pipelined command).
            if !avail.is_empty() && avail.len() >= max {
                self.consume(max);
                self.mode = Mode::SkipLine;
                return true;
            }
            return false;
        };
        let end = if lf > 0 && avail[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf
        };
        let parsed = parse_command(&avail[..end]);
        self.consume(lf + 1);
        match parsed {
            Ok(command) => self.command(command),
            Err(e) => self.reply(e.reply()),
        }
        true
    }

    fn step_skip_line(&mut self) -> bool {
        let avail = &self.input[self.start..];
        match find_byte(b'\n', avail) {
            Some(lf) => {
                self.consume(lf + 1);
                self.reply(Reply::line_too_long());
                true
            }
            None => {
                let n = avail.len();
                self.consume(n);
                self.mode = Mode::SkipLine;
                false
            }
        }
    }

    fn step_sasl(&mut self, mechanism: Mechanism, exchange: Exchange) -> bool {
        let avail = &self.input[self.start..];
        let Some(lf) = find_byte(b'\n', &avail[..avail.len().min(MAX_SASL_LINE)]) else {
            if avail.len() >= MAX_SASL_LINE {
                self.consume(MAX_SASL_LINE);
                self.mode = Mode::SkipSasl;
                return true;
            }
            self.mode = Mode::Sasl { mechanism, exchange };
            return false;
        };
        let end = if lf > 0 && avail[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf
        };
        // Not a command, whatever it looks like: it answers the challenge.
        let step = exchange.respond(&avail[..end]);
        self.consume(lf + 1);
        self.sasl(mechanism, step);
        true
    }

    fn step_skip_sasl(&mut self) -> bool {
        let avail = &self.input[self.start..];
        match find_byte(b'\n', avail) {
            Some(lf) => {
                self.consume(lf + 1);
                self.reply(Reply::auth_line_too_long());
                true
            }
            None => {
                let n = avail.len();
                self.consume(n);
                self.mode = Mode::SkipSasl;
                false
            }
        }
    }

    fn step_data(&mut self, mut reader: DataReader, tx: Transaction) -> bool {
        let (n, done) = reader.feed(&self.input[self.start..]);
        self.consume(n);
        if !done {
            self.mode = Mode::Data { reader, tx };
            return false;
        }
        if reader.oversized() {
            self.reply(Reply::message_too_big());
        } else if reader.has_nul() {
            self.reply(Reply::message_has_nul());
        } else {
            self.ask_message(tx, reader.into_bytes());
        }
        true
    }

    fn step_chunk(&mut self, chunk: Chunk) -> bool {
        let Chunk {
            mut reader,
            size,
            last,
            mut fate,
        } = chunk;
        let (taken, done) = reader.take(&self.input[self.start..]);
        let n = taken.len();
        if let Fate::Keep(tx) = &mut fate {
            tx.chunks_nul = tx.chunks_nul || taken.contains(&0);
            tx.chunks.extend_from_slice(taken);
        }
        self.consume(n);
        if !done {
            self.mode = Mode::Chunk(Chunk {
                reader,
                size,
                last,
                fate,
            });
            return false;
        }
        match fate {
            Fate::Refuse(reply) => self.reply(reply),
            Fate::TooBig { tx, first } => {
                if !last {
                    self.tx = Some(tx);
                }
                if first {
                    self.reply(Reply::message_too_big());
                } else {
                    self.events.push_back(Event::Reply(Reply::message_too_big()));
                }
            }
            Fate::Keep(mut tx) => {
                if !last {
                    self.tx = Some(tx);
                    self.reply(Reply::chunk_received(size));
                } else if tx.chunks_nul {
                    self.reply(Reply::message_has_nul());
                } else {
                    let data = std::mem::take(&mut tx.chunks);
                    self.ask_message(tx, data);
                }
            }
        }
        true
    }

    fn ask_message(&mut self, tx: Transaction, data: Vec<u8>) {
        let envelope = Envelope {
            helo: tx.helo,
            esmtp: tx.esmtp,
            from: tx.from,
            params: tx.params,
            rcpts: tx.rcpts,
            // Neither can change during a transaction: STARTTLS and AUTH
            // are refused inside one.
            authenticated: self.authenticated.clone(),
            tls: self.tls.clone(),
        };
        self.ask(Pending::Message, Ask::Message { envelope, data });
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Ehlo(name) => self.helo(name, true),
            Command::Helo(name) => self.helo(name, false),
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, params: _ } => self.rcpt(to),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.tx = None;
                self.reply(Reply::ok());
            }
            Command::Noop => self.reply(Reply::ok()),
            Command::Quit => {
                self.reply(Reply::closing(&self.config.hostname));
                self.close();
            }
            Command::Vrfy(_) => self.reply(Reply::cannot_verify()),
            Command::Expn(_) => self.reply(Reply::expn_disabled()),
            Command::Help(_) => self.reply(Reply::help()),
            Command::StartTls => self.starttls(),
            Command::Auth(args) => self.auth(&args),
        }
    }

    fn starttls(&mut self) {
        let refusal = if self.tls.is_some() {
            Reply::tls_already_active()
        } else if !self.config.starttls {
            Reply::starttls_unavailable()
        } else if self.tx.is_some() {
            Reply::transaction_in_progress()
        } else {
            self.reply(Reply::starttls_ready());
            self.events.push_back(Event::StartTls);
            self.starting_tls = true;
            // Whatever was pipelined behind STARTTLS arrived in clear and
            // may have been injected by a man in the middle, to be run as
            // if sent under TLS (CVE-2011-0411): RFC 3207 §4.2 has it
            // discarded, and so it is, unread.
            self.discard_input();
            return;
        };
        self.reply(refusal);
    }

    fn auth(&mut self, args: &str) {
        if !self.config.auth {
            return self.reply(Reply::auth_unavailable());
        }
        if self.authenticated.is_some() {
            return self.reply(Reply::already_authenticated());
        }
        // AUTH is an ESMTP extension: it exists only after EHLO.
        if self.helo.is_none() {
            return self.reply(Reply::need_helo());
        }
        if self.tx.is_some() {
            return self.reply(Reply::transaction_in_progress());
        }
        let mut words = args.split(' ').filter(|w| !w.is_empty());
        let (Some(name), initial, None) = (words.next(), words.next(), words.next()) else {
            return self.reply(Reply::syntax("Syntax: AUTH mechanism [initial-response]"));
        };
        let Some(mechanism) = Mechanism::from_name(name) else {
            return self.reply(Reply::unknown_mechanism());
        };
        if !self.auth_allowed() {
            return self.reply(Reply::encryption_required());
        }
        let step = Exchange::start(mechanism, initial.map(str::as_bytes));
        self.sasl(mechanism, step);
    }

    /// Acts on the next move of a SASL exchange.
    fn sasl(&mut self, mechanism: Mechanism, step: Step) {
        match step {
            Step::Challenge(exchange) => {
                self.reply(Reply::auth_challenge(exchange.challenge()));
                self.mode = Mode::Sasl { mechanism, exchange };
            }
            Step::Done(credentials) => {
                let ask = Ask::Auth {
                    mechanism: mechanism.name().to_owned(),
                    authzid: credentials.authzid,
                    username: credentials.username.clone(),
                    password: credentials.password,
                };
                self.ask(Pending::Auth(credentials.username), ask);
            }
            Step::Failed(error) => self.reply(match error {
                SaslError::Cancelled => Reply::auth_cancelled(),
                SaslError::BadBase64 => Reply::auth_bad_base64(),
                SaslError::Malformed => Reply::auth_malformed(),
                // Proxy authorization is not supported: as good as wrong
                // credentials, and answered the same way.
                SaslError::AuthzidMismatch => Reply::auth_failed(),
            }),
        }
    }

    fn helo(&mut self, name: String, esmtp: bool) {
        let ask = Ask::Helo {
            name: name.clone(),
            extended: esmtp,
        };
        self.ask(Pending::Helo { name, esmtp }, ask);
    }

    fn mail(&mut self, from: ReversePath, params: MailParams) {
        if self.helo.is_none() {
            return self.reply(Reply::need_helo());
        }
        if self.config.require_auth && self.authenticated.is_none() {
            // Say what the client must do first: it cannot authenticate
            // before TLS when AUTH needs it.
            let starttls_first = !self.auth_allowed() && self.config.starttls && self.tls.is_none();
            return self.reply(if starttls_first {
                Reply::must_starttls()
            } else {
                Reply::auth_required()
            });
        }
        if self.tx.is_some() {
            return self.reply(Reply::nested_mail());
        }
        if params.size.is_some_and(|size| size > self.max_size()) {
            return self.reply(Reply::message_too_big());
        }
        if !from.is_ascii() && !params.smtputf8 {
            return self.reply(Reply::smtputf8_required());
        }
        let ask = Ask::MailFrom {
            from: from.clone(),
            params: params.clone(),
        };
        self.ask(Pending::Mail { from, params }, ask);
    }

    fn rcpt(&mut self, to: Address) {
        let Some(tx) = &self.tx else {
            return self.reply(Reply::need_mail());
        };
        let reply = if tx.chunked {
            Reply::rcpt_after_bdat()
        } else if !to.is_ascii() && !tx.params.smtputf8 {
            Reply::smtputf8_required()
        } else if tx.rcpts.len() >= self.config.max_recipients {
            Reply::too_many_recipients()
        } else {
            return self.ask(Pending::Rcpt(to.clone()), Ask::Rcpt { to });
        };
        self.reply(reply);
    }

    fn data(&mut self) {
        let tx = match self.tx.take() {
            None => return self.reply(Reply::need_mail()),
            Some(tx) if tx.chunked || tx.rcpts.is_empty() => {
                let reply = if tx.chunked {
                    Reply::data_after_bdat()
                } else {
                    Reply::need_rcpt()
                };
                self.tx = Some(tx);
                return self.reply(reply);
            }
            Some(tx) => tx,
        };
        self.reply(Reply::start_data());
        self.mode = Mode::Data {
            reader: DataReader::new(self.config.max_message_size),
            tx,
        };
    }

    fn bdat(&mut self, size: u64, last: bool) {
        let fate = match self.tx.take() {
            None => Fate::Refuse(Reply::need_mail()),
            Some(tx) if tx.rcpts.is_empty() => {
                self.tx = Some(tx);
                Fate::Refuse(Reply::need_rcpt())
            }
            Some(mut tx) => {
                let total = u64::try_from(tx.chunks.len())
                    .unwrap_or(u64::MAX)
                    .saturating_add(size);
                tx.chunked = true;
                if tx.too_big || total > self.max_size() {
                    // Free what was kept: this message will never be stored.
                    tx.chunks = Vec::new();
                    let first = !tx.too_big;
                    tx.too_big = true;
                    Fate::TooBig { tx, first }
                } else {
                    Fate::Keep(tx)
                }
            }
        };
        self.mode = Mode::Chunk(Chunk {
            reader: BdatReader::new(size),
            size,
            last,
            fate,
        });
    }

    fn accept(&mut self, pending: Pending, reply: Option<Reply>) {
        let own = match pending {
            Pending::Helo { name, esmtp } => {
                self.tx = None;
                let reply = if esmtp {
                    Reply::ehlo(&self.config.hostname, &name, &self.extensions())
                } else {
                    Reply::helo(&self.config.hostname, &name)
                };
                self.helo = Some(Helo { name, esmtp });
                reply
            }
            Pending::Mail { from, params } => {
                // `mail` only asks once a HELO was accepted.
                let (helo, esmtp) = self
                    .helo
                    .as_ref()
                    .map_or((String::new(), false), |h| (h.name.clone(), h.esmtp));
                self.tx = Some(Transaction {
                    helo,
                    esmtp,
                    from,
                    params,
                    rcpts: Vec::new(),
                    chunked: false,
                    chunks: Vec::new(),
                    chunks_nul: false,
                    too_big: false,
                });
                Reply::sender_ok()
            }
            Pending::Rcpt(to) => match &mut self.tx {
                Some(tx) => {
                    tx.rcpts.push(to);
                    Reply::recipient_ok()
                }
                // Unreachable: nothing can end the transaction while the
                // Ask is outstanding. Answered truthfully all the same.
                None => Reply::need_mail(),
            },
            Pending::Message => Reply::ok(),
            Pending::Auth(username) => {
                self.authenticated = Some(username);
                Reply::auth_succeeded()
            }
        };
        self.reply(reply.unwrap_or(own));
    }
}

#[cfg(test)]
mod tests {
    use super::super::reply::EnhancedCode;
    use super::*;

    const HOST: &str = "mx.test";

    fn config() -> SessionConfig {
        SessionConfig {
            hostname: HOST.into(),
            ..SessionConfig::default()
        }
    }

    fn addr(local: &str, domain: &str) -> Address {
        Address {
            local: local.into(),
            domain: domain.into(),
        }
    }

    /// The test driver's policy: everything is accepted, except recipients
    /// whose local part starts with "unknown", messages whose content
    /// contains "REJECT", and passwords other than "secret" ("tempfail"
    /// gets a 454).
    fn decide(ask: &Ask) -> Answer {
        match ask {
            Ask::Auth { password, .. } if password == "tempfail" => {
                Answer::Reject(Reply::auth_temporary_failure())
            }
            Ask::Auth { password, .. } if password != "secret" => Answer::Reject(Reply::auth_failed()),
            Ask::Rcpt { to } if to.local.starts_with("unknown") => Answer::Reject(Reply::no_such_user()),
            Ask::Message { data, .. } if data.windows(6).any(|w| w == b"REJECT") => {
                Answer::Reject(Reply::storage_full())
            }
            Ask::Message { .. } => Answer::AcceptWith(Reply::queued("Q1")),
            _ => Answer::Accept,
        }
    }

    /// Polls until the session needs input, answering every Ask.
    fn drain(s: &mut Session, events: &mut Vec<Event>) {
        while let Some(event) = s.poll() {
            let answer = match &event {
                Event::Ask(ask) => Some(decide(ask)),
                _ => None,
            };
            events.push(event);
            if let Some(answer) = answer {
                s.answer(answer);
            }
        }
    }

    /// Feeds `input` in pieces of `chunk` bytes, draining after each.
    fn run_chunked(s: &mut Session, input: &[u8], chunk: usize) -> Vec<Event> {
        let mut events = Vec::new();
        for piece in input.chunks(chunk) {
            s.feed(piece);
            drain(s, &mut events);
        }
        events
    }

    fn run_with(config: SessionConfig, input: &[u8]) -> Vec<Event> {
        let mut s = Session::new(config);
        run_chunked(&mut s, input, input.len().max(1))
    }

    fn run(input: &[u8]) -> Vec<Event> {
        run_with(config(), input)
    }

    /// A compact form: "250 2.1.0" for replies ("250" without an enhanced
    /// code), "?helo name", "?mail", "?rcpt addr", "?msg <len>", "close".
    fn summary(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Reply(r) if r.enhanced.is_none() => r.code.to_string(),
                Event::Reply(r) => format!("{} {}", r.code, r.enhanced),
                Event::Ask(Ask::Helo { name, .. }) => format!("?helo {name}"),
                Event::Ask(Ask::MailFrom { .. }) => "?mail".into(),
                Event::Ask(Ask::Rcpt { to }) => format!("?rcpt {to}"),
                Event::Ask(Ask::Message { data, .. }) => format!("?msg {}", data.len()),
                Event::Ask(Ask::Auth {
                    mechanism, username, ..
                }) => format!("?auth {mechanism} {username}"),
                Event::StartTls => "starttls".into(),
                Event::Close => "close".into(),
            })
            .collect()
    }

    fn messages(events: &[Event]) -> Vec<(Envelope, Vec<u8>)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Ask(Ask::Message { envelope, data }) => Some((envelope.clone(), data.clone())),
                _ => None,
            })
            .collect()
    }

    fn replies(events: &[Event]) -> Vec<&Reply> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Reply(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// "EHLO" + "MAIL" + one "RCPT", all accepted: 6 events.
    const OPEN: &str = "EHLO c.example\r\nMAIL FROM:<s@c.example>\r\nRCPT TO:<u@mx.test>\r\n";
    const OPEN_SUMMARY: [&str; 6] = [
        "?helo c.example",
        "250",
        "?mail",
        "250 2.1.0",
        "?rcpt u@mx.test",
        "250 2.1.5",
    ];

    fn after_open(rest: &str) -> Vec<String> {
        let events = run(format!("{OPEN}{rest}").as_bytes());
        let s = summary(&events);
        assert_eq!(s[..6], OPEN_SUMMARY, "{s:?}");
        s[6..].to_vec()
    }

    #[test]
    fn greeting_and_full_dialogue() {
        let s = Session::new(config());
        assert_eq!(s.greeting().to_bytes(), b"220 mx.test ESMTP Poczta\r\n");
        let input = "EHLO client.example\r\n\
                     MAIL FROM:<sender@client.example> SIZE=100 BODY=8BITMIME\r\n\
                     RCPT TO:<u@mx.test>\r\n\
                     RCPT TO:<v@mx.test>\r\n\
                     DATA\r\n\
                     Subject: hi\r\n\r\nHello\r\n.\r\n\
                     QUIT\r\n";
        let events = run(input.as_bytes());
        let mut wire = Vec::new();
        for r in replies(&events) {
            r.write_to(&mut wire);
        }
        assert_eq!(
            String::from_utf8(wire).unwrap(),
            "250-mx.test Hello client.example\r\n\
             250-PIPELINING\r\n\
             250-SIZE 26214400\r\n\
             250-8BITMIME\r\n\
             250-SMTPUTF8\r\n\
             250-ENHANCEDSTATUSCODES\r\n\
             250-CHUNKING\r\n\
             250 HELP\r\n\
             250 2.1.0 Sender OK\r\n\
             250 2.1.5 Recipient OK\r\n\
             250 2.1.5 Recipient OK\r\n\
             354 End data with <CR><LF>.<CR><LF>\r\n\
             250 2.0.0 OK queued as Q1\r\n\
             221 2.0.0 mx.test closing\r\n"
        );
        assert_eq!(events.last(), Some(&Event::Close));
        let msgs = messages(&events);
        assert_eq!(msgs.len(), 1);
        let (envelope, data) = &msgs[0];
        assert_eq!(
            envelope,
            &Envelope {
                helo: "client.example".into(),
                esmtp: true,
                from: ReversePath::Path(addr("sender", "client.example")),
                params: MailParams {
                    size: Some(100),
                    body: Some(super::super::command::Body::EightBitMime),
                    smtputf8: false,
                },
                rcpts: vec![addr("u", "mx.test"), addr("v", "mx.test")],
                authenticated: None,
                tls: None,
            }
        );
        assert_eq!(envelope.protocol(), "ESMTP");
        assert_eq!(data, b"Subject: hi\r\n\r\nHello\r\n");
    }

    /// A pipelined dialogue touching every mode; fed whole, then in pieces.
    fn pipelined_dialogue() -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(b"EHLO client.example\r\n");
        d.extend_from_slice(b"MAIL FROM:<sender@client.example> SIZE=100 BODY=8BITMIME\r\n");
        d.extend_from_slice(b"RCPT TO:<a@mx.test>\r\n");
        d.extend_from_slice(b"RCPT TO:<@relay.example:b@mx.test>\r\n");
        d.extend_from_slice(b"RCPT TO:<unknown@mx.test>\r\n");
        d.extend_from_slice(b"RCPT TO:<Postmaster>\r\n");
        d.extend_from_slice(b"DATA\r\n");
        d.extend_from_slice(b"Subject: hi\r\n\r\n..dot\r\n.\n\r\n.\rx\n.\r\n...\r\n.\r\n");
        d.extend_from_slice(b"NOOP\r\n");
        d.extend_from_slice(b"FOO\r\n");
        d.extend_from_slice(&[b'x'; 100]);
        d.extend_from_slice(b"\r\n");
        d.extend_from_slice(b"MAIL FROM:<>\r\n");
        d.extend_from_slice(b"RCPT TO:<\"quoted local\"@mx.test>\r\n");
        d.extend_from_slice(b"BDAT 10\r\n0123\r\n.\r\n9");
        d.extend_from_slice(b"BDAT 0 LAST\r\n");
        d.extend_from_slice(b"RSET\r\n");
        d.extend_from_slice(b"MAIL FROM:<x@y.example>\r\n");
        d.extend_from_slice(b"BDAT 3\r\nabc");
        d.extend_from_slice(b"RCPT TO:<c@mx.test>\n");
        d.extend_from_slice(b"DATA\r\n.\r\n");
        d.extend_from_slice(b"QUIT\r\n");
        d.extend_from_slice(b"NOOP\r\n");
        d
    }

    #[test]
    fn pipelined_dialogue_events() {
        let events = run_with(
            SessionConfig {
                max_line_length: 64,
                ..config()
            },
            &pipelined_dialogue(),
        );
        assert_eq!(
            summary(&events),
            [
                "?helo client.example",
                "250",
                "?mail",
                "250 2.1.0",
                "?rcpt a@mx.test",
                "250 2.1.5",
                "?rcpt b@mx.test",
                "250 2.1.5",
                "?rcpt unknown@mx.test",
                "550 5.1.1",
                "?rcpt postmaster",
                "250 2.1.5",
                "354",
                "?msg 36",
                "250 2.0.0",
                "250 2.0.0",
                "500 5.5.2",
                "500 5.5.2",
                "?mail",
                "250 2.1.0",
                "?rcpt \"quoted local\"@mx.test",
                "250 2.1.5",
                "250 2.0.0",
                "?msg 10",
                "250 2.0.0",
                "250 2.0.0",
                "?mail",
                "250 2.1.0",
                "503 5.5.1",
                "?rcpt c@mx.test",
                "250 2.1.5",
                "354",
                "?msg 0",
                "250 2.0.0",
                "221 2.0.0",
                "close",
            ]
        );
        let msgs = messages(&events);
        assert_eq!(msgs[0].1, b"Subject: hi\r\n\r\n.dot\r\n.\n\r\n.\rx\n.\r\n..\r\n");
        assert_eq!(
            msgs[0].0.rcpts,
            [addr("a", "mx.test"), addr("b", "mx.test"), Address::postmaster()]
        );
        assert_eq!(msgs[1].1, b"0123\r\n.\r\n9");
        assert_eq!(msgs[1].0.from, ReversePath::Null);
        assert_eq!(msgs[2].1, b"");
    }

    #[test]
    fn chunk_split_gives_identical_events() {
        let input = pipelined_dialogue();
        let cfg = SessionConfig {
            max_line_length: 64,
            ..config()
        };
        let whole = run_with(cfg.clone(), &input);
        for size in [1, 2, 3, 4, 7, 16, 64, 512] {
            let mut s = Session::new(cfg.clone());
            assert_eq!(run_chunked(&mut s, &input, size), whole, "chunk size {size}");
            assert!(s.is_closed());
        }
    }

    #[test]
    fn out_of_sequence_commands() {
        let table: &[(&str, &[&str])] = &[
            // MAIL before EHLO/HELO.
            ("MAIL FROM:<a@b>\r\n", &["503 5.5.1"]),
            // RCPT before MAIL.
            ("RCPT TO:<a@b>\r\n", &["503 5.5.1"]),
            ("EHLO x\r\nRCPT TO:<a@b>\r\n", &["?helo x", "250", "503 5.5.1"]),
            // DATA before MAIL, and before any RCPT.
            ("DATA\r\n", &["503 5.5.1"]),
            (
                "EHLO x\r\nMAIL FROM:<a@b>\r\nDATA\r\n",
                &["?helo x", "250", "?mail", "250 2.1.0", "503 5.5.1"],
            ),
            // DATA after every RCPT was refused.
            (
                "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<unknown@b>\r\nDATA\r\n",
                &[
                    "?helo x",
                    "250",
                    "?mail",
                    "250 2.1.0",
                    "?rcpt unknown@b",
                    "550 5.1.1",
                    "503 5.5.1",
                ],
            ),
            // Nested MAIL.
            (
                "EHLO x\r\nMAIL FROM:<a@b>\r\nMAIL FROM:<c@d>\r\n",
                &["?helo x", "250", "?mail", "250 2.1.0", "503 5.5.1"],
            ),
            // BDAT without MAIL: the chunk is consumed, not run as a command.
            ("BDAT 6\r\nQUIT\r\nNOOP\r\n", &["503 5.5.1", "250 2.0.0"]),
            // BDAT without RCPT, LAST or not.
            (
                "EHLO x\r\nMAIL FROM:<a@b>\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n",
                &["?helo x", "250", "?mail", "250 2.1.0", "503 5.5.1", "250 2.0.0"],
            ),
        ];
        for (input, expected) in table {
            assert_eq!(summary(&run(input.as_bytes())), *expected, "{input:?}");
        }
    }

    #[test]
    fn sequence_errors_inside_a_transaction() {
        let table: &[(&str, &[&str])] = &[
            // DATA after BDAT in the same transaction.
            ("BDAT 2\r\nabDATA\r\n", &["250 2.0.0", "503 5.5.1"]),
            // RCPT after BDAT.
            ("BDAT 2\r\nabRCPT TO:<v@mx.test>\r\n", &["250 2.0.0", "503 5.5.1"]),
            // BDAT after BDAT LAST: the transaction is over.
            (
                "BDAT 2 LAST\r\nabBDAT 1\r\nxNOOP\r\n",
                &["?msg 2", "250 2.0.0", "503 5.5.1", "250 2.0.0"],
            ),
            // MAIL after DATA finished is a new transaction.
            (
                "DATA\r\n.\r\nMAIL FROM:<a@b>\r\n",
                &["354", "?msg 0", "250 2.0.0", "?mail", "250 2.1.0"],
            ),
            // After a finished message, DATA needs a new transaction.
            (
                "DATA\r\n.\r\nDATA\r\n",
                &["354", "?msg 0", "250 2.0.0", "503 5.5.1"],
            ),
        ];
        for (rest, expected) in table {
            assert_eq!(after_open(rest), *expected, "{rest:?}");
        }
    }

    #[test]
    fn syntax_and_unknown_commands() {
        let table: &[(&str, u16, EnhancedCode)] = &[
            ("EHLO\r\n", 501, EnhancedCode(5, 5, 4)),
            ("HELO\r\n", 501, EnhancedCode(5, 5, 4)),
            ("MAIL FROM:bad\r\n", 501, EnhancedCode(5, 1, 7)),
            ("RCPT TO:<a b@c>\r\n", 501, EnhancedCode(5, 1, 3)),
            ("MAIL FROM:<a@b> BODY=BINARYMIME\r\n", 555, EnhancedCode(5, 5, 4)),
            ("MAIL FROM:<a@b> SIZE=x\r\n", 501, EnhancedCode(5, 5, 4)),
            ("FOO bar\r\n", 500, EnhancedCode(5, 5, 2)),
            ("NO\0OP\r\n", 500, EnhancedCode(5, 5, 2)),
            ("NOOP\r\r\n", 500, EnhancedCode(5, 5, 2)),
            ("EXPN list\r\n", 502, EnhancedCode(5, 5, 1)),
            ("STARTTLS\r\n", 502, EnhancedCode(5, 5, 1)),
            ("AUTH PLAIN AGFAAGI=\r\n", 502, EnhancedCode(5, 5, 1)),
            ("VRFY someone\r\n", 252, EnhancedCode(2, 5, 0)),
            ("HELP\r\n", 214, EnhancedCode(2, 0, 0)),
            ("NOOP\r\n", 250, EnhancedCode(2, 0, 0)),
            ("RSET\r\n", 250, EnhancedCode(2, 0, 0)),
            ("noop\n", 250, EnhancedCode(2, 0, 0)),
        ];
        for &(input, code, enhanced) in table {
            let events = run(input.as_bytes());
            let r = replies(&events);
            assert_eq!(r.len(), 1, "{input:?}: {events:?}");
            assert_eq!((r[0].code, r[0].enhanced), (code, enhanced), "{input:?}");
        }
        // The session goes on after each of them.
        let events = run(b"FOO\r\nMAIL FROM:bad\r\nEHLO x\r\n");
        assert_eq!(summary(&events), ["500 5.5.2", "501 5.1.7", "?helo x", "250"]);
    }

    #[test]
    fn overlong_line_is_discarded_and_the_session_goes_on() {
        let cfg = SessionConfig {
            max_line_length: 64,
            ..config()
        };
        // 62 bytes + CRLF = 64: accepted. 63 + CRLF: too long.
        let ok = format!("NOOP {}\r\n", "x".repeat(57));
        assert_eq!(ok.len(), 64);
        let long = format!("NOOP {}\r\n", "x".repeat(58));
        let events = run_with(cfg.clone(), format!("{ok}{long}NOOP\r\n").as_bytes());
        assert_eq!(summary(&events), ["250 2.0.0", "500 5.5.2", "250 2.0.0"]);
        assert_eq!(replies(&events)[1], &Reply::line_too_long());

        // Memory stays bounded while a huge line streams in.
        let mut s = Session::new(cfg);
        let mut events = Vec::new();
        for _ in 0..100 {
            s.feed(&[b'A'; 1000]);
            drain(&mut s, &mut events);
            assert!(s.buffered() < 64, "{}", s.buffered());
        }
        assert!(events.is_empty());
        s.feed(b"AAAA\r\nNOOP\r\n");
        drain(&mut s, &mut events);
        assert_eq!(summary(&events), ["500 5.5.2", "250 2.0.0"]);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn too_many_errors_closes() {
        let cfg = SessionConfig {
            max_errors: 3,
            ..config()
        };
        let mut s = Session::new(cfg);
        let input = b"FOO\r\nNOOP\r\nBAR\r\nMAIL FROM:<a@b>\r\nNOOP\r\nNOOP\r\n";
        let events = run_chunked(&mut s, input, input.len());
        assert_eq!(
            summary(&events),
            [
                "500 5.5.2",
                "250 2.0.0",
                "500 5.5.2",
                "503 5.5.1",
                "421 4.7.0",
                "close"
            ]
        );
        assert_eq!(replies(&events)[4], &Reply::too_many_errors());
        assert!(s.is_closed());
        s.feed(b"NOOP\r\n");
        assert_eq!(s.poll(), None);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn refused_answers_count_as_errors() {
        let cfg = SessionConfig {
            max_errors: 2,
            ..config()
        };
        let events = run_with(
            cfg,
            format!("{OPEN}RCPT TO:<unknown1@x>\r\nRCPT TO:<unknown2@x>\r\nNOOP\r\n").as_bytes(),
        );
        assert_eq!(
            summary(&events)[6..],
            [
                "?rcpt unknown1@x",
                "550 5.1.1",
                "?rcpt unknown2@x",
                "550 5.1.1",
                "421 4.7.0",
                "close"
            ]
        );
    }

    #[test]
    fn too_many_recipients() {
        let cfg = SessionConfig {
            max_recipients: 2,
            ..config()
        };
        let events = run_with(
            cfg,
            b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u1@x>\r\nRCPT TO:<unknown@x>\r\n\
              RCPT TO:<u2@x>\r\nRCPT TO:<u3@x>\r\nDATA\r\n.\r\n",
        );
        assert_eq!(
            summary(&events)[4..],
            [
                "?rcpt u1@x",
                "250 2.1.5",
                "?rcpt unknown@x",
                "550 5.1.1",
                "?rcpt u2@x",
                "250 2.1.5",
                "452 4.5.3",
                "354",
                "?msg 0",
                "250 2.0.0"
            ]
        );
        assert_eq!(messages(&events)[0].0.rcpts.len(), 2);
    }

    #[test]
    fn size_limits() {
        let cfg = SessionConfig {
            max_message_size: 10,
            ..config()
        };
        let table: &[(&str, &[&str])] = &[
            // Declared at MAIL.
            ("MAIL FROM:<a@b> SIZE=11\r\n", &["552 5.3.4"]),
            ("MAIL FROM:<a@b> SIZE=10\r\n", &["?mail", "250 2.1.0"]),
            // Found at the end of DATA: the rest is discarded up to the
            // terminator, the transaction is over and the next command runs.
            (
                "MAIL FROM:<a@b>\r\nRCPT TO:<u@x>\r\nDATA\r\n0123456789\r\n.\r\nRCPT TO:<u@x>\r\n",
                &[
                    "?mail",
                    "250 2.1.0",
                    "?rcpt u@x",
                    "250 2.1.5",
                    "354",
                    "552 5.3.4",
                    "503 5.5.1",
                ],
            ),
            // Exactly the limit (content includes the final CRLF).
            (
                "MAIL FROM:<a@b>\r\nRCPT TO:<u@x>\r\nDATA\r\n01234567\r\n.\r\n",
                &[
                    "?mail",
                    "250 2.1.0",
                    "?rcpt u@x",
                    "250 2.1.5",
                    "354",
                    "?msg 10",
                    "250 2.0.0",
                ],
            ),
            // BDAT: over the limit on the second chunk; later chunks of the
            // transaction are consumed and get 552 too; LAST ends it.
            (
                "MAIL FROM:<a@b>\r\nRCPT TO:<u@x>\r\nBDAT 6\r\n012345BDAT 6\r\n012345\
                 BDAT 1\r\nxBDAT 1 LAST\r\nyRCPT TO:<u@x>\r\n",
                &[
                    "?mail",
                    "250 2.1.0",
                    "?rcpt u@x",
                    "250 2.1.5",
                    "250 2.0.0",
                    "552 5.3.4",
                    "552 5.3.4",
                    "552 5.3.4",
                    "503 5.5.1",
                ],
            ),
            // A failed BDAT transaction is cleared by RSET.
            (
                "MAIL FROM:<a@b>\r\nRCPT TO:<u@x>\r\nBDAT 11\r\n0123456789ARSET\r\n\
                 MAIL FROM:<a@b>\r\nRCPT TO:<u@x>\r\nBDAT 10 LAST\r\n0123456789",
                &[
                    "?mail",
                    "250 2.1.0",
                    "?rcpt u@x",
                    "250 2.1.5",
                    "552 5.3.4",
                    "250 2.0.0",
                    "?mail",
                    "250 2.1.0",
                    "?rcpt u@x",
                    "250 2.1.5",
                    "?msg 10",
                    "250 2.0.0",
                ],
            ),
        ];
        for (rest, expected) in table {
            let events = run_with(cfg.clone(), format!("EHLO x\r\n{rest}").as_bytes());
            assert_eq!(summary(&events)[2..], **expected, "{rest:?}");
        }
    }

    #[test]
    fn a_failed_bdat_transaction_counts_as_one_error() {
        let cfg = SessionConfig {
            max_message_size: 10,
            max_errors: 2,
            ..config()
        };
        let mut input = format!("{OPEN}BDAT 11\r\n0123456789A");
        for _ in 0..5 {
            input.push_str("BDAT 1\r\nx");
        }
        input.push_str("BDAT 1 LAST\r\nxNOOP\r\n");
        let events = run_with(cfg, input.as_bytes());
        let mut expected = vec!["552 5.3.4"; 7];
        expected.push("250 2.0.0");
        assert_eq!(summary(&events)[6..], expected);
    }

    #[test]
    fn nul_bytes() {
        // In a command line.
        let events = run(b"NOOP\0\r\nNOOP\r\n");
        assert_eq!(summary(&events), ["500 5.5.2", "250 2.0.0"]);
        assert_eq!(
            replies(&events)[0].to_string(),
            "500 5.5.2 Invalid characters in command"
        );
        // In DATA content: no Ask, the transaction is over.
        assert_eq!(
            after_open("DATA\r\na\0b\r\n.\r\nRCPT TO:<u@x>\r\n"),
            ["354", "554 5.6.0", "503 5.5.1"]
        );
        // In BDAT content.
        assert_eq!(
            after_open("BDAT 3\r\na\0bBDAT 1 LAST\r\nc"),
            ["250 2.0.0", "554 5.6.0"]
        );
    }

    #[test]
    fn smtputf8_rules() {
        let table: &[(&str, &[&str])] = &[
            ("MAIL FROM:<ü@x.example>\r\n", &["553 5.6.7"]),
            ("MAIL FROM:<u@bücher.example>\r\n", &["553 5.6.7"]),
            ("MAIL FROM:<ü@x.example> SMTPUTF8\r\n", &["?mail", "250 2.1.0"]),
            (
                "MAIL FROM:<a@b>\r\nRCPT TO:<ü@x>\r\n",
                &["?mail", "250 2.1.0", "553 5.6.7"],
            ),
            (
                "MAIL FROM:<a@b> SMTPUTF8\r\nRCPT TO:<ü@x>\r\n",
                &["?mail", "250 2.1.0", "?rcpt ü@x", "250 2.1.5"],
            ),
            (
                "MAIL FROM:<> SMTPUTF8\r\nRCPT TO:<\"ü x\"@bücher>\r\n",
                &["?mail", "250 2.1.0", "?rcpt \"ü x\"@bücher", "250 2.1.5"],
            ),
        ];
        for (rest, expected) in table {
            let events = run(format!("EHLO x\r\n{rest}").as_bytes());
            assert_eq!(summary(&events)[2..], **expected, "{rest:?}");
        }
    }

    #[test]
    fn postmaster_source_route_and_quoted_local_parts() {
        let events = run(
            b"EHLO x\r\nMAIL FROM:<@a.example,@b.example:s@c.example>\r\nRCPT TO:<postMaster>\r\n\
              RCPT TO:<\"a@b\"@mx.test>\r\nRCPT TO:<u@[192.0.2.1]>\r\nDATA\r\n.\r\n",
        );
        let (envelope, _) = &messages(&events)[0];
        assert_eq!(envelope.from, ReversePath::Path(addr("s", "c.example")));
        assert_eq!(
            envelope.rcpts,
            [
                Address::postmaster(),
                addr("\"a@b\"", "mx.test"),
                addr("u", "[192.0.2.1]")
            ]
        );
    }

    #[test]
    fn bdat_chunks() {
        // Several chunks, binary content kept exactly, LAST joins them.
        let events =
            run(format!("{OPEN}BDAT 5\r\nhelloBDAT 8\r\n\r\n.\r\n\n.\nBDAT 1 LAST\r\n!NOOP\r\n").as_bytes());
        assert_eq!(
            summary(&events)[6..],
            ["250 2.0.0", "250 2.0.0", "?msg 14", "250 2.0.0", "250 2.0.0"]
        );
        let r = replies(&events);
        assert_eq!(r[3].to_string(), "250 2.0.0 5 octets received");
        assert_eq!(r[4].to_string(), "250 2.0.0 8 octets received");
        assert_eq!(messages(&events)[0].1, b"hello\r\n.\r\n\n.\n!");

        // BDAT 0 LAST alone, and after other chunks.
        assert_eq!(after_open("BDAT 0 LAST\r\n"), ["?msg 0", "250 2.0.0"]);
        let events = run(format!("{OPEN}BDAT 3\r\nabcBDAT 0 LAST\r\n").as_bytes());
        assert_eq!(messages(&events)[0].1, b"abc");

        // A LAST chunk split from its command across feeds.
        let mut s = Session::new(config());
        let mut events = run_chunked(&mut s, format!("{OPEN}BDAT 4 LAST\r\nab").as_bytes(), 1000);
        assert!(s.in_data());
        s.feed(b"cdNOOP\r\n");
        drain(&mut s, &mut events);
        assert!(!s.in_data());
        assert_eq!(summary(&events)[6..], ["?msg 4", "250 2.0.0", "250 2.0.0"]);
    }

    #[test]
    fn data_unstuffing_and_smuggling_probes() {
        let table: &[(&[u8], &[u8])] = &[
            (b"..x\r\n.\r\n", b".x\r\n"),
            (b"a\r\n.\r\n", b"a\r\n"),
            (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n"),
            (b"a\r\n...\r\n.\r\n", b"a\r\n..\r\n"),
            (b".\r\n", b""),
            (b"x\n.\ny\r\n.\r\n", b"x\n.\ny\r\n"),
            (b"x\r.\ry\r\n.\r\n", b"x\r.\ry\r\n"),
            (b"x\n.\r\ny\r\n.\r\n", b"x\n.\r\ny\r\n"),
            (b"x\r\n.\ny\r\n.\r\n", b"x\r\n.\ny\r\n"),
            (b"x\r.\r\ny\r\n.\r\n", b"x\r.\r\ny\r\n"),
        ];
        for &(content, expected) in table {
            let mut input = OPEN.as_bytes().to_vec();
            input.extend_from_slice(b"DATA\r\n");
            input.extend_from_slice(content);
            input.extend_from_slice(b"MAIL FROM:<n@x>\r\n");
            let events = run(&input);
            assert_eq!(
                summary(&events)[6..],
                [
                    "354".to_owned(),
                    format!("?msg {}", expected.len()),
                    "250 2.0.0".into(),
                    "?mail".into(),
                    "250 2.1.0".into()
                ],
                "{content:?}"
            );
            assert_eq!(messages(&events)[0].1, expected, "{content:?}");
        }
    }

    #[test]
    fn data_terminator_split_at_every_offset() {
        let tail = b"line\r\n..stuffed\r\n\r\n.\r\nNOOP\r\n";
        let mut head = OPEN.as_bytes().to_vec();
        head.extend_from_slice(b"DATA\r\n");
        for split in 0..=tail.len() {
            let mut s = Session::new(config());
            let mut events = Vec::new();
            s.feed(&head);
            s.feed(&tail[..split]);
            drain(&mut s, &mut events);
            s.feed(&tail[split..]);
            drain(&mut s, &mut events);
            assert_eq!(
                summary(&events)[6..],
                ["354", "?msg 18", "250 2.0.0", "250 2.0.0"],
                "split {split}"
            );
            assert_eq!(
                messages(&events)[0].1,
                b"line\r\n.stuffed\r\n\r\n",
                "split {split}"
            );
        }
    }

    #[test]
    fn in_data_and_pending_asks() {
        let mut s = Session::new(config());
        s.feed(format!("{OPEN}DATA\r\nabc").as_bytes());
        // The EHLO Ask blocks everything behind it.
        assert!(matches!(s.poll(), Some(Event::Ask(Ask::Helo { .. }))));
        assert_eq!(s.poll(), None);
        assert!(s.buffered() > 0);
        s.answer(Answer::Accept);
        let mut events = Vec::new();
        drain(&mut s, &mut events);
        assert!(s.in_data());
        assert_eq!(summary(&events).last().map(String::as_str), Some("354"));
        s.feed(b"\r\n.\r\n");
        drain(&mut s, &mut events);
        assert!(!s.in_data());
        assert_eq!(messages(&events)[0].1, b"abc\r\n");
    }

    #[test]
    fn rejected_message_resets_the_transaction() {
        assert_eq!(
            after_open("DATA\r\nREJECT\r\n.\r\nRCPT TO:<u@x>\r\nMAIL FROM:<a@b>\r\n"),
            ["354", "?msg 8", "452 4.3.1", "503 5.5.1", "?mail", "250 2.1.0"]
        );
    }

    #[test]
    fn rset_then_a_new_dialogue() {
        assert_eq!(
            after_open(
                "RSET\r\nRCPT TO:<u@x>\r\nDATA\r\nMAIL FROM:<a@b>\r\nRCPT TO:<v@x>\r\nDATA\r\nm\r\n.\r\n"
            ),
            [
                "250 2.0.0",
                "503 5.5.1",
                "503 5.5.1",
                "?mail",
                "250 2.1.0",
                "?rcpt v@x",
                "250 2.1.5",
                "354",
                "?msg 3",
                "250 2.0.0"
            ]
        );
    }

    #[test]
    fn helo_and_ehlo_handling() {
        // EHLO resets the transaction; a second EHLO is fine.
        assert_eq!(
            after_open("EHLO again\r\nDATA\r\nRCPT TO:<u@x>\r\n"),
            ["?helo again", "250", "503 5.5.1", "503 5.5.1"]
        );
        // HELO gets one line, and the envelope says so.
        let events = run(b"HELO old.example\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@x>\r\nDATA\r\n.\r\n");
        assert_eq!(
            replies(&events)[0].to_bytes(),
            b"250 mx.test Hello old.example\r\n"
        );
        let (envelope, _) = &messages(&events)[0];
        assert_eq!((envelope.helo.as_str(), envelope.esmtp), ("old.example", false));
        // A refused EHLO leaves the state as it was (RFC 5321 §4.1.4).
        let mut s = Session::new(config());
        s.feed(b"EHLO bad\r\nMAIL FROM:<a@b>\r\n");
        assert!(matches!(s.poll(), Some(Event::Ask(Ask::Helo { .. }))));
        s.answer(Answer::Reject(Reply::new(550, EnhancedCode(5, 7, 1), "No")));
        let mut events = Vec::new();
        drain(&mut s, &mut events);
        assert_eq!(summary(&events), ["550 5.7.1", "503 5.5.1"]);
    }

    #[test]
    fn quit_closes() {
        let mut s = Session::new(config());
        let events = run_chunked(&mut s, b"QUIT\r\nNOOP\r\n", 100);
        assert_eq!(summary(&events), ["221 2.0.0", "close"]);
        assert_eq!(replies(&events)[0].to_bytes(), b"221 2.0.0 mx.test closing\r\n");
        assert!(s.is_closed());
        s.feed(b"NOOP\r\n");
        assert_eq!(s.poll(), None);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn timeout_and_shutdown() {
        let mut s = Session::new(config());
        s.feed(b"EHLO x\r\nNOOP\r\n");
        assert!(matches!(s.poll(), Some(Event::Ask(_))));
        // The driver times out while deciding: the late answer is ignored.
        assert_eq!(
            s.idle_timeout().to_string(),
            "421 4.4.2 mx.test Error: timeout exceeded"
        );
        assert!(s.is_closed());
        s.answer(Answer::Accept);
        assert_eq!(s.poll(), None);
        assert_eq!(s.buffered(), 0);

        let mut s = Session::new(config());
        s.feed(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@x>\r\nDATA\r\npartial");
        drain(&mut s, &mut Vec::new());
        assert!(s.in_data());
        assert_eq!(
            s.shutdown().to_string(),
            "421 4.3.2 mx.test Service shutting down"
        );
        assert!(!s.in_data());
        assert!(s.is_closed());
        assert_eq!(s.poll(), None);
    }

    #[test]
    fn message_ask_debug_omits_content() {
        let events = run(format!("{OPEN}DATA\r\nsecret content\r\n.\r\n").as_bytes());
        let debug = format!("{events:?}");
        assert!(!debug.contains("secret"));
        assert!(debug.contains("data_len: 16"));
    }

    // --- STARTTLS and AUTH -------------------------------------------------

    fn tls13() -> TlsInfo {
        TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
        }
    }

    /// A session already under TLS that offers AUTH (port 465 style).
    fn implicit() -> SessionConfig {
        SessionConfig {
            auth: true,
            implicit_tls: Some(tls13()),
            ..config()
        }
    }

    /// A submission listener on port 587: STARTTLS, then AUTH, required.
    fn submission() -> SessionConfig {
        SessionConfig {
            starttls: true,
            auth: true,
            require_auth: true,
            ..config()
        }
    }

    fn b64(s: &str) -> String {
        crate::sasl::encode_base64(s.as_bytes())
    }

    /// The extension keywords of the EHLO reply.
    fn ehlo_keywords(events: &[Event]) -> Vec<String> {
        let ehlo = replies(events)
            .into_iter()
            .find(|r| r.code == 250 && r.lines.len() > 1)
            .expect("an EHLO reply");
        ehlo.lines[1..].to_vec()
    }

    fn has(keywords: &[String], keyword: &str) -> bool {
        keywords.iter().any(|k| k == keyword)
    }

    #[test]
    fn ehlo_advertises_starttls_and_auth_by_state() {
        // (config, after a STARTTLS handshake, STARTTLS offered, AUTH offered)
        let table: &[(&str, SessionConfig, bool, bool, bool)] = &[
            ("default", config(), false, false, false),
            (
                "starttls only",
                SessionConfig {
                    starttls: true,
                    ..config()
                },
                false,
                true,
                false,
            ),
            ("submission before TLS", submission(), false, true, false),
            ("submission under TLS", submission(), true, false, true),
            (
                "auth without TLS allowed",
                SessionConfig {
                    auth: true,
                    auth_without_tls: true,
                    ..config()
                },
                false,
                false,
                true,
            ),
            (
                "auth needs TLS, no STARTTLS",
                SessionConfig {
                    auth: true,
                    ..config()
                },
                false,
                false,
                false,
            ),
            (
                "implicit TLS never offers STARTTLS",
                SessionConfig {
                    starttls: true,
                    ..implicit()
                },
                false,
                false,
                true,
            ),
        ];
        for (name, cfg, handshake, starttls, auth) in table {
            let mut s = Session::new(cfg.clone());
            let mut events = Vec::new();
            if *handshake {
                s.feed(b"STARTTLS\r\n");
                drain(&mut s, &mut events);
                assert_eq!(summary(&events), ["220 2.0.0", "starttls"], "{name}");
                s.tls_established(tls13());
            }
            s.feed(b"EHLO c\r\n");
            drain(&mut s, &mut events);
            let keywords = ehlo_keywords(&events);
            assert_eq!(has(&keywords, "STARTTLS"), *starttls, "{name}: {keywords:?}");
            assert_eq!(has(&keywords, "AUTH PLAIN LOGIN"), *auth, "{name}: {keywords:?}");
            assert_eq!(keywords.last().map(String::as_str), Some("HELP"), "{name}");
            assert_eq!(s.in_tls(), *handshake || cfg.implicit_tls.is_some(), "{name}");
        }
    }

    #[test]
    fn ehlo_wire_form_with_starttls_and_auth() {
        let cfg = SessionConfig {
            auth_without_tls: true,
            ..submission()
        };
        let events = run_with(cfg, b"EHLO c\r\n");
        assert_eq!(
            String::from_utf8(replies(&events)[0].to_bytes()).unwrap(),
            "250-mx.test Hello c\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n250-8BITMIME\r\n\
             250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-STARTTLS\r\n\
             250-AUTH PLAIN LOGIN\r\n250 HELP\r\n"
        );
    }

    #[test]
    fn starttls_discards_injected_plaintext() {
        let mut s = Session::new(submission());
        // Everything after STARTTLS in the same packet is an injection probe.
        s.feed(b"STARTTLS\r\nMAIL FROM:<x@y>\r\nRCPT TO:<u@mx.test>\r\n");
        let mut events = Vec::new();
        drain(&mut s, &mut events);
        assert_eq!(summary(&events), ["220 2.0.0", "starttls"]);
        assert_eq!(
            replies(&events)[0].to_bytes(),
            b"220 2.0.0 Ready to start TLS\r\n"
        );
        assert_eq!(s.buffered(), 0);
        // Plaintext arriving before the handshake is reported is dropped too.
        s.feed(b"EHLO injected\r\n");
        assert_eq!(s.poll(), None);
        assert_eq!(s.buffered(), 0);
        assert!(!s.in_tls());

        s.tls_established(tls13());
        assert!(s.in_tls());
        assert_eq!(s.tls_info(), Some(&tls13()));
        assert_eq!(s.poll(), None, "the injected MAIL must be gone");
        // Back to the state after the greeting: EHLO is needed again.
        let cfg = SessionConfig {
            require_auth: false,
            ..submission()
        };
        let mut s = Session::new(cfg);
        s.feed(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nSTARTTLS\r\n");
        let mut events = Vec::new();
        drain(&mut s, &mut events);
        // STARTTLS inside a transaction is refused: the reset would drop it.
        assert_eq!(
            summary(&events)[4..],
            ["?rcpt u@mx.test", "250 2.1.5", "503 5.5.1"]
        );
        events.clear();
        s.feed(b"RSET\r\nSTARTTLS\r\nDATA\r\n");
        drain(&mut s, &mut events);
        assert_eq!(summary(&events), ["250 2.0.0", "220 2.0.0", "starttls"]);
        s.tls_established(tls13());
        events.clear();
        s.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nEHLO c\r\nMAIL FROM:<a@b>\r\n");
        drain(&mut s, &mut events);
        assert_eq!(
            summary(&events),
            ["503 5.5.1", "503 5.5.1", "?helo c", "250", "?mail", "250 2.1.0"]
        );
        assert!(!has(&ehlo_keywords(&events), "STARTTLS"));
        events.clear();
        s.feed(b"RCPT TO:<u@mx.test>\r\nDATA\r\n.\r\n");
        drain(&mut s, &mut events);
        let (envelope, _) = &messages(&events)[0];
        assert_eq!(envelope.tls, Some(tls13()));
        assert_eq!(envelope.authenticated, None);
        assert_eq!(envelope.protocol(), "ESMTPS");
    }

    #[test]
    fn starttls_split_at_every_offset_still_discards() {
        let input = b"STARTTLS\r\nMAIL FROM:<x@y>\r\n";
        for split in 0..=input.len() {
            let mut s = Session::new(submission());
            let mut events = Vec::new();
            s.feed(&input[..split]);
            drain(&mut s, &mut events);
            s.feed(&input[split..]);
            drain(&mut s, &mut events);
            assert_eq!(summary(&events), ["220 2.0.0", "starttls"], "split {split}");
            s.tls_established(tls13());
            assert_eq!(s.poll(), None, "split {split}");
            assert_eq!(s.buffered(), 0, "split {split}");
        }
    }

    #[test]
    fn starttls_refusals() {
        let starttls = SessionConfig {
            starttls: true,
            ..config()
        };
        let table: &[(&str, SessionConfig, &str, &[&str])] = &[
            ("not offered", config(), "STARTTLS\r\n", &["502 5.5.1"]),
            ("argument", starttls.clone(), "STARTTLS now\r\n", &["501 5.5.4"]),
            (
                "inside implicit TLS",
                SessionConfig {
                    starttls: true,
                    ..implicit()
                },
                "STARTTLS\r\n",
                &["503 5.5.1"],
            ),
            (
                "in a transaction",
                starttls,
                "EHLO c\r\nMAIL FROM:<a@b>\r\nSTARTTLS\r\n",
                &["?helo c", "250", "?mail", "250 2.1.0", "503 5.5.1"],
            ),
        ];
        for (name, cfg, input, expected) in table {
            assert_eq!(
                summary(&run_with(cfg.clone(), input.as_bytes())),
                *expected,
                "{name}"
            );
        }
        // Twice: the second one is inside TLS.
        let mut s = Session::new(submission());
        let mut events = run_chunked(&mut s, b"STARTTLS\r\n", 100);
        s.tls_established(tls13());
        s.feed(b"STARTTLS\r\nNOOP\r\n");
        drain(&mut s, &mut events);
        assert_eq!(
            summary(&events),
            ["220 2.0.0", "starttls", "503 5.5.1", "250 2.0.0"]
        );
        assert_eq!(replies(&events)[1].to_string(), "503 5.5.1 TLS already active");
    }

    #[test]
    fn starttls_resets_authentication() {
        let cfg = SessionConfig {
            auth_without_tls: true,
            ..submission()
        };
        let mut s = Session::new(cfg);
        let input = format!("EHLO c\r\nAUTH PLAIN {}\r\nSTARTTLS\r\n", b64("\0alice\0secret"));
        let events = run_chunked(&mut s, input.as_bytes(), 1000);
        assert_eq!(
            summary(&events),
            [
                "?helo c",
                "250",
                "?auth PLAIN alice",
                "235 2.7.0",
                "220 2.0.0",
                "starttls"
            ]
        );
        assert_eq!(s.authenticated(), Some("alice"));
        s.tls_established(tls13());
        assert_eq!(s.authenticated(), None);
        let mut events = Vec::new();
        s.feed(b"EHLO c\r\nMAIL FROM:<a@b>\r\n");
        drain(&mut s, &mut events);
        assert_eq!(summary(&events)[2..], ["530 5.7.0"]);
    }

    #[test]
    fn auth_dialogues() {
        let plain = b64("\0alice\0secret");
        let (user, pass) = (b64("alice"), b64("secret"));
        let table: Vec<(String, &[&str])> = vec![
            // PLAIN with and without an initial response.
            (
                format!("AUTH PLAIN {plain}\r\n"),
                &["?auth PLAIN alice", "235 2.7.0"],
            ),
            (
                format!("auth plain\r\n{plain}\r\n"),
                &["334", "?auth PLAIN alice", "235 2.7.0"],
            ),
            // Same authzid as the user is fine.
            (
                format!("AUTH PLAIN {}\r\n", b64("alice\0alice\0secret")),
                &["?auth PLAIN alice", "235 2.7.0"],
            ),
            // LOGIN, and LOGIN with the user name as initial response.
            (
                format!("AUTH LOGIN\r\n{user}\r\n{pass}\n"),
                &["334", "334", "?auth LOGIN alice", "235 2.7.0"],
            ),
            (
                format!("AUTH LOGIN {user}\r\n{pass}\r\n"),
                &["334", "?auth LOGIN alice", "235 2.7.0"],
            ),
            // Wrong password, then a retry; a temporary failure.
            (
                format!("AUTH PLAIN {}\r\nAUTH PLAIN {plain}\r\n", b64("\0alice\0wrong")),
                &["?auth PLAIN alice", "535 5.7.8", "?auth PLAIN alice", "235 2.7.0"],
            ),
            (
                format!("AUTH PLAIN {}\r\n", b64("\0alice\0tempfail")),
                &["?auth PLAIN alice", "454 4.7.0"],
            ),
            // Cancelled at each challenge.
            ("AUTH PLAIN\r\n*\r\n".into(), &["334", "501 5.0.0"]),
            ("AUTH LOGIN\r\n*\r\n".into(), &["334", "501 5.0.0"]),
            (
                format!("AUTH LOGIN\r\n{user}\r\n*\r\n"),
                &["334", "334", "501 5.0.0"],
            ),
            // Bad base64, in the initial response and in a continuation.
            ("AUTH PLAIN !!!!\r\n".into(), &["501 5.5.2"]),
            ("AUTH PLAIN\r\nnot base64\r\n".into(), &["334", "501 5.5.2"]),
            // "=" is an empty initial response: PLAIN cannot be empty.
            ("AUTH PLAIN =\r\n".into(), &["501 5.5.2"]),
            // A continuation line is never a command.
            (
                "AUTH LOGIN\r\nQUIT\r\nNOOP\r\n".into(),
                &["334", "501 5.5.2", "250 2.0.0"],
            ),
            // Proxy authorization is refused without asking.
            (
                format!("AUTH PLAIN {}\r\n", b64("bob\0alice\0secret")),
                &["535 5.7.8"],
            ),
            // Mechanism and syntax errors.
            ("AUTH CRAM-MD5\r\n".into(), &["504 5.5.4"]),
            ("AUTH\r\n".into(), &["501 5.5.4"]),
            (format!("AUTH PLAIN {plain} extra\r\n"), &["501 5.5.4"]),
            // A second AUTH after success.
            (
                format!("AUTH PLAIN {plain}\r\nAUTH LOGIN\r\n"),
                &["?auth PLAIN alice", "235 2.7.0", "503 5.5.1"],
            ),
            // Not during a transaction.
            (
                format!("MAIL FROM:<a@b>\r\nAUTH PLAIN {plain}\r\n"),
                &["?mail", "250 2.1.0", "503 5.5.1"],
            ),
        ];
        for (rest, expected) in &table {
            let events = run_with(implicit(), format!("EHLO c\r\n{rest}").as_bytes());
            assert_eq!(summary(&events)[2..], **expected, "{rest:?}");
        }
        // The continuation wire forms.
        let events = run_with(implicit(), b"EHLO c\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n");
        let wire: Vec<u8> = replies(&events)[1..].iter().flat_map(|r| r.to_bytes()).collect();
        assert_eq!(
            String::from_utf8(wire).unwrap(),
            "334 \r\n501 5.0.0 Authentication cancelled\r\n334 VXNlcm5hbWU6\r\n"
        );
    }

    #[test]
    fn auth_is_recorded_and_reaches_the_envelope() {
        let mut s = Session::new(implicit());
        let input = format!(
            "EHLO c\r\nAUTH PLAIN {}\r\nMAIL FROM:<alice@mx.test>\r\n\
             RCPT TO:<u@mx.test>\r\nDATA\r\nx\r\n.\r\n",
            b64("\0alice\0secret")
        );
        let events = run_chunked(&mut s, input.as_bytes(), 1000);
        assert_eq!(s.authenticated(), Some("alice"));
        let (envelope, _) = &messages(&events)[0];
        assert_eq!(envelope.authenticated.as_deref(), Some("alice"));
        assert_eq!(envelope.tls, Some(tls13()));
        assert_eq!(envelope.protocol(), "ESMTPSA");
        // A failed AUTH leaves the session unauthenticated.
        let mut s = Session::new(implicit());
        run_chunked(
            &mut s,
            format!("EHLO c\r\nAUTH PLAIN {}\r\n", b64("\0a\0b")).as_bytes(),
            100,
        );
        assert_eq!(s.authenticated(), None);
    }

    #[test]
    fn auth_needs_tls_unless_allowed() {
        let plain = b64("\0alice\0secret");
        let input = format!("EHLO c\r\nAUTH PLAIN {plain}\r\n");
        let table: &[(&str, SessionConfig, &[&str])] = &[
            ("not offered here", config(), &["502 5.5.1"]),
            ("plaintext", submission(), &["538 5.7.11"]),
            (
                "plaintext allowed for development",
                SessionConfig {
                    auth_without_tls: true,
                    ..submission()
                },
                &["?auth PLAIN alice", "235 2.7.0"],
            ),
            ("implicit TLS", implicit(), &["?auth PLAIN alice", "235 2.7.0"]),
        ];
        for (name, cfg, expected) in table {
            let events = run_with(cfg.clone(), input.as_bytes());
            assert_eq!(summary(&events)[2..], **expected, "{name}");
        }
        // Before EHLO, AUTH is out of sequence (after the 502 check).
        assert_eq!(summary(&run_with(implicit(), b"AUTH LOGIN\r\n")), ["503 5.5.1"]);
        // Under STARTTLS, after a new EHLO, it works.
        let mut s = Session::new(submission());
        let mut events = run_chunked(&mut s, b"EHLO c\r\nSTARTTLS\r\n", 100);
        s.tls_established(tls13());
        s.feed(format!("EHLO c\r\nAUTH PLAIN {plain}\r\n").as_bytes());
        drain(&mut s, &mut events);
        assert_eq!(
            summary(&events)[4..],
            ["?helo c", "250", "?auth PLAIN alice", "235 2.7.0"]
        );
    }

    #[test]
    fn submission_requires_auth() {
        let plain = b64("\0alice\0secret");
        let cfg = SessionConfig {
            require_auth: true,
            ..implicit()
        };
        let input = format!(
            "EHLO c\r\nMAIL FROM:<a@b>\r\nAUTH PLAIN {}\r\nMAIL FROM:<a@b>\r\n\
             AUTH PLAIN {plain}\r\nMAIL FROM:<a@b>\r\n",
            b64("\0alice\0wrong")
        );
        let events = run_with(cfg, input.as_bytes());
        assert_eq!(
            summary(&events)[2..],
            [
                "530 5.7.0",
                "?auth PLAIN alice",
                "535 5.7.8",
                "530 5.7.0",
                "?auth PLAIN alice",
                "235 2.7.0",
                "?mail",
                "250 2.1.0"
            ]
        );
        assert_eq!(
            replies(&events)[1].to_string(),
            "530 5.7.0 Authentication required"
        );
        // Before TLS on a STARTTLS listener the client is told what to do.
        let events = run_with(submission(), b"EHLO c\r\nMAIL FROM:<a@b>\r\n");
        assert_eq!(
            replies(&events)[1].to_string(),
            "530 5.7.0 Must issue a STARTTLS command first"
        );
        // MAIL before EHLO is still a sequence error.
        assert_eq!(
            summary(&run_with(submission(), b"MAIL FROM:<a@b>\r\n")),
            ["503 5.5.1"]
        );
    }

    #[test]
    fn failed_auth_counts_toward_max_errors() {
        let cfg = SessionConfig {
            max_errors: 3,
            ..implicit()
        };
        let wrong = b64("\0alice\0wrong");
        let input =
            format!("EHLO c\r\nAUTH PLAIN {wrong}\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN {wrong}\r\nNOOP\r\n");
        let events = run_with(cfg, input.as_bytes());
        assert_eq!(
            summary(&events)[2..],
            [
                "?auth PLAIN alice",
                "535 5.7.8",
                "334",
                "501 5.0.0",
                "?auth PLAIN alice",
                "535 5.7.8",
                "421 4.7.0",
                "close"
            ]
        );
    }

    #[test]
    fn sasl_line_limits() {
        let cfg = SessionConfig {
            max_line_length: 64,
            ..implicit()
        };
        // An AUTH line over max_line_length but within RFC 4954's 12288.
        let long = "p".repeat(1000);
        let plain = b64(&format!("\0alice\0{long}"));
        let events = run_with(
            cfg.clone(),
            format!("EHLO c\r\nAUTH PLAIN {plain}\r\nNOOP\r\n").as_bytes(),
        );
        assert_eq!(
            summary(&events)[2..],
            ["?auth PLAIN alice", "535 5.7.8", "250 2.0.0"]
        );
        // Other commands keep the short limit.
        let events = run_with(cfg.clone(), format!("NOOP {long}\r\nNOOP\r\n").as_bytes());
        assert_eq!(summary(&events), ["500 5.5.2", "250 2.0.0"]);
        // A SASL response over 12288 octets is discarded as it streams;
        // the exchange ends and the session goes on.
        let mut s = Session::new(cfg);
        let mut events = run_chunked(&mut s, b"EHLO c\r\nAUTH PLAIN\r\n", 100);
        for _ in 0..20 {
            s.feed(&[b'A'; 1000]);
            drain(&mut s, &mut events);
            assert!(s.buffered() < MAX_SASL_LINE, "{}", s.buffered());
        }
        s.feed(b"AAAA\r\nNOOP\r\n");
        drain(&mut s, &mut events);
        assert_eq!(summary(&events)[2..], ["334", "500 5.5.6", "250 2.0.0"]);
        // Exactly at the limit, CRLF included: read, not discarded.
        let line = "A".repeat(MAX_SASL_LINE - 2);
        let events = run_with(
            implicit(),
            format!("EHLO c\r\nAUTH PLAIN\r\n{line}\r\n").as_bytes(),
        );
        assert_eq!(summary(&events)[2..], ["334", "501 5.5.2"]);
    }

    /// A dialogue through every SASL path, under implicit TLS.
    fn sasl_dialogue() -> Vec<u8> {
        format!(
            "EHLO c.example\r\nAUTH LOGIN\r\n{}\r\n{}\r\nAUTH PLAIN\r\n*\r\nAUTH plain\r\n!!\r\n\
             MAIL FROM:<a@b>\r\nAUTH PLAIN\r\n{}\r\nAUTH LOGIN\r\nMAIL FROM:<a@b>\r\n\
             RCPT TO:<u@mx.test>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n",
            b64("alice"),
            b64("wrong"),
            b64("\0alice\0secret"),
        )
        .into_bytes()
    }

    #[test]
    fn chunk_split_sasl_dialogue_gives_identical_events() {
        let cfg = SessionConfig {
            require_auth: true,
            ..implicit()
        };
        let input = sasl_dialogue();
        let whole = run_with(cfg.clone(), &input);
        assert_eq!(
            summary(&whole),
            [
                "?helo c.example",
                "250",
                "334",
                "334",
                "?auth LOGIN alice",
                "535 5.7.8",
                "334",
                "501 5.0.0",
                "334",
                "501 5.5.2",
                "530 5.7.0",
                "334",
                "?auth PLAIN alice",
                "235 2.7.0",
                "503 5.5.1",
                "?mail",
                "250 2.1.0",
                "?rcpt u@mx.test",
                "250 2.1.5",
                "354",
                "?msg 7",
                "250 2.0.0",
                "221 2.0.0",
                "close"
            ]
        );
        for size in [1, 2, 3, 5, 8, 13, 64, 512] {
            let mut s = Session::new(cfg.clone());
            assert_eq!(run_chunked(&mut s, &input, size), whole, "chunk size {size}");
        }
    }

    #[test]
    fn auth_ask_debug_redacts_the_password() {
        let events = run_with(
            implicit(),
            format!("EHLO c\r\nAUTH PLAIN {}\r\n", b64("\0alice\0hunter2")).as_bytes(),
        );
        let debug = format!("{events:?}");
        assert!(debug.contains("alice") && !debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn protocol_names() {
        let base = Envelope {
            helo: "c".into(),
            esmtp: true,
            from: ReversePath::Null,
            params: MailParams::default(),
            rcpts: vec![],
            authenticated: None,
            tls: None,
        };
        let utf8 = MailParams {
            smtputf8: true,
            ..MailParams::default()
        };
        let table: &[(bool, bool, bool, bool, &str)] = &[
            (false, false, false, false, "SMTP"),
            (false, false, true, true, "SMTP"),
            (true, false, false, false, "ESMTP"),
            (true, false, true, false, "ESMTPS"),
            (true, false, false, true, "ESMTPA"),
            (true, false, true, true, "ESMTPSA"),
            (true, true, false, false, "UTF8SMTP"),
            (true, true, true, false, "UTF8SMTPS"),
            (true, true, false, true, "UTF8SMTPA"),
            (true, true, true, true, "UTF8SMTPSA"),
        ];
        for &(esmtp, smtputf8, tls, auth, expected) in table {
            let e = Envelope {
                esmtp,
                params: if smtputf8 {
                    utf8.clone()
                } else {
                    MailParams::default()
                },
                tls: tls.then(tls13),
                authenticated: auth.then(|| "alice".to_owned()),
                ..base.clone()
            };
            assert_eq!(e.protocol(), expected, "{esmtp} {smtputf8} {tls} {auth}");
        }
    }
}
