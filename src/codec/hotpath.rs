//! Hand-written zero-copy codec for the per-message methods: basic.publish,
//! content headers, basic.ack/nack/reject on the way in; basic.deliver,
//! get-ok, return (and publish/ack for load generators) on the way out.
//!
//! Parsers take the method or header frame payload as `Bytes` and hand back
//! slices of it; they never allocate and never panic on network input.
//! Property lists are validated once (shape, UTF-8, nesting depth) and then
//! forwarded byte for byte. This module must not know about channels, queues
//! or routing; anything that needs the full method model goes through
//! amq-protocol (see the sibling `methods` module and `parse_properties`).

use std::fmt;

use amq_protocol::frame::{GenError, WriteContext};
use amq_protocol::protocol::{basic, BasicProperties};
use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use super::frame::MAX_FIELD_NESTING;
use super::frame::{
    max_payload_len, skip_field_table, write_frame, write_frame_with, FrameError, Reader, FRAME_BODY, FRAME_END,
    FRAME_HEADER, FRAME_METHOD,
};

pub const CLASS_BASIC: u16 = 60;
const METHOD_PUBLISH: u16 = 40;
const METHOD_RETURN: u16 = 50;
const METHOD_DELIVER: u16 = 60;
const METHOD_GET_OK: u16 = 71;
const METHOD_ACK: u16 = 80;
const METHOD_REJECT: u16 = 90;
const METHOD_NACK: u16 = 120;

// Basic property flags, most significant bit first, as in the spec.
const PROP_CONTENT_TYPE: u16 = 1 << 15;
const PROP_CONTENT_ENCODING: u16 = 1 << 14;
pub(crate) const PROP_HEADERS: u16 = 1 << 13;
const PROP_DELIVERY_MODE: u16 = 1 << 12;
const PROP_PRIORITY: u16 = 1 << 11;
const PROP_CORRELATION_ID: u16 = 1 << 10;
const PROP_REPLY_TO: u16 = 1 << 9;
const PROP_TIMESTAMP: u16 = 1 << 6;
/// Bits 1 and 0 are unused by class basic (bit 0 would announce a second
/// flag word); a peer setting them sends something we cannot forward safely.
const PROP_UNUSED: u16 = 0b11;

/// Codec failures, each mapping to the AMQP reply code the connection or
/// channel should be closed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// Input ended inside a field.
    Truncated,
    /// A short string over 255 bytes was handed to an encoder.
    BadShortString {
        len: usize,
    },
    /// Bytes left over after the last argument.
    TrailingBytes {
        extra: usize,
    },
    /// A known method where a different one was required.
    UnexpectedMethod {
        class_id: u16,
        method_id: u16,
    },
    /// Class or method id not part of AMQP 0-9-1.
    UnknownMethod {
        class_id: u16,
        method_id: u16,
    },
    /// Known method whose arguments amq-protocol rejected.
    Malformed {
        class_id: u16,
        method_id: u16,
    },
    BadPropertyFlags {
        flags: u16,
    },
    BadContentClass {
        class_id: u16,
    },
    UnknownFieldType {
        type_id: u8,
    },
    InvalidUtf8,
    NestingTooDeep,
    /// Encoding produced (or would produce) an invalid frame.
    Frame(FrameError),
    /// amq-protocol's generator failed.
    Generate,
}

