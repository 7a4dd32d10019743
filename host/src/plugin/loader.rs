//! Loading one plugin: read the component, compile it or take it from the
//! `.cwasm` cache, link it against the host interfaces (plus an empty WASI
//! p2), build the `InstancePre`, call `describe()` and check the answer.
//!
//! # The compile cache
//!
//! `<cache_dir>/<sha256 of the .wasm>-<engine hash>.cwasm`, next to it
//! `<same>.cwasm.sha256` holding the sha256 of the `.cwasm` itself. The
//! engine hash is wasmtime's `precompile_compatibility_hash` (wasmtime
//! version, target, compiler flags, features, fuel on/off, epochs), so the
//! fuel and non-fuel engines never share an artifact and a wasmtime upgrade
//! simply misses. Both files are written atomically (temp file + rename).
//! A missing checksum, a checksum mismatch (truncation, bit rot) or an
//! artifact wasmtime refuses is logged and recompiled, never fatal.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store};

use super::bindings::{Plugin, PluginPre};
use super::engine::{Engines, MAX_PLUGIN_MEMORY};
use super::state::{self, PluginState, TxnData};
use super::{
    Grants, Hook, OnError, PluginConfig, PluginError, PluginInfoSummary, Runtime, Services, WIT_PACKAGE,
};

/// The package prefix of our interfaces in component import/export names.
const PACKAGE_PREFIX: &str = "poczta:plugin/";

/// `describe()` (and the instantiation before it) gets at least this long:
/// interpreters (Python, JS) initialise on their first call, and load runs
/// on a busy machine while the server serves.
const DESCRIBE_MIN_BUDGET: Duration = Duration::from_secs(2);

/// Longest plugin name/version accepted from `describe()`.
const MAX_INFO_LEN: usize = 64;

/// A plugin ready to instantiate.
pub struct LoadedPlugin {
    /// Config name.
    pub name: String,
    /// The `.wasm` file.
    pub path: PathBuf,
    /// What `describe()` said.
    pub info_name: String,
    /// The plugin's version string.
    pub info_version: String,
    /// Declared hooks, call order, no duplicates.
    pub hooks: Vec<Hook>,
    pub on_error: OnError,
    pub timeout: Duration,
    pub memory: usize,
    pub fuel: Option<u64>,
    /// Scopes one instance may serve (1: a fresh instance each time).
    pub reuse: u32,
    /// Idle instances, when `reuse` > 1.
    pub(super) pool: super::session::InstancePool,
    pub grants: Grants,
    pub config_json: String,
    pub assets: Vec<(String, Arc<[u8]>)>,
    pub services: Services,
    pub engine: Engine,
    pub pre: PluginPre<PluginState>,
    /// Component import names (for `plugin check`).
    pub imports: Vec<String>,
    /// Keeps the engines (and the epoch ticker) alive while the set lives.
    _engines: Arc<Engines>,
}

impl LoadedPlugin {
    /// The `describe()` summary.
    pub fn summary(&self) -> PluginInfoSummary {
        PluginInfoSummary {
            name: self.info_name.clone(),
            version: self.info_version.clone(),
            hooks: self.hooks.iter().map(|h| h.as_str().to_string()).collect(),
        }
    }

    /// Whether the plugin declared `hook`.
    pub fn has(&self, hook: Hook) -> bool {
        self.hooks.contains(&hook)
    }
}

/// Loads one plugin from its config entry (blocking).
pub fn load(runtime: &Runtime, cfg: &PluginConfig, services: &Services) -> Result<LoadedPlugin, PluginError> {
    check_config(cfg)?;
    let plugin = cfg.name.clone();
    let engine = runtime.engine(cfg.fuel.is_some())?;
    let wasm = std::fs::read(&cfg.path).map_err(|cause| PluginError::Read {
        plugin: plugin.clone(),
        path: cfg.path.clone(),
        cause,
    })?;
    let component = component(runtime, &engine, &wasm, &plugin)?;
    let (imports, pre) = link(&engine, &component, &plugin)?;

    let mut assets: Vec<(String, Arc<[u8]>)> = Vec::with_capacity(cfg.assets.len());
    for (name, path) in &cfg.assets {
        if assets.iter().any(|(n, _)| n == name) {
            return Err(PluginError::Config {
                plugin,
                cause: format!("duplicate asset name {name:?}"),
            });
        }
        let bytes = std::fs::read(path).map_err(|cause| PluginError::Read {
            plugin: plugin.clone(),
            path: path.clone(),
            cause,
        })?;
        assets.push((name.clone(), bytes.into()));
    }

    let loaded = Arc::new(LoadedPlugin {
        name: cfg.name.clone(),
        path: cfg.path.clone(),
        info_name: String::new(),
        info_version: String::new(),
        hooks: Vec::new(),
        on_error: cfg.on_error,
        timeout: cfg.timeout,
        memory: cfg.memory,
        fuel: cfg.fuel,
        reuse: cfg.reuse,
        pool: Default::default(),
        grants: cfg.grants,
        config_json: cfg.config_json.clone(),
        assets,
        services: services.clone(),
        engine,
        pre,
        imports,
        _engines: Arc::clone(&runtime.engines),
    });
    let info = describe(&loaded).map_err(|cause| PluginError::Describe {
        plugin: plugin.clone(),
        cause,
    })?;
    // The describe store is gone, so this is the only reference.
    let mut loaded = Arc::try_unwrap(loaded).map_err(|_| PluginError::Describe {
        plugin: plugin.clone(),
        cause: "internal: plugin still referenced after describe".into(),
    })?;
    loaded.info_name = info.0;
    loaded.info_version = info.1;
    loaded.hooks = info.2;
    tracing::info!(
        plugin = %loaded.name, path = %loaded.path.display(), name = %loaded.info_name, version = %loaded.info_version,
        hooks = ?loaded.hooks.iter().map(|h| h.as_str()).collect::<Vec<_>>(), "plugin loaded"
    );
    Ok(loaded)
}

