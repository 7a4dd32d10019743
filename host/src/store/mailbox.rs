//! Maildrops: storing a message once for many users, listing, fetching, and
//! removing entries (the last reference deletes the message bytes).

use redb::{Database, ReadableDatabase, ReadableTable, Table, WriteTransaction};

use super::StoreError;
use super::schema::{self, Folder};

/// One message in a user's folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Stable within the mailbox's epoch; never reused.
    pub uid: u64,
    /// Size in bytes as retrieved.
    pub size: u64,
    /// The stored message it points at.
    pub message_id: u64,
}

/// A listing of one folder.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// The mailbox epoch (changes when the mailbox is recreated).
    pub epoch: u64,
    /// Entries in UID order.
    pub entries: Vec<Entry>,
}

/// The tables a delivery or expunge touches, opened once per transaction.
pub(super) struct Tables<'txn> {
    messages: Table<'txn, u64, &'static [u8]>,
    refs: Table<'txn, u64, u32>,
    mailboxes: Table<'txn, (&'static str, u64), (u64, u64, u8)>,
    meta: Table<'txn, &'static str, (u64, u64)>,
}

impl<'txn> Tables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            messages: txn.open_table(schema::MESSAGES)?,
            refs: txn.open_table(schema::MESSAGE_REFS)?,
            mailboxes: txn.open_table(schema::MAILBOXES)?,
            meta: txn.open_table(schema::MAILBOX_META)?,
        })
    }

    /// Stores `data` once under `id` and gives each distinct user a new UID.
    pub(super) fn deliver(
        &mut self,
        id: u64,
        data: &[u8],
        users: &[(String, Folder)],
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut distinct: Vec<&(String, Folder)> = Vec::with_capacity(users.len());
        for u in users {
            if !distinct.iter().any(|d| d.0 == u.0) {
                distinct.push(u);
            }
        }
        if distinct.is_empty() {
            return Ok(Vec::new());
        }
        self.messages.insert(id, data)?;
        self.refs.insert(id, distinct.len() as u32)?;
        let size = data.len() as u64;
        let mut entries = Vec::with_capacity(distinct.len());
        for (user, folder) in distinct {
            let (epoch, uid) = match self.meta.get(user.as_str())? {
                Some(v) => v.value(),
                None => (crate::clock::unix_micros(), 1),
            };
            self.mailboxes
                .insert((user.as_str(), uid), (id, size, *folder as u8))?;
            self.meta.insert(user.as_str(), (epoch, uid + 1))?;
            entries.push((user.clone(), uid));
        }
        Ok(entries)
    }

    /// Removes the given UIDs from `user`'s mailbox; returns how many existed.
    pub(super) fn expunge(&mut self, user: &str, uids: &[u64]) -> Result<usize, StoreError> {
        let mut removed = 0;
        for &uid in uids {
            let Some(v) = self.mailboxes.remove((user, uid))? else {
                continue;
            };
            let (message_id, _, _) = v.value();
            drop(v);
            removed += 1;
            self.unref(message_id)?;
        }
        Ok(removed)
    }

    /// Removes a user's whole mailbox and its meta (user deletion).
    pub(super) fn remove_mailbox(&mut self, user: &str) -> Result<usize, StoreError> {
        let mut uids = Vec::new();
        for item in self.mailboxes.range((user, 0)..=(user, u64::MAX))? {
            let (k, _) = item?;
            uids.push(k.value().1);
        }
        let n = self.expunge(user, &uids)?;
        self.meta.remove(user)?;
        Ok(n)
    }

    /// Stores `data` under `id` if it is not there yet and adds one
    /// reference (the outbound queue's).
    pub(super) fn add_ref(&mut self, id: u64, data: &[u8]) -> Result<(), StoreError> {
        let refs = self.refs.get(id)?.map(|v| v.value()).unwrap_or(0);
        if refs == 0 {
            self.messages.insert(id, data)?;
        }
        self.refs.insert(id, refs + 1)?;
        Ok(())
    }

    /// Drops one reference; the last one deletes the bytes.
    pub(super) fn unref(&mut self, message_id: u64) -> Result<(), StoreError> {
        let left = match self.refs.get(message_id)? {
            Some(v) => v.value().saturating_sub(1),
            None => 0,
        };
        if left == 0 {
            self.refs.remove(message_id)?;
            self.messages.remove(message_id)?;
        } else {
            self.refs.insert(message_id, left)?;
        }
        Ok(())
    }
}

/// Lists one folder of `user`'s mailbox.
pub fn list(db: &Database, user: &str, folder: Folder) -> Result<Listing, StoreError> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(schema::MAILBOX_META)?;
    let Some(m) = meta.get(user)? else {
        return Ok(Listing::default());
    };
    let (epoch, _) = m.value();
    let mailboxes = txn.open_table(schema::MAILBOXES)?;
    let mut entries = Vec::new();
    for item in mailboxes.range((user, 0)..=(user, u64::MAX))? {
        let (k, v) = item?;
        let (message_id, size, f) = v.value();
        if f == folder as u8 {
            entries.push(Entry {
                uid: k.value().1,
                size,
                message_id,
            });
        }
    }
    Ok(Listing { epoch, entries })
}

