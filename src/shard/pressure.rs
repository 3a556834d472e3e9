//! Credit from a deep queue's shard to the publishers on other shards.
//!
//! A publisher on another shard than its queue only parses and forwards, so it can send more
//! than the queue's consumers get: the queue's shard takes `MAILBOX_BATCH` publishes a turn
//! into the ready list (its mailbox never fills), or the publisher's own shard spends on
//! parsing the time its consumers' deliveries need. The backlog builds in the queue; past
//! `PAGE_OUT_READY_MESSAGES` it pages out, and the paging work slows delivery further.
//! RabbitMQ's credit flow keeps a publisher to the pace its queue process works at; this is
//! the same idea with two bits per shard (`Mailboxes::set_pressure`, read by
//! `socket::wait_for_backlog`).
//!
//! Each shard publishes two flags at the end of every turn:
//! - deep: in this sampling window or the last, a queue of this shard delivered to its
//!   consumers with more than `PRESSURE_READY_MESSAGES` still ready. A queue nobody consumes
//!   from, or whose consumers are out of prefetch or flow credit (a client that reads or acks
//!   slowly), delivers nothing and never raises it: a slow consumer lets its queue grow and
//!   page, as in RabbitMQ, instead of slowing the publisher to its pace;
//! - busy: the shard's thread ran for at least `PRESSURE_BUSY_PERCENT` of the last sampling
//!   window (`PRESSURE_WINDOW_MS`).
//!
//! A connection on another shard that only publishes waits while a shard it published to is
//! deep and either that shard or its own is busy: whichever shard is the bottleneck, what the
//! publisher sends costs the consumers their deliveries. A busy publisher's shard alone, with
//! a deep queue whose consumers keep taking messages, slows the publisher to the share of its
//! shard it leaves free, not to the consumers' pace.
//!
//! While a shard is deep its mailbox loop parks for at most a window, so the flag falls within
//! a window of the queue stopping: a held publisher never waits for an idle shard.

use std::cell::Cell;

use crate::limits::{PRESSURE_BUSY_PERCENT, PRESSURE_READY_MESSAGES, PRESSURE_WINDOW_MS};

#[derive(Default)]
pub struct Pressure {
    /// Deliveries of a queue with more than the threshold still ready, since the shard began
    /// (counted per `with_queue` call that delivered), and the count when the last window
    /// began and when this one did.
    deep_deliveries: Cell<u64>,
    deep_deliveries_at: Cell<(u64, u64)>,
    /// Start of the sampling window: wall clock and the thread's CPU time (ns).
    window: Cell<(u64, u64)>,
    /// The thread's CPU share in the last finished window reached `PRESSURE_BUSY_PERCENT`.
    busy: Cell<bool>,
    /// A deep queue delivered in this window or the last (at the last `evaluate`).
    deep: Cell<bool>,
}

/// What a shard tells the others at the end of a turn (`Mailboxes::set_pressure`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub deep: bool,
    pub busy: bool,
}

impl Pressure {
    /// Ready messages above which a delivering queue counts as deep: half the threshold while
    /// one does, so the flag does not flicker around one value.
    pub fn deep(&self, ready: usize) -> bool {
        let threshold = if self.deep.get() { PRESSURE_READY_MESSAGES / 2 } else { PRESSURE_READY_MESSAGES };
        ready > threshold
    }

    /// A queue delivered to its consumers and `deep` held after.
    pub fn note_deep_delivery(&self) {
        self.deep_deliveries.set(self.deep_deliveries.get() + 1);
    }

    #[cfg(test)]
    pub fn deep_deliveries(&self) -> u64 {
        self.deep_deliveries.get()
    }

    /// Whether a deep queue delivered lately (the mailbox loop then parks for at most a
    /// window, so the flag falls within a window of the queue stopping).
    pub fn is_deep(&self) -> bool {
        self.deep.get()
    }

