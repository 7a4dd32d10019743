//! # poczta-plugin: write Poczta mail-server plugins in Rust
//!
//! A Poczta plugin is a WebAssembly component targeting the WIT world
//! `poczta:plugin/plugin@0.1.0` (`wit/poczta.wit` at the repository root).
//! This crate wraps the `wit-bindgen` bindings of that world so that a plugin
//! is one type implementing [`Plugin`] plus one [`export_plugin!`] line:
//!
//! * [`Plugin`] has a default, no-op implementation of every hook (`Ok(Verdict::Continue)`
//!   and friends): implement only the hooks you need, and list exactly those in
//!   [`Plugin::HOOKS`]. The host calls only the hooks listed there (it reads them
//!   once through `describe`), so **a hook you implement but do not list is never
//!   called**, and a hook you list but do not implement costs a call that
//!   continues.
//! * [`export_plugin!`] generates the component's `hooks` export (including
//!   `describe`, built from [`Plugin::NAME`], [`Plugin::VERSION`] and
//!   [`Plugin::HOOKS`]).
//! * Helpers: logging ([`info`], [`warn`], …), the plugin's JSON config
//!   ([`config`]), reply/verdict constructors ([`Reply::reject`],
//!   [`Verdict::reject`], …), actions on the transaction ([`add_header`],
//!   [`remove_header`], [`add_symbol`], notes), and the granted capabilities
//!   ([`dns`], [`kv`], [`assets`]).
//!
//! A hook returns [`HookResult`]: `Err(text)` is a plugin failure, handled by
//! the `on_error` policy of the plugin's config entry like a trap (the text is
//! logged). Host-function errors ([`HostError`]) convert into it with `?`.
//!
//! ## Example
//!
//! A complete plugin (this is `sdk/examples/minimal.rs`, compiled by
//! `cargo test` in `plugins/`); its crate has `crate-type = ["cdylib"]` and is
//! built with `cargo build --release --target wasm32-wasip2`:
//!
#![doc = concat!("```ignore\n", include_str!("../examples/minimal.rs"), "```")]
//!
//! ## Building and testing
//!
//! `plugins/build` builds every plugin of the repository into
//! `plugins/dist/<name>.wasm`. The crate also compiles for the native target,
//! where [`export_plugin!`] exports nothing and every host function panics, so
//! the pure logic of a plugin can be unit-tested with a plain `cargo test`.

#![deny(missing_docs)]

/// The raw `wit-bindgen` output for the world `plugin` (generated from
/// `wit/poczta.wit`). Everything useful is re-exported at the crate root.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../wit",
        pub_export_macro: true,
    });
}

use bindings::poczta::plugin as wit;
use std::rc::Rc;

pub use wit::host::Level;
pub use wit::message::Message;
pub use wit::transaction::{add_header, add_symbol, get_note, remove_header, score, set_note, set_sender};
pub use wit::types::{
    Connection, Delivery, Envelope, Header, Hook, HostError, MimePart, PluginInfo, RcptVerdict, Reply,
    Verdict,
};

/// What every hook returns: `Err(text)` is a plugin failure (the `on_error`
/// policy applies and the text is logged).
pub type HookResult<T> = Result<T, String>;

/// A Poczta plugin: implement the hooks you need and list them in [`HOOKS`](Plugin::HOOKS),
/// then call [`export_plugin!`] once.
///
/// Every hook has a default implementation that returns "no opinion"
/// (`Continue`). Hooks are associated functions (no `self`): the host gives
/// each SMTP transaction a fresh instance, or, with `reuse = N` in the
/// plugin's config entry, an instance that served earlier transactions; keep
/// state between messages in the [`kv`] store, never a message's data in
/// statics.
pub trait Plugin {
    /// Short name, for logs and the score summary header.
    const NAME: &'static str;
    /// The plugin's own version, free-form; `env!("CARGO_PKG_VERSION")` is a good choice.
    const VERSION: &'static str;
    /// The hooks this plugin implements: exactly the methods below that you
    /// override. The host calls only these.
    const HOOKS: &'static [Hook];

