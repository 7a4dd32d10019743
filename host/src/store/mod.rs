//! The store: one redb database holding users, messages and maildrops.
//!
//! Reads happen anywhere (redb readers never block the writer). Inside the
//! server process, writes happen only in the [`committer`], which batches the
//! writes of all sessions into one durable transaction (group commit); a
//! session gets its answer only after that transaction's `commit()` returned.
//! The file is opened in redb's default exclusive-writer mode: one process
//! holds it, and a commit costs one fsync (the multi-process modes force
//! two-phase commit, two fsyncs). The `poczta user|queue|plugin train`
//! commands reach a running server through its admin socket and open the
//! file themselves only when no server runs (`crate::admin::Channel`).

pub mod committer;
pub mod kv;
pub mod mailbox;
pub mod queue;
pub mod schema;
pub mod users;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

pub use committer::{CommitFailure, Outcome, Write};
pub use schema::{Folder, SCHEMA_VERSION, UserRecord};

/// A storage error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (I/O, corruption, …).
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    /// The file was written by a newer Poczta.
    #[error("the database has schema version {found}, newer than this build's {supported}; upgrade Poczta")]
    TooNew {
        /// Version found in the file.
        found: u64,
        /// Version this build understands.
        supported: u64,
    },
    /// A record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The user already exists.
    #[error("user {0} already exists")]
    UserExists(String),
    /// No such user.
    #[error("no such user: {0}")]
    NoSuchUser(String),
    /// The address is not a valid user address for this server.
    #[error("{0}")]
    BadAddress(String),
    /// Password hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// Cannot create the data directory.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The committer thread is gone (the server is shutting down).
    #[error("the store is shutting down")]
    Closed,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl StoreError {
    /// Whether the underlying cause is a full disk (ENOSPC / EDQUOT).
    pub fn is_storage_full(&self) -> bool {
        match self {
            StoreError::Db(redb::Error::Io(e)) => matches!(e.raw_os_error(), Some(28) | Some(122)),
            _ => false,
        }
    }
}

/// redb's page cache when the config does not say (`server.store_cache`).
/// redb's own default is 1 GiB, which a server reaches within minutes of
/// steady mail (a 10-minute soak: RSS kept growing with the file); mail is
/// written once and read once, so a smaller cache costs little: the B-tree
/// pages that are read again fit many times over.
pub const DEFAULT_CACHE: usize = 256 << 20;

/// Opens (creating if needed) the database in `data_dir`, creating every
/// table and checking the schema version, with the default cache.
pub fn open_database(path: &Path) -> Result<Database, StoreError> {
    open_database_with(path, DEFAULT_CACHE)
}

/// [`open_database`] with a page cache of `cache` bytes.
pub fn open_database_with(path: &Path, cache: usize) -> Result<Database, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let db = Database::builder().set_cache_size(cache).create(path)?;
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(schema::META)?;
        let found = meta.get(schema::META_SCHEMA_VERSION)?.map(|v| v.value());
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::TooNew {
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(v) if v == SCHEMA_VERSION => {}
            // A new file, or an older one: migrated below, in this transaction.
            _ => {
                meta.insert(schema::META_SCHEMA_VERSION, SCHEMA_VERSION)?;
            }
        }
        if found.is_some_and(|v| v < 2) {
            queue::build_due_index(&txn)?;
        }
        txn.open_table(schema::USERS)?;
        txn.open_table(schema::MESSAGES)?;
        txn.open_table(schema::MESSAGE_REFS)?;
        txn.open_table(schema::MAILBOXES)?;
        txn.open_table(schema::MAILBOX_META)?;
        txn.open_table(schema::QUEUE)?;
        txn.open_table(schema::QUEUE_DUE)?;
        txn.open_table(schema::PLUGIN_KV)?;
    }
    txn.commit()?;
    Ok(db)
}

/// The server's handle on the store: reads, id allocation, and the channel
/// to the committer. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<DbSlot>,
    committer: committer::Handle,
    next_id: Arc<AtomicU64>,
}

impl Store {
    /// Starts the committer thread over an opened database.
    pub fn start(db: Database) -> Result<(Store, committer::Join), StoreError> {
        Self::start_at(db, None)
    }

