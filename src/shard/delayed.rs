//! The messages a shard holds for its delayed exchanges (`broker::delayed`), and the one timer
//! that routes them when due.
//!
//! Held messages sit in one ordered index per shard, keyed by (due time, sequence): the timer
//! task sleeps until the earliest due time (woken early when an earlier one arrives), routes
//! every due message with the definitions of that moment, and sleeps again; every turn of the
//! mailbox loop also routes what is due (`route_due_in_turn`), as a busy runtime fires timers late. A million held
//! messages cost a million index entries and one timer. A persistent message of a durable
//! delayed exchange is stored (`broker::delayed`'s reserved queue sequence) and confirmed after
//! the fsync that covers it; the index keeps only its stored reference, not its body. Others
//! are kept in memory and confirmed at once; they do not survive a restart.
//!
//! Hand-over of a stored message: its copies go to the destination queues as
//! `ShardMsg::Handover`, whose confirm comes back here (`HANDOVER_CONNECTION`). A durable
//! queue stores the copy right after a hand-over record naming the held record
//! (`store::handover`) and tells this shard which segment holds it (`HandoverStored`), then
//! confirms after its own fsync; once every queue confirmed, the held record is marked removed,
//! and only once that mark is written may those segments go. After a crash, recovery files the
//! hand-over records under the held record (`broker::handovers`) and the held message goes only
//! to the queues without a copy (`route_held`), so a kill -9 at any point neither loses nor
//! duplicates it. A crash before every copy is synced routes it again to the queues that lack
//! it. A stream, whose log has no hand-over records, and a deduplicating queue that drops the
//! copy as a repeat keep the older window: a crash after the copy's fsync and before the removal
//! mark routes it again (the README says so). Once shutdown begins nothing more is handed over.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::Shard;
use crate::broker::delayed::{
    lacking_copies, pending_queue_sequence, split_stored_exchange, stored_exchange_field, HandoverCopy,
};
use crate::broker::handovers::HandedOver;
use crate::broker::messages::{ConfirmTo, ShardMsg};
use crate::broker::owned_exchange::{OwnerPublish, OwnerRouted};
use crate::broker::recovery::RecoveredQueue;
use crate::broker::snapshot::Exchange;
use crate::clock;
use crate::codec::hotpath;
use crate::codec::message::Message;
use crate::ids::{ConnId, Holder};
use crate::limits::{
    DELAYED_BEHIND_MS, DELAYED_IDLE_CHECK_MS, DELAYED_MEMORY_BYTES_MAX, DELAYED_PENDING_MAX, DELAYED_ROUTE_BATCH,
};
use crate::store::handover::StoredId;
use crate::store::record::{Mark, MessageRecord};
use crate::store::segment::Segment;
use crate::store::StoredRef;

/// The connection number of the hand-over confirms: real connections start at 1.
pub const HANDOVER_CONNECTION: u64 = 0;

/// One held message.
enum Held {
    Memory {
        vhost: Arc<str>,
        message: Arc<Message>,
    },
    /// In the store, under `queue_sequence` (this shard's, or a former shard's after a restart
    /// with fewer shards) and `sequence`; after a crash, with the queues that hold a copy
    /// already (whose proofs stay on disk while this is held).
    Stored {
        reference: StoredRef,
        queue_sequence: u64,
        sequence: u64,
        handed_over: Box<[HandedOver]>,
    },
}

/// A stored held message whose copies wait for their queues' confirms.
struct Handover {
    remaining: u32,
    reference: StoredRef,
    queue_sequence: u64,
    sequence: u64,
    /// The segments holding proofs of its copies (this run's, and before a crash), kept on
    /// disk until the removal mark is written.
    proofs: Vec<Arc<Segment>>,
}

#[derive(Default)]
struct Index {
    /// (due time on `clock::now_ms`'s scale, sequence) → the message.
    held: BTreeMap<(u64, u64), Held>,
    next_sequence: u64,
    memory_bytes: usize,
    handovers: FxHashMap<u64, Handover>,
}

