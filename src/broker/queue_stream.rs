//! A queue of type stream (`x-queue-type: stream`): the queue's consumers (with their
//! prefetch and flow credit, as for any queue) read the stream's log (`store::stream_log`),
//! each from a cursor of its own, and acks only give credit back: nothing is ever removed but
//! by retention (`x-max-length-bytes`, `x-max-age`), which drops whole old segments.
//!
//! A child of `queue`, so it uses the queue's consumers as they are; the log itself is opened
//! by the owner shard (it knows the data directory) and handed over with `attach_stream`.
//! No per-message state is kept in memory: a delivery is read from the segment files, and its
//! sequence names the reader it went to (`delivery_sequence`), which is all an ack needs to
//! give that consumer its credit back; the consumer's prefetch, which a stream consumer must
//! set, bounds what it holds.

use std::sync::Arc;

use amq_protocol::types::AMQPValue;
use bytes::Bytes;

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
    /// Deliveries made so far: the low bits of the next delivery's sequence.
    delivered: u64,
}

/// Bits of a stream delivery's sequence that count the reader's deliveries; the bits above
/// are the reader's number. Sequences need to be unique only while unacked (the channel's
/// delivery tags are the unique part), so both may wrap.
const DELIVERY_COUNT_BITS: u32 = 40;

fn delivery_sequence(reader: u32, delivered: u64) -> u64 {
    (u64::from(reader) << DELIVERY_COUNT_BITS) | (delivered & ((1 << DELIVERY_COUNT_BITS) - 1))
}

fn reader_of(sequence: u64) -> u32 {
    (sequence >> DELIVERY_COUNT_BITS) as u32
}

/// A stream attached to its queue.
pub struct Stream {
    log: StreamLog,
    retention: Retention,
    /// Each consumer's cursor (a handful per stream: found by a scan, not a hash).
    readers: Vec<Reader>,
    /// Number of the next reader added.
    next_reader: u32,
    /// Where a consumer added next starts (`x-stream-offset` of the consume on its way).
    next_start: Option<StreamOffset>,
}

impl Queue {
    /// Makes this queue a stream reading and writing `log`.
    pub fn attach_stream(&mut self, log: StreamLog) {
        let retention =
            Retention { max_bytes: self.args.max_length_bytes, max_age_ms: max_age_ms(&self.definition.arguments) };
        let stream = Stream { log, retention, readers: Vec::new(), next_reader: 0, next_start: None };
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
        // 24 bits of reader number fit a sequence; a number that comes round again belongs to
        // a reader long gone (a live one would need 16M consumers on one stream).
        stream.next_reader = (stream.next_reader + 1) & ((1 << (64 - DELIVERY_COUNT_BITS)) - 1);
        let cursor = StreamCursor::at(start);
        stream.readers.push(Reader { number, holder, tag: tag.clone(), cursor, delivered: 0 });
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
        // An ack of many tags is mostly one consumer's: its reader and consumer are looked up
        // once per run of sequences, not per sequence.
        let mut last: Option<(u32, Option<usize>)> = None;
        for sequence in sequences {
            let number = reader_of(*sequence);
            let consumer_index = match last {
                Some((last_number, index)) if last_number == number => index,
                _ => {
                    // A reader that is gone (its consumer cancelled) has no credit to give back.
                    let reader =
                        stream.readers.iter().find(|reader| reader.number == number && reader.holder == holder);
                    let index = reader.and_then(|reader| {
                        self.consumers
                            .iter()
                            .position(|consumer| consumer.holder == reader.holder && consumer.tag == reader.tag)
                    });
                    last = Some((number, index));
                    index
                }
            };
            if let Some(consumer) = consumer_index.and_then(|index| self.consumers.get_mut(index)) {
                consumer.unacked = consumer.unacked.saturating_sub(1);
            }
            self.stats.ack += 1;
        }
        self.dispatch_stream(effects);
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
                let sequence = delivery_sequence(reader.number, reader.delivered);
                reader.delivered += 1;
                consumer.flow_credit -= 1;
                consumer.unacked += 1;
                self.stats.deliver_get += 1;
                effects.push(Effect::Deliver(Delivery {
                    holder: consumer.holder,
                    consumer: consumer.key,
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
