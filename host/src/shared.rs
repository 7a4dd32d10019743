//! State shared by every session of a running server.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::plugin::PluginSet;
use crate::queue::Queue;
use crate::store::{Store, StoreError, users};
use crate::tls::TlsAcceptor;

/// What every connection task may reach.
pub struct Shared {
    /// The resolved configuration.
    pub config: Arc<Config>,
    /// The store (reads + the committer channel).
    pub store: Store,
    /// The plugin set; hot reload swaps it whole. A transaction takes a
    /// snapshot (`load_full`) at MAIL FROM and keeps it to the end.
    pub plugins: ArcSwap<PluginSet>,
    /// The server side of TLS (STARTTLS, STLS, implicit TLS); SIGHUP
    /// reloads its certificate.
    pub tls: Arc<TlsAcceptor>,
    /// The outbound queue: sessions wake it after queuing a message.
    pub queue: Arc<Queue>,
    /// Maildrops held by a POP3 session (RFC 1939 §8: exclusive access).
    maildrop_locks: Mutex<HashSet<String>>,
    /// Recent failed logins per client IP and per account, for the slowdown.
    login_failures: Mutex<HashMap<FailureKey, (u32, Instant)>>,
}

/// What failed logins are counted by: a client guessing many accounts, and
/// many clients guessing one account, are both slowed down.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum FailureKey {
    Ip(IpAddr),
    Account(String),
}

/// Failures older than this are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);
/// The slowdown stops growing here, so a real user is never locked out for long.
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(10);

impl Shared {
    /// Builds the shared state.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        plugins: PluginSet,
        tls: Arc<TlsAcceptor>,
        queue: Arc<Queue>,
    ) -> Self {
        Shared {
            config,
            store,
            plugins: ArcSwap::from_pointee(plugins),
            tls,
            queue,
            maildrop_locks: Mutex::new(HashSet::new()),
            login_failures: Mutex::new(HashMap::new()),
        }
    }

    /// Takes the exclusive lock on `user`'s maildrop; `None` if another
    /// session holds it. The lock is released when the guard drops, however
    /// the session ends.
    pub fn lock_maildrop(self: &Arc<Self>, user: &str) -> Option<MaildropLock> {
        let mut locks = self.maildrop_locks.lock().expect("lock poisoned");
        locks.insert(user.to_owned()).then(|| MaildropLock {
            shared: self.clone(),
            user: user.to_owned(),
        })
    }

    /// Records a failed login from `ip` for the login name `account`;
    /// returns how long to wait before answering: it grows with the
    /// failures of the IP or of the account, whichever has more. Only
    /// failures wait, so nobody can lock a user out with bad guesses.
    pub fn login_failed(&self, ip: IpAddr, account: &str) -> Duration {
        let now = crate::clock::instant();
        let mut map = self.login_failures.lock().expect("lock poisoned");
        if map.len() > 10_000 {
            // Bounded memory under a distributed brute force.
            map.retain(|_, (_, t)| now.duration_since(*t) < FAILURE_MEMORY);
            if map.len() > 10_000 {
                map.clear();
            }
        }
        let mut count = 0;
        for key in [FailureKey::Ip(ip), FailureKey::Account(account.to_lowercase())] {
            let entry = map.entry(key).or_insert((0, now));
            if now.duration_since(entry.1) >= FAILURE_MEMORY {
                *entry = (0, now);
            }
            entry.0 = entry.0.saturating_add(1);
            entry.1 = now;
            count = count.max(entry.0);
        }
        let base = self.config.limits.login_failure_delay;
        base.saturating_mul(count.min(64)).min(MAX_FAILURE_DELAY)
    }

    /// Checks a login (a full address, or a bare local part when
    /// unambiguous) and its password; `Ok(Some(user))` on success. The
    /// look-up and the deliberately slow argon2 run on the blocking pool,
    /// and an unknown user costs the same verification as a known one.
    pub async fn verify_login(&self, login: String, password: String) -> Result<Option<String>, StoreError> {
        let domains = self.config.domains.clone();
        self.store
            .read(move |db| {
                let user = users::resolve_login(db, &login, &domains)?;
                let hash = match &user {
                    Some(u) => users::get(db, u)?.map(|r| r.password_hash),
                    None => None,
                };
                let ok = crate::auth::verify_password(hash.as_deref(), &password);
                Ok(if ok { user } else { None })
            })
            .await
    }

    /// Forgets the failures of `ip` after a successful login (the
    /// account's stay: another client may be the one guessing).
    pub fn login_succeeded(&self, ip: IpAddr) {
        self.login_failures
            .lock()
            .expect("lock poisoned")
            .remove(&FailureKey::Ip(ip));
    }
}

/// Holds a maildrop lock; dropping it releases the maildrop.
pub struct MaildropLock {
    shared: Arc<Shared>,
    user: String,
}

impl MaildropLock {
    /// The locked user.
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        if let Ok(mut locks) = self.shared.maildrop_locks.lock() {
            locks.remove(&self.user);
        }
    }
}
