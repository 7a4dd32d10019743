//! The WebAssembly plugin runtime: the boundary between the trusted host and
//! untrusted policy plugins (components targeting `poczta:plugin@0.1.0`).
//!
//! # Layout
//!
//! * `mod.rs` (this file): the façade — every type the server uses.
//! * [`bindings`]: the only `bindgen!`; generated types stay there.
//! * `engine.rs`: the wasmtime [`Runtime`] (engine, epoch ticker, compile cache).
//! * `loader.rs`: compile or load from cache, link, `InstancePre`, `describe()`.
//! * `state.rs`: per-instance store data (limits, grants, quotas, deadline).
//! * `host/`: one `impl …::Host for PluginState` per WIT interface.
//! * `session.rs`: [`Session`] — instances per transaction, hook chains.
//! * `verdict.rs`: reply validation, score thresholds, summary headers.
//! * `message.rs`: parse-once message data behind the `message` resource.
//! * `runner.rs`: `poczta plugin check` / `plugin run` without a server.
//!
//! # Invariants
//!
//! * A plugin sees only what a capability grant hands it; every host call
//!   is bounded (log lines, DNS look-ups and kv operations per call, sizes).
//! * A trap, deadline, out-of-memory or `err(..)` never becomes acceptance:
//!   it becomes the plugin's `on_error` outcome (tempfail by default) and
//!   one `warn!` line naming the plugin, the hook and the cause.
//! * A [`PluginSet`] is immutable; reload builds a new one. A [`Session`]
//!   keeps the set it was created from.
//! * An instance serves one transaction (the connection-level hooks
//!   `connect`/`helo` get their own) and, with `reuse = N`, up to N of them
//!   one after another, taken from the plugin's idle pool. Only an instance
//!   whose scope ended cleanly goes back: never after a trap, a deadline or
//!   a call abandoned half-way.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub mod bindings;
mod engine;
mod host;
mod loader;
mod message;
pub mod runner;
mod session;
mod state;
#[cfg(test)]
mod tests;
pub mod train;
mod verdict;

pub use engine::Runtime;
pub use message::ParsedMessage;
pub use session::Session;

/// The WIT package version this host serves.
pub const WIT_PACKAGE: &str = "poczta:plugin@0.1.0";

/// Default per-hook deadline (DESIGN: 100 ms).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

/// Default memory cap per instance (DESIGN: 64 MiB).
pub const DEFAULT_MEMORY: usize = 64 << 20;

/// What the host does when a plugin fails (trap, deadline, out of memory,
/// `err(..)`, instantiation failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Answer 451 4.7.1 for that hook (the safe default: a broken filter
    /// must never turn into acceptance).
    #[default]
    Tempfail,
    /// Skip the plugin and go on with the next one.
    Continue,
}

/// Capabilities granted to one plugin by its config entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grants {
    /// The `dns` interface.
    pub dns: bool,
    /// The `kv` interface.
    pub kv: bool,
    /// The `assets` interface.
    pub assets: bool,
}

impl Grants {
    /// Every capability (used by `plugin run`).
    pub const ALL: Grants = Grants {
        dns: true,
        kv: true,
        assets: true,
    };
}

/// One `[[plugins]]` entry, resolved by the config code.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The config name: kv namespace, log tag, verdict log.
    pub name: String,
    /// The `.wasm` component.
    pub path: PathBuf,
    /// What a failure of this plugin means.
    pub on_error: OnError,
    /// The plugin's `config` table as JSON (`"{}"` when none).
    pub config_json: String,
    /// Granted capabilities.
    pub grants: Grants,
    /// Named assets: (name, file), read once at load.
    pub assets: Vec<(String, PathBuf)>,
    /// Wall-clock deadline of one hook call, host calls included.
    pub timeout: Duration,
    /// Memory cap of one instance (all its linear memories together).
    pub memory: usize,
    /// Optional fuel budget per hook call (enables the fuel engine).
    pub fuel: Option<u64>,
    /// How many transactions one instance serves, one after another,
    /// before it is replaced; 1 (the default) gives every transaction a
    /// fresh instance.
    pub reuse: u32,
}

