//! A shard: one thread, one monoio runtime, its connections, the queues it owns, and its side
//! of the mailboxes.
//!
//! All shard state is `Rc`/`RefCell`, touched only by this thread; other shards reach it only
//! through messages. The mailbox loop (`run_mailbox_loop`) handles every message, including
//! messages a shard sends itself (kept in `local`), so every path through the broker is the
//! same whether the parties share a shard or not. No `RefCell` borrow is held across `.await`.

pub(crate) mod ack_timeout;
pub(crate) mod balance;
pub(crate) mod commit;
pub(crate) mod compaction;
mod control;
#[cfg(test)]
mod conversation;
mod counts;
pub(crate) mod delayed;
pub(crate) mod expiry;
pub(crate) mod fair;
pub(crate) mod handover;
pub(crate) mod listener;
pub(crate) mod mailbox;
mod owned_exchanges;
pub(crate) mod pressure;
mod queues;
mod reader;
mod requests;
pub(crate) mod socket;
mod streams;
pub(crate) mod tls;
mod writer;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::alarms::Alarms;
use crate::amqp::admission::{ConnectionLimits, ConnectionSlots};
use crate::amqp::connection::Connection;
use crate::amqp::deliveries::DeliverOutcome;
use crate::broker::definitions::Definitions;
use crate::broker::error::{AmqpError, NOT_FOUND};
use crate::broker::messages::{ConfirmTo, ShardMsg};
use crate::broker::queue::{Effect, Queue};
use crate::broker::requests::ReplyBody;
use crate::broker::snapshot::Snapshot;
use crate::config::Config;
use crate::ids::Holder;
use crate::limits::{MAILBOX_BATCH, OUTBOX_HIGH_MESSAGES, PAGED_UNSYNCED_BYTES_MAX, SHUTDOWN_DRAIN_MS};
use crate::shard::commit::SyncSignal;
use crate::store::definitions_log::DefinitionsLog;
use crate::store::Store;
pub use counts::{ConnectionCounts, WorkCounts};
use mailbox::Mailboxes;
pub use requests::PendingReply;

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Arc<Config>,
    mailboxes: Arc<Mailboxes>,
    local: RefCell<VecDeque<ShardMsg>>,
    outbox: RefCell<Vec<VecDeque<ShardMsg>>>,
    /// Bit i set: a message was pushed to shard i's mailbox and shard i was not yet woken
    /// for it. The wake-ups wait for the end of this shard's turn (`flush_wakes`), so a
    /// batch of messages costs one wake-up, not one each.
    wakes_pending: Cell<u64>,
    snapshot: RefCell<Arc<Snapshot>>,
    /// Present on shard 0 only: the single writer of definitions.
    writer: Option<RefCell<Definitions>>,
    queues: RefCell<FxHashMap<crate::ids::QueueId, Queue>>,
    /// State of the exchanges that this shard routes for every shard (`owned_exchanges.rs`).
    owned_exchanges: RefCell<owned_exchanges::OwnedExchanges>,
    /// Messages held by delayed exchanges, and their timer (`delayed.rs`).
    pub delayed: delayed::Delayed,
    /// Highest queue sequence created on this shard: an unknown id above it is a queue whose
    /// creation message has not been read yet; at or below it, a deleted queue.
    highest_created_queue: Cell<u64>,
    pub connections: RefCell<FxHashMap<u64, Rc<Connection>>>,
    /// Connections with confirms or credit to flush at the end of the loop turn.
    dirty_connections: RefCell<Vec<Rc<Connection>>>,
    pending: RefCell<FxHashMap<u64, Rc<PendingReply>>>,
    next_request: Cell<u64>,
    next_connection: Cell<u64>,
    effects: RefCell<Vec<Effect>>,
    /// This shard's message log (None when the data directory could not be used).
    store: RefCell<Option<Store>>,
    /// Streams appended to since the last group commit (`streams.rs`), each once.
    dirty_streams: RefCell<Vec<crate::ids::QueueId>>,
    pub sync_signal: SyncSignal,
    /// Shard 0 only: where durable definitions are written before they are answered.
    definitions_log: Option<RefCell<DefinitionsLog>>,
    pub alarms: Arc<Alarms>,
    /// When the consumer-timeout check runs next (`ack_timeout`).
    pub ack_deadlines: ack_timeout::AckDeadlines,
    /// What handshakes on this shard apply: `--channel-max`, and `--max-connections` through
    /// slots shared with the other shards (`sharing_connection_slots`).
    pub connection_limits: ConnectionLimits,
    /// Connections opened and closed on this shard (a scrape's counters).
    pub connection_counts: ConnectionCounts,
    /// Loop turns and compaction work (a scrape's counters).
    pub work_counts: WorkCounts,
    /// Whether a deep queue delivers here, and whether this shard's thread is busy (`pressure`).
    pressure: pressure::Pressure,
    /// Sockets other shards handed to this one, served after the turn (`balance`).
    adopted: RefCell<Vec<crate::broker::messages::AdoptedSocket>>,
    /// The yield to the back of the run queue, and on epoll the readers' turns (`fair`).
    pub fair: fair::FairTurns,
}

