//! `hostile-instantiate`: a hostile test plugin that is a valid component
//! but cannot be instantiated under the default 64 MiB memory cap: its
//! linear memory starts at more than 96 MiB (a large zero-initialised
//! static, which takes no room in the file). Used to check that a hot
//! reload to a set that does not instantiate is refused and the old set
//! keeps serving. Hook: `headers` (never reached). No config.

use poczta_plugin::{Envelope, Hook, HookResult, Message, Plugin, Verdict};

const BIG: usize = 96 << 20;
static mut BALLAST: [u8; BIG] = [0; BIG];

struct HostileInstantiate;

impl Plugin for HostileInstantiate {
    const NAME: &'static str = "hostile-instantiate";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Headers];

    fn headers(_env: Envelope, _msg: &Message) -> HookResult<Verdict> {
        // SAFETY: one instance runs one hook at a time; a raw pointer keeps
        // the static (and so the memory size) from being optimised away.
        let first = unsafe { std::ptr::read_volatile(std::ptr::addr_of!(BALLAST).cast::<u8>().add(BIG / 2)) };
        Err(format!("hostile-instantiate: instantiated after all ({first})"))
    }
}

poczta_plugin::export_plugin!(HostileInstantiate);
