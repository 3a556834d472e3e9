//! What the configuration asks of a connection at its handshake: the channel_max offered in
//! connection.tune (`--channel-max`) and the node's connection limit (`--max-connections`,
//! RabbitMQ's `connection_max`).
//!
//! The limit counts open connections across every shard, so its counter is shared (an atomic,
//! the one piece of connection state shards share). A connection takes a slot at
//! connection.open and gives it back when its `ConnectionSlot` is dropped, after the socket
//! driver has torn it down. Over the limit, connection.open is refused with RabbitMQ 3.12's
//! close, 530 NOT_ALLOWED "connection refused: node connection limit (N) is reached".
//! (RabbitMQ 3.10 stops accepting sockets instead, which leaves clients hanging until their
//! own timeout; 3.12 replaced that with this refusal.)

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::broker::error::{AmqpError, NOT_ALLOWED};
use crate::limits::CHANNEL_MAX;

/// The configured limits a handshake applies.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Offered in connection.tune, and the most a client's tune-ok may ask for.
    pub channel_max: u16,
    /// The node's open connections, shared by every shard.
    pub slots: Arc<ConnectionSlots>,
}

impl Default for ConnectionLimits {
    /// RabbitMQ's defaults: channel_max 2047, no connection limit.
    fn default() -> ConnectionLimits {
        ConnectionLimits { channel_max: CHANNEL_MAX, slots: Arc::new(ConnectionSlots::new(None)) }
    }
}

/// The count of open connections against the node's limit.
#[derive(Debug)]
pub struct ConnectionSlots {
    max: Option<u32>,
    open: AtomicU32,
}

impl ConnectionSlots {
    /// `max`: None for no limit.
    pub fn new(max: Option<u32>) -> ConnectionSlots {
        ConnectionSlots { max, open: AtomicU32::new(0) }
    }

    /// Connections holding a slot now.
    #[cfg(test)]
    pub fn open(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }

    /// A slot for a connection about to open, or RabbitMQ's refusal when the node is full.
    pub fn take(self: &Arc<Self>) -> Result<ConnectionSlot, AmqpError> {
        let limit = self.max.unwrap_or(u32::MAX);
        let taken =
            self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < limit).then_some(open + 1));
        match taken {
            Ok(_) => Ok(ConnectionSlot { slots: self.clone() }),
            Err(_) => Err(AmqpError::new(
                NOT_ALLOWED,
                format!("connection refused: node connection limit ({limit}) is reached"),
            )),
        }
    }
}

/// One open connection's place under the limit, given back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    slots: Arc<ConnectionSlots>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let before = self.slots.open.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a slot was given back twice");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_refuses_one_more_and_a_dropped_slot_makes_room() {
        let slots = Arc::new(ConnectionSlots::new(Some(2)));
        let first = slots.take().expect("room for one");
        let _second = slots.take().expect("room for two");
        let refused = slots.take().expect_err("the third is over the limit");
        assert_eq!(refused.reply_code, NOT_ALLOWED);
        assert_eq!(refused.reply_text, "NOT_ALLOWED - connection refused: node connection limit (2) is reached");
        assert_eq!(slots.open(), 2);
        drop(first);
        assert_eq!(slots.open(), 1);
        let _third = slots.take().expect("a closed connection made room");
    }

    #[test]
    fn without_a_limit_every_connection_gets_a_slot() {
        let slots = Arc::new(ConnectionSlots::new(None));
        let held: Vec<_> = (0..1000).map(|_| slots.take().expect("no limit")).collect();
        assert_eq!(slots.open(), 1000);
        drop(held);
        assert_eq!(slots.open(), 0);
    }
}
