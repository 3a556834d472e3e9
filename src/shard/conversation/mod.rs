//! Conversations with real shards in one thread, without a socket or a runtime: the test
//! harness of the protocol core.
//!
//! A `Broker` holds N real `Shard`s (no data directory, no store) whose mailbox loops are
//! turned by hand; a `Client` is one connection on one of them, fed frames exactly as the
//! socket driver feeds them, and its output is decoded back into methods, content headers
//! and bodies. Every reply code the broker can send is reachable this way in microseconds.
//! Only the unit tests use it.

use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{channel, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use bytes::{Bytes, BytesMut};

use super::Shard;
use crate::alarms::Alarms;
use crate::amqp::admission::ConnectionSlots;
use crate::amqp::connection::{send_connection_close, Connection};
use crate::amqp::dispatch::{fault, release_connection, Dispatcher, Fault, Hangup, NO_METHOD};
use crate::amqp::handshake::{Handshake, Step};
use crate::broker::definitions::Definitions;
use crate::broker::error::AmqpError;
use crate::codec::frame::{split_frame, RawFrame, FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};
use crate::codec::hotpath::{self, ContentHeader};
use crate::codec::methods::{encode_method, parse_method};
use crate::config::Config;
use crate::ids::ConnId;
use crate::limits::{CHANNEL_MAX, FRAME_MAX_BYTES, MAILBOX_CAPACITY};

use super::mailbox::Mailboxes;

/// Mailbox turns after which a conversation that still has mail is taken to be looping.
const TURNS_MAX: usize = 10_000;

/// Every shard of a broker, turned by hand.
pub(crate) struct Broker {
    pub shards: Vec<Rc<Shard>>,
}

impl Broker {
    pub fn new(shard_count: usize) -> Broker {
        let mut config = Config::defaults();
        config.shards = shard_count;
        Broker::with_config(config)
    }

    pub fn with_config(config: Config) -> Broker {
        let shard_count = config.shards;
        let config = Arc::new(config);
        let mailboxes = Arc::new(Mailboxes::new(shard_count, MAILBOX_CAPACITY));
        let mut definitions = Definitions::new(shard_count);
        let initial = definitions.take_changed().unwrap_or_default();
        let mut writer = Some((definitions, None));
        let alarms = Arc::new(Alarms::default());
        let connection_slots = Arc::new(ConnectionSlots::new(config.max_connections));
        let shards = (0..shard_count)
            .map(|id| {
                let writer = if id == 0 { writer.take() } else { None };
                let shard =
                    Shard::new(id, config.clone(), mailboxes.clone(), initial.clone(), writer, None, alarms.clone());
                Rc::new(shard.sharing_connection_slots(connection_slots.clone()))
            })
            .collect();
        Broker { shards }
    }

    /// Turns every shard's mailbox loop until no shard has anything left to do.
    pub fn settle(&self) {
        for _ in 0..TURNS_MAX {
            let mut busy = false;
            for shard in &self.shards {
                let (handled, spilled) = shard.turn();
                busy |= handled > 0 || spilled;
            }
            if !busy {
                return;
            }
        }
        panic!("the shards still exchange messages after {TURNS_MAX} turns");
    }

    /// Polls `future` to its end, turning the shards whenever it waits for one of them.
    fn run<F: Future>(&self, future: F) -> F::Output {
        let mut future = pin!(future);
        let mut context = Context::from_waker(Waker::noop());
        for _ in 0..TURNS_MAX {
            if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
            self.settle();
        }
        panic!("a handler still waits after {TURNS_MAX} turns of the shards");
    }

    /// A connection on `shard` as guest from loopback, through the whole handshake, on vhost "/".
    pub fn connect(&self, shard: usize) -> Client<'_> {
        let mut client = self.connect_raw(shard, true);
        let start = client.handshake_bytes(crate::codec::frame::PROTOCOL_HEADER);
        assert_eq!(start, Step::HeaderAccepted(8));
        client.output();
        for method in [start_ok("PLAIN", b"\0guest\0guest"), tune_ok(CHANNEL_MAX, FRAME_MAX_BYTES, 0), open("/")] {
            client.handshake_method(method);
        }
        assert!(client.open, "the handshake did not open the connection: {:?}", client.output());
        client.output();
        client
    }

    /// A connection on `shard` before its protocol header: drive it with `handshake_*`.
    pub fn connect_raw(&self, shard: usize, loopback_peer: bool) -> Client<'_> {
        let shard = self.shards[shard].clone();
        let id = ConnId { shard: shard.id as u16, local: shard.next_connection_id() };
        let connection = Rc::new(Connection::new(id));
        let dispatcher = Dispatcher::new(shard.clone(), connection.clone());
        let handshake = Handshake::new(loopback_peer).with_limits(shard.connection_limits.clone());
        Client { broker: self, shard, connection, dispatcher, handshake, open: false, closed: false }
    }
}

