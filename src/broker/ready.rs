//! A queue's ready messages in order, compact enough for deep durable backlogs.
//!
//! Messages in memory are one entry each. Stored messages without an in-memory copy are kept
//! as runs: a byte range of one segment plus a count, meaning "every record of this queue in
//! that range, in order". A backlog of millions of stored messages then costs a few entries
//! per segment instead of one per message; records are read back (through `RecordReader`) only
//! when they reach the head. A requeued message always goes back before every run (runs hold
//! messages that were never delivered, so all of them are younger), so runs are never split.

use std::collections::VecDeque;
use std::sync::Arc;

use super::queue::Payload;
use crate::store::segment::Segment;
use crate::store::StoredRef;

/// Reads a queue's records back from the store.
pub trait RecordReader {
    /// The first record of `queue_sequence` in `segment` within `[from, end)`:
    /// (offset, length, the message's sequence in its queue).
    fn next_record(&self, segment: &Arc<Segment>, from: u32, end: u32, queue_sequence: u64) -> Option<(u32, u32, u64)>;
}

/// For queues that never hold runs (and for tests).
pub struct NoRecords;

impl RecordReader for NoRecords {
    fn next_record(&self, _: &Arc<Segment>, _: u32, _: u32, _: u64) -> Option<(u32, u32, u64)> {
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

#[derive(Debug)]
struct Run {
    segment: Arc<Segment>,
    next_offset: u32,
    end_offset: u32,
    first_sequence: u64,
    last_sequence: u64,
    remaining: u32,
}

#[derive(Debug)]
enum Slot {
    One(Entry),
    Run(Run),
}

impl Slot {
    fn first_sequence(&self) -> u64 {
        match self {
            Slot::One(entry) => entry.sequence,
            Slot::Run(run) => run.first_sequence,
        }
    }
}

#[derive(Debug, Default)]
pub struct ReadyList {
    slots: VecDeque<Slot>,
    count: usize,
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

    /// Appends a stored message without a copy: extends the last run when the record follows
    /// it in the same segment and the sequence follows its last one.
    pub fn push_stored(&mut self, sequence: u64, reference: StoredRef) {
        let end = reference.offset + reference.length;
        if let Some(Slot::Run(run)) = self.slots.back_mut() {
            if Arc::ptr_eq(&run.segment, &reference.segment)
                && reference.offset >= run.end_offset
                && sequence > run.last_sequence
            {
                run.end_offset = end;
                run.last_sequence = sequence;
                run.remaining += 1;
                self.count += 1;
                return;
            }
        }
        self.slots.push_back(Slot::Run(Run {
            segment: reference.segment,
            next_offset: reference.offset,
            end_offset: end,
            first_sequence: sequence,
            last_sequence: sequence,
            remaining: 1,
        }));
        self.count += 1;
    }

    /// Puts a message back at its original position (by sequence).
    pub fn insert_by_sequence(&mut self, entry: Entry) {
        let position = self.slots.partition_point(|slot| slot.first_sequence() < entry.sequence);
        self.slots.insert(position, Slot::One(entry));
        self.count += 1;
    }

    pub fn pop_front(&mut self, reader: &dyn RecordReader, queue_sequence: u64) -> Option<Entry> {
        loop {
            let run = match self.slots.front_mut()? {
                Slot::One(_) => {
                    self.count -= 1;
                    return match self.slots.pop_front() {
                        Some(Slot::One(entry)) => Some(entry),
                        _ => None,
                    };
                }
                Slot::Run(run) => run,
            };
            let found = reader.next_record(&run.segment, run.next_offset, run.end_offset, queue_sequence);
            let Some((offset, length, sequence)) = found else {
                crate::error!(
                    "segment {}: {} stored message(s) unreadable from offset {}; dropped",
                    run.segment.number,
                    run.remaining,
                    run.next_offset
                );
                self.count -= run.remaining as usize;
                self.slots.pop_front();
                continue;
            };
            let reference = StoredRef { segment: run.segment.clone(), offset, length };
            run.next_offset = offset + length;
            run.remaining -= 1;
            run.first_sequence = sequence + 1;
            if run.remaining == 0 {
                self.slots.pop_front();
            }
            self.count -= 1;
            return Some(Entry {
                sequence,
                payload: Payload::Stored { reference, cached: None },
                redelivered: false,
                expires_at_ms: None,
                priority: 0,
                delivery_count: 0,
            });
        }
    }

    /// The deadline of the head message, if it is a single entry with one.
    pub fn front_expires_at(&self) -> Option<u64> {
        match self.slots.front()? {
            Slot::One(entry) => entry.expires_at_ms,
            Slot::Run(_) => None,
        }
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::Message;
    use bytes::Bytes;

    fn memory(sequence: u64) -> Entry {
        let message = Message {
            exchange: Bytes::new(),
            routing_key: Bytes::new(),
            properties: Bytes::new(),
            body: Bytes::from(sequence.to_string()),
        };
        Entry {
            sequence,
            payload: Payload::Memory(Arc::new(message)),
            redelivered: false,
            expires_at_ms: None,
            priority: 0,
            delivery_count: 0,
        }
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