    /// After TCP accept, before the greeting.
    fn connect(conn: Connection) -> HookResult<Verdict> {
        let _ = conn;
        Ok(Verdict::Continue)
    }
    /// After EHLO/HELO (`conn.helo` holds the name).
    fn helo(conn: Connection) -> HookResult<Verdict> {
        let _ = conn;
        Ok(Verdict::Continue)
    }
    /// After MAIL FROM (`env.rcpts` is empty).
    fn mail_from(env: Envelope) -> HookResult<Verdict> {
        let _ = env;
        Ok(Verdict::Continue)
    }
    /// For each RCPT TO: the routing hook.
    fn rcpt(env: Envelope, rcpt: String) -> HookResult<RcptVerdict> {
        let _ = (env, rcpt);
        Ok(RcptVerdict::Continue)
    }
    /// After DATA: look at the header fields.
    fn headers(env: Envelope, msg: &Message) -> HookResult<Verdict> {
        let _ = (env, msg);
        Ok(Verdict::Continue)
    }
    /// After `headers`: look at the MIME tree and the bodies.
    fn body(env: Envelope, msg: &Message) -> HookResult<Verdict> {
        let _ = (env, msg);
        Ok(Verdict::Continue)
    }
    /// For each final recipient, before the commit: choose the folder.
    fn deliver(env: Envelope, rcpt: String, msg: &Message) -> HookResult<Delivery> {
        let _ = (env, rcpt, msg);
        Ok(Delivery::Continue)
    }
}

/// The [`PluginInfo`] that `describe` returns for `P` (used by [`export_plugin!`]).
pub fn plugin_info<P: Plugin>() -> PluginInfo {
    let mut hooks: Vec<Hook> = Vec::with_capacity(P::HOOKS.len());
    for h in P::HOOKS {
        if !hooks.contains(h) {
            hooks.push(*h);
        }
    }
    PluginInfo {
        name: P::NAME.to_string(),
        version: P::VERSION.to_string(),
        hooks,
    }
}

/// Exports a [`Plugin`] implementation as the component's `hooks` interface.
///
/// Use it once per plugin crate, at module level: `poczta_plugin::export_plugin!(MyPlugin);`
/// (the argument is a type name in scope). On a non-wasm target it only
/// type-checks, so the crate still builds for native unit tests.
#[macro_export]
#[rustfmt::skip]
macro_rules! export_plugin {
    ($ty:ident) => {
        const _: () = {
            struct __PocztaPluginExport;
            impl $crate::bindings::exports::poczta::plugin::hooks::Guest for __PocztaPluginExport {
                fn describe() -> $crate::PluginInfo {
                    $crate::plugin_info::<$ty>()
                }
                fn connect(conn: $crate::Connection) -> $crate::HookResult<$crate::Verdict> {
                    <$ty as $crate::Plugin>::connect(conn)
                }
                fn helo(conn: $crate::Connection) -> $crate::HookResult<$crate::Verdict> {
                    <$ty as $crate::Plugin>::helo(conn)
                }
                fn mail_from(env: $crate::Envelope) -> $crate::HookResult<$crate::Verdict> {
                    <$ty as $crate::Plugin>::mail_from(env)
                }
                fn rcpt(
                    env: $crate::Envelope,
                    rcpt: ::std::string::String,
                ) -> $crate::HookResult<$crate::RcptVerdict> {
                    <$ty as $crate::Plugin>::rcpt(env, rcpt)
                }
                fn headers(
                    env: $crate::Envelope,
                    msg: &$crate::Message,
                ) -> $crate::HookResult<$crate::Verdict> {
                    <$ty as $crate::Plugin>::headers(env, msg)
                }
                fn body(env: $crate::Envelope, msg: &$crate::Message) -> $crate::HookResult<$crate::Verdict> {
                    <$ty as $crate::Plugin>::body(env, msg)
                }
                fn deliver(
                    env: $crate::Envelope,
                    rcpt: ::std::string::String,
                    msg: &$crate::Message,
                ) -> $crate::HookResult<$crate::Delivery> {
                    <$ty as $crate::Plugin>::deliver(env, rcpt, msg)
                }
            }
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::export!(__PocztaPluginExport with_types_in $crate::bindings);
            // Native builds (unit tests) export nothing; this symbol keeps the
            // hooks "used" there so that rustc does not report them as dead code.
            #[cfg(not(target_arch = "wasm32"))]
            #[doc(hidden)]
            #[unsafe(no_mangle)]
            pub extern "C" fn __poczta_plugin_native_anchor() -> usize {
                use $crate::bindings::exports::poczta::plugin::hooks::Guest as G;
                let hooks: [usize; 8] = [
                    <__PocztaPluginExport as G>::describe as usize,
                    <__PocztaPluginExport as G>::connect as usize,
                    <__PocztaPluginExport as G>::helo as usize,
                    <__PocztaPluginExport as G>::mail_from as usize,
                    <__PocztaPluginExport as G>::rcpt as usize,
                    <__PocztaPluginExport as G>::headers as usize,
                    <__PocztaPluginExport as G>::body as usize,
                    <__PocztaPluginExport as G>::deliver as usize,
                ];
                hooks.len()
            }
        };
    };
}

