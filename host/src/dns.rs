//! DNS look-ups for the server (MX routing) and for plugins (the `dns`
//! capability): a thin wrapper over hickory-resolver with a time limit on
//! every query, a small TTL-respecting cache, and the RFC 5782 DNSBL helper.
//!
//! Names are always queried as absolute names (a trailing dot is added), so
//! the search list in resolv.conf never turns `example.test` into
//! `example.test.corp.local`. "No such name" and "no records of that type"
//! are empty answers, not errors: callers (and plugins) only need to tell
//! "nothing there" from "could not find out".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig as HickoryConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};

/// Default time limit for one look-up, all retries included. Mail policy
/// must not hold an SMTP client for long; RFC 5782 lists are fast or down.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// Default number of cached answers. Small: the cache only has to absorb
/// the burst of identical DNSBL/MX queries from concurrent sessions.
pub const DEFAULT_CACHE_SIZE: usize = 1024;

/// Longest a positive answer is cached, whatever its TTL (a listing that was
/// removed should stop counting soon).
const MAX_POSITIVE_TTL: Duration = Duration::from_secs(3600);

/// Longest a negative answer is cached.
const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(300);

/// Resolver settings, resolved from the `[dns]` config table.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// Name servers (UDP, with TCP fallback). Empty = the system's
    /// resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// Time limit for one look-up.
    pub timeout: Duration,
    /// Number of cached answers (0 disables the cache).
    pub cache_size: usize,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            nameservers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }
}

/// Why a look-up gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The time limit ran out.
    #[error("DNS look-up timed out")]
    Timeout,
    /// The name or address given is not valid.
    #[error("invalid DNS name or address: {0}")]
    Invalid(String),
    /// The resolver could not be configured (e.g. unreadable resolv.conf).
    #[error("DNS resolver configuration: {0}")]
    Config(String),
    /// Any other resolver failure (SERVFAIL, refused, network).
    #[error("DNS look-up failed: {0}")]
    Failed(String),
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    /// Lower is preferred.
    pub preference: u16,
    /// The exchange host, without the trailing dot.
    pub exchange: String,
}

