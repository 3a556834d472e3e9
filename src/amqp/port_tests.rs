//! The dispatcher alone, through a fake `Port` that records every message and request and
//! answers requests from a script: the requests a frame turns into, with no shard behind.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{basic, channel, confirm, exchange, queue, AMQPClass};
use amq_protocol::types::FieldTable;
use bytes::{Bytes, BytesMut};

use super::connection::Connection;
use super::dispatch::{fault, Dispatcher, Fault, Hangup};
use super::port::{Port, ReplyHook};
use crate::broker::definitions::Definitions;
use crate::broker::error::{AmqpError, NOT_ALLOWED, PRECONDITION_FAILED};
use crate::broker::messages::{ReplyTo, ShardMsg};
use crate::broker::placement::queue_owner;
use crate::broker::queue::{Payload, Settle};
use crate::broker::requests::{AdminRequest, GotMessage, QueueDeclare, QueueRequest, ReplyBody};
use crate::broker::snapshot::Snapshot;
use crate::codec::frame::{split_frame, RawFrame, FRAME_METHOD};
use crate::codec::hotpath;
use crate::codec::message::Message;
use crate::codec::methods::{encode_method, parse_method};
use crate::ids::{ConnId, Holder, QueueId};
use crate::limits::FRAME_MAX_BYTES;

const SHARD_COUNT: usize = 3;
/// The shard the fake connection lives on.
const HOME_SHARD: usize = 0;

/// A port over vectors: what the dispatcher sends and asks is recorded; requests are answered
/// in order from `answers`.
struct FakePort {
    snapshot: Arc<Snapshot>,
    sent: RefCell<Vec<(usize, ShardMsg)>>,
    requests: RefCell<Vec<(usize, ShardMsg)>>,
    answers: RefCell<VecDeque<Result<ReplyBody, AmqpError>>>,
    /// Calls of `wake_now`.
    wakes: std::cell::Cell<u32>,
}

impl Port for FakePort {
    fn shard_count(&self) -> usize {
        SHARD_COUNT
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.clone()
    }

    fn send(&self, to: usize, message: ShardMsg) {
        self.sent.borrow_mut().push((to, message));
    }

    fn wake_now(&self) {
        self.wakes.set(self.wakes.get() + 1);
    }

    fn request_with_hook(
        &self,
        to: usize,
        make: impl FnOnce(ReplyTo) -> ShardMsg,
        hook: Option<ReplyHook>,
    ) -> impl Future<Output = Result<ReplyBody, AmqpError>> {
        let request_id = self.requests.borrow().len() as u64 + 1;
        self.requests.borrow_mut().push((to, make(ReplyTo { shard: HOME_SHARD, request_id })));
        let answer = self.answers.borrow_mut().pop_front().expect("the script has an answer for every request");
        if let Some(hook) = hook {
            hook(&answer);
        }
        std::future::ready(answer)
    }

    fn consumer_timeout_ms(&self) -> Option<u64> {
        None
    }

    fn max_message_size_bytes(&self) -> u64 {
        crate::limits::MESSAGE_BODY_MAX_BYTES
    }

    fn schedule_ack_deadline(&self, _overdue_at_ms: u64) {}
}

/// A name `SHARD_COUNT` shards place on `shard`.
fn queue_on(shard: usize) -> String {
    (0..)
        .map(|index| format!("orders{index}"))
        .find(|name| queue_owner("/", name, SHARD_COUNT) == shard)
        .expect("some name lands on every shard")
}

/// Definitions with the default vhost and one queue on each of `shards`, named by `queue_on`.
fn snapshot_with_queues_on(shards: &[usize]) -> Arc<Snapshot> {
    let mut definitions = Definitions::new(SHARD_COUNT);
    for shard in shards {
        let declare = QueueDeclare {
            vhost: "/".into(),
            name: queue_on(*shard),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::default(),
            conn: ConnId { shard: 1, local: 99 },
            grant: None,
        };
        definitions.declare_queue(&declare).expect("the queue is declared");
    }
    definitions.take_changed().expect("declaring changed the definitions")
}

fn queue_id(snapshot: &Snapshot, name: &str) -> QueueId {
    snapshot.vhost("/").and_then(|vhost| vhost.queues.get(name)).expect("the queue is in the snapshot").id
}

struct Harness {
    port: Rc<FakePort>,
    connection: Rc<Connection>,
    dispatcher: Dispatcher<FakePort>,
}

