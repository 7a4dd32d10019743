//! Configuration: the TOML file (or the embedded default) resolved into typed
//! values. Only the resolved [`Config`] travels through the program; every
//! error names the file, the key and what is wrong with it.

mod raw;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use raw::{DurationValue, RawConfig, SizeValue};

/// The embedded default that `poczta serve` runs when no `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// RFC 5321 §4.5.3.1.4 allows 512 octets; Postfix's `line_length_limit` of
/// 2048 leaves room for long ESMTP parameters without inviting abuse.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 2048;
/// What most providers accept today (Gmail 25 MB, Postfix's default 10 MB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 25 * 1024 * 1024;
/// RFC 5321 §4.5.3.1.8: a server must accept at least 100 recipients.
pub const DEFAULT_MAX_RECIPIENTS: usize = 100;
/// Enough for a busy small site; each idle connection costs a few KiB.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;
/// One host needs a handful; a botnet node that opens hundreds gets 421.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 20;
/// Postfix's `smtpd_soft_error_limit` is 10.
pub const DEFAULT_MAX_ERRORS: u32 = 10;
/// RFC 5321 §4.5.3.2.7: the server timeout should be at least 5 minutes.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// RFC 5321 §4.5.3.2.5/6: 3 minutes per data block, 10 for the terminator;
/// one bound per read covers both.
pub const DEFAULT_DATA_TIMEOUT: Duration = Duration::from_secs(600);
/// RFC 1939 §3: the autologout timer must be at least 10 minutes.
pub const DEFAULT_POP3_TIMEOUT: Duration = Duration::from_secs(600);
/// The base delay after a failed login; it grows with repeated failures.
pub const DEFAULT_LOGIN_FAILURE_DELAY: Duration = Duration::from_millis(500);
/// How long a shutdown waits for sessions in flight before exiting anyway.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// RFC 5321 §4.5.4.1: retry after at least 30 minutes; Postfix starts at
/// 5 minutes (`minimal_backoff_time`), which finds a recovered host sooner.
pub const DEFAULT_RETRY_FIRST: Duration = Duration::from_secs(300);
/// Postfix's `maximal_backoff_time` is 4000 s; an hour-ish cap.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(4 * 3600);
/// RFC 5321 §4.5.4.1: give up after at least 4-5 days.
pub const DEFAULT_QUEUE_MAX_AGE: Duration = Duration::from_secs(5 * 86_400);
/// Simultaneous outbound connections over all destinations.
pub const DEFAULT_QUEUE_CONCURRENCY: usize = 20;
/// RFC 5321 §4.5.3.2 gives 5 minutes for most replies; a connect that takes
/// more than 30 s is a host to skip for the next MX.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 5321 §4.5.3.2: the client's per-reply timeouts (5 to 10 minutes).
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the queue looks for due messages when nothing woke it.
pub const DEFAULT_QUEUE_POLL: Duration = Duration::from_secs(30);
/// How long a recipient-verification answer of the next hop is reused.
pub const DEFAULT_VERIFY_CACHE: Duration = Duration::from_secs(600);

/// STARTTLS policy of outbound connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundTls {
    /// Use STARTTLS when offered (RFC 3207; the default, as Postfix's `may`).
    Opportunistic,
    /// Deliver only inside TLS.
    Required,
    /// Never use STARTTLS.
    Never,
}

/// Where a `[[routes]]` entry sends a domain's mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destination domain, lower-cased, or `*` for every domain
    /// without its own route (a smart host).
    pub domain: String,
    /// The next hop's host name or IP address.
    pub host: String,
    /// The next hop's port.
    pub port: u16,
    /// STARTTLS policy for this hop (default: the queue's).
    pub tls: Option<OutboundTls>,
}

/// An IP network in CIDR form (`192.0.2.0/24`, `2001:db8::/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `addr/prefix` or a bare address (a host network).
    pub fn parse(s: &str) -> Option<Network> {
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Network { addr, prefix })
    }

    /// Whether `ip` is inside (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// `[relay]`: who may send mail to other domains, and the gateway domains.
#[derive(Clone, Debug, Default)]
pub struct Relay {
    /// Clients in these networks may relay without AUTH (`relay.networks`).
    pub networks: Vec<Network>,
    /// Gateway domains: accepted from anyone, filtered, and forwarded to
    /// their route or MX (`relay.domains`).
    pub domains: Vec<String>,
    /// Ask the next hop whether a gateway recipient exists before
    /// accepting it (`relay.verify_recipients`).
    pub verify_recipients: bool,
    /// How long such an answer is reused.
    pub verify_cache: Duration,
}

