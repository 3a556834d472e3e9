//! One queue's contents and consumers, owned by exactly one shard.
//!
//! A pure state machine: operations mutate the queue and push `Delivery`s (and other
//! effects) into a caller's vector; the shard layer sends them. It never touches sockets,
//! mailboxes or other queues. Messages keep their arrival sequence number, so a requeued
//! message goes back to its original position, as RabbitMQ does.
//!
//! The queue arguments it acts on (`queue_args`): message TTL (an expired message is never
//! delivered; it is dropped or dead-lettered when it reaches the head or when the shard's
//! sweep calls `expire`), length limits with their overflow mode, dead-lettering (an
//! `Effect::DeadLetter` the shard routes), the delivery limit (each message counts its returns
//! to the queue) and the unused-queue timer of `x-expires`.

use std::sync::Arc;

use super::dead_letter::DeathReason;
use super::error::{AmqpError, ACCESS_REFUSED, PRECONDITION_FAILED};
use super::priority::Levels;
use super::queue_args::{DeadLetterTarget, QueueArgs, QueueType};
use super::ready::{Entry, RecordReader};
use super::requests::GotMessage;
use super::sequence_table::SequenceTable;
use super::snapshot::QueueDef;
use crate::clock;
use crate::codec::message::Message;
use crate::ids::{ConsumerKey, ConsumerTag, Holder, QueueId};
use crate::limits::{CONSUMER_FLOW_WINDOW, EXPIRY_SWEEP_MESSAGES_MAX};
use crate::store::record::Mark;
use crate::store::StoredRef;

pub use super::payload::Payload;

#[derive(Debug)]
struct Unacked {
    entry: Entry,
    holder: Holder,
    /// The consumer it went to (with `holder`); None for a basic.get.
    consumer: Option<ConsumerKey>,
}

#[derive(Debug)]
struct Consumer {
    holder: Holder,
    key: ConsumerKey,
    tag: ConsumerTag,
    no_ack: bool,
    /// 0 means unlimited (basic.qos prefetch_count 0).
    prefetch_count: u32,
    unacked: u32,
    /// Deliveries this consumer's connection may still buffer before it reports them written.
    flow_credit: u32,
    /// `x-priority`: consumers of the highest priority with credit get messages first.
    priority: i32,
}

/// How a consumer asked to receive (basic.consume flags and arguments).
#[derive(Clone, Copy, Debug, Default)]
pub struct ConsumerSettings {
    /// Its channel's key for it (`ConsumerKey`): deliveries, acks and credits name it by that.
    pub key: ConsumerKey,
    pub no_ack: bool,
    pub exclusive: bool,
    /// 0 means unlimited (basic.qos prefetch_count 0).
    pub prefetch_count: u32,
    pub priority: i32,
}

impl Consumer {
    fn can_take(&self) -> bool {
        self.flow_credit > 0 && (self.no_ack || self.prefetch_count == 0 || self.unacked < self.prefetch_count)
    }
}

/// Why a delivered message goes back to its queue: a client's nack, reject or recover, or its
/// channel closing with it unacked. Classic queues treat both alike; a quorum queue appends the
/// first behind its ready messages (`Queue::requeue_settled`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Requeue {
    Settled,
    Returned,
}

/// A message on its way to a consumer's connection.
#[derive(Debug)]
pub struct Delivery {
    pub holder: Holder,
    pub consumer: ConsumerKey,
    pub queue: QueueId,
    pub sequence: u64,
    pub payload: Payload,
    pub redelivered: bool,
    pub no_ack: bool,
    /// The `x-delivery-count` header the delivery must carry (`QueueArgs::delivery_count_header`);
    /// None for none, the common case.
    pub delivery_count: Option<u32>,
}

