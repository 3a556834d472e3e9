//! Identifiers that cross shards: queues, exchanges, connections, channel holders, and the
//! publish a queue must confirm. A leaf: the store, the broker and the shards all name them.
//!
//! A `QueueId` carries its owner shard in the top 16 bits, so routing a message never needs a
//! lookup to know which shard to send it to.

use std::fmt;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u64);

impl QueueId {
    const SHARD_SHIFT: u32 = 48;

    pub fn new(owner_shard: usize, sequence: u64) -> QueueId {
        QueueId(((owner_shard as u64) << Self::SHARD_SHIFT) | (sequence & ((1 << Self::SHARD_SHIFT) - 1)))
    }

    pub fn owner(self) -> usize {
        (self.0 >> Self::SHARD_SHIFT) as usize
    }

    /// The writer's global sequence number: creation order, never reused.
    pub fn sequence(self) -> u64 {
        self.0 & ((1 << Self::SHARD_SHIFT) - 1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExchangeId(pub u64);

/// Where a binding leads: a queue, or another exchange (exchange-to-exchange bindings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Queue(QueueId),
    Exchange(ExchangeId),
}

/// A connection, named by the shard that owns its socket and a per-shard counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub shard: u16,
    pub local: u64,
}

impl ConnId {
    pub fn shard(self) -> usize {
        usize::from(self.shard)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.shard, self.local)
    }
}

/// The channel that holds consumers and unacknowledged messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holder {
    pub conn: ConnId,
    pub channel: u16,
    /// Which opening of that channel number: a client may close channel 1 and open it again,
    /// and a late message meant for the old one must not reach the new one.
    pub incarnation: u32,
}

/// A consumer's tag as the broker passes it around: in every delivery, from the queue's shard
/// to the connection's. Tags up to `INLINE_TAG_BYTES` (RabbitMQ's generated `amq.ctag-...` tags
/// and most clients' own) are copied inline; longer ones share one allocation. An `Arc<str>`
/// in every delivery would change its reference count on two cores per message, pulling its
/// cache line back and forth; a copy of a few bytes costs less.
#[derive(Clone)]
pub struct ConsumerTag(TagBytes);

/// The inline capacity of a `ConsumerTag` (the whole value is 40 bytes): RabbitMQ's generated
/// tags take 31, pika's 38.
pub const INLINE_TAG_BYTES: usize = 38;

#[derive(Clone)]
enum TagBytes {
    Inline(InlineTag),
    Shared(Arc<str>),
}

/// A short tag's bytes, zero past its length: copied and compared whole, as a few wide moves
/// and compares instead of a copy and a `memcmp` call per field (a tag is copied into every
/// delivery and compared at every ack).
#[derive(Clone, Copy, PartialEq, Eq)]
struct InlineTag {
    length: u8,
    bytes: [u8; INLINE_TAG_BYTES],
}

impl ConsumerTag {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            TagBytes::Inline(InlineTag { length, bytes }) => {
                let text = &bytes[..usize::from(*length)];
                debug_assert!(std::str::from_utf8(text).is_ok());
                // SAFETY: only `From<&str>` fills `bytes`, with the whole of a `str` of `length`
                // bytes, and nothing changes them after: they are valid UTF-8. Checking them
                // again on every read cost more than the rest of a delivery's tag handling.
                unsafe { std::str::from_utf8_unchecked(text) }
            }
            TagBytes::Shared(text) => text,
        }
    }
}

impl From<&str> for ConsumerTag {
    fn from(text: &str) -> ConsumerTag {
        if text.len() <= INLINE_TAG_BYTES {
            let mut bytes = [0; INLINE_TAG_BYTES];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            return ConsumerTag(TagBytes::Inline(InlineTag { length: text.len() as u8, bytes }));
        }
        ConsumerTag(TagBytes::Shared(Arc::from(text)))
    }
}

impl From<String> for ConsumerTag {
    fn from(text: String) -> ConsumerTag {
        ConsumerTag::from(text.as_str())
    }
}

impl std::ops::Deref for ConsumerTag {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for ConsumerTag {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ConsumerTag {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for ConsumerTag {
    /// A tag is inline exactly when it fits (`From<&str>`), so tags of the two kinds differ.
    fn eq(&self, other: &ConsumerTag) -> bool {
        match (&self.0, &other.0) {
            (TagBytes::Inline(mine), TagBytes::Inline(theirs)) => mine == theirs,
            (TagBytes::Shared(mine), TagBytes::Shared(theirs)) => mine == theirs,
            _ => false,
        }
    }
}

impl Eq for ConsumerTag {}

/// As `str` hashes, so a map keyed by tags can be looked up with a `&str`.
impl std::hash::Hash for ConsumerTag {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for ConsumerTag {
    fn partial_cmp(&self, other: &ConsumerTag) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ConsumerTag {
    fn cmp(&self, other: &ConsumerTag) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for ConsumerTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ConsumerTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A consumer as its channel numbers it: chosen by the channel at basic.consume, unique among
/// the channel's consumers, and carried in place of the tag in every delivery and flow credit.
/// The queue finds a consumer by it (with its holder) at each ack, and the connection finds the
/// tag to write by it: a 4-byte key is copied, compared and hashed at once, where the tag took
/// a 40-byte copy per delivery and per unacked message, and a compare per ack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConsumerKey(pub u32);

/// Which publish of which channel a queue must confirm.
#[derive(Clone, Copy, Debug)]
pub struct ConfirmTo {
    pub holder: Holder,
    pub publish_sequence: u64,
}

#[cfg(test)]
mod tests {
    use super::{ConsumerTag, INLINE_TAG_BYTES};
    use std::collections::HashMap;

    #[test]
    fn short_and_long_tags_read_back_compare_and_hash_as_their_text() {
        let generated = "amq.ctag-Yp0xCrLbUYO9VvwaaUvoXw";
        let long = "t".repeat(255);
        let edge = "e".repeat(INLINE_TAG_BYTES);
        for text in [generated, "", long.as_str(), edge.as_str(), "ünïcødé"] {
            let tag = ConsumerTag::from(text);
            assert_eq!(tag.as_str(), text);
            assert_eq!(tag.clone(), ConsumerTag::from(text.to_string()));
            let mut map = HashMap::new();
            map.insert(tag, 1);
            assert_eq!(map.get(text), Some(&1), "looked up by &str");
        }
        assert_ne!(ConsumerTag::from("a"), ConsumerTag::from("b"));
        // Compared whole: a shorter tag is not equal to a longer one it begins, at the inline
        // edge and past it.
        let longer_edge = "e".repeat(INLINE_TAG_BYTES + 1);
        assert_ne!(ConsumerTag::from("ab"), ConsumerTag::from("a"));
        assert_ne!(ConsumerTag::from(edge.as_str()), ConsumerTag::from(longer_edge.as_str()));
        assert_ne!(ConsumerTag::from(long.as_str()), ConsumerTag::from(&long[1..]));
        assert!(ConsumerTag::from("a") < ConsumerTag::from("b"));
        assert_eq!(std::mem::size_of::<ConsumerTag>(), 40);
    }
}
