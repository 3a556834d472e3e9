//! Tests for the hot-path codec: byte-for-byte agreement with amq-protocol
//! in both directions, truncation and garbage robustness.

use super::super::frame::{split_frame, RawFrame};
use super::*;
use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::AMQPClass;
use amq_protocol::types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString};

const FRAME_MAX: u32 = 4096;
const CHUNK: usize = FRAME_MAX as usize - 8;

fn gen(frame: &AMQPFrame) -> Vec<u8> {
    gen_frame(frame)(WriteContext::from(Vec::new())).expect("amq-protocol encodes").into_inner().0
}

fn parse_all(mut bytes: &[u8]) -> Vec<AMQPFrame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (rest, frame) = parse_frame(bytes).expect("amq-protocol parses our bytes");
        frames.push(frame);
        bytes = rest;
    }
    frames
}

fn split_all(bytes: &[u8]) -> Vec<RawFrame> {
    let mut buffer = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = split_frame(&mut buffer, FRAME_MAX).expect("well framed") {
        frames.push(frame);
    }
    assert!(buffer.is_empty());
    frames
}

fn headers_table() -> FieldTable {
    let mut nested = FieldTable::default();
    nested.insert("count".into(), AMQPValue::LongLongInt(3));
    let decimal = DecimalValue { scale: 2, value: 9 };
    let array = vec![AMQPValue::FieldTable(nested), AMQPValue::Void];
    let entries = [
        ("a-bool", AMQPValue::Boolean(true)),
        ("b-byte", AMQPValue::ShortShortInt(-3)),
        ("c-ubyte", AMQPValue::ShortShortUInt(200)),
        ("d-short", AMQPValue::ShortInt(-300)),
        ("e-ushort", AMQPValue::ShortUInt(60000)),
        ("f-int", AMQPValue::LongInt(-70000)),
        ("g-uint", AMQPValue::LongUInt(4_000_000_000)),
        ("h-long", AMQPValue::LongLongInt(-(1 << 40))),
        ("i-float", AMQPValue::Float(1.5)),
        ("j-double", AMQPValue::Double(-2.25)),
        ("k-decimal", AMQPValue::DecimalValue(decimal)),
        ("l-text", AMQPValue::LongString(LongString::from("héllo"))),
        ("m-array", AMQPValue::FieldArray(FieldArray::from(array))),
        ("n-time", AMQPValue::Timestamp(1_700_000_000)),
        ("o-bytes", AMQPValue::ByteArray(ByteArray::from(vec![0u8, 255]))),
        ("p-void", AMQPValue::Void),
    ];
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(key.into(), value);
    }
    table
}

fn full_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(headers_table())
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-1".into())
        .with_reply_to("amq.rabbitmq.reply-to".into())
        .with_expiration("60000".into())
        .with_message_id("msg-42".into())
        .with_timestamp(1_700_000_001)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("loadgen".into())
        .with_cluster_id("c1".into())
}

fn raw(props: &BasicProperties) -> Vec<u8> {
    encode_properties(props).expect("encodes")
}

fn body_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Bodies covering: none, sub-frame, exactly one full frame, three frames.
fn body_cases() -> Vec<Vec<u8>> {
    vec![Vec::new(), body_of(10), body_of(CHUNK), body_of(2 * CHUNK + 17)]
}

fn property_cases() -> Vec<BasicProperties> {
    vec![BasicProperties::default(), full_properties(), BasicProperties::default().with_priority(3)]
}

/// amq-protocol's frames for method + content, body split like ours.
fn content_frames(channel: u16, method: AMQPClass, props: &BasicProperties, body: &[u8]) -> Vec<AMQPFrame> {
    let header = AMQPContentHeader { class_id: 60, body_size: body.len() as u64, properties: props.clone() };
    let mut frames = vec![AMQPFrame::Method(channel, method), AMQPFrame::Header(channel, header)];
    frames.extend(body.chunks(CHUNK).map(|chunk| AMQPFrame::Body(channel, chunk.to_vec())));
    frames
}

