//! The tokio driver of one delivery attempt: connect, run the sans-IO
//! [`Client`] over the socket (upgrading to TLS when it asks), with a time
//! limit on the connect and on every read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::smtp::client::{Client, ClientConfig, ClientEvent, Message, Outcome};

/// Anything the client can talk over: TCP, or TLS around it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

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
/// returning the per-recipient outcome once a connection was made.
pub async fn attempt(
    addr: SocketAddr,
    host: &str,
    config: ClientConfig,
    tls: Arc<rustls::ClientConfig>,
    message: Message,
    timeouts: Timeouts,
) -> Result<Outcome, ConnectError> {
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
    let mut client = Client::new(config, message);
    let mut stream: Box<dyn Io> = Box::new(tcp);
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
                            return Ok(done(&mut client));
                        }
                        Err(_) => {
                            client.connection_lost();
                            return Ok(done(&mut client));
                        }
                    }
                }
                ClientEvent::Done(outcome) => {
                    // QUIT was queued before Done; its answer is optional.
                    let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
                    return Ok(outcome);
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
