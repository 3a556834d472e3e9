//! A queue's ready messages in order, compact enough for deep durable backlogs.
//!
//! Messages in memory are one entry each. Stored messages without an in-memory copy are kept
//! as runs: a byte range of one segment plus a count, meaning "every record of this queue in
//! that range, in order". A backlog of millions of stored messages then costs a few entries
//! per segment instead of one per message; records are read back (through `RecordReader`) only
//! when they reach the head. A requeued message always goes back before every run (runs hold
//! messages that were never delivered, so all of them are younger), so runs are never split.
//! A run reads records of one kind: messages as published, or copies written by compaction
//! (`relocate`), which moves a queue's stored messages out of a mostly-dead segment.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::packed::{self, Pack};
use super::queue::Payload;
use crate::codec::message::Message;
use crate::store::record::KIND_PAGED;
use crate::store::segment::Segment;
use crate::store::{FoundRecord, StoredRef};

/// Ready bytes per segment (keyed by the segment's address, as numbers repeat across the
/// shard directories), with the segment.
pub type StoredBytes = HashMap<usize, (Arc<Segment>, u64)>;

/// Copies one stored message (its place, its sequence) and returns the copy's place.
pub type Copier<'a> = dyn FnMut(&StoredRef, u64) -> Option<StoredRef> + 'a;

/// Reads a queue's records back from the store.
pub trait RecordReader {
    /// The first record of `kind` of `queue_sequence` in `segment` within `[from, end)`.
    fn next_record(
        &self,
        segment: &Arc<Segment>,
        from: u32,
        end: u32,
        queue_sequence: u64,
        kind: u8,
    ) -> Option<FoundRecord>;
}

/// For queues that never hold runs (and for tests).
#[cfg(test)]
pub struct NoRecords;

#[cfg(test)]
impl RecordReader for NoRecords {
    fn next_record(&self, _: &Arc<Segment>, _: u32, _: u32, _: u64, _: u8) -> Option<FoundRecord> {
        None
    }
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub sequence: u64,
    pub payload: Payload,
    pub redelivered: bool,
    /// When the message expires (`clock::now_ms` scale); None without a TTL. Only single
    /// entries carry one: messages with a deadline are never folded into runs.
    pub expires_at_ms: Option<u64>,
    /// Its level in a priority queue (0 elsewhere), capped at the queue's `x-max-priority`.
    pub priority: u8,
    /// How many times it went back to the queue after a delivery (`x-delivery-limit`). A
    /// message in a run was never delivered, so runs need no count.
    pub delivery_count: u32,
}

impl Entry {
    /// A message as it first becomes ready: never delivered, no deadline, priority 0.
    pub fn plain(sequence: u64, payload: Payload) -> Entry {
        Entry { sequence, payload, redelivered: false, expires_at_ms: None, priority: 0, delivery_count: 0 }
    }
}

/// The message of an entry that `pack_older` may pack, with its record's size. A packed
/// message reads back as `Entry::plain`, so only such an entry is packed.
fn packable(entry: &Entry) -> Option<(&Message, usize)> {
    let plain = !entry.redelivered && entry.expires_at_ms.is_none() && entry.priority == 0 && entry.delivery_count == 0;
    match &entry.payload {
        Payload::Memory(message) if plain => packed::record_bytes(message).map(|bytes| (&**message, bytes)),
        _ => None,
    }
}

#[derive(Debug)]
struct Run {
    segment: Arc<Segment>,
    /// Record kind the run reads: `KIND_MESSAGE`, `KIND_LINK` or `KIND_COPY`.
    kind: u8,
    next_offset: u32,
    end_offset: u32,
    first_sequence: u64,
    last_sequence: u64,
    remaining: u32,
    /// Content bytes (`StoredRef::content_bytes`) of the messages still in the run: what
    /// compaction would copy.
    remaining_bytes: u64,
}

impl Run {
    /// Steps past the record just read.
    fn advance(&mut self, found: &FoundRecord) {
        self.next_offset = found.offset + found.length;
        self.remaining -= 1;
        self.remaining_bytes = self.remaining_bytes.saturating_sub(u64::from(found.content_bytes));
        self.first_sequence = found.sequence + 1;
    }
}

