//! `hostile-memory`: a hostile test plugin that allocates memory in `headers`
//! until an allocation fails.
//!
//! It allocates 1 MiB blocks, writes one byte in every 4 KiB page of each
//! (volatile writes, so every page is really touched), and keeps every block
//! in a vector that escapes through `black_box`, so the optimiser can remove
//! neither the allocations nor the writes (see gotcha 5 of
//! shared/research/wasm-toolchains.md). When `memory.grow` fails (the host's
//! memory cap, or wasm32's 4 GiB), Rust's allocation-error handler aborts,
//! which the host sees as a trap; the host must contain it and apply
//! `on_error`. It calls no host function. No config.

use poczta_plugin::{Envelope, Hook, HookResult, Message, Plugin, Verdict};

const BLOCK: usize = 1 << 20;
const PAGE: usize = 4096;

/// Allocates and touches blocks until allocation fails (which aborts), or
/// until `max_blocks` blocks are held; returns the number of blocks held.
pub fn hog(max_blocks: usize) -> usize {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    while blocks.len() < max_blocks {
        let mut block: Vec<u8> = Vec::with_capacity(BLOCK);
        let ptr = block.as_mut_ptr();
        let mut off = 0;
        while off < BLOCK {
            // SAFETY: `off < BLOCK` = the capacity of `block`.
            unsafe { std::ptr::write_volatile(ptr.add(off), (off / PAGE) as u8 | 1) };
            off += PAGE;
        }
        // SAFETY: every byte written above; the others are only counted, never read.
        unsafe { block.set_len(BLOCK) };
        blocks.push(std::hint::black_box(block));
        std::hint::black_box(&mut blocks);
    }
    std::hint::black_box(&blocks).len()
}

struct HostileMemory;

impl Plugin for HostileMemory {
    const NAME: &'static str = "hostile-memory";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Headers];

    fn headers(_env: Envelope, _msg: &Message) -> HookResult<Verdict> {
        let held = hog(usize::MAX);
        // Unreachable in practice (wasm32 cannot hold usize::MAX blocks).
        Err(format!("hostile-memory: allocated {held} MiB without failing"))
    }
}

poczta_plugin::export_plugin!(HostileMemory);

#[cfg(test)]
mod tests {
    #[test]
    fn hog_allocates_and_touches() {
        assert_eq!(super::hog(3), 3);
    }
}
