//! Exchanges that keep state across publishes, so one shard must route them all: an exchange
//! that deduplicates (`x-message-deduplication`, one cache for the whole broker) or delays
//! (`x-delayed-message`, its pending messages).
//!
//! A publish to such an exchange does not route on the publisher's shard: the connection sends
//! it (`OwnerPublish`) to the exchange's owner shard (`placement::exchange_owner`), which keeps
//! the state, routes with its own snapshot and sends the copies to the queues as any publish.
//! The owner then tells the publisher's shard how many queues the publish reached
//! (`OwnerRouted`), which completes its confirm (see `amqp::channel::Confirms::routed`) and
//! returns it when mandatory and unroutable. The mailboxes are FIFO, so publishes of one
//! channel to one such exchange keep their order; relative to publishes of the same channel
//! to other exchanges they may be reordered (one more hop). No lock is shared between shards.

use std::sync::Arc;

use super::dedup::DedupSettings;
use super::snapshot::Exchange;
use crate::codec::message::Message;
use crate::ids::{ExchangeId, Holder};

/// Whether publishes to `exchange` go through its owner shard.
pub fn routed_by_owner(exchange: &Exchange) -> bool {
    DedupSettings::from_arguments(&exchange.arguments).is_some() || super::delayed::is_delayed(exchange)
}

/// Connection shard → exchange owner: a publish to route there.
#[derive(Debug)]
pub struct OwnerPublish {
    /// The definitions version the publisher routed with: the owner catches up to it first,
    /// so an exchange the client just declared is known.
    pub version: u64,
    pub vhost: String,
    pub exchange: ExchangeId,
    pub message: Arc<Message>,
    pub publisher: Holder,
    /// Set when the publisher's channel is in confirm mode.
    pub publish_sequence: Option<u64>,
    pub mandatory: bool,
}

/// Exchange owner → publisher's shard: how many queues the publish reached (0 for a
/// duplicate or a held delayed message, which are confirmed at once), and the message when
/// it was mandatory and no queue took it.
#[derive(Debug)]
pub struct OwnerRouted {
    pub publisher: Holder,
    pub publish_sequence: Option<u64>,
    pub destinations: u32,
    pub returned: Option<Arc<Message>>,
}
