//! `forward`: aliases, catch-all per domain, per-user forwarding with an
//! optional kept copy, simple mailing lists and loop protection.
//!
//! Hooks: `rcpt` (routing: each recipient is expanded through the table in
//! [`route`] and answered with `redirect(targets)`, or refused) and
//! `headers` (loop checks on the received message, and the `List-Id`,
//! `List-Post`, `Precedence: list` and `Delivered-To` fields of what the
//! `rcpt` hook expanded, remembered in transaction notes).
//!
//! See README.md in this directory for the config and its defaults.

pub mod route;

use std::rc::Rc;

use poczta_plugin::{Envelope, Hook, HookResult, Message, Plugin, RcptVerdict, Reply, Verdict};
use route::Config;

/// Note: the addresses a rule rewrote in this transaction, one a line.
pub const NOTE_EXPANDED: &str = "forward.expanded";
/// Note: the lists passed through, `address<TAB>list-id` one a line.
pub const NOTE_LISTS: &str = "forward.lists";
/// Most `Delivered-To` fields the plugin adds to one message.
const MAX_DELIVERED_TO: usize = 10;

/// The normalized config, built once per instance (`reuse`): the rcpt hook
/// runs for every recipient, and parsing the alias tables cost more than
/// routing one address.
fn config() -> HookResult<Rc<Config>> {
    poczta_plugin::per_instance(|json| poczta_plugin::parse_config::<Config>(json).map(Config::normalized))
}

/// Appends lines to a note, skipping lines it already holds.
pub fn merge_note(old: Option<String>, lines: &[String]) -> String {
    let mut all: Vec<String> = old
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    for l in lines {
        if !all.contains(l) {
            all.push(l.clone());
        }
    }
    all.join("\n")
}

/// The header fields for the lists of a transaction: one `List-Id` (a
/// message carries one; the first list wins), its `List-Post`, and
/// `Precedence: list`.
pub fn list_headers(note: &str) -> Vec<(String, String)> {
    let Some((address, list_id)) = note.lines().find_map(|l| l.split_once('\t')) else {
        return Vec::new();
    };
    vec![
        ("List-Id".into(), list_id.into()),
        ("List-Post".into(), format!("<mailto:{address}>")),
        ("Precedence".into(), "list".into()),
    ]
}

struct Forwarder;

impl Plugin for Forwarder {
    const NAME: &'static str = "forward";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Rcpt, Hook::Headers];

    fn rcpt(env: Envelope, rcpt: String) -> HookResult<RcptVerdict> {
        let cfg = config()?;
        let expansion = match route::expand(&cfg, &rcpt, &env.mail_from) {
            Ok(e) => e,
            Err(refusal) => {
                let (code, enhanced, text) = refusal.reply();
                poczta_plugin::info(format!("refused {rcpt} from <{}>: {text}", env.mail_from));
                return Ok(RcptVerdict::Reject(Reply::new(code, enhanced, text)));
            }
        };
        if expansion.unchanged(&route::normalize(&rcpt)) {
            return Ok(RcptVerdict::Continue);
        }
        poczta_plugin::info(format!(
            "{rcpt} from <{}> -> {}{}",
            env.mail_from,
            expansion.targets.join(", "),
            if expansion.cycle { " (cycle cut)" } else { "" }
        ));
        poczta_plugin::set_note(
            NOTE_EXPANDED,
            &merge_note(poczta_plugin::get_note(NOTE_EXPANDED), &expansion.expanded),
        );
        if !expansion.lists.is_empty() {
            let lines: Vec<String> = expansion
                .lists
                .iter()
                .map(|l| format!("{}\t{}", l.address, l.list_id))
                .collect();
            poczta_plugin::set_note(
                NOTE_LISTS,
                &merge_note(poczta_plugin::get_note(NOTE_LISTS), &lines),
            );
        }
        // A list's copies go out with its bounce address as the envelope
        // sender (the whole transaction's: the host has one per message).
        if let Some(bounce) = expansion.lists.iter().find_map(|l| l.bounce.clone()) {
            poczta_plugin::set_sender(&bounce);
        }
        Ok(RcptVerdict::Redirect(expansion.targets))
    }

    fn headers(_env: Envelope, msg: &Message) -> HookResult<Verdict> {
        let cfg = config()?;
        let expanded: Vec<String> = poczta_plugin::get_note(NOTE_EXPANDED)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        let received = msg.header("received").len();
        let delivered_to = msg.header("delivered-to");
        if let Some(text) = route::hop_check(cfg.max_hops, received, &delivered_to, &expanded) {
            poczta_plugin::info(format!("refused the message: {text}"));
            return Ok(Verdict::Reject(Reply::new(554, "5.4.6", text)));
        }
        // Delivered-To marks the trip through our aliases and forwards, so
        // a message that comes back (a forward to a remote box that forwards
        // here again) is caught by the check above on its next pass.
        for addr in expanded.iter().take(MAX_DELIVERED_TO) {
            poczta_plugin::add_header("Delivered-To", addr);
        }
        if let Some(note) = poczta_plugin::get_note(NOTE_LISTS) {
            for (name, value) in list_headers(&note) {
                poczta_plugin::remove_header(&name);
                poczta_plugin::add_header(&name, &value);
            }
        }
        Ok(Verdict::Continue)
    }
}

poczta_plugin::export_plugin!(Forwarder);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_merge_without_duplicates() {
        assert_eq!(merge_note(None, &["a".into(), "b".into()]), "a\nb");
        assert_eq!(
            merge_note(Some("a\nb".into()), &["b".into(), "c".into()]),
            "a\nb\nc"
        );
    }

    #[test]
    fn list_headers_take_the_first_list() {
        assert!(list_headers("").is_empty());
        let h = list_headers("team@example.test\t<team.example.test>\nnews@x\t<news.x>");
        assert_eq!(
            h,
            [
                ("List-Id".to_string(), "<team.example.test>".to_string()),
                ("List-Post".to_string(), "<mailto:team@example.test>".to_string()),
                ("Precedence".to_string(), "list".to_string()),
            ]
        );
    }
}
