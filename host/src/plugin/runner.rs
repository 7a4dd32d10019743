//! `poczta plugin check` and `poczta plugin run`: a plugin author's
//! edit-run loop, without a server.
//!
//! `check` loads the component exactly as the server would (compile, link,
//! `describe()`), and reports what it found. `run` drives one connection
//! through every hook the plugin declares — connect, helo, mail-from, rcpt
//! (each `--to`), headers, body, deliver (each accepted recipient) — and
//! reports each hook's verdict, the final verdict, the score and the header
//! edits, as text or as the CONTRACT JSON.

use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::loader;
use super::verdict::fmt_score;
use super::{
    ConnInfo, Decision, Envelope, Folder, Grants, KvBackend, MemoryKv, PluginConfig, PluginError,
    PluginReply, PluginSet, RcptDecision, Runtime, ScoreThresholds, Services, WIT_PACKAGE,
};

/// What `plugin check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The plugin's own name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// Declared hooks.
    pub hooks: Vec<String>,
    /// The WIT package it targets (`poczta:plugin@0.1.0`).
    pub wit_package: String,
    /// Every import of the component (WASI and ours), as named in it.
    pub imports: Vec<String>,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "name:    {}", self.name)?;
        writeln!(f, "version: {}", self.version)?;
        writeln!(f, "hooks:   {}", self.hooks.join(", "))?;
        writeln!(f, "targets: {}", self.wit_package)?;
        writeln!(f, "imports:")?;
        for i in &self.imports {
            writeln!(f, "  {i}")?;
        }
        Ok(())
    }
}

/// Services for `check`: `describe()` may not use capabilities, so these
/// are never called.
fn idle_services() -> Result<Services, PluginError> {
    let dns = crate::dns::Resolver::new(&crate::dns::ResolverConfig {
        nameservers: vec![std::net::SocketAddr::from(([127, 0, 0, 1], 53))],
        ..Default::default()
    })
    .map_err(|e| PluginError::Engine(e.to_string()))?;
    Ok(Services {
        kv: Arc::new(MemoryKv::new()),
        dns: Arc::new(dns),
    })
}

fn file_label(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Loads `path` as the server would and reports name, version, hooks, the
/// WIT package version and the imports. Blocking.
pub fn check(runtime: &Runtime, path: &Path) -> Result<CheckReport, PluginError> {
    let cfg = PluginConfig::new(file_label(path), path);
    let plugin = loader::load(runtime, &cfg, &idle_services()?)?;
    let summary = plugin.summary();
    Ok(CheckReport {
        name: summary.name,
        version: summary.version,
        hooks: summary.hooks,
        wit_package: WIT_PACKAGE.to_string(),
        imports: plugin.imports.clone(),
    })
}

/// Inputs of `plugin run`.
pub struct RunOptions {
    /// The message (`--eml`).
    pub eml: Vec<u8>,
    /// MAIL FROM (`--from`, empty for `<>`).
    pub from: String,
    /// RCPT TO, each (`--to`).
    pub to: Vec<String>,
    /// Client IP (`--ip`).
    pub ip: IpAddr,
    /// HELO name (`--helo`).
    pub helo: String,
    /// The plugin's config as JSON (`--config`).
    pub config_json: String,
    /// Capabilities (all for `plugin run`).
    pub grants: Grants,
    /// The kv store (in-memory for `plugin run`).
    pub kv: Arc<dyn KvBackend>,
    /// The resolver.
    pub dns: Arc<crate::dns::Resolver>,
}

/// One hook call in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookEntry {
    /// WIT hook name.
    pub hook: String,
    /// Its verdict word (`continue`, `reject`, `redirect`, `junk`, `error`…).
    pub verdict: String,
    /// The recipient, for `rcpt` and `deliver`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcpt: Option<String>,
    /// Why the call failed, for verdict `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// A symbol in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SymbolEntry {
    /// Symbol name.
    pub name: String,
    /// Its weight.
    pub weight: f64,
    /// The plugin's description.
    pub description: String,
}

