//! basic.* methods outside the publish/ack hot path: qos, consume, cancel, get, recover.
//! Consuming from `amq.rabbitmq.reply-to` is handed to `direct_reply`.
//!
//! Consumers are registered in the channel before the queue's owner is asked, so deliveries
//! that race the answer find them; consume-ok is written by a reply hook in the mailbox loop,
//! which guarantees it reaches the client before the first delivery. The consumer timeout of a
//! consumer's (or a basic.get's) deliveries is settled here, once, from the arguments.

use std::collections::HashMap;
use std::rc::Rc;

use amq_protocol::protocol::{basic, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};

use super::channel::UnackedDelivery;
use super::consumers::ConsumerInfo;
use super::dispatch::Dispatcher;
use super::port::Port;
use super::port::ReplyHook;
use crate::broker::error::*;
use crate::broker::messages::ShardMsg;
use crate::broker::queue::Settle;
use crate::broker::queue_args::{
    check_consumer_arguments_of_type, consumer_timeout_argument, queue_consumer_timeout, QueueType,
    QUORUM_DEFAULT_PREFETCH,
};
use crate::broker::reply_to::REPLY_QUEUE;
use crate::broker::requests::{GotMessage, QueueRequest, ReplyBody};
use crate::broker::snapshot::QueueDef;
use crate::broker::stream_args::{self, StreamConsumer};
use crate::codec::hotpath;
use crate::codec::methods::encode_method;
use crate::ids::{ConsumerTag, QueueId};
use crate::limits::CONSUMERS_PER_CHANNEL_MAX;

