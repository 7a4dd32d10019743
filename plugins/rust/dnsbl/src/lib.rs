//! `dnsbl`: DNS blocklists (RFC 5782), reverse DNS and HELO checks.
//!
//! Hooks: `connect` (blocklists, allow-list, reverse DNS) and `helo` (HELO
//! checks). Grant: `dns`. See README.md for the config and an example.
//!
//! The rule every check keeps: **a DNS problem never blocks mail**. A
//! time-out, a SERVFAIL, a quota error, a missing grant, or an answer that is
//! not a listing (outside 127.0.0.0/8, or the 127.255.255.0/24 "query
//! refused" codes some lists send to open resolvers) is logged and the
//! connection goes on. Only a positive listing rejects or scores.
//!
//! The pure logic (config, CIDR matching, RFC 5782 names, answer
//! classification, HELO checks) is in this file and tested natively; the
//! hooks only do the look-ups and apply it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use poczta_plugin::{Connection, Hook, HookResult, Plugin, Reply, Verdict, dns};
use serde::Deserialize;

/// Longest TXT reason put into a reply (replies are one line).
const MAX_REASON: usize = 200;

// ---------------------------------------------------------------- config

/// What a listing in a zone does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `554 5.7.1` at the greeting, with the zone's TXT reason.
    Reject,
    /// Adds the zone's symbol with its weight; the host's thresholds decide.
    Score,
}

/// One blocklist zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The list's DNS zone, e.g. `zen.spamhaus.org`.
    pub zone: String,
    /// `reject` (default) or `score`.
    #[serde(default = "default_action")]
    pub action: Action,
    /// Score weight for `action = "score"`.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Score symbol; default `RBL_<ZONE>` (upper-cased, dots to `_`).
    #[serde(default)]
    pub symbol: Option<String>,
    /// Only these answers count as a listing (e.g. `["127.0.0.2",
    /// "127.0.0.3"]` for one list of a combined zone); empty = any
    /// 127.0.0.0/8 answer.
    #[serde(default)]
    pub codes: Vec<String>,
    /// Query the zone's TXT record for the reject reason (default true).
    #[serde(default = "yes")]
    pub txt: bool,
}

fn default_action() -> Action {
    Action::Reject
}
fn default_weight() -> f64 {
    5.0
}
fn yes() -> bool {
    true
}

/// What a HELO check finding does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeloAction {
    /// No check.
    Off,
    /// Adds a symbol.
    Score,
    /// `550 5.7.1` to the HELO/EHLO.
    Reject,
}

/// The plugin's config (`config = { … }` in the server's `[[plugins]]` entry).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Blocklist zones, checked in order.
    pub zones: Vec<ZoneConfig>,
    /// Networks never checked (CIDR, v4 or v6, or a bare address). Empty by
    /// default: put your own relays, monitoring and loopback here.
    pub allow: Vec<String>,
    /// Listeners whose clients are checked ("smtp", "submission"). Default
    /// `["smtp"]`: your own users submit from dial-up ranges that the
    /// policy lists (e.g. Spamhaus PBL) rightly list.
    pub listeners: Vec<String>,
    /// Add a symbol when the client IP has no PTR record.
    pub check_ptr: bool,
    /// Symbol for a missing PTR.
    pub ptr_symbol: String,
    /// Weight for a missing PTR.
    pub ptr_weight: f64,
    /// HELO/EHLO given as a bare IP address (without RFC 5321 brackets).
    pub helo_bare_ip: HeloAction,
    /// Weight and symbol of a bare-IP HELO.
    pub helo_bare_ip_weight: f64,
    /// Symbol of a bare-IP HELO.
    pub helo_bare_ip_symbol: String,
    /// HELO/EHLO claiming one of `own_names` (or a subdomain of one).
    pub helo_own_name: HeloAction,
    /// Weight of a forged own-name HELO.
    pub helo_own_name_weight: f64,
    /// Symbol of a forged own-name HELO.
    pub helo_own_name_symbol: String,
    /// Our own host names and domains, for `helo_own_name`.
    pub own_names: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            zones: Vec::new(),
            allow: Vec::new(),
            listeners: vec!["smtp".into()],
            check_ptr: false,
            ptr_symbol: "RDNS_NONE".into(),
            ptr_weight: 1.5,
            helo_bare_ip: HeloAction::Off,
            helo_bare_ip_weight: 2.0,
            helo_bare_ip_symbol: "HELO_BARE_IP".into(),
            helo_own_name: HeloAction::Off,
            helo_own_name_weight: 4.0,
            helo_own_name_symbol: "HELO_FORGED_OWN".into(),
            own_names: Vec::new(),
        }
    }
}

