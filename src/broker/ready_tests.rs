//! Unit tests of the ready list: order, runs, packing, and what a backlog costs in memory.

use super::*;
use crate::codec::message::Message;
use bytes::Bytes;

fn memory(sequence: u64) -> Entry {
    let message = Message {
        exchange: Bytes::new(),
        routing_key: Bytes::new(),
        properties: Bytes::new(),
        body: Bytes::from(sequence.to_string()),
    };
    Entry::plain(sequence, Payload::Memory(Arc::new(message)))
}

/// Reads records the way the shard does, from a store in a temporary directory.
struct StoreReader(std::cell::RefCell<crate::store::Store>);

impl RecordReader for StoreReader {
    fn next_record(&self, segment: &Arc<Segment>, from: u32, end: u32, queue: u64, kind: u8) -> Option<FoundRecord> {
        self.0.borrow_mut().ensure_written(segment, end);
        crate::store::find_record(segment, from, end, queue, kind)
    }
}

#[test]
fn a_run_never_covers_a_record_kept_apart() {
    let dir = std::env::temp_dir().join(format!("spatemq-ready-{}", std::process::id()));
    let mut store = crate::store::Store::open(&dir, 1, 1 << 20, None).expect("open a store");
    let mut append = |sequence: u64| {
        let body = sequence.to_string();
        let record = crate::store::record::MessageRecord::plain(9, sequence, body.as_bytes());
        store.append(&record).expect("append")
    };
    let mut ready = ReadyList::default();
    let first = append(1);
    ready.push_stored(1, first);
    // Sequence 2 is stored too but kept elsewhere (a priority level, a deadline).
    let kept_apart = append(2);
    let third = append(3);
    ready.push_stored(3, third);
    let fourth = append(4);
    ready.push_stored(4, fourth);
    let reader = StoreReader(std::cell::RefCell::new(store));
    let order: Vec<u64> = std::iter::from_fn(|| ready.pop_front(&reader, 9)).map(|entry| entry.sequence).collect();
    assert_eq!(order, vec![1, 3, 4], "the run skipped the record kept apart");
    drop(kept_apart);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn relocation_keeps_the_order_and_stops_at_its_budget() {
    let dir = std::env::temp_dir().join(format!("spatemq-relocate-{}", std::process::id()));
    let mut first = crate::store::Store::open(&dir, 1, 1 << 20, None).expect("open a store");
    let mut ready = ReadyList::default();
    let mut lengths = Vec::new();
    for sequence in 1..=6u64 {
        let body = sequence.to_string();
        let record = crate::store::record::MessageRecord::plain(9, sequence, body.as_bytes());
        let reference = first.append(&record).expect("append");
        lengths.push(u64::from(reference.length));
        ready.push_stored(sequence, reference);
    }
    first.write_pending().expect("write");
    let victim = ready.pop_front(&StoreReader(std::cell::RefCell::new(first)), 9).expect("the head");
    let victim_segment = victim.payload.stored().expect("stored").segment.clone();
    ready.insert_by_sequence(victim);
    let reader = StoreReader(std::cell::RefCell::new(crate::store::Store::open(&dir, 2, 1 << 20, None).expect("open")));
    let mut totals = StoredBytes::new();
    ready.stored_bytes(&mut totals);
    assert_eq!(totals.values().map(|(_, bytes)| *bytes).sum::<u64>(), lengths.iter().sum::<u64>());

    // A budget of three records: the single entry and two records of the run move.
    let mut budget = lengths[0] + lengths[1] + lengths[2];
    let mut copy = |from: &StoredRef, _: u64| reader.0.borrow_mut().relocate(from).ok();
    assert!(!ready.relocate(&victim_segment, &reader, 9, &mut budget, &mut copy), "the budget stops it");
    let mut budget = u64::MAX;
    let mut copy = |from: &StoredRef, _: u64| reader.0.borrow_mut().relocate(from).ok();
    assert!(ready.relocate(&victim_segment, &reader, 9, &mut budget, &mut copy), "the rest moves");
    assert_eq!(ready.len(), 6);
    let entries: Vec<Entry> = std::iter::from_fn(|| ready.pop_front(&reader, 9)).collect();
    let places: Vec<(u64, u64)> =
        entries.iter().map(|entry| (entry.sequence, entry.payload.stored().expect("stored").segment.number)).collect();
    assert_eq!(places, (1..=6).map(|sequence| (sequence, 2)).collect::<Vec<_>>());
    let store = reader.0.borrow();
    let bodies: Vec<String> = entries
        .iter()
        .map(|entry| {
            String::from_utf8_lossy(&store.read(entry.payload.stored().expect("stored")).expect("read").body)
                .into_owned()
        })
        .collect();
    assert_eq!(bodies, (1..=6).map(|sequence: u64| sequence.to_string()).collect::<Vec<_>>());
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fanout to two queues of one shard: queue 1 holds the message records, queue 2 the
/// links to them; both read back every message, in order, as runs.
#[test]
fn a_run_of_links_reads_the_contents_it_names() {
    let dir = std::env::temp_dir().join(format!("spatemq-links-{}", std::process::id()));
    let mut store = crate::store::Store::open(&dir, 1, 1 << 20, None).expect("open a store");
    let (mut owner, mut linked) = (ReadyList::default(), ReadyList::default());
    for sequence in 1..=5u64 {
        let message = Arc::new(Message {
            exchange: Bytes::new(),
            routing_key: Bytes::new(),
            properties: Bytes::new(),
            body: Bytes::from(format!("fanout {sequence}")),
        });
        for (queue, list) in [(1u64, &mut owner), (2, &mut linked)] {
            let record = crate::store::record::MessageRecord::plain(queue, sequence, &message.body);
            list.push_stored(sequence, store.append_shared(&record, &message).expect("append"));
        }
    }
    assert_eq!(linked.slots.len(), 1, "consecutive links of a queue form one run");
    let reader = StoreReader(std::cell::RefCell::new(store));
    for (queue, list) in [(1u64, &mut owner), (2, &mut linked)] {
        let entries: Vec<Entry> = std::iter::from_fn(|| list.pop_front(&reader, queue)).collect();
        let store = reader.0.borrow();
        let read: Vec<(u64, String)> = entries
            .iter()
            .map(|entry| {
                let message = store.read(entry.payload.stored().expect("stored")).expect("read");
                (entry.sequence, String::from_utf8_lossy(&message.body).into_owned())
            })
            .collect();
        let expected: Vec<(u64, String)> = (1..=5).map(|sequence| (sequence, format!("fanout {sequence}"))).collect();
        assert_eq!(read, expected, "queue {queue}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A message as a publisher to the default exchange sends it: the queue's name as the
/// routing key, delivery mode 1, a 16-byte body (its sequence, twice).
fn arrived(sequence: u64) -> Entry {
    let message = Message {
        exchange: Bytes::new(),
        routing_key: Bytes::copy_from_slice(b"backlog"),
        properties: Bytes::copy_from_slice(&[0x10, 0x00, 0x01]),
        body: Bytes::copy_from_slice(&sequence.to_be_bytes().repeat(2)),
    };
    Entry::plain(sequence, Payload::Memory(Arc::new(message)))
}

fn drain(ready: &mut ReadyList) -> Vec<(u64, bool, Vec<u8>)> {
    std::iter::from_fn(|| ready.pop_front(&NoRecords, 0))
        .map(|entry| {
            let body = entry.payload.message().expect("in memory").body.to_vec();
            (entry.sequence, entry.redelivered, body)
        })
        .collect()
}

#[test]
fn a_backlog_is_packed_and_reads_back_in_order_around_requeued_messages() {
    let mut ready = ReadyList::default();
    for sequence in 1..=1_000 {
        ready.push_back(arrived(sequence));
    }
    assert_eq!(ready.pack_older(1_001, 500), 500, "the budget stops it");
    // Ten are delivered and three of them come back; more arrive behind.
    let delivered: Vec<Entry> = (0..10).map(|_| ready.pop_front(&NoRecords, 0).expect("ready")).collect();
    for mut entry in delivered.into_iter().filter(|entry| entry.sequence % 3 == 0) {
        entry.redelivered = true;
        ready.insert_by_sequence(entry);
    }
    for sequence in 1_001..=1_200 {
        ready.push_back(arrived(sequence));
    }
    assert_eq!(ready.pack_older(1_101, usize::MAX), 600, "from where the budget stopped, the requeued left");
    assert_eq!(ready.pack_older(1_101, usize::MAX), 0, "nothing twice");
    assert_eq!(ready.len(), 1_193);
    // Three requeued, three chunks, the hundred younger.
    assert!(ready.slots.len() <= 3 + 3 + 100, "{} slots: the older ones packed", ready.slots.len());
    let body = |sequence: u64| sequence.to_be_bytes().repeat(2);
    let expected: Vec<(u64, bool, Vec<u8>)> = [3, 6, 9]
        .into_iter()
        .map(|sequence| (sequence, true, body(sequence)))
        .chain((11..=1_200).map(|sequence| (sequence, false, body(sequence))))
        .collect();
    assert_eq!(drain(&mut ready), expected);
    assert!(ready.is_empty() && ready.slots.is_empty());
}

#[test]
fn a_packed_backlog_costs_at_most_64_bytes_a_message() {
    // A short backlog does not hold a whole chunk, a long one fills many.
    for messages in [100, 100_000] {
        packed_and_whole_bytes_per_message(messages);
    }
}

fn packed_and_whole_bytes_per_message(messages: u64) {
    let fill = |redelivered: bool| {
        let mut ready = ReadyList::default();
        for sequence in 0..messages {
            let mut entry = arrived(sequence);
            entry.redelivered = redelivered;
            ready.push_back(entry);
        }
        ready.pack_older(messages, usize::MAX);
        ready
    };
    let (mut packed, packed_bytes) = crate::allocation::held_bytes_after(|| fill(false));
    // A redelivered message is never packed: the same backlog as the messages arrived.
    let (whole, whole_bytes) = crate::allocation::held_bytes_after(|| fill(true));
    let (packed_each, whole_each) = (packed_bytes as u64 / messages, whole_bytes as u64 / messages);
    assert!(packed_each <= 64, "{messages}: {packed_each} bytes a packed message ({whole_each} as they arrived)");
    assert!(whole_each >= 3 * packed_each, "{messages}: {whole_each} bytes a message as they arrived");
    assert_eq!(drain(&mut packed).len(), messages as usize);
    drop(whole);
}

#[test]
fn requeued_entries_return_to_their_position() {
    let mut ready = ReadyList::default();
    for sequence in [3, 5, 6] {
        ready.push_back(memory(sequence));
    }
    ready.insert_by_sequence(memory(4));
    ready.insert_by_sequence(memory(1));
    let order: Vec<u64> = std::iter::from_fn(|| ready.pop_front(&NoRecords, 0)).map(|entry| entry.sequence).collect();
    assert_eq!(order, vec![1, 3, 4, 5, 6]);
    assert!(ready.is_empty());
}
