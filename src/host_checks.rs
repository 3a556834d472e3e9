//! Start-up warnings about host settings that will hurt the broker.
//!
//! The broker still starts when a setting is low; it only says, once, what will go wrong and how
//! to fix it, so an operator who sees "too many open files" at 20k connections already has the
//! answer in the start-up log. The readings (rlimits, kernel release, `vm.max_map_count`) are
//! taken in [`HostReadings::read`]; the decisions are pure functions of those readings so tests
//! can feed any host. `tuning/tune.sh` reports and fixes the same settings and more.
//!
//! It also warns when the data directory, or something in it, is open to group or others: the
//! broker creates them 0700 and 0600 (`store::files`), but a directory made by hand or an
//! older version keeps its mode.
//!
//! This module only reads process limits, files under `/proc` and the modes of the data
//! directory's entries; it changes nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// Soft RLIMIT_NOFILE below which the broker warns: every connection is one descriptor, and each
/// shard also keeps segment files open.
pub const NOFILE_SOFT_MIN: u64 = 65_536;
/// RLIMIT_MEMLOCK below which the broker warns on kernels that charge io_uring rings to it.
pub const MEMLOCK_MIN_BYTES: u64 = 64 * 1024 * 1024;
/// `vm.max_map_count` below which the broker warns: segments are mmapped, one mapping each.
pub const MAX_MAP_COUNT_MIN: u64 = 262_144;
/// The first kernel that accounts io_uring memory to the cgroup instead of RLIMIT_MEMLOCK.
pub const KERNEL_WITHOUT_MEMLOCK_ACCOUNTING: KernelVersion = KernelVersion { major: 5, minor: 12 };

/// A kernel release reduced to what decisions need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// Parses the leading `major.minor` of a release such as `6.1.0-18-amd64`; `None` when the
    /// text does not start that way.
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let mut parts = release.split(['.', '-', '+']);
        let major = leading_number(parts.next()?)?;
        let minor = leading_number(parts.next()?)?;
        Some(KernelVersion { major, minor })
    }
}

fn leading_number(text: &str) -> Option<u32> {
    let digits: &str = &text[..text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len())];
    digits.parse().ok()
}

/// A soft and a hard resource limit; `u64::MAX` stands for unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub soft: u64,
    pub hard: u64,
}

/// What the host looks like, as far as the warnings care. `None` means "could not read", which
/// never produces a warning: a check that cannot read its setting stays silent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostReadings {
    pub nofile: Option<Limit>,
    pub memlock_bytes: Option<Limit>,
    pub kernel: Option<KernelVersion>,
    pub max_map_count: Option<u64>,
}

impl HostReadings {
    /// Reads this process's limits, the kernel release and `vm.max_map_count`.
    pub fn read() -> HostReadings {
        HostReadings {
            nofile: read_rlimit(libc::RLIMIT_NOFILE),
            memlock_bytes: read_rlimit(libc::RLIMIT_MEMLOCK),
            kernel: kernel_release().as_deref().and_then(KernelVersion::parse),
            max_map_count: std::fs::read_to_string("/proc/sys/vm/max_map_count")
                .ok()
                .and_then(|text| text.trim().parse().ok()),
        }
    }
}

/// Entries of the data directory whose modes are read, at most: a large store holds many
/// segment files, and a handful of named paths says enough.
pub const DATA_DIR_ENTRIES_CHECKED_MAX: usize = 10_000;
/// Paths named one warning each; the rest are counted in one more warning.
pub const DATA_DIR_PATHS_NAMED_MAX: usize = 5;
/// Mode bits that give group or others any access.
const GROUP_OR_OTHERS: u32 = 0o077;

/// The warnings for this host and configuration, one sentence each, for the start-up log.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut found = decide(&HostReadings::read(), config.shards);
    found.extend(data_dir_warnings(&config.data_dir));
    found
}

/// One warning per path of the data directory (itself included) that group or others may
/// reach, up to `DATA_DIR_PATHS_NAMED_MAX`, then one that counts the others. Nothing when the
/// directory does not exist yet: the broker will create it 0700.
pub fn data_dir_warnings(data_dir: &Path) -> Vec<String> {
    let exposed = exposed_paths(data_dir);
    let mut found: Vec<String> = exposed
        .iter()
        .take(DATA_DIR_PATHS_NAMED_MAX)
        .map(|(path, mode)| exposed_warning(data_dir, path, *mode))
        .collect();
    if exposed.len() > DATA_DIR_PATHS_NAMED_MAX {
        found.push(format!(
            "{} more paths in the data directory {} are open to group or others; fix them all with \
             `chmod -R go-rwx {}`",
            exposed.len() - DATA_DIR_PATHS_NAMED_MAX,
            data_dir.display(),
            data_dir.display()
        ));
    }
    found
}