/// A config after validation: CIDRs parsed, zones normalised.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The raw config.
    pub config: Config,
    /// Parsed `allow`.
    pub allow: Vec<Cidr>,
}

impl Settings {
    /// Parses and validates the plugin's JSON config.
    pub fn parse(json: &str) -> Result<Settings, String> {
        let mut config: Config = poczta_plugin::parse_config(json)?;
        for z in &mut config.zones {
            z.zone = z.zone.trim().trim_end_matches('.').to_ascii_lowercase();
            if !valid_zone(&z.zone) {
                return Err(format!(
                    "invalid plugin config: zone {:?} is not a DNS name",
                    z.zone
                ));
            }
            for c in &z.codes {
                c.parse::<Ipv4Addr>().map_err(|_| {
                    format!(
                        "invalid plugin config: zone {}: code {c:?} is not an IPv4 address",
                        z.zone
                    )
                })?;
            }
            if !z.weight.is_finite() {
                return Err(format!(
                    "invalid plugin config: zone {}: weight must be finite",
                    z.zone
                ));
            }
        }
        let allow = config
            .allow
            .iter()
            .map(|s| {
                Cidr::parse(s).ok_or_else(|| format!("invalid plugin config: allow: {s:?} is not a network"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        config.own_names = config.own_names.iter().map(|n| normalize_name(n)).collect();
        Ok(Settings { config, allow })
    }

    /// Whether `ip` is in the allow-list.
    pub fn allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allow.iter().any(|c| c.contains(ip))
    }

    /// Whether clients of `listener` are checked.
    pub fn checks_listener(&self, listener: &str) -> bool {
        self.config
            .listeners
            .iter()
            .any(|l| l.eq_ignore_ascii_case(listener))
    }
}

fn valid_zone(zone: &str) -> bool {
    !zone.is_empty()
        && zone.len() <= 200
        && zone.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The symbol of a zone: its configured one, or `RBL_` + the zone upper-cased.
pub fn zone_symbol(z: &ZoneConfig) -> String {
    z.symbol.clone().unwrap_or_else(|| {
        let mut s = String::from("RBL_");
        s.extend(z.zone.chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        }));
        s
    })
}

// ---------------------------------------------------------------- addresses

/// A v4-mapped IPv6 address (`::ffff:192.0.2.1`, from dual-stack listeners)
/// is the IPv4 client it maps.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `"192.0.2.0/24"`, `"2001:db8::/32"`, or a bare address (a /32 or /128).
    /// Host bits set below the prefix are ignored (`10.1.2.3/8` = `10.0.0.0/8`).
    pub fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside the network (v4 never matches a v6 network).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The RFC 5782 query name of `ip` in `zone`: the IPv4 octets reversed
/// (`2.0.0.127.zone`), or the 32 IPv6 nibbles reversed.
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let mut name = String::with_capacity(72 + zone.len());
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            name.push_str(&format!("{d}.{c}.{b}.{a}."));
        }
        IpAddr::V6(v6) => {
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
        }
    }
    name.push_str(zone);
    name
}

/// What a zone's A answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Not listed (NXDOMAIN, or no answer that counts).
    Clean,
    /// Listed, with the answers that count.
    Listed(Vec<Ipv4Addr>),
    /// The list refused the query (127.255.255.0/24, Spamhaus's "you are
    /// querying through an open/public resolver" and similar): not a listing,
    /// but the admin should know the list is not working.
    Refused(Ipv4Addr),
    /// Answers outside 127.0.0.0/8 only: a wildcarding resolver or a broken
    /// list, never a listing (RFC 5782 §2.1).
    Bogus(Vec<String>),
}

/// Classifies the A answer of a zone query.
pub fn classify(answers: &[String], zone: &ZoneConfig) -> Listing {
    if answers.is_empty() {
        return Listing::Clean;
    }
    let mut listed = Vec::new();
    let mut bogus = Vec::new();
    for a in answers {
        match a.parse::<Ipv4Addr>() {
            Ok(ip) if ip.octets()[..3] == [127, 255, 255] => return Listing::Refused(ip),
            Ok(ip) if ip.octets()[0] == 127 => {
                if zone.codes.is_empty() || zone.codes.iter().any(|c| c.parse() == Ok(ip)) {
                    listed.push(ip);
                }
            }
            _ => bogus.push(a.clone()),
        }
    }
    if !listed.is_empty() {
        Listing::Listed(listed)
    } else if !bogus.is_empty() {
        Listing::Bogus(bogus)
    } else {
        Listing::Clean
    }
}

