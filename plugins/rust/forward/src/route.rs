//! The routing table and its expansion: pure, no host calls, so every rule
//! is unit-tested natively.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// One user's forwarding.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// Where the user's mail goes.
    pub to: Vec<String>,
    /// Also deliver to the user's own mailbox.
    #[serde(default)]
    pub keep_copy: bool,
}

/// A simple mailing list.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct List {
    /// Every member receives one copy.
    pub members: Vec<String>,
    /// The `List-Id` (RFC 2919) label, e.g. `team.example.test`; default:
    /// the list address with `@` replaced by `.`.
    pub id: Option<String>,
    /// A description for `List-Id` (`Team <team.example.test>`).
    pub name: Option<String>,
    /// When not empty, only these envelope senders may post (an
    /// announcement list); others get `550 5.7.1`.
    pub senders: Vec<String>,
    /// The list's bounce address (e.g. `team-bounces@example.test`): the
    /// envelope sender of the copies to the members, so that bounces go to
    /// the list owner and not to whoever posted. Must be in a local domain
    /// of the server (the host ignores anything else).
    pub bounce: Option<String>,
}

/// Catch-all for one domain.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CatchAll {
    /// The mailbox that receives mail for unknown local parts.
    pub mailbox: String,
    /// Local parts that are routed as they are (the real mailboxes of the
    /// domain: the plugin cannot see the user table).
    #[serde(default)]
    pub except: Vec<String>,
}

/// The plugin's config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `alias address → targets`.
    pub aliases: BTreeMap<String, Vec<String>>,
    /// `user address → forwarding`.
    pub forwards: BTreeMap<String, Forward>,
    /// `list address → list`.
    pub lists: BTreeMap<String, List>,
    /// `domain → catch-all`.
    pub catch_all: BTreeMap<String, CatchAll>,
    /// How deep aliases may nest (alias → alias → …).
    pub max_depth: usize,
    /// Most final targets of one recipient (the host takes at most 100).
    pub max_targets: usize,
    /// Most `Received` plus `Delivered-To` fields a message may carry.
    pub max_hops: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            aliases: BTreeMap::new(),
            forwards: BTreeMap::new(),
            lists: BTreeMap::new(),
            catch_all: BTreeMap::new(),
            max_depth: 8,
            max_targets: 100,
            max_hops: 30,
        }
    }
}

/// Lower-cased, trimmed, without angle brackets.
pub fn normalize(addr: &str) -> String {
    addr.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase()
}

impl Config {
    /// Lower-cases every address key and target, so look-ups are exact.
    pub fn normalized(self) -> Config {
        let norm_list = |v: Vec<String>| v.iter().map(|a| normalize(a)).collect::<Vec<_>>();
        Config {
            aliases: self
                .aliases
                .into_iter()
                .map(|(k, v)| (normalize(&k), norm_list(v)))
                .collect(),
            forwards: self
                .forwards
                .into_iter()
                .map(|(k, f)| {
                    (
                        normalize(&k),
                        Forward {
                            to: norm_list(f.to),
                            keep_copy: f.keep_copy,
                        },
                    )
                })
                .collect(),
            lists: self
                .lists
                .into_iter()
                .map(|(k, l)| {
                    (
                        normalize(&k),
                        List {
                            members: norm_list(l.members),
                            senders: norm_list(l.senders),
                            ..l
                        },
                    )
                })
                .collect(),
            catch_all: self
                .catch_all
                .into_iter()
                .map(|(d, c)| {
                    (
                        d.trim().to_lowercase(),
                        CatchAll {
                            mailbox: normalize(&c.mailbox),
                            except: c.except.iter().map(|l| l.trim().to_lowercase()).collect(),
                        },
                    )
                })
                .collect(),
            ..self
        }
    }
}

/// A list a recipient expanded through, for the headers hook.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListHit {
    /// The list address.
    pub address: String,
    /// The `List-Id` value (`Name <label>` or `<label>`).
    pub list_id: String,
    /// The list's bounce address, if it has one.
    pub bounce: Option<String>,
}

/// What one recipient becomes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Expansion {
    /// The final addresses, in order, each once.
    pub targets: Vec<String>,
    /// Every address a rule rewrote (alias, forward, list, catch-all), in order.
    pub expanded: Vec<String>,
    /// The lists passed through.
    pub lists: Vec<ListHit>,
    /// A rule revisited an address already on the path (a cycle), which
    /// was dropped.
    pub cycle: bool,
}