/// What `plugin run` reports; serializes to the CONTRACT JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The final verdict: continue, accept, reject, tempfail, discard or
    /// quarantine (a disconnect counts as reject or tempfail by its code).
    pub verdict: String,
    /// The reply of a reject/tempfail, else null.
    pub reply: Option<PluginReply>,
    /// The message score.
    pub score: f64,
    /// Every symbol.
    pub symbols: Vec<SymbolEntry>,
    /// Headers the server would prepend (plugin-added and the host's score
    /// headers), as `[name, value]`.
    pub headers_added: Vec<(String, String)>,
    /// Lower-case names the server would strip.
    pub headers_removed: Vec<String>,
    /// One entry per hook called.
    pub hooks: Vec<HookEntry>,
    /// The quarantine reason, when the verdict is quarantine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RunReport {
    /// The CONTRACT JSON (one object).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for h in &self.hooks {
            let mut line = format!("{:<10} {:<11}", h.hook, h.verdict);
            if let Some(r) = &h.rcpt {
                line.push_str(r);
            }
            if let Some(c) = &h.cause {
                let _ = write!(line, " ({c})");
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        if !self.symbols.is_empty() {
            writeln!(f, "symbols:")?;
            for s in &self.symbols {
                writeln!(
                    f,
                    "  {:<24} {:>6}  {}",
                    s.name,
                    fmt_score(s.weight),
                    s.description
                )?;
            }
        }
        if !self.headers_added.is_empty() {
            writeln!(f, "headers added:")?;
            for (n, v) in &self.headers_added {
                writeln!(f, "  {n}: {v}")?;
            }
        }
        if !self.headers_removed.is_empty() {
            writeln!(f, "headers removed: {}", self.headers_removed.join(", "))?;
        }
        writeln!(f, "score:   {}", fmt_score(self.score))?;
        write!(f, "verdict: {}", self.verdict)?;
        if let Some(r) = &self.reply {
            write!(f, " ({} {} {})", r.code, r.enhanced, r.text)?;
        }
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        writeln!(f)
    }
}

/// Final verdict word and reply of a decision; disconnect maps by class.
fn final_of(d: &Decision) -> (&'static str, Option<PluginReply>, Option<String>) {
    match d {
        Decision::Reject(r) => ("reject", Some(r.clone()), None),
        Decision::Tempfail(r) => ("tempfail", Some(r.clone()), None),
        Decision::Disconnect(r) if r.code >= 500 => ("reject", Some(r.clone()), None),
        Decision::Disconnect(r) => ("tempfail", Some(r.clone()), None),
        Decision::Discard => ("discard", None, None),
        Decision::Quarantine(reason) => ("quarantine", None, Some(reason.clone())),
        Decision::Accept => ("accept", None, None),
        Decision::Continue => ("continue", None, None),
    }
}

/// Runs the plugin at `path` on one message. Loads on a blocking thread
/// (the runtime handle is cloned into it); the hooks run on the caller's
/// tokio runtime.
pub async fn run(runtime: &Runtime, path: &Path, opts: RunOptions) -> Result<RunReport, PluginError> {
    let mut cfg = PluginConfig::new(file_label(path), path);
    cfg.config_json = opts.config_json.clone();
    cfg.grants = opts.grants;
    let services = Services {
        kv: Arc::clone(&opts.kv),
        dns: Arc::clone(&opts.dns),
    };
    let rt = runtime.clone();
    let set = tokio::task::spawn_blocking(move || {
        PluginSet::load(&rt, &[cfg], ScoreThresholds::default(), services)
    })
    .await
    .map_err(|e| PluginError::Engine(format!("load task failed: {e}")))??;
    Ok(drive(Arc::new(set), opts).await)
}

