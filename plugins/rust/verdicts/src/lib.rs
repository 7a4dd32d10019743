//! `verdicts`: returns, at each hook, the verdict named in its config.
//!
//! A test plugin for the host: it implements (and declares) all seven hooks,
//! so the host's tests can map every verdict of every hook end to end. It
//! calls no host function except `config`.
//!
//! # Config format
//!
//! One optional key per hook, named as in the WIT (`"mail-from"`; `"mail_from"`
//! is accepted too). A missing key means `continue`. Example (JSON, as the
//! host hands it to the plugin; in the TOML server config the same table):
//!
//! ```json
//! {
//!   "connect":   "continue",
//!   "helo":      "accept",
//!   "mail-from": {"tempfail": [451, "4.7.1", "try later"]},
//!   "rcpt":      {"redirect": ["a@x", "b@y"]},
//!   "headers":   {"quarantine": "looks odd"},
//!   "body":      {"reject": [554, "5.7.1", "no"]},
//!   "deliver":   "junk"
//! }
//! ```
//!
//! Values, by hook:
//!
//! | hook | unit cases (a string) | cases with data (a one-key object) |
//! |---|---|---|
//! | `connect`, `helo`, `mail-from`, `headers`, `body` (`verdict`) | `"continue"`, `"accept"`, `"discard"` | `{"reject": R}`, `{"tempfail": R}`, `{"disconnect": R}`, `{"quarantine": "reason"}` |
//! | `rcpt` (`rcpt-verdict`) | `"continue"`, `"accept"` | `{"reject": R}`, `{"tempfail": R}`, `{"redirect": ["addr", …]}` |
//! | `deliver` (`delivery`) | `"continue"`, `"inbox"`, `"junk"`, `"discard"` | `{"quarantine": "reason"}` |
//!
//! A reply `R` is `[code, "enhanced", "text"]` or
//! `{"code": 550, "enhanced": "5.7.1", "text": "no"}` (`enhanced` and `text`
//! may be left out there: empty). The codes are passed through unchecked, so
//! the host's refusal of out-of-class codes can be tested too.
//!
//! Two more values work at every hook, to test the `on_error` policy:
//! `{"error": "text"}` makes the hook return `Err("text")`, and `"trap"`
//! makes it panic (a trap). A value that is not understood makes the hook
//! return `Err` with a message naming the hook.

use poczta_plugin::{
    Connection, Delivery, Envelope, Hook, HookResult, Message, Plugin, RcptVerdict, Reply, Verdict,
};
use serde_json::Value;

/// One hook's configured outcome, parsed into `(name, payload)`.
fn split<'a>(hook: &str, v: &'a Value) -> Result<(&'a str, Option<&'a Value>), String> {
    match v {
        Value::String(s) => Ok((s.as_str(), None)),
        Value::Object(m) if m.len() == 1 => {
            let (k, p) = m.iter().next().expect("one entry");
            Ok((k.as_str(), Some(p)))
        }
        other => Err(format!(
            "verdicts: {hook}: expected a string or a one-key object, got {other}"
        )),
    }
}

fn reply(hook: &str, v: Option<&Value>) -> Result<Reply, String> {
    let bad = || format!("verdicts: {hook}: a reply is [code, enhanced, text] or {{code, enhanced, text}}");
    let v = v.ok_or_else(bad)?;
    let code = |c: &Value| c.as_u64().and_then(|c| u16::try_from(c).ok()).ok_or_else(bad);
    let text = |t: Option<&Value>| match t {
        None => Ok(String::new()),
        Some(t) => t.as_str().map(str::to_string).ok_or_else(bad),
    };
    match v {
        Value::Array(a) if a.len() == 3 => {
            Ok(Reply::new(code(&a[0])?, text(Some(&a[1]))?, text(Some(&a[2]))?))
        }
        Value::Object(m) => Ok(Reply::new(
            code(m.get("code").ok_or_else(bad)?)?,
            text(m.get("enhanced"))?,
            text(m.get("text"))?,
        )),
        _ => Err(bad()),
    }
}

fn string(hook: &str, v: Option<&Value>) -> Result<String, String> {
    v.and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("verdicts: {hook}: expected a string"))
}

