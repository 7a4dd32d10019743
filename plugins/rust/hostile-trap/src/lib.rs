//! `hostile-trap`: a hostile test plugin that panics in `headers`.
//!
//! A Rust panic in a wasm32-wasip2 component aborts, which the host sees as a
//! trap (`unreachable`). The host must contain it (apply `on_error`, log the
//! plugin's name and the cause) and must not reuse the poisoned instance.
//! Other hooks are not declared. No config.

use poczta_plugin::{Envelope, Hook, HookResult, Message, Plugin, Verdict};

struct HostileTrap;

impl Plugin for HostileTrap {
    const NAME: &'static str = "hostile-trap";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Headers];

    fn headers(_env: Envelope, _msg: &Message) -> HookResult<Verdict> {
        panic!("hostile-trap: deliberate panic in the headers hook");
    }
}

poczta_plugin::export_plugin!(HostileTrap);
