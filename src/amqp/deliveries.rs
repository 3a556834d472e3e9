//! The connection side of what queues send: deliveries, confirms and broker-sent cancels,
//! handled in the shard's mailbox loop and written straight into the connection's output.

use amq_protocol::protocol::{basic, AMQPClass};

use super::channel::{ConfirmAnswer, UnackedDelivery};
use super::connection::Connection;
use crate::broker::messages::ShardMsg;
use crate::broker::queue::{Delivery, Settle};
use crate::codec::hotpath::{self, CodecError};
use crate::codec::message::Message;
use crate::codec::methods::encode_method;
use crate::ids::Holder;

pub enum DeliverOutcome {
    /// Written; `overdue_at_ms` is when an unacked delivery would time out (the shard's
    /// consumer-timeout check is scheduled by it).
    Written {
        overdue_at_ms: Option<u64>,
    },
    /// Waits in its channel for room under the channel's prefetch limit (`ChannelLimit`).
    Held,
    Bounced(Delivery),
    Unencodable(Delivery),
}

impl DeliverOutcome {
    /// What follows a delivery's outcome: the consumer-timeout deadline to schedule, or the
    /// settle that gives the queue its message back (requeued when the channel or consumer is
    /// gone, discarded when it cannot be framed for this client).
    pub fn follow_up(self) -> (Option<u64>, Option<(usize, ShardMsg)>) {
        let (delivery, action) = match self {
            DeliverOutcome::Written { overdue_at_ms } => return (overdue_at_ms, None),
            DeliverOutcome::Held => return (None, None),
            DeliverOutcome::Bounced(delivery) => (delivery, Settle::Requeue),
            DeliverOutcome::Unencodable(delivery) => (delivery, Settle::Discard),
        };
        if delivery.no_ack {
            return (None, None);
        }
        let settle = ShardMsg::Settle {
            queue: delivery.queue,
            holder: delivery.holder,
            sequences: vec![delivery.sequence],
            action,
        };
        (None, Some((delivery.queue.owner(), settle)))
    }
}

/// What a basic.deliver says about the delivery itself, beside the message.
pub struct DeliveryTags<'a> {
    pub consumer_tag: &'a str,
    pub delivery_tag: u64,
    pub redelivered: bool,
}

impl Connection {
    /// Appends basic.deliver + header + body frames of `message` to the output; an error when
    /// the message cannot be framed within this client's frame_max (nothing is written).
    pub fn write_deliver(&self, channel: u16, tags: DeliveryTags<'_>, message: &Message) -> Result<(), CodecError> {
        let frame_max = self.frame_max.get();
        let mut encoded = Ok(());
        self.write_with(|out| {
            let frame = hotpath::Delivery {
                channel,
                consumer_tag: tags.consumer_tag.as_bytes(),
                delivery_tag: tags.delivery_tag,
                redelivered: tags.redelivered,
                exchange: &message.exchange,
                routing_key: &message.routing_key,
                properties: &message.properties,
                body: &message.body,
            };
            encoded = hotpath::encode_deliver(out, &frame, frame_max);
        });
        encoded
    }

    /// Writes a delivery; hands it back when its channel or consumer is gone (the caller
    /// requeues it) or when it cannot be framed for this client (the caller drops it). A
    /// delivery in acknowledged mode waits while the channel's prefetch limit is reached.
    pub fn deliver(&self, delivery: Delivery) -> DeliverOutcome {
        self.deliver_checked(delivery, false)
    }

    /// Writes the deliveries that waited for the channel's prefetch limit while it has room
    /// (after acks, a recover, or a higher limit); the outcomes are the caller's to follow up.
    pub fn release_held(&self, channel_id: u16) -> Vec<DeliverOutcome> {
        let mut outcomes = Vec::new();
        loop {
            let next = {
                let mut channels = self.channels.borrow_mut();
                let Some(channel) = channels.get_mut(&channel_id) else {
                    break;
                };
                if channel.limit.is_full() {
                    break;
                }
                channel.limit.held.pop_front()
            };
            let Some(delivery) = next else {
                break;
            };
            outcomes.push(self.deliver_checked(delivery, true));
        }
        outcomes
    }

