//! The wasmtime engine(s), the epoch ticker and the compile-cache location.
//!
//! One [`Runtime`] per process. It owns a base engine (component model,
//! epoch interruption, pooling allocator) and, created on first use, a
//! second engine with fuel metering for plugins that set `fuel`: a
//! component compiled for one does not run in the other, and fuel costs
//! every plugin a few percent, so plugins without fuel never pay for it.
//! Both engines' artifacts are cached under different keys because the key
//! includes the engine's compatibility hash.
//!
//! The ticker thread increments both engines' epochs every [`EPOCH_TICK`].
//! A store's epoch callback yields to tokio at every tick (other sessions
//! run while a plugin computes) and traps once the call's wall-clock
//! deadline has passed. The thread stops when the last user of the engines
//! (the `Runtime` or any `PluginSet` built from it) is dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::PluginError;

/// Epoch tick: the granularity of deadlines and of yielding to tokio.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest memory cap a plugin may ask for. The pooling allocator
/// reserves slots of this size, so it is fixed per engine.
pub const MAX_PLUGIN_MEMORY: usize = 256 << 20;

// Pooling allocator sizes. The per-component limits are the ones measured
// to work for componentize-py (the largest: many core instances, tables and
// memories) and StarlingMonkey JS (shared/research/wasm-toolchains.md).
// The totals bound how many instances can be alive at once across all
// sessions, the idle ones of plugins with `reuse` included (up to
// `MAX_IDLE_PER_PLUGIN` = 32 each: ten plugins idle at 320); when the pool
// is full, instantiation fails and the plugin's `on_error` applies
// (tempfail by default: the client retries). Memories and tables are
// reserved address space, not resident memory.
const TOTAL_COMPONENT_INSTANCES: u32 = 1024;
const TOTAL_CORE_INSTANCES: u32 = 1024 * 8;
const TOTAL_MEMORIES: u32 = 1024;
const TOTAL_TABLES: u32 = 256 * 16;
const TOTAL_STACKS: u32 = 64 * 4;
const TABLE_ELEMENTS: usize = 200_000;
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
const MAX_MEMORIES_PER_COMPONENT: u32 = 16;
const MAX_TABLES_PER_COMPONENT: u32 = 32;
const MAX_COMPONENT_INSTANCE_SIZE: usize = 1 << 20;
const MAX_CORE_INSTANCE_SIZE: usize = 1 << 20;
/// Bytes of a freed linear memory reset in place instead of unmapped.
/// With `PAGEMAP_SCAN` (Linux ≥ 6.7; `Enabled::Auto` below) they are the
/// pages the instance actually dirtied, wherever they lie, so the next
/// instance in the slot takes no page faults on them: a fresh Rust plugin
/// instance plus its calls went from ≈ 38–42 µs to ≈ 28–30 µs (criterion
/// `plugin_hook`, BENCHMARKS.md). A Rust plugin dirties well under 256 KiB
/// per transaction; 2 MiB also helped the Python/JS instances' fresh path
/// but keeps up to 2 MiB resident per used slot, which `reuse` makes moot.
const LINEAR_MEMORY_KEEP_RESIDENT: usize = 256 << 10;
/// Without the ioctl the budget is the lowest addresses, reset with
/// `memset` whether dirty or not; a Rust plugin's stack and data sit near
/// 1 MiB, so more than this only costs time (measured earlier: 64 KiB was
/// the fastest there, 1 MiB slower).
const LINEAR_MEMORY_KEEP_RESIDENT_NO_SCAN: usize = 64 << 10;

/// `POCZTA_WASM_PERFMAP=1` in the server's environment writes a perf map of
/// the plugins' JIT code, so that `perf` attributes samples to plugin
/// functions instead of anonymous addresses.
pub const PERFMAP_ENV: &str = "POCZTA_WASM_PERFMAP";

/// Shared by the runtime and every plugin set built from it; dropping the
/// last reference stops the ticker.
pub(crate) struct Engines {
    base: Engine,
    fuel: OnceLock<Result<Engine, String>>,
    pooling: bool,
    perfmap: bool,
}

/// Counters of the compile cache (observable in tests and logs).
#[derive(Debug, Default)]
pub(crate) struct CacheStats {
    pub(crate) compiled: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
}