/// The data directory and its entries (not following links) whose mode lets group or others
/// in, with that mode, in directory order, the directory first.
fn exposed_paths(data_dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut exposed = Vec::new();
    let mut pending = vec![data_dir.to_path_buf()];
    let mut checked = 0;
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else { continue };
        checked += 1;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & GROUP_OR_OTHERS != 0 && !metadata.file_type().is_symlink() {
            exposed.push((path.clone(), mode));
        }
        if metadata.is_dir() {
            let Ok(entries) = std::fs::read_dir(&path) else { continue };
            let mut children: Vec<PathBuf> = entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect();
            children.sort_unstable_by(|a, b| b.cmp(a));
            pending.extend(children);
        }
        if checked >= DATA_DIR_ENTRIES_CHECKED_MAX {
            break;
        }
    }
    exposed
}

fn exposed_warning(data_dir: &Path, path: &Path, mode: u32) -> String {
    let what = if path == data_dir {
        "data directory"
    } else if path.is_dir() {
        "directory in the data directory:"
    } else {
        "file in the data directory:"
    };
    format!(
        "{what} {} has mode {mode:04o}: group or others can reach the broker's messages and \
         definitions; fix with `chmod -R go-rwx {}` (the broker creates directories 0700 and files 0600)",
        path.display(),
        data_dir.display()
    )
}

/// The pure decision: every warning that `readings` call for, in a fixed order.
pub fn decide(readings: &HostReadings, shards: usize) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(nofile) = readings.nofile {
        found.extend(nofile_warning(nofile));
    }
    if let (Some(memlock), Some(kernel)) = (readings.memlock_bytes, readings.kernel) {
        found.extend(memlock_warning(memlock, kernel, shards));
    }
    if let Some(max_map_count) = readings.max_map_count {
        found.extend(max_map_count_warning(max_map_count));
    }
    found
}

fn nofile_warning(nofile: Limit) -> Option<String> {
    if nofile.soft >= NOFILE_SOFT_MIN {
        return None;
    }
    let how = if nofile.hard >= NOFILE_SOFT_MIN {
        format!("raise it with `ulimit -n {NOFILE_SOFT_MIN}` before starting the broker")
    } else {
        format!(
            "the hard limit is {} too, so raise both: LimitNOFILE= in the systemd unit or \
             tuning/spatemq-limits.conf in /etc/security/limits.d (see tuning/README.md)",
            show_limit(nofile.hard)
        )
    };
    Some(format!(
        "open-file limit (RLIMIT_NOFILE) is {}, below {NOFILE_SOFT_MIN}: each connection takes \
         one descriptor, so connections will be refused with \"too many open files\" past about \
         that many; {how}",
        show_limit(nofile.soft)
    ))
}

fn memlock_warning(memlock: Limit, kernel: KernelVersion, shards: usize) -> Option<String> {
    if kernel >= KERNEL_WITHOUT_MEMLOCK_ACCOUNTING || memlock.soft >= MEMLOCK_MIN_BYTES {
        return None;
    }
    Some(format!(
        "locked-memory limit (RLIMIT_MEMLOCK) is {} and kernel {}.{} (before 5.12) charges io_uring \
         rings to it: {shards} shard ring(s) may fail to set up and fall back to epoll; raise it to \
         at least 64 MiB (`ulimit -l 65536`, LimitMEMLOCK=infinity in the systemd unit, or \
         tuning/spatemq-limits.conf)",
        show_bytes(memlock.soft),
        kernel.major,
        kernel.minor
    ))
}

fn max_map_count_warning(max_map_count: u64) -> Option<String> {
    if max_map_count >= MAX_MAP_COUNT_MIN {
        return None;
    }
    Some(format!(
        "vm.max_map_count is {max_map_count}, below {MAX_MAP_COUNT_MIN}: every message segment is \
         one memory mapping, so a large backlog can fail to map; raise it with \
         `sysctl -w vm.max_map_count={MAX_MAP_COUNT_MIN}` (tuning/tune.sh --apply)"
    ))
}

