//! The connection's side of exchanges routed by an owner shard (`broker::owned_exchange`):
//! sending such a publish to the owner, and taking the owner's answer (how many queues it
//! reached, and the message to return when it was mandatory and reached none).

use std::sync::Arc;

use super::channel::ROUTED_BY_OWNER;
use super::connection::Connection;
use super::dispatch::Dispatcher;
use super::port::Port;
use crate::broker::messages::ShardMsg;
use crate::broker::owned_exchange::{OwnerPublish, OwnerRouted};
use crate::broker::placement::exchange_owner;
use crate::broker::snapshot::Exchange;
use crate::codec::hotpath;
use crate::codec::message::Message;

impl<P: Port> Dispatcher<P> {
    /// Sends a publish to the shard that routes `exchange` (seen in definitions `version`); a
    /// confirm-mode channel counts it as routed elsewhere until the owner answers.
    pub(super) fn send_to_exchange_owner(
        &self,
        channel_id: u16,
        mandatory: bool,
        message: Arc<Message>,
        (version, exchange): (u64, &Exchange),
    ) {
        let vhost = self.connection.vhost.borrow().clone();
        let owner = exchange_owner(&vhost, &exchange.name, self.port.shard_count());
        let publish_sequence = self.start_confirm(channel_id, ROUTED_BY_OWNER);
        let publisher = self.connection.holder(channel_id);
        let request =
            OwnerPublish { version, vhost, exchange: exchange.id, message, publisher, publish_sequence, mandatory };
        // The owner may fall behind (a delayed exchange's due messages): it holds its
        // publishers back then, as a paging queue's shard does.
        self.connection.note_published_to(owner);
        self.port.send(owner, ShardMsg::OwnerPublish(Box::new(request)));
    }
}

impl Connection {
    /// The owner shard's answer to a publish sent by `send_to_exchange_owner`.
    pub fn owner_routed(&self, routed: &OwnerRouted) {
        let holder = routed.publisher;
        if !self.is_current(holder) {
            return;
        }
        if let Some(message) = &routed.returned {
            self.return_unroutable(holder.channel, message);
        }
        if let Some(publish_sequence) = routed.publish_sequence {
            let mut channels = self.channels.borrow_mut();
            if let Some(confirms) = channels.get_mut(&holder.channel).and_then(|channel| channel.confirms_mut()) {
                confirms.routed(publish_sequence, routed.destinations);
            }
        }
    }

    /// basic.return 312 NO_ROUTE for a mandatory publish that reached no queue.
    pub(super) fn return_unroutable(&self, channel_id: u16, message: &Message) {
        self.returned_unroutable.set(self.returned_unroutable.get() + 1);
        let frame_max = self.frame_max.get();
        self.write_with(|out| {
            // A return too large for the client's frame_max is dropped: the publish itself
            // was valid, and the confirm still tells the publisher.
            let _ = hotpath::encode_return(
                out,
                channel_id,
                crate::broker::error::NO_ROUTE,
                b"NO_ROUTE",
                &message.exchange,
                &message.routing_key,
                &message.properties,
                &message.body,
                frame_max,
            );
        });
    }
}
