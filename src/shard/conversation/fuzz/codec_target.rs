//! Target one: the frame parser and the payload codecs on their own, without a broker.
//!
//! A byte stream is cut with `split_frame` under some frame_max, and each payload goes through
//! every parser the dispatcher may call on it. Beyond "no panic", each result is checked
//! against an oracle: what `split_frame` consumed and refused, a parsed method or property list
//! against amq-protocol, and every accepted value against its own re-encoding.

use amq_protocol::protocol::{basic, parse_class, AMQPClass};
use bytes::{Bytes, BytesMut};

use crate::codec::frame::{split_frame, FrameError, RawFrame, FRAME_HEADER_LEN, FRAME_MAX_HARD_CAP, FRAME_OVERHEAD};
use crate::codec::hotpath::{self, Ack, CodecError};
use crate::codec::methods::{decode_field_table, encode_method, parse_method};

/// Reply codes an inbound parse may fail with: 501 frame, 502 syntax, 503 command invalid,
/// 505 unexpected frame, 540 not implemented. 541 would mean our own encoding failed.
const INBOUND_REPLY_CODES: [u16; 5] = [501, 502, 503, 505, 540];

/// What one codec input did, for the summary.
#[derive(Default)]
pub(super) struct CodecOutcome {
    pub frames: usize,
    pub methods_parsed: usize,
    pub headers_parsed: usize,
}

/// Cuts `bytes` into frames under `frame_max` and runs every payload through the parsers.
pub(super) fn run(bytes: &[u8], frame_max: u32) -> CodecOutcome {
    let mut outcome = CodecOutcome::default();
    let mut buffer = BytesMut::from(bytes);
    loop {
        let before = buffer.len();
        match split_frame(&mut buffer, frame_max) {
            Ok(Some(frame)) => {
                assert_eq!(before - buffer.len(), frame.payload.len() + FRAME_OVERHEAD as usize, "consumed bytes");
                assert!(frame.payload.len() as u64 <= u64::from(payload_limit(frame_max)));
                outcome.frames += 1;
                check_payload(&frame, &mut outcome);
            }
            Ok(None) => {
                assert_eq!(buffer.len(), before, "an incomplete frame must not be consumed");
                assert!(incomplete(&buffer), "Ok(None) for a complete frame");
                return outcome;
            }
            Err(error) => {
                check_frame_error(&buffer, frame_max, &error);
                return outcome;
            }
        }
    }
}

/// The largest payload an inbound frame may have: frame_max itself (RabbitMQ lets clients
/// leave out the 8 octets of frame overhead), within the hard cap.
fn payload_limit(frame_max: u32) -> u32 {
    let cap = FRAME_MAX_HARD_CAP - FRAME_OVERHEAD;
    if frame_max == 0 {
        cap
    } else {
        frame_max.min(cap)
    }
}

fn incomplete(buffer: &[u8]) -> bool {
    match buffer.get(3..FRAME_HEADER_LEN) {
        Some(size) => {
            let size = u32::from_be_bytes(size.try_into().expect("4 bytes")) as usize;
            buffer.len() < FRAME_HEADER_LEN + size + 1
        }
        None => true,
    }
}

/// The error `split_frame` gave must be the one the bytes deserve.
fn check_frame_error(buffer: &[u8], frame_max: u32, error: &FrameError) {
    assert_eq!(error.reply_code(), 501);
    let size_field = u32::from_be_bytes(buffer[3..FRAME_HEADER_LEN].try_into().expect("a whole frame header"));
    match *error {
        FrameError::TooLarge { frame_type, size, .. } => {
            assert_eq!(size, size_field, "the size refused is the one the header gives");
            assert_eq!(frame_type, buffer[0], "the frame type refused is the one the header gives");
            assert!(size > payload_limit(frame_max));
        }
        FrameError::BadFrameEnd { found, .. } => {
            assert_eq!(buffer[FRAME_HEADER_LEN + size_field as usize], found, "the byte after the payload");
            assert_ne!(found, 0xCE);
        }
    }
}

fn check_error(error: &CodecError) {
    assert!(INBOUND_REPLY_CODES.contains(&error.reply_code()), "{error:?} has reply code {}", error.reply_code());
}

/// Every parser the dispatcher can reach with this payload, whatever the frame type says:
/// a mutated frame type moves a payload to another parser too.
fn check_payload(frame: &RawFrame, outcome: &mut CodecOutcome) {
    let payload = &frame.payload;
    let _ = hotpath::method_ids(payload);
    let method = parse_method(payload);
    match &method {
        Ok(method) => {
            outcome.methods_parsed += 1;
            check_method(payload, method);
        }
        Err(error) => check_error(error),
    }
    match hotpath::parse_publish(payload) {
        Ok(publish) => check_publish(&publish, &method),
        Err(error) => check_error(&error),
    }
    match hotpath::parse_ack(payload) {
        Ok(Some(ack)) => check_ack(ack, &method),
        Ok(None) => {}
        Err(error) => check_error(&error),
    }
    match hotpath::parse_content_header(payload) {
        Ok(header) => {
            outcome.headers_parsed += 1;
            check_properties(&header.properties);
            let mut out = BytesMut::new();
            hotpath::encode_content_header(&mut out, 1, 60, header.body_size, &header.properties, 0)
                .expect("an accepted header encodes again");
            let again = split_frame(&mut out, 0).expect("one frame").expect("one whole frame");
            let reparsed = hotpath::parse_content_header(&again.payload).expect("the re-encoded header parses");
            assert_eq!(reparsed, header);
        }
        Err(error) => check_error(&error),
    }
    // Raw property lists and tables anywhere in the payload: what a header's tail or a table
    // argument might hold after a mutation.
    let start = payload.len().min(usize::from(payload.first().copied().unwrap_or(0) % 16));
    let tail = payload.slice(start..);
    if hotpath::validate_properties(&tail).is_ok() {
        check_properties(&tail);
    }
    let _ = hotpath::delivery_mode(&tail);
    let _ = hotpath::priority(&tail);
    let _ = hotpath::reply_to(&tail);
    if let Err(error) = decode_field_table(&tail) {
        check_error(&error);
    }
}