// ---------------------------------------------------------------- logging

/// Writes a log line at `level`, tagged by the host with the plugin's name.
pub fn log(level: Level, message: impl AsRef<str>) {
    wit::host::log(level, message.as_ref());
}
/// Logs at level `trace`.
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message);
}
/// Logs at level `debug`.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}
/// Logs at level `info`.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}
/// Logs at level `warn`.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}
/// Logs at level `error`.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}

// ---------------------------------------------------------------- config, time

/// The plugin's config table from the server config, as JSON text (`"{}"` when none).
pub fn config_json() -> String {
    wit::host::config()
}

/// The plugin's config table, deserialized with serde. Missing fields are
/// whatever `T`'s serde attributes say (use `#[serde(default)]`). The error is
/// a readable message, so `let cfg: MyConfig = config()?;` works in a hook.
pub fn config<T: serde::de::DeserializeOwned>() -> Result<T, String> {
    parse_config(&config_json())
}

/// State derived from the config (and assets), built once per instance.
///
/// With `reuse = N` in its `[[plugins]]` entry an instance serves up to N
/// transactions, so what a hook derives from its config — the parsed config
/// itself, a compiled pattern set, a signature database read from assets —
/// can be built on the first call and kept. `build` gets the config JSON.
/// Once built, the state is returned without asking the host for the config
/// again (a host call less per hook call): an instance's config never
/// changes, a reload makes new instances. One slot per type `S`; an error is
/// returned and not cached, so a broken config fails every call the way an
/// uncached parse would.
///
/// ```ignore
/// let state = poczta_plugin::per_instance(|json| State::build(json))?;
/// ```
pub fn per_instance<S: 'static>(build: impl FnOnce(&str) -> Result<S, String>) -> Result<Rc<S>, String> {
    if let Some(state) = slot::lookup::<S>(None) {
        return Ok(state);
    }
    slot::build(&config_json(), build)
}

/// [`per_instance`] with the config text given, for native unit tests
/// (there is no host): the slot is also keyed by the text, so a test may
/// build states for several configs in turn.
pub fn per_config_text<S: 'static>(
    json: &str,
    build: impl FnOnce(&str) -> Result<S, String>,
) -> Result<Rc<S>, String> {
    if let Some(state) = slot::lookup::<S>(Some(json)) {
        return Ok(state);
    }
    slot::build(json, build)
}

/// The per-instance slots of [`per_instance`]: one per state type, with the
/// config text it was built from.
mod slot {
    use std::any::{Any, TypeId};
    use std::cell::RefCell;
    use std::rc::Rc;

