//! Per-channel state on the connection's shard: delivery tags, unacked deliveries (with the
//! time and consumer timeout of each), consumers, prefetch, publisher confirms, transactions,
//! and the publish being assembled from frames.
//!
//! Plain bookkeeping without I/O; the dispatcher, the connection's delivery path and the
//! shard's consumer-timeout check use it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::consumers::Consumers;
use super::direct_reply::ReplyConsumer;
use super::unacked::UnackedDeliveries;
use crate::broker::error::{AmqpError, PRECONDITION_FAILED};
use crate::broker::queue::Delivery;
use crate::clock;
use crate::codec::hotpath::{Ack, ContentHeader, Publish};
use crate::codec::message::Message;
use crate::ids::{ConsumerKey, QueueId};
use crate::limits::{BODY_GROWTH_FACTOR, TX_PENDING_MAX};

#[derive(Clone, Copy, Debug)]
pub struct UnackedDelivery {
    pub queue: QueueId,
    pub sequence: u64,
    /// When it was delivered (`clock::coarse_now_ms`); 0 when no timeout applies.
    pub delivered_at_ms: u64,
    /// The consumer timeout that applies to it; None: it may stay unacked forever.
    pub timeout_ms: Option<u64>,
    /// A consumer's delivery, counted by the channel's prefetch limit (`ChannelLimit`);
    /// basic.get's are not, as in RabbitMQ.
    pub limited: bool,
}

impl UnackedDelivery {
    /// A delivery made now; the clock is read only when a timeout applies.
    pub fn new(queue: QueueId, sequence: u64, timeout_ms: Option<u64>) -> UnackedDelivery {
        let delivered_at_ms = if timeout_ms.is_some() { clock::coarse_now_ms() } else { 0 };
        UnackedDelivery { queue, sequence, delivered_at_ms, timeout_ms, limited: false }
    }

    /// The first instant (`clock::coarse_now_ms`) at which it has been unacked for longer than
    /// its timeout, RabbitMQ's comparison; None without a timeout.
    pub fn overdue_at_ms(&self) -> Option<u64> {
        self.timeout_ms.map(|timeout_ms| self.delivered_at_ms.saturating_add(timeout_ms).saturating_add(1))
    }
}

/// basic.qos with global=true: one limit on the unacknowledged consumer deliveries of the
/// whole channel, shared by its consumers whatever shard their queues live on.
///
/// Each queue holds a consumer of such a channel to at most the limit (so a queue never hands
/// this channel more than it could take), and the channel writes a delivery only while its
/// written, unsettled consumer deliveries are under the limit; the others wait here, in
/// arrival order, until an ack, nack, reject or recover makes room. No-ack consumers and
/// basic.get are outside the limit, as in RabbitMQ.
#[derive(Debug, Default)]
pub struct ChannelLimit {
    /// 0: no limit.
    pub prefetch: u32,
    /// Consumer deliveries in acknowledged mode written to the client and not settled.
    pub unacked: u32,
    /// Deliveries from the queues that wait for room.
    pub held: VecDeque<Delivery>,
}

impl ChannelLimit {
    /// A delivery left the channel's unacked ones: a consumer's frees room under the limit.
    fn settled(&mut self, unacked: &UnackedDelivery) {
        if unacked.limited {
            debug_assert!(self.unacked > 0, "the channel's limited count went below zero");
            self.unacked = self.unacked.saturating_sub(1);
        }
    }

    pub fn is_full(&self) -> bool {
        self.prefetch != 0 && self.unacked >= self.prefetch
    }

    /// A new delivery in acknowledged mode waits: no room, or earlier ones wait already.
    pub fn must_hold(&self) -> bool {
        self.is_full() || !self.held.is_empty()
    }

    /// The limit a queue applies to one consumer of this channel: the lower of its own and
    /// the channel's (0 is no limit).
    pub fn consumer_prefetch(&self, own: u32) -> u32 {
        match (own, self.prefetch) {
            (0, channel) => channel,
            (own, 0) => own,
            (own, channel) => own.min(channel),
        }
    }

    /// The waiting deliveries of one consumer, taken out (it was cancelled).
    pub fn take_held_of(&mut self, consumer: ConsumerKey) -> Vec<Delivery> {
        let (theirs, others): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.held).into_iter().partition(|delivery| delivery.consumer == consumer);
        self.held = others.into();
        theirs
    }
}

