//! The owner side of queues: messages addressed to a queue this shard owns.
//!
//! Looks the queue up (catching up with the writer when the queue's creation has not been
//! read yet), applies the operation through `broker::queue`, and sends the effects.

use std::sync::Arc;

use super::Shard;
use crate::broker::delayed::HandoverCopy;
use crate::broker::error::{AmqpError, INTERNAL_ERROR, NOT_FOUND, PRECONDITION_FAILED};
use crate::broker::messages::ConfirmTo;
use crate::broker::messages::{ReplyTo, ShardMsg};
use crate::broker::queue::Payload;
use crate::broker::queue::{Arrival, ConsumerSettings, Effect, Queue};
use crate::broker::queue_args::QueueType;
use crate::broker::ready::RecordReader;
use crate::broker::requests::{QueueRequest, ReplyBody};
use crate::broker::snapshot::QueueDef;
use crate::codec::message::Message;
use crate::ids::Holder;
use crate::ids::QueueId;
use crate::limits::{PAGE_OUT_READY_MESSAGES, STORED_CACHE_MESSAGES};
use crate::store::handover::StoredId;
use crate::store::record::MessageRecord;
use crate::store::StoredRef;

/// What `publish_to_queue`'s first look at the queue did with a message.
enum FirstLook {
    Duplicate,
    Enqueued,
}

impl Shard {
    pub(super) fn handle_queue_message(&self, message: ShardMsg) {
        match message {
            ShardMsg::CreateQueue { definition, reply } => self.create_queue(definition, reply),
            ShardMsg::Publish { queue, message, publisher, publish_sequence } => {
                self.publish_to_queue(queue, message, publisher, publish_sequence, None)
            }
            ShardMsg::Handover(copy) => {
                let HandoverCopy { queue, message, publisher, publish_sequence, held } = *copy;
                self.publish_to_queue(queue, message, publisher, Some(publish_sequence), Some(held))
            }
            ShardMsg::QueueOp { queue, request, reply } => self.queue_op(queue, request, reply),
            ShardMsg::Settle { queue, holder, sequences, action } => {
                self.with_queue(queue, |queue, effects, reader| {
                    queue.settle(holder, &sequences, action, effects, reader)
                });
            }
            ShardMsg::Credit { queue, holder, consumer, count } => {
                self.with_queue(queue, |queue, effects, reader| queue.credit(holder, consumer, count, effects, reader));
            }
            ShardMsg::ChannelGone { holder } => self.channel_gone(holder),
            other => crate::warn!("shard {} dropped a misrouted message: {other:?}", self.id),
        }
    }

    /// Creates the queues this shard owns after a restart, with their stored messages.
    pub fn restore_queues(&self, queues: Vec<crate::broker::recovery::RestoredQueue>) {
        for (definition, entries) in queues {
            let id = definition.id;
            self.highest_created_queue.set(self.highest_created_queue.get().max(id.sequence()));
            let mut queue = self.new_queue(definition);
            queue.restore(entries);
            self.queues.borrow_mut().insert(id, queue);
        }
    }

    /// After new definitions: if some queue's policies changed since `previous_epoch`, each
    /// owned queue whose definition now carries other policies acts on them. Read from the
    /// published snapshot, so no shard touches another's queues.
    pub(super) fn apply_new_policies(&self, previous_epoch: u64) {
        let snapshot = self.snapshot();
        if snapshot.policy_epoch == previous_epoch {
            return;
        }
        let changed: Vec<Arc<QueueDef>> = self
            .queues
            .borrow()
            .values()
            .filter_map(|queue| {
                let current = snapshot.vhost(&queue.definition.vhost)?.queues.get(&queue.definition.name)?;
                let changed =
                    current.id == queue.definition.id && !current.policies.same_as(&queue.definition.policies);
                changed.then(|| current.clone())
            })
            .collect();
        for definition in changed {
            self.with_queue(definition.id, |queue, effects, reader| queue.apply_policies(definition, effects, reader));
        }
    }

    fn create_queue(&self, definition: Arc<QueueDef>, reply: Option<ReplyTo>) {
        let id = definition.id;
        let name = definition.name.clone();
        self.highest_created_queue.set(self.highest_created_queue.get().max(id.sequence()));
        let queue = self.new_queue(definition);
        self.queues.borrow_mut().insert(id, queue);
        if let Some(reply) = reply {
            self.reply(reply, Ok(ReplyBody::QueueDeclareOk { name, message_count: 0, consumer_count: 0 }));
        }
    }

