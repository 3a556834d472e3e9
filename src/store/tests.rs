//! Tests of the store's fanout links: one message record for several queues of a shard.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::record::{KIND_COPY, KIND_LINK, KIND_MESSAGE, LINK_RECORD_BYTES};
use super::{find_record, Store, StoredRef};
use crate::codec::message::Message;

fn message(body: &str) -> Arc<Message> {
    Arc::new(Message {
        exchange: Bytes::from_static(b"fan"),
        routing_key: Bytes::new(),
        properties: Bytes::from_static(&[0x10, 0, 2]),
        body: Bytes::from(body.to_owned()),
    })
}

/// Appends `message` as message `sequence` of queue `queue`, as the shard does.
fn append(store: &mut Store, queue: u64, sequence: u64, message: &Arc<Message>) -> StoredRef {
    let record = super::record::MessageRecord {
        queue_sequence: queue,
        sequence,
        expires_at_unix_ms: 0,
        priority: 0,
        exchange: &message.exchange,
        routing_key: &message.routing_key,
        properties: &message.properties,
        body: &message.body,
    };
    store.append_shared(&record, message).expect("append")
}

fn body(store: &Store, reference: &StoredRef) -> String {
    String::from_utf8_lossy(&store.read(reference).expect("readable").body).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("spatemq-store-{name}-{}", std::process::id()))
}

