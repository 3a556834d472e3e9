//! The queue arguments a queue acts on, kept apart from the core state machine: message
//! expiry (at the head and by the shard's sweep), length limits with their overflow modes,
//! dead-lettering, the delivery limit and the `x-expires` lease; and the packing of a waiting
//! backlog (also by the sweep). A child of `queue`, so it sees the queue's fields.

use std::sync::Arc;

use super::{Effect, Payload, Queue};
use crate::broker::dead_letter::DeathReason;
use crate::broker::queue_args::{Overflow, QueueType};
use crate::broker::ready::{Entry, RecordReader};
use crate::clock;
use crate::codec::message::Message;
use crate::limits::PACK_READY_MESSAGES;
use crate::store::record::Mark;

impl Queue {
    /// Packs the ready messages that were already here at the last call, at most `budget`
    /// (`ReadyList::pack_older`), once the queue holds `PACK_READY_MESSAGES`. Called by the
    /// shard's sweep: a backlog that waits costs about 25 bytes plus its body per message,
    /// and a message that a consumer takes before the next sweep is never copied. Returns
    /// how many it packed.
    pub fn pack_waiting(&mut self, budget: usize) -> usize {
        let before_sequence = std::mem::replace(&mut self.pack_mark, self.next_sequence);
        if self.ready.len() < PACK_READY_MESSAGES {
            return 0;
        }
        self.ready.pack_older(before_sequence, budget)
    }

    /// The head message that has not expired; expired ones on the way are dropped or
    /// dead-lettered. A message has expired once its deadline is reached (RabbitMQ: `Now >=
    /// Expiry`), so one with a TTL of 0 is never fetched; only the message being enqueued is
    /// spared, for a consumer that can take it at once (RabbitMQ hands it over before it
    /// enqueues).
    pub(super) fn pop_ready(&mut self, effects: &mut Vec<Effect>, reader: &dyn RecordReader) -> Option<Entry> {
        let mut now_ms = None;
        loop {
            let entry = self.ready.pop_front(reader, self.definition.id.sequence())?;
            self.ready_bytes = self.ready_bytes.saturating_sub(entry.payload.counted_bytes());
            match entry.expires_at_ms {
                Some(deadline)
                    if Some(entry.sequence) != self.arriving_sequence
                        && deadline <= *now_ms.get_or_insert_with(clock::now_ms) =>
                {
                    self.dead(entry, DeathReason::Expired, effects)
                }
                _ => return Some(entry),
            }
        }
    }

    /// A delivered message comes back (nack or reject with requeue, its channel closed, its
    /// delivery bounced): to its original position, marked redelivered, its return counted.
    /// With `x-delivery-limit`, one return more than the limit dead-letters (or drops) it
    /// instead, as RabbitMQ 4.0-4.2 quorum queues count every return.
    pub(super) fn requeue(&mut self, entry: Entry, effects: &mut Vec<Effect>) {
        self.return_to_ready(entry, effects, false);
    }

    /// A message nacked or rejected with requeue (or recovered): as `requeue`, except that a
    /// quorum queue appends it behind its other ready messages, as RabbitMQ 3.10's quorum
    /// queues do (`rabbit_fifo`'s `requeue` command); a message returned by a closed channel
    /// or a cancelled consumer goes back to its place in both types (`rabbit_fifo`'s returns
    /// come first).
    pub(super) fn requeue_settled(&mut self, entry: Entry, effects: &mut Vec<Effect>) {
        let behind = self.args.queue_type == QueueType::Quorum;
        self.return_to_ready(entry, effects, behind);
    }

    /// Counts the return; past `x-delivery-limit` dead-letters (or drops) the message, else
    /// puts it back redelivered: `behind` the other ready messages, or at its place.
    fn return_to_ready(&mut self, mut entry: Entry, effects: &mut Vec<Effect>, behind: bool) {
        entry.delivery_count = entry.delivery_count.saturating_add(1);
        if self.args.delivery_limit.is_some_and(|limit| u64::from(entry.delivery_count) > limit) {
            self.dead(entry, DeathReason::DeliveryLimit, effects);
            return;
        }
        entry.redelivered = true;
        self.ready_bytes += entry.payload.counted_bytes();
        if behind {
            self.ready.push_back(entry);
        } else {
            self.ready.insert_by_sequence(entry);
        }
    }

    /// A message handed to a consumer's channel that never reached the client goes back to
    /// its place unchanged.
    pub(super) fn unsend(&mut self, entry: Entry) {
        self.ready_bytes += entry.payload.counted_bytes();
        self.ready.insert_by_sequence(entry);
    }

    /// A message leaves the queue for good without being delivered.
    pub(super) fn dead(&self, entry: Entry, reason: DeathReason, effects: &mut Vec<Effect>) {
        if let Some(target) = &self.args.dead_letter {
            effects.push(Effect::DeadLetter {
                payload: entry.payload.clone(),
                reason,
                queue: self.definition.clone(),
                target: target.clone(),
            });
        }
        self.mark_leaving(entry, Mark::Removed, effects);
    }

