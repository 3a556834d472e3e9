//! Unit tests of recovery: what a restart rebuilds from the segments, the marks and damaged or
//! reused files.

use super::*;
use crate::broker::ready::RecordReader;
use crate::store::record::KIND_MESSAGE;
use crate::store::Store;

const QUEUE: u64 = 1;

/// Reads records straight from the files (everything is written).
struct Files;

impl RecordReader for Files {
    fn next_record(
        &self,
        segment: &Arc<Segment>,
        from: u32,
        end: u32,
        queue: u64,
        kind: u8,
    ) -> Option<crate::store::FoundRecord> {
        crate::store::find_record(segment, from, end, queue, kind)
    }
}

/// What a recovery found of the test queue.
struct Found {
    /// (sequence, segment number) of each message, in queue order.
    messages: Vec<(u64, u64)>,
    copies_ignored: u64,
    damaged_segments: u64,
    /// The messages themselves: a segment is deleted once none of its messages is held.
    _held: Vec<Entry>,
}

fn recovered_messages(data_dir: &Path) -> Found {
    let live: HashSet<u64> = [QUEUE].into();
    let mut recovered = recover(data_dir, &live).expect("recover");
    let mut queue = recovered.queues.remove(&QUEUE).unwrap_or_default();
    let held: Vec<Entry> = std::iter::from_fn(|| queue.ready.pop_front(&Files, QUEUE)).collect();
    let messages =
        held.iter().map(|entry| (entry.sequence, entry.payload.stored().expect("stored").segment.number)).collect();
    Found {
        messages,
        copies_ignored: recovered.copies_ignored,
        damaged_segments: recovered.damaged_segments,
        _held: held,
    }
}

/// Appends message `sequence` of the test queue, `size` bytes of one digit, and writes it.
fn append_written(store: &mut Store, sequence: u64, size: usize) -> StoredRef {
    let body = vec![b'0' + (sequence % 10) as u8; size];
    let record = crate::store::record::MessageRecord::plain(QUEUE, sequence, &body);
    let stored = store.append(&record).expect("append");
    store.write_pending().expect("write");
    stored
}

/// Fills segment 1 with 1,000-byte messages, numbered on from `sequence`: returns them and
/// the first message of segment 2.
fn fill_segment_1(store: &mut Store, sequence: &mut u64) -> (Vec<StoredRef>, StoredRef) {
    let mut first = Vec::new();
    loop {
        *sequence += 1;
        let stored = append_written(store, *sequence, 1000);
        if stored.segment.number == 2 {
            return (first, stored);
        }
        first.push(stored);
    }
}

/// Every message of `held` is gone (acked) and the store's writes are synced: a sealed
/// segment they alone held is deleted (or its file kept for reuse).
fn release_synced(store: &mut Store, held: Vec<StoredRef>) {
    drop(held);
    drop(store.take_sync_batch());
    store.sync_finished();
}

