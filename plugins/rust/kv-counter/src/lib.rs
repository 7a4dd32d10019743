//! `kv-counter`: exercises the `kv` and `dns` capabilities.
//!
//! Hook: `headers`. Grants it is meant to run with: `grants = ["kv", "dns"]`
//! (the tests also run it without them). For every message it
//!
//! 1. increments the kv key `messages` by 1 (no expiry) and adds the header
//!    `X-Poczta-Count: <new value>`, or `X-Poczta-Count: <error kind>` when
//!    the call fails (`not-granted`, `timeout`, `quota` or `failed`);
//! 2. looks up the A records of `example.test` and adds the header
//!    `X-Poczta-Dns: <first address>`, `X-Poczta-Dns: none` when the answer
//!    is empty (NXDOMAIN or no records), or `X-Poczta-Dns: <error kind>`;
//!
//! and continues. A host error is never a plugin failure here: it shows in the
//! headers, so the tests can see what the host answered. No config.

use poczta_plugin::{Envelope, Hook, HookResult, HostError, Message, Plugin, Verdict, dns, kv};

/// The `X-Poczta-Count` value for the result of the kv increment.
pub fn count_header(r: Result<i64, HostError>) -> String {
    match r {
        Ok(n) => n.to_string(),
        Err(e) => e.kind().to_string(),
    }
}

/// The `X-Poczta-Dns` value for the result of the A look-up.
pub fn dns_header(r: Result<Vec<String>, HostError>) -> String {
    match r {
        Ok(addrs) => addrs.into_iter().next().unwrap_or_else(|| "none".to_string()),
        Err(e) => e.kind().to_string(),
    }
}

struct KvCounter;

impl Plugin for KvCounter {
    const NAME: &'static str = "kv-counter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Headers];

    fn headers(_env: Envelope, _msg: &Message) -> HookResult<Verdict> {
        let count = count_header(kv::increment("messages", 1, 0));
        poczta_plugin::add_header("X-Poczta-Count", &count);
        let dns = dns_header(dns::lookup_a("example.test"));
        poczta_plugin::add_header("X-Poczta-Dns", &dns);
        Ok(Verdict::Continue)
    }
}

poczta_plugin::export_plugin!(KvCounter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_values() {
        assert_eq!(count_header(Ok(3)), "3");
        assert_eq!(count_header(Err(HostError::NotGranted)), "not-granted");
        assert_eq!(count_header(Err(HostError::Failed("db".into()))), "failed");
        assert_eq!(
            dns_header(Ok(vec!["192.0.2.7".into(), "192.0.2.8".into()])),
            "192.0.2.7"
        );
        assert_eq!(dns_header(Ok(vec![])), "none");
        assert_eq!(dns_header(Err(HostError::Timeout)), "timeout");
        assert_eq!(dns_header(Err(HostError::Quota)), "quota");
    }
}
