//! Resource alarms: memory above its high watermark, or free disk below its limit.
//!
//! A monitor thread samples the broker's resident memory and the data directory's free space
//! a few times a second and raises or clears each alarm. While any alarm is raised, every
//! connection that has published stops reading its socket (TCP backpressure reaches the
//! publisher) and, if the client announced the `connection.blocked` capability, is told so;
//! `connection.unblocked` follows when the alarm clears. This is RabbitMQ's behaviour; it
//! is how a broker stays up instead of being killed for memory or filling its disk.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the monitor samples memory and disk.
pub const SAMPLE_INTERVAL_MS: u64 = 200;

#[derive(Default)]
pub struct Alarms {
    memory: AtomicBool,
    /// Resident memory is above `PAGING_WATERMARK_PERCENT` of the high watermark: queues
    /// page transient messages out early (no alarm: nobody is blocked).
    paging: AtomicBool,
    disk: AtomicBool,
    stop: AtomicBool,
}

impl Alarms {
    /// The reason to give clients when blocked, or None when publishing may go on.
    pub fn blocked_reason(&self) -> Option<&'static str> {
        if self.memory.load(Ordering::Relaxed) {
            Some("low on memory")
        } else if self.disk.load(Ordering::Relaxed) {
            Some("low on disk space")
        } else {
            None
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Resident memory is above `PAGING_WATERMARK_PERCENT` of the high watermark.
    pub fn paging(&self) -> bool {
        self.paging.load(Ordering::Relaxed)
    }

    /// Resident memory is above the high watermark.
    pub fn memory_alarm(&self) -> bool {
        self.memory.load(Ordering::Relaxed)
    }

    /// Free disk space is below the limit.
    pub fn disk_alarm(&self) -> bool {
        self.disk.load(Ordering::Relaxed)
    }
}

/// What the monitor compares against.
#[derive(Clone, Debug)]
pub struct Limits {
    pub memory_high_watermark_bytes: u64,
    pub disk_free_limit_bytes: u64,
    pub data_dir: PathBuf,
}

/// Raises or clears an alarm; logs each change once.
fn update(flag: &AtomicBool, raised: bool, what: &str, detail: String) {
    let was = flag.swap(raised, Ordering::Relaxed);
    if raised && !was {
        crate::warn!("{what} alarm set: {detail}; publishing connections are blocked");
    } else if !raised && was {
        crate::info!("{what} alarm cleared: {detail}");
    }
}

pub fn start_monitor(limits: Limits) -> Arc<Alarms> {
    let alarms = Arc::new(Alarms::default());
    let monitor = alarms.clone();
    let spawned = std::thread::Builder::new().name("alarms".into()).spawn(move || {
        while !monitor.stop.load(Ordering::Relaxed) {
            sample(&monitor, &limits);
            std::thread::sleep(Duration::from_millis(SAMPLE_INTERVAL_MS));
        }
    });
    if let Err(error) = spawned {
        crate::error!("cannot start the resource monitor: {error}; memory and disk alarms are off");
    }
    alarms
}

fn sample(alarms: &Alarms, limits: &Limits) {
    if let Some(resident) = resident_bytes() {
        let raised = resident > limits.memory_high_watermark_bytes;
        let detail = format!(
            "resident memory {} MB, high watermark {} MB",
            resident >> 20,
            limits.memory_high_watermark_bytes >> 20
        );
        update(&alarms.memory, raised, "memory", detail);
        let paging = resident > limits.memory_high_watermark_bytes / 100 * crate::limits::PAGING_WATERMARK_PERCENT;
        if alarms.paging.swap(paging, Ordering::Relaxed) != paging {
            let state = if paging { "above" } else { "back below" };
            crate::info!(
                "resident memory {} MB is {state} {}% of the high watermark: queues {} transient messages out early",
                resident >> 20,
                crate::limits::PAGING_WATERMARK_PERCENT,
                if paging { "page" } else { "no longer page" }
            );
        }
    }
    if let Some(free) = free_disk_bytes(&limits.data_dir) {
        let raised = free < limits.disk_free_limit_bytes;
        let detail =
            format!("{} MB free in the data directory, limit {} MB", free >> 20, limits.disk_free_limit_bytes >> 20);
        update(&alarms.disk, raised, "disk", detail);
    }
}

extern "C" {
    /// mimalloc (the global allocator): run this thread's deferred work, including handing
    /// freed memory back to the OS.
    fn mi_collect(force: bool);
}

/// How often each shard asks the allocator to return freed memory.
pub const COLLECT_INTERVAL_MS: u64 = 1000;

/// Each shard runs this: mimalloc defers returning freed pages to the OS until the owning
/// thread allocates again, so an idle shard that just dropped a large backlog would keep it
/// resident, and a memory alarm raised by that backlog would never clear.
pub async fn collect_loop(shutdown: impl Fn() -> bool) {
    while !shutdown() {
        monoio::time::sleep(Duration::from_millis(COLLECT_INTERVAL_MS)).await;
        // SAFETY: mi_collect has no preconditions; it only touches this thread's heap.
        unsafe { mi_collect(false) };
    }
}

/// Resident set size of this process, from /proc/self/statm.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_bytes())
}

fn page_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// Physical memory of the machine (the base of a fractional watermark).
pub fn total_memory_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    u64::try_from(pages).unwrap_or(0) * page_bytes()
}

/// Space available to this process in the file system holding `dir`.
pub fn free_disk_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is NUL-terminated.
    unsafe {
        let mut stats: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stats) != 0 {
            return None;
        }
        Some(stats.f_bavail * stats.f_frsize)
    }
}

/// Parses a size: bytes, or a number with kB/MB/GB (powers of 1000) or KiB/MiB/GiB (1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" | "k" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    (number >= 0.0).then_some((number * multiplier) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("50MB"), Some(50_000_000));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1.5kB"), Some(1500));
        assert_eq!(parse_size("12XB"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn the_process_has_resident_memory_and_the_disk_has_space() {
        assert!(resident_bytes().is_some_and(|bytes| bytes > 0));
        assert!(free_disk_bytes(std::path::Path::new(".")).is_some());
        assert!(total_memory_bytes() > 0);
    }

    #[test]
    fn alarms_raise_and_clear() {
        let alarms = Alarms::default();
        assert_eq!(alarms.blocked_reason(), None);
        update(&alarms.disk, true, "disk", String::new());
        assert_eq!(alarms.blocked_reason(), Some("low on disk space"));
        update(&alarms.memory, true, "memory", String::new());
        assert_eq!(alarms.blocked_reason(), Some("low on memory"));
        update(&alarms.memory, false, "memory", String::new());
        update(&alarms.disk, false, "disk", String::new());
        assert_eq!(alarms.blocked_reason(), None);
    }
}
