//! Frame dispatch for an open connection, in the order RabbitMQ 3.10's reader checks a frame:
//! its shape (an unanalyzable frame is a 501), channel 0 (connection methods), the channel's
//! existence (`channel_max`, `channel.open`), content assembly (`assembly.rs`), then the method,
//! including the publish and acknowledgement hot path.
//!
//! Channel errors close the channel (`channel.close`, then wait for close-ok); connection
//! errors are returned and close the connection, as the spec and RabbitMQ do. Both name the
//! method that failed (class and method ids) where RabbitMQ does, and 0/0 where its error
//! comes from the reader or the command assembler without a method.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use amq_protocol::protocol::{access, channel as channel_method, connection as connection_method, AMQPClass};
use bytes::Bytes;

use super::connection::{truncate_text, Connection};
use super::port::Port;
use super::routes::{route_publish, Routed};
use crate::broker::error::*;
use crate::broker::messages::ShardMsg;
use crate::broker::queue::Settle;
use crate::broker::reply_to::REPLY_NAME_PREFIX;
use crate::broker::requests::AdminRequest;
use crate::codec::frame::{
    describe, erlang_bytes, is_well_formed, RawFrame, FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD,
};
use crate::codec::hotpath::{self, Ack};
use crate::codec::message::Message;
use crate::codec::methods::{encode_method, is_known_method, parse_method};
use crate::ids::QueueId;
use crate::limits::CONFIRM_PUBLISHES_PER_WAKE;

pub(super) const CLASS_CHANNEL: u16 = 20;
pub(super) const CLASS_BASIC: u16 = 60;
/// basic.publish: the method content errors name.
pub(super) const BASIC_PUBLISH: (u16, u16) = (CLASS_BASIC, 40);
const CHANNEL_OPEN: (u16, u16) = (CLASS_CHANNEL, 10);
const CHANNEL_CLOSE: (u16, u16) = (CLASS_CHANNEL, 40);
const CHANNEL_CLOSE_OK: (u16, u16) = (CLASS_CHANNEL, 41);
const BASIC_QOS: (u16, u16) = (CLASS_BASIC, 10);
/// What an error raised outside any method names: RabbitMQ's `none`.
pub const NO_METHOD: (u16, u16) = (0, 0);

pub struct Dispatcher<P: Port> {
    pub port: Rc<P>,
    pub connection: Rc<Connection>,
    pub(super) routes: Vec<QueueId>,
    pub(super) route_cache: super::routes::RouteCache,
    /// Confirm-mode publishes sent since the last `Port::wake_now`.
    confirm_publishes_unwoken: u32,
}

/// A failure while handling a frame, with the method it answers (0/0 for none).
#[derive(Debug, PartialEq, Eq)]
pub struct Fault {
    pub error: AmqpError,
    pub class_id: u16,
    pub method_id: u16,
}

/// How a connection ends for a frame it cannot take.
#[derive(Debug)]
pub enum Hangup {
    /// connection.close with this error, then wait for close-ok.
    Close(Fault),
    /// The socket is dropped without a word: RabbitMQ's reader crashes on a method id it does
    /// not know, and the client only sees the socket close.
    Silent,
}

pub type MethodResult = Result<(), Fault>;

pub fn fault(error: AmqpError, ids: (u16, u16)) -> Fault {
    Fault { error, class_id: ids.0, method_id: ids.1 }
}

/// RabbitMQ's 501 for a method whose arguments do not decode: the argument bytes, as `~w`
/// prints them, and the method's ids.
pub(crate) fn cannot_decode(payload: &[u8], ids: (u16, u16)) -> Fault {
    let fields = payload.get(4..).unwrap_or_default();
    fault(AmqpError::new(FRAME_ERROR, format!("cannot decode {}", erlang_bytes(fields))), ids)
}

/// RabbitMQ's assembler error for a frame where a method frame is due.
pub(super) fn method_frame_expected() -> Fault {
    fault(AmqpError::new(UNEXPECTED_FRAME, "expected method frame, got non method frame instead"), NO_METHOD)
}