/// Same bytes as amq-protocol, amq-protocol reads back the same frames, and
/// our own framing/header parsing recovers properties and body.
fn assert_content_agrees(ours: &[u8], expected: &[AMQPFrame], props: &BasicProperties, body: &[u8]) {
    let theirs: Vec<u8> = expected.iter().flat_map(gen).collect();
    assert_eq!(ours, &theirs[..], "bytes differ from amq-protocol");
    assert_eq!(parse_all(ours), expected);
    let frames = split_all(ours);
    let header = parse_content_header(&frames[1].payload).expect("header");
    assert_eq!(header.body_size, body.len() as u64);
    assert_eq!(&parse_properties(&header.properties).expect("props"), props);
    assert_eq!(&header.properties[..], &raw(props)[..]);
    let received: Vec<u8> = frames[2..].iter().flat_map(|f| f.payload.to_vec()).collect();
    assert_eq!(received, body);
    assert!(frames.iter().all(|f| f.payload.len() <= CHUNK));
}

#[test]
fn publish_agrees_both_ways() {
    for props in property_cases() {
        for body in body_cases() {
            let mut ours = BytesMut::new();
            encode_publish(&mut ours, 1, b"ex", b"rk.1", true, &raw(&props), &body, FRAME_MAX).expect("encodes");
            let method = AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: "ex".into(),
                routing_key: "rk.1".into(),
                mandatory: true,
                immediate: false,
            }));
            let expected = content_frames(1, method, &props, &body);
            assert_content_agrees(&ours, &expected, &props, &body);
            // amq-protocol's bytes through our parser (immediate too).
            let method = AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: "ex".into(),
                routing_key: "rk.1".into(),
                mandatory: true,
                immediate: true,
            }));
            let theirs = gen(&AMQPFrame::Method(1, method));
            let frames = split_all(&theirs);
            let publish = parse_publish(&frames[0].payload).expect("parses");
            assert_eq!(&publish.exchange[..], b"ex");
            assert_eq!(&publish.routing_key[..], b"rk.1");
            assert!(publish.mandatory && publish.immediate);
        }
    }
}

#[test]
fn deliver_agrees() {
    for props in property_cases() {
        for body in body_cases() {
            let properties = raw(&props);
            let delivery = Delivery {
                channel: 7,
                consumer_tag: b"amq.ctag-1",
                delivery_tag: u64::MAX - 1,
                redelivered: true,
                exchange: b"orders",
                routing_key: b"eu.new",
                properties: &properties,
                body: &body,
            };
            let mut ours = BytesMut::new();
            encode_deliver(&mut ours, &delivery, FRAME_MAX).expect("encodes");
            let method = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                consumer_tag: "amq.ctag-1".into(),
                delivery_tag: u64::MAX - 1,
                redelivered: true,
                exchange: "orders".into(),
                routing_key: "eu.new".into(),
            }));
            assert_content_agrees(&ours, &content_frames(7, method, &props, &body), &props, &body);
        }
    }
}

#[test]
fn get_ok_and_return_agree() {
    for props in property_cases() {
        for body in body_cases() {
            let properties = raw(&props);
            let mut ours = BytesMut::new();
            encode_get_ok(&mut ours, 2, 99, false, b"", b"q1", 12, &properties, &body, FRAME_MAX).expect("encodes");
            let method = AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
                delivery_tag: 99,
                redelivered: false,
                exchange: "".into(),
                routing_key: "q1".into(),
                message_count: 12,
            }));
            assert_content_agrees(&ours, &content_frames(2, method, &props, &body), &props, &body);

            let mut ours = BytesMut::new();
            encode_return(&mut ours, 4, 312, b"NO_ROUTE", b"ex", b"nowhere", &properties, &body, FRAME_MAX)
                .expect("encodes");
            let method = AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                reply_code: 312,
                reply_text: "NO_ROUTE".into(),
                exchange: "ex".into(),
                routing_key: "nowhere".into(),
            }));
            assert_content_agrees(&ours, &content_frames(4, method, &props, &body), &props, &body);
        }
    }
}