    type Slots = Vec<(TypeId, String, Rc<dyn Any>)>;
    thread_local! {
        static SLOTS: RefCell<Slots> = const { RefCell::new(Vec::new()) };
    }

    /// The state of type `S`, if built (from `json`, when given).
    pub(super) fn lookup<S: 'static>(json: Option<&str>) -> Option<Rc<S>> {
        let id = TypeId::of::<S>();
        SLOTS.with_borrow(|slots| {
            slots
                .iter()
                .find(|(t, text, _)| *t == id && json.is_none_or(|j| j == text))
                .and_then(|(_, _, s)| Rc::clone(s).downcast::<S>().ok())
        })
    }

    /// Builds the state of type `S` from `json` and keeps it in its slot.
    pub(super) fn build<S: 'static>(
        json: &str,
        build: impl FnOnce(&str) -> Result<S, String>,
    ) -> Result<Rc<S>, String> {
        let state = Rc::new(build(json)?);
        let id = TypeId::of::<S>();
        SLOTS.with_borrow_mut(|slots| {
            slots.retain(|(t, _, _)| *t != id);
            slots.push((id, json.to_owned(), Rc::clone(&state) as Rc<dyn Any>));
        });
        Ok(state)
    }
}

/// Parses a config JSON text as [`config`] does (for unit tests of a plugin's config type).
pub fn parse_config<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| format!("invalid plugin config: {e}"))
}

/// Seconds since the Unix epoch, from the host.
pub fn now() -> u64 {
    wit::host::now()
}

// ---------------------------------------------------------------- replies and verdicts

impl Reply {
    /// A reply with an explicit code (the host refuses a code outside the verdict's class).
    pub fn new(code: u16, enhanced: impl Into<String>, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: enhanced.into(),
            text: text.into(),
        }
    }
    /// `550 <enhanced> <text>`, for [`Verdict::Reject`] (e.g. `Reply::reject("5.7.1", "no")`).
    pub fn reject(enhanced: impl Into<String>, text: impl Into<String>) -> Reply {
        Reply::new(550, enhanced, text)
    }
    /// `450 <enhanced> <text>`, for [`Verdict::Tempfail`] (e.g. `"4.7.1"`).
    pub fn tempfail(enhanced: impl Into<String>, text: impl Into<String>) -> Reply {
        Reply::new(450, enhanced, text)
    }
    /// `421 <enhanced> <text>`, for [`Verdict::Disconnect`] (e.g. `"4.7.0"`).
    pub fn disconnect(enhanced: impl Into<String>, text: impl Into<String>) -> Reply {
        Reply::new(421, enhanced, text)
    }
    /// The same reply with another code.
    pub fn with_code(mut self, code: u16) -> Reply {
        self.code = code;
        self
    }
}

impl Verdict {
    /// `Verdict::Reject` with a 550 reply.
    pub fn reject(enhanced: impl Into<String>, text: impl Into<String>) -> Verdict {
        Verdict::Reject(Reply::reject(enhanced, text))
    }
    /// `Verdict::Tempfail` with a 450 reply.
    pub fn tempfail(enhanced: impl Into<String>, text: impl Into<String>) -> Verdict {
        Verdict::Tempfail(Reply::tempfail(enhanced, text))
    }
    /// `Verdict::Disconnect` with a 421 reply.
    pub fn disconnect(enhanced: impl Into<String>, text: impl Into<String>) -> Verdict {
        Verdict::Disconnect(Reply::disconnect(enhanced, text))
    }
    /// `Verdict::Quarantine` with a reason.
    pub fn quarantine(reason: impl Into<String>) -> Verdict {
        Verdict::Quarantine(reason.into())
    }
}

