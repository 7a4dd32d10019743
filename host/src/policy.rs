//! The glue between the server and the plugin runtime: building a plugin
//! set from the config, the key-value store the plugins use (redb through
//! the committer), and hot reload.
//!
//! Reload, step by step: a change to the config file or a plugin file
//! (watched with `notify`), or SIGHUP → wait until the writes settle →
//! re-read the config → compile the new set on a blocking thread (from the
//! on-disk cache when nothing changed) → if every plugin loaded and
//! described itself, swap it into `Shared::plugins` atomically; otherwise
//! log why and keep the old set. Sessions hold an `Arc` of the set they
//! started a transaction with, so nothing in flight sees a half-changed set.
//! A reload applies `[[plugins]]` and `[scores]`; other config changes
//! (listeners, limits) and the list of watched files take a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::plugin::{
    BoxFuture, Grants, KvBackend, OnError, PluginConfig, PluginError, PluginSet, Runtime, ScoreThresholds,
    Services,
};
use crate::shared::Shared;
use crate::store::{Outcome, Store, Write, kv};

/// The plugin key-value store on redb: reads direct, writes via the committer.
pub struct StoreKv {
    store: Store,
}

impl StoreKv {
    /// Wraps the store.
    pub fn new(store: Store) -> Arc<StoreKv> {
        Arc::new(StoreKv { store })
    }
}

impl KvBackend for StoreKv {
    fn get(&self, plugin: &str, key: &str, now: u64) -> Result<Option<Vec<u8>>, String> {
        let db = self.store.db().map_err(|e| e.to_string())?;
        kv::get(&db, plugin, key, now).map_err(|e| e.to_string())
    }

