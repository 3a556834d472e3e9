//! A queue's ready messages split by priority (`x-max-priority`): one `ReadyList` per level,
//! the highest non-empty level first, FIFO within a level, as RabbitMQ's priority queues.
//!
//! A queue without `x-max-priority` has one level, so the plain path costs one indirection.
//! Stored runs live on level 0 only: a message of a higher level is always a single entry.

use std::sync::Arc;

use super::ready::{Copier, Entry, ReadyList, RecordReader, StoredBytes};
use crate::store::segment::Segment;
use crate::store::StoredRef;

#[derive(Debug)]
pub struct Levels {
    /// Index = priority; never empty.
    levels: Vec<ReadyList>,
    count: usize,
}

impl Levels {
    /// One level per priority 0..=max_priority (one level without priorities).
    pub fn new(max_priority: Option<u8>) -> Levels {
        let levels = usize::from(max_priority.unwrap_or(0)) + 1;
        Levels { levels: (0..levels).map(|_| ReadyList::default()).collect(), count: 0 }
    }

    /// The level a message of `priority` goes to: capped at the queue's maximum.
    pub fn level_of(&self, priority: u8) -> u8 {
        let top = u8::try_from(self.levels.len() - 1).unwrap_or(u8::MAX);
        priority.min(top)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Replaces level 0 with messages recovered from the store (their priority is not stored).
    pub fn restore(&mut self, ready: ReadyList) {
        self.count = ready.len() + self.levels.iter().skip(1).map(ReadyList::len).sum::<usize>();
        self.levels[0] = ready;
    }

    pub fn push_back(&mut self, entry: Entry) {
        let level = usize::from(self.level_of(entry.priority));
        self.levels[level].push_back(entry);
        self.count += 1;
    }

    /// A stored message without a copy, priority 0.
    pub fn push_stored(&mut self, sequence: u64, reference: StoredRef) {
        self.levels[0].push_stored(sequence, reference);
        self.count += 1;
    }

    pub fn insert_by_sequence(&mut self, entry: Entry) {
        let level = usize::from(self.level_of(entry.priority));
        self.levels[level].insert_by_sequence(entry);
        self.count += 1;
    }

    fn top(&mut self) -> Option<&mut ReadyList> {
        self.levels.iter_mut().rev().find(|level| !level.is_empty())
    }

    pub fn pop_front(&mut self, reader: &dyn RecordReader, queue_sequence: u64) -> Option<Entry> {
        loop {
            let level = self.top()?;
            let before = level.len();
            let entry = level.pop_front(reader, queue_sequence);
            // A run that cannot be read is dropped whole: count what left the level.
            let removed = before - level.len();
            self.count -= removed;
            if entry.is_some() {
                return entry;
            }
        }
    }

    pub fn front_expires_at(&self) -> Option<u64> {
        self.levels.iter().rev().find(|level| !level.is_empty())?.front_expires_at()
    }

    pub fn clear(&mut self) {
        self.levels.iter_mut().for_each(ReadyList::clear);
        self.count = 0;
    }

    pub fn stored_bytes(&self, totals: &mut StoredBytes) {
        self.levels.iter().for_each(|level| level.stored_bytes(totals));
    }

    /// See `ReadyList::pack_older`. Level 0 only: a packed message reads back at priority 0.
    pub fn pack_older(&mut self, before_sequence: u64, budget: usize) -> usize {
        self.levels[0].pack_older(before_sequence, budget)
    }

    /// Compaction: see `ReadyList::relocate`; every level, highest first.
    pub fn relocate(
        &mut self,
        victim: &Arc<Segment>,
        reader: &dyn RecordReader,
        queue_sequence: u64,
        budget_bytes: &mut u64,
        copy: &mut Copier<'_>,
    ) -> bool {
        self.levels.iter_mut().rev().all(|level| level.relocate(victim, reader, queue_sequence, budget_bytes, copy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::queue::Payload;
    use crate::broker::ready::NoRecords;
    use crate::codec::message::Message;
    use bytes::Bytes;

    fn entry(sequence: u64, priority: u8) -> Entry {
        let message =
            Message { exchange: Bytes::new(), routing_key: Bytes::new(), properties: Bytes::new(), body: Bytes::new() };
        Entry {
            sequence,
            payload: Payload::Memory(Arc::new(message)),
            redelivered: false,
            expires_at_ms: None,
            priority,
            delivery_count: 0,
        }
    }

    #[test]
    fn higher_priority_first_fifo_within_and_capped() {
        let mut levels = Levels::new(Some(5));
        for (sequence, priority) in [(1, 0), (2, 5), (3, 9), (4, 3), (5, 5)] {
            levels.push_back(entry(sequence, priority));
        }
        let order: Vec<u64> =
            std::iter::from_fn(|| levels.pop_front(&NoRecords, 0)).map(|entry| entry.sequence).collect();
        assert_eq!(order, vec![2, 3, 5, 4, 1]);
        assert!(levels.is_empty());
    }
}