/// A shared, cached, time-limited resolver. Cheap to share behind an `Arc`.
pub struct Resolver {
    inner: TokioResolver,
    timeout: Duration,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Builds a resolver. Reads resolv.conf when `config.nameservers` is
    /// empty. Sends nothing yet.
    pub fn new(config: &ResolverConfig) -> Result<Resolver, DnsError> {
        let provider = TokioConnectionProvider::default();
        let mut builder = if config.nameservers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| DnsError::Config(e.to_string()))?
        } else {
            let mut hc = HickoryConfig::new();
            for &addr in &config.nameservers {
                hc.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
                hc.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(hc, provider)
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = config.timeout;
        opts.attempts = 2;
        opts.cache_size = config.cache_size;
        opts.positive_max_ttl = Some(MAX_POSITIVE_TTL);
        opts.negative_max_ttl = Some(MAX_NEGATIVE_TTL);
        opts.ndots = 0;
        // DNSBL answers are 127.0.0.x: keep them, whatever the server says.
        opts.preserve_intermediates = true;
        Ok(Resolver {
            inner: builder.build(),
            timeout: config.timeout,
        })
    }

    /// The configured per-look-up time limit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// IPv4 addresses of `name`.
    pub async fn a(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        self.a_within(name, self.timeout).await
    }

    /// IPv4 addresses of `name`, giving up after `limit` (capped at the
    /// configured timeout).
    pub async fn a_within(&self, name: &str, limit: Duration) -> Result<Vec<Ipv4Addr>, DnsError> {
        let name = absolute(name)?;
        self.bounded(limit, self.inner.ipv4_lookup(name))
            .await
            .map(|l| l.map(|l| l.iter().map(|a| a.0).collect()).unwrap_or_default())
    }

    /// IPv6 addresses of `name`, giving up after `limit`.
    pub async fn aaaa_within(&self, name: &str, limit: Duration) -> Result<Vec<Ipv6Addr>, DnsError> {
        let name = absolute(name)?;
        self.bounded(limit, self.inner.ipv6_lookup(name))
            .await
            .map(|l| l.map(|l| l.iter().map(|a| a.0).collect()).unwrap_or_default())
    }

    /// IPv6 addresses of `name`.
    pub async fn aaaa(&self, name: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
        self.aaaa_within(name, self.timeout).await
    }

    /// MX records of `name`, sorted by preference.
    pub async fn mx(&self, name: &str) -> Result<Vec<Mx>, DnsError> {
        self.mx_within(name, self.timeout).await
    }

    /// MX records of `name`, sorted by preference, giving up after `limit`.
    pub async fn mx_within(&self, name: &str, limit: Duration) -> Result<Vec<Mx>, DnsError> {
        let name = absolute(name)?;
        let lookup = self.bounded(limit, self.inner.mx_lookup(name)).await?;
        let mut out: Vec<Mx> = lookup
            .map(|l| {
                l.iter()
                    .map(|mx| Mx {
                        preference: mx.preference(),
                        exchange: relative(&mx.exchange().to_string()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|m| m.preference);
        Ok(out)
    }

    /// TXT records of `name`, each with its character-strings joined.
    pub async fn txt_within(&self, name: &str, limit: Duration) -> Result<Vec<String>, DnsError> {
        let name = absolute(name)?;
        let lookup = self.bounded(limit, self.inner.txt_lookup(name)).await?;
        Ok(lookup
            .map(|l| {
                l.iter()
                    .map(|txt| {
                        let bytes: Vec<u8> = txt.txt_data().iter().flat_map(|s| s.iter().copied()).collect();
                        String::from_utf8_lossy(&bytes).into_owned()
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// TXT records of `name`.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        self.txt_within(name, self.timeout).await
    }

    /// PTR names of `ip`, without trailing dots.
    pub async fn ptr_within(&self, ip: IpAddr, limit: Duration) -> Result<Vec<String>, DnsError> {
        let lookup = self.bounded(limit, self.inner.reverse_lookup(ip)).await?;
        Ok(lookup
            .map(|l| l.iter().map(|ptr| relative(&ptr.0.to_string())).collect())
            .unwrap_or_default())
    }

    /// PTR names of `ip`.
    pub async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        self.ptr_within(ip, self.timeout).await
    }

    /// Is `ip` listed in DNS blocklist `zone` (RFC 5782)? The A records of
    /// the listing (e.g. `127.0.0.2`), empty when not listed.
    pub async fn dnsbl_within(
        &self,
        ip: IpAddr,
        zone: &str,
        limit: Duration,
    ) -> Result<Vec<Ipv4Addr>, DnsError> {
        let name = dnsbl_query_name(ip, zone)?;
        self.a_within(&name, limit).await
    }

    /// Is `ip` listed in DNS blocklist `zone`?
    pub async fn dnsbl(&self, ip: IpAddr, zone: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        self.dnsbl_within(ip, zone, self.timeout).await
    }

    /// Runs `lookup` for at most `min(limit, timeout)`; maps "no such
    /// name/records" to `Ok(None)`.
    async fn bounded<T>(
        &self,
        limit: Duration,
        lookup: impl Future<Output = Result<T, ResolveError>>,
    ) -> Result<Option<T>, DnsError> {
        let limit = limit.min(self.timeout);
        if limit.is_zero() {
            return Err(DnsError::Timeout);
        }
        match tokio::time::timeout(limit, lookup).await {
            Err(_) => Err(DnsError::Timeout),
            Ok(Ok(found)) => Ok(Some(found)),
            Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => Ok(None),
            Ok(Err(e)) => {
                let text = e.to_string();
                if text.contains("timed out") || text.contains("timeout") {
                    Err(DnsError::Timeout)
                } else {
                    Err(DnsError::Failed(text))
                }
            }
        }
    }
}

/// The RFC 5782 query name for `ip` in `zone`: IPv4 octets reversed
/// (`192.0.2.1` → `1.2.0.192.zone`), IPv6 as 32 reversed nibbles
/// (`2001:db8::1` → `1.0.0.0.…8.b.d.0.1.0.0.2.zone`).
pub fn dnsbl_query_name(ip: IpAddr, zone: &str) -> Result<String, DnsError> {
    let zone = zone.trim().trim_end_matches('.');
    if zone.is_empty() || zone.starts_with('.') || zone.contains("..") || !zone.is_ascii() {
        return Err(DnsError::Invalid(format!("DNSBL zone {zone:?}")));
    }
    // A v4-mapped IPv6 address is an IPv4 client (dual-stack listeners).
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let mut name = String::with_capacity(72 + zone.len());
    match ip {
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
    Ok(name)
}

/// Validates `name` and makes it absolute (trailing dot).
fn absolute(name: &str) -> Result<String, DnsError> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 253
        || !name.is_ascii()
        || name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(DnsError::Invalid(format!("{name:?}")));
    }
    Ok(if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    })
}

/// Drops the trailing dot of an absolute name.
fn relative(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnsbl_ipv4_reverses_octets() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            dnsbl_query_name(ip, "zen.example.test").unwrap(),
            "1.2.0.192.zen.example.test"
        );
        assert_eq!(dnsbl_query_name(ip, "bl.test.").unwrap(), "1.2.0.192.bl.test");
    }

    #[test]
    fn dnsbl_ipv6_uses_reversed_nibbles() {
        // RFC 5782 §2.4 example.
        let ip: IpAddr = "2001:db8:1:2:3:4:567:89ab".parse().unwrap();
        assert_eq!(
            dnsbl_query_name(ip, "ugly.example.com").unwrap(),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
        );
        let ip: IpAddr = "::1".parse().unwrap();
        let name = dnsbl_query_name(ip, "z.test").unwrap();
        assert!(name.starts_with("1.0.0.0."), "{name}");
        assert_eq!(name.split('.').count(), 32 + 2);
    }

    #[test]
    fn dnsbl_v4_mapped_is_ipv4() {
        let ip: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(dnsbl_query_name(ip, "bl.test").unwrap(), "7.2.0.192.bl.test");
    }

    #[test]
    fn dnsbl_rejects_bad_zones() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for zone in ["", ".", "a..b", "zoné.test"] {
            assert!(dnsbl_query_name(ip, zone).is_err(), "{zone:?}");
        }
    }

    #[test]
    fn names_are_made_absolute_and_checked() {
        assert_eq!(absolute("example.test").unwrap(), "example.test.");
        assert_eq!(absolute("example.test.").unwrap(), "example.test.");
        assert!(absolute("bad name").is_err());
        assert!(absolute("").is_err());
        assert_eq!(relative("mx.example.test."), "mx.example.test");
    }

    #[tokio::test]
    async fn unreachable_server_times_out_within_limit() {
        // A black-hole address (TEST-NET-1, nothing listens): the look-up
        // must give up at the limit, not hang.
        let resolver = Resolver::new(&ResolverConfig {
            nameservers: vec!["192.0.2.1:53".parse().unwrap()],
            timeout: Duration::from_millis(200),
            cache_size: 16,
        })
        .unwrap();
        let err = resolver
            .a_within("example.test", Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, DnsError::Timeout | DnsError::Failed(_)), "{err:?}");
    }
}
