//! The retry schedule, pure: when to try a recipient again, and when to
//! give up.
//!
//! Backoff doubles from [`RetryPolicy::first`] up to [`RetryPolicy::cap`],
//! shortened by up to a fifth with a jitter derived from the message id:
//! deterministic (a restart computes the same time; tests can pin it), yet
//! spread, so messages queued together during an outage do not all hit the
//! recovered server in the same second.

use crate::smtp::client::{Disposition, Outcome, RcptResult};
use crate::smtp::reply::EnhancedCode;

/// RFC 3463 `4.4.7` "Delivery time expired": the status in the DSN of a
/// recipient that failed transiently until [`RetryPolicy::max_age`].
pub const EXPIRED: EnhancedCode = EnhancedCode(4, 4, 7);

/// How often and for how long to retry. All values in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failed attempt.
    pub first: u64,
    /// The longest delay between attempts.
    pub cap: u64,
    /// How long after arrival a transient failure becomes final (RFC 5321
    /// §4.5.4.1 suggests at least 4-5 days).
    pub max_age: u64,
}

impl Default for RetryPolicy {
    /// 5 minutes doubling to 4 hours, for 5 days.
    fn default() -> Self {
        RetryPolicy {
            first: 5 * 60,
            cap: 4 * 3600,
            max_age: 5 * 86_400,
        }
    }
}

/// What to do with one recipient after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Done: the server accepted it.
    Delivered,
    /// Try again at this unix time.
    Retry(i64),
    /// Final failure: send a DSN with this status (the server's enhanced
    /// code, a class default, or [`EXPIRED`]).
    Bounce(EnhancedCode),
}

impl RetryPolicy {
    /// The delay before the next attempt after `attempts` failed ones
    /// (1 after the first), jittered by `message_id`.
    pub fn delay(&self, attempts: u32, message_id: &str) -> u64 {
        let doublings = attempts.saturating_sub(1).min(63);
        let base = self.first.saturating_mul(1u64 << doublings).min(self.cap).max(1);
        // Jitter only ever shortens, so the cap stays a cap; mixing in the
        // attempt keeps one message from being unlucky every time.
        let h = fnv1a(message_id.as_bytes()) ^ u64::from(attempts).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let fifth = base / 5;
        base - if fifth == 0 {
            0
        } else {
            fnv1a(&h.to_le_bytes()) % (fifth + 1)
        }
    }

    /// The decision for one recipient. `arrival` and `now` are unix
    /// seconds; `attempts` counts the attempt just made.
    pub fn decide(
        &self,
        result: &RcptResult,
        attempts: u32,
        arrival: i64,
        now: i64,
        message_id: &str,
    ) -> Decision {
        match result.disposition {
            Disposition::Delivered => Decision::Delivered,
            Disposition::Permanent => Decision::Bounce(if result.reply.enhanced.is_none() {
                EnhancedCode(5, 0, 0)
            } else {
                result.reply.enhanced
            }),
            Disposition::Transient => {
                let expiry = arrival.saturating_add(i64::try_from(self.max_age).unwrap_or(i64::MAX));
                if now >= expiry {
                    return Decision::Bounce(EXPIRED);
                }
                let next =
                    now.saturating_add(i64::try_from(self.delay(attempts, message_id)).unwrap_or(i64::MAX));
                // One last attempt at the deadline rather than giving up
                // early or retrying long after it.
                Decision::Retry(next.min(expiry))
            }
        }
    }

    /// [`RetryPolicy::decide`] for every recipient of an outcome, in order.
    pub fn classify(
        &self,
        outcome: &Outcome,
        attempts: u32,
        arrival: i64,
        now: i64,
        message_id: &str,
    ) -> Vec<Decision> {
        outcome
            .recipients
            .iter()
            .map(|r| self.decide(r, attempts, arrival, now, message_id))
            .collect()
    }
}

/// FNV-1a 64: stable across builds and platforms, unlike `DefaultHasher`,
/// whose algorithm std may change (a schedule must survive an upgrade).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::command::Address;
    use crate::smtp::reply::Reply;

    fn result(disposition: Disposition, code: u16, enhanced: EnhancedCode) -> RcptResult {
        RcptResult {
            rcpt: Address::postmaster(),
            disposition,
            reply: Reply::new(code, enhanced, "x"),
            remote: true,
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let p = RetryPolicy::default();
        let bases = [300, 600, 1200, 2400, 4800, 9600, 14_400, 14_400, 14_400];
        for (i, &base) in bases.iter().enumerate() {
            let attempts = i as u32 + 1;
            for id in ["a", "b", "msg-123", ""] {
                let d = p.delay(attempts, id);
                assert!(
                    d <= base && d >= base - base / 5,
                    "attempt {attempts} id {id}: {d}"
                );
            }
        }
        assert!(p.delay(u32::MAX, "x") <= p.cap);
        assert!(p.delay(0, "x") <= p.first);
    }

    #[test]
    fn jitter_is_deterministic_and_spread() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(3, "id-1"), p.delay(3, "id-1"));
        let distinct: std::collections::HashSet<u64> =
            (0..50).map(|i| p.delay(3, &format!("id-{i}"))).collect();
        assert!(distinct.len() > 10, "{distinct:?}");
    }

    #[test]
    fn decisions() {
        let p = RetryPolicy::default();
        const ARRIVAL: i64 = 1_000_000;
        const MAX: i64 = 5 * 86_400;
        let arrival = ARRIVAL;
        let ok = result(Disposition::Delivered, 250, EnhancedCode(2, 0, 0));
        let perm = result(Disposition::Permanent, 550, EnhancedCode(5, 1, 1));
        let perm_bare = result(Disposition::Permanent, 554, EnhancedCode::NONE);
        let temp = result(Disposition::Transient, 451, EnhancedCode(4, 7, 1));
        let max = MAX;
        assert_eq!(p.max_age as i64, MAX);
        type Case<'a> = (&'a RcptResult, u32, i64, fn(Decision) -> bool);
        let cases: &[Case<'_>] = &[
            (&ok, 1, arrival, |d| d == Decision::Delivered),
            (&perm, 1, arrival, |d| {
                d == Decision::Bounce(EnhancedCode(5, 1, 1))
            }),
            (&perm_bare, 1, arrival, |d| {
                d == Decision::Bounce(EnhancedCode(5, 0, 0))
            }),
            (
                &temp,
                1,
                arrival,
                |d| matches!(d, Decision::Retry(t) if (ARRIVAL + 240..=ARRIVAL + 300).contains(&t)),
            ),
            (&temp, 40, arrival + max - 60, |d| {
                d == Decision::Retry(ARRIVAL + MAX)
            }),
            (&temp, 40, arrival + max, |d| d == Decision::Bounce(EXPIRED)),
            (&temp, 40, arrival + max + 1, |d| d == Decision::Bounce(EXPIRED)),
        ];
        for (i, &(r, attempts, now, check)) in cases.iter().enumerate() {
            let d = p.decide(r, attempts, arrival, now, "m1");
            assert!(check(d), "case {i}: {d:?}");
        }
        let outcome = Outcome {
            recipients: vec![ok, perm],
            tls: false,
            resume: None,
        };
        assert_eq!(
            p.classify(&outcome, 1, arrival, arrival, "m1"),
            [Decision::Delivered, Decision::Bounce(EnhancedCode(5, 1, 1))]
        );
    }
}
