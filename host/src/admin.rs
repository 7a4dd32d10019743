//! The admin channel of a running server: a Unix socket, `admin.sock` in
//! `data_dir`, readable and writable by the server's user only (mode
//! 0600; the directory's permissions guard it too). One JSON request a
//! line, one JSON reply line for each, until the client closes.
//!
//! Requests: `{"cmd":"queue-list"}`, `{"cmd":"queue-show","id":"HEX"}`,
//! `{"cmd":"queue-retry","id":"HEX"|"all"}`, `{"cmd":"queue-delete","id":"HEX"}`,
//! `{"cmd":"user-add"|"user-passwd","address":A,"password":P}`,
//! `{"cmd":"user-del","address":A}`, `{"cmd":"user-list"}`,
//! `{"cmd":"kv-get","plugin":N,"key":K}`,
//! `{"cmd":"kv-apply","writes":[{"plugin":N,"key":K,"value":[bytes]|null,"expires":S}]}`.
//! Replies: `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
//!
//! The server holds the database file exclusively (redb's exclusive-writer
//! mode: one fsync per commit instead of two), so every command that
//! touches the database — `poczta user …`, `poczta queue …`, `poczta plugin
//! train` — goes through this socket while the server runs, and opens the
//! file itself only when no server answers (`offline`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::shared::Shared;
use crate::store::queue::{self as q, QueueRecord};
use crate::store::{StoreError, Write, queue_id, users};

/// Longest request line accepted: a `kv-apply` of a large training run
/// carries every changed key in one line (one transaction).
const MAX_REQUEST: usize = 64 << 20;

/// The socket's path for a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Why the admin channel could not start.
#[derive(Debug, thiserror::Error)]
#[error("admin socket {path}: {source}")]
pub struct AdminError {
    /// The socket path.
    pub path: String,
    /// Why.
    pub source: std::io::Error,
}

/// Binds the socket (replacing a stale one) with mode 0600.
pub fn bind(data_dir: &Path) -> Result<UnixListener, AdminError> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    let err = |source| AdminError {
        path: path.display().to_string(),
        source,
    };
    // A socket left by a killed server refuses connections; a live one
    // means two servers on one data_dir, which redb's lock already stops.
    if path.exists() && std::os::unix::net::UnixStream::connect(&path).is_err() {
        std::fs::remove_file(&path).map_err(err)?;
    }
    let listener = UnixListener::bind(&path).map_err(err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Serves the socket until `stop` flips, then removes it.
pub async fn run(listener: UnixListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stop.changed() => break,
        };
        let Ok((stream, _)) = conn else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            // Bounded in count by the client: it closes when done, and a
            // line past MAX_REQUEST ends the connection.
            loop {
                let mut line = String::new();
                let reply = match (&mut reader).take(MAX_REQUEST as u64).read_line(&mut line).await {
                    Ok(0) => break,
                    Ok(_) if !line.ends_with('\n') => {
                        json!({"ok": false, "error": format!("request line longer than {MAX_REQUEST} bytes or unterminated")})
                    }
                    Ok(_) => handle(&shared, &line).await,
                    Err(e) => json!({"ok": false, "error": e.to_string()}),
                };
                let mut out = reply.to_string();
                out.push('\n');
                if write.write_all(out.as_bytes()).await.is_err() || !line.ends_with('\n') {
                    break;
                }
            }
        });
    }
    let _ = std::fs::remove_file(socket_path(&shared.config.data_dir));
}

