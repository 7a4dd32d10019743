//! The `dns` capability end to end, against a real authoritative name server
//! (hickory-server) on loopback: plugin look-ups through the `poczta`
//! binary, what a plugin sees when the name server is down, and the
//! resolver's RFC 5782 DNSBL helper against the same zone.
//!
//! [`TestDns`] is reusable by other test areas (e.g. outbound delivery):
//! `TestDns::start(Zone::standard().mx("other.test", 10, "mx.other.test"))`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::ServerFuture;
use hickory_server::authority::{AuthorityObject, Catalog, ZoneType};
use hickory_server::proto::rr::rdata::{A, MX, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryAuthority;
use poczta::dns::{Mx, Resolver, ResolverConfig};

use crate::harness::{Server, WAIT, plugin_entry, pop3_fetch_all, try_send};

/// TTL of every test record.
const TTL: u32 = 60;

/// Zone content for [`TestDns`]. All records live in one authoritative root
/// zone, so records for any name can be added; every other name is NXDOMAIN.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    records: Vec<Record>,
}

/// An absolute name from `name` (with or without the trailing dot).
fn fqdn(name: &str) -> Name {
    let name = name.trim_end_matches('.');
    Name::from_ascii(format!("{name}.")).unwrap_or_else(|e| panic!("bad DNS name {name:?}: {e}"))
}

impl Zone {
    /// The shared test zone: `example.test` (A, MX, SPF TXT), its MX host
    /// on loopback, and the RFC 5782 test points of the `zen.test` DNSBL
    /// (127.0.0.2 listed, 127.0.0.1 not).
    pub fn standard() -> Zone {
        Zone::default()
            .a("example.test", Ipv4Addr::new(192, 0, 2, 10))
            .a("mx.example.test", Ipv4Addr::LOCALHOST)
            .mx("example.test", 10, "mx.example.test")
            .txt("example.test", "v=spf1 -all")
            .a("2.0.0.127.zen.test", Ipv4Addr::new(127, 0, 0, 2))
            .txt("2.0.0.127.zen.test", "listed for testing")
    }

    /// Adds any record (names must be absolute).
    pub fn record(mut self, record: Record) -> Zone {
        self.records.push(record);
        self
    }

    /// Adds an A record.
    pub fn a(self, name: &str, ip: Ipv4Addr) -> Zone {
        self.record(Record::from_rdata(fqdn(name), TTL, RData::A(A(ip))))
    }

    /// Adds an MX record.
    pub fn mx(self, name: &str, preference: u16, exchange: &str) -> Zone {
        let mx = MX::new(preference, fqdn(exchange));
        self.record(Record::from_rdata(fqdn(name), TTL, RData::MX(mx)))
    }

    /// Adds a TXT record with one character-string.
    pub fn txt(self, name: &str, text: &str) -> Zone {
        let txt = TXT::new(vec![text.to_string()]);
        self.record(Record::from_rdata(fqdn(name), TTL, RData::TXT(txt)))
    }

    fn authority(self) -> InMemoryAuthority {
        let mut zone = InMemoryAuthority::empty(Name::root(), ZoneType::Primary, false);
        let soa = SOA::new(fqdn("ns.test"), fqdn("hostmaster.test"), 1, 3600, 600, 86400, TTL);
        let soa = Record::from_rdata(Name::root(), TTL, RData::SOA(soa));
        for r in std::iter::once(soa).chain(self.records) {
            assert!(zone.upsert_mut(r.clone(), 1), "record refused: {r}");
        }
        zone
    }
}

/// A hickory-server name server on 127.0.0.1 (UDP and TCP on the same free
/// port), serving a [`Zone`] from its own thread and tokio runtime. Dropping
/// it stops the server and joins the thread.
pub struct TestDns {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestDns {
    /// Starts serving `zone`; it answers as soon as this returns.
    pub fn start(zone: Zone) -> TestDns {
        let (udp, tcp) = bind_udp_and_tcp();
        let addr = udp.local_addr().unwrap();
        let mut catalog = Catalog::new();
        let authority: Arc<dyn AuthorityObject> = Arc::new(zone.authority());
        catalog.upsert(LowerName::from(Name::root()), vec![authority]);

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name("test-dns".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut server = ServerFuture::new(catalog);
                    let registered = (|| {
                        server.register_socket_std(udp)?;
                        server.register_listener_std(tcp, Duration::from_secs(5))
                    })();
                    let ok = registered.is_ok();
                    let _ = ready_tx.send(registered.map_err(|e| format!("register: {e}")));
                    if ok {
                        // Until the handle is dropped (send or drop both end it).
                        let _ = stopped.await;
                    }
                    server.shutdown_token().cancel();
                    // Dropping the server aborts its tasks (open TCP
                    // connections included): nothing to wait for.
                });
            })
            .expect("spawn the test DNS thread");
        match ready.recv_timeout(WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("test DNS server did not start: {e}"),
            Err(e) => panic!("test DNS server did not start within {WAIT:?}: {e}"),
        }
        TestDns {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `[dns]` config table that points the server at this name server.
    pub fn config(&self) -> String {
        dns_table(self.addr, "")
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same free loopback port.
fn bind_udp_and_tcp() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
            return (udp, tcp);
        }
    }
    panic!("no free port for both UDP and TCP on 127.0.0.1");
}

