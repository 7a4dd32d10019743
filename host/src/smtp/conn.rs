//! The tokio driver of an SMTP session: reads with timeouts, feeds the
//! sans-IO [`Session`], performs what it asks (routing, storing) and writes
//! its replies. This is where the plugin hooks of DESIGN.md's message path
//! are called: `connect` before the greeting, then one per `Ask`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::command::{Address, ReversePath};
use super::received::{ReceivedInfo, received_header, return_path_header};
use super::reply::{EnhancedCode, Reply};
use super::session::{Answer, Ask, Envelope, Event, Session, SessionConfig, TlsInfo};
use crate::listener::{Kind, flush, tls_handshake};
use crate::plugin::{self, ConnInfo, Decision, PluginReply, RcptDecision};
use crate::shared::Shared;
use crate::store::queue::{QueueRcpt, QueueRecord};
use crate::store::{CommitFailure, Folder, Write, queue_id};

/// How much is read from the socket at once during DATA/BDAT, or after a
/// read that filled the small buffer. Also bounds what a pipelining client
/// can make the session buffer beyond one command line.
const READ_CHUNK: usize = 64 * 1024;

/// The read buffer between messages: enough for a pipelined MAIL/RCPT/DATA
/// group. An idle connection holds only this much (the big buffer is
/// allocated when data starts and given back after it), which is most of
/// what keeps idle connections cheap.
const SMALL_READ: usize = 1024;

/// How a connection loop ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The connection is over (QUIT, error, timeout, shutdown, EOF).
    Closed,
    /// The session sent `220` to STARTTLS: run the handshake and go on.
    StartTls,
}

/// Runs one SMTP connection to its end: implicit TLS first on the
/// `submissions` listener, then the session, upgraded in place by STARTTLS.
pub async fn handle<S>(
    stream: S,
    peer: SocketAddr,
    kind: Kind,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if kind == Kind::Submissions {
        // Boxed so that the TLS states do not size every plain connection's task.
        Box::pin(async move {
            let timeout = shared.config.limits.command_timeout;
            let Some((tls, info)) = tls_handshake(stream, &shared, timeout).await else {
                return;
            };
            run(tls, peer, kind, &shared, shutdown, Some(info)).await;
        })
        .await;
    } else {
        run(stream, peer, kind, &shared, shutdown, None).await;
    }
}

/// The session over `stream`; on STARTTLS the same session goes on over
/// the TLS stream wrapped around it.
async fn run<S>(
    mut stream: S,
    peer: SocketAddr,
    kind: Kind,
    shared: &Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    implicit_tls: Option<TlsInfo>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = &shared.config.limits;
    let submission = matches!(kind, Kind::Submission | Kind::Submissions);
    let session = Session::new(SessionConfig {
        hostname: shared.config.hostname.clone(),
        max_line_length: limits.max_line_length,
        max_message_size: limits.max_message_size,
        max_recipients: limits.max_recipients,
        max_errors: limits.max_errors,
        starttls: implicit_tls.is_none(),
        auth: submission,
        auth_without_tls: shared.config.submission_auth_without_tls,
        require_auth: submission,
        implicit_tls: implicit_tls.clone(),
    });
    tracing::debug!(?kind, "connected");
    let mut conn = Conn {
        session,
        policy: Policy::new(shared, peer, kind, implicit_tls.is_some()),
        out: Vec::new(),
        buf: Vec::with_capacity(SMALL_READ),
        grow: false,
        stopping: false,
        shutdown,
    };

    // Hook `connect`: before the greeting.
    if let Some(reply) = refusal(&Box::pin(conn.policy.plugins.connect()).await) {
        tracing::info!(client = %peer.ip(), reply = %reply, "connection refused by plugin");
        reply.write_to(&mut conn.out);
        let _ = flush(&mut stream, &mut conn.out).await;
        let _ = stream.shutdown().await;
        return;
    }
    conn.session.greeting().write_to(&mut conn.out);

    if conn.serve(&mut stream).await == End::StartTls {
        // Boxed: the TLS state is large, and inline it would be reserved in
        // every plain connection's task too.
        Box::pin(async move {
            // The driver feeds the session everything it reads and the session
            // dropped what followed STARTTLS: nothing read in clear survives.
            let Some((mut tls, info)) = tls_handshake(stream, shared, limits.command_timeout).await else {
                return;
            };
            conn.session.tls_established(info);
            conn.policy.conn_changed(true, None);
            // STARTTLS is not offered under TLS: a second End::StartTls cannot happen.
            let _ = conn.serve(&mut tls).await;
            let _ = tls.shutdown().await;
        })
        .await;
    } else {
        let _ = stream.shutdown().await;
    }
    tracing::debug!("disconnected");
}

