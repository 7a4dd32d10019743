//! The plugin key-value store: per plugin (by config name), with expiry and
//! atomic increments. Reads go straight to redb; writes go through the
//! committer like every other write, so they share its group commit.
//! Expired entries read as absent and are overwritten by the next write.

use redb::{Database, ReadableDatabase, ReadableTable, Table, WriteTransaction};

use super::StoreError;
use super::schema;

/// The table inside a write transaction.
pub(super) struct KvTable<'txn> {
    t: Table<'txn, (&'static str, &'static str), (&'static [u8], u64)>,
}

impl<'txn> KvTable<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(KvTable {
            t: txn.open_table(schema::PLUGIN_KV)?,
        })
    }

    pub(super) fn set(
        &mut self,
        plugin: &str,
        key: &str,
        value: &[u8],
        expires: u64,
    ) -> Result<(), StoreError> {
        self.t.insert((plugin, key), (value, expires))?;
        Ok(())
    }

    pub(super) fn delete(&mut self, plugin: &str, key: &str) -> Result<(), StoreError> {
        self.t.remove((plugin, key))?;
        Ok(())
    }

    pub(super) fn increment(
        &mut self,
        plugin: &str,
        key: &str,
        delta: i64,
        expires_if_new: u64,
        now: u64,
    ) -> Result<Option<i64>, StoreError> {
        let (current, expires) = match self.t.get((plugin, key))? {
            Some(v) => {
                let (bytes, exp) = v.value();
                if exp != 0 && exp <= now {
                    (0, expires_if_new)
                } else {
                    match decode_counter(bytes) {
                        Some(n) => (n, exp),
                        // Not a counter: refuse this write alone, never the batch.
                        None => return Ok(None),
                    }
                }
            }
            None => (0, expires_if_new),
        };
        let next = current.saturating_add(delta);
        self.t
            .insert((plugin, key), (next.to_string().as_bytes(), expires))?;
        Ok(Some(next))
    }
}

/// Counters are ASCII decimal text, so a plugin's `get` reads the number.
pub fn decode_counter(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// Reads `key` of `plugin`, `None` if missing or expired at `now`.
pub fn get(db: &Database, plugin: &str, key: &str, now: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let txn = db.begin_read()?;
    let t = txn.open_table(schema::PLUGIN_KV)?;
    Ok(t.get((plugin, key))?.and_then(|v| {
        let (bytes, exp) = v.value();
        (exp == 0 || exp > now).then(|| bytes.to_vec())
    }))
}

#[cfg(test)]
mod tests {
    use super::super::committer::{Outcome, Write, apply};
    use super::*;

    #[test]
    fn set_get_expire_increment() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_database(&dir.path().join("kv.redb")).unwrap();
        let set = Write::KvSet {
            plugin: "p".into(),
            key: "k".into(),
            value: b"v".to_vec(),
            expires: 100,
        };
        apply(&db, &[&set]).unwrap();
        assert_eq!(get(&db, "p", "k", 99).unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(get(&db, "p", "k", 100).unwrap(), None, "expired");
        assert_eq!(get(&db, "other", "k", 1).unwrap(), None, "plugins are separate");
        let inc = |delta, now| Write::KvIncrement {
            plugin: "p".into(),
            key: "n".into(),
            delta,
            expires_if_new: now + 10,
            now,
        };
        let out = apply(&db, &[&inc(2, 0), &inc(3, 5)]).unwrap();
        assert_eq!(out, vec![Outcome::KvCounter(2), Outcome::KvCounter(5)]);
        // The key keeps its first expiry (10): at 10 it restarts from zero.
        assert_eq!(apply(&db, &[&inc(1, 10)]).unwrap(), vec![Outcome::KvCounter(1)]);
        assert_eq!(
            get(&db, "p", "n", 11).unwrap().as_deref(),
            Some(&b"1"[..]),
            "decimal text"
        );
        // A value that is not a counter refuses the increment, not the batch.
        let text = Write::KvSet {
            plugin: "p".into(),
            key: "t".into(),
            value: b"hello".to_vec(),
            expires: 0,
        };
        let bad = Write::KvIncrement {
            plugin: "p".into(),
            key: "t".into(),
            delta: 1,
            expires_if_new: 0,
            now: 11,
        };
        let out = apply(&db, &[&text, &bad, &inc(1, 11)]).unwrap();
        assert_eq!(out[1..], [Outcome::KvNotACounter, Outcome::KvCounter(2)]);
        apply(
            &db,
            &[&Write::KvDelete {
                plugin: "p".into(),
                key: "n".into(),
            }],
        )
        .unwrap();
        assert_eq!(get(&db, "p", "n", 11).unwrap(), None);
    }
}