async fn handle(shared: &Arc<Shared>, line: &str) -> Value {
    let request: Value = match serde_json::from_str(line.trim()) {
        Ok(v) => v,
        Err(e) => return json!({"ok": false, "error": format!("bad request: {e}")}),
    };
    let cmd = request.get("cmd").and_then(Value::as_str).unwrap_or("");
    let id = request.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
    let text = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    if cmd == "kv-get" {
        // A training run asks this once per shard: not worth a log line
        // each. A point read: inline, like SMTP's user look-up.
        return shared
            .store
            .db()
            .and_then(|db| kv_get(&db, &request))
            .unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}));
    }
    tracing::info!(cmd, id = %id, address = %text("address"), "admin request");
    let result = match cmd {
        "user-add" | "user-passwd" | "user-del" | "user-list" => {
            // argon2 and a write transaction of its own (redb serialises it
            // with the committer's): the blocking pool, not the async threads.
            let (cmd, request) = (cmd.to_owned(), request.clone());
            shared
                .store
                .read(move |db| Ok(user_command(db, &cmd, &request)))
                .await
        }
        "kv-apply" => match kv_writes(&request) {
            Ok(writes) => {
                let n = writes.len();
                shared
                    .store
                    .commit(Write::All(writes))
                    .await
                    .map(|_| json!({"ok": true, "written": n}))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            }
            Err(e) => return json!({"ok": false, "error": e}),
        },
        "queue-list" => shared.store.read(|db| list_json(db, &q::list(db)?)).await,
        "queue-show" => match parse_id(&id) {
            Some(n) => shared.store.read(move |db| show_json(db, n)).await,
            None => return bad_id(&id),
        },
        "queue-retry" => {
            let ids = if id == "all" {
                match shared.store.read(q::list).await {
                    Ok(list) => list.iter().map(|r| r.id).collect(),
                    Err(e) => return json!({"ok": false, "error": e.to_string()}),
                }
            } else {
                match parse_id(&id) {
                    Some(n) => vec![n],
                    None => return bad_id(&id),
                }
            };
            let now = crate::clock::unix_secs();
            let writes = ids.iter().map(|&id| Write::QueueRetry { id, now }).collect();
            let r = shared.store.commit(Write::All(writes)).await;
            shared.queue.wake();
            r.map(|o| json!({"ok": true, "found": count_found(&o)}))
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        "queue-delete" => match parse_id(&id) {
            Some(n) => shared
                .store
                .commit(Write::QueueDelete { id: n })
                .await
                .map(|o| json!({"ok": true, "found": count_found(&o)}))
                .map_err(|e| StoreError::Corrupt(e.to_string())),
            None => return bad_id(&id),
        },
        other => return json!({"ok": false, "error": format!("unknown command {other:?}")}),
    };
    result.unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}))
}

/// A `kv-get` request: the live value (bytes) or null.
fn kv_get(db: &redb::Database, request: &Value) -> Result<Value, StoreError> {
    let text = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or("");
    let now = crate::clock::unix_secs() as u64;
    let value = crate::store::kv::get(db, text("plugin"), text("key"), now)?;
    Ok(json!({"ok": true, "value": value}))
}

/// A `user-…` request against the database: the server runs it on its
/// blocking pool, `poczta user …` directly when no server runs. An error a
/// user caused (a malformed address) is marked `"usage": true`.
pub fn user_command(db: &redb::Database, cmd: &str, request: &Value) -> Value {
    let text = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or("");
    let (address, password) = (text("address"), text("password"));
    let result = match cmd {
        "user-add" => users::add(db, address, password).map(|a| json!({"ok": true, "address": a})),
        "user-passwd" => users::set_password(db, address, password).map(|()| json!({"ok": true})),
        "user-del" => users::delete(db, address).map(|n| json!({"ok": true, "messages": n})),
        "user-list" => users::list(db).map(|u| json!({"ok": true, "users": u})),
        other => Ok(json!({"ok": false, "error": format!("unknown command {other:?}")})),
    };
    result.unwrap_or_else(|e| {
        let usage = matches!(e, StoreError::BadAddress(_));
        json!({"ok": false, "error": e.to_string(), "usage": usage})
    })
}

/// The `writes` of a `kv-apply` request: a value (bytes) sets, null deletes.
pub fn kv_writes(request: &Value) -> Result<Vec<Write>, String> {
    let list = request
        .get("writes")
        .and_then(Value::as_array)
        .ok_or("kv-apply needs a \"writes\" list")?;
    list.iter()
        .map(|w| {
            let text = |k: &str| w.get(k).and_then(Value::as_str).map(str::to_owned);
            let (Some(plugin), Some(key)) = (text("plugin"), text("key")) else {
                return Err(format!("kv-apply: each write needs plugin and key: {w}"));
            };
            Ok(match w.get("value") {
                None | Some(Value::Null) => Write::KvDelete { plugin, key },
                Some(v) => Write::KvSet {
                    plugin,
                    key,
                    value: serde_json::from_value(v.clone()).map_err(|e| format!("kv-apply: value: {e}"))?,
                    expires: w.get("expires").and_then(Value::as_u64).unwrap_or(0),
                },
            })
        })
        .collect()
}

