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

/// The queue table, opened once per transaction. The message bytes and
/// their reference counts go through [`Tables`], which owns those tables in
/// the transaction (redb opens a table once per transaction).
pub(super) struct QueueTables<'txn> {
    queue: Table<'txn, u64, &'static [u8]>,
}

impl<'txn> QueueTables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(QueueTables {
            queue: txn.open_table(schema::QUEUE)?,
        })
    }

    /// Stores the bytes under `record.id` and the record itself.
    pub(super) fn enqueue(
        &mut self,
        t: &mut Tables<'_>,
        data: &[u8],
        record: &QueueRecord,
    ) -> Result<(), StoreError> {
        t.add_ref(record.id, data)?;
        self.queue.insert(record.id, record.encode().as_slice())?;
        Ok(())
    }

    /// Rewrites a record after an attempt; a record without pending
    /// recipients leaves the queue. Returns false when the record is gone
    /// already (deleted by the administrator meanwhile): it is not brought
    /// back.
    pub(super) fn update(&mut self, t: &mut Tables<'_>, record: &QueueRecord) -> Result<bool, StoreError> {
        if self.queue.get(record.id)?.is_none() {
            return Ok(false);
        }
        if record.has_pending() {
            self.queue.insert(record.id, record.encode().as_slice())?;
        } else {
            self.remove(t, record.id)?;
        }
        Ok(true)
    }

    /// Removes a record and its reference on the bytes; false if absent.
    pub(super) fn remove(&mut self, t: &mut Tables<'_>, id: u64) -> Result<bool, StoreError> {
        if self.queue.remove(id)?.is_none() {
            return Ok(false);
        }
        t.unref(id)?;
        Ok(true)
    }

    /// Makes every pending recipient of `id` due at `now`; false if absent.
    pub(super) fn retry_now(&mut self, id: u64, now: i64) -> Result<bool, StoreError> {
        let Some(bytes) = self.queue.get(id)?.map(|v| v.value().to_vec()) else {
            return Ok(false);
        };
        let mut record = QueueRecord::decode(&bytes)?;
        for r in record.rcpts.iter_mut().filter(|r| r.state == RcptState::Pending) {
            r.next_attempt = now;
        }
        self.queue.insert(id, record.encode().as_slice())?;
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

/// The records with a recipient due at or before `now`, and the earliest
/// due time among the others (when to look again).
pub fn due(db: &Database, now: i64) -> Result<(Vec<QueueRecord>, Option<i64>), StoreError> {
    let mut ready = Vec::new();
    let mut next: Option<i64> = None;
    for record in list(db)? {
        match record.next_due() {
            Some(t) if t <= now => ready.push(record),
            Some(t) => next = Some(next.map_or(t, |n| n.min(t))),
            None => {}
        }
    }
    Ok((ready, next))
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
        let mut rec = record(9, &["x@there.test"]);
        rec.rcpts[0].next_attempt = 10_000;
        apply(
            &db,
            &[&Write::Enqueue {
                data: b"x".to_vec(),
                record: rec,
            }],
        )
        .unwrap();
        assert!(due(&db, 200).unwrap().0.is_empty());
        apply(&db, &[&Write::QueueRetry { id: 9, now: 200 }]).unwrap();
        assert_eq!(due(&db, 200).unwrap().0.len(), 1);
        apply(&db, &[&Write::QueueDelete { id: 9 }]).unwrap();
        assert!(list(&db).unwrap().is_empty());
        assert_eq!(message(&db, 9).unwrap(), None);
    }
}