    /// A queue id above the highest this shard has created is a queue whose creation message
    /// is on its way from the writer, sent before whatever told the sender about the queue:
    /// read the writer's mail now (otherwise, for example, a durable queue's first persistent
    /// message would not be stored).
    fn ensure_queue_known(&self, id: QueueId) {
        if id.sequence() > self.highest_created_queue.get() && !self.queues.borrow().contains_key(&id) {
            self.drain_writer_mail();
        }
    }

    /// Runs `operation` on a local queue and sends its effects; None if the queue is gone.
    pub(super) fn with_queue<T>(
        &self,
        id: QueueId,
        operation: impl FnOnce(&mut Queue, &mut Vec<Effect>, &dyn RecordReader) -> T,
    ) -> Option<T> {
        self.ensure_queue_known(id);
        let mut effects = std::mem::take(&mut *self.effects.borrow_mut());
        let (result, deep_delivery) = {
            let mut queues = self.queues.borrow_mut();
            let queue = queues.get_mut(&id)?;
            let delivered = queue.consumer_deliveries();
            let result = operation(queue, &mut effects, self);
            (result, queue.consumer_deliveries() != delivered && self.pressure.deep(queue.ready_count()))
        };
        if deep_delivery {
            self.pressure.note_deep_delivery();
        }
        self.run_effects(&mut effects);
        *self.effects.borrow_mut() = effects;
        Some(result)
    }

    /// Enqueues a published message; a persistent message in a durable queue is first
    /// appended to the store and confirmed only after the fsync that covers it. A queue at
    /// its length limit with `x-overflow` reject-publish(-dlx) refuses it (basic.nack). A held
    /// delayed message's copy (`held`) is stored after its hand-over record.
    fn publish_to_queue(
        &self,
        id: QueueId,
        message: Arc<Message>,
        publisher: Holder,
        publish_sequence: Option<u64>,
        held: Option<StoredId>,
    ) {
        // Checked at the publisher's shard already; a bad value here cannot happen.
        let arrival = Arrival {
            expiration_ms: message.expiration_ms().ok().flatten(),
            priority: crate::codec::hotpath::priority(&message.properties).unwrap_or(0),
        };
        // The common case in one look at the queue: kept in memory, the message moves in.
        let paging_threshold = if self.alarms.paging() { STORED_CACHE_MESSAGES } else { PAGE_OUT_READY_MESSAGES };
        let first_look = self.with_queue(id, |queue, effects, reader| {
            if queue.is_duplicate(&message) {
                return Ok(FirstLook::Duplicate);
            }
            if queue.queue_type() == QueueType::Stream {
                return Err(message);
            }
            let plain = !queue.stores(&message)
                && !queue.pages_out(paging_threshold)
                && !queue.refuses(message.body_bytes() as u64);
            if !plain {
                return Err(message);
            }
            queue.enqueue(Payload::Memory(message), arrival, effects, reader);
            Ok(FirstLook::Enqueued)
        });
        // A deduplicating queue drops a repeat, and the publisher's confirm still says ack; so
        // does a queue deleted meanwhile.
        let message = match first_look {
            None | Some(Ok(FirstLook::Enqueued | FirstLook::Duplicate)) => {
                return self.confirm_kept(publisher, publish_sequence);
            }
            Some(Err(message)) => message,
        };
        if self.publish_to_stream(id, &message, publisher, publish_sequence) {
            return;
        }
        let outcome = match self.admit(id, &message, arrival, held) {
            // The message moves into the queue wherever it is kept: a clone here and a drop
            // at the end would change its shared count once more, after the queue may already
            // have handed it to a consumer on another shard.
            Admission::Memory => self.with_queue(id, |queue, effects, reader| {
                queue.enqueue(Payload::Memory(message), arrival, effects, reader);
                PublishOutcome::InMemory
            }),
            Admission::Paged(reference) => self.with_queue(id, |queue, effects, reader| {
                queue.enqueue(Payload::Stored { reference, cached: None }, arrival, effects, reader);
                PublishOutcome::InMemory
            }),
            Admission::Stored(Ok((reference, cache))) => {
                if held.is_some() {
                    self.tell_handover_stored(publisher, publish_sequence, &reference.segment);
                }
                self.with_queue(id, |queue, effects, reader| {
                    let cached = cache.then_some(message);
                    queue.enqueue(Payload::Stored { reference, cached }, arrival, effects, reader);
                    PublishOutcome::Stored
                })
            }
            Admission::Stored(Err(reason)) => Some(PublishOutcome::Failed(reason)),
            Admission::Refused => {
                self.with_queue(id, |queue, effects, _| queue.refused(&message, effects));
                Some(PublishOutcome::Refused)
            }
        };
        let confirm = publish_sequence.map(|publish_sequence| ConfirmTo { holder: publisher, publish_sequence });
        match outcome.unwrap_or(PublishOutcome::InMemory) {
            PublishOutcome::InMemory => self.confirm_kept(publisher, publish_sequence),
            PublishOutcome::Stored => {
                if let Some(confirm) = confirm {
                    self.with_store(|store| store.confirm_after_sync(confirm));
                }
            }
            PublishOutcome::Refused => {
                if let Some(confirm) = confirm {
                    self.send(publisher.conn.shard(), ShardMsg::Confirmed { confirm, ok: false });
                }
            }
            PublishOutcome::Failed(reason) => {
                if let Some(confirm) = confirm {
                    self.send(publisher.conn.shard(), ShardMsg::Confirmed { confirm, ok: false });
                }
                let error = AmqpError::new(PRECONDITION_FAILED, format!("shard {}: {reason}", self.id));
                self.send(publisher.conn.shard(), ShardMsg::PublishRefused { holder: publisher, error });
            }
        }
    }