/// This shard's held messages and their timer.
pub struct Delayed {
    index: RefCell<Index>,
    next_due_ms: Cell<u64>,
    /// The timer task, while it sleeps: woken when an earlier due time is scheduled.
    sleeper: RefCell<Option<Waker>>,
}

impl Default for Delayed {
    fn default() -> Delayed {
        Delayed {
            index: RefCell::new(Index { next_sequence: 1, ..Index::default() }),
            next_due_ms: Cell::new(u64::MAX),
            sleeper: RefCell::new(None),
        }
    }
}

impl Delayed {
    /// Whether the earliest held message is more than `DELAYED_BEHIND_MS` past due at `now_ms`.
    pub(super) fn behind(&self, now_ms: u64) -> bool {
        self.next_due_ms.get().saturating_add(DELAYED_BEHIND_MS) < now_ms
    }

    fn schedule(&self, due_ms: u64) {
        if due_ms < self.next_due_ms.get() {
            self.next_due_ms.set(due_ms);
            if let Some(waker) = self.sleeper.borrow_mut().take() {
                waker.wake();
            }
        }
    }
}

/// Sleeps until the sleep ends (false) or an earlier due time than `until_ms` is scheduled (true).
struct UntilEarlier<'a, S> {
    delayed: &'a Delayed,
    until_ms: u64,
    sleep: Pin<&'a mut S>,
}

impl<S: Future<Output = ()>> Future for UntilEarlier<'_, S> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<bool> {
        if self.delayed.next_due_ms.get() < self.until_ms {
            return Poll::Ready(true);
        }
        *self.delayed.sleeper.borrow_mut() = Some(context.waker().clone());
        self.sleep.as_mut().poll(context).map(|()| false)
    }
}

/// Routes held messages when they are due, until shutdown.
pub async fn delayed_loop(shard: Rc<Shard>) {
    let delayed = &shard.delayed;
    while !shard.shutdown_requested() {
        let now_ms = clock::now_ms();
        let due_ms = delayed.next_due_ms.get();
        if due_ms > now_ms {
            let wait_ms = (due_ms - now_ms).min(DELAYED_IDLE_CHECK_MS);
            let sleep = pin!(monoio::time::sleep(Duration::from_millis(wait_ms)));
            UntilEarlier { delayed, until_ms: due_ms, sleep }.await;
            delayed.sleeper.borrow_mut().take();
            continue;
        }
        delayed.next_due_ms.set(u64::MAX);
        let next_ms = shard.route_due(now_ms);
        delayed.schedule(next_ms);
        shard.write_store();
        let _ = shard.flush_outboxes();
        shard.flush_wakes();
        if next_ms <= now_ms {
            // More due than one batch: let the connections run between batches.
            shard.fair.yield_now().await;
        }
    }
}

impl Shard {
    /// Called every mailbox-loop turn: routes what is due. A busy shard's runtime may not fire
    /// timers for a long time (monoio checks them only when it runs out of ready tasks), so
    /// the timer task alone would leave due messages held while the shard is saturated.
    /// Once shutdown began, nothing more is handed over: what comes due then is routed after
    /// the next start, instead of being cut short by the stop.
    pub(super) fn route_due_in_turn(&self) {
        let due_ms = self.delayed.next_due_ms.get();
        if due_ms == u64::MAX || self.shutdown_requested() {
            return;
        }
        let now_ms = clock::now_ms();
        if due_ms > now_ms {
            return;
        }
        self.delayed.next_due_ms.set(u64::MAX);
        let next_ms = self.route_due(now_ms);
        self.delayed.schedule(next_ms);
    }

    /// The pseudo-publisher of hand-over copies: their confirms come back to this shard.
    fn handover_holder(&self) -> Holder {
        Holder { conn: ConnId { shard: self.id as u16, local: HANDOVER_CONNECTION }, channel: 0, incarnation: 0 }
    }

