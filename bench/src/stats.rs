//! Latency percentiles, error tallies and the pieces of report output that
//! every subcommand shares.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// How many distinct error messages a report keeps. A dead server produces
/// the same few errors thousands of times; the report needs the kinds, not
/// every instance, and memory must stay bounded.
const MAX_DISTINCT_ERRORS: usize = 16;

/// Latency figures in milliseconds. All `None` when nothing was measured.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Number of samples the figures are computed from.
    pub samples: usize,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Slowest sample.
    pub max_ms: Option<f64>,
    /// Arithmetic mean.
    pub mean_ms: Option<f64>,
}

impl Latency {
    /// Summarises raw samples (in microseconds); sorts them in place.
    pub fn from_micros(samples: &mut [u64]) -> Self {
        samples.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let pick = |p| percentile(samples, p).map(ms);
        let mean =
            (!samples.is_empty()).then(|| samples.iter().sum::<u64>() as f64 / samples.len() as f64 / 1000.0);
        Self {
            samples: samples.len(),
            p50_ms: pick(50.0),
            p90_ms: pick(90.0),
            p99_ms: pick(99.0),
            max_ms: samples.last().copied().map(ms),
            mean_ms: mean,
        }
    }

    /// One-line rendering for the human report.
    pub fn human(&self) -> String {
        let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        format!(
            "p50 {}  p90 {}  p99 {}  max {}  (ms, {} samples)",
            f(self.p50_ms),
            f(self.p90_ms),
            f(self.p99_ms),
            f(self.max_ms),
            self.samples
        )
    }
}

/// Nearest-rank percentile of an ascending slice: the smallest sample such
/// that at least `p` percent of all samples are less than or equal to it.
/// Chosen over interpolation because it always reports a latency that
/// actually happened.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Microseconds in `d`, saturating (a sample can't realistically overflow).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Counts errors by message, keeping at most [`MAX_DISTINCT_ERRORS`] kinds.
#[derive(Debug, Default)]
pub struct ErrorTally {
    counts: BTreeMap<String, u64>,
    other: u64,
}

/// One line of the error summary.
#[derive(Debug, Serialize)]
pub struct ErrorCount {
    /// The error as it was reported.
    pub error: String,
    /// How often it happened.
    pub count: u64,
}

impl ErrorTally {
    /// Records one occurrence.
    pub fn add(&mut self, error: String) {
        if let Some(count) = self.counts.get_mut(&error) {
            *count += 1;
        } else if self.counts.len() < MAX_DISTINCT_ERRORS {
            self.counts.insert(error, 1);
        } else {
            self.other += 1;
        }
    }

    /// Most frequent first; the overflow bucket, if any, last.
    pub fn into_list(self) -> Vec<ErrorCount> {
        let mut list: Vec<ErrorCount> = self
            .counts
            .into_iter()
            .map(|(error, count)| ErrorCount { error, count })
            .collect();
        list.sort_by_key(|e| std::cmp::Reverse(e.count));
        if self.other > 0 {
            list.push(ErrorCount {
                error: "(other errors)".to_owned(),
                count: self.other,
            });
        }
        list
    }
}

/// Prints the error summary of the human report, if there is anything to say.
pub fn print_errors(errors: &[ErrorCount]) {
    if errors.is_empty() {
        return;
    }
    println!("  errors:");
    for e in errors {
        println!("    {:>8} x {}", e.count, e.error);
    }
}

/// Megabytes (10^6 bytes) per second, the unit network tools use.
pub fn mb_per_sec(bytes: u64, wall: Duration) -> f64 {
    rate(bytes, wall) / 1e6
}

/// Events per second, 0 for an empty interval instead of infinity.
pub fn rate(count: u64, wall: Duration) -> f64 {
    let secs = wall.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 0.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 50.0), Some(50));
        assert_eq!(percentile(&hundred, 90.0), Some(90));
        assert_eq!(percentile(&hundred, 99.0), Some(99));
        assert_eq!(percentile(&hundred, 100.0), Some(100));
        // With 10 samples, p99 is the largest: 9 of 10 is only 90 %.
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 99.0), Some(10));
        assert_eq!(percentile(&ten, 50.0), Some(5));
    }

    #[test]
    fn latency_summary_sorts_and_converts() {
        let mut samples = vec![3000, 1000, 2000, 4000];
        let l = Latency::from_micros(&mut samples);
        assert_eq!(l.samples, 4);
        assert_eq!(l.p50_ms, Some(2.0));
        assert_eq!(l.max_ms, Some(4.0));
        assert_eq!(l.mean_ms, Some(2.5));
        assert_eq!(Latency::from_micros(&mut []), Latency::default());
    }

    #[test]
    fn error_tally_is_bounded() {
        let mut tally = ErrorTally::default();
        for i in 0..100 {
            tally.add(format!("error {}", i % 40));
        }
        tally.add("error 0".to_owned());
        let list = tally.into_list();
        assert_eq!(list.len(), MAX_DISTINCT_ERRORS + 1);
        assert_eq!(list[0].error, "error 0");
        assert_eq!(list[0].count, 4);
        assert_eq!(list[MAX_DISTINCT_ERRORS].error, "(other errors)");
        assert_eq!(list.iter().map(|e| e.count).sum::<u64>(), 101);
    }
}
