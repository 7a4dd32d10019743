//! `poczta plugin train`: feeds folders of labelled `.eml` files through a
//! plugin's hooks in training mode, so a classifier (spam-rules' Bayes)
//! learns into the plugin's own key-value namespace.
//!
//! The plugin learns exactly as it classifies — same component, same
//! tokenizer, same kv layout — because training is just the plugin's
//! `headers` and `body` hooks run with `"bayes_train": "spam"` or `"ham"`
//! merged into its config. The kv writes go to a [`BufferedKv`]: reads fall
//! through to the real store, writes stay in memory, and the caller commits
//! [`BufferedKv::changes`] in one transaction at the end, so a run that
//! fails half-way leaves the store as it was.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::runner::{RunOptions, drive};
use super::{BoxFuture, Hook, KvBackend, PluginConfig, PluginError, PluginSet, ScoreThresholds, Services};

/// A training label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// Unwanted mail.
    Spam,
    /// Wanted mail.
    Ham,
}

impl Label {
    /// The value given to the plugin as `bayes_train`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Spam => "spam",
            Label::Ham => "ham",
        }
    }
}

/// Reads of the underlying store: `(plugin, key, now) → value`.
pub type KvRead = dyn Fn(&str, &str, u64) -> Result<Option<Vec<u8>>, String> + Send + Sync;

/// One buffered change: a value with its expiry, or a deletion.
#[derive(Debug, Clone, PartialEq)]
pub struct KvChange {
    /// The plugin's config name (its namespace).
    pub plugin: String,
    /// The key.
    pub key: String,
    /// `Some((value, expires))` to set, `None` to delete.
    pub value: Option<(Vec<u8>, u64)>,
}

/// (plugin, key) → the value and expiry written, or `None` for a delete.
type Overlay = HashMap<(String, String), Option<(Vec<u8>, u64)>>;

/// A [`KvBackend`] that reads through to a store and keeps writes in memory.
pub struct BufferedKv {
    base: Box<KvRead>,
    overlay: Mutex<Overlay>,
}

