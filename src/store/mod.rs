//! Durable storage: each shard's append-only message log, the definitions log, recovery,
//! and the data-directory lock.
//!
//! A shard appends the persistent messages of its durable queues to its own log during a
//! loop turn, writes them at the end of the turn, then one fdatasync covers every queue of
//! the shard (group commit, `commit.rs`); the confirms of that batch are released only after
//! it. Queued messages are read back through the segment's memory map, so the heap holds
//! only a small reference per queued message. The store knows nothing of AMQP semantics.
//!
//! A message routed to several durable queues of the shard (a fanout) is stored once: its
//! first queue gets a message record, the others a link record naming it (same segment, so
//! the link's reference keeps the content's segment alive). A held delayed message's copy
//! follows a hand-over record naming the held message, in the same segment (`handover.rs`).

pub(crate) mod definitions_log;
pub(crate) mod files;
pub(crate) mod handover;
pub(crate) mod lock;
pub(crate) mod paging;
pub(crate) mod record;
pub(crate) mod segment;
pub(crate) mod spare;
pub(crate) mod stream_log;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::codec::message::Message;
use crate::ids::ConfirmTo;
use crate::limits::STORE_RECENT_MESSAGES;
use record::{
    decode_link, decode_message, encode_copy, encode_link, encode_mark, encode_message_as, read_seeded, record_length,
    Link, Mark, MessageRecord, Origin, ReadOutcome, KIND_LINK, LINK_RECORD_BYTES, ORIGIN_BYTES, PLACE_BYTES,
    RECORD_HEADER_BYTES,
};
use segment::Segment;
use spare::{Recycled, Spare};

/// Where a stored message lives: its segment (kept alive by this reference) and its record.
#[derive(Clone, Debug)]
pub struct StoredRef {
    pub segment: Arc<Segment>,
    pub offset: u32,
    pub length: u32,
    /// The size of the message record holding the content (for a link, the record it names;
    /// for a copy, without its origin): what `x-max-length-bytes` and compaction count.
    pub content_bytes: u32,
    /// The record's kind (`record::KIND_*`): runs read records of one kind.
    pub kind: u8,
}

/// A record of a queue found in a segment by `find_record`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundRecord {
    pub kind: u8,
    pub offset: u32,
    pub length: u32,
    pub content_bytes: u32,
    /// The message's sequence in its queue.
    pub sequence: u64,
}

impl FoundRecord {
    pub fn reference(&self, segment: &Arc<Segment>) -> StoredRef {
        StoredRef {
            segment: segment.clone(),
            offset: self.offset,
            length: self.length,
            content_bytes: self.content_bytes,
            kind: self.kind,
        }
    }
}

/// A message appended as a message record to the active publishes segment: a weak reference
/// (so its allocation, and hence its address, is not reused while remembered, and its body
/// is not kept alive) and where its record is.
struct Recent {
    message: Weak<Message>,
    offset: u32,
    content_bytes: u32,
}

