//! The SMTP client, sans-IO: delivers one message to one server.
//!
//! [`Client`] takes the server's bytes ([`Client::feed`]) and hands back
//! [`ClientEvent`]s ([`Client::poll`]): bytes to write, "start the TLS
//! handshake now", and finally the per-recipient [`Outcome`]. The driver
//! owns the socket, the timeouts (RFC 5321 §4.5.3.2) and the TLS library,
//! and reports the two facts only it can see: [`Client::tls_established`]
//! and [`Client::connection_lost`].
//!
//! The dialogue: greeting, EHLO (HELO if EHLO is refused with 5xx),
//! STARTTLS per [`TlsMode`] (RFC 3207) and EHLO again inside TLS, then the
//! envelope: MAIL, RCPTs and DATA in one write when PIPELINING (RFC 2920) is
//! offered, one at a time otherwise. Before MAIL the message is checked
//! against what the server offers: SIZE (RFC 1870), 8BITMIME (RFC 6152) and
//! SMTPUTF8 (RFC 6531); a message the server cannot take is failed
//! permanently here instead of being sent to be refused (or, worse,
//! mangled) downstream.
//!
//! The body goes out with every bare LF and bare CR turned into CRLF before
//! dot-stuffing (ARCHITECTURE.md, the smuggling invariant): our own DATA
//! reader stores such line ends byte for byte, and relaying them unchanged
//! would let a message that was harmless here end the DATA early at a
//! server that reads a bare LF as a line end.

use std::collections::VecDeque;
use std::fmt;

use super::command::{Address, ReversePath};
use super::reply::{EnhancedCode, Reply};

/// Longest reply line accepted from the server, CRLF included. RFC 5321
/// §4.5.3.1.5 says 512; real servers exceed it with long texts, so there is
/// slack, but a bound: a server must not make us buffer without end.
pub const MAX_REPLY_LINE: usize = 2048;

/// Most lines in one multi-line reply (an EHLO reply has one per
/// extension); the same memory bound as [`MAX_REPLY_LINE`].
pub const MAX_REPLY_LINES: usize = 128;

/// When to use STARTTLS (RFC 3207).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Use it when offered; deliver in plaintext otherwise, and also when
    /// the server refuses the STARTTLS command (RFC 3207 §4 lets the client
    /// go on).
    Opportunistic,
    /// Deliver only inside TLS: a server that does not offer STARTTLS, or
    /// refuses it, gets every recipient failed transiently (the admin may
    /// fix either side; the retry schedule decides when to give up).
    Required,
    /// Never send STARTTLS (e.g. a smart host on loopback).
    Never,
}

/// The configuration of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Our name in EHLO/HELO.
    pub helo_name: String,
    /// The STARTTLS policy for this server.
    pub tls: TlsMode,
    /// Leave the session open after the message instead of sending QUIT,
    /// when it ended cleanly, so the next message to the same server can
    /// go over it ([`Outcome::resume`], [`Client::resume`]).
    pub keep_open: bool,
}

/// The message to deliver: the envelope and the content as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `MAIL FROM`; [`ReversePath::Null`] for bounces.
    pub from: ReversePath,
    /// The recipients on this server, in the order results are reported.
    pub recipients: Vec<Address>,
    /// The content as stored (headers and body), unstuffed; line ends may
    /// be anything, they are normalised on the way out.
    pub content: Vec<u8>,
    /// The message was received with SMTPUTF8 (RFC 6531), so its headers
    /// may carry UTF-8 even when the envelope addresses are ASCII.
    pub smtputf8: bool,
}

impl Message {
    /// Whether the content has 8-bit bytes, so needs 8BITMIME (RFC 6152).
    pub fn is_8bit(&self) -> bool {
        !self.content.is_ascii()
    }

    /// Whether the message needs SMTPUTF8: it was received with it, or an
    /// envelope address is not ASCII.
    pub fn needs_smtputf8(&self) -> bool {
        self.smtputf8 || !self.from.is_ascii() || self.recipients.iter().any(|r| !r.is_ascii())
    }
}

/// A command the client sends, written with its CRLF by `Display`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCommand {
    /// `EHLO <name>`.
    Ehlo(String),
    /// `HELO <name>`.
    Helo(String),
    /// `STARTTLS`.
    StartTls,
    /// `MAIL FROM:<path>` with the parameters the server offered and the
    /// message needs.
    Mail {
        /// The reverse path.
        from: ReversePath,
        /// `SIZE=` (RFC 1870), when the server offers SIZE.
        size: Option<usize>,
        /// `BODY=8BITMIME` (RFC 6152).
        eight_bit: bool,
        /// `SMTPUTF8` (RFC 6531).
        smtputf8: bool,
    },
    /// `RCPT TO:<address>`.
    Rcpt(Address),
    /// `DATA`.
    Data,
    /// `RSET`: a clean slate on a reused session.
    Rset,
    /// `QUIT`.
    Quit,
}

impl fmt::Display for ClientCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCommand::Ehlo(name) => write!(f, "EHLO {name}\r\n"),
            ClientCommand::Helo(name) => write!(f, "HELO {name}\r\n"),
            ClientCommand::StartTls => f.write_str("STARTTLS\r\n"),
            ClientCommand::Mail {
                from,
                size,
                eight_bit,
                smtputf8,
            } => {
                match from {
                    ReversePath::Null => f.write_str("MAIL FROM:<>")?,
                    ReversePath::Path(a) => write!(f, "MAIL FROM:<{a}>")?,
                }
                if let Some(size) = size {
                    write!(f, " SIZE={size}")?;
                }
                if *eight_bit {
                    f.write_str(" BODY=8BITMIME")?;
                }
                if *smtputf8 {
                    f.write_str(" SMTPUTF8")?;
                }
                f.write_str("\r\n")
            }
            ClientCommand::Rcpt(a) => write!(f, "RCPT TO:<{a}>\r\n"),
            ClientCommand::Data => f.write_str("DATA\r\n"),
            ClientCommand::Rset => f.write_str("RSET\r\n"),
            ClientCommand::Quit => f.write_str("QUIT\r\n"),
        }
    }
}

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// Write these bytes to the server.
    Send(Vec<u8>),
    /// Start the TLS handshake on the connection now, then call
    /// [`Client::tls_established`]. Nothing the server sent in plaintext
    /// after its 220 may be fed (the client fails if it was).
    StartTls,
    /// The attempt is over: write any `Send` before this one, then close
    /// (reading the answer to QUIT is optional: nothing depends on it).
    Done(Outcome),
}