/// Something the queue wants the shard to tell another party.
#[derive(Debug)]
pub enum Effect {
    Deliver(Delivery),
    /// The consumer was cancelled by the broker (queue deleted): send basic.cancel.
    ConsumerCancelled {
        holder: Holder,
        consumer_tag: ConsumerTag,
    },
    /// A stored message was delivered or removed: the store records it.
    Mark {
        reference: StoredRef,
        queue_sequence: u64,
        sequence: u64,
        mark: Mark,
    },
    /// The message died (rejected, expired, over the length limit) in a queue with a
    /// dead-letter exchange: the shard republishes it there.
    DeadLetter {
        payload: Payload,
        reason: DeathReason,
        queue: Arc<QueueDef>,
        target: Arc<DeadLetterTarget>,
    },
}

/// What the publisher's properties say about a message's place in the queue.
#[derive(Clone, Copy, Debug, Default)]
pub struct Arrival {
    /// The `expiration` property, in milliseconds.
    pub expiration_ms: Option<u64>,
    /// The `priority` property (0 without one); used by `x-max-priority` queues only.
    pub priority: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    Ack,
    Requeue,
    /// Rejected or nacked without requeue: dropped, or dead-lettered if the queue has a
    /// dead-letter exchange.
    Discard,
    /// Never written to the client (it waited for its channel's prefetch limit and the
    /// consumer was cancelled): back in the queue as it was, neither redelivered nor counted
    /// as a delivery.
    Unsent,
}

pub struct Queue {
    pub definition: Arc<QueueDef>,
    ready: Levels,
    unacked: SequenceTable<Unacked>,
    consumers: Vec<Consumer>,
    next_consumer: usize,
    next_sequence: u64,
    exclusive_consumer: bool,
    had_consumers: bool,
    args: QueueArgs,
    /// Sum of `Payload::counted_bytes` over the ready messages.
    ready_bytes: u64,
    /// Last consume, get or redeclare (`clock::now_ms`), for `x-expires`.
    last_used_ms: u64,
    /// The writer was asked to delete this unused queue; not asked again until it is used.
    expiry_requested: bool,
    /// Some message carried its own `expiration`: the sweep looks at this queue.
    had_message_deadlines: bool,
    /// Some consumer ever had an `x-priority`: selection compares priorities.
    consumer_priorities: bool,
    /// The message `enqueue` is handing to a consumer: not expired yet, whatever its TTL.
    arriving_sequence: Option<u64>,
    /// `next_sequence` at the last `pack_waiting`: the messages below it have waited since.
    pack_mark: u64,
    /// Counts since the queue was made on this shard (the management API's `message_stats`).
    stats: super::control::MessageStats,
    /// Messages `dispatch` handed to consumers (not basic.get): whether a deep queue's
    /// consumers are taking messages (`shard::pressure`).
    consumer_deliveries: u64,
    /// `x-message-deduplication`: the header values this queue took lately.
    dedup: Option<super::dedup::DedupCache>,
    /// A stream's log and cursors (`queue_stream.rs`); None for other queue types.
    stream: Option<Box<stream::Stream>>,
}

impl Queue {
    pub fn new(definition: Arc<QueueDef>) -> Queue {
        // The priority levels are fixed at creation: no policy sets `max-priority`.
        let args = definition.policies.queue_args(&definition.arguments);
        Queue {
            ready: Levels::new(args.max_priority),
            unacked: SequenceTable::default(),
            consumers: Vec::new(),
            next_consumer: 0,
            next_sequence: 1,
            exclusive_consumer: false,
            had_consumers: false,
            args,
            ready_bytes: 0,
            last_used_ms: clock::now_ms(),
            expiry_requested: false,
            had_message_deadlines: false,
            consumer_priorities: false,
            arriving_sequence: None,
            pack_mark: 1,
            stats: super::control::MessageStats::default(),
            consumer_deliveries: 0,
            stream: None,
            dedup: super::dedup::DedupSettings::from_arguments(&definition.arguments)
                .map(super::dedup::DedupCache::new),
            definition,
        }
    }

    /// Whether a deduplicating queue drops `message` as a repeat of one it took lately (see
    /// `dedup.rs`); a message it takes is remembered.
    pub fn is_duplicate(&mut self, message: &Message) -> bool {
        self.dedup.as_mut().is_some_and(|cache| cache.is_duplicate(message, clock::now_ms()))
    }