#[derive(Debug)]
enum Slot {
    One(Entry),
    Run(Run),
    Packed(Box<Pack>),
}

impl Slot {
    fn first_sequence(&self) -> u64 {
        match self {
            Slot::One(entry) => entry.sequence,
            Slot::Run(run) => run.first_sequence,
            Slot::Packed(pack) => pack.head_sequence(),
        }
    }
}

#[derive(Debug, Default)]
pub struct ReadyList {
    slots: VecDeque<Slot>,
    count: usize,
    /// The last run takes no more records (recovery skipped a record of this queue after it).
    tail_closed: bool,
    /// `pack_older` has been through every message below this sequence.
    packed_through: u64,
}

impl ReadyList {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn push_back(&mut self, entry: Entry) {
        self.slots.push_back(Slot::One(entry));
        self.count += 1;
    }

    /// Packs (`broker::packed`) the small, plain in-memory messages (no deadline, never
    /// delivered) with a sequence below `before_sequence` that earlier calls did not reach, at
    /// most `budget` of them, in place. Returns how many it packed. Slots are in sequence
    /// order, so only the slots between the last call's end and `before_sequence` are walked,
    /// and a call with nothing old enough costs two binary searches.
    pub fn pack_older(&mut self, before_sequence: u64, budget: usize) -> usize {
        let start = self.slots.partition_point(|slot| slot.first_sequence() < self.packed_through);
        let end = self.slots.partition_point(|slot| slot.first_sequence() < before_sequence);
        if start >= end {
            self.packed_through = self.packed_through.max(before_sequence);
            return 0;
        }
        if budget == 0 {
            return 0;
        }
        let mut newer = self.slots.split_off(end);
        let older = self.slots.split_off(start);
        let mut packed = 0;
        // Out of budget: the next call goes on from the first entry this one left.
        let mut resume_at = None;
        for slot in older {
            let entry = match slot {
                Slot::One(entry) if packed < budget => entry,
                Slot::One(entry) => {
                    resume_at.get_or_insert(entry.sequence);
                    self.slots.push_back(Slot::One(entry));
                    continue;
                }
                other => {
                    self.slots.push_back(other);
                    continue;
                }
            };
            let Some((message, record_bytes)) = packable(&entry) else {
                self.slots.push_back(Slot::One(entry));
                continue;
            };
            packed += 1;
            if let Some(Slot::Packed(pack)) = self.slots.back_mut() {
                if pack.try_push(entry.sequence, message, record_bytes) {
                    continue;
                }
            }
            let pack = Pack::new(entry.sequence, message, record_bytes);
            self.slots.push_back(Slot::Packed(Box::new(pack)));
        }
        self.packed_through = resume_at.unwrap_or(before_sequence);
        self.slots.append(&mut newer);
        // The slots the packed messages had would otherwise stay allocated: 64 bytes each.
        if self.slots.capacity() > 4 * self.slots.len().max(16) {
            self.slots.shrink_to(2 * self.slots.len());
        }
        packed
    }

    /// Appends a stored message without a copy: extends the last run when the
    /// record follows it in the same segment, is of the same kind, and its sequence is the
    /// very next one. A gap in the sequences means a record of this queue lies inside the
    /// range that the run must not read (a message kept as a single entry for its priority or
    /// deadline, or one recovery found acked), so the message starts a new run instead.
    pub fn push_stored(&mut self, sequence: u64, reference: StoredRef) {
        let kind = reference.kind;
        let end = reference.offset + reference.length;
        let tail_open = !std::mem::replace(&mut self.tail_closed, false);
        if let Some(Slot::Run(run)) = self.slots.back_mut() {
            if tail_open
                && run.kind == kind
                && Arc::ptr_eq(&run.segment, &reference.segment)
                && reference.offset >= run.end_offset
                && Some(sequence) == run.last_sequence.checked_add(1)
            {
                run.end_offset = end;
                run.last_sequence = sequence;
                run.remaining += 1;
                run.remaining_bytes += u64::from(reference.content_bytes);
                self.count += 1;
                return;
            }
        }
        self.slots.push_back(Slot::Run(Run {
            segment: reference.segment,
            kind,
            next_offset: reference.offset,
            end_offset: end,
            first_sequence: sequence,
            last_sequence: sequence,
            remaining: 1,
            remaining_bytes: u64::from(reference.content_bytes),
        }));
        self.count += 1;
    }