/// What parse_method accepts, amq-protocol accepts with the same value, and it survives a
/// round trip through our encoder. Values are compared in their encoding: a table may hold a
/// NaN, which is not equal to itself.
fn check_method(payload: &Bytes, method: &AMQPClass) {
    let ours = encoded(method);
    match parse_class(&payload[..]) {
        Ok((_, theirs)) => assert_eq!(encoded(&theirs), ours, "parse_method and amq-protocol disagree"),
        Err(error) => panic!("parse_method accepted what amq-protocol refuses: {error:?}"),
    }
    let mut out = BytesMut::from(&ours[..]);
    let again = split_frame(&mut out, 0).expect("one frame").expect("one whole frame");
    let reparsed = parse_method(&again.payload).expect("the re-encoded method parses");
    assert_eq!(encoded(&reparsed), ours, "round trip");
}

fn encoded(method: &AMQPClass) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_method(&mut out, 1, method).expect("an accepted method encodes again");
    out.to_vec()
}

fn check_publish(publish: &hotpath::Publish, method: &Result<AMQPClass, CodecError>) {
    if let Ok(AMQPClass::Basic(basic::AMQPMethod::Publish(theirs))) = method {
        assert_eq!(&publish.exchange[..], theirs.exchange.as_str().as_bytes());
        assert_eq!(&publish.routing_key[..], theirs.routing_key.as_str().as_bytes());
        assert_eq!((publish.mandatory, publish.immediate), (theirs.mandatory, theirs.immediate));
    }
    let mut out = BytesMut::new();
    hotpath::encode_publish(&mut out, 1, &publish.exchange, &publish.routing_key, publish.mandatory, &[], &[], 0)
        .expect("an accepted publish encodes again");
    let again = split_frame(&mut out, 0).expect("one frame").expect("one whole frame");
    let reparsed = hotpath::parse_publish(&again.payload).expect("the re-encoded publish parses");
    assert_eq!(
        (reparsed.exchange, reparsed.routing_key, reparsed.mandatory),
        (publish.exchange.clone(), publish.routing_key.clone(), publish.mandatory)
    );
}

fn check_ack(ack: Ack, method: &Result<AMQPClass, CodecError>) {
    let mut out = BytesMut::new();
    match ack {
        Ack::Ack { delivery_tag, multiple } => {
            if let Ok(AMQPClass::Basic(basic::AMQPMethod::Ack(theirs))) = method {
                assert_eq!((theirs.delivery_tag, theirs.multiple), (delivery_tag, multiple));
            }
            hotpath::encode_ack(&mut out, 1, delivery_tag, multiple);
        }
        Ack::Nack { delivery_tag, multiple, requeue } => {
            if let Ok(AMQPClass::Basic(basic::AMQPMethod::Nack(theirs))) = method {
                assert_eq!((theirs.delivery_tag, theirs.multiple, theirs.requeue), (delivery_tag, multiple, requeue));
            }
            hotpath::encode_nack(&mut out, 1, delivery_tag, multiple, requeue);
        }
        Ack::Reject { delivery_tag, requeue } => {
            if let Ok(AMQPClass::Basic(basic::AMQPMethod::Reject(theirs))) = method {
                assert_eq!((theirs.delivery_tag, theirs.requeue), (delivery_tag, requeue));
            }
            hotpath::encode_reject(&mut out, 1, delivery_tag, requeue);
        }
    }
    let again = split_frame(&mut out, 0).expect("one frame").expect("one whole frame");
    assert_eq!(hotpath::parse_ack(&again.payload), Ok(Some(ack)));
}

/// A property list that `validate_properties` passed must parse in amq-protocol (the
/// dispatcher relies on it), and the in-place readers must agree with the full parse.
fn check_properties(properties: &Bytes) {
    let parsed = match hotpath::parse_properties(properties) {
        Ok(parsed) => parsed,
        Err(error) => panic!("validated properties do not parse: {error:?}"),
    };
    assert_eq!(hotpath::delivery_mode(properties), *parsed.delivery_mode());
    assert_eq!(hotpath::priority(properties), *parsed.priority());
    let reply_to = parsed.reply_to().as_ref().map(|reply_to| reply_to.as_str().as_bytes());
    assert_eq!(hotpath::reply_to(properties), reply_to);
    if reply_to.is_some() {
        let rewritten = hotpath::with_reply_to(properties, b"amq.rabbitmq.reply-to.g1").expect("reply-to replaced");
        let reparsed = hotpath::parse_properties(&rewritten).expect("rewritten properties parse");
        assert_eq!(reparsed.reply_to().as_ref().map(|reply_to| reply_to.as_str()), Some("amq.rabbitmq.reply-to.g1"));
        assert_eq!(reparsed.expiration(), parsed.expiration());
        assert_eq!(reparsed.correlation_id(), parsed.correlation_id());
        assert_eq!(reparsed.timestamp(), parsed.timestamp());
    }
}