fn check_config(cfg: &PluginConfig) -> Result<(), PluginError> {
    let bad = |cause: String| PluginError::Config {
        plugin: cfg.name.clone(),
        cause,
    };
    if cfg.name.trim().is_empty() || cfg.name.chars().any(char::is_control) {
        return Err(bad(format!("invalid plugin name {:?}", cfg.name)));
    }
    if cfg.memory == 0 || cfg.memory > MAX_PLUGIN_MEMORY {
        return Err(bad(format!(
            "memory {} bytes is outside 1..={} (256 MiB)",
            cfg.memory, MAX_PLUGIN_MEMORY
        )));
    }
    if cfg.timeout.is_zero() {
        return Err(bad("timeout must be greater than zero".into()));
    }
    if cfg.reuse == 0 {
        return Err(bad("reuse must be at least 1".into()));
    }
    if cfg.fuel == Some(0) {
        return Err(bad("fuel must be greater than zero".into()));
    }
    if serde_json::from_str::<serde_json::Value>(&cfg.config_json).is_err() {
        return Err(bad("config is not valid JSON".into()));
    }
    Ok(())
}

/// Compiles `wasm`, or loads it from the cache.
fn component(
    runtime: &Runtime,
    engine: &Engine,
    wasm: &[u8],
    plugin: &str,
) -> Result<Component, PluginError> {
    let compile = || {
        let start = std::time::Instant::now();
        let c = Component::from_binary(engine, wasm).map_err(|e| PluginError::Compile {
            plugin: plugin.to_string(),
            cause: format!("{e:#}"),
        })?;
        runtime.stats.compiled.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(plugin, ms = start.elapsed().as_millis() as u64, "plugin compiled");
        Ok(c)
    };
    let Some(dir) = runtime.cache_dir.as_deref() else {
        return compile();
    };
    let key = cache_key(engine, wasm);
    let path = dir.join(format!("{key}.cwasm"));
    let sum_path = dir.join(format!("{key}.cwasm.sha256"));
    match load_cached(engine, &path, &sum_path) {
        Ok(Some(c)) => {
            runtime.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(plugin, path = %path.display(), "plugin loaded from the compile cache");
            return Ok(c);
        }
        Ok(None) => {}
        Err(cause) => {
            tracing::warn!(plugin, path = %path.display(), %cause, "unusable compile cache entry, recompiling");
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(&sum_path);
        }
    }
    let component = compile()?;
    match component.serialize() {
        Ok(bytes) => {
            let sum = hex(&Sha256::digest(&bytes));
            if let Err(cause) = std::fs::create_dir_all(dir)
                .and_then(|()| write_atomic(&path, &bytes))
                .and_then(|()| write_atomic(&sum_path, sum.as_bytes()))
            {
                tracing::warn!(plugin, path = %path.display(), %cause, "cannot write the compile cache");
            }
        }
        Err(cause) => tracing::warn!(plugin, %cause, "cannot serialize the compiled plugin"),
    }
    Ok(component)
}

/// `Ok(None)` when there is no entry; `Err` when the entry is unusable.
fn load_cached(engine: &Engine, path: &Path, sum_path: &Path) -> Result<Option<Component>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let want = std::fs::read_to_string(sum_path).map_err(|e| format!("checksum file: {e}"))?;
    if want.trim() != hex(&Sha256::digest(&bytes)) {
        return Err("checksum mismatch (corrupt or truncated)".into());
    }
    deserialize_own_artifact(engine, &bytes)
        .map(Some)
        .map_err(|e| format!("incompatible artifact: {e:#}"))
}