/// One connection's session and its driver state, kept across STARTTLS.
struct Conn<'a> {
    session: Session,
    policy: Policy<'a>,
    out: Vec<u8>,
    /// Read into its spare capacity (never zero-filled): `SMALL_READ`
    /// between messages, `READ_CHUNK` while data streams in.
    buf: Vec<u8>,
    /// The last read filled the buffer: more is probably waiting.
    grow: bool,
    stopping: bool,
    shutdown: watch::Receiver<bool>,
}

impl Conn<'_> {
    /// Reads, feeds the session and acts on its events until the
    /// connection ends or the session asks for TLS.
    async fn serve<S>(&mut self, stream: &mut S) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let shared = self.policy.shared;
        let limits = &shared.config.limits;
        let session = &mut self.session;
        let out = &mut self.out;
        loop {
            while let Some(event) = session.poll() {
                match event {
                    Event::Reply(reply) => reply.write_to(out),
                    Event::Ask(ask) => {
                        // Boxed: the plugin and commit futures behind it are
                        // large, and inline they would be part of every idle
                        // connection's task for its whole life.
                        let answer = Box::pin(self.policy.decide(ask)).await;
                        session.answer(answer);
                        self.policy
                            .conn_changed(session.in_tls(), session.authenticated());
                        if self.policy.disconnect {
                            // A plugin said `disconnect`: the session's next event
                            // is its reply; send it and read nothing more.
                            if let Some(Event::Reply(reply)) = session.poll() {
                                reply.write_to(out);
                            }
                            let _ = flush(stream, out).await;
                            return End::Closed;
                        }
                    }
                    Event::Close => {
                        let _ = flush(stream, out).await;
                        return End::Closed;
                    }
                    Event::StartTls => {
                        // The 220 goes out in clear; then the handshake.
                        if flush(stream, out).await.is_err() {
                            return End::Closed;
                        }
                        return End::StartTls;
                    }
                }
            }
            if flush(stream, out).await.is_err() {
                return End::Closed;
            }
            // Shutdown is honoured between commands, never in the middle of DATA:
            // a message being received is finished (the server's drain is bounded).
            if (self.stopping || *self.shutdown.borrow()) && !session.in_data() {
                session.shutdown().write_to(out);
                let _ = flush(stream, out).await;
                return End::Closed;
            }
            let timeout = if session.in_data() {
                limits.data_timeout
            } else {
                limits.command_timeout
            };
            self.buf.clear();
            if session.in_data() || self.grow {
                self.buf.reserve(READ_CHUNK);
            } else if self.buf.capacity() > SMALL_READ {
                self.buf.shrink_to(SMALL_READ);
            }
            let read = tokio::select! {
                r = tokio::time::timeout(timeout, stream.read_buf(&mut self.buf)) => r,
                _ = self.shutdown.changed(), if !self.stopping => {
                    self.stopping = true;
                    continue;
                }
            };
            match read {
                Err(_) => {
                    tracing::info!(in_data = session.in_data(), "idle timeout; closing");
                    session.idle_timeout().write_to(out);
                    let _ = flush(stream, out).await;
                    return End::Closed;
                }
                Ok(Ok(0)) => {
                    if session.in_data() {
                        // Nothing of a message cut off mid-DATA is kept: it never
                        // reached the committer.
                        tracing::info!("client vanished in the middle of a message; nothing stored");
                    }
                    return End::Closed;
                }
                // Everything read is fed: the driver keeps no bytes of its own,
                // so what followed a STARTTLS is dropped by the session.
                Ok(Ok(n)) => {
                    self.grow = n == self.buf.capacity();
                    session.feed(&self.buf[..n]);
                }
                Ok(Err(_)) => return End::Closed,
            }
        }
    }
}

/// The reply for a plugin decision that refuses, if it does.
fn refusal(decision: &Decision) -> Option<Reply> {
    match decision {
        Decision::Reject(r) | Decision::Tempfail(r) | Decision::Disconnect(r) => Some(plugin_reply(r)),
        _ => None,
    }
}