/// What became of one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// The server took responsibility for the message (250 after the data).
    Delivered,
    /// Try again later (4xx, a lost connection, a local policy refusal).
    Transient,
    /// Never retry; bounce (5xx, or a message the server cannot take).
    Permanent,
}

/// The result for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcptResult {
    /// The recipient.
    pub rcpt: Address,
    /// Delivered, transient or permanent.
    pub disposition: Disposition,
    /// The reply that decided it.
    pub reply: Reply,
    /// Whether `reply` came from the server; `false` for a reply made up
    /// here (a lost connection, STARTTLS or 8BITMIME missing, ...), which a
    /// DSN must not present as the remote MTA's words.
    pub remote: bool,
}

/// The result of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// One result per recipient, in [`Message::recipients`] order.
    pub recipients: Vec<RcptResult>,
    /// Whether the message (or the attempt) ran inside TLS.
    pub tls: bool,
    /// The session is still open and in step (no QUIT was sent): hand this
    /// to [`Client::resume`] with the same connection for the next
    /// message. `None` unless [`ClientConfig::keep_open`].
    pub resume: Option<Resume>,
}

/// What a reused session remembers of its EHLO and STARTTLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    ext: Extensions,
    in_tls: bool,
}

/// What the server answers next (one entry per command in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Mail,
    Rcpt(usize),
    Data,
    EndOfData,
    Rset,
}

/// A recipient's state during the attempt.
#[derive(Clone, Debug)]
enum Rcpt {
    /// No reply yet.
    Pending,
    /// RCPT accepted; waiting for the data.
    Accepted,
    /// Decided.
    Final(Disposition, Reply, bool),
}

/// What EHLO offered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Extensions {
    pipelining: bool,
    starttls: bool,
    /// `Some(0)` is "SIZE without a limit" (RFC 1870 §4).
    size: Option<usize>,
    eight_bit: bool,
    smtputf8: bool,
}

/// The SMTP client state machine; see the module docs.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    message: Message,
    /// The content as it goes on the wire: normalised, dot-stuffed and
    /// ending with `CRLF.CRLF`.
    wire: Vec<u8>,
    /// The normalised size without stuffing or terminator: RFC 1870's SIZE.
    size: usize,
    rcpts: Vec<Rcpt>,
    expect: VecDeque<Expect>,
    ext: Extensions,
    /// The lines of a multi-line reply read so far.
    partial: Vec<String>,
    partial_code: u16,
    buf: Vec<u8>,
    events: VecDeque<ClientEvent>,
    in_tls: bool,
    /// Between our `StartTls` event and [`Client::tls_established`].
    handshaking: bool,
    /// Set by a failed MAIL when the rest of the envelope was pipelined:
    /// the RCPT and DATA replies still to come are read and ignored.
    mail_failed: Option<Reply>,
    /// MAIL went out: the session got as far as a transaction, so it is
    /// worth keeping open.
    mail_sent: bool,
    /// The server is closing (421), or a reply we will not read is still
    /// due: the session cannot be reused.
    spent: bool,
    done: bool,
}

impl Client {
    /// A client for one attempt; it waits for the server's greeting.
    pub fn new(config: ClientConfig, message: Message) -> Client {
        let normalised = normalise_line_ends(&message.content);
        let size = normalised.len();
        let wire = dot_stuff(&normalised);
        let rcpts = vec![Rcpt::Pending; message.recipients.len()];
        Client {
            config,
            message,
            wire,
            size,
            rcpts,
            expect: VecDeque::from([Expect::Greeting]),
            ext: Extensions::default(),
            partial: Vec::new(),
            partial_code: 0,
            buf: Vec::new(),
            events: VecDeque::new(),
            in_tls: false,
            handshaking: false,
            mail_failed: None,
            mail_sent: false,
            spent: false,
            done: false,
        }
    }

    /// A client for the next message over a session an earlier client
    /// left open ([`Outcome::resume`]): RSET, then the envelope.
    pub fn resume(config: ClientConfig, message: Message, resume: Resume) -> Client {
        let mut c = Client::new(config, message);
        c.expect.clear();
        c.ext = resume.ext;
        c.in_tls = resume.in_tls;
        c.send(&[ClientCommand::Rset]);
        c.expect.push_back(Expect::Rset);
        c
    }

