//! Thin wrappers over amq-protocol for every method that is not on the
//! per-message hot path (connection, channel, exchange, queue, tx, confirm,
//! and the rarer basic methods).
//!
//! amq-protocol does the decoding, but input is first walked against the
//! argument layout below, which gives three things amq-protocol cannot: a
//! 540 for ids outside AMQP 0-9-1 versus a 502 for bad arguments, a bounded
//! field-table nesting depth (its parser recurses without limit), and
//! rejection of trailing bytes. This module must not hold protocol state or
//! decide what a method means for the broker.

use amq_protocol::frame::WriteContext;
use amq_protocol::protocol::{gen_class, parse_class, AMQPClass};
use bytes::BytesMut;

use super::frame::{skip_field_table, write_frame, Reader, FRAME_METHOD};
use super::hotpath::{method_ids, CodecError};

/// Argument kinds as they appear on the wire. `Bits` is one octet holding
/// a run of consecutive bit arguments (no method has more than eight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    Octet,
    Short,
    Long,
    LongLong,
    ShortStr,
    LongStr,
    Bits,
    Table,
}

use Arg::{Bits, Long, LongLong, LongStr, Octet, Short, ShortStr, Table};

/// Every AMQP 0-9-1 method (plus RabbitMQ's connection.blocked/unblocked and
/// update-secret, which amq-protocol also knows), with its arguments.
/// Reserved arguments are included since they occupy wire bytes.
const METHODS: &[(u16, u16, &[Arg])] = &[
    // connection
    (10, 10, &[Octet, Octet, Table, LongStr, LongStr]),
    (10, 11, &[Table, ShortStr, LongStr, ShortStr]),
    (10, 20, &[LongStr]),
    (10, 21, &[LongStr]),
    (10, 30, &[Short, Long, Short]),
    (10, 31, &[Short, Long, Short]),
    (10, 40, &[ShortStr, ShortStr, Bits]),
    (10, 41, &[ShortStr]),
    (10, 50, &[Short, ShortStr, Short, Short]),
    (10, 51, &[]),
    (10, 60, &[ShortStr]),
    (10, 61, &[]),
    (10, 70, &[LongStr, ShortStr]),
    (10, 71, &[]),
    // channel
    (20, 10, &[ShortStr]),
    (20, 11, &[LongStr]),
    (20, 20, &[Bits]),
    (20, 21, &[Bits]),
    (20, 40, &[Short, ShortStr, Short, Short]),
    (20, 41, &[]),
    // access
    (30, 10, &[ShortStr, Bits]),
    (30, 11, &[Short]),
    // exchange
    (40, 10, &[Short, ShortStr, ShortStr, Bits, Table]),
    (40, 11, &[]),
    (40, 20, &[Short, ShortStr, Bits]),
    (40, 21, &[]),
    (40, 30, &[Short, ShortStr, ShortStr, ShortStr, Bits, Table]),
    (40, 31, &[]),
    (40, 40, &[Short, ShortStr, ShortStr, ShortStr, Bits, Table]),
    (40, 51, &[]),
    // queue
    (50, 10, &[Short, ShortStr, Bits, Table]),
    (50, 11, &[ShortStr, Long, Long]),
    (50, 20, &[Short, ShortStr, ShortStr, ShortStr, Bits, Table]),
    (50, 21, &[]),
    (50, 30, &[Short, ShortStr, Bits]),
    (50, 31, &[Long]),
    (50, 40, &[Short, ShortStr, Bits]),
    (50, 41, &[Long]),
    (50, 50, &[Short, ShortStr, ShortStr, ShortStr, Table]),
    (50, 51, &[]),
    // basic
    (60, 10, &[Long, Short, Bits]),
    (60, 11, &[]),
    (60, 20, &[Short, ShortStr, ShortStr, Bits, Table]),
    (60, 21, &[ShortStr]),
    (60, 30, &[ShortStr, Bits]),
    (60, 31, &[ShortStr]),
    (60, 40, &[Short, ShortStr, ShortStr, Bits]),
    (60, 50, &[Short, ShortStr, ShortStr, ShortStr]),
    (60, 60, &[ShortStr, LongLong, Bits, ShortStr, ShortStr]),
    (60, 70, &[Short, ShortStr, Bits]),
    (60, 71, &[LongLong, Bits, ShortStr, ShortStr, Long]),
    (60, 72, &[ShortStr]),
    (60, 80, &[LongLong, Bits]),
    (60, 90, &[LongLong, Bits]),
    (60, 100, &[Bits]),
    (60, 110, &[Bits]),
    (60, 111, &[]),
    (60, 120, &[LongLong, Bits]),
    // confirm
    (85, 10, &[Bits]),
    (85, 11, &[]),
    // tx
    (90, 10, &[]),
    (90, 11, &[]),
    (90, 20, &[]),
    (90, 21, &[]),
    (90, 30, &[]),
    (90, 31, &[]),
];