    /// Confirms a publish that needs no fsync: kept in memory, or dropped as a repeat.
    fn confirm_kept(&self, publisher: Holder, publish_sequence: Option<u64>) {
        if let Some(publish_sequence) = publish_sequence {
            let confirm = ConfirmTo { holder: publisher, publish_sequence };
            self.send(publisher.conn.shard(), ShardMsg::Confirmed { confirm, ok: true });
        }
    }

    /// Decides how a message enters the queue: refused by its length limit, kept in memory,
    /// or appended to the store when the queue keeps it on disk (`Queue::stores`; with whether to
    /// keep an in-memory copy, only while the queue is short). The same message routed to
    /// several durable queues of this shard is stored once (`Store::append_shared`); a held
    /// delayed message's copy after the hand-over record naming it (`Store::append_handover`).
    fn admit(&self, id: QueueId, message: &Arc<Message>, arrival: Arrival, held: Option<StoredId>) -> Admission {
        self.ensure_queue_known(id);
        let paging_threshold = if self.alarms.paging() { STORED_CACHE_MESSAGES } else { PAGE_OUT_READY_MESSAGES };
        let (stored, sequence, ready, pages_out, (expires_at_unix_ms, priority)) = {
            let queues = self.queues.borrow();
            let Some(queue) = queues.get(&id) else {
                return Admission::Memory;
            };
            if queue.refuses(message.body_bytes() as u64) {
                return Admission::Refused;
            }
            let pages_out = queue.pages_out(paging_threshold);
            let attributes = queue.stored_attributes(arrival);
            (queue.stores(message), queue.next_sequence(), queue.ready_count(), pages_out, attributes)
        };
        if !stored && !pages_out {
            return Admission::Memory;
        }
        let record = MessageRecord {
            queue_sequence: id.sequence(),
            sequence,
            expires_at_unix_ms,
            priority,
            exchange: &message.exchange,
            routing_key: &message.routing_key,
            properties: &message.properties,
            body: &message.body,
        };
        if !stored {
            // Paged out: confirmed at once like any message that is not kept for a restart.
            return match self.with_store(|store| store.append_paged(&record)) {
                Some(Ok(reference)) => Admission::Paged(reference),
                // No usable store: the message stays in memory, as it would without paging.
                Some(Err(_)) | None => Admission::Memory,
            };
        }
        let append = |store: &mut crate::store::Store| match held {
            None => store.append_shared(&record, message),
            Some(held) => store.append_handover(held, &record, message),
        };
        Admission::Stored(match self.with_store(append) {
            Some(Ok(reference)) => Ok((reference, ready < STORED_CACHE_MESSAGES)),
            Some(Err(error)) => Err(error.to_string()),
            None => Err("this shard has no message store".into()),
        })
    }

