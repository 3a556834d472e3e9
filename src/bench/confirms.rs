//! Publisher-confirm bookkeeping: which publish sequence numbers the broker has settled
//! (basic.ack or basic.nack, single or multiple), and how many are still in flight.
//!
//! Settled sequences are kept as a floor (everything at or below it is settled) plus the few
//! settled out of order above it, so memory is bounded by the `--confirm` window. A tag the
//! publisher never sent is ignored rather than trusted. Pure state: no I/O.

use std::collections::BTreeSet;

#[derive(Debug)]
pub struct ConfirmTracker {
    /// Sequence number the next publish gets (confirm.select starts at 1).
    next_sequence: u64,
    /// Every sequence at or below this is settled.
    floor: u64,
    /// Settled sequences above `floor + 1`, waiting for the gap below them to close.
    above_floor: BTreeSet<u64>,
}

impl Default for ConfirmTracker {
    fn default() -> Self {
        ConfirmTracker { next_sequence: 1, floor: 0, above_floor: BTreeSet::new() }
    }
}

impl ConfirmTracker {
    pub fn published(&mut self, count: u64) {
        self.next_sequence += count;
    }

    /// Publishes not yet acked or nacked.
    pub fn outstanding(&self) -> u64 {
        self.next_sequence - 1 - self.floor - self.above_floor.len() as u64
    }

    /// Applies one basic.ack/nack and returns how many publishes it newly settled.
    pub fn settle(&mut self, delivery_tag: u64, multiple: bool) -> u64 {
        let last_sent = self.next_sequence - 1;
        if delivery_tag <= self.floor || delivery_tag > last_sent {
            return 0;
        }
        if !multiple {
            if !self.above_floor.insert(delivery_tag) {
                return 0;
            }
            self.advance_floor();
            return 1;
        }
        let singles_covered = self.above_floor.range(..=delivery_tag).count() as u64;
        let settled = delivery_tag - self.floor - singles_covered;
        self.above_floor = self.above_floor.split_off(&(delivery_tag + 1));
        self.floor = delivery_tag;
        self.advance_floor();
        settled
    }

    fn advance_floor(&mut self) {
        while self.above_floor.remove(&(self.floor + 1)) {
            self.floor += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiple_ack_settles_everything_up_to_the_tag() {
        let mut tracker = ConfirmTracker::default();
        tracker.published(10);
        assert_eq!(tracker.outstanding(), 10);
        assert_eq!(tracker.settle(4, true), 4);
        assert_eq!(tracker.outstanding(), 6);
        assert_eq!(tracker.settle(10, true), 6);
        assert_eq!(tracker.outstanding(), 0);
    }

    #[test]
    fn out_of_order_singles_then_multiple_count_once() {
        let mut tracker = ConfirmTracker::default();
        tracker.published(6);
        assert_eq!(tracker.settle(3, false), 1);
        assert_eq!(tracker.settle(5, false), 1);
        assert_eq!(tracker.settle(3, false), 0, "duplicate");
        assert_eq!(tracker.outstanding(), 4);
        assert_eq!(tracker.settle(4, true), 3, "1, 2 and 4; 3 was already settled");
        assert_eq!(tracker.outstanding(), 1);
        assert_eq!(tracker.settle(6, false), 1);
        assert_eq!(tracker.outstanding(), 0);
        assert!(tracker.above_floor.is_empty());
    }

    #[test]
    fn singles_closing_a_gap_raise_the_floor() {
        let mut tracker = ConfirmTracker::default();
        tracker.published(3);
        tracker.settle(2, false);
        tracker.settle(3, false);
        tracker.settle(1, false);
        assert_eq!((tracker.floor, tracker.outstanding()), (3, 0));
    }

    #[test]
    fn tags_never_sent_or_already_settled_are_ignored() {
        let mut tracker = ConfirmTracker::default();
        tracker.published(2);
        assert_eq!(tracker.settle(0, true), 0);
        assert_eq!(tracker.settle(3, false), 0);
        assert_eq!(tracker.settle(99, true), 0);
        assert_eq!(tracker.settle(2, true), 2);
        assert_eq!(tracker.settle(1, false), 0);
        assert_eq!(tracker.outstanding(), 0);
    }
}
