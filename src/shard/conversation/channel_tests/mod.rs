//! Conversation tests: channel. See `super` for the harness.
//!
//! The channel lifecycle (open, close, close-ok, frames dropped while closing), the assembly
//! of a publish from its method, header and body frames, and the frames that are wrong on a
//! channel or on channel 0, with the reply code, text and method RabbitMQ 3.10 sends.
//!
//! Connection errors name the failing method in connection.close where RabbitMQ does (its
//! channel and its assembler do; its reader's own checks, such as frame shape and
//! channel_max, name none: 0/0).

use amq_protocol::protocol::{access, basic, queue};

use super::*;
use crate::codec::frame::write_frame;

mod connection_methods;
mod content;
mod frames;
mod lifecycle;

fn open_method() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))
}

fn close_method() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    }))
}

fn qos(prefetch_count: u16) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count, global: false }))
}

/// queue.declare of a plain queue `name` (shared with the other conversation tests).
pub(super) fn declare(name: &str) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments: FieldTable::default(),
    }))
}

fn get(queue: &str) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: queue.into(), no_ack: true }))
}

/// One frame of any type, as bytes on the wire.
fn raw_frame(frame_type: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    write_frame(&mut out, frame_type, channel, payload).expect("test frame encodes");
    out.to_vec()
}

/// A content header frame for `class_id` announcing `body_size` bytes, with `properties`.
fn header_frame_with(channel: u16, class_id: u16, weight: u16, body_size: u64, properties: &AMQPProperties) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&class_id.to_be_bytes());
    payload.extend_from_slice(&weight.to_be_bytes());
    payload.extend_from_slice(&body_size.to_be_bytes());
    payload.extend_from_slice(&hotpath::encode_properties(properties).expect("test properties encode"));
    raw_frame(FRAME_HEADER, channel, &payload)
}

fn header_frame(channel: u16, body_size: u64) -> Vec<u8> {
    header_frame_with(channel, 60, 0, body_size, &AMQPProperties::default())
}

fn body_frame(channel: u16, body: &[u8]) -> Vec<u8> {
    raw_frame(FRAME_BODY, channel, body)
}

/// A client whose channel 1 is open.
fn client_with_channel(broker: &Broker) -> Client<'_> {
    let mut client = broker.connect(0);
    client.open_channel(1);
    client
}

/// Asserts the connection was closed with exactly `expected` and nothing else happened after.
fn assert_connection_closed(client: &mut Client<'_>, expected: (u16, &str, u16, u16)) {
    let methods = client.methods();
    let (code, text, class_id, method_id) = expected;
    assert_eq!(connection_close(&methods), Some((code, text.to_string(), class_id, method_id)), "{methods:?}");
    assert!(client.closed, "the connection should be closed");
}

/// Asserts the connection was closed with `code`, whatever the text: the companion of an
/// ignored test whose text differs from RabbitMQ's, so the broker's path stays covered.
fn assert_connection_closed_with_code(client: &mut Client<'_>, code: u16) {
    let methods = client.methods();
    assert_eq!(connection_close(&methods).map(|close| close.0), Some(code), "{methods:?}");
    assert!(client.closed, "the connection should be closed");
}
