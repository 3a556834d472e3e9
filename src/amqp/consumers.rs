//! A channel's consumers, found by tag (basic.consume, basic.cancel) and by key (every
//! delivery: `ConsumerKey`).

use rustc_hash::FxHashMap;

use crate::ids::{ConsumerKey, ConsumerTag, QueueId};

#[derive(Clone, Debug)]
pub struct ConsumerInfo {
    pub tag: ConsumerTag,
    pub queue: QueueId,
    /// The consumer timeout of its deliveries: its own `x-consumer-timeout`, else its queue's,
    /// else the broker's (`--consumer-timeout`); None for none.
    pub timeout_ms: Option<u64>,
    /// The channel's basic.qos prefetch_count (global=false) when the consumer started: its
    /// own limit, which the channel's limit may lower (see `ChannelLimit::consumer_prefetch`).
    pub own_prefetch: u32,
    pub no_ack: bool,
}

#[derive(Default)]
pub struct Consumers {
    by_key: FxHashMap<ConsumerKey, ConsumerInfo>,
    by_tag: FxHashMap<ConsumerTag, ConsumerKey>,
    /// The last key given out; keys go up and wrap, skipping those in use.
    last_key: u32,
}

impl Consumers {
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn clear(&mut self) {
        self.by_key.clear();
        self.by_tag.clear();
    }

    pub fn contains_tag(&self, tag: &str) -> bool {
        self.by_tag.contains_key(tag)
    }

    pub fn get(&self, key: ConsumerKey) -> Option<&ConsumerInfo> {
        self.by_key.get(&key)
    }

    pub fn key_of(&self, tag: &str) -> Option<ConsumerKey> {
        self.by_tag.get(tag).copied()
    }

    pub fn by_tag(&self, tag: &str) -> Option<&ConsumerInfo> {
        self.key_of(tag).and_then(|key| self.by_key.get(&key))
    }

    /// Adds a consumer under a key no other consumer of the channel has; the caller has
    /// checked that its tag is not in use.
    pub fn insert(&mut self, info: ConsumerInfo) -> ConsumerKey {
        debug_assert!(!self.contains_tag(&info.tag), "consumer tag {} added twice", info.tag);
        let key = loop {
            self.last_key = self.last_key.wrapping_add(1);
            let key = ConsumerKey(self.last_key);
            if !self.by_key.contains_key(&key) {
                break key;
            }
        };
        self.by_tag.insert(info.tag.clone(), key);
        self.by_key.insert(key, info);
        key
    }

    pub fn remove_tag(&mut self, tag: &str) -> Option<(ConsumerKey, ConsumerInfo)> {
        let key = self.by_tag.remove(tag)?;
        self.by_key.remove(&key).map(|info| (key, info))
    }

    pub fn iter(&self) -> impl Iterator<Item = (ConsumerKey, &ConsumerInfo)> {
        self.by_key.iter().map(|(key, info)| (*key, info))
    }
}

#[cfg(test)]
mod tests {
    use super::{ConsumerInfo, Consumers};
    use crate::ids::QueueId;

    fn info(tag: &str) -> ConsumerInfo {
        ConsumerInfo { tag: tag.into(), queue: QueueId::new(0, 1), timeout_ms: None, own_prefetch: 0, no_ack: false }
    }

    #[test]
    fn consumers_are_found_by_tag_and_key_and_keys_are_not_reused_while_held() {
        let mut consumers = Consumers::default();
        let a = consumers.insert(info("a"));
        let b = consumers.insert(info("b"));
        assert_ne!(a, b);
        assert_eq!(consumers.len(), 2);
        assert_eq!(consumers.key_of("a"), Some(a));
        assert_eq!(consumers.get(b).map(|info| info.tag.as_str()), Some("b"));
        assert_eq!(consumers.by_tag("b").map(|info| info.tag.as_str()), Some("b"));
        assert!(consumers.contains_tag("a") && !consumers.contains_tag("c"));
        // A consumer cancelled and started again under its tag gets a new key: a delivery
        // meant for the old one does not reach the new one.
        let (removed, _) = consumers.remove_tag("a").expect("a is there");
        assert_eq!(removed, a);
        assert!(consumers.get(a).is_none() && consumers.remove_tag("a").is_none());
        let again = consumers.insert(info("a"));
        assert_ne!(again, a);
        // Past the wrap, a key still held is skipped.
        consumers.last_key = u32::MAX - 1;
        let held = consumers.insert(info("held"));
        consumers.last_key = held.0.wrapping_sub(1);
        let next = consumers.insert(info("next"));
        assert_ne!(next, held);
        assert_eq!(consumers.len(), 4);
        consumers.clear();
        assert_eq!(consumers.len(), 0);
        assert!(consumers.key_of("b").is_none());
    }
}