fn layout(class_id: u16, method_id: u16) -> Option<&'static [Arg]> {
    METHODS.iter().find(|(class, method, _)| (*class, *method) == (class_id, method_id)).map(|(_, _, args)| *args)
}

/// True for every method id pair this codec can parse.
pub fn is_known_method(class_id: u16, method_id: u16) -> bool {
    layout(class_id, method_id).is_some()
}

/// Walks the arguments after the ids; the payload must end exactly after
/// the last one.
fn validate_arguments(payload: &[u8], args: &[Arg]) -> Result<(), CodecError> {
    let mut reader = Reader::new(payload);
    reader.take(4)?;
    for arg in args {
        match arg {
            Octet | Bits => drop(reader.u8()?),
            Short => drop(reader.u16()?),
            Long => drop(reader.u32()?),
            LongLong => drop(reader.u64()?),
            ShortStr => drop(reader.utf8_short_str()?),
            LongStr => drop(reader.long_str()?),
            Table => skip_field_table(&mut reader, 0)?,
        }
    }
    reader.finish()
}

/// Decodes any AMQP 0-9-1 method frame payload (class id, method id,
/// arguments).
///
/// Unknown ids give `UnknownMethod` (540 NOT_IMPLEMENTED); bad arguments
/// give a 502 SYNTAX_ERROR variant. Lengths are checked against the payload
/// before anything is allocated.
pub fn parse_method(payload: &[u8]) -> Result<AMQPClass, CodecError> {
    let (class_id, method_id) = method_ids(payload)?;
    let args = layout(class_id, method_id).ok_or(CodecError::UnknownMethod { class_id, method_id })?;
    validate_arguments(payload, args)?;
    match parse_class(payload) {
        Ok(([], method)) => Ok(method),
        Ok((rest, _)) => Err(CodecError::TrailingBytes { extra: rest.len() }),
        Err(_) => Err(CodecError::Malformed { class_id, method_id }),
    }
}

/// Appends `method` as a complete method frame on `channel`.
///
/// amq-protocol's generator needs a seekable writer to back-patch lengths,
/// which BytesMut is not, so the payload goes through a small Vec; these
/// methods are rare enough that the copy does not matter.
pub fn encode_method(out: &mut BytesMut, channel: u16, method: &AMQPClass) -> Result<(), CodecError> {
    let generated = gen_class(method)(WriteContext::from(Vec::with_capacity(128))).map_err(|_| CodecError::Generate)?;
    let (payload, _) = generated.into_inner();
    write_frame(out, FRAME_METHOD, channel, &payload)?;
    Ok(())
}

