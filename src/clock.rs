//! The broker's clocks. `now_ms`, for message and queue expiry: milliseconds since the process
//! first asked. `coarse_now_ms`, for the consumer timeout, read once per acknowledged-mode
//! delivery: the kernel's tick-resolution monotonic clock, in milliseconds since boot. The
//! two have different epochs and are never compared. `unix_ms`, wall-clock time, for the
//! deadlines the store keeps across a restart (turned back into `now_ms` at recovery).

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

pub fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// Nanoseconds since the process first asked (`now_ms`'s epoch).
pub fn now_ns() -> u64 {
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// CPU time the calling thread has used, in nanoseconds (CLOCK_THREAD_CPUTIME_ID; a system
/// call, unlike the monotonic clocks); 0 if the clock cannot be read.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CLOCK_MONOTONIC_COARSE in milliseconds: a resolution of one kernel tick (1-4 ms), plenty
/// for timeouts counted in seconds, and about 7 ns to read against 40 ns for `Instant::now`
/// on this project's virtual machines, which matters on the delivery path.
pub fn coarse_now_ms() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE) / 1_000_000
}

/// One of the kernel's clocks in nanoseconds; 0 if it cannot be read.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into memory we own; both clocks used here exist
    // on every Linux since 2.6.32, and on failure `now` keeps its zero value.
    unsafe {
        libc::clock_gettime(clock, &mut now);
    }
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanoseconds = u64::try_from(now.tv_nsec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanoseconds)
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// Both clocks read once, to turn many stored wall-clock deadlines into `now_ms` ones (recovery)
/// without reading them again for each.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    now_ms: u64,
    unix_ms: u64,
}

impl WallClock {
    pub fn read() -> WallClock {
        WallClock { now_ms: now_ms(), unix_ms: unix_ms() }
    }

    /// A stored wall-clock deadline on the `now_ms` scale: as far ahead as it still is (a
    /// deadline already past is due now).
    pub fn deadline_ms(&self, expires_at_unix_ms: u64) -> u64 {
        self.now_ms.saturating_add(expires_at_unix_ms.saturating_sub(self.unix_ms))
    }
}

/// Seconds since the Unix epoch, for the `time` of an x-death entry.
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}
