//! Direct reply-to (RabbitMQ's `amq.rabbitmq.reply-to`) on the connection side: the reply
//! consumer of a channel, the rewrite of a request's `reply_to`, the sending of a reply, its
//! delivery on the requester's shard, and queue.declare of the pseudo-queue and reply names.
//!
//! No queue is involved. A reply goes from the responder's shard through the mailbox straight
//! to the requester's connection shard and into its output, at most once: it is dropped when
//! the consumer, channel or connection is gone. Its publisher gets its confirm at once and
//! no basic.return, as RabbitMQ treats a reply name as routed whether or not the requester is
//! still there; only a name that is not a reply name at all is unroutable.
//!
//! Replies are no-ack deliveries with nowhere to wait, so their bound is a window: a reply
//! consumer takes at most `CONSUMER_FLOW_WINDOW` replies per completed write of the
//! connection's writer (the same window that holds back a queue's no-ack deliveries); past it,
//! replies are dropped, as RabbitMQ's volatile reply queue drops what its consumer cannot take.

use std::sync::Arc;

use amq_protocol::protocol::{basic, queue, AMQPClass};
use bytes::Bytes;

use super::basic::generate_consumer_tag;
use super::connection::Connection;
use super::deliveries::DeliveryTags;
use super::dispatch::Dispatcher;
use super::port::Port;
use crate::broker::error::*;
use crate::broker::messages::ShardMsg;
use crate::broker::reply_to::{ReplyAddress, ReplyKey, REPLY_QUEUE};
use crate::codec::hotpath;
use crate::codec::message::Message;
use crate::ids::ConsumerTag;
use crate::limits::CONSUMER_FLOW_WINDOW;

/// The reply consumer of a channel.
pub struct ReplyConsumer {
    pub consumer_tag: ConsumerTag,
    key: ReplyKey,
    /// The reply name this channel's requests carry in `reply_to`.
    name: Bytes,
    window: ReplyWindow,
}

/// Replies appended to the connection's output since the writer last finished a write.
#[derive(Debug, Default)]
struct ReplyWindow {
    writes_completed: u64,
    unwritten: u32,
    dropped: u64,
}

impl ReplyWindow {
    /// Takes one more reply unless the window is full; `writes_completed` is the writer's
    /// count, and a new write reopens the window. False: drop the reply.
    fn admit(&mut self, writes_completed: u64) -> bool {
        if writes_completed != self.writes_completed {
            self.writes_completed = writes_completed;
            self.unwritten = 0;
        }
        if self.unwritten >= CONSUMER_FLOW_WINDOW {
            self.dropped += 1;
            return false;
        }
        self.unwritten += 1;
        true
    }
}