/// What the broker wrote to a client, decoded.
#[derive(Debug)]
pub(crate) enum Out {
    Method {
        channel: u16,
        method: AMQPClass,
    },
    Header {
        channel: u16,
        header: ContentHeader,
    },
    Body {
        channel: u16,
        body: Bytes,
    },
    Heartbeat,
    /// Bytes that are not a frame (the protocol header sent back to a wrong header).
    Raw(Bytes),
}

/// One client connection, fed frames as the socket driver would feed them.
pub(crate) struct Client<'broker> {
    broker: &'broker Broker,
    pub shard: Rc<Shard>,
    pub connection: Rc<Connection>,
    dispatcher: Dispatcher<Shard>,
    handshake: Handshake,
    /// connection.open-ok was sent: frames go to the dispatcher.
    open: bool,
    /// The connection ended (close/close-ok done, or closed for an error).
    pub closed: bool,
}

impl Client<'_> {
    /// The first bytes of the connection.
    pub fn handshake_bytes(&mut self, bytes: &[u8]) -> Step {
        self.handshake.protocol_header(&self.connection, bytes)
    }

    /// One handshake method.
    pub fn handshake_method(&mut self, method: AMQPClass) -> Step {
        self.handshake_frame(method_frame(0, &method))
    }

    /// The largest frame the handshake reads before connection.tune-ok settled frame_max.
    pub fn handshake_frame_max(&self) -> u32 {
        self.handshake.frame_max(&self.connection)
    }

    /// A frame that could not be read within the handshake's frame_max: what the driver does.
    pub fn handshake_frame_error(&mut self, error: crate::codec::frame::FrameError) -> Step {
        self.closed = true;
        self.handshake.frame_error(&self.connection, error)
    }

    /// One handshake frame, whatever it holds, as the driver hands it over.
    pub fn handshake_frame(&mut self, frame: RawFrame) -> Step {
        let step = self.handshake.frame(&*self.shard, &self.connection, frame);
        match step {
            Step::Open { .. } => {
                self.open = true;
                self.shard.connections.borrow_mut().insert(self.connection.id.local, self.connection.clone());
            }
            Step::Refused => self.closed = true,
            Step::Continue | Step::HeaderAccepted(_) => {}
        }
        step
    }

    /// Sends one method on `channel` and lets the broker answer it.
    pub fn send(&mut self, channel: u16, method: AMQPClass) {
        self.send_frame(method_frame(channel, &method));
    }

    /// Sends raw bytes, cut into frames with the connection's frame_max as the driver does; a
    /// framing error closes the connection as the driver does, and once the connection has
    /// ended the rest is not read, as the driver stops reading then.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let mut buffer = BytesMut::from(bytes);
        while !self.closed {
            match split_frame(&mut buffer, self.connection.frame_max.get()) {
                Ok(Some(frame)) => self.send_frame(frame),
                Ok(None) => return,
                Err(error) => {
                    self.connection_error(fault(AmqpError::from_codec(error.reply_code(), error), NO_METHOD));
                    return;
                }
            }
        }
    }

    /// Hands one frame to the dispatcher, as the driver does, then settles the shards.
    pub fn send_frame(&mut self, frame: RawFrame) {
        assert!(self.open && !self.closed, "a frame sent on a connection that is not open");
        let result = self.broker.run(self.dispatcher.handle_frame(frame));
        self.dispatcher.end_of_batch();
        match result {
            Ok(false) => {}
            Ok(true) | Err(Hangup::Silent) => self.end(),
            Err(Hangup::Close(fault)) => self.connection_error(fault),
        }
        self.broker.settle();
    }

    /// Hands every frame of `bytes` to the dispatcher as one read of the socket: the driver
    /// flushes confirms once at the end of what it read, not after each frame. Every frame
    /// must be handled without closing anything.
    pub fn send_in_one_read(&mut self, bytes: &[u8]) {
        let mut buffer = BytesMut::from(bytes);
        while let Some(frame) = split_frame(&mut buffer, self.connection.frame_max.get()).expect("whole frames") {
            let result = self.broker.run(self.dispatcher.handle_frame(frame));
            assert!(matches!(result, Ok(false)), "{result:?}");
        }
        self.dispatcher.end_of_batch();
        self.broker.settle();
    }

    /// basic.publish with its content, each frame handled in turn.
    pub fn publish(
        &mut self,
        channel: u16,
        exchange: &str,
        routing_key: &str,
        properties: &AMQPProperties,
        body: &[u8],
    ) {
        let properties = hotpath::encode_properties(properties).expect("test properties encode");
        let mut out = BytesMut::new();
        hotpath::encode_publish(
            &mut out,
            channel,
            exchange.as_bytes(),
            routing_key.as_bytes(),
            false,
            &properties,
            body,
            self.connection.frame_max.get(),
        )
        .expect("test publish encodes");
        self.send_bytes(&out);
    }

    /// Opens `channel` and checks the broker's channel.open-ok.
    pub fn open_channel(&mut self, channel: u16) {
        self.send(channel, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
        match self.output().as_slice() {
            [Out::Method { channel: on, method: AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)) }]
                if *on == channel => {}
            other => panic!("expected channel.open-ok on {channel}, got {other:?}"),
        }
    }

    /// Everything the broker wrote since the last call, decoded frame by frame.
    pub fn output(&mut self) -> Vec<Out> {
        self.broker.settle();
        let mut buffer = BytesMut::new();
        while let Some(chunk) = self.connection.take_output() {
            buffer.extend_from_slice(&chunk);
        }
        decode(&mut buffer)
    }

    /// The methods among the output, with their channels.
    pub fn methods(&mut self) -> Vec<(u16, AMQPClass)> {
        self.output()
            .into_iter()
            .filter_map(|out| match out {
                Out::Method { channel, method } => Some((channel, method)),
                _ => None,
            })
            .collect()
    }

    /// The connection is gone from the client's side (socket closed): what the driver does.
    pub fn drop_connection(mut self) {
        self.end();
        self.broker.settle();
    }

    fn connection_error(&mut self, fault: Fault) {
        send_connection_close(&self.connection, &fault.error, fault.class_id, fault.method_id);
        self.end();
    }

    fn end(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.shard.connections.borrow_mut().remove(&self.connection.id.local);
        release_connection(&*self.shard, &self.connection);
    }
}