impl<P: Port> Dispatcher<P> {
    pub fn new(port: Rc<P>, connection: Rc<Connection>) -> Dispatcher<P> {
        Dispatcher {
            port,
            connection,
            routes: Vec::new(),
            route_cache: Default::default(),
            confirm_publishes_unwoken: 0,
        }
    }

    pub fn send_method(&self, channel: u16, method: &AMQPClass) {
        self.connection.write_with(|out| {
            let _ = encode_method(out, channel, method);
        });
    }

    /// Called when the read buffer is exhausted: confirms of unroutable publishes go out.
    pub fn end_of_batch(&mut self) {
        self.connection.flush_confirms();
    }

    /// The frames of the publish and ack path, handled at once: content headers and bodies,
    /// basic.publish and basic.ack/nack/reject on an open channel. They need no await, and
    /// skipping `handle_frame` spares building (and moving) its future, a large state machine
    /// sized for every method. Any other frame is handed back for `handle_frame`, which
    /// treats these the same way.
    pub fn handle_hot_frame(&mut self, frame: RawFrame) -> Result<Option<RawFrame>, Hangup> {
        let channel_id = frame.channel;
        let hot = channel_id != 0
            && is_well_formed(frame.frame_type, &frame.payload)
            && match frame.frame_type {
                FRAME_METHOD => is_hot_method(hotpath::method_ids(&frame.payload).unwrap_or_default()),
                FRAME_HEADER | FRAME_BODY => true,
                _ => false,
            }
            && self.connection.channels.borrow().get(&channel_id).is_some_and(|channel| channel.is_open());
        if !hot {
            return Ok(Some(frame));
        }
        let result = if frame.frame_type == FRAME_METHOD {
            let ids = hotpath::method_ids(&frame.payload).unwrap_or_default();
            self.expect_no_content(channel_id).and_then(|()| self.hot_method(channel_id, ids, frame.payload))
        } else {
            self.content_frame(channel_id, frame)
        };
        self.end_of_frame(channel_id, result).map(|_| None)
    }

    /// A frame's outcome: a connection error ends the connection, a channel error closes the
    /// channel.
    fn end_of_frame(&mut self, channel_id: u16, result: MethodResult) -> Result<bool, Hangup> {
        match result {
            Ok(()) => Ok(false),
            Err(fault) if fault.error.is_connection_error() => Err(Hangup::Close(fault)),
            Err(fault) => {
                self.close_channel_with(channel_id, fault);
                Ok(false)
            }
        }
    }

    /// basic.publish and basic.ack/nack/reject on an open channel.
    fn hot_method(&mut self, channel_id: u16, ids: (u16, u16), payload: Bytes) -> MethodResult {
        if ids == BASIC_PUBLISH {
            let publish = hotpath::publish_layout(&payload).map_err(|_| cannot_decode(&payload, ids))?.take(payload);
            self.connection.published.set(true);
            return self.start_content(channel_id, publish);
        }
        match hotpath::parse_ack(&payload).map_err(|_| cannot_decode(&payload, ids))? {
            Some(ack) => self.acknowledge(channel_id, ack, ids),
            None => Err(cannot_decode(&payload, ids)),
        }
    }

    /// Handles one frame. Ok(true) when the connection closed cleanly.
    pub async fn handle_frame(&mut self, frame: RawFrame) -> Result<bool, Hangup> {
        if !is_well_formed(frame.frame_type, &frame.payload) {
            let text = format!("{}: unknown_frame", describe(frame.frame_type, &frame.payload));
            return Err(Hangup::Close(fault(AmqpError::new(FRAME_ERROR, text), NO_METHOD)));
        }
        if frame.frame_type == FRAME_METHOD {
            let ids = hotpath::method_ids(&frame.payload).unwrap_or_default();
            if !is_known_method(ids.0, ids.1) {
                crate::info!(
                    "connection {}: unknown method {}.{}, dropping the socket",
                    self.connection.id,
                    ids.0,
                    ids.1
                );
                return Err(Hangup::Silent);
            }
        }
        if frame.channel == 0 {
            let closed = self.channel_zero_frame(&frame).map_err(Hangup::Close)?;
            if closed {
                self.close_ok().await;
            }
            return Ok(closed);
        }
        if frame.frame_type == FRAME_HEARTBEAT {
            let error = AmqpError::new(UNEXPECTED_FRAME, describe(frame.frame_type, &frame.payload));
            return Err(Hangup::Close(fault(error, NO_METHOD)));
        }
        let channel = frame.channel;
        let result = self.channel_frame(frame).await;
        self.end_of_frame(channel, result)
    }