    /// Feeds bytes read from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.done {
            return;
        }
        if self.handshaking {
            // Plaintext after our STARTTLS was answered: either a broken
            // driver or response injection (the client-side twin of
            // CVE-2011-0411). Nothing of it may be trusted.
            self.protocol_error("data received during the TLS handshake");
            return;
        }
        self.buf.extend_from_slice(bytes);
        while !self.done && !self.handshaking {
            let Some(end) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() >= MAX_REPLY_LINE {
                    self.protocol_error("reply line too long");
                }
                return;
            };
            if end + 1 > MAX_REPLY_LINE {
                self.protocol_error("reply line too long");
                return;
            }
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            self.line(&line);
        }
        if self.handshaking && !self.buf.is_empty() {
            self.protocol_error("data after the STARTTLS reply");
        }
    }

    /// The next event, if any.
    pub fn poll(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// The driver finished the TLS handshake asked for by
    /// [`ClientEvent::StartTls`]: the session starts over with EHLO and
    /// forgets what the plaintext EHLO offered (RFC 3207 §4.2).
    pub fn tls_established(&mut self) {
        if !self.handshaking || self.done {
            return;
        }
        self.handshaking = false;
        self.in_tls = true;
        self.ext = Extensions::default();
        self.send(&[ClientCommand::Ehlo(self.config.helo_name.clone())]);
        self.expect.push_back(Expect::Ehlo);
    }

    /// The connection closed or failed (also a failed TLS handshake or a
    /// timeout): every recipient not yet decided is transient.
    pub fn connection_lost(&mut self) {
        if self.done {
            return;
        }
        let reply = Reply::new(421, EnhancedCode(4, 4, 2), "Connection lost");
        self.decide_open(Disposition::Transient, reply, false);
        self.finish(false);
    }

    /// Whether the attempt is over ([`ClientEvent::Done`] was queued).
    pub fn is_done(&self) -> bool {
        self.done
    }

    // --- Reply parsing ------------------------------------------------------

    /// One reply line (with its line end); a complete reply goes on to
    /// [`Client::reply`].
    fn line(&mut self, raw: &[u8]) {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some((code, last, text)) = split_reply_line(line) else {
            self.protocol_error("malformed reply line");
            return;
        };
        if !self.partial.is_empty() && code != self.partial_code {
            self.protocol_error("reply code changed within a multi-line reply");
            return;
        }
        if self.partial.len() >= MAX_REPLY_LINES {
            self.protocol_error("too many reply lines");
            return;
        }
        self.partial_code = code;
        self.partial.push(String::from_utf8_lossy(text).into_owned());
        if last {
            let lines = std::mem::take(&mut self.partial);
            self.reply(parse_enhanced(code, lines));
        }
    }

    // --- The dialogue -------------------------------------------------------

    fn reply(&mut self, reply: Reply) {
        let Some(expect) = self.expect.pop_front() else {
            self.protocol_error("reply without a command");
            return;
        };
        // 421 may answer any command: the server is closing (RFC 5321
        // §3.8), whatever the reply was for.
        if reply.code == 421 {
            self.spent = true;
            match self.mail_failed.take() {
                // The MAIL refusal is what decides, not the goodbye.
                Some(mail) => self.fail_by_class(mail),
                None => {
                    self.decide_open(Disposition::Transient, reply, true);
                    self.finish(true);
                }
            }
            return;
        }
        match expect {
            Expect::Greeting => {
                if reply.code == 220 {
                    self.send(&[ClientCommand::Ehlo(self.config.helo_name.clone())]);
                    self.expect.push_back(Expect::Ehlo);
                } else {
                    self.fail_by_class(reply);
                }
            }
            Expect::Ehlo => {
                if reply.code == 250 {
                    self.ext = parse_extensions(&reply);
                    self.after_hello();
                } else if reply.is_permanent() {
                    // An old server without ESMTP (RFC 5321 §3.2).
                    self.send(&[ClientCommand::Helo(self.config.helo_name.clone())]);
                    self.expect.push_back(Expect::Helo);
                } else {
                    self.fail_by_class(reply);
                }
            }
            Expect::Helo => {
                if reply.code == 250 {
                    self.ext = Extensions::default();
                    self.after_hello();
                } else {
                    self.fail_by_class(reply);
                }
            }
            Expect::StartTls => {
                if reply.code == 220 {
                    self.handshaking = true;
                    self.events.push_back(ClientEvent::StartTls);
                } else if self.config.tls == TlsMode::Required {
                    self.decide_open(Disposition::Transient, reply, true);
                    self.finish(true);
                } else {
                    // Opportunistic: go on in plaintext with what the
                    // plaintext EHLO offered.
                    self.envelope();
                }
            }
            Expect::Mail => {
                if reply.is_error() {
                    if self.expect.is_empty() {
                        self.fail_by_class(reply);
                    } else {
                        // The RCPTs and DATA are in flight: read their
                        // replies before deciding, so nothing is misread.
                        self.mail_failed = Some(reply);
                    }
                } else if self.expect.is_empty() {
                    self.next_rcpt(0);
                }
            }
            Expect::Rcpt(i) => {
                if self.mail_failed.is_none() {
                    self.rcpts[i] = if reply.is_error() {
                        Rcpt::Final(class_of(&reply), reply, true)
                    } else {
                        Rcpt::Accepted
                    };
                }
                if self.expect.is_empty() {
                    self.next_rcpt(i + 1);
                }
            }
            Expect::Data => self.data_reply(reply),
            Expect::Rset => {
                if reply.code == 250 {
                    self.envelope();
                } else {
                    // A reused session that does not take RSET is not one
                    // to trust: the driver starts a fresh one.
                    self.protocol_error("RSET refused on a reused session");
                }
            }
            Expect::EndOfData => {
                let disposition = if reply.is_error() {
                    class_of(&reply)
                } else {
                    Disposition::Delivered
                };
                self.decide_open(disposition, reply, true);
                self.finish(true);
            }
        }
    }

    /// After a 250 to EHLO/HELO: STARTTLS or the envelope.
    fn after_hello(&mut self) {
        if !self.in_tls && self.config.tls != TlsMode::Never && self.ext.starttls {
            self.send(&[ClientCommand::StartTls]);
            self.expect.push_back(Expect::StartTls);
        } else if !self.in_tls && self.config.tls == TlsMode::Required {
            let reply = Reply::new(
                451,
                EnhancedCode(4, 7, 10),
                "TLS is required for this destination but the server does not offer STARTTLS",
            );
            self.decide_open(Disposition::Transient, reply, false);
            self.finish(true);
        } else {
            self.envelope();
        }
    }

    /// Checks the message against the extensions, then sends MAIL (with
    /// the RCPTs and DATA when pipelining).
    fn envelope(&mut self) {
        let refusal = match self.ext.size {
            Some(limit) if limit > 0 && self.size > limit => Some(Reply::new(
                552,
                EnhancedCode(5, 3, 4),
                format!(
                    "Message of {} octets exceeds the server's limit of {limit} octets",
                    self.size
                ),
            )),
            _ if self.message.is_8bit() && !self.ext.eight_bit => Some(Reply::new(
                554,
                EnhancedCode(5, 6, 3),
                "Message has 8-bit content and the server does not support 8BITMIME",
            )),
            _ if self.message.needs_smtputf8() && !self.ext.smtputf8 => Some(Reply::new(
                553,
                EnhancedCode(5, 6, 7),
                "Message needs SMTPUTF8 and the server does not support it",
            )),
            _ => None,
        };
        if let Some(reply) = refusal {
            self.decide_open(Disposition::Permanent, reply, false);
            self.finish(true);
            return;
        }
        self.mail_sent = true;
        let mail = ClientCommand::Mail {
            from: self.message.from.clone(),
            size: self.ext.size.map(|_| self.size),
            eight_bit: self.message.is_8bit(),
            smtputf8: self.message.needs_smtputf8(),
        };
        if self.ext.pipelining {
            let mut cmds = vec![mail];
            self.expect.push_back(Expect::Mail);
            for (i, r) in self.message.recipients.iter().enumerate() {
                cmds.push(ClientCommand::Rcpt(r.clone()));
                self.expect.push_back(Expect::Rcpt(i));
            }
            // RFC 2920 §3.1: DATA may close the group; its reply tells
            // whether any RCPT was accepted.
            cmds.push(ClientCommand::Data);
            self.expect.push_back(Expect::Data);
            self.send(&cmds);
        } else {
            self.send(&[mail]);
            self.expect.push_back(Expect::Mail);
        }
    }

    /// Without pipelining: RCPT for recipient `i`, or DATA after the last
    /// one if any was accepted.
    fn next_rcpt(&mut self, i: usize) {
        if let Some(r) = self.message.recipients.get(i) {
            self.send(&[ClientCommand::Rcpt(r.clone())]);
            self.expect.push_back(Expect::Rcpt(i));
        } else if self.any_accepted() {
            self.send(&[ClientCommand::Data]);
            self.expect.push_back(Expect::Data);
        } else {
            self.finish(true);
        }
    }

    fn data_reply(&mut self, reply: Reply) {
        if let Some(mail) = self.mail_failed.take() {
            if reply.code == 354 {
                // A server that opens DATA after refusing MAIL: end it
                // empty so no message is left half-open.
                self.events.push_back(ClientEvent::Send(b".\r\n".to_vec()));
                self.spent = true;
            }
            self.fail_by_class(mail);
            return;
        }
        if reply.code != 354 {
            if reply.is_error() {
                let disposition = class_of(&reply);
                self.decide_open(disposition, reply, true);
            }
            self.finish(true);
        } else if !self.any_accepted() {
            // RFC 2920 §3.1: DATA accepted though every RCPT failed; send
            // an empty message, which has no recipients to reach.
            self.events.push_back(ClientEvent::Send(b".\r\n".to_vec()));
            self.spent = true;
            self.finish(true);
        } else {
            self.events.push_back(ClientEvent::Send(self.wire.clone()));
            self.expect.push_back(Expect::EndOfData);
        }
    }

    // --- Helpers ------------------------------------------------------------

    fn any_accepted(&self) -> bool {
        self.rcpts.iter().any(|r| matches!(r, Rcpt::Accepted))
    }

    fn send(&mut self, cmds: &[ClientCommand]) {
        let bytes = cmds.iter().map(ToString::to_string).collect::<String>();
        self.events.push_back(ClientEvent::Send(bytes.into_bytes()));
    }

    /// Every recipient not yet decided gets `reply` as `disposition`.
    fn decide_open(&mut self, disposition: Disposition, reply: Reply, remote: bool) {
        for r in &mut self.rcpts {
            if !matches!(r, Rcpt::Final(..)) {
                *r = Rcpt::Final(disposition, reply.clone(), remote);
            }
        }
    }

    /// A failure before any recipient: the reply's class decides for all.
    fn fail_by_class(&mut self, reply: Reply) {
        let disposition = class_of(&reply);
        self.decide_open(disposition, reply, true);
        self.finish(true);
    }

    /// The server broke the protocol: stream sync is lost, so no QUIT.
    fn protocol_error(&mut self, what: &str) {
        let reply = Reply::new(
            421,
            EnhancedCode(4, 5, 0),
            format!("Protocol error from the server: {what}"),
        );
        self.decide_open(Disposition::Transient, reply, false);
        self.finish(false);
    }

    fn finish(&mut self, quit: bool) {
        if self.done {
            return;
        }
        let reusable = quit
            && self.config.keep_open
            && self.mail_sent
            && !self.spent
            && !self.handshaking
            && self.expect.is_empty();
        if quit && !reusable {
            self.send(&[ClientCommand::Quit]);
        }
        // Anything still open here was never answered (e.g. recipients
        // after an early end): transient, not silently lost.
        self.decide_open(
            Disposition::Transient,
            Reply::new(451, EnhancedCode(4, 4, 0), "Delivery not attempted"),
            false,
        );
        let recipients = self
            .message
            .recipients
            .iter()
            .zip(std::mem::take(&mut self.rcpts))
            .map(|(rcpt, state)| match state {
                Rcpt::Final(disposition, reply, remote) => RcptResult {
                    rcpt: rcpt.clone(),
                    disposition,
                    reply,
                    remote,
                },
                Rcpt::Pending | Rcpt::Accepted => unreachable!("decide_open decided every recipient"),
            })
            .collect();
        self.events.push_back(ClientEvent::Done(Outcome {
            recipients,
            tls: self.in_tls,
            resume: reusable.then(|| Resume {
                ext: self.ext.clone(),
                in_tls: self.in_tls,
            }),
        }));
        self.done = true;
        self.buf.clear();
    }
}