/// The bytes of the message at `uid` in `user`'s mailbox.
pub fn fetch(db: &Database, user: &str, uid: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let txn = db.begin_read()?;
    let mailboxes = txn.open_table(schema::MAILBOXES)?;
    let Some(v) = mailboxes.get((user, uid))? else {
        return Ok(None);
    };
    let (message_id, _, _) = v.value();
    let messages = txn.open_table(schema::MESSAGES)?;
    let data = messages.get(message_id)?.map(|d| d.value().to_vec());
    if data.is_none() {
        return Err(StoreError::Corrupt(format!(
            "mailbox {user} uid {uid} points at missing message {message_id}"
        )));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::super::committer::{Outcome, Write, apply};
    use super::*;

    fn db() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_database(&dir.path().join("t.redb")).unwrap();
        (dir, db)
    }

    fn deliver(id: u64, data: &[u8], users: &[&str]) -> Write {
        Write::Deliver {
            id,
            data: data.to_vec(),
            users: users.iter().map(|s| (s.to_string(), Folder::Inbox)).collect(),
        }
    }

    #[test]
    fn stored_once_for_many_users_and_freed_by_the_last_expunge() {
        let (_d, db) = db();
        let w = deliver(7, b"hello\r\n", &["a@x", "b@x", "a@x"]);
        let out = apply(&db, &[&w]).unwrap();
        assert_eq!(
            out,
            vec![Outcome::Delivered {
                entries: vec![("a@x".into(), 1), ("b@x".into(), 1)],
            }]
        );
        assert_eq!(super::super::message_count(&db).unwrap(), 1);
        let a = list(&db, "a@x", Folder::Inbox).unwrap();
        assert_eq!(a.entries.len(), 1);
        assert_eq!(a.entries[0].size, 7);
        assert_eq!(fetch(&db, "b@x", 1).unwrap().unwrap(), b"hello\r\n");

        let e = Write::Expunge {
            user: "a@x".into(),
            uids: vec![1, 99],
        };
        assert_eq!(apply(&db, &[&e]).unwrap(), vec![Outcome::Expunged { removed: 1 }]);
        assert_eq!(super::super::message_count(&db).unwrap(), 1, "b still holds it");
        let e = Write::Expunge {
            user: "b@x".into(),
            uids: vec![1],
        };
        apply(&db, &[&e]).unwrap();
        assert_eq!(super::super::message_count(&db).unwrap(), 0);
        assert!(fetch(&db, "b@x", 1).unwrap().is_none());
    }

    #[test]
    fn uids_grow_and_are_never_reused() {
        let (_d, db) = db();
        let w1 = deliver(1, b"1", &["a@x"]);
        let w2 = deliver(2, b"2", &["a@x"]);
        apply(&db, &[&w1, &w2]).unwrap();
        let epoch = list(&db, "a@x", Folder::Inbox).unwrap().epoch;
        apply(
            &db,
            &[&Write::Expunge {
                user: "a@x".into(),
                uids: vec![2],
            }],
        )
        .unwrap();
        apply(&db, &[&deliver(3, b"3", &["a@x"])]).unwrap();
        let l = list(&db, "a@x", Folder::Inbox).unwrap();
        assert_eq!(l.epoch, epoch);
        assert_eq!(l.entries.iter().map(|e| e.uid).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn a_batch_commits_every_write_and_the_id_high_water_mark() {
        let (_d, db) = db();
        let a = deliver(10, b"a", &["u@x"]);
        let b = deliver(11, b"b", &["v@x"]);
        apply(&db, &[&a, &b]).unwrap();
        assert_eq!(super::super::message_count(&db).unwrap(), 2);
        assert_eq!(
            super::super::meta_value(&db, schema::META_NEXT_MESSAGE_ID).unwrap(),
            Some(12)
        );
    }
}

#[cfg(test)]
mod folder_tests {
    use super::super::committer::{Write, apply};
    use super::*;

    #[test]
    fn each_user_gets_their_folder_and_pop3_sees_only_the_inbox() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_database(&dir.path().join("f.redb")).unwrap();
        let w = Write::Deliver {
            id: 1,
            data: b"m".to_vec(),
            users: vec![("a@x".into(), Folder::Quarantine), ("b@x".into(), Folder::Inbox)],
        };
        apply(&db, &[&w]).unwrap();
        assert!(list(&db, "a@x", Folder::Inbox).unwrap().entries.is_empty());
        assert_eq!(list(&db, "a@x", Folder::Quarantine).unwrap().entries.len(), 1);
        assert_eq!(list(&db, "b@x", Folder::Inbox).unwrap().entries.len(), 1);
    }
}
