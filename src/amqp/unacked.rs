//! A channel's unacked deliveries, by delivery tag.
//!
//! Tags are handed out in increasing order and mostly acked from the oldest on (an ack with
//! `multiple`), so the deliveries sit in a ring in tag order: a delivery is appended, an ack
//! of the oldest pops the front, an ack in the middle leaves a tombstone that goes when the
//! front reaches it (or when tombstones outnumber the live entries). That is a few stores
//! per delivery where an ordered map allocated and rebalanced nodes. Owned by `channel`.

use std::collections::VecDeque;

use super::channel::UnackedDelivery;

/// Tombstones a ring may hold beyond its live entries before it is compacted.
const TOMBSTONES_SLACK: usize = 1024;

#[derive(Default)]
pub struct UnackedDeliveries {
    /// (delivery tag, delivery) in tag order; None: settled, kept until the front passes it.
    entries: VecDeque<(u64, Option<UnackedDelivery>)>,
    live: usize,
}

impl UnackedDeliveries {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.live = 0;
    }

    /// The oldest (lowest tag): the front is always live.
    pub fn first(&self) -> Option<&UnackedDelivery> {
        self.entries.front().and_then(|(_, delivery)| delivery.as_ref())
    }

    fn index_of(&self, delivery_tag: u64) -> Option<usize> {
        self.entries.binary_search_by_key(&delivery_tag, |(tag, _)| *tag).ok()
    }

    pub fn contains(&self, delivery_tag: u64) -> bool {
        self.index_of(delivery_tag).is_some_and(|index| self.entries[index].1.is_some())
    }

    /// Adds a delivery; false if the tag is unacked already. A tag below the newest (not how
    /// a channel numbers them, but kept correct) is put in its place.
    pub fn insert(&mut self, delivery_tag: u64, delivery: UnackedDelivery) -> bool {
        match self.entries.back() {
            Some((last, _)) if *last >= delivery_tag => {
                match self.entries.binary_search_by_key(&delivery_tag, |(tag, _)| *tag) {
                    Ok(index) if self.entries[index].1.is_some() => return false,
                    Ok(index) => self.entries[index].1 = Some(delivery),
                    Err(index) => self.entries.insert(index, (delivery_tag, Some(delivery))),
                }
            }
            _ => self.entries.push_back((delivery_tag, Some(delivery))),
        }
        self.live += 1;
        true
    }

    pub fn remove(&mut self, delivery_tag: u64) -> Option<UnackedDelivery> {
        let index = self.index_of(delivery_tag)?;
        let delivery = self.entries[index].1.take()?;
        self.live -= 1;
        while matches!(self.entries.front(), Some((_, None))) {
            self.entries.pop_front();
        }
        while matches!(self.entries.back(), Some((_, None))) {
            self.entries.pop_back();
        }
        if self.entries.len() > self.live * 2 + TOMBSTONES_SLACK {
            self.entries.retain(|(_, delivery)| delivery.is_some());
        }
        Some(delivery)
    }

    /// Removes every delivery with a tag up to `upper`, oldest first.
    pub fn take_up_to(&mut self, upper: u64) -> Vec<(u64, UnackedDelivery)> {
        let mut taken = Vec::new();
        while let Some((tag, _)) = self.entries.front() {
            if *tag > upper {
                break;
            }
            if let Some((tag, Some(delivery))) = self.entries.pop_front() {
                taken.push((tag, delivery));
            }
        }
        self.live -= taken.len();
        taken
    }

    /// The live deliveries with tags from `lower` to `upper`, in tag order.
    pub fn range(&self, lower: u64, upper: u64) -> impl Iterator<Item = (u64, &UnackedDelivery)> {
        let start = self.entries.partition_point(|(tag, _)| *tag < lower);
        self.entries
            .range(start..)
            .take_while(move |(tag, _)| *tag <= upper)
            .filter_map(|(tag, delivery)| delivery.as_ref().map(|delivery| (*tag, delivery)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::QueueId;

    fn delivery(sequence: u64) -> UnackedDelivery {
        UnackedDelivery::new(QueueId(1), sequence, None)
    }

    fn tags(unacked: &UnackedDeliveries) -> Vec<u64> {
        unacked.range(0, u64::MAX).map(|(tag, _)| tag).collect()
    }

    #[test]
    fn acks_in_any_order_leave_only_what_is_unacked() {
        let mut unacked = UnackedDeliveries::default();
        for tag in 1..=10 {
            assert!(unacked.insert(tag, delivery(tag * 100)));
        }
        assert!(!unacked.insert(4, delivery(0)), "a tag is unacked once");
        assert_eq!(unacked.remove(5).map(|found| found.sequence), Some(500));
        assert_eq!(unacked.remove(5).map(|found| found.sequence), None, "acked twice");
        assert!(!unacked.contains(5) && unacked.contains(6));
        assert_eq!(unacked.remove(1).map(|found| found.sequence), Some(100));
        assert_eq!(unacked.first().map(|found| found.sequence), Some(200));
        let taken: Vec<u64> = unacked.take_up_to(7).into_iter().map(|(tag, _)| tag).collect();
        assert_eq!(taken, vec![2, 3, 4, 6, 7], "the tombstone of 5 is skipped");
        assert_eq!((unacked.len(), tags(&unacked)), (3, vec![8, 9, 10]));
        assert_eq!(unacked.range(9, 9).map(|(tag, _)| tag).collect::<Vec<_>>(), vec![9]);
        assert!(unacked.insert(3, delivery(3)), "an older tag goes in its place");
        assert_eq!(tags(&unacked), vec![3, 8, 9, 10]);
        unacked.clear();
        assert!(unacked.len() == 0 && unacked.first().is_none());
    }

    #[test]
    fn one_old_unacked_delivery_does_not_keep_every_later_tombstone() {
        let mut unacked = UnackedDeliveries::default();
        unacked.insert(1, delivery(1));
        for tag in 2..100_000 {
            unacked.insert(tag, delivery(tag));
        }
        for tag in 2..100_000 {
            unacked.remove(tag);
        }
        assert_eq!(unacked.len(), 1);
        assert!(unacked.entries.len() <= 2 + TOMBSTONES_SLACK, "{} entries kept", unacked.entries.len());
        assert_eq!(unacked.first().map(|found| found.sequence), Some(1));
    }
}