/// `[queue]`: outbound delivery.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// The delay after the first failed attempt; it doubles per attempt.
    pub retry_first: Duration,
    /// The longest delay between attempts.
    pub retry_max: Duration,
    /// How long a message is retried before it bounces (`4.4.7`).
    pub max_age: Duration,
    /// The SMTP port of MX hosts (25; tests point it elsewhere).
    pub mx_port: u16,
    /// The STARTTLS policy.
    pub tls: OutboundTls,
    /// Verify the next hop's certificate (off: opportunistic TLS encrypts
    /// against passive listeners only, as with most MTAs today).
    pub tls_verify: bool,
    /// Simultaneous deliveries.
    pub concurrency: usize,
    /// Connect time limit per address.
    pub connect_timeout: Duration,
    /// Time limit per reply of the next hop.
    pub command_timeout: Duration,
    /// How often the queue looks for due messages unprompted.
    pub poll_interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            retry_first: DEFAULT_RETRY_FIRST,
            retry_max: DEFAULT_RETRY_MAX,
            max_age: DEFAULT_QUEUE_MAX_AGE,
            mx_port: 25,
            tls: OutboundTls::Opportunistic,
            tls_verify: false,
            concurrency: DEFAULT_QUEUE_CONCURRENCY,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_CLIENT_TIMEOUT,
            poll_interval: DEFAULT_QUEUE_POLL,
        }
    }
}

/// `host:port`, `[v6]:port` or `v6-literal` forms of a next hop.
fn parse_next_hop(s: &str) -> Option<(String, u16)> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some((addr.ip().to_string(), addr.port()));
    }
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    valid.then_some((host, port))
}

/// A configuration error, naming where it came from and which key is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown key or a value of the wrong type.
    #[error("config {origin}: {message}")]
    Parse {
        /// The file name, or "embedded default".
        origin: String,
        /// toml's message, which names the key and the line.
        message: String,
    },
    /// A key has a value that parses but is not acceptable.
    #[error("config {origin}: key `{key}`: {problem}")]
    Value {
        /// The file name, or "embedded default".
        origin: String,
        /// The dotted key, e.g. `limits.max_message_size`.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where this configuration came from (a path, or "embedded default").
    pub origin: String,
    /// The name this server gives itself in greetings and `Received:`.
    pub hostname: String,
    /// Where the database and generated files live.
    pub data_dir: PathBuf,
    /// Local domains, lower-cased: mail for them is stored here.
    pub domains: Vec<String>,
    /// MX listeners (port 25 in production).
    pub smtp_listen: Vec<SocketAddr>,
    /// Submission listeners (port 587 in production).
    pub submission_listen: Vec<SocketAddr>,
    /// POP3 listeners (port 110 in production).
    pub pop3_listen: Vec<SocketAddr>,
    /// Allow POP3 passwords in clear text from non-loopback clients.
    pub pop3_allow_plaintext: bool,
    /// `submissions.listen`: submission with implicit TLS (RFC 8314, port 465).
    pub submissions_listen: Vec<SocketAddr>,
    /// `pop3s.listen`: POP3 with implicit TLS (RFC 8314, port 995).
    pub pop3s_listen: Vec<SocketAddr>,
    /// `submission.auth_without_tls`: offer AUTH on the submission listener
    /// before STARTTLS (local development only; default false).
    pub submission_auth_without_tls: bool,
    /// `tls.cert`: the certificate chain (PEM), relative to the config
    /// file's directory; with `tls_key`, or neither (then a self-signed
    /// certificate is generated into `data_dir`).
    pub tls_cert: Option<PathBuf>,
    /// `tls.key`: the private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// `submission.senders`: per user, the other addresses (or `@domain`
    /// for a whole domain) they may send as; lower-cased.
    pub submission_senders: Vec<(String, Vec<String>)>,
    /// Limits applied to every session.
    pub limits: Limits,
    /// How long a shutdown waits for sessions in flight.
    pub shutdown_timeout: Duration,
    /// Plugins, in the order they run.
    pub plugins: Vec<PluginEntry>,
    /// Score thresholds.
    pub scores: Scores,
    /// The resolver.
    pub dns: DnsConfig,
    /// The config file, when there is one: watched for hot reload.
    pub path: Option<PathBuf>,
    /// Where compiled plugins are cached (default `<data_dir>/plugin-cache`).
    pub plugin_cache_dir: PathBuf,
    /// redb's page cache, bytes (`server.store_cache`, default 256 MiB).
    pub store_cache: usize,
    /// `[[routes]]`: static next hops, by domain (`*`: the smart host).
    pub routes: Vec<Route>,
    /// `[relay]`: relay networks and gateway domains.
    pub relay: Relay,
    /// `[queue]`: outbound delivery.
    pub queue: QueueConfig,
}

/// One `[[plugins]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginEntry {
    /// The plugin's name in logs, the key-value namespace and the score header.
    pub name: String,
    /// The component file, resolved against the config file's directory
    /// (the current directory for the embedded default).
    pub path: PathBuf,
    /// What a failure of this plugin does to the transaction.
    pub on_error_continue: bool,
    /// Granted capabilities.
    pub grant_dns: bool,
    /// Granted capabilities.
    pub grant_kv: bool,
    /// Granted capabilities.
    pub grant_assets: bool,
    /// The plugin's own config table as JSON ("{}" when none).
    pub config_json: String,
    /// Named read-only assets (resolved like `path`).
    pub assets: Vec<(String, PathBuf)>,
    /// Deadline of one hook call.
    pub timeout: Duration,
    /// Memory cap of one instance.
    pub memory: usize,
    /// Optional fuel per hook call.
    pub fuel: Option<u64>,
    /// Transactions one instance serves before it is replaced (1: fresh
    /// each time, the default).
    pub reuse: u32,
    /// Skip (with a warning) instead of failing when the file is missing.
    pub optional: bool,
}