impl Harness {
    fn new(snapshot: Arc<Snapshot>) -> Harness {
        let port = Rc::new(FakePort {
            snapshot,
            sent: Default::default(),
            requests: Default::default(),
            answers: Default::default(),
            wakes: Default::default(),
        });
        let connection = Rc::new(Connection::new(ConnId { shard: HOME_SHARD as u16, local: 1 }));
        *connection.user.borrow_mut() = "guest".into();
        // The handshake sets the vhost; this dispatcher starts after it.
        *connection.vhost.borrow_mut() = "/".into();
        let dispatcher = Dispatcher::new(port.clone(), connection.clone());
        Harness { port, connection, dispatcher }
    }

    fn answer(&self, answer: Result<ReplyBody, AmqpError>) {
        self.port.answers.borrow_mut().push_back(answer);
    }

    /// Hands one frame to the dispatcher; its future must complete without a shard turning.
    fn frame(&mut self, frame: RawFrame) -> Result<bool, Fault> {
        let mut future = pin!(self.dispatcher.handle_frame(frame));
        match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Err(Hangup::Silent)) => panic!("the dispatcher dropped the socket"),
            Poll::Ready(result) => result.map_err(|hangup| match hangup {
                Hangup::Close(fault) => fault,
                Hangup::Silent => unreachable!("matched above"),
            }),
            Poll::Pending => panic!("the dispatcher waits although every request is answered at once"),
        }
    }

    fn bytes(&mut self, mut bytes: BytesMut) {
        while let Some(frame) = split_frame(&mut bytes, FRAME_MAX_BYTES).expect("whole test frames") {
            assert_eq!(self.frame(frame), Ok(false));
        }
        self.dispatcher.end_of_batch();
    }

    fn method(&mut self, channel_id: u16, method: AMQPClass) -> Result<bool, Fault> {
        let mut out = BytesMut::new();
        encode_method(&mut out, channel_id, &method).expect("test method encodes");
        let frame = split_frame(&mut out, FRAME_MAX_BYTES).expect("a whole frame").expect("a whole frame");
        self.frame(frame)
    }

    /// The methods the dispatcher wrote to the client since the last call.
    fn written(&self) -> Vec<(u16, AMQPClass)> {
        let mut buffer = BytesMut::new();
        while let Some(chunk) = self.connection.take_output() {
            buffer.extend_from_slice(&chunk);
        }
        let mut methods = Vec::new();
        while let Some(frame) = split_frame(&mut buffer, FRAME_MAX_BYTES).expect("the dispatcher writes frames") {
            if frame.frame_type == FRAME_METHOD {
                methods.push((frame.channel, parse_method(&frame.payload).expect("the dispatcher's methods parse")));
            }
        }
        methods
    }

    fn open_channel(&mut self, channel_id: u16) {
        assert_eq!(self.method(channel_id, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))), Ok(false));
        let written = self.written();
        assert!(
            matches!(written.as_slice(), [(on, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))] if *on == channel_id),
            "{written:?}"
        );
    }

    fn take_sent(&self) -> Vec<(usize, ShardMsg)> {
        std::mem::take(&mut *self.port.sent.borrow_mut())
    }

    fn take_requests(&self) -> Vec<(usize, ShardMsg)> {
        std::mem::take(&mut *self.port.requests.borrow_mut())
    }

    /// basic.get of `name` (acknowledged), answered with a message of `sequence`.
    fn get(&mut self, channel_id: u16, name: &str, sequence: u64) {
        let queue = queue_id(&self.port.snapshot, name);
        self.answer(Ok(ReplyBody::Get(Some(GotMessage {
            queue,
            sequence,
            payload: Payload::Memory(Arc::new(message(name))),
            redelivered: false,
            message_count: 0,
            delivery_count: None,
        }))));
        let get = AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: name.into(), no_ack: false }));
        assert_eq!(self.method(channel_id, get), Ok(false));
        let written = self.written();
        assert!(matches!(written.first(), Some((_, AMQPClass::Basic(basic::AMQPMethod::GetOk(_))))), "{written:?}");
    }
}

fn message(routing_key: &str) -> Message {
    Message {
        exchange: Bytes::new(),
        routing_key: Bytes::from(routing_key.to_string()),
        properties: Bytes::from(hotpath::encode_properties(&AMQPProperties::default()).expect("properties encode")),
        body: Bytes::from_static(b"body"),
    }
}

fn publish(channel_id: u16, exchange: &str, routing_key: &str, body: &[u8]) -> BytesMut {
    let properties = hotpath::encode_properties(&AMQPProperties::default()).expect("properties encode");
    let mut out = BytesMut::new();
    hotpath::encode_publish(
        &mut out,
        channel_id,
        exchange.as_bytes(),
        routing_key.as_bytes(),
        false,
        &properties,
        body,
        FRAME_MAX_BYTES,
    )
    .expect("test publish encodes");
    out
}

