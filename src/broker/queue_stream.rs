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

/// One consumer's place in the stream.
struct Reader {
    number: u32,
    holder: Holder,
    tag: ConsumerTag,
    cursor: StreamCursor,
}

/// A stream attached to its queue.
pub struct Stream {
    log: StreamLog,
    retention: Retention,
    /// Each consumer's cursor (a handful per stream: found by a scan, not a hash).
    readers: Vec<Reader>,
    /// Number of the next reader added.
    next_reader: u32,
    /// Unacked deliveries: delivery sequence → the reader's number (no message copy).
    unacked: FxHashMap<u64, u32>,
    /// Where a consumer added next starts (`x-stream-offset` of the consume on its way).
    next_start: Option<StreamOffset>,
}

impl Queue {
    /// Makes this queue a stream reading and writing `log`.
    pub fn attach_stream(&mut self, log: StreamLog) {
        let retention =
            Retention { max_bytes: self.args.max_length_bytes, max_age_ms: max_age_ms(&self.definition.arguments) };
        let stream = Stream {
            log,
            retention,
            readers: Vec::new(),
            next_reader: 0,
            unacked: FxHashMap::default(),
            next_start: None,
        };
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
    /// Err: the buffered appends could not be written (the log takes no more).
    pub fn take_stream_unsynced(&mut self) -> std::io::Result<(Vec<Arc<std::fs::File>>, u64)> {
        self.stream.as_mut().map_or_else(|| Ok(Default::default()), |stream| stream.log.take_unsynced())
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
        stream.readers.retain(|reader| reader.holder != holder || reader.tag != *tag);
        let number = stream.next_reader;
        stream.next_reader = stream.next_reader.wrapping_add(1);
        stream.readers.push(Reader { number, holder, tag: tag.clone(), cursor: StreamCursor::at(start) });
    }

    /// Forgets the cursors of consumers that are gone.
    pub(super) fn stream_consumers_changed(&mut self) {
        let Some(stream) = self.stream.as_mut() else { return };
        let consumers = &self.consumers;
        stream.readers.retain(|reader| {
            consumers.iter().any(|consumer| consumer.holder == reader.holder && consumer.tag == reader.tag)
        });
    }

    /// Acks (or anything else that ends a delivery) give the consumer its credit back; the
    /// message stays in the stream.
    pub(super) fn settle_stream(&mut self, holder: Holder, sequences: &[u64], effects: &mut Vec<Effect>) {
        let Some(stream) = self.stream.as_mut() else { return };
        for sequence in sequences {
            let Some(number) = stream.unacked.get(sequence).copied() else { continue };
            let reader = stream.readers.iter().find(|reader| reader.number == number);
            if reader.is_some_and(|reader| reader.holder != holder) {
                continue;
            }
            // A reader that is gone (its consumer cancelled) has no credit to give back.
            if let Some(reader) = reader {
                let consumer = self
                    .consumers
                    .iter_mut()
                    .find(|consumer| consumer.holder == reader.holder && consumer.tag == reader.tag);
                if let Some(consumer) = consumer {
                    consumer.unacked = consumer.unacked.saturating_sub(1);
                }
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
            let gone: Vec<u32> =
                stream.readers.iter().filter(|reader| reader.holder == holder).map(|reader| reader.number).collect();
            stream.unacked.retain(|_, number| !gone.contains(number));
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

    /// Gives every consumer with credit what its cursor has, as much as its credit allows
    /// (each reads its own part of the log, so one far behind holds no one back).
    pub(super) fn dispatch_stream(&mut self, effects: &mut Vec<Effect>) {
        let Some(stream) = self.stream.as_mut() else { return };
        for consumer in self.consumers.iter_mut().filter(|consumer| consumer.can_take()) {
            let found =
                stream.readers.iter_mut().find(|reader| reader.holder == consumer.holder && reader.tag == consumer.tag);
            let Some(reader) = found else { continue };
            while consumer.can_take() {
                let Some(entry) = stream.log.read_next(&mut reader.cursor) else { break };
                let sequence = self.next_sequence;
                self.next_sequence += 1;
                consumer.flow_credit -= 1;
                consumer.unacked += 1;
                stream.unacked.insert(sequence, reader.number);
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
            }
        }
    }
}

/// The message a stream consumer receives: as published, with the header `x-stream-offset`
/// (a long) in its headers. The log stores most messages with it already; for the others
/// (the publisher set that header itself) it is put in by parsing and re-encoding the
/// properties, which replaces the publisher's. Properties that parsed at publish always
/// re-encode; should they not, the message goes out as stored.
fn delivered_message(entry: StreamEntry) -> Message {
    let StreamEntry { offset, offset_in_properties, message, .. } = entry;
    if offset_in_properties {
        return message;
    }
    let with_offset = hotpath::parse_properties(&message.properties).and_then(|parsed| {
        let mut headers = parsed.headers().clone().unwrap_or_default();
        headers.insert("x-stream-offset".into(), AMQPValue::LongLongInt(i64::try_from(offset).unwrap_or(i64::MAX)));
        hotpath::encode_properties(&parsed.with_headers(headers))
    });
    match with_offset {
        Ok(properties) => Message { properties: Bytes::from(properties), ..message },
        Err(_) => message,
    }
}