    /// The next stored message starts a new run: recovery skipped a record of this queue
    /// (one that another place holds) that an extended run would read.
    pub fn end_run(&mut self) {
        self.tail_closed = true;
    }

    /// Puts a message back at its original position (by sequence).
    pub fn insert_by_sequence(&mut self, entry: Entry) {
        let position = self.slots.partition_point(|slot| slot.first_sequence() < entry.sequence);
        self.slots.insert(position, Slot::One(entry));
        self.count += 1;
    }

    pub fn pop_front(&mut self, reader: &dyn RecordReader, queue_sequence: u64) -> Option<Entry> {
        loop {
            debug_assert!(
                !self.slots.is_empty() || self.count == 0,
                "{} messages counted in an empty list",
                self.count
            );
            let run = match self.slots.front_mut()? {
                Slot::One(_) => {
                    debug_assert!(self.count > 0, "a ready entry that was not counted");
                    self.count -= 1;
                    return match self.slots.pop_front() {
                        Some(Slot::One(entry)) => Some(entry),
                        _ => None,
                    };
                }
                Slot::Run(run) => run,
                Slot::Packed(pack) => {
                    let popped = pack.pop();
                    let remaining = pack.remaining();
                    let Some((sequence, message)) = popped else {
                        crate::error!("{remaining} packed message(s) unreadable; dropped");
                        self.count -= remaining as usize;
                        self.slots.pop_front();
                        continue;
                    };
                    if remaining == 0 {
                        self.slots.pop_front();
                    }
                    self.count -= 1;
                    return Some(Entry::plain(sequence, Payload::Memory(Arc::new(message))));
                }
            };
            let found = reader.next_record(&run.segment, run.next_offset, run.end_offset, queue_sequence, run.kind);
            let Some(found) = found else {
                crate::error!(
                    "segment {}: {} stored message(s) unreadable from offset {}; dropped",
                    run.segment.number,
                    run.remaining,
                    run.next_offset
                );
                debug_assert!(self.count >= run.remaining as usize, "a run longer than the count");
                self.count -= run.remaining as usize;
                self.slots.pop_front();
                continue;
            };
            let reference = found.reference(&run.segment);
            debug_assert!(run.remaining > 0 && self.count > 0, "a run read past its last message");
            run.advance(&found);
            if run.remaining == 0 {
                self.slots.pop_front();
            }
            self.count -= 1;
            return Some(Entry::plain(found.sequence, Payload::Stored { reference, cached: None }));
        }
    }

    /// The deadline of the head message, if it is a single entry with one.
    pub fn front_expires_at(&self) -> Option<u64> {
        match self.slots.front()? {
            Slot::One(entry) => entry.expires_at_ms,
            Slot::Run(_) | Slot::Packed(_) => None,
        }
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.count = 0;
    }

    /// Adds the stored bytes of every ready message, per segment.
    /// Paged messages are left out: compaction does not move them.
    pub fn stored_bytes(&self, totals: &mut StoredBytes) {
        for slot in &self.slots {
            let (segment, bytes) = match slot {
                Slot::Run(run) if run.kind != KIND_PAGED => (&run.segment, run.remaining_bytes),
                Slot::One(entry) => match entry.payload.stored().filter(|reference| reference.kind != KIND_PAGED) {
                    Some(reference) => (&reference.segment, u64::from(reference.content_bytes)),
                    None => continue,
                },
                Slot::Run(_) | Slot::Packed(_) => continue,
            };
            let total = totals.entry(Arc::as_ptr(segment) as usize).or_insert_with(|| (segment.clone(), 0));
            total.1 += bytes;
        }
    }