impl Expansion {
    /// Whether no rule applied (the recipient goes to the host as it is).
    pub fn unchanged(&self, rcpt: &str) -> bool {
        self.expanded.is_empty() && self.targets.len() == 1 && self.targets[0] == rcpt
    }
}

/// Why a recipient is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// A forwarding loop, or nesting deeper than `max_depth`: `554 5.4.6`.
    Loop(String),
    /// A list that accepts posts only from its senders: `550 5.7.1`.
    NotAllowed(String),
    /// More targets than `max_targets`: `550 5.5.3`-like, reported as 5.7.1.
    TooMany(String),
}

impl Refusal {
    /// `(code, enhanced, text)` for the rcpt reply.
    pub fn reply(&self) -> (u16, &'static str, String) {
        match self {
            Refusal::Loop(t) => (554, "5.4.6", t.clone()),
            Refusal::NotAllowed(t) => (550, "5.7.1", t.clone()),
            Refusal::TooMany(t) => (550, "5.5.3", t.clone()),
        }
    }
}

fn list_id(address: &str, list: &List) -> String {
    let label = list.id.clone().unwrap_or_else(|| address.replace('@', "."));
    match &list.name {
        Some(n) if !n.trim().is_empty() => format!("{} <{label}>", n.trim()),
        _ => format!("<{label}>"),
    }
}

/// Expands one recipient through aliases, lists, forwards and catch-alls,
/// depth first. An address met again on the way (a cycle, or the same
/// member through two aliases) is used once; a forward without a copy that
/// only leads back to addresses already seen ends with no target at all,
/// which is a loop.
pub fn expand(cfg: &Config, rcpt: &str, mail_from: &str) -> Result<Expansion, Refusal> {
    let rcpt = normalize(rcpt);
    let mail_from = normalize(mail_from);
    let mut out = Expansion::default();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    // (address, depth, the path from the recipient, for the loop text)
    let mut stack: Vec<(String, usize)> = vec![(rcpt.clone(), 0)];
    while let Some((addr, depth)) = stack.pop() {
        if !seen.insert(addr.clone()) {
            // Met before: either the same member reached twice (harmless)
            // or a cycle; both end here.
            out.cycle |= out.expanded.contains(&addr);
            continue;
        }
        if depth > cfg.max_depth {
            return Err(Refusal::Loop(format!(
                "Alias expansion of {rcpt} nests deeper than {} levels (loop?)",
                cfg.max_depth
            )));
        }
        let (local, domain) = addr.rsplit_once('@').unwrap_or((addr.as_str(), ""));
        let next: Vec<String> = if let Some(list) = cfg.lists.get(&addr) {
            if !list.senders.is_empty() && !list.senders.contains(&mail_from) {
                return Err(Refusal::NotAllowed(format!(
                    "The list {addr} accepts posts only from its senders"
                )));
            }
            out.lists.push(ListHit {
                address: addr.clone(),
                list_id: list_id(&addr, list),
                bounce: list.bounce.clone(),
            });
            list.members.clone()
        } else if let Some(targets) = cfg.aliases.get(&addr) {
            targets.clone()
        } else if let Some(fwd) = cfg.forwards.get(&addr) {
            if fwd.keep_copy {
                push_target(&mut out.targets, &addr);
            }
            fwd.to.clone()
        } else if let Some(ca) = cfg
            .catch_all
            .get(domain)
            .filter(|ca| ca.mailbox != addr && !ca.except.iter().any(|e| e == local))
        {
            vec![ca.mailbox.clone()]
        } else {
            push_target(&mut out.targets, &addr);
            if out.targets.len() > cfg.max_targets {
                return Err(Refusal::TooMany(format!(
                    "{rcpt} expands to more than {} addresses",
                    cfg.max_targets
                )));
            }
            continue;
        };
        out.expanded.push(addr.clone());
        // Reversed so that the stack pops them in config order.
        for t in next.into_iter().rev() {
            stack.push((t, depth + 1));
        }
    }
    if out.targets.is_empty() {
        return Err(Refusal::Loop(format!(
            "Mail forwarding loop for {rcpt}: it expands to no mailbox"
        )));
    }
    Ok(out)
}

fn push_target(targets: &mut Vec<String>, addr: &str) {
    if !targets.iter().any(|t| t == addr) {
        targets.push(addr.to_owned());
    }
}

