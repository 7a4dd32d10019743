//! The tokio driver of one delivery attempt: connect (or take a session
//! an earlier delivery to the same server left open in the [`Pool`]), run
//! the sans-IO [`Client`] over the socket (upgrading to TLS when it asks),
//! with a time limit on the connect and on every read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::smtp::client::{Client, ClientConfig, ClientEvent, Disposition, Message, Outcome, Resume};

/// Anything the client can talk over: TCP, or TLS around it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How long an idle session waits for the next message to its server.
/// Short: the remote's own idle timeout is minutes, but an idle session
/// holds one of its connection slots.
pub const IDLE: Duration = Duration::from_secs(10);

/// Most idle sessions kept per server.
const MAX_IDLE_PER_SERVER: usize = 4;

/// One open session, between messages.
struct Parked {
    stream: Box<dyn Io>,
    resume: Resume,
    since: Instant,
}

/// Open sessions by server address: several messages to the same host go
/// over one connection (RSET between them) instead of one connection each.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Parked>>>,
}

impl Pool {
    fn take(&self, addr: SocketAddr) -> Option<Parked> {
        let mut idle = self.idle.lock().expect("lock poisoned");
        let list = idle.get_mut(&addr)?;
        while let Some(p) = list.pop() {
            if p.since.elapsed() < IDLE {
                return Some(p);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, parked: Parked) {
        let mut idle = self.idle.lock().expect("lock poisoned");
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_SERVER {
            list.push(parked);
        }
    }

    /// Closes the sessions idle for longer than [`IDLE`] (all of them with
    /// `all`), with a polite QUIT.
    pub fn expire(&self, all: bool) {
        let mut old = Vec::new();
        {
            let mut idle = self.idle.lock().expect("lock poisoned");
            for list in idle.values_mut() {
                let (keep, gone): (Vec<_>, Vec<_>) =
                    list.drain(..).partition(|p| !all && p.since.elapsed() < IDLE);
                *list = keep;
                old.extend(gone);
            }
            idle.retain(|_, l| !l.is_empty());
        }
        for mut p in old {
            tokio::spawn(async move {
                let quit = async {
                    p.stream.write_all(b"QUIT\r\n").await?;
                    p.stream.shutdown().await
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), quit).await;
            });
        }
    }

    /// How many sessions are idle now.
    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .expect("lock poisoned")
            .values()
            .map(Vec::len)
            .sum()
    }
}

/// Time limits of one attempt.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// The TCP connect.
    pub connect: Duration,
    /// Each read (one reply) and each write.
    pub command: Duration,
}

/// Why no SMTP dialogue took place with an address.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connect failed or timed out.
    #[error("cannot connect to {addr}: {why}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// Why.
        why: String,
    },
}

/// Delivers `message` to the server at `addr` (named `host` for TLS),
/// returning the per-recipient outcome once a connection was made. An
/// idle session to `addr` in `pool` is used first; if it turns out dead
/// before anything was decided, a fresh connection is made. A session that
/// ends cleanly is parked in `pool` for the next message.
pub async fn attempt(
    addr: SocketAddr,
    host: &str,
    config: ClientConfig,
    tls: Arc<rustls::ClientConfig>,
    message: Message,
    timeouts: Timeouts,
    pool: &Pool,
) -> Result<Outcome, ConnectError> {
    if let Some(parked) = pool.take(addr) {
        let client = Client::resume(config.clone(), message.clone(), parked.resume);
        let (outcome, stream) = converse(client, parked.stream, addr, host, &tls, timeouts).await;
        let stale = outcome
            .recipients
            .iter()
            .all(|r| r.disposition == Disposition::Transient && !r.remote);
        if !stale {
            park(pool, addr, &outcome, stream);
            return Ok(outcome);
        }
        tracing::debug!(%addr, "an idle session had gone; connecting afresh");
    }
    let tcp = match tokio::time::timeout(timeouts.connect, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(ConnectError::Connect {
                addr,
                why: e.to_string(),
            });
        }
        Err(_) => {
            return Err(ConnectError::Connect {
                addr,
                why: "timed out".into(),
            });
        }
    };
    let _ = tcp.set_nodelay(true);
    let client = Client::new(config, message);
    let (outcome, stream) = converse(client, Box::new(tcp), addr, host, &tls, timeouts).await;
    park(pool, addr, &outcome, stream);
    Ok(outcome)
}

fn park(pool: &Pool, addr: SocketAddr, outcome: &Outcome, stream: Option<Box<dyn Io>>) {
    if let (Some(resume), Some(stream)) = (outcome.resume.clone(), stream) {
        pool.put(
            addr,
            Parked {
                stream,
                resume,
                since: Instant::now(),
            },
        );
    }
}

/// Runs `client` over `stream` to its outcome; gives the stream back when
/// the session is still open (the outcome can be resumed).
async fn converse(
    mut client: Client,
    mut stream: Box<dyn Io>,
    addr: SocketAddr,
    host: &str,
    tls: &Arc<rustls::ClientConfig>,
    timeouts: Timeouts,
) -> (Outcome, Option<Box<dyn Io>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(event) = client.poll() {
            match event {
                ClientEvent::Send(bytes) => {
                    let write = async {
                        stream.write_all(&bytes).await?;
                        stream.flush().await
                    };
                    if !matches!(tokio::time::timeout(timeouts.command, write).await, Ok(Ok(()))) {
                        client.connection_lost();
                    }
                }
                ClientEvent::StartTls => {
                    let name = server_name(host, addr);
                    let connector = TlsConnector::from(tls.clone());
                    match tokio::time::timeout(timeouts.command, connector.connect(name, stream)).await {
                        Ok(Ok(s)) => {
                            stream = Box::new(s);
                            client.tls_established();
                        }
                        Ok(Err(e)) => {
                            tracing::info!(host, %addr, error = %e, "outbound TLS handshake failed");
                            client.connection_lost();
                            return (done(&mut client), None);
                        }
                        Err(_) => {
                            client.connection_lost();
                            return (done(&mut client), None);
                        }
                    }
                }
                ClientEvent::Done(outcome) => {
                    if outcome.resume.is_some() {
                        return (outcome, Some(stream));
                    }
                    // QUIT was queued before Done; its answer is optional.
                    let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
                    return (outcome, None);
                }
            }
        }
        match tokio::time::timeout(timeouts.command, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => client.connection_lost(),
            Ok(Ok(n)) => client.feed(&buf[..n]),
        }
    }
}

/// The outcome after the client decided on its own (a lost connection).
fn done(client: &mut Client) -> Outcome {
    while let Some(event) = client.poll() {
        if let ClientEvent::Done(outcome) = event {
            return outcome;
        }
    }
    unreachable!("connection_lost always ends the attempt with Done")
}

/// SNI and certificate name: the host name, or the address when the hop
/// is an IP.
fn server_name(host: &str, addr: SocketAddr) -> ServerName<'static> {
    ServerName::try_from(host.to_owned()).unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()))
}