    /// The client's connection.close: as RabbitMQ, its exclusive queues are deleted before
    /// close-ok is sent, so a client that reconnects at once finds them gone.
    async fn close_ok(&mut self) {
        if self.connection.declared_exclusive.get() {
            let conn = self.connection.id;
            let request = AdminRequest::ReleaseExclusive { conn };
            let released = self.port.request(0, |reply| ShardMsg::Admin { request: Box::new(request), reply }).await;
            if let Err(error) = released {
                crate::warn!("connection {conn}: releasing exclusive queues: {}", error.reply_text);
            }
        }
        let close_ok = AMQPClass::Connection(connection_method::AMQPMethod::CloseOk(connection_method::CloseOk {}));
        self.send_method(0, &close_ok);
    }

    /// Channel 0 takes heartbeats and connection methods; content there is unexpected.
    fn channel_zero_frame(&mut self, frame: &RawFrame) -> Result<bool, Fault> {
        match frame.frame_type {
            FRAME_HEARTBEAT => Ok(false),
            FRAME_METHOD => self.connection_method(&frame.payload),
            other => Err(fault(AmqpError::new(UNEXPECTED_FRAME, describe(other, &frame.payload)), NO_METHOD)),
        }
    }

    fn connection_method(&mut self, payload: &Bytes) -> Result<bool, Fault> {
        let ids = hotpath::method_ids(payload).unwrap_or_default();
        let method = parse_method(payload).map_err(|_| cannot_decode(payload, ids))?;
        match method {
            // close-ok is sent by `handle_frame`, once the exclusive queues are gone.
            AMQPClass::Connection(connection_method::AMQPMethod::Close(_)) => Ok(true),
            AMQPClass::Connection(connection_method::AMQPMethod::UpdateSecret(update)) => {
                self.update_secret(update.new_secret.as_bytes()).map_err(|error| fault(error, ids))?;
                Ok(false)
            }
            _ => Err(fault(AmqpError::new(CHANNEL_ERROR, "unexpected method in connection state running"), ids)),
        }
    }

    /// connection.update-secret, as RabbitMQ 3.10 answers it for users of its internal
    /// backend: their credentials do not expire, so the new secret is taken as it comes
    /// (RabbitMQ checks it only with backends whose tokens expire, such as OAuth 2). The user
    /// must still exist; the secret itself is never logged.
    fn update_secret(&self, _new_secret: &[u8]) -> Result<(), AmqpError> {
        let user = self.connection.user.borrow().clone();
        if self.port.snapshot().user(&user).is_none() {
            crate::info!(
                "connection {}: secret update was refused for user '{user}': no such user",
                self.connection.id
            );
            return Err(AmqpError::new(NOT_ALLOWED, "New secret was refused by one of the backends"));
        }
        crate::info!("connection {}: user '{user}' updated its secret", self.connection.id);
        let ok = connection_method::AMQPMethod::UpdateSecretOk(connection_method::UpdateSecretOk {});
        self.send_method(0, &AMQPClass::Connection(ok));
        Ok(())
    }

    async fn channel_frame(&mut self, frame: RawFrame) -> MethodResult {
        let channel_id = frame.channel;
        let open = self.connection.channels.borrow().get(&channel_id).map(|channel| channel.is_open());
        let Some(open) = open else {
            return self.unopened_channel_frame(channel_id, &frame);
        };
        if frame.frame_type != FRAME_METHOD {
            return self.content_frame(channel_id, frame);
        }
        let ids = hotpath::method_ids(&frame.payload).unwrap_or_default();
        self.expect_no_content(channel_id)?;
        if open {
            self.channel_method(channel_id, ids, &frame.payload).await
        } else {
            self.closing_channel_method(channel_id, ids, &frame.payload)
        }
    }

