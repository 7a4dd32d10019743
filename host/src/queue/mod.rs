//! Outbound delivery: the durable queue and its workers.
//!
//! - **Durable records** ([`crate::store::queue`]): a message for remote
//!   recipients is written to redb's `queue` table in the same committer
//!   transaction as any local deliveries of the same message, so "250
//!   queued" means the message is on disk for every recipient.
//! - **Per-recipient state**: pending (with its next attempt), delivered or
//!   failed, the attempt count and the last reply. A message leaves the
//!   queue when no recipient is pending; the recipients that failed in one
//!   attempt get one DSN ([`dsn`]), never to the null sender.
//! - **The worker** ([`Queue::run`]) wakes when a session queued something,
//!   when the earliest retry is due, or every `queue.poll_interval`; it
//!   takes the due records (never one that is already in flight) and
//!   delivers each with up to `queue.concurrency` at once, one connection
//!   per destination domain carrying all of that domain's recipients.
//! - **Routing** ([`route`]): static routes and the smart host first, then
//!   MX by preference (random among equals), the domain itself without MX,
//!   a permanent failure for a null MX (RFC 7505).
//! - **The dialogue** is [`crate::smtp::client`], sans-IO; [`deliver`] is
//!   its tokio driver.
//! - **Retries** ([`retry`]): 4xx and connection failures back off
//!   exponentially until `queue.max_age`; 5xx fails the recipient.
//!
//! Delivery is at-least-once: a crash between the remote `250` and our
//! commit of that fact sends the message again on restart (RFC 5321 §6.1
//! accepts duplicates over loss).

pub mod deliver;
pub mod dsn;
pub mod retry;
pub mod route;
pub mod verify;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::{Config, OutboundTls};
use crate::dns::Resolver;
use crate::smtp::client::{self, ClientConfig, Disposition, Outcome, RcptResult, TlsMode};
use crate::smtp::command::{Address, ReversePath};
use crate::smtp::reply::{EnhancedCode, Reply};
use crate::store::queue::{self as q, QueueRcpt, QueueRecord, RcptState};
use crate::store::{Folder, Store, Write, queue_id};
use retry::{Decision, RetryPolicy};
use route::RouteError;

/// How long shutdown lets deliveries in flight finish before dropping
/// them (they stay pending and run again after the restart).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The outbound queue of a running server. Sessions call [`Queue::wake`]
/// after committing a queued message.
pub struct Queue {
    store: Store,
    config: Arc<Config>,
    resolver: Arc<Resolver>,
    tls: Arc<rustls::ClientConfig>,
    wake: Notify,
    in_flight: Mutex<HashSet<u64>>,
    slots: Arc<Semaphore>,
    /// Sessions left open between messages to the same server.
    pool: deliver::Pool,
    /// Gateway recipient verification answers, by lower-cased address.
    verified: Mutex<HashMap<String, (verify::Verdict, std::time::Instant)>>,
}

/// Most cached verification answers (a flood of made-up addresses must
/// not grow memory without bound).
const MAX_VERIFIED: usize = 10_000;

impl Queue {
    /// The queue over `store`; nothing runs until [`Queue::run`].
    pub fn new(
        store: Store,
        config: Arc<Config>,
        resolver: Arc<Resolver>,
    ) -> Result<Arc<Queue>, crate::tls::TlsError> {
        let tls = crate::tls::client_config(config.queue.tls_verify, None)?;
        let slots = Arc::new(Semaphore::new(config.queue.concurrency));
        Ok(Arc::new(Queue {
            store,
            config,
            resolver,
            tls,
            wake: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            slots,
            verified: Mutex::new(HashMap::new()),
            pool: deliver::Pool::default(),
        }))
    }

    /// Looks at the queue now (something was queued, or an admin asked).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers due messages until `stop` flips, then gives the deliveries
    /// in flight [`SHUTDOWN_GRACE`] and drops the rest.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        let poll = self.config.queue.poll_interval;
        loop {
            if *stop.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            self.pool.expire(false);
            let now = crate::clock::unix_secs();
            let wait = match self.store.read(move |db| q::due(db, now)).await {
                Ok((ready, next)) => {
                    for record in ready {
                        if !self.in_flight.lock().expect("lock poisoned").insert(record.id) {
                            continue;
                        }
                        let permit = tokio::select! {
                            p = self.slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                            _ = stop.changed() => {
                                self.in_flight.lock().expect("lock poisoned").remove(&record.id);
                                break;
                            }
                        };
                        let queue = self.clone();
                        tasks.spawn(async move {
                            let id = record.id;
                            queue.deliver(record).await;
                            queue.in_flight.lock().expect("lock poisoned").remove(&id);
                            drop(permit);
                        });
                    }
                    match next {
                        Some(t) => Duration::from_secs(u64::try_from(t - now).unwrap_or(0)).min(poll),
                        None => poll,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the queue; trying again later");
                    poll
                }
            };
            let wait = if self.pool.idle_count() > 0 {
                wait.min(deliver::IDLE)
            } else {
                wait
            };
            tokio::select! {
                _ = tokio::time::sleep(wait.max(Duration::from_millis(50))) => {}
                _ = self.wake.notified() => {}
                _ = stop.changed() => {}
            }
        }
        self.pool.expire(true);
        if !tasks.is_empty() {
            tracing::info!(
                in_flight = tasks.len(),
                "waiting for outbound deliveries in flight"
            );
            let drain = async { while tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
                tracing::warn!(
                    "outbound deliveries still running at shutdown were stopped; they stay queued"
                );
                tasks.abort_all();
            }
        }
    }

