//! Bounded single-producer/single-consumer mailboxes between shards, one per ordered pair.
//!
//! Owns the lock-free queues and the park/wake handshake. A receiving shard is woken only
//! when it said it was parked, so a busy shard pays no wake-up syscalls: the producer pushes,
//! then swaps the receiver's `parked` flag; the receiver sets `parked`, then re-checks every
//! queue before sleeping. With sequentially consistent ordering one of the two always sees
//! the other, so no wake-up is lost. It does not know what the messages mean.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use crossbeam_queue::ArrayQueue;

use crate::broker::control::ControlMsg;
use crate::broker::messages::ShardMsg;

/// Operator requests waiting per shard: a handful at a time is all an operator sends.
const CONTROL_CAPACITY: usize = 64;

struct Inbox {
    parked: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Inbox {
    /// Reads the flag first and swaps it only when set, so a busy shard's flag is not written
    /// (nor its cache line pulled between cores) on every call.
    fn wake_if_parked(&self) {
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::SeqCst) {
            if let Ok(mut slot) = self.waker.lock() {
                if let Some(waker) = slot.take() {
                    waker.wake();
                }
            }
        }
    }
}

/// All mailboxes of the broker: `queues[from * shards + to]`, and one control inbox per shard
/// that threads outside the shards (the control socket) push to.
pub struct Mailboxes {
    shards: usize,
    queues: Vec<ArrayQueue<ShardMsg>>,
    control: Vec<ArrayQueue<ControlMsg>>,
    inboxes: Vec<Inbox>,
    shutdown: AtomicBool,
    /// Shards that closed their connections at shutdown (`Shard::drain_at_shutdown`).
    closed_shards: AtomicUsize,
    /// Bit s: shard s wants its publishers to wait: more paged-out bytes wait for its disk
    /// than it allows, or its delayed messages go out late (`Shard::note_backlog`;
    /// `limits::SHARDS_MAX` is 64, so one word holds every shard).
    backlogged: AtomicU64,
    /// Bit s: a queue of shard s with more than `limits::PRESSURE_READY_MESSAGES` ready keeps
    /// delivering to its consumers (`shard::pressure`).
    deep: AtomicU64,
    /// Bit s: shard s's thread ran for most of its last sampling window (`shard::pressure`).
    busy: AtomicU64,
    /// Connections placed on each shard and not yet gone (`shard::balance`).
    connections: Vec<AtomicU32>,
    /// The newest definitions version the writer has sent to the shards
    /// (`Shard::catch_up_announced`).
    definitions_announced: AtomicU64,
}

impl Mailboxes {
    pub fn new(shards: usize, capacity: usize) -> Mailboxes {
        // A shard's mail to itself goes through its own `local` list, never its diagonal
        // mailbox: that one gets a single slot instead of a full allocation.
        let queues = (0..shards * shards)
            .map(|index| ArrayQueue::new(if index / shards == index % shards { 1 } else { capacity.max(1) }))
            .collect();
        let inboxes = (0..shards).map(|_| Inbox { parked: AtomicBool::new(false), waker: Mutex::new(None) }).collect();
        let control = (0..shards).map(|_| ArrayQueue::new(CONTROL_CAPACITY)).collect();
        Mailboxes {
            shards,
            queues,
            control,
            inboxes,
            shutdown: AtomicBool::new(false),
            closed_shards: AtomicUsize::new(0),
            backlogged: AtomicU64::new(0),
            deep: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            connections: (0..shards).map(|_| AtomicU32::new(0)).collect(),
            definitions_announced: AtomicU64::new(0),
        }
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The writer has put definitions `version` in every shard's mailbox; called before any
    /// reply that depends on them leaves.
    pub fn announce_definitions(&self, version: u64) {
        self.definitions_announced.fetch_max(version, Ordering::Release);
    }

    /// The newest definitions version announced (`announce_definitions`).
    pub fn announced_definitions(&self) -> u64 {
        self.definitions_announced.load(Ordering::Acquire)
    }

    fn queue(&self, from: usize, to: usize) -> &ArrayQueue<ShardMsg> {
        &self.queues[from * self.shards + to]
    }

    /// Pushes without blocking; a full mailbox hands the message back (backpressure).
    // The Err is the caller's own message handed back for a retry: a move, as the Ok path's.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, from: usize, to: usize, message: ShardMsg) -> Result<(), ShardMsg> {
        self.queue(from, to).push(message)?;
        self.wake_if_parked(to);
        Ok(())
    }

    /// Pushes without waking the receiver: the sender wakes it later with `wake_if_parked`,
    /// once for a batch. A full mailbox hands the message back.
    // The Err is the caller's own message handed back for a retry: a move, as the Ok path's.
    #[allow(clippy::result_large_err)]
    pub fn push(&self, from: usize, to: usize, message: ShardMsg) -> Result<(), ShardMsg> {
        self.queue(from, to).push(message)
    }

