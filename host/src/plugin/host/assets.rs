//! `poczta:plugin/assets`: read-only named files from the plugin's config
//! entry, read once at load and shared (`Arc<[u8]>`) by all instances.

use crate::plugin::bindings::poczta::plugin::assets::{Host, HostError};
use crate::plugin::state::PluginState;

impl Host for PluginState {
    fn names(&mut self) -> wasmtime::Result<Vec<String>> {
        // `names` has no error channel: without the grant there are none.
        if !self.capabilities || !self.plugin.grants.assets {
            return Ok(Vec::new());
        }
        Ok(self.plugin.assets.iter().map(|(n, _)| n.clone()).collect())
    }

    fn read(&mut self, name: String) -> wasmtime::Result<Result<Vec<u8>, HostError>> {
        if !self.capabilities || !self.plugin.grants.assets {
            return Ok(Err(HostError::NotGranted));
        }
        Ok(match self.plugin.assets.iter().find(|(n, _)| *n == name) {
            Some((_, bytes)) => Ok(bytes.to_vec()),
            None => Err(HostError::Failed(format!(
                "no asset named {:?}",
                crate::plugin::verdict::truncate(&name, 80)
            ))),
        })
    }
}