    fn deliver_checked(&self, delivery: Delivery, released: bool) -> DeliverOutcome {
        let mut channels = self.channels.borrow_mut();
        let Some(channel) = channels.get_mut(&delivery.holder.channel) else {
            return DeliverOutcome::Bounced(delivery);
        };
        let timeout_ms = match channel.consumers.get(delivery.consumer) {
            Some(consumer) if channel.is_current(delivery.holder.incarnation) => consumer.timeout_ms,
            _ => return DeliverOutcome::Bounced(delivery),
        };
        if !delivery.no_ack && !released && channel.limit.must_hold() {
            channel.limit.held.push_back(delivery);
            return DeliverOutcome::Held;
        }
        let Some(message) = delivery.payload.message() else {
            return DeliverOutcome::Unencodable(delivery);
        };
        let delivery_tag = channel.next_delivery_tag();
        let mut overdue_at_ms = None;
        if !delivery.no_ack {
            let mut unacked = UnackedDelivery::new(delivery.queue, delivery.sequence, timeout_ms);
            unacked.limited = true;
            overdue_at_ms = unacked.overdue_at_ms();
            channel.insert_unacked(delivery_tag, unacked);
        }
        let consumer = channel.consumers.get(delivery.consumer);
        let consumer_tag = &consumer.expect("found above, under the same borrow of the channels").tag;
        let tags = DeliveryTags { consumer_tag, delivery_tag, redelivered: delivery.redelivered };
        if let Err(error) = self.write_deliver(delivery.holder.channel, tags, message) {
            // Properties larger than this client's frame_max allow: the spec has no way to
            // send them, so the message is dropped for this consumer, loudly.
            crate::warn!("connection {}: cannot deliver a message: {error}", self.id);
            channel.remove_unacked(delivery_tag);
            return DeliverOutcome::Unencodable(delivery);
        }
        drop(channels);
        self.note_written(delivery.queue, delivery.holder, delivery.consumer);
        DeliverOutcome::Written { overdue_at_ms }
    }

    pub fn confirmed(&self, holder: Holder, publish_sequences: &[u64], ok: bool) {
        let mut channels = self.channels.borrow_mut();
        let current = channels.get_mut(&holder.channel).filter(|channel| channel.incarnation == holder.incarnation);
        if let Some(confirms) = current.and_then(|channel| channel.confirms_mut()) {
            for &publish_sequence in publish_sequences {
                confirms.confirmed(publish_sequence, ok);
            }
        }
    }

    /// Sends the confirms settled since the last flush, per channel (see `Confirms`).
    pub fn flush_confirms(&self) {
        let mut answers: Vec<(u16, ConfirmAnswer)> = Vec::new();
        for channel in self.channels.borrow_mut().values_mut().filter(|channel| channel.is_open()) {
            let id = channel.id;
            if let Some(confirms) = channel.confirms_mut() {
                let acked = confirms.take_answers(|answer| answers.push((id, answer)));
                self.confirmed.set(self.confirmed.get() + acked as u64);
            }
        }
        if answers.is_empty() {
            return;
        }
        self.write_with(|out| {
            for (channel, answer) in answers {
                match answer {
                    ConfirmAnswer::Ack { delivery_tag, multiple } => {
                        hotpath::encode_ack(out, channel, delivery_tag, multiple)
                    }
                    // requeue means nothing in a broker's nack; RabbitMQ leaves it at the
                    // field's default, true, and so do we.
                    ConfirmAnswer::Nack { delivery_tag, multiple } => {
                        hotpath::encode_nack(out, channel, delivery_tag, multiple, true)
                    }
                }
            }
        });
    }

    /// The queue was deleted: the consumer is gone; tell the client if it announced the
    /// consumer_cancel_notify capability, as RabbitMQ does.
    pub fn consumer_cancelled(&self, holder: Holder, consumer_tag: &str) {
        let channel = holder.channel;
        // Its waiting deliveries went with the queue.
        let known = self.channels.borrow_mut().get_mut(&channel).is_some_and(|open| {
            if !open.is_current(holder.incarnation) {
                return false;
            }
            let Some((key, _)) = open.consumers.remove_tag(consumer_tag) else {
                return false;
            };
            open.limit.take_held_of(key);
            true
        });
        if known && self.supports_cancel_notify.get() {
            let cancel = AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                consumer_tag: consumer_tag.into(),
                nowait: true,
            }));
            self.write_with(|out| {
                let _ = encode_method(out, channel, &cancel);
            });
        }
    }
}