/// The plugin runtime: engines, epoch ticker, compile cache directory.
/// Cheap to clone (shared handles).
#[derive(Clone)]
pub struct Runtime {
    pub(crate) engines: Arc<Engines>,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) stats: Arc<CacheStats>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache_dir", &self.cache_dir)
            .field("pooling", &self.engines.pooling)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Creates the engine and starts the epoch ticker. `cache_dir`, when
    /// given, holds compiled `.cwasm` files (created on first write).
    /// With `POCZTA_WASM_PERFMAP=1` in the environment the engines write a
    /// perf map ([`PERFMAP_ENV`]).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Runtime, PluginError> {
        let perfmap = std::env::var_os(PERFMAP_ENV).is_some_and(|v| v == "1");
        Self::with_perfmap(cache_dir, perfmap)
    }

    /// [`Runtime::new`] with the perf map chosen by the caller.
    pub fn with_perfmap(cache_dir: Option<PathBuf>, perfmap: bool) -> Result<Runtime, PluginError> {
        let (base, pooling) = new_engine(false, perfmap)?;
        let engines = Arc::new(Engines {
            base,
            fuel: OnceLock::new(),
            pooling,
            perfmap,
        });
        start_ticker(Arc::downgrade(&engines))?;
        Ok(Runtime {
            engines,
            cache_dir,
            stats: Arc::new(CacheStats::default()),
        })
    }

    /// The compile cache directory.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// How many components this runtime compiled (cache misses).
    pub fn compiled_count(&self) -> u64 {
        self.stats.compiled.load(Ordering::Relaxed)
    }

    /// How many components it loaded from the `.cwasm` cache.
    pub fn cache_hit_count(&self) -> u64 {
        self.stats.cache_hits.load(Ordering::Relaxed)
    }

    /// The engine for plugins with (`fuel = true`) or without fuel.
    pub(crate) fn engine(&self, fuel: bool) -> Result<Engine, PluginError> {
        if !fuel {
            return Ok(self.engines.base.clone());
        }
        self.engines
            .fuel
            .get_or_init(|| {
                new_engine(true, self.engines.perfmap)
                    .map(|(e, _)| e)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(PluginError::Engine)
    }

    /// Whether the pooling allocator is in use (it can fail to reserve its
    /// address space on constrained systems; the runtime then falls back to
    /// on-demand allocation).
    pub fn is_pooling(&self) -> bool {
        self.engines.pooling
    }
}

/// Builds an engine: pooling first, on-demand if the pool cannot be
/// reserved.
fn new_engine(fuel: bool, perfmap: bool) -> Result<(Engine, bool), PluginError> {
    match Engine::new(&config(fuel, true, perfmap)) {
        Ok(engine) => Ok((engine, true)),
        Err(pool_err) => {
            tracing::warn!(cause = %pool_err, "plugin engine: pooling allocator unavailable, using on-demand allocation");
            Engine::new(&config(fuel, false, perfmap))
                .map(|e| (e, false))
                .map_err(|e| PluginError::Engine(e.to_string()))
        }
    }
}

fn config(fuel: bool, pooling: bool, perfmap: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(fuel);
    config.parallel_compilation(true);
    if perfmap {
        // For `perf report`: names the plugins' compiled functions in
        // /tmp/perf-PID.map (BENCHMARKS.md, "Profiling plugins").
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(TOTAL_COMPONENT_INSTANCES)
            .total_core_instances(TOTAL_CORE_INSTANCES)
            .total_memories(TOTAL_MEMORIES)
            .total_tables(TOTAL_TABLES)
            .total_stacks(TOTAL_STACKS)
            .max_memory_size(MAX_PLUGIN_MEMORY)
            .table_elements(TABLE_ELEMENTS)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
            .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
            .max_component_instance_size(MAX_COMPONENT_INSTANCE_SIZE)
            .max_core_instance_size(MAX_CORE_INSTANCE_SIZE)
            .linear_memory_keep_resident(if PoolingAllocationConfig::is_pagemap_scan_available() {
                LINEAR_MEMORY_KEEP_RESIDENT
            } else {
                LINEAR_MEMORY_KEEP_RESIDENT_NO_SCAN
            })
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

fn start_ticker(engines: Weak<Engines>) -> Result<(), PluginError> {
    std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                let Some(engines) = engines.upgrade() else {
                    return;
                };
                engines.base.increment_epoch();
                if let Some(Ok(fuel)) = engines.fuel.get() {
                    fuel.increment_epoch();
                }
            }
        })
        .map(|_| ())
        .map_err(|e| PluginError::Engine(format!("cannot start the epoch ticker: {e}")))
}