fn bad_id(id: &str) -> Value {
    json!({"ok": false, "error": format!("{id:?} is not a queue id (16 hex digits, as `queue list` shows)")})
}

/// A queue id as shown in replies and logs (hex) back to the message id.
pub fn parse_id(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim(), 16).ok()
}

fn count_found(o: &crate::store::Outcome) -> usize {
    use crate::store::Outcome;
    match o {
        Outcome::Queue(true) => 1,
        Outcome::All(v) => v.iter().map(count_found).sum(),
        _ => 0,
    }
}

/// The records, each with the `Message-ID` of its message (what an
/// administrator, or the crash harness, recognises a message by).
fn list_json(db: &redb::Database, records: &[QueueRecord]) -> Result<Value, StoreError> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let mut v = record_json(r);
        let data = q::message(db, r.id)?.unwrap_or_default();
        if let (Some(o), Some(id)) = (v.as_object_mut(), message_id(&data)) {
            o.insert("message_id".into(), Value::String(id));
        }
        out.push(v);
    }
    Ok(json!({"ok": true, "queue": out}))
}

/// The first `Message-ID:` of the header section, without brackets.
fn message_id(data: &[u8]) -> Option<String> {
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if let Some((name, value)) = text.split_once(':')
            && name.trim().eq_ignore_ascii_case("message-id")
        {
            return Some(
                value
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned(),
            );
        }
    }
    None
}

fn record_json(r: &QueueRecord) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("queue_id".into(), Value::String(queue_id(r.id)));
    }
    v
}

fn show_json(db: &redb::Database, id: u64) -> Result<Value, StoreError> {
    let Some(record) = q::get(db, id)? else {
        return Ok(json!({"ok": false, "error": format!("{} is not in the queue", queue_id(id))}));
    };
    let data = q::message(db, id)?.unwrap_or_default();
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data.len(), |p| p + 2);
    Ok(json!({
        "ok": true,
        "record": record_json(&record),
        "size": data.len(),
        "headers": String::from_utf8_lossy(&data[..end]),
    }))
}

/// The same requests against the database directly, for a stopped server.
pub fn offline(db: &redb::Database, request: &Value) -> Result<Value, StoreError> {
    use crate::store::committer::apply;
    let cmd = request.get("cmd").and_then(Value::as_str).unwrap_or("");
    let id = request.get("id").and_then(Value::as_str).unwrap_or("");
    match cmd {
        "queue-list" => list_json(db, &q::list(db)?),
        "queue-show" => match parse_id(id) {
            Some(n) => show_json(db, n),
            None => Ok(bad_id(id)),
        },
        "queue-retry" | "queue-delete" => {
            let ids: Vec<u64> = if id == "all" && cmd == "queue-retry" {
                q::list(db)?.iter().map(|r| r.id).collect()
            } else {
                match parse_id(id) {
                    Some(n) => vec![n],
                    None => return Ok(bad_id(id)),
                }
            };
            let now = crate::clock::unix_secs();
            let writes: Vec<Write> = ids
                .iter()
                .map(|&id| {
                    if cmd == "queue-retry" {
                        Write::QueueRetry { id, now }
                    } else {
                        Write::QueueDelete { id }
                    }
                })
                .collect();
            let outcomes = apply(db, &writes.iter().collect::<Vec<_>>())?;
            Ok(json!({"ok": true, "found": outcomes.iter().map(count_found).sum::<usize>()}))
        }
        c if c.starts_with("user-") => Ok(user_command(db, c, request)),
        "kv-get" => kv_get(db, request),
        "kv-apply" => match kv_writes(request) {
            Ok(writes) => {
                apply(db, &writes.iter().collect::<Vec<_>>())?;
                Ok(json!({"ok": true, "written": writes.len()}))
            }
            Err(e) => Ok(json!({"ok": false, "error": e})),
        },
        other => Ok(json!({"ok": false, "error": format!("unknown command {other:?}")})),
    }
}

/// A connection to a running server's admin socket.
pub struct Client {
    reader: std::io::BufReader<std::os::unix::net::UnixStream>,
}

impl Client {
    /// Connects; `None` when no server listens on `data_dir`'s socket.
    pub fn connect(data_dir: &Path) -> Option<Client> {
        let stream = std::os::unix::net::UnixStream::connect(socket_path(data_dir)).ok()?;
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
        Some(Client {
            reader: std::io::BufReader::new(stream),
        })
    }