/// A `[dns]` table naming `nameserver`, plus `extra` lines.
fn dns_table(nameserver: SocketAddr, extra: &str) -> String {
    format!("[dns]\nnameservers = [\"{nameserver}\"]\n{extra}\n")
}

/// The kv-counter plugin with `grants`, and the time it needs for DNS.
fn kv_counter(grants: &str) -> String {
    plugin_entry(
        "count",
        "kv-counter",
        &format!("grants = [{grants}]\ntimeout = \"3s\""),
    )
}

fn header_of(msg: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let prefix = format!("{name}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

/// Sends one message to alice through `s` (must be accepted) and returns
/// its `X-Poczta-Dns` header as delivered.
fn dns_header_of_delivered_mail(s: &Server) -> String {
    let r = try_send(s.smtp, "alice@example.test", "dns");
    assert!(r.starts_with("250"), "accepted: {r}");
    let msgs = pop3_fetch_all(s.pop3, "alice", "secret", true);
    assert_eq!(msgs.len(), 1, "one message delivered");
    header_of(&msgs[0], "X-Poczta-Dns").unwrap_or_else(|| {
        panic!(
            "no X-Poczta-Dns header in:\n{}",
            String::from_utf8_lossy(&msgs[0])
        )
    })
}

#[test]
fn dns_import_answers_from_a_loopback_zone() {
    let dns = TestDns::start(Zone::standard());
    let s = Server::start_with(&format!("{}{}", kv_counter("\"dns\""), dns.config()));
    assert_eq!(dns_header_of_delivered_mail(&s), "192.0.2.10");
}

#[test]
fn dns_import_without_the_grant_is_not_granted() {
    let dns = TestDns::start(Zone::standard());
    let s = Server::start_with(&format!("{}{}", kv_counter(""), dns.config()));
    assert_eq!(dns_header_of_delivered_mail(&s), "not-granted");
}

#[test]
fn dns_outage_is_an_error_value_and_mail_is_still_accepted() {
    // A closed port (ICMP unreachable) and a bound socket that never
    // answers (a real time-out); TCP on both ports is refused.
    let closed = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (what, ns) in [("closed", closed), ("silent", silent.local_addr().unwrap())] {
        let s = Server::start_with(&format!(
            "{}{}",
            kv_counter("\"dns\""),
            dns_table(ns, "timeout = \"500ms\"")
        ));
        let v = dns_header_of_delivered_mail(&s);
        assert!(
            v == "timeout" || v == "failed",
            "{what} name server: the plugin gets an error value, got {v:?}"
        );
        // The server is not stuck: the next transaction is served too.
        assert!(
            try_send(s.smtp, "bob@example.test", "again").starts_with("250"),
            "{what}: the next message is accepted"
        );
    }
}

fn resolver_for(dns: &TestDns) -> Resolver {
    Resolver::new(&ResolverConfig {
        nameservers: vec![dns.addr()],
        timeout: Duration::from_secs(5),
        ..Default::default()
    })
    .expect("resolver")
}

#[tokio::test]
async fn dnsbl_helper_reads_the_rfc5782_test_points() {
    let dns = TestDns::start(Zone::standard());
    let r = resolver_for(&dns);
    let listed = r.dnsbl("127.0.0.2".parse().unwrap(), "zen.test").await;
    assert_eq!(listed, Ok(vec![Ipv4Addr::new(127, 0, 0, 2)]));
    let clean = r.dnsbl("127.0.0.1".parse().unwrap(), "zen.test").await;
    assert_eq!(clean, Ok(vec![]), "NXDOMAIN = not listed");
    assert_eq!(
        r.txt("2.0.0.127.zen.test").await,
        Ok(vec!["listed for testing".to_string()])
    );
}

#[tokio::test]
async fn resolver_reads_the_standard_zone() {
    let dns = TestDns::start(Zone::standard());
    let r = resolver_for(&dns);
    assert_eq!(r.a("example.test").await, Ok(vec![Ipv4Addr::new(192, 0, 2, 10)]));
    assert_eq!(
        r.mx("example.test").await,
        Ok(vec![Mx {
            preference: 10,
            exchange: "mx.example.test".into()
        }])
    );
    assert_eq!(r.a("mx.example.test").await, Ok(vec![Ipv4Addr::LOCALHOST]));
    assert_eq!(r.txt("example.test").await, Ok(vec!["v=spf1 -all".to_string()]));
    assert_eq!(r.a("nowhere.test").await, Ok(vec![]), "NXDOMAIN is empty");
    assert_eq!(r.mx("mx.example.test").await, Ok(vec![]), "no records");
}