/// The publish whose header and body frames are still arriving.
pub enum Content {
    Idle,
    /// basic.publish is in; then its content header (`None` until it arrives) and its body
    /// frames. Assembled in place: a publish's state is moved once, when it is complete.
    Assembling {
        publish: Publish,
        header: Option<ContentHeader>,
        body: BodyParts,
    },
    /// A body frame went past the header's body size. RabbitMQ's assembler then waits for a
    /// body that can never end (the next method is its 505); the bytes are not kept.
    Overrun,
}

/// A body kept zero-copy while it is one frame; copied once into a buffer if it spans more.
/// The body of a message over the size limit is only counted (`Dropped`): it is refused
/// once complete, and is never held in memory.
pub enum BodyParts {
    Empty,
    One(Bytes),
    Many(BytesMut),
    Dropped { length: u64 },
}

impl BodyParts {
    pub fn len(&self) -> u64 {
        match self {
            BodyParts::Empty => 0,
            BodyParts::One(bytes) => bytes.len() as u64,
            BodyParts::Many(buffer) => buffer.len() as u64,
            BodyParts::Dropped { length } => *length,
        }
    }

    /// Adds a body frame. A body of several frames is copied into one buffer that grows in
    /// steps of `BODY_GROWTH_FACTOR` toward the header's body size: a large message costs a
    /// few allocations, not a doubling series, and the buffer never holds more than that factor
    /// times what the client has actually sent (a header announcing a huge body followed by a
    /// trickle of bytes cannot make the broker allocate the announced size).
    pub fn push(&mut self, part: Bytes, body_size: u64) {
        let body_size = usize::try_from(body_size).unwrap_or(usize::MAX);
        *self = match std::mem::replace(self, BodyParts::Empty) {
            BodyParts::Empty => BodyParts::One(part),
            BodyParts::One(first) => {
                let received = first.len() + part.len();
                let mut buffer =
                    BytesMut::with_capacity(body_size.min(received.saturating_mul(BODY_GROWTH_FACTOR)).max(received));
                buffer.extend_from_slice(&first);
                buffer.extend_from_slice(&part);
                BodyParts::Many(buffer)
            }
            BodyParts::Many(mut buffer) => {
                let received = buffer.len() + part.len();
                if received > buffer.capacity() {
                    let target = body_size.min(received.saturating_mul(BODY_GROWTH_FACTOR)).max(received);
                    buffer.reserve(target - buffer.len());
                }
                buffer.extend_from_slice(&part);
                BodyParts::Many(buffer)
            }
            BodyParts::Dropped { length } => BodyParts::Dropped { length: length + part.len() as u64 },
        }
    }

    pub fn freeze(self) -> Bytes {
        match self {
            BodyParts::Empty => Bytes::new(),
            BodyParts::One(bytes) => bytes,
            BodyParts::Many(buffer) => buffer.freeze(),
            BodyParts::Dropped { .. } => Bytes::new(),
        }
    }
}

/// The destinations a publish routed by its exchange's owner shard counts until the owner says
/// how many queues it reached (`Confirms::routed`): more than any real count, so the queues'
/// confirms, which may arrive first, cannot settle it early.
pub const ROUTED_BY_OWNER: u32 = 1 << 31;

/// Publisher confirms of a channel in confirm mode, answered as RabbitMQ 3.10 answers them:
/// what was settled since the last answer goes out at once, whatever is still outstanding
/// before it; a run below every outstanding (and every opposite) sequence is coalesced into
/// one `multiple` frame, the rest are sent one by one, and a lone ack is never `multiple`.
#[derive(Default)]
pub struct Confirms {
    next_sequence: u64,
    /// Destination queues that have not confirmed yet, per publish sequence from
    /// `first_outstanding` on (0: settled); the front is always outstanding. A ring rather than
    /// a map: sequences start in order and mostly settle in order, so each start and settle is
    /// a push, a store and a pop.
    outstanding: VecDeque<u32>,
    first_outstanding: u64,
    /// Settled since the last answer: to be acked, and to be nacked (a queue could not take
    /// the message).
    acked: Vec<u64>,
    nacked: Vec<u64>,
}

/// What the broker tells a confirm-mode publisher.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfirmAnswer {
    Ack { delivery_tag: u64, multiple: bool },
    Nack { delivery_tag: u64, multiple: bool },
}

impl Confirms {
    pub fn new() -> Confirms {
        Confirms { next_sequence: 1, ..Confirms::default() }
    }