    /// Sends one request and reads its reply.
    pub fn call(&mut self, request: &Value) -> std::io::Result<Value> {
        use std::io::{BufRead, Write as _};
        let line = request.to_string() + "\n";
        self.reader.get_mut().write_all(line.as_bytes())?;
        let mut reply = String::new();
        self.reader.read_line(&mut reply)?;
        serde_json::from_str(&reply).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// Why a request through a [`Channel`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Talking to the running server's socket failed.
    #[error("talking to the running server's admin socket: {0}")]
    Socket(#[from] std::io::Error),
    /// Opening or using the database (no server running) failed.
    #[error("{path}: {source}")]
    Store {
        /// The database file.
        path: String,
        /// Why.
        source: StoreError,
    },
}

/// Where the `poczta user|queue|plugin train` commands send their requests:
/// the running server, or the database itself when none runs.
pub enum Channel {
    /// A server answers on the admin socket.
    Server(Client),
    /// No server: the database file, opened (and locked) by this process.
    Offline(redb::Database, PathBuf),
}

impl Channel {
    /// The server's socket if one answers, else the database at `db_path`.
    pub fn open(data_dir: &Path, db_path: &Path) -> Result<Channel, ChannelError> {
        if let Some(client) = Client::connect(data_dir) {
            return Ok(Channel::Server(client));
        }
        let store = |source| ChannelError::Store {
            path: db_path.display().to_string(),
            source,
        };
        let db = crate::store::open_database(db_path).map_err(store)?;
        Ok(Channel::Offline(db, db_path.to_owned()))
    }

    /// Sends one request; the reply is `{"ok":…}` either way.
    pub fn call(&mut self, request: &Value) -> Result<Value, ChannelError> {
        match self {
            Channel::Server(c) => Ok(c.call(request)?),
            Channel::Offline(db, path) => offline(db, request).map_err(|source| ChannelError::Store {
                path: path.display().to_string(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `poczta user` and `poczta plugin train` with the server stopped:
    /// the same requests the socket takes, against the file.
    #[test]
    fn offline_user_and_kv_requests() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open_database(&dir.path().join("db.redb")).unwrap();
        let call = |r: Value| offline(&db, &r).unwrap();

        let r = call(json!({"cmd": "user-add", "address": "Ann@Example.Test", "password": "pw"}));
        assert_eq!(r, json!({"ok": true, "address": "ann@example.test"}));
        let r = call(json!({"cmd": "user-add", "address": "ann@example.test", "password": "pw"}));
        assert_eq!(
            (r["ok"].as_bool(), r["usage"].as_bool()),
            (Some(false), Some(false))
        );
        let r = call(json!({"cmd": "user-add", "address": "no-at-sign", "password": "pw"}));
        assert_eq!(r["usage"], true, "a malformed address is a usage error: {r}");
        assert_eq!(
            call(json!({"cmd": "user-list"}))["users"],
            json!(["ann@example.test"])
        );

        let r = call(json!({"cmd": "kv-apply", "writes": [
            {"plugin": "p", "key": "a", "value": [49, 50], "expires": 0},
            {"plugin": "p", "key": "b", "value": [1]},
        ]}));
        assert_eq!(r, json!({"ok": true, "written": 2}));
        assert_eq!(
            call(json!({"cmd": "kv-get", "plugin": "p", "key": "a"}))["value"],
            json!([49, 50])
        );
        call(json!({"cmd": "kv-apply", "writes": [{"plugin": "p", "key": "a", "value": null}]}));
        assert_eq!(
            call(json!({"cmd": "kv-get", "plugin": "p", "key": "a"}))["value"],
            Value::Null
        );
        assert_eq!(
            call(json!({"cmd": "kv-get", "plugin": "p", "key": "b"}))["value"],
            json!([1])
        );
        let r = call(json!({"cmd": "kv-apply", "writes": [{"key": "no plugin"}]}));
        assert_eq!(r["ok"], false, "{r}");

        assert_eq!(
            call(json!({"cmd": "user-del", "address": "ann@example.test"}))["ok"],
            true
        );
        assert_eq!(call(json!({"cmd": "user-list"}))["users"], json!([]));
    }
}