    /// Gives a stored message without an in-memory copy its content, read from the store.
    pub(super) fn load(&self, payload: &mut Payload) -> bool {
        if let Payload::Stored { reference, cached: cached @ None } = payload {
            *cached = self.with_store(|store| store.read(reference)).flatten();
            if cached.is_none() {
                crate::error!(
                    "shard {}: stored message at segment {} offset {} is unreadable",
                    self.id,
                    reference.segment.number,
                    reference.offset
                );
                return false;
            }
        }
        true
    }

    fn run_effects(&self, effects: &mut Vec<Effect>) {
        for effect in effects.drain(..) {
            match effect {
                Effect::Deliver(mut delivery) => {
                    if self.load(&mut delivery.payload) {
                        delivery.payload = delivery.payload.into_delivered();
                        add_delivery_count(&mut delivery.payload, delivery.delivery_count);
                        self.send(delivery.holder.conn.shard(), ShardMsg::Deliver(delivery));
                    }
                }
                Effect::Mark { reference, queue_sequence, sequence, mark } => {
                    self.with_store(|store| store.mark(&reference, queue_sequence, sequence, mark));
                }
                Effect::ConsumerCancelled { holder, consumer_tag } => {
                    self.send(holder.conn.shard(), ShardMsg::ConsumerCancelled { holder, consumer_tag })
                }
                Effect::DeadLetter { payload, reason, queue, target } => {
                    self.dead_letter(payload, reason, &queue, &target)
                }
            }
        }
    }

    fn queue_op(&self, id: QueueId, request: QueueRequest, reply: Option<ReplyTo>) {
        let answer = |result| {
            if let Some(reply) = reply {
                self.reply(reply, result);
            }
        };
        let deleting = matches!(request, QueueRequest::Delete { .. });
        let outcome =
            self.with_queue(id, |queue, effects, reader| apply_queue_request(queue, request, effects, reader));
        match outcome {
            None if deleting => answer(Ok(ReplyBody::QueueDeleted { message_count: 0, cancelled: Vec::new() })),
            None => answer(Err(AmqpError::new(NOT_FOUND, "queue was deleted"))),
            Some(Outcome::Answer(Ok(ReplyBody::Get(Some(mut got))))) => {
                if self.load(&mut got.payload) {
                    add_delivery_count(&mut got.payload, got.delivery_count);
                    answer(Ok(ReplyBody::Get(Some(got))));
                } else {
                    answer(Err(AmqpError::new(INTERNAL_ERROR, "stored message unreadable")));
                }
            }
            Some(Outcome::Answer(result)) => answer(result),
            Some(Outcome::Consumed(result)) => {
                answer(result);
                self.with_queue(id, |queue, effects, reader| queue.dispatch(effects, reader));
            }
            Some(Outcome::AutoDelete(result)) => {
                answer(result);
                self.request_auto_delete(id);
            }
            Some(Outcome::Deleted { vhost, answer }) => {
                self.queues.borrow_mut().remove(&id);
                self.send(0, ShardMsg::QueueDeleted { vhost, queue: id, reply, answer: Box::new(answer) });
            }
        }
    }

    pub(super) fn request_auto_delete(&self, id: QueueId) {
        let definition = self.queues.borrow().get(&id).map(|queue| queue.definition.clone());
        if let Some(definition) = definition {
            self.send(
                0,
                ShardMsg::AutoDelete { vhost: definition.vhost.clone(), name: definition.name.clone(), queue: id },
            );
        }
    }

    fn channel_gone(&self, holder: crate::ids::Holder) {
        let ids: Vec<QueueId> = self.queues.borrow().keys().copied().collect();
        for id in ids {
            if self.with_queue(id, |queue, effects, reader| queue.channel_gone(holder, effects, reader)) == Some(true) {
                self.request_auto_delete(id);
            }
        }
    }
}

