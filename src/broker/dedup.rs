//! Message deduplication, as LavinMQ does it: a queue or an exchange declared with
//! `x-message-deduplication: true` remembers the value of one header
//! (`x-deduplication-header`, by default a header of that same name) of the messages it took,
//! and drops a message whose value it still remembers.
//!
//! The cache holds at most `x-cache-size` values (default `DEDUP_CACHE_ENTRIES_DEFAULT`); when
//! full, the value inserted longest ago is forgotten first (LavinMQ's order: a duplicate does
//! not refresh its value). A value may expire: after `x-cache-ttl` milliseconds, or after the
//! message's own `x-cache-ttl` header, which wins. A message without the header is never a
//! duplicate. The cache lives where the checks happen, on one shard (a queue's owner, or the
//! exchange's owner shard), so it needs no lock. Nothing here does I/O.

use std::collections::VecDeque;
use std::sync::Arc;

use amq_protocol::types::{AMQPValue, FieldTable};
use rustc_hash::FxHashMap;

use super::error::{AmqpError, PRECONDITION_FAILED};
use super::headers_match::type_name;
use super::queue_args::{integer, text};
use crate::codec::message::Message;
use crate::limits::{DEDUP_CACHE_BYTES_MAX, DEDUP_CACHE_ENTRIES_DEFAULT, DEDUP_CACHE_ENTRIES_MAX};

/// The header read when `x-deduplication-header` names none (LavinMQ's default).
pub const DEFAULT_HEADER: &str = "x-deduplication-header";

/// What a deduplicating queue or exchange was declared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DedupSettings {
    pub cache_size: usize,
    pub cache_ttl_ms: Option<u64>,
    pub header: String,
}

impl DedupSettings {
    /// The settings of validated (or recovered) arguments; None unless
    /// `x-message-deduplication` is true.
    pub fn from_arguments(arguments: &FieldTable) -> Option<DedupSettings> {
        let table = arguments.inner();
        if !matches!(table.get("x-message-deduplication"), Some(AMQPValue::Boolean(true))) {
            return None;
        }
        let cache_size = table
            .get("x-cache-size")
            .and_then(integer)
            .and_then(|size| usize::try_from(size).ok())
            .filter(|size| *size > 0)
            .unwrap_or(DEDUP_CACHE_ENTRIES_DEFAULT)
            .min(DEDUP_CACHE_ENTRIES_MAX);
        let cache_ttl_ms = table.get("x-cache-ttl").and_then(integer).and_then(|ttl| u64::try_from(ttl).ok());
        let header = table.get("x-deduplication-header").and_then(text).unwrap_or_else(|| DEFAULT_HEADER.into());
        Some(DedupSettings { cache_size, cache_ttl_ms, header })
    }
}

/// Checks the deduplication arguments of a queue or exchange about to be created; `kind` is
/// "queue" or "exchange". A bad value is 406 naming the argument, in RabbitMQ's text shape.
pub fn validate(arguments: &FieldTable, kind: &str, name: &str, vhost: &str) -> Result<(), AmqpError> {
    let table = arguments.inner();
    for (argument, check) in CHECKS {
        let Some(value) = table.get(*argument) else { continue };
        if let Err(reason) = check(value) {
            let text = format!("invalid arg '{argument}' for {kind} '{name}' in vhost '{vhost}': {reason}");
            return Err(AmqpError::new(PRECONDITION_FAILED, text));
        }
    }
    Ok(())
}

type Check = fn(&AMQPValue) -> Result<(), String>;

const CHECKS: &[(&str, Check)] = &[
    ("x-message-deduplication", check_flag),
    ("x-cache-size", check_cache_size),
    ("x-cache-ttl", check_cache_ttl),
    ("x-deduplication-header", check_header_name),
];

fn check_flag(value: &AMQPValue) -> Result<(), String> {
    match value {
        AMQPValue::Boolean(_) => Ok(()),
        other => Err(format!("{{unacceptable_type,{}}}", type_name(other))),
    }
}

fn check_cache_size(value: &AMQPValue) -> Result<(), String> {
    match integer(value) {
        None => Err(format!("{{unacceptable_type,{}}}", type_name(value))),
        Some(size) if size <= 0 => Err(format!("{{value_not_positive,{size}}}")),
        Some(size) if size > DEDUP_CACHE_ENTRIES_MAX as i64 => {
            Err(format!("{{value_too_large,{size},max,{DEDUP_CACHE_ENTRIES_MAX}}}"))
        }
        Some(_) => Ok(()),
    }
}

fn check_cache_ttl(value: &AMQPValue) -> Result<(), String> {
    match integer(value) {
        None => Err(format!("{{unacceptable_type,{}}}", type_name(value))),
        Some(ttl) if ttl <= 0 => Err(format!("{{value_not_positive,{ttl}}}")),
        Some(_) => Ok(()),
    }
}

