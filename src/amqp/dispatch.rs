//! Frame dispatch for an open connection: channel lifecycle, content assembly, the publish
//! and acknowledgement hot path, and the turn of a method into a handler call.
//!
//! Channel errors close the channel (`channel.close`, then wait for close-ok); connection
//! errors are returned and close the connection, as the spec and RabbitMQ do.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use amq_protocol::protocol::{channel as channel_method, connection as connection_method, AMQPClass};
use amq_protocol::types::FieldTable;
use bytes::Bytes;

use super::channel::{BodyParts, Content};
use super::connection::{truncate_text, Connection};
use super::port::Port;
use crate::broker::error::*;
use crate::broker::messages::ShardMsg;
use crate::broker::queue::Settle;
use crate::broker::reply_to::REPLY_NAME_PREFIX;
use crate::codec::frame::{RawFrame, FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};
use crate::codec::hotpath::{self, Ack, ContentHeader, Publish};
use crate::codec::message::Message;
use crate::codec::methods::{encode_method, parse_method};
use crate::ids::QueueId;
use crate::limits::MESSAGE_BODY_MAX_BYTES;

const CLASS_CHANNEL: u16 = 20;
const CLASS_BASIC: u16 = 60;

pub struct Dispatcher<P: Port> {
    pub port: Rc<P>,
    pub connection: Rc<Connection>,
    routes: Vec<QueueId>,
}

/// A failure while handling a channel's frame, with the method it answers.
pub struct Fault {
    pub error: AmqpError,
    pub class_id: u16,
    pub method_id: u16,
}

pub type MethodResult = Result<(), Fault>;

pub fn fault(error: AmqpError, ids: (u16, u16)) -> Fault {
    Fault { error, class_id: ids.0, method_id: ids.1 }
}