impl<P: Port> Dispatcher<P> {
    /// basic.consume on `amq.rabbitmq.reply-to`, checked in RabbitMQ's order: a tag in use by
    /// another consumer, then acknowledgement mode, then a second reply consumer.
    pub(super) fn consume_replies(&mut self, channel_id: u16, consume: &basic::Consume) -> Result<(), AmqpError> {
        let consumer_tag: ConsumerTag = if consume.consumer_tag.as_str().is_empty() {
            generate_consumer_tag().into()
        } else {
            consume.consumer_tag.as_str().into()
        };
        let holder = self.connection.holder(channel_id);
        {
            let mut channels = self.connection.channels.borrow_mut();
            let Some(channel) = channels.get_mut(&channel_id) else {
                return Ok(());
            };
            if channel.consumers.contains_tag(&consumer_tag) {
                return Err(AmqpError::new(NOT_ALLOWED, format!("attempt to reuse consumer tag '{consumer_tag}'")));
            }
            if !consume.no_ack {
                return Err(AmqpError::new(PRECONDITION_FAILED, "reply consumer cannot acknowledge"));
            }
            if channel.reply_consumer.is_some() {
                return Err(AmqpError::new(PRECONDITION_FAILED, "reply consumer already set"));
            }
            let key = ReplyKey::random()
                .ok_or_else(|| AmqpError::new(INTERNAL_ERROR, "cannot read the random source for a reply name"))?;
            let name = Bytes::from(ReplyAddress { holder, key }.name());
            let window = ReplyWindow::default();
            channel.reply_consumer = Some(ReplyConsumer { consumer_tag: consumer_tag.clone(), key, name, window });
        }
        if !consume.nowait {
            let ok = basic::ConsumeOk { consumer_tag: consumer_tag.as_ref().into() };
            self.send_method(channel_id, &AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)));
        }
        Ok(())
    }

    /// basic.cancel of the reply consumer: true if `consumer_tag` was it (now gone).
    pub(super) fn cancel_replies(&mut self, channel_id: u16, consumer_tag: &str) -> bool {
        let mut channels = self.connection.channels.borrow_mut();
        let Some(channel) = channels.get_mut(&channel_id) else {
            return false;
        };
        let is_reply_consumer = channel.reply_consumer.as_ref().is_some_and(|consumer| {
            let tag: &str = &consumer.consumer_tag;
            tag == consumer_tag
        });
        if is_reply_consumer {
            channel.reply_consumer = None;
        }
        is_reply_consumer
    }

    /// A request whose `reply_to` is `amq.rabbitmq.reply-to` leaves with this channel's reply
    /// name instead; without a reply consumer on the channel it is refused (406), as RabbitMQ.
    /// Any other property list is returned as it came (a flag test for most messages).
    pub(super) fn rewrite_reply_to(&self, channel_id: u16, properties: Bytes) -> Result<Bytes, AmqpError> {
        if hotpath::reply_to(&properties) != Some(REPLY_QUEUE.as_bytes()) {
            return Ok(properties);
        }
        let channels = self.connection.channels.borrow();
        let consumer = channels.get(&channel_id).and_then(|channel| channel.reply_consumer.as_ref());
        let Some(consumer) = consumer else {
            return Err(AmqpError::new(PRECONDITION_FAILED, "fast reply consumer does not exist"));
        };
        // A reply name is far shorter than a short string, so the rewrite cannot fail.
        hotpath::with_reply_to(&properties, &consumer.name)
            .ok_or_else(|| AmqpError::new(INTERNAL_ERROR, "cannot rewrite the reply_to property"))
    }

    /// A publish to "" whose routing key is a reply name: sent to the requester's shard. Its
    /// confirm is due at once; only a name that does not parse is unroutable (basic.return if
    /// mandatory), as RabbitMQ does not check at routing time whether the requester is there.
    pub(super) fn send_direct_reply(&mut self, channel_id: u16, mandatory: bool, message: Arc<Message>) {
        let address =
            ReplyAddress::parse(&message.routing_key).filter(|address| address.shard() < self.port.shard_count());
        self.start_confirm(channel_id, 0);
        match address {
            Some(address) => self.port.send(address.shard(), ShardMsg::DirectReply { address, message }),
            None if mandatory => self.return_unroutable(channel_id, &message),
            None => {}
        }
    }

    /// queue.declare of a name starting with `amq.rabbitmq.reply-to`, passive or not (nothing
    /// is ever created), as RabbitMQ: the pseudo-queue itself and the reply name of a live
    /// reply consumer answer declare-ok with 0 messages and 1 consumer; anything else is 404.
    pub(super) async fn declare_reply_queue(
        &mut self,
        channel_id: u16,
        declare: &queue::Declare,
    ) -> Result<(), AmqpError> {
        let name = declare.queue.as_str();
        if name != REPLY_QUEUE {
            let not_found = || AmqpError::not_found("queue", name, &self.vhost());
            let address = ReplyAddress::parse(name.as_bytes())
                .filter(|address| address.shard() < self.port.shard_count())
                .ok_or_else(not_found)?;
            self.port
                .request(address.shard(), |reply| ShardMsg::ReplyConsumerExists { address, reply })
                .await
                .map_err(|_| not_found())?;
        }
        if let Some(channel) = self.connection.channels.borrow_mut().get_mut(&channel_id) {
            channel.last_queue = Some(name.to_string());
        }
        if !declare.nowait {
            let ok = queue::DeclareOk { queue: name.into(), message_count: 0, consumer_count: 1 };
            self.send_method(channel_id, &AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)));
        }
        Ok(())
    }
}

impl Connection {
    /// The reply consumer `address` names, on its current channel opening with its key.
    fn with_reply_consumer<T>(
        &self,
        address: ReplyAddress,
        operation: impl FnOnce(&mut super::channel::Channel) -> T,
    ) -> Option<T> {
        let mut channels = self.channels.borrow_mut();
        let channel = channels.get_mut(&address.holder.channel)?;
        let current = channel.is_current(address.holder.incarnation);
        let consumer = channel.reply_consumer.as_ref().filter(|consumer| consumer.key.matches(&address.key));
        if !current || consumer.is_none() {
            return None;
        }
        Some(operation(channel))
    }

    pub fn has_reply_consumer(&self, address: ReplyAddress) -> bool {
        self.with_reply_consumer(address, |_| ()).is_some()
    }

    /// Writes a direct reply as basic.deliver to the reply consumer `address` names; dropped
    /// if that consumer is gone, its window is full, or the client cannot be sent it.
    pub fn deliver_reply(&self, address: ReplyAddress, message: &Message) {
        let writes_completed = self.writes_completed();
        let admitted = self.with_reply_consumer(address, |channel| {
            let consumer = channel.reply_consumer.as_mut()?;
            if !consumer.window.admit(writes_completed) {
                if consumer.window.dropped == 1 {
                    crate::warn!(
                        "connection {} channel {}: dropping direct replies: the client reads them slower than they come",
                        self.id,
                        channel.id
                    );
                }
                return None;
            }
            let consumer_tag = consumer.consumer_tag.clone();
            Some((consumer_tag, channel.next_delivery_tag()))
        });
        let Some((consumer_tag, delivery_tag)) = admitted.flatten() else {
            return;
        };
        let tags = DeliveryTags { consumer_tag: &consumer_tag, delivery_tag, redelivered: false };
        if let Err(error) = self.write_deliver(address.holder.channel, tags, message) {
            crate::warn!("connection {}: cannot deliver a direct reply: {error}", self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_holds_replies_until_the_writer_finishes_a_write() {
        let mut window = ReplyWindow::default();
        for _ in 0..CONSUMER_FLOW_WINDOW {
            assert!(window.admit(0));
        }
        assert!(!window.admit(0), "a full window drops");
        assert!(!window.admit(0));
        assert_eq!(window.dropped, 2);
        assert!(window.admit(1), "a finished write reopens it");
        assert_eq!(window.unwritten, 1);
    }
}