/// A method frame as a client would send it.
pub(crate) fn method_frame(channel: u16, method: &AMQPClass) -> RawFrame {
    let mut out = BytesMut::new();
    encode_method(&mut out, channel, method).expect("test method encodes");
    split_frame(&mut out, FRAME_MAX_BYTES).expect("one whole frame").expect("one whole frame")
}

fn decode(buffer: &mut BytesMut) -> Vec<Out> {
    let mut frames = Vec::new();
    while !buffer.is_empty() {
        if buffer.starts_with(b"AMQP") {
            frames.push(Out::Raw(buffer.split().freeze()));
            break;
        }
        let frame = match split_frame(buffer, FRAME_MAX_BYTES) {
            Ok(Some(frame)) => frame,
            other => panic!("the broker wrote something that is not a frame: {other:?}"),
        };
        frames.push(match frame.frame_type {
            FRAME_METHOD => Out::Method {
                channel: frame.channel,
                method: parse_method(&frame.payload).expect("the broker's methods parse"),
            },
            FRAME_HEADER => Out::Header {
                channel: frame.channel,
                header: hotpath::parse_content_header(&frame.payload).expect("the broker's headers parse"),
            },
            FRAME_BODY => Out::Body { channel: frame.channel, body: frame.payload },
            FRAME_HEARTBEAT => Out::Heartbeat,
            other => panic!("frame type {other} from the broker"),
        });
    }
    frames
}

pub(crate) fn start_ok(mechanism: &str, response: &[u8]) -> AMQPClass {
    let mut capabilities = FieldTable::default();
    capabilities.insert("connection.blocked".into(), AMQPValue::Boolean(true));
    let mut client_properties = FieldTable::default();
    client_properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
        client_properties,
        mechanism: mechanism.into(),
        response: LongString::from(response.to_vec()),
        locale: "en_US".into(),
    }))
}

pub(crate) fn tune_ok(channel_max: u16, frame_max: u32, heartbeat: u16) -> AMQPClass {
    AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk { channel_max, frame_max, heartbeat }))
}

pub(crate) fn open(vhost: &str) -> AMQPClass {
    AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open { virtual_host: vhost.into() }))
}

/// The (code, text, class, method) of a channel.close among `methods`, on `channel`.
pub(crate) fn channel_close(methods: &[(u16, AMQPClass)], on: u16) -> Option<(u16, String, u16, u16)> {
    methods.iter().find_map(|(channel, method)| match method {
        AMQPClass::Channel(channel::AMQPMethod::Close(close)) if *channel == on => {
            Some((close.reply_code, close.reply_text.to_string(), close.class_id, close.method_id))
        }
        _ => None,
    })
}

