//! A complete plugin: scores messages without a Date header and refuses
//! a configured sender. Config: `config = { blocked = "spam@example.org" }`.
use poczta_plugin::{Envelope, Hook, HookResult, Message, Plugin, Verdict};

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Config {
    blocked: String,
}

struct Minimal;

impl Plugin for Minimal {
    const NAME: &'static str = "minimal";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    // Exactly the hooks implemented below.
    const HOOKS: &'static [Hook] = &[Hook::MailFrom, Hook::Headers];

    fn mail_from(env: Envelope) -> HookResult<Verdict> {
        let cfg: Config = poczta_plugin::config()?;
        if !cfg.blocked.is_empty() && env.mail_from.eq_ignore_ascii_case(&cfg.blocked) {
            return Ok(Verdict::reject("5.7.1", "Sender refused by policy"));
        }
        Ok(Verdict::Continue)
    }

    fn headers(_env: Envelope, msg: &Message) -> HookResult<Verdict> {
        if msg.header("date").is_empty() {
            poczta_plugin::add_symbol("MISSING_DATE", 1.0, "no Date header");
            poczta_plugin::info("message without a Date header");
        }
        Ok(Verdict::Continue)
    }
}

poczta_plugin::export_plugin!(Minimal);
