//! One queue's contents and consumers, owned by exactly one shard.
//!
//! A pure state machine: operations mutate the queue and push `Delivery`s (and other
//! effects) into a caller's vector; the shard layer sends them. It never touches sockets,
//! mailboxes or other queues. Messages keep their arrival sequence number, so a requeued
//! message goes back to its original position, as RabbitMQ does.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::{AmqpError, ACCESS_REFUSED, PRECONDITION_FAILED};
use super::ids::{ConsumerTag, Holder, QueueId};
use super::message::Message;
use super::ready::{Entry, ReadyList, RecordReader};
use super::requests::GotMessage;
use super::snapshot::QueueDef;
use crate::limits::CONSUMER_FLOW_WINDOW;
use crate::store::record::Mark;
use crate::store::StoredRef;

/// A queued message: in memory (transient, or not durable), or stored in the shard's log
/// with an optional in-memory copy kept while the queue is short.
#[derive(Clone, Debug)]
pub enum Payload {
    Memory(Arc<Message>),
    Stored { reference: StoredRef, cached: Option<Arc<Message>> },
}

impl Payload {
    /// The message, if in memory; a stored message without a copy is read by the shard.
    pub fn message(&self) -> Option<&Arc<Message>> {
        match self {
            Payload::Memory(message) => Some(message),
            Payload::Stored { cached, .. } => cached.as_ref(),
        }
    }

    pub fn stored(&self) -> Option<&StoredRef> {
        match self {
            Payload::Memory(_) => None,
            Payload::Stored { reference, .. } => Some(reference),
        }
    }
}

#[derive(Debug)]
struct Unacked {
    entry: Entry,
    holder: Holder,
    consumer_tag: Option<ConsumerTag>,
}

#[derive(Debug)]
struct Consumer {
    holder: Holder,
    tag: ConsumerTag,
    no_ack: bool,
    /// 0 means unlimited (basic.qos prefetch_count 0).
    prefetch_count: u32,
    unacked: u32,
    /// Deliveries this consumer's connection may still buffer before it reports them written.
    flow_credit: u32,
}

impl Consumer {
    fn can_take(&self) -> bool {
        self.flow_credit > 0 && (self.no_ack || self.prefetch_count == 0 || self.unacked < self.prefetch_count)
    }
}

/// A message on its way to a consumer's connection.
#[derive(Debug)]
pub struct Delivery {
    pub holder: Holder,
    pub consumer_tag: ConsumerTag,
    pub queue: QueueId,
    pub sequence: u64,
    pub payload: Payload,
    pub redelivered: bool,
    pub no_ack: bool,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    Ack,
    Requeue,
    /// Rejected or nacked without requeue: dropped (dead-lettering comes with its issue).
    Discard,
}

pub struct Queue {
    pub definition: Arc<QueueDef>,
    ready: ReadyList,
    unacked: HashMap<u64, Unacked>,
    consumers: Vec<Consumer>,
    next_consumer: usize,
    next_sequence: u64,
    exclusive_consumer: bool,
    had_consumers: bool,
}

impl Queue {
    pub fn new(definition: Arc<QueueDef>) -> Queue {
        Queue {
            definition,
            ready: ReadyList::default(),
            unacked: HashMap::new(),
            consumers: Vec::new(),
            next_consumer: 0,
            next_sequence: 1,
            exclusive_consumer: false,
            had_consumers: false,
        }
    }

    pub fn id(&self) -> QueueId {
        self.definition.id
    }

    pub fn message_count(&self) -> u32 {
        u32::try_from(self.ready.len()).unwrap_or(u32::MAX)
    }

    pub fn consumer_count(&self) -> u32 {
        u32::try_from(self.consumers.len()).unwrap_or(u32::MAX)
    }

    /// The position the next enqueued message will get (stored with persistent messages).
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    pub fn ready_count(&self) -> usize {
        self.ready.len()
    }