impl PluginConfig {
    /// A config entry with the defaults: tempfail on error, no grants, no
    /// assets, `{}` config, 100 ms, 64 MiB, no fuel.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> PluginConfig {
        PluginConfig {
            name: name.into(),
            path: path.into(),
            on_error: OnError::Tempfail,
            config_json: "{}".into(),
            grants: Grants::default(),
            assets: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            memory: DEFAULT_MEMORY,
            fuel: None,
            reuse: 1,
        }
    }
}

/// Score thresholds from `[scores]`; `None` disables that action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreThresholds {
    /// At or above: add X-Spam-Score / X-Spam-Status / X-Spam-Flag.
    pub add_header: Option<f64>,
    /// At or above: file into Junk (or tag, for POP3 users).
    pub junk: Option<f64>,
    /// At or above: reject with 550 5.7.1.
    pub reject: Option<f64>,
}

impl Default for ScoreThresholds {
    fn default() -> Self {
        ScoreThresholds {
            add_header: Some(5.0),
            junk: Some(6.0),
            reject: Some(15.0),
        }
    }
}

/// A boxed, sendable future (the kv backend's write operations).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The key-value store behind the `kv` interface, namespaced by plugin
/// config name. Implemented by the server on redb; [`MemoryKv`] is the
/// in-memory version for tests and `plugin run`.
///
/// Counters written by `increment` are stored as ASCII decimal text
/// (`b"42"`), so a plugin's `get` sees the same number; `increment` on a
/// value that is not such a number is an error.
pub trait KvBackend: Send + Sync + 'static {
    /// The value of `key`, unless missing or expired at `now` (unix secs).
    fn get(&self, plugin: &str, key: &str, now: u64) -> Result<Option<Vec<u8>>, String>;
    /// Sets `key`; `expires` in unix seconds, 0 = never.
    fn set(
        &self,
        plugin: &str,
        key: &str,
        value: Vec<u8>,
        expires: u64,
    ) -> BoxFuture<'static, Result<(), String>>;
    /// Deletes `key` (no error when missing).
    fn delete(&self, plugin: &str, key: &str) -> BoxFuture<'static, Result<(), String>>;
    /// Adds `delta` to the counter at `key` (missing/expired = 0) and
    /// returns the new value; a new key expires at `expires_if_new`
    /// (0 = never), an existing key keeps its expiry.
    fn increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
        expires_if_new: u64,
        now: u64,
    ) -> BoxFuture<'static, Result<i64, String>>;
}

/// An in-memory [`KvBackend`] (tests, `plugin run`).
#[derive(Debug, Default)]
pub struct MemoryKv {
    map: std::sync::Mutex<KvMap>,
}

/// (plugin, key) → (value, expiry in unix seconds, 0 = never).
type KvMap = std::collections::HashMap<(String, String), (Vec<u8>, u64)>;

impl MemoryKv {
    /// An empty store.
    pub fn new() -> MemoryKv {
        MemoryKv::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KvMap> {
        // A panic while holding this lock cannot leave the map half-written
        // (every operation is a single insert/remove), so poison is ignored.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn live(expires: u64, now: u64) -> bool {
    expires == 0 || expires > now
}

impl KvBackend for MemoryKv {
    fn get(&self, plugin: &str, key: &str, now: u64) -> Result<Option<Vec<u8>>, String> {
        Ok(self
            .lock()
            .get(&(plugin.to_string(), key.to_string()))
            .filter(|(_, exp)| live(*exp, now))
            .map(|(v, _)| v.clone()))
    }

    fn set(
        &self,
        plugin: &str,
        key: &str,
        value: Vec<u8>,
        expires: u64,
    ) -> BoxFuture<'static, Result<(), String>> {
        self.lock()
            .insert((plugin.to_string(), key.to_string()), (value, expires));
        Box::pin(async { Ok(()) })
    }

    fn delete(&self, plugin: &str, key: &str) -> BoxFuture<'static, Result<(), String>> {
        self.lock().remove(&(plugin.to_string(), key.to_string()));
        Box::pin(async { Ok(()) })
    }