    /// Messages published to, delivered or got from, acknowledged in and redelivered by this
    /// queue since it was made on this shard.
    pub fn stats(&self) -> super::control::MessageStats {
        self.stats
    }

    /// Messages handed to consumers so far (basic.get not counted).
    pub fn consumer_deliveries(&self) -> u64 {
        self.consumer_deliveries
    }

    pub fn message_count(&self) -> u32 {
        if let Some(count) = self.stream_message_count() {
            return count;
        }
        u32::try_from(self.ready.len()).unwrap_or(u32::MAX)
    }

    /// Messages delivered and not yet acknowledged.
    pub fn unacked_count(&self) -> u32 {
        u32::try_from(self.unacked.len()).unwrap_or(u32::MAX)
    }

    /// Bytes of the ready messages' bodies and properties.
    pub fn ready_bytes(&self) -> u64 {
        self.ready_bytes
    }

    pub fn consumer_count(&self) -> u32 {
        u32::try_from(self.consumers.len()).unwrap_or(u32::MAX)
    }

    /// The queue's consumers as an operator lists them (`/api/consumers`).
    pub fn consumer_infos(&self) -> Vec<super::control::ConsumerInfo> {
        self.consumers
            .iter()
            .map(|consumer| super::control::ConsumerInfo {
                vhost: self.definition.vhost.clone(),
                queue: self.definition.name.clone(),
                tag: consumer.tag.to_string(),
                holder: consumer.holder,
                no_ack: consumer.no_ack,
                prefetch_count: consumer.prefetch_count,
                exclusive: self.exclusive_consumer,
                priority: consumer.priority,
            })
            .collect()
    }

    /// The position the next enqueued message will get (stored with persistent messages).
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    pub fn ready_count(&self) -> usize {
        self.ready.len()
    }

    /// Adds a published message.
    pub fn enqueue(
        &mut self,
        payload: Payload,
        arrival: Arrival,
        effects: &mut Vec<Effect>,
        reader: &dyn RecordReader,
    ) {
        let priority = self.ready.level_of(arrival.priority);
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.stats.publish += 1;
        self.ready_bytes += payload.counted_bytes();
        self.had_message_deadlines |= arrival.expiration_ms.is_some();
        let expires_at_ms = self.ttl_ms(arrival).map(|ttl| clock::now_ms().saturating_add(ttl));
        match (payload, expires_at_ms, priority) {
            (Payload::Stored { reference, cached: None }, None, 0) => self.ready.push_stored(sequence, reference),
            (payload, expires_at_ms, priority) => {
                let entry = Entry { sequence, payload, redelivered: false, expires_at_ms, priority, delivery_count: 0 };
                self.ready.push_back(entry)
            }
        }
        if self.args.max_length.is_some() || self.args.max_length_bytes.is_some() {
            self.drop_over_limit(effects, reader);
        }
        self.arriving_sequence = Some(sequence);
        self.dispatch(effects, reader);
        self.arriving_sequence = None;
        // Not taken at once and already due (a TTL of 0): it goes now, as RabbitMQ drops or
        // dead-letters it, rather than at the next sweep.
        if let Some(deadline) = expires_at_ms.filter(|deadline| *deadline <= clock::now_ms()) {
            self.expire(deadline, EXPIRY_SWEEP_MESSAGES_MAX, effects, reader);
        }
    }

    /// How long a message may stay: the shorter of `x-message-ttl` and its `expiration`.
    fn ttl_ms(&self, arrival: Arrival) -> Option<u64> {
        match (self.args.message_ttl_ms, arrival.expiration_ms) {
            (Some(queue_ttl), Some(own)) => Some(queue_ttl.min(own)),
            (queue_ttl, own) => queue_ttl.or(own),
        }
    }

    /// Classic, quorum or stream (`x-queue-type`).
    pub fn queue_type(&self) -> QueueType {
        self.args.queue_type
    }

    /// Whether this queue keeps `message` in the store: a durable queue keeps persistent
    /// messages, a quorum queue every message (as RabbitMQ's quorum queues do).
    pub fn stores(&self, message: &Message) -> bool {
        self.definition.durable && (self.args.queue_type != QueueType::Classic || message.persistent())
    }

