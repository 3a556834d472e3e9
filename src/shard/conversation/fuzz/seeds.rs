//! The seed corpus: conversations as real clients send them, from the protocol header to
//! connection.close.
//!
//! These are not packet captures read from a file: each conversation is written out here, in
//! the order and shape a client library (pika, the Java client, lapin) sends it, and encoded
//! with the broker's own codec (`encode_method` for amq-protocol's methods, the hot-path
//! `encode_publish` and `encode_ack` family for the rest). The codec is checked byte for byte
//! against amq-protocol elsewhere, so the frames are the ones a client would put on the wire.
//! Mutation starts from them, which is why most fuzz inputs get past the framing and the
//! handshake into the handlers.

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{basic, channel, confirm, connection, exchange, queue, tx, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};
use bytes::BytesMut;

use crate::codec::frame::{split_frame, FRAME_END, FRAME_MAX_HARD_CAP};
use crate::codec::hotpath;
use crate::codec::methods::encode_method;

/// The frame_max the seeds' bodies are cut with: the spec's minimum, so that a body of a few
/// kilobytes already spans several frames.
pub(super) const SEED_FRAME_MAX: u32 = 4096;

/// One frame of a conversation, kept apart so that mutations can work on frames (drop, swap,
/// splice) as well as on bytes. The overrides corrupt the framing itself.
#[derive(Clone, Debug)]
pub(super) struct Frame {
    pub frame_type: u8,
    pub channel: u16,
    pub payload: Vec<u8>,
    /// Written instead of the payload length.
    pub size_override: Option<u32>,
    /// Written instead of the frame-end octet.
    pub end_override: Option<u8>,
}

impl Frame {
    /// Appends the frame as it goes on the wire.
    pub fn write(&self, out: &mut Vec<u8>) {
        let size = self.size_override.unwrap_or(self.payload.len() as u32);
        out.push(self.frame_type);
        out.extend_from_slice(&self.channel.to_be_bytes());
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out.push(self.end_override.unwrap_or(FRAME_END));
    }
}

/// A conversation after connection.open-ok: what a client sends on its channels.
pub(super) struct Capture {
    pub name: &'static str,
    pub frames: Vec<Frame>,
}

/// Cuts encoded bytes back into frames.
fn frames_of(mut bytes: BytesMut) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(frame) = split_frame(&mut bytes, FRAME_MAX_HARD_CAP).expect("the codec writes whole frames") {
        frames.push(Frame {
            frame_type: frame.frame_type,
            channel: frame.channel,
            payload: frame.payload.to_vec(),
            size_override: None,
            end_override: None,
        });
    }
    frames
}

/// Builds one capture frame by frame, with the calls a client library makes.
struct Recorder {
    out: BytesMut,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder { out: BytesMut::new() }
    }

    fn method(mut self, channel: u16, method: AMQPClass) -> Recorder {
        encode_method(&mut self.out, channel, &method).expect("seed methods encode");
        self
    }

    fn publish(self, channel: u16, exchange: &str, routing_key: &str, body_bytes: usize) -> Recorder {
        self.publish_with(channel, exchange, routing_key, false, &AMQPProperties::default(), body_bytes)
    }

    fn publish_with(
        mut self,
        channel: u16,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        properties: &AMQPProperties,
        body_bytes: usize,
    ) -> Recorder {
        let properties = hotpath::encode_properties(properties).expect("seed properties encode");
        let body: Vec<u8> = (0..body_bytes).map(|index| (index % 251) as u8).collect();
        hotpath::encode_publish(
            &mut self.out,
            channel,
            exchange.as_bytes(),
            routing_key.as_bytes(),
            mandatory,
            &properties,
            &body,
            SEED_FRAME_MAX,
        )
        .expect("seed publishes encode");
        self
    }

    fn ack(mut self, channel: u16, delivery_tag: u64, multiple: bool) -> Recorder {
        hotpath::encode_ack(&mut self.out, channel, delivery_tag, multiple);
        self
    }

    fn nack(mut self, channel: u16, delivery_tag: u64, requeue: bool) -> Recorder {
        hotpath::encode_nack(&mut self.out, channel, delivery_tag, false, requeue);
        self
    }

    fn reject(mut self, channel: u16, delivery_tag: u64, requeue: bool) -> Recorder {
        hotpath::encode_reject(&mut self.out, channel, delivery_tag, requeue);
        self
    }

    fn heartbeat(mut self) -> Recorder {
        crate::codec::frame::write_heartbeat(&mut self.out);
        self
    }

    fn open(self, channel: u16) -> Recorder {
        self.method(channel, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})))
    }

    fn close(self, channel: u16) -> Recorder {
        self.method(
            channel,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: 200,
                reply_text: "Goodbye".into(),
                class_id: 0,
                method_id: 0,
            })),
        )
    }

    fn finish(self, name: &'static str) -> Capture {
        Capture { name, frames: frames_of(self.out) }
    }
}