/// A validated plugin reply as an SMTP reply.
fn plugin_reply(r: &PluginReply) -> Reply {
    let mut parts = r.enhanced.split('.').map(|p| p.parse::<u16>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    Reply::new(r.code, EnhancedCode(a as u8, b, c), r.text.clone())
}

/// Where one accepted recipient goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A local mailbox (lower-cased address).
    Local(String),
    /// The outbound queue: an address in another domain, as given.
    Remote(String),
}

impl Target {
    fn address(&self) -> &str {
        match self {
            Target::Local(a) | Target::Remote(a) => a,
        }
    }
}

/// Answers what the session asks: the hook points of the message path
/// (DESIGN.md): routing, the plugin chain, scores, and the durable commit.
struct Policy<'a> {
    shared: &'a Arc<Shared>,
    peer: SocketAddr,
    conn: ConnInfo,
    plugins: plugin::Session,
    /// Accepted recipients of the transaction, as given, lower-cased.
    rcpts: Vec<String>,
    /// The MAIL FROM address of the transaction (empty for `<>`), for the
    /// envelope the `rcpt` hook sees.
    mail_from: String,
    /// Where each accepted recipient is delivered (its mailbox, the
    /// outbound queue, or the targets a plugin redirected it to), in RCPT
    /// order.
    targets: Vec<Vec<Target>>,
    /// A plugin answered `disconnect`: close after this reply.
    disconnect: bool,
    /// The mailbox the client authenticated as (AUTH), resolved.
    user: Option<String>,
}

impl<'a> Policy<'a> {
    fn new(shared: &'a Arc<Shared>, peer: SocketAddr, kind: Kind, tls: bool) -> Self {
        let conn = ConnInfo {
            client_ip: peer.ip(),
            client_port: peer.port(),
            listener: match kind {
                Kind::Submission | Kind::Submissions => "submission",
                _ => "smtp",
            }
            .to_owned(),
            tls,
            authenticated: None,
            helo: String::new(),
        };
        let plugins = shared.plugins.load_full().session(conn.clone());
        Policy {
            shared,
            peer,
            conn,
            plugins,
            rcpts: Vec::new(),
            mail_from: String::new(),
            targets: Vec::new(),
            disconnect: false,
            user: None,
        }
    }

    /// Keeps the plugins' view of the connection in step with the session
    /// (TLS after STARTTLS; the login after AUTH, forgotten by STARTTLS).
    fn conn_changed(&mut self, tls: bool, authenticated: Option<&str>) {
        if authenticated.is_none() {
            self.user = None;
        }
        let authenticated = authenticated.and(self.user.clone());
        if self.conn.tls != tls || self.conn.authenticated != authenticated {
            self.conn.tls = tls;
            self.conn.authenticated = authenticated;
            self.plugins.set_conn(tls, self.conn.authenticated.clone());
        }
    }

    fn plugin_envelope(&self, from: &ReversePath) -> plugin::Envelope {
        plugin::Envelope {
            mail_from: match from {
                ReversePath::Null => String::new(),
                ReversePath::Path(a) => a.to_string(),
            },
            rcpts: self.target_addresses(),
        }
    }

    /// Every target so far, as the plugins see them.
    fn target_addresses(&self) -> Vec<String> {
        self.targets
            .iter()
            .flatten()
            .map(|t| t.address().to_owned())
            .collect()
    }

    /// Maps a decision of a command-stage hook to the session's answer.
    fn answer(&mut self, decision: Decision) -> Answer {
        match decision {
            Decision::Reject(r) | Decision::Tempfail(r) => Answer::Reject(plugin_reply(&r)),
            Decision::Disconnect(r) => {
                self.disconnect = true;
                Answer::Reject(plugin_reply(&r))
            }
            // The runtime already turned a discard outside the data stage
            // into a reject; quarantine is remembered for the data stage.
            Decision::Continue | Decision::Accept | Decision::Discard | Decision::Quarantine(_) => {
                Answer::Accept
            }
        }
    }