/// Drives one connection through the set's hooks.
pub(crate) async fn drive(set: Arc<PluginSet>, opts: RunOptions) -> RunReport {
    let mut session = set.session(ConnInfo {
        client_ip: opts.ip,
        client_port: 25025,
        listener: "smtp".into(),
        tls: false,
        authenticated: None,
        helo: String::new(),
    });
    let mut accepted_any = false;
    let mut report = RunReport {
        verdict: "continue".into(),
        reply: None,
        score: 0.0,
        symbols: Vec::new(),
        headers_added: Vec::new(),
        headers_removed: Vec::new(),
        hooks: Vec::new(),
        reason: None,
    };
    let stop = |report: &mut RunReport, session: &super::Session, d: &Decision| {
        let (word, reply, reason) = final_of(d);
        report.verdict = word.into();
        report.reply = reply;
        report.reason = reason;
        report.hooks = hook_entries(session, &[]);
    };

    for step in 0..3 {
        let d = match step {
            0 => session.connect().await,
            1 => session.helo(&opts.helo).await,
            _ => {
                let env = Envelope {
                    mail_from: opts.from.clone(),
                    rcpts: Vec::new(),
                };
                session.mail_from(&env).await
            }
        };
        accepted_any |= d == Decision::Accept;
        if d.is_terminal() && !matches!(d, Decision::Quarantine(_)) {
            stop(&mut report, &session, &d);
            return report;
        }
    }

    let mut env = Envelope {
        mail_from: opts.from.clone(),
        rcpts: Vec::new(),
    };
    let mut rcpt_of_call: Vec<String> = Vec::new();
    let mut last_refusal: Option<(&'static str, PluginReply)> = None;
    for to in &opts.to {
        let d = session.rcpt(&env, to).await;
        if set.has_hook(super::Hook::Rcpt) {
            rcpt_of_call.push(to.clone());
        }
        match d {
            RcptDecision::Continue | RcptDecision::Accept => env.rcpts.push(to.clone()),
            RcptDecision::Redirect(list) => env.rcpts.extend(list),
            RcptDecision::Reject(r) => last_refusal = Some(("reject", r)),
            RcptDecision::Tempfail(r) => last_refusal = Some(("tempfail", r)),
        }
    }
    if env.rcpts.is_empty() {
        // Every recipient refused (or none given): the transaction ends here.
        if let Some((word, reply)) = last_refusal {
            report.verdict = word.into();
            report.reply = Some(reply);
        }
        report.hooks = hook_entries(&session, &rcpt_of_call);
        return report;
    }

    let outcome = session.data(&env, Arc::new(opts.eml)).await;
    report.score = outcome.score;
    report.symbols = outcome
        .symbols
        .iter()
        .map(|s| SymbolEntry {
            name: s.name.clone(),
            weight: s.weight,
            description: s.description.clone(),
        })
        .collect();
    report.headers_added = outcome.add_headers.clone();
    report.headers_removed = outcome.remove_headers.clone();

    let mut folders: Vec<Folder> = Vec::new();
    let mut deliver_rcpts: Vec<String> = Vec::new();
    if !outcome.decision.is_terminal() || matches!(outcome.decision, Decision::Quarantine(_)) {
        for rcpt in env.rcpts.clone() {
            folders.push(session.deliver(&env, &rcpt).await);
            deliver_rcpts.push(rcpt);
        }
    }
    let (mut word, reply, mut reason) = final_of(&outcome.decision);
    if !outcome.decision.is_terminal() {
        if let Some(Folder::Quarantine(r)) = folders.iter().find(|f| matches!(f, Folder::Quarantine(_))) {
            word = "quarantine";
            reason = Some(r.clone());
        } else if !folders.is_empty() && folders.iter().all(|f| *f == Folder::Discard) {
            word = "discard";
        } else if accepted_any || outcome.decision == Decision::Accept {
            word = "accept";
        }
    }
    report.verdict = word.into();
    report.reply = reply;
    report.reason = reason;
    let mut rcpts = rcpt_of_call;
    if set.has_hook(super::Hook::Deliver) {
        rcpts.extend(deliver_rcpts);
    }
    report.hooks = hook_entries(&session, &rcpts);
    session.end_transaction();
    report
}

/// The session's verdict log as report entries; `rcpts` are assigned in
/// order to the `rcpt` then `deliver` entries.
fn hook_entries(session: &super::Session, rcpts: &[String]) -> Vec<HookEntry> {
    let mut rcpts = rcpts.iter();
    session
        .call_log()
        .into_iter()
        .map(|(hook, verdict, cause)| {
            let rcpt = matches!(hook.as_str(), "rcpt" | "deliver")
                .then(|| rcpts.next().cloned())
                .flatten();
            HookEntry {
                hook,
                verdict,
                rcpt,
                cause,
            }
        })
        .collect()
}
