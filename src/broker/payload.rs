//! A queued message's content: in memory, or stored in the shard's log with an optional copy in
//! memory, and what a delivery of it carries to the consumer's shard.

use std::sync::Arc;

use crate::codec::message::Message;
use crate::store::StoredRef;

/// A queued message: in memory (transient, or not durable), or stored in the shard's log
/// with an optional in-memory copy kept while the queue is short.
#[derive(Clone, Debug)]
pub enum Payload {
    Memory(Arc<Message>),
    Stored { reference: StoredRef, cached: Option<Arc<Message>> },
}

impl Payload {
    /// The message, if in memory; a stored message without a copy is read by the shard.
    pub fn message(&self) -> Option<&Arc<Message>> {
        match self {
            Payload::Memory(message) => Some(message),
            Payload::Stored { cached, .. } => cached.as_ref(),
        }
    }

    pub fn stored(&self) -> Option<&StoredRef> {
        match self {
            Payload::Memory(_) => None,
            Payload::Stored { reference, .. } => Some(reference),
        }
    }

    /// The size counted against `x-max-length-bytes`: the body, or the size of the stored
    /// record holding the content when the body is not in memory (a link's target, not the
    /// link; the same value when it is pushed and popped, wherever compaction moved it).
    pub(super) fn counted_bytes(&self) -> u64 {
        match (self.message(), self.stored()) {
            (Some(message), _) => message.body.len() as u64,
            (None, Some(reference)) => u64::from(reference.content_bytes),
            (None, None) => 0,
        }
    }

    /// What a delivery carries while the queue keeps the entry (unacked): the message alone
    /// when it is in memory. Cloning the stored reference would raise its segment's shared
    /// count (an atomic) only for `into_delivered` to lower it again. A stored message not yet
    /// read keeps its reference, for the shard to read it.
    pub fn for_delivery(&self) -> Payload {
        match self {
            Payload::Memory(message) | Payload::Stored { cached: Some(message), .. } => {
                Payload::Memory(message.clone())
            }
            Payload::Stored { reference, cached: None } => {
                Payload::Stored { reference: reference.clone(), cached: None }
            }
        }
    }

    /// Splits a payload that leaves the queue with a delivery (no-ack): what the delivery
    /// carries, as `for_delivery`, and the stored reference, for the removal mark. Moved, not
    /// cloned, when the message is in memory.
    pub fn split_for_delivery(self) -> (Payload, Option<StoredRef>) {
        match self {
            Payload::Memory(message) => (Payload::Memory(message), None),
            Payload::Stored { reference, cached: Some(message) } => (Payload::Memory(message), Some(reference)),
            Payload::Stored { reference, cached: None } => {
                (Payload::Stored { reference: reference.clone(), cached: None }, Some(reference))
            }
        }
    }

    /// A delivery's payload once loaded (`Shard::load`): the message alone, for the consumer's
    /// shard reads nothing else. A stored message's reference holds its segment, so sending it
    /// would change that segment's shared count (an atomic) on both shards for every message
    /// of the segment; it is dropped here instead.
    pub fn into_delivered(self) -> Payload {
        match self {
            Payload::Stored { cached: Some(message), .. } => Payload::Memory(message),
            other => other,
        }
    }
}