#[test]
fn the_same_message_for_a_second_queue_is_a_link_to_its_record() {
    let dir = temp_dir("link");
    let mut store = Store::open(&dir, 1, 1 << 20, None).expect("open");
    let fanout = message(&"f".repeat(4096));
    // As a fanout routes it: each queue's publish holds the one message.
    let _held_by_the_other_queues = [fanout.clone(), fanout.clone()];
    let first = append(&mut store, 1, 1, &fanout);
    let second = append(&mut store, 2, 1, &fanout);
    let third = append(&mut store, 3, 1, &fanout);
    assert_eq!(first.kind, KIND_MESSAGE);
    for link in [&second, &third] {
        assert_eq!((link.kind, link.length as usize), (KIND_LINK, LINK_RECORD_BYTES));
        assert_eq!(link.content_bytes, first.length, "a link counts its content's size");
        assert!(Arc::ptr_eq(&link.segment, &first.segment));
    }
    // Unwritten (this turn's buffer), then from the map.
    for reference in [&first, &second, &third] {
        assert_eq!(body(&store, reference), fanout.body);
    }
    store.write_pending().expect("write");
    for reference in [&first, &second, &third] {
        assert_eq!(body(&store, reference), fanout.body);
        let read = store.read(reference).expect("readable");
        assert_eq!((&read.exchange[..], &read.properties[..]), (&b"fan"[..], &[0x10, 0, 2][..]));
    }
    // A queue's run finds its link records, with the content's size.
    let found = find_record(&third.segment, 0, third.offset + third.length, 3, KIND_LINK).expect("the link");
    assert_eq!((found.offset, found.sequence, found.content_bytes), (third.offset, 1, first.length));
    assert_eq!(find_record(&third.segment, 0, third.offset + third.length, 3, KIND_MESSAGE), None);
    drop((first, second, third));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_link_written_after_its_target_reads_the_target_from_the_map() {
    let dir = temp_dir("split");
    let mut store = Store::open(&dir, 1, 1 << 20, None).expect("open");
    let fanout = message("split across turns");
    let _held_by_the_second_queue = fanout.clone();
    let first = append(&mut store, 1, 1, &fanout);
    store.write_pending().expect("write");
    let second = append(&mut store, 2, 7, &fanout);
    assert_eq!(second.kind, KIND_LINK);
    assert_eq!(body(&store, &second), "split across turns");
    drop((first, second));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A message that no one else holds cannot be routed to another queue after this one, so the
/// store does not remember it (an append of that same allocation again gets a full record).
#[test]
fn a_message_held_by_one_queue_alone_is_not_remembered() {
    let dir = temp_dir("alone");
    let mut store = Store::open(&dir, 1, 1 << 20, None).expect("open");
    let alone = message("one queue");
    let first = append(&mut store, 1, 1, &alone);
    let again = append(&mut store, 2, 1, &alone);
    assert_eq!((first.kind, again.kind), (KIND_MESSAGE, KIND_MESSAGE));
    let shared = message("two queues");
    let _held_by_the_second_queue = shared.clone();
    let first = append(&mut store, 1, 2, &shared);
    let second = append(&mut store, 2, 2, &shared);
    assert_eq!((first.kind, second.kind), (KIND_MESSAGE, KIND_LINK));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_equal_but_distinct_message_gets_a_record_of_its_own() {
    let dir = temp_dir("distinct");
    let mut store = Store::open(&dir, 1, 1 << 20, None).expect("open");
    let first = append(&mut store, 1, 1, &message("same bytes"));
    let second = append(&mut store, 2, 1, &message("same bytes"));
    assert_eq!((first.kind, second.kind), (KIND_MESSAGE, KIND_MESSAGE));
    assert_eq!(first.length, second.length);
    drop((first, second));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn after_a_rotation_the_message_is_stored_again() {
    let dir = temp_dir("rotation");
    let mut store = Store::open(&dir, 1, 2048, None).expect("open");
    let fanout = message(&"r".repeat(1024));
    let first = append(&mut store, 1, 1, &fanout);
    // Fills the segment: the next record starts a new one.
    let filler = append(&mut store, 9, 1, &message(&"x".repeat(1024)));
    assert_ne!(filler.segment.number, first.segment.number);
    let second = append(&mut store, 2, 1, &fanout);
    assert_eq!(second.kind, KIND_MESSAGE, "a link names records of its own segment only");
    assert_ne!(second.segment.number, first.segment.number);
    assert_eq!(body(&store, &second), fanout.body);
    drop((first, filler, second));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn only_a_few_recent_messages_are_remembered() {
    let dir = temp_dir("recent");
    let mut store = Store::open(&dir, 1, 1 << 20, None).expect("open");
    let old = message("old");
    let first = append(&mut store, 1, 1, &old);
    let others: Vec<StoredRef> = (0..crate::limits::STORE_RECENT_MESSAGES as u64)
        .map(|sequence| append(&mut store, 1, sequence + 2, &message("other")))
        .collect();
    let again = append(&mut store, 2, 1, &old);
    assert_eq!(again.kind, KIND_MESSAGE, "forgotten after {} newer messages", others.len());
    drop((first, others, again));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_relocated_link_is_a_copy_of_the_content_for_its_own_queue() {
    let dir = temp_dir("relocate");
    let mut store = Store::open(&dir, 1, 1 << 20, None).expect("open");
    let fanout = message("moved by compaction");
    let first = append(&mut store, 1, 4, &fanout);
    let link = append(&mut store, 2, 9, &fanout);
    store.write_pending().expect("write");
    drop(store);
    let mut store = Store::open(&dir, 2, 1 << 20, None).expect("open");
    let copy = store.relocate(&link).expect("relocate");
    assert_eq!((copy.kind, copy.content_bytes), (KIND_COPY, link.content_bytes));
    assert_eq!(body(&store, &copy), "moved by compaction");
    store.write_pending().expect("write");
    let found = find_record(&copy.segment, 0, copy.offset + copy.length, 2, KIND_COPY).expect("a copy of queue 2");
    assert_eq!((found.sequence, found.content_bytes), (9, first.length));
    assert_eq!(find_record(&copy.segment, 0, copy.offset + copy.length, 1, KIND_COPY), None, "not queue 1's");
    drop((first, link, copy));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A restart with one shard after two: shard 0's store opened anew (as its segment 2), with
/// queue 8's message in its own segment 1 and queue 9's in shard 1's segment 1. Returns the
/// data directory, shard 0's store and the references (shard 0's, shard 1's).
fn segment_1_in_two_directories(name: &str) -> (PathBuf, Store, StoredRef, StoredRef) {
    let data = temp_dir(name);
    let mut written = Vec::new();
    for (dir, queue, text) in [("shard-1", 9, "written by shard 1"), ("shard-0", 8, "written by shard 0")] {
        let mut store = Store::open(&data.join(dir), 1, 1 << 20, None).expect("open");
        written.push(append(&mut store, queue, 1, &message(text)));
        store.write_pending().expect("write");
    }
    let own = Store::open(&data.join("shard-0"), 2, 1 << 20, None).expect("open");
    let (local, foreign) = (written.pop().expect("shard 0's"), written.pop().expect("shard 1's"));
    assert_eq!(local.segment.number, foreign.segment.number, "both directories have a segment 1");
    (data, own, local, foreign)
}

#[test]
fn compaction_leaves_another_shard_directorys_segments_where_they_are() {
    let (data, mut own, local, foreign) = segment_1_in_two_directories("foreign");
    assert!(own.owns(&local.segment) && !own.owns(&foreign.segment));
    assert!(own.relocate(&foreign).is_err(), "a copy out of another directory could be lost at recovery");
    let copy = own.relocate(&local).expect("its own segment is compacted");
    assert_eq!(body(&own, &copy), "written by shard 0");
    drop((foreign, local, copy, own));
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn marks_go_to_their_own_segment_when_another_directory_has_one_of_the_same_number() {
    use super::record::{decode_marks, Mark};
    let (data, mut own, local, foreign) = segment_1_in_two_directories("marks-by-segment");
    own.mark(&local, 8, 1, Mark::Removed);
    own.mark(&foreign, 9, 1, Mark::Delivered);
    own.write_pending().expect("write");
    let marks_of = |reference: &StoredRef| decode_marks(&reference.segment.read_marks().expect("marks")).0;
    assert_eq!(marks_of(&local), vec![(8, 1, Mark::Removed)]);
    assert_eq!(marks_of(&foreign), vec![(9, 1, Mark::Delivered)]);
    drop((foreign, local, own));
    let _ = std::fs::remove_dir_all(&data);
}

/// The first sync batch after a segment is created names the store's directory, which the
/// commit then fsyncs so the new file's name is on disk before a confirm of a record in it;
/// later batches that only write into the same segment do not.
#[test]
fn a_batch_after_a_new_segment_syncs_the_directory_once() {
    let dir = temp_dir("directory-sync");
    let mut store = Store::open(&dir, 1, 300, None).expect("open");
    assert_eq!(store.take_sync_batch().directory, None, "nothing created yet");
    let small = message("s");
    let first = append(&mut store, 1, 1, &small);
    store.write_pending().expect("write");
    let batch = store.take_sync_batch();
    assert_eq!(batch.directory.as_deref(), Some(dir.as_path()), "the first segment was created");
    assert!(batch.segments.iter().any(|segment| Arc::ptr_eq(segment, &first.segment)));
    let second = append(&mut store, 1, 2, &small);
    assert!(Arc::ptr_eq(&second.segment, &first.segment), "still room in the first segment");
    store.write_pending().expect("write");
    assert_eq!(store.take_sync_batch().directory, None, "no new file since the last batch");
    let large = message(&"l".repeat(400));
    let third = append(&mut store, 1, 3, &large);
    assert!(!Arc::ptr_eq(&third.segment, &first.segment), "a record past the capacity starts a segment");
    store.write_pending().expect("write");
    assert_eq!(store.take_sync_batch().directory.as_deref(), Some(dir.as_path()));
    drop((first, second, third, store));
    let _ = std::fs::remove_dir_all(&dir);
}