/// Transient for 4xx, permanent for 5xx (and anything else unexpected).
fn class_of(reply: &Reply) -> Disposition {
    if reply.is_transient() {
        Disposition::Transient
    } else {
        Disposition::Permanent
    }
}

/// `(code, is_last, text)` of one reply line without its line end:
/// `250-text`, `250 text` or a bare `250`. The code's first digit must be
/// 2..=5 (RFC 5321 §4.2: 1xx is not used).
fn split_reply_line(line: &[u8]) -> Option<(u16, bool, &[u8])> {
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&line[0]) {
        return None;
    }
    let code = line[..3].iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Some((code, true, b"")),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        Some(_) => None,
    }
}

/// The reply with its RFC 3463 code taken off every line, when the first
/// line starts with one whose class matches the reply code (RFC 2034 §4).
fn parse_enhanced(code: u16, mut lines: Vec<String>) -> Reply {
    let enhanced = lines
        .first()
        .and_then(|l| enhanced_prefix(l))
        .filter(|e| u16::from(e.0) == code / 100);
    if let Some(e) = enhanced {
        let prefix = e.to_string();
        for line in &mut lines {
            if let Some(rest) = line.strip_prefix(&prefix) {
                *line = rest.strip_prefix(' ').unwrap_or(rest).to_owned();
            }
        }
    }
    Reply {
        code,
        enhanced: enhanced.unwrap_or(EnhancedCode::NONE),
        lines,
    }
}

/// `class.subject.detail` at the start of `text`, followed by a space or
/// the end (RFC 3463 §2: one digit, then up to three, then up to three).
fn enhanced_prefix(text: &str) -> Option<EnhancedCode> {
    let word = text.split(' ').next()?;
    let mut parts = word.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    let digits =
        |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some()
        || !matches!(class, "2" | "4" | "5")
        || !digits(subject, 3)
        || !digits(detail, 3)
    {
        return None;
    }
    Some(EnhancedCode(
        class.parse().ok()?,
        subject.parse().ok()?,
        detail.parse().ok()?,
    ))
}