impl Shard {
    /// `writer` is given to shard 0 only; every shard starts from the same `initial` snapshot.
    pub fn new(
        id: usize,
        config: Arc<Config>,
        mailboxes: Arc<Mailboxes>,
        initial: Arc<Snapshot>,
        writer: Option<(Definitions, Option<DefinitionsLog>)>,
        store: Option<Store>,
        alarms: Arc<Alarms>,
    ) -> Shard {
        let count = mailboxes.shards();
        let (writer, definitions_log) = match writer {
            Some((definitions, log)) => (Some(RefCell::new(definitions)), log.map(RefCell::new)),
            None => (None, None),
        };
        let snapshot = initial;
        Shard {
            id,
            count,
            mailboxes,
            local: RefCell::new(VecDeque::new()),
            outbox: RefCell::new((0..count).map(|_| VecDeque::new()).collect()),
            wakes_pending: Cell::new(0),
            snapshot: RefCell::new(snapshot),
            writer,
            queues: RefCell::new(FxHashMap::default()),
            owned_exchanges: RefCell::default(),
            delayed: delayed::Delayed::default(),
            highest_created_queue: Cell::new(0),
            connections: RefCell::new(FxHashMap::default()),
            dirty_connections: RefCell::new(Vec::new()),
            pending: RefCell::new(FxHashMap::default()),
            next_request: Cell::new(1),
            next_connection: Cell::new(1),
            effects: RefCell::new(Vec::new()),
            store: RefCell::new(store),
            dirty_streams: RefCell::new(Vec::new()),
            sync_signal: SyncSignal::default(),
            definitions_log,
            connection_limits: ConnectionLimits {
                channel_max: config.channel_max,
                slots: Arc::new(ConnectionSlots::new(config.max_connections)),
            },
            alarms,
            ack_deadlines: ack_timeout::AckDeadlines::default(),
            connection_counts: ConnectionCounts::default(),
            work_counts: WorkCounts::default(),
            pressure: pressure::Pressure::default(),
            adopted: RefCell::new(Vec::new()),
            fair: fair::FairTurns::default(),
            config,
        }
    }

    /// Counts this shard's connections against `slots`, the node's connection limit that
    /// every shard shares (`Shard::new` gives a shard slots of its own).
    pub fn sharing_connection_slots(mut self, slots: Arc<ConnectionSlots>) -> Shard {
        self.connection_limits.slots = slots;
        self
    }

    /// Runs `operation` on this shard's store; None if it has none.
    pub fn with_store<T>(&self, operation: impl FnOnce(&mut Store) -> T) -> Option<T> {
        self.store.borrow_mut().as_mut().map(operation)
    }