    async fn decide(&mut self, ask: Ask) -> Answer {
        match ask {
            Ask::Helo { name, .. } => {
                self.conn.helo = name.clone();
                let d = self.plugins.helo(&name).await;
                self.answer(d)
            }
            Ask::MailFrom { from, .. } => {
                if let Some(user) = &self.user {
                    // An authenticated user sends as themself only.
                    let own = match &from {
                        ReversePath::Path(a) => self
                            .shared
                            .config
                            .may_send_as(user, &format!("{}@{}", a.local, a.domain)),
                        ReversePath::Null => false,
                    };
                    if !own {
                        tracing::info!(user = %user, from = ?from, "sender address not owned by the authenticated user");
                        return Answer::Reject(Reply::new(
                            553,
                            EnhancedCode(5, 7, 1),
                            "Sender address not owned by the authenticated user",
                        ));
                    }
                }
                // A transaction runs on the plugin set current at its start;
                // a reload in between takes effect here.
                let current = self.shared.plugins.load_full();
                if !Arc::ptr_eq(self.plugins.plugin_set(), &current) {
                    self.plugins = current.session(self.conn.clone());
                }
                self.rcpts.clear();
                self.targets.clear();
                let env = self.plugin_envelope(&from);
                self.mail_from = env.mail_from.clone();
                let d = self.plugins.mail_from(&env).await;
                self.answer(d)
            }
            Ask::Rcpt { to } => self.route_rcpt(&to).await,
            Ask::Auth {
                mechanism,
                username,
                password,
                ..
            } => self.auth(&mechanism, username, password).await,
            Ask::Message { envelope, data } => {
                let answer = self.store_message(envelope, data).await;
                self.plugins.end_transaction();
                answer
            }
        }
    }

    /// Verifies AUTH credentials as POP3 does: the login resolved to a
    /// user, the password checked on the blocking pool; failures slowed
    /// down per client IP.
    async fn auth(&mut self, mechanism: &str, login: String, password: String) -> Answer {
        let shared = self.shared;
        let ip = self.peer.ip();
        let given = login.clone();
        let verified = shared.verify_login(login, password).await;
        match verified {
            Ok(Some(user)) => {
                shared.login_succeeded(ip);
                tracing::info!(user = %user, client = %ip, mechanism, "smtp auth succeeded");
                self.user = Some(user);
                Answer::Accept
            }
            Ok(None) => {
                let delay = shared.login_failed(ip, &given);
                tracing::info!(login = %given, client = %ip, mechanism, delay_ms = delay.as_millis() as u64, "smtp auth failed");
                tokio::time::sleep(delay).await;
                Answer::Reject(Reply::auth_failed())
            }
            Err(e) => {
                tracing::error!(error = %e, "auth look-up failed");
                Answer::Reject(Reply::auth_temporary_failure())
            }
        }
    }

    /// The routing hook, then the host's own routing ([`Self::route`]).
    /// No plugin can make Poczta relay: a redirect's targets are routed
    /// like recipients, and may leave for other domains only when the
    /// address redirected was ours (an alias forwarding elsewhere, as the
    /// administrator configured it).
    async fn route_rcpt(&mut self, to: &Address) -> Answer {
        let rcpt = to.to_string();
        let env = plugin::Envelope {
            mail_from: self.mail_from.clone(),
            rcpts: self.target_addresses(),
        };
        let targets = match self.plugins.rcpt(&env, &rcpt).await {
            RcptDecision::Reject(r) | RcptDecision::Tempfail(r) => return Answer::Reject(plugin_reply(&r)),
            RcptDecision::Redirect(redirects) => {
                let ours = to.domain.is_empty()
                    || self.shared.config.is_local_domain(&to.domain)
                    || self.shared.config.is_relay_domain(&to.domain);
                let mut targets = Vec::with_capacity(redirects.len());
                for t in &redirects {
                    let target = match parse_target(t) {
                        Some(a) => self.route(&a, ours),
                        None => Err(Reply::no_such_user()),
                    };
                    match target {
                        Ok(target) => {
                            if !targets.contains(&target) {
                                targets.push(target);
                            }
                        }
                        Err(reply) => {
                            tracing::info!(rcpt = %rcpt, target = %t, reply = %reply, "redirect target refused");
                            return Answer::Reject(reply);
                        }
                    }
                }
                targets
            }
            RcptDecision::Continue | RcptDecision::Accept => match self.route(to, false) {
                Ok(t) => vec![t],
                Err(reply) => return Answer::Reject(reply),
            },
        };
        let config = &self.shared.config;
        if config.relay.verify_recipients && config.is_relay_domain(&to.domain) {
            use crate::queue::verify::Verdict;
            match self.shared.queue.verify_recipient(&rcpt).await {
                Verdict::Exists => {}
                Verdict::Unknown(said) => {
                    tracing::info!(rcpt = %rcpt, next_hop_said = %said, "gateway recipient unknown at the next hop");
                    return Answer::Reject(Reply::no_such_user());
                }
                Verdict::Unsure(why) => {
                    tracing::info!(rcpt = %rcpt, why = %why, "gateway recipient could not be verified");
                    return Answer::Reject(Reply::new(
                        450,
                        EnhancedCode(4, 1, 1),
                        "Recipient address verification failed; try again later",
                    ));
                }
            }
        }
        self.rcpts.push(rcpt.to_lowercase());
        self.targets.push(targets);
        Answer::Accept
    }

