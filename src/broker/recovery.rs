//! Recovery of stored messages at start: every segment of every shard directory is read up to
//! its first damaged record, its marks applied, and what is still queued is handed back per
//! queue, in queue order.
//!
//! Damage is reported with the segment, offset and reason, and never stops the broker: what
//! was before the damage is kept. Segments with no live message are deleted.
//!
//! Compaction copies (`KIND_COPY`) name the record they were copied from. A message is loaded
//! from exactly one place: the copy when its origin is gone (the segment deleted, or damaged
//! before that record) or carries a `Moved` mark (written once the copy was synced); the
//! original otherwise (the crash came before the copy was known to be on disk, or the mark was
//! lost with the page cache).
//!
//! Paged records (`KIND_PAGED`: transient messages a long queue kept on disk instead of in
//! memory) are dropped: like every transient message, they do not survive a restart.
//!
//! Hand-over records (`KIND_HANDOVER`, written before a held delayed message's copy) are
//! collected across every directory and filed under the held message (`handovers.rs`).
//!
//! Link records (`KIND_LINK`, a fanout's message stored once for several queues) load like
//! message records, under the same marks: the record they name is earlier in their segment,
//! so it was read if they were, and stays on disk with the segment whatever its own queue did
//! with it.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::broker::handovers::{HandedOver, ProofReader, Proofs};
use crate::broker::queue::Payload;
use crate::broker::ready::{Entry, ReadyList};
use crate::clock;
use crate::store::record::{
    decode_marks, message_payload, read_seeded, record_place, Mark, Origin, ReadOutcome, KIND_COPY, KIND_LINK,
    KIND_PAGED,
};
use crate::store::segment::{marks_path, parse_segment_name, Segment};
use crate::store::StoredRef;

/// A queue's recovered messages: in queue order, as runs where possible, and the sequence
/// number its next message gets.
#[derive(Default)]
pub struct RecoveredQueue {
    pub ready: ReadyList,
    /// Compaction copies, in log order until `recover` merges them into `ready`.
    copies: ReadyList,
    /// Messages of a priority level above 0 (single entries, any order).
    pub prioritized: Vec<Entry>,
    /// Some message has a deadline: the queue's expiry sweep must look at it.
    pub has_deadlines: bool,
    pub next_sequence: u64,
    /// Held delayed messages only: sequence → the queues that already hold a copy of it.
    pub handed_over: HashMap<u64, Vec<HandedOver>>,
}

impl RecoveredQueue {
    /// Adds a message that cannot be part of a run (delivered before, or with a deadline or a
    /// priority level).
    fn push_single(
        &mut self,
        copy: bool,
        position: &RecordPosition,
        reference: StoredRef,
        redelivered: bool,
        clock: &clock::WallClock,
    ) {
        let expires_at_ms = (position.expires_at_unix_ms != 0).then(|| clock.deadline_ms(position.expires_at_unix_ms));
        self.has_deadlines |= expires_at_ms.is_some();
        let entry = Entry {
            sequence: position.sequence,
            payload: Payload::Stored { reference, cached: None },
            redelivered,
            expires_at_ms,
            priority: position.priority,
            // Not stored: a restart starts every count again.
            delivery_count: 0,
        };
        match (position.priority, copy) {
            (0, true) => self.copies.push_back(entry),
            (0, false) => self.ready.push_back(entry),
            _ => self.prioritized.push(entry),
        }
    }
}

/// A queue to re-create after a restart, with its stored messages.
pub type RestoredQueue = (std::sync::Arc<crate::broker::snapshot::QueueDef>, RecoveredQueue);

#[derive(Default)]
pub struct Recovered {
    /// Queue sequence → its stored messages.
    pub queues: HashMap<u64, RecoveredQueue>,
    /// Directory index → the next segment number to use there.
    pub next_segment_numbers: HashMap<usize, u64>,
    pub messages: u64,
    pub damaged_segments: u64,
    /// Copies left unused because their original was still in place.
    pub copies_ignored: u64,
    /// Hand-over proofs found, and the held messages loaded, until `recover` files them.
    proofs: Proofs,
}

pub fn shard_dir(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join("messages").join(format!("shard-{shard}"))
}

/// What recovery knows about one shard directory while it reads it.
struct DirectoryState {
    /// Segment numbers on disk when recovery started.
    existing: HashSet<u64>,
    /// (segment, queue, sequence) of every record with a `Moved` mark.
    moved: HashSet<(u64, u64, u64)>,
    /// Where reading each segment stopped: records before it were read.
    read_up_to: HashMap<u64, usize>,
    /// Copies whose origin lies in a segment not read yet.
    deferred: Vec<Deferred>,
    /// Read once for every stored deadline of the directory.
    clock: clock::WallClock,
}

