//! `run`: opens the store, starts the committer and the listeners, and on
//! shutdown stops accepting, tells every session to finish, and waits for
//! them — but only for `shutdown_timeout`.
//!
//! Shutdown, step by step: the future passed in resolves (SIGTERM/SIGINT in
//! the binary, a oneshot in tests) → the watch flips → listeners stop
//! accepting → each session answers its next command with 421 (POP3: -ERR,
//! no deletions) — a message in the middle of DATA is finished first → the
//! task tracker drains → the store's committer ends after its last batch.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::listener::{self, Admission, Kind};
use crate::plugin::{Runtime, Services};
use crate::policy;
use crate::shared::Shared;
use crate::store::{self, Store, StoreError};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The plugins of the config do not load.
    #[error("{0}")]
    Plugins(#[from] crate::plugin::PluginError),
    /// The DNS resolver could not be set up.
    #[error("{0}")]
    Dns(#[from] crate::dns::DnsError),
    /// The TLS certificate could not be loaded or generated.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A listening address could not be bound.
    #[error("cannot listen on {addr} ({kind}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Which listener.
        kind: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the server until `shutdown` resolves, then drains (bounded).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let config = Arc::new(config);
    let (db_path, cache) = (config.database_path(), config.store_cache);
    let db = {
        let db_path = db_path.clone();
        tokio::task::spawn_blocking(move || store::open_database_with(&db_path, cache))
            .await
            .map_err(|_| StoreError::Closed)??
    };
    let (store, committer) = Store::start_at(db, Some((db_path, cache)))?;

    let resolver = Arc::new(crate::dns::Resolver::new(&crate::dns::ResolverConfig {
        nameservers: config.dns.nameservers.clone(),
        timeout: config.dns.timeout,
        ..Default::default()
    })?);
    let services = Services {
        kv: policy::StoreKv::new(store.clone()),
        dns: resolver.clone(),
    };
    let runtime = Arc::new(Runtime::new(Some(config.plugin_cache_dir.clone()))?);
    let plugins = policy::load(runtime.clone(), &config, services.clone()).await?;
    policy::log_set(&plugins);
    let tls = {
        let c = config.clone();
        tokio::task::spawn_blocking(move || {
            crate::tls::TlsAcceptor::new(
                &c.hostname,
                c.tls_cert.as_deref(),
                c.tls_key.as_deref(),
                &c.data_dir,
            )
        })
        .await
        .map_err(|_| StoreError::Closed)??
    };
    tracing::info!(cert = %tls.cert_path().display(), "tls certificate loaded");
    let queue = crate::queue::Queue::new(store.clone(), config.clone(), resolver.clone())?;
    let shared = Arc::new(Shared::new(
        config.clone(),
        store,
        plugins,
        Arc::new(tls),
        queue.clone(),
    ));
    let admission = Admission::new(
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let tracker = TaskTracker::new();

    // Bound before the listeners: once a port answers, `poczta user add`
    // must find the socket (the database file is locked by this process).
    // Without the socket (a data_dir path too long for one, say) the server
    // still runs, and those commands fail with the lock error until it stops.
    let admin_task = match crate::admin::bind(&config.data_dir) {
        Ok(l) => Some(tokio::spawn(crate::admin::run(
            l,
            shared.clone(),
            stop_rx.clone(),
        ))),
        Err(e) => {
            tracing::warn!(error = %e, "no admin channel");
            None
        }
    };
    let mut listeners = Vec::new();
    for (addrs, kind, name) in [
        (&config.smtp_listen, Kind::Smtp, "smtp"),
        (&config.submission_listen, Kind::Submission, "submission"),
        (&config.pop3_listen, Kind::Pop3, "pop3"),
        (&config.submissions_listen, Kind::Submissions, "submissions"),
        (&config.pop3s_listen, Kind::Pop3s, "pop3s"),
    ] {
        for addr in addrs {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: *addr,
                    kind: name,
                    source,
                })?;
            tracing::info!(listener = name, addr = %l.local_addr().unwrap_or(*addr), "listening");
            listeners.push(tokio::spawn(listener::run(
                l,
                kind,
                shared.clone(),
                admission.clone(),
                stop_rx.clone(),
                tracker.clone(),
            )));
        }
    }
    let queue_task = tokio::spawn(queue.clone().run(stop_rx.clone()));
    drop(queue);
    let reloader = tokio::spawn(policy::reloader(
        shared.clone(),
        runtime.clone(),
        services,
        stop_rx.clone(),
    ));
    tracing::info!(
        hostname = %config.hostname,
        domains = %config.domains.join(","),
        config = %config.origin,
        data_dir = %config.data_dir.display(),
        "poczta started"
    );

    shutdown.await;
    tracing::info!("shutting down: no new connections; finishing sessions in flight");
    let _ = stop_tx.send(true);
    for l in listeners {
        let _ = l.await;
    }
    let _ = reloader.await;
    let _ = queue_task.await;
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    tracker.close();
    if tokio::time::timeout(config.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_s = config.shutdown_timeout.as_secs(),
            "sessions still open after the shutdown timeout; exiting anyway (nothing unacknowledged was stored)"
        );
    }
    // The last handle on the store goes with `shared`; the committer then
    // finishes its last batch and ends.
    drop(shared);
    let _ = tokio::task::spawn_blocking(move || committer.join()).await;
    tracing::info!("stopped");
    Ok(())
}