    fn increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
        expires_if_new: u64,
        now: u64,
    ) -> BoxFuture<'static, Result<i64, String>> {
        let mut map = self.lock();
        let k = (plugin.to_string(), key.to_string());
        let result = match map.get(&k).filter(|(_, exp)| live(*exp, now)) {
            Some((value, exp)) => {
                let exp = *exp;
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .ok_or_else(|| format!("value at {key:?} is not an integer"))
                    .map(|old| (old.wrapping_add(delta), exp))
            }
            None => Ok((delta, expires_if_new)),
        };
        let result = result.map(|(new, exp)| {
            map.insert(k, (new.to_string().into_bytes(), exp));
            new
        });
        Box::pin(async move { result })
    }
}

/// Capabilities the server hands to every plugin of a set.
#[derive(Clone)]
pub struct Services {
    /// The kv store behind the `kv` interface.
    pub kv: Arc<dyn KvBackend>,
    /// The resolver behind the `dns` interface.
    pub dns: Arc<crate::dns::Resolver>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// Why a plugin set could not be loaded. Every variant names the plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The wasmtime engine could not be created.
    #[error("plugin engine: {0}")]
    Engine(String),
    /// The config entry is unusable (name, limits, duplicate).
    #[error("plugin {plugin}: {cause}")]
    Config {
        /// Config name.
        plugin: String,
        /// What is wrong.
        cause: String,
    },
    /// The `.wasm` file or an asset could not be read.
    #[error("plugin {plugin}: cannot read {path}: {cause}")]
    Read {
        /// Config name.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// Not a valid component, or compilation failed.
    #[error("plugin {plugin}: not a valid WebAssembly component: {cause}")]
    Compile {
        /// Config name.
        plugin: String,
        /// The compiler's message.
        cause: String,
    },
    /// The component targets another version of the plugin interface.
    #[error("plugin {plugin}: targets {found}, this host serves {WIT_PACKAGE}")]
    Version {
        /// Config name.
        plugin: String,
        /// The package it targets, e.g. `poczta:plugin@0.2.0`.
        found: String,
    },
    /// The component's imports or exports do not match what the host links.
    #[error("plugin {plugin}: cannot link: {cause}")]
    Link {
        /// Config name.
        plugin: String,
        /// The linker's message.
        cause: String,
    },
    /// `describe()` failed or returned something unusable.
    #[error("plugin {plugin}: describe(): {cause}")]
    Describe {
        /// Config name.
        plugin: String,
        /// What went wrong.
        cause: String,
    },
}

/// The hooks, in the order the host calls them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// After TCP accept.
    Connect,
    /// After EHLO/HELO.
    Helo,
    /// After MAIL FROM.
    MailFrom,
    /// For each RCPT TO.
    Rcpt,
    /// After DATA: header fields.
    Headers,
    /// After `headers`: MIME tree and bodies.
    Body,
    /// For each final recipient.
    Deliver,
}

impl Hook {
    /// Every hook, in call order.
    pub const ALL: [Hook; 7] = [
        Hook::Connect,
        Hook::Helo,
        Hook::MailFrom,
        Hook::Rcpt,
        Hook::Headers,
        Hook::Body,
        Hook::Deliver,
    ];

    /// The WIT name (`mail-from`).
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Helo => "helo",
            Hook::MailFrom => "mail-from",
            Hook::Rcpt => "rcpt",
            Hook::Headers => "headers",
            Hook::Body => "body",
            Hook::Deliver => "deliver",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<bindings::types::Hook> for Hook {
    fn from(h: bindings::types::Hook) -> Hook {
        use bindings::types::Hook as W;
        match h {
            W::Connect => Hook::Connect,
            W::Helo => Hook::Helo,
            W::MailFrom => Hook::MailFrom,
            W::Rcpt => Hook::Rcpt,
            W::Headers => Hook::Headers,
            W::Body => Hook::Body,
            W::Deliver => Hook::Deliver,
        }
    }
}

/// What a plugin said about itself in `describe()`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfoSummary {
    /// The plugin's own name.
    pub name: String,
    /// The plugin's own version string.
    pub version: String,
    /// Declared hooks (WIT names, call order, no duplicates).
    pub hooks: Vec<String>,
}