    /// Holds a published message for `delay_ms` (the exchange's owner shard). Answers the
    /// publisher: confirmed once held (a stored message after its fsync); refused (basic.nack)
    /// past the shard's bounds or when the store cannot take it.
    pub(super) fn hold_delayed(&self, vhost: &str, exchange: &Exchange, publish: &OwnerPublish, delay_ms: u64) {
        let message = &publish.message;
        let confirm =
            publish.publish_sequence.map(|publish_sequence| ConfirmTo { holder: publish.publisher, publish_sequence });
        let stored = exchange.durable && message.persistent();
        let (full, sequence) = {
            let mut index = self.delayed.index.borrow_mut();
            let memory_full = !stored && index.memory_bytes + message.body_bytes() > DELAYED_MEMORY_BYTES_MAX;
            let sequence = index.next_sequence;
            index.next_sequence += 1;
            (index.held.len() >= DELAYED_PENDING_MAX || memory_full, sequence)
        };
        // The publisher's confirm waits for one more answer: the hold below.
        self.tell_routed(publish, 1);
        if full {
            crate::warn!(
                "shard {}: too many delayed messages held; a publish to '{}' is refused",
                self.id,
                exchange.name
            );
            return self.answer_confirm(confirm, false);
        }
        let due_ms = clock::now_ms().saturating_add(delay_ms);
        let held = if stored {
            let queue_sequence = pending_queue_sequence(self.id);
            let exchange_field = stored_exchange_field(vhost, &message.exchange);
            let record = MessageRecord {
                queue_sequence,
                sequence,
                expires_at_unix_ms: clock::unix_ms().saturating_add(delay_ms).max(1),
                priority: 0,
                exchange: &exchange_field,
                routing_key: &message.routing_key,
                properties: &message.properties,
                body: &message.body,
            };
            match self.with_store(|store| store.append(&record)) {
                Some(Ok(reference)) => {
                    if let Some(confirm) = confirm {
                        self.with_store(|store| store.confirm_after_sync(confirm));
                    }
                    Held::Stored { reference, queue_sequence, sequence, handed_over: Box::default() }
                }
                Some(Err(_)) | None => return self.answer_confirm(confirm, false),
            }
        } else {
            self.answer_confirm(confirm, true);
            self.delayed.index.borrow_mut().memory_bytes += message.body_bytes();
            Held::Memory { vhost: Arc::from(vhost), message: message.clone() }
        };
        self.delayed.index.borrow_mut().held.insert((due_ms, sequence), held);
        self.delayed.schedule(due_ms);
    }

    fn tell_routed(&self, publish: &OwnerPublish, destinations: u32) {
        if publish.publish_sequence.is_some() {
            let answer = OwnerRouted {
                publisher: publish.publisher,
                publish_sequence: publish.publish_sequence,
                destinations,
                returned: None,
            };
            self.send(publish.publisher.conn.shard(), ShardMsg::OwnerRouted(Box::new(answer)));
        }
    }

    fn answer_confirm(&self, confirm: Option<ConfirmTo>, ok: bool) {
        if let Some(confirm) = confirm {
            self.send(confirm.holder.conn.shard(), ShardMsg::Confirmed { confirm, ok });
        }
    }

    /// Routes the held messages due at `now_ms`, at most `DELAYED_ROUTE_BATCH`; returns the
    /// next due time (u64::MAX: none).
    fn route_due(&self, now_ms: u64) -> u64 {
        for _ in 0..DELAYED_ROUTE_BATCH {
            let due = {
                let mut index = self.delayed.index.borrow_mut();
                match index.held.first_key_value() {
                    Some((&(due_ms, _), _)) if due_ms <= now_ms => index.held.pop_first(),
                    _ => None,
                }
            };
            let Some(((_, local_sequence), held)) = due else { break };
            self.route_held(local_sequence, held);
        }
        self.delayed.index.borrow().held.first_key_value().map_or(u64::MAX, |(&(due_ms, _), _)| due_ms)
    }

