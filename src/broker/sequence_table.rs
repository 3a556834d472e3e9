//! A map from message sequence to value for sequences that come and go roughly in order: a
//! queue's unacked messages.
//!
//! A queue delivers its messages in sequence order, mostly, and they are acked in about the
//! same order. A hash map put each unacked message in a random bucket, a cache miss at the
//! delivery and another at the ack; here they sit in a ring indexed by sequence, next to each
//! other. What does not fit the ring's order goes to a map beside it: a requeued message
//! delivered again with its old sequence below the ring, or one left unacked while many pass
//! it (the ring then hands its oldest entries to the map, so a stuck message never holds a
//! long span of empty places open).

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// Empty places the ring may hold beyond its live entries before its oldest go to the map.
const SPARE_PLACES: usize = 4096;

pub struct SequenceTable<T> {
    /// Place i holds sequence `base + i`; the front and the back are always live.
    ring: VecDeque<Option<T>>,
    base: u64,
    in_ring: usize,
    apart: FxHashMap<u64, T>,
}

impl<T> Default for SequenceTable<T> {
    fn default() -> SequenceTable<T> {
        SequenceTable { ring: VecDeque::new(), base: 0, in_ring: 0, apart: FxHashMap::default() }
    }
}

impl<T> SequenceTable<T> {
    pub fn len(&self) -> usize {
        self.in_ring + self.apart.len()
    }

    pub fn clear(&mut self) {
        self.ring.clear();
        self.in_ring = 0;
        self.apart.clear();
    }

    /// Adds a value; returns the one the sequence had, if any.
    pub fn insert(&mut self, sequence: u64, value: T) -> Option<T> {
        let index = self.index(sequence);
        if let Some(Some(place)) = index.and_then(|index| self.ring.get_mut(index)) {
            return Some(std::mem::replace(place, value));
        }
        if !self.apart.is_empty() {
            if let Some(earlier) = self.apart.get_mut(&sequence) {
                return Some(std::mem::replace(earlier, value));
            }
        }
        match index {
            _ if self.ring.is_empty() => {
                self.base = sequence;
                self.ring.push_back(Some(value));
            }
            Some(index) if index < self.ring.len() => self.ring[index] = Some(value),
            Some(index) if index - self.ring.len() <= SPARE_PLACES => {
                while self.ring.len() < index {
                    self.ring.push_back(None);
                }
                self.ring.push_back(Some(value));
            }
            _ => {
                self.apart.insert(sequence, value);
                return None;
            }
        }
        self.in_ring += 1;
        self.bound_span();
        None
    }

    pub fn remove(&mut self, sequence: u64) -> Option<T> {
        let place = self.index(sequence).and_then(|index| self.ring.get_mut(index));
        if let Some(value) = place.and_then(Option::take) {
            self.in_ring -= 1;
            self.trim();
            return Some(value);
        }
        if self.apart.is_empty() {
            return None;
        }
        self.apart.remove(&sequence)
    }

    /// The sequence's place in the ring, or past its end; None below it.
    fn index(&self, sequence: u64) -> Option<usize> {
        sequence.checked_sub(self.base).and_then(|offset| usize::try_from(offset).ok())
    }

    /// Every entry, the ring's in sequence order, then the others in no order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        let base = self.base;
        let ring = self
            .ring
            .iter()
            .enumerate()
            .filter_map(move |(index, place)| place.as_ref().map(|value| (base + index as u64, value)));
        ring.chain(self.apart.iter().map(|(sequence, value)| (*sequence, value)))
    }

    /// Drops the empty places at both ends.
    fn trim(&mut self) {
        while matches!(self.ring.front(), Some(None)) {
            self.ring.pop_front();
            self.base += 1;
        }
        while matches!(self.ring.back(), Some(None)) {
            self.ring.pop_back();
        }
    }

    /// Hands the oldest live entries to the map while the ring holds more empty places than
    /// `SPARE_PLACES` beyond its live entries: each entry moves at most once.
    fn bound_span(&mut self) {
        while self.ring.len() > self.in_ring * 2 + SPARE_PLACES {
            let Some(front) = self.ring.pop_front() else { break };
            let sequence = self.base;
            self.base += 1;
            if let Some(value) = front {
                self.in_ring -= 1;
                self.apart.insert(sequence, value);
            }
            self.trim();
        }
    }

    #[cfg(test)]
    fn places(&self) -> (usize, usize) {
        (self.ring.len(), self.apart.len())
    }
}

#[cfg(test)]
mod tests {
    use super::{SequenceTable, SPARE_PLACES};
    use std::collections::BTreeMap;

    #[test]
    fn in_order_deliveries_and_acks_stay_in_the_ring() {
        let mut table = SequenceTable::default();
        for sequence in 1..=1000u64 {
            assert!(table.insert(sequence, sequence * 10).is_none());
            if sequence > 100 {
                assert_eq!(table.remove(sequence - 100), Some((sequence - 100) * 10));
            }
        }
        assert_eq!(table.len(), 100);
        assert_eq!(table.places(), (100, 0), "no empty place, nothing apart");
        let listed: Vec<u64> = table.iter().map(|(sequence, _)| sequence).collect();
        assert_eq!(listed, (901..=1000).collect::<Vec<_>>());
        assert_eq!(table.remove(5), None, "already removed");
    }

    #[test]
    fn a_stuck_entry_does_not_hold_the_span_open() {
        // Sequence 1 stays unacked while a window of 100 moves past it.
        let mut table = SequenceTable::default();
        table.insert(1, 1u64);
        for sequence in 2..=100_000u64 {
            table.insert(sequence, sequence);
            if sequence > 101 {
                assert_eq!(table.remove(sequence - 100), Some(sequence - 100));
            }
        }
        let (ring, apart) = table.places();
        assert!(ring <= 100 * 2 + SPARE_PLACES + 1, "ring holds {ring} places");
        assert_eq!(apart, 1, "the stuck entry went apart");
        assert_eq!(table.len(), 101);
        assert_eq!(table.remove(1), Some(1));
        assert_eq!(table.insert(1, 2), None, "gone: inserted again");
        assert_eq!(table.len(), 101);
    }

    #[test]
    fn matches_a_map_under_any_order() {
        // Requeued messages come back with old sequences, below the ring; gaps come from other
        // consumers' and basic.get's deliveries; a far sequence lands apart.
        let mut table = SequenceTable::default();
        let mut model = BTreeMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut high = 1u64;
        for step in 0..200_000u64 {
            let roll = next() % 100;
            let sequence = match roll {
                0..=49 => {
                    high += 1 + next() % 3;
                    high
                }
                50..=54 => high.saturating_sub(next() % 20_000),
                55 => high + 10_000 + next() % 10_000,
                _ => {
                    let key = model.keys().next().copied().unwrap_or(high);
                    let key = if roll < 90 { key } else { key + next() % 50 };
                    assert_eq!(table.remove(key), model.remove(&key), "step {step}: remove {key}");
                    continue;
                }
            };
            assert_eq!(table.insert(sequence, step), model.insert(sequence, step), "step {step}: insert {sequence}");
            assert_eq!(table.len(), model.len(), "step {step}");
        }
        let mut listed: Vec<(u64, u64)> = table.iter().map(|(sequence, value)| (sequence, *value)).collect();
        listed.sort_unstable();
        assert_eq!(listed, model.into_iter().collect::<Vec<_>>());
        table.clear();
        assert_eq!(table.len(), 0);
        assert!(table.insert(7, 7).is_none());
    }
}
