//! The consistent-hash exchange (`x-consistent-hash`), as the rabbitmq_consistent_hash_exchange
//! plugin of RabbitMQ 3.10 has it: each bound destination owns as many buckets as its binding
//! key says (its weight, a positive integer), buckets are numbered in the order destinations
//! were bound, and a message goes to the owner of the bucket that jump consistent hashing
//! (Lamping and Veach) picks for the hash of its routing key, of the header named by the
//! exchange argument `hash-header`, or of the property named by `hash-property`
//! (`message_id`, `correlation_id` or `timestamp`).
//!
//! Adding a destination appends its buckets, so jump hashing moves only the keys the new
//! buckets take; removing one closes the gap, as the plugin does. The bucket order is the
//! bind order, and the definitions are written in that order (`RoutingTable::bindings`), so a
//! restart rebuilds the same buckets and routes every key as before. The hash is computed here
//! (FNV-1a, then a 64-bit finaliser), never with a per-process seed.
//!
//! It owns no I/O and never allocates while routing.

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable};

use super::error::{AmqpError, PRECONDITION_FAILED};
use super::queue_args::text;

/// Bounds the buckets of one exchange: a binding key above it is refused, so a client cannot
/// make the broker allocate an arbitrary amount of memory with one bind.
pub const WEIGHT_MAX: u32 = 100_000;

/// What a message is hashed on (the exchange arguments `hash-header` and `hash-property`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOn {
    RoutingKey,
    Header(String),
    Property(HashProperty),
}

/// The message properties `hash-property` may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashProperty {
    MessageId,
    CorrelationId,
    Timestamp,
}

impl HashOn {
    /// Reads validated exchange arguments (`validate_arguments`).
    pub fn of(arguments: &FieldTable) -> HashOn {
        let table = arguments.inner();
        if let Some(header) = table.get("hash-header").and_then(long_string) {
            return HashOn::Header(header);
        }
        match table.get("hash-property").and_then(long_string).as_deref() {
            Some("message_id") => HashOn::Property(HashProperty::MessageId),
            Some("correlation_id") => HashOn::Property(HashProperty::CorrelationId),
            Some("timestamp") => HashOn::Property(HashProperty::Timestamp),
            _ => HashOn::RoutingKey,
        }
    }

    /// Whether routing reads the message's properties (the route cannot be kept per key).
    pub fn reads_properties(&self) -> bool {
        !matches!(self, HashOn::RoutingKey)
    }

    /// The hash of what a message is routed on. A header or property the message lacks hashes
    /// as one fixed value (the plugin hashes Erlang's `undefined`): such messages all go to
    /// one destination.
    pub fn hash(&self, routing_key: &[u8], properties: Option<&BasicProperties>) -> u64 {
        match self {
            HashOn::RoutingKey => hash_bytes(routing_key),
            HashOn::Header(name) => {
                let value = properties
                    .and_then(|found| found.headers().as_ref())
                    .and_then(|headers| headers.inner().get(name.as_str()));
                value.map_or(UNDEFINED_HASH, hash_value)
            }
            HashOn::Property(property) => {
                let Some(properties) = properties else { return UNDEFINED_HASH };
                match property {
                    HashProperty::MessageId => {
                        properties.message_id().as_ref().map(|id| hash_bytes(id.as_str().as_bytes()))
                    }
                    HashProperty::CorrelationId => {
                        properties.correlation_id().as_ref().map(|id| hash_bytes(id.as_str().as_bytes()))
                    }
                    HashProperty::Timestamp => {
                        properties.timestamp().map(|stamp| hash_bytes(stamp.to_string().as_bytes()))
                    }
                }
                .unwrap_or(UNDEFINED_HASH)
            }
        }
    }
}

fn long_string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(_) => text(value),
        _ => None,
    }
}

/// exchange.declare of a consistent-hash exchange: `hash-header` and `hash-property` exclude
/// each other, and the property must be one the plugin knows (its texts).
pub fn validate_arguments(arguments: &FieldTable) -> Result<(), AmqpError> {
    let table = arguments.inner();
    let header = table.get("hash-header").and_then(long_string);
    let property = table.get("hash-property").and_then(long_string);
    match (header, property) {
        (Some(_), Some(_)) => {
            Err(AmqpError::new(PRECONDITION_FAILED, "hash-header and hash-property are mutually exclusive"))
        }
        (None, Some(property)) if !matches!(property.as_str(), "message_id" | "correlation_id" | "timestamp") => {
            Err(AmqpError::new(PRECONDITION_FAILED, format!("Unsupported property: {property}")))
        }
        _ => Ok(()),
    }
}