/// `[scores]`: what the summed plugin score does to a message.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    /// At or above: add `X-Spam-*` headers.
    pub add_header: Option<f64>,
    /// At or above: junk (with POP3: tag and deliver to the inbox).
    pub junk: Option<f64>,
    /// At or above: reject with `550 5.7.1`.
    pub reject: Option<f64>,
}

/// `[dns]`: the resolver for MX look-ups and plugins.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsConfig {
    /// Name servers; empty means the system's resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// Time limit of one look-up.
    pub timeout: Duration,
}

/// rspamd's and SpamAssassin's customary thresholds, scaled alike.
pub const DEFAULT_SCORE_ADD_HEADER: f64 = 5.0;
/// See [`DEFAULT_SCORE_ADD_HEADER`].
pub const DEFAULT_SCORE_JUNK: f64 = 6.0;
/// See [`DEFAULT_SCORE_ADD_HEADER`].
pub const DEFAULT_SCORE_REJECT: f64 = 15.0;
/// A plugin hook that needs longer than this is broken or hostile.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_millis(100);
/// Enough for CPython or StarlingMonkey guests with room to spare.
pub const DEFAULT_PLUGIN_MEMORY: usize = 64 * 1024 * 1024;
/// Slow enough for a distant DNSBL, short enough not to hold SMTP.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// Resource limits; each breach gets a protocol reply, never a crash.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest SMTP command line, including CRLF.
    pub max_line_length: usize,
    /// Largest message accepted, in bytes as received.
    pub max_message_size: usize,
    /// Most recipients in one transaction.
    pub max_recipients: usize,
    /// Most simultaneous connections over all listeners.
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Error replies in one session before it is closed.
    pub max_errors: u32,
    /// Longest wait for an SMTP command.
    pub command_timeout: Duration,
    /// Longest wait for the next bytes of DATA/BDAT content.
    pub data_timeout: Duration,
    /// POP3 autologout timer.
    pub pop3_timeout: Duration,
    /// Base delay after a failed login.
    pub login_failure_delay: Duration,
}

