//! A queue of type stream (`x-queue-type: stream`): the queue's consumers (with their
//! prefetch and flow credit, as for any queue) read the stream's log (`store::stream_log`),
//! each from a cursor of its own, and acks only give credit back: nothing is ever removed but
//! by retention (`x-max-length-bytes`, `x-max-age`), which drops whole old segments.
//!
//! A child of `queue`, so it uses the queue's consumers as they are; the log itself is opened
//! by the owner shard (it knows the data directory) and handed over with `attach_stream`.
//! No per-message state is kept in memory: a delivery is read from the segment files and its
//! unacked entry is its consumer only, bounded by the consumer's prefetch, which a stream
//! consumer must set.

use std::sync::Arc;

use amq_protocol::types::AMQPValue;
use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::{Delivery, Effect, Payload, Queue};
use crate::broker::stream_args::{max_age_ms, StreamOffset};
use crate::codec::hotpath;
use crate::codec::message::Message;
use crate::ids::{ConsumerTag, Holder};
use crate::store::stream_log::{MessageFields, Retention, StreamCursor, StreamEntry, StreamLog};

/// A stream attached to its queue.
pub struct Stream {
    log: StreamLog,
    retention: Retention,
    /// Each consumer's next offset, by (channel, tag).
    cursors: FxHashMap<(Holder, ConsumerTag), StreamCursor>,
    /// Unacked deliveries: delivery sequence → consumer (no message copy).
    unacked: FxHashMap<u64, (Holder, ConsumerTag)>,
    /// Where a consumer added next starts (`x-stream-offset` of the consume on its way).
    next_start: Option<StreamOffset>,
}

impl Queue {
    /// Makes this queue a stream reading and writing `log`.
    pub fn attach_stream(&mut self, log: StreamLog) {
        let retention =
            Retention { max_bytes: self.args.max_length_bytes, max_age_ms: max_age_ms(&self.definition.arguments) };
        let stream =
            Stream { log, retention, cursors: FxHashMap::default(), unacked: FxHashMap::default(), next_start: None };
        self.stream = Some(Box::new(stream));
    }

    pub fn is_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// Appends a published message to the stream; consumers at the tail get it once the group
    /// commit has synced it (`stream_committed`).
    /// Err: the log could not be written (the publish is refused, nothing is confirmed).
    pub fn append_to_stream(
        &mut self,
        message: &Message,
        now_unix_ms: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), String> {
        let Some(stream) = self.stream.as_mut() else { return Err("not a stream".into()) };
        let fields = MessageFields {
            exchange: &message.exchange,
            routing_key: &message.routing_key,
            properties: &message.properties,
            body: &message.body,
        };
        let segments = stream.log.segment_count();
        stream.log.append(&fields, now_unix_ms).map_err(|error| format!("stream log write failed: {error}"))?;
        self.stats.publish += 1;
        if stream.log.segment_count() != segments {
            stream.log.apply_retention(stream.retention, now_unix_ms);
            // Cursors that retention overtook move on to the first offset held.
            self.dispatch_stream(effects);
        }
        Ok(())
    }

    /// The stream's files written since the last call, for the group commit's fdatasync,
    /// and the offset it covers up to.
    pub fn take_stream_unsynced(&mut self) -> (Vec<Arc<std::fs::File>>, u64) {
        self.stream.as_mut().map(|stream| stream.log.take_unsynced()).unwrap_or_default()
    }

    /// The group commit synced the stream up to `offset`: consumers may have those messages.
    pub fn stream_committed(&mut self, offset: u64, effects: &mut Vec<Effect>) {
        if let Some(stream) = self.stream.as_mut() {
            stream.log.set_committed(offset);
            self.dispatch_stream(effects);
        }
    }

    /// Retention on the shard's timer: segments older than `x-max-age` go.
    pub fn stream_retention(&mut self, now_unix_ms: u64) {
        if let Some(stream) = self.stream.as_mut() {
            stream.log.apply_retention(stream.retention, now_unix_ms);
        }
    }

    /// Where the consumer about to be added starts.
    pub fn set_stream_start(&mut self, offset: StreamOffset) {
        if let Some(stream) = self.stream.as_mut() {
            stream.next_start = Some(offset);
        }
    }

