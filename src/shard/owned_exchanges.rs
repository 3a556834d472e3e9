//! The owner side of exchanges that keep state (`broker::owned_exchange`): the deduplication
//! caches of the exchanges this shard owns, and routing the publishes sent to it (a delayed
//! message is held by `delayed.rs` instead); and, on the publisher's shard, the owner's answer.
//!
//! A cache belongs to one exchange id: an exchange deleted and declared again starts empty.
//! Caches of exchanges gone from the definitions are dropped when a new cache is made, so their
//! number stays at most the number of deduplicating exchanges this shard owns plus one.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::Shard;
use crate::broker::dedup::{DedupCache, DedupSettings};
use crate::broker::messages::ShardMsg;
use crate::broker::owned_exchange::{OwnerPublish, OwnerRouted};
use crate::broker::snapshot::{Exchange, Snapshot, Vhost};
use crate::clock;
use crate::codec::hotpath;
use crate::codec::message::Message;
use crate::ids::ExchangeId;

/// What this shard keeps for the exchanges it owns.
#[derive(Default)]
pub struct OwnedExchanges {
    /// Deduplicating exchanges' caches, with the vhost each exchange is in.
    dedup: FxHashMap<ExchangeId, (String, DedupCache)>,
}

impl OwnedExchanges {
    /// Whether `message` repeats a value `exchange`'s cache remembers (remembering it if not);
    /// false for an exchange that does not deduplicate.
    fn is_duplicate(&mut self, snapshot: &Snapshot, vhost: &str, exchange: &Exchange, message: &Message) -> bool {
        if !self.dedup.contains_key(&exchange.id) {
            let Some(settings) = DedupSettings::from_arguments(&exchange.arguments) else {
                return false;
            };
            self.dedup.retain(|id, (vhost, _)| {
                snapshot.vhost(vhost).is_some_and(|vhost| vhost.exchange_by_id(*id).is_some())
            });
            self.dedup.insert(exchange.id, (vhost.to_string(), DedupCache::new(settings)));
        }
        let (_, cache) = self.dedup.get_mut(&exchange.id).expect("inserted above");
        cache.is_duplicate(message, clock::now_ms())
    }
}

impl Shard {
    /// A publish to an exchange this shard owns: dropped if it is a duplicate, otherwise
    /// routed here and sent to its queues. The publisher's shard is told how many queues it
    /// reached (its confirm waits for that many).
    pub(super) fn owner_publish(&self, publish: OwnerPublish) {
        self.catch_up(publish.version);
        let snapshot = self.snapshot();
        let found = snapshot
            .vhost(&publish.vhost)
            .and_then(|vhost| vhost.exchange_by_id(publish.exchange).map(|exchange| (vhost, exchange)));
        let Some((vhost, exchange)) = found else {
            // Deleted since the publisher routed: unroutable, as on the publisher's shard.
            return self.answer_owner_publish(&publish, 0);
        };
        let duplicate =
            self.owned_exchanges.borrow_mut().is_duplicate(&snapshot, &publish.vhost, exchange, &publish.message);
        if duplicate {
            // Dropped, confirmed, and not returned even when mandatory (see the README).
            let answer = OwnerRouted {
                publisher: publish.publisher,
                publish_sequence: publish.publish_sequence,
                destinations: 0,
                returned: None,
            };
            return self.send(publish.publisher.conn.shard(), ShardMsg::OwnerRouted(Box::new(answer)));
        }
        if crate::broker::delayed::is_delayed(exchange) {
            if let Some(delay_ms) = crate::broker::delayed::delay_ms(&publish.message) {
                return self.hold_delayed(&publish.vhost, exchange, &publish, delay_ms);
            }
        }
        self.route_as_owner(vhost, exchange, &publish);
    }

    /// Routes with this shard's definitions and sends the copies to the queues.
    fn route_as_owner(&self, vhost: &Vhost, exchange: &Exchange, publish: &OwnerPublish) {
        let message = &publish.message;
        let mut routes = Vec::new();
        let properties = message.properties.clone();
        let mut parse = || hotpath::parse_properties(&properties).ok();
        vhost.route_with_alternates(exchange, &message.routing_key, &mut parse, &mut routes);
        self.answer_owner_publish(publish, u32::try_from(routes.len()).unwrap_or(u32::MAX));
        for queue in routes {
            let copy = ShardMsg::Publish {
                queue,
                message: message.clone(),
                publisher: publish.publisher,
                publish_sequence: publish.publish_sequence,
            };
            self.send(queue.owner(), copy);
        }
    }

    fn answer_owner_publish(&self, publish: &OwnerPublish, destinations: u32) {
        let returned = (destinations == 0 && publish.mandatory).then(|| Arc::clone(&publish.message));
        let answer = OwnerRouted {
            publisher: publish.publisher,
            publish_sequence: publish.publish_sequence,
            destinations,
            returned,
        };
        self.send(publish.publisher.conn.shard(), ShardMsg::OwnerRouted(Box::new(answer)));
    }

    /// The publisher's side: the owner's answer reaches the connection.
    pub(super) fn owner_routed(&self, routed: &OwnerRouted) {
        let connection = self.connections.borrow().get(&routed.publisher.conn.local).cloned();
        if let Some(connection) = connection {
            connection.owner_routed(routed);
            self.mark_dirty(&connection);
        }
    }
}
