//! `hostile-chaos`: a hostile test plugin with one misbehaviour per config
//! `mode`, all in the `headers` hook (so a test can compare with a clean
//! transaction on the same server):
//!
//! | mode | what it does | what the host must do |
//! |---|---|---|
//! | `recursion` | recurses without bound (stack overflow) | trap, `on_error` |
//! | `huge-header` | builds a `size`-byte value (default 100 MB) and adds it as a header | refuse the header, bounded memory |
//! | `many-headers` | 100,000 `add-header` calls | keep at most its per-plugin cap |
//! | `huge-reject` | rejects with a `size`-byte reply text | truncate the text, still reject |
//! | `dns-flood` | `lookup-a` on `count` distinct names (default 5,000) | quota per call, then errors |
//! | `kv-flood` | `kv.set` on `count` distinct 1 KiB keys (default 5,000) | quota per call, then errors |
//! | `dns-block` | calls `lookup-a` forever (point the resolver at a server that never answers) | the hook deadline, `on_error` |
//!
//! Config: `{"mode": "...", "size": N, "count": N}`. Unknown modes are an
//! `Err` naming the mode.

use poczta_plugin::{Envelope, Hook, HookResult, Message, Plugin, Verdict, dns, kv};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    mode: String,
    size: Option<usize>,
    count: Option<u32>,
}

/// Recurses `depth` times with a frame the optimiser cannot remove.
pub fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    if depth == 0 {
        return frame[7];
    }
    recurse(depth - 1).wrapping_add(std::hint::black_box(frame)[3])
}

struct HostileChaos;

impl Plugin for HostileChaos {
    const NAME: &'static str = "hostile-chaos";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Headers];

    fn headers(_env: Envelope, _msg: &Message) -> HookResult<Verdict> {
        let cfg: Config = poczta_plugin::config()?;
        let size = cfg.size.unwrap_or(100_000_000);
        let count = cfg.count.unwrap_or(5_000);
        match cfg.mode.as_str() {
            "recursion" => {
                let n = recurse(std::hint::black_box(u64::MAX));
                Err(format!("hostile-chaos: recursion returned {n}"))
            }
            "huge-header" => {
                poczta_plugin::add_header("X-Huge", &"h".repeat(size));
                Ok(Verdict::Continue)
            }
            "many-headers" => {
                for i in 0..100_000 {
                    poczta_plugin::add_header(&format!("X-Many-{i}"), "v");
                }
                Ok(Verdict::Continue)
            }
            "huge-reject" => Ok(Verdict::reject("5.7.1", "r".repeat(size))),
            "dns-flood" => {
                let mut errors = 0;
                for i in 0..count {
                    if dns::lookup_a(&format!("n{i}.flood.test")).is_err() {
                        errors += 1;
                    }
                }
                poczta_plugin::add_header("X-Chaos-Errors", &errors.to_string());
                Ok(Verdict::Continue)
            }
            "kv-flood" => {
                let value = vec![b'k'; 1024];
                let mut errors = 0;
                for i in 0..count {
                    if kv::set(&format!("flood-{i}"), &value, 0).is_err() {
                        errors += 1;
                    }
                }
                poczta_plugin::add_header("X-Chaos-Errors", &errors.to_string());
                Ok(Verdict::Continue)
            }
            "dns-block" => loop {
                let _ = dns::lookup_a(std::hint::black_box("never.answers.test"));
            },
            other => Err(format!("hostile-chaos: unknown mode {other:?}")),
        }
    }
}

poczta_plugin::export_plugin!(HostileChaos);

#[cfg(test)]
mod tests {
    #[test]
    fn recursion_is_real_for_small_depths() {
        assert_eq!(super::recurse(10), 55);
    }
}