    fn over_limit(&self, extra_messages: u64, extra_bytes: u64) -> bool {
        let length = self.ready.len() as u64 + extra_messages;
        self.args.max_length.is_some_and(|max_length| length > max_length)
            || self.args.max_length_bytes.is_some_and(|max_bytes| self.ready_bytes + extra_bytes > max_bytes)
    }

    /// `x-overflow` drop-head: the oldest ready messages go until the queue fits.
    pub(super) fn drop_over_limit(&mut self, effects: &mut Vec<Effect>, reader: &dyn RecordReader) {
        if self.args.overflow != Overflow::DropHead {
            return;
        }
        while self.over_limit(0, 0) {
            let Some(entry) = self.ready.pop_front(reader, self.definition.id.sequence()) else {
                return;
            };
            self.ready_bytes = self.ready_bytes.saturating_sub(entry.payload.counted_bytes());
            self.dead(entry, DeathReason::MaxLength, effects);
        }
    }

    /// `x-overflow` reject-publish(-dlx): whether a new message of `body_bytes` is refused.
    /// Checked before the message is stored, so a refused message costs no write.
    pub fn refuses(&self, body_bytes: u64) -> bool {
        self.args.overflow != Overflow::DropHead && self.over_limit(1, body_bytes)
    }

    /// A refused message is dead-lettered if the mode says so.
    pub fn refused(&self, message: &Arc<Message>, effects: &mut Vec<Effect>) {
        if let (Overflow::RejectPublishDlx, Some(target)) = (self.args.overflow, &self.args.dead_letter) {
            effects.push(Effect::DeadLetter {
                payload: Payload::Memory(message.clone()),
                reason: DeathReason::MaxLength,
                queue: self.definition.clone(),
                target: target.clone(),
            });
        }
    }

    /// Whether the shard's sweep has anything to do here.
    pub fn timed(&self) -> bool {
        self.args.timed() || self.had_message_deadlines || self.stream.is_some()
    }

    /// Drops (or dead-letters) up to `limit` expired messages at the head; returns how many.
    pub fn expire(&mut self, now_ms: u64, limit: usize, effects: &mut Vec<Effect>, reader: &dyn RecordReader) -> usize {
        if self.stream.is_some() {
            // A stream expires nothing itself: retention drops its old segments.
            self.stream_retention(clock::unix_ms());
            return 0;
        }
        let mut expired = 0;
        while expired < limit && self.ready.front_expires_at().is_some_and(|deadline| deadline <= now_ms) {
            let Some(entry) = self.ready.pop_front(reader, self.definition.id.sequence()) else {
                break;
            };
            self.ready_bytes = self.ready_bytes.saturating_sub(entry.payload.counted_bytes());
            self.dead(entry, DeathReason::Expired, effects);
            expired += 1;
        }
        expired
    }

    /// New policies for this queue (the writer chose them; `definition` carries them): the
    /// queue acts on the merged settings from now on, as RabbitMQ's queue process re-reads
    /// its policy. A lower length limit drops (or dead-letters) the oldest ready messages at
    /// once in drop-head mode; a changed `expires` starts its lease again; a message TTL
    /// applies to messages enqueued from now on (those already there keep the deadline they
    /// arrived with, as in RabbitMQ 3.10); a dead-letter exchange is used by the next death.
    pub fn apply_policies(
        &mut self,
        definition: Arc<crate::broker::snapshot::QueueDef>,
        effects: &mut Vec<Effect>,
        reader: &dyn RecordReader,
    ) {
        debug_assert_eq!(definition.id, self.definition.id, "policies for another queue");
        let args = definition.policies.queue_args(&definition.arguments);
        let expires_changed = args.expires_ms != self.args.expires_ms;
        // Levels are fixed when the queue is created; no policy can change them.
        self.args = crate::broker::queue_args::QueueArgs { max_priority: self.args.max_priority, ..args };
        self.definition = definition;
        if expires_changed {
            self.last_used_ms = clock::now_ms();
            self.expiry_requested = false;
        }
        self.drop_over_limit(effects, reader);
        self.dispatch(effects, reader);
    }

    /// The queue was used (consume, cancel, get, redeclare): `x-expires` starts again.
    pub fn touch(&mut self) {
        if self.args.expires_ms.is_some() {
            self.last_used_ms = clock::now_ms();
            self.expiry_requested = false;
        }
    }

    /// True once when an `x-expires` queue has had no consumer and no use for its lease.
    pub fn unused_for_too_long(&mut self, now_ms: u64) -> bool {
        let Some(expires_ms) = self.args.expires_ms else {
            return false;
        };
        if self.expiry_requested || !self.consumers.is_empty() || now_ms < self.last_used_ms + expires_ms {
            return false;
        }
        self.expiry_requested = true;
        true
    }
}