    /// Numbers a new publish that must be confirmed by `destinations` queues (none: it is
    /// settled at once).
    pub fn start(&mut self, destinations: u32) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if destinations > 0 {
            if self.outstanding.is_empty() {
                self.first_outstanding = sequence;
            }
            self.outstanding.push_back(destinations);
        } else {
            if !self.outstanding.is_empty() {
                // Keeps the ring's positions in step with the sequences.
                self.outstanding.push_back(0);
            }
            self.acked.push(sequence);
        }
        sequence
    }

    /// The count of destinations `sequence` still waits for, if it is outstanding.
    fn remaining(&mut self, sequence: u64) -> Option<&mut u32> {
        let index = usize::try_from(sequence.checked_sub(self.first_outstanding)?).ok()?;
        self.outstanding.get_mut(index).filter(|remaining| **remaining > 0)
    }

    /// `sequence`'s place was emptied: it is answered, and the settled front of the ring goes.
    fn settled(&mut self, sequence: u64, ok: bool) {
        while self.outstanding.front() == Some(&0) {
            self.outstanding.pop_front();
            self.first_outstanding += 1;
        }
        if ok {
            self.acked.push(sequence);
        } else {
            self.nacked.push(sequence);
        }
    }

    /// A destination queue took the publish (`ok`) or refused it: a refusal nacks it at once,
    /// and later confirms of its other queues are ignored, as RabbitMQ does.
    pub fn confirmed(&mut self, sequence: u64, ok: bool) {
        let Some(remaining) = self.remaining(sequence) else {
            return;
        };
        *remaining = if ok { *remaining - 1 } else { 0 };
        if *remaining == 0 {
            self.settled(sequence, ok);
        }
    }

    /// The owner shard of the exchange routed publish `sequence` (started with
    /// `ROUTED_BY_OWNER` destinations) to `destinations` queues; their confirms may have
    /// arrived already, on another mailbox.
    pub fn routed(&mut self, sequence: u64, destinations: u32) {
        let Some(remaining) = self.remaining(sequence) else {
            return;
        };
        let left = (u64::from(*remaining) + u64::from(destinations)).saturating_sub(u64::from(ROUTED_BY_OWNER));
        *remaining = u32::try_from(left).unwrap_or(u32::MAX);
        if *remaining == 0 {
            self.settled(sequence, true);
        }
    }

    /// Answers everything settled since the last call (RabbitMQ's send_confirms_and_nacks);
    /// returns how many publishes it acknowledged.
    pub fn take_answers(&mut self, mut answer: impl FnMut(ConfirmAnswer)) -> usize {
        let mut acked = std::mem::take(&mut self.acked);
        let mut nacked = std::mem::take(&mut self.nacked);
        for sequences in [&mut acked, &mut nacked] {
            sequences.sort_unstable();
            sequences.dedup();
        }
        match acked.as_slice() {
            [] => {}
            [delivery_tag] => answer(ConfirmAnswer::Ack { delivery_tag: *delivery_tag, multiple: false }),
            _ => self.coalesce(&acked, &nacked, |delivery_tag, multiple| {
                answer(ConfirmAnswer::Ack { delivery_tag, multiple })
            }),
        }
        if !nacked.is_empty() {
            self.coalesce(&nacked, &acked, |delivery_tag, multiple| {
                answer(ConfirmAnswer::Nack { delivery_tag, multiple })
            });
        }
        acked.len()
    }

    /// RabbitMQ's coalesce_and_send: of the `sequences` (sorted, without repeats), those below
    /// the oldest outstanding one and below every opposite answer become one `multiple` frame;
    /// the others go one by one.
    fn coalesce(&self, sequences: &[u64], opposite: &[u64], mut send: impl FnMut(u64, bool)) {
        let Some(&last) = sequences.last() else {
            return;
        };
        let outstanding_floor = if self.outstanding.is_empty() { last + 1 } else { self.first_outstanding };
        let cutoff = opposite.iter().copied().fold(outstanding_floor, u64::min);
        let below = sequences.partition_point(|sequence| *sequence < cutoff);
        if below > 0 {
            send(sequences[below - 1], true);
        }
        for sequence in &sequences[below..] {
            send(*sequence, false);
        }
    }

    #[cfg(test)]
    fn take_all(&mut self) -> Vec<ConfirmAnswer> {
        let mut answers = Vec::new();
        self.take_answers(|answer| answers.push(answer));
        answers
    }
}