/// The reject reply text for a listing; `txt` is the zone's TXT reason.
pub fn reject_text(ip: IpAddr, zone: &str, txt: Option<&str>) -> String {
    let reason = txt
        .map(|t| {
            t.chars()
                .filter(|c| !c.is_control())
                .take(MAX_REASON)
                .collect::<String>()
        })
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| "listed".into());
    format!(
        "Service unavailable; client [{}] blocked using {zone}: {reason}",
        canonical(ip)
    )
}

// ---------------------------------------------------------------- HELO

/// What is wrong with a HELO name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeloProblem {
    /// A bare IP address, which RFC 5321 §4.1.3 allows only in brackets.
    BareIp,
    /// One of our own names, or a subdomain of one: a forgery, since our
    /// own servers are allow-listed or do not connect on this listener.
    OwnName,
}

fn normalize_name(n: &str) -> String {
    n.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Checks a HELO/EHLO name against the two rules.
pub fn helo_problems(helo: &str, own_names: &[String]) -> Vec<HeloProblem> {
    let name = normalize_name(helo);
    let mut found = Vec::new();
    if name.parse::<Ipv4Addr>().is_ok() || name.parse::<Ipv6Addr>().is_ok() {
        found.push(HeloProblem::BareIp);
    }
    let claims_own = own_names.iter().any(|own| {
        !own.is_empty()
            && (name == *own
                || name
                    .strip_suffix(own.as_str())
                    .is_some_and(|head| head.ends_with('.')))
    });
    if claims_own {
        found.push(HeloProblem::OwnName);
    }
    found
}

// ---------------------------------------------------------------- hooks

fn parse_ip(conn: &Connection) -> HookResult<IpAddr> {
    conn.client_ip
        .parse::<IpAddr>()
        .map(canonical)
        .map_err(|_| format!("client ip {:?} is not an address", conn.client_ip))
}

/// Runs the zone look-ups; returns the reject verdict of the first
/// reject-action listing, after scoring the score-action ones seen before it.
fn check_zones(settings: &Settings, ip: IpAddr) -> Option<Verdict> {
    for z in &settings.config.zones {
        let answers = match dns::dnsbl(&ip.to_string(), &z.zone) {
            Ok(a) => a,
            Err(e) => {
                poczta_plugin::warn(format!(
                    "{}: look-up of {ip} failed ({}); not blocking",
                    z.zone,
                    e.text()
                ));
                continue;
            }
        };
        match classify(&answers, z) {
            Listing::Clean => {}
            Listing::Refused(code) => {
                poczta_plugin::warn(format!(
                    "{}: the list refused the query ({code}); use a resolver the list accepts",
                    z.zone
                ));
            }
            Listing::Bogus(a) => {
                poczta_plugin::warn(format!(
                    "{}: answer {a:?} is outside 127.0.0.0/8; ignored",
                    z.zone
                ));
            }
            Listing::Listed(codes) => match z.action {
                Action::Score => {
                    let sym = zone_symbol(z);
                    poczta_plugin::info(format!("{ip} listed in {} ({codes:?}): {sym}", z.zone));
                    poczta_plugin::add_symbol(&sym, z.weight, &format!("client listed in {}", z.zone));
                }
                Action::Reject => {
                    let txt = if z.txt {
                        match dns::lookup_txt(&query_name(ip, &z.zone)) {
                            Ok(t) => t.into_iter().next(),
                            Err(e) => {
                                poczta_plugin::warn(format!("{}: TXT look-up failed ({})", z.zone, e.text()));
                                None
                            }
                        }
                    } else {
                        None
                    };
                    let text = reject_text(ip, &z.zone, txt.as_deref());
                    poczta_plugin::info(format!("rejecting {ip}: listed in {} ({codes:?})", z.zone));
                    return Some(Verdict::Reject(Reply::new(554, "5.7.1", text)));
                }
            },
        }
    }
    None
}

/// What a PTR answer means for the `check_ptr` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ptr {
    /// The client has a reverse name.
    Named,
    /// No PTR record: the symbol applies.
    Missing,
    /// The look-up failed: no finding (logged).
    Unknown(String),
}

/// Classifies the result of the PTR look-up.
pub fn ptr_outcome(r: Result<Vec<String>, poczta_plugin::HostError>) -> Ptr {
    match r {
        Ok(names) if names.iter().all(|n| n.trim().is_empty()) => Ptr::Missing,
        Ok(_) => Ptr::Named,
        Err(e) => Ptr::Unknown(e.text()),
    }
}

