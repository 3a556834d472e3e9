//! Identifiers that cross shards: queues, exchanges, connections, channel holders, and the
//! publish a queue must confirm. A leaf: the store, the broker and the shards all name them.
//!
//! A `QueueId` carries its owner shard in the top 16 bits, so routing a message never needs a
//! lookup to know which shard to send it to.

use std::fmt;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u64);

impl QueueId {
    const SHARD_SHIFT: u32 = 48;

    pub fn new(owner_shard: usize, sequence: u64) -> QueueId {
        QueueId(((owner_shard as u64) << Self::SHARD_SHIFT) | (sequence & ((1 << Self::SHARD_SHIFT) - 1)))
    }

    pub fn owner(self) -> usize {
        (self.0 >> Self::SHARD_SHIFT) as usize
    }

    /// The writer's global sequence number: creation order, never reused.
    pub fn sequence(self) -> u64 {
        self.0 & ((1 << Self::SHARD_SHIFT) - 1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExchangeId(pub u64);

/// Where a binding leads: a queue, or another exchange (exchange-to-exchange bindings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Queue(QueueId),
    Exchange(ExchangeId),
}

/// A connection, named by the shard that owns its socket and a per-shard counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub shard: u16,
    pub local: u64,
}

impl ConnId {
    pub fn shard(self) -> usize {
        usize::from(self.shard)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.shard, self.local)
    }
}

/// The channel that holds consumers and unacknowledged messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holder {
    pub conn: ConnId,
    pub channel: u16,
    /// Which opening of that channel number: a client may close channel 1 and open it again,
    /// and a late message meant for the old one must not reach the new one.
    pub incarnation: u32,
}

pub type ConsumerTag = Arc<str>;

/// Which publish of which channel a queue must confirm.
#[derive(Clone, Copy, Debug)]
pub struct ConfirmTo {
    pub holder: Holder,
    pub publish_sequence: u64,
}