    /// Routes one due message with the current definitions; a message whose exchange was
    /// deleted is dropped, as the plugin drops it.
    fn route_held(&self, local_sequence: u64, held: Held) {
        let (vhost, message) = match &held {
            Held::Memory { vhost, message } => {
                let mut index = self.delayed.index.borrow_mut();
                index.memory_bytes = index.memory_bytes.saturating_sub(message.body_bytes());
                (vhost.to_string(), message.clone())
            }
            Held::Stored { reference, .. } => match self.read_held(reference) {
                Some(found) => found,
                None => {
                    crate::error!("shard {}: a held delayed message is unreadable; dropped", self.id);
                    return self.release_held(held);
                }
            },
        };
        let snapshot = self.snapshot();
        let mut routes = Vec::new();
        if let Some(vhost) = snapshot.vhost(&vhost) {
            let exchange = std::str::from_utf8(&message.exchange).ok().and_then(|name| vhost.exchanges.get(name));
            if let Some(exchange) = exchange {
                let properties = message.properties.clone();
                let mut parse = || hotpath::parse_properties(&properties).ok();
                vhost.route_with_alternates(exchange, &message.routing_key, &mut parse, &mut routes);
            }
        }
        let publisher = self.handover_holder();
        let Held::Stored { reference, queue_sequence, sequence, handed_over } = held else {
            for queue in routes {
                let publish = ShardMsg::Publish { queue, message: message.clone(), publisher, publish_sequence: None };
                self.send(queue.owner(), publish);
            }
            return;
        };
        // After a crash, the queues that hold a copy already get none again.
        lacking_copies(&mut routes, &handed_over);
        let proofs = proof_segments(handed_over);
        if routes.is_empty() {
            return self.mark_removed(&reference, queue_sequence, sequence, proofs);
        }
        let remaining = u32::try_from(routes.len()).unwrap_or(u32::MAX);
        let handover = Handover { remaining, reference, queue_sequence, sequence, proofs };
        self.delayed.index.borrow_mut().handovers.insert(local_sequence, handover);
        let held = StoredId { queue_sequence, sequence };
        for queue in routes {
            let copy =
                HandoverCopy { queue, message: message.clone(), publisher, publish_sequence: local_sequence, held };
            self.send(queue.owner(), ShardMsg::Handover(Box::new(copy)));
        }
    }

    /// A stored held message, read back with its real exchange name.
    fn read_held(&self, reference: &StoredRef) -> Option<(String, Arc<Message>)> {
        let stored = self.with_store(|store| store.read(reference)).flatten()?;
        let (vhost, exchange) = split_stored_exchange(&stored.exchange)?;
        let message = Message {
            exchange,
            routing_key: stored.routing_key.clone(),
            properties: stored.properties.clone(),
            body: stored.body.clone(),
        };
        Some((vhost, Arc::new(message)))
    }

    /// A held message is gone for good: a stored one is marked removed.
    fn release_held(&self, held: Held) {
        if let Held::Stored { reference, queue_sequence, sequence, handed_over } = held {
            self.mark_removed(&reference, queue_sequence, sequence, proof_segments(handed_over));
        }
    }

    /// Marks a held message removed (no fsync, as every mark); the segments of the proofs of
    /// its copies may go once the mark is written, not before.
    fn mark_removed(&self, reference: &StoredRef, queue_sequence: u64, sequence: u64, proofs: Vec<Arc<Segment>>) {
        // The record may be in a former shard's directory (the broker runs fewer shards now):
        // the store files each mark under the segment it names, whichever directory it is in.
        self.with_store(|store| {
            store.mark(reference, queue_sequence, sequence, Mark::Removed);
            store.release_after_marks(proofs);
        });
    }

