//! The tokio driver of a POP3 session: timeouts, the maildrop lock, login
//! verification with a slowdown after failures, fetching and the atomic
//! expunge at QUIT.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::session::{Answer, Ask, Event, MaildropEntry, Session, SessionConfig};
use crate::listener::{Kind, flush, tls_handshake};
use crate::shared::{MaildropLock, Shared};
use crate::store::{Folder, Outcome, Write, mailbox};

const READ_CHUNK: usize = 16 * 1024;

/// Runs one POP3 connection to its end: implicit TLS first on the
/// `pop3s` listener, then the session, upgraded in place by STLS.
pub async fn handle<S>(
    stream: S,
    peer: SocketAddr,
    kind: Kind,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let timeout = shared.config.limits.pop3_timeout;
    if kind == Kind::Pop3s {
        let Some((tls, _)) = tls_handshake(stream, &shared, timeout).await else {
            return;
        };
        run(tls, peer, &shared, shutdown, true).await;
    } else {
        run(stream, peer, &shared, shutdown, false).await;
    }
}

/// How a connection loop ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    /// `+OK Begin TLS negotiation` was sent: run the handshake and go on.
    StartTls,
}

/// One connection's session and driver state, kept across STLS.
struct Conn<'a> {
    session: Session,
    peer: SocketAddr,
    shared: &'a Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// Held from a successful login to the end of the connection, however it ends.
    lock: Option<MaildropLock>,
    committed: bool,
}

async fn run<S>(
    mut stream: S,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    implicit_tls: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let secure = peer.ip().is_loopback();
    let session = Session::new(SessionConfig {
        // Under TLS the session allows clear-text passwords anyway.
        plaintext_allowed: secure || shared.config.pop3_allow_plaintext,
        tls_available: !implicit_tls,
        implicit_tls,
        ..SessionConfig::default()
    });
    let mut conn = Conn {
        session,
        peer,
        shared,
        shutdown,
        out: Vec::with_capacity(1024),
        buf: vec![0u8; READ_CHUNK],
        lock: None,
        committed: false,
    };
    conn.session.greeting().write_to(&mut conn.out);
    if conn.serve(&mut stream).await == End::StartTls {
        // Everything read was fed to the session, which dropped what
        // followed STLS: nothing read in clear survives the upgrade.
        if let Some((mut tls, _)) = tls_handshake(stream, shared, shared.config.limits.pop3_timeout).await {
            conn.session.tls_established();
            // STLS is not offered under TLS: no second End::StartTls.
            let _ = conn.serve(&mut tls).await;
            let _ = tls.shutdown().await;
        }
    } else {
        let _ = stream.shutdown().await;
    }
    if let Some(user) = conn.session.user() {
        let (retrieved, deleted) = conn.session.stats();
        tracing::info!(user, client = %peer.ip(), retrieved, deleted, completed = conn.committed, "pop3 session");
    }
    drop(conn.lock);
}

impl Conn<'_> {
    async fn serve<S>(&mut self, stream: &mut S) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let out = &mut self.out;
        loop {
            while let Some(event) = self.session.poll() {
                match event {
                    Event::Respond(bytes) => out.extend_from_slice(&bytes),
                    Event::Ask(ask) => {
                        let answer =
                            decide(ask, self.peer, self.shared, &mut self.lock, &mut self.committed).await;
                        self.session.answer(answer);
                    }
                    Event::Close => {
                        let _ = flush(stream, out).await;
                        return End::Closed;
                    }
                    Event::StartTls => {
                        if flush(stream, out).await.is_err() {
                            return End::Closed;
                        }
                        return End::StartTls;
                    }
                }
                // A RETR of a big message should not wait for the next read.
                if out.len() >= READ_CHUNK && flush(stream, out).await.is_err() {
                    return End::Closed;
                }
            }
            if flush(stream, out).await.is_err() {
                return End::Closed;
            }
            let read = tokio::select! {
                r = tokio::time::timeout(self.shared.config.limits.pop3_timeout, stream.read(&mut self.buf)) => r,
                _ = self.shutdown.changed() => {
                    self.session.shutdown().write_to(out);
                    let _ = flush(stream, out).await;
                    return End::Closed;
                }
            };
            match read {
                Err(_) => {
                    self.session.idle_timeout().write_to(out);
                    let _ = flush(stream, out).await;
                    return End::Closed;
                }
                Ok(Ok(0)) | Ok(Err(_)) => return End::Closed,
                // Everything read is fed: the driver keeps no bytes of its own.
                Ok(Ok(n)) => self.session.feed(&self.buf[..n]),
            }
        }
    }
}

async fn decide(
    ask: Ask,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    lock: &mut Option<MaildropLock>,
    committed: &mut bool,
) -> Answer {
    match ask {
        Ask::Login { user, password } => login(user, password, peer, shared, lock).await,
        Ask::Fetch { key, .. } => {
            let Some(user) = lock.as_ref().map(|l| l.user().to_owned()) else {
                return Answer::FetchFailed;
            };
            // Inline, like SMTP's user look-up: a point read of a message
            // that is almost always in the page cache costs less than the
            // hand-off to the blocking pool and back (measured: BENCHMARKS.md).
            match shared.store.db().and_then(|db| mailbox::fetch(&db, &user, key)) {
                Ok(Some(bytes)) => Answer::Message(bytes),
                Ok(None) => Answer::FetchFailed,
                Err(e) => {
                    tracing::error!(error = %e, "fetch failed");
                    Answer::FetchFailed
                }
            }
        }
        Ask::Commit { delete } => {
            let Some(user) = lock.as_ref().map(|l| l.user().to_owned()) else {
                return Answer::CommitFailed;
            };
            if delete.is_empty() {
                *committed = true;
                return Answer::Committed;
            }
            match shared.store.commit(Write::Expunge { user, uids: delete }).await {
                Ok(Outcome::Expunged { .. }) | Ok(_) => {
                    *committed = true;
                    Answer::Committed
                }
                Err(e) => {
                    tracing::error!(error = %e, "expunge failed; nothing deleted");
                    Answer::CommitFailed
                }
            }
        }
    }
}

async fn login(
    login: String,
    password: String,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    lock: &mut Option<MaildropLock>,
) -> Answer {
    let given = login.clone();
    let verified = shared.verify_login(login, password).await;
    let user = match verified {
        Ok(Some(user)) => user,
        Ok(None) => {
            let delay = shared.login_failed(peer.ip(), &given);
            tracing::info!(client = %peer.ip(), delay_ms = delay.as_millis() as u64, "pop3 login failed");
            tokio::time::sleep(delay).await;
            return Answer::LoginFailed;
        }
        Err(e) => {
            tracing::error!(error = %e, "login look-up failed");
            return Answer::LoginUnavailable;
        }
    };
    shared.login_succeeded(peer.ip());
    let Some(guard) = shared.lock_maildrop(&user) else {
        tracing::info!(user, "maildrop in use");
        return Answer::InUse;
    };
    let u = user.clone();
    match shared
        .store
        .read(move |db| mailbox::list(db, &u, Folder::Inbox))
        .await
    {
        Ok(listing) => {
            let entries = listing
                .entries
                .iter()
                .map(|e| MaildropEntry {
                    key: e.uid,
                    uid: format!("{:x}-{}", listing.epoch, e.uid),
                    size: e.size,
                })
                .collect();
            *lock = Some(guard);
            Answer::LoginOk(entries)
        }
        Err(e) => {
            tracing::error!(error = %e, "maildrop listing failed");
            Answer::LoginUnavailable
        }
    }
}
