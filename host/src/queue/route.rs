//! Where a domain's mail goes: a static route (`[[routes]]`, `*` for a
//! smart host), else its MX hosts (RFC 5321 §5.1): by preference, random
//! among equals, the domain itself when it has no MX, and an immediate
//! permanent failure for a null MX (RFC 7505).

use std::net::IpAddr;

use crate::config::{Config, OutboundTls};
use crate::dns::{DnsError, Mx, Resolver};

/// One host to try, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The host name (or address literal) for TLS SNI and the logs.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The STARTTLS policy for it.
    pub tls: OutboundTls,
    /// A route (or an address literal) names this hop; MX hosts are not.
    pub configured: bool,
}

/// Why a domain has no hop to try.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// RFC 7505: the domain accepts no mail. Permanent (`5.1.10`).
    #[error("the domain accepts no mail (null MX, RFC 7505)")]
    NullMx,
    /// No MX and no address: the domain does not receive mail. Permanent.
    #[error("no mail host found for the domain")]
    NoHost,
    /// DNS could not answer now. Transient.
    #[error("DNS: {0}")]
    Dns(DnsError),
}

/// The hops for `domain`, best first. Address lookup of each hop happens
/// when it is tried ([`addresses`]), so a dead first MX costs no extra
/// look-ups for the others when it answers.
pub async fn hops(config: &Config, resolver: &Resolver, domain: &str) -> Result<Vec<Hop>, RouteError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if let Some(route) = config.route_for(&domain) {
        return Ok(vec![Hop {
            host: route.host.clone(),
            port: route.port,
            tls: route.tls.unwrap_or(config.queue.tls),
            configured: true,
        }]);
    }
    let port = config.queue.mx_port;
    let tls = config.queue.tls;
    if let Some(ip) = address_literal(&domain) {
        return Ok(vec![Hop {
            host: ip.to_string(),
            port,
            tls,
            configured: true,
        }]);
    }
    let mxs = resolver.mx(&domain).await.map_err(RouteError::Dns)?;
    let ordered = order_mx(mxs, seed(&domain))?;
    let names = if ordered.is_empty() {
        // RFC 5321 §5.1: no MX → the domain itself is the implicit MX.
        vec![domain]
    } else {
        ordered
    };
    Ok(names
        .into_iter()
        .map(|host| Hop {
            host,
            port,
            tls,
            configured: false,
        })
        .collect())
}

/// The addresses of a hop: the literal, or AAAA and A (IPv4 first: mail
/// over IPv6 from a host without IPv6 reputation fares worse). Empty when
/// the name has none.
pub async fn addresses(resolver: &Resolver, hop: &Hop) -> Result<Vec<IpAddr>, DnsError> {
    if let Ok(ip) = hop.host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let v4 = resolver.a(&hop.host).await;
    let v6 = resolver.aaaa(&hop.host).await;
    let mut out: Vec<IpAddr> = Vec::new();
    let mut failure = None;
    match v4 {
        Ok(list) => out.extend(list.into_iter().map(IpAddr::V4)),
        Err(e) => failure = Some(e),
    }
    match v6 {
        Ok(list) => out.extend(list.into_iter().map(IpAddr::V6)),
        Err(e) => failure = failure.or(Some(e)),
    }
    match failure {
        // One family failing is fine when the other answered.
        Some(e) if out.is_empty() => Err(e),
        _ => Ok(out),
    }
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3).
fn address_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    match inner.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("ipv6:") => inner[5..].parse().ok(),
        _ => inner.parse().ok(),
    }
}

/// MX records by preference, shuffled within a preference by `seed`;
/// a null MX (RFC 7505 §3: one record, preference 0, exchange ".") is an
/// error. Duplicate exchanges are tried once.
pub fn order_mx(mut mxs: Vec<Mx>, mut seed: u64) -> Result<Vec<String>, RouteError> {
    if mxs.iter().any(|m| m.exchange.trim_end_matches('.').is_empty()) {
        return Err(RouteError::NullMx);
    }
    mxs.sort_by_key(|m| m.preference);
    let mut out: Vec<String> = Vec::with_capacity(mxs.len());
    let mut i = 0;
    while i < mxs.len() {
        let j = mxs[i..]
            .iter()
            .position(|m| m.preference != mxs[i].preference)
            .map_or(mxs.len(), |k| i + k);
        let group = &mut mxs[i..j];
        // Fisher-Yates with a small xorshift: spreading load over equal
        // MX hosts needs no cryptographic randomness.
        for k in (1..group.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            group.swap(k, (seed % (k as u64 + 1)) as usize);
        }
        for m in group.iter() {
            let host = m.exchange.trim_end_matches('.').to_ascii_lowercase();
            if !out.contains(&host) {
                out.push(host);
            }
        }
        i = j;
    }
    Ok(out)
}

fn seed(domain: &str) -> u64 {
    let t = crate::clock::unix_micros();
    domain.bytes().fold(t ^ 0x9e37_79b9_7f4a_7c15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(preference: u16, exchange: &str) -> Mx {
        Mx {
            preference,
            exchange: exchange.into(),
        }
    }

    #[test]
    fn preference_orders_and_equal_ones_are_shuffled() {
        let list = vec![
            mx(20, "b.test"),
            mx(10, "a1.test"),
            mx(10, "a2.test"),
            mx(30, "c.test"),
        ];
        let mut firsts = std::collections::HashSet::new();
        for s in 1..64u64 {
            let o = order_mx(list.clone(), s.wrapping_mul(0x2545_f491_4f6c_dd1d)).unwrap();
            assert_eq!(o.len(), 4);
            assert!(o[0].starts_with("a") && o[1].starts_with("a"));
            assert_eq!(o[2], "b.test");
            assert_eq!(o[3], "c.test");
            firsts.insert(o[0].clone());
        }
        assert_eq!(
            firsts.len(),
            2,
            "both equal-preference hosts come first sometimes"
        );
    }

    #[test]
    fn null_mx_is_an_error_and_duplicates_go() {
        assert_eq!(order_mx(vec![mx(0, "")], 1), Err(RouteError::NullMx));
        assert_eq!(order_mx(vec![mx(0, ".")], 1), Err(RouteError::NullMx));
        assert_eq!(
            order_mx(vec![mx(10, "A.test."), mx(20, "a.test")], 1).unwrap(),
            vec!["a.test".to_string()]
        );
        assert!(order_mx(vec![], 1).unwrap().is_empty());
    }

    #[test]
    fn address_literals() {
        assert_eq!(address_literal("[192.0.2.1]"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(
            address_literal("[IPv6:2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(address_literal("example.test"), None);
        assert_eq!(address_literal("[bogus]"), None);
    }
}