    /// What the store keeps of a message's place in this queue, so a restart restores it:
    /// its wall-clock deadline (Unix milliseconds, 0 without one) and its priority level.
    pub fn stored_attributes(&self, arrival: Arrival) -> (u64, u8) {
        let expires_at_unix_ms = self.ttl_ms(arrival).map_or(0, |ttl| clock::unix_ms().saturating_add(ttl).max(1));
        (expires_at_unix_ms, self.ready.level_of(arrival.priority))
    }

    /// Whether a message that will not be stored for durability should be paged out to the
    /// log rather than kept in memory: the queue is lazy, or holds `threshold` ready
    /// messages already.
    pub fn pages_out(&self, threshold: usize) -> bool {
        self.args.lazy || self.ready_count() >= threshold
    }

    /// Adds the stored bytes of the ready messages per segment (compaction's census).
    pub fn stored_bytes(&self, totals: &mut super::ready::StoredBytes) {
        self.ready.stored_bytes(totals);
    }

    /// Copies the ready messages stored in `victim` elsewhere, within `budget_bytes`; false if
    /// some are left. Unacked messages stay where they are: they go when acked, or come back
    /// to the ready list (and a later pass) when requeued.
    pub fn relocate(
        &mut self,
        victim: &Arc<crate::store::segment::Segment>,
        reader: &dyn RecordReader,
        budget_bytes: &mut u64,
        copy: &mut super::ready::Copier<'_>,
    ) -> bool {
        self.ready.relocate(victim, reader, self.definition.id.sequence(), budget_bytes, copy)
    }

    /// Puts back the messages recovered from the store: `ready` in queue order, and those of
    /// a priority level above 0 (single entries) to their levels. Their bytes count against
    /// `x-max-length-bytes` (as their record lengths, which is what leaving counts too), and
    /// recovered deadlines make the sweep look at the queue.
    pub fn restore(&mut self, recovered: crate::broker::recovery::RecoveredQueue) {
        self.had_message_deadlines |= recovered.has_deadlines;
        self.ready.restore(recovered.ready);
        for entry in recovered.prioritized {
            self.ready.insert_by_sequence(entry);
        }
        self.next_sequence = self.next_sequence.max(recovered.next_sequence);
        let mut stored = super::ready::StoredBytes::new();
        self.ready.stored_bytes(&mut stored);
        self.ready_bytes = stored.values().map(|(_, bytes)| bytes).sum();
    }

    /// Marks a stored message's record (acked, delivered) for recovery; a paged one is never
    /// recovered, so it needs none.
    fn mark(&self, entry: &Entry, mark: Mark, effects: &mut Vec<Effect>) {
        let stored = entry.payload.stored().filter(|reference| reference.kind != crate::store::record::KIND_PAGED);
        self.mark_reference(stored.cloned(), entry.sequence, mark, effects);
    }

    /// `mark` for an entry that leaves the queue: its reference moves into the mark.
    fn mark_leaving(&self, entry: Entry, mark: Mark, effects: &mut Vec<Effect>) {
        let reference = match entry.payload {
            Payload::Stored { reference, .. } => Some(reference),
            Payload::Memory(_) => None,
        };
        self.mark_reference(reference, entry.sequence, mark, effects);
    }

    fn mark_reference(&self, reference: Option<StoredRef>, sequence: u64, mark: Mark, effects: &mut Vec<Effect>) {
        let stored = reference.filter(|reference| reference.kind != crate::store::record::KIND_PAGED);
        if let Some(reference) = stored {
            effects.push(Effect::Mark { reference, queue_sequence: self.definition.id.sequence(), sequence, mark });
        }
    }

