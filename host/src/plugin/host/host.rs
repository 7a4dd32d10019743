//! `poczta:plugin/host`: logging (rate-limited, truncated, control
//! characters escaped), the plugin's JSON config, and the clock.

use crate::plugin::bindings::poczta::plugin::host::{Host, Level};
use crate::plugin::state::{MAX_LOG_LINE, MAX_LOG_LINES_PER_CALL, PluginState};

impl Host for PluginState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.counters.logs += 1;
        if self.counters.logs > MAX_LOG_LINES_PER_CALL {
            self.counters.logs_dropped += 1;
            return Ok(());
        }
        let line = escape(&message);
        let (plugin, hook, session) = (&*self.plugin.name, self.hook_name(), self.session);
        match level {
            Level::Trace => tracing::trace!(target: "poczta::plugin::guest", plugin, hook, session, "{line}"),
            Level::Debug => tracing::debug!(target: "poczta::plugin::guest", plugin, hook, session, "{line}"),
            Level::Info => tracing::info!(target: "poczta::plugin::guest", plugin, hook, session, "{line}"),
            Level::Warn => tracing::warn!(target: "poczta::plugin::guest", plugin, hook, session, "{line}"),
            Level::Error => tracing::error!(target: "poczta::plugin::guest", plugin, hook, session, "{line}"),
        }
        Ok(())
    }

    fn config(&mut self) -> wasmtime::Result<String> {
        Ok(self.plugin.config_json.clone())
    }

    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(unix_now())
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Escapes control characters (a plugin must not forge log lines) and cuts
/// the line to [`MAX_LOG_LINE`] bytes.
fn escape(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_LOG_LINE) + 16);
    for c in message.chars() {
        if out.len() >= MAX_LOG_LINE {
            out.push_str("…[truncated]");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_escaped_and_truncated() {
        assert_eq!(escape("a\r\nINFO forged"), "a\\r\\nINFO forged");
        let long = "x".repeat(5000);
        let line = escape(&long);
        assert!(line.len() < MAX_LOG_LINE + 20 && line.ends_with("[truncated]"));
    }
}
