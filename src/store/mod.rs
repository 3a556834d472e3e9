//! Durable storage: each shard's append-only message log, the definitions log, recovery,
//! and the data-directory lock.
//!
//! A shard appends the persistent messages of its durable queues to its own log during a
//! loop turn, writes them at the end of the turn, then one fdatasync covers every queue of
//! the shard (group commit, `commit.rs`); the confirms of that batch are released only after
//! it. Queued messages are read back through the segment's memory map, so the heap holds
//! only a small reference per queued message. The store knows nothing of AMQP semantics.

pub mod commit;
pub mod definitions_log;
pub mod lock;
pub mod record;
pub mod recovery;
pub mod segment;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::broker::message::Message;
use crate::shard::messages::ConfirmTo;
use record::{decode_message, encode_mark, encode_message, read_record, Mark, MessageRecord, ReadOutcome};
use segment::Segment;

/// Where a stored message lives: its segment (kept alive by this reference) and its record.
#[derive(Clone, Debug)]
pub struct StoredRef {
    pub segment: Arc<Segment>,
    pub offset: u32,
    pub length: u32,
}

#[derive(Debug)]
pub enum StoreError {
    Poisoned(String),
    Io { path: PathBuf, source: io::Error },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Poisoned(reason) => write!(f, "message store unavailable after an I/O error: {reason}"),
            StoreError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {}

pub struct Store {
    dir: PathBuf,
    segment_bytes: u64,
    active: Option<Arc<Segment>>,
    /// Next append position in the active segment.
    active_offset: u64,
    /// Bytes of the active segment already written to the file.
    written_offset: u64,
    /// Records appended this turn, to be written at `written_offset`.
    pending: Vec<u8>,
    marks: HashMap<u64, (Arc<Segment>, Vec<u8>)>,
    next_segment_number: u64,
    /// Written but not yet fdatasync'ed, with the confirms that wait for it.
    unsynced: Vec<Arc<Segment>>,
    confirms_unwritten: Vec<ConfirmTo>,
    confirms_unsynced: Vec<ConfirmTo>,
    poisoned: Option<String>,
    /// Test hook: fail every write once this many bytes were written.
    fail_after_bytes: Option<u64>,
    written_total_bytes: u64,
}

impl Store {
    pub fn open(
        dir: &Path,
        next_segment_number: u64,
        segment_bytes: u64,
        fail_after_bytes: Option<u64>,
    ) -> io::Result<Store> {
        std::fs::create_dir_all(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            segment_bytes,
            active: None,
            active_offset: 0,
            written_offset: 0,
            pending: Vec::new(),
            marks: HashMap::new(),
            next_segment_number,
            unsynced: Vec::new(),
            confirms_unwritten: Vec::new(),
            confirms_unsynced: Vec::new(),
            poisoned: None,
            fail_after_bytes,
            written_total_bytes: 0,
        })
    }

