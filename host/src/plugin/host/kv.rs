//! `poczta:plugin/kv`: the plugin's private key-value store (namespaced by
//! its config name), through the server's [`KvBackend`], with the `kv`
//! grant, at most [`MAX_KV_PER_CALL`] operations per hook call, bounded key
//! and value sizes, and the time left in the hook call as the time limit.

use std::sync::Arc;
use std::time::Duration;

use super::host::unix_now;
use crate::plugin::KvBackend;
use crate::plugin::bindings::poczta::plugin::kv::{Host, HostError};
use crate::plugin::state::{MAX_KV_PER_CALL, PluginState};

/// Longest key (bytes).
pub const MAX_KV_KEY: usize = 512;
/// Largest value (bytes).
pub const MAX_KV_VALUE: usize = 64 << 10;

type Answer<T> = wasmtime::Result<Result<T, HostError>>;

impl PluginState {
    /// Grant, quota and key checks: the backend, the plugin's namespace and
    /// the time left.
    fn kv_begin(&mut self, key: &str) -> Result<(Arc<dyn KvBackend>, String, Duration), HostError> {
        if !self.capabilities || !self.plugin.grants.kv {
            return Err(HostError::NotGranted);
        }
        self.counters.kv += 1;
        if self.counters.kv > MAX_KV_PER_CALL {
            return Err(HostError::Quota);
        }
        if key.is_empty() || key.len() > MAX_KV_KEY {
            return Err(HostError::Failed(format!("key must be 1..={MAX_KV_KEY} bytes")));
        }
        Ok((
            Arc::clone(&self.plugin.services.kv),
            self.plugin.name.clone(),
            self.remaining(),
        ))
    }
}

fn expiry(ttl_secs: u64) -> u64 {
    if ttl_secs == 0 {
        0
    } else {
        unix_now().saturating_add(ttl_secs)
    }
}

/// Runs a backend operation within the time left in the hook call.
async fn bounded<T>(
    left: Duration,
    op: crate::plugin::BoxFuture<'static, Result<T, String>>,
) -> Result<T, HostError> {
    match tokio::time::timeout(left, op).await {
        Err(_) => Err(HostError::Timeout),
        Ok(result) => result.map_err(HostError::Failed),
    }
}

impl Host for PluginState {
    async fn get(&mut self, key: String) -> Answer<Option<Vec<u8>>> {
        let (kv, ns, _) = match self.kv_begin(&key) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        Ok(kv.get(&ns, &key, unix_now()).map_err(HostError::Failed))
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_secs: u64) -> Answer<()> {
        let (kv, ns, left) = match self.kv_begin(&key) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if value.len() > MAX_KV_VALUE {
            return Ok(Err(HostError::Failed(format!(
                "value larger than {MAX_KV_VALUE} bytes"
            ))));
        }
        Ok(bounded(left, kv.set(&ns, &key, value, expiry(ttl_secs))).await)
    }

    async fn delete(&mut self, key: String) -> Answer<()> {
        let (kv, ns, left) = match self.kv_begin(&key) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        Ok(bounded(left, kv.delete(&ns, &key)).await)
    }

    async fn increment(&mut self, key: String, delta: i64, ttl_secs: u64) -> Answer<i64> {
        let (kv, ns, left) = match self.kv_begin(&key) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        Ok(bounded(left, kv.increment(&ns, &key, delta, expiry(ttl_secs), unix_now())).await)
    }
}