impl<P: Port> Dispatcher<P> {
    pub async fn basic_method(&mut self, channel_id: u16, method: basic::AMQPMethod) -> Result<(), AmqpError> {
        match method {
            basic::AMQPMethod::Qos(qos) => {
                if qos.global {
                    self.set_channel_prefetch(channel_id, u32::from(qos.prefetch_count));
                } else if let Some(channel) = self.connection.channels.borrow_mut().get_mut(&channel_id) {
                    channel.prefetch_count = u32::from(qos.prefetch_count);
                }
                self.send_method(channel_id, &AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})));
                Ok(())
            }
            basic::AMQPMethod::Consume(consume) => self.consume(channel_id, consume).await,
            basic::AMQPMethod::Cancel(cancel) => self.cancel(channel_id, cancel).await,
            basic::AMQPMethod::Get(get) => self.get(channel_id, get).await,
            basic::AMQPMethod::Recover(recover) => {
                self.recover(channel_id, recover.requeue)?;
                self.send_method(channel_id, &AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})));
                Ok(())
            }
            basic::AMQPMethod::RecoverAsync(recover) => self.recover(channel_id, recover.requeue),
            _ => Err(AmqpError::new(COMMAND_INVALID, "unexpected basic method from a client")),
        }
    }

    /// basic.consume, checked in RabbitMQ's order: a tag in use on the channel (530), the
    /// queue (404, 405), then the consumer arguments (406).
    async fn consume(&mut self, channel_id: u16, consume: basic::Consume) -> Result<(), AmqpError> {
        let name = self.queue_name(channel_id, consume.queue.as_str())?;
        if name == REPLY_QUEUE {
            return self.consume_replies(channel_id, &consume);
        }
        let consumer_tag: ConsumerTag = if consume.consumer_tag.as_str().is_empty() {
            generate_consumer_tag().into()
        } else {
            consume.consumer_tag.as_str().into()
        };
        let in_use = self
            .connection
            .channels
            .borrow()
            .get(&channel_id)
            .is_some_and(|channel| channel.consumers.contains_tag(&consumer_tag));
        if in_use {
            return Err(AmqpError::new(NOT_ALLOWED, format!("attempt to reuse consumer tag '{consumer_tag}'")));
        }
        super::access::read_queue(&self.connection, &self.port.snapshot(), &name)?;
        let definition = self.resolve_queue(&name)?;
        let queue = definition.id;
        let queue_type = QueueType::of(&definition.arguments);
        let priority = consumer_priority(&consume.arguments, &name, &self.vhost())?;
        if queue_type == QueueType::Classic {
            check_cancel_on_ha_failover(&consume.arguments, &name, &self.vhost())?;
        }
        check_consumer_arguments_of_type(queue_type, &consume.arguments, &name, &self.vhost())?;
        let own_timeout_ms = consumer_timeout_argument(&consume.arguments, &name, &self.vhost())?;
        let timeout_ms = own_timeout_ms.or_else(|| self.queue_timeout_ms(&definition));
        let mut stream_offset = None;
        let (consumer, prefetch_count) = {
            let mut channels = self.connection.channels.borrow_mut();
            let Some(channel) = channels.get_mut(&channel_id) else {
                return Ok(());
            };
            if channel.consumers.len() >= CONSUMERS_PER_CHANNEL_MAX {
                return Err(AmqpError::new(PRECONDITION_FAILED, "too many consumers on this channel"));
            }
            if queue_type == QueueType::Stream {
                let rules = StreamConsumer {
                    own_prefetch: channel.prefetch_count,
                    global_prefetch: channel.limit.prefetch,
                    no_ack: consume.no_ack,
                };
                stream_args::check_consumer(rules, &name, &self.vhost())?;
                let now_unix_ms = crate::clock::unix_ms();
                let offset = stream_args::stream_offset(&consume.arguments, now_unix_ms, &name, &self.vhost())?;
                stream_offset = Some(Box::new(offset));
            }
            // RabbitMQ 3.10's quorum queues refuse a consumer on a channel with a global
            // prefetch (a connection error), and give a consumer without any prefetch 2000.
            if queue_type == QueueType::Quorum && channel.limit.prefetch > 0 {
                let text = format!("queue '{name}' in vhost '{}' does not support global qos", self.vhost());
                return Err(AmqpError::new(NOT_IMPLEMENTED, text));
            }
            let own_prefetch = channel.prefetch_count;
            let info =
                ConsumerInfo { tag: consumer_tag.clone(), queue, timeout_ms, own_prefetch, no_ack: consume.no_ack };
            let consumer = channel.consumers.insert(info);
            channel.consumed_stream |= queue_type == QueueType::Stream;
            channel.touch(queue.owner());
            let prefetch_count = match (channel.limit.consumer_prefetch(own_prefetch), queue_type) {
                (0, QueueType::Quorum) => QUORUM_DEFAULT_PREFETCH,
                (prefetch_count, _) => prefetch_count,
            };
            (consumer, prefetch_count)
        };
        let hook: Option<ReplyHook> = if consume.nowait {
            None
        } else {
            let connection = Rc::clone(&self.connection);
            let tag = consumer_tag.clone();
            Some(Box::new(move |result: &Result<ReplyBody, AmqpError>| {
                if result.is_ok() {
                    let ok = AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                        consumer_tag: tag.as_ref().into(),
                    }));
                    connection.write_with(|out| {
                        let _ = encode_method(out, channel_id, &ok);
                    });
                }
            }))
        };
        let request = QueueRequest::Consume {
            holder: self.connection.holder(channel_id),
            consumer_tag: consumer_tag.clone(),
            consumer,
            no_ack: consume.no_ack,
            exclusive: consume.exclusive,
            prefetch_count,
            nowait: consume.nowait,
            priority,
            stream_offset,
        };
        let result = self
            .port
            .request_with_hook(queue.owner(), |reply| ShardMsg::QueueOp { queue, request, reply: Some(reply) }, hook)
            .await;
        if let Err(error) = result {
            if let Some(channel) = self.connection.channels.borrow_mut().get_mut(&channel_id) {
                channel.consumers.remove_tag(&consumer_tag);
            }
            return Err(error);
        }
        Ok(())
    }

    async fn cancel(&mut self, channel_id: u16, cancel: basic::Cancel) -> Result<(), AmqpError> {
        let consumer_tag: ConsumerTag = cancel.consumer_tag.as_str().into();
        // The reply consumer is looked at first, as RabbitMQ does when a tag names both.
        let cancelled = if self.cancel_replies(channel_id, &consumer_tag) {
            None
        } else {
            self.connection
                .channels
                .borrow()
                .get(&channel_id)
                .and_then(|channel| channel.consumers.by_tag(&consumer_tag).map(|info| info.queue))
        };
        if let Some(queue) = cancelled {
            // The consumer stays until its queue has answered: a delivery the queue made
            // before it saw the cancel still reaches the client, before cancel-ok, as in
            // RabbitMQ.
            let request =
                QueueRequest::Cancel { holder: self.connection.holder(channel_id), consumer_tag: consumer_tag.clone() };
            self.port
                .request(queue.owner(), |reply| ShardMsg::QueueOp { queue, request, reply: Some(reply) })
                .await
                .ok();
            // Deliveries that waited for the channel's limit were never sent: back to the
            // queue as they were.
            let unsent = self.connection.channels.borrow_mut().get_mut(&channel_id).and_then(|channel| {
                let (key, _) = channel.consumers.remove_tag(&consumer_tag)?;
                Some(channel.limit.take_held_of(key))
            });
            let mut by_queue: HashMap<QueueId, Vec<u64>> = HashMap::new();
            for delivery in unsent.into_iter().flatten() {
                by_queue.entry(delivery.queue).or_default().push(delivery.sequence);
            }
            if !by_queue.is_empty() {
                self.settle(channel_id, by_queue, Settle::Unsent);
            }
        }
        if !cancel.nowait {
            let ok = basic::AMQPMethod::CancelOk(basic::CancelOk { consumer_tag: consumer_tag.as_ref().into() });
            self.send_method(channel_id, &AMQPClass::Basic(ok));
        }
        Ok(())
    }

    /// RabbitMQ 3.10 refuses basic.nack and basic.reject of a stream's delivery (540), requeue
    /// or not. Looked at only on channels that consumed from a stream.
    pub(super) fn stream_refuses_settle(
        &self,
        channel: &super::channel::Channel,
        delivery_tag: u64,
        multiple: bool,
    ) -> Option<AmqpError> {
        let upper = if multiple && delivery_tag == 0 { u64::MAX } else { delivery_tag };
        let lower = if multiple { 0 } else { delivery_tag };
        let snapshot = self.port.snapshot();
        let vhost = snapshot.vhost(&self.vhost())?;
        channel.unacked.range(lower, upper).find_map(|(_, unacked)| {
            let definition = vhost.queues.values().find(|definition| definition.id == unacked.queue)?;
            (QueueType::of(&definition.arguments) == QueueType::Stream)
                .then(|| stream_args::not_supported("basic.nack and basic.reject", &definition.name, &definition.vhost))
        })
    }

    /// The consumer timeout a queue gives its deliveries: its `x-consumer-timeout`, else the
    /// broker's. A consumer's own argument takes precedence (RabbitMQ's order: consumer,
    /// queue, broker).
    fn queue_timeout_ms(&self, definition: &QueueDef) -> Option<u64> {
        queue_consumer_timeout(&definition.arguments).or(self.port.consumer_timeout_ms())
    }

    async fn get(&mut self, channel_id: u16, get: basic::Get) -> Result<(), AmqpError> {
        let name = self.queue_name(channel_id, get.queue.as_str())?;
        super::access::read_queue(&self.connection, &self.port.snapshot(), &name)?;
        let definition = self.resolve_queue(&name)?;
        if QueueType::of(&definition.arguments) == QueueType::Stream {
            return Err(stream_args::not_supported("basic.get", &name, &self.vhost()));
        }
        let (queue, timeout_ms) = (definition.id, self.queue_timeout_ms(&definition));
        let holder = self.connection.holder(channel_id);
        if !get.no_ack {
            if let Some(channel) = self.connection.channels.borrow_mut().get_mut(&channel_id) {
                channel.touch(queue.owner());
            }
        }
        let request = QueueRequest::Get { holder, no_ack: get.no_ack };
        let reply =
            self.port.request(queue.owner(), |reply| ShardMsg::QueueOp { queue, request, reply: Some(reply) }).await?;
        let ReplyBody::Get(got) = reply else {
            return Err(AmqpError::new(INTERNAL_ERROR, "unexpected answer to basic.get"));
        };
        let Some(got) = got else {
            let empty = basic::AMQPMethod::GetEmpty(basic::GetEmpty {});
            self.send_method(channel_id, &AMQPClass::Basic(empty));
            return Ok(());
        };
        let Some(delivery_tag) = self.record_got(channel_id, &got, get.no_ack, timeout_ms) else {
            return Ok(());
        };
        let Some(message) = got.payload.message() else {
            return Err(AmqpError::new(INTERNAL_ERROR, "stored message unreadable"));
        };
        let frame_max = self.connection.frame_max.get();
        let mut encoded = Ok(());
        self.connection.write_with(|out| {
            encoded = hotpath::encode_get_ok(
                out,
                channel_id,
                delivery_tag,
                got.redelivered,
                &message.exchange,
                &message.routing_key,
                got.message_count,
                &message.properties,
                &message.body,
                frame_max,
            );
        });
        encoded.map_err(|error| AmqpError::from_codec(error.reply_code(), error))
    }

    /// Numbers a basic.get-ok and, in acknowledged mode, tracks it as unacked with the consumer
    /// timeout that applies (as RabbitMQ does for basic.get) and schedules its check. None if
    /// the channel is gone.
    fn record_got(&self, channel_id: u16, got: &GotMessage, no_ack: bool, timeout_ms: Option<u64>) -> Option<u64> {
        let mut channels = self.connection.channels.borrow_mut();
        let channel = channels.get_mut(&channel_id)?;
        let delivery_tag = channel.next_delivery_tag();
        if !no_ack {
            let unacked = UnackedDelivery::new(got.queue, got.sequence, timeout_ms);
            if let Some(overdue_at_ms) = unacked.overdue_at_ms() {
                self.port.schedule_ack_deadline(overdue_at_ms);
            }
            channel.insert_unacked(delivery_tag, unacked);
        }
        Some(delivery_tag)
    }

    /// basic.qos global=true: the channel's limit changes at once, for the consumers it has
    /// (their queues learn their new limit) and for what waits for room.
    fn set_channel_prefetch(&self, channel_id: u16, prefetch: u32) {
        let updates: Vec<_> = {
            let mut channels = self.connection.channels.borrow_mut();
            let Some(channel) = channels.get_mut(&channel_id) else {
                return;
            };
            if channel.limit.prefetch == prefetch {
                return;
            }
            channel.limit.prefetch = prefetch;
            channel
                .consumers
                .iter()
                .filter(|(_, info)| !info.no_ack)
                .map(|(_, info)| (info.tag.clone(), info.queue, channel.limit.consumer_prefetch(info.own_prefetch)))
                .collect()
        };
        let holder = self.connection.holder(channel_id);
        for (consumer_tag, queue, prefetch_count) in updates {
            let request = QueueRequest::Prefetch { holder, consumer_tag, prefetch_count };
            self.port.send(queue.owner(), ShardMsg::QueueOp { queue, request, reply: None });
        }
        self.release_held(channel_id);
    }

    /// basic.recover(requeue=true): every unacked message of the channel goes back to its
    /// queue. requeue=false is refused, as RabbitMQ does.
    fn recover(&mut self, channel_id: u16, requeue: bool) -> Result<(), AmqpError> {
        if !requeue {
            return Err(AmqpError::new(NOT_IMPLEMENTED, "requeue=false"));
        }
        let taken = self
            .connection
            .channels
            .borrow_mut()
            .get_mut(&channel_id)
            .and_then(|channel| channel.take_unacked(0, true));
        if let Some(by_queue) = taken {
            self.settle(channel_id, by_queue, Settle::Requeue);
        }
        Ok(())
    }
}