/// The weight a binding key gives (`validate_binding` of the plugin): a positive integer,
/// at most `WEIGHT_MAX`. The error is the reason RabbitMQ prints after "binding invalid: ".
pub fn weight(routing_key: &str) -> Result<u32, String> {
    let parsed: Result<i64, _> = routing_key.parse();
    match parsed {
        Err(_) => Err(format!("The binding key must be an integer: {}", erlang_binary(routing_key))),
        Ok(number) if number < 1 => Err("The binding key must be greater than 0".into()),
        Ok(number) if number > i64::from(WEIGHT_MAX) => {
            Err(format!("The binding key must be at most {WEIGHT_MAX} (this broker's bound on a weight)"))
        }
        Ok(number) => Ok(u32::try_from(number).unwrap_or(WEIGHT_MAX)),
    }
}

/// A binding key as Erlang's `~p` prints a binary: `<<"abc">>`.
fn erlang_binary(text: &str) -> String {
    if text.is_empty() {
        return "<<>>".into();
    }
    format!("<<\"{}\">>", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The buckets of one exchange: destinations in bind order, each with its weight.
#[derive(Clone, Debug)]
pub struct HashRing<D> {
    pub hash_on: HashOn,
    /// (destination, weight) in the order their buckets are numbered.
    members: Vec<(D, u32)>,
    /// The owner of each bucket, rebuilt when members change (off the publish path).
    buckets: Vec<D>,
}

impl<D: Copy + Eq> HashRing<D> {
    pub fn new(hash_on: HashOn) -> HashRing<D> {
        HashRing { hash_on, members: Vec::new(), buckets: Vec::new() }
    }

    /// A destination's first binding appends its buckets; another binding of a destination
    /// that has buckets adds none (as the plugin does).
    pub fn add(&mut self, destination: D, weight: u32) {
        if self.members.iter().any(|(member, _)| *member == destination) {
            return;
        }
        self.members.push((destination, weight));
        self.buckets.extend(std::iter::repeat_n(destination, weight as usize));
    }

    /// Removes a destination's buckets; the later buckets move down to close the gap.
    pub fn remove(&mut self, destination: D) {
        if let Some(position) = self.members.iter().position(|(member, _)| *member == destination) {
            self.members.remove(position);
            self.buckets.retain(|owner| *owner != destination);
        }
    }

    /// Destinations in bucket order.
    pub fn members(&self) -> impl Iterator<Item = D> + '_ {
        self.members.iter().map(|(member, _)| *member)
    }

    /// The destination of a message whose routed-on value hashes to `hash`.
    pub fn route(&self, hash: u64) -> Option<D> {
        let count = i64::try_from(self.buckets.len()).ok()?;
        if count == 0 {
            return None;
        }
        let bucket = jump_consistent_hash(hash, count);
        usize::try_from(bucket).ok().and_then(|index| self.buckets.get(index)).copied()
    }
}

/// Jump consistent hashing (Lamping and Veach, 2014): a bucket in 0..buckets, such that
/// growing the bucket count moves only the keys the new buckets take.
pub fn jump_consistent_hash(mut key: u64, buckets: i64) -> i64 {
    let (mut bucket, mut next) = (-1_i64, 0_i64);
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1_u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket
}

/// The hash of a missing header or property.
const UNDEFINED_HASH: u64 = 0x9e37_79b9_7f4a_7c15;

/// FNV-1a over the bytes, then a finaliser (splitmix64's) so that keys differing in their last
/// byte land far apart.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// A header value hashed with its type, as the plugin hashes the typed Erlang term: the
/// string "1" and the integer 1 are different keys.
fn hash_value(value: &AMQPValue) -> u64 {
    let typed = match value {
        AMQPValue::LongString(text) => return hash_bytes(text.as_bytes()),
        AMQPValue::ShortString(text) => return hash_bytes(text.as_str().as_bytes()),
        other => match super::queue_args::integer(other) {
            Some(number) => format!("integer:{number}"),
            None => format!("{other:?}"),
        },
    };
    hash_bytes(typed.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator of random routing keys (xorshift64*).
    struct Keys(u64);

    impl Keys {
        fn next_key(&mut self, buffer: &mut String) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let value = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
            buffer.clear();
            use std::fmt::Write;
            let _ = write!(buffer, "key-{value:x}");
        }
    }

    #[test]
    fn ten_equal_weights_share_a_million_random_keys_within_five_percent() {
        let mut ring = HashRing::new(HashOn::RoutingKey);
        for queue in 0..10_u32 {
            ring.add(queue, 1);
        }
        let mut counts = [0_u32; 10];
        let mut keys = Keys(0x1234_5678_9abc_def1);
        let mut key = String::new();
        for _ in 0..1_000_000 {
            keys.next_key(&mut key);
            let queue = ring.route(HashOn::RoutingKey.hash(key.as_bytes(), None)).expect("a bucket");
            counts[queue as usize] += 1;
        }
        for (queue, count) in counts.iter().enumerate() {
            let share = f64::from(*count) / 100_000.0;
            assert!((0.95..=1.05).contains(&share), "queue {queue} got {count} of 1M keys: {counts:?}");
        }
    }

    #[test]
    fn weights_split_the_keys_in_proportion() {
        let mut ring = HashRing::new(HashOn::RoutingKey);
        ring.add('a', 1);
        ring.add('b', 3);
        let mut b = 0;
        for number in 0..100_000 {
            if ring.route(hash_bytes(format!("{number}").as_bytes())) == Some('b') {
                b += 1;
            }
        }
        assert!((72_000..78_000).contains(&b), "{b} of 100000 for a weight of 3 in 4");
    }

    #[test]
    fn adding_a_destination_moves_only_the_keys_it_takes() {
        let mut ring = HashRing::new(HashOn::RoutingKey);
        for queue in 0..4_u32 {
            ring.add(queue, 1);
        }
        let before: Vec<u32> =
            (0..10_000).map(|n: u32| ring.route(hash_bytes(&n.to_le_bytes())).expect("routed")).collect();
        ring.add(4, 1);
        let after: Vec<u32> =
            (0..10_000).map(|n: u32| ring.route(hash_bytes(&n.to_le_bytes())).expect("routed")).collect();
        for (old, new) in before.iter().zip(&after) {
            assert!(old == new || *new == 4, "a key moved from {old} to {new}, not to the new queue");
        }
        ring.remove(4);
        let again: Vec<u32> =
            (0..10_000).map(|n: u32| ring.route(hash_bytes(&n.to_le_bytes())).expect("routed")).collect();
        assert_eq!(before, again, "removing the new queue gives every key its old queue back");
        ring.remove(0);
        assert!(ring.members().all(|member| member != 0));
        assert!((0..1000_u32).all(|n| ring.route(hash_bytes(&n.to_le_bytes())) != Some(0)));
    }

    #[test]
    fn routing_is_the_same_for_the_same_key_and_bind_order() {
        let build = || {
            let mut ring = HashRing::new(HashOn::RoutingKey);
            ring.add("q1", 2);
            ring.add("q2", 5);
            ring.add("q1", 7);
            ring
        };
        let (first, second) = (build(), build());
        for number in 0..1000 {
            let hash = hash_bytes(format!("order-{number}").as_bytes());
            assert_eq!(first.route(hash), second.route(hash));
        }
        assert_eq!(first.buckets.len(), 7, "a second binding of q1 adds no buckets");
        assert_eq!(HashRing::<u8>::new(HashOn::RoutingKey).route(1), None);
    }

    #[test]
    fn binding_keys_are_weights() {
        assert_eq!(weight("10"), Ok(10));
        assert_eq!(weight("abc"), Err("The binding key must be an integer: <<\"abc\">>".into()));
        assert_eq!(weight("0"), Err("The binding key must be greater than 0".into()));
        assert_eq!(weight(""), Err("The binding key must be an integer: <<>>".into()));
        assert_eq!(weight("-3"), Err("The binding key must be greater than 0".into()));
        assert!(weight("100001").is_err());
    }

    #[test]
    fn arguments_choose_what_is_hashed() {
        let mut header = FieldTable::default();
        header.insert("hash-header".into(), AMQPValue::LongString("user".into()));
        assert_eq!(HashOn::of(&header), HashOn::Header("user".into()));
        let mut property = FieldTable::default();
        property.insert("hash-property".into(), AMQPValue::LongString("message_id".into()));
        assert_eq!(HashOn::of(&property), HashOn::Property(HashProperty::MessageId));
        assert!(validate_arguments(&property).is_ok());
        let mut both = header.clone();
        both.insert("hash-property".into(), AMQPValue::LongString("message_id".into()));
        let error = validate_arguments(&both).expect_err("both");
        assert_eq!(error.reply_text, "PRECONDITION_FAILED - hash-header and hash-property are mutually exclusive");
        let mut unknown = FieldTable::default();
        unknown.insert("hash-property".into(), AMQPValue::LongString("app_id".into()));
        let error = validate_arguments(&unknown).expect_err("unknown");
        assert_eq!(error.reply_text, "PRECONDITION_FAILED - Unsupported property: app_id");
    }

    #[test]
    fn a_header_or_property_is_hashed_and_a_missing_one_is_one_value() {
        let on_header = HashOn::Header("user".into());
        let mut headers = FieldTable::default();
        headers.insert("user".into(), AMQPValue::LongString("alice".into()));
        let with = BasicProperties::default().with_headers(headers);
        assert_eq!(on_header.hash(b"ignored", Some(&with)), hash_bytes(b"alice"));
        assert_eq!(on_header.hash(b"a", None), on_header.hash(b"b", Some(&BasicProperties::default())));
        let on_id = HashOn::Property(HashProperty::MessageId);
        let with_id = BasicProperties::default().with_message_id("m-1".into());
        assert_eq!(on_id.hash(b"", Some(&with_id)), hash_bytes(b"m-1"));
        let on_time = HashOn::Property(HashProperty::Timestamp);
        let stamped = BasicProperties::default().with_timestamp(1700);
        assert_eq!(on_time.hash(b"", Some(&stamped)), hash_bytes(b"1700"));
    }
}