impl CodecError {
    pub fn reply_code(&self) -> u16 {
        match self {
            CodecError::Truncated
            | CodecError::TrailingBytes { .. }
            | CodecError::Malformed { .. }
            | CodecError::BadPropertyFlags { .. }
            | CodecError::UnknownFieldType { .. }
            | CodecError::InvalidUtf8
            | CodecError::NestingTooDeep => 502,
            CodecError::UnexpectedMethod { .. } => 503,
            CodecError::BadContentClass { .. } => 505,
            CodecError::UnknownMethod { .. } => 540,
            CodecError::Frame(frame) => frame.reply_code(),
            // Only our own outbound data can trigger these: INTERNAL_ERROR.
            CodecError::BadShortString { .. } | CodecError::Generate => 541,
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Truncated => f.write_str("SYNTAX_ERROR - truncated frame payload"),
            CodecError::BadShortString { len } => {
                write!(f, "INTERNAL_ERROR - short string of {len} bytes exceeds 255")
            }
            CodecError::TrailingBytes { extra } => {
                write!(f, "SYNTAX_ERROR - {extra} unexpected trailing bytes")
            }
            CodecError::UnexpectedMethod { class_id, method_id } => {
                write!(f, "COMMAND_INVALID - unexpected method {class_id}.{method_id}")
            }
            CodecError::UnknownMethod { class_id, method_id } => {
                write!(f, "NOT_IMPLEMENTED - unknown method {class_id}.{method_id}")
            }
            CodecError::Malformed { class_id, method_id } => {
                write!(f, "SYNTAX_ERROR - malformed arguments for method {class_id}.{method_id}")
            }
            CodecError::BadPropertyFlags { flags } => {
                write!(f, "SYNTAX_ERROR - invalid property flags {flags:#06x}")
            }
            CodecError::BadContentClass { class_id } => {
                write!(f, "UNEXPECTED_FRAME - content header for class {class_id}")
            }
            CodecError::UnknownFieldType { type_id } => {
                write!(f, "SYNTAX_ERROR - unknown field value type {type_id:#04x}")
            }
            CodecError::InvalidUtf8 => f.write_str("SYNTAX_ERROR - short string is not UTF-8"),
            CodecError::NestingTooDeep => {
                write!(f, "SYNTAX_ERROR - field tables nested deeper than {MAX_FIELD_NESTING}")
            }
            CodecError::Frame(frame) => frame.fmt(f),
            CodecError::Generate => f.write_str("INTERNAL_ERROR - failed to encode properties"),
        }
    }
}

impl std::error::Error for CodecError {}

impl From<FrameError> for CodecError {
    fn from(error: FrameError) -> Self {
        CodecError::Frame(error)
    }
}

pub fn method_ids(payload: &[u8]) -> Result<(u16, u16), CodecError> {
    let mut reader = Reader::new(payload);
    Ok((reader.u16()?, reader.u16()?))
}

