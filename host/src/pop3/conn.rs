//! The tokio driver of a POP3 session: timeouts, the maildrop lock, login
//! verification with a slowdown after failures, fetching and the atomic
//! expunge at QUIT.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::session::{Answer, Ask, Event, MaildropEntry, Session, SessionConfig};
use crate::shared::{MaildropLock, Shared};
use crate::store::{Folder, Outcome, Write, mailbox, users};

const READ_CHUNK: usize = 16 * 1024;

/// Runs one POP3 connection to its end.
pub async fn handle<S>(
    mut stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let secure = peer.ip().is_loopback();
    let mut session = Session::new(SessionConfig {
        plaintext_allowed: secure || shared.config.pop3_allow_plaintext,
        ..SessionConfig::default()
    });
    let mut out = Vec::with_capacity(1024);
    session.greeting().write_to(&mut out);
    let mut buf = vec![0u8; READ_CHUNK];
    // Held from a successful login to the end of the connection, however it ends.
    let mut lock: Option<MaildropLock> = None;
    let mut committed = false;

    'conn: loop {
        while let Some(event) = session.poll() {
            match event {
                Event::Respond(bytes) => out.extend_from_slice(&bytes),
                Event::Ask(ask) => {
                    let answer = decide(ask, peer, &shared, &mut lock, &mut committed).await;
                    session.answer(answer);
                }
                Event::Close => {
                    let _ = flush(&mut stream, &mut out).await;
                    break 'conn;
                }
                // Not offered until TLS is wired (tls_available is off).
                Event::StartTls => {
                    let _ = flush(&mut stream, &mut out).await;
                    break 'conn;
                }
            }
            // A RETR of a big message should not wait for the next read.
            if out.len() >= READ_CHUNK && flush(&mut stream, &mut out).await.is_err() {
                break 'conn;
            }
        }
        if flush(&mut stream, &mut out).await.is_err() {
            break;
        }
        let read = tokio::select! {
            r = tokio::time::timeout(shared.config.limits.pop3_timeout, stream.read(&mut buf)) => r,
            _ = shutdown.changed() => {
                session.shutdown().write_to(&mut out);
                let _ = flush(&mut stream, &mut out).await;
                break;
            }
        };
        match read {
            Err(_) => {
                session.idle_timeout().write_to(&mut out);
                let _ = flush(&mut stream, &mut out).await;
                break;
            }
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => session.feed(&buf[..n]),
        }
    }
    let _ = stream.shutdown().await;
    if let Some(user) = session.user() {
        let (retrieved, deleted) = session.stats();
        tracing::info!(user, client = %peer.ip(), retrieved, deleted, completed = committed, "pop3 session");
    }
    drop(lock);
}

async fn flush<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    stream.flush().await
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
            match shared.store.read(move |db| mailbox::fetch(db, &user, key)).await {
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
    let domains = shared.config.domains.clone();
    // Resolution, the argon2 verification (deliberately slow) and the listing
    // run on the blocking pool, never on the async threads.
    let verified = shared
        .store
        .read(move |db| {
            let user = users::resolve_login(db, &login, &domains)?;
            let hash = match &user {
                Some(u) => users::get(db, u)?.map(|r| r.password_hash),
                None => None,
            };
            let ok = crate::auth::verify_password(hash.as_deref(), &password);
            Ok(if ok { user } else { None })
        })
        .await;
    let user = match verified {
        Ok(Some(user)) => user,
        Ok(None) => {
            let delay = shared.login_failed(peer.ip());
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