#[test]
fn acks_agree_both_ways() {
    use basic::AMQPMethod as M;
    for delivery_tag in [0, 1, 1 << 33, u64::MAX] {
        for bits in 0..4u8 {
            let (multiple, requeue) = (bits & 1 != 0, bits & 2 != 0);
            let mut encoded = [BytesMut::new(), BytesMut::new(), BytesMut::new()];
            encode_ack(&mut encoded[0], 5, delivery_tag, multiple);
            encode_nack(&mut encoded[1], 5, delivery_tag, multiple, requeue);
            encode_reject(&mut encoded[2], 5, delivery_tag, requeue);
            let methods = [
                M::Ack(basic::Ack { delivery_tag, multiple }),
                M::Nack(basic::Nack { delivery_tag, multiple, requeue }),
                M::Reject(basic::Reject { delivery_tag, requeue }),
            ];
            let acks = [
                Ack::Ack { delivery_tag, multiple },
                Ack::Nack { delivery_tag, multiple, requeue },
                Ack::Reject { delivery_tag, requeue },
            ];
            for ((ours, method), ack) in encoded.iter().zip(methods).zip(acks) {
                let frame = AMQPFrame::Method(5, AMQPClass::Basic(method));
                let theirs = gen(&frame);
                assert_eq!(&ours[..], &theirs[..]);
                assert_eq!(parse_all(ours), vec![frame]);
                let frames = split_all(&theirs);
                assert_eq!(parse_ack(&frames[0].payload), Ok(Some(ack)));
            }
        }
    }
}

#[test]
fn parse_ack_ignores_other_methods() {
    let mut out = BytesMut::new();
    encode_publish(&mut out, 1, b"", b"q", false, &[], b"", FRAME_MAX).expect("encodes");
    let frames = split_all(&out);
    assert_eq!(parse_ack(&frames[0].payload), Ok(None));
    assert_eq!(parse_ack(&[0, 50, 0, 80]), Ok(None), "not class basic");
    assert_eq!(parse_ack(&[0, 60, 0]), Err(CodecError::Truncated));
    assert_eq!(parse_ack(&[0, 60, 0, 80, 0, 0]), Err(CodecError::Truncated));
    let long = [0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 7, 1, 0];
    assert_eq!(parse_ack(&long), Err(CodecError::TrailingBytes { extra: 1 }));
}

#[test]
fn properties_agree_both_ways() {
    for props in property_cases() {
        let ours = raw(&props);
        let header = AMQPContentHeader { class_id: 60, body_size: 0, properties: props.clone() };
        let frame = gen(&AMQPFrame::Header(1, header));
        assert_eq!(&frame[7 + 12..frame.len() - 1], &ours[..], "prefix-stripped header");
        assert_eq!(parse_properties(&ours), Ok(props.clone()));
        assert_eq!(delivery_mode(&ours), *props.delivery_mode());
        assert_eq!(priority(&ours), *props.priority());
    }
    let all = raw(&full_properties());
    assert_eq!(u16::from_be_bytes([all[0], all[1]]), 0xFFFC, "all 14 flags set");
    let only_mode = raw(&BasicProperties::default().with_delivery_mode(1));
    assert_eq!((delivery_mode(&only_mode), priority(&only_mode)), (Some(1), None));
    assert_eq!((delivery_mode(&[0, 0]), priority(&[])), (None, None));
    let mode_first = raw(&BasicProperties::default()
        .with_content_type("t".into())
        .with_delivery_mode(2)
        .with_message_id("m".into()));
    assert_eq!(delivery_mode(&mode_first[..5]), Some(2), "fields after it may be cut");
    assert_eq!(priority(&all[..20]), None, "malformed gives None");
}

