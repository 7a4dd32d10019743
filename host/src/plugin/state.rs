//! Store data of one plugin instance: WASI (empty), the resource table, the
//! memory limiter, the plugin's grants and assets, the transaction it acts
//! on, the current call's deadline and the per-call quotas.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::loader::LoadedPlugin;
use super::{Hook, Symbol};

/// Log lines a plugin may write per hook call; the rest are counted and
/// reported in one warning.
pub const MAX_LOG_LINES_PER_CALL: u32 = 100;
/// Longest log line kept (bytes); longer ones are cut at a char boundary.
pub const MAX_LOG_LINE: usize = 1024;
/// Host warnings about one plugin's invalid requests per call (invalid
/// header names…), so a hostile plugin cannot flood the log through them.
pub const MAX_WARNINGS_PER_CALL: u32 = 10;
/// DNS look-ups per hook call.
pub const MAX_DNS_PER_CALL: u32 = 20;
/// kv operations per hook call.
pub const MAX_KV_PER_CALL: u32 = 100;
/// Headers one plugin may add per transaction.
pub const MAX_HEADERS_PER_PLUGIN: usize = 32;
/// Header names one plugin may remove per transaction.
pub const MAX_REMOVALS_PER_PLUGIN: usize = 64;
/// Symbols one plugin may add per transaction.
pub const MAX_SYMBOLS_PER_PLUGIN: usize = 256;
/// Notes per transaction (all plugins).
pub const MAX_NOTES: usize = 256;
/// Longest note key / value (bytes).
pub const MAX_NOTE_KEY: usize = 256;
/// Longest note value (bytes).
pub const MAX_NOTE_VALUE: usize = 16 << 10;

/// What plugins of one transaction share: notes, symbols, header edits.
/// Connection-level hooks (`connect`, `helo`) write into the connection's
/// `TxnData`, which seeds every transaction of the connection (a DNSBL
/// symbol added at connect counts in each message's score).
#[derive(Debug, Clone, Default)]
pub struct TxnData {
    pub notes: BTreeMap<String, String>,
    pub symbols: Vec<Symbol>,
    /// (plugin, name, value)
    pub add_headers: Vec<(String, String, String)>,
    /// (plugin, lower-case name)
    pub remove_headers: Vec<(String, String)>,
    /// (plugin, address) of the last `set-sender`.
    pub sender: Option<(String, String)>,
}

/// A shared handle to the transaction's data. Hooks run one at a time, so
/// the lock is never contended; it is never held across an `.await`.
pub type SharedTxn = Arc<Mutex<TxnData>>;

/// Locks `txn`, ignoring poison (every mutation is a single push/insert).
pub fn lock(txn: &SharedTxn) -> MutexGuard<'_, TxnData> {
    txn.lock().unwrap_or_else(|p| p.into_inner())
}

/// Caps the total of an instance's linear memories and records that the
/// cap was hit, so a resulting trap can be reported as out-of-memory.
#[derive(Debug)]
pub struct MemoryLimiter {
    cap: usize,
    used: usize,
    pub hit: bool,
}

impl MemoryLimiter {
    pub fn new(cap: usize) -> MemoryLimiter {
        MemoryLimiter {
            cap,
            used: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if maximum.is_some_and(|max| desired > max) || self.used.saturating_add(growth) > self.cap {
            self.hit = true;
            return Ok(false);
        }
        self.used += growth;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the pool's `table_elements` and by `maximum`.
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

/// Per-call counters, reset before every hook call.
#[derive(Debug, Default)]
pub struct CallCounters {
    pub logs: u32,
    pub logs_dropped: u32,
    pub warnings: u32,
    pub dns: u32,
    pub kv: u32,
}

/// The data of one plugin's `Store`.
pub struct PluginState {
    wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub plugin: Arc<LoadedPlugin>,
    pub txn: SharedTxn,
    /// The running call's wall-clock deadline (None between calls).
    pub deadline: Option<Instant>,
    /// The hook being run (for log lines); None during `describe`.
    pub hook: Option<Hook>,
    /// Session id for log lines.
    pub session: u64,
    pub counters: CallCounters,
    /// Whether host capabilities may be used (false during `describe`).
    pub capabilities: bool,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl PluginState {
    /// The hook name for logs.
    pub fn hook_name(&self) -> &'static str {
        self.hook.map(Hook::as_str).unwrap_or("describe")
    }

    /// Time left in the current call (zero when none is running).
    pub fn remaining(&self) -> Duration {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::ZERO)
    }

    /// Logs a host-side warning about this plugin's request, within the
    /// per-call warning budget.
    pub fn warn(&mut self, what: &str) {
        self.counters.warnings += 1;
        if self.counters.warnings <= MAX_WARNINGS_PER_CALL {
            tracing::warn!(plugin = %self.plugin.name, hook = self.hook_name(), session = self.session, "{what}");
        }
    }

    /// Points a reused instance at another transaction (or connection).
    pub fn rebind(&mut self, txn: SharedTxn, session: u64) {
        self.txn = txn;
        self.session = session;
        self.hook = None;
        self.deadline = None;
    }

    /// Prepares for a hook call.
    pub fn begin_call(&mut self, hook: Option<Hook>, budget: Duration) {
        self.hook = hook;
        self.deadline = Some(Instant::now() + budget);
        self.counters = CallCounters::default();
        self.limiter.hit = false;
    }

    /// Ends a hook call: reports dropped log lines and warnings once.
    pub fn end_call(&mut self) {
        self.deadline = None;
        let c = &self.counters;
        if c.logs_dropped > 0 {
            tracing::warn!(
                plugin = %self.plugin.name, hook = self.hook_name(), session = self.session,
                dropped = c.logs_dropped, "plugin log lines dropped (limit {MAX_LOG_LINES_PER_CALL} per call)"
            );
        }
        if c.warnings > MAX_WARNINGS_PER_CALL {
            tracing::warn!(
                plugin = %self.plugin.name, hook = self.hook_name(), session = self.session,
                suppressed = c.warnings - MAX_WARNINGS_PER_CALL, "further warnings about this plugin's requests suppressed"
            );
        }
    }
}

/// Creates a store for `plugin` acting on `txn`: empty WASI (no preopens,
/// env, args or network; stdio discarded), the memory cap, the epoch
/// callback (yield every tick, trap after the deadline) and fuel if set.
pub fn new_store(
    plugin: &Arc<LoadedPlugin>,
    txn: SharedTxn,
    session: u64,
    capabilities: bool,
) -> Store<PluginState> {
    let state = PluginState {
        wasi: WasiCtx::builder().build(),
        table: ResourceTable::new(),
        limiter: MemoryLimiter::new(plugin.memory),
        plugin: Arc::clone(plugin),
        txn,
        deadline: None,
        hook: None,
        session,
        counters: CallCounters::default(),
        capabilities,
    };
    let mut store = Store::new(&plugin.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| match ctx.data().deadline {
        Some(deadline) if Instant::now() < deadline => Ok(UpdateDeadline::Yield(1)),
        // Past the deadline, or guest code running outside a call (a host
        // bug): stop it.
        _ => Ok(UpdateDeadline::Interrupt),
    });
    if let Some(fuel) = plugin.fuel {
        // Refilled before every call; this covers instantiation.
        let _ = store.set_fuel(fuel);
    }
    store
}
