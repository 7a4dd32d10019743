//! The storage format: every table of the database, its key and value
//! encodings, and the schema version.
//!
//! One redb file, `poczta.redb` in `data_dir`:
//!
//! | table | key | value | meaning |
//! |---|---|---|---|
//! | `meta` | name | u64 | `schema_version`, `next_message_id` (a high-water mark) |
//! | `users` | address (lower-case) | JSON [`UserRecord`] | login identities |
//! | `messages` | message id | raw bytes | each accepted message, stored once |
//! | `message_refs` | message id | u32 | mailbox entries pointing at it |
//! | `mailboxes` | (user, uid) | (message id, size, folder) | a user's maildrop |
//! | `mailbox_meta` | user | (uid epoch, next uid) | UIDVALIDITY-like epoch and the UID counter |
//! | `queue` | message id | JSON [`super::queue::QueueRecord`] | outbound queue: envelope and per-recipient state; the bytes are in `messages` (one reference) |
//! | `queue_due` | (due unix secs, message id) | () | when each queued message is next due: the queue runner reads only what is due |
//! | `plugin_kv` | (plugin, key) | (bytes, expiry) | plugin key-value store |
//!
//! A message is deleted when its last mailbox entry goes (refcount 0). UIDs
//! only grow within an epoch; a mailbox that is recreated gets a new epoch, so
//! `epoch-uid` (the POP3 UIDL) never names two different messages.
//!
//! Migration rule: opening a file whose `schema_version` is newer than
//! [`SCHEMA_VERSION`] is refused; an older one is migrated in one write
//! transaction before serving.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

/// The on-disk format version this build reads and writes.
/// 2 added `queue_due` (built from `queue` when a version-1 file is opened).
pub const SCHEMA_VERSION: u64 = 2;

/// Schema bookkeeping: `schema_version`, `next_message_id`.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Users by lower-cased address; the value is a JSON [`UserRecord`].
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// Message bytes by message id, exactly as delivered (with `Return-Path:`
/// and `Received:` prepended).
pub const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
/// How many mailbox entries reference each message.
pub const MESSAGE_REFS: TableDefinition<u64, u32> = TableDefinition::new("message_refs");
/// A user's maildrop: (user, uid) → (message id, size in bytes, folder).
pub const MAILBOXES: TableDefinition<(&str, u64), (u64, u64, u8)> = TableDefinition::new("mailboxes");
/// Per user: (uid epoch, next uid).
pub const MAILBOX_META: TableDefinition<&str, (u64, u64)> = TableDefinition::new("mailbox_meta");
/// Outbound queue records by message id (JSON `QueueRecord`).
pub const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
/// The queue's due index: (earliest `next_attempt` of a pending
/// recipient, message id), one entry per queued record.
pub const QUEUE_DUE: TableDefinition<(i64, u64), ()> = TableDefinition::new("queue_due");
/// Plugin key-value store: (plugin, key) → (value, expiry unix secs or 0).
pub const PLUGIN_KV: TableDefinition<(&str, &str), (&[u8], u64)> = TableDefinition::new("plugin_kv");

/// The `meta` key of the schema version.
pub const META_SCHEMA_VERSION: &str = "schema_version";
/// The `meta` key of the message id high-water mark.
pub const META_NEXT_MESSAGE_ID: &str = "next_message_id";

/// Folders of a mailbox. POP3 sees only the inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Folder {
    /// Where mail goes by default; the only folder POP3 shows.
    Inbox = 0,
    /// Spam filed by score (used once plugins exist).
    Junk = 1,
    /// Held for the administrator.
    Quarantine = 2,
}

/// A login identity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserRecord {
    /// The argon2id hash in PHC string form.
    pub password_hash: String,
    /// When the user was created (unix seconds).
    pub created: i64,
}