/// What a transaction holds until commit, at most `TX_PENDING_MAX` publishes and acks
/// together: the one past it is refused (406) when it arrives, so an uncommitted transaction
/// cannot grow without bound.
#[derive(Default)]
pub struct Transaction {
    /// Each publish as its `mandatory` flag and its message.
    pub publishes: Vec<(bool, Arc<Message>)>,
    pub acks: Vec<Ack>,
}

impl Transaction {
    fn check_room(&self) -> Result<(), AmqpError> {
        if self.publishes.len() + self.acks.len() >= TX_PENDING_MAX {
            return Err(AmqpError::new(PRECONDITION_FAILED, "transaction too large"));
        }
        Ok(())
    }

    pub fn hold_publish(&mut self, mandatory: bool, message: Arc<Message>) -> Result<(), AmqpError> {
        self.check_room()?;
        self.publishes.push((mandatory, message));
        Ok(())
    }

    pub fn hold_ack(&mut self, ack: Ack) -> Result<(), AmqpError> {
        self.check_room()?;
        self.acks.push(ack);
        Ok(())
    }
}

/// Where a channel is in its life. A channel that is not in the connection's map is not open
/// at all (never opened, or closed by close/close-ok).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifecycle {
    Open,
    /// The broker sent channel.close and waits for close-ok; other frames are dropped.
    Closing,
}

/// How a channel's publishes are settled: at once, confirmed to the publisher, or held until
/// tx.commit. A channel is in one of these at a time: RabbitMQ refuses a switch between
/// confirm and tx mode, and so does this type.
enum Mode {
    Plain,
    Confirm(Confirms),
    Transaction(Transaction),
}

/// A switch between confirm and tx mode, which RabbitMQ refuses with 406.
#[derive(Debug, PartialEq, Eq)]
pub enum ModeConflict {
    AlreadyTransactional,
    AlreadyConfirming,
}

pub struct Channel {
    pub id: u16,
    /// Distinguishes this opening of the channel number from earlier ones (see `Holder`).
    pub incarnation: u32,
    lifecycle: Lifecycle,
    next_delivery_tag: u64,
    pub unacked: UnackedDeliveries,
    pub consumers: Consumers,
    /// The direct reply-to consumer (`amq.rabbitmq.reply-to`); at most one, as in RabbitMQ.
    pub reply_consumer: Option<ReplyConsumer>,
    /// basic.qos prefetch_count (global=false) for consumers created after it.
    pub prefetch_count: u32,
    /// basic.qos prefetch_count with global=true.
    pub limit: ChannelLimit,
    mode: Mode,
    pub content: Content,
    /// Queue declared last on this channel: an empty queue name in later methods means it.
    pub last_queue: Option<String>,
    /// A consumer of this channel consumed from a stream: basic.nack and basic.reject look
    /// whether they settle a stream's delivery (refused).
    pub consumed_stream: bool,
    /// Bit i set: shard i holds consumers or unacked messages of this channel.
    touched_shards: u64,
}

impl Channel {
    pub fn new(id: u16, incarnation: u32) -> Channel {
        Channel {
            id,
            incarnation,
            lifecycle: Lifecycle::Open,
            next_delivery_tag: 1,
            unacked: UnackedDeliveries::default(),
            consumers: Consumers::default(),
            reply_consumer: None,
            prefetch_count: 0,
            limit: ChannelLimit::default(),
            mode: Mode::Plain,
            content: Content::Idle,
            last_queue: None,
            consumed_stream: false,
            touched_shards: 0,
        }
    }

    pub fn is_open(&self) -> bool {
        self.lifecycle == Lifecycle::Open
    }

    /// This opening of the channel (`incarnation`), and still open: a message meant for an
    /// earlier opening, or arriving while the broker closes the channel, is not for it.
    pub fn is_current(&self, incarnation: u32) -> bool {
        self.incarnation == incarnation && self.is_open()
    }

    /// The broker closes the channel for an error: it gives back what it holds (the returned
    /// mask names the shards to tell) and waits for close-ok. Only an open channel closes.
    pub fn begin_closing(&mut self) -> u64 {
        debug_assert!(self.is_open(), "channel {} closed twice", self.id);
        self.lifecycle = Lifecycle::Closing;
        self.release()
    }

