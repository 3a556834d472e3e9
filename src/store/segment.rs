//! One segment file of a shard's message log, its memory map, and its side file of marks.
//!
//! A segment is pre-allocated, written append-only by its shard, read through a read-only
//! map (so queued messages live in the page cache, not the heap), and deleted when no queued
//! message references it any more: every stored message holds an `Arc<Segment>`, and the
//! last one to go drops it. Deletion happens only once the segment is sealed (no longer
//! written) and never during shutdown, when everything is dropped at once.
//!
//! A deleted segment of the usual size may instead keep its file for reuse as its store's next
//! segment (`spare::Recycled`): the file is renamed, its marks file deleted, its map released.
//!
//! A deleted segment's files are unlinked at once, but its map and descriptors are released on
//! a thread of their own (`Retired`): unmapping a 64 MiB segment whose pages were read through
//! the map, then closing the last descriptor of the unlinked file (which frees its page cache),
//! took 40 ms on the shard's thread, and every message and confirm of the shard waited.

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::ManuallyDrop;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};

use memmap2::Mmap;

use super::record::{read_seeded, segment_seed, ReadOutcome};
use super::spare::Recycled;

/// Set when the broker is stopping: dropped segments are kept, not deleted.
pub static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

pub struct Segment {
    pub number: u64,
    path: PathBuf,
    marks_path: PathBuf,
    pub file: ManuallyDrop<File>,
    map: ManuallyDrop<Mmap>,
    marks: ManuallyDrop<File>,
    marks_offset: AtomicU64,
    sealed: AtomicBool,
    /// The checksum seed of its records (`record::segment_seed`, or 0 for a segment written
    /// by an earlier version).
    seed: u32,
    /// Where its file goes for reuse when it is deleted (`spare::Recycled`).
    recycle: Option<Arc<Recycled>>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Segment({})", self.path.display())
    }
}

impl Segment {
    /// Whether the segment's file lies in `dir` (a shard directory).
    pub fn is_in(&self, dir: &Path) -> bool {
        self.path.parent() == Some(dir)
    }
}

pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:010}.segment"))
}

pub fn marks_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:010}.marks"))
}

/// Parses `0000000042.segment` into 42.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_suffix(".segment")?.parse().ok()
}

impl Segment {
    /// Creates and pre-allocates a new segment of `capacity_bytes`.
    pub fn create(dir: &Path, number: u64, capacity_bytes: u64) -> io::Result<Segment> {
        let path = segment_path(dir, number);
        let file = super::files::options().read(true).write(true).create_new(true).open(&path)?;
        preallocate(&file, capacity_bytes)?;
        Segment::map(dir, number, path, file, 0, false)
    }

    /// A new segment from a file already at its path (a spare, zeroed or recycled,
    /// `store::spare`).
    pub fn adopt(dir: &Path, number: u64, file: File) -> io::Result<Segment> {
        Segment::map(dir, number, segment_path(dir, number), file, 0, false)
    }

    /// Once deleted, its file is offered to `recycled` for reuse.
    pub fn recycle_into(mut self, recycled: Arc<Recycled>) -> Segment {
        self.recycle = Some(recycled);
        self
    }

    /// The checksum seed of its records.
    pub fn seed(&self) -> u32 {
        self.seed
    }

    /// Opens an existing segment for recovery; it is sealed (never written again).
    pub fn open_sealed(dir: &Path, number: u64) -> io::Result<Segment> {
        let path = segment_path(dir, number);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut segment = Segment::map(dir, number, path, file, u64::MAX, true)?;
        segment.seed = detect_seed(segment.bytes(), number);
        segment.seal();
        Ok(segment)
    }