    /// The host's routing of one address: a local mailbox, the queue (a
    /// gateway domain; or any domain for an authenticated client, a relay
    /// network, or a `forwarded` target of one of our addresses), or a
    /// refusal. Never an open relay.
    fn route(&self, to: &Address, forwarded: bool) -> Result<Target, Reply> {
        let config = &self.shared.config;
        if to.domain.is_empty() {
            // RFC 5321 §4.5.1: the bare postmaster is the first local domain's.
            return self
                .check_user(format!("postmaster@{}", config.domains[0]))
                .map(Target::Local);
        }
        if config.is_local_domain(&to.domain) {
            return self
                .check_user(format!("{}@{}", to.local, to.domain).to_lowercase())
                .map(Target::Local);
        }
        let may_relay = forwarded
            || config.is_relay_domain(&to.domain)
            || self.user.is_some()
            || config.is_relay_client(self.peer.ip());
        if may_relay && relayable(to) {
            return Ok(Target::Remote(to.to_string()));
        }
        tracing::info!(rcpt = %to, authenticated = self.user.is_some(), "relay denied");
        Err(Reply::relay_denied())
    }

    fn check_user(&self, mailbox: String) -> Result<String, Reply> {
        match self.shared.store.user_exists(&mailbox) {
            Ok(true) => Ok(mailbox),
            Ok(false) => Err(Reply::no_such_user()),
            Err(e) => {
                tracing::error!(error = %e, "user look-up failed");
                Err(Reply::storage_failure())
            }
        }
    }