/// An immutable snapshot of the loaded plugins. Hot reload builds a new set
/// and swaps it in; a [`Session`] keeps the set it started with.
pub struct PluginSet {
    pub(crate) plugins: Vec<Arc<loader::LoadedPlugin>>,
    pub(crate) thresholds: ScoreThresholds,
}

impl Drop for PluginSet {
    fn drop(&mut self) {
        // Idle instances hold their plugin; without this a replaced set
        // would never be freed.
        for p in &self.plugins {
            p.pool.clear();
        }
    }
}

impl std::fmt::Debug for PluginSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSet")
            .field(
                "plugins",
                &self.plugins.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .field("thresholds", &self.thresholds)
            .finish()
    }
}

impl PluginSet {
    /// Loads every plugin (from the `.cwasm` cache when valid), links it,
    /// builds its `InstancePre`, calls `describe()` and checks it. Blocking
    /// (compiles): call from `spawn_blocking`. Any failure is an `Err`
    /// naming the plugin and the cause; nothing is half-loaded.
    pub fn load(
        runtime: &Runtime,
        plugins: &[PluginConfig],
        thresholds: ScoreThresholds,
        services: Services,
    ) -> Result<PluginSet, PluginError> {
        let mut loaded: Vec<Arc<loader::LoadedPlugin>> = Vec::with_capacity(plugins.len());
        for cfg in plugins {
            if loaded.iter().any(|p| p.name == cfg.name) {
                return Err(PluginError::Config {
                    plugin: cfg.name.clone(),
                    cause: "duplicate plugin name".into(),
                });
            }
            loaded.push(Arc::new(loader::load(runtime, cfg, &services)?));
        }
        Ok(PluginSet {
            plugins: loaded,
            thresholds,
        })
    }

    /// A set without plugins (no `[[plugins]]`, or before the first load).
    pub fn empty(thresholds: ScoreThresholds) -> PluginSet {
        PluginSet {
            plugins: Vec::new(),
            thresholds,
        }
    }

    /// (config name, what `describe()` said) for every plugin, in order.
    pub fn describe(&self) -> Vec<(String, PluginInfoSummary)> {
        self.plugins
            .iter()
            .map(|p| (p.name.clone(), p.summary()))
            .collect()
    }

    /// Whether any plugin implements `hook` (the server can skip work, e.g.
    /// not buffer for `body`, when none does).
    pub fn has_hook(&self, hook: Hook) -> bool {
        self.plugins.iter().any(|p| p.hooks.contains(&hook))
    }

    /// The score thresholds of this set.
    pub fn thresholds(&self) -> ScoreThresholds {
        self.thresholds
    }

    /// Starts the plugin side of one SMTP connection.
    pub fn session(self: &Arc<Self>, conn: ConnInfo) -> Session {
        Session::new(Arc::clone(self), conn)
    }
}

/// The client connection, as the server knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Client address.
    pub client_ip: IpAddr,
    /// Client port.
    pub client_port: u16,
    /// `"smtp"` or `"submission"`.
    pub listener: String,
    /// Whether TLS is active.
    pub tls: bool,
    /// The authenticated user, if any.
    pub authenticated: Option<String>,
    /// The HELO/EHLO name (empty before HELO).
    pub helo: String,
}

/// The envelope so far.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// MAIL FROM address; empty for `<>`.
    pub mail_from: String,
    /// Accepted recipients (after redirects), in order.
    pub rcpts: Vec<String>,
}

/// An SMTP reply chosen by a plugin, validated by the host: the code always
/// belongs to the decision's class and `enhanced` matches its first digit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginReply {
    /// e.g. 550.
    pub code: u16,
    /// e.g. "5.7.1".
    pub enhanced: String,
    /// One line, no control characters.
    pub text: String,
}