#[test]
fn a_publish_to_a_queue_owned_by_shard_2_is_sent_to_shard_2_and_nowhere_else() {
    let name = queue_on(2);
    let mut harness = Harness::new(snapshot_with_queues_on(&[2]));
    harness.open_channel(1);
    harness.bytes(publish(1, "", &name, b"payload"));
    let expected_queue = queue_id(&harness.port.snapshot, &name);
    let expected_publisher = harness.connection.holder(1);
    let sent = harness.take_sent();
    match sent.as_slice() {
        [(2, ShardMsg::Publish { queue, message, publisher, publish_sequence })] => {
            assert_eq!(*queue, expected_queue);
            assert_eq!(*publisher, expected_publisher);
            assert_eq!(*publish_sequence, None, "the channel is not in confirm mode");
            assert_eq!(&message.body[..], b"payload");
            assert_eq!(&message.routing_key[..], name.as_bytes());
        }
        other => panic!("expected one Publish to shard 2, got {other:?}"),
    }
    assert!(harness.take_requests().is_empty(), "a publish asks nothing");
    assert!(harness.written().is_empty());
}

#[test]
fn a_publish_on_a_confirm_channel_carries_its_sequence_number() {
    let name = queue_on(2);
    let mut harness = Harness::new(snapshot_with_queues_on(&[2]));
    harness.open_channel(1);
    let select = AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: true }));
    assert_eq!(harness.method(1, select), Ok(false));
    harness.bytes(publish(1, "", &name, b"one"));
    harness.bytes(publish(1, "", &name, b"two"));
    let sequences: Vec<(usize, Option<u64>)> = harness
        .take_sent()
        .iter()
        .map(|(to, sent)| match sent {
            ShardMsg::Publish { publish_sequence, .. } => (*to, *publish_sequence),
            other => panic!("expected Publish, got {other:?}"),
        })
        .collect();
    assert_eq!(sequences, [(2, Some(1)), (2, Some(2))]);
    assert!(harness.written().is_empty(), "no confirm before the queue's");
}

/// A burst of confirm-mode publishes wakes the queues' shards every
/// `CONFIRM_PUBLISHES_PER_WAKE` of them while it is parsed; publishes without confirms leave
/// the wake to the end of the read.
#[test]
fn confirm_mode_publishes_wake_their_shards_during_a_burst() {
    let name = queue_on(2);
    let per_wake = crate::limits::CONFIRM_PUBLISHES_PER_WAKE;
    let mut harness = Harness::new(snapshot_with_queues_on(&[2]));
    harness.open_channel(1);
    harness.open_channel(2);
    let select = AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: true }));
    assert_eq!(harness.method(1, select), Ok(false));
    let mut burst = BytesMut::new();
    for _ in 0..per_wake * 2 + 1 {
        burst.extend_from_slice(&publish(2, "", &name, b"no confirm"));
    }
    harness.bytes(burst);
    assert_eq!(harness.port.wakes.get(), 0, "no confirms, no early wake");
    let mut burst = BytesMut::new();
    for _ in 0..per_wake * 2 + 1 {
        burst.extend_from_slice(&publish(1, "", &name, b"confirmed"));
    }
    harness.bytes(burst);
    assert_eq!(harness.port.wakes.get(), 2);
    assert_eq!(harness.take_sent().len() as u32, 4 * per_wake + 2, "every publish was sent");
}

#[test]
fn an_unroutable_publish_sends_nothing() {
    let mut harness = Harness::new(snapshot_with_queues_on(&[2]));
    harness.open_channel(1);
    harness.bytes(publish(1, "amq.direct", "unbound", b"lost"));
    assert!(harness.take_sent().is_empty());
    assert!(harness.written().is_empty());
}

#[test]
fn basic_get_asks_the_owner_of_the_queue() {
    let name = queue_on(1);
    let mut harness = Harness::new(snapshot_with_queues_on(&[1]));
    harness.open_channel(1);
    harness.get(1, &name, 5);
    let expected_queue = queue_id(&harness.port.snapshot, &name);
    let expected_holder = harness.connection.holder(1);
    match harness.take_requests().as_slice() {
        [(1, ShardMsg::QueueOp { queue, request: QueueRequest::Get { holder, no_ack: false }, reply: Some(_) })] => {
            assert_eq!((*queue, *holder), (expected_queue, expected_holder));
        }
        other => panic!("expected one Get to shard 1, got {other:?}"),
    }
}

