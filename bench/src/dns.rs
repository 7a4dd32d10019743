//! `dns` subcommand: a tiny authoritative DNS responder on loopback UDP, so
//! that plugins with the `dns` grant (DNSBL, URIBL, PTR checks) can be
//! measured without the network. Every name is NXDOMAIN (with an SOA in the
//! authority section, so resolvers cache the negative answer as a real one
//! would) except the `--a NAME=IPV4` records given.
//!
//! It answers only what a benchmark needs: one question per query, class IN,
//! no EDNS, no TCP, no zone transfers. It stops by itself after `--duration`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::net::UdpSocket;

/// TTL of the A records and of the negative answers (SOA minimum).
const TTL: u32 = 300;
const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const CLASS_IN: u16 = 1;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_FORMERR: u8 = 1;

/// Arguments of `poczta-bench dns`.
#[derive(Debug, Args)]
pub struct DnsArgs {
    /// UDP address to answer on. Must be loopback.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:5353")]
    listen: String,

    /// An A record, NAME=IPV4 (e.g. 2.0.0.127.zen.example=127.0.0.2); repeat
    /// for more. Every other name is NXDOMAIN.
    #[arg(long = "a", value_name = "NAME=IPV4", value_parser = parse_record)]
    records: Vec<(String, Ipv4Addr)>,

    /// Seconds to serve before exiting.
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
}

fn parse_record(s: &str) -> Result<(String, Ipv4Addr), String> {
    let (name, ip) = s.split_once('=').ok_or("expected NAME=IPV4")?;
    let ip = ip.parse().map_err(|e| format!("{ip:?}: {e}"))?;
    Ok((normalize(name), ip))
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Serves until `--duration` passes; `Ok(true)` at the end.
pub async fn run(args: DnsArgs) -> Result<bool> {
    let addr: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen {:?}: expected IP:PORT", args.listen))?;
    if !addr.ip().is_loopback() {
        bail!("--listen {addr}: only loopback addresses are served");
    }
    let socket = UdpSocket::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let records: HashMap<String, Ipv4Addr> = args.records.into_iter().collect();
    eprintln!(
        "poczta-bench dns: answering on {addr} for {} s ({} A records, NXDOMAIN otherwise)",
        args.duration,
        records.len()
    );
    let mut buf = [0u8; 512];
    let mut answered = 0u64;
    let serve = async {
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            if let Some(reply) = answer(&buf[..n], &records) {
                let _ = socket.send_to(&reply, from).await;
                answered += 1;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(args.duration), serve).await;
    eprintln!("poczta-bench dns: {answered} queries answered");
    Ok(true)
}

/// The reply to one query, or `None` for something that is not a query.
fn answer(query: &[u8], records: &HashMap<String, Ipv4Addr>) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    let parsed = (qdcount == 1).then(|| question(query)).flatten();
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&query[..2]);
    // QR, opcode copied, AA; RD copied.
    out.push(0x84 | (query[2] & 0x79));
    let Some((name, qtype, end)) = parsed else {
        out.push(RCODE_FORMERR);
        out.extend_from_slice(&[0; 8]);
        return Some(out);
    };
    let hit = (qtype == TYPE_A).then(|| records.get(&name)).flatten();
    out.push(if hit.is_some() || records.contains_key(&name) {
        0
    } else {
        RCODE_NXDOMAIN
    });
    let (an, ns) = if hit.is_some() { (1u16, 0u16) } else { (0, 1) };
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&an.to_be_bytes());
    out.extend_from_slice(&ns.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&query[12..end]);
    if let Some(ip) = hit {
        out.extend_from_slice(&[0xc0, 12]); // pointer to the question's name
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    } else {
        // SOA of the root: an ancestor of every name, so any resolver
        // accepts it as the source of the negative TTL.
        out.push(0);
        out.extend_from_slice(&TYPE_SOA.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        let mut rdata = Vec::with_capacity(40);
        for label in [&b"ns"[..], &b"bench"[..]] {
            rdata.push(label.len() as u8);
            rdata.extend_from_slice(label);
        }
        rdata.push(0);
        for label in [&b"hostmaster"[..], &b"bench"[..]] {
            rdata.push(label.len() as u8);
            rdata.extend_from_slice(label);
        }
        rdata.push(0);
        for v in [1u32, 3600, 600, 86_400, TTL] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

/// (lower-cased name without the final dot, qtype, offset after the question).
fn question(msg: &[u8]) -> Option<(String, u16, usize)> {
    let mut pos = 12;
    let mut name = String::new();
    loop {
        let len = usize::from(*msg.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression or extended labels: not in a question
        }
        let label = msg.get(pos..pos + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
    let qclass = u16::from_be_bytes([*msg.get(pos + 2)?, *msg.get(pos + 3)?]);
    if qclass != CLASS_IN {
        return None;
    }
    Some((name, qtype, pos + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    #[test]
    fn listed_names_get_their_address_and_others_nxdomain_with_soa() {
        let records: HashMap<_, _> = [("2.0.0.127.bl.test".to_string(), Ipv4Addr::new(127, 0, 0, 2))].into();
        let r = answer(&query("2.0.0.127.BL.test", TYPE_A), &records).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 2]);

        let r = answer(&query("1.0.0.127.bl.test", TYPE_A), &records).unwrap();
        assert_eq!(r[3] & 0x0f, RCODE_NXDOMAIN);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0);
        assert_eq!(u16::from_be_bytes([r[8], r[9]]), 1, "SOA in authority");

        // The name exists, but not with this type: NOERROR, no answer.
        let r = answer(&query("2.0.0.127.bl.test", 16), &records).unwrap();
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0);
    }

    #[test]
    fn replies_and_garbage_are_not_answered_or_get_formerr() {
        let records = HashMap::new();
        let mut reply = query("x.test", TYPE_A);
        reply[2] |= 0x80;
        assert!(answer(&reply, &records).is_none());
        assert!(answer(&[0; 5], &records).is_none());
        let mut bad = query("x.test", TYPE_A);
        bad.truncate(15);
        assert_eq!(answer(&bad, &records).unwrap()[3] & 0x0f, RCODE_FORMERR);
    }
}