    /// A frame for a channel number not in use: RabbitMQ's reader creates the channel (which
    /// `channel_max` bounds), its assembler wants a method, and the new channel wants
    /// channel.open first.
    fn unopened_channel_frame(&mut self, channel_id: u16, frame: &RawFrame) -> MethodResult {
        let opened = self.connection.channels.borrow().len();
        let channel_max = self.connection.channel_max.get();
        if opened >= usize::from(channel_max) {
            let text =
                format!("number of channels opened ({opened}) has reached the negotiated channel_max ({channel_max})");
            return Err(fault(AmqpError::new(NOT_ALLOWED, text), NO_METHOD));
        }
        if frame.frame_type != FRAME_METHOD {
            return Err(method_frame_expected());
        }
        let ids = hotpath::method_ids(&frame.payload).unwrap_or_default();
        decode_check(&frame.payload, ids)?;
        if ids != CHANNEL_OPEN {
            return Err(fault(AmqpError::new(CHANNEL_ERROR, "expected 'channel.open'"), ids));
        }
        let channel = self.connection.new_channel(channel_id);
        self.connection.channels.borrow_mut().insert(channel_id, channel);
        let open_ok = AMQPClass::Channel(channel_method::AMQPMethod::OpenOk(channel_method::OpenOk {}));
        self.send_method(channel_id, &open_ok);
        Ok(())
    }