/// `amq.ctag-` and 22 url-safe characters, as RabbitMQ generates consumer tags.
pub(super) fn generate_consumer_tag() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0x2545_f491_4f6c_dd1d, |d| d.as_nanos() as u64) | 1,
        );
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut tag = String::from("amq.ctag-");
    STATE.with(|state| {
        let mut value = state.get();
        for _ in 0..22 {
            value ^= value << 13;
            value ^= value >> 7;
            value ^= value << 17;
            tag.push(char::from(ALPHABET[(value % 64) as usize]));
        }
        state.set(value);
    });
    tag
}

/// RabbitMQ's consumer argument `x-priority`: any AMQP integer (clamped to i32 here); another
/// type is refused with RabbitMQ's text.
fn consumer_priority(arguments: &FieldTable, queue: &str, vhost: &str) -> Result<i32, AmqpError> {
    let Some(value) = arguments.inner().get("x-priority") else {
        return Ok(0);
    };
    let Some(priority) = crate::broker::queue_args::integer(value) else {
        let reason = format!("expected integer, got {}", amqp_type_name(value));
        return Err(AmqpError::new(
            PRECONDITION_FAILED,
            format!("invalid arg 'x-priority' for queue '{queue}' in vhost '{vhost}': \"{reason}\""),
        ));
    };
    Ok(priority.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
}

/// RabbitMQ's consumer argument `x-cancel-on-ha-failover` must be a boolean (it means nothing
/// on a single node, but RabbitMQ checks it after `x-priority`, with this text).
fn check_cancel_on_ha_failover(arguments: &FieldTable, queue: &str, vhost: &str) -> Result<(), AmqpError> {
    match arguments.inner().get("x-cancel-on-ha-failover") {
        None | Some(AMQPValue::Boolean(_)) => Ok(()),
        Some(value) => Err(AmqpError::new(
            PRECONDITION_FAILED,
            format!(
                "invalid arg 'x-cancel-on-ha-failover' for queue '{queue}' in vhost '{vhost}': {{unacceptable_type,{}}}",
                amqp_type_name(value)
            ),
        )),
    }
}

/// The name RabbitMQ gives a field value's type.
fn amqp_type_name(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) | AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}