#[test]
fn reply_to_is_read_and_replaced_in_place_as_amq_protocol_sees_it() {
    let cases = [
        full_properties(),
        BasicProperties::default().with_reply_to("r".into()),
        BasicProperties::default().with_headers(headers_table()).with_reply_to("".into()).with_app_id("a".into()),
    ];
    for props in cases {
        let ours = raw(&props);
        let expected = props.reply_to().as_ref().map(|reply_to| reply_to.as_str().as_bytes().to_vec());
        assert_eq!(reply_to(&ours).map(<[u8]>::to_vec), expected);
        let name = "amq.rabbitmq.reply-to.0123456789abcdef";
        let replaced = with_reply_to(&ours, name.as_bytes()).expect("has a reply-to");
        // Everything else stays as it was: amq-protocol reads the same properties but reply-to.
        assert_eq!(parse_properties(&replaced), Ok(props.clone().with_reply_to(name.into())));
        assert_eq!(reply_to(&replaced), Some(name.as_bytes()));
    }
    let without = raw(&BasicProperties::default().with_correlation_id("c".into()).with_message_id("m".into()));
    assert_eq!((reply_to(&without), with_reply_to(&without, b"x")), (None, None));
    assert_eq!(reply_to(&[]), None);
    let all = raw(&full_properties());
    assert_eq!(with_reply_to(&all, &[b'x'; 256]), None, "longer than a short string");
    for cut in 0..40 {
        // Malformed (cut inside or before reply-to) reads as absent, never panics.
        let _ = (reply_to(&all[..cut.min(all.len())]), with_reply_to(&all[..cut.min(all.len())], b"x"));
    }
}

