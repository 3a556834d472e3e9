//! What the connection state machines need from the shard that runs them, as a trait: the
//! routing snapshot, sending a message to a shard's mailbox, and asking a shard for an answer.
//!
//! The shard implements it over its mailboxes; the unit tests implement it over plain vectors
//! and scripted answers, so every method handler runs without a socket, a runtime or a thread.
//! Nothing here blocks: `request` returns a future that the shard completes from its mailbox
//! loop.

use std::future::Future;
use std::sync::Arc;

use crate::broker::error::AmqpError;
use crate::broker::messages::{ReplyTo, ShardMsg};
use crate::broker::requests::ReplyBody;
use crate::broker::snapshot::Snapshot;

/// Runs where an answer arrives, before any later message is handled: basic.consume-ok is
/// written there so that it precedes the consumer's first delivery.
pub type ReplyHook = Box<dyn FnOnce(&Result<ReplyBody, AmqpError>)>;

pub trait Port {
    /// How many shards the broker runs.
    fn shard_count(&self) -> usize;

    /// The current definitions, as this shard last received them.
    fn snapshot(&self) -> Arc<Snapshot>;

    /// The version of `snapshot()`, without taking a reference to it: the per-publish checks
    /// only compare versions, and the snapshot's reference count is shared by every shard, so
    /// cloning it per message would pull its cache line between cores.
    fn snapshot_version(&self) -> u64 {
        self.snapshot().version
    }

    /// Sends a message to a shard (this one included) without blocking.
    fn send(&self, to: usize, message: ShardMsg);

    /// Wakes now the shards `send` has sent to since the last wake, rather than when the
    /// connection's read has been handled (`limits::CONFIRM_PUBLISHES_PER_WAKE`).
    fn wake_now(&self) {}

    /// Sends the request `make` builds for the given reply address and waits for the answer;
    /// `hook` runs the moment the answer arrives.
    fn request_with_hook(
        &self,
        to: usize,
        make: impl FnOnce(ReplyTo) -> ShardMsg,
        hook: Option<ReplyHook>,
    ) -> impl Future<Output = Result<ReplyBody, AmqpError>>;

    fn request(
        &self,
        to: usize,
        make: impl FnOnce(ReplyTo) -> ShardMsg,
    ) -> impl Future<Output = Result<ReplyBody, AmqpError>> {
        self.request_with_hook(to, make, None)
    }

    /// The broker's consumer timeout (`--consumer-timeout`); None when disabled.
    fn consumer_timeout_ms(&self) -> Option<u64>;

    /// The largest message body accepted (`--max-message-size`).
    fn max_message_size_bytes(&self) -> u64;

    /// An unacked delivery may time out at `overdue_at_ms`: the consumer-timeout check must
    /// run by then.
    fn schedule_ack_deadline(&self, overdue_at_ms: u64);
}