    /// Wakes this shard's own mailbox loop if it is parked, for shard-local work. Same thread
    /// as the loop's `Park`, so program order is all the handshake needs: no fence.
    pub fn wake_own_loop(&self, me: usize) {
        self.inboxes[me].wake_if_parked();
    }

    /// Wakes shard `to` if it is parked: once per turn per destination, mostly while the
    /// receiver is busy (see `Inbox::wake_if_parked`). The fence keeps the park handshake: the
    /// mail pushed before this call is visible to a receiver that set `parked` and re-checks
    /// its queues, or this load sees `parked` set (both sides order their write before their
    /// read: `Park::poll` fences after its store).
    pub fn wake_if_parked(&self, to: usize) {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.inboxes[to].wake_if_parked();
    }

    /// Shard `shard` says whether it is backlogged (paging ahead of its disk, delayed messages
    /// late). Relaxed: a publisher that reads a stale flag pauses one check too many or too
    /// few, nothing more.
    pub fn set_backlogged(&self, shard: usize, backlogged: bool) {
        set_bit(&self.backlogged, shard, backlogged);
    }

    /// True if one of the shards in `shards` (bit s for shard s) is backlogged.
    pub fn backlogged(&self, shards: u64) -> bool {
        any_bit(&self.backlogged, shards)
    }

    /// Shard `shard` says whether one of its deep queues delivers, and whether its thread is
    /// busy (`shard::pressure`). Relaxed, as `set_backlogged`.
    pub fn set_pressure(&self, shard: usize, sample: crate::shard::pressure::Sample) {
        set_bit(&self.deep, shard, sample.deep);
        set_bit(&self.busy, shard, sample.busy);
    }

    /// True if one of the shards in `shards` (bit s for shard s) has a deep queue that delivers.
    pub fn deep(&self, shards: u64) -> bool {
        any_bit(&self.deep, shards)
    }

    /// True if one of the shards in `shards` is deep and busy.
    pub fn pressured(&self, shards: u64) -> bool {
        shards != 0 && self.deep.load(Ordering::Relaxed) & self.busy.load(Ordering::Relaxed) & shards != 0
    }

    /// A connection was placed on `shard` (`shard::balance`). Relaxed: placement only needs a
    /// recent count, never an exact one.
    pub fn connection_placed(&self, shard: usize) {
        self.connections[shard].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection placed on `shard` is gone.
    pub fn connection_gone(&self, shard: usize) {
        self.connections[shard].fetch_sub(1, Ordering::Relaxed);
    }

    /// The shard with the fewest connections, if it has fewer than `shard`; else `shard`.
    pub fn fewest_connections(&self, shard: usize) -> usize {
        let count = |index: usize| self.connections[index].load(Ordering::Relaxed);
        self.fewest_connections_but(shard).filter(|other| count(*other) < count(shard)).unwrap_or(shard)
    }

    /// The shard other than `shard` with the fewest connections; None with one shard.
    pub fn fewest_connections_but(&self, shard: usize) -> Option<usize> {
        let count = |index: usize| self.connections[index].load(Ordering::Relaxed);
        (0..self.shards).filter(|index| *index != shard).min_by_key(|index| count(*index))
    }

    pub fn pop(&self, from: usize, to: usize) -> Option<ShardMsg> {
        self.queue(from, to).pop()
    }

    /// From any thread: hands shard `to` an operator's request. A full inbox hands it back.
    pub fn send_control(&self, to: usize, message: ControlMsg) -> Result<(), Box<ControlMsg>> {
        self.control[to].push(message).map_err(Box::new)?;
        self.wake_if_parked(to);
        Ok(())
    }

    pub fn pop_control(&self, to: usize) -> Option<ControlMsg> {
        self.control[to].pop()
    }

    pub fn has_mail(&self, to: usize) -> bool {
        (0..self.shards).any(|from| !self.queue(from, to).is_empty()) || !self.control[to].is_empty()
    }

    /// Messages waiting for shard `to`, from every shard and the operator (a scrape's gauge).
    pub fn depth(&self, to: usize) -> usize {
        (0..self.shards).map(|from| self.queue(from, to).len()).sum::<usize>() + self.control[to].len()
    }

    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for shard in 0..self.shards {
            self.inboxes[shard].parked.store(true, Ordering::SeqCst);
            self.wake_if_parked(shard);
        }
    }

    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// At shutdown: this shard closed its connections (they send nothing more).
    pub fn note_connections_closed(&self) {
        self.closed_shards.fetch_add(1, Ordering::SeqCst);
    }

    /// Every shard closed its connections and no mailbox holds a message.
    pub fn quiet(&self) -> bool {
        self.closed_shards.load(Ordering::SeqCst) >= self.shards && (0..self.shards).all(|to| self.depth(to) == 0)
    }

    /// Resolves when shard `me` has mail, `has_local_work()` is true, or shutdown began.
    pub fn park<'a>(&'a self, me: usize, has_local_work: &'a dyn Fn() -> bool) -> Park<'a> {
        Park { mailboxes: self, me, has_local_work, registered: false }
    }
}