    /// Forgets the consumers, unacked deliveries and a pending transaction; returns the shards that held any of them, to be told.
    pub fn release(&mut self) -> u64 {
        self.consumers.clear();
        self.reply_consumer = None;
        self.unacked.clear();
        self.limit.unacked = 0;
        // The queues take these back with the channel's other unacked messages.
        self.limit.held.clear();
        if let Mode::Transaction(transaction) = &mut self.mode {
            *transaction = Transaction::default();
        }
        std::mem::take(&mut self.touched_shards)
    }

    /// confirm.select: from plain mode on (again: no change); refused in tx mode.
    pub fn select_confirms(&mut self) -> Result<(), ModeConflict> {
        match self.mode {
            Mode::Plain => self.mode = Mode::Confirm(Confirms::new()),
            Mode::Confirm(_) => {}
            Mode::Transaction(_) => return Err(ModeConflict::AlreadyTransactional),
        }
        Ok(())
    }

    /// tx.select: from plain mode on (again: no change); refused in confirm mode.
    pub fn select_transaction(&mut self) -> Result<(), ModeConflict> {
        match self.mode {
            Mode::Plain => self.mode = Mode::Transaction(Transaction::default()),
            Mode::Transaction(_) => {}
            Mode::Confirm(_) => return Err(ModeConflict::AlreadyConfirming),
        }
        Ok(())
    }

    /// The publisher confirms of a channel in confirm mode.
    /// In confirm mode (confirm.select).
    pub fn is_confirming(&self) -> bool {
        matches!(self.mode, Mode::Confirm(_))
    }

    pub fn confirms_mut(&mut self) -> Option<&mut Confirms> {
        match &mut self.mode {
            Mode::Confirm(confirms) => Some(confirms),
            _ => None,
        }
    }

    /// What a channel in tx mode holds until commit.
    pub fn transaction_mut(&mut self) -> Option<&mut Transaction> {
        match &mut self.mode {
            Mode::Transaction(transaction) => Some(transaction),
            _ => None,
        }
    }

    pub fn next_delivery_tag(&mut self) -> u64 {
        let tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        tag
    }

    pub fn touch(&mut self, shard: usize) {
        self.touched_shards |= 1 << shard;
    }

    /// The oldest unacked delivery (lowest delivery tag): the one the consumer timeout checks,
    /// as RabbitMQ checks the head of a channel's unacked queue.
    pub fn oldest_unacked(&self) -> Option<&UnackedDelivery> {
        self.unacked.first()
    }

    /// Whether (delivery_tag, multiple) names unacked deliveries: RabbitMQ wants the tag
    /// itself unacked, `multiple` or not; only multiple with tag 0 means "all, if any".
    pub fn has_unacked(&self, delivery_tag: u64, multiple: bool) -> bool {
        (multiple && delivery_tag == 0) || self.unacked.contains(delivery_tag)
    }

    /// Removes the acknowledged deliveries named by (delivery_tag, multiple), grouped by
    /// queue. None if the tag is not unacked (a channel error 406 in RabbitMQ).
    pub fn take_unacked(&mut self, delivery_tag: u64, multiple: bool) -> Option<HashMap<QueueId, Vec<u64>>> {
        if !self.has_unacked(delivery_tag, multiple) {
            return None;
        }
        let mut by_queue: HashMap<QueueId, Vec<u64>> = HashMap::new();
        if multiple {
            let upper = if delivery_tag == 0 { u64::MAX } else { delivery_tag };
            for (_, unacked) in self.unacked.take_up_to(upper) {
                self.limit.settled(&unacked);
                by_queue.entry(unacked.queue).or_default().push(unacked.sequence);
            }
        } else {
            let unacked = self.remove_unacked(delivery_tag)?;
            by_queue.entry(unacked.queue).or_default().push(unacked.sequence);
        }
        Some(by_queue)
    }

    /// Tracks a delivery made in acknowledged mode under its delivery tag.
    pub fn insert_unacked(&mut self, delivery_tag: u64, unacked: UnackedDelivery) {
        if unacked.limited {
            self.limit.unacked += 1;
        }
        let new = self.unacked.insert(delivery_tag, unacked);
        debug_assert!(new, "delivery tag {delivery_tag} handed out twice");
    }

    pub fn remove_unacked(&mut self, delivery_tag: u64) -> Option<UnackedDelivery> {
        let unacked = self.unacked.remove(delivery_tag)?;
        self.limit.settled(&unacked);
        Some(unacked)
    }
}

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;
