//! Users: login identities with argon2id password hashes.
//!
//! These functions open their own write transactions: they serve the
//! `poczta user …` commands, run by the server for its admin socket or by
//! the command itself when no server runs. Mail writes go through the
//! committer.

use redb::{Database, ReadableDatabase, ReadableTable};

use super::schema::{self, UserRecord};
use super::{StoreError, mailbox};
use crate::auth;

/// Lower-cases and checks a user address (`local@domain`).
pub fn normalize(address: &str) -> Result<String, StoreError> {
    let a = address.trim().to_lowercase();
    let bad = |why: &str| StoreError::BadAddress(format!("`{address}` is not a valid user address: {why}"));
    let Some((local, domain)) = a.rsplit_once('@') else {
        return Err(bad("it needs local-part@domain"));
    };
    if local.is_empty() || domain.is_empty() {
        return Err(bad("empty local part or domain"));
    }
    if a.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
    {
        return Err(bad("no spaces, control characters or angle brackets"));
    }
    if local.contains('@') || domain.starts_with('.') || domain.ends_with('.') {
        return Err(bad("one @, and a domain without leading or trailing dots"));
    }
    Ok(a)
}

/// Creates a user.
pub fn add(db: &Database, address: &str, password: &str) -> Result<String, StoreError> {
    let address = normalize(address)?;
    let hash = auth::hash_password(password).map_err(|e| StoreError::Hash(e.to_string()))?;
    let record = UserRecord {
        password_hash: hash,
        created: crate::clock::unix_secs(),
    };
    let json = serde_json::to_vec(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let txn = db.begin_write()?;
    {
        let mut users = txn.open_table(schema::USERS)?;
        if users.get(address.as_str())?.is_some() {
            return Err(StoreError::UserExists(address));
        }
        users.insert(address.as_str(), json.as_slice())?;
    }
    txn.commit()?;
    Ok(address)
}

/// Replaces a user's password.
pub fn set_password(db: &Database, address: &str, password: &str) -> Result<(), StoreError> {
    let address = normalize(address)?;
    let hash = auth::hash_password(password).map_err(|e| StoreError::Hash(e.to_string()))?;
    let txn = db.begin_write()?;
    {
        let mut users = txn.open_table(schema::USERS)?;
        let mut record = match users.get(address.as_str())? {
            Some(v) => decode(v.value())?,
            None => return Err(StoreError::NoSuchUser(address)),
        };
        record.password_hash = hash;
        let json = serde_json::to_vec(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        users.insert(address.as_str(), json.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// Deletes a user and their mailbox; returns how many messages it held.
pub fn delete(db: &Database, address: &str) -> Result<usize, StoreError> {
    let address = normalize(address)?;
    let txn = db.begin_write()?;
    let removed;
    {
        let mut users = txn.open_table(schema::USERS)?;
        if users.remove(address.as_str())?.is_none() {
            return Err(StoreError::NoSuchUser(address));
        }
        let mut tables = mailbox::Tables::open(&txn)?;
        removed = tables.remove_mailbox(&address)?;
    }
    txn.commit()?;
    Ok(removed)
}

/// Every user address, sorted.
pub fn list(db: &Database) -> Result<Vec<String>, StoreError> {
    let txn = db.begin_read()?;
    let users = txn.open_table(schema::USERS)?;
    let mut out = Vec::new();
    for item in users.iter()? {
        out.push(item?.0.value().to_owned());
    }
    Ok(out)
}

/// The record of a (lower-cased) address.
pub fn get(db: &Database, address: &str) -> Result<Option<UserRecord>, StoreError> {
    let txn = db.begin_read()?;
    let users = txn.open_table(schema::USERS)?;
    match users.get(address)? {
        Some(v) => Ok(Some(decode(v.value())?)),
        None => Ok(None),
    }
}

/// Whether a (lower-cased) address is a user.
pub fn exists(db: &Database, address: &str) -> Result<bool, StoreError> {
    let txn = db.begin_read()?;
    let users = txn.open_table(schema::USERS)?;
    Ok(users.get(address)?.is_some())
}

/// Maps a login name to a user address: a full address as is (lower-cased),
/// or a bare local part when exactly one local domain has that user.
pub fn resolve_login(db: &Database, login: &str, domains: &[String]) -> Result<Option<String>, StoreError> {
    let login = login.trim().to_lowercase();
    if login.contains('@') {
        return Ok(exists(db, &login)?.then_some(login));
    }
    let mut found = None;
    for d in domains {
        let candidate = format!("{login}@{d}");
        if exists(db, &candidate)? {
            if found.is_some() {
                return Ok(None); // ambiguous: the user must give the domain
            }
            found = Some(candidate);
        }
    }
    Ok(found)
}

fn decode(bytes: &[u8]) -> Result<UserRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("user record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_list_passwd_delete() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_database(&dir.path().join("u.redb")).unwrap();
        assert_eq!(
            add(&db, " Alice@Example.Test ", "pw1").unwrap(),
            "alice@example.test"
        );
        assert!(matches!(
            add(&db, "alice@example.test", "x"),
            Err(StoreError::UserExists(_))
        ));
        add(&db, "bob@example.test", "pw2").unwrap();
        assert_eq!(list(&db).unwrap(), vec!["alice@example.test", "bob@example.test"]);
        let h = get(&db, "alice@example.test").unwrap().unwrap().password_hash;
        assert!(auth::verify_password(Some(&h), "pw1"));
        set_password(&db, "alice@example.test", "pw3").unwrap();
        let h = get(&db, "alice@example.test").unwrap().unwrap().password_hash;
        assert!(auth::verify_password(Some(&h), "pw3"));
        delete(&db, "alice@example.test").unwrap();
        assert!(matches!(
            delete(&db, "alice@example.test"),
            Err(StoreError::NoSuchUser(_))
        ));
        assert_eq!(list(&db).unwrap(), vec!["bob@example.test"]);
    }

    #[test]
    fn login_names_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_database(&dir.path().join("u.redb")).unwrap();
        add(&db, "alice@a.test", "p").unwrap();
        add(&db, "bob@a.test", "p").unwrap();
        add(&db, "bob@b.test", "p").unwrap();
        let domains = vec!["a.test".to_string(), "b.test".to_string()];
        assert_eq!(
            resolve_login(&db, "ALICE", &domains).unwrap().as_deref(),
            Some("alice@a.test")
        );
        assert_eq!(resolve_login(&db, "bob", &domains).unwrap(), None, "ambiguous");
        assert_eq!(
            resolve_login(&db, "bob@b.test", &domains).unwrap().as_deref(),
            Some("bob@b.test")
        );
        assert_eq!(resolve_login(&db, "carol", &domains).unwrap(), None);
    }

    #[test]
    fn bad_addresses_are_refused() {
        for a in ["nope", "@x", "a@", "a b@x", "a@x.", "<a@x>"] {
            assert!(normalize(a).is_err(), "{a}");
        }
    }
}
