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
use super::reply::Reply;
use super::session::{Answer, Ask, Envelope, Event, Session, SessionConfig};
use crate::listener::Kind;
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
    });
    tracing::debug!(?kind, "connected");
    let mut out = Vec::with_capacity(1024);
    session.greeting().write_to(&mut out);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut stopping = false;

    'conn: loop {
        while let Some(event) = session.poll() {
            match event {
                Event::Reply(reply) => reply.write_to(&mut out),
                Event::Ask(ask) => {
                    let answer = decide(ask, peer, &shared).await;
                    session.answer(answer);
                }
                Event::Close => {
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

/// Answers what the session asks: the hook points of the message path.
async fn decide(ask: Ask, peer: SocketAddr, shared: &Arc<Shared>) -> Answer {
    match ask {
        // Seam: the `connect`/`helo` and `mail-from` plugin hooks go here.
        Ask::Helo { .. } => Answer::Accept,
        Ask::MailFrom { .. } => Answer::Accept,
        // Seam: the routing (`rcpt`) hook goes here, before the local check.
        Ask::Rcpt { to } => route_rcpt(&to, shared),
        // Seam: parse once, `headers`, `body`, scores and `deliver` go here.
        Ask::Message { envelope, data } => store_message(envelope, data, peer, shared).await,
    }
}

/// The mailbox a local recipient address names (lower-cased), with the bare
/// `postmaster` of RFC 5321 §4.5.1 mapped to the first local domain.
fn mailbox_for(to: &Address, shared: &Shared) -> String {
    if to.domain.is_empty() {
        format!("postmaster@{}", shared.config.domains[0])
    } else {
        format!("{}@{}", to.local, to.domain).to_lowercase()
    }
}

fn route_rcpt(to: &Address, shared: &Shared) -> Answer {
    if !to.domain.is_empty() && !shared.config.is_local_domain(&to.domain) {
        // Relaying for authenticated users arrives with the submission issue;
        // until then nothing leaves: never an open relay.
        tracing::info!(rcpt = %to, "relay denied");
        return Answer::Reject(Reply::relay_denied());
    }
    let mailbox = mailbox_for(to, shared);
    match shared.store.user_exists(&mailbox) {
        Ok(true) => Answer::Accept,
        Ok(false) => Answer::Reject(Reply::no_such_user()),
        Err(e) => {
            tracing::error!(error = %e, "user look-up failed");
            Answer::Reject(Reply::storage_failure())
        }
    }
}

async fn store_message(envelope: Envelope, data: Vec<u8>, peer: SocketAddr, shared: &Arc<Shared>) -> Answer {
    let id = shared.store.allocate_id();
    let qid = queue_id(id);
    let users: Vec<String> = envelope.rcpts.iter().map(|r| mailbox_for(r, shared)).collect();
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
    let mut stored = Vec::with_capacity(return_path.len() + received.len() + data.len());
    stored.extend_from_slice(return_path.as_bytes());
    stored.extend_from_slice(received.as_bytes());
    stored.extend_from_slice(&data);
    drop(data);
    let size = stored.len();
    let from = match &envelope.from {
        ReversePath::Null => String::new(),
        ReversePath::Path(a) => a.to_string(),
    };
    let rcpts = users.join(",");

    let result = shared
        .store
        .commit(Write::Deliver {
            id,
            data: stored,
            users: users.into_iter().map(|u| (u, Folder::Inbox)).collect(),
        })
        .await;
    match result {
        Ok(_) => {
            tracing::info!(queue_id = %qid, client = %peer.ip(), from = %from, rcpts = %rcpts, size, result = "accepted", "message");
            Answer::AcceptWith(Reply::queued(&qid))
        }
        Err(e) => {
            tracing::warn!(queue_id = %qid, client = %peer.ip(), from = %from, rcpts = %rcpts, size, result = "tempfail", error = %e, "message");
            Answer::Reject(match e {
                CommitFailure::StorageFull => Reply::storage_full(),
                CommitFailure::Failed(_) => Reply::storage_failure(),
            })
        }
    }
}