fn show_limit(value: u64) -> String {
    if value == u64::MAX {
        "unlimited".to_string()
    } else {
        value.to_string()
    }
}

fn show_bytes(value: u64) -> String {
    if value == u64::MAX {
        "unlimited".to_string()
    } else {
        format!("{} KiB", value / 1024)
    }
}

fn read_rlimit(resource: libc::__rlimit_resource_t) -> Option<Limit> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the valid struct passed by pointer.
    let status = unsafe { libc::getrlimit(resource, &mut limit) };
    if status != 0 {
        return None;
    }
    let widen = |value: libc::rlim_t| {
        if value == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            value
        }
    };
    Some(Limit { soft: widen(limit.rlim_cur), hard: widen(limit.rlim_max) })
}

fn kernel_release() -> Option<String> {
    // SAFETY: utsname is plain data; uname fills it with NUL-terminated strings.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `names` is a valid, writable utsname.
    if unsafe { libc::uname(&mut names) } != 0 {
        return None;
    }
    // SAFETY: uname NUL-terminates `release` within its fixed-size array.
    let release = unsafe { std::ffi::CStr::from_ptr(names.release.as_ptr()) };
    Some(release.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: HostReadings = HostReadings {
        nofile: Some(Limit { soft: 1_048_576, hard: 1_048_576 }),
        memlock_bytes: Some(Limit { soft: u64::MAX, hard: u64::MAX }),
        kernel: Some(KernelVersion { major: 6, minor: 1 }),
        max_map_count: Some(262_144),
    };

    fn old_kernel() -> Option<KernelVersion> {
        Some(KernelVersion { major: 5, minor: 4 })
    }

    #[test]
    fn a_well_tuned_host_gets_no_warning() {
        assert!(decide(&GOOD, 2).is_empty());
    }

    #[test]
    fn unreadable_settings_give_no_warning() {
        let unknown = HostReadings { nofile: None, memlock_bytes: None, kernel: None, max_map_count: None };
        assert!(decide(&unknown, 2).is_empty());
    }

    #[test]
    fn low_soft_nofile_with_room_under_hard_says_ulimit() {
        let readings = HostReadings { nofile: Some(Limit { soft: 1024, hard: 1_048_576 }), ..GOOD };
        let found = decide(&readings, 2);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("RLIMIT_NOFILE) is 1024"), "{}", found[0]);
        assert!(found[0].contains("ulimit -n 65536"), "{}", found[0]);
    }

    #[test]
    fn low_hard_nofile_points_at_limits_files() {
        let readings = HostReadings { nofile: Some(Limit { soft: 20_000, hard: 20_000 }), ..GOOD };
        let found = decide(&readings, 2);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("hard limit is 20000"), "{}", found[0]);
        assert!(found[0].contains("LimitNOFILE="), "{}", found[0]);
    }

    #[test]
    fn nofile_exactly_at_the_minimum_is_fine() {
        let readings = HostReadings { nofile: Some(Limit { soft: NOFILE_SOFT_MIN, hard: NOFILE_SOFT_MIN }), ..GOOD };
        assert!(decide(&readings, 2).is_empty());
    }

    #[test]
    fn low_memlock_on_an_old_kernel_warns() {
        let readings = HostReadings {
            memlock_bytes: Some(Limit { soft: 64 * 1024, hard: 64 * 1024 }),
            kernel: old_kernel(),
            ..GOOD
        };
        let found = decide(&readings, 4);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("64 KiB"), "{}", found[0]);
        assert!(found[0].contains("kernel 5.4"), "{}", found[0]);
        assert!(found[0].contains("4 shard ring(s)"), "{}", found[0]);
    }

    #[test]
    fn low_memlock_on_5_12_or_later_is_not_charged_so_no_warning() {
        let readings = HostReadings {
            memlock_bytes: Some(Limit { soft: 64 * 1024, hard: 64 * 1024 }),
            kernel: Some(KERNEL_WITHOUT_MEMLOCK_ACCOUNTING),
            ..GOOD
        };
        assert!(decide(&readings, 2).is_empty());
    }

    #[test]
    fn memlock_of_64_mib_on_an_old_kernel_is_enough() {
        let readings = HostReadings {
            memlock_bytes: Some(Limit { soft: MEMLOCK_MIN_BYTES, hard: MEMLOCK_MIN_BYTES }),
            kernel: old_kernel(),
            ..GOOD
        };
        assert!(decide(&readings, 2).is_empty());
    }

    #[test]
    fn low_max_map_count_warns_with_the_sysctl() {
        let readings = HostReadings { max_map_count: Some(65_530), ..GOOD };
        let found = decide(&readings, 2);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("vm.max_map_count is 65530"), "{}", found[0]);
        assert!(found[0].contains("sysctl -w vm.max_map_count=262144"), "{}", found[0]);
    }

    #[test]
    fn every_problem_is_reported_in_a_fixed_order() {
        let readings = HostReadings {
            nofile: Some(Limit { soft: 1024, hard: 4096 }),
            memlock_bytes: Some(Limit { soft: 65_536, hard: 65_536 }),
            kernel: old_kernel(),
            max_map_count: Some(65_530),
        };
        let found = decide(&readings, 2);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("RLIMIT_NOFILE"));
        assert!(found[1].contains("RLIMIT_MEMLOCK"));
        assert!(found[2].contains("vm.max_map_count"));
    }

    /// A fresh directory under the temp dir with `mode`, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str, mode: u32) -> TempDir {
            let path = std::env::temp_dir().join(format!("spatemq-host-checks-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir(&path).expect("create the test dir");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            TempDir(path)
        }

        fn file(&self, name: &str, mode: u32) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, b"x").expect("write a test file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_data_dir_open_to_others_is_named_with_its_mode() {
        let dir = TempDir::new("open", 0o755);
        let definitions = dir.file("definitions.log", 0o644);
        dir.file("spatemq.lock", 0o600);
        let found = data_dir_warnings(&dir.0);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains(&format!("data directory {} has mode 0755", dir.0.display())), "{}", found[0]);
        assert!(
            found[1].contains(&format!("file in the data directory: {} has mode 0644", definitions.display())),
            "{}",
            found[1]
        );
        assert!(found[0].contains("chmod -R go-rwx"), "{}", found[0]);
    }

    #[test]
    fn a_private_data_dir_and_a_missing_one_give_no_warning() {
        let dir = TempDir::new("private", 0o700);
        dir.file("definitions.log", 0o600);
        assert!(data_dir_warnings(&dir.0).is_empty());
        assert!(data_dir_warnings(&dir.0.join("not-yet")).is_empty());
    }

    #[test]
    fn many_open_files_are_named_up_to_the_limit_then_counted() {
        let dir = TempDir::new("many", 0o700);
        for index in 0..8 {
            dir.file(&format!("{index:010}.segment"), 0o640);
        }
        let found = data_dir_warnings(&dir.0);
        assert_eq!(found.len(), DATA_DIR_PATHS_NAMED_MAX + 1, "{found:?}");
        assert!(found[DATA_DIR_PATHS_NAMED_MAX].starts_with("3 more paths"), "{}", found[DATA_DIR_PATHS_NAMED_MAX]);
    }

    #[test]
    fn kernel_releases_parse_to_major_and_minor() {
        let parse = KernelVersion::parse;
        assert_eq!(parse("6.1.0-18-amd64"), Some(KernelVersion { major: 6, minor: 1 }));
        assert_eq!(parse("5.4.0-150-generic"), Some(KernelVersion { major: 5, minor: 4 }));
        assert_eq!(parse("5.11"), Some(KernelVersion { major: 5, minor: 11 }));
        assert_eq!(parse("6.18.44-custom"), Some(KernelVersion { major: 6, minor: 18 }));
        assert_eq!(parse("4.19+"), Some(KernelVersion { major: 4, minor: 19 }));
        assert_eq!(parse("5.15rc1"), Some(KernelVersion { major: 5, minor: 15 }));
        assert_eq!(parse("linux"), None);
        assert_eq!(parse("6"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn version_order_puts_5_11_before_5_12_and_4_20() {
        let parse = |text| KernelVersion::parse(text).expect("test input parses");
        assert!(parse("5.11") < KERNEL_WITHOUT_MEMLOCK_ACCOUNTING);
        assert!(parse("4.20") < KERNEL_WITHOUT_MEMLOCK_ACCOUNTING);
        assert!(parse("5.12") >= KERNEL_WITHOUT_MEMLOCK_ACCOUNTING);
        assert!(parse("6.0") >= KERNEL_WITHOUT_MEMLOCK_ACCOUNTING);
    }
}