impl<P: Port> Dispatcher<P> {
    pub fn new(port: Rc<P>, connection: Rc<Connection>) -> Dispatcher<P> {
        Dispatcher { port, connection, routes: Vec::new() }
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

    /// Handles one frame. Ok(true) when the connection closed cleanly.
    pub async fn handle_frame(&mut self, frame: RawFrame) -> Result<bool, AmqpError> {
        match frame.frame_type {
            FRAME_HEARTBEAT if frame.channel == 0 => Ok(false),
            FRAME_HEARTBEAT => Err(AmqpError::new(UNEXPECTED_FRAME, "type 8, all octets = <<>>")),
            FRAME_METHOD if frame.channel == 0 => self.connection_method(&frame.payload),
            FRAME_METHOD | FRAME_HEADER | FRAME_BODY if frame.channel != 0 => {
                let channel = frame.channel;
                match self.channel_frame(frame).await {
                    Ok(()) => Ok(false),
                    Err(fault) if fault.error.is_connection_error() => Err(fault.error),
                    Err(fault) => {
                        self.close_channel_with(channel, fault);
                        Ok(false)
                    }
                }
            }
            FRAME_HEADER | FRAME_BODY => Err(AmqpError::new(COMMAND_INVALID, "content frame on channel 0")),
            other => Err(AmqpError::new(FRAME_ERROR, format!("unknown frame type {other}"))),
        }
    }

    fn connection_method(&mut self, payload: &Bytes) -> Result<bool, AmqpError> {
        let method = parse_method(payload).map_err(|error| AmqpError::from_codec(error.reply_code(), error))?;
        match method {
            AMQPClass::Connection(connection_method::AMQPMethod::Close(_)) => {
                let close_ok =
                    AMQPClass::Connection(connection_method::AMQPMethod::CloseOk(connection_method::CloseOk {}));
                self.send_method(0, &close_ok);
                Ok(true)
            }
            AMQPClass::Connection(connection_method::AMQPMethod::CloseOk(_)) => Ok(true),
            AMQPClass::Connection(
                connection_method::AMQPMethod::Blocked(_)
                | connection_method::AMQPMethod::Unblocked(_)
                | connection_method::AMQPMethod::UpdateSecret(_),
            ) => Ok(false),
            _ => Err(AmqpError::new(CHANNEL_ERROR, "unexpected method in connection state running")),
        }
    }

    async fn channel_frame(&mut self, frame: RawFrame) -> MethodResult {
        let channel_id = frame.channel;
        let ids = if frame.frame_type == FRAME_METHOD {
            hotpath::method_ids(&frame.payload)
                .map_err(|error| fault(AmqpError::from_codec(error.reply_code(), error), (0, 0)))?
        } else {
            (0, 0)
        };
        let state = self.connection.channels.borrow().get(&channel_id).map(|channel| !channel.is_open());
        match state {
            None if ids == (CLASS_CHANNEL, 10) => return self.open_channel(channel_id),
            None => {
                let error = AmqpError::new(CHANNEL_ERROR, "expected 'channel.open'");
                return Err(fault(error, ids));
            }
            Some(true) => {
                // Closing: only close and close-ok matter; both end the channel.
                if ids == (CLASS_CHANNEL, 40) || ids == (CLASS_CHANNEL, 41) {
                    if ids == (CLASS_CHANNEL, 40) {
                        self.send_channel_close_ok(channel_id);
                    }
                    self.connection.channels.borrow_mut().remove(&channel_id);
                }
                return Ok(());
            }
            Some(false) => {}
        }
        match frame.frame_type {
            FRAME_HEADER => self.content_header(channel_id, &frame.payload),
            FRAME_BODY => self.content_body(channel_id, frame.payload),
            _ => self.channel_method(channel_id, ids, &frame.payload).await,
        }
    }

    fn open_channel(&mut self, channel_id: u16) -> MethodResult {
        if channel_id > self.connection.channel_max.get() {
            let error =
                AmqpError::new(NOT_ALLOWED, format!("channel_max {} exceeded", self.connection.channel_max.get()));
            return Err(fault(error, (CLASS_CHANNEL, 10)));
        }
        let channel = self.connection.new_channel(channel_id);
        self.connection.channels.borrow_mut().insert(channel_id, channel);
        let open_ok = AMQPClass::Channel(channel_method::AMQPMethod::OpenOk(channel_method::OpenOk {}));
        self.send_method(channel_id, &open_ok);
        Ok(())
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
        let awaiting_content = self
            .connection
            .channels
            .borrow()
            .get(&channel_id)
            .is_some_and(|channel| !matches!(channel.content, Content::Idle));
        if awaiting_content {
            let header_expected = self
                .connection
                .channels
                .borrow()
                .get(&channel_id)
                .is_some_and(|channel| matches!(channel.content, Content::AwaitingHeader(_)));
            let text = if header_expected {
                "expected content header for class 60, got non content header frame instead"
            } else {
                "expected content body, got non content body frame instead"
            };
            return Err(fault(AmqpError::new(UNEXPECTED_FRAME, text), ids));
        }
        let syntax = |error: hotpath::CodecError| fault(AmqpError::from_codec(error.reply_code(), error), ids);
        if ids == (CLASS_BASIC, 40) {
            let publish = hotpath::parse_publish(payload).map_err(syntax)?;
            return self.start_publish(channel_id, publish);
        }
        if let Some(ack) = hotpath::parse_ack(payload).map_err(syntax)? {
            return self.acknowledge(channel_id, ack, ids);
        }
        let method =
            parse_method(payload).map_err(|error| fault(AmqpError::from_codec(error.reply_code(), error), ids))?;
        if let AMQPClass::Channel(channel_method::AMQPMethod::Close(_)) = method {
            release_channel_resources(&*self.port, &self.connection, channel_id);
            self.connection.channels.borrow_mut().remove(&channel_id);
            self.send_channel_close_ok(channel_id);
            return Ok(());
        }
        self.handle_method(channel_id, method).await.map_err(|error| fault(error, ids))
    }

    fn start_publish(&mut self, channel_id: u16, publish: Publish) -> MethodResult {
        self.connection.published.set(true);
        let exchange = String::from_utf8_lossy(&publish.exchange).into_owned();
        let snapshot = self.port.snapshot();
        let vhost_name = self.connection.vhost.borrow().clone();
        let found = snapshot.vhost(&vhost_name).and_then(|vhost| vhost.exchanges.get(&exchange).cloned());
        match found {
            None => return Err(fault(AmqpError::not_found("exchange", &exchange, &vhost_name), (CLASS_BASIC, 40))),
            Some(found) if found.internal => {
                let error = AmqpError::new(
                    ACCESS_REFUSED,
                    format!("cannot publish to internal exchange '{exchange}' in vhost '{vhost_name}'"),
                );
                return Err(fault(error, (CLASS_BASIC, 40)));
            }
            Some(_) => {}
        }
        if let Some(channel) = self.connection.channels.borrow_mut().get_mut(&channel_id) {
            channel.content = Content::AwaitingHeader(publish);
        }
        Ok(())
    }

    fn content_header(&mut self, channel_id: u16, payload: &Bytes) -> MethodResult {
        let unexpected =
            || fault(AmqpError::new(UNEXPECTED_FRAME, "unexpected content header frame"), (CLASS_BASIC, 40));
        if let [high, low, ..] = payload[..] {
            let class_id = u16::from_be_bytes([high, low]);
            if class_id != CLASS_BASIC {
                let text = format!("expected content header for class 60, got one for class {class_id} instead");
                return Err(fault(AmqpError::new(UNEXPECTED_FRAME, text), (CLASS_BASIC, 40)));
            }
        }
        let header = hotpath::parse_content_header(payload)
            .map_err(|error| fault(AmqpError::from_codec(error.reply_code(), error), (CLASS_BASIC, 40)))?;
        let publish = {
            let mut channels = self.connection.channels.borrow_mut();
            let channel = channels.get_mut(&channel_id).ok_or_else(unexpected)?;
            match std::mem::replace(&mut channel.content, Content::Idle) {
                Content::AwaitingHeader(publish) => publish,
                _ => return Err(unexpected()),
            }
        };
        if header.class_id != CLASS_BASIC {
            let error = AmqpError::new(
                UNEXPECTED_FRAME,
                format!("content header for class {} on basic.publish", header.class_id),
            );
            return Err(fault(error, (CLASS_BASIC, 40)));
        }
        if header.body_size > MESSAGE_BODY_MAX_BYTES {
            let error = AmqpError::new(
                PRECONDITION_FAILED,
                format!(
                    "message size {} is larger than configured max size {MESSAGE_BODY_MAX_BYTES}",
                    header.body_size
                ),
            );
            return Err(fault(error, (CLASS_BASIC, 40)));
        }
        check_user_id(&header.properties).map_err(|error| fault(error, (CLASS_BASIC, 40)))?;
        if header.body_size == 0 {
            return self.publish(channel_id, publish, header, Bytes::new());
        }
        if let Some(channel) = self.connection.channels.borrow_mut().get_mut(&channel_id) {
            channel.content = Content::AwaitingBody { publish, header, body: BodyParts::Empty };
        }
        Ok(())
    }

    fn content_body(&mut self, channel_id: u16, payload: Bytes) -> MethodResult {
        let complete = {
            let mut channels = self.connection.channels.borrow_mut();
            let mut channel = channels.get_mut(&channel_id);
            let Some(Content::AwaitingBody { header, body, .. }) = channel.as_mut().map(|channel| &mut channel.content)
            else {
                let error = AmqpError::new(UNEXPECTED_FRAME, "expected method frame, got non method frame instead");
                return Err(fault(error, (CLASS_BASIC, 40)));
            };
            let received = body.len() as u64 + payload.len() as u64;
            if received > header.body_size {
                let error = AmqpError::new(FRAME_ERROR, "content body is longer than the header's body size");
                return Err(fault(error, (CLASS_BASIC, 40)));
            }
            body.push(payload, header.body_size);
            if received < header.body_size {
                return Ok(());
            }
            channel.map(|channel| std::mem::replace(&mut channel.content, Content::Idle))
        };
        match complete {
            Some(Content::AwaitingBody { publish, header, body }) => {
                self.publish(channel_id, publish, header, body.freeze())
            }
            _ => Ok(()),
        }
    }

    fn publish(&mut self, channel_id: u16, publish: Publish, header: ContentHeader, body: Bytes) -> MethodResult {
        let properties =
            self.rewrite_reply_to(channel_id, header.properties).map_err(|error| fault(error, (CLASS_BASIC, 40)))?;
        let message = Arc::new(Message {
            exchange: publish.exchange.clone(),
            routing_key: publish.routing_key.clone(),
            properties,
            body,
        });
        // RabbitMQ refuses a malformed `expiration` with a channel error.
        if let Err(text) = message.expiration_ms() {
            return Err(fault(AmqpError::new(PRECONDITION_FAILED, text), (CLASS_BASIC, 40)));
        }
        let in_transaction = {
            let mut channels = self.connection.channels.borrow_mut();
            match channels.get_mut(&channel_id).and_then(|channel| channel.transaction_mut()) {
                Some(transaction) => {
                    transaction.publishes.push((publish.clone(), message.clone()));
                    true
                }
                None => false,
            }
        };
        if !in_transaction {
            self.route_and_send(channel_id, &publish, message);
        }
        Ok(())
    }

    /// Routes with this shard's snapshot and sends the message to every destination queue.
    pub fn route_and_send(&mut self, channel_id: u16, publish: &Publish, message: Arc<Message>) {
        if publish.exchange.is_empty() && publish.routing_key.starts_with(REPLY_NAME_PREFIX.as_bytes()) {
            return self.send_direct_reply(channel_id, publish, message);
        }
        let snapshot = self.port.snapshot();
        let vhost_name = self.connection.vhost.borrow().clone();
        let exchange_name = String::from_utf8_lossy(&publish.exchange);
        self.routes.clear();
        if let Some(vhost) = snapshot.vhost(&vhost_name) {
            if let Some(exchange) = vhost.exchanges.get(exchange_name.as_ref()) {
                let properties = message.properties.clone();
                let mut headers =
                    move || -> Option<FieldTable> { hotpath::parse_properties(&properties).ok()?.headers().clone() };
                vhost.route_with_alternates(exchange, &publish.routing_key, &mut headers, &mut self.routes);
            }
        }
        let publish_sequence = self.start_confirm(channel_id, self.routes.len() as u32);
        if self.routes.is_empty() && publish.mandatory {
            self.return_unroutable(channel_id, &message);
        }
        let publisher = self.connection.holder(channel_id);
        for queue in self.routes.drain(..) {
            self.port.send(
                queue.owner(),
                ShardMsg::Publish { queue, message: message.clone(), publisher, publish_sequence },
            );
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
        let frame_max = self.connection.frame_max.get();
        self.connection.write_with(|out| {
            // A return too large for the client's frame_max is dropped: the publish itself
            // was valid, and the confirm still tells the publisher.
            let _ = hotpath::encode_return(
                out,
                channel_id,
                NO_ROUTE,
                b"NO_ROUTE",
                &message.exchange,
                &message.routing_key,
                &message.properties,
                &message.body,
                frame_max,
            );
        });
    }

    fn acknowledge(&mut self, channel_id: u16, ack: Ack, ids: (u16, u16)) -> MethodResult {
        {
            let mut channels = self.connection.channels.borrow_mut();
            if let Some(transaction) = channels.get_mut(&channel_id).and_then(|channel| channel.transaction_mut()) {
                transaction.acks.push(ack);
                return Ok(());
            }
        }
        self.apply_ack(channel_id, ack).map_err(|error| fault(error, ids))
    }

    pub fn apply_ack(&mut self, channel_id: u16, ack: Ack) -> Result<(), AmqpError> {
        let (delivery_tag, multiple, action) = match ack {
            Ack::Ack { delivery_tag, multiple } => (delivery_tag, multiple, Settle::Ack),
            Ack::Nack { delivery_tag, multiple, requeue } => (delivery_tag, multiple, requeue_action(requeue)),
            Ack::Reject { delivery_tag, requeue } => (delivery_tag, false, requeue_action(requeue)),
        };
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
    }
}

/// RabbitMQ refuses a user-id property that differs from the authenticated user. Checked
/// only when the property is present, so the hot path pays one flag test.
fn check_user_id(properties: &[u8]) -> Result<(), AmqpError> {
    const USER_ID_FLAG: u16 = 1 << 4;
    let flags = match properties {
        [high, low, ..] => u16::from_be_bytes([*high, *low]),
        _ => return Ok(()),
    };
    if flags & USER_ID_FLAG == 0 {
        return Ok(());
    }
    let parsed =
        hotpath::parse_properties(properties).map_err(|error| AmqpError::from_codec(error.reply_code(), error))?;
    match parsed.user_id() {
        Some(user_id) if user_id.as_str() != super::handshake::DEFAULT_USER => Err(AmqpError::new(
            PRECONDITION_FAILED,
            format!(
                "user_id property set to '{}' but authenticated user was '{}'",
                user_id,
                super::handshake::DEFAULT_USER
            ),
        )),
        _ => Ok(()),
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