impl BufferedKv {
    /// A buffer over `base`.
    pub fn new(base: Box<KvRead>) -> Arc<BufferedKv> {
        Arc::new(BufferedKv {
            base,
            overlay: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Overlay> {
        // Every operation is one insert: a panic cannot leave it half-done.
        self.overlay.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every buffered change, sorted by plugin and key.
    pub fn changes(&self) -> Vec<KvChange> {
        let mut out: Vec<KvChange> = self
            .lock()
            .iter()
            .map(|((plugin, key), value)| KvChange {
                plugin: plugin.clone(),
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        out.sort_by(|a, b| (&a.plugin, &a.key).cmp(&(&b.plugin, &b.key)));
        out
    }

    fn current(&self, plugin: &str, key: &str, now: u64) -> Result<Option<(Vec<u8>, u64)>, String> {
        if let Some(v) = self.lock().get(&(plugin.to_owned(), key.to_owned())) {
            return Ok(v.clone().filter(|(_, exp)| *exp == 0 || *exp > now));
        }
        // The base hides expired entries; what it returns has no known
        // expiry, so an increment keeps it forever (training counters are
        // permanent anyway).
        Ok((self.base)(plugin, key, now)?.map(|v| (v, 0)))
    }
}

impl KvBackend for BufferedKv {
    fn get(&self, plugin: &str, key: &str, now: u64) -> Result<Option<Vec<u8>>, String> {
        Ok(self.current(plugin, key, now)?.map(|(v, _)| v))
    }

    fn set(
        &self,
        plugin: &str,
        key: &str,
        value: Vec<u8>,
        expires: u64,
    ) -> BoxFuture<'static, Result<(), String>> {
        self.lock()
            .insert((plugin.to_owned(), key.to_owned()), Some((value, expires)));
        Box::pin(async { Ok(()) })
    }

    fn delete(&self, plugin: &str, key: &str) -> BoxFuture<'static, Result<(), String>> {
        self.lock().insert((plugin.to_owned(), key.to_owned()), None);
        Box::pin(async { Ok(()) })
    }

    fn increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
        expires_if_new: u64,
        now: u64,
    ) -> BoxFuture<'static, Result<i64, String>> {
        let result = self.current(plugin, key, now).and_then(|cur| {
            let (old, expires) = match cur {
                Some((bytes, exp)) => (
                    crate::store::kv::decode_counter(&bytes)
                        .ok_or_else(|| format!("value at {key:?} is not a counter"))?,
                    exp,
                ),
                None => (0, expires_if_new),
            };
            let new = old.saturating_add(delta);
            self.lock().insert(
                (plugin.to_owned(), key.to_owned()),
                Some((new.to_string().into_bytes(), expires)),
            );
            Ok(new)
        });
        Box::pin(async move { result })
    }
}

/// What a training run did.
#[derive(Debug, Default)]
pub struct TrainReport {
    /// Messages learnt as spam.
    pub spam: usize,
    /// Messages learnt as ham.
    pub ham: usize,
    /// Messages the plugin failed on, with the cause.
    pub failed: Vec<(PathBuf, String)>,
}

/// Least deadline per training hook call: training reads and writes a
/// whole token table, and nobody is waiting on an SMTP reply.
const TRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `plugin` in training mode on each message, kv writes into `kv`.
pub async fn train(
    runtime: &super::Runtime,
    plugin: &PluginConfig,
    examples: Vec<(Label, PathBuf)>,
    kv: Arc<dyn KvBackend>,
    dns: Arc<crate::dns::Resolver>,
) -> Result<TrainReport, PluginError> {
    let mut report = TrainReport::default();
    for label in [Label::Spam, Label::Ham] {
        let files: Vec<&PathBuf> = examples
            .iter()
            .filter(|(l, _)| *l == label)
            .map(|(_, p)| p)
            .collect();
        if files.is_empty() {
            continue;
        }
        let mut cfg = plugin.clone();
        cfg.config_json = with_label(&plugin.config_json, label)?;
        cfg.timeout = cfg.timeout.max(TRAIN_TIMEOUT);
        let services = Services {
            kv: Arc::clone(&kv),
            dns: Arc::clone(&dns),
        };
        let rt = runtime.clone();
        let set = tokio::task::spawn_blocking(move || {
            PluginSet::load(&rt, &[cfg], ScoreThresholds::default(), services)
        })
        .await
        .map_err(|e| PluginError::Engine(format!("load task failed: {e}")))??;
        if !set.has_hook(Hook::Body) && !set.has_hook(Hook::Headers) {
            return Err(PluginError::Engine(format!(
                "plugin {} has neither a headers nor a body hook: nothing to train",
                plugin.name
            )));
        }
        let set = Arc::new(set);
        for file in files {
            let eml = match std::fs::read(file) {
                Ok(b) => b,
                Err(e) => {
                    report.failed.push((file.clone(), e.to_string()));
                    continue;
                }
            };
            let run = drive(
                Arc::clone(&set),
                RunOptions {
                    eml,
                    from: "trainer@localhost".into(),
                    to: vec!["trainer@localhost".into()],
                    ip: std::net::IpAddr::from([127, 0, 0, 1]),
                    helo: "localhost".into(),
                    config_json: String::new(),
                    grants: plugin.grants,
                    kv: Arc::clone(&kv),
                    dns: Arc::clone(&dns),
                },
            )
            .await;
            match run.hooks.iter().find(|h| h.verdict == "error") {
                Some(h) => report.failed.push((
                    file.clone(),
                    format!("{}: {}", h.hook, h.cause.clone().unwrap_or_default()),
                )),
                None => match label {
                    Label::Spam => report.spam += 1,
                    Label::Ham => report.ham += 1,
                },
            }
        }
    }
    Ok(report)
}

/// The plugin's config JSON with `"bayes_train": label` added.
fn with_label(config_json: &str, label: Label) -> Result<String, PluginError> {
    let mut value: serde_json::Value = serde_json::from_str(if config_json.trim().is_empty() {
        "{}"
    } else {
        config_json
    })
    .map_err(|e| PluginError::Engine(format!("plugin config is not JSON: {e}")))?;
    let Some(obj) = value.as_object_mut() else {
        return Err(PluginError::Engine("plugin config is not a table".into()));
    };
    obj.insert("bayes_train".into(), label.as_str().into());
    Ok(value.to_string())
}

/// The `.eml` files of a directory, sorted by name.
pub fn eml_files(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("eml")))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn buffered_kv_reads_through_and_keeps_writes() {
        let kv = BufferedKv::new(Box::new(|p, k, _| {
            Ok(match (p, k) {
                ("sr", "n") => Some(b"41".to_vec()),
                ("sr", "blob") => Some(b"base".to_vec()),
                _ => None,
            })
        }));
        assert_eq!(kv.get("sr", "blob", 0).unwrap(), Some(b"base".to_vec()));
        assert_eq!(kv.increment("sr", "n", 1, 0, 0).await.unwrap(), 42);
        assert_eq!(kv.increment("sr", "new", 2, 0, 0).await.unwrap(), 2);
        assert!(kv.increment("sr", "blob", 1, 0, 0).await.is_err());
        kv.set("sr", "blob", b"mine".to_vec(), 0).await.unwrap();
        kv.delete("other", "x").await.unwrap();
        assert_eq!(kv.get("sr", "blob", 0).unwrap(), Some(b"mine".to_vec()));
        // Expired buffered values read as absent.
        kv.set("sr", "old", b"1".to_vec(), 5).await.unwrap();
        assert_eq!(kv.get("sr", "old", 10).unwrap(), None);
        let keys: Vec<(String, bool)> = kv
            .changes()
            .into_iter()
            .map(|c| (format!("{}/{}", c.plugin, c.key), c.value.is_some()))
            .collect();
        assert_eq!(
            keys,
            [
                ("other/x".to_string(), false),
                ("sr/blob".to_string(), true),
                ("sr/n".to_string(), true),
                ("sr/new".to_string(), true),
                ("sr/old".to_string(), true),
            ]
        );
    }

    #[test]
    fn the_label_is_merged_into_the_config() {
        let j = with_label(r#"{"bayes": {"min_spam": 3}}"#, Label::Ham).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["bayes_train"], "ham");
        assert_eq!(v["bayes"]["min_spam"], 3);
        assert_eq!(with_label("", Label::Spam).unwrap(), r#"{"bayes_train":"spam"}"#);
        assert!(with_label("[1]", Label::Spam).is_err());
    }
}