/// `{"error": ..}` and `"trap"`, common to all hooks; `None` when `name` is neither.
fn failure<T>(hook: &str, name: &str, payload: Option<&Value>) -> Option<HookResult<T>> {
    match name {
        "error" => Some(Err(payload
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("verdicts: error at {hook}")))),
        "trap" => panic!("verdicts: trap at {hook}"),
        _ => None,
    }
}

fn unknown<T>(hook: &str, name: &str) -> HookResult<T> {
    Err(format!("verdicts: {hook}: unknown outcome '{name}'"))
}

/// The configured value for `hook` in `config` (`None`: continue).
pub fn lookup<'a>(config: &'a Value, hook: &str) -> Option<&'a Value> {
    config.get(hook).or_else(|| config.get(hook.replace('-', "_")))
}

/// The configured `verdict` of `hook` (one of the five hooks returning `verdict`).
pub fn verdict(config: &Value, hook: &str) -> HookResult<Verdict> {
    let Some(v) = lookup(config, hook) else {
        return Ok(Verdict::Continue);
    };
    let (name, p) = split(hook, v)?;
    if let Some(r) = failure(hook, name, p) {
        return r;
    }
    Ok(match name {
        "continue" => Verdict::Continue,
        "accept" => Verdict::Accept,
        "discard" => Verdict::Discard,
        "reject" => Verdict::Reject(reply(hook, p)?),
        "tempfail" => Verdict::Tempfail(reply(hook, p)?),
        "disconnect" => Verdict::Disconnect(reply(hook, p)?),
        "quarantine" => Verdict::Quarantine(string(hook, p)?),
        other => return unknown(hook, other),
    })
}

/// The configured `rcpt-verdict`.
pub fn rcpt_verdict(config: &Value) -> HookResult<RcptVerdict> {
    let hook = "rcpt";
    let Some(v) = lookup(config, hook) else {
        return Ok(RcptVerdict::Continue);
    };
    let (name, p) = split(hook, v)?;
    if let Some(r) = failure(hook, name, p) {
        return r;
    }
    Ok(match name {
        "continue" => RcptVerdict::Continue,
        "accept" => RcptVerdict::Accept,
        "reject" => RcptVerdict::Reject(reply(hook, p)?),
        "tempfail" => RcptVerdict::Tempfail(reply(hook, p)?),
        "redirect" => {
            let to = p
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .map(|s| s.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| format!("verdicts: {hook}: redirect takes a list of addresses"))?;
            RcptVerdict::Redirect(to)
        }
        other => return unknown(hook, other),
    })
}

/// The configured `delivery`.
pub fn delivery(config: &Value) -> HookResult<Delivery> {
    let hook = "deliver";
    let Some(v) = lookup(config, hook) else {
        return Ok(Delivery::Continue);
    };
    let (name, p) = split(hook, v)?;
    if let Some(r) = failure(hook, name, p) {
        return r;
    }
    Ok(match name {
        "continue" => Delivery::Continue,
        "inbox" => Delivery::Inbox,
        "junk" => Delivery::Junk,
        "discard" => Delivery::Discard,
        "quarantine" => Delivery::Quarantine(string(hook, p)?),
        other => return unknown(hook, other),
    })
}

fn config() -> HookResult<Value> {
    poczta_plugin::config()
}

struct Verdicts;

impl Plugin for Verdicts {
    const NAME: &'static str = "verdicts";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = Hook::ALL;

    fn connect(_conn: Connection) -> HookResult<Verdict> {
        verdict(&config()?, "connect")
    }
    fn helo(_conn: Connection) -> HookResult<Verdict> {
        verdict(&config()?, "helo")
    }
    fn mail_from(_env: Envelope) -> HookResult<Verdict> {
        verdict(&config()?, "mail-from")
    }
    fn rcpt(_env: Envelope, _rcpt: String) -> HookResult<RcptVerdict> {
        rcpt_verdict(&config()?)
    }
    fn headers(_env: Envelope, _msg: &Message) -> HookResult<Verdict> {
        verdict(&config()?, "headers")
    }
    fn body(_env: Envelope, _msg: &Message) -> HookResult<Verdict> {
        verdict(&config()?, "body")
    }
    fn deliver(_env: Envelope, _rcpt: String, _msg: &Message) -> HookResult<Delivery> {
        delivery(&config()?)
    }
}