#[test]
fn content_header_validation() {
    let props = raw(&full_properties());
    let mut payload = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    payload.extend_from_slice(&props);
    let payload = Bytes::from(payload);
    let header = parse_content_header(&payload).expect("valid");
    assert_eq!((header.class_id, header.body_size), (60, 256));
    assert_eq!(header.properties.as_ptr(), payload[12..].as_ptr(), "zero-copy slice");
    for cut in 0..payload.len() {
        assert!(parse_content_header(&payload.slice(..cut)).is_err(), "cut {cut}");
    }
    let mut trailing = payload.to_vec();
    trailing.push(0);
    let err = parse_content_header(&Bytes::from(trailing)).expect_err("trailing");
    assert_eq!(err, CodecError::TrailingBytes { extra: 1 });
    let mut wrong_class = payload.to_vec();
    wrong_class[1] = 50;
    let err = parse_content_header(&Bytes::from(wrong_class)).expect_err("class");
    assert_eq!(err.reply_code(), 505);
    let bad_flags = Bytes::from_static(&[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let err = parse_content_header(&bad_flags).expect_err("flags");
    assert_eq!((err.clone(), err.reply_code()), (CodecError::BadPropertyFlags { flags: 1 }, 502));
    let bad_utf8 = [0x80, 0, 2, 0xC3, 0x28];
    assert_eq!(parse_properties(&bad_utf8), Err(CodecError::InvalidUtf8));
}

#[test]
fn publish_truncated_at_every_offset() {
    let mut out = BytesMut::new();
    encode_publish(&mut out, 1, b"exchange", b"routing.key", true, &[], b"", FRAME_MAX).expect("encodes");
    let payload = split_all(&out).remove(0).payload;
    let publish = parse_publish(&payload).expect("full payload parses");
    assert_eq!(publish.exchange.as_ptr(), payload[7..].as_ptr(), "zero-copy slice");
    for cut in 0..payload.len() {
        let err = parse_publish(&payload.slice(..cut)).expect_err("prefix must fail");
        assert_eq!(err.reply_code(), 502, "cut {cut}");
    }
    let mut ack = BytesMut::new();
    encode_ack(&mut ack, 1, 1, false);
    let err = parse_publish(&split_all(&ack).remove(0).payload).expect_err("not a publish");
    assert_eq!(err, CodecError::UnexpectedMethod { class_id: 60, method_id: 80 });
    assert_eq!(err.reply_code(), 503);
    assert_eq!(method_ids(&payload), Ok((60, 40)));
}

#[test]
fn encoders_are_all_or_nothing() {
    let mut out = BytesMut::from(&b"prior"[..]);
    let long = [b'x'; 256];
    let delivery = Delivery {
        channel: 1,
        consumer_tag: b"c",
        delivery_tag: 1,
        redelivered: false,
        exchange: b"",
        routing_key: &long,
        properties: &[],
        body: b"body",
    };
    let err = encode_deliver(&mut out, &delivery, FRAME_MAX).expect_err("256-byte short string");
    assert_eq!(err, CodecError::BadShortString { len: 256 });
    assert_eq!(&out[..], b"prior");
    // Properties that cannot fit a 4096-byte header frame.
    let big = raw(&BasicProperties::default().with_headers({
        let mut table = FieldTable::default();
        table.insert("blob".into(), AMQPValue::LongString(LongString::from(vec![1u8; 5000])));
        table
    }));
    let err = encode_publish(&mut out, 1, b"", b"q", false, &big, b"", FRAME_MAX).expect_err("too big");
    assert!(matches!(err, CodecError::Frame(FrameError::TooLarge { .. })));
    assert_eq!(&out[..], b"prior");
    encode_publish(&mut out, 1, b"", b"q", false, &big, b"", 0).expect("no limit");
    let mut table = FieldTable::default();
    table.insert("k".into(), AMQPValue::ShortString("v".into()));
    let unparseable = BasicProperties::default().with_headers(table);
    let err = encode_properties(&unparseable).expect_err("type '_'");
    assert_eq!(err, CodecError::UnknownFieldType { type_id: b'_' });
}

#[test]
fn frame_max_zero_sends_one_body_frame() {
    let body = body_of(100_000);
    let mut out = BytesMut::new();
    encode_publish(&mut out, 1, b"", b"q", false, &[], &body, 0).expect("encodes");
    let mut buffer = out.clone();
    let mut frames = Vec::new();
    while let Some(frame) = split_frame(&mut buffer, 0).expect("valid") {
        frames.push(frame);
    }
    assert_eq!(frames.len(), 3);
    assert_eq!(&frames[2].payload[..], &body[..]);
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_garbage_never_panics_and_agrees() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let seed = raw(&full_properties());
    for round in 0..4000 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            let len = (rng.next() % 64) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let mut mutated = seed.clone();
            for _ in 0..(rng.next() % 3 + 1) {
                let at = (rng.next() % mutated.len() as u64) as usize;
                mutated[at] = rng.next() as u8;
            }
            mutated
        };
        let payload = Bytes::from(bytes.clone());
        let _ = (method_ids(&bytes), parse_publish(&payload), parse_ack(&bytes));
        let _ = (parse_content_header(&payload), delivery_mode(&bytes), priority(&bytes));
        let _ = (reply_to(&bytes), with_reply_to(&bytes, b"amq.rabbitmq.reply-to.x"));
        let mut buffer = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = split_frame(&mut buffer, FRAME_MAX) {}
        // Anything we validate, amq-protocol must decode identically.
        if let Ok(ours) = parse_properties(&bytes) {
            assert_eq!(basic::parse_properties(&bytes[..]).map(|(_, p)| p), Ok(ours.clone()));
            assert_eq!(delivery_mode(&bytes), *ours.delivery_mode());
            assert_eq!(priority(&bytes), *ours.priority());
            let expected = ours.reply_to().as_ref().map(|reply_to| reply_to.as_str().as_bytes().to_vec());
            assert_eq!(reply_to(&bytes).map(<[u8]>::to_vec), expected);
        }
    }
}