/// The one `unsafe` call of the plugin runtime.
#[allow(unsafe_code)]
fn deserialize_own_artifact(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` trusts its input to be a wasmtime
    // artifact. These bytes come from our own cache directory: this host
    // wrote them with `Component::serialize`, under a name keyed on the
    // wasm's sha256 and this engine's compatibility hash, and they still
    // match the sha256 recorded when they were written, so they are exactly
    // what wasmtime produced. wasmtime also checks its version and the
    // engine configuration in the artifact header. Files from anywhere else
    // are never passed here.
    unsafe { Component::deserialize(engine, bytes) }
}

/// `<sha256(wasm)>-<first 16 hex of sha256(engine compatibility hash)>`.
fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            0 // unused: the digest is taken from the inner state
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    let engine_hash = hex(&h.0.finalize());
    format!("{}-{}", hex(&Sha256::digest(wasm)), &engine_hash[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The host's linker: WASI p2 (async, served by an empty `WasiCtx`) and the
/// `plugin` world's imports.
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Plugin::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// Links `component`; the error names a foreign package version when that
/// is the reason.
fn link(
    engine: &Engine,
    component: &Component,
    plugin: &str,
) -> Result<(Vec<String>, PluginPre<PluginState>), PluginError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let foreign = foreign_version(imports.iter().chain(exports.iter()).map(String::as_str));
    let fail = |cause: String| match &foreign {
        Some(found) => PluginError::Version {
            plugin: plugin.to_string(),
            found: found.clone(),
        },
        None => PluginError::Link {
            plugin: plugin.to_string(),
            cause,
        },
    };
    if !exports.iter().any(|e| e.starts_with("poczta:plugin/hooks")) {
        return Err(fail(format!(
            "does not export poczta:plugin/hooks (exports: {})",
            if exports.is_empty() {
                "none".to_string()
            } else {
                exports.join(", ")
            }
        )));
    }
    let linker = linker(engine).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
    let instance_pre = linker
        .instantiate_pre(component)
        .map_err(|e| fail(format!("{e:#}")))?;
    let pre = PluginPre::new(instance_pre).map_err(|e| fail(format!("{e:#}")))?;
    Ok((imports, pre))
}

/// `poczta:plugin@X` if some name targets a version of our package other
/// than the one served.
fn foreign_version<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
    names.filter_map(package_version).find(|v| v != WIT_PACKAGE)
}

/// `poczta:plugin/hooks@0.1.0` → `poczta:plugin@0.1.0`.
pub fn package_version(name: &str) -> Option<String> {
    let rest = name.strip_prefix(PACKAGE_PREFIX)?;
    let version = rest.split_once('@').map(|(_, v)| v).unwrap_or("");
    Some(if version.is_empty() {
        "poczta:plugin (unversioned)".to_string()
    } else {
        format!("poczta:plugin@{version}")
    })
}

/// Instantiates once and calls `describe()`: (name, version, hooks).
fn describe(plugin: &Arc<LoadedPlugin>) -> Result<(String, String, Vec<Hook>), String> {
    let budget = plugin.timeout.max(DESCRIBE_MIN_BUDGET);
    let txn = Arc::new(Mutex::new(TxnData::default()));
    let mut store: Store<PluginState> = state::new_store(plugin, txn, 0, false);
    let info = block_on(async {
        store.data_mut().begin_call(None, budget);
        let instance = plugin.pre.instantiate_async(&mut store).await;
        let instance = instance.map_err(|e| {
            format!(
                "instantiation failed: {}",
                super::session::cause(&e, store.data())
            )
        })?;
        store.data_mut().begin_call(None, budget);
        let info = instance.poczta_plugin_hooks().call_describe(&mut store).await;
        store.data_mut().end_call();
        info.map_err(|e| super::session::cause(&e, store.data()))
    })?;
    drop(store);

    let name = info.name.trim().to_string();
    if name.is_empty() {
        return Err("empty plugin name".into());
    }
    if name.len() > MAX_INFO_LEN || name.chars().any(char::is_control) {
        return Err(format!("invalid plugin name {name:?}"));
    }
    let version = info.version.trim().to_string();
    if version.len() > MAX_INFO_LEN || version.chars().any(char::is_control) {
        return Err(format!("invalid plugin version {version:?}"));
    }
    let mut hooks: Vec<Hook> = info.hooks.into_iter().map(Hook::from).collect();
    hooks.sort();
    hooks.dedup();
    Ok((name, version, hooks))
}

/// Runs a future to completion on this thread (load is blocking and may be
/// called from any thread, inside or outside tokio). The plugin's calls are
/// bounded by the epoch deadline; async host functions are not reachable
/// during `describe` (capabilities are off).
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_versions_are_recognised() {
        assert_eq!(
            package_version("poczta:plugin/hooks@0.1.0").as_deref(),
            Some("poczta:plugin@0.1.0")
        );
        assert_eq!(
            package_version("poczta:plugin/kv@0.2.0").as_deref(),
            Some("poczta:plugin@0.2.0")
        );
        assert_eq!(package_version("wasi:cli/environment@0.2.6"), None);
        let names = [
            "wasi:io/poll@0.2.0",
            "poczta:plugin/types@0.1.0",
            "poczta:plugin/hooks@0.3.1",
        ];
        assert_eq!(
            foreign_version(names.into_iter()).as_deref(),
            Some("poczta:plugin@0.3.1")
        );
        assert_eq!(foreign_version(["poczta:plugin/hooks@0.1.0"].into_iter()), None);
    }
}