    /// Copies the ready messages stored in `victim` elsewhere (through `copy`), in place and in
    /// order, until `budget_bytes` runs out. Returns false if some are left (budget, or a copy
    /// that failed).
    pub fn relocate(
        &mut self,
        victim: &Arc<Segment>,
        reader: &dyn RecordReader,
        queue_sequence: u64,
        budget_bytes: &mut u64,
        copy: &mut Copier<'_>,
    ) -> bool {
        let mut done = true;
        let mut slots = VecDeque::with_capacity(self.slots.len());
        for slot in std::mem::take(&mut self.slots) {
            match slot {
                Slot::One(mut entry) if done => {
                    if let Payload::Stored { reference, .. } = &mut entry.payload {
                        if Arc::ptr_eq(&reference.segment, victim) && reference.kind != KIND_PAGED {
                            match (*budget_bytes > 0).then(|| copy(reference, entry.sequence)).flatten() {
                                Some(moved) => {
                                    *budget_bytes = budget_bytes.saturating_sub(u64::from(reference.content_bytes));
                                    *reference = moved;
                                }
                                None => done = false,
                            }
                        }
                    }
                    slots.push_back(Slot::One(entry));
                }
                Slot::Run(mut run) if done && Arc::ptr_eq(&run.segment, victim) && run.kind != KIND_PAGED => {
                    done = relocate_run(&mut run, reader, queue_sequence, budget_bytes, copy, &mut slots);
                    if run.remaining > 0 {
                        slots.push_back(Slot::Run(run));
                    }
                }
                other => slots.push_back(other),
            }
        }
        self.slots = slots;
        done
    }

    /// Adds the messages of `other` (recovered from another place of the log) and puts every
    /// message in sequence order. Each sequence is in one of the two lists only, and runs hold
    /// consecutive sequences, so ordering the slots orders the messages.
    pub fn merge(&mut self, other: ReadyList) {
        if other.slots.is_empty() {
            return;
        }
        let mut slots: Vec<Slot> = std::mem::take(&mut self.slots).into_iter().chain(other.slots).collect();
        slots.sort_by_key(Slot::first_sequence);
        self.slots = slots.into();
        self.count += other.count;
        self.tail_closed = true;
    }
}

/// Copies the front of a run, record by record, into copy runs appended to `slots`; what the
/// budget leaves stays in `run`. Returns false if the budget or a failed copy stopped it.
fn relocate_run(
    run: &mut Run,
    reader: &dyn RecordReader,
    queue_sequence: u64,
    budget_bytes: &mut u64,
    copy: &mut Copier<'_>,
    slots: &mut VecDeque<Slot>,
) -> bool {
    let mut copies = ReadyList::default();
    let mut done = true;
    while run.remaining > 0 {
        if *budget_bytes == 0 {
            done = false;
            break;
        }
        let found = reader.next_record(&run.segment, run.next_offset, run.end_offset, queue_sequence, run.kind);
        // An unreadable run is left as it is: reading it at the head reports and drops it.
        let Some(found) = found else { break };
        let Some(moved) = copy(&found.reference(&run.segment), found.sequence) else {
            done = false;
            break;
        };
        run.advance(&found);
        *budget_bytes = budget_bytes.saturating_sub(u64::from(found.content_bytes));
        copies.push_stored(found.sequence, moved);
    }
    slots.extend(copies.slots);
    done
}

#[cfg(test)]
mod tests {
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
        fn next_record(
            &self,
            segment: &Arc<Segment>,
            from: u32,
            end: u32,
            queue: u64,
            kind: u8,
        ) -> Option<FoundRecord> {
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
        let reader =
            StoreReader(std::cell::RefCell::new(crate::store::Store::open(&dir, 2, 1 << 20, None).expect("open")));
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
        let places: Vec<(u64, u64)> = entries
            .iter()
            .map(|entry| (entry.sequence, entry.payload.stored().expect("stored").segment.number))
            .collect();
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
            let expected: Vec<(u64, String)> =
                (1..=5).map(|sequence| (sequence, format!("fanout {sequence}"))).collect();
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
        let order: Vec<u64> =
            std::iter::from_fn(|| ready.pop_front(&NoRecords, 0)).map(|entry| entry.sequence).collect();
        assert_eq!(order, vec![1, 3, 4, 5, 6]);
        assert!(ready.is_empty());
    }
}