    /// A destination queue confirmed (or refused) a hand-over copy. A refusal (a queue at its
    /// reject-publish limit) counts as handed over, as a refused publish is not retried.
    pub(super) fn handover_confirmed(&self, local_sequence: u64, ok: bool) {
        let done = {
            let mut index = self.delayed.index.borrow_mut();
            let Some(handover) = index.handovers.get_mut(&local_sequence) else { return };
            handover.remaining = handover.remaining.saturating_sub(1);
            if !ok {
                crate::warn!("shard {}: a queue refused a delayed message when it was due", self.id);
            }
            if handover.remaining > 0 {
                return;
            }
            index.handovers.remove(&local_sequence)
        };
        if let Some(Handover { reference, queue_sequence, sequence, proofs, .. }) = done {
            self.mark_removed(&reference, queue_sequence, sequence, proofs);
        }
    }

    /// A queue's shard stored a hand-over copy (not yet synced): it tells the holder which
    /// segment holds the copy's proof, ahead of the copy's confirm (same mailbox, in order).
    pub(super) fn tell_handover_stored(
        &self,
        publisher: Holder,
        publish_sequence: Option<u64>,
        segment: &Arc<Segment>,
    ) {
        if let Some(publish_sequence) = publish_sequence {
            let confirm = ConfirmTo { holder: publisher, publish_sequence };
            self.send(publisher.conn.shard(), ShardMsg::HandoverStored { confirm, segment: segment.clone() });
        }
    }

    /// The holder keeps a copy's proof on disk until the held message's removal mark is
    /// written: a crash before that must find the proof, or the message would go twice.
    pub(super) fn keep_handover_proof(&self, local_sequence: u64, segment: Arc<Segment>) {
        if let Some(handover) = self.delayed.index.borrow_mut().handovers.get_mut(&local_sequence) {
            handover.proofs.push(segment);
        }
    }

    /// After a restart: the held messages recovered from a shard directory, under its reserved
    /// queue sequence, become due at their stored time (at once when it has passed).
    pub fn restore_delayed(&self, queue_sequence: u64, mut recovered: RecoveredQueue) {
        let mut index = self.delayed.index.borrow_mut();
        index.next_sequence = index.next_sequence.max(recovered.next_sequence);
        let mut entries = Vec::new();
        while let Some(entry) = recovered.ready.pop_front(self, queue_sequence) {
            entries.push(entry);
        }
        entries.append(&mut recovered.prioritized);
        let mut earliest = u64::MAX;
        for entry in entries {
            let Some(reference) = entry.payload.stored().cloned() else { continue };
            let due_ms = entry.expires_at_ms.unwrap_or(0);
            earliest = earliest.min(due_ms);
            let local_sequence = index.next_sequence;
            index.next_sequence += 1;
            let handed_over = recovered.handed_over.remove(&entry.sequence).unwrap_or_default().into_boxed_slice();
            let held = Held::Stored { reference, queue_sequence, sequence: entry.sequence, handed_over };
            index.held.insert((due_ms, local_sequence), held);
        }
        drop(index);
        self.delayed.schedule(earliest);
    }
}

/// The segments holding the proofs of a held message's earlier copies.
fn proof_segments(handed_over: Box<[HandedOver]>) -> Vec<Arc<Segment>> {
    handed_over.into_vec().into_iter().map(|copy| copy.segment).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_behind_once_its_earliest_held_message_is_late_by_more_than_the_bound() {
        let delayed = Delayed::default();
        assert!(!delayed.behind(u64::MAX - 1), "nothing held is never behind");
        delayed.schedule(1_000);
        assert!(!delayed.behind(1_000 + DELAYED_BEHIND_MS), "late by exactly the bound");
        assert!(delayed.behind(1_001 + DELAYED_BEHIND_MS));
        delayed.schedule(5_000);
        assert!(delayed.behind(1_001 + DELAYED_BEHIND_MS), "a later due time changes nothing");
    }
}