struct Deferred {
    position: RecordPosition,
    reference: StoredRef,
    origin: Origin,
    delivered: bool,
}

impl DirectoryState {
    /// Whether the original of a copy was read (and so holds the message): None while its
    /// segment is still to be read.
    fn original_holds(&self, origin: Origin, queue_sequence: u64, sequence: u64) -> Option<bool> {
        if !self.existing.contains(&origin.segment) || self.moved.contains(&(origin.segment, queue_sequence, sequence))
        {
            return Some(false);
        }
        self.read_up_to.get(&origin.segment).map(|end| (origin.offset as usize) < *end)
    }
}

/// Reads every shard directory under `data_dir/messages`. Messages of queues not in
/// `live_queues` (deleted, or not durable) are dropped.
pub fn recover(data_dir: &Path, live_queues: &HashSet<u64>) -> io::Result<Recovered> {
    let mut recovered = Recovered::default();
    let root = data_dir.join("messages");
    let Ok(entries) = std::fs::read_dir(&root) else { return Ok(recovered) };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(index) = name.strip_prefix("shard-").and_then(|index| index.parse::<usize>().ok()) else { continue };
        // A zero-filled spare segment file an earlier run left (its shard's store may not open
        // again, after a restart with fewer shards).
        crate::store::spare::Spare::delete_leftover(&entry.path())?;
        let mut numbers: Vec<u64> = std::fs::read_dir(entry.path())?
            .filter_map(|file| file.ok())
            .filter_map(|file| parse_segment_name(&file.file_name().to_string_lossy()))
            .collect();
        numbers.sort_unstable();
        recovered.next_segment_numbers.insert(index, numbers.last().map_or(1, |last| last + 1));
        recover_directory(&entry.path(), &numbers, live_queues, &mut recovered)?;
    }
    for queue in recovered.queues.values_mut() {
        let copies = std::mem::take(&mut queue.copies);
        queue.ready.merge(copies);
    }
    std::mem::take(&mut recovered.proofs).file(&mut recovered.queues);
    Ok(recovered)
}

fn recover_directory(
    dir: &Path,
    numbers: &[u64],
    live_queues: &HashSet<u64>,
    recovered: &mut Recovered,
) -> io::Result<()> {
    let mut state = DirectoryState {
        existing: numbers.iter().copied().collect(),
        moved: HashSet::new(),
        read_up_to: HashMap::new(),
        deferred: Vec::new(),
        clock: clock::WallClock::read(),
    };
    // The Moved marks first: a copy may come before its origin in the log (the copies stream
    // has segments of its own, opened before later publish segments).
    for &number in numbers {
        let bytes = std::fs::read(marks_path(dir, number)).unwrap_or_default();
        let moved = decode_marks(&bytes).0.into_iter().filter(|(_, _, mark)| *mark == Mark::Moved);
        state.moved.extend(moved.map(|(queue, sequence, _)| (number, queue, sequence)));
    }
    for &number in numbers {
        recover_segment(dir, number, live_queues, &mut state, recovered)?;
    }
    for deferred in std::mem::take(&mut state.deferred) {
        let position = &deferred.position;
        let holds = state.original_holds(deferred.origin, position.queue_sequence, position.sequence);
        if holds == Some(false) {
            let queue = recovered.queues.entry(position.queue_sequence).or_default();
            queue.push_single(true, position, deferred.reference, deferred.delivered, &state.clock);
            queue.next_sequence = queue.next_sequence.max(position.sequence + 1);
            recovered.messages += 1;
        } else {
            recovered.copies_ignored += 1;
        }
    }
    Ok(())
}

/// The marks of one segment that decide what its records are.
struct SegmentMarks {
    removed: HashSet<(u64, u64)>,
    delivered: HashSet<(u64, u64)>,
}

fn read_segment_marks(dir: &Path, segment: &Segment) -> io::Result<SegmentMarks> {
    let marks_bytes = segment.read_marks()?;
    let (marks, valid_bytes) = decode_marks(&marks_bytes);
    if valid_bytes < marks_bytes.len() {
        crate::warn!(
            "recovery: {}: marks damaged at byte {valid_bytes} of {}; later marks dropped",
            segment_label(dir, segment.number),
            marks_bytes.len()
        );
        segment.truncate_marks(valid_bytes as u64)?;
    }
    let mut removed = HashSet::new();
    let mut delivered = HashSet::new();
    for (queue, sequence, mark) in marks {
        match mark {
            Mark::Removed => removed.insert((queue, sequence)),
            Mark::Delivered => delivered.insert((queue, sequence)),
            Mark::Moved => false,
        };
    }
    Ok(SegmentMarks { removed, delivered })
}

