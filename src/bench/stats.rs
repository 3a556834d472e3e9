//! What a run measures: message counters shared by every client thread, latency histograms,
//! and the generator's own CPU time.
//!
//! Clients add to the counters once per batch, not per message, and record latency into a
//! histogram of their own that they merge into the shared one every `LATENCY_FLUSH_MS`, so
//! no lock or shared cache line is touched per message. This module does no I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Largest latency the histograms hold (microseconds); above it a sample saturates.
pub const LATENCY_MAX_MICROSECONDS: u64 = 60_000_000;
/// How often a consumer merges its latency samples into the shared histogram.
pub const LATENCY_FLUSH_MS: u64 = 100;

#[derive(Default)]
pub struct Counters {
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub returned: AtomicU64,
    pub consumed: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub published: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub returned: u64,
    pub consumed: u64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, count: u64) {
        if count > 0 {
            counter.fetch_add(count, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            published: self.published.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
            nacked: self.nacked.load(Ordering::Relaxed),
            returned: self.returned.load(Ordering::Relaxed),
            consumed: self.consumed.load(Ordering::Relaxed),
        }
    }
}

/// Messages per second over `elapsed`; 0 for an empty interval.
pub fn rate_per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_MICROSECONDS, 3)
        .expect("constant bounds: low 1, high far above 2 * low, 3 significant digits")
}

/// Nanoseconds since the first call in this process: the clock publishers stamp into bodies
/// and consumers subtract from. Publisher and consumer share the process, so a monotonic
/// clock is exact here and immune to wall-clock steps.
pub fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Samples of the current reporting interval, filled by consumers, drained by the reporter.
pub struct SharedLatency {
    interval: Mutex<Histogram<u64>>,
}

impl Default for SharedLatency {
    fn default() -> Self {
        SharedLatency { interval: Mutex::new(new_histogram()) }
    }
}

impl SharedLatency {
    /// Moves the interval's samples out (the reporter calls this once a second).
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut fresh = new_histogram();
        if let Ok(mut interval) = self.interval.lock() {
            std::mem::swap(&mut *interval, &mut fresh);
        }
        fresh
    }

    fn merge(&self, samples: &Histogram<u64>) {
        if let Ok(mut interval) = self.interval.lock() {
            // Same bounds on both sides, so adding cannot fail.
            let _ = interval.add(samples);
        }
    }
}

/// A consumer's own histogram, merged into the shared one now and then.
pub struct LocalLatency {
    histogram: Histogram<u64>,
    last_flush: Instant,
}

impl Default for LocalLatency {
    fn default() -> Self {
        LocalLatency { histogram: new_histogram(), last_flush: Instant::now() }
    }
}

impl LocalLatency {
    /// Records now minus the publisher's timestamp (the first 8 bytes of the body).
    pub fn record_stamp(&mut self, stamp: &[u8], now_nanos: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(stamp) else {
            return;
        };
        let sent_nanos = u64::from_be_bytes(bytes);
        let microseconds = now_nanos.saturating_sub(sent_nanos) / 1000;
        self.histogram.saturating_record(microseconds.max(1));
    }

    pub fn flush_if_due(&mut self, shared: &SharedLatency) {
        if self.last_flush.elapsed() >= Duration::from_millis(LATENCY_FLUSH_MS) {
            self.flush(shared);
        }
    }

    pub fn flush(&mut self, shared: &SharedLatency) {
        if !self.histogram.is_empty() {
            shared.merge(&self.histogram);
            self.histogram.reset();
        }
        self.last_flush = Instant::now();
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencySummary {
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    pub fn of(histogram: &Histogram<u64>) -> Option<LatencySummary> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |microseconds: u64| microseconds as f64 / 1000.0;
        Some(LatencySummary {
            min_ms: ms(histogram.min()),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        })
    }
}

/// User plus system CPU seconds of this whole process (every client thread).
pub fn cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data that getrusage fills in; RUSAGE_SELF needs no other input.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_now_minus_stamp_in_milliseconds() {
        let shared = SharedLatency::default();
        let mut local = LocalLatency::default();
        let sent_nanos: u64 = 5_000_000;
        for extra_ms in [1u64, 2, 3, 4, 100] {
            let now = sent_nanos + extra_ms * 1_000_000;
            local.record_stamp(&sent_nanos.to_be_bytes(), now);
        }
        local.record_stamp(&[1, 2, 3], sent_nanos); // too short: ignored
        local.flush(&shared);
        let summary = LatencySummary::of(&shared.take_interval()).expect("samples");
        assert!((summary.min_ms - 1.0).abs() < 0.01, "{summary:?}");
        assert!((summary.p50_ms - 3.0).abs() < 0.01, "{summary:?}");
        assert!((summary.max_ms - 100.0).abs() < 0.1, "{summary:?}");
        assert!(LatencySummary::of(&shared.take_interval()).is_none(), "drained");
    }

    #[test]
    fn rates_and_cpu_are_sane() {
        assert_eq!(rate_per_second(500, Duration::from_millis(500)), 1000.0);
        assert_eq!(rate_per_second(5, Duration::ZERO), 0.0);
        let before = cpu_seconds();
        let mut spin = 0u64;
        for value in 0..2_000_000u64 {
            spin = spin.wrapping_add(value * value);
        }
        assert!(spin > 0);
        assert!(cpu_seconds() >= before);
        assert!(now_nanos() <= now_nanos());
    }
}
