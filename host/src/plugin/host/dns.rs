//! `poczta:plugin/dns`: look-ups through the server's resolver
//! ([`crate::dns`]), with the `dns` grant, at most
//! [`MAX_DNS_PER_CALL`](crate::plugin::state::MAX_DNS_PER_CALL) per hook
//! call, each bounded by the resolver timeout *and* the time left in the
//! hook call (the hook deadline covers host calls too).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::dns::{DnsError, Resolver};
use crate::plugin::bindings::poczta::plugin::dns::{Host, HostError, Mx};
use crate::plugin::state::{MAX_DNS_PER_CALL, PluginState};

type Answer<T> = wasmtime::Result<Result<T, HostError>>;

impl PluginState {
    /// Grant and quota check; the resolver and the time left.
    fn dns_begin(&mut self) -> Result<(Arc<Resolver>, Duration), HostError> {
        if !self.capabilities || !self.plugin.grants.dns {
            return Err(HostError::NotGranted);
        }
        self.counters.dns += 1;
        if self.counters.dns > MAX_DNS_PER_CALL {
            return Err(HostError::Quota);
        }
        Ok((Arc::clone(&self.plugin.services.dns), self.remaining()))
    }
}

fn host_error(e: DnsError) -> HostError {
    match e {
        DnsError::Timeout => HostError::Timeout,
        other => HostError::Failed(other.to_string()),
    }
}

fn parse_ip(ip: &str) -> Result<IpAddr, HostError> {
    ip.trim().parse().map_err(|_| {
        HostError::Failed(format!(
            "invalid IP address {:?}",
            crate::plugin::verdict::truncate(ip, 64)
        ))
    })
}

fn texts<T: ToString>(list: Vec<T>) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

impl Host for PluginState {
    async fn lookup_a(&mut self, name: String) -> Answer<Vec<String>> {
        let (dns, left) = match self.dns_begin() {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        Ok(dns.a_within(&name, left).await.map(texts).map_err(host_error))
    }

    async fn lookup_aaaa(&mut self, name: String) -> Answer<Vec<String>> {
        let (dns, left) = match self.dns_begin() {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        Ok(dns.aaaa_within(&name, left).await.map(texts).map_err(host_error))
    }

    async fn lookup_mx(&mut self, name: String) -> Answer<Vec<Mx>> {
        let (dns, left) = match self.dns_begin() {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        Ok(dns
            .mx_within(&name, left)
            .await
            .map(|list| {
                list.into_iter()
                    .map(|m| Mx {
                        preference: m.preference,
                        exchange: m.exchange,
                    })
                    .collect()
            })
            .map_err(host_error))
    }

    async fn lookup_txt(&mut self, name: String) -> Answer<Vec<String>> {
        let (dns, left) = match self.dns_begin() {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        Ok(dns.txt_within(&name, left).await.map_err(host_error))
    }

    async fn lookup_ptr(&mut self, ip: String) -> Answer<Vec<String>> {
        let (dns, left) = match self.dns_begin() {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let ip = match parse_ip(&ip) {
            Ok(ip) => ip,
            Err(e) => return Ok(Err(e)),
        };
        Ok(dns.ptr_within(ip, left).await.map_err(host_error))
    }

    async fn dnsbl(&mut self, ip: String, zone: String) -> Answer<Vec<String>> {
        let (dns, left) = match self.dns_begin() {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let ip = match parse_ip(&ip) {
            Ok(ip) => ip,
            Err(e) => return Ok(Err(e)),
        };
        Ok(dns
            .dnsbl_within(ip, &zone, left)
            .await
            .map(texts)
            .map_err(host_error))
    }
}
