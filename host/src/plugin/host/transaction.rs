//! `poczta:plugin/transaction`: header edits, score symbols and notes,
//! shared by all plugins of the transaction through [`TxnData`].
//!
//! Invalid requests (bad header names, control characters, non-finite
//! weights, over-quota) are ignored with a rate-limited warning: the WIT
//! functions have no error channel, and a filter should not fail a message
//! over a cosmetic mistake.

use std::sync::Arc;

use crate::plugin::Symbol;
use crate::plugin::bindings::poczta::plugin::transaction::Host;
use crate::plugin::state::{
    self, MAX_HEADERS_PER_PLUGIN, MAX_NOTE_KEY, MAX_NOTE_VALUE, MAX_NOTES, MAX_REMOVALS_PER_PLUGIN,
    MAX_SYMBOLS_PER_PLUGIN, PluginState,
};
use crate::plugin::verdict::{clean_line, valid_header_name, valid_header_value, valid_symbol};

/// Longest symbol description kept.
const MAX_DESCRIPTION: usize = 200;

impl Host for PluginState {
    fn add_header(&mut self, name: String, value: String) -> wasmtime::Result<()> {
        let name = name.trim().to_string();
        let value = value.trim().to_string();
        if let Err(e) = valid_header_name(&name).and_then(|()| valid_header_value(&value)) {
            self.warn(&format!("add-header ignored: {e}"));
            return Ok(());
        }
        let txn = Arc::clone(&self.txn);
        let mut data = state::lock(&txn);
        let mine = data
            .add_headers
            .iter()
            .filter(|(p, _, _)| *p == self.plugin.name)
            .count();
        if mine >= MAX_HEADERS_PER_PLUGIN {
            drop(data);
            self.warn(&format!(
                "add-header ignored: more than {MAX_HEADERS_PER_PLUGIN} headers"
            ));
            return Ok(());
        }
        data.add_headers.push((self.plugin.name.clone(), name, value));
        Ok(())
    }

    fn remove_header(&mut self, name: String) -> wasmtime::Result<()> {
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || name.len() > 76 || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
            self.warn(&format!(
                "remove-header ignored: invalid name {:?}",
                crate::plugin::verdict::truncate(&name, 80)
            ));
            return Ok(());
        }
        let txn = Arc::clone(&self.txn);
        let mut data = state::lock(&txn);
        if data.remove_headers.iter().any(|(_, n)| *n == name) {
            return Ok(());
        }
        let mine = data
            .remove_headers
            .iter()
            .filter(|(p, _)| *p == self.plugin.name)
            .count();
        if mine >= MAX_REMOVALS_PER_PLUGIN {
            drop(data);
            self.warn(&format!(
                "remove-header ignored: more than {MAX_REMOVALS_PER_PLUGIN} names"
            ));
            return Ok(());
        }
        data.remove_headers.push((self.plugin.name.clone(), name));
        Ok(())
    }

    fn add_symbol(&mut self, name: String, weight: f64, description: String) -> wasmtime::Result<()> {
        let name = name.trim().to_string();
        if let Err(e) = valid_symbol(&name, weight) {
            self.warn(&format!("add-symbol ignored: {e}"));
            return Ok(());
        }
        let txn = Arc::clone(&self.txn);
        let mut data = state::lock(&txn);
        let mine = data
            .symbols
            .iter()
            .filter(|s| s.plugin == self.plugin.name)
            .count();
        if mine >= MAX_SYMBOLS_PER_PLUGIN {
            drop(data);
            self.warn(&format!(
                "add-symbol ignored: more than {MAX_SYMBOLS_PER_PLUGIN} symbols"
            ));
            return Ok(());
        }
        data.symbols.push(Symbol {
            plugin: self.plugin.name.clone(),
            name,
            weight,
            description: clean_line(&description, MAX_DESCRIPTION),
        });
        Ok(())
    }

    fn score(&mut self) -> wasmtime::Result<f64> {
        Ok(state::lock(&self.txn)
            .symbols
            .iter()
            .map(|s| s.weight)
            .sum::<f64>()
            + 0.0)
    }

    fn set_note(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        if key.is_empty() || key.len() > MAX_NOTE_KEY || value.len() > MAX_NOTE_VALUE {
            self.warn(&format!(
                "set-note ignored: key must be 1..={MAX_NOTE_KEY} bytes and value at most {MAX_NOTE_VALUE} bytes"
            ));
            return Ok(());
        }
        let txn = Arc::clone(&self.txn);
        let mut data = state::lock(&txn);
        if !data.notes.contains_key(&key) && data.notes.len() >= MAX_NOTES {
            drop(data);
            self.warn(&format!("set-note ignored: more than {MAX_NOTES} notes"));
            return Ok(());
        }
        data.notes.insert(key, value);
        Ok(())
    }

    fn get_note(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(state::lock(&self.txn).notes.get(&key).cloned())
    }

    fn set_sender(&mut self, address: String) -> wasmtime::Result<()> {
        let address = address.trim().to_string();
        // Whether the domain is ours is the server's call (plugin/ knows
        // no config); the shape is checked here.
        let valid = address.len() <= 254
            && address
                .rsplit_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
            && !address
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>');
        if !valid {
            self.warn(&format!(
                "set-sender ignored: {:?} is not an address",
                crate::plugin::verdict::truncate(&address, 80)
            ));
            return Ok(());
        }
        state::lock(&self.txn).sender = Some((self.plugin.name.clone(), address));
        Ok(())
    }
}