fn check_ptr(settings: &Settings, ip: IpAddr) {
    match ptr_outcome(dns::lookup_ptr(&ip.to_string())) {
        Ptr::Missing => {
            let c = &settings.config;
            poczta_plugin::add_symbol(&c.ptr_symbol, c.ptr_weight, &format!("{ip} has no reverse DNS"));
        }
        Ptr::Named => {}
        Ptr::Unknown(e) => poczta_plugin::warn(format!("PTR look-up of {ip} failed ({e}); not scoring")),
    }
}

struct Dnsbl;

impl Plugin for Dnsbl {
    const NAME: &'static str = "dnsbl";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: &'static [Hook] = &[Hook::Connect, Hook::Helo];

    fn connect(conn: Connection) -> HookResult<Verdict> {
        let settings = poczta_plugin::per_instance(Settings::parse)?;
        let ip = parse_ip(&conn)?;
        if !settings.checks_listener(&conn.listener) || settings.allowed(ip) {
            return Ok(Verdict::Continue);
        }
        if let Some(v) = check_zones(&settings, ip) {
            return Ok(v);
        }
        if settings.config.check_ptr {
            check_ptr(&settings, ip);
        }
        Ok(Verdict::Continue)
    }

    fn helo(conn: Connection) -> HookResult<Verdict> {
        let settings = poczta_plugin::per_instance(Settings::parse)?;
        let ip = parse_ip(&conn)?;
        let c = &settings.config;
        if !settings.checks_listener(&conn.listener) || settings.allowed(ip) {
            return Ok(Verdict::Continue);
        }
        for p in helo_problems(&conn.helo, &c.own_names) {
            let (action, symbol, weight, what) = match p {
                HeloProblem::BareIp => (
                    c.helo_bare_ip,
                    &c.helo_bare_ip_symbol,
                    c.helo_bare_ip_weight,
                    "HELO is a bare IP address",
                ),
                HeloProblem::OwnName => (
                    c.helo_own_name,
                    &c.helo_own_name_symbol,
                    c.helo_own_name_weight,
                    "HELO claims to be this server",
                ),
            };
            match action {
                HeloAction::Off => {}
                HeloAction::Score => poczta_plugin::add_symbol(symbol, weight, what),
                HeloAction::Reject => {
                    poczta_plugin::info(format!("rejecting HELO {:?} from {ip}: {what}", conn.helo));
                    return Ok(Verdict::reject("5.7.1", format!("{what}: {}", conn.helo)));
                }
            }
        }
        Ok(Verdict::Continue)
    }
}

