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
#[path = "ready_tests.rs"]
mod tests;