    /// Asks the next hop of `address`'s domain whether the recipient
    /// exists (gateway mode), with answers cached for
    /// `relay.verify_cache`. A next hop that cannot be asked gives
    /// [`verify::Verdict::Unsure`], which is not cached.
    pub async fn verify_recipient(&self, address: &str) -> verify::Verdict {
        let key = address.to_ascii_lowercase();
        let ttl = self.config.relay.verify_cache;
        if let Some((v, at)) = self.verified.lock().expect("lock poisoned").get(&key)
            && at.elapsed() < ttl
        {
            return v.clone();
        }
        let domain = address_of(address).domain;
        let hops = match route::hops(&self.config, &self.resolver, &domain).await {
            Ok(h) => h,
            Err(e) => return verify::Verdict::Unsure(e.to_string()),
        };
        let limit = self.config.queue.connect_timeout.min(Duration::from_secs(10));
        let mut last = verify::Verdict::Unsure(format!("no mail host for {domain}"));
        for hop in &hops {
            let Ok(addrs) = route::addresses(&self.resolver, hop).await else {
                continue;
            };
            for ip in addrs {
                let v = verify::probe(
                    SocketAddr::new(ip, hop.port),
                    &self.config.hostname,
                    address,
                    limit,
                )
                .await;
                if matches!(v, verify::Verdict::Unsure(_)) {
                    last = v;
                    continue;
                }
                let mut cache = self.verified.lock().expect("lock poisoned");
                if cache.len() >= MAX_VERIFIED {
                    cache.retain(|_, (_, at)| at.elapsed() < ttl);
                    if cache.len() >= MAX_VERIFIED {
                        cache.clear();
                    }
                }
                cache.insert(key, (v.clone(), std::time::Instant::now()));
                return v;
            }
        }
        last
    }

    /// One attempt for every due recipient of `record`, then one durable
    /// update (with the bounce, if any recipient failed for good).
    async fn deliver(&self, mut record: QueueRecord) {
        let id = record.id;
        let qid = queue_id(id);
        let data = match self.store.read(move |db| q::message(db, id)).await {
            Ok(Some(d)) => d,
            Ok(None) => return, // deleted meanwhile
            Err(e) => {
                tracing::error!(queue_id = %qid, error = %e, "cannot read a queued message");
                return;
            }
        };
        let now = crate::clock::unix_secs();
        let mut by_domain: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in record.rcpts.iter().enumerate() {
            if r.state == RcptState::Pending && r.next_attempt <= now {
                by_domain.entry(r.domain()).or_default().push(i);
            }
        }
        let policy = RetryPolicy {
            first: self.config.queue.retry_first.as_secs().max(1),
            cap: self.config.queue.retry_max.as_secs().max(1),
            max_age: self.config.queue.max_age.as_secs(),
        };
        let mut failed_now = Vec::new();
        for (domain, indices) in by_domain {
            let (results, relay) = self.deliver_domain(&domain, &record, &data, &indices).await;
            let now = crate::clock::unix_secs();
            for (i, result) in indices.into_iter().zip(results) {
                let r = &mut record.rcpts[i];
                r.attempts += 1;
                r.last_reply = Some(reply_line(&result.reply));
                r.remote_reply = result.remote;
                r.remote_mta = result.remote.then(|| relay.clone()).flatten();
                let decision = policy.decide(&result, r.attempts, record.arrival, now, &qid);
                let (state, outcome) = match decision {
                    Decision::Delivered => {
                        r.state = RcptState::Delivered;
                        ("sent", String::new())
                    }
                    Decision::Retry(at) => {
                        r.next_attempt = at;
                        ("deferred", format!("retry in {}s", at - now))
                    }
                    Decision::Bounce(status) => {
                        r.state = RcptState::Failed;
                        r.status = Some(status.to_string());
                        failed_now.push(i);
                        ("bounced", String::new())
                    }
                };
                tracing::info!(
                    queue_id = %qid,
                    from = %record.sender,
                    to = %r.address,
                    relay = relay.as_deref().unwrap_or("none"),
                    attempts = r.attempts,
                    result = state,
                    reply = r.last_reply.as_deref().unwrap_or(""),
                    next = %outcome,
                    "delivery"
                );
            }
        }
        let then = self.bounce(&record, &failed_now, &data).await;
        match self.store.commit(Write::QueueUpdate { record, then }).await {
            Ok(_) => {}
            Err(e) => {
                // The record stays as it was: the recipients are tried
                // again (a duplicate rather than a loss).
                tracing::error!(queue_id = %qid, error = %e, "cannot record a delivery attempt");
            }
        }
    }