/// The handshake frames after the protocol header: start-ok (PLAIN guest), tune-ok, open "/".
pub(super) fn handshake_frames(frame_max: u32) -> Vec<Frame> {
    let client_properties = {
        let mut capabilities = FieldTable::default();
        for capability in ["publisher_confirms", "consumer_cancel_notify", "connection.blocked", "basic.nack"] {
            capabilities.insert(capability.into(), AMQPValue::Boolean(true));
        }
        let mut properties = FieldTable::default();
        properties.insert("product".into(), AMQPValue::LongString(LongString::from("fuzz")));
        properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
        properties
    };
    let recorder = Recorder::new()
        .method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties,
                mechanism: "PLAIN".into(),
                response: LongString::from(&b"\0guest\0guest"[..]),
                locale: "en_US".into(),
            })),
        )
        .method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: 2047,
                frame_max,
                heartbeat: 60,
            })),
        )
        .method(0, AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open { virtual_host: "/".into() })));
    frames_of(recorder.out)
}

fn queue_declare(name: &str, exclusive: bool, arguments: FieldTable) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        exclusive,
        auto_delete: exclusive,
        arguments,
        ..Default::default()
    }))
}

fn exchange_declare(name: &str, kind: &str) -> AMQPClass {
    AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
        exchange: name.into(),
        kind: kind.into(),
        ..Default::default()
    }))
}

fn queue_bind(queue: &str, exchange: &str, routing_key: &str, arguments: FieldTable) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
        queue: queue.into(),
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        nowait: false,
        arguments,
    }))
}

fn consume(queue: &str, consumer_tag: &str, no_ack: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
        queue: queue.into(),
        consumer_tag: consumer_tag.into(),
        no_ack,
        ..Default::default()
    }))
}

fn qos(prefetch_count: u16) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count, global: false }))
}

fn get(queue: &str, no_ack: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: queue.into(), no_ack }))
}

/// Every property set, with a headers table holding each value type and some nesting: the
/// property list a chatty client library sends.
fn full_properties() -> AMQPProperties {
    let mut nested = FieldTable::default();
    nested.insert("count".into(), AMQPValue::LongLongInt(3));
    nested.insert("reason".into(), AMQPValue::LongString(LongString::from("rejected")));
    let mut headers = FieldTable::default();
    headers.insert("x-death".into(), AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(nested)])));
    headers.insert("flag".into(), AMQPValue::Boolean(true));
    headers.insert("small".into(), AMQPValue::ShortShortInt(-3));
    headers.insert("int".into(), AMQPValue::LongInt(-70_000));
    headers.insert("float".into(), AMQPValue::Double(2.5));
    headers.insert("when".into(), AMQPValue::Timestamp(1_700_000_000));
    AMQPProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_headers(headers)
        .with_delivery_mode(2)
        .with_priority(5)
        .with_correlation_id("corr-1".into())
        .with_reply_to("fuzz.replies".into())
        .with_expiration("60000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_700_000_001)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("fuzz".into())
}