    pub fn active_number(&self) -> Option<u64> {
        self.active.as_ref().map(|segment| segment.number)
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

    /// Appends a message record; it reaches the file at the end of the turn.
    pub fn append(&mut self, record: &MessageRecord<'_>) -> Result<StoredRef, StoreError> {
        if let Some(reason) = &self.poisoned {
            return Err(StoreError::Poisoned(reason.clone()));
        }
        let length = record.encoded_bytes() as u64;
        let fits =
            self.active.is_some() && self.active_offset + length <= self.active.as_ref().map_or(0, |s| s.capacity());
        if !fits {
            self.rotate(length)?;
        }
        let segment = self.active.clone().ok_or_else(|| StoreError::Poisoned("no active segment".into()))?;
        let offset = self.active_offset;
        encode_message(&mut self.pending, record);
        self.active_offset += length;
        Ok(StoredRef { segment, offset: offset as u32, length: length as u32 })
    }

    /// Seals the active segment (after writing what it holds) and starts a new one.
    fn rotate(&mut self, record_bytes: u64) -> Result<(), StoreError> {
        self.write_pending()?;
        if let Some(old) = self.active.take() {
            old.seal();
        }
        let capacity = self.segment_bytes.max(record_bytes + 8);
        let number = self.next_segment_number;
        self.next_segment_number += 1;
        match Segment::create(&self.dir, number, capacity) {
            Ok(segment) => {
                self.active = Some(Arc::new(segment));
                self.active_offset = 0;
                self.written_offset = 0;
                Ok(())
            }
            Err(error) => Err(self.poison(format!("cannot create segment {number}: {error}"))),
        }
    }

    /// The confirm of a persistent publish waits for the fdatasync covering its record.
    pub fn confirm_after_sync(&mut self, confirm: ConfirmTo) {
        self.confirms_unwritten.push(confirm);
    }

    pub fn mark(&mut self, reference: &StoredRef, queue_sequence: u64, sequence: u64, mark: Mark) {
        let entry =
            self.marks.entry(reference.segment.number).or_insert_with(|| (reference.segment.clone(), Vec::new()));
        encode_mark(&mut entry.1, queue_sequence, sequence, mark);
    }

    /// Writes this turn's records and marks (no fsync). Returns true if confirms now wait
    /// for a sync.
    pub fn write_pending(&mut self) -> Result<bool, StoreError> {
        for (_, (segment, records)) in self.marks.drain() {
            if let Err(error) = segment.append_marks(&records) {
                crate::warn!("segment {}: cannot write marks: {error}", segment.number);
            }
        }
        if self.poisoned.is_some() {
            return Err(self.refuse_waiting());
        }
        if !self.pending.is_empty() {
            let Some(segment) = self.active.clone() else {
                let _ = self.poison("records without a segment".into());
                return Err(self.refuse_waiting());
            };
            if let Err(error) = self.write_at(&segment) {
                let _ = self.poison(format!("write to segment {} failed: {error}", segment.number));
                return Err(self.refuse_waiting());
            }
            self.written_offset += self.pending.len() as u64;
            self.pending.clear();
            if !self.unsynced.iter().any(|unsynced| Arc::ptr_eq(unsynced, &segment)) {
                self.unsynced.push(segment);
            }
        }
        self.confirms_unsynced.append(&mut self.confirms_unwritten);
        Ok(!self.confirms_unsynced.is_empty() || !self.unsynced.is_empty())
    }

    /// A poisoned store takes nothing more: unwritten records are dropped and every confirm
    /// waiting for a write or a sync goes to the sync batch, which the caller nacks. Nothing
    /// is retried.
    fn refuse_waiting(&mut self) -> StoreError {
        self.pending.clear();
        self.confirms_unsynced.append(&mut self.confirms_unwritten);
        StoreError::Poisoned(self.poisoned.clone().unwrap_or_default())
    }

    fn write_at(&mut self, segment: &Segment) -> io::Result<()> {
        if let Some(limit) = self.fail_after_bytes {
            if self.written_total_bytes + self.pending.len() as u64 > limit {
                return Err(io::Error::other("injected write failure"));
            }
        }
        segment.file.write_all_at(&self.pending, self.written_offset)?;
        self.written_total_bytes += self.pending.len() as u64;
        Ok(())
    }

    /// Writes this turn's records now if `segment` is the active one and `end` lies beyond
    /// what is written (a reader needs them in the file).
    pub fn ensure_written(&mut self, segment: &Arc<Segment>, end: u32) {
        let is_active = self.active.as_ref().is_some_and(|active| Arc::ptr_eq(active, segment));
        if is_active && u64::from(end) > self.written_offset {
            // The commit task is woken at the end of the turn, as for any write; a failure has
            // poisoned the store, and that end-of-turn write refuses the waiting confirms.
            let _ = self.write_pending();
        }
    }

    /// Takes what the next fdatasync must cover and the confirms it releases.
    pub fn take_sync_batch(&mut self) -> (Vec<Arc<Segment>>, Vec<ConfirmTo>) {
        (std::mem::take(&mut self.unsynced), std::mem::take(&mut self.confirms_unsynced))
    }

    /// Reads a stored message: from this turn's unwritten records or the segment's map.
    pub fn read(&self, reference: &StoredRef) -> Option<Arc<Message>> {
        let start = reference.offset as usize;
        let end = start + reference.length as usize;
        let is_active = self.active.as_ref().is_some_and(|active| Arc::ptr_eq(active, &reference.segment));
        if is_active && reference.offset as u64 >= self.written_offset {
            let local = start - self.written_offset as usize;
            let bytes = self.pending.get(local..local + reference.length as usize)?;
            return decode_owned(bytes, |range| Bytes::copy_from_slice(&bytes[range.0..range.1]));
        }
        read_mapped(&reference.segment, start, end)
    }
}

/// Scans `[from, end)` of a segment for the first record of `queue_sequence`:
/// (offset, length, its sequence in the queue).
pub fn find_record(segment: &Segment, from: u32, end: u32, queue_sequence: u64) -> Option<(u32, u32, u64)> {
    let bytes = segment.bytes().get(..end as usize)?;
    let mut offset = from as usize;
    while offset < end as usize {
        let ReadOutcome::Record { kind, payload, next } = read_record(bytes, offset) else { return None };
        if kind == record::KIND_MESSAGE {
            let queue = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
            if queue == queue_sequence {
                let sequence = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
                return Some((offset as u32, (next - offset) as u32, sequence));
            }
        }
        offset = next;
    }
    None
}

/// Decodes a record from a segment's map without copying: the message's fields are slices
/// that keep the segment alive.
pub fn read_mapped(segment: &Arc<Segment>, start: usize, end: usize) -> Option<Arc<Message>> {
    let bytes = segment.bytes().get(start..end)?;
    decode_owned(bytes, |range| {
        Bytes::from_owner(SegmentSlice { segment: segment.clone(), start: start + range.0, end: start + range.1 })
    })
}

fn decode_owned(bytes: &[u8], slice: impl Fn((usize, usize)) -> Bytes) -> Option<Arc<Message>> {
    let ReadOutcome::Record { payload, .. } = read_record(bytes, 0) else { return None };
    let (_, layout) = decode_message(payload)?;
    // Layout ranges are relative to the payload, which starts after the header and kind.
    let shift =
        |range: (usize, usize)| (range.0 + record::RECORD_HEADER_BYTES + 1, range.1 + record::RECORD_HEADER_BYTES + 1);
    Some(Arc::new(Message {
        exchange: slice(shift(layout.exchange)),
        routing_key: slice(shift(layout.routing_key)),
        properties: slice(shift(layout.properties)),
        body: slice(shift(layout.body)),
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
