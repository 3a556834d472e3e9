//! Time and death on the owner shard: the periodic sweep that expires messages (`x-message-ttl`,
//! per-message `expiration`) and unused queues (`x-expires`) and packs the backlogs that waited
//! since the last one (`Queue::pack_waiting`), and the republishing of dead-lettered messages to
//! their queue's dead-letter exchange.
//!
//! A dead-lettered message takes the normal publish path: routed with this shard's snapshot
//! and sent as `ShardMsg::Publish` to each target queue's owner, which stores it if the target
//! is durable and the message persistent. An expired queue is deleted through the writer,
//! like an auto-delete queue.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::Shard;
use crate::broker::dead_letter::{dead_properties, is_cycle, Death, DeathReason};
use crate::broker::messages::ShardMsg;
use crate::broker::queue::Payload;
use crate::broker::queue_args::DeadLetterTarget;
use crate::broker::snapshot::QueueDef;
use crate::clock;
use crate::codec::message::Message;
use crate::ids::{ConnId, Holder, QueueId};
use crate::limits::{EXPIRY_SWEEP_INTERVAL_MS, EXPIRY_SWEEP_MESSAGES_MAX, PACK_SWEEP_MESSAGES_MAX};

/// Sweeps this shard's timed queues every `EXPIRY_SWEEP_INTERVAL_MS` until shutdown.
pub async fn expiry_loop(shard: Rc<Shard>) {
    while !shard.shutdown_requested() {
        monoio::time::sleep(Duration::from_millis(EXPIRY_SWEEP_INTERVAL_MS)).await;
        shard.sweep();
    }
}

impl Shard {
    /// Expires at most `EXPIRY_SWEEP_MESSAGES_MAX` messages per queue per tick (the rest wait
    /// for the next tick or are dropped when they reach the head), asks the writer to delete
    /// queues unused for longer than their `x-expires`, and packs at most
    /// `PACK_SWEEP_MESSAGES_MAX` waiting messages.
    fn sweep(&self) {
        self.expire_timed();
        self.pack_waiting();
    }

    /// Packs what waited in each queue since the last sweep, at most `PACK_SWEEP_MESSAGES_MAX`
    /// messages in all (`Queue::pack_waiting`).
    fn pack_waiting(&self) {
        let mut budget = PACK_SWEEP_MESSAGES_MAX;
        for queue in self.queues.borrow_mut().values_mut() {
            if budget == 0 {
                // The queues not reached keep their mark: the next sweep packs what waited since.
                break;
            }
            budget -= queue.pack_waiting(budget);
        }
        let packed = self.work_counts.packed_messages.get() + (PACK_SWEEP_MESSAGES_MAX - budget) as u64;
        self.work_counts.packed_messages.set(packed);
    }

    fn expire_timed(&self) {
        let timed: Vec<QueueId> =
            self.queues.borrow().iter().filter(|(_, queue)| queue.timed()).map(|(id, _)| *id).collect();
        let now_ms = clock::now_ms();
        for id in timed {
            let unused = self.with_queue(id, |queue, effects, reader| {
                queue.expire(now_ms, EXPIRY_SWEEP_MESSAGES_MAX, effects, reader);
                queue.unused_for_too_long(now_ms)
            });
            if unused == Some(true) {
                self.request_auto_delete(id);
            }
        }
    }

    /// Republishes a dead message to `target`, with its x-death history. Dropped (as RabbitMQ
    /// does) when the exchange does not exist, the message cannot be read, or every target
    /// queue would close a cycle.
    pub(super) fn dead_letter(
        &self,
        mut payload: Payload,
        reason: DeathReason,
        queue: &QueueDef,
        target: &DeadLetterTarget,
    ) {
        if !self.load(&mut payload) {
            return;
        }
        let Some(message) = payload.message() else { return };
        let death = Death { reason, queue: &queue.name, time_secs: clock::unix_seconds() };
        let dead = match dead_properties(message, &death) {
            Ok(dead) => dead,
            Err(error) => {
                crate::warn!("queue '{}': dead-lettered message dropped: {error}", queue.name);
                return;
            }
        };
        let routing_key = match &target.routing_key {
            Some(key) => Bytes::copy_from_slice(key.as_bytes()),
            None => message.routing_key.clone(),
        };
        let snapshot = self.snapshot();
        let Some(vhost) = snapshot.vhost(&queue.vhost) else { return };
        let Some(exchange) = vhost.exchanges.get(&target.exchange) else { return };
        let dead_message = Arc::new(Message {
            exchange: Bytes::copy_from_slice(target.exchange.as_bytes()),
            routing_key,
            properties: Bytes::from(dead.properties),
            body: message.body.clone(),
        });
        let properties = dead_message.properties.clone();
        let mut headers = move || crate::codec::hotpath::parse_properties(&properties).ok();
        let mut routes = Vec::new();
        vhost.route_with_alternates(exchange, &dead_message.routing_key, &mut headers, &mut routes);
        let cycles: Vec<QueueId> = dead
            .history
            .iter()
            .filter(|(name, _)| is_cycle(&dead.history, name))
            .filter_map(|(name, _)| vhost.queues.get(name).map(|definition| definition.id))
            .collect();
        // Nobody confirms or is told about a dead-lettered copy: a holder no connection has.
        let publisher = Holder { conn: ConnId { shard: self.id as u16, local: 0 }, channel: 0, incarnation: 0 };
        for target_queue in routes.into_iter().filter(|id| !cycles.contains(id)) {
            let message = dead_message.clone();
            self.send(
                target_queue.owner(),
                ShardMsg::Publish { queue: target_queue, message, publisher, publish_sequence: None },
            );
        }
    }
}