    /// Hands ready messages to consumers with credit, round robin.
    pub fn dispatch(&mut self, effects: &mut Vec<Effect>, reader: &dyn RecordReader) {
        if self.stream.is_some() {
            return self.dispatch_stream(effects);
        }
        while !self.ready.is_empty() && !self.consumers.is_empty() {
            let Some(index) = self.next_consumer_with_credit() else {
                return;
            };
            let Some(entry) = self.pop_ready(effects, reader) else {
                return;
            };
            self.stats.deliver_get += 1;
            self.consumer_deliveries += 1;
            self.stats.redeliver += u64::from(entry.redelivered);
            let delivery_count = self.args.delivery_count_header(entry.delivery_count, false);
            let (sequence, redelivered) = (entry.sequence, entry.redelivered);
            // The delivery carries the message alone when it is in memory: the stored reference
            // stays with the unacked entry, or moves into the removal mark of a no-ack one.
            let payload = if self.consumers[index].no_ack {
                let (payload, reference) = entry.payload.split_for_delivery();
                self.mark_reference(reference, sequence, Mark::Removed, effects);
                payload
            } else {
                self.mark(&entry, Mark::Delivered, effects);
                let payload = entry.payload.for_delivery();
                let consumer = &mut self.consumers[index];
                consumer.unacked += 1;
                let unacked = Unacked { entry, holder: consumer.holder, consumer: Some(consumer.key) };
                let earlier = self.unacked.insert(sequence, unacked);
                // A message is either ready or unacked, once: a second unacked entry for the
                // same sequence would deliver it twice and lose the first holder's ack.
                debug_assert!(earlier.is_none(), "message delivered again while still unacked");
                payload
            };
            let consumer = &mut self.consumers[index];
            debug_assert!(consumer.flow_credit > 0, "a delivery to a consumer without flow credit");
            consumer.flow_credit -= 1;
            let delivery = Delivery {
                holder: consumer.holder,
                consumer: consumer.key,
                queue: self.definition.id,
                sequence,
                payload,
                redelivered,
                no_ack: consumer.no_ack,
                delivery_count,
            };
            effects.push(Effect::Deliver(delivery));
        }
    }

    /// Round robin among the consumers with credit of the highest priority; with
    /// `x-single-active-consumer`, only the oldest consumer.
    fn next_consumer_with_credit(&mut self) -> Option<usize> {
        if self.args.single_active_consumer {
            return self.consumers.first().is_some_and(Consumer::can_take).then_some(0);
        }
        let count = self.consumers.len();
        let mut best: Option<usize> = None;
        for offset in 0..count {
            let index = (self.next_consumer + offset) % count;
            if !self.consumers[index].can_take() {
                continue;
            }
            if !self.consumer_priorities {
                best = Some(index);
                break;
            }
            if best.is_none_or(|best| self.consumers[index].priority > self.consumers[best].priority) {
                best = Some(index);
            }
        }
        let index = best?;
        self.next_consumer = (index + 1) % count;
        Some(index)
    }

    pub fn add_consumer(
        &mut self,
        holder: Holder,
        tag: ConsumerTag,
        settings: ConsumerSettings,
    ) -> Result<(), AmqpError> {
        let ConsumerSettings { key, no_ack, exclusive, prefetch_count, priority } = settings;
        let in_exclusive_use = || {
            AmqpError::new(
                ACCESS_REFUSED,
                format!("queue '{}' in vhost '{}' in exclusive use", self.definition.name, self.definition.vhost),
            )
        };
        // A single-active-consumer queue refuses every exclusive consume, even while it has no
        // consumer, as RabbitMQ does (exclusive_consume_unavailable).
        if self.exclusive_consumer || (exclusive && (!self.consumers.is_empty() || self.args.single_active_consumer)) {
            return Err(in_exclusive_use());
        }
        self.exclusive_consumer = exclusive;
        self.had_consumers = true;
        self.touch();
        self.stream_consumer_added(holder, &tag);
        self.consumers.push(Consumer {
            holder,
            key,
            tag,
            no_ack,
            prefetch_count,
            unacked: 0,
            flow_credit: CONSUMER_FLOW_WINDOW,
            priority,
        });
        self.consumer_priorities |= priority != 0;
        Ok(())
    }

