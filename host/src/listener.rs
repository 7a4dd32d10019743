//! The accept loop shared by every listener: connection limits are checked
//! before a session task is spawned, accept errors back off instead of
//! killing the listener, and shutdown stops accepting.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::shared::Shared;

/// Which protocol a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// SMTP from other servers (MX).
    Smtp,
    /// Submission from our own users.
    Submission,
    /// Submission with implicit TLS (RFC 8314, port 465).
    Submissions,
    /// POP3.
    Pop3,
    /// POP3 with implicit TLS (RFC 8314, port 995).
    Pop3s,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Smtp => "smtp",
            Kind::Submission => "submission",
            Kind::Pop3 => "pop3",
            Kind::Submissions => "submissions",
            Kind::Pop3s => "pop3s",
        }
    }

    /// What a client hears when it is over a connection limit.
    fn refusal(self) -> &'static [u8] {
        match self {
            Kind::Pop3 | Kind::Pop3s => b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
            _ => b"421 4.7.0 Too many connections, try again later\r\n",
        }
    }
}

/// Connection limits over all listeners.
pub struct Admission {
    global: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
}

/// A connection's admission: dropping it frees its global and per-IP slots.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    /// Limits from the config.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Admission {
            global: Arc::new(Semaphore::new(max_total)),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip,
        })
    }

    /// Admits a connection from `ip`, or refuses it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let permit = self.global.clone().try_acquire_owned().ok()?;
        let mut map = self.per_ip.lock().expect("lock poisoned");
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(Admitted {
            _permit: permit,
            admission: self.clone(),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut map) = self.admission.per_ip.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections until shutdown, spawning one tracked task each.
pub async fn run(
    listener: TcpListener,
    kind: Kind,
    shared: Arc<Shared>,
    admission: Arc<Admission>,
    mut shutdown: watch::Receiver<bool>,
    tracker: TaskTracker,
) {
    let local = listener.local_addr().ok();
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                // EMFILE and friends: wait instead of spinning or dying.
                tracing::warn!(listener = kind.name(), error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(admitted) = admission.admit(peer.ip()) else {
            tracing::warn!(listener = kind.name(), %peer, "connection refused: over the connection limit");
            tracker.spawn(refuse(stream, kind));
            continue;
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let span = tracing::info_span!("conn", proto = kind.name(), %peer);
        tracker.spawn(
            async move {
                serve(stream, peer, kind, shared, shutdown).await;
                drop(admitted);
            }
            .instrument(span),
        );
    }
    tracing::debug!(listener = kind.name(), ?local, "listener stopped");
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    kind: Kind,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    match kind {
        Kind::Smtp | Kind::Submission | Kind::Submissions => {
            crate::smtp::conn::handle(stream, peer, kind, shared, shutdown).await
        }
        // Boxed: one task type serves both protocols, and its size is the
        // larger of the two; idle SMTP connections should not pay for POP3's.
        Kind::Pop3 | Kind::Pop3s => {
            Box::pin(crate::pop3::conn::handle(stream, peer, kind, shared, shutdown)).await
        }
    }
}

async fn refuse(mut stream: TcpStream, kind: Kind) {
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(kind.refusal())).await;
    let _ = stream.shutdown().await;
}

/// Runs the server side of a TLS handshake on `stream` with the current
/// certificate, bounded by `timeout`; `None` (logged) if it fails.
pub async fn tls_handshake<S>(
    stream: S,
    shared: &Shared,
    timeout: Duration,
) -> Option<(tokio_rustls::server::TlsStream<S>, crate::tls::TlsInfo)>
where
    S: tokio::io::AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(shared.tls.config());
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let info = crate::tls::info(tls.get_ref().1);
            tracing::debug!(version = %info.version, cipher = %info.cipher, "tls established");
            Some((tls, info))
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e, "tls handshake failed");
            None
        }
        Err(_) => {
            tracing::info!("tls handshake timed out");
            None
        }
    }
}

/// Writes what a session produced and empties the buffer. Replies are
/// collected and written when the session needs more input, which is what
/// RFC 2920 asks of a pipelining server.
pub async fn flush<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    stream.flush().await
}