    /// Delivers the recipients `indices` (all in `domain`) over one
    /// connection, trying the domain's hops and their addresses in order.
    /// Returns one result per recipient and the host that answered.
    async fn deliver_domain(
        &self,
        domain: &str,
        record: &QueueRecord,
        data: &[u8],
        indices: &[usize],
    ) -> (Vec<RcptResult>, Option<String>) {
        let recipients: Vec<Address> = indices
            .iter()
            .map(|&i| address_of(&record.rcpts[i].address))
            .collect();
        let all = |disposition, reply: Reply| {
            recipients
                .iter()
                .map(|a| RcptResult {
                    rcpt: a.clone(),
                    disposition,
                    reply: reply.clone(),
                    remote: false,
                })
                .collect::<Vec<_>>()
        };
        let hops = match route::hops(&self.config, &self.resolver, domain).await {
            Ok(h) => h,
            Err(RouteError::NullMx) => {
                let reply = Reply::new(
                    556,
                    EnhancedCode(5, 1, 10),
                    format!("Domain {domain} does not accept mail (null MX)"),
                );
                return (all(Disposition::Permanent, reply), None);
            }
            Err(RouteError::NoHost) => {
                let reply = Reply::new(
                    550,
                    EnhancedCode(5, 1, 2),
                    format!("Domain {domain} has no mail host"),
                );
                return (all(Disposition::Permanent, reply), None);
            }
            Err(RouteError::Dns(e)) => {
                let reply = Reply::new(
                    451,
                    EnhancedCode(4, 4, 3),
                    format!("DNS look-up for {domain} failed: {e}"),
                );
                return (all(Disposition::Transient, reply), None);
            }
        };
        let message = client::Message {
            from: if record.sender.is_empty() {
                ReversePath::Null
            } else {
                ReversePath::Path(address_of(&record.sender))
            },
            recipients: recipients.clone(),
            content: data.to_vec(),
            smtputf8: record.smtputf8,
        };
        let timeouts = deliver::Timeouts {
            connect: self.config.queue.connect_timeout,
            command: self.config.queue.command_timeout,
        };
        let mut best: Option<(Outcome, String)> = None;
        let mut problems: Vec<String> = Vec::new();
        let mut any_address = false;
        'hops: for hop in &hops {
            let addrs = match route::addresses(&self.resolver, hop).await {
                Ok(a) if !a.is_empty() => a,
                Ok(_) => {
                    problems.push(format!("{}: no address", hop.host));
                    continue;
                }
                Err(e) => {
                    problems.push(format!("{}: {e}", hop.host));
                    continue;
                }
            };
            any_address = true;
            for ip in addrs {
                let addr = SocketAddr::new(ip, hop.port);
                let config = ClientConfig {
                    helo_name: self.config.hostname.clone(),
                    tls: match hop.tls {
                        OutboundTls::Opportunistic => TlsMode::Opportunistic,
                        OutboundTls::Required => TlsMode::Required,
                        OutboundTls::Never => TlsMode::Never,
                    },
                    keep_open: true,
                };
                match deliver::attempt(
                    addr,
                    &hop.host,
                    config,
                    self.tls.clone(),
                    message.clone(),
                    timeouts,
                    &self.pool,
                )
                .await
                {
                    Err(e) => problems.push(e.to_string()),
                    Ok(outcome) => {
                        // All transient (a 421 greeting, a lost connection):
                        // the next host may do better, as RFC 5321 §5.1 asks.
                        let go_on = outcome
                            .recipients
                            .iter()
                            .all(|r| r.disposition == Disposition::Transient);
                        best = Some((outcome, format!("{}[{}]:{}", hop.host, ip, hop.port)));
                        if !go_on {
                            break 'hops;
                        }
                    }
                }
            }
        }
        match best {
            Some((outcome, relay)) => (outcome.recipients, Some(relay)),
            None if !any_address
                && hops.iter().all(|h| !h.configured)
                && hops.len() == 1
                && hops[0].host == domain =>
            {
                // No MX and the domain itself has no address.
                let reply = Reply::new(
                    550,
                    EnhancedCode(5, 1, 2),
                    format!("Domain {domain} has no mail host"),
                );
                (all(Disposition::Permanent, reply), None)
            }
            None => {
                let reply = Reply::new(
                    451,
                    EnhancedCode(4, 4, 1),
                    format!(
                        "No answer from the mail hosts of {domain}: {}",
                        problems.join("; ")
                    ),
                );
                (all(Disposition::Transient, reply), None)
            }
        }
    }

    /// The writes that report `failed` recipients to the sender: one DSN,
    /// into a local mailbox or the queue; nothing for the null sender.
    async fn bounce(&self, record: &QueueRecord, failed: &[usize], data: &[u8]) -> Vec<Write> {
        if failed.is_empty() || record.sender.is_empty() {
            return Vec::new();
        }
        let sender = ReversePath::Path(address_of(&record.sender));
        let recipients: Vec<dsn::FailedRecipient> = failed
            .iter()
            .map(|&i| {
                let r = &record.rcpts[i];
                dsn::FailedRecipient {
                    recipient: address_of(&r.address),
                    status: r
                        .status
                        .as_deref()
                        .and_then(parse_enhanced)
                        .unwrap_or(EnhancedCode(5, 0, 0)),
                    diagnostic: r.last_reply.clone().filter(|_| r.remote_reply),
                    remote_mta: r.remote_mta.clone(),
                }
            })
            .collect();
        let id = self.store.allocate_id();
        let message_id = format!("{}.dsn@{}", queue_id(id), self.config.hostname);
        let Some(report) = dsn::build_dsn(&dsn::DsnInput {
            reporting_mta: &self.config.hostname,
            original_sender: &sender,
            recipients: &recipients,
            arrival: record.arrival,
            now: crate::clock::unix_secs(),
            original_headers: data,
            message_id: &message_id,
        }) else {
            return Vec::new();
        };
        let to = record.sender.to_ascii_lowercase();
        let domain = to.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if self.config.is_local_domain(domain) {
            match self.store.user_exists(&to) {
                Ok(true) => {
                    let mut stored = b"Return-Path: <>\r\n".to_vec();
                    stored.extend_from_slice(&report);
                    tracing::info!(queue_id = %queue_id(record.id), dsn = %queue_id(id), to = %to, "bounce to a local mailbox");
                    vec![Write::Deliver {
                        id,
                        data: stored,
                        users: vec![(to, Folder::Inbox)],
                    }]
                }
                _ => {
                    tracing::warn!(queue_id = %queue_id(record.id), to = %to, "bounce dropped: the sender's mailbox does not exist");
                    Vec::new()
                }
            }
        } else {
            tracing::info!(queue_id = %queue_id(record.id), dsn = %queue_id(id), to = %to, "bounce queued");
            let now = crate::clock::unix_secs();
            vec![Write::Enqueue {
                data: report,
                record: QueueRecord {
                    id,
                    sender: String::new(),
                    arrival: now,
                    smtputf8: !to.is_ascii(),
                    rcpts: vec![QueueRcpt::pending(record.sender.clone(), now)],
                },
            }]
        }
    }
}

