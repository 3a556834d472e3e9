//! Target two: whole conversations, a fuzzed byte stream against a broker of real shards.
//!
//! Each input is one fresh client on one shard. It either starts before the handshake (the
//! bytes begin with what should be the protocol header and are driven through the handshake
//! exactly as the socket driver drives it) or after a clean handshake at a chosen frame_max
//! (the bytes go to the dispatcher through `Client::send_bytes`). After the input the client
//! goes away as a socket would, and the checks run: the shards settled (the harness panics
//! otherwise), the output stayed within the connection's bound and is a well-formed stream of
//! frames, and the shard forgot the connection and every request it made.

use std::fmt::Write;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{basic, connection, queue, AMQPClass};
use bytes::BytesMut;

use super::super::{open, start_ok, tune_ok, Broker, Client, Out};
use crate::amqp::handshake::Step;
use crate::codec::frame::{split_frame, FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, PROTOCOL_HEADER};
use crate::codec::hotpath::{self, CodecError};
use crate::codec::methods::parse_method;
use crate::limits::{CHANNEL_MAX, CONNECTION_OUTPUT_HIGH_BYTES};

/// Where the fuzzed bytes enter the connection.
#[derive(Clone, Copy, Debug)]
pub(super) enum Entry {
    /// From the first byte: protocol header, handshake frames, then whatever follows.
    Raw { loopback_peer: bool },
    /// After a clean handshake that negotiated `frame_max`.
    Open { frame_max: u32 },
}

pub(super) struct ConversationInput {
    pub shard: usize,
    pub entry: Entry,
    pub bytes: Vec<u8>,
}

impl ConversationInput {
    /// One line that `parse` reads back, for replaying a failure.
    pub fn describe(&self) -> String {
        let entry = match self.entry {
            Entry::Raw { loopback_peer } => format!("raw:{loopback_peer}"),
            Entry::Open { frame_max } => format!("open:{frame_max}"),
        };
        let mut hex = String::with_capacity(self.bytes.len() * 2);
        for byte in &self.bytes {
            let _ = write!(hex, "{byte:02x}");
        }
        format!("{} {entry} {hex}", self.shard)
    }

    pub fn parse(line: &str) -> Option<ConversationInput> {
        let mut parts = line.split_whitespace();
        let shard = parts.next()?.parse().ok()?;
        let entry = match parts.next()?.split_once(':')? {
            ("raw", loopback_peer) => Entry::Raw { loopback_peer: loopback_peer.parse().ok()? },
            ("open", frame_max) => Entry::Open { frame_max: frame_max.parse().ok()? },
            _ => return None,
        };
        let hex = parts.next().unwrap_or("");
        let bytes: Option<Vec<u8>> =
            (0..hex.len() / 2).map(|at| u8::from_str_radix(hex.get(at * 2..at * 2 + 2)?, 16).ok()).collect();
        Some(ConversationInput { shard, entry, bytes: bytes? })
    }
}

/// What one conversation did, for the summary.
pub(super) struct ConversationOutcome {
    pub output_bytes: usize,
    pub opened: bool,
    /// Deliveries, gets and returns written with a routing key that is not UTF-8 (finding 1).
    pub non_utf8_routing_keys: usize,
}

/// Runs one input on a fresh client of `broker` and checks what it left behind.
pub(super) fn run(broker: &Broker, input: &ConversationInput) -> ConversationOutcome {
    let (mut client, rest) = match input.entry {
        Entry::Raw { loopback_peer } => {
            let mut client = broker.connect_raw(input.shard, loopback_peer);
            let rest = handshake(&mut client, &input.bytes);
            (client, rest)
        }
        Entry::Open { frame_max } => {
            (open_client(broker, input.shard, frame_max), Some(BytesMut::from(&input.bytes[..])))
        }
    };
    let opened = client.open;
    if let Some(rest) = rest {
        client.send_bytes(&rest);
    }
    broker.settle();
    // The harness does not drain the output during an input, so this is the most the
    // connection held at once: the socket driver stops reading past the high mark.
    let output_bytes = client.connection.out.borrow().len();
    assert!(
        output_bytes <= CONNECTION_OUTPUT_HIGH_BYTES,
        "{output_bytes} bytes of output pending, over CONNECTION_OUTPUT_HIGH_BYTES"
    );
    let non_utf8_routing_keys = check_output(&client);
    let shard = client.shard.clone();
    let id = client.connection.id.local;
    client.drop_connection();
    assert!(!shard.connections.borrow().contains_key(&id), "the shard still holds the connection");
    for each in &broker.shards {
        assert!(
            each.pending.borrow().is_empty(),
            "shard {} still waits for {} replies",
            each.id,
            each.pending.borrow().len()
        );
    }
    ConversationOutcome { output_bytes, opened, non_utf8_routing_keys }
}

/// Drives the handshake with the input as the socket driver does; the bytes left once the
/// connection is open, None if it never opened.
fn handshake(client: &mut Client<'_>, bytes: &[u8]) -> Option<BytesMut> {
    let Step::HeaderAccepted(length) = client.handshake_bytes(bytes) else {
        // Refused, or the input ended inside the header.
        return None;
    };
    let mut buffer = BytesMut::from(&bytes[length..]);
    loop {
        match split_frame(&mut buffer, client.handshake_frame_max()) {
            Ok(Some(frame)) => match client.handshake_frame(frame) {
                Step::Open { .. } => return Some(buffer),
                Step::Continue | Step::HeaderAccepted(_) => {}
                Step::Refused => return None,
            },
            Ok(None) => return None,
            Err(error) => {
                client.handshake_frame_error(error);
                return None;
            }
        }
    }
}