    /// `populate`: map every page at once (recovery reads the whole segment; one call instead
    /// of a page fault per 4 KiB).
    fn map(
        dir: &Path,
        number: u64,
        path: PathBuf,
        file: File,
        marks_offset: u64,
        populate: bool,
    ) -> io::Result<Segment> {
        // SAFETY: the file is only ever grown before mapping and written by this process at
        // offsets past what readers use; the map is read-only.
        let map = unsafe {
            let mut options = memmap2::MmapOptions::new();
            if populate {
                options.populate();
            }
            options.map(&file)?
        };
        let marks_path = marks_path(dir, number);
        let marks = super::files::options().read(true).write(true).create(true).truncate(false).open(&marks_path)?;
        let marks_offset = if marks_offset == u64::MAX { marks.metadata()?.len() } else { marks_offset };
        let marks_offset = marks_offset - marks_offset % super::record::MARK_RECORD_BYTES as u64;
        Ok(Segment {
            number,
            path,
            marks_path,
            file: ManuallyDrop::new(file),
            map: ManuallyDrop::new(map),
            marks: ManuallyDrop::new(marks),
            marks_offset: AtomicU64::new(marks_offset),
            sealed: AtomicBool::new(false),
            seed: segment_seed(number),
            recycle: None,
        })
    }

    pub fn capacity(&self) -> u64 {
        self.map.len() as u64
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Drops the first `bytes` of the map from this process's resident set (the pages stay
    /// in the page cache and are mapped back on the next read).
    pub fn release_pages(&self, bytes: usize) {
        drop_page_entries(&self.map[..bytes.min(self.map.len())]);
    }

    pub fn seal(&self) {
        self.sealed.store(true, Ordering::SeqCst);
    }

    pub fn read_marks(&self) -> io::Result<Vec<u8>> {
        std::fs::read(&self.marks_path)
    }

    /// Truncates the marks file to its valid prefix (after recovery found damage).
    pub fn truncate_marks(&self, valid_bytes: u64) -> io::Result<()> {
        self.marks.set_len(valid_bytes)?;
        self.marks_offset.store(valid_bytes, Ordering::SeqCst);
        Ok(())
    }

    /// Appends mark records. Marks need no fsync: a lost mark only means a message comes
    /// back once after a crash (at-least-once), or without its redelivered flag.
    pub fn append_marks(&self, records: &[u8]) -> io::Result<()> {
        let offset = self.marks_offset.fetch_add(records.len() as u64, Ordering::SeqCst);
        self.marks.write_all_at(records, offset)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: each field is taken once, here, and never used again.
        let retired = unsafe {
            Retired {
                _map: ManuallyDrop::take(&mut self.map),
                _file: Some(ManuallyDrop::take(&mut self.file)),
                _marks: ManuallyDrop::take(&mut self.marks),
            }
        };
        if self.sealed.load(Ordering::SeqCst) && !SHUTTING_DOWN.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(&self.marks_path);
            let Retired { _map: map, _file: file, _marks: marks } = retired;
            let file = file.and_then(|file| match &self.recycle {
                Some(recycled) => recycled.offer(&self.path, file).err(),
                None => Some(file),
            });
            if file.is_some() {
                let _ = std::fs::remove_file(&self.path);
            }
            Retired { _map: map, _file: file, _marks: marks }.release_elsewhere();
        }
    }
}

/// What a dropped segment still holds: its map and descriptors. Dropping them frees the
/// segment's address space and, for a deleted segment, its page cache and blocks.
struct Retired {
    _map: Mmap,
    /// None once the file went for reuse.
    _file: Option<File>,
    _marks: File,
}

impl Retired {
    /// Hands the release to the segment-release thread, started on first use; if it cannot
    /// be started, the caller's thread does it.
    fn release_elsewhere(self) {
        static RELEASER: OnceLock<Option<Sender<Retired>>> = OnceLock::new();
        let sender = RELEASER.get_or_init(|| {
            let (sender, receiver) = std::sync::mpsc::channel::<Retired>();
            let spawned = std::thread::Builder::new()
                .name("segment-release".into())
                .spawn(move || receiver.into_iter().for_each(Retired::release));
            spawned.ok().map(|_| sender)
        });
        if let Some(Err(returned)) = sender.as_ref().map(|sender| sender.send(self)) {
            drop(returned.0);
        }
    }