#[test]
fn ack_multiple_emits_one_settle_per_owning_queue() {
    let (first, second) = (queue_on(1), queue_on(2));
    let mut harness = Harness::new(snapshot_with_queues_on(&[1, 2]));
    harness.open_channel(1);
    harness.get(1, &first, 7);
    harness.get(1, &second, 4);
    harness.get(1, &first, 8);
    harness.take_requests();
    let ack = AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag: 3, multiple: true }));
    assert_eq!(harness.method(1, ack), Ok(false));
    let holder = harness.connection.holder(1);
    let mut settles: Vec<(usize, QueueId, Holder, Vec<u64>, Settle)> = harness
        .take_sent()
        .into_iter()
        .map(|(to, sent)| match sent {
            ShardMsg::Settle { queue, holder, sequences, action } => (to, queue, holder, sequences, action),
            other => panic!("expected Settle, got {other:?}"),
        })
        .collect();
    settles.sort_by_key(|(to, ..)| *to);
    let snapshot = harness.port.snapshot.clone();
    assert_eq!(
        settles,
        [
            (1, queue_id(&snapshot, &first), holder, vec![7, 8], Settle::Ack),
            (2, queue_id(&snapshot, &second), holder, vec![4], Settle::Ack),
        ]
    );
    assert!(harness.written().is_empty());
}

#[test]
fn ack_of_an_unknown_delivery_tag_closes_the_channel_and_releases_it() {
    let name = queue_on(2);
    let mut harness = Harness::new(snapshot_with_queues_on(&[2]));
    harness.open_channel(1);
    harness.get(1, &name, 1);
    let holder = harness.connection.holder(1);
    let ack = AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag: 9, multiple: false }));
    assert_eq!(harness.method(1, ack), Ok(false));
    let written = harness.written();
    match written.as_slice() {
        [(1, AMQPClass::Channel(channel::AMQPMethod::Close(close)))] => assert_eq!(
            (close.reply_code, close.reply_text.as_str(), close.class_id, close.method_id),
            (406, "PRECONDITION_FAILED - unknown delivery tag 9", 60, 80)
        ),
        other => panic!("expected channel.close, got {other:?}"),
    }
    let sent = harness.take_sent();
    assert!(matches!(sent.as_slice(), [(2, ShardMsg::ChannelGone { holder: gone })] if *gone == holder), "{sent:?}");
}

#[test]
fn channel_close_emits_channel_gone_to_each_shard_the_channel_touched() {
    let (first, second) = (queue_on(1), queue_on(2));
    let mut harness = Harness::new(snapshot_with_queues_on(&[1, 2]));
    harness.open_channel(1);
    harness.open_channel(2);
    harness.get(1, &first, 1);
    harness.get(1, &second, 1);
    harness.get(2, &second, 2);
    let holder = harness.connection.holder(1);
    let close = AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    }));
    assert_eq!(harness.method(1, close), Ok(false));
    let written = harness.written();
    assert!(matches!(written.as_slice(), [(1, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)))]), "{written:?}");
    let mut gone: Vec<(usize, Holder)> = harness
        .take_sent()
        .into_iter()
        .map(|(to, sent)| match sent {
            ShardMsg::ChannelGone { holder } => (to, holder),
            other => panic!("expected ChannelGone, got {other:?}"),
        })
        .collect();
    gone.sort_by_key(|(to, _)| *to);
    assert_eq!(gone, [(1, holder), (2, holder)], "shard 0 was not touched; channel 2 stays");
}

#[test]
fn a_channel_that_touched_no_shard_closes_without_a_message() {
    let mut harness = Harness::new(snapshot_with_queues_on(&[]));
    harness.open_channel(1);
    let close = AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    }));
    assert_eq!(harness.method(1, close), Ok(false));
    assert!(harness.take_sent().is_empty());
}

fn exchange_declare(nowait: bool) -> AMQPClass {
    AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
        exchange: "events".into(),
        kind: "topic".into(),
        passive: false,
        durable: true,
        auto_delete: false,
        internal: false,
        nowait,
        arguments: FieldTable::default(),
    }))
}