/// A client through a clean handshake that negotiated `frame_max`, its output drained.
fn open_client(broker: &Broker, shard: usize, frame_max: u32) -> Client<'_> {
    let mut client = broker.connect_raw(shard, true);
    assert_eq!(client.handshake_bytes(PROTOCOL_HEADER), Step::HeaderAccepted(PROTOCOL_HEADER.len()));
    client.handshake_method(start_ok("PLAIN", b"\0guest\0guest"));
    client.handshake_method(tune_ok(CHANNEL_MAX, frame_max, 0));
    assert!(matches!(client.handshake_method(open("/")), Step::Open { .. }), "the handshake did not open");
    while client.connection.take_output().is_some() {}
    client
}

/// The broker's output is whole frames within the negotiated frame_max: methods and headers
/// that parse, and every content-bearing method followed by its header and exactly the body
/// it announces, on the same channel. Returns how many content-bearing methods carried a
/// routing key that is not UTF-8: a known finding (see `findings`), counted, not failed.
fn check_output(client: &Client<'_>) -> usize {
    let mut buffer = BytesMut::new();
    while let Some(chunk) = client.connection.take_output() {
        buffer.extend_from_slice(&chunk);
    }
    if buffer.starts_with(b"AMQP") {
        assert_eq!(&buffer[..], PROTOCOL_HEADER, "only a refused protocol header is answered with raw bytes");
        return 0;
    }
    let mut non_utf8_routing_keys = 0;
    let frame_max = client.connection.frame_max.get();
    // (channel, body bytes still owed) of the content being written, if any.
    let mut content: Option<(u16, Option<u64>)> = None;
    while !buffer.is_empty() {
        let frame = match split_frame(&mut buffer, frame_max) {
            Ok(Some(frame)) => frame,
            other => panic!("the broker wrote something that is not a frame within frame_max {frame_max}: {other:?}"),
        };
        match (frame.frame_type, content) {
            (FRAME_HEADER, Some((channel, None))) if channel == frame.channel => {
                let header = hotpath::parse_content_header(&frame.payload).expect("the broker's headers parse");
                content = (header.body_size > 0).then_some((channel, Some(header.body_size)));
            }
            (FRAME_BODY, Some((channel, Some(owed)))) if channel == frame.channel => {
                let length = frame.payload.len() as u64;
                assert!(length > 0 && length <= owed, "a body frame of {length} bytes where {owed} were owed");
                content = (owed > length).then_some((channel, Some(owed - length)));
            }
            (FRAME_METHOD, None) => {
                let carries_content = match parse_method(&frame.payload) {
                    Ok(method) => matches!(
                        method,
                        AMQPClass::Basic(
                            basic::AMQPMethod::Deliver(_) | basic::AMQPMethod::GetOk(_) | basic::AMQPMethod::Return(_)
                        )
                    ),
                    Err(CodecError::InvalidUtf8) if is_content_method(&frame.payload) => {
                        non_utf8_routing_keys += 1;
                        true
                    }
                    Err(error) => panic!("the broker wrote a method that does not parse: {error:?}"),
                };
                if carries_content {
                    content = Some((frame.channel, None));
                }
            }
            (FRAME_HEARTBEAT, None) => assert_eq!(frame.channel, 0, "a heartbeat on a channel"),
            (frame_type, expected) => {
                panic!("frame type {frame_type} on channel {} while {expected:?} was owed", frame.channel)
            }
        }
    }
    assert!(content.is_none(), "the output ended inside a message: {content:?}");
    non_utf8_routing_keys
}

/// basic.deliver, basic.get-ok or basic.return: the methods that echo a publisher's routing key.
fn is_content_method(payload: &[u8]) -> bool {
    matches!(hotpath::method_ids(payload), Ok((60, 50 | 60 | 71)))
}

/// The broker still serves a new client: a queue declared, a message published and fetched
/// back, the connection closed cleanly.
pub(super) fn probe(broker: &Broker, shard: usize) {
    let mut client = broker.connect(shard);
    client.open_channel(1);
    let declare = queue::Declare { exclusive: true, auto_delete: true, ..Default::default() };
    client.send(1, AMQPClass::Queue(queue::AMQPMethod::Declare(declare)));
    let name = match client.methods().as_slice() {
        [(1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)))] => ok.queue.to_string(),
        other => panic!("health probe: expected queue.declare-ok, got {other:?}"),
    };
    client.publish(1, "", &name, &AMQPProperties::default(), b"probe");
    client.send(1, AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: name.as_str().into(), no_ack: true })));
    match client.output().as_slice() {
        [Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::GetOk(_)), .. }, Out::Header { .. }, Out::Body { body, .. }]
            if &body[..] == b"probe" => {}
        other => panic!("health probe: expected the message back, got {other:?}"),
    }
    let close = connection::Close { reply_code: 200, reply_text: "probe done".into(), class_id: 0, method_id: 0 };
    client.send(0, AMQPClass::Connection(connection::AMQPMethod::Close(close)));
    assert!(
        matches!(client.methods().as_slice(), [(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))]),
        "health probe: no close-ok"
    );
    assert!(client.closed);
}
