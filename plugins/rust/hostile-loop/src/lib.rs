//! `hostile-loop`: a hostile test plugin that never returns from `headers`.
//!
//! It spins forever on a counter passed through `black_box`, so the loop is
//! neither removed nor turned into a sleep by the optimiser. The host must stop
//! it at the hook's deadline (epoch interruption) and apply `on_error`.
//! It calls no host function. No config.

use poczta_plugin::{Envelope, Hook, HookResult, Message, Plugin, Verdict};

struct HostileLoop;

impl Plugin for HostileLoop {
    const NAME: &'static str = "hostile-loop";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Headers];

    fn headers(_env: Envelope, _msg: &Message) -> HookResult<Verdict> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n).wrapping_add(1);
            std::hint::black_box(&mut n);
        }
    }
}

poczta_plugin::export_plugin!(HostileLoop);