    /// Releases a deleted segment in steps, so no single step holds a lock the shards need
    /// for long: the page-table entries a few MiB at a time (`madvise` takes the address
    /// space's lock for reading; one `munmap` of a populated 64 MiB map held it for writing
    /// for 37 ms, and every page fault of the process waited), then the file's blocks and
    /// page cache a few MiB at a time, with a pause between steps for the journal to commit
    /// (one close of the whole unlinked file took 47 ms, and a group commit's fsync behind it
    /// as long).
    fn release(self) {
        let Retired { _map: map, _file: file, _marks: marks } = self;
        for step in map.chunks(RELEASE_STEP_BYTES) {
            drop_page_entries(step);
        }
        drop(map);
        let Some(file) = file else { return drop(marks) };
        let mut length = file.metadata().map_or(0, |metadata| metadata.len());
        while length > 0 {
            length = length.saturating_sub(RELEASE_STEP_BYTES as u64);
            if file.set_len(length).is_err() {
                break;
            }
            std::thread::sleep(RELEASE_STEP_PAUSE);
        }
        drop((file, marks));
    }
}

/// Drops the page-table entries of `pages`, a range of a read-only shared file mapping: the
/// pages stay in the page cache (or go with the file) and a later read maps them back.
fn drop_page_entries(pages: &[u8]) {
    if pages.is_empty() {
        return;
    }
    // SAFETY: the range lies within a read-only file mapping; MADV_DONTNEED on a shared file
    // mapping only drops page-table entries, the file content is unchanged.
    unsafe {
        libc::madvise(pages.as_ptr() as *mut libc::c_void, pages.len(), libc::MADV_DONTNEED);
    }
}

/// How much of a deleted segment `Retired::release` frees per step, and the pause between.
const RELEASE_STEP_BYTES: usize = 4 * 1024 * 1024;
const RELEASE_STEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// The seed a recovered segment's records were checksummed with: its own number's, or 0 when
/// its first record reads only without one (written by an earlier version). An empty segment
/// (or one whose first record is damaged either way) is taken as written by this version.
fn detect_seed(bytes: &[u8], number: u64) -> u32 {
    let seed = segment_seed(number);
    let damaged = |seed| matches!(read_seeded(bytes, 0, seed), ReadOutcome::Damaged { .. });
    if damaged(seed) && !damaged(0) {
        0
    } else {
        seed
    }
}

pub(super) fn preallocate(file: &File, capacity_bytes: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let length = i64::try_from(capacity_bytes).map_err(|_| io::Error::other("segment too large"))?;
    // SAFETY: fallocate on a descriptor we own; failure is reported and we fall back to set_len.
    let result = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length) };
    if result != 0 {
        file.set_len(capacity_bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A sealed segment that is dropped loses its files at once; its blocks are then freed by
    /// the release thread (seen through a second descriptor, which keeps the unlinked file).
    #[test]
    fn a_dropped_sealed_segment_is_unlinked_at_once_and_freed_elsewhere() {
        let dir = std::env::temp_dir().join(format!("spatemq-segment-release-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test directory");
        let capacity = 3 * RELEASE_STEP_BYTES as u64 + 4096;
        let segment = Segment::create(&dir, 7, capacity).expect("create");
        let written = vec![7u8; 2 * RELEASE_STEP_BYTES];
        segment.file.write_all_at(&written, 0).expect("write");
        assert!(segment.bytes()[..written.len()].iter().all(|byte| *byte == 7), "read back through the map");
        let observer = segment.file.try_clone().expect("second descriptor");
        segment.seal();
        drop(segment);
        assert!(!segment_path(&dir, 7).exists() && !marks_path(&dir, 7).exists(), "files unlinked by the drop");
        let deadline = Instant::now() + Duration::from_secs(10);
        while observer.metadata().expect("metadata").len() > 0 {
            assert!(Instant::now() < deadline, "the release thread never truncated the deleted segment");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// A segment dropped unsealed (the one being written, at shutdown) keeps its files: the
    /// next start recovers them.
    #[test]
    fn an_unsealed_segment_keeps_its_files() {
        let dir = std::env::temp_dir().join(format!("spatemq-segment-kept-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test directory");
        drop(Segment::create(&dir, 3, 64 * 1024).expect("create"));
        assert!(segment_path(&dir, 3).exists() && marks_path(&dir, 3).exists());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
