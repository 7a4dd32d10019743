//! The tokio driver of an SMTP session: reads with timeouts, feeds the
//! sans-IO [`Session`], performs what it asks (routing, storing) and writes
//! its replies. This is where the plugin hooks of DESIGN.md's message path
//! will be called: each `Ask` is a hook point.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::command::{Address, ReversePath};
use super::received::{ReceivedInfo, received_header, return_path_header};
use super::reply::{EnhancedCode, Reply};
use super::session::{Answer, Ask, Envelope, Event, Session, SessionConfig};
use crate::listener::Kind;
use crate::plugin::{self, ConnInfo, Decision, PluginReply, RcptDecision};
use crate::shared::Shared;
use crate::store::{CommitFailure, Folder, Write, queue_id};

/// How much is read from the socket at once. Also bounds what a pipelining
/// client can make the session buffer beyond one command line.
const READ_CHUNK: usize = 64 * 1024;

/// Runs one SMTP connection to its end.
pub async fn handle<S>(
    mut stream: S,
    peer: SocketAddr,
    kind: Kind,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = &shared.config.limits;
    let mut session = Session::new(SessionConfig {
        hostname: shared.config.hostname.clone(),
        max_line_length: limits.max_line_length,
        max_message_size: limits.max_message_size,
        max_recipients: limits.max_recipients,
        max_errors: limits.max_errors,
        ..SessionConfig::default()
    });
    tracing::debug!(?kind, "connected");
    let mut out = Vec::with_capacity(1024);
    let mut policy = Policy::new(&shared, peer, kind);

    // Hook `connect`: before the greeting.
    if let Some(reply) = refusal(&policy.plugins.connect().await) {
        tracing::info!(client = %peer.ip(), reply = %reply, "connection refused by plugin");
        reply.write_to(&mut out);
        let _ = flush(&mut stream, &mut out).await;
        let _ = stream.shutdown().await;
        return;
    }
    session.greeting().write_to(&mut out);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut stopping = false;

    'conn: loop {
        while let Some(event) = session.poll() {
            match event {
                Event::Reply(reply) => reply.write_to(&mut out),
                Event::Ask(ask) => {
                    let answer = policy.decide(ask).await;
                    session.answer(answer);
                    if policy.disconnect {
                        // A plugin said `disconnect`: the session's next event
                        // is its reply; send it and read nothing more.
                        if let Some(Event::Reply(reply)) = session.poll() {
                            reply.write_to(&mut out);
                        }
                        let _ = flush(&mut stream, &mut out).await;
                        break 'conn;
                    }
                }
                Event::Close => {
                    let _ = flush(&mut stream, &mut out).await;
                    break 'conn;
                }
                // Not offered until the TLS listeners are wired (SessionConfig::starttls is off).
                Event::StartTls => {
                    let _ = flush(&mut stream, &mut out).await;
                    break 'conn;
                }
            }
        }
        if flush(&mut stream, &mut out).await.is_err() {
            break;
        }
        // Shutdown is honoured between commands, never in the middle of DATA:
        // a message being received is finished (the server's drain is bounded).
        if (stopping || *shutdown.borrow()) && !session.in_data() {
            session.shutdown().write_to(&mut out);
            let _ = flush(&mut stream, &mut out).await;
            break;
        }
        let timeout = if session.in_data() {
            limits.data_timeout
        } else {
            limits.command_timeout
        };
        let read = tokio::select! {
            r = tokio::time::timeout(timeout, stream.read(&mut buf)) => r,
            _ = shutdown.changed(), if !stopping => {
                stopping = true;
                continue;
            }
        };
        match read {
            Err(_) => {
                tracing::info!(in_data = session.in_data(), "idle timeout; closing");
                session.idle_timeout().write_to(&mut out);
                let _ = flush(&mut stream, &mut out).await;
                break;
            }
            Ok(Ok(0)) => {
                if session.in_data() {
                    // Nothing of a message cut off mid-DATA is kept: it never
                    // reached the committer.
                    tracing::info!("client vanished in the middle of a message; nothing stored");
                }
                break;
            }
            Ok(Ok(n)) => session.feed(&buf[..n]),
            Ok(Err(_)) => break,
        }
    }
    let _ = stream.shutdown().await;
    tracing::debug!("disconnected");
}

async fn flush<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    stream.flush().await
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

/// Answers what the session asks: the hook points of the message path
/// (DESIGN.md): routing, the plugin chain, scores, and the durable commit.
struct Policy<'a> {
    shared: &'a Arc<Shared>,
    peer: SocketAddr,
    conn: ConnInfo,
    plugins: plugin::Session,
    /// Accepted recipients of the transaction, as given, lower-cased.
    rcpts: Vec<String>,
    /// Where each accepted recipient is delivered (its mailbox, or the
    /// targets a plugin redirected it to), in RCPT order.
    targets: Vec<Vec<String>>,
    /// A plugin answered `disconnect`: close after this reply.
    disconnect: bool,
}

impl<'a> Policy<'a> {
    fn new(shared: &'a Arc<Shared>, peer: SocketAddr, kind: Kind) -> Self {
        let conn = ConnInfo {
            client_ip: peer.ip(),
            client_port: peer.port(),
            listener: match kind {
                Kind::Submission => "submission",
                _ => "smtp",
            }
            .to_owned(),
            tls: false,
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
            targets: Vec::new(),
            disconnect: false,
        }
    }