fn check_header_name(value: &AMQPValue) -> Result<(), String> {
    match text(value) {
        None => Err(format!("{{unacceptable_type,{}}}", type_name(value))),
        Some(name) if name.is_empty() => Err("\"empty header name\"".into()),
        Some(_) => Ok(()),
    }
}

/// The header value that identifies a message, typed so that the string "1" and the integer
/// 1 stay different values (LavinMQ compares field values).
type Key = Arc<[u8]>;

struct Remembered {
    /// Position in `order`, so a stale order entry (the value expired and came again) is
    /// told apart from the current one.
    inserted: u64,
    expires_at_ms: Option<u64>,
}

/// The values one queue or exchange remembers, bounded by `cache_size` entries and by
/// `DEDUP_CACHE_BYTES_MAX` bytes of values.
pub struct DedupCache {
    settings: DedupSettings,
    remembered: FxHashMap<Key, Remembered>,
    /// Values in insertion order, oldest first; may hold stale entries (see `Remembered`),
    /// compacted when it grows past twice the live ones.
    order: VecDeque<(u64, Key)>,
    next_insert: u64,
    key_bytes: usize,
}

impl DedupCache {
    pub fn new(settings: DedupSettings) -> DedupCache {
        DedupCache { settings, remembered: FxHashMap::default(), order: VecDeque::new(), next_insert: 0, key_bytes: 0 }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.remembered.len()
    }

    /// Whether `message` repeats a remembered value; if not, and it has one, the value is
    /// remembered now. `now_ms` is the broker's monotonic clock.
    pub fn is_duplicate(&mut self, message: &Message, now_ms: u64) -> bool {
        let Some((key, own_ttl_ms)) = self.key_of(message) else {
            return false;
        };
        self.check_and_insert(key, own_ttl_ms, now_ms)
    }

    /// The dedup key and the message's own `x-cache-ttl` (ms), if it has the header.
    fn key_of(&self, message: &Message) -> Option<(Key, Option<u64>)> {
        let headers = message.headers()?;
        let headers = headers.inner();
        let key = encode_key(headers.get(self.settings.header.as_str())?);
        let own_ttl_ms = headers.get("x-cache-ttl").and_then(integer).and_then(|ttl| u64::try_from(ttl).ok());
        Some((key, own_ttl_ms))
    }

    /// The cache operation itself, by key (what the unit tests drive).
    pub fn check_and_insert(&mut self, key: Key, own_ttl_ms: Option<u64>, now_ms: u64) -> bool {
        if let Some(found) = self.remembered.get(&key) {
            match found.expires_at_ms {
                Some(deadline) if deadline <= now_ms => {
                    self.forget(&key);
                }
                _ => return true,
            }
        }
        let ttl_ms = own_ttl_ms.or(self.settings.cache_ttl_ms);
        while !self.remembered.is_empty()
            && (self.remembered.len() >= self.settings.cache_size || self.key_bytes + key.len() > DEDUP_CACHE_BYTES_MAX)
        {
            self.evict_oldest();
        }
        let inserted = self.next_insert;
        self.next_insert += 1;
        self.key_bytes += key.len();
        self.order.push_back((inserted, key.clone()));
        self.remembered
            .insert(key, Remembered { inserted, expires_at_ms: ttl_ms.map(|ttl| now_ms.saturating_add(ttl)) });
        if self.order.len() > 2 * self.remembered.len() + 16 {
            let remembered = &self.remembered;
            self.order.retain(|(inserted, key)| remembered.get(key).is_some_and(|found| found.inserted == *inserted));
        }
        false
    }

