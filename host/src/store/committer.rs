//! The single writer, and group commit.
//!
//! Every session that needs a durable write (a delivered message, a POP3
//! expunge) sends a [`Write`] here and waits on a oneshot. The committer runs
//! on its own thread: it takes the first waiting request, then everything
//! else that queued up meanwhile (up to [`MAX_BATCH`] requests or
//! [`MAX_BATCH_BYTES`]), applies them all in ONE redb write transaction with
//! immediate durability, and only after `commit()` returned answers each
//! waiter. While one batch is being fsynced the next one accumulates, so under
//! load many sessions share one fsync without any artificial delay; a lone
//! client pays exactly one fsync and no waiting.
//!
//! If the transaction fails, no write of the batch is visible and every
//! waiter gets the failure (the sessions answer 451/452, the client retries):
//! nothing half-written is ever visible and nothing is acknowledged early.

use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Database, Durability, ReadableTable};
use tokio::sync::{mpsc, oneshot};

use super::schema::{self, Folder};

use super::queue::{QueueRecord, QueueTables};
use super::{StoreError, kv, mailbox};

/// Most requests in one transaction: bounds the latency of the last waiter.
pub const MAX_BATCH: usize = 512;
/// Most message bytes in one transaction: bounds the transaction's memory.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Requests that may wait for the committer before senders are slowed down.
const CHANNEL_DEPTH: usize = 4096;

/// A durable change.
#[derive(Debug)]
pub enum Write {
    /// Store one message once and add it to each user's mailbox folder.
    Deliver {
        /// The message id from [`super::Store::allocate_id`].
        id: u64,
        /// The bytes as they will be retrieved.
        data: Vec<u8>,
        /// Lower-cased user addresses and the folder for each (a user named
        /// twice gets one entry, in the first folder given).
        users: Vec<(String, Folder)>,
    },
    /// Set a plugin key-value entry (`expires` unix secs, 0 = never).
    KvSet {
        /// The plugin's config name.
        plugin: String,
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Expiry, unix seconds; 0 keeps it forever.
        expires: u64,
    },
    /// Delete a plugin key-value entry.
    KvDelete {
        /// The plugin's config name.
        plugin: String,
        /// The key.
        key: String,
    },
    /// Atomically add to a signed counter (missing or expired counts as 0).
    KvIncrement {
        /// The plugin's config name.
        plugin: String,
        /// The key.
        key: String,
        /// What to add.
        delta: i64,
        /// Expiry given to a new (or expired) key.
        expires_if_new: u64,
        /// The current time, unix seconds, for the expiry check.
        now: u64,
    },
    /// Remove messages from one user's mailbox (POP3 QUIT).
    Expunge {
        /// The user.
        user: String,
        /// The UIDs to remove; missing ones are skipped.
        uids: Vec<u64>,
    },
    /// Put a message into the outbound queue (its bytes under `record.id`).
    Enqueue {
        /// The bytes as they will be sent.
        data: Vec<u8>,
        /// The envelope and per-recipient state.
        record: QueueRecord,
    },
    /// Rewrite a queue record after a delivery attempt (it leaves the
    /// queue when nothing is pending), then apply `then` (the bounce) in
    /// the same transaction. A record deleted meanwhile stays deleted, and
    /// `then` is skipped with it.
    QueueUpdate {
        /// The record as it is now.
        record: QueueRecord,
        /// Writes that belong to this outcome (a DSN's delivery).
        then: Vec<Write>,
    },
    /// Make every pending recipient of a queued message due now.
    QueueRetry {
        /// The message id.
        id: u64,
        /// Unix seconds.
        now: i64,
    },
    /// Drop a queued message without a bounce (administrator).
    QueueDelete {
        /// The message id.
        id: u64,
    },
    /// Several writes that must be durable together or not at all (a
    /// message with local and remote recipients).
    All(Vec<Write>),
}

impl Write {
    fn weight(&self) -> usize {
        match self {
            Write::Deliver { data, .. } => data.len(),
            Write::Expunge { uids, .. } => uids.len() * 64,
            Write::KvSet { value, .. } => value.len() + 64,
            Write::KvDelete { .. } | Write::KvIncrement { .. } => 64,
            Write::Enqueue { data, .. } => data.len() + 256,
            Write::QueueUpdate { then, .. } => 256 + then.iter().map(Write::weight).sum::<usize>(),
            Write::QueueRetry { .. } | Write::QueueDelete { .. } => 64,
            Write::All(writes) => writes.iter().map(Write::weight).sum(),
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The message is stored; the UIDs given, per user, in order.
    Delivered {
        /// (user, uid) per mailbox entry.
        entries: Vec<(String, u64)>,
    },
    /// This many mailbox entries were removed.
    Expunged {
        /// How many of the requested UIDs existed.
        removed: usize,
    },
    /// A key-value write was applied.
    KvDone,
    /// The counter's new value.
    KvCounter(i64),
    /// The key holds something that is not a decimal counter.
    KvNotACounter,
    /// A queue write was applied; false when the record did not exist.
    Queue(bool),
    /// The outcomes of [`Write::All`], in order.
    All(Vec<Outcome>),
}

/// Why a write was not committed. Cloneable: one failure answers a whole batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitFailure {
    /// The disk is full: answer 452 4.3.1, the client retries later.
    #[error("insufficient storage")]
    StorageFull,
    /// Any other storage failure: answer 451 4.3.0.
    #[error("storage failure: {0}")]
    Failed(Arc<str>),
}

struct Request {
    write: Write,
    reply: oneshot::Sender<Result<Outcome, CommitFailure>>,
}

/// The sending side, held by the [`super::Store`].
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Request>,
}