    fn plugin_envelope(&self, from: &ReversePath) -> plugin::Envelope {
        plugin::Envelope {
            mail_from: match from {
                ReversePath::Null => String::new(),
                ReversePath::Path(a) => a.to_string(),
            },
            rcpts: self.targets.iter().flatten().cloned().collect(),
        }
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
                // A transaction runs on the plugin set current at its start;
                // a reload in between takes effect here.
                let current = self.shared.plugins.load_full();
                if !Arc::ptr_eq(self.plugins.plugin_set(), &current) {
                    self.plugins = current.session(self.conn.clone());
                }
                self.rcpts.clear();
                self.targets.clear();
                let env = self.plugin_envelope(&from);
                let d = self.plugins.mail_from(&env).await;
                self.answer(d)
            }
            Ask::Rcpt { to } => self.route_rcpt(&to).await,
            // Not offered until submission AUTH is wired (SessionConfig::auth is off).
            Ask::Auth { .. } => Answer::Reject(Reply::auth_temporary_failure()),
            Ask::Message { envelope, data } => {
                let answer = self.store_message(envelope, data).await;
                self.plugins.end_transaction();
                answer
            }
        }
    }

    /// The routing hook, then the host's own routing: local users only —
    /// until authenticated relaying exists nothing leaves, and no plugin
    /// can make Poczta relay.
    async fn route_rcpt(&mut self, to: &Address) -> Answer {
        let rcpt = to.to_string();
        let env = plugin::Envelope {
            mail_from: String::new(),
            rcpts: self.targets.iter().flatten().cloned().collect(),
        };
        let targets = match self.plugins.rcpt(&env, &rcpt).await {
            RcptDecision::Reject(r) | RcptDecision::Tempfail(r) => return Answer::Reject(plugin_reply(&r)),
            RcptDecision::Redirect(targets) => {
                let mut mailboxes = Vec::with_capacity(targets.len());
                for t in &targets {
                    match self.local_mailbox_of(t) {
                        Ok(m) => mailboxes.push(m),
                        Err(reply) => {
                            tracing::info!(rcpt = %rcpt, target = %t, reply = %reply, "redirect target refused");
                            return Answer::Reject(reply);
                        }
                    }
                }
                mailboxes
            }
            RcptDecision::Continue | RcptDecision::Accept => match self.local_mailbox(to) {
                Ok(m) => vec![m],
                Err(reply) => return Answer::Reject(reply),
            },
        };
        self.rcpts.push(rcpt.to_lowercase());
        self.targets.push(targets);
        Answer::Accept
    }

    /// The mailbox a recipient names, if it is a local user.
    fn local_mailbox(&self, to: &Address) -> Result<String, Reply> {
        if !to.domain.is_empty() && !self.shared.config.is_local_domain(&to.domain) {
            tracing::info!(rcpt = %to, "relay denied");
            return Err(Reply::relay_denied());
        }
        let mailbox = if to.domain.is_empty() {
            // RFC 5321 §4.5.1: the bare postmaster is the first local domain's.
            format!("postmaster@{}", self.shared.config.domains[0])
        } else {
            format!("{}@{}", to.local, to.domain).to_lowercase()
        };
        self.check_user(mailbox)
    }

    /// Like [`Self::local_mailbox`] for an address a plugin gave as text.
    fn local_mailbox_of(&self, address: &str) -> Result<String, Reply> {
        let a = address.trim().to_lowercase();
        let Some((_, domain)) = a.rsplit_once('@') else {
            return Err(Reply::no_such_user());
        };
        if !self.shared.config.is_local_domain(domain) {
            // Forwarding to other domains needs the outbound queue.
            return Err(Reply::relay_denied());
        }
        self.check_user(a)
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
        for mailbox in self.targets.iter().flatten() {
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
        let delivered_to = users
            .iter()
            .map(|(u, f)| format!("{u}:{f:?}"))
            .collect::<Vec<_>>()
            .join(",");
        if users.is_empty() {
            tracing::info!(queue_id = %qid, client = %peer.ip(), from = %from, rcpts = %all_rcpts, size = data.len(), result = "discarded", score, symbols = %symbols, verdicts = %verdicts, "message");
            return Answer::AcceptWith(Reply::queued(&qid));
        }

        let single_rcpt = (envelope.rcpts.len() == 1).then(|| format!("<{}>", envelope.rcpts[0]));
        let received = received_header(
            &ReceivedInfo {
                helo: &envelope.helo,
                client_ip: peer.ip(),
                client_rdns: None,
                hostname: &shared.config.hostname,
                protocol: if envelope.esmtp { "ESMTP" } else { "SMTP" },
                id: &qid,
                for_rcpt: single_rcpt.as_deref(),
                tls: None,
            },
            crate::clock::unix_secs(),
        );
        let return_path = return_path_header(&envelope.from);
        let body = match &outcome {
            Some(o) if !o.add_headers.is_empty() || !o.remove_headers.is_empty() => {
                crate::headers::edit(&data, &o.remove_headers, &o.add_headers)
            }
            _ => Vec::new(),
        };
        let body: &[u8] = if body.is_empty() { &data } else { &body };
        let mut stored = Vec::with_capacity(return_path.len() + received.len() + body.len());
        stored.extend_from_slice(return_path.as_bytes());
        stored.extend_from_slice(received.as_bytes());
        stored.extend_from_slice(body);
        let size = stored.len();
        let result = shared
            .store
            .commit(Write::Deliver {
                id,
                data: stored,
                users,
            })
            .await;
        match result {
            Ok(_) => {
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