    /// Sends the confirms a sync covered (or nacks, if it failed) to their channels.
    pub fn release_confirms(&self, confirms: Vec<ConfirmTo>, ok: bool) {
        let mut confirms = confirms.into_iter().peekable();
        while let Some(first) = confirms.next() {
            let holder = first.holder;
            let mut sequences = vec![first.publish_sequence];
            while let Some(next) = confirms.next_if(|next| next.holder == holder) {
                sequences.push(next.publish_sequence);
            }
            self.send(holder.conn.shard(), ShardMsg::ConfirmedMany { holder, sequences, ok });
        }
        let _ = self.flush_outboxes();
        // The commit task releases outside the loop's turn: a parked publisher's shard is
        // woken now, not when this shard's loop next turns.
        self.flush_wakes();
    }

    /// Confirms (or nacks) reach the publishing channel, or the delayed exchange's hand-over
    /// when it published the copies.
    fn confirmed(&self, holder: Holder, publish_sequences: &[u64], ok: bool) {
        if holder.conn.local == delayed::HANDOVER_CONNECTION {
            for &publish_sequence in publish_sequences {
                self.handover_confirmed(publish_sequence, ok);
            }
            return;
        }
        let connection = self.connections.borrow().get(&holder.conn.local).cloned();
        if let Some(connection) = connection {
            connection.confirmed(holder, publish_sequences, ok);
            self.mark_dirty(&connection);
        }
    }

    /// Writes what the store gathered this turn and wakes the commit task if a sync is due.
    pub(crate) fn write_store(&self) {
        let outcome = self.with_store(|store| store.write_pending());
        self.note_backlog();
        match outcome {
            Some(Ok(true)) => self.sync_signal.request(),
            Some(Err(_)) => {
                // Poisoned: whatever waited for this write is refused.
                let batch = self.with_store(|store| {
                    let batch = store.take_sync_batch();
                    store.sync_finished();
                    store.keep(batch.retired.into_iter().map(|(segment, _)| segment));
                    batch.confirms
                });
                if let Some(confirms) = batch {
                    self.release_confirms(confirms, false);
                }
            }
            _ => {}
        }
    }