    /// Whether the thread ran for `PRESSURE_BUSY_PERCENT` of the last finished window, with
    /// the wall clock and the thread's CPU time (ns); the CPU clock is read only when a window
    /// ends. A publisher held for another shard asks too, so a held publisher's own idle shard
    /// shows as idle even while its mailbox loop is parked.
    pub fn busy(&self, wall_ns: u64, thread_cpu_ns: impl FnOnce() -> u64) -> bool {
        let (start_wall, start_cpu) = self.window.get();
        let elapsed = wall_ns.saturating_sub(start_wall);
        if elapsed >= PRESSURE_WINDOW_MS * 1_000_000 {
            let cpu = thread_cpu_ns();
            let used = cpu.saturating_sub(start_cpu);
            self.busy.set(start_wall != 0 && used.saturating_mul(100) >= elapsed.saturating_mul(PRESSURE_BUSY_PERCENT));
            self.window.set((wall_ns, cpu));
            let (_, window_began) = self.deep_deliveries_at.get();
            self.deep_deliveries_at.set((window_began, self.deep_deliveries.get()));
        }
        self.busy.get()
    }

    /// At the end of a turn: what the other shards are told.
    pub fn evaluate(&self, wall_ns: u64, thread_cpu_ns: impl FnOnce() -> u64) -> Sample {
        let busy = self.busy(wall_ns, thread_cpu_ns);
        let (last_window_began, _) = self.deep_deliveries_at.get();
        let deep = self.deep_deliveries.get() > last_window_began;
        self.deep.set(deep);
        Sample { deep, busy }
    }
}

/// The shards a connection waits for after a read: every shard it published to while that
/// shard is backlogged; for pressure (`shard::pressure`), the other shards it published to
/// while one has a deep queue that delivers and that shard or the connection's own is busy.
/// A connection that consumes never waits for pressure: holding its reads would hold the acks
/// and credit that let the deep queue deliver.
#[derive(Clone, Copy, Debug)]
pub struct Hold {
    published_to: u64,
    pressing: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HoldReason {
    Backlog,
    Pressure,
}

impl Hold {
    pub fn of(own_shard: usize, consumes: bool, published_to: u64) -> Hold {
        let pressing = if consumes { 0 } else { published_to & !(1u64 << (own_shard % 64)) };
        Hold { published_to, pressing }
    }