    fn forget(&mut self, key: &Key) {
        if self.remembered.remove(key).is_some() {
            self.key_bytes -= key.len();
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((inserted, key)) = self.order.pop_front() {
            if self.remembered.get(&key).is_some_and(|found| found.inserted == inserted) {
                self.forget(&key);
                return;
            }
        }
    }
}

/// A header value as bytes: a type tag, then strings as they are, integers as decimal, and
/// any other type as its debug form (stable within one broker run, which is all a cache needs).
fn encode_key(value: &AMQPValue) -> Key {
    if let Some(number) = integer(value) {
        return Arc::from(format!("i{number}").into_bytes());
    }
    match value {
        AMQPValue::LongString(text) => [b"s".as_slice(), text.as_bytes()].concat().into(),
        AMQPValue::ShortString(text) => [b"s".as_slice(), text.as_str().as_bytes()].concat().into(),
        other => Arc::from(format!("o{other:?}").into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{LongString, ShortString};

    fn settings(cache_size: usize, cache_ttl_ms: Option<u64>) -> DedupSettings {
        DedupSettings { cache_size, cache_ttl_ms, header: DEFAULT_HEADER.into() }
    }

    fn key(text: &str) -> Key {
        Arc::from(text.as_bytes())
    }

    #[test]
    fn a_value_seen_is_a_duplicate_until_evicted_by_newer_ones() {
        let mut cache = DedupCache::new(settings(2, None));
        assert!(!cache.check_and_insert(key("a"), None, 0));
        assert!(cache.check_and_insert(key("a"), None, 0));
        assert!(!cache.check_and_insert(key("b"), None, 0));
        assert!(!cache.check_and_insert(key("c"), None, 0), "evicts a, the oldest");
        assert_eq!(cache.len(), 2);
        assert!(!cache.check_and_insert(key("a"), None, 0), "a was forgotten");
        assert!(cache.check_and_insert(key("c"), None, 0));
    }

    #[test]
    fn a_duplicate_does_not_refresh_its_place() {
        let mut cache = DedupCache::new(settings(2, None));
        cache.check_and_insert(key("a"), None, 0);
        cache.check_and_insert(key("b"), None, 0);
        assert!(cache.check_and_insert(key("a"), None, 0));
        cache.check_and_insert(key("c"), None, 0);
        assert!(!cache.check_and_insert(key("a"), None, 0), "a was inserted first, so evicted first");
    }

    #[test]
    fn values_expire_after_the_cache_ttl_or_their_own() {
        let mut cache = DedupCache::new(settings(10, Some(100)));
        cache.check_and_insert(key("a"), None, 1_000);
        cache.check_and_insert(key("b"), Some(1_000), 1_000);
        assert!(cache.check_and_insert(key("a"), None, 1_099));
        assert!(!cache.check_and_insert(key("a"), None, 1_100), "expired at 1_100");
        assert!(cache.check_and_insert(key("b"), None, 1_999), "its own ttl wins");
        assert!(!cache.check_and_insert(key("b"), None, 2_000));
    }

    #[test]
    fn order_stays_bounded_when_values_expire_and_return() {
        let mut cache = DedupCache::new(settings(4, Some(1)));
        for now in 0..10_000 {
            cache.check_and_insert(key("same"), None, now * 2);
        }
        assert_eq!(cache.len(), 1);
        assert!(cache.order.len() <= 2 * cache.len() + 17, "{}", cache.order.len());
    }

    #[test]
    fn bytes_are_bounded_too() {
        let mut cache = DedupCache::new(settings(DEDUP_CACHE_ENTRIES_MAX, None));
        let big = "x".repeat(DEDUP_CACHE_BYTES_MAX / 4 + 1);
        for index in 0..10 {
            cache.check_and_insert(key(&format!("{index}{big}")), None, 0);
        }
        assert!(cache.key_bytes <= DEDUP_CACHE_BYTES_MAX);
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn typed_values_differ() {
        assert_ne!(encode_key(&AMQPValue::LongString(LongString::from("1"))), encode_key(&AMQPValue::LongLongInt(1)));
        assert_eq!(
            encode_key(&AMQPValue::ShortString(ShortString::from("x"))),
            encode_key(&AMQPValue::LongString(LongString::from("x")))
        );
        assert_eq!(encode_key(&AMQPValue::ShortInt(7)), encode_key(&AMQPValue::LongLongInt(7)));
    }

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut table = FieldTable::default();
        for (name, value) in entries {
            table.insert((*name).into(), value.clone());
        }
        table
    }

    #[test]
    fn bad_arguments_are_406_naming_the_argument() {
        let bad = [
            ("x-cache-size", AMQPValue::LongLongInt(0)),
            ("x-cache-size", AMQPValue::LongString("10".into())),
            ("x-cache-size", AMQPValue::LongLongInt(DEDUP_CACHE_ENTRIES_MAX as i64 + 1)),
            ("x-cache-ttl", AMQPValue::LongLongInt(-1)),
            ("x-message-deduplication", AMQPValue::LongString("yes".into())),
            ("x-deduplication-header", AMQPValue::LongLongInt(1)),
        ];
        for (name, value) in bad {
            let error = validate(&table(&[(name, value)]), "queue", "q", "/").expect_err(name);
            assert_eq!(error.reply_code, PRECONDITION_FAILED);
            assert!(error.reply_text.contains(&format!("'{name}'")), "{}", error.reply_text);
        }
        let good = table(&[
            ("x-message-deduplication", AMQPValue::Boolean(true)),
            ("x-cache-size", AMQPValue::LongInt(10)),
            ("x-cache-ttl", AMQPValue::LongInt(1000)),
            ("x-deduplication-header", AMQPValue::LongString("id".into())),
        ]);
        assert!(validate(&good, "exchange", "e", "/").is_ok());
        let parsed = DedupSettings::from_arguments(&good).expect("deduplicating");
        assert_eq!(parsed, DedupSettings { cache_size: 10, cache_ttl_ms: Some(1000), header: "id".into() });
        assert_eq!(DedupSettings::from_arguments(&table(&[("x-cache-size", AMQPValue::LongInt(10))])), None);
    }
}