    /// Removes a consumer; its unacked messages stay with its channel until settled.
    /// Returns true if the queue should now be auto-deleted.
    pub fn cancel_consumer(&mut self, holder: Holder, tag: &str) -> bool {
        let before = self.consumers.len();
        self.consumers.retain(|consumer| !(consumer.holder == holder && &*consumer.tag == tag));
        if self.consumers.len() != before {
            self.exclusive_consumer = false;
            self.next_consumer = 0;
            self.touch();
        }
        self.stream_consumers_changed();
        self.should_auto_delete()
    }

    pub fn should_auto_delete(&self) -> bool {
        self.definition.auto_delete && self.had_consumers && self.consumers.is_empty()
    }

    /// The channel is gone: its consumers are removed and its unacked messages requeued.
    /// Returns true if the queue should now be auto-deleted.
    pub fn channel_gone(&mut self, holder: Holder, effects: &mut Vec<Effect>, reader: &dyn RecordReader) -> bool {
        let before = self.consumers.len();
        self.consumers.retain(|consumer| consumer.holder != holder);
        if self.consumers.len() != before {
            self.exclusive_consumer = false;
            self.next_consumer = 0;
        }
        if self.stream.is_some() {
            // Its deliveries need no requeue: the stream keeps every message anyway.
            self.stream_consumers_changed();
            return self.should_auto_delete();
        }
        let sequences: Vec<u64> =
            self.unacked.iter().filter(|(_, unacked)| unacked.holder == holder).map(|(sequence, _)| sequence).collect();
        // Returned, not requeued: a quorum queue puts them back in front too.
        self.settle_as(holder, &sequences, Settle::Requeue, Requeue::Returned, effects, reader);
        self.should_auto_delete()
    }

    /// Applies ack, requeue or discard to the given messages of a channel. Unknown sequence
    /// numbers (already settled, e.g. requeued when the channel closed) are ignored.
    pub fn settle(
        &mut self,
        holder: Holder,
        sequences: &[u64],
        action: Settle,
        effects: &mut Vec<Effect>,
        reader: &dyn RecordReader,
    ) {
        self.settle_as(holder, sequences, action, Requeue::Settled, effects, reader);
    }

    fn settle_as(
        &mut self,
        holder: Holder,
        sequences: &[u64],
        action: Settle,
        requeue: Requeue,
        effects: &mut Vec<Effect>,
        reader: &dyn RecordReader,
    ) {
        if self.stream.is_some() {
            return self.settle_stream(holder, sequences, effects);
        }
        for sequence in sequences {
            let Some(unacked) = self.unacked.remove(*sequence) else {
                continue;
            };
            if unacked.holder != holder {
                self.unacked.insert(*sequence, unacked);
                continue;
            }
            if let Some(key) = unacked.consumer {
                if let Some(consumer) =
                    self.consumers.iter_mut().find(|consumer| consumer.holder == holder && consumer.key == key)
                {
                    debug_assert!(consumer.unacked > 0, "an ack for a consumer that holds no unacked message");
                    consumer.unacked = consumer.unacked.saturating_sub(1);
                }
            }
            match action {
                Settle::Requeue if requeue == Requeue::Returned => self.requeue(unacked.entry, effects),
                Settle::Requeue => self.requeue_settled(unacked.entry, effects),
                Settle::Unsent => self.unsend(unacked.entry),
                Settle::Discard => self.dead(unacked.entry, DeathReason::Rejected, effects),
                Settle::Ack => {
                    self.stats.ack += 1;
                    self.mark_leaving(unacked.entry, Mark::Removed, effects)
                }
            }
        }
        // Requeued messages count against the length limit again: with drop-head the oldest
        // ready ones go until the queue fits, as RabbitMQ does after a requeue (maybe_drop_head).
        if matches!(action, Settle::Requeue | Settle::Unsent)
            && (self.args.max_length.is_some() || self.args.max_length_bytes.is_some())
        {
            self.drop_over_limit(effects, reader);
        }
        self.dispatch(effects, reader);
    }

    /// A consumer's prefetch limit changes (its channel's global basic.qos did): a higher one
    /// lets more go to it at once.
    pub fn set_prefetch(
        &mut self,
        holder: Holder,
        tag: &str,
        prefetch_count: u32,
        effects: &mut Vec<Effect>,
        reader: &dyn RecordReader,
    ) {
        if let Some(consumer) =
            self.consumers.iter_mut().find(|consumer| consumer.holder == holder && &*consumer.tag == tag)
        {
            consumer.prefetch_count = prefetch_count;
            self.dispatch(effects, reader);
        }
    }

