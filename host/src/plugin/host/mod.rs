//! Host implementations of the WIT interfaces, one file per interface
//! (`types` has no functions). Every function checks its grant first and
//! bounds what it does; a capability that was not granted answers
//! `host-error::not-granted`, never a trap.

mod assets;
mod dns;
// Named after the WIT interface `host` (log, config, now), like its siblings.
#[allow(clippy::module_inception)]
mod host;
mod kv;
mod message;
mod transaction;

use super::bindings::poczta::plugin::types;
use super::state::PluginState;

impl types::Host for PluginState {}