    /// Tells the publishers of every shard whether this one is backlogged: its paged-out
    /// writes run ahead of its disk (`limits::PAGED_UNSYNCED_BYTES_MAX`), or its held delayed
    /// messages go out late (`limits::DELAYED_BEHIND_MS`). Either holds
    /// the connections that publish here (`socket::wait_for_backlog`).
    pub(crate) fn note_backlog(&self) {
        let outstanding = self.with_store(|store| store.paged_outstanding_bytes()).unwrap_or(0);
        let behind = self.delayed.behind(crate::clock::now_ms());
        self.mailboxes.set_backlogged(self.id, outstanding > PAGED_UNSYNCED_BYTES_MAX || behind);
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn version(&self) -> u64 {
        self.snapshot.borrow().version
    }

    pub fn next_connection_id(&self) -> u64 {
        let id = self.next_connection.get();
        self.next_connection.set(id + 1);
        id
    }

    pub fn shutdown_requested(&self) -> bool {
        self.mailboxes.shutdown_requested()
    }

    /// Sends a message to a shard (this one included) without blocking. A full mailbox spills
    /// into this shard's outbox, flushed in order every loop turn; connections stop reading
    /// their sockets while the outbox is congested.
    pub fn send(&self, to: usize, message: ShardMsg) {
        if to == self.id {
            self.local.borrow_mut().push_back(message);
            self.mailboxes.wake_own_loop(self.id);
            return;
        }
        let mut outbox = self.outbox.borrow_mut();
        let spill = &mut outbox[to];
        if spill.is_empty() {
            match self.mailboxes.push(self.id, to, message) {
                Ok(()) => {
                    drop(outbox);
                    self.defer_wake(to);
                    return;
                }
                Err(message) => spill.push_back(message),
            }
        } else {
            spill.push_back(message);
        }
        drop(outbox);
        self.mailboxes.wake_own_loop(self.id);
    }

    /// Shard `to` has new mail: it is woken when this shard's current task yields and the
    /// mailbox loop turns (the first deferred wake-up of a turn makes sure the loop runs).
    fn defer_wake(&self, to: usize) {
        let before = self.wakes_pending.get();
        self.wakes_pending.set(before | 1 << to);
        if before == 0 {
            self.mailboxes.wake_own_loop(self.id);
        }
    }

    /// Wakes the shards this one sent mail to since the last flush.
    fn flush_wakes(&self) {
        let mut pending = self.wakes_pending.take();
        while pending != 0 {
            let to = pending.trailing_zeros() as usize;
            pending &= pending - 1;
            self.mailboxes.wake_if_parked(to);
        }
    }

    fn flush_outboxes(&self) -> bool {
        let mut outbox = self.outbox.borrow_mut();
        let mut pending = false;
        for (to, spill) in outbox.iter_mut().enumerate() {
            while let Some(message) = spill.pop_front() {
                if let Err(message) = self.mailboxes.try_send(self.id, to, message) {
                    spill.push_front(message);
                    pending = true;
                    break;
                }
            }
        }
        pending
    }

    pub fn outbox_congested(&self) -> bool {
        self.outbox.borrow().iter().any(|spill| spill.len() > OUTBOX_HIGH_MESSAGES)
    }

    pub fn mark_dirty(&self, connection: &Rc<Connection>) {
        if !connection.dirty.replace(true) {
            self.dirty_connections.borrow_mut().push(connection.clone());
        }
    }

    /// Handles mail until shutdown. One turn drains up to `MAILBOX_BATCH` messages from each
    /// mailbox, flushes outboxes and connections, then yields or parks.
    pub async fn run_mailbox_loop(self: Rc<Self>) {
        loop {
            let (handled, spilled) = self.turn();
            balance::serve_adopted(&self);
            self.work_counts.loop_turns.set(self.work_counts.loop_turns.get() + 1);
            if self.shutdown_requested() {
                return;
            }
            if handled > 0 {
                self.fair.yield_now().await;
            } else if spilled {
                monoio::time::sleep(Duration::from_micros(50)).await;
            } else {
                let local = || {
                    !self.local.borrow().is_empty()
                        || self.outbox.borrow().iter().any(|s| !s.is_empty())
                        || self.wakes_pending.get() != 0
                };
                if self.pressure.is_deep() {
                    // The flag falls within a window of the deep queue stopping.
                    let window = Duration::from_millis(crate::limits::PRESSURE_WINDOW_MS);
                    self.mailboxes.park(self.id, &local).at_most(window).await;
                } else {
                    self.mailboxes.park(self.id, &local).await;
                }
            }
        }
    }

    /// At shutdown, once this shard's connections are closed: handles the mail still on its way
    /// (the acks and requeues other shards' connections sent before they closed, whose marks
    /// must reach the store before the final commit) until every shard has closed its
    /// connections and every mailbox stayed empty for a few turns; at most
    /// `SHUTDOWN_DRAIN_MS`.
    pub async fn drain_at_shutdown(&self) {
        self.mailboxes.note_connections_closed();
        let deadline = std::time::Instant::now() + Duration::from_millis(SHUTDOWN_DRAIN_MS);
        let mut quiet_turns = 0;
        while std::time::Instant::now() < deadline {
            let (handled, spilled) = self.turn();
            let quiet = handled == 0 && !spilled && self.mailboxes.quiet();
            quiet_turns = if quiet { quiet_turns + 1 } else { 0 };
            if quiet_turns >= 3 {
                return;
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        crate::warn!("shard {}: stopping while other shards still send mail", self.id);
    }

    /// One turn of the mailbox loop without its waits: handles what is in the mailboxes, writes
    /// what the store gathered, flushes the outboxes and the connections' confirms. Returns the
    /// messages handled and whether an outbox still holds messages a full mailbox refused.
    pub(crate) fn turn(&self) -> (usize, bool) {
        let handled = self.drain_once();
        self.route_due_in_turn();
        self.write_store();
        let spilled = self.flush_outboxes();
        self.flush_dirty_connections();
        self.flush_wakes();
        let pressure = self.pressure.evaluate(crate::clock::now_ns(), crate::clock::thread_cpu_ns);
        self.mailboxes.set_pressure(self.id, pressure);
        (handled, spilled)
    }

    fn drain_once(&self) -> usize {
        let mut handled = 0;
        for _ in 0..MAILBOX_BATCH {
            let message = self.local.borrow_mut().pop_front();
            let Some(message) = message else { break };
            self.handle(message);
            handled += 1;
        }
        while let Some(control) = self.mailboxes.pop_control(self.id) {
            self.handle_control(control);
            handled += 1;
        }
        for from in 0..self.count {
            if from == self.id {
                continue;
            }
            for _ in 0..MAILBOX_BATCH {
                let Some(message) = self.mailboxes.pop(from, self.id) else {
                    break;
                };
                self.handle(message);
                handled += 1;
            }
        }
        handled
    }

    fn flush_dirty_connections(&self) {
        let dirty = std::mem::take(&mut *self.dirty_connections.borrow_mut());
        for connection in dirty {
            connection.dirty.set(false);
            connection.flush_confirms();
        }
    }

    /// Reads the writer's mailbox until this shard's definitions reach `version` (a reply or
    /// a message from another shard depends on them). Messages from shard 0 are handled in
    /// order, exactly as the loop would have.
    pub fn catch_up(&self, version: u64) {
        while self.version() < version {
            let Some(message) = self.pop_writer_mail() else { return };
            self.handle(message);
        }
    }

    /// Applies the definitions the writer has announced and this shard has not handled yet. A
    /// client answered a declare or a bind on one connection may publish on another at once;
    /// the publish, read after the answer left, must route by them, as it would on RabbitMQ.
    /// If the writer's mail waits in its outbox (a full mailbox), the loop applies it later.
    pub(crate) fn catch_up_announced(&self) {
        let announced = self.mailboxes.announced_definitions();
        if announced > self.version() {
            self.catch_up(announced);
        }
    }

    /// Handles every message already waiting from shard 0 (the writer).
    fn drain_writer_mail(&self) {
        while let Some(message) = self.pop_writer_mail() {
            self.handle(message);
        }
    }

    /// The next message from the writer: shard 0's own messages to itself are in `local`.
    fn pop_writer_mail(&self) -> Option<ShardMsg> {
        if self.id == 0 {
            self.local.borrow_mut().pop_front()
        } else {
            self.mailboxes.pop(0, self.id)
        }
    }

    fn handle(&self, message: ShardMsg) {
        match message {
            ShardMsg::Definitions(snapshot) => {
                if snapshot.version > self.version() {
                    let policy_epoch = self.snapshot.borrow().policy_epoch;
                    *self.snapshot.borrow_mut() = snapshot;
                    self.close_orphaned_connections();
                    self.apply_new_policies(policy_epoch);
                }
            }
            ShardMsg::Admin { request, reply } => self.handle_admin(*request, reply),
            ShardMsg::QueueDeleted { vhost, queue, reply, answer } => {
                self.handle_queue_deleted(&vhost, queue, reply, *answer)
            }
            ShardMsg::AutoDelete { vhost, name, queue } => self.handle_auto_delete(&vhost, &name, queue),
            ShardMsg::ConnectionGone { conn } => self.handle_connection_gone(conn),
            ShardMsg::Adopt(socket) => self.adopted.borrow_mut().push(*socket),
            ShardMsg::Reply { reply, version, result } => {
                self.catch_up(version);
                self.complete_request(reply.request_id, result);
            }
            ShardMsg::Deliver(delivery) => self.deliver(delivery),
            ShardMsg::OwnerPublish(publish) => self.owner_publish(*publish),
            ShardMsg::OwnerRouted(routed) => self.owner_routed(&routed),
            ShardMsg::HandoverStored { confirm, segment } => {
                self.keep_handover_proof(confirm.publish_sequence, segment)
            }
            ShardMsg::Confirmed { confirm, ok } => self.confirmed(confirm.holder, &[confirm.publish_sequence], ok),
            ShardMsg::ConfirmedMany { holder, sequences, ok } => self.confirmed(holder, &sequences, ok),
            ShardMsg::ConsumerCancelled { holder, consumer_tag } => {
                let connection = self.connections.borrow().get(&holder.conn.local).cloned();
                if let Some(connection) = connection {
                    connection.consumer_cancelled(holder, &consumer_tag);
                }
            }
            ShardMsg::PublishRefused { holder, error } => {
                let connection = self.connections.borrow().get(&holder.conn.local).cloned();
                if let Some(connection) = connection {
                    let fault = crate::amqp::dispatch::fault(error, (60, 40));
                    if connection.is_current(holder) {
                        crate::amqp::dispatch::close_channel(self, &connection, holder.channel, fault);
                    }
                }
            }
            ShardMsg::DirectReply { address, message } => {
                let connection = self.connections.borrow().get(&address.holder.conn.local).cloned();
                if let Some(connection) = connection {
                    connection.deliver_reply(address, &message);
                }
            }
            ShardMsg::ReplyConsumerExists { address, reply } => {
                let connection = self.connections.borrow().get(&address.holder.conn.local).cloned();
                let result = match connection {
                    Some(connection) if connection.has_reply_consumer(address) => Ok(ReplyBody::Done),
                    _ => Err(AmqpError::new(NOT_FOUND, "no such reply consumer")),
                };
                self.reply(reply, result);
            }
            other => self.handle_queue_message(other),
        }
    }

    fn deliver(&self, delivery: crate::broker::queue::Delivery) {
        let connection = self.connections.borrow().get(&delivery.holder.conn.local).cloned();
        let outcome = match connection {
            Some(connection) => connection.deliver(delivery),
            None => DeliverOutcome::Bounced(delivery),
        };
        let (overdue_at_ms, settle) = outcome.follow_up();
        if let Some(overdue_at_ms) = overdue_at_ms {
            self.ack_deadlines.schedule(overdue_at_ms);
        }
        if let Some((owner, settle)) = settle {
            self.send(owner, settle);
        }
    }
}

impl crate::amqp::port::Port for Shard {
    fn shard_count(&self) -> usize {
        self.count
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Shard::snapshot(self)
    }

    fn snapshot_version(&self) -> u64 {
        Shard::version(self)
    }

    fn send(&self, to: usize, message: ShardMsg) {
        Shard::send(self, to, message);
    }

    fn wake_now(&self) {
        self.flush_wakes();
    }

    fn request_with_hook(
        &self,
        to: usize,
        make: impl FnOnce(crate::broker::messages::ReplyTo) -> ShardMsg,
        hook: Option<crate::amqp::port::ReplyHook>,
    ) -> impl Future<Output = Result<ReplyBody, AmqpError>> {
        Shard::request_with_hook(self, to, make, hook)
    }

    fn consumer_timeout_ms(&self) -> Option<u64> {
        self.config.consumer_timeout_ms
    }

    fn max_message_size_bytes(&self) -> u64 {
        u64::from(self.config.max_message_size)
    }

    fn schedule_ack_deadline(&self, overdue_at_ms: u64) {
        self.ack_deadlines.schedule(overdue_at_ms);
    }
}
