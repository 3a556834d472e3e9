//! The connection side of what queues send: deliveries, confirms and broker-sent cancels,
//! handled in the shard's mailbox loop and written straight into the connection's output.

use amq_protocol::protocol::{basic, AMQPClass};

use super::channel::{ConfirmAnswer, UnackedDelivery};
use super::connection::Connection;
use crate::broker::queue::Delivery;
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
    Bounced(Delivery),
    Unencodable(Delivery),
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
    /// requeues it) or when it cannot be framed for this client (the caller drops it).
    pub fn deliver(&self, delivery: Delivery) -> DeliverOutcome {
        let (delivery_tag, overdue_at_ms) = {
            let mut channels = self.channels.borrow_mut();
            let Some(channel) = channels.get_mut(&delivery.holder.channel) else {
                return DeliverOutcome::Bounced(delivery);
            };
            let timeout_ms = match channel.consumers.get(&delivery.consumer_tag) {
                Some(consumer) if channel.is_current(delivery.holder.incarnation) => consumer.timeout_ms,
                _ => return DeliverOutcome::Bounced(delivery),
            };
            let delivery_tag = channel.next_delivery_tag();
            let mut overdue_at_ms = None;
            if !delivery.no_ack {
                let unacked = UnackedDelivery::new(delivery.queue, delivery.sequence, timeout_ms);
                overdue_at_ms = unacked.overdue_at_ms();
                let earlier = channel.unacked.insert(delivery_tag, unacked);
                debug_assert!(earlier.is_none(), "delivery tag {delivery_tag} handed out twice");
            }
            (delivery_tag, overdue_at_ms)
        };
        let Some(message) = delivery.payload.message() else {
            return DeliverOutcome::Unencodable(delivery);
        };
        let tags =
            DeliveryTags { consumer_tag: &delivery.consumer_tag, delivery_tag, redelivered: delivery.redelivered };
        if let Err(error) = self.write_deliver(delivery.holder.channel, tags, message) {
            // Properties larger than this client's frame_max allow: the spec has no way to
            // send them, so the message is dropped for this consumer, loudly.
            crate::warn!("connection {}: cannot deliver a message: {error}", self.id);
            if let Some(channel) = self.channels.borrow_mut().get_mut(&delivery.holder.channel) {
                channel.unacked.remove(&delivery_tag);
            }
            return DeliverOutcome::Unencodable(delivery);
        }
        self.note_written(delivery.queue, delivery.holder, &delivery.consumer_tag);
        DeliverOutcome::Written { overdue_at_ms }
    }

    pub fn confirmed(&self, holder: Holder, publish_sequence: u64, ok: bool) {
        let mut channels = self.channels.borrow_mut();
        let current = channels.get_mut(&holder.channel).filter(|channel| channel.incarnation == holder.incarnation);
        if let Some(confirms) = current.and_then(|channel| channel.confirms_mut()) {
            confirms.confirmed(publish_sequence, ok);
        }
    }

    /// Sends the confirms settled since the last flush, per channel (see `Confirms`).
    pub fn flush_confirms(&self) {
        let mut answers: Vec<(u16, ConfirmAnswer)> = Vec::new();
        for channel in self.channels.borrow_mut().values_mut().filter(|channel| channel.is_open()) {
            let id = channel.id;
            if let Some(confirms) = channel.confirms_mut() {
                confirms.take_answers(|answer| answers.push((id, answer)));
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
        let known =
            self.channels.borrow_mut().get_mut(&channel).is_some_and(|open| {
                open.is_current(holder.incarnation) && open.consumers.remove(consumer_tag).is_some()
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