impl RcptVerdict {
    /// `RcptVerdict::Reject` with a 550 reply.
    pub fn reject(enhanced: impl Into<String>, text: impl Into<String>) -> RcptVerdict {
        RcptVerdict::Reject(Reply::reject(enhanced, text))
    }
    /// `RcptVerdict::Tempfail` with a 450 reply.
    pub fn tempfail(enhanced: impl Into<String>, text: impl Into<String>) -> RcptVerdict {
        RcptVerdict::Tempfail(Reply::tempfail(enhanced, text))
    }
    /// `RcptVerdict::Redirect` to these addresses (must not be empty).
    pub fn redirect<I, S>(to: I) -> RcptVerdict
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RcptVerdict::Redirect(to.into_iter().map(Into::into).collect())
    }
}

impl Message {
    /// The decoded (RFC 2047) Subject, if there is one.
    pub fn subject(&self) -> Option<String> {
        self.header_decoded("subject")
    }
}

impl Hook {
    /// The hook's WIT name (`"mail-from"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Helo => "helo",
            Hook::MailFrom => "mail-from",
            Hook::Rcpt => "rcpt",
            Hook::Headers => "headers",
            Hook::Body => "body",
            Hook::Deliver => "deliver",
        }
    }
    /// Every hook, in the order the host calls them.
    pub const ALL: &'static [Hook] = &[
        Hook::Connect,
        Hook::Helo,
        Hook::MailFrom,
        Hook::Rcpt,
        Hook::Headers,
        Hook::Body,
        Hook::Deliver,
    ];
}

// ---------------------------------------------------------------- host errors

impl HostError {
    /// The WIT name of the error case: `"not-granted"`, `"timeout"`, `"quota"` or `"failed"`.
    pub fn kind(&self) -> &'static str {
        match self {
            HostError::NotGranted => "not-granted",
            HostError::Timeout => "timeout",
            HostError::Quota => "quota",
            HostError::Failed(_) => "failed",
        }
    }
    /// A short readable text: the kind, or `"failed: <message>"`. (The
    /// generated `Display` prints the `Debug` form.)
    pub fn text(&self) -> String {
        match self {
            HostError::Failed(msg) => format!("failed: {msg}"),
            other => other.kind().to_string(),
        }
    }
}

impl From<HostError> for String {
    fn from(e: HostError) -> String {
        e.text()
    }
}

// ---------------------------------------------------------------- capabilities

/// DNS look-ups done by the host (cached, time-limited). Needs the `dns` grant;
/// without it every call returns `Err(HostError::NotGranted)`.
pub mod dns {
    pub use crate::wit::dns::{Mx, dnsbl, lookup_a, lookup_aaaa, lookup_mx, lookup_ptr, lookup_txt};
}

/// The plugin's private persistent key-value store. Needs the `kv` grant;
/// without it every call returns `Err(HostError::NotGranted)`.
pub mod kv {
    use crate::HostError;
    pub use crate::wit::kv::{delete, get, increment};