/// A queued address back as an [`Address`] (the domain is after the last
/// `@`: a quoted local part may hold one).
pub fn address_of(s: &str) -> Address {
    match s.rsplit_once('@') {
        Some((local, domain)) => Address {
            local: local.to_owned(),
            domain: domain.to_owned(),
        },
        None => Address {
            local: s.to_owned(),
            domain: String::new(),
        },
    }
}

/// A reply as one line: `550 5.1.1 text; more text`.
fn reply_line(reply: &Reply) -> String {
    let mut s = reply.code.to_string();
    if !reply.enhanced.is_none() {
        s.push(' ');
        s.push_str(&reply.enhanced.to_string());
    }
    let text = reply.lines.join("; ");
    if !text.is_empty() {
        s.push(' ');
        s.push_str(&text);
    }
    s
}

fn parse_enhanced(s: &str) -> Option<EnhancedCode> {
    let mut p = s.split('.');
    let a = p.next()?.parse().ok()?;
    let b = p.next()?.parse().ok()?;
    let c = p.next()?.parse().ok()?;
    Some(EnhancedCode(a, b, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_at_the_last_at() {
        let a = address_of("\"a@b\"@example.test");
        assert_eq!(a.local, "\"a@b\"");
        assert_eq!(a.domain, "example.test");
    }

    #[test]
    fn reply_lines_and_codes() {
        let r = Reply::multiline(
            550,
            EnhancedCode(5, 1, 1),
            vec!["No such user".into(), "sorry".into()],
        );
        assert_eq!(reply_line(&r), "550 5.1.1 No such user; sorry");
        assert_eq!(parse_enhanced("4.4.7"), Some(EnhancedCode(4, 4, 7)));
        assert_eq!(parse_enhanced("x"), None);
    }
}