    async fn store_message(&mut self, envelope: Envelope, data: Vec<u8>) -> Answer {
        let shared = self.shared;
        let peer = self.peer;
        let id = shared.store.allocate_id();
        let qid = queue_id(id);
        let from = match &envelope.from {
            ReversePath::Null => String::new(),
            ReversePath::Path(a) => a.to_string(),
        };
        let env = self.plugin_envelope(&envelope.from);
        let set = self.plugins.plugin_set().clone();
        let has_plugins = plugin::Hook::ALL.iter().any(|h| set.has_hook(*h));

        // Hooks `headers` and `body`, the score, and the header edits.
        let data = Arc::new(data);
        let outcome = if !has_plugins {
            None
        } else {
            Some(self.plugins.data(&env, data.clone()).await)
        };
        let (score, symbols, verdicts) = match &outcome {
            Some(o) => (
                o.score,
                o.symbols
                    .iter()
                    .map(|s| format!("{}={}", s.name, s.weight))
                    .collect::<Vec<_>>()
                    .join(","),
                o.verdicts
                    .iter()
                    .map(|(p, h, v)| format!("{p}:{h}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            None => (0.0, String::new(), String::new()),
        };
        let all_rcpts = self.rcpts.join(",");
        let decision = outcome
            .as_ref()
            .map(|o| o.decision.clone())
            .unwrap_or(Decision::Continue);
        if let Some(user) = &self.user {
            // The From: of submitted mail belongs to the user too (RFC 6409
            // §8 lets the MSA enforce it): otherwise our name vouches for
            // a forgery.
            let forged: Vec<String> = crate::headers::from_addresses(&data)
                .into_iter()
                .filter(|a| !shared.config.may_send_as(user, a))
                .collect();
            if !forged.is_empty() {
                tracing::info!(queue_id = %qid, user = %user, from_header = %forged.join(","), result = "rejected", "From: header not owned by the authenticated user");
                return Answer::Reject(Reply::new(
                    553,
                    EnhancedCode(5, 7, 1),
                    "From: header address not owned by the authenticated user",
                ));
            }
        }
        if let Some(reply) = refusal(&decision) {
            if matches!(decision, Decision::Disconnect(_)) {
                self.disconnect = true;
            }
            tracing::info!(queue_id = %qid, client = %peer.ip(), from = %from, rcpts = %all_rcpts, size = data.len(), result = "rejected", reply = %reply, score, symbols = %symbols, verdicts = %verdicts, "message");
            return Answer::Reject(reply);
        }
        if decision == Decision::Discard {
            tracing::info!(queue_id = %qid, client = %peer.ip(), from = %from, rcpts = %all_rcpts, size = data.len(), result = "discarded", score, symbols = %symbols, verdicts = %verdicts, "message");
            return Answer::AcceptWith(Reply::queued(&qid));
        }

        // Hook `deliver`, per final recipient.
        let quarantine = matches!(decision, Decision::Quarantine(_));
        let mut users: Vec<(String, Folder)> = Vec::new();
        let mut remote: Vec<String> = Vec::new();
        let targets: Vec<Target> = self.targets.iter().flatten().cloned().collect();
        for target in &targets {
            match target {
                Target::Local(mailbox) => {
                    if users.iter().any(|(u, _)| u == mailbox) {
                        continue;
                    }
                    let folder = if quarantine {
                        Folder::Quarantine
                    } else if !has_plugins {
                        Folder::Inbox
                    } else {
                        match self.plugins.deliver(&env, mailbox).await {
                            plugin::Folder::Discard => continue,
                            plugin::Folder::Quarantine(_) => Folder::Quarantine,
                            // With POP3 users, junk is tagged (X-Spam-* headers) and
                            // delivered to the inbox, where the mail program files it.
                            plugin::Folder::Junk | plugin::Folder::Inbox => Folder::Inbox,
                        }
                    };
                    users.push((mailbox.clone(), folder));
                }
                Target::Remote(address) => {
                    if remote.iter().any(|r| r.eq_ignore_ascii_case(address)) {
                        continue;
                    }
                    if quarantine {
                        // Quarantine is held here for the administrator;
                        // a quarantined message never leaves.
                        tracing::info!(queue_id = %qid, rcpt = %address, "quarantined: not relayed");
                        continue;
                    }
                    if has_plugins {
                        match self.plugins.deliver(&env, address).await {
                            plugin::Folder::Discard | plugin::Folder::Quarantine(_) => continue,
                            plugin::Folder::Junk | plugin::Folder::Inbox => {}
                        }
                    }
                    remote.push(address.clone());
                }
            }
        }
        let delivered_to = users
            .iter()
            .map(|(u, f)| format!("{u}:{f:?}"))
            .chain(remote.iter().map(|r| format!("{r}:Queued")))
            .collect::<Vec<_>>()
            .join(",");
        if users.is_empty() && remote.is_empty() {
            tracing::info!(queue_id = %qid, client = %peer.ip(), from = %from, rcpts = %all_rcpts, size = data.len(), result = "discarded", score, symbols = %symbols, verdicts = %verdicts, "message");
            return Answer::AcceptWith(Reply::queued(&qid));
        }

        // A plugin (a list with a bounce address) may replace the envelope
        // sender, but only with an address of ours: it must not make us
        // send as someone else's domain.
        let sender = match self.plugins.sender() {
            Some((plugin, address)) => {
                let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
                if shared.config.is_local_domain(domain) {
                    tracing::info!(queue_id = %qid, plugin = %plugin, from = %from, sender = %address, "envelope sender replaced by a plugin");
                    ReversePath::Path(crate::queue::address_of(&address))
                } else {
                    tracing::warn!(queue_id = %qid, plugin = %plugin, sender = %address, "set-sender ignored: not an address in a local domain");
                    envelope.from.clone()
                }
            }
            None => envelope.from.clone(),
        };
        let now = crate::clock::unix_secs();
        let single_rcpt = (envelope.rcpts.len() == 1).then(|| format!("<{}>", envelope.rcpts[0]));
        let received = received_header(
            &ReceivedInfo {
                helo: &envelope.helo,
                client_ip: peer.ip(),
                client_rdns: None,
                hostname: &shared.config.hostname,
                protocol: envelope.protocol(),
                id: &qid,
                for_rcpt: single_rcpt.as_deref(),
                tls: envelope.tls.as_ref(),
            },
            now,
        );
        let mut add_headers = outcome
            .as_ref()
            .map(|o| o.add_headers.clone())
            .unwrap_or_default();
        let remove_headers = outcome
            .as_ref()
            .map(|o| o.remove_headers.clone())
            .unwrap_or_default();
        if self.user.is_some() {
            // RFC 6409 §8.3: submission completes what a mail program left out.
            add_headers.extend(crate::headers::missing_submission_headers(
                &data,
                &qid,
                &shared.config.hostname,
                now,
            ));
        }
        let body = if !add_headers.is_empty() || !remove_headers.is_empty() {
            crate::headers::edit(&data, &remove_headers, &add_headers)
        } else {
            Vec::new()
        };
        let body: &[u8] = if body.is_empty() { &data } else { &body };
        let mut writes = Vec::with_capacity(2);
        let mut size = 0;
        if !users.is_empty() {
            let return_path = return_path_header(&sender);
            let mut stored = Vec::with_capacity(return_path.len() + received.len() + body.len());
            stored.extend_from_slice(return_path.as_bytes());
            stored.extend_from_slice(received.as_bytes());
            stored.extend_from_slice(body);
            size = stored.len();
            writes.push(Write::Deliver {
                id,
                data: stored,
                users,
            });
        }
        if !remote.is_empty() {
            // The relayed copy has no Return-Path (the final delivery adds
            // it) and its own id: its bytes differ from the local copy's.
            let queued_id = if writes.is_empty() {
                id
            } else {
                shared.store.allocate_id()
            };
            let mut queued = Vec::with_capacity(received.len() + body.len());
            queued.extend_from_slice(received.as_bytes());
            queued.extend_from_slice(body);
            size = size.max(queued.len());
            writes.push(Write::Enqueue {
                data: queued,
                record: QueueRecord {
                    id: queued_id,
                    sender: match &sender {
                        ReversePath::Null => String::new(),
                        ReversePath::Path(a) => a.to_string(),
                    },
                    arrival: now,
                    smtputf8: envelope.params.smtputf8,
                    rcpts: remote
                        .iter()
                        .map(|r| QueueRcpt::pending(r.clone(), now))
                        .collect(),
                },
            });
        }
        let write = if writes.len() == 1 {
            writes.pop().expect("one write")
        } else {
            Write::All(writes)
        };
        let result = shared.store.commit(write).await;
        match result {
            Ok(_) => {
                if !remote.is_empty() {
                    shared.queue.wake();
                }
                tracing::info!(queue_id = %qid, client = %peer.ip(), from = %from, rcpts = %all_rcpts, delivered = %delivered_to, size, result = "accepted", score, symbols = %symbols, verdicts = %verdicts, "message");
                Answer::AcceptWith(Reply::queued(&qid))
            }
            Err(e) => {
                tracing::warn!(queue_id = %qid, client = %peer.ip(), from = %from, rcpts = %all_rcpts, size, result = "tempfail", error = %e, "message");
                Answer::Reject(match e {
                    CommitFailure::StorageFull => Reply::storage_full(),
                    CommitFailure::Failed(_) => Reply::storage_failure(),
                })
            }
        }
    }
}

/// A plugin's redirect target as an address (`local@domain`).
fn parse_target(t: &str) -> Option<Address> {
    let t = t.trim();
    let (local, domain) = t.rsplit_once('@')?;
    if local.is_empty()
        || domain.is_empty()
        || t.chars()
            .any(|c| c.is_control() || c == ' ' || c == '<' || c == '>')
    {
        return None;
    }
    Some(Address {
        local: local.to_owned(),
        domain: domain.to_owned(),
    })
}

/// Whether an address may be handed to the outbound queue: no percent
/// hack, bang path or routing tricks in the local part (a next hop that
/// honours them would relay for us), and a domain that is a plain name or
/// an address literal.
fn relayable(to: &Address) -> bool {
    let local_ok = !to.local.contains(['%', '!', '@']);
    let domain = to.domain.as_str();
    let domain_ok = if domain.starts_with('[') {
        domain.ends_with(']')
    } else {
        !domain.is_empty()
            && !domain.ends_with('.')
            && domain.contains('.')
            && domain.split('.').all(|l| !l.is_empty())
    };
    local_ok && domain_ok
}