/// Gives a returned message of an `x-delivery-limit` or quorum queue its `x-delivery-count`
/// header (`count` None: none, the common path, which stays zero-copy). The queue keeps the
/// original properties, so the next return writes the next count, never a second header.
fn add_delivery_count(payload: &mut Payload, count: Option<u32>) {
    let Some(count) = count else { return };
    let Some(message) = payload.message() else { return };
    match message.with_delivery_count(count) {
        Ok(counted) => *payload = Payload::Memory(Arc::new(counted)),
        // Properties that parsed at publish always re-encode; should they not, the message
        // still goes out, without the header.
        Err(error) => crate::warn!("cannot add x-delivery-count to a delivery: {error}"),
    }
}

enum PublishOutcome {
    InMemory,
    Stored,
    /// Over the queue's length limit (`x-overflow` reject-publish): nacked, channel stays open.
    Refused,
    /// The store failed: nacked, and the channel is closed.
    Failed(String),
}

enum Admission {
    Memory,
    /// Paged out to the log (`KIND_PAGED`), without an in-memory copy.
    Paged(StoredRef),
    Stored(Result<(StoredRef, bool), String>),
    Refused,
}

enum Outcome {
    Answer(Result<ReplyBody, AmqpError>),
    /// Answer first, then deliver: consume-ok must reach the client before the first message.
    Consumed(Result<ReplyBody, AmqpError>),
    AutoDelete(Result<ReplyBody, AmqpError>),
    Deleted {
        vhost: String,
        answer: ReplyBody,
    },
}

fn apply_queue_request(
    queue: &mut Queue,
    request: QueueRequest,
    effects: &mut Vec<Effect>,
    reader: &dyn RecordReader,
) -> Outcome {
    match request {
        QueueRequest::DeclareOk => {
            queue.touch();
            Outcome::Answer(Ok(ReplyBody::QueueDeclareOk {
                name: queue.definition.name.clone(),
                message_count: queue.message_count(),
                // RabbitMQ 3.10 counts no consumers of a stream here.
                consumer_count: if queue.is_stream() { 0 } else { queue.consumer_count() },
            }))
        }
        QueueRequest::Consume {
            holder,
            consumer_tag,
            consumer,
            no_ack,
            exclusive,
            prefetch_count,
            nowait: _,
            priority,
            stream_offset,
        } => {
            if let Some(offset) = stream_offset {
                queue.set_stream_start(*offset);
            }
            let settings = ConsumerSettings { key: consumer, no_ack, exclusive, prefetch_count, priority };
            let result = queue.add_consumer(holder, consumer_tag, settings);
            Outcome::Consumed(result.map(|()| ReplyBody::ConsumeOk))
        }
        QueueRequest::Cancel { holder, consumer_tag } => {
            if queue.cancel_consumer(holder, &consumer_tag) {
                Outcome::AutoDelete(Ok(ReplyBody::Done))
            } else {
                Outcome::Answer(Ok(ReplyBody::Done))
            }
        }
        QueueRequest::Prefetch { holder, consumer_tag, prefetch_count } => {
            queue.set_prefetch(holder, &consumer_tag, prefetch_count, effects, reader);
            Outcome::Answer(Ok(ReplyBody::Done))
        }
        QueueRequest::Get { holder, no_ack } => {
            Outcome::Answer(Ok(ReplyBody::Get(queue.get(holder, no_ack, effects, reader))))
        }
        QueueRequest::Purge => Outcome::Answer(Ok(ReplyBody::MessageCount(queue.purge(effects, reader)))),
        QueueRequest::Delete { if_unused, if_empty, deleting } => match queue.check_delete(if_unused, if_empty) {
            Err(error) => Outcome::Answer(Err(error)),
            Ok(()) => {
                let (message_count, cancelled) = queue.delete(deleting, effects);
                let answer = ReplyBody::QueueDeleted { message_count, cancelled };
                Outcome::Deleted { vhost: queue.definition.vhost.clone(), answer }
            }
        },
    }
}

/// Runs are read back from the shard's store: records still in this turn's buffer are
/// written first, so the segment's map always holds what a run covers.
impl RecordReader for Shard {
    fn next_record(
        &self,
        segment: &Arc<crate::store::segment::Segment>,
        from: u32,
        end: u32,
        queue_sequence: u64,
        kind: u8,
    ) -> Option<crate::store::FoundRecord> {
        self.with_store(|store| store.ensure_written(segment, end));
        crate::store::find_record(segment, from, end, queue_sequence, kind)
    }
}