    pub(super) fn stream_consumer_added(&mut self, holder: Holder, tag: &ConsumerTag) {
        let Some(stream) = self.stream.as_mut() else { return };
        let start = match stream.next_start.take().unwrap_or(StreamOffset::Next) {
            StreamOffset::First => stream.log.first_offset(),
            StreamOffset::Last => stream.log.last_chunk_offset(),
            StreamOffset::Next => stream.log.next_offset(),
            StreamOffset::Offset(offset) => offset,
            StreamOffset::TimestampMs(unix_ms) => stream.log.offset_at_time(unix_ms),
        };
        stream.cursors.insert((holder, tag.clone()), StreamCursor::at(start));
    }

    /// Forgets the cursors of consumers that are gone.
    pub(super) fn stream_consumers_changed(&mut self) {
        let Some(stream) = self.stream.as_mut() else { return };
        let consumers = &self.consumers;
        stream.cursors.retain(|(holder, tag), _| {
            consumers.iter().any(|consumer| consumer.holder == *holder && consumer.tag == *tag)
        });
    }

    /// Acks (or anything else that ends a delivery) give the consumer its credit back; the
    /// message stays in the stream.
    pub(super) fn settle_stream(&mut self, holder: Holder, sequences: &[u64], effects: &mut Vec<Effect>) {
        let Some(stream) = self.stream.as_mut() else { return };
        for sequence in sequences {
            let Some((owner, tag)) = stream.unacked.get(sequence) else { continue };
            if *owner != holder {
                continue;
            }
            if let Some(consumer) =
                self.consumers.iter_mut().find(|consumer| consumer.holder == holder && consumer.tag == *tag)
            {
                consumer.unacked = consumer.unacked.saturating_sub(1);
            }
            stream.unacked.remove(sequence);
            self.stats.ack += 1;
        }
        self.dispatch_stream(effects);
    }

    /// A channel is gone: its deliveries are forgotten (nothing goes back: the stream keeps
    /// every message anyway).
    pub(super) fn stream_channel_gone(&mut self, holder: Holder) {
        if let Some(stream) = self.stream.as_mut() {
            stream.unacked.retain(|_, (owner, _)| *owner != holder);
        }
        self.stream_consumers_changed();
    }

    pub(super) fn stream_message_count(&self) -> Option<u32> {
        self.stream.as_ref().map(|stream| u32::try_from(stream.log.count()).unwrap_or(u32::MAX))
    }

    /// Deletes the stream's files (the queue is deleted).
    pub(super) fn remove_stream(&mut self) {
        if let Some(stream) = self.stream.take() {
            stream.log.remove();
        }
    }

    /// Gives every consumer with credit what its cursor has, one message per consumer in
    /// turn, so a consumer far behind reads its own part of the log and holds no one back.
    pub(super) fn dispatch_stream(&mut self, effects: &mut Vec<Effect>) {
        let Some(stream) = self.stream.as_mut() else { return };
        loop {
            let mut delivered = false;
            for consumer in self.consumers.iter_mut().filter(|consumer| consumer.can_take()) {
                let key = (consumer.holder, consumer.tag.clone());
                let Some(cursor) = stream.cursors.get_mut(&key) else { continue };
                let Some(entry) = stream.log.read_next(cursor) else { continue };
                let sequence = self.next_sequence;
                self.next_sequence += 1;
                consumer.flow_credit -= 1;
                consumer.unacked += 1;
                stream.unacked.insert(sequence, key);
                self.stats.deliver_get += 1;
                effects.push(Effect::Deliver(Delivery {
                    holder: consumer.holder,
                    consumer_tag: consumer.tag.clone(),
                    queue: self.definition.id,
                    sequence,
                    payload: Payload::Memory(Arc::new(delivered_message(entry))),
                    redelivered: false,
                    no_ack: false,
                    delivery_count: None,
                }));
                delivered = true;
            }
            if !delivered {
                return;
            }
        }
    }
}

/// The message a stream consumer receives: as published, with the header `x-stream-offset`
/// (a long) added to its headers. Properties that parsed at publish always re-encode; should
/// they not, the message goes out as stored.
fn delivered_message(entry: StreamEntry) -> Message {
    let StreamEntry { offset, exchange, routing_key, properties, body, .. } = entry;
    let with_offset = hotpath::parse_properties(&properties).and_then(|parsed| {
        let mut headers = parsed.headers().clone().unwrap_or_default();
        headers.insert("x-stream-offset".into(), AMQPValue::LongLongInt(i64::try_from(offset).unwrap_or(i64::MAX)));
        hotpath::encode_properties(&parsed.with_headers(headers))
    });
    Message {
        exchange: Bytes::from(exchange),
        routing_key: Bytes::from(routing_key),
        properties: Bytes::from(with_offset.unwrap_or(properties)),
        body: Bytes::from(body),
    }
}