#[derive(Debug)]
pub enum StoreError {
    Poisoned(String),
    /// A stored record that cannot be read back (or moved); the store itself is fine.
    Unreadable(String),
    Io {
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Poisoned(reason) => write!(f, "message store unavailable after an I/O error: {reason}"),
            StoreError::Unreadable(reason) => write!(f, "stored record unreadable: {reason}"),
            StoreError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {}

/// One append-only stream of segments: its active segment, how much of it is written, and
/// the records appended this turn. Publishes and compaction copies go to separate streams, so
/// long-lived copies gather in segments of their own instead of mixing with short-lived
/// traffic (and being copied again when that traffic is acked).
#[derive(Default)]
struct Stream {
    active: Option<Arc<Segment>>,
    /// Next append position in the active segment.
    active_offset: u64,
    /// Bytes of the active segment already written to the file.
    written_offset: u64,
    /// Records appended this turn, to be written at `written_offset`.
    pending: Vec<u8>,
}

impl Stream {
    fn holds(&self, segment: &Arc<Segment>) -> bool {
        self.active.as_ref().is_some_and(|active| Arc::ptr_eq(active, segment))
    }

    fn fits(&self, length: u64) -> bool {
        self.active.as_ref().is_some_and(|active| self.active_offset + length <= active.capacity())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamKind {
    Publishes,
    Copies,
}

/// What one fdatasync covers: the segments written since the last one, the confirms it
/// releases, and the segments compaction copied from, kept (not deleted) until the copies
/// are on disk, with the `Moved` marks to write once they are.
pub struct SyncBatch {
    pub segments: Vec<Arc<Segment>>,
    pub confirms: Vec<ConfirmTo>,
    pub retired: Vec<(Arc<Segment>, Vec<u8>)>,
    /// The store's directory, when a segment was created since the last batch: the new file's
    /// name must reach the disk before a confirm of a record in it, and an fdatasync of the
    /// file alone need not write its directory entry.
    pub directory: Option<PathBuf>,
}

pub struct Store {
    dir: PathBuf,
    segment_bytes: u64,
    publishes: Stream,
    /// The last messages given a message record in the active publishes segment, newest
    /// last; emptied when that segment changes.
    recent: VecDeque<Recent>,
    copies: Stream,
    /// This turn's marks, by segment: keyed by the segment itself (its address, which its Arc
    /// in the entry keeps), not its number, as after a restart with fewer shards segments of
    /// other shard directories, with the same numbers as this one's, get marks here too.
    marks: FxHashMap<usize, (Arc<Segment>, Vec<u8>)>,
    next_segment_number: u64,
    /// A segment was created since the last sync batch (`SyncBatch::directory`).
    directory_unsynced: bool,
    /// Written but not yet fdatasync'ed, with the confirms that wait for it.
    unsynced: Vec<Arc<Segment>>,
    confirms_unwritten: Vec<ConfirmTo>,
    confirms_unsynced: Vec<ConfirmTo>,
    /// Segments that compaction copied records from this turn, with those records' marks.
    moved_unwritten: Vec<(Arc<Segment>, Vec<u8>)>,
    moved_unsynced: Vec<(Arc<Segment>, Vec<u8>)>,
    /// Segments whose copies never reached the disk: never deleted while the broker runs.
    kept: Vec<Arc<Segment>>,
    /// Segments kept until this turn's marks are written (`release_after_marks`).
    kept_for_marks: Vec<Arc<Segment>>,
    poisoned: Option<String>,
    /// Test hook: fail every write once this many bytes were written.
    fail_after_bytes: Option<u64>,
    written_total_bytes: u64,
    paged: paging::PagedBytes,
    /// The next segment's file, zero-filled ahead of use (`spare.rs`).
    spare: Spare,
    /// Or a deleted segment's file, reused (`spare::Recycled`).
    recycled: Arc<Recycled>,
}

impl Store {
    pub fn open(
        dir: &Path,
        next_segment_number: u64,
        segment_bytes: u64,
        fail_after_bytes: Option<u64>,
    ) -> io::Result<Store> {
        files::create_dirs(dir)?;
        // The shard's directory (and `messages/` and the data directory holding it) must
        // survive a power cut with the segments a commit puts in it.
        files::sync_dir_and_parents(dir, 2)?;
        Spare::delete_leftover(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            segment_bytes,
            publishes: Stream::default(),
            recent: VecDeque::new(),
            copies: Stream::default(),
            marks: FxHashMap::default(),
            next_segment_number,
            directory_unsynced: false,
            unsynced: Vec::new(),
            confirms_unwritten: Vec::new(),
            confirms_unsynced: Vec::new(),
            moved_unwritten: Vec::new(),
            moved_unsynced: Vec::new(),
            kept: Vec::new(),
            kept_for_marks: Vec::new(),
            poisoned: None,
            fail_after_bytes,
            written_total_bytes: 0,
            paged: paging::PagedBytes::default(),
            spare: Spare::default(),
            recycled: Arc::new(Recycled::new(dir)),
        })
    }

    /// True once the next segment's zero-filled file is made (`spare.rs`).
    #[cfg(test)]
    pub fn spare_ready(&self) -> bool {
        self.spare.is_ready()
    }

    /// Bytes written to segment files since the store was opened.
    pub fn written_total_bytes(&self) -> u64 {
        self.written_total_bytes
    }

    /// The segments still being written (their file descriptors are worth keeping).
    pub fn active_numbers(&self) -> [Option<u64>; 2] {
        [&self.publishes, &self.copies].map(|stream| stream.active.as_ref().map(|segment| segment.number))
    }

    /// True if `segment` is one of this store's directory (not one a restart with fewer
    /// shards handed over from another shard's directory).
    pub fn owns(&self, segment: &Segment) -> bool {
        segment.is_in(&self.dir)
    }

    /// True if `segment` is still being appended to (compaction leaves it alone).
    pub fn is_active(&self, segment: &Arc<Segment>) -> bool {
        self.publishes.holds(segment) || self.copies.holds(segment)
    }

    pub fn poison_with(&mut self, reason: String) {
        let _ = self.poison(reason);
    }

    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn poison(&mut self, reason: String) -> StoreError {
        if self.poisoned.is_none() {
            crate::error!(
                "message store {} poisoned: {reason}; publishes to its durable queues are refused",
                self.dir.display()
            );
            self.poisoned = Some(reason.clone());
        }
        StoreError::Poisoned(reason)
    }

    fn stream(&mut self, kind: StreamKind) -> &mut Stream {
        match kind {
            StreamKind::Publishes => &mut self.publishes,
            StreamKind::Copies => &mut self.copies,
        }
    }

    /// Makes room for `length` bytes in a stream; returns where they go.
    fn reserve(&mut self, kind: StreamKind, length: u64) -> Result<(Arc<Segment>, u64), StoreError> {
        if let Some(reason) = &self.poisoned {
            return Err(StoreError::Poisoned(reason.clone()));
        }
        if !self.stream(kind).fits(length) {
            self.rotate(kind, length)?;
        }
        let stream = self.stream(kind);
        let segment = stream.active.clone().ok_or_else(|| StoreError::Poisoned("no active segment".into()))?;
        let offset = stream.active_offset;
        stream.active_offset += length;
        Ok((segment, offset))
    }

    /// Appends a message record; it reaches the file at the end of the turn.
    pub fn append(&mut self, record: &MessageRecord<'_>) -> Result<StoredRef, StoreError> {
        self.append_as(record, record::KIND_MESSAGE)
    }

    /// Appends a message paged out of memory (`KIND_PAGED`): read back like a stored one,
    /// never recovered, never moved by compaction, and confirmed without waiting for a sync.
    pub fn append_paged(&mut self, record: &MessageRecord<'_>) -> Result<StoredRef, StoreError> {
        let stored = self.append_as(record, record::KIND_PAGED)?;
        self.paged.appended(u64::from(stored.length));
        Ok(stored)
    }

    /// Paged bytes that no finished fdatasync covers yet (`paging::PagedBytes`).
    pub fn paged_outstanding_bytes(&self) -> u64 {
        self.paged.outstanding()
    }

    /// The sync that `take_sync_batch` started has finished (or failed).
    pub fn sync_finished(&mut self) {
        self.paged.sync_finished();
    }

    fn append_as(&mut self, record: &MessageRecord<'_>, kind: u8) -> Result<StoredRef, StoreError> {
        let length = record.encoded_bytes() as u64;
        let (segment, offset) = self.reserve(StreamKind::Publishes, length)?;
        let pending_before = self.publishes.pending.len();
        encode_message_as(&mut self.publishes.pending, record, kind, segment.seed());
        // The record must take exactly the place reserved for it, or every later offset in
        // the segment (and every reference to it) would point into the wrong record.
        debug_assert_eq!((self.publishes.pending.len() - pending_before) as u64, length, "record size");
        debug_assert_eq!(self.publishes.written_offset + self.publishes.pending.len() as u64, offset + length);
        let (offset, length) = (offset as u32, length as u32);
        Ok(StoredRef { segment, offset, length, content_bytes: length, kind })
    }

    /// Appends `message` for one queue (`record`): a link record when the same message (the
    /// same allocation) already has a message record in the active publishes segment and the
    /// link fits there, a message record otherwise.
    pub fn append_shared(
        &mut self,
        record: &MessageRecord<'_>,
        message: &Arc<Message>,
    ) -> Result<StoredRef, StoreError> {
        let target =
            self.recent.iter().rev().find(|recent| std::ptr::eq(recent.message.as_ptr(), Arc::as_ptr(message)));
        if let Some(&Recent { offset: target_offset, content_bytes, .. }) = target {
            if self.publishes.fits(LINK_RECORD_BYTES as u64) {
                let (segment, offset) = self.reserve(StreamKind::Publishes, LINK_RECORD_BYTES as u64)?;
                let link = Link { place: record.place(), target_offset };
                debug_assert!(u64::from(target_offset) < offset, "a link points back to an earlier record");
                encode_link(&mut self.publishes.pending, link, segment.seed());
                debug_assert_eq!(
                    self.publishes.written_offset + self.publishes.pending.len() as u64,
                    offset + LINK_RECORD_BYTES as u64
                );
                let (offset, length) = (offset as u32, LINK_RECORD_BYTES as u32);
                return Ok(StoredRef { segment, offset, length, content_bytes, kind: KIND_LINK });
            }
        }
        let reference = self.append(record)?;
        // Held by no one else, the message cannot be routed to another queue after this one:
        // not remembering it spares two changes of its shared count, the second (the weak
        // reference's drop) after another shard has touched it.
        if Arc::strong_count(message) == 1 {
            return Ok(reference);
        }
        if self.recent.len() == STORE_RECENT_MESSAGES {
            self.recent.pop_front();
        }
        let recent = Recent {
            message: Arc::downgrade(message),
            offset: reference.offset,
            content_bytes: reference.content_bytes,
        };
        self.recent.push_back(recent);
        Ok(reference)
    }

    /// Copies a stored message (from a sealed segment) to the copies stream and returns its
    /// new place. Once the sync covering the copy completes, the old record gets a `Moved`
    /// mark and its segment may go; until then the segment is kept, so a crash finds the
    /// message in one place or the other (recovery decides which, see `recovery.rs`). A link
    /// is copied with its target's content; the copy always carries the place of the record
    /// it copies (a link's target has another queue's place).
    ///
    /// Only a segment of this store's own directory is compacted. One of another shard's
    /// directory (read after a restart with fewer shards) keeps its records where they are: a
    /// copy names its origin by segment number, which recovery looks up in the copy's own
    /// directory, so a copy out of another directory would be judged against the wrong
    /// segment and could be dropped while its original carries a Moved mark.
    pub fn relocate(&mut self, from: &StoredRef) -> Result<StoredRef, StoreError> {
        if self.is_active(&from.segment) {
            return Err(StoreError::Unreadable("compaction of a segment still being written".into()));
        }
        if !self.owns(&from.segment) {
            return Err(StoreError::Unreadable("compaction of another shard directory's segment".into()));
        }
        let source = from.segment.clone();
        let unreadable =
            |what: &str| StoreError::Unreadable(format!("segment {} offset {}: {what}", source.number, from.offset));
        let start = from.offset as usize;
        let own = source.bytes().get(start..start + from.length as usize).unwrap_or_default();
        let ReadOutcome::Record { kind, payload, .. } = read_seeded(own, 0, source.seed()) else {
            return Err(unreadable("unreadable record"));
        };
        if kind == record::KIND_PAGED {
            return Err(unreadable("a paged message is not moved"));
        }
        let Some(place) = record::record_place(kind, payload) else { return Err(unreadable("not a message")) };
        // Each record is checksummed once: the link, then its target (always earlier).
        let content = match kind {
            KIND_LINK => match decode_link(payload).map(|link| link.target_offset as usize) {
                Some(target) if target < start => match read_seeded(source.bytes(), target, source.seed()) {
                    ReadOutcome::Record { kind, payload, .. } => Some((kind, payload)),
                    _ => None,
                },
                _ => None,
            },
            _ => Some((kind, payload)),
        };
        let message = content.and_then(|(kind, payload)| record::message_payload(kind, payload)).map(|found| found.0);
        let Some(message) = message.filter(|message| message.len() >= PLACE_BYTES) else {
            return Err(unreadable("not a message"));
        };
        let length = (RECORD_HEADER_BYTES + 1 + ORIGIN_BYTES + message.len()) as u64;
        let (segment, offset) = self.reserve(StreamKind::Copies, length)?;
        let origin = Origin { segment: source.number, offset: from.offset };
        encode_copy(&mut self.copies.pending, origin, place, message, segment.seed());
        let marks = match self.moved_unwritten.iter_mut().find(|(segment, _)| Arc::ptr_eq(segment, &source)) {
            Some((_, marks)) => marks,
            None => {
                self.moved_unwritten.push((source, Vec::new()));
                &mut self.moved_unwritten.last_mut().expect("just pushed").1
            }
        };
        encode_mark(marks, place.queue_sequence, place.sequence, Mark::Moved);
        let (offset, length) = (offset as u32, length as u32);
        let content_bytes = length - ORIGIN_BYTES as u32;
        Ok(StoredRef { segment, offset, length, content_bytes, kind: record::KIND_COPY })
    }

    /// Seals a stream's active segment (after writing what it holds) and starts a new one.
    fn rotate(&mut self, kind: StreamKind, record_bytes: u64) -> Result<(), StoreError> {
        self.write_pending()?;
        if let Some(old) = self.stream(kind).active.take() {
            old.seal();
        }
        if kind == StreamKind::Publishes {
            // Links name records of their own segment only.
            self.recent.clear();
        }
        let capacity = self.segment_bytes.max(record_bytes + 8);
        let number = self.next_segment_number;
        self.next_segment_number += 1;
        let path = segment::segment_path(&self.dir, number);
        // A kept file has the usual size: a record too large for it gets a segment of its own.
        let recycled = if capacity == self.segment_bytes { self.recycled.take(&path) } else { None };
        let spare = recycled.or_else(|| self.spare.take(&path, capacity));
        let created = match spare {
            Some(file) => Segment::adopt(&self.dir, number, file),
            None => Segment::create(&self.dir, number, capacity),
        };
        // Only segments of the usual size are reused: a spare must fit any record that fits one.
        let created = created.map(|segment| match capacity == self.segment_bytes {
            true => segment.recycle_into(self.recycled.clone()),
            false => segment,
        });
        match created {
            Ok(segment) => {
                self.directory_unsynced = true;
                let stream = self.stream(kind);
                stream.active = Some(Arc::new(segment));
                stream.active_offset = 0;
                stream.written_offset = 0;
                Ok(())
            }
            Err(error) => Err(self.poison(format!("cannot create segment {number}: {error}"))),
        }
    }

    /// The confirm of a persistent publish waits for the fdatasync covering its record.
    pub fn confirm_after_sync(&mut self, confirm: ConfirmTo) {
        self.confirms_unwritten.push(confirm);
    }

    /// Keeps `segments` (their files) until the marks given so far are written: a mark that
    /// makes a record in them unneeded must reach the file before they may be deleted.
    pub fn release_after_marks(&mut self, segments: impl IntoIterator<Item = Arc<Segment>>) {
        self.kept_for_marks.extend(segments);
    }

    pub fn mark(&mut self, reference: &StoredRef, queue_sequence: u64, sequence: u64, mark: Mark) {
        let key = Arc::as_ptr(&reference.segment) as usize;
        let entry = self.marks.entry(key).or_insert_with(|| (reference.segment.clone(), Vec::new()));
        encode_mark(&mut entry.1, queue_sequence, sequence, mark);
    }

    /// Writes this turn's records and marks (no fsync). Returns true if a sync is now due.
    pub fn write_pending(&mut self) -> Result<bool, StoreError> {
        for (_, (segment, records)) in self.marks.drain() {
            if let Err(error) = segment.append_marks(&records) {
                crate::warn!("segment {}: cannot write marks: {error}", segment.number);
            }
        }
        self.kept_for_marks.clear();
        if self.poisoned.is_some() {
            return Err(self.refuse_waiting());
        }
        for kind in [StreamKind::Publishes, StreamKind::Copies] {
            if let Err(reason) = self.write_stream(kind) {
                let _ = self.poison(reason);
                return Err(self.refuse_waiting());
            }
        }
        self.confirms_unsynced.append(&mut self.confirms_unwritten);
        self.moved_unsynced.append(&mut self.moved_unwritten);
        Ok(!self.confirms_unsynced.is_empty() || !self.unsynced.is_empty() || !self.moved_unsynced.is_empty())
    }

    fn write_stream(&mut self, kind: StreamKind) -> Result<(), String> {
        let fail_after_bytes = self.fail_after_bytes;
        let written_total_bytes = self.written_total_bytes;
        let stream = self.stream(kind);
        if stream.pending.is_empty() {
            return Ok(());
        }
        let Some(segment) = stream.active.clone() else { return Err("records without a segment".into()) };
        let written = stream.pending.len() as u64;
        // Zeros after the records, so they end there in a reused file too (`spare::Recycled`);
        // the next write puts its records over them.
        let end = stream.written_offset + written;
        let zeros = segment.capacity().saturating_sub(end).min(RECORD_HEADER_BYTES as u64) as usize;
        stream.pending.resize(stream.pending.len() + zeros, 0);
        let result = match fail_after_bytes {
            Some(limit) if written_total_bytes + written > limit => Err(io::Error::other("injected write failure")),
            _ => segment.file.write_all_at(&stream.pending, stream.written_offset),
        };
        if let Err(error) = result {
            return Err(format!("write to segment {} failed: {error}", segment.number));
        }
        stream.written_offset += written;
        stream.pending.clear();
        let quarter_written = stream.written_offset >= segment.capacity() / 4;
        self.written_total_bytes += written;
        if !self.unsynced.iter().any(|unsynced| Arc::ptr_eq(unsynced, &segment)) {
            self.unsynced.push(segment);
        }
        if quarter_written && !self.recycled.holds() {
            self.spare.request(&self.dir, self.segment_bytes);
        }
        Ok(())
    }

    /// A poisoned store takes nothing more: unwritten records are dropped and every confirm
    /// waiting for a write or a sync goes to the sync batch, which the caller nacks. Segments
    /// whose copies were dropped are kept as they are. Nothing is retried.
    fn refuse_waiting(&mut self) -> StoreError {
        self.publishes.pending.clear();
        self.copies.pending.clear();
        self.confirms_unsynced.append(&mut self.confirms_unwritten);
        self.kept.extend(self.moved_unwritten.drain(..).map(|(segment, _)| segment));
        StoreError::Poisoned(self.poisoned.clone().unwrap_or_default())
    }

    /// Keeps segments whose copies a failed sync may not cover.
    pub fn keep(&mut self, segments: impl IntoIterator<Item = Arc<Segment>>) {
        self.kept.extend(segments);
    }

    /// Writes this turn's records now if `segment` is being appended to and `end` lies beyond
    /// what is written (a reader needs them in the file).
    pub fn ensure_written(&mut self, segment: &Arc<Segment>, end: u32) {
        let unwritten = [&self.publishes, &self.copies]
            .iter()
            .any(|stream| stream.holds(segment) && u64::from(end) > stream.written_offset);
        if unwritten {
            // The commit task is woken at the end of the turn, as for any write; a failure has
            // poisoned the store, and that end-of-turn write refuses the waiting confirms.
            let _ = self.write_pending();
        }
    }

    /// Takes what the next fdatasync must cover, the confirms it releases and the segments
    /// it frees.
    pub fn take_sync_batch(&mut self) -> SyncBatch {
        self.paged.sync_started();
        SyncBatch {
            segments: std::mem::take(&mut self.unsynced),
            confirms: std::mem::take(&mut self.confirms_unsynced),
            retired: std::mem::take(&mut self.moved_unsynced),
            directory: std::mem::take(&mut self.directory_unsynced).then(|| self.dir.clone()),
        }
    }

    /// Reads a stored message: from this turn's unwritten records or the segment's map. A link
    /// reads its target, which is earlier in the same segment (and so written, or unwritten
    /// with it, or written while the link is not).
    pub fn read(&self, reference: &StoredRef) -> Option<Arc<Message>> {
        let (bytes, _) = self.bytes_at(&reference.segment, reference.offset)?;
        let bytes = bytes.get(..reference.length as usize)?;
        let seed = reference.segment.seed();
        let (offset, length) = match read_link(bytes, seed) {
            Some(link) => {
                let (target, _) = self.bytes_at(&reference.segment, link.target_offset)?;
                (link.target_offset, record_length(target)?)
            }
            None => (reference.offset, reference.length as usize),
        };
        match self.bytes_at(&reference.segment, offset)? {
            (bytes, true) => {
                // One copy of the record; the message's fields are slices of it.
                decode_owned(Bytes::copy_from_slice(bytes.get(..length)?), seed)
            }
            (_, false) => read_mapped(&reference.segment, offset as usize, offset as usize + length),
        }
    }

    /// The bytes of `segment` from `offset` on: from this turn's unwritten records when they
    /// hold that offset (true), else from the map (false).
    fn bytes_at<'a>(&'a self, segment: &'a Arc<Segment>, offset: u32) -> Option<(&'a [u8], bool)> {
        for stream in [&self.publishes, &self.copies] {
            if stream.holds(segment) && u64::from(offset) >= stream.written_offset {
                let local = usize::try_from(u64::from(offset) - stream.written_offset).ok()?;
                return Some((stream.pending.get(local..)?, true));
            }
        }
        Some((segment.bytes().get(offset as usize..)?, false))
    }
}

/// The link a record is, if it is a whole, checksummed link record.
fn read_link(bytes: &[u8], seed: u32) -> Option<Link> {
    // The kind byte first: a message record is not checksummed twice on each read.
    if bytes.get(RECORD_HEADER_BYTES) != Some(&KIND_LINK) {
        return None;
    }
    match read_seeded(bytes, 0, seed) {
        ReadOutcome::Record { kind: KIND_LINK, payload, .. } => decode_link(payload),
        _ => None,
    }
}

/// The record holding the content of the record at `[offset, offset + length)` of a segment's
/// bytes, and where it starts: itself, or the target of a link (earlier in the segment).
fn content_record(segment_bytes: &[u8], offset: usize, length: usize, seed: u32) -> Option<(usize, &[u8])> {
    let record = segment_bytes.get(offset..offset + length)?;
    let Some(link) = read_link(record, seed) else { return Some((offset, record)) };
    let target = link.target_offset as usize;
    if target >= offset {
        return None;
    }
    let target_bytes = segment_bytes.get(target..)?;
    Some((target, target_bytes.get(..record_length(target_bytes)?)?))
}

/// Scans `[from, end)` of a segment for the first record of `kind` (message, copy or link) of
/// `queue_sequence`.
pub fn find_record(segment: &Segment, from: u32, end: u32, queue_sequence: u64, kind: u8) -> Option<FoundRecord> {
    let bytes = segment.bytes().get(..end as usize)?;
    let mut offset = from as usize;
    while offset < end as usize {
        let ReadOutcome::Record { kind: found, payload, next } = read_seeded(bytes, offset, segment.seed()) else {
            return None;
        };
        if found == kind {
            let (queue, sequence) = record::queue_position(kind, payload)?;
            if queue == queue_sequence {
                let length = next - offset;
                let content_bytes = record::content_bytes(segment.bytes(), kind, payload, length)?;
                let (offset, length) = (offset as u32, length as u32);
                return Some(FoundRecord { kind, offset, length, content_bytes, sequence });
            }
        }
        offset = next;
    }
    None
}

/// Decodes a record from a segment's map without copying: the message's fields are slices
/// that keep the segment alive. A link is followed to its target.
pub fn read_mapped(segment: &Arc<Segment>, start: usize, end: usize) -> Option<Arc<Message>> {
    let (start, bytes) = content_record(segment.bytes(), start, end.checked_sub(start)?, segment.seed())?;
    // One owner for the whole record, its fields slices of it: one allocation and one change
    // of the segment's shared count per message, not one per field.
    let record = Bytes::from_owner(SegmentSlice { segment: segment.clone(), start, end: start + bytes.len() });
    decode_owned(record, segment.seed())
}

/// The message in a whole record, its fields slices of `record`.
fn decode_owned(record: Bytes, seed: u32) -> Option<Arc<Message>> {
    let ReadOutcome::Record { kind, payload, .. } = read_seeded(&record, 0, seed) else { return None };
    let (message, message_start, _) = record::message_payload(kind, payload)?;
    let (_, layout) = decode_message(message)?;
    // Layout ranges are relative to the message payload, which starts after the header, the
    // kind and (for a copy) its origin.
    let before = RECORD_HEADER_BYTES + 1 + message_start;
    let slice = |range: (usize, usize)| record.slice(range.0 + before..range.1 + before);
    Some(Arc::new(Message {
        exchange: slice(layout.exchange),
        routing_key: slice(layout.routing_key),
        properties: slice(layout.properties),
        body: slice(layout.body),
    }))
}

struct SegmentSlice {
    segment: Arc<Segment>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for SegmentSlice {
    fn as_ref(&self) -> &[u8] {
        self.segment.bytes().get(self.start..self.end).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