/// The outcome of a connection or message hook chain.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No plugin objected.
    Continue,
    /// A plugin accepted at this stage (later plugins of the hook skipped).
    Accept,
    /// Refuse with a 5xx.
    Reject(PluginReply),
    /// Refuse with a 4xx.
    Tempfail(PluginReply),
    /// Answer (421 or 5xx) and close the connection.
    Disconnect(PluginReply),
    /// Accept (250) and drop the message. Only from `headers`/`body`;
    /// elsewhere a plugin's discard becomes a default reject.
    Discard,
    /// Accept and hold in quarantine with this reason. From `connect`,
    /// `helo` or `mail-from` the session remembers it: the server answers
    /// as for `Continue`, and the message's `data()` outcome is quarantine.
    Quarantine(String),
}

impl Decision {
    /// The verdict word for logs and `plugin run` (`"reject"`, …).
    pub fn word(&self) -> &'static str {
        match self {
            Decision::Continue => "continue",
            Decision::Accept => "accept",
            Decision::Reject(_) => "reject",
            Decision::Tempfail(_) => "tempfail",
            Decision::Disconnect(_) => "disconnect",
            Decision::Discard => "discard",
            Decision::Quarantine(_) => "quarantine",
        }
    }

    /// Whether this decision stops the chain for the hook and is final for
    /// the stage (everything but continue and accept).
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Decision::Continue | Decision::Accept)
    }
}

/// The outcome of the `rcpt` chain for one recipient.
#[derive(Debug, Clone, PartialEq)]
pub enum RcptDecision {
    /// No plugin decided: the host's own routing applies.
    Continue,
    /// Accept as is, skipping the local-user check.
    Accept,
    /// Refuse this recipient (5xx).
    Reject(PluginReply),
    /// Refuse this recipient for now (4xx).
    Tempfail(PluginReply),
    /// Deliver to these addresses instead (never empty, validated).
    Redirect(Vec<String>),
}

impl RcptDecision {
    /// The verdict word.
    pub fn word(&self) -> &'static str {
        match self {
            RcptDecision::Continue => "continue",
            RcptDecision::Accept => "accept",
            RcptDecision::Reject(_) => "reject",
            RcptDecision::Tempfail(_) => "tempfail",
            RcptDecision::Redirect(_) => "redirect",
        }
    }
}

/// Where a message goes for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folder {
    /// The inbox.
    Inbox,
    /// The junk folder (or tag-and-inbox for POP3 users).
    Junk,
    /// Held for the administrator, with a reason.
    Quarantine(String),
    /// Dropped for this recipient.
    Discard,
}

impl Folder {
    /// The word for logs.
    pub fn word(&self) -> &'static str {
        match self {
            Folder::Inbox => "inbox",
            Folder::Junk => "junk",
            Folder::Quarantine(_) => "quarantine",
            Folder::Discard => "discard",
        }
    }
}

/// A score symbol added by a plugin.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Symbol {
    /// The plugin's config name.
    pub plugin: String,
    /// e.g. `MISSING_DATE`.
    pub name: String,
    /// Added to the score.
    pub weight: f64,
    /// For the log.
    pub description: String,
}

/// The outcome of the data stage (`headers` + `body` + thresholds).
#[derive(Debug, Clone, PartialEq)]
pub struct DataOutcome {
    /// Plugin decision, else the reject threshold (550 5.7.1 "Message
    /// rejected as spam (score X)"), else an earlier quarantine, else
    /// continue/accept.
    pub decision: Decision,
    /// Sum of all symbol weights of the transaction.
    pub score: f64,
    /// Every symbol, in the order added.
    pub symbols: Vec<Symbol>,
    /// Score at or above the junk threshold.
    pub junk: bool,
    /// Headers to prepend: plugin-added ones, then X-Spam-Score /
    /// X-Spam-Status / X-Spam-Flag (score ≥ add_header), then one
    /// `X-Poczta-Score` summary (whenever a plugin ran a data hook or added
    /// a symbol).
    pub add_headers: Vec<(String, String)>,
    /// Lower-case names of fields to strip from the received message:
    /// plugin removals plus every incoming `X-Spam-*` and `X-Poczta-Score`.
    /// Applied to the received header fields before `add_headers` are
    /// prepended (a plugin cannot remove a header another plugin added).
    pub remove_headers: Vec<String>,
    /// (plugin, hook, verdict word) of every hook call of the transaction
    /// so far, connection-level hooks included, for the acceptance log line.
    pub verdicts: Vec<(String, String, String)>,
}
