//! `hostile-flood`: a hostile test plugin that floods host functions.
//!
//! Hook: `headers`. It makes 100,000 `log` calls (level info) and 100,000 kv
//! increments of the key `flood` (their errors, e.g. `not-granted`, are
//! ignored), then continues. It tests the host's log rate limiting and the
//! cost of host calls against the hook's deadline. No config.

use poczta_plugin::{Envelope, Hook, HookResult, Message, Plugin, Verdict, kv};

/// How many calls of each kind.
pub const CALLS: u32 = 100_000;

struct HostileFlood;

impl Plugin for HostileFlood {
    const NAME: &'static str = "hostile-flood";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Headers];

    fn headers(_env: Envelope, _msg: &Message) -> HookResult<Verdict> {
        for i in 0..CALLS {
            poczta_plugin::info(format!("hostile-flood: log line {i}"));
            let _ = kv::increment("flood", 1, 0);
        }
        Ok(Verdict::Continue)
    }
}

poczta_plugin::export_plugin!(HostileFlood);