    /// A method on a channel the broker closes: the assembler still takes a publish's content
    /// (which is then dropped); close is answered, close-ok ends the channel, channel.open is
    /// still a second one; anything else is dropped, as RabbitMQ's closing channel does.
    fn closing_channel_method(&mut self, channel_id: u16, ids: (u16, u16), payload: &Bytes) -> MethodResult {
        if ids == BASIC_PUBLISH {
            let publish = hotpath::parse_publish(payload).map_err(|_| cannot_decode(payload, ids))?;
            return self.start_content(channel_id, publish);
        }
        decode_check(payload, ids)?;
        match ids {
            CHANNEL_OPEN => Err(fault(AmqpError::new(CHANNEL_ERROR, "second 'channel.open' seen"), ids)),
            CHANNEL_CLOSE => {
                self.send_channel_close_ok(channel_id);
                Ok(())
            }
            CHANNEL_CLOSE_OK => {
                self.connection.channels.borrow_mut().remove(&channel_id);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn send_channel_close_ok(&self, channel_id: u16) {
        let close_ok = AMQPClass::Channel(channel_method::AMQPMethod::CloseOk(channel_method::CloseOk {}));
        self.send_method(channel_id, &close_ok);
    }

    /// A channel error: release what the channel holds, send channel.close, await close-ok.
    fn close_channel_with(&mut self, channel_id: u16, fault: Fault) {
        close_channel(&*self.port, &self.connection, channel_id, fault);
    }

    async fn channel_method(&mut self, channel_id: u16, ids: (u16, u16), payload: &Bytes) -> MethodResult {
        if is_hot_method(ids) {
            return self.hot_method(channel_id, ids, payload.clone());
        }
        if ids == BASIC_QOS {
            check_prefetch_size(payload, ids)?;
        }
        let method = parse_method(payload).map_err(|_| cannot_decode(payload, ids))?;
        let method = match method {
            AMQPClass::Channel(channel_method::AMQPMethod::Close(_)) => {
                release_channel_resources(&*self.port, &self.connection, channel_id);
                self.connection.channels.borrow_mut().remove(&channel_id);
                self.send_channel_close_ok(channel_id);
                return Ok(());
            }
            AMQPClass::Channel(channel_method::AMQPMethod::Open(_)) => {
                return Err(fault(AmqpError::new(CHANNEL_ERROR, "second 'channel.open' seen"), ids));
            }
            AMQPClass::Channel(channel_method::AMQPMethod::Flow(flow)) if !flow.active => {
                return Err(fault(AmqpError::new(NOT_IMPLEMENTED, "active=false"), ids));
            }
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                let ok = access::AMQPMethod::RequestOk(access::RequestOk {});
                self.send_method(channel_id, &AMQPClass::Access(ok));
                return Ok(());
            }
            method if !is_client_method(&method) => {
                return Err(fault(AmqpError::new(COMMAND_INVALID, "unimplemented method"), ids));
            }
            method => method,
        };
        self.handle_method(channel_id, method).await.map_err(|error| fault(error, ids))
    }

    fn acknowledge(&mut self, channel_id: u16, ack: Ack, ids: (u16, u16)) -> MethodResult {
        let (delivery_tag, multiple, _) = ack_action(ack);
        let in_transaction = {
            let mut channels = self.connection.channels.borrow_mut();
            let Some(channel) = channels.get_mut(&channel_id) else {
                return Ok(());
            };
            if !channel.has_unacked(delivery_tag, multiple) {
                let error = AmqpError::new(PRECONDITION_FAILED, format!("unknown delivery tag {delivery_tag}"));
                return Err(fault(error, ids));
            }
            if !matches!(ack, Ack::Ack { .. }) && channel.consumed_stream {
                if let Some(error) = self.stream_refuses_settle(channel, delivery_tag, multiple) {
                    return Err(fault(error, ids));
                }
            }
            match channel.transaction_mut() {
                // RabbitMQ checks the tag at basic.ack and settles it at commit.
                Some(transaction) => {
                    transaction.hold_ack(ack).map_err(|error| fault(error, ids))?;
                    true
                }
                None => false,
            }
        };
        if in_transaction {
            return Ok(());
        }
        self.apply_ack(channel_id, ack).map_err(|error| fault(error, ids))
    }

    pub fn apply_ack(&mut self, channel_id: u16, ack: Ack) -> Result<(), AmqpError> {
        let (delivery_tag, multiple, action) = ack_action(ack);
        let taken = self
            .connection
            .channels
            .borrow_mut()
            .get_mut(&channel_id)
            .and_then(|channel| channel.take_unacked(delivery_tag, multiple));
        let Some(by_queue) = taken else {
            return Err(AmqpError::new(PRECONDITION_FAILED, format!("unknown delivery tag {delivery_tag}")));
        };
        self.settle(channel_id, by_queue, action);
        Ok(())
    }

    pub fn settle(&self, channel_id: u16, by_queue: HashMap<QueueId, Vec<u64>>, action: Settle) {
        let holder = self.connection.holder(channel_id);
        for (queue, sequences) in by_queue {
            self.port.send(queue.owner(), ShardMsg::Settle { queue, holder, sequences, action });
        }
        self.release_held(channel_id);
    }

    /// Writes what waited for room under the channel's prefetch limit, if there is room now.
    pub fn release_held(&self, channel_id: u16) {
        for outcome in self.connection.release_held(channel_id) {
            let (overdue_at_ms, settle) = outcome.follow_up();
            if let Some(overdue_at_ms) = overdue_at_ms {
                self.port.schedule_ack_deadline(overdue_at_ms);
            }
            if let Some((owner, settle)) = settle {
                self.port.send(owner, settle);
            }
        }
    }
}

/// Decodes a method only to know that its arguments are well formed.
fn decode_check(payload: &[u8], ids: (u16, u16)) -> MethodResult {
    parse_method(payload).map(|_| ()).map_err(|_| cannot_decode(payload, ids))
}

/// basic.qos with a prefetch_size, which RabbitMQ does not implement (540). amq-protocol's
/// Qos has no field for it, so it is read from the arguments: the first four bytes.
fn check_prefetch_size(payload: &[u8], ids: (u16, u16)) -> MethodResult {
    let Some(&[a, b, c, d]) = payload.get(4..8).and_then(|bytes| <&[u8; 4]>::try_from(bytes).ok()) else {
        return Err(cannot_decode(payload, ids));
    };
    let prefetch_size = u32::from_be_bytes([a, b, c, d]);
    if prefetch_size != 0 {
        return Err(fault(AmqpError::new(NOT_IMPLEMENTED, format!("prefetch_size!=0 ({prefetch_size})")), ids));
    }
    Ok(())
}

/// Whether a client may send this method on a channel; anything else is RabbitMQ's
/// "unimplemented method" (503).
fn is_client_method(method: &AMQPClass) -> bool {
    use amq_protocol::protocol::{basic, channel, confirm, exchange, queue, tx};
    match method {
        AMQPClass::Channel(method) => matches!(method, channel::AMQPMethod::Flow(_)),
        AMQPClass::Exchange(method) => matches!(
            method,
            exchange::AMQPMethod::Declare(_)
                | exchange::AMQPMethod::Delete(_)
                | exchange::AMQPMethod::Bind(_)
                | exchange::AMQPMethod::Unbind(_)
        ),
        AMQPClass::Queue(method) => matches!(
            method,
            queue::AMQPMethod::Declare(_)
                | queue::AMQPMethod::Bind(_)
                | queue::AMQPMethod::Purge(_)
                | queue::AMQPMethod::Delete(_)
                | queue::AMQPMethod::Unbind(_)
        ),
        AMQPClass::Basic(method) => matches!(
            method,
            basic::AMQPMethod::Qos(_)
                | basic::AMQPMethod::Consume(_)
                | basic::AMQPMethod::Cancel(_)
                | basic::AMQPMethod::Get(_)
                | basic::AMQPMethod::Recover(_)
                | basic::AMQPMethod::RecoverAsync(_)
        ),
        AMQPClass::Confirm(method) => matches!(method, confirm::AMQPMethod::Select(_)),
        AMQPClass::Tx(method) => {
            matches!(method, tx::AMQPMethod::Select(_) | tx::AMQPMethod::Commit(_) | tx::AMQPMethod::Rollback(_))
        }
        _ => false,
    }
}

/// basic.publish, basic.ack, basic.reject, basic.nack.
fn is_hot_method(ids: (u16, u16)) -> bool {
    ids == BASIC_PUBLISH || (ids.0 == CLASS_BASIC && matches!(ids.1, 80 | 90 | 120))
}

fn ack_action(ack: Ack) -> (u64, bool, Settle) {
    match ack {
        Ack::Ack { delivery_tag, multiple } => (delivery_tag, multiple, Settle::Ack),
        Ack::Nack { delivery_tag, multiple, requeue } => (delivery_tag, multiple, requeue_action(requeue)),
        Ack::Reject { delivery_tag, requeue } => (delivery_tag, false, requeue_action(requeue)),
    }
}
impl<P: Port> Dispatcher<P> {
    /// Routes a complete publish (its exchange and routing key are the message's) with this
    /// shard's snapshot and sends it to every destination queue's shard; basic.return when
    /// `mandatory` and it reached none.
    pub fn route_and_send(&mut self, channel_id: u16, mandatory: bool, message: Arc<Message>) {
        if message.exchange.is_empty() && message.routing_key.starts_with(REPLY_NAME_PREFIX.as_bytes()) {
            return self.send_direct_reply(channel_id, mandatory, message);
        }
        self.routes.clear();
        let version = self.port.snapshot_version();
        let cached = self.route_cache.routes(version, &message.exchange, &message.routing_key, &mut self.routes);
        if !cached {
            let snapshot = self.port.snapshot();
            let vhost_name = self.connection.vhost.borrow().clone();
            let exchange_name = String::from_utf8_lossy(&message.exchange);
            let properties = message.properties.clone();
            let mut headers = || hotpath::parse_properties(&properties).ok();
            let vhost = snapshot.vhost(&vhost_name).map(|vhost| &**vhost);
            match route_publish(vhost, &exchange_name, &message.routing_key, &mut headers, &mut self.routes) {
                Routed::ByOwner(exchange) => {
                    let version = snapshot.version;
                    return self.send_to_exchange_owner(channel_id, mandatory, message, (version, exchange));
                }
                Routed::Queues { used_headers: false } => {
                    self.route_cache.store(snapshot.version, &message.exchange, &message.routing_key, &self.routes);
                }
                Routed::Queues { used_headers: true } => {}
            }
        }
        let publish_sequence = self.start_confirm(channel_id, self.routes.len() as u32);
        if self.routes.is_empty() && mandatory {
            self.return_unroutable(channel_id, &message);
        }
        let publisher = self.connection.holder(channel_id);
        // The last destination takes the message itself: one reference count change less per
        // publish, on a count that the receiving shard touches too.
        let mut message = Some(message);
        let last = self.routes.len().saturating_sub(1);
        for (index, queue) in self.routes.drain(..).enumerate() {
            let Some(shared) = (if index == last { message.take() } else { message.clone() }) else { break };
            self.connection.note_published_to(queue.owner());
            self.port.send(queue.owner(), ShardMsg::Publish { queue, message: shared, publisher, publish_sequence });
        }
        if publish_sequence.is_some() {
            self.confirm_publishes_unwoken += 1;
            if self.confirm_publishes_unwoken >= CONFIRM_PUBLISHES_PER_WAKE {
                self.confirm_publishes_unwoken = 0;
                self.port.wake_now();
            }
        }
    }

    /// Numbers a publish of a confirm-mode channel, to be confirmed by `destinations` queues
    /// (none: it is settled at once).
    pub(super) fn start_confirm(&self, channel_id: u16, destinations: u32) -> Option<u64> {
        let mut channels = self.connection.channels.borrow_mut();
        let confirms = channels.get_mut(&channel_id).and_then(|channel| channel.confirms_mut());
        confirms.map(|confirms| confirms.start(destinations))
    }

    /// basic.return 312 NO_ROUTE for a mandatory publish that reached no queue.
    pub(super) fn return_unroutable(&self, channel_id: u16, message: &Message) {
        self.connection.return_unroutable(channel_id, message);
    }
}

fn requeue_action(requeue: bool) -> Settle {
    if requeue {
        Settle::Requeue
    } else {
        Settle::Discard
    }
}

/// Closes a channel for an error: its resources are released at once, channel.close is sent,
/// and frames other than close/close-ok are dropped until the client answers.
pub fn close_channel(port: &impl Port, connection: &Connection, channel_id: u16, fault: Fault) {
    let touched = {
        let mut channels = connection.channels.borrow_mut();
        match channels.get_mut(&channel_id) {
            Some(channel) if channel.is_open() => channel.begin_closing(),
            _ => return,
        }
    };
    tell_channel_gone(port, connection.holder(channel_id), touched);
    let close = AMQPClass::Channel(channel_method::AMQPMethod::Close(channel_method::Close {
        reply_code: fault.error.reply_code,
        reply_text: truncate_text(&fault.error.reply_text).into(),
        class_id: fault.class_id,
        method_id: fault.method_id,
    }));
    connection.write_with(|out| {
        let _ = encode_method(out, channel_id, &close);
    });
}

/// Gives back what a channel holds: its consumers are cancelled and its unacked messages
/// requeued by their owner shards. The channel entry itself stays (the caller decides).
pub fn release_channel_resources(port: &impl Port, connection: &Connection, channel_id: u16) {
    let touched = match connection.channels.borrow_mut().get_mut(&channel_id) {
        Some(channel) => channel.release(),
        None => return,
    };
    tell_channel_gone(port, connection.holder(channel_id), touched);
}

/// Tells every shard in the `touched` mask that the channel is gone.
fn tell_channel_gone(port: &impl Port, holder: crate::ids::Holder, touched: u64) {
    for owner in 0..port.shard_count() {
        if touched & (1 << owner) != 0 {
            port.send(owner, ShardMsg::ChannelGone { holder });
        }
    }
}

/// Releases a channel and forgets it (connection teardown).
pub fn release_channel(shard: &impl Port, connection: &Connection, channel_id: u16) {
    release_channel_resources(shard, connection, channel_id);
    connection.channels.borrow_mut().remove(&channel_id);
}

/// The connection is gone: consumers and unacked messages go back to their queues, the
/// definitions writer deletes its exclusive queues, and the output closes after what is queued.
pub fn release_connection(port: &impl Port, connection: &Connection) {
    let channels: Vec<u16> = connection.channels.borrow().keys().copied().collect();
    for channel in channels {
        release_channel(port, connection, channel);
    }
    port.send(0, ShardMsg::ConnectionGone { conn: connection.id });
    connection.close_output();
}