/// Encodes a field table (with its 4-byte length), for records the broker stores.
pub fn encode_field_table(table: &amq_protocol::types::FieldTable) -> Result<Vec<u8>, CodecError> {
    let generated = amq_protocol::types::generation::gen_field_table(table)(WriteContext::from(Vec::with_capacity(64)))
        .map_err(|_| CodecError::Generate)?;
    let (bytes, _) = generated.into_inner();
    Ok(bytes)
}

/// Decodes a field table written by `encode_field_table`, checking its structure (and the
/// nesting bound) before amq-protocol sees it.
pub fn decode_field_table(bytes: &[u8]) -> Result<amq_protocol::types::FieldTable, CodecError> {
    let mut reader = Reader::new(bytes);
    skip_field_table(&mut reader, 0)?;
    reader.finish()?;
    match amq_protocol::types::parsing::parse_field_table(bytes) {
        Ok((_, table)) => Ok(table),
        Err(_) => Err(CodecError::Malformed { class_id: 0, method_id: 0 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::frame::{gen_frame, parse_frame, AMQPFrame};
    use amq_protocol::protocol::{basic, connection, queue};
    use amq_protocol::types::{AMQPValue, FieldTable};

    /// A payload exercising every argument kind of a layout with non-empty
    /// values (one table entry holding a nested array).
    fn sample_payload(class_id: u16, method_id: u16, args: &[Arg]) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&class_id.to_be_bytes());
        payload.extend_from_slice(&method_id.to_be_bytes());
        for arg in args {
            match arg {
                Octet | Bits => payload.push(1),
                Short => payload.extend_from_slice(&7u16.to_be_bytes()),
                Long => payload.extend_from_slice(&70_000u32.to_be_bytes()),
                LongLong => payload.extend_from_slice(&(1u64 << 40).to_be_bytes()),
                ShortStr => payload.extend_from_slice(b"\x02ab"),
                LongStr => payload.extend_from_slice(b"\x00\x00\x00\x03xyz"),
                // {"k": [I 5]}: 1+1 key, 'A', len 5, 'I', 4 bytes
                Table => payload.extend_from_slice(b"\x00\x00\x00\x0c\x01kA\x00\x00\x00\x05I\x00\x00\x00\x05"),
            }
        }
        payload
    }

    #[test]
    fn layouts_match_amq_protocol_ids() {
        // A zero-filled argument area is valid for every known method, so
        // amq-protocol must accept exactly the ids in our table.
        for class_id in 0..=100u16 {
            for method_id in 0..=130u16 {
                let mut payload = [0u8; 64];
                payload[..2].copy_from_slice(&class_id.to_be_bytes());
                payload[2..4].copy_from_slice(&method_id.to_be_bytes());
                let theirs = parse_class(&payload[..]).is_ok();
                assert_eq!(is_known_method(class_id, method_id), theirs, "{class_id}.{method_id}");
            }
        }
    }

    #[test]
    fn every_layout_parses_exactly() {
        for (class_id, method_id, args) in METHODS {
            let payload = sample_payload(*class_id, *method_id, args);
            let ours = parse_method(&payload).expect("sample parses");
            let (rest, theirs) = parse_class(&payload[..]).expect("amq-protocol parses");
            assert!(rest.is_empty(), "{class_id}.{method_id} left bytes");
            assert_eq!(ours, theirs);
            for cut in 0..payload.len() {
                let err = parse_method(&payload[..cut]).expect_err("prefix must fail");
                assert_eq!(err.reply_code(), 502, "{class_id}.{method_id} cut {cut}");
            }
            let mut longer = payload.clone();
            longer.push(0);
            assert_eq!(parse_method(&longer), Err(CodecError::TrailingBytes { extra: 1 }));
        }
    }

    #[test]
    fn unknown_ids_are_not_implemented() {
        for ids in [[0, 99, 0, 10], [0, 60, 0, 99], [0xFF, 0xFF, 0xFF, 0xFF], [0, 10, 0, 0]] {
            let err = parse_method(&ids).expect_err("unknown");
            assert_eq!(err.reply_code(), 540, "{ids:?}");
            assert!(err.to_string().starts_with("NOT_IMPLEMENTED"));
        }
        assert_eq!(parse_method(&[0, 10, 0]), Err(CodecError::Truncated));
    }

    #[test]
    fn huge_declared_lengths_fail_fast() {
        let started = std::time::Instant::now();
        // queue.declare whose arguments table claims 10 MB.
        let mut payload = vec![0, 50, 0, 10, 0, 0, 1, b'q', 0];
        payload.extend_from_slice(&10_000_000u32.to_be_bytes());
        payload.extend_from_slice(b"\x01kS\x00\x98\x96\x80abc");
        assert_eq!(parse_method(&payload), Err(CodecError::Truncated));
        // connection.secure-ok with a 10 MB long string, and a table entry
        // whose long string claims 10 MB inside a correctly sized table.
        let mut payload = vec![0, 10, 0, 21];
        payload.extend_from_slice(&10_000_000u32.to_be_bytes());
        assert_eq!(parse_method(&payload).map_err(|e| e.reply_code()), Err(502));
        let mut payload = vec![0, 50, 0, 10, 0, 0, 1, b'q', 0, 0, 0, 0, 10];
        payload.extend_from_slice(b"\x01kS\x00\x98\x96\x80abc");
        assert_eq!(parse_method(&payload), Err(CodecError::Truncated));
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn deep_nesting_is_rejected_not_recursed() {
        // 100k nested arrays would overflow amq-protocol's recursive parser.
        let mut value = Vec::new();
        for level in 0..100_000u32 {
            value.push(b'A');
            value.extend_from_slice(&((99_999 - level) * 5 + 1).to_be_bytes());
        }
        value.push(b'V');
        let mut table = vec![1, b'k'];
        table.extend_from_slice(&value);
        let mut payload = vec![0, 50, 0, 10, 0, 0, 1, b'q', 0];
        payload.extend_from_slice(&(table.len() as u32).to_be_bytes());
        payload.extend_from_slice(&table);
        assert_eq!(parse_method(&payload), Err(CodecError::NestingTooDeep));
    }

    #[test]
    fn encode_method_matches_gen_frame() {
        let mut arguments = FieldTable::default();
        arguments.insert("x-max-length".into(), AMQPValue::LongInt(10));
        let methods = [
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: "orders".into(),
                durable: true,
                arguments,
                ..Default::default()
            })),
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: 320,
                reply_text: "CONNECTION_FORCED - shutdown".into(),
                class_id: 0,
                method_id: 0,
            })),
            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk { consumer_tag: "ctag-1".into() })),
        ];
        for method in methods {
            let mut ours = BytesMut::new();
            encode_method(&mut ours, 3, &method).expect("encodes");
            let frame = AMQPFrame::Method(3, method.clone());
            let theirs =
                gen_frame(&frame)(WriteContext::from(Vec::new())).expect("amq-protocol encodes").into_inner().0;
            assert_eq!(&ours[..], &theirs[..]);
            assert_eq!(parse_frame(&ours[..]), Ok((&[][..], frame)));
            assert_eq!(parse_method(&ours[7..ours.len() - 1]), Ok(method));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5000 {
            let (class_id, method_id, args) = METHODS[(next() % METHODS.len() as u64) as usize];
            let mut payload = sample_payload(class_id, method_id, args);
            let flips = next() % 4 + 1;
            for _ in 0..flips {
                let at = (next() % payload.len() as u64) as usize;
                payload[at] = next() as u8;
            }
            if next() % 3 == 0 {
                let cut = (next() % payload.len() as u64) as usize;
                payload.truncate(cut);
            }
            // Whatever we accept, amq-protocol must agree with.
            if let Ok(ours) = parse_method(&payload) {
                assert_eq!(parse_class(&payload[..]).map(|(_, m)| m), Ok(ours));
            }
        }
    }
}
