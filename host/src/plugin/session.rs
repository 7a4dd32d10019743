//! [`Session`]: the plugin side of one SMTP connection.
//!
//! # Instances and scopes
//!
//! A *scope* holds one lazily created instance per plugin and the data its
//! plugins share (notes, symbols, header edits). The connection scope
//! serves `connect` and `helo`; its instances are released when a
//! transaction starts (`mail_from`), and a later `helo` gets others. Its
//! data (notes, symbols, header edits) seeds every transaction of the
//! connection. A transaction scope lives from `mail_from` to
//! `end_transaction` (or the next `mail_from`): its own instances, fresh
//! copies of the data.
//!
//! A released instance is dropped, or, for a plugin with `reuse` > 1, goes
//! to the plugin's [`InstancePool`] for a later scope (rebound to that
//! scope's data and session). A Python or JavaScript plugin pays its
//! interpreter's start-up once per `reuse` transactions instead of once per
//! transaction.
//!
//! # Failures
//!
//! A trap, deadline, out-of-memory, `err(..)` result or instantiation
//! failure is logged (`warn!` with plugin, hook, cause) and gets the
//! plugin's `on_error`: `Tempfail` answers 451 4.7.1 for that hook and stops
//! its chain; `Continue` skips the plugin. A trapped instance is poisoned
//! and dropped; a later hook of the same scope gets a fresh instance. After
//! [`MAX_FAILURES_PER_SCOPE`] failures the plugin is not run again in that
//! scope: its later hooks get the `on_error` outcome directly (so a plugin
//! that always loops costs one deadline per hook at most three times, not
//! once per recipient). An `err(..)` keeps the instance.
//!
//! At `deliver` there is no tempfail: a failed deliver plugin leaves the
//! folder to the host's default (Junk when the score reached the junk
//! threshold, else Inbox). The message was already accepted by the data
//! stage, and the score still applies; `Tempfail` stops the deliver chain,
//! `Continue` skips the plugin.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::component::Resource;
use wasmtime::{Store, Trap};

use super::bindings::Plugin;
use super::bindings::hooks::Guest;
use super::bindings::types::{self as wit, Delivery, RcptVerdict, Verdict};
use super::loader::LoadedPlugin;
use super::message::{MessageHandle, ParsedMessage, untrusted_header_names};
use super::state::{self, PluginState, SharedTxn, TxnData};
use super::verdict::{self, ReplyClass, failure_reply};
use super::{ConnInfo, DataOutcome, Decision, Envelope, Folder, Hook, OnError, PluginSet, RcptDecision};

/// Failures after which a plugin is not run again in the same scope.
pub const MAX_FAILURES_PER_SCOPE: u32 = 3;

/// Extra time past a hook's deadline before the host abandons the call
/// future (the epoch trap normally fires within one tick; this catches a
/// host future that never completes).
const ABANDON_GRACE: Duration = Duration::from_millis(500);

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Idle instances kept per plugin, at most: about the number of
/// transactions that run at once (the benchmarks' 32 connections), so a
/// busy server instantiates nothing in the steady state, while a plugin's
/// idle memory stays bounded.
pub const MAX_IDLE_PER_PLUGIN: usize = 32;

/// One live instance.
pub(super) struct Live {
    store: Store<PluginState>,
    guest: Plugin,
    /// Scopes (transactions or connection-level hook runs) served so far.
    uses: u32,
}

/// A plugin's idle instances, for plugins with `reuse` > 1. An instance
/// goes back only after a scope it served ended cleanly: never after a
/// trap, a deadline, or a call that was abandoned half-way (the session
/// went away mid-hook, leaving the guest's memory mid-update), and never
/// after `reuse` scopes.
#[derive(Default)]
pub(super) struct InstancePool {
    idle: std::sync::Mutex<Vec<Live>>,
}

impl InstancePool {
    fn take(&self) -> Option<Live> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put(&self, live: Live, reuse: u32) {
        // A call still marked as running was dropped half-way.
        if live.uses >= reuse || live.store.data().deadline.is_some() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_PER_PLUGIN {
            idle.push(live);
        }
    }

