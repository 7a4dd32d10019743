//! The outbound queue's durable records: one per queued message, keyed by
//! the message id whose bytes live in `messages` (the queue holds one
//! reference in `message_refs`, like a mailbox entry does).
//!
//! A record keeps per-recipient state: pending (with its next attempt),
//! delivered, or failed. The record leaves the table, and drops its
//! reference on the bytes, when no recipient is pending any more. Records
//! are JSON: they are small, rewritten whole after each attempt, and read
//! by `poczta queue show`.

use redb::{Database, ReadableDatabase, ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::mailbox::Tables;
use super::schema;

/// The state of one recipient of a queued message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptState {
    /// Not delivered yet; due at `next_attempt`.
    Pending,
    /// Accepted by the next hop.
    Delivered,
    /// Failed for good (bounced, when the sender is not null).
    Failed,
}

/// One recipient of a queued message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRcpt {
    /// The address as accepted (RCPT TO, or a plugin's redirect target).
    pub address: String,
    /// Where it stands.
    pub state: RcptState,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix seconds of the next attempt (pending recipients only).
    pub next_attempt: i64,
    /// The reply of the last attempt, one line (`451 4.3.0 ...`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
    /// Whether `last_reply` came from the remote server (else we made it up:
    /// connection failures, DNS, policy).
    #[serde(default)]
    pub remote_reply: bool,
    /// The host that gave `last_reply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_mta: Option<String>,
    /// The RFC 3463 status of a failed recipient (`5.1.1`, `4.4.7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl QueueRcpt {
    /// A new pending recipient, due at `now`.
    pub fn pending(address: impl Into<String>, now: i64) -> QueueRcpt {
        QueueRcpt {
            address: address.into(),
            state: RcptState::Pending,
            attempts: 0,
            next_attempt: now,
            last_reply: None,
            remote_reply: false,
            remote_mta: None,
            status: None,
        }
    }

    /// The domain part, lower-cased (what routing groups by).
    pub fn domain(&self) -> String {
        self.address
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default()
    }
}

/// One queued message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecord {
    /// The message id: the key here and in `messages`.
    pub id: u64,
    /// `MAIL FROM`, empty for the null sender (bounces).
    pub sender: String,
    /// Unix seconds of acceptance (the retry schedule's clock).
    pub arrival: i64,
    /// The message was received with SMTPUTF8.
    #[serde(default)]
    pub smtputf8: bool,
    /// The recipients.
    pub rcpts: Vec<QueueRcpt>,
}

impl QueueRecord {
    /// Whether any recipient still waits for delivery.
    pub fn has_pending(&self) -> bool {
        self.rcpts.iter().any(|r| r.state == RcptState::Pending)
    }

    /// The earliest `next_attempt` of a pending recipient.
    pub fn next_due(&self) -> Option<i64> {
        self.rcpts
            .iter()
            .filter(|r| r.state == RcptState::Pending)
            .map(|r| r.next_attempt)
            .min()
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a queue record always serialises")
    }

    fn decode(bytes: &[u8]) -> Result<QueueRecord, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("queue record: {e}")))
    }
}

/// The queue table and its due index, opened once per transaction. The
/// message bytes and their reference counts go through [`Tables`], which
/// owns those tables in the transaction (redb opens a table once per
/// transaction).
///
/// **Invariant:** every record in `queue` has exactly one `queue_due`
/// entry, at its [`QueueRecord::next_due`] (records always have a pending
/// recipient: one without leaves the queue). All writes to either table go
/// through [`QueueTables::put`] and [`QueueTables::remove`].
pub(super) struct QueueTables<'txn> {
    queue: Table<'txn, u64, &'static [u8]>,
    due: Table<'txn, (i64, u64), ()>,
}