/// The headers-hook check: too many hops, or a `Delivered-To` naming an
/// address this transaction expands again (the message came back to us
/// through a forward elsewhere). Returns the refusal text.
pub fn hop_check(
    max_hops: usize,
    received: usize,
    delivered_to: &[String],
    expanded: &[String],
) -> Option<String> {
    let hops = received + delivered_to.len();
    if hops > max_hops {
        return Some(format!(
            "Too many hops ({hops} Received/Delivered-To fields, max {max_hops}): mail loop?"
        ));
    }
    delivered_to
        .iter()
        .map(|d| normalize(d))
        .find(|d| expanded.contains(d))
        .map(|d| format!("Mail forwarding loop for {d}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Config {
        serde_json::from_str::<Config>(json).unwrap().normalized()
    }

    #[test]
    fn no_rule_leaves_the_recipient_alone() {
        let c = cfg("{}");
        let e = expand(&c, "Alice@Example.test", "x@y").unwrap();
        assert!(e.unchanged("alice@example.test"));
    }

    #[test]
    fn alias_to_several_members_in_order() {
        let c = cfg(
            r#"{"aliases": {"Sales@example.test": ["alice@example.test", "BOB@example.test", "carol@remote.test"]}}"#,
        );
        let e = expand(&c, "sales@example.test", "").unwrap();
        assert_eq!(
            e.targets,
            ["alice@example.test", "bob@example.test", "carol@remote.test"]
        );
        assert_eq!(e.expanded, ["sales@example.test"]);
        assert!(!e.unchanged("sales@example.test"));
    }

    #[test]
    fn nested_aliases_and_a_member_reached_twice_get_one_copy() {
        let c = cfg(r#"{"aliases": {
            "all@example.test": ["sales@example.test", "support@example.test"],
            "sales@example.test": ["alice@example.test", "bob@example.test"],
            "support@example.test": ["bob@example.test"]}}"#);
        let e = expand(&c, "all@example.test", "").unwrap();
        assert_eq!(e.targets, ["alice@example.test", "bob@example.test"]);
        assert!(!e.cycle, "a shared member is not a cycle");
    }

    #[test]
    fn forward_with_and_without_copy() {
        let c = cfg(r#"{"forwards": {
            "bob@example.test": {"to": ["alice@example.test"], "keep_copy": true},
            "carol@example.test": {"to": ["alice@example.test"]}}}"#);
        assert_eq!(
            expand(&c, "bob@example.test", "").unwrap().targets,
            ["bob@example.test", "alice@example.test"]
        );
        assert_eq!(
            expand(&c, "carol@example.test", "").unwrap().targets,
            ["alice@example.test"]
        );
    }

    #[test]
    fn a_forwarding_loop_is_refused_with_5_4_6() {
        let c = cfg(r#"{"forwards": {
            "a@example.test": {"to": ["b@example.test"]},
            "b@example.test": {"to": ["a@example.test"]}}}"#);
        let err = expand(&c, "a@example.test", "").unwrap_err();
        assert!(
            matches!(&err, Refusal::Loop(t) if t.contains("a@example.test")),
            "{err:?}"
        );
        assert_eq!(err.reply().0, 554);
        assert_eq!(err.reply().1, "5.4.6");
        // An alias that names itself.
        let c = cfg(r#"{"aliases": {"x@example.test": ["x@example.test"]}}"#);
        assert!(matches!(expand(&c, "x@example.test", ""), Err(Refusal::Loop(_))));
    }

    #[test]
    fn a_loop_with_a_kept_copy_delivers_the_copy_once() {
        let c = cfg(r#"{"forwards": {
            "a@example.test": {"to": ["b@example.test"], "keep_copy": true},
            "b@example.test": {"to": ["a@example.test"]}}}"#);
        let e = expand(&c, "b@example.test", "").unwrap();
        assert_eq!(e.targets, ["a@example.test"]);
        assert!(e.cycle);
    }

    #[test]
    fn nesting_is_bounded() {
        // A chain of 12 aliases, each to the next: deeper than 8.
        let mut aliases = String::new();
        for i in 0..12 {
            aliases.push_str(&format!("\"a{i}@d.test\": [\"a{}@d.test\"],", i + 1));
        }
        let c = cfg(&format!("{{\"aliases\": {{{}}}}}", aliases.trim_end_matches(',')));
        assert!(matches!(expand(&c, "a0@d.test", ""), Err(Refusal::Loop(t)) if t.contains("deeper")));
        let c = Config { max_depth: 20, ..c };
        assert_eq!(expand(&c, "a0@d.test", "").unwrap().targets, ["a12@d.test"]);
    }

    #[test]
    fn too_many_targets() {
        let members: Vec<String> = (0..5).map(|i| format!("\"m{i}@d.test\"")).collect();
        let c = cfg(&format!(
            "{{\"max_targets\": 3, \"aliases\": {{\"big@d.test\": [{}]}}}}",
            members.join(",")
        ));
        let err = expand(&c, "big@d.test", "").unwrap_err();
        assert!(matches!(err, Refusal::TooMany(_)));
        assert_eq!(err.reply().0, 550);
    }

    #[test]
    fn list_members_and_list_id() {
        let c = cfg(r#"{"lists": {
            "team@example.test": {"members": ["alice@example.test", "bob@example.test"]},
            "news@example.test": {"members": ["bob@example.test"], "id": "news.lists.example.test", "name": "News", "senders": ["Boss@Remote.test"]}}}"#);
        let e = expand(&c, "team@example.test", "anyone@x.test").unwrap();
        assert_eq!(e.targets, ["alice@example.test", "bob@example.test"]);
        assert_eq!(
            e.lists,
            [ListHit {
                address: "team@example.test".into(),
                list_id: "<team.example.test>".into(),
                bounce: None,
            }]
        );
        // An announcement list: only its senders, by the envelope sender.
        let refused = expand(&c, "news@example.test", "anyone@x.test").unwrap_err();
        assert!(matches!(&refused, Refusal::NotAllowed(_)));
        assert_eq!(
            refused.reply(),
            (
                550,
                "5.7.1",
                "The list news@example.test accepts posts only from its senders".into()
            )
        );
        let e = expand(&c, "news@example.test", "<boss@remote.test>").unwrap();
        assert_eq!(e.lists[0].list_id, "News <news.lists.example.test>");
    }

    #[test]
    fn catch_all_with_exceptions() {
        let c = cfg(
            r#"{"catch_all": {"Other.test": {"mailbox": "alice@example.test", "except": ["postmaster", "Bob"]}},
            "aliases": {"sales@other.test": ["bob@example.test"]}}"#,
        );
        assert_eq!(
            expand(&c, "whatever@other.test", "").unwrap().targets,
            ["alice@example.test"]
        );
        assert!(
            expand(&c, "bob@other.test", "")
                .unwrap()
                .unchanged("bob@other.test")
        );
        assert!(
            expand(&c, "postmaster@other.test", "")
                .unwrap()
                .unchanged("postmaster@other.test")
        );
        // Explicit rules win over the catch-all.
        assert_eq!(
            expand(&c, "sales@other.test", "").unwrap().targets,
            ["bob@example.test"]
        );
        // Other domains are untouched.
        assert!(
            expand(&c, "x@example.test", "")
                .unwrap()
                .unchanged("x@example.test")
        );
    }

    #[test]
    fn catch_all_mailbox_in_its_own_domain_is_not_a_loop() {
        let c = cfg(r#"{"catch_all": {"d.test": {"mailbox": "inbox@d.test"}}}"#);
        assert_eq!(expand(&c, "x@d.test", "").unwrap().targets, ["inbox@d.test"]);
        assert!(expand(&c, "inbox@d.test", "").unwrap().unchanged("inbox@d.test"));
    }

    #[test]
    fn hop_checks() {
        assert_eq!(hop_check(30, 3, &[], &[]), None);
        assert!(hop_check(30, 31, &[], &[]).unwrap().contains("Too many hops (31"));
        assert!(hop_check(5, 3, &["a@x".into(), "b@x".into(), "c@x".into()], &[]).is_some());
        assert_eq!(
            hop_check(
                30,
                2,
                &["<Sales@Example.test>".into()],
                &["sales@example.test".into()]
            ),
            Some("Mail forwarding loop for sales@example.test".into())
        );
        assert_eq!(
            hop_check(
                30,
                2,
                &["other@example.test".into()],
                &["sales@example.test".into()]
            ),
            None
        );
    }

    #[test]
    fn unknown_config_keys_are_errors() {
        assert!(serde_json::from_str::<Config>(r#"{"alias": {}}"#).is_err());
        let c: Config = serde_json::from_str("{}").unwrap();
        assert_eq!((c.max_depth, c.max_targets, c.max_hops), (8, 100, 30));
    }
}