    /// Like [`Store::start`]; with the file's `path` and its cache size, the
    /// committer can reopen the database after an I/O error (a full disk)
    /// has poisoned the open one, instead of failing every read and write
    /// until restart.
    pub fn start_at(
        db: Database,
        path: Option<(PathBuf, usize)>,
    ) -> Result<(Store, committer::Join), StoreError> {
        let db = Arc::new(db);
        let high_water = {
            let txn = db.begin_read()?;
            let meta = txn.open_table(schema::META)?;
            meta.get(schema::META_NEXT_MESSAGE_ID)?
                .map(|v| v.value())
                .unwrap_or(0)
        };
        // Time-seeded ids stay increasing across restarts even if the newest
        // messages were deleted; the high-water mark covers a clock that went back.
        let next_id = high_water.max(crate::clock::unix_micros());
        let slot = Arc::new(DbSlot {
            current: arc_swap::ArcSwapOption::new(Some(db)),
            path,
        });
        let (committer, join) = committer::spawn(slot.clone());
        Ok((
            Store {
                db: slot,
                committer,
                next_id: Arc::new(AtomicU64::new(next_id)),
            },
            join,
        ))
    }

    /// A fresh message id. Ids of messages that are never committed are
    /// simply skipped.
    pub fn allocate_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The database, for reads (an error while it is being reopened).
    pub fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db.get()
    }

    /// Sends a write to the committer and waits until it is durable.
    pub async fn commit(&self, write: Write) -> Result<Outcome, CommitFailure> {
        self.committer.commit(write).await
    }

    /// Whether `address` (already lower-cased) is a user. A point look-up in
    /// a cached B-tree page: cheap enough for the async threads.
    pub fn user_exists(&self, address: &str) -> Result<bool, StoreError> {
        users::exists(&*self.db.get()?, address)
    }

    /// Runs a blocking read on the blocking pool (or a write transaction of
    /// its own, which redb serialises with the committer's: the admin
    /// socket's user commands).
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.get()?;
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|_| StoreError::Closed)?
    }
}

/// The open database, replaced whole when an I/O error poisoned it: redb
/// refuses every operation after one ("Previous I/O error occurred") until
/// the file is closed and opened again.
pub struct DbSlot {
    current: arc_swap::ArcSwapOption<Database>,
    /// The file and its cache size, for a reopen.
    path: Option<(PathBuf, usize)>,
}

/// How long a reopen waits for readers to let go of the old database.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl DbSlot {
    /// The database, unless it is closed for a reopen that has not
    /// succeeded yet.
    pub fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.current.load_full().ok_or(StoreError::Closed)
    }

    /// Closes the poisoned database and opens the file again (the caller
    /// holds no reference to it). Readers see [`StoreError::Closed`] in
    /// between; a failed open is retried by the next call.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let Some((path, cache)) = &self.path else {
            return Err(StoreError::Closed);
        };
        if let Some(old) = self.current.swap(None) {
            // The file lock goes with the last reference: wait (bounded)
            // for reads in flight to finish.
            let deadline = std::time::Instant::now() + REOPEN_WAIT;
            while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if Arc::strong_count(&old) > 1 {
                self.current.store(Some(old));
                return Err(StoreError::Corrupt(
                    "the database is still in use; reopen postponed".into(),
                ));
            }
        }
        let db = Database::builder().set_cache_size(*cache).create(path)?;
        self.current.store(Some(Arc::new(db)));
        tracing::info!(path = %path.display(), "database reopened after an I/O error");
        Ok(())
    }
}

impl StoreError {
    /// Whether this error leaves the open database unusable until it is
    /// reopened (an I/O error, or redb's report of an earlier one).
    pub fn needs_reopen(&self) -> bool {
        matches!(
            self,
            StoreError::Db(redb::Error::Io(_)) | StoreError::Db(redb::Error::PreviousIo)
        )
    }
}

/// Formats a message id as the queue id shown in replies and logs.
pub fn queue_id(id: u64) -> String {
    format!("{id:016X}")
}

/// Reads a u64 from `meta`, for tests and tools.
pub fn meta_value(db: &Database, key: &str) -> Result<Option<u64>, StoreError> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(schema::META)?;
    Ok(meta.get(key)?.map(|v| v.value()))
}

/// Counts the stored messages (each once, however many mailboxes hold it).
pub fn message_count(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_read()?;
    let t = txn.open_table(schema::MESSAGES)?;
    Ok(t.len()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let db = open_database(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(schema::META)
            .unwrap()
            .insert(schema::META_SCHEMA_VERSION, SCHEMA_VERSION + 1)
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        assert!(matches!(open_database(&path), Err(StoreError::TooNew { .. })));
    }
}