    /// Drops every idle instance (their stores hold the plugin: a cycle
    /// that [`PluginSet`]'s drop breaks here).
    pub(super) fn clear(&self) {
        let drained = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        drop(drained);
    }

    /// How many instances are idle.
    #[cfg(test)]
    pub(super) fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Instances and shared data of the connection or of one transaction.
struct Scope {
    set: Arc<PluginSet>,
    data: SharedTxn,
    slots: Vec<Option<Live>>,
    failures: Vec<u32>,
}

impl Scope {
    fn new(set: &Arc<PluginSet>, data: TxnData) -> Scope {
        let plugins = set.plugins.len();
        Scope {
            set: Arc::clone(set),
            data: Arc::new(std::sync::Mutex::new(data)),
            slots: (0..plugins).map(|_| None).collect(),
            failures: vec![0; plugins],
        }
    }

    /// Hands the scope's instances back to their plugins' pools.
    fn release(&mut self) {
        for (plugin, slot) in self.set.plugins.iter().zip(self.slots.iter_mut()) {
            if let Some(live) = slot.take() {
                plugin.pool.put(live, plugin.reuse);
            }
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.release();
    }
}

/// One hook call in the verdict log.
#[derive(Debug, Clone)]
struct Entry {
    plugin: String,
    hook: Hook,
    word: &'static str,
    /// Why it failed, for `word == "error"`.
    cause: Option<String>,
}

impl Entry {
    fn triple(&self) -> (String, String, String) {
        (
            self.plugin.clone(),
            self.hook.as_str().to_string(),
            self.word.to_string(),
        )
    }
}

/// The mail transaction in progress.
struct Txn {
    scope: Scope,
    quarantine: Option<String>,
    verdicts: Vec<Entry>,
    message: Option<Arc<ParsedMessage>>,
    /// Set by `data()`: (decision, junk).
    outcome: Option<(Decision, bool)>,
}

/// The plugin side of one SMTP connection; instances live per transaction.
pub struct Session {
    set: Arc<PluginSet>,
    conn: ConnInfo,
    id: u64,
    conn_scope: Scope,
    conn_quarantine: Option<String>,
    conn_verdicts: Vec<Entry>,
    txn: Option<Txn>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("conn", &self.conn)
            .field("in_transaction", &self.txn.is_some())
            .finish_non_exhaustive()
    }
}

/// What one hook call asks of a plugin.
enum Call<'a> {
    Connect(&'a wit::Connection),
    Helo(&'a wit::Connection),
    MailFrom(&'a wit::Envelope),
    Rcpt(&'a wit::Envelope, &'a str),
    Headers(&'a wit::Envelope, &'a Arc<ParsedMessage>),
    Body(&'a wit::Envelope, &'a Arc<ParsedMessage>),
    Deliver(&'a wit::Envelope, &'a str, &'a Arc<ParsedMessage>),
}

impl Call<'_> {
    fn hook(&self) -> Hook {
        match self {
            Call::Connect(_) => Hook::Connect,
            Call::Helo(_) => Hook::Helo,
            Call::MailFrom(_) => Hook::MailFrom,
            Call::Rcpt(..) => Hook::Rcpt,
            Call::Headers(..) => Hook::Headers,
            Call::Body(..) => Hook::Body,
            Call::Deliver(..) => Hook::Deliver,
        }
    }
}

/// What a plugin answered.
enum Answer {
    Verdict(Verdict),
    Rcpt(RcptVerdict),
    Delivery(Delivery),
}

impl Session {
    pub(super) fn new(set: Arc<PluginSet>, conn: ConnInfo) -> Session {
        Session {
            conn_scope: Scope::new(&set, TxnData::default()),
            set,
            conn,
            id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            conn_quarantine: None,
            conn_verdicts: Vec::new(),
            txn: None,
        }
    }

    /// The session id used in plugin log lines.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The plugin set this session runs.
    pub fn plugin_set(&self) -> &Arc<PluginSet> {
        &self.set
    }

    /// The connection changed: TLS after STARTTLS, a login after AUTH (or
    /// none after the reset of STARTTLS). Later hooks see it.
    pub fn set_conn(&mut self, tls: bool, authenticated: Option<String>) {
        self.conn.tls = tls;
        self.conn.authenticated = authenticated;
    }

    /// After TCP accept, before the greeting.
    pub async fn connect(&mut self) -> Decision {
        let conn = self.wit_conn();
        let d = self.chain(false, &Call::Connect(&conn)).await;
        self.remember_quarantine(false, &d);
        d
    }

    /// After EHLO/HELO; updates the connection's HELO name.
    pub async fn helo(&mut self, helo: &str) -> Decision {
        self.conn.helo = helo.to_string();
        let conn = self.wit_conn();
        let d = self.chain(false, &Call::Helo(&conn)).await;
        self.remember_quarantine(false, &d);
        d
    }

    /// After MAIL FROM: starts a new transaction (fresh instances, notes
    /// and symbols seeded from the connection-level hooks).
    pub async fn mail_from(&mut self, env: &Envelope) -> Decision {
        self.begin_transaction();
        let wenv = self.wit_env(env);
        let d = self.chain(true, &Call::MailFrom(&wenv)).await;
        self.remember_quarantine(true, &d);
        d
    }

    /// For each RCPT TO: the routing hook.
    pub async fn rcpt(&mut self, env: &Envelope, rcpt: &str) -> RcptDecision {
        self.ensure_transaction();
        let wenv = self.wit_env(env);
        let call = Call::Rcpt(&wenv, rcpt);
        let set = Arc::clone(&self.set);
        for (idx, plugin) in set.plugins.iter().enumerate() {
            if !plugin.has(Hook::Rcpt) {
                continue;
            }
            let decision = match self.invoke(true, idx, plugin, &call).await {
                Ok(Answer::Rcpt(v)) => match self.rcpt_decision(plugin, v) {
                    Ok(d) => d,
                    Err(cause) => match self.failed(true, plugin, Hook::Rcpt, &cause) {
                        OnError::Tempfail => RcptDecision::Tempfail(failure_reply()),
                        OnError::Continue => continue,
                    },
                },
                Ok(_) => unreachable_answer(),
                Err(cause) => match self.failed(true, plugin, Hook::Rcpt, &cause) {
                    OnError::Tempfail => RcptDecision::Tempfail(failure_reply()),
                    OnError::Continue => continue,
                },
            };
            self.record(true, plugin, Hook::Rcpt, decision.word());
            if decision != RcptDecision::Continue {
                return decision;
            }
        }
        RcptDecision::Continue
    }

    /// After the data arrived: parses once (only if some plugin has a
    /// `headers`, `body` or `deliver` hook), runs `headers` then `body`,
    /// applies the score thresholds and builds the header edits.
    pub async fn data(&mut self, env: &Envelope, raw: Arc<Vec<u8>>) -> DataOutcome {
        self.ensure_transaction();
        let set = Arc::clone(&self.set);
        let parse = set.has_hook(Hook::Headers) || set.has_hook(Hook::Body) || set.has_hook(Hook::Deliver);
        let message = parse.then(|| Arc::new(ParsedMessage::parse(Arc::clone(&raw))));
        if let Some(txn) = self.txn.as_mut() {
            txn.message = message.clone();
        }
        let wenv = self.wit_env(env);
        let mut decision = Decision::Continue;
        let ran_data_hooks = set.has_hook(Hook::Headers) || set.has_hook(Hook::Body);
        if let Some(msg) = &message {
            if set.has_hook(Hook::Headers) {
                decision = self.chain(true, &Call::Headers(&wenv, msg)).await;
            }
            if !decision.is_terminal() && set.has_hook(Hook::Body) {
                let body = self.chain(true, &Call::Body(&wenv, msg)).await;
                decision = match body {
                    d if d.is_terminal() => d,
                    Decision::Accept => Decision::Accept,
                    _ => decision,
                };
            }
        }

        let (data, txn_quarantine, txn_verdicts) = match self.txn.as_ref() {
            Some(t) => (
                state::lock(&t.scope.data).clone(),
                t.quarantine.clone(),
                t.verdicts.clone(),
            ),
            None => (TxnData::default(), None, Vec::new()),
        };
        let summary = ran_data_hooks || !data.symbols.is_empty();
        let (score, action) = verdict::score_action(&data.symbols, &set.thresholds, summary);
        let decision = if decision.is_terminal() {
            decision
        } else if let Some(reply) = action.reject {
            Decision::Reject(reply)
        } else if let Some(reason) = txn_quarantine.or_else(|| self.conn_quarantine.clone()) {
            Decision::Quarantine(reason)
        } else {
            decision
        };

        let mut add_headers: Vec<(String, String)> = data
            .add_headers
            .iter()
            .map(|(_, n, v)| (n.clone(), v.clone()))
            .collect();
        add_headers.extend(action.headers);
        let mut remove_headers: Vec<String> = data.remove_headers.iter().map(|(_, n)| n.clone()).collect();
        for name in untrusted_header_names(&raw) {
            if !remove_headers.contains(&name) {
                remove_headers.push(name);
            }
        }
        let verdicts = self
            .conn_verdicts
            .iter()
            .chain(txn_verdicts.iter())
            .map(Entry::triple)
            .collect();
        if let Some(txn) = self.txn.as_mut() {
            txn.outcome = Some((decision.clone(), action.junk));
        }
        DataOutcome {
            decision,
            score,
            symbols: data.symbols,
            junk: action.junk,
            add_headers,
            remove_headers,
            verdicts,
        }
    }

    /// For each final recipient, after `data()`: the folder. Plugins that
    /// answer `continue` (or fail) leave it to the score: Junk if the data
    /// outcome was junk, else Inbox. A quarantine decision from the data
    /// stage is final for every recipient.
    pub async fn deliver(&mut self, env: &Envelope, rcpt: &str) -> Folder {
        let Some(txn) = self.txn.as_ref() else {
            tracing::warn!(
                session = self.id,
                "deliver() without a transaction; filing into the inbox"
            );
            return Folder::Inbox;
        };
        let (decision, junk) = txn.outcome.clone().unwrap_or((Decision::Continue, false));
        match decision {
            Decision::Quarantine(reason) => return Folder::Quarantine(reason),
            Decision::Discard => return Folder::Discard,
            _ => {}
        }
        let default = if junk { Folder::Junk } else { Folder::Inbox };
        let Some(msg) = txn.message.clone() else {
            return default;
        };
        let wenv = self.wit_env(env);
        let call = Call::Deliver(&wenv, rcpt, &msg);
        let set = Arc::clone(&self.set);
        for (idx, plugin) in set.plugins.iter().enumerate() {
            if !plugin.has(Hook::Deliver) {
                continue;
            }
            match self.invoke(true, idx, plugin, &call).await {
                Ok(Answer::Delivery(d)) => match verdict::folder(d) {
                    Some(folder) => {
                        self.record(true, plugin, Hook::Deliver, folder.word());
                        return folder;
                    }
                    None => self.record(true, plugin, Hook::Deliver, "continue"),
                },
                Ok(_) => unreachable_answer(),
                Err(cause) => match self.failed(true, plugin, Hook::Deliver, &cause) {
                    OnError::Tempfail => return default,
                    OnError::Continue => {}
                },
            }
        }
        default
    }

    /// The envelope sender a plugin set for this transaction
    /// (`transaction.set-sender`): (plugin, address).
    pub fn sender(&self) -> Option<(String, String)> {
        self.txn
            .as_ref()
            .and_then(|t| state::lock(&t.scope.data).sender.clone())
    }

    /// RSET, or the message is done: drops the transaction's instances and
    /// data. Nothing survives into the next transaction except kv.
    pub fn end_transaction(&mut self) {
        self.txn = None;
    }

    /// (plugin, hook, verdict) of every call so far: connection-level, then
    /// the current transaction's (including `deliver`).
    pub fn verdicts(&self) -> Vec<(String, String, String)> {
        self.entries().map(Entry::triple).collect()
    }

    /// (plugin, hook, cause) of every failed call so far (connection-level,
    /// then the current transaction's).
    pub fn failures(&self) -> Vec<(String, String, String)> {
        self.entries()
            .filter_map(|e| {
                e.cause
                    .as_ref()
                    .map(|c| (e.plugin.clone(), e.hook.as_str().to_string(), c.clone()))
            })
            .collect()
    }

    /// (hook, word, cause) of every call, for `plugin run`.
    pub(crate) fn call_log(&self) -> Vec<(String, String, Option<String>)> {
        self.entries()
            .map(|e| (e.hook.as_str().to_string(), e.word.to_string(), e.cause.clone()))
            .collect()
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        let txn = self.txn.iter().flat_map(|t| t.verdicts.iter());
        self.conn_verdicts.iter().chain(txn)
    }

    fn begin_transaction(&mut self) {
        // Free the connection-level instances (pool slots) while the
        // transaction runs; a later HELO gets others.
        self.conn_scope.release();
        let seed = state::lock(&self.conn_scope.data).clone();
        // The previous transaction's instances go back before this one
        // takes any.
        self.txn = None;
        self.txn = Some(Txn {
            scope: Scope::new(&self.set, seed),
            quarantine: None,
            verdicts: Vec::new(),
            message: None,
            outcome: None,
        });
    }

    fn ensure_transaction(&mut self) {
        if self.txn.is_none() {
            tracing::debug!(
                session = self.id,
                "hook called outside a transaction; starting one"
            );
            self.begin_transaction();
        }
    }

    fn remember_quarantine(&mut self, in_txn: bool, d: &Decision) {
        if let Decision::Quarantine(reason) = d {
            let slot = match (in_txn, self.txn.as_mut()) {
                (true, Some(t)) => &mut t.quarantine,
                _ => &mut self.conn_quarantine,
            };
            slot.get_or_insert_with(|| reason.clone());
        }
    }

    fn wit_conn(&self) -> wit::Connection {
        wit::Connection {
            client_ip: self.conn.client_ip.to_canonical().to_string(),
            client_port: self.conn.client_port,
            listener: self.conn.listener.clone(),
            tls: self.conn.tls,
            authenticated: self.conn.authenticated.clone(),
            helo: self.conn.helo.clone(),
        }
    }

    fn wit_env(&self, env: &Envelope) -> wit::Envelope {
        wit::Envelope {
            connection: self.wit_conn(),
            mail_from: env.mail_from.clone(),
            rcpts: env.rcpts.clone(),
        }
    }

    /// Runs a verdict hook over the plugins in order.
    async fn chain(&mut self, in_txn: bool, call: &Call<'_>) -> Decision {
        let hook = call.hook();
        let set = Arc::clone(&self.set);
        let mut result = Decision::Continue;
        for (idx, plugin) in set.plugins.iter().enumerate() {
            if !plugin.has(hook) {
                continue;
            }
            let decision = match self.invoke(in_txn, idx, plugin, call).await {
                Ok(Answer::Verdict(v)) => {
                    let (name, id) = (&plugin.name, self.id);
                    verdict::decision(
                        v,
                        hook,
                        |w| tracing::warn!(plugin = %name, hook = hook.as_str(), session = id, "{w}"),
                    )
                }
                Ok(_) => unreachable_answer(),
                Err(cause) => match self.failed(in_txn, plugin, hook, &cause) {
                    OnError::Tempfail => Decision::Tempfail(failure_reply()),
                    OnError::Continue => continue,
                },
            };
            self.record(in_txn, plugin, hook, decision.word());
            match decision {
                Decision::Continue => {}
                Decision::Accept => {
                    result = Decision::Accept;
                    break;
                }
                terminal => return terminal,
            }
        }
        result
    }

    fn rcpt_decision(&self, plugin: &LoadedPlugin, v: RcptVerdict) -> Result<RcptDecision, String> {
        let (name, id) = (&plugin.name, self.id);
        let warn = |w: String| tracing::warn!(plugin = %name, hook = "rcpt", session = id, "{w}");
        Ok(match v {
            RcptVerdict::Continue => RcptDecision::Continue,
            RcptVerdict::Accept => RcptDecision::Accept,
            RcptVerdict::Reject(r) => {
                RcptDecision::Reject(verdict::validate_reply(r, ReplyClass::Reject, warn))
            }
            RcptVerdict::Tempfail(r) => {
                RcptDecision::Tempfail(verdict::validate_reply(r, ReplyClass::Tempfail, warn))
            }
            RcptVerdict::Redirect(list) => RcptDecision::Redirect(verdict::redirect_targets(list)?),
        })
    }

    /// Logs a failure, records it, and returns the plugin's policy.
    fn failed(&mut self, in_txn: bool, plugin: &LoadedPlugin, hook: Hook, cause: &str) -> OnError {
        tracing::warn!(
            plugin = %plugin.name, hook = hook.as_str(), session = self.id, cause,
            on_error = match plugin.on_error { OnError::Tempfail => "tempfail", OnError::Continue => "continue" },
            "plugin failed"
        );
        self.push(in_txn, plugin, hook, "error", Some(cause.to_string()));
        plugin.on_error
    }

    fn record(&mut self, in_txn: bool, plugin: &LoadedPlugin, hook: Hook, word: &'static str) {
        self.push(in_txn, plugin, hook, word, None);
    }

    fn push(
        &mut self,
        in_txn: bool,
        plugin: &LoadedPlugin,
        hook: Hook,
        word: &'static str,
        cause: Option<String>,
    ) {
        let entry = Entry {
            plugin: plugin.name.clone(),
            hook,
            word,
            cause,
        };
        match (in_txn, self.txn.as_mut()) {
            (true, Some(t)) => t.verdicts.push(entry),
            _ => self.conn_verdicts.push(entry),
        }
    }

    /// Calls `plugin`'s hook in the scope, creating the instance if needed.
    /// `Err` is the failure cause.
    async fn invoke(
        &mut self,
        in_txn: bool,
        idx: usize,
        plugin: &Arc<LoadedPlugin>,
        call: &Call<'_>,
    ) -> Result<Answer, String> {
        let session = self.id;
        let scope = match (in_txn, self.txn.as_mut()) {
            (true, Some(t)) => &mut t.scope,
            _ => &mut self.conn_scope,
        };
        if scope.failures[idx] >= MAX_FAILURES_PER_SCOPE {
            return Err(format!(
                "not run: failed {} times in this transaction",
                scope.failures[idx]
            ));
        }
        let hook = call.hook();
        let limit = plugin.timeout + ABANDON_GRACE;

        if scope.slots[idx].is_none()
            && let Some(mut live) = plugin.pool.take()
        {
            live.uses += 1;
            live.store.data_mut().rebind(Arc::clone(&scope.data), session);
            scope.slots[idx] = Some(live);
        }
        if scope.slots[idx].is_none() {
            let mut store = state::new_store(plugin, Arc::clone(&scope.data), session, true);
            store.data_mut().begin_call(Some(hook), plugin.timeout);
            let created = tokio::time::timeout(limit, plugin.pre.instantiate_async(&mut store)).await;
            store.data_mut().end_call();
            match created {
                Ok(Ok(guest)) => {
                    scope.slots[idx] = Some(Live {
                        store,
                        guest,
                        uses: 1,
                    })
                }
                Ok(Err(e)) => {
                    scope.failures[idx] += 1;
                    return Err(format!("instantiation failed: {}", cause(&e, store.data())));
                }
                Err(_) => {
                    scope.failures[idx] += 1;
                    return Err(format!(
                        "deadline exceeded ({} ms) during instantiation",
                        plugin.timeout.as_millis()
                    ));
                }
            }
        }
        let Some(live) = scope.slots[idx].as_mut() else {
            return Err("internal: no instance".into());
        };
        if let Some(fuel) = plugin.fuel {
            let _ = live.store.set_fuel(fuel);
        }
        live.store.data_mut().begin_call(Some(hook), plugin.timeout);
        // A reused instance's epoch deadline lies in the past: without this
        // its first tick check would yield for nothing.
        live.store.set_epoch_deadline(1);
        let result = tokio::time::timeout(limit, call_guest(&mut live.store, &live.guest, call)).await;
        live.store.data_mut().end_call();
        match result {
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(message))) => {
                // The plugin reported an error as a value: the instance is
                // fine and stays.
                scope.failures[idx] += 1;
                Err(format!("plugin error: {}", verdict::clean_line(&message, 300)))
            }
            Ok(Err(trap)) => {
                let c = cause(&trap, live.store.data());
                scope.slots[idx] = None; // poisoned
                scope.failures[idx] += 1;
                Err(c)
            }
            Err(_) => {
                scope.slots[idx] = None;
                scope.failures[idx] += 1;
                Err(format!("deadline exceeded ({} ms)", plugin.timeout.as_millis()))
            }
        }
    }
}

fn unreachable_answer<T>() -> T {
    // `invoke` returns the answer kind that matches the call; this is only
    // reachable through a host bug, and a panic there is the right signal.
    panic!("plugin answer does not match the hook called")
}

/// Calls the export for `call`. Outer `Err`: trap; inner `Err`: the
/// plugin's `err(..)`.
async fn call_guest(
    store: &mut Store<PluginState>,
    guest: &Plugin,
    call: &Call<'_>,
) -> wasmtime::Result<Result<Answer, String>> {
    let hooks: &Guest = guest.poczta_plugin_hooks();
    Ok(match call {
        Call::Connect(conn) => hooks.call_connect(&mut *store, conn).await?.map(Answer::Verdict),
        Call::Helo(conn) => hooks.call_helo(&mut *store, conn).await?.map(Answer::Verdict),
        Call::MailFrom(env) => hooks.call_mail_from(&mut *store, env).await?.map(Answer::Verdict),
        Call::Rcpt(env, rcpt) => hooks.call_rcpt(&mut *store, env, rcpt).await?.map(Answer::Rcpt),
        Call::Headers(env, msg) => {
            let handle = store.data_mut().table.push(MessageHandle(Arc::clone(msg)))?;
            let r = hooks
                .call_headers(&mut *store, env, Resource::new_borrow(handle.rep()))
                .await;
            let _ = store.data_mut().table.delete(handle);
            r?.map(Answer::Verdict)
        }
        Call::Body(env, msg) => {
            let handle = store.data_mut().table.push(MessageHandle(Arc::clone(msg)))?;
            let r = hooks
                .call_body(&mut *store, env, Resource::new_borrow(handle.rep()))
                .await;
            let _ = store.data_mut().table.delete(handle);
            r?.map(Answer::Verdict)
        }
        Call::Deliver(env, rcpt, msg) => {
            let handle = store.data_mut().table.push(MessageHandle(Arc::clone(msg)))?;
            let r = hooks
                .call_deliver(&mut *store, env, rcpt, Resource::new_borrow(handle.rep()))
                .await;
            let _ = store.data_mut().table.delete(handle);
            r?.map(Answer::Delivery)
        }
    })
}

/// A failure cause for logs: deadline, fuel, out of memory, or the trap.
pub(crate) fn cause(err: &wasmtime::Error, state: &PluginState) -> String {
    let text = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!("deadline exceeded ({} ms)", state.plugin.timeout.as_millis()),
        Some(Trap::OutOfFuel) => "fuel exhausted".to_string(),
        _ if state.limiter.hit => format!("out of memory (limit {} MiB)", state.plugin.memory >> 20),
        Some(Trap::StackOverflow) => "stack overflow".to_string(),
        Some(trap) => format!("trap: {trap}"),
        None => format!("{err:#}"),
    };
    verdict::truncate(&text, 500).to_string()
}