/// The extensions of a 250 EHLO reply (the lines after the first).
fn parse_extensions(reply: &Reply) -> Extensions {
    let mut ext = Extensions::default();
    for line in reply.lines.iter().skip(1) {
        let mut words = line.split_ascii_whitespace();
        let Some(keyword) = words.next() else { continue };
        match keyword.to_ascii_uppercase().as_str() {
            "PIPELINING" => ext.pipelining = true,
            "STARTTLS" => ext.starttls = true,
            "8BITMIME" => ext.eight_bit = true,
            "SMTPUTF8" => ext.smtputf8 = true,
            // A missing or unreadable limit is "no limit" (RFC 1870 §4).
            "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
            _ => {}
        }
    }
    ext
}

/// Every line end (CRLF, bare LF, bare CR) as CRLF, with a final CRLF
/// added to non-empty content that lacks one (RFC 5321 §4.1.1.4: the
/// terminator follows a complete line).
pub fn normalise_line_ends(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 32 + 2);
    let mut i = 0;
    while i < content.len() {
        match content[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if content.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// CRLF-normalised content with a `.` doubled at the start of every line
/// (RFC 5321 §4.5.2) and the `.CRLF` terminator appended.
pub fn dot_stuff(normalised: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(normalised.len() + normalised.len() / 64 + 3);
    let mut line_start = true;
    for &b in normalised {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        let (local, domain) = s.split_once('@').unwrap();
        Address {
            local: local.to_owned(),
            domain: domain.to_owned(),
        }
    }

    fn message(rcpts: &[&str], content: &[u8]) -> Message {
        Message {
            from: ReversePath::Path(addr("a@here.example")),
            recipients: rcpts.iter().map(|r| addr(r)).collect(),
            content: content.to_vec(),
            smtputf8: false,
        }
    }

    fn client(tls: TlsMode, msg: Message) -> Client {
        Client::new(config(tls, false), msg)
    }

    fn config(tls: TlsMode, keep_open: bool) -> ClientConfig {
        ClientConfig {
            helo_name: "mx.here.example".into(),
            tls,
            keep_open,
        }
    }

    /// What the client did after being fed `input`.
    #[derive(Debug, Default, PartialEq)]
    struct Seen {
        sent: Vec<u8>,
        starttls: bool,
        outcome: Option<Outcome>,
    }

    fn drain(c: &mut Client, seen: &mut Seen) {
        while let Some(ev) = c.poll() {
            match ev {
                ClientEvent::Send(b) => seen.sent.extend_from_slice(&b),
                ClientEvent::StartTls => seen.starttls = true,
                ClientEvent::Done(o) => {
                    assert!(seen.outcome.is_none(), "two outcomes");
                    seen.outcome = Some(o);
                }
            }
        }
    }

    /// Feeds the server's whole side at once: the client reads one reply
    /// per command it has in flight, so a scripted server can run ahead.
    fn run(c: &mut Client, server: &[u8]) -> Seen {
        let mut seen = Seen::default();
        c.feed(server);
        drain(c, &mut seen);
        seen
    }

    fn sent(seen: &Seen) -> &str {
        std::str::from_utf8(&seen.sent).unwrap()
    }

    fn dispositions(o: &Outcome) -> Vec<(String, Disposition, u16, EnhancedCode, bool)> {
        o.recipients
            .iter()
            .map(|r| {
                (
                    r.rcpt.to_string(),
                    r.disposition,
                    r.reply.code,
                    r.reply.enhanced,
                    r.remote,
                )
            })
            .collect()
    }

    const EHLO_PIPE: &str =
        "250-mx.there.example Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n";
    const EHLO_PLAIN: &str = "250-mx.there.example\r\n250 8BITMIME\r\n";

    #[test]
    fn happy_path_without_pipelining() {
        let mut c = client(
            TlsMode::Opportunistic,
            message(
                &["b@there.example", "c@there.example"],
                b"Subject: x\r\n\r\nhi\r\n",
            ),
        );
        let server = format!(
            "220 mx.there.example ESMTP\r\n{EHLO_PLAIN}250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n354 go\r\n250 2.0.0 queued\r\n221 bye\r\n"
        );
        let seen = run(&mut c, server.as_bytes());
        assert_eq!(
            sent(&seen),
            "EHLO mx.here.example\r\nMAIL FROM:<a@here.example>\r\nRCPT TO:<b@there.example>\r\nRCPT TO:<c@there.example>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"
        );
        let o = seen.outcome.unwrap();
        assert!(!o.tls);
        let d = EnhancedCode(2, 0, 0);
        assert_eq!(
            dispositions(&o),
            [
                ("b@there.example".into(), Disposition::Delivered, 250, d, true),
                ("c@there.example".into(), Disposition::Delivered, 250, d, true),
            ]
        );
        assert!(c.is_done());
    }

    #[test]
    fn a_kept_session_carries_the_next_message_after_rset() {
        let mut c = Client::new(
            config(TlsMode::Never, true),
            message(&["b@there.example"], b"one"),
        );
        let first = run(
            &mut c,
            format!("220 x\r\n{EHLO_PIPE}250 OK\r\n250 OK\r\n354 go\r\n250 OK\r\n").as_bytes(),
        );
        assert!(!sent(&first).contains("QUIT"), "{}", sent(&first));
        let resume = first.outcome.unwrap().resume.expect("reusable");
        let mut next = Client::resume(
            config(TlsMode::Never, true),
            message(&["c@there.example"], b"two"),
            resume,
        );
        let seen = run(&mut next, b"");
        assert_eq!(sent(&seen), "RSET\r\n");
        let seen = run(&mut next, b"250 OK\r\n");
        assert!(sent(&seen).starts_with("MAIL FROM:<a@here.example> SIZE=5\r\nRCPT TO:<c@there.example>"));
        let seen = run(&mut next, b"250 OK\r\n250 OK\r\n354 go\r\n250 2.0.0 OK\r\n");
        let o = seen.outcome.unwrap();
        assert_eq!(o.recipients[0].disposition, Disposition::Delivered);
        assert!(o.resume.is_some());

        // A 421 spends the session; so does a refused RSET.
        let mut c = Client::new(config(TlsMode::Never, true), message(&["b@there.example"], b"x"));
        let seen = run(
            &mut c,
            format!("220 x\r\n{EHLO_PIPE}421 4.3.2 closing\r\n").as_bytes(),
        );
        assert!(seen.outcome.unwrap().resume.is_none());
        let mut r = Client::resume(
            config(TlsMode::Never, true),
            message(&["b@there.example"], b"x"),
            o.resume.unwrap(),
        );
        let seen = run(&mut r, b"500 what\r\n");
        let o = seen.outcome.unwrap();
        assert!(o.resume.is_none());
        assert_eq!(o.recipients[0].disposition, Disposition::Transient);
        assert!(
            !o.recipients[0].remote,
            "a refused RSET is not the recipient's fault"
        );
    }

    #[test]
    fn happy_path_with_pipelining() {
        let mut c = client(
            TlsMode::Never,
            message(&["b@there.example", "c@there.example"], b"hi"),
        );
        let seen = run(&mut c, format!("220 x\r\n{EHLO_PIPE}").as_bytes());
        // The whole envelope goes out in one write (RFC 2920).
        assert_eq!(
            sent(&seen),
            "EHLO mx.here.example\r\nMAIL FROM:<a@here.example> SIZE=4\r\nRCPT TO:<b@there.example>\r\nRCPT TO:<c@there.example>\r\nDATA\r\n"
        );
        assert!(seen.outcome.is_none());
        let seen = run(
            &mut c,
            b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n354 go\r\n",
        );
        assert_eq!(sent(&seen), "hi\r\n.\r\n");
        let seen = run(&mut c, b"250 2.0.0 OK id=1\r\n");
        assert_eq!(sent(&seen), "QUIT\r\n");
        let o = seen.outcome.unwrap();
        assert!(
            o.recipients
                .iter()
                .all(|r| r.disposition == Disposition::Delivered)
        );
        assert_eq!(o.recipients[0].reply.lines, ["OK id=1"]);
    }

    /// Each case: server transcript after the greeting, then the expected
    /// `(disposition, code)` per recipient `b`, `c`, `d`.
    #[test]
    fn per_recipient_results() {
        use Disposition::*;
        type Case = (&'static str, &'static str, [(Disposition, u16); 3]);
        let cases: &[Case] = &[
            (
                "one RCPT refused 550, others ok",
                "250 ok\r\n550 5.1.1 No such user\r\n250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 ok\r\n",
                [(Permanent, 550), (Delivered, 250), (Delivered, 250)],
            ),
            (
                "451 on RCPT",
                "250 ok\r\n250 ok\r\n451 4.7.1 Greylisted\r\n250 ok\r\n354 go\r\n250 2.0.0 ok\r\n",
                [(Delivered, 250), (Transient, 451), (Delivered, 250)],
            ),
            (
                "552 at end of data",
                "250 ok\r\n250 ok\r\n550 no\r\n250 ok\r\n354 go\r\n552 5.3.4 Too big\r\n",
                [(Permanent, 552), (Permanent, 550), (Permanent, 552)],
            ),
            (
                "451 at end of data",
                "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n451 4.3.0 later\r\n",
                [(Transient, 451), (Transient, 451), (Transient, 451)],
            ),
            (
                "all RCPTs refused, DATA refused",
                "250 ok\r\n550 no\r\n450 later\r\n550 no\r\n554 5.5.1 no valid recipients\r\n",
                [(Permanent, 550), (Transient, 450), (Permanent, 550)],
            ),
            (
                "MAIL refused: its reply decides",
                "553 5.7.1 Sender rejected\r\n503 no\r\n503 no\r\n503 no\r\n503 no\r\n",
                [(Permanent, 553), (Permanent, 553), (Permanent, 553)],
            ),
            (
                "421 in the middle of the RCPTs",
                "250 ok\r\n550 no\r\n421 4.3.2 shutting down\r\n",
                [(Permanent, 550), (Transient, 421), (Transient, 421)],
            ),
            (
                "DATA refused 451",
                "250 ok\r\n250 ok\r\n250 ok\r\n550 no\r\n451 4.3.0 later\r\n",
                [(Transient, 451), (Transient, 451), (Permanent, 550)],
            ),
        ];
        for (name, script, expected) in cases {
            let mut c = client(
                TlsMode::Never,
                message(&["b@x.example", "c@x.example", "d@x.example"], b"hi\r\n"),
            );
            let seen = run(&mut c, format!("220 x\r\n{EHLO_PIPE}{script}").as_bytes());
            let o = seen
                .outcome
                .clone()
                .unwrap_or_else(|| panic!("{name}: no outcome"));
            let got: Vec<_> = o
                .recipients
                .iter()
                .map(|r| (r.disposition, r.reply.code))
                .collect();
            assert_eq!(got, expected, "{name}");
            assert!(o.recipients.iter().all(|r| r.remote), "{name}");
            assert!(sent(&seen).ends_with("QUIT\r\n"), "{name}");
        }
    }

    #[test]
    fn without_pipelining_no_data_when_every_rcpt_fails() {
        let mut c = client(TlsMode::Never, message(&["b@x.example"], b"hi\r\n"));
        let seen = run(
            &mut c,
            format!("220 x\r\n{EHLO_PLAIN}250 ok\r\n550 5.1.1 no\r\n").as_bytes(),
        );
        assert!(!sent(&seen).contains("DATA"));
        assert!(sent(&seen).ends_with("RCPT TO:<b@x.example>\r\nQUIT\r\n"));
        assert_eq!(
            seen.outcome.unwrap().recipients[0].reply.enhanced,
            EnhancedCode(5, 1, 1)
        );
    }

    #[test]
    fn connection_level_failures_are_transient() {
        let cases: &[(&str, &[u8], u16)] = &[
            ("421 greeting", b"421 4.3.2 busy\r\n", 421),
            ("554 greeting", b"554 go away\r\n", 554),
            ("EHLO 421", b"220 x\r\n421 closing\r\n", 421),
            ("HELO refused", b"220 x\r\n502 no\r\n550 no\r\n", 550),
        ];
        for &(name, script, code) in cases {
            let mut c = client(TlsMode::Never, message(&["b@x.example", "c@x.example"], b"hi"));
            let o = run(&mut c, script).outcome.unwrap_or_else(|| panic!("{name}"));
            let want = if code == 421 {
                Disposition::Transient
            } else {
                Disposition::Permanent
            };
            for r in &o.recipients {
                assert_eq!((r.disposition, r.reply.code), (want, code), "{name}");
            }
        }
        // Closed after the data was sent but before its reply: transient.
        let mut c = client(TlsMode::Never, message(&["b@x.example"], b"hi"));
        let seen = run(
            &mut c,
            format!("220 x\r\n{EHLO_PIPE}250 ok\r\n250 ok\r\n354 go\r\n").as_bytes(),
        );
        assert!(seen.outcome.is_none());
        c.connection_lost();
        let o = run(&mut c, b"").outcome.unwrap();
        assert_eq!(dispositions(&o)[0].1, Disposition::Transient);
        assert!(!o.recipients[0].remote);
    }

    #[test]
    fn ehlo_refused_falls_back_to_helo() {
        let mut c = client(TlsMode::Required, message(&["b@x.example"], b"hi"));
        let seen = run(&mut c, b"220 x\r\n500 what\r\n250 x\r\n");
        // HELO offers no STARTTLS, and TLS is required.
        assert_eq!(
            sent(&seen),
            "EHLO mx.here.example\r\nHELO mx.here.example\r\nQUIT\r\n"
        );
        let o = seen.outcome.unwrap();
        assert_eq!(dispositions(&o)[0].1, Disposition::Transient);
        let mut c = client(TlsMode::Never, message(&["b@x.example"], b"hi"));
        let seen = run(
            &mut c,
            b"220 x\r\n502 what\r\n250 x\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n",
        );
        assert!(
            sent(&seen).starts_with(
                "EHLO mx.here.example\r\nHELO mx.here.example\r\nMAIL FROM:<a@here.example>\r\n"
            )
        );
        assert_eq!(
            seen.outcome.unwrap().recipients[0].disposition,
            Disposition::Delivered
        );
    }

    #[test]
    fn starttls_required_but_not_offered_is_transient() {
        let mut c = client(TlsMode::Required, message(&["b@x.example", "c@x.example"], b"hi"));
        let seen = run(&mut c, format!("220 x\r\n{EHLO_PIPE}").as_bytes());
        assert_eq!(sent(&seen), "EHLO mx.here.example\r\nQUIT\r\n");
        for r in seen.outcome.unwrap().recipients {
            assert_eq!(
                (r.disposition, r.reply.enhanced, r.remote),
                (Disposition::Transient, EnhancedCode(4, 7, 10), false)
            );
        }
    }

    #[test]
    fn starttls_then_ehlo_again() {
        let mut c = client(TlsMode::Required, message(&["b@x.example"], b"hi"));
        let seen = run(
            &mut c,
            b"220 x\r\n250-x\r\n250-STARTTLS\r\n250 PIPELINING\r\n220 2.0.0 go ahead\r\n",
        );
        assert_eq!(sent(&seen), "EHLO mx.here.example\r\nSTARTTLS\r\n");
        assert!(seen.starttls);
        c.tls_established();
        let seen = run(&mut c, b"");
        assert_eq!(sent(&seen), "EHLO mx.here.example\r\n");
        // Inside TLS, STARTTLS is not sent again even if still listed, and
        // what the plaintext EHLO offered (PIPELINING) is forgotten.
        let seen = run(
            &mut c,
            b"250-x\r\n250 STARTTLS\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n",
        );
        assert_eq!(
            sent(&seen),
            "MAIL FROM:<a@here.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"
        );
        let o = seen.outcome.unwrap();
        assert!(o.tls);
        assert_eq!(o.recipients[0].disposition, Disposition::Delivered);
    }

    #[test]
    fn starttls_refused() {
        let script = b"220 x\r\n250-x\r\n250 STARTTLS\r\n454 4.7.0 TLS not available\r\n";
        let mut c = client(TlsMode::Opportunistic, message(&["b@x.example"], b"hi"));
        let seen = run(&mut c, script);
        assert!(sent(&seen).ends_with("STARTTLS\r\nMAIL FROM:<a@here.example>\r\n"));
        let mut c = client(TlsMode::Required, message(&["b@x.example"], b"hi"));
        let o = run(&mut c, script).outcome.unwrap();
        assert_eq!(
            (o.recipients[0].disposition, o.recipients[0].reply.code),
            (Disposition::Transient, 454)
        );
    }

    #[test]
    fn plaintext_after_starttls_reply_is_refused() {
        // Response injection: a reply queued behind the 220 in plaintext.
        let mut c = client(TlsMode::Opportunistic, message(&["b@x.example"], b"hi"));
        let seen = run(
            &mut c,
            b"220 x\r\n250-x\r\n250 STARTTLS\r\n220 go\r\n250-forged\r\n",
        );
        assert!(seen.starttls);
        let o = seen.outcome.unwrap();
        assert_eq!(
            (o.recipients[0].disposition, o.recipients[0].remote),
            (Disposition::Transient, false)
        );
        // Or fed after the StartTls event, before the handshake completed.
        let mut c = client(TlsMode::Opportunistic, message(&["b@x.example"], b"hi"));
        assert!(
            run(&mut c, b"220 x\r\n250-x\r\n250 STARTTLS\r\n220 go\r\n")
                .outcome
                .is_none()
        );
        assert!(run(&mut c, b"250 x\r\n").outcome.is_some());
    }

    #[test]
    fn message_the_server_cannot_take_is_refused_before_mail() {
        let utf8 = Message {
            from: ReversePath::Path(addr("zażółć@here.example")),
            ..message(&["b@x.example"], b"hi")
        };
        let cases: &[(&str, &str, Message, EnhancedCode)] = &[
            (
                "too big",
                "250-x\r\n250 SIZE 3\r\n",
                message(&["b@x.example"], b"hello"),
                EnhancedCode(5, 3, 4),
            ),
            (
                "8-bit",
                "250-x\r\n250 SIZE\r\n",
                message(&["b@x.example"], "cześć".as_bytes()),
                EnhancedCode(5, 6, 3),
            ),
            (
                "utf-8 address",
                "250-x\r\n250 8BITMIME\r\n",
                utf8,
                EnhancedCode(5, 6, 7),
            ),
        ];
        for (name, ehlo, msg, code) in cases {
            let mut c = client(TlsMode::Never, msg.clone());
            let seen = run(&mut c, format!("220 x\r\n{ehlo}").as_bytes());
            assert_eq!(sent(&seen), "EHLO mx.here.example\r\nQUIT\r\n", "{name}");
            let r = &seen.outcome.unwrap().recipients[0];
            assert_eq!(
                (r.disposition, r.reply.enhanced, r.remote),
                (Disposition::Permanent, *code, false),
                "{name}"
            );
            assert!(r.reply.lines[0].len() > 20, "{name}: a clear text");
        }
    }

    #[test]
    fn mail_parameters_follow_the_message() {
        let msg = Message {
            from: ReversePath::Null,
            smtputf8: true,
            ..message(&["b@x.example"], "é\n".as_bytes())
        };
        let mut c = client(TlsMode::Never, msg);
        let seen = run(&mut c, format!("220 x\r\n{EHLO_PIPE}").as_bytes());
        // SIZE counts the normalised content: 2 bytes of é plus CRLF.
        assert!(
            sent(&seen).contains("MAIL FROM:<> SIZE=4 BODY=8BITMIME SMTPUTF8\r\n"),
            "{}",
            sent(&seen)
        );
    }

    #[test]
    fn body_is_normalised_then_dot_stuffed() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b".", b"..\r\n.\r\n"),
            (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
            // The smuggling shapes: each bare line end becomes CRLF, so the
            // dot after it is stuffed and nothing ends the data early.
            (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r\r\n.", b"a\r\n\r\n..\r\n.\r\n"),
            (b"\n\n", b"\r\n\r\n.\r\n"),
            (b"..x\r\n", b"...x\r\n.\r\n"),
            (b"x.\r\n", b"x.\r\n.\r\n"),
            (b"a\n\r", b"a\r\n\r\n.\r\n"),
        ];
        for &(input, wire) in cases {
            assert_eq!(
                dot_stuff(&normalise_line_ends(input)),
                wire,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn reply_parsing() {
        type Parsed = Option<(u16, EnhancedCode, &'static [&'static str])>;
        let cases: &[(&[u8], Parsed)] = &[
            (b"250 2.1.5 OK\r\n", Some((250, EnhancedCode(2, 1, 5), &["OK"]))),
            (
                b"250-2.0.0 a\r\n250 2.0.0 b\r\n",
                Some((250, EnhancedCode(2, 0, 0), &["a", "b"])),
            ),
            (b"550 5.1.1\r\n", Some((550, EnhancedCode(5, 1, 1), &[""]))),
            (b"550\n", Some((550, EnhancedCode::NONE, &[""]))),
            // A class that disagrees with the code is text, not a code.
            (
                b"550 2.1.1 odd\r\n",
                Some((550, EnhancedCode::NONE, &["2.1.1 odd"])),
            ),
            (
                b"451 4.7.1234 x\r\n",
                Some((451, EnhancedCode::NONE, &["4.7.1234 x"])),
            ),
            (b"25 x\r\n", None),
            (b"150 x\r\n", None),
            (b"250x\r\n", None),
            (b"250-a\r\n251 b\r\n", None),
        ];
        for &(input, expected) in cases {
            let mut c = client(TlsMode::Never, message(&["b@x.example"], b"hi"));
            c.expect = VecDeque::from([Expect::EndOfData]);
            c.rcpts = vec![Rcpt::Accepted];
            let o = run(&mut c, input).outcome.unwrap();
            let r = &o.recipients[0];
            match expected {
                Some((code, enhanced, lines)) => {
                    assert!(r.remote, "{input:?}");
                    assert_eq!((r.reply.code, r.reply.enhanced), (code, enhanced), "{input:?}");
                    assert_eq!(r.reply.lines, lines, "{input:?}");
                }
                None => assert_eq!(
                    (r.remote, r.reply.enhanced),
                    (false, EnhancedCode(4, 5, 0)),
                    "{input:?}"
                ),
            }
        }
    }

    #[test]
    fn reply_size_is_bounded() {
        let mut c = client(TlsMode::Never, message(&["b@x.example"], b"hi"));
        let o = run(&mut c, &vec![b'2'; MAX_REPLY_LINE]).outcome.unwrap();
        assert_eq!(o.recipients[0].reply.enhanced, EnhancedCode(4, 5, 0));
        let mut c = client(TlsMode::Never, message(&["b@x.example"], b"hi"));
        let many = "220-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert!(run(&mut c, many.as_bytes()).outcome.is_some());
        // A long but bounded line is fine.
        let mut c = client(TlsMode::Never, message(&["b@x.example"], b"hi"));
        let line = format!("220 {}\r\n", "x".repeat(MAX_REPLY_LINE - 6));
        assert_eq!(sent(&run(&mut c, line.as_bytes())), "EHLO mx.here.example\r\n");
    }

    #[test]
    fn replies_split_at_every_position() {
        for (pipelining, ehlo) in [(true, EHLO_PIPE), (false, EHLO_PLAIN)] {
            let server = format!(
                "220-mx.there.example\r\n220 ESMTP\r\n{ehlo}250 2.1.0 OK\r\n550 5.1.1 No\r\n250 2.1.5 OK\r\n354 go\r\n250 2.0.0 queued\r\n"
            );
            let server = server.as_bytes();
            let fresh = || {
                client(
                    TlsMode::Never,
                    message(&["b@x.example", "c@x.example"], b"hi\n.\n"),
                )
            };
            let whole = run(&mut fresh(), server);
            assert!(whole.outcome.is_some(), "pipelining {pipelining}");
            for split in 0..=server.len() {
                let mut c = fresh();
                let mut seen = Seen::default();
                c.feed(&server[..split]);
                drain(&mut c, &mut seen);
                c.feed(&server[split..]);
                drain(&mut c, &mut seen);
                assert_eq!(seen, whole, "pipelining {pipelining}, split {split}");
            }
            // And a byte at a time.
            let mut c = fresh();
            let mut seen = Seen::default();
            for b in server {
                c.feed(std::slice::from_ref(b));
                drain(&mut c, &mut seen);
            }
            assert_eq!(seen, whole, "pipelining {pipelining}, bytewise");
        }
    }

    #[test]
    fn command_wire_forms() {
        let cases: &[(ClientCommand, &str)] = &[
            (ClientCommand::Ehlo("h".into()), "EHLO h\r\n"),
            (ClientCommand::Helo("h".into()), "HELO h\r\n"),
            (ClientCommand::StartTls, "STARTTLS\r\n"),
            (
                ClientCommand::Mail {
                    from: ReversePath::Null,
                    size: None,
                    eight_bit: false,
                    smtputf8: false,
                },
                "MAIL FROM:<>\r\n",
            ),
            (
                ClientCommand::Rcpt(Address::postmaster()),
                "RCPT TO:<postmaster>\r\n",
            ),
            (ClientCommand::Data, "DATA\r\n"),
            (ClientCommand::Quit, "QUIT\r\n"),
        ];
        for (cmd, wire) in cases {
            assert_eq!(cmd.to_string(), *wire);
        }
    }

    #[test]
    fn nothing_after_done() {
        let mut c = client(TlsMode::Never, message(&["b@x.example"], b"hi"));
        assert!(run(&mut c, b"421 busy\r\n").outcome.is_some());
        c.connection_lost();
        c.tls_established();
        assert_eq!(run(&mut c, b"220 x\r\n"), Seen::default());
    }
}