    /// Sets `key` to `value`; `ttl_secs` = 0 keeps it forever.
    pub fn set(key: &str, value: impl AsRef<[u8]>, ttl_secs: u64) -> Result<(), HostError> {
        crate::wit::kv::set(key, value.as_ref(), ttl_secs)
    }
    /// The value of `key` as UTF-8 text (invalid UTF-8 is replaced).
    pub fn get_string(key: &str) -> Result<Option<String>, HostError> {
        Ok(get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

/// Read-only named assets from the plugin's config entry. Needs the `assets`
/// grant; without it `read` returns `Err(HostError::NotGranted)`.
pub mod assets {
    use crate::HostError;
    pub use crate::wit::assets::{names, read};

    /// The content of asset `name` as UTF-8 text (invalid UTF-8 is replaced).
    pub fn read_string(name: &str) -> Result<String, HostError> {
        Ok(String::from_utf8_lossy(&read(name)?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct P;
    impl Plugin for P {
        const NAME: &'static str = "p";
        const VERSION: &'static str = "1";
        const HOOKS: &'static [Hook] = &[Hook::Headers, Hook::Rcpt, Hook::Headers];
    }

    #[test]
    fn per_instance_state_is_built_once_per_config_text() {
        use std::cell::Cell;
        let builds = Cell::new(0);
        let build = |json: &str| {
            builds.set(builds.get() + 1);
            if json == "bad" {
                Err("bad config".to_string())
            } else {
                Ok(json.len())
            }
        };
        assert_eq!(*per_config_text("{}", build).unwrap(), 2);
        assert_eq!(*per_config_text("{}", build).unwrap(), 2);
        assert_eq!(builds.get(), 1);
        // Another text rebuilds; a failed build is not cached.
        assert_eq!(*per_config_text("{\"a\":1}", build).unwrap(), 7);
        assert!(per_config_text("bad", build).is_err());
        assert!(per_config_text("bad", build).is_err());
        assert_eq!(builds.get(), 4);
        // Slots are per type.
        assert_eq!(*per_config_text("{}", |_| Ok::<_, String>("s")).unwrap(), "s");
        // What `per_instance` finds without reading the config again: the
        // state of the type, whatever text it came from.
        assert_eq!(slot::lookup::<usize>(None).as_deref(), Some(&7));
        assert_eq!(slot::lookup::<usize>(Some("{}")), None);
        assert_eq!(slot::lookup::<u8>(None), None);
    }

    #[test]
    fn describe_lists_declared_hooks_once() {
        let info = plugin_info::<P>();
        assert_eq!(info.name, "p");
        assert_eq!(info.version, "1");
        assert_eq!(info.hooks, vec![Hook::Headers, Hook::Rcpt]);
    }

    #[test]
    fn default_hooks_continue() {
        let conn = Connection {
            client_ip: "192.0.2.1".into(),
            client_port: 25,
            listener: "smtp".into(),
            tls: false,
            authenticated: None,
            helo: String::new(),
        };
        assert!(matches!(P::connect(conn.clone()), Ok(Verdict::Continue)));
        let env = Envelope {
            connection: conn,
            mail_from: String::new(),
            rcpts: vec![],
        };
        assert!(matches!(
            P::rcpt(env.clone(), "a@b".into()),
            Ok(RcptVerdict::Continue)
        ));
        assert!(matches!(P::mail_from(env), Ok(Verdict::Continue)));
    }

    #[test]
    fn reply_constructors() {
        let r = Reply::reject("5.7.1", "no");
        assert_eq!(
            (r.code, r.enhanced.as_str(), r.text.as_str()),
            (550, "5.7.1", "no")
        );
        assert_eq!(Reply::tempfail("4.7.1", "later").code, 450);
        assert_eq!(Reply::disconnect("4.7.0", "bye").code, 421);
        assert_eq!(Reply::reject("5.7.1", "x").with_code(554).code, 554);
        assert!(matches!(
            Verdict::reject("5.7.1", "x"),
            Verdict::Reject(Reply { code: 550, .. })
        ));
        match RcptVerdict::redirect(["a@x", "b@y"]) {
            RcptVerdict::Redirect(v) => assert_eq!(v, vec!["a@x", "b@y"]),
            _ => panic!(),
        }
    }

    #[test]
    fn host_error_text() {
        assert_eq!(HostError::NotGranted.text(), "not-granted");
        assert_eq!(String::from(HostError::Failed("x".into())), "failed: x");
        assert_eq!(HostError::Quota.kind(), "quota");
    }

    #[test]
    fn config_parsing() {
        #[derive(serde::Deserialize, Debug)]
        struct C {
            #[serde(default)]
            w: f64,
        }
        assert_eq!(parse_config::<C>("").unwrap().w, 0.0);
        assert_eq!(parse_config::<C>(r#"{"w": 2.5}"#).unwrap().w, 2.5);
        assert!(
            parse_config::<C>("[")
                .unwrap_err()
                .starts_with("invalid plugin config")
        );
    }
}