fn x_match_all() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-match".into(), AMQPValue::LongString(LongString::from("all")));
    arguments.insert("kind".into(), AMQPValue::LongString(LongString::from("order.created")));
    arguments
}

fn limited_queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongInt(3));
    arguments.insert("x-message-ttl".into(), AMQPValue::LongInt(60_000));
    arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from("fuzz.dlx")));
    arguments.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(9));
    arguments
}

/// The seed conversations, each on channels a client would use.
pub(super) fn captures() -> Vec<Capture> {
    vec![
        Recorder::new()
            .open(1)
            .method(1, exchange_declare("fuzz.logs", "fanout"))
            .method(1, queue_declare("fuzz.q1", false, FieldTable::default()))
            .method(1, queue_bind("fuzz.q1", "fuzz.logs", "", FieldTable::default()))
            .publish(1, "fuzz.logs", "", 0)
            .publish(1, "fuzz.logs", "", 5)
            .publish(1, "fuzz.logs", "", 10_000)
            .close(1)
            .finish("fanout publisher"),
        Recorder::new()
            .open(1)
            .method(1, qos(10))
            .method(1, queue_declare("fuzz.work", false, FieldTable::default()))
            .method(1, consume("fuzz.work", "ctag-1", false))
            .publish(1, "", "fuzz.work", 12)
            .publish(1, "", "fuzz.work", 300)
            .publish(1, "", "fuzz.work", 4100)
            .ack(1, 1, false)
            .nack(1, 2, true)
            .reject(1, 3, false)
            .ack(1, 4, true)
            .method(
                1,
                AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                    consumer_tag: "ctag-1".into(),
                    nowait: false,
                })),
            )
            .close(1)
            .finish("consumer with acks"),
        Recorder::new()
            .open(1)
            .method(1, queue_declare("fuzz.tx", false, FieldTable::default()))
            .method(1, AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {})))
            .publish(1, "", "fuzz.tx", 20)
            .publish(1, "", "fuzz.tx", 9000)
            .method(1, get("fuzz.tx", false))
            .ack(1, 1, false)
            .method(1, AMQPClass::Tx(tx::AMQPMethod::Commit(tx::Commit {})))
            .publish(1, "", "fuzz.tx", 1)
            .method(1, AMQPClass::Tx(tx::AMQPMethod::Rollback(tx::Rollback {})))
            .close(1)
            .finish("transaction"),
        Recorder::new()
            .open(1)
            .method(1, AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false })))
            .publish_with(1, "", "fuzz.nowhere", true, &AMQPProperties::default(), 7)
            .publish_with(1, "amq.direct", "fuzz.none", true, &full_properties(), 64)
            .method(1, queue_declare("fuzz.confirmed", false, FieldTable::default()))
            .publish_with(1, "", "fuzz.confirmed", false, &full_properties(), 5000)
            .close(1)
            .finish("confirms and returns"),
        Recorder::new()
            .open(2)
            .method(2, queue_declare("fuzz.get", false, FieldTable::default()))
            .publish(2, "", "fuzz.get", 3)
            .publish(2, "", "fuzz.get", 200_000)
            .method(2, get("fuzz.get", false))
            .method(2, get("fuzz.get", true))
            .method(2, get("fuzz.get", false))
            .ack(2, 1, false)
            .method(2, AMQPClass::Basic(basic::AMQPMethod::Recover(basic::Recover { requeue: true })))
            .method(
                2,
                AMQPClass::Queue(queue::AMQPMethod::Purge(queue::Purge { queue: "fuzz.get".into(), nowait: false })),
            )
            .method(
                2,
                AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
                    queue: "fuzz.get".into(),
                    if_unused: false,
                    if_empty: false,
                    nowait: false,
                })),
            )
            .close(2)
            .finish("get, recover, purge, delete"),
        Recorder::new()
            .open(1)
            .method(1, consume("amq.rabbitmq.reply-to", "rpc-client", true))
            .method(1, queue_declare("fuzz.rpc", false, FieldTable::default()))
            .publish_with(
                1,
                "",
                "fuzz.rpc",
                false,
                &AMQPProperties::default()
                    .with_reply_to("amq.rabbitmq.reply-to".into())
                    .with_correlation_id("1".into()),
                16,
            )
            .open(2)
            .method(2, get("fuzz.rpc", true))
            .publish(2, "", "amq.rabbitmq.reply-to.fake", 4)
            .finish("direct reply-to"),
        Recorder::new()
            .open(1)
            .method(1, exchange_declare("fuzz.headers", "headers"))
            .method(1, exchange_declare("fuzz.topic", "topic"))
            .method(1, exchange_declare("fuzz.dlx", "fanout"))
            .method(1, queue_declare("", true, limited_queue_arguments()))
            .method(1, queue_declare("fuzz.limited", false, limited_queue_arguments()))
            .method(1, queue_bind("fuzz.limited", "fuzz.headers", "", x_match_all()))
            .method(1, queue_bind("fuzz.limited", "fuzz.topic", "order.*.eu", FieldTable::default()))
            .method(
                1,
                AMQPClass::Exchange(exchange::AMQPMethod::Bind(exchange::Bind {
                    destination: "fuzz.topic".into(),
                    source: "fuzz.headers".into(),
                    routing_key: "#".into(),
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
            )
            .publish_with(1, "fuzz.headers", "order.new.eu", false, &full_properties(), 10)
            .publish(1, "fuzz.topic", "order.new.eu", 10)
            .method(
                1,
                AMQPClass::Queue(queue::AMQPMethod::Unbind(queue::Unbind {
                    queue: "fuzz.limited".into(),
                    exchange: "fuzz.topic".into(),
                    routing_key: "order.*.eu".into(),
                    arguments: FieldTable::default(),
                })),
            )
            .method(
                1,
                AMQPClass::Exchange(exchange::AMQPMethod::Delete(exchange::Delete {
                    exchange: "fuzz.headers".into(),
                    if_unused: false,
                    nowait: false,
                })),
            )
            .finish("routing topology"),
        Recorder::new()
            .open(1)
            .open(2)
            .open(3)
            .method(2, AMQPClass::Channel(channel::AMQPMethod::Flow(channel::Flow { active: false })))
            .method(3, queue_declare("fuzz.many", false, FieldTable::default()))
            .method(3, consume("fuzz.many", "", true))
            .publish(1, "", "fuzz.many", 1)
            .heartbeat()
            .publish(2, "", "fuzz.many", 4096)
            .method(1, AMQPClass::Basic(basic::AMQPMethod::RecoverAsync(basic::RecoverAsync { requeue: true })))
            .close(2)
            .method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                    reply_code: 200,
                    reply_text: "bye".into(),
                    class_id: 0,
                    method_id: 0,
                })),
            )
            .method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})))
            .finish("channels interleaved, connection close"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_are_well_framed_and_have_multi_frame_bodies() {
        let captures = captures();
        assert!(captures.len() >= 8);
        for capture in &captures {
            let mut bytes = Vec::new();
            for frame in &capture.frames {
                frame.write(&mut bytes);
            }
            let mut buffer = BytesMut::from(&bytes[..]);
            let mut count = 0;
            while let Some(frame) = split_frame(&mut buffer, SEED_FRAME_MAX).expect(capture.name) {
                assert!(frame.payload.len() < SEED_FRAME_MAX as usize, "{}", capture.name);
                count += 1;
            }
            assert_eq!(count, capture.frames.len(), "{}", capture.name);
        }
        let bodies = captures.iter().flat_map(|capture| &capture.frames).filter(|frame| frame.frame_type == 3).count();
        assert!(bodies > 60, "{bodies} body frames");
    }
}
