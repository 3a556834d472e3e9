//! One segment file of a shard's message log, its memory map, and its side file of marks.
//!
//! A segment is pre-allocated, written append-only by its shard, read through a read-only
//! map (so queued messages live in the page cache, not the heap), and deleted when no queued
//! message references it any more: every stored message holds an `Arc<Segment>`, and the
//! last one to go drops it. Deletion happens only once the segment is sealed (no longer
//! written) and never during shutdown, when everything is dropped at once.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use memmap2::Mmap;

/// Set when the broker is stopping: dropped segments are kept, not deleted.
pub static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

pub struct Segment {
    pub number: u64,
    path: PathBuf,
    marks_path: PathBuf,
    pub file: File,
    map: Mmap,
    marks: File,
    marks_offset: AtomicU64,
    sealed: AtomicBool,
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

    /// Opens an existing segment for recovery; it is sealed (never written again).
    pub fn open_sealed(dir: &Path, number: u64) -> io::Result<Segment> {
        let path = segment_path(dir, number);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let segment = Segment::map(dir, number, path, file, u64::MAX, true)?;
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
            file,
            map,
            marks,
            marks_offset: AtomicU64::new(marks_offset),
            sealed: AtomicBool::new(false),
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
        let length = bytes.min(self.map.len());
        if length == 0 {
            return;
        }
        // SAFETY: the range lies within our read-only file mapping; MADV_DONTNEED on a shared
        // file mapping only drops page-table entries, the file content is unchanged.
        unsafe {
            libc::madvise(self.map.as_ptr() as *mut libc::c_void, length, libc::MADV_DONTNEED);
        }
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
        if self.sealed.load(Ordering::SeqCst) && !SHUTTING_DOWN.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::remove_file(&self.marks_path);
        }
    }
}

fn preallocate(file: &File, capacity_bytes: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let length = i64::try_from(capacity_bytes).map_err(|_| io::Error::other("segment too large"))?;
    // SAFETY: fallocate on a descriptor we own; failure is reported and we fall back to set_len.
    let result = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length) };
    if result != 0 {
        file.set_len(capacity_bytes)?;
    }
    Ok(())
}