    /// `own_busy` is asked only when a deep shard is not busy itself.
    pub fn reason(
        &self,
        mailboxes: &crate::shard::mailbox::Mailboxes,
        own_busy: impl FnOnce() -> bool,
    ) -> Option<HoldReason> {
        if mailboxes.backlogged(self.published_to) {
            Some(HoldReason::Backlog)
        } else if mailboxes.pressured(self.pressing) || (mailboxes.deep(self.pressing) && own_busy()) {
            Some(HoldReason::Pressure)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Hold, HoldReason, Pressure, Sample};
    use crate::limits::{PRESSURE_READY_MESSAGES, PRESSURE_WINDOW_MS};
    use crate::shard::mailbox::Mailboxes;

    const MS: u64 = 1_000_000;
    const WINDOW: u64 = PRESSURE_WINDOW_MS * MS;

    /// Evaluates at the ends of `count` windows from `start_ms`, the thread using `percent` of
    /// each; returns the last sample.
    fn windows(pressure: &Pressure, start_ms: u64, count: u64, percent: u64, cpu: &mut u64) -> Sample {
        let mut sample = pressure.evaluate(start_ms * MS, || *cpu);
        for index in 1..=count {
            *cpu += WINDOW * percent / 100;
            let used = *cpu;
            sample = pressure.evaluate(start_ms * MS + index * WINDOW, || used);
        }
        sample
    }

    #[test]
    fn deep_only_while_a_queue_past_the_threshold_delivers_and_busy_by_the_thread_cpu_share() {
        let pressure = Pressure::default();
        let mut cpu = 0;
        assert!(!pressure.deep(PRESSURE_READY_MESSAGES), "at the threshold is not above it");
        assert!(pressure.deep(PRESSURE_READY_MESSAGES + 1));
        assert_eq!(windows(&pressure, 1_000, 2, 100, &mut cpu), Sample { deep: false, busy: true });
        pressure.note_deep_delivery();
        let now = 1_000 + 2 * PRESSURE_WINDOW_MS;
        assert_eq!(pressure.evaluate(now * MS, || cpu), Sample { deep: true, busy: true });
        assert!(pressure.is_deep());
        assert_eq!(
            windows(&pressure, now, 1, 40, &mut cpu),
            Sample { deep: true, busy: false },
            "the thread idled 60% of a window; the delivery was in the window before"
        );
        assert_eq!(
            windows(&pressure, now + PRESSURE_WINDOW_MS, 1, 40, &mut cpu),
            Sample { deep: false, busy: false },
            "no deep delivery for a whole window: consumers out of credit or the queue drained"
        );
        assert!(!pressure.is_deep());
    }

    #[test]
    fn the_threshold_halves_while_deep() {
        let pressure = Pressure::default();
        pressure.note_deep_delivery();
        pressure.evaluate(MS, || 0);
        assert!(pressure.deep(PRESSURE_READY_MESSAGES / 2 + 1), "while deep, half the threshold counts");
        assert!(!pressure.deep(PRESSURE_READY_MESSAGES / 2));
        pressure.evaluate(MS + WINDOW, || 0);
        pressure.evaluate(MS + 2 * WINDOW, || 0);
        assert!(!pressure.is_deep());
        assert!(!pressure.deep(PRESSURE_READY_MESSAGES), "back to the full threshold once not");
    }

    #[test]
    fn the_cpu_clock_is_read_once_a_window_and_the_first_window_is_not_busy() {
        let pressure = Pressure::default();
        let reads = std::cell::Cell::new(0);
        // The thread runs all the time: its CPU clock keeps up with the wall clock.
        let read = || {
            reads.set(reads.get() + 1);
            reads.get() * WINDOW
        };
        assert!(!pressure.busy(WINDOW, read), "no window measured yet");
        pressure.busy(WINDOW + 1, read);
        pressure.busy(2 * WINDOW - 1, read);
        assert_eq!(reads.get(), 1);
        assert!(pressure.busy(2 * WINDOW, read));
        assert_eq!(reads.get(), 2);
    }

    #[test]
    fn a_publisher_waits_for_pressure_only_on_other_shards_and_never_while_it_consumes() {
        let mailboxes = Mailboxes::new(3, 4);
        let idle = || false;
        let busy = || true;
        assert_eq!(Hold::of(0, false, 0b110).reason(&mailboxes, busy), None, "nothing raised");
        mailboxes.set_pressure(1, Sample { deep: true, busy: true });
        assert_eq!(Hold::of(0, false, 0b010).reason(&mailboxes, idle), Some(HoldReason::Pressure));
        assert_eq!(Hold::of(2, false, 0b011).reason(&mailboxes, idle), Some(HoldReason::Pressure));
        assert_eq!(
            Hold::of(1, false, 0b010).reason(&mailboxes, busy),
            None,
            "on the deep shard itself the publisher already shares its time"
        );
        assert_eq!(
            Hold::of(0, true, 0b010).reason(&mailboxes, busy),
            None,
            "a connection that consumes carries the acks and credit the queue waits for"
        );
        assert_eq!(Hold::of(0, false, 0b100).reason(&mailboxes, busy), None, "published only to shard 2");

        mailboxes.set_pressure(1, Sample { deep: true, busy: false });
        assert_eq!(Hold::of(0, false, 0b010).reason(&mailboxes, idle), None, "neither shard is the bottleneck");
        assert_eq!(
            Hold::of(0, false, 0b010).reason(&mailboxes, busy),
            Some(HoldReason::Pressure),
            "the publisher's own shard is the bottleneck"
        );

        mailboxes.set_backlogged(1, true);
        assert_eq!(
            Hold::of(1, true, 0b010).reason(&mailboxes, idle),
            Some(HoldReason::Backlog),
            "a disk backlog holds every connection that published to the shard"
        );
        mailboxes.set_backlogged(1, false);
        mailboxes.set_pressure(1, Sample { deep: false, busy: true });
        assert_eq!(Hold::of(0, false, 0b010).reason(&mailboxes, busy), None, "no deep queue any more");
    }
}
