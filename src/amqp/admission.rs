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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

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

/// The count of open connections against the node's limit, and per vhost and per user for
/// their `max-connections` limits (`spatemq ctl set_vhost_limits`, `set_user_limits`). The
/// per-name counts take a lock, at connection.open and close only.
#[derive(Debug)]
pub struct ConnectionSlots {
    max: Option<u32>,
    open: AtomicU32,
    by_vhost: Mutex<HashMap<String, u32>>,
    by_user: Mutex<HashMap<String, u32>>,
}

/// A vhost's or user's connection limit to respect, if it has one.
pub struct NamedLimits<'a> {
    pub vhost: &'a str,
    pub vhost_max: Option<u32>,
    pub user: &'a str,
    pub user_max: Option<u32>,
}

impl ConnectionSlots {
    /// `max`: None for no limit.
    pub fn new(max: Option<u32>) -> ConnectionSlots {
        ConnectionSlots {
            max,
            open: AtomicU32::new(0),
            by_vhost: Mutex::new(HashMap::new()),
            by_user: Mutex::new(HashMap::new()),
        }
    }

    /// Counts `slot`'s connection against its vhost and user, or refuses it with RabbitMQ's
    /// texts when either is at its limit (the vhost is checked first, as RabbitMQ does).
    pub fn admit(&self, slot: &mut ConnectionSlot, limits: &NamedLimits<'_>) -> Result<(), AmqpError> {
        let mut by_vhost = self.by_vhost.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut by_user = self.by_user.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let vhost_open = by_vhost.get(limits.vhost).copied().unwrap_or(0);
        if let Some(max) = limits.vhost_max.filter(|max| vhost_open >= *max) {
            return Err(AmqpError::new(
                NOT_ALLOWED,
                format!(
                    "access to vhost '{}' refused for user '{}': connection limit ({max}) is reached",
                    limits.vhost, limits.user
                ),
            ));
        }
        let user_open = by_user.get(limits.user).copied().unwrap_or(0);
        if let Some(max) = limits.user_max.filter(|max| user_open >= *max) {
            return Err(AmqpError::new(
                NOT_ALLOWED,
                format!("connection refused for user '{}': user connection limit ({max}) is reached", limits.user),
            ));
        }
        *by_vhost.entry(limits.vhost.to_string()).or_default() += 1;
        *by_user.entry(limits.user.to_string()).or_default() += 1;
        slot.named = Some((limits.vhost.to_string(), limits.user.to_string()));
        Ok(())
    }

    fn release_named(&self, vhost: &str, user: &str) {
        for (map, name) in [(&self.by_vhost, vhost), (&self.by_user, user)] {
            let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(count) = map.get_mut(name) {
                *count -= 1;
                if *count == 0 {
                    map.remove(name);
                }
            }
        }
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
            Ok(_) => Ok(ConnectionSlot { slots: self.clone(), named: None }),
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
    /// The vhost and user it is counted against (after `admit`).
    named: Option<(String, String)>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some((vhost, user)) = self.named.take() {
            self.slots.release_named(&vhost, &user);
        }
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
    fn vhost_and_user_limits_count_their_own_connections() {
        let slots = Arc::new(ConnectionSlots::new(None));
        let limits = |vhost, user| NamedLimits { vhost, vhost_max: Some(2), user, user_max: Some(1) };
        let mut first = slots.take().expect("slot");
        slots.admit(&mut first, &limits("a", "ann")).expect("first in a");
        let mut second = slots.take().expect("slot");
        let refused = slots.admit(&mut second, &limits("a", "ann")).expect_err("ann has one already");
        assert_eq!(
            refused.reply_text,
            "NOT_ALLOWED - connection refused for user 'ann': user connection limit (1) is reached"
        );
        slots.admit(&mut second, &limits("a", "bob")).expect("bob in a");
        let mut third = slots.take().expect("slot");
        let refused = slots.admit(&mut third, &limits("a", "cyd")).expect_err("a is full");
        assert_eq!(
            refused.reply_text,
            "NOT_ALLOWED - access to vhost 'a' refused for user 'cyd': connection limit (2) is reached"
        );
        drop(first);
        slots.admit(&mut third, &limits("a", "cyd")).expect("room again");
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
