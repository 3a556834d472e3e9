//! Turns between a shard's tasks: a yield to the back of the run queue, and readers that take turns
//! under the epoll driver.
//!
//! Under io_uring every socket read is submitted to the ring and its task waits for the
//! completion, so each read gives the shard's other tasks their turn. Under epoll a read of a
//! socket that holds bytes completes at once: a publisher that sends faster than the shard
//! handles its frames never leaves its task, and the shard's mailbox loop, the consumers'
//! writers and every other connection on the shard wait until that publisher pauses. A
//! consumer on the same shard as a flooding publisher received nothing for as long as the
//! publisher sent.
//!
//! monoio has no yield to the back of its run queue: a task that wakes itself while it runs
//! is put back at the front and runs again at once. `FairTurns::yield_now` parks the task
//! instead and has a helper task, spawned on every shard, wake it: the helper runs after the
//! tasks already queued, so the yielding task comes back after them. The mailbox loop yields so
//! after each turn that handled mail, and the delayed exchange's loop between batches: with a
//! self-wake, a shard's connections waited until its mailboxes were empty (on io_uring, scenario
//! h of `scripts/ab.sh` moved 1.34× as many messages with the yield to the back). Readers yield
//! so before each read on epoll only (`readers_take_turns`); on io_uring their reads do it
//! already.
//!
//! Timers need more: monoio fires them only when its run queue is empty and the thread parks
//! in the driver. A reader that yields to the back still keeps the queue busy, so it sleeps on
//! the timer wheel (`sleep_for_timers`) once every `TIMER_TURN`, which lets the thread park, fire
//! the due timers (heartbeats, backlog holds, the mailbox loop's retries) and come back.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long a reader keeps its turns without letting the thread park for its timers.
pub const TIMER_TURN: Duration = Duration::from_millis(10);

#[derive(Default)]
pub struct FairTurns {
    /// Tasks that yielded and wait for the helper.
    waiting: RefCell<Vec<Waker>>,
    /// The helper, while it waits for a task to yield.
    helper: RefCell<Option<Waker>>,
    /// The helper task runs.
    active: Cell<bool>,
    /// The shard runs on epoll: readers yield before each read.
    readers_take_turns: Cell<bool>,
}

impl FairTurns {
    /// True on a shard that runs on epoll, where a read can complete without leaving its task.
    pub fn readers_take_turns(&self) -> bool {
        self.readers_take_turns.get()
    }

    pub fn set_readers_take_turns(&self, on: bool) {
        self.readers_take_turns.set(on);
    }

    /// Lets the tasks queued on this thread run before the caller goes on. Returns at once
    /// where the helper does not run (a shard built by a unit test).
    pub fn yield_now(&self) -> impl Future<Output = ()> + '_ {
        Yield { turns: self, parked: false }
    }

    /// The helper task: wakes the tasks that yielded, from its own turn. Runs until the shard's
    /// runtime ends.
    pub async fn run_helper(&self) {
        self.active.set(true);
        loop {
            std::future::poll_fn(|context| {
                let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
                if waiting.is_empty() {
                    *self.helper.borrow_mut() = Some(context.waker().clone());
                    return Poll::Pending;
                }
                for waker in waiting {
                    waker.wake();
                }
                Poll::Ready(())
            })
            .await;
        }
    }
}

/// Waits on the timer wheel for the next tick, so that the thread parks in its driver and the
/// timers due meanwhile fire. `last` is when the caller last did; it is reset here.
pub async fn sleep_for_timers(last: &mut Instant) {
    monoio::time::sleep(Duration::ZERO).await;
    *last = Instant::now();
}

struct Yield<'a> {
    turns: &'a FairTurns,
    parked: bool,
}

impl Future for Yield<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.parked || !self.turns.active.get() {
            return Poll::Ready(());
        }
        self.parked = true;
        self.turns.waiting.borrow_mut().push(context.waker().clone());
        if let Some(helper) = self.turns.helper.borrow_mut().take() {
            helper.wake();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::FairTurns;

    /// Two tasks that yield in a loop run in turns: neither runs twice in a row while the other
    /// is waiting, which is what monoio's own self-wake (back to the front) does not give.
    #[test]
    fn tasks_that_yield_take_turns() {
        let mut runtime =
            monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().expect("runtime");
        runtime.block_on(async {
            let turns = Rc::new(FairTurns::default());
            let helper = turns.clone();
            monoio::spawn(async move { helper.run_helper().await });
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            let order = Rc::new(std::cell::RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for name in ['a', 'b'] {
                let (turns, order) = (turns.clone(), order.clone());
                tasks.push(monoio::spawn(async move {
                    for _ in 0..4 {
                        order.borrow_mut().push(name);
                        turns.yield_now().await;
                    }
                }));
            }
            for task in tasks {
                task.await;
            }
            let order: String = order.borrow().iter().collect();
            assert_eq!(order, "abababab");
        });
    }

    /// Without the helper a yield returns at once.
    #[test]
    fn without_the_helper_a_yield_returns_at_once() {
        let mut runtime =
            monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().expect("runtime");
        runtime.block_on(async {
            let turns = FairTurns::default();
            turns.yield_now().await;
        });
    }
}
