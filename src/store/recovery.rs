//! Recovery of stored messages at start: every segment of every shard directory is read up to
//! its first damaged record, its marks applied, and what is still queued is handed back per
//! queue, in queue order.
//!
//! Damage is reported with the segment, offset and reason, and never stops the broker: what
//! was before the damage is kept. Segments with no live message are deleted.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{decode_marks, read_record, Mark, ReadOutcome, KIND_MESSAGE};
use super::segment::{parse_segment_name, Segment};
use super::StoredRef;
use crate::broker::queue::Payload;
use crate::broker::ready::{Entry, ReadyList};

/// A queue's recovered messages: in queue order, as runs where possible, and the sequence
/// number its next message gets.
#[derive(Default)]
pub struct RecoveredQueue {
    pub ready: ReadyList,
    pub next_sequence: u64,
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
}

pub fn shard_dir(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join("messages").join(format!("shard-{shard}"))
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
        let mut numbers: Vec<u64> = std::fs::read_dir(entry.path())?
            .filter_map(|file| file.ok())
            .filter_map(|file| parse_segment_name(&file.file_name().to_string_lossy()))
            .collect();
        numbers.sort_unstable();
        recovered.next_segment_numbers.insert(index, numbers.last().map_or(1, |last| last + 1));
        for number in numbers {
            recover_segment(&entry.path(), number, live_queues, &mut recovered)?;
        }
    }
    Ok(recovered)
}

fn recover_segment(dir: &Path, number: u64, live_queues: &HashSet<u64>, recovered: &mut Recovered) -> io::Result<()> {
    let segment = Arc::new(Segment::open_sealed(dir, number)?);
    let marks_bytes = segment.read_marks()?;
    let (marks, valid_bytes) = decode_marks(&marks_bytes);
    if valid_bytes < marks_bytes.len() {
        crate::warn!(
            "recovery: {}: marks damaged at byte {valid_bytes} of {}; later marks dropped",
            segment_label(dir, number),
            marks_bytes.len()
        );
        segment.truncate_marks(valid_bytes as u64)?;
    }
    let mut removed: HashSet<(u64, u64)> = HashSet::new();
    let mut delivered: HashSet<(u64, u64)> = HashSet::new();
    for (queue, sequence, mark) in marks {
        match mark {
            Mark::Removed => removed.insert((queue, sequence)),
            Mark::Delivered => delivered.insert((queue, sequence)),
        };
    }
    let mut offset = 0usize;
    let scanned = loop {
        match read_record(segment.bytes(), offset) {
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
                let length = next - offset;
                if kind == KIND_MESSAGE {
                    // The checksum already vouched for the record; only its queue and position
                    // are needed now (the rest is decoded when the message is delivered).
                    if let Some(record) = record_position(payload) {
                        let key = (record.queue_sequence, record.sequence);
                        if live_queues.contains(&record.queue_sequence) && !removed.contains(&key) {
                            let reference =
                                StoredRef { segment: segment.clone(), offset: offset as u32, length: length as u32 };
                            let queue = recovered.queues.entry(record.queue_sequence).or_default();
                            if delivered.contains(&key) {
                                let payload = Payload::Stored { reference, cached: None };
                                queue.ready.push_back(Entry {
                                    sequence: record.sequence,
                                    payload,
                                    redelivered: true,
                                    expires_at_ms: None,
                                    priority: 0,
                                    // Not stored: a restart starts every count again.
                                    delivery_count: 0,
                                });
                            } else {
                                queue.ready.push_stored(record.sequence, reference);
                            }
                            queue.next_sequence = queue.next_sequence.max(record.sequence + 1);
                            recovered.messages += 1;
                        }
                    }
                }
                offset = next;
            }
        }
    };
    // The scan touched every page of the map; they stay in the page cache but leave this
    // process's resident set until a delivery reads them again.
    segment.release_pages(scanned);
    Ok(())
}

struct RecordPosition {
    queue_sequence: u64,
    sequence: u64,
}

fn record_position(payload: &[u8]) -> Option<RecordPosition> {
    let queue_sequence = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let sequence = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some(RecordPosition { queue_sequence, sequence })
}

fn segment_label(dir: &Path, number: u64) -> String {
    super::segment::segment_path(dir, number).display().to_string()
}