poczta_plugin::export_plugin!(Verdicts);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documented_example() {
        let c = json!({
            "connect": "continue",
            "helo": "accept",
            "mail-from": {"tempfail": [451, "4.7.1", "try later"]},
            "rcpt": {"redirect": ["a@x", "b@y"]},
            "headers": {"quarantine": "looks odd"},
            "body": {"reject": [554, "5.7.1", "no"]},
            "deliver": "junk"
        });
        assert!(matches!(verdict(&c, "connect"), Ok(Verdict::Continue)));
        assert!(matches!(verdict(&c, "helo"), Ok(Verdict::Accept)));
        match verdict(&c, "mail-from").unwrap() {
            Verdict::Tempfail(r) => assert_eq!((r.code, &*r.enhanced, &*r.text), (451, "4.7.1", "try later")),
            v => panic!("{v:?}"),
        }
        match rcpt_verdict(&c).unwrap() {
            RcptVerdict::Redirect(to) => assert_eq!(to, ["a@x", "b@y"]),
            v => panic!("{v:?}"),
        }
        assert!(matches!(verdict(&c, "headers"), Ok(Verdict::Quarantine(r)) if r == "looks odd"));
        assert!(matches!(
            verdict(&c, "body"),
            Ok(Verdict::Reject(Reply { code: 554, .. }))
        ));
        assert!(matches!(delivery(&c), Ok(Delivery::Junk)));
    }

    #[test]
    fn missing_means_continue() {
        let c = json!({});
        for h in ["connect", "helo", "mail-from", "headers", "body"] {
            assert!(matches!(verdict(&c, h), Ok(Verdict::Continue)));
        }
        assert!(matches!(rcpt_verdict(&c), Ok(RcptVerdict::Continue)));
        assert!(matches!(delivery(&c), Ok(Delivery::Continue)));
    }

    #[test]
    fn every_case() {
        let v = |x: Value| verdict(&json!({ "body": x }), "body");
        assert!(matches!(v(json!("discard")), Ok(Verdict::Discard)));
        assert!(matches!(
            v(json!({"disconnect": [421, "4.7.0", "bye"]})),
            Ok(Verdict::Disconnect(Reply { code: 421, .. }))
        ));
        assert!(matches!(
            v(json!({"reject": {"code": 250}})),
            Ok(Verdict::Reject(Reply { code: 250, .. }))
        ));
        assert!(
            matches!(v(json!({"tempfail": {"code": 451, "text": "t"}})), Ok(Verdict::Tempfail(r)) if r.text == "t" && r.enhanced.is_empty())
        );
        assert_eq!(v(json!({"error": "boom"})).unwrap_err(), "boom");
        assert!(v(json!("redirect")).is_err());
        assert!(v(json!({"reject": [550]})).is_err());
        assert!(v(json!(42)).is_err());
        let r = |x: Value| rcpt_verdict(&json!({ "rcpt": x }));
        assert!(matches!(r(json!("accept")), Ok(RcptVerdict::Accept)));
        assert!(matches!(
            r(json!({"reject": [550, "5.1.1", "no such user"]})),
            Ok(RcptVerdict::Reject(_))
        ));
        assert!(matches!(
            r(json!({"tempfail": [450, "4.2.1", "busy"]})),
            Ok(RcptVerdict::Tempfail(_))
        ));
        assert!(r(json!({"redirect": "a@x"})).is_err());
        assert!(r(json!("discard")).is_err());
        let d = |x: Value| delivery(&json!({ "deliver": x }));
        assert!(matches!(d(json!("inbox")), Ok(Delivery::Inbox)));
        assert!(matches!(d(json!("discard")), Ok(Delivery::Discard)));
        assert!(matches!(d(json!({"quarantine": "q"})), Ok(Delivery::Quarantine(q)) if q == "q"));
        assert!(d(json!("accept")).is_err());
    }

    #[test]
    fn underscore_alias() {
        let c = json!({"mail_from": "accept"});
        assert!(matches!(verdict(&c, "mail-from"), Ok(Verdict::Accept)));
    }

    #[test]
    #[should_panic(expected = "verdicts: trap at helo")]
    fn trap() {
        let _ = verdict(&json!({"helo": "trap"}), "helo");
    }
}
