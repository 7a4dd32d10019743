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
//! Later additions (STARTTLS, AUTH) fit as more [`Ask`]/[`Event`] variants
//! and input modes: e.g. an `Event::StartTls` emitted after the 220 reply with
//! the input buffer cleared (RFC 3207 §4.2 forbids keeping pipelined
//! plaintext), and a SASL mode reading continuation lines instead of
//! commands.

use std::collections::VecDeque;
use std::fmt;

use super::command::{Address, Command, MailParams, ReversePath, parse_command};
use super::data::{BdatReader, DataReader, find_byte};
use super::reply::Reply;

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
    /// `421 4.7.0` and [`Event::Close`]. Default 10.
    pub max_errors: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".to_owned(),
            max_line_length: 2048,
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
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
}

/// What the bytes at the head of the input buffer are.
enum Mode {
    /// A command line.
    Command,
    /// The rest of an over-long command line, discarded up to its LF.
    SkipLine,
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
    Helo { name: String, esmtp: bool },
    Mail { from: ReversePath, params: MailParams },
    Rcpt(Address),
    Message,
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
    /// is closing. Nothing is processed until [`Session::poll`].
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.life != Life::Open {
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
    /// bytes are buffered: longer lines are discarded as they arrive.
    pub fn poll(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                if event == Event::Close {
                    self.life = Life::Closed;
                    self.events.clear();
                }
                return Some(event);
            }
            if self.life != Life::Open || self.pending.is_some() || !self.step() {
                return None;
            }
        }
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
        vec![
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.config.max_message_size),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
            "CHUNKING".to_owned(),
            "HELP".to_owned(),
        ]
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
        }
    }

    fn step_command(&mut self) -> bool {
        let max = self.config.max_line_length;
        let avail = &self.input[self.start..];
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
            Command::StartTls => self.reply(Reply::starttls_unavailable()),
            Command::Auth(_) => self.reply(Reply::auth_unavailable()),
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
    /// whose local part starts with "unknown" and messages whose content
    /// contains "REJECT".
    fn decide(ask: &Ask) -> Answer {
        match ask {
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
            }
        );
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
}