impl<'txn> QueueTables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(QueueTables {
            queue: txn.open_table(schema::QUEUE)?,
            due: txn.open_table(schema::QUEUE_DUE)?,
        })
    }

    /// The stored record `id`, decoded.
    fn stored(&self, id: u64) -> Result<Option<QueueRecord>, StoreError> {
        match self.queue.get(id)? {
            Some(v) => Ok(Some(QueueRecord::decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Writes `record` (replacing `old`, the stored version if any) and
    /// moves its due entry.
    fn put(&mut self, record: &QueueRecord, old: Option<&QueueRecord>) -> Result<(), StoreError> {
        if let Some(t) = old.and_then(QueueRecord::next_due) {
            self.due.remove((t, record.id))?;
        }
        self.queue.insert(record.id, record.encode().as_slice())?;
        if let Some(t) = record.next_due() {
            self.due.insert((t, record.id), ())?;
        }
        Ok(())
    }

    /// Stores the bytes under `record.id` and the record itself.
    pub(super) fn enqueue(
        &mut self,
        t: &mut Tables<'_>,
        data: &[u8],
        record: &QueueRecord,
    ) -> Result<(), StoreError> {
        t.add_ref(record.id, data)?;
        let old = self.stored(record.id)?;
        self.put(record, old.as_ref())
    }

    /// Rewrites a record after an attempt; a record without pending
    /// recipients leaves the queue. Returns false when the record is gone
    /// already (deleted by the administrator meanwhile): it is not brought
    /// back.
    pub(super) fn update(&mut self, t: &mut Tables<'_>, record: &QueueRecord) -> Result<bool, StoreError> {
        let Some(old) = self.stored(record.id)? else {
            return Ok(false);
        };
        if record.has_pending() {
            self.put(record, Some(&old))?;
        } else {
            self.drop_record(t, &old)?;
        }
        Ok(true)
    }

    /// Removes a record and its reference on the bytes; false if absent.
    pub(super) fn remove(&mut self, t: &mut Tables<'_>, id: u64) -> Result<bool, StoreError> {
        let Some(old) = self.stored(id)? else {
            return Ok(false);
        };
        self.drop_record(t, &old)?;
        Ok(true)
    }

    /// Removes the stored record `old`, its due entry and its reference.
    fn drop_record(&mut self, t: &mut Tables<'_>, old: &QueueRecord) -> Result<(), StoreError> {
        self.queue.remove(old.id)?;
        if let Some(due) = old.next_due() {
            self.due.remove((due, old.id))?;
        }
        t.unref(old.id)
    }

    /// Makes every pending recipient of `id` due at `now`; false if absent.
    pub(super) fn retry_now(&mut self, id: u64, now: i64) -> Result<bool, StoreError> {
        let Some(old) = self.stored(id)? else {
            return Ok(false);
        };
        let mut record = old.clone();
        for r in record.rcpts.iter_mut().filter(|r| r.state == RcptState::Pending) {
            r.next_attempt = now;
        }
        self.put(&record, Some(&old))?;
        Ok(true)
    }
}

/// Every queued record, in id (arrival) order.
pub fn list(db: &Database) -> Result<Vec<QueueRecord>, StoreError> {
    let txn = db.begin_read()?;
    let t = txn.open_table(schema::QUEUE)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (_, v) = item?;
        out.push(QueueRecord::decode(v.value())?);
    }
    Ok(out)
}

/// One record, if queued.
pub fn get(db: &Database, id: u64) -> Result<Option<QueueRecord>, StoreError> {
    let txn = db.begin_read()?;
    let t = txn.open_table(schema::QUEUE)?;
    match t.get(id)? {
        Some(v) => Ok(Some(QueueRecord::decode(v.value())?)),
        None => Ok(None),
    }
}

/// The bytes of a queued message.
pub fn message(db: &Database, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let txn = db.begin_read()?;
    let t = txn.open_table(schema::MESSAGES)?;
    Ok(t.get(id)?.map(|v| v.value().to_vec()))
}

/// The records with a recipient due at or before `now` (in due order), and
/// the earliest due time among the others (when to look again). Reads the
/// due index, so a large queue of deferred mail costs nothing here.
pub fn due(db: &Database, now: i64) -> Result<(Vec<QueueRecord>, Option<i64>), StoreError> {
    let txn = db.begin_read()?;
    let index = txn.open_table(schema::QUEUE_DUE)?;
    let queue = txn.open_table(schema::QUEUE)?;
    let mut ready = Vec::new();
    for item in index.range((i64::MIN, 0)..=(now, u64::MAX))? {
        let (key, _) = item?;
        let (_, id) = key.value();
        match queue.get(id)? {
            Some(v) => ready.push(QueueRecord::decode(v.value())?),
            None => {
                return Err(StoreError::Corrupt(format!(
                    "queue_due names {id:016X}, not queued"
                )));
            }
        }
    }
    let next = match index.range((now.saturating_add(1), 0)..)?.next() {
        Some(item) => Some(item?.0.value().0),
        None => None,
    };
    Ok((ready, next))
}

/// Fills `queue_due` from `queue` (opening a version-1 file).
pub(super) fn build_due_index(txn: &WriteTransaction) -> Result<(), StoreError> {
    let queue = txn.open_table(schema::QUEUE)?;
    let mut due = txn.open_table(schema::QUEUE_DUE)?;
    for item in queue.iter()? {
        let (id, v) = item?;
        if let Some(t) = QueueRecord::decode(v.value())?.next_due() {
            due.insert((t, id.value()), ())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::committer::{Write, apply};
    use crate::store::open_database;

    fn record(id: u64, rcpts: &[&str]) -> QueueRecord {
        QueueRecord {
            id,
            sender: "a@here.test".into(),
            arrival: 100,
            smtputf8: false,
            rcpts: rcpts.iter().map(|r| QueueRcpt::pending(*r, 100)).collect(),
        }
    }

    #[test]
    fn enqueue_update_and_removal_keep_refcounts() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(&dir.path().join("q.redb")).unwrap();
        let rec = record(7, &["x@there.test", "y@there.test"]);
        apply(
            &db,
            &[&Write::Enqueue {
                data: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
                record: rec.clone(),
            }],
        )
        .unwrap();
        assert_eq!(list(&db).unwrap(), vec![rec.clone()]);
        assert_eq!(due(&db, 100).unwrap().0.len(), 1);
        assert_eq!(due(&db, 99).unwrap(), (vec![], Some(100)));

        let mut half = rec.clone();
        half.rcpts[0].state = RcptState::Delivered;
        half.rcpts[1].next_attempt = 500;
        apply(
            &db,
            &[&Write::QueueUpdate {
                record: half.clone(),
                then: vec![],
            }],
        )
        .unwrap();
        assert_eq!(get(&db, 7).unwrap(), Some(half.clone()));
        assert!(message(&db, 7).unwrap().is_some());

        let mut done = half;
        done.rcpts[1].state = RcptState::Failed;
        apply(
            &db,
            &[&Write::QueueUpdate {
                record: done.clone(),
                then: vec![],
            }],
        )
        .unwrap();
        assert!(list(&db).unwrap().is_empty());
        assert_eq!(
            message(&db, 7).unwrap(),
            None,
            "the bytes go with the last reference"
        );

        // An update of a record deleted meanwhile does not bring it back.
        apply(
            &db,
            &[&Write::QueueUpdate {
                record: rec,
                then: vec![],
            }],
        )
        .unwrap();
        assert!(list(&db).unwrap().is_empty());
    }

    #[test]
    fn retry_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(&dir.path().join("q.redb")).unwrap();
        enqueue_due(&db, 9, 10_000);
        assert!(due(&db, 200).unwrap().0.is_empty());
        apply(&db, &[&Write::QueueRetry { id: 9, now: 200 }]).unwrap();
        assert_eq!(due(&db, 200).unwrap().0.len(), 1);
        apply(&db, &[&Write::QueueDelete { id: 9 }]).unwrap();
        assert!(list(&db).unwrap().is_empty());
        assert_eq!(message(&db, 9).unwrap(), None);
    }

    /// Queues message `id` with one recipient due at `at`.
    fn enqueue_due(db: &Database, id: u64, at: i64) {
        let mut rec = record(id, &["x@there.test"]);
        rec.rcpts[0].next_attempt = at;
        apply(
            db,
            &[&Write::Enqueue {
                data: b"x".to_vec(),
                record: rec,
            }],
        )
        .unwrap();
    }

    /// Every `queue_due` entry, in order.
    fn index(db: &Database) -> Vec<(i64, u64)> {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(schema::QUEUE_DUE).unwrap();
        t.iter().unwrap().map(|i| i.unwrap().0.value()).collect()
    }

    #[test]
    fn the_due_index_follows_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(&dir.path().join("q.redb")).unwrap();
        let mut writes = Vec::new();
        for (id, at) in [(1, 500), (2, 100), (3, 300)] {
            let mut rec = record(id, &["x@there.test", "y@there.test"]);
            rec.rcpts[0].next_attempt = at;
            rec.rcpts[1].next_attempt = at + 50;
            writes.push(Write::Enqueue {
                data: b"x".to_vec(),
                record: rec,
            });
        }
        apply(&db, &writes.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(index(&db), vec![(100, 2), (300, 3), (500, 1)]);
        let (ready, next) = due(&db, 300).unwrap();
        assert_eq!(ready.iter().map(|r| r.id).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(next, Some(500));
        assert_eq!(due(&db, 99).unwrap(), (vec![], Some(100)));

        // An attempt on 2 defers one recipient and delivers the other.
        let mut two = get(&db, 2).unwrap().unwrap();
        two.rcpts[0].state = RcptState::Delivered;
        two.rcpts[1].next_attempt = 900;
        apply(
            &db,
            &[&Write::QueueUpdate {
                record: two.clone(),
                then: vec![],
            }],
        )
        .unwrap();
        assert_eq!(index(&db), vec![(300, 3), (500, 1), (900, 2)]);
        // The administrator retries 1 now, then deletes 3.
        apply(&db, &[&Write::QueueRetry { id: 1, now: 42 }]).unwrap();
        apply(&db, &[&Write::QueueDelete { id: 3 }]).unwrap();
        assert_eq!(index(&db), vec![(42, 1), (900, 2)]);
        // 2 finishes: it leaves the queue and the index.
        two.rcpts[1].state = RcptState::Failed;
        apply(
            &db,
            &[&Write::QueueUpdate {
                record: two,
                then: vec![],
            }],
        )
        .unwrap();
        assert_eq!(index(&db), vec![(42, 1)]);
        assert_eq!(due(&db, 1000).unwrap().0.len(), 1);
    }

    #[test]
    fn a_version_1_file_gets_its_due_index_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let db = open_database(&path).unwrap();
        enqueue_due(&db, 5, 700);
        // What version 1 left: the record, no index entry, version 1.
        let txn = db.begin_write().unwrap();
        txn.open_table(schema::QUEUE_DUE)
            .unwrap()
            .remove((700, 5))
            .unwrap();
        txn.open_table(schema::META)
            .unwrap()
            .insert(schema::META_SCHEMA_VERSION, 1)
            .unwrap();
        txn.commit().unwrap();
        assert!(index(&db).is_empty());
        drop(db);
        let db = open_database(&path).unwrap();
        assert_eq!(index(&db), vec![(700, 5)]);
        assert_eq!(
            crate::store::meta_value(&db, schema::META_SCHEMA_VERSION).unwrap(),
            Some(schema::SCHEMA_VERSION)
        );
    }
}