#[test]
fn exchange_declare_is_an_admin_request_to_shard_0_answered_with_declare_ok() {
    let mut harness = Harness::new(snapshot_with_queues_on(&[]));
    harness.open_channel(1);
    harness.answer(Ok(ReplyBody::Done));
    assert_eq!(harness.method(1, exchange_declare(false)), Ok(false));
    match harness.take_requests().as_slice() {
        [(0, ShardMsg::Admin { request, reply })] => {
            assert_eq!(*reply, ReplyTo { shard: HOME_SHARD, request_id: 1 });
            match request.as_ref() {
                AdminRequest::ExchangeDeclare(declare) => {
                    assert_eq!(
                        (declare.vhost.as_str(), declare.name.as_str(), declare.kind.as_str()),
                        ("/", "events", "topic")
                    );
                    assert!(declare.durable && !declare.passive && !declare.auto_delete && !declare.internal);
                }
                other => panic!("expected ExchangeDeclare, got {other:?}"),
            }
        }
        other => panic!("expected one Admin request to shard 0, got {other:?}"),
    }
    let written = harness.written();
    assert!(
        matches!(written.as_slice(), [(1, AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(_)))]),
        "{written:?}"
    );
    assert!(harness.take_sent().is_empty());
}

#[test]
fn exchange_declare_nowait_still_asks_shard_0_but_answers_nothing() {
    let mut harness = Harness::new(snapshot_with_queues_on(&[]));
    harness.open_channel(1);
    harness.answer(Ok(ReplyBody::Done));
    assert_eq!(harness.method(1, exchange_declare(true)), Ok(false));
    assert_eq!(harness.take_requests().len(), 1);
    assert!(harness.written().is_empty());
}

#[test]
fn an_error_answer_from_shard_0_closes_the_channel_with_its_code_text_and_the_method_ids() {
    let mut harness = Harness::new(snapshot_with_queues_on(&[]));
    harness.open_channel(1);
    let text = "inequivalent arg 'type' for exchange 'events' in vhost '/': received 'topic' but current is 'direct'";
    harness.answer(Err(AmqpError::new(PRECONDITION_FAILED, text)));
    assert_eq!(harness.method(1, exchange_declare(false)), Ok(false), "a channel error leaves the connection open");
    let written = harness.written();
    match written.as_slice() {
        [(1, AMQPClass::Channel(channel::AMQPMethod::Close(close)))] => {
            assert_eq!(
                (close.reply_code, close.reply_text.to_string(), close.class_id, close.method_id),
                (406, format!("PRECONDITION_FAILED - {text}"), 40, 10)
            );
        }
        other => panic!("expected channel.close, got {other:?}"),
    }
    // The channel now waits for close-ok: a further method is dropped without a request.
    assert_eq!(harness.method(1, exchange_declare(false)), Ok(false));
    assert_eq!(harness.take_requests().len(), 1);
    assert!(harness.written().is_empty());
}

#[test]
fn a_connection_error_answer_from_shard_0_is_returned_to_close_the_connection() {
    let mut harness = Harness::new(snapshot_with_queues_on(&[]));
    harness.open_channel(1);
    harness.answer(Err(AmqpError::new(NOT_ALLOWED, "refused")));
    assert_eq!(
        harness.method(1, exchange_declare(false)),
        Err(fault(AmqpError::new(NOT_ALLOWED, "refused"), (40, 10))),
        "connection.close names exchange.declare"
    );
    assert!(harness.written().is_empty(), "the caller sends connection.close");
}

#[test]
fn queue_declare_of_an_existing_queue_asks_shard_0_then_the_owner_for_its_counts() {
    let name = queue_on(2);
    let mut harness = Harness::new(snapshot_with_queues_on(&[]));
    let existing = QueueId::new(2, 42);
    harness.open_channel(1);
    harness.answer(Ok(ReplyBody::ExistingQueue(existing)));
    harness.answer(Ok(ReplyBody::QueueDeclareOk { name: name.clone(), message_count: 3, consumer_count: 1 }));
    let declare = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.as_str().into(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments: FieldTable::default(),
    }));
    assert_eq!(harness.method(1, declare), Ok(false));
    let requests = harness.take_requests();
    match requests.as_slice() {
        [(0, ShardMsg::Admin { request, .. }), (2, ShardMsg::QueueOp { queue, request: QueueRequest::DeclareOk, reply: Some(_) })] =>
        {
            assert!(matches!(request.as_ref(), AdminRequest::QueueDeclare(declare) if declare.name == name));
            assert_eq!(*queue, existing);
        }
        other => panic!("expected Admin to shard 0 then DeclareOk to shard 2, got {other:?}"),
    }
    let written = harness.written();
    match written.as_slice() {
        [(1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)))] => {
            assert_eq!((ok.queue.as_str(), ok.message_count, ok.consumer_count), (name.as_str(), 3, 1))
        }
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
}