fn expect_method(reader: &mut Reader<'_>, method_id: u16) -> Result<(), CodecError> {
    let found = (reader.u16()?, reader.u16()?);
    if found != (CLASS_BASIC, method_id) {
        return Err(CodecError::UnexpectedMethod { class_id: found.0, method_id: found.1 });
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub exchange: Bytes,
    pub routing_key: Bytes,
    pub mandatory: bool,
    pub immediate: bool,
}

/// Parses basic.publish. Names are returned as raw bytes (not checked for
/// UTF-8): they are only ever compared against names we already hold.
pub fn parse_publish(payload: &Bytes) -> Result<Publish, CodecError> {
    publish_layout(payload).map(|layout| layout.take(payload.clone()))
}

/// Where basic.publish's fields are in its frame's payload, checked whole.
#[derive(Clone, Debug)]
pub struct PublishLayout {
    exchange: std::ops::Range<usize>,
    routing_key: std::ops::Range<usize>,
    bits: u8,
}

pub fn publish_layout(payload: &[u8]) -> Result<PublishLayout, CodecError> {
    let mut reader = Reader::new(payload);
    expect_method(&mut reader, METHOD_PUBLISH)?;
    reader.u16()?; // reserved-1 (ticket)
    let exchange = reader.short_str_range()?;
    let routing_key = reader.short_str_range()?;
    let bits = reader.u8()?;
    reader.finish()?;
    Ok(PublishLayout { exchange, routing_key, bits })
}

impl PublishLayout {
    /// The publish, its names in `payload`: the routing key is the payload itself, narrowed,
    /// and the default exchange's empty name is no slice at all, so the read buffer's shared
    /// count (an atomic) changes only for a named exchange.
    pub fn take(self, payload: Bytes) -> Publish {
        let exchange = if self.exchange.is_empty() { Bytes::new() } else { payload.slice(self.exchange) };
        let mut routing_key = payload;
        routing_key.truncate(self.routing_key.end);
        routing_key.advance(self.routing_key.start);
        Publish { exchange, routing_key, mandatory: self.bits & 1 != 0, immediate: self.bits & 2 != 0 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    /// Property flags and property list exactly as received.
    pub properties: Bytes,
}

/// Parses a content header frame payload and validates its property list,
/// so the raw bytes can later be forwarded or handed to `parse_properties`
/// without further checks.
pub fn parse_content_header(payload: &Bytes) -> Result<ContentHeader, CodecError> {
    take_content_header(payload.clone())
}

/// `parse_content_header` of a payload it keeps: the properties are the payload itself with
/// its fixed fields stepped over (no new reference to the read buffer).
pub fn take_content_header(payload: Bytes) -> Result<ContentHeader, CodecError> {
    let mut reader = Reader::new(&payload);
    let class_id = reader.u16()?;
    reader.u16()?; // weight: the spec says zero, but amq-protocol and peers ignore it
    let body_size = reader.u64()?;
    let start = reader.position();
    if class_id != CLASS_BASIC {
        return Err(CodecError::BadContentClass { class_id });
    }
    validate_properties(&payload[start..])?;
    let mut properties = payload;
    properties.advance(start);
    Ok(ContentHeader { class_id, body_size, properties })
}

/// Checks that raw basic properties are well formed and complete.
pub fn validate_properties(properties: &[u8]) -> Result<(), CodecError> {
    let mut reader = Reader::new(properties);
    let flags = reader.u16()?;
    if flags & PROP_UNUSED != 0 {
        return Err(CodecError::BadPropertyFlags { flags });
    }
    for bit in (2..16).rev().map(|shift| 1u16 << shift) {
        if flags & bit == 0 {
            continue;
        }
        match bit {
            PROP_HEADERS => skip_field_table(&mut reader, 0)?,
            PROP_DELIVERY_MODE | PROP_PRIORITY => drop(reader.u8()?),
            PROP_TIMESTAMP => drop(reader.u64()?),
            _ => drop(reader.utf8_short_str()?),
        }
    }
    reader.finish()
}

/// The properties in front of reply-to, in wire order, and how to step over each.
const PROPERTIES_BEFORE_REPLY_TO: [(u16, Field); 6] = [
    (PROP_CONTENT_TYPE, Field::ShortString),
    (PROP_CONTENT_ENCODING, Field::ShortString),
    (PROP_HEADERS, Field::LongString),
    (PROP_DELIVERY_MODE, Field::Octet),
    (PROP_PRIORITY, Field::Octet),
    (PROP_CORRELATION_ID, Field::ShortString),
];

#[derive(Clone, Copy)]
enum Field {
    ShortString,
    LongString,
    Octet,
}

/// A reader placed at property `wanted` (delivery-mode, priority or reply-to: the ones read per
/// message), skipping only the properties in front of it. `None` if absent or malformed; a
/// flag test is all an absent one costs.
fn seek_property(properties: &[u8], wanted: u16) -> Option<Reader<'_>> {
    let mut reader = Reader::new(properties);
    let flags = reader.u16().ok()?;
    if flags & wanted == 0 {
        return None;
    }
    for (bit, field) in PROPERTIES_BEFORE_REPLY_TO {
        if bit == wanted {
            return Some(reader);
        }
        if flags & bit != 0 {
            let stepped = match field {
                Field::ShortString => reader.short_str_range().is_ok(),
                Field::LongString => reader.long_str().is_ok(),
                Field::Octet => reader.u8().is_ok(),
            };
            if !stepped {
                return None;
            }
        }
    }
    (wanted == PROP_REPLY_TO).then_some(reader)
}

fn octet_property(properties: &[u8], wanted: u16) -> Option<u8> {
    seek_property(properties, wanted)?.u8().ok()
}

fn reply_to_range(properties: &[u8]) -> Option<std::ops::Range<usize>> {
    seek_property(properties, PROP_REPLY_TO)?.short_str_range().ok()
}

/// The reply-to property, read in place.
pub fn reply_to(properties: &[u8]) -> Option<&[u8]> {
    reply_to_range(properties).and_then(|range| properties.get(range))
}

/// The same property list with reply-to set to `reply_to`, every other byte as received.
/// `None` if there is no reply-to to replace or the new value is not a short string.
pub fn with_reply_to(properties: &[u8], reply_to: &[u8]) -> Option<Bytes> {
    let range = reply_to_range(properties)?;
    let length = u8::try_from(reply_to.len()).ok()?;
    // The length octet sits just before the contents.
    let (before, after) = (properties.get(..range.start.checked_sub(1)?)?, properties.get(range.end..)?);
    let mut out = BytesMut::with_capacity(before.len() + 1 + reply_to.len() + after.len());
    out.put_slice(before);
    out.put_u8(length);
    out.put_slice(reply_to);
    out.put_slice(after);
    Some(out.freeze())
}

pub fn delivery_mode(properties: &[u8]) -> Option<u8> {
    octet_property(properties, PROP_DELIVERY_MODE)
}

pub fn priority(properties: &[u8]) -> Option<u8> {
    octet_property(properties, PROP_PRIORITY)
}

/// Full decode through amq-protocol, for the rare paths that need it
/// (headers exchange, reply_to, expiration). Validates first so hostile
/// nesting never reaches amq-protocol's recursive parser.
pub fn parse_properties(properties: &[u8]) -> Result<BasicProperties, CodecError> {
    validate_properties(properties)?;
    match basic::parse_properties(properties) {
        Ok(([], parsed)) => Ok(parsed),
        Ok((rest, _)) => Err(CodecError::TrailingBytes { extra: rest.len() }),
        // Not expected after validation; reported as a basic-class syntax error.
        Err(_) => Err(CodecError::Malformed { class_id: CLASS_BASIC, method_id: 0 }),
    }
}

/// Raw property bytes (flags + list) for properties the broker built or
/// modified, in exactly the layout `parse_content_header` returns.
///
/// The result is validated like inbound properties, because amq-protocol
/// can generate bytes nobody can parse (an `AMQPValue::ShortString` in a
/// header table is written with type letter '_'); forwarding those would
/// break every consumer, so it is an error here instead.
pub fn encode_properties(props: &BasicProperties) -> Result<Vec<u8>, CodecError> {
    let written = basic::gen_properties(props)(WriteContext::from(Vec::with_capacity(64)));
    let properties = written.map(|context| context.into_inner().0).map_err(|_: GenError| CodecError::Generate)?;
    validate_properties(&properties)?;
    Ok(properties)
}

/// basic.ack, basic.nack or basic.reject: the spec's names, kept as they are.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    Ack { delivery_tag: u64, multiple: bool },
    Nack { delivery_tag: u64, multiple: bool, requeue: bool },
    Reject { delivery_tag: u64, requeue: bool },
}

/// Some for basic.ack/nack/reject, None for any other method.
pub fn parse_ack(payload: &[u8]) -> Result<Option<Ack>, CodecError> {
    let mut reader = Reader::new(payload);
    let (class_id, method_id) = (reader.u16()?, reader.u16()?);
    if class_id != CLASS_BASIC || !matches!(method_id, METHOD_ACK | METHOD_REJECT | METHOD_NACK) {
        return Ok(None);
    }
    let delivery_tag = reader.u64()?;
    let bits = reader.u8()?;
    reader.finish()?;
    let (first, second) = (bits & 1 != 0, bits & 2 != 0);
    Ok(Some(match method_id {
        METHOD_ACK => Ack::Ack { delivery_tag, multiple: first },
        METHOD_REJECT => Ack::Reject { delivery_tag, requeue: first },
        _ => Ack::Nack { delivery_tag, multiple: first, requeue: second },
    }))
}

fn put_short_str(out: &mut BytesMut, value: &[u8]) -> Result<(), CodecError> {
    let len = u8::try_from(value.len()).map_err(|_| CodecError::BadShortString { len: value.len() })?;
    out.put_u8(len);
    out.put_slice(value);
    Ok(())
}

/// Writes method + content header + body frames, splitting the body to
/// respect frame_max. All or nothing: on error `out` is left unchanged.
fn write_content(
    out: &mut BytesMut,
    channel: u16,
    frame_max: u32,
    properties: &[u8],
    body: &[u8],
    method: impl FnOnce(&mut BytesMut) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let start = out.len();
    let result = write_content_frames(out, channel, frame_max, properties, body, method);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_content_frames(
    out: &mut BytesMut,
    channel: u16,
    frame_max: u32,
    properties: &[u8],
    body: &[u8],
    method: impl FnOnce(&mut BytesMut) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let chunk_len = max_payload_len(frame_max).max(1);
    let body_frames = body.len().div_ceil(chunk_len);
    out.reserve(300 + properties.len() + body.len() + 8 * (body_frames + 2));
    write_frame_with(out, FRAME_METHOD, channel, method)?;
    encode_content_header(out, channel, CLASS_BASIC, body.len() as u64, properties, frame_max)?;
    for chunk in body.chunks(chunk_len) {
        write_frame(out, FRAME_BODY, channel, chunk)?;
    }
    Ok(())
}

/// Writes a content header frame. An empty `properties` slice means "no
/// properties" (a zero flag word); otherwise the raw bytes are copied as is.
/// Fails, writing nothing, if the frame would not fit in frame_max: the
/// spec gives no way to split a content header.
pub fn encode_content_header(
    out: &mut BytesMut,
    channel: u16,
    class_id: u16,
    body_size: u64,
    properties: &[u8],
    frame_max: u32,
) -> Result<(), CodecError> {
    let property_bytes: &[u8] = if properties.is_empty() { &[0, 0] } else { properties };
    let header_len = 12 + property_bytes.len();
    if header_len > max_payload_len(frame_max) {
        return Err(CodecError::Frame(FrameError::TooLarge {
            frame_type: FRAME_HEADER,
            size: u32::try_from(header_len).unwrap_or(u32::MAX),
            frame_max,
        }));
    }
    write_frame_with::<CodecError>(out, FRAME_HEADER, channel, |out| {
        out.put_u16(class_id);
        out.put_u16(0); // weight
        out.put_u64(body_size);
        out.put_slice(property_bytes);
        Ok(())
    })
}

/// Everything needed to write one basic.deliver with its content.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    pub channel: u16,
    pub consumer_tag: &'a [u8],
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub exchange: &'a [u8],
    pub routing_key: &'a [u8],
    pub properties: &'a [u8],
    pub body: &'a [u8],
}

pub fn encode_deliver(out: &mut BytesMut, delivery: &Delivery<'_>, frame_max: u32) -> Result<(), CodecError> {
    let d = delivery;
    write_content(out, d.channel, frame_max, d.properties, d.body, |out| {
        out.put_u16(CLASS_BASIC);
        out.put_u16(METHOD_DELIVER);
        put_short_str(out, d.consumer_tag)?;
        out.put_u64(d.delivery_tag);
        out.put_u8(u8::from(d.redelivered));
        put_short_str(out, d.exchange)?;
        put_short_str(out, d.routing_key)
    })
}

#[allow(clippy::too_many_arguments)] // mirrors the wire arguments one to one
pub fn encode_get_ok(
    out: &mut BytesMut,
    channel: u16,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &[u8],
    routing_key: &[u8],
    message_count: u32,
    properties: &[u8],
    body: &[u8],
    frame_max: u32,
) -> Result<(), CodecError> {
    write_content(out, channel, frame_max, properties, body, |out| {
        out.put_u16(CLASS_BASIC);
        out.put_u16(METHOD_GET_OK);
        out.put_u64(delivery_tag);
        out.put_u8(u8::from(redelivered));
        put_short_str(out, exchange)?;
        put_short_str(out, routing_key)?;
        out.put_u32(message_count);
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)] // mirrors the wire arguments one to one
pub fn encode_return(
    out: &mut BytesMut,
    channel: u16,
    reply_code: u16,
    reply_text: &[u8],
    exchange: &[u8],
    routing_key: &[u8],
    properties: &[u8],
    body: &[u8],
    frame_max: u32,
) -> Result<(), CodecError> {
    write_content(out, channel, frame_max, properties, body, |out| {
        out.put_u16(CLASS_BASIC);
        out.put_u16(METHOD_RETURN);
        out.put_u16(reply_code);
        put_short_str(out, reply_text)?;
        put_short_str(out, exchange)?;
        put_short_str(out, routing_key)
    })
}

#[allow(clippy::too_many_arguments)] // mirrors the wire arguments one to one
pub fn encode_publish(
    out: &mut BytesMut,
    channel: u16,
    exchange: &[u8],
    routing_key: &[u8],
    mandatory: bool,
    properties: &[u8],
    body: &[u8],
    frame_max: u32,
) -> Result<(), CodecError> {
    write_content(out, channel, frame_max, properties, body, |out| {
        out.put_u16(CLASS_BASIC);
        out.put_u16(METHOD_PUBLISH);
        out.put_u16(0); // reserved-1
        put_short_str(out, exchange)?;
        put_short_str(out, routing_key)?;
        out.put_u8(u8::from(mandatory));
        Ok(())
    })
}

/// ack/nack/reject share one fixed 13-byte payload, so the size is known
/// up front and no patching is needed.
fn encode_ack_like(out: &mut BytesMut, channel: u16, method_id: u16, delivery_tag: u64, bits: u8) {
    out.reserve(21);
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32(13);
    out.put_u16(CLASS_BASIC);
    out.put_u16(method_id);
    out.put_u64(delivery_tag);
    out.put_u8(bits);
    out.put_u8(FRAME_END);
}

pub fn encode_ack(out: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool) {
    encode_ack_like(out, channel, METHOD_ACK, delivery_tag, u8::from(multiple));
}

pub fn encode_nack(out: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool, requeue: bool) {
    let bits = u8::from(multiple) | (u8::from(requeue) << 1);
    encode_ack_like(out, channel, METHOD_NACK, delivery_tag, bits);
}

#[cfg(test)]
pub fn encode_reject(out: &mut BytesMut, channel: u16, delivery_tag: u64, requeue: bool) {
    encode_ack_like(out, channel, METHOD_REJECT, delivery_tag, u8::from(requeue));
}

#[cfg(test)]
#[path = "hotpath_tests.rs"]
mod tests;
