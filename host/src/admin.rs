//! The admin channel of a running server: a Unix socket, `admin.sock` in
//! `data_dir`, readable and writable by the server's user only (mode
//! 0600; the directory's permissions guard it too). One JSON request line
//! in, one JSON reply line out, then the connection closes.
//!
//! Requests: `{"cmd":"queue-list"}`, `{"cmd":"queue-show","id":"HEX"}`,
//! `{"cmd":"queue-retry","id":"HEX"|"all"}`, `{"cmd":"queue-delete","id":"HEX"}`.
//! Replies: `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
//!
//! `poczta queue …` talks to the socket when the server runs (so a retry
//! wakes the queue at once and a delete cannot race a delivery's record);
//! with the server stopped it reads and writes the database itself
//! ([`offline`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::shared::Shared;
use crate::store::queue::{self as q, QueueRecord};
use crate::store::{StoreError, Write, queue_id};

/// Longest request accepted (a request is a command and an id).
const MAX_REQUEST: usize = 4096;

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
            let mut line = String::new();
            let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
            let reply = match reader.read_line(&mut line).await {
                Ok(_) => handle(&shared, &line).await,
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            };
            let mut out = reply.to_string();
            out.push('\n');
            let _ = write.write_all(out.as_bytes()).await;
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
    tracing::info!(cmd, id = %id, "admin request");
    let result = match cmd {
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
pub fn offline(db: &redb::Database, cmd: &str, id: &str) -> Result<Value, StoreError> {
    use crate::store::committer::apply;
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
        other => Ok(json!({"ok": false, "error": format!("unknown command {other:?}")})),
    }
}

/// Sends one request to a running server; `None` when none listens.
pub fn request(data_dir: &Path, cmd: &str, id: &str) -> Option<std::io::Result<Value>> {
    use std::io::{BufRead, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket_path(data_dir)).ok()?;
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let req = json!({"cmd": cmd, "id": id}).to_string() + "\n";
    Some((|| {
        stream.write_all(req.as_bytes())?;
        let mut line = String::new();
        std::io::BufReader::new(&stream).read_line(&mut line)?;
        serde_json::from_str(&line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    })())
}
