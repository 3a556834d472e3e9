//! The consumer timeout (RabbitMQ's `consumer_timeout`, `x-consumer-timeout`), enforced on the
//! connection's shard, where the channels and their unacked deliveries live.
//!
//! Each unacked delivery records when it was delivered and the timeout that applies to it; no
//! timer exists per delivery. As RabbitMQ does, only a channel's oldest unacked delivery is
//! checked: once it has been unacked for longer than its timeout, the channel is closed with
//! 406 PRECONDITION_FAILED and its unacked messages go back to their queues. One task per shard
//! checks the channels when the earliest such deadline comes, and otherwise once a minute
//! (RabbitMQ's own tick): a 500 ms timeout fires within milliseconds of its deadline, a
//! 30-minute one costs a pass over the shard's channels per minute. Recording a delivery costs
//! a coarse clock read and one comparison. The task owns no channel state and never holds a
//! borrow across an await.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use monoio::time::Sleep;

use super::Shard;
use crate::amqp::connection::Connection;
use crate::amqp::dispatch::{close_channel, fault};
use crate::broker::error::{AmqpError, PRECONDITION_FAILED};
use crate::clock;
use crate::limits::ACK_TIMEOUT_CHECK_MAX_MS;

/// When this shard next looks for overdue deliveries (`clock::coarse_now_ms` scale).
pub struct AckDeadlines {
    next_check_ms: Cell<u64>,
    /// The checking task, while it sleeps: woken when an earlier deadline is scheduled.
    sleeper: RefCell<Option<Waker>>,
}

impl Default for AckDeadlines {
    fn default() -> AckDeadlines {
        AckDeadlines { next_check_ms: Cell::new(u64::MAX), sleeper: RefCell::new(None) }
    }
}

impl AckDeadlines {
    /// A delivery becomes overdue at `overdue_at_ms`: the check runs no later than that.
    pub fn schedule(&self, overdue_at_ms: u64) {
        if overdue_at_ms < self.next_check_ms.get() {
            self.next_check_ms.set(overdue_at_ms);
            if let Some(waker) = self.sleeper.borrow_mut().take() {
                waker.wake();
            }
        }
    }
}

/// Sleeps until the sleep ends (false) or a check earlier than `until_ms` is scheduled (true).
struct UntilCheck<'a> {
    deadlines: &'a AckDeadlines,
    until_ms: u64,
    sleep: Pin<&'a mut Sleep>,
}

impl Future for UntilCheck<'_> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<bool> {
        if self.deadlines.next_check_ms.get() < self.until_ms {
            return Poll::Ready(true);
        }
        *self.deadlines.sleeper.borrow_mut() = Some(context.waker().clone());
        self.sleep.as_mut().poll(context).map(|()| false)
    }
}

/// Checks this shard's channels when the earliest scheduled deadline comes, and at least every
/// `ACK_TIMEOUT_CHECK_MAX_MS`, until shutdown. The periodic check finds a delivery whose
/// deadline was hidden behind an older one (only the oldest is looked at) once that older
/// one is acknowledged.
pub async fn ack_timeout_loop(shard: Rc<Shard>) {
    let deadlines = &shard.ack_deadlines;
    while !shard.shutdown_requested() {
        let now_ms = clock::coarse_now_ms();
        let due_ms = deadlines.next_check_ms.get();
        if due_ms > now_ms {
            let wait_ms = (due_ms - now_ms).min(ACK_TIMEOUT_CHECK_MAX_MS);
            let sleep = pin!(monoio::time::sleep(Duration::from_millis(wait_ms)));
            let rescheduled = UntilCheck { deadlines, until_ms: due_ms, sleep }.await;
            deadlines.sleeper.borrow_mut().take();
            if rescheduled {
                continue;
            }
        }
        deadlines.next_check_ms.set(u64::MAX);
        let next_ms = shard.close_overdue_channels(clock::coarse_now_ms());
        deadlines.schedule(next_ms);
    }
}

/// A channel whose oldest unacked delivery is overdue, with the timeout it exceeded.
struct Overdue {
    connection: Rc<Connection>,
    channel: u16,
    timeout_ms: u64,
}

impl Shard {
    /// Closes every channel whose oldest unacked delivery is overdue; returns the earliest
    /// deadline among the oldest deliveries of the other channels (u64::MAX: none).
    fn close_overdue_channels(&self, now_ms: u64) -> u64 {
        let connections: Vec<Rc<Connection>> = self.connections.borrow().values().cloned().collect();
        let mut overdue = Vec::new();
        let mut next_ms = u64::MAX;
        for connection in connections {
            let channels = connection.channels.borrow();
            for channel in channels.values().filter(|channel| channel.is_open()) {
                let Some(oldest) = channel.oldest_unacked() else { continue };
                match (oldest.overdue_at_ms(), oldest.timeout_ms) {
                    (Some(at_ms), Some(timeout_ms)) if at_ms <= now_ms => {
                        overdue.push(Overdue { connection: connection.clone(), channel: channel.id, timeout_ms })
                    }
                    (Some(at_ms), _) => next_ms = next_ms.min(at_ms),
                    _ => {}
                }
            }
        }
        for Overdue { connection, channel, timeout_ms } in overdue {
            crate::warn!(
                "connection {}: a delivery on channel {channel} was not acknowledged within {timeout_ms} ms; closing the channel",
                connection.id
            );
            let error = AmqpError::new(
                PRECONDITION_FAILED,
                format!(
                    "delivery acknowledgement on channel {channel} timed out. Timeout value used: {timeout_ms} ms. \
                     This timeout value can be configured, see consumers doc guide to learn more"
                ),
            );
            // RabbitMQ raises it outside any method: class and method 0.
            close_channel(self, &connection, channel, fault(error, (0, 0)));
        }
        next_ms
    }
}