fn recover_segment(
    dir: &Path,
    number: u64,
    live_queues: &HashSet<u64>,
    state: &mut DirectoryState,
    recovered: &mut Recovered,
) -> io::Result<()> {
    let segment = Arc::new(Segment::open_sealed(dir, number)?);
    let marks = read_segment_marks(dir, &segment)?;
    let mut proofs = ProofReader::default();
    let mut offset = 0usize;
    let scanned = loop {
        match read_seeded(segment.bytes(), offset, segment.seed()) {
            ReadOutcome::End => break offset,
            ReadOutcome::Damaged { reason } => {
                recovered.damaged_segments += 1;
                crate::warn!(
                    "recovery: {}: {reason} at offset {offset}; the records before it are kept, the rest of this segment is dropped",
                    segment_label(dir, number)
                );
                break offset;
            }
            ReadOutcome::Record { kind, payload, next } => {
                if let Some(handover) = proofs.read(kind, payload) {
                    recovered.proofs.proven(handover, &segment);
                }
                // The checksum already vouched for the record; only its queue and position
                // are needed now (the rest is decoded when the message is delivered).
                if let Some(record) = record_position(kind, payload) {
                    if live_queues.contains(&record.queue_sequence) {
                        let content_bytes =
                            crate::store::record::content_bytes(segment.bytes(), kind, payload, next - offset);
                        if let Some(content_bytes) = content_bytes {
                            let reference = StoredRef {
                                segment: segment.clone(),
                                offset: offset as u32,
                                length: (next - offset) as u32,
                                content_bytes,
                                kind,
                            };
                            load_record(record, reference, &marks, state, recovered);
                        }
                    }
                }
                offset = next;
            }
        }
    };
    state.read_up_to.insert(number, scanned);
    // The scan touched every page of the map; they stay in the page cache but leave this
    // process's resident set until a delivery reads them again.
    segment.release_pages(scanned);
    Ok(())
}

/// Adds one record of a live queue to its queue, unless another place holds the message.
fn load_record(
    record: RecordPosition,
    reference: StoredRef,
    marks: &SegmentMarks,
    state: &mut DirectoryState,
    recovered: &mut Recovered,
) {
    let number = reference.segment.number;
    let key = (record.queue_sequence, record.sequence);
    let queue = recovered.queues.entry(record.queue_sequence).or_default();
    let list = if reference.kind == KIND_COPY { &mut queue.copies } else { &mut queue.ready };
    let gone = marks.removed.contains(&key) || state.moved.contains(&(number, key.0, key.1));
    let here = match record.origin {
        _ if gone => false,
        None => true,
        Some(origin) => match state.original_holds(origin, key.0, key.1) {
            Some(original_holds) => {
                recovered.copies_ignored += u64::from(original_holds);
                !original_holds
            }
            None => {
                let delivered = marks.delivered.contains(&key);
                list.end_run();
                state.deferred.push(Deferred { position: record, reference, origin, delivered });
                return;
            }
        },
    };
    if !here {
        // A run extended past this record would read it.
        list.end_run();
        return;
    }
    let delivered = marks.delivered.contains(&key);
    if delivered || record.expires_at_unix_ms != 0 || record.priority != 0 {
        let copy = reference.kind == KIND_COPY;
        queue.push_single(copy, &record, reference, delivered, &state.clock);
    } else {
        list.push_stored(record.sequence, reference);
    }
    queue.next_sequence = queue.next_sequence.max(record.sequence + 1);
    recovered.messages += 1;
    recovered.proofs.loaded(key);
}

struct RecordPosition {
    queue_sequence: u64,
    sequence: u64,
    expires_at_unix_ms: u64,
    priority: u8,
    origin: Option<Origin>,
}

fn record_position(kind: u8, payload: &[u8]) -> Option<RecordPosition> {
    // A paged message did not outlive the process that wrote it.
    if kind == KIND_PAGED {
        return None;
    }
    let place = record_place(kind, payload)?;
    let origin = match kind {
        KIND_LINK => None,
        _ => message_payload(kind, payload)?.2,
    };
    Some(RecordPosition {
        queue_sequence: place.queue_sequence,
        sequence: place.sequence,
        expires_at_unix_ms: place.expires_at_unix_ms,
        priority: place.priority,
        origin,
    })
}

fn segment_label(dir: &Path, number: u64) -> String {
    crate::store::segment::segment_path(dir, number).display().to_string()
}

#[cfg(test)]
#[path = "recovery_tests.rs"]
mod tests;