    /// The consumer's connection wrote `count` deliveries to its socket: more may follow.
    pub fn credit(
        &mut self,
        holder: Holder,
        key: ConsumerKey,
        count: u32,
        effects: &mut Vec<Effect>,
        reader: &dyn RecordReader,
    ) {
        if let Some(consumer) =
            self.consumers.iter_mut().find(|consumer| consumer.holder == holder && consumer.key == key)
        {
            consumer.flow_credit = consumer.flow_credit.saturating_add(count).min(CONSUMER_FLOW_WINDOW);
            self.dispatch(effects, reader);
        }
    }

    /// basic.get: the head message, tracked as unacked unless `no_ack`.
    pub fn get(
        &mut self,
        holder: Holder,
        no_ack: bool,
        effects: &mut Vec<Effect>,
        reader: &dyn RecordReader,
    ) -> Option<GotMessage> {
        self.touch();
        let entry = self.pop_ready(effects, reader)?;
        self.mark(&entry, if no_ack { Mark::Removed } else { Mark::Delivered }, effects);
        self.stats.deliver_get += 1;
        self.stats.redeliver += u64::from(entry.redelivered);
        let got = GotMessage {
            queue: self.definition.id,
            sequence: entry.sequence,
            payload: entry.payload.clone(),
            redelivered: entry.redelivered,
            message_count: self.message_count(),
            delivery_count: self.args.delivery_count_header(entry.delivery_count, true),
        };
        if !no_ack {
            self.unacked.insert(entry.sequence, Unacked { entry, holder, consumer: None });
        }
        Some(got)
    }

    /// Drops the ready messages (unacked ones stay, as in RabbitMQ); returns how many.
    pub fn purge(&mut self, effects: &mut Vec<Effect>, reader: &dyn RecordReader) -> u32 {
        let count = self.message_count();
        while let Some(entry) = self.ready.pop_front(reader, self.definition.id.sequence()) {
            self.mark_leaving(entry, Mark::Removed, effects);
        }
        self.ready_bytes = 0;
        count
    }

    pub fn check_delete(&self, if_unused: bool, if_empty: bool) -> Result<(), AmqpError> {
        let (name, vhost) = (&self.definition.name, &self.definition.vhost);
        // RabbitMQ checks emptiness first.
        if if_empty && !self.ready.is_empty() {
            return Err(AmqpError::new(PRECONDITION_FAILED, format!("queue '{name}' in vhost '{vhost}' not empty")));
        }
        if if_unused && !self.consumers.is_empty() {
            return Err(AmqpError::new(PRECONDITION_FAILED, format!("queue '{name}' in vhost '{vhost}' in use")));
        }
        Ok(())
    }

    /// Deletes the queue: every consumer is told, every message dropped. Returns the number of
    /// ready messages, which queue.delete-ok reports, and the tags of the consumers of the
    /// `deleting` channel: those are not told here but after delete-ok, as RabbitMQ's
    /// channel, busy with the delete, sends its own cancels after the answer.
    pub fn delete(&mut self, deleting: Option<Holder>, effects: &mut Vec<Effect>) -> (u32, Vec<ConsumerTag>) {
        // A stream's delete-ok reports 0 messages, as RabbitMQ 3.10's does.
        let count = if self.stream.is_some() { 0 } else { self.message_count() };
        self.remove_stream();
        let mut own = Vec::new();
        for consumer in self.consumers.drain(..) {
            if Some(consumer.holder) == deleting {
                own.push(consumer.tag);
            } else {
                effects.push(Effect::ConsumerCancelled { holder: consumer.holder, consumer_tag: consumer.tag });
            }
        }
        self.ready.clear();
        self.ready_bytes = 0;
        self.unacked.clear();
        (count, own)
    }
}

#[path = "queue_limits.rs"]
mod limits;

#[path = "queue_stream.rs"]
mod stream;

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