impl Config {
    /// Loads and resolves a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut c = Self::parse_relative(&text, &path.display().to_string(), base)?;
        c.path = Some(path.to_owned());
        Ok(c)
    }

    /// The embedded default (`poczta serve` without `--config`).
    pub fn embedded_default() -> Config {
        Self::parse(EMBEDDED_DEFAULT, "embedded default").expect("the embedded default is valid")
    }

    /// Parses and resolves config text; `origin` names it in errors;
    /// relative plugin paths are taken from the current directory.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Self::parse_relative(text, origin, Path::new(""))
    }

    /// Parses config text whose relative paths are relative to `base`.
    pub fn parse_relative(text: &str, origin: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let err = |key: &str, problem: String| ConfigError::Value {
            origin: origin.to_owned(),
            key: key.to_owned(),
            problem,
        };

        let hostname = raw.server.hostname.trim().to_owned();
        if hostname.is_empty() || hostname.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(
                "server.hostname",
                "must be a host name without spaces".into(),
            ));
        }
        if raw.server.data_dir.trim().is_empty() {
            return Err(err("server.data_dir", "must not be empty".into()));
        }
        if raw.server.domains.is_empty() {
            return Err(err("server.domains", "list at least one local domain".into()));
        }
        let mut domains = Vec::new();
        for d in &raw.server.domains {
            let d = d.trim().to_ascii_lowercase();
            if d.is_empty() || d.contains('@') || d.chars().any(|c| c.is_whitespace()) {
                return Err(err("server.domains", format!("`{d}` is not a domain name")));
            }
            domains.push(d);
        }

        let listen = |key: &str, list: Option<&Vec<String>>| -> Result<Vec<SocketAddr>, ConfigError> {
            list.into_iter()
                .flatten()
                .map(|s| {
                    s.parse()
                        .map_err(|_| err(key, format!("`{s}` is not an address:port such as 127.0.0.1:25")))
                })
                .collect()
        };
        let smtp_listen = listen("smtp.listen", raw.smtp.as_ref().map(|l| &l.listen))?;
        let submission_listen = listen("submission.listen", raw.submission.as_ref().map(|l| &l.listen))?;
        let pop3_listen = listen("pop3.listen", raw.pop3.as_ref().map(|l| &l.listen))?;
        let submissions_listen = listen("submissions.listen", raw.submissions.as_ref().map(|l| &l.listen))?;
        let pop3s_listen = listen("pop3s.listen", raw.pop3s.as_ref().map(|l| &l.listen))?;
        let tls_path = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| base.join(p))
        };
        let (tls_cert, tls_key) = (tls_path(&raw.tls.cert), tls_path(&raw.tls.key));
        if tls_cert.is_some() != tls_key.is_some() {
            let key = if tls_cert.is_some() { "tls.key" } else { "tls.cert" };
            return Err(err(
                key,
                "give both tls.cert and tls.key, or neither (a self-signed certificate is then generated)"
                    .into(),
            ));
        }

        let l = &raw.limits;
        let count = |key: &str, v: Option<u64>, default: usize| -> Result<usize, ConfigError> {
            match v {
                None => Ok(default),
                Some(0) => Err(err(key, "must be at least 1".into())),
                Some(n) => usize::try_from(n).map_err(|_| err(key, "is too large".into())),
            }
        };
        let duration = |key: &str, v: &Option<DurationValue>, default: Duration| match v {
            None => Ok(default),
            Some(v) => parse_duration(v).map_err(|p| err(key, p)),
        };
        let max_line_length = count(
            "limits.max_line_length",
            l.max_line_length,
            DEFAULT_MAX_LINE_LENGTH,
        )?;
        if max_line_length < 512 {
            return Err(err(
                "limits.max_line_length",
                "must be at least 512 (RFC 5321 §4.5.3.1.4)".into(),
            ));
        }
        let max_message_size = match &l.max_message_size {
            None => DEFAULT_MAX_MESSAGE_SIZE,
            Some(v) => parse_size(v).map_err(|p| err("limits.max_message_size", p))?,
        };
        if max_message_size < 1024 {
            return Err(err("limits.max_message_size", "must be at least 1KiB".into()));
        }
        let max_recipients = count("limits.max_recipients", l.max_recipients, DEFAULT_MAX_RECIPIENTS)?;
        let max_connections = count(
            "limits.max_connections",
            l.max_connections,
            DEFAULT_MAX_CONNECTIONS,
        )?;
        let max_connections_per_ip = count(
            "limits.max_connections_per_ip",
            l.max_connections_per_ip,
            DEFAULT_MAX_CONNECTIONS_PER_IP,
        )?;
        let max_errors = count("limits.max_errors", l.max_errors, DEFAULT_MAX_ERRORS as usize)?;
        let max_errors =
            u32::try_from(max_errors).map_err(|_| err("limits.max_errors", "is too large".into()))?;

        let mut plugins: Vec<PluginEntry> = Vec::new();
        for (i, p) in raw.plugins.iter().enumerate() {
            let key = |k: &str| format!("plugins[{i}].{k}");
            let name = p.name.trim().to_owned();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(err(
                    &key("name"),
                    format!("`{name}`: use letters, digits, - and _"),
                ));
            }
            if plugins.iter().any(|q| q.name == name) {
                return Err(err(&key("name"), format!("`{name}` is used twice")));
            }
            let on_error_continue = match p.on_error.as_deref() {
                None | Some("tempfail") => false,
                Some("continue") => true,
                Some(o) => {
                    return Err(err(
                        &key("on_error"),
                        format!("`{o}`: use \"tempfail\" or \"continue\""),
                    ));
                }
            };
            let (mut dns, mut kv, mut assets_grant) = (false, false, false);
            for g in &p.grants {
                match g.as_str() {
                    "dns" => dns = true,
                    "kv" => kv = true,
                    "assets" => assets_grant = true,
                    other => {
                        return Err(err(
                            &key("grants"),
                            format!("`{other}`: known grants are dns, kv, assets"),
                        ));
                    }
                }
            }
            let mut assets = Vec::new();
            for (aname, v) in &p.assets {
                let Some(path) = v.as_str() else {
                    return Err(err(
                        &key(&format!("assets.{aname}")),
                        "must be a file path".into(),
                    ));
                };
                assets.push((aname.clone(), base.join(path)));
            }
            if !assets.is_empty() && !assets_grant {
                return Err(err(&key("assets"), "assets need the \"assets\" grant".into()));
            }
            let config_json = match &p.config {
                None => "{}".to_owned(),
                Some(t) => serde_json::to_string(t).map_err(|e| err(&key("config"), e.to_string()))?,
            };
            let memory = match &p.memory {
                None => DEFAULT_PLUGIN_MEMORY,
                Some(v) => parse_size(v).map_err(|e| err(&key("memory"), e))?,
            };
            plugins.push(PluginEntry {
                name,
                path: base.join(p.path.trim()),
                on_error_continue,
                grant_dns: dns,
                grant_kv: kv,
                grant_assets: assets_grant,
                config_json,
                assets,
                timeout: duration(&key("timeout"), &p.timeout, DEFAULT_PLUGIN_TIMEOUT)?,
                memory,
                fuel: p.fuel,
                reuse: match p.reuse {
                    None => 1,
                    Some(0) => return Err(err(&key("reuse"), "must be at least 1".into())),
                    Some(n) => n,
                },
                optional: p.optional.unwrap_or(false),
            });
        }
        let scores = Scores {
            add_header: Some(raw.scores.add_header.unwrap_or(DEFAULT_SCORE_ADD_HEADER)),
            junk: Some(raw.scores.junk.unwrap_or(DEFAULT_SCORE_JUNK)),
            reject: Some(raw.scores.reject.unwrap_or(DEFAULT_SCORE_REJECT)),
        };
        for (k, v) in [
            ("scores.add_header", scores.add_header),
            ("scores.junk", scores.junk),
            ("scores.reject", scores.reject),
        ] {
            if v.is_some_and(|v| !v.is_finite()) {
                return Err(err(k, "must be a finite number".into()));
            }
        }
        let dns = DnsConfig {
            nameservers: listen("dns.nameservers", Some(&raw.dns.nameservers))?,
            timeout: duration("dns.timeout", &raw.dns.timeout, DEFAULT_DNS_TIMEOUT)?,
        };

        let outbound_tls = |key: &str, v: &Option<String>| -> Result<Option<OutboundTls>, ConfigError> {
            match v.as_deref() {
                None => Ok(None),
                Some("opportunistic") | Some("may") => Ok(Some(OutboundTls::Opportunistic)),
                Some("required") | Some("encrypt") => Ok(Some(OutboundTls::Required)),
                Some("none") | Some("never") => Ok(Some(OutboundTls::Never)),
                Some(o) => Err(err(
                    key,
                    format!("`{o}`: use \"opportunistic\", \"required\" or \"none\""),
                )),
            }
        };
        let mut routes: Vec<Route> = Vec::new();
        for (i, r) in raw.routes.iter().enumerate() {
            let key = |k: &str| format!("routes[{i}].{k}");
            let domain = r.domain.trim().trim_end_matches('.').to_ascii_lowercase();
            if domain.is_empty() || domain.contains('@') || domain.chars().any(char::is_whitespace) {
                return Err(err(
                    &key("domain"),
                    format!("`{}` is not a domain name or `*`", r.domain),
                ));
            }
            if routes.iter().any(|q| q.domain == domain) {
                return Err(err(&key("domain"), format!("`{domain}` has two routes")));
            }
            let (host, port) = parse_next_hop(&r.next_hop).ok_or_else(|| {
                err(
                    &key("next_hop"),
                    format!(
                        "`{}` is not host:port such as 127.0.0.1:25 or smtp.example.net:587",
                        r.next_hop
                    ),
                )
            })?;
            routes.push(Route {
                domain,
                host,
                port,
                tls: outbound_tls(&key("tls"), &r.tls)?,
            });
        }
        let mut relay_networks = Vec::new();
        for n in &raw.relay.networks {
            relay_networks.push(Network::parse(n).ok_or_else(|| {
                err(
                    "relay.networks",
                    format!("`{n}` is not a network such as 192.0.2.0/24 or 2001:db8::/32"),
                )
            })?);
        }
        let mut relay_domains = Vec::new();
        for d in &raw.relay.domains {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            if d.is_empty() || d.contains('@') || d.chars().any(char::is_whitespace) {
                return Err(err("relay.domains", format!("`{d}` is not a domain name")));
            }
            if domains.contains(&d) {
                return Err(err(
                    "relay.domains",
                    format!("`{d}` is also a local domain (server.domains)"),
                ));
            }
            relay_domains.push(d);
        }
        let relay = Relay {
            networks: relay_networks,
            domains: relay_domains,
            verify_recipients: raw.relay.verify_recipients.unwrap_or(false),
            verify_cache: duration(
                "relay.verify_cache",
                &raw.relay.verify_cache,
                DEFAULT_VERIFY_CACHE,
            )?,
        };
        let q = &raw.queue;
        let queue = QueueConfig {
            retry_first: duration("queue.retry_first", &q.retry_first, DEFAULT_RETRY_FIRST)?,
            retry_max: duration("queue.retry_max", &q.retry_max, DEFAULT_RETRY_MAX)?,
            max_age: duration("queue.max_age", &q.max_age, DEFAULT_QUEUE_MAX_AGE)?,
            mx_port: match q.mx_port {
                Some(0) => return Err(err("queue.mx_port", "must be a port number 1-65535".into())),
                Some(p) => p,
                None => 25,
            },
            tls: outbound_tls("queue.tls", &q.tls)?.unwrap_or(OutboundTls::Opportunistic),
            tls_verify: q.tls_verify.unwrap_or(false),
            concurrency: count("queue.concurrency", q.concurrency, DEFAULT_QUEUE_CONCURRENCY)?,
            connect_timeout: duration(
                "queue.connect_timeout",
                &q.connect_timeout,
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            command_timeout: duration(
                "queue.command_timeout",
                &q.command_timeout,
                DEFAULT_CLIENT_TIMEOUT,
            )?,
            poll_interval: duration("queue.poll_interval", &q.poll_interval, DEFAULT_QUEUE_POLL)?,
        };
        if queue.retry_first.is_zero() {
            return Err(err("queue.retry_first", "must be at least 1s".into()));
        }

        let data_dir = PathBuf::from(raw.server.data_dir.trim());
        let plugin_cache_dir = match &raw.server.plugin_cache_dir {
            Some(d) => base.join(d.trim()),
            None => data_dir.join("plugin-cache"),
        };
        let store_cache = match &raw.server.store_cache {
            None => crate::store::DEFAULT_CACHE,
            Some(v) => parse_size(v).map_err(|e| err("server.store_cache", e))?,
        };
        if store_cache < (1 << 20) {
            return Err(err("server.store_cache", "must be at least 1MiB".into()));
        }
        let mut submission_senders = Vec::new();
        for (user, list) in raw.submission.iter().flat_map(|s| s.senders.iter()) {
            let user = user.trim().to_lowercase();
            let mut allowed = Vec::new();
            for a in list {
                let a = a.trim().to_lowercase();
                if !a.contains('@') || a.chars().any(char::is_whitespace) {
                    return Err(err(
                        &format!("submission.senders.{user}"),
                        format!("`{a}` is not an address or @domain"),
                    ));
                }
                allowed.push(a);
            }
            submission_senders.push((user, allowed));
        }
        Ok(Config {
            submission_senders,
            routes,
            relay,
            queue,
            plugin_cache_dir,
            store_cache,
            plugins,
            scores,
            dns,
            path: None,
            origin: origin.to_owned(),
            hostname,
            data_dir,
            domains,
            smtp_listen,
            submission_listen,
            pop3_listen,
            pop3_allow_plaintext: raw.pop3.as_ref().and_then(|p| p.allow_plaintext).unwrap_or(false),
            submissions_listen,
            pop3s_listen,
            submission_auth_without_tls: raw
                .submission
                .as_ref()
                .and_then(|s| s.auth_without_tls)
                .unwrap_or(false),
            tls_cert,
            tls_key,
            limits: Limits {
                max_line_length,
                max_message_size,
                max_recipients,
                max_connections,
                max_connections_per_ip,
                max_errors,
                command_timeout: duration(
                    "limits.command_timeout",
                    &l.command_timeout,
                    DEFAULT_COMMAND_TIMEOUT,
                )?,
                data_timeout: duration("limits.data_timeout", &l.data_timeout, DEFAULT_DATA_TIMEOUT)?,
                pop3_timeout: duration("limits.pop3_timeout", &l.pop3_timeout, DEFAULT_POP3_TIMEOUT)?,
                login_failure_delay: duration(
                    "limits.login_failure_delay",
                    &l.login_failure_delay,
                    DEFAULT_LOGIN_FAILURE_DELAY,
                )?,
            },
            shutdown_timeout: duration(
                "server.shutdown_timeout",
                &raw.server.shutdown_timeout,
                DEFAULT_SHUTDOWN_TIMEOUT,
            )?,
        })
    }

    /// Whether the authenticated `user` may send as `address` (its own,
    /// or one `submission.senders` grants it).
    pub fn may_send_as(&self, user: &str, address: &str) -> bool {
        let address = address.to_lowercase();
        if address == user.to_lowercase() {
            return true;
        }
        let domain = address.rsplit_once('@').map(|(_, d)| format!("@{d}"));
        self.submission_senders
            .iter()
            .filter(|(u, _)| u.eq_ignore_ascii_case(user))
            .flat_map(|(_, list)| list)
            .any(|a| *a == address || Some(a) == domain.as_ref())
    }

    /// Whether mail for `domain` is relayed by this gateway
    /// (`relay.domains`; exact, case-insensitive).
    pub fn is_relay_domain(&self, domain: &str) -> bool {
        self.relay.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Whether a client at `ip` may relay without authenticating.
    pub fn is_relay_client(&self, ip: IpAddr) -> bool {
        self.relay.networks.iter().any(|n| n.contains(ip))
    }

    /// The static route for `domain`: its own, else the `*` smart host.
    pub fn route_for(&self, domain: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.domain.eq_ignore_ascii_case(domain))
            .or_else(|| self.routes.iter().find(|r| r.domain == "*"))
    }

    /// Whether `domain` is one of ours (ASCII case-insensitive, exact:
    /// a trailing dot or a subdomain is a different domain).
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// The database file inside `data_dir`.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("poczta.redb")
    }
}