/// True if `bits` has one of the bits of `shards` set (no load for a connection that published
/// nowhere).
fn any_bit(bits: &AtomicU64, shards: u64) -> bool {
    shards != 0 && bits.load(Ordering::Relaxed) & shards != 0
}

/// Sets or clears bit `shard % 64` of `bits`, writing only when it changes: the word is read
/// by every publishing connection's reader, so an unchanged flag costs no cache-line transfer.
fn set_bit(bits: &AtomicU64, shard: usize, on: bool) {
    let bit = 1u64 << (shard % 64);
    if (bits.load(Ordering::Relaxed) & bit != 0) != on {
        if on {
            bits.fetch_or(bit, Ordering::Relaxed);
        } else {
            bits.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

pub struct Park<'a> {
    mailboxes: &'a Mailboxes,
    me: usize,
    has_local_work: &'a dyn Fn() -> bool,
    registered: bool,
}

impl Park<'_> {
    /// Resolves like the park, or once `limit` has passed, whichever is first.
    pub async fn at_most(self, limit: std::time::Duration) {
        let mut park = std::pin::pin!(self);
        let mut timer = std::pin::pin!(monoio::time::sleep(limit));
        std::future::poll_fn(|context| {
            if park.as_mut().poll(context).is_ready() || timer.as_mut().poll(context).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

impl Future for Park<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let mailboxes = self.mailboxes;
        let inbox = &mailboxes.inboxes[self.me];
        if self.registered && !inbox.parked.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        if let Ok(mut slot) = inbox.waker.lock() {
            *slot = Some(context.waker().clone());
        }
        inbox.parked.store(true, Ordering::SeqCst);
        // Pairs with the fence in `wake_if_parked`: either a sender's load sees `parked`, or
        // the re-check below sees its mail.
        std::sync::atomic::fence(Ordering::SeqCst);
        self.registered = true;
        if mailboxes.has_mail(self.me) || (self.has_local_work)() || mailboxes.shutdown_requested() {
            inbox.parked.store(false, Ordering::SeqCst);
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Park<'_> {
    fn drop(&mut self) {
        self.mailboxes.inboxes[self.me].parked.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::Mailboxes;

    #[test]
    fn a_publisher_waits_only_for_the_backlogged_shards_it_published_to() {
        let mailboxes = Mailboxes::new(3, 4);
        assert!(!mailboxes.backlogged(0b111), "nothing backlogged at first");
        mailboxes.set_backlogged(1, true);
        mailboxes.set_backlogged(1, true);
        assert!(mailboxes.backlogged(0b010));
        assert!(mailboxes.backlogged(0b011));
        assert!(!mailboxes.backlogged(0b101), "publishing to shards 0 and 2 only");
        assert!(!mailboxes.backlogged(0), "a consumer that published nothing never waits");
        mailboxes.set_backlogged(2, true);
        mailboxes.set_backlogged(1, false);
        assert!(!mailboxes.backlogged(0b010), "shard 1 caught up");
        assert!(mailboxes.backlogged(0b100), "shard 2 still behind");
    }

    #[test]
    fn a_connection_goes_to_the_shard_with_the_fewest_or_stays() {
        let mailboxes = Mailboxes::new(3, 4);
        assert_eq!(mailboxes.fewest_connections(1), 1, "all even: it stays where it was accepted");
        mailboxes.connection_placed(1);
        assert_eq!(mailboxes.fewest_connections(1), 0, "the lowest of the emptier shards");
        mailboxes.connection_placed(0);
        assert_eq!(mailboxes.fewest_connections(1), 2);
        assert_eq!(mailboxes.fewest_connections(2), 2, "none has fewer than shard 2");
        mailboxes.connection_placed(2);
        mailboxes.connection_placed(2);
        mailboxes.connection_gone(0);
        assert_eq!(mailboxes.fewest_connections(2), 0, "a connection that left frees its place");
    }

    #[test]
    fn pressure_and_backlog_are_separate_flags() {
        use crate::shard::pressure::Sample;
        let mailboxes = Mailboxes::new(2, 4);
        mailboxes.set_pressure(1, Sample { deep: true, busy: false });
        assert!(mailboxes.deep(0b10));
        assert!(!mailboxes.pressured(0b10), "deep but with time to spare");
        mailboxes.set_pressure(1, Sample { deep: true, busy: true });
        assert!(mailboxes.pressured(0b10));
        assert!(!mailboxes.backlogged(0b10), "pressure is not a backlog");
        assert!(!mailboxes.pressured(0) && !mailboxes.deep(0), "a connection that published nowhere never waits");
        mailboxes.set_backlogged(1, true);
        mailboxes.set_pressure(1, Sample { deep: false, busy: true });
        assert!(!mailboxes.pressured(0b10) && !mailboxes.deep(0b10), "busy alone is no pressure");
        assert!(mailboxes.backlogged(0b10), "clearing one leaves the other");
    }
}
