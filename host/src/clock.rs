//! The one place that reads the system clock.
//!
//! Protocol state machines never read the clock (they are handed `now` or a
//! timestamp); keeping every clock read here makes that rule checkable and
//! lets tests reason about time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch; seeds message ids so that ids stay
/// increasing across restarts even when the newest messages were deleted.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A monotonic instant, for rate limiting and latency.
pub fn instant() -> std::time::Instant {
    std::time::Instant::now()
}