/// The committer thread; it ends when every [`Handle`] is dropped.
pub type Join = JoinHandle<()>;

impl Handle {
    /// Queues a write and waits for its durable commit.
    pub async fn commit(&self, write: Write) -> Result<Outcome, CommitFailure> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { write, reply })
            .await
            .map_err(|_| CommitFailure::Failed("the store is shutting down".into()))?;
        rx.await
            .map_err(|_| CommitFailure::Failed("the committer stopped".into()))?
    }
}

/// Starts the committer thread.
pub fn spawn(db: Arc<super::DbSlot>) -> (Handle, Join) {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let join = std::thread::Builder::new()
        .name("poczta-committer".into())
        .spawn(move || run(db, rx))
        .expect("spawning the committer thread");
    (Handle { tx }, join)
}

fn run(slot: Arc<super::DbSlot>, mut rx: mpsc::Receiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = first.write.weight();
        batch.push(first);
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += r.write.weight();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let writes: Vec<&Write> = batch.iter().map(|r| &r.write).collect();
        let db = match slot.get() {
            Ok(db) => Ok(db),
            // Closed by an earlier failure whose reopen did not succeed yet.
            Err(_) => slot.reopen().and_then(|()| slot.get()),
        };
        let result = db.and_then(|db| apply(&db, &writes));
        drop(writes);
        match result {
            Ok(outcomes) => {
                tracing::trace!(batch = batch.len(), bytes, "group commit");
                for (r, o) in batch.drain(..).zip(outcomes) {
                    // A waiter that went away (client vanished) no longer cares.
                    let _ = r.reply.send(Ok(o));
                }
            }
            Err(e) => {
                let failure = if e.is_storage_full() {
                    CommitFailure::StorageFull
                } else {
                    CommitFailure::Failed(e.to_string().into())
                };
                tracing::error!(batch = batch.len(), error = %e, "commit failed; nothing of this batch was stored");
                for r in batch.drain(..) {
                    let _ = r.reply.send(Err(failure.clone()));
                }
                if e.needs_reopen()
                    && let Err(e) = slot.reopen()
                {
                    tracing::warn!(error = %e, "cannot reopen the database yet; the next write tries again");
                }
            }
        }
    }
}

/// Applies writes in one durable transaction.
pub fn apply(db: &Database, writes: &[&Write]) -> Result<Vec<Outcome>, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut outcomes = Vec::with_capacity(writes.len());
    let mut high_water = 0u64;
    {
        let mut t = mailbox::Tables::open(&txn)?;
        let mut kv = kv::KvTable::open(&txn)?;
        let mut q = QueueTables::open(&txn)?;
        for w in writes {
            outcomes.push(apply_one(w, &mut t, &mut kv, &mut q, &mut high_water)?);
        }
    }
    if high_water > 0 {
        let mut meta = txn.open_table(schema::META)?;
        let current = meta
            .get(schema::META_NEXT_MESSAGE_ID)?
            .map(|v| v.value())
            .unwrap_or(0);
        if high_water > current {
            meta.insert(schema::META_NEXT_MESSAGE_ID, high_water)?;
        }
    }
    txn.commit()?;
    Ok(outcomes)
}

/// One write inside the batch's transaction.
fn apply_one(
    w: &Write,
    t: &mut mailbox::Tables<'_>,
    kv: &mut kv::KvTable<'_>,
    q: &mut QueueTables<'_>,
    high_water: &mut u64,
) -> Result<Outcome, StoreError> {
    Ok(match w {
        Write::Deliver { id, data, users } => {
            *high_water = (*high_water).max(*id + 1);
            let entries = t.deliver(*id, data, users)?;
            Outcome::Delivered { entries }
        }
        Write::Expunge { user, uids } => Outcome::Expunged {
            removed: t.expunge(user, uids)?,
        },
        Write::KvSet {
            plugin,
            key,
            value,
            expires,
        } => {
            kv.set(plugin, key, value, *expires)?;
            Outcome::KvDone
        }
        Write::KvDelete { plugin, key } => {
            kv.delete(plugin, key)?;
            Outcome::KvDone
        }
        Write::KvIncrement {
            plugin,
            key,
            delta,
            expires_if_new,
            now,
        } => match kv.increment(plugin, key, *delta, *expires_if_new, *now)? {
            Some(n) => Outcome::KvCounter(n),
            None => Outcome::KvNotACounter,
        },
        Write::Enqueue { data, record } => {
            *high_water = (*high_water).max(record.id + 1);
            q.enqueue(t, data, record)?;
            Outcome::Queue(true)
        }
        Write::QueueUpdate { record, then } => {
            let found = q.update(t, record)?;
            if found {
                for w in then {
                    apply_one(w, t, kv, q, high_water)?;
                }
            }
            Outcome::Queue(found)
        }
        Write::QueueRetry { id, now } => Outcome::Queue(q.retry_now(*id, *now)?),
        Write::QueueDelete { id } => Outcome::Queue(q.remove(t, *id)?),
        Write::All(writes) => Outcome::All(
            writes
                .iter()
                .map(|w| apply_one(w, t, kv, q, high_water))
                .collect::<Result<_, _>>()?,
        ),
    })
}