fn parse_duration(v: &DurationValue) -> Result<Duration, String> {
    match v {
        DurationValue::Seconds(0) => Err("must be longer than zero".into()),
        DurationValue::Seconds(s) => Ok(Duration::from_secs(*s)),
        DurationValue::Text(t) => {
            let t = t.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: u64 = num
                .parse()
                .map_err(|_| format!("`{t}` is not a duration such as \"30s\", \"5m\" or \"250ms\""))?;
            let d = match unit.trim() {
                "ms" => Duration::from_millis(n),
                "" | "s" => Duration::from_secs(n),
                "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
                "h" => Duration::from_secs(n.saturating_mul(3600)),
                "d" => Duration::from_secs(n.saturating_mul(86_400)),
                _ => return Err(format!("`{t}`: unknown unit (use ms, s, m, h or d)")),
            };
            if d.is_zero() {
                return Err("must be longer than zero".into());
            }
            Ok(d)
        }
    }
}

fn parse_size(v: &SizeValue) -> Result<usize, String> {
    let bytes = match v {
        SizeValue::Bytes(b) => *b,
        SizeValue::Text(t) => {
            let t = t.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: u64 = num
                .parse()
                .map_err(|_| format!("`{t}` is not a size such as 26214400 or \"25MiB\""))?;
            let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" => 1000,
                "kib" => 1024,
                "m" | "mb" => 1_000_000,
                "mib" => 1024 * 1024,
                "g" | "gb" => 1_000_000_000,
                "gib" => 1024 * 1024 * 1024,
                _ => {
                    return Err(format!(
                        "`{t}`: unknown unit (use B, KiB, MiB, GiB, KB, MB or GB)"
                    ));
                }
            };
            n.checked_mul(mult).ok_or_else(|| format!("`{t}` is too large"))?
        }
    };
    // redb holds a value up to 3 GiB; a mail server has no business near that.
    if bytes > 1024 * 1024 * 1024 {
        return Err("must be at most 1GiB".into());
    }
    usize::try_from(bytes).map_err(|_| "is too large".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[server]\nhostname = \"h.test\"\ndata_dir = \"d\"\ndomains = [\"example.test\"]\n";

    #[test]
    fn routes_relay_and_queue_resolve() {
        let c = Config::parse(
            &format!(
                "{MINIMAL}[[routes]]\ndomain = \"Example.NET\"\nnext_hop = \"127.0.0.1:2526\"\ntls = \"required\"\n\
                 [[routes]]\ndomain = \"*\"\nnext_hop = \"smart.example.org:587\"\n\
                 [relay]\nnetworks = [\"192.0.2.0/24\", \"2001:db8::/32\", \"198.51.100.7\"]\ndomains = [\"inside.test\"]\n\
                 [queue]\nretry_first = \"1m\"\nmx_port = 2525\ntls = \"none\"\n"
            ),
            "t",
        )
        .unwrap();
        let r = c.route_for("example.net").unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.tls),
            ("127.0.0.1", 2526, Some(OutboundTls::Required))
        );
        let smart = c.route_for("anything.test").unwrap();
        assert_eq!((smart.host.as_str(), smart.port), ("smart.example.org", 587));
        assert!(c.is_relay_client("192.0.2.200".parse().unwrap()));
        assert!(c.is_relay_client("::ffff:192.0.2.1".parse().unwrap()));
        assert!(c.is_relay_client("2001:db8:1::5".parse().unwrap()));
        assert!(c.is_relay_client("198.51.100.7".parse().unwrap()));
        assert!(!c.is_relay_client("198.51.100.8".parse().unwrap()));
        assert!(!c.is_relay_client("192.0.3.1".parse().unwrap()));
        assert!(c.is_relay_domain("INSIDE.test"));
        assert!(!c.is_relay_domain("example.test"));
        assert_eq!(c.queue.retry_first, Duration::from_secs(60));
        assert_eq!((c.queue.mx_port, c.queue.tls), (2525, OutboundTls::Never));
        assert_eq!(c.queue.max_age, DEFAULT_QUEUE_MAX_AGE);

        let s = Config::parse(
            &format!(
                "{MINIMAL}[submission]\nsenders = {{ \"alice@example.test\" = [\"sales@example.test\", \"@lists.example.test\"] }}\n"
            ),
            "t",
        )
        .unwrap();
        assert!(s.may_send_as("alice@example.test", "Alice@Example.test"));
        assert!(s.may_send_as("alice@example.test", "sales@example.test"));
        assert!(s.may_send_as("alice@example.test", "any@lists.example.test"));
        assert!(!s.may_send_as("alice@example.test", "bob@example.test"));
        assert!(!s.may_send_as("bob@example.test", "sales@example.test"));

        let d = Config::parse(MINIMAL, "t").unwrap();
        assert!(d.route_for("x.test").is_none());
        assert!(
            !d.is_relay_client("127.0.0.1".parse().unwrap()),
            "no relay network by default"
        );
        assert_eq!((d.queue.mx_port, d.queue.tls), (25, OutboundTls::Opportunistic));
    }

    #[test]
    fn bad_routes_and_networks_name_the_key() {
        for (extra, key) in [
            (
                "[[routes]]\ndomain = \"x.test\"\nnext_hop = \"nohost\"\n",
                "routes[0].next_hop",
            ),
            (
                "[[routes]]\ndomain = \"x.test\"\nnext_hop = \"h:0\"\n",
                "routes[0].next_hop",
            ),
            (
                "[[routes]]\ndomain = \"x.test\"\nnext_hop = \"h:25\"\ntls = \"maybe\"\n",
                "routes[0].tls",
            ),
            ("[relay]\nnetworks = [\"10.0.0.0/33\"]\n", "relay.networks"),
            ("[relay]\ndomains = [\"example.test\"]\n", "relay.domains"),
            ("[queue]\nbogus = 1\n", "bogus"),
        ] {
            let e = Config::parse(&format!("{MINIMAL}{extra}"), "t")
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
    }

    #[test]
    fn the_gateway_example_parses() {
        let c = Config::parse(include_str!("../../../examples/gateway.toml"), "gateway.toml").unwrap();
        assert!(c.is_relay_domain("example.test"));
        assert!(c.relay.verify_recipients);
        assert_eq!(c.route_for("example.test").unwrap().port, 2526);
    }

    #[test]
    fn embedded_default_matches_the_contract() {
        let c = Config::embedded_default();
        assert_eq!(c.domains, vec!["localhost"]);
        assert_eq!(c.data_dir, PathBuf::from("./poczta-data"));
        assert_eq!(c.smtp_listen, vec!["127.0.0.1:2525".parse().unwrap()]);
        assert_eq!(c.submission_listen, vec!["127.0.0.1:2587".parse().unwrap()]);
        assert_eq!(c.pop3_listen, vec!["127.0.0.1:2110".parse().unwrap()]);
        assert_eq!(c.submissions_listen, vec!["127.0.0.1:2465".parse().unwrap()]);
        assert_eq!(c.pop3s_listen, vec!["127.0.0.1:2995".parse().unwrap()]);
        assert!(!c.submission_auth_without_tls);
        assert_eq!((c.tls_cert.as_ref(), c.tls_key.as_ref()), (None, None));
        assert_eq!(c.limits.max_message_size, 25 * 1024 * 1024);
        assert_eq!(c.limits.max_recipients, 100);
    }

    #[test]
    fn the_quick_start_example_parses_and_equals_the_defaults() {
        let c = Config::parse(
            include_str!("../../../examples/poczta.toml"),
            "examples/poczta.toml",
        )
        .unwrap();
        let d = Config::embedded_default();
        assert_eq!(c.smtp_listen, d.smtp_listen);
        assert_eq!(c.limits.max_message_size, d.limits.max_message_size);
        assert_eq!(c.limits.command_timeout, d.limits.command_timeout);
        assert_eq!(c.limits.login_failure_delay, d.limits.login_failure_delay);
    }

    const BASE: &str =
        "[server]\nhostname = \"mx.example.test\"\ndata_dir = \"d\"\ndomains = [\"Example.Test\"]\n";

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse(&format!("{BASE}[smtp]\nlisten = []\nlisen = []\n"), "f.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("f.toml") && msg.contains("lisen"), "{msg}");
        let e = Config::parse(&format!("{BASE}[smpt]\n"), "f.toml").unwrap_err();
        assert!(e.to_string().contains("smpt"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (extra, key) in [
            ("[smtp]\nlisten = [\"nope\"]\n", "smtp.listen"),
            (
                "[limits]\nmax_message_size = \"25 furlongs\"\n",
                "limits.max_message_size",
            ),
            ("[limits]\ncommand_timeout = \"0s\"\n", "limits.command_timeout"),
            ("[limits]\nmax_recipients = 0\n", "limits.max_recipients"),
            ("[limits]\nmax_line_length = 100\n", "limits.max_line_length"),
            ("store_cache = \"64KiB\"\n", "server.store_cache"),
            ("store_cache = \"lots\"\n", "server.store_cache"),
        ] {
            let e = Config::parse(&format!("{BASE}{extra}"), "f.toml").unwrap_err();
            assert!(e.to_string().contains(key), "{extra}: {e}");
        }
    }

    #[test]
    fn store_cache_defaults_and_parses() {
        let c = Config::parse(BASE, "f.toml").unwrap();
        assert_eq!(c.store_cache, crate::store::DEFAULT_CACHE);
        let c = Config::parse(&format!("{BASE}store_cache = \"512MiB\"\n"), "f.toml").unwrap();
        assert_eq!(c.store_cache, 512 << 20);
    }

    #[test]
    fn plugin_entries_resolve_against_the_config_directory() {
        let text = format!(
            "{BASE}[[plugins]]\nname = \"spam\"\npath = \"p/spam.wasm\"\non_error = \"continue\"\ngrants = [\"kv\", \"assets\"]\n\
             timeout = \"250ms\"\nmemory = \"32MiB\"\nconfig = {{ words = [\"a\"], n = 2 }}\nassets = {{ list = \"w.txt\" }}\n\
             [scores]\nreject = 20.0\n[dns]\nnameservers = [\"127.0.0.1:5353\"]\n"
        );
        let c = Config::parse_relative(&text, "f", Path::new("/etc/poczta")).unwrap();
        let p = &c.plugins[0];
        assert_eq!(p.path, PathBuf::from("/etc/poczta/p/spam.wasm"));
        assert!(p.on_error_continue && p.grant_kv && p.grant_assets && !p.grant_dns);
        assert_eq!(p.timeout, Duration::from_millis(250));
        assert_eq!(p.memory, 32 * 1024 * 1024);
        assert_eq!(
            p.assets,
            vec![("list".to_string(), PathBuf::from("/etc/poczta/w.txt"))]
        );
        let json: serde_json::Value = serde_json::from_str(&p.config_json).unwrap();
        assert_eq!(json, serde_json::json!({"words": ["a"], "n": 2}));
        assert_eq!(c.scores.reject, Some(20.0));
        assert_eq!(c.scores.junk, Some(DEFAULT_SCORE_JUNK));
        assert_eq!(c.dns.nameservers, vec!["127.0.0.1:5353".parse().unwrap()]);
        for (bad, key) in [
            ("on_error = \"ignore\"", "plugins[0].on_error"),
            ("grants = [\"net\"]", "plugins[0].grants"),
            ("assets = { a = \"x\" }", "plugins[0].assets"),
        ] {
            let e = Config::parse(
                &format!("{BASE}[[plugins]]\nname = \"x\"\npath = \"x.wasm\"\n{bad}\n"),
                "f",
            )
            .unwrap_err();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn units_and_domains_resolve() {
        let c = Config::parse(
            &format!(
                "{BASE}[limits]\nmax_message_size = \"10MiB\"\ncommand_timeout = \"2m\"\ndata_timeout = 90\n"
            ),
            "f",
        )
        .unwrap();
        assert_eq!(c.limits.max_message_size, 10 * 1024 * 1024);
        assert_eq!(c.limits.command_timeout, Duration::from_secs(120));
        assert_eq!(c.limits.data_timeout, Duration::from_secs(90));
        assert!(c.is_local_domain("EXAMPLE.test"));
        assert!(!c.is_local_domain("example.test."));
        assert!(!c.is_local_domain("sub.example.test"));
    }
}