poczta_plugin::export_plugin!(Dnsbl);

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn zone(json: &str) -> ZoneConfig {
        Settings::parse(&format!("{{\"zones\": [{json}]}}"))
            .unwrap()
            .config
            .zones
            .remove(0)
    }

    #[test]
    fn rfc5782_query_names() {
        assert_eq!(query_name(ip("192.0.2.99"), "bl.test"), "99.2.0.192.bl.test");
        assert_eq!(query_name(ip("127.0.0.2"), "zen.test"), "2.0.0.127.zen.test");
        // RFC 5782 §2.4's example.
        assert_eq!(
            query_name(ip("2001:db8:1:2:3:4:567:89ab"), "ugly.example.com"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
        );
        assert_eq!(query_name(ip("::ffff:192.0.2.1"), "z.test"), "1.2.0.192.z.test");
    }

    #[test]
    fn cidr_matching_v4_and_v6() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.200.1.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        let host = Cidr::parse("192.0.2.7").unwrap();
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("203.0.113.9")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(Cidr::parse("::1/128").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("fe80::1")));
        assert!(
            Cidr::parse("10.1.2.3/8").unwrap().contains(ip("10.9.9.9")),
            "host bits ignored"
        );
        for bad in ["10.0.0.0/33", "::/129", "x/8", "10.0.0/8", "", "10.0.0.0/"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn allow_list_and_mapped_addresses() {
        let s = Settings::parse(r#"{"allow": ["127.0.0.0/8", "2001:db8::/48"]}"#).unwrap();
        assert!(s.allowed(ip("127.0.0.2")));
        assert!(s.allowed(ip("::ffff:127.0.0.1")), "v4-mapped is the v4 client");
        assert!(s.allowed(ip("2001:db8:0:1::5")));
        assert!(!s.allowed(ip("192.0.2.1")));
        assert!(!s.allowed(ip("::1")));
        // Loopback is not exempt unless the admin says so.
        let none = Settings::parse("{}").unwrap();
        assert!(!none.allowed(ip("127.0.0.1")) && !none.allowed(ip("::1")));
    }

    #[test]
    fn config_defaults_and_validation() {
        let s = Settings::parse("").unwrap();
        assert!(s.config.zones.is_empty() && s.allow.is_empty());
        assert!(s.checks_listener("smtp") && !s.checks_listener("submission"));
        assert!(!s.config.check_ptr);
        assert_eq!(s.config.helo_bare_ip, HeloAction::Off);
        let z = zone(r#"{"zone": "Zen.Test."}"#);
        assert_eq!(
            (z.zone.as_str(), z.action, z.txt),
            ("zen.test", Action::Reject, true)
        );
        assert_eq!(zone_symbol(&z), "RBL_ZEN_TEST");
        let z = zone(r#"{"zone": "b.test", "action": "score", "weight": 2.5, "symbol": "B"}"#);
        assert_eq!(
            (z.action, z.weight, zone_symbol(&z).as_str()),
            (Action::Score, 2.5, "B")
        );
        for bad in [
            r#"{"zones": [{"zone": ""}]}"#,
            r#"{"zones": [{"zone": "a..b"}]}"#,
            r#"{"zones": [{"zone": "a b"}]}"#,
            r#"{"zones": [{"zone": "z.test", "action": "drop"}]}"#,
            r#"{"zones": [{"zone": "z.test", "codes": ["x"]}]}"#,
            r#"{"zones": [{"zone": "z.test", "typo": 1}]}"#,
            r#"{"allow": ["10.0.0.0/40"]}"#,
            r#"{"helo_bare_ip": "maybe"}"#,
            r#"{"unknown": true}"#,
        ] {
            assert!(Settings::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_classified() {
        let any = zone(r#"{"zone": "z.test"}"#);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(classify(&[], &any), Listing::Clean);
        assert_eq!(
            classify(&s(&["127.0.0.2"]), &any),
            Listing::Listed(vec![Ipv4Addr::new(127, 0, 0, 2)])
        );
        assert_eq!(
            classify(&s(&["127.255.255.254"]), &any),
            Listing::Refused(Ipv4Addr::new(127, 255, 255, 254))
        );
        assert_eq!(
            classify(&s(&["192.0.2.1"]), &any),
            Listing::Bogus(s(&["192.0.2.1"]))
        );
        let only3 = zone(r#"{"zone": "z.test", "codes": ["127.0.0.3"]}"#);
        assert_eq!(classify(&s(&["127.0.0.2"]), &only3), Listing::Clean);
        assert_eq!(
            classify(&s(&["127.0.0.2", "127.0.0.3"]), &only3),
            Listing::Listed(vec![Ipv4Addr::new(127, 0, 0, 3)])
        );
    }

    #[test]
    fn reject_text_names_zone_and_reason() {
        assert_eq!(
            reject_text(ip("127.0.0.2"), "zen.test", Some("listed for testing")),
            "Service unavailable; client [127.0.0.2] blocked using zen.test: listed for testing"
        );
        assert!(reject_text(ip("127.0.0.2"), "z", None).ends_with(": listed"));
        assert!(reject_text(ip("127.0.0.2"), "z", Some("  ")).ends_with(": listed"));
        let long = "x".repeat(1000) + "\r\n";
        let t = reject_text(ip("127.0.0.2"), "z", Some(&long));
        assert!(t.len() < 300 && !t.contains('\r'));
    }

    #[test]
    fn ptr_answers() {
        use poczta_plugin::HostError;
        assert_eq!(ptr_outcome(Ok(vec![])), Ptr::Missing);
        assert_eq!(ptr_outcome(Ok(vec!["mail.example.test".into()])), Ptr::Named);
        assert_eq!(
            ptr_outcome(Err(HostError::Timeout)),
            Ptr::Unknown("timeout".into())
        );
    }

    #[test]
    fn helo_checks() {
        let own = vec!["mx.example.test".to_string(), "example.test".to_string()];
        assert_eq!(helo_problems("192.0.2.1", &own), vec![HeloProblem::BareIp]);
        assert_eq!(helo_problems("2001:db8::1", &own), vec![HeloProblem::BareIp]);
        assert!(
            helo_problems("[192.0.2.1]", &own).is_empty(),
            "an address literal is allowed"
        );
        assert_eq!(
            helo_problems("MX.Example.Test.", &own),
            vec![HeloProblem::OwnName]
        );
        assert_eq!(
            helo_problems("host.example.test", &own),
            vec![HeloProblem::OwnName]
        );
        assert!(helo_problems("notexample.test", &own).is_empty());
        assert!(helo_problems("client.other.test", &own).is_empty());
        assert!(helo_problems("mx.example.test", &[]).is_empty());
        let s = Settings::parse(r#"{"own_names": [" MX.Example.TEST. "]}"#).unwrap();
        assert_eq!(s.config.own_names, vec!["mx.example.test"]);
    }
}