    fn set(
        &self,
        plugin: &str,
        key: &str,
        value: Vec<u8>,
        expires: u64,
    ) -> BoxFuture<'static, Result<(), String>> {
        let store = self.store.clone();
        let write = Write::KvSet {
            plugin: plugin.to_owned(),
            key: key.to_owned(),
            value,
            expires,
        };
        Box::pin(async move { store.commit(write).await.map(|_| ()).map_err(|e| e.to_string()) })
    }

    fn delete(&self, plugin: &str, key: &str) -> BoxFuture<'static, Result<(), String>> {
        let store = self.store.clone();
        let write = Write::KvDelete {
            plugin: plugin.to_owned(),
            key: key.to_owned(),
        };
        Box::pin(async move { store.commit(write).await.map(|_| ()).map_err(|e| e.to_string()) })
    }

    fn increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
        expires_if_new: u64,
        now: u64,
    ) -> BoxFuture<'static, Result<i64, String>> {
        let store = self.store.clone();
        let write = Write::KvIncrement {
            plugin: plugin.to_owned(),
            key: key.to_owned(),
            delta,
            expires_if_new,
            now,
        };
        Box::pin(async move {
            match store.commit(write).await {
                Ok(Outcome::KvCounter(n)) => Ok(n),
                Ok(Outcome::KvNotACounter) => Err("the value is not a counter".into()),
                Ok(other) => Err(format!("unexpected store outcome {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// The runtime's view of the `[[plugins]]` entries.
pub fn plugin_configs(config: &Config) -> Vec<PluginConfig> {
    config
        .plugins
        .iter()
        .filter(|p| {
            let present = !p.optional || p.path.exists();
            if !present {
                tracing::warn!(plugin = %p.name, path = %p.path.display(), "optional plugin not found (build it with plugins/build); running without it");
            }
            present
        })
        .map(|p| PluginConfig {
            name: p.name.clone(),
            path: p.path.clone(),
            on_error: if p.on_error_continue {
                OnError::Continue
            } else {
                OnError::Tempfail
            },
            config_json: p.config_json.clone(),
            grants: Grants {
                dns: p.grant_dns,
                kv: p.grant_kv,
                assets: p.grant_assets,
            },
            assets: p.assets.clone(),
            timeout: p.timeout,
            memory: p.memory,
            fuel: p.fuel,
            reuse: p.reuse,
        })
        .collect()
}

/// The `[scores]` thresholds.
pub fn thresholds(config: &Config) -> ScoreThresholds {
    ScoreThresholds {
        add_header: config.scores.add_header,
        junk: config.scores.junk,
        reject: config.scores.reject,
    }
}

/// Compiles and links the plugin set of `config` off the async threads.
pub async fn load(
    runtime: Arc<Runtime>,
    config: &Config,
    services: Services,
) -> Result<PluginSet, PluginError> {
    let plugins = plugin_configs(config);
    let thresholds = thresholds(config);

    if plugins.is_empty() {
        return Ok(PluginSet::empty(thresholds));
    }
    tokio::task::spawn_blocking(move || PluginSet::load(&runtime, &plugins, thresholds, services))
        .await
        .map_err(|e| PluginError::Engine(format!("plugin loader panicked: {e}")))?
}

/// Logs what a set holds.
pub fn log_set(set: &PluginSet) {
    for (name, info) in set.describe() {
        tracing::info!(plugin = %name, component = %info.name, version = %info.version, hooks = %info.hooks.join(","), "plugin loaded");
    }
}

/// Re-reads the config and swaps in a new plugin set if it loads.
pub async fn reload(shared: &Arc<Shared>, runtime: &Arc<Runtime>, services: &Services, why: &str) -> bool {
    let config = match &shared.config.path {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(reason = why, error = %e, "reload refused: the config is invalid; the current plugins stay");
                return false;
            }
        },
        None => (*shared.config).clone(),
    };
    match load(runtime.clone(), &config, services.clone()).await {
        Ok(set) => {
            log_set(&set);
            shared.plugins.store(Arc::new(set));
            tracing::info!(reason = why, plugins = config.plugins.len(), "plugins reloaded");
            true
        }
        Err(e) => {
            tracing::error!(reason = why, error = %e, "reload refused: the new plugin set does not load; the current one stays");
            false
        }
    }
}

/// Files whose change triggers a reload: the config file and every plugin
/// and asset. Their directories are watched, since tools replace files by
/// renaming a new one over them.
fn watched_files(config: &Config) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = config.path.iter().cloned().collect();
    for p in &config.plugins {
        files.push(p.path.clone());
        files.extend(p.assets.iter().map(|(_, path)| path.clone()));
    }
    files.iter().map(|f| absolute(f)).collect()
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// How long the watcher waits for a burst of writes to settle.
const SETTLE: Duration = Duration::from_millis(250);

/// Reads the TLS certificate and key again (SIGHUP, after a renewal): new
/// handshakes use them, connections in progress keep theirs. A failure is
/// logged and the old certificate stays.
pub async fn reload_tls(shared: &Arc<Shared>) {
    let tls = shared.tls.clone();
    match tokio::task::spawn_blocking(move || tls.reload()).await {
        Ok(Ok(())) => tracing::info!(cert = %shared.tls.cert_path().display(), "tls certificate reloaded"),
        Ok(Err(e)) => tracing::error!(error = %e, "tls reload failed; the current certificate stays"),
        Err(e) => tracing::error!(error = %e, "tls reload failed; the current certificate stays"),
    }
}

/// Runs until shutdown: reloads on SIGHUP (plugins and the TLS certificate) and on changes to the watched files.
pub async fn reloader(
    shared: Arc<Shared>,
    runtime: Arc<Runtime>,
    services: Services,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let files = watched_files(&shared.config);
    let _watcher = match watch(&files, tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch plugin files; reload with SIGHUP");
            None
        }
    };
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let why = tokio::select! {
            _ = shutdown.changed() => return,
            Some(why) = rx.recv() => why,
            Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP".to_owned(),
        };
        // Let the rest of a copy or a build finish; fold the burst into one reload.
        tokio::time::sleep(SETTLE).await;
        while rx.try_recv().is_ok() {}
        if why == "SIGHUP" {
            reload_tls(&shared).await;
        }
        reload(&shared, &runtime, &services, &why).await;
    }
}

fn watch(
    files: &[PathBuf],
    tx: tokio::sync::mpsc::UnboundedSender<String>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let wanted: Vec<PathBuf> = files.to_vec();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if !matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
        ) {
            return;
        }
        if let Some(p) = event.paths.iter().find(|p| wanted.iter().any(|w| w == *p)) {
            let _ = tx.send(format!("{} changed", p.display()));
        }
    })?;
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_owned))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        if let Err(e) = watcher.watch(&d, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot watch");
        }
    }
    Ok(watcher)
}