    pub fn enqueue(&mut self, payload: Payload, effects: &mut Vec<Effect>, reader: &dyn RecordReader) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        match payload {
            Payload::Stored { reference, cached: None } => self.ready.push_stored(sequence, reference),
            payload => self.ready.push_back(Entry { sequence, payload, redelivered: false }),
        }
        self.dispatch(effects, reader);
    }

    /// Puts back the messages recovered from the store.
    pub fn restore(&mut self, ready: ReadyList, next_sequence: u64) {
        self.ready = ready;
        self.next_sequence = self.next_sequence.max(next_sequence);
    }

    fn mark(&self, entry: &Entry, mark: Mark, effects: &mut Vec<Effect>) {
        if let Some(reference) = entry.payload.stored() {
            effects.push(Effect::Mark {
                reference: reference.clone(),
                queue_sequence: self.definition.id.sequence(),
                sequence: entry.sequence,
                mark,
            });
        }
    }

    /// Hands ready messages to consumers with credit, round robin.
    pub fn dispatch(&mut self, effects: &mut Vec<Effect>, reader: &dyn RecordReader) {
        while !self.ready.is_empty() && !self.consumers.is_empty() {
            let Some(index) = self.next_consumer_with_credit() else {
                return;
            };
            let Some(entry) = self.ready.pop_front(reader, self.definition.id.sequence()) else {
                return;
            };
            let mark = if self.consumers[index].no_ack { Mark::Removed } else { Mark::Delivered };
            self.mark(&entry, mark, effects);
            let consumer = &mut self.consumers[index];
            consumer.flow_credit -= 1;
            let delivery = Delivery {
                holder: consumer.holder,
                consumer_tag: consumer.tag.clone(),
                queue: self.definition.id,
                sequence: entry.sequence,
                payload: entry.payload.clone(),
                redelivered: entry.redelivered,
                no_ack: consumer.no_ack,
            };
            if !consumer.no_ack {
                consumer.unacked += 1;
                let unacked = Unacked { entry, holder: consumer.holder, consumer_tag: Some(consumer.tag.clone()) };
                self.unacked.insert(unacked.entry.sequence, unacked);
            }
            effects.push(Effect::Deliver(delivery));
        }
    }

    fn next_consumer_with_credit(&mut self) -> Option<usize> {
        let count = self.consumers.len();
        for offset in 0..count {
            let index = (self.next_consumer + offset) % count;
            if self.consumers[index].can_take() {
                self.next_consumer = (index + 1) % count;
                return Some(index);
            }
        }
        None
    }

    pub fn add_consumer(
        &mut self,
        holder: Holder,
        tag: ConsumerTag,
        no_ack: bool,
        exclusive: bool,
        prefetch_count: u32,
    ) -> Result<(), AmqpError> {
        let in_exclusive_use = || {
            AmqpError::new(
                ACCESS_REFUSED,
                format!("queue '{}' in vhost '{}' in exclusive use", self.definition.name, self.definition.vhost),
            )
        };
        if self.exclusive_consumer || (exclusive && !self.consumers.is_empty()) {
            return Err(in_exclusive_use());
        }
        self.exclusive_consumer = exclusive;
        self.had_consumers = true;
        self.consumers.push(Consumer {
            holder,
            tag,
            no_ack,
            prefetch_count,
            unacked: 0,
            flow_credit: CONSUMER_FLOW_WINDOW,
        });
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
        }
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
        let sequences: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, unacked)| unacked.holder == holder)
            .map(|(sequence, _)| *sequence)
            .collect();
        self.settle(holder, &sequences, Settle::Requeue, effects, reader);
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
        for sequence in sequences {
            let Some(unacked) = self.unacked.remove(sequence) else {
                continue;
            };
            if unacked.holder != holder {
                self.unacked.insert(*sequence, unacked);
                continue;
            }
            if let Some(tag) = &unacked.consumer_tag {
                if let Some(consumer) =
                    self.consumers.iter_mut().find(|consumer| consumer.holder == holder && &consumer.tag == tag)
                {
                    consumer.unacked = consumer.unacked.saturating_sub(1);
                }
            }
            if action == Settle::Requeue {
                self.requeue(unacked.entry);
            } else {
                self.mark(&unacked.entry, Mark::Removed, effects);
            }
        }
        self.dispatch(effects, reader);
    }

    fn requeue(&mut self, mut entry: Entry) {
        entry.redelivered = true;
        self.ready.insert_by_sequence(entry);
    }

    /// The consumer's connection wrote `count` deliveries to its socket: more may follow.
    pub fn credit(
        &mut self,
        holder: Holder,
        tag: &str,
        count: u32,
        effects: &mut Vec<Effect>,
        reader: &dyn RecordReader,
    ) {
        if let Some(consumer) =
            self.consumers.iter_mut().find(|consumer| consumer.holder == holder && &*consumer.tag == tag)
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
        let entry = self.ready.pop_front(reader, self.definition.id.sequence())?;
        self.mark(&entry, if no_ack { Mark::Removed } else { Mark::Delivered }, effects);
        let got = GotMessage {
            queue: self.definition.id,
            sequence: entry.sequence,
            payload: entry.payload.clone(),
            redelivered: entry.redelivered,
            message_count: self.message_count(),
        };
        if !no_ack {
            self.unacked.insert(entry.sequence, Unacked { entry, holder, consumer_tag: None });
        }
        Some(got)
    }

    /// Drops the ready messages (unacked ones stay, as in RabbitMQ); returns how many.
    pub fn purge(&mut self, effects: &mut Vec<Effect>, reader: &dyn RecordReader) -> u32 {
        let count = self.message_count();
        while let Some(entry) = self.ready.pop_front(reader, self.definition.id.sequence()) {
            self.mark(&entry, Mark::Removed, effects);
        }
        count
    }

    pub fn check_delete(&self, if_unused: bool, if_empty: bool) -> Result<(), AmqpError> {
        let (name, vhost) = (&self.definition.name, &self.definition.vhost);
        if if_unused && !self.consumers.is_empty() {
            return Err(AmqpError::new(PRECONDITION_FAILED, format!("queue '{name}' in vhost '{vhost}' in use")));
        }
        if if_empty && !self.ready.is_empty() {
            return Err(AmqpError::new(PRECONDITION_FAILED, format!("queue '{name}' in vhost '{vhost}' not empty")));
        }
        Ok(())
    }

    /// Deletes the queue: every consumer is told, every message dropped. Returns the number of
    /// ready messages, which queue.delete-ok reports.
    pub fn delete(&mut self, effects: &mut Vec<Effect>) -> u32 {
        let count = self.message_count();
        for consumer in self.consumers.drain(..) {
            effects.push(Effect::ConsumerCancelled { holder: consumer.holder, consumer_tag: consumer.tag });
        }
        self.ready.clear();
        self.unacked.clear();
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::ids::ConnId;
    use crate::broker::ready::NoRecords;
    use amq_protocol::types::FieldTable;
    use bytes::Bytes;

    fn queue() -> Queue {
        Queue::new(Arc::new(QueueDef {
            id: QueueId::new(0, 1),
            vhost: "/".into(),
            name: "q".into(),
            durable: false,
            exclusive_owner: None,
            auto_delete: false,
            arguments: FieldTable::default(),
        }))
    }

    fn message(body: &'static [u8]) -> Payload {
        Payload::Memory(Arc::new(Message {
            exchange: Bytes::new(),
            routing_key: Bytes::from_static(b"q"),
            properties: Bytes::from_static(&[0, 0]),
            body: Bytes::from_static(body),
        }))
    }

    fn holder(channel: u16) -> Holder {
        Holder { conn: ConnId { shard: 0, local: 1 }, channel, incarnation: 0 }
    }

    fn delivered(effects: &mut Vec<Effect>) -> Vec<(u16, u64, bool)> {
        effects
            .drain(..)
            .filter_map(|effect| match effect {
                Effect::Deliver(delivery) => Some((delivery.holder.channel, delivery.sequence, delivery.redelivered)),
                Effect::ConsumerCancelled { .. } | Effect::Mark { .. } => None,
            })
            .collect()
    }

    #[test]
    fn prefetch_limits_unacked_deliveries() {
        let mut queue = queue();
        let mut effects = Vec::new();
        queue.add_consumer(holder(1), "c".into(), false, false, 2).expect("consume");
        for _ in 0..5 {
            queue.enqueue(message(b"x"), &mut effects, &NoRecords);
        }
        assert_eq!(delivered(&mut effects).len(), 2);
        queue.settle(holder(1), &[1], Settle::Ack, &mut effects, &NoRecords);
        assert_eq!(delivered(&mut effects), vec![(1, 3, false)]);
    }

    #[test]
    fn round_robin_between_consumers() {
        let mut queue = queue();
        let mut effects = Vec::new();
        queue.add_consumer(holder(1), "a".into(), true, false, 0).expect("consume");
        queue.add_consumer(holder(2), "b".into(), true, false, 0).expect("consume");
        for _ in 0..4 {
            queue.enqueue(message(b"x"), &mut effects, &NoRecords);
        }
        let channels: Vec<u16> = delivered(&mut effects).iter().map(|(channel, _, _)| *channel).collect();
        assert_eq!(channels, vec![1, 2, 1, 2]);
    }

    #[test]
    fn requeue_restores_original_position_with_redelivered() {
        let mut queue = queue();
        let mut effects = Vec::new();
        for _ in 0..3 {
            queue.enqueue(message(b"x"), &mut effects, &NoRecords);
        }
        let first = queue.get(holder(1), false, &mut effects, &NoRecords).expect("first");
        queue.settle(holder(1), &[first.sequence], Settle::Requeue, &mut effects, &NoRecords);
        let again = queue.get(holder(1), true, &mut effects, &NoRecords).expect("again");
        assert_eq!(again.sequence, first.sequence);
        assert!(again.redelivered);
        assert_eq!(queue.message_count(), 2);
    }

    #[test]
    fn channel_gone_requeues_to_other_consumer() {
        let mut queue = queue();
        let mut effects = Vec::new();
        queue.add_consumer(holder(1), "a".into(), false, false, 1).expect("consume");
        queue.enqueue(message(b"x"), &mut effects, &NoRecords);
        assert_eq!(delivered(&mut effects), vec![(1, 1, false)]);
        queue.add_consumer(holder(2), "b".into(), false, false, 1).expect("consume");
        queue.channel_gone(holder(1), &mut effects, &NoRecords);
        assert_eq!(delivered(&mut effects), vec![(2, 1, true)]);
    }

    #[test]
    fn exclusive_consumer_blocks_others() {
        let mut queue = queue();
        queue.add_consumer(holder(1), "a".into(), false, true, 0).expect("consume");
        let error = queue.add_consumer(holder(2), "b".into(), false, false, 0).expect_err("exclusive");
        assert_eq!(error.reply_code, ACCESS_REFUSED);
    }

    #[test]
    fn flow_credit_bounds_no_ack_deliveries() {
        let mut queue = queue();
        let mut effects = Vec::new();
        queue.add_consumer(holder(1), "a".into(), true, false, 0).expect("consume");
        for _ in 0..(CONSUMER_FLOW_WINDOW + 10) {
            queue.enqueue(message(b"x"), &mut effects, &NoRecords);
        }
        assert_eq!(delivered(&mut effects).len(), CONSUMER_FLOW_WINDOW as usize);
        queue.credit(holder(1), "a", 5, &mut effects, &NoRecords);
        assert_eq!(delivered(&mut effects).len(), 5);
    }
}
