//! `memory-probe`: a test plugin for the isolation of instances that share a
//! pool slot. The host resets a freed linear memory for the next instance —
//! partly in place (the dirty pages `PAGEMAP_SCAN` finds, up to a budget),
//! the rest by unmapping — and either way the next instance must start from
//! the module's own image: zeroes in `.bss`.
//!
//! `headers` hook: reads a 1 MiB zero-initialised static buffer (more than
//! the in-place budget, so both reset paths are covered), adds
//! `X-Probe: clean` if every byte is zero or `X-Probe: dirty N` with the
//! count of non-zero pages, then writes a marker into every 4 KiB page of
//! it, as an instance that handled secrets would leave them.

use std::cell::UnsafeCell;

use poczta_plugin::{Envelope, Hook, HookResult, Message, Plugin, Verdict};

const SIZE: usize = 1 << 20;
const PAGE: usize = 4096;

/// The probed memory. A plugin instance is single-threaded; `Sync` only
/// lets it be a `static` (in `.bss`, zero in the module's image).
struct Buffer(UnsafeCell<[u8; SIZE]>);
// SAFETY: wasm32 plugin instances run one call at a time on one thread.
unsafe impl Sync for Buffer {}

static BUF: Buffer = Buffer(UnsafeCell::new([0; SIZE]));

/// Non-zero pages of the buffer (volatile reads: the optimiser may not
/// assume the zero it was initialised with).
fn dirty_pages() -> usize {
    let base = BUF.0.get().cast::<u8>();
    (0..SIZE / PAGE)
        .filter(|p| {
            (0..PAGE).step_by(64).any(|i| {
                // SAFETY: in bounds of the static; no reference is held.
                unsafe { base.add(p * PAGE + i).read_volatile() != 0 }
            })
        })
        .count()
}

fn mark_all() {
    let base = BUF.0.get().cast::<u8>();
    for p in 0..SIZE / PAGE {
        for i in (0..PAGE).step_by(64) {
            // SAFETY: in bounds of the static; no reference is held.
            unsafe { base.add(p * PAGE + i).write_volatile(0xA5) };
        }
    }
}

struct MemoryProbe;

impl Plugin for MemoryProbe {
    const NAME: &'static str = "memory-probe";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Headers];

    fn headers(_env: Envelope, _msg: &Message) -> HookResult<Verdict> {
        let dirty = dirty_pages();
        if dirty == 0 {
            poczta_plugin::add_header("X-Probe", "clean");
        } else {
            poczta_plugin::add_header("X-Probe", &format!("dirty {dirty}"));
        }
        mark_all();
        Ok(Verdict::Continue)
    }
}

poczta_plugin::export_plugin!(MemoryProbe);