/// Once a quarter of a segment is written, the next one is made ahead of use (zeros,
/// `store::spare`) and the rotation takes it: messages in both segments recover, and a
/// spare left in a shard directory is deleted by the recovery.
#[test]
fn messages_in_a_segment_made_ahead_of_use_recover() {
    let data_dir = std::env::temp_dir().join(format!("spatemq-recovery-spare-{}", std::process::id()));
    let dir = shard_dir(&data_dir, 0);
    let segment_bytes = crate::limits::SEGMENT_BYTES_MIN;
    let mut store = Store::open(&dir, 1, segment_bytes, None).expect("open");
    let spare = crate::store::spare::spare_path(&dir);
    let mut sequence = 0u64;
    // The queue's hold on its messages: a sealed segment nothing holds is deleted.
    let mut held = Vec::new();
    // Appends and writes the next message; returns its segment's number.
    let mut append = |store: &mut Store, sequence: &mut u64| {
        *sequence += 1;
        let stored = append_written(store, *sequence, 1000);
        let number = stored.segment.number;
        held.push(stored);
        number
    };
    // A third of the first segment: the spare is asked for.
    while sequence * 1000 <= segment_bytes / 3 {
        assert_eq!(append(&mut store, &mut sequence), 1);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !store.spare_ready() {
        assert!(std::time::Instant::now() < deadline, "no spare made in 10 s");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(spare.exists());
    while append(&mut store, &mut sequence) == 1 {}
    assert!(!spare.exists(), "the second segment is the spare, renamed");
    let second = crate::store::segment::segment_path(&dir, 2);
    assert_eq!(std::fs::metadata(&second).expect("segment 2").len(), segment_bytes);
    let written = sequence;
    drop(store);
    std::fs::write(&spare, b"a spare left by a crash").expect("a leftover spare");
    let found = recovered_messages(&data_dir);
    let sequences: Vec<u64> = found.messages.iter().map(|(sequence, _)| *sequence).collect();
    assert_eq!(sequences, (1..=written).collect::<Vec<_>>());
    assert!(found.messages.iter().any(|(_, segment)| *segment == 2));
    assert!(!spare.exists(), "the leftover spare is deleted");
    drop((found, held));
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A store whose segment 3 is segment 1's file reused: segment 1 filled with 1,000-byte
/// messages (all then acked), segment 2 likewise, segment 3 one 1,000-byte message and
/// three short ones. Segment 1's bytes are kept as they were before the reuse.
struct Reused {
    data_dir: PathBuf,
    dir: PathBuf,
    first_count: u64,
    /// The 1,000-byte message in segment 3.
    third: StoredRef,
    written: u64,
    segment_1_bytes: Vec<u8>,
    _held: Vec<StoredRef>,
}

fn reused(name: &str) -> Reused {
    let data_dir = std::env::temp_dir().join(format!("spatemq-recovery-{name}-{}", std::process::id()));
    let dir = shard_dir(&data_dir, 0);
    let mut store = Store::open(&dir, 1, crate::limits::SEGMENT_BYTES_MIN, None).expect("open");
    let mut sequence = 0u64;
    let (first, second) = fill_segment_1(&mut store, &mut sequence);
    let first_count = first.len() as u64;
    let segment_1_bytes = std::fs::read(crate::store::segment::segment_path(&dir, 1)).expect("segment 1");
    let recycled = dir.join("next-segment.recycled");
    assert!(!recycled.exists());
    release_synced(&mut store, first);
    assert!(recycled.exists(), "segment 1's file is kept");
    assert!(!crate::store::segment::segment_path(&dir, 1).exists());
    let mut held = vec![second];
    let third = loop {
        sequence += 1;
        let stored = append_written(&mut store, sequence, 1000);
        if stored.segment.number == 3 {
            break stored;
        }
        held.push(stored);
    };
    assert!(!recycled.exists(), "the kept file became segment 3");
    for _ in 0..3 {
        sequence += 1;
        held.push(append_written(&mut store, sequence, 10));
    }
    drop(store);
    Reused { data_dir, dir, first_count, third, written: sequence, segment_1_bytes, _held: held }
}

/// Recovery reads the new records of a reused file only: the zeros written after each
/// write end the log there, with no damage reported; a recycled file left in the
/// directory is deleted.
#[test]
fn a_reused_segment_file_recovers_its_new_records_only() {
    let reused = reused("reuse");
    let recycled = reused.dir.join("next-segment.recycled");
    std::fs::write(&recycled, b"left by a crash").expect("a leftover");
    let found = recovered_messages(&reused.data_dir);
    assert_eq!(found.damaged_segments, 0);
    assert!(!recycled.exists(), "the leftover is deleted");
    let sequences: Vec<u64> = found.messages.iter().map(|(sequence, _)| *sequence).collect();
    assert_eq!(sequences, (reused.first_count + 1..=reused.written).collect::<Vec<_>>(), "none of segment 1's");
    let last = found._held.last().expect("the last message").payload.stored().expect("stored");
    assert_eq!(last.segment.number, 3);
    let end = (last.offset + last.length) as usize;
    let message = crate::store::read_mapped(&last.segment, last.offset as usize, end).expect("read");
    assert_eq!(&message.body[..], &[b'0' + (reused.written % 10) as u8; 10][..]);
    let data_dir = reused.data_dir.clone();
    drop((found, reused));
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A crash lost the last write into a reused file: segment 1's old records are on disk
/// right where the new ones would be, one starting exactly there (the messages before are
/// the same size). They fail segment 3's checksum seed: recovery stops there and reports
/// the damage, and none of segment 1's messages comes back.
#[test]
fn old_records_of_a_reused_file_never_come_back() {
    let reused = reused("reuse-torn");
    let path = crate::store::segment::segment_path(&reused.dir, 3);
    let lost_from = (reused.third.offset + reused.third.length) as usize;
    let mut bytes = std::fs::read(&path).expect("segment 3");
    bytes[lost_from..].copy_from_slice(&reused.segment_1_bytes[lost_from..]);
    std::fs::write(&path, &bytes).expect("as after the crash");
    let old = crate::store::record::read_seeded(&bytes, lost_from, crate::store::record::segment_seed(1));
    assert!(matches!(old, ReadOutcome::Record { .. }), "an old record of segment 1 starts right there");
    let found = recovered_messages(&reused.data_dir);
    assert_eq!(found.damaged_segments, 1);
    let sequences: Vec<u64> = found.messages.iter().map(|(sequence, _)| *sequence).collect();
    let third = reused.written - 3;
    assert_eq!(sequences, (reused.first_count + 1..=third).collect::<Vec<_>>());
    let data_dir = reused.data_dir.clone();
    drop((found, reused));
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A message larger than the usual segment gets a segment of its own size, not the kept
/// file of a deleted one (which has the usual size); the kept file waits for the next
/// rotation.
#[test]
fn a_record_larger_than_a_kept_file_gets_a_segment_of_its_own() {
    let data_dir = std::env::temp_dir().join(format!("spatemq-recovery-reuse-large-{}", std::process::id()));
    let dir = shard_dir(&data_dir, 0);
    let segment_bytes = crate::limits::SEGMENT_BYTES_MIN;
    let mut store = Store::open(&dir, 1, segment_bytes, None).expect("open");
    let mut sequence = 0;
    let (first, second) = fill_segment_1(&mut store, &mut sequence);
    let second_sequence = sequence;
    release_synced(&mut store, first);
    let recycled = dir.join("next-segment.recycled");
    assert!(recycled.exists(), "segment 1's file is kept");
    sequence += 1;
    let large = append_written(&mut store, sequence, segment_bytes as usize + 1000);
    assert_eq!(large.segment.number, 3);
    assert!(large.segment.capacity() > segment_bytes);
    assert!(recycled.exists(), "the kept file is too small for it");
    let read = store.read(&large).expect("readable");
    assert_eq!(read.body.len(), segment_bytes as usize + 1000);
    sequence += 1;
    let after = append_written(&mut store, sequence, 1000);
    assert_eq!(after.segment.number, 4, "the large message's segment is full");
    assert!(!recycled.exists(), "the next usual segment is the kept file");
    drop(store);
    let found = recovered_messages(&data_dir);
    assert_eq!(found.messages, vec![(second_sequence, 2), (sequence - 1, 3), (sequence, 4)]);
    drop((found, second, large, after));
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A segment written by an earlier version (records checksummed without a seed) recovers.
#[test]
fn a_segment_of_an_earlier_version_recovers() {
    let data_dir = std::env::temp_dir().join(format!("spatemq-recovery-unseeded-{}", std::process::id()));
    let dir = shard_dir(&data_dir, 0);
    crate::store::files::create_dirs(&dir).expect("directory");
    let mut bytes = Vec::new();
    for sequence in 1..=3u64 {
        let body = format!("old {sequence}");
        let record = crate::store::record::MessageRecord::plain(QUEUE, sequence, body.as_bytes());
        crate::store::record::encode_message_as(&mut bytes, &record, KIND_MESSAGE, 0);
    }
    bytes.resize(64 * 1024, 0);
    std::fs::write(crate::store::segment::segment_path(&dir, 4), &bytes).expect("segment");
    let found = recovered_messages(&data_dir);
    assert_eq!(found.messages, vec![(1, 4), (2, 4), (3, 4)]);
    let entry = &found._held[2];
    let stored = entry.payload.stored().expect("stored");
    let end = (stored.offset + stored.length) as usize;
    let message = crate::store::read_mapped(&stored.segment, stored.offset as usize, end).expect("read");
    assert_eq!(&message.body[..], b"old 3");
    drop(found);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Six messages stored in segment `original`, then compacted (after a restart) into
/// segment `copies`: the copies are written, their sync batch taken, their Moved marks not
/// yet written. A copies segment may be older than the one it copies from (the copies
/// stream keeps its segment while publishes fill new ones).
struct Compacted {
    data_dir: PathBuf,
    retired: Vec<(Arc<Segment>, Vec<u8>)>,
    _held: (ReadyList, Store),
}

fn compacted(name: &str, original: u64, copies: u64) -> Compacted {
    let data_dir = std::env::temp_dir().join(format!("spatemq-recovery-{name}-{}", std::process::id()));
    let dir = shard_dir(&data_dir, 0);
    let mut first = Store::open(&dir, original, 1 << 20, None).expect("open");
    for sequence in 0..6u64 {
        let body = format!("message {sequence}");
        let record = crate::store::record::MessageRecord::plain(QUEUE, sequence, body.as_bytes());
        first.append(&record).expect("append");
    }
    first.write_pending().expect("write");
    drop(first);
    let live: HashSet<u64> = [QUEUE].into();
    let mut ready = recover(&data_dir, &live).expect("recover").queues.remove(&QUEUE).expect("the queue").ready;
    let victim = {
        let head = ready.pop_front(&Files, QUEUE).expect("a message");
        let victim = head.payload.stored().expect("stored").segment.clone();
        ready.insert_by_sequence(head);
        victim
    };
    let mut second = Store::open(&dir, copies, 1 << 20, None).expect("open");
    let mut budget = u64::MAX;
    let mut copy = |from: &StoredRef, _: u64| second.relocate(from).ok();
    assert!(ready.relocate(&victim, &Files, QUEUE, &mut budget, &mut copy), "everything copied");
    assert!(second.write_pending().expect("write the copies"), "the copies wait for a sync");
    let retired = second.take_sync_batch().retired;
    assert_eq!(retired.len(), 1, "segment 1 waits for the sync of its copies");
    Compacted { data_dir, retired, _held: (ready, second) }
}

fn in_segment(number: u64) -> Vec<(u64, u64)> {
    (0..6).map(|sequence| (sequence, number)).collect()
}

/// A fanout stored once for queues 1 (the records) and 2 (links to them): after queue 1
/// acked everything and queue 2 acked its second message, queue 2 recovers the others, in
/// order and with their content; a delivered mark makes one a redelivery.
#[test]
fn links_recover_like_messages_whatever_their_targets_queue_did() {
    let data_dir = std::env::temp_dir().join(format!("spatemq-recovery-links-{}", std::process::id()));
    let dir = shard_dir(&data_dir, 0);
    let mut store = Store::open(&dir, 1, 1 << 20, None).expect("open");
    for sequence in 1..=5u64 {
        let message = Arc::new(crate::codec::message::Message {
            exchange: bytes::Bytes::new(),
            routing_key: bytes::Bytes::new(),
            properties: bytes::Bytes::new(),
            body: bytes::Bytes::from(format!("fanout {sequence}")),
        });
        // Each queue's publish holds the one message, as a fanout routes it.
        let _held_by_the_second_queue = message.clone();
        for queue in [1u64, 2] {
            let record = crate::store::record::MessageRecord::plain(queue, sequence, &message.body);
            let reference = store.append_shared(&record, &message).expect("append");
            assert_eq!(reference.kind, if queue == 1 { KIND_MESSAGE } else { KIND_LINK });
            if queue == 1 || sequence == 2 {
                store.mark(&reference, queue, sequence, Mark::Removed);
            } else if sequence == 4 {
                store.mark(&reference, queue, sequence, Mark::Delivered);
            }
        }
    }
    store.write_pending().expect("write");
    drop(store);
    let live: HashSet<u64> = [1, 2].into();
    let mut recovered = recover(&data_dir, &live).expect("recover");
    assert_eq!(recovered.messages, 4);
    assert!(recovered.queues.get(&1).is_none_or(|queue| queue.ready.is_empty()));
    let mut queue = recovered.queues.remove(&2).expect("queue 2");
    assert_eq!(queue.next_sequence, 6);
    let entries: Vec<Entry> = std::iter::from_fn(|| queue.ready.pop_front(&Files, 2)).collect();
    let found: Vec<(u64, bool, String)> = entries
        .iter()
        .map(|entry| {
            let reference = entry.payload.stored().expect("stored");
            assert_eq!(reference.kind, KIND_LINK);
            let end = (reference.offset + reference.length) as usize;
            let message = crate::store::read_mapped(&reference.segment, reference.offset as usize, end).expect("read");
            (entry.sequence, entry.redelivered, String::from_utf8_lossy(&message.body).into_owned())
        })
        .collect();
    let expected = [(1, false), (3, false), (4, true), (5, false)]
        .map(|(sequence, redelivered)| (sequence, redelivered, format!("fanout {sequence}")));
    assert_eq!(found, expected);
    drop(entries);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Paged messages (transient ones a long queue kept on disk) read back like stored ones,
/// are never moved by compaction, and are gone after a restart; the stored messages
/// between them stay, in order.
#[test]
fn paged_messages_read_back_but_do_not_survive_a_restart() {
    let data_dir = std::env::temp_dir().join(format!("spatemq-recovery-paged-{}", std::process::id()));
    let dir = shard_dir(&data_dir, 0);
    let mut store = Store::open(&dir, 1, 1 << 20, None).expect("open");
    let mut paged = Vec::new();
    for sequence in 1..=6u64 {
        let body = format!("message {sequence}");
        let record = crate::store::record::MessageRecord::plain(QUEUE, sequence, body.as_bytes());
        if sequence % 2 == 0 {
            let reference = store.append_paged(&record).expect("page out");
            assert_eq!(reference.kind, crate::store::record::KIND_PAGED);
            let read = store.read(&reference).expect("read back before the write");
            assert_eq!(&read.body[..], body.as_bytes());
            paged.push(reference);
        } else {
            store.append(&record).expect("append");
        }
    }
    store.write_pending().expect("write");
    for reference in &paged {
        let end = (reference.offset + reference.length) as usize;
        let read = crate::store::read_mapped(&reference.segment, reference.offset as usize, end).expect("read");
        assert!(String::from_utf8_lossy(&read.body).starts_with("message "), "read back from the file");
    }
    let mut second = Store::open(&dir, 2, 1 << 20, None).expect("open");
    assert!(second.relocate(&paged[0]).is_err(), "compaction does not move a paged message");
    drop((store, second, paged));
    let live: HashSet<u64> = [QUEUE].into();
    let mut recovered = recover(&data_dir, &live).expect("recover");
    assert_eq!(recovered.messages, 3);
    let mut queue = recovered.queues.remove(&QUEUE).expect("the queue");
    let sequences: Vec<u64> =
        std::iter::from_fn(|| queue.ready.pop_front(&Files, QUEUE)).map(|entry| entry.sequence).collect();
    assert_eq!(sequences, [1, 3, 5]);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// (original, copies) segment numbers: copies newer, and copies older than their origin.
const LAYOUTS: [(u64, u64); 2] = [(1, 2), (5, 2)];

#[test]
fn a_crash_before_the_moved_marks_keeps_the_originals_and_drops_the_copies() {
    for (original, copies) in LAYOUTS {
        let compacted = compacted("no-marks", original, copies);
        let found = recovered_messages(&compacted.data_dir);
        assert_eq!(found.messages, in_segment(original));
        assert_eq!(found.copies_ignored, 6);
        let copies_path = crate::store::segment::segment_path(&shard_dir(&compacted.data_dir, 0), copies);
        assert!(!copies_path.exists(), "a segment of ignored copies only is deleted");
        drop(found);
        let _ = std::fs::remove_dir_all(&compacted.data_dir);
    }
}

#[test]
fn after_the_moved_marks_the_copies_hold_the_messages() {
    for (original, copies) in LAYOUTS {
        let compacted = compacted("marks", original, copies);
        for (segment, marks) in &compacted.retired {
            segment.append_marks(marks).expect("marks");
        }
        let found = recovered_messages(&compacted.data_dir);
        assert_eq!(found.messages, in_segment(copies));
        assert_eq!(found.copies_ignored, 0);
        let dir = shard_dir(&compacted.data_dir, 0);
        assert!(!crate::store::segment::segment_path(&dir, original).exists(), "the origin had nothing left");
        // Once the origin is gone, the copies hold the messages without any mark.
        let found = recovered_messages(&compacted.data_dir);
        assert_eq!(found.messages, in_segment(copies));
        drop(found);
        let _ = std::fs::remove_dir_all(&compacted.data_dir);
    }
}