/// The (code, text, class, method) of a connection.close among `methods`.
pub(crate) fn connection_close(methods: &[(u16, AMQPClass)]) -> Option<(u16, String, u16, u16)> {
    methods.iter().find_map(|(_, method)| match method {
        AMQPClass::Connection(connection::AMQPMethod::Close(close)) => {
            Some((close.reply_code, close.reply_text.to_string(), close.class_id, close.method_id))
        }
        _ => None,
    })
}

mod basic_tests;
mod channel_tests;
mod direct_reply_tests;
mod exchange_tests;
mod fuzz;
mod handover_tests;
mod handshake_tests;
mod limits_tests;
mod queue_tests;
mod tx_confirm_tests;

#[cfg(test)]
mod tests {
    use amq_protocol::protocol::{basic, queue};

    use super::*;

    fn declare(name: &str) -> AMQPClass {
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

    #[test]
    fn a_published_message_reaches_a_consumer_on_another_shard() {
        let broker = Broker::new(3);
        let mut consumer = broker.connect(1);
        consumer.open_channel(1);
        consumer.send(1, declare("work"));
        let declared = consumer.methods();
        assert!(
            matches!(declared.as_slice(), [(1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)))] if ok.queue.as_str() == "work"),
            "{declared:?}"
        );
        consumer.send(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                queue: "work".into(),
                consumer_tag: "c1".into(),
                no_local: false,
                no_ack: true,
                exclusive: false,
                nowait: false,
                arguments: FieldTable::default(),
            })),
        );
        assert!(matches!(consumer.methods().as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)))]));
        let mut publisher = broker.connect(2);
        publisher.open_channel(7);
        publisher.publish(7, "", "work", &AMQPProperties::default(), b"hello");
        assert!(publisher.output().is_empty());
        match consumer.output().as_slice() {
            [Out::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::Deliver(deliver)) }, Out::Header { channel: 1, header }, Out::Body { channel: 1, body }] =>
            {
                assert_eq!(deliver.consumer_tag.as_str(), "c1");
                assert_eq!(deliver.delivery_tag, 1);
                assert_eq!(header.body_size, 5);
                assert_eq!(&body[..], b"hello");
            }
            other => panic!("expected one delivery, got {other:?}"),
        }
    }

    #[test]
    fn publishing_to_a_missing_exchange_closes_the_channel_with_404() {
        let broker = Broker::new(1);
        let mut client = broker.connect(0);
        client.open_channel(1);
        client.publish(1, "nowhere", "", &AMQPProperties::default(), b"x");
        let methods = client.methods();
        assert_eq!(
            channel_close(&methods, 1),
            Some((404, "NOT_FOUND - no exchange 'nowhere' in vhost '/'".into(), 60, 40))
        );
    }

    #[test]
    fn every_vhost_has_the_internal_trace_exchange_and_a_publish_to_it_is_403() {
        let broker = Broker::new(1);
        let mut client = broker.connect(0);
        client.open_channel(1);
        client.publish(1, "amq.rabbitmq.trace", "x", &AMQPProperties::default(), b"x");
        let methods = client.methods();
        assert_eq!(
            channel_close(&methods, 1),
            Some((
                403,
                "ACCESS_REFUSED - cannot publish to internal exchange 'amq.rabbitmq.trace' in vhost '/'".into(),
                60,
                40
            ))
        );
    }

    #[test]
    fn a_wrong_protocol_header_gets_ours_back() {
        let broker = Broker::new(1);
        let mut client = broker.connect_raw(0, true);
        assert_eq!(client.handshake_bytes(b"AMQP\x00\x00\x08\x00"), Step::Refused);
        match client.output().as_slice() {
            [Out::Raw(bytes)] => assert_eq!(&bytes[..], crate::codec::frame::PROTOCOL_HEADER),
            other => panic!("expected the protocol header, got {other:?}"),
        }
    }

    #[test]
    fn a_frame_on_channel_0_that_is_not_a_connection_method_closes_the_connection_with_504() {
        let broker = Broker::new(1);
        let mut client = broker.connect(0);
        client.send(0, declare("q"));
        let methods = client.methods();
        assert_eq!(
            connection_close(&methods),
            Some((504, "CHANNEL_ERROR - unexpected method in connection state running".into(), 50, 10))
        );
        assert!(client.closed);
        client.drop_connection();
    }
}
