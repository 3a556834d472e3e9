//! The routes of a connection's recent publishes, kept while the definitions do not change.
//!
//! A publisher usually sends to one exchange, with one routing key or a set of them, message
//! after message. Resolving the exchange (three hash lookups by name, an allocation for the
//! vhost name) and routing the key again for each message is work that gives the same answer
//! until the definitions change: the cache remembers the answers for the definitions version
//! they were computed under, and any new version (a declare, a bind, a delete anywhere) empties
//! it. Up to `ROUTE_CACHE_KEYS` routing keys of the last exchange are kept, found by their
//! hash; past that the cache starts over. A route that looked at the message's headers (a
//! headers exchange on the way) is not kept.

use std::hash::{Hash, Hasher};

use amq_protocol::protocol::BasicProperties;
use rustc_hash::{FxHashMap, FxHasher};

use crate::broker::owned_exchange::routed_by_owner;
use crate::broker::snapshot::{Exchange, Vhost};
use crate::ids::QueueId;

/// Where a publish goes by the definitions (`route_publish`).
pub enum Routed<'a> {
    /// Its exchange is routed by the shard that owns it (`broker::owned_exchange`).
    ByOwner(&'a Exchange),
    /// To the queues `route_publish` put in its `out` (none for an unknown exchange).
    /// `used_headers`: the route read the message's properties, so it holds for that message
    /// only.
    Queues { used_headers: bool },
}

/// Routes a publish to the exchange named `exchange` in `vhost` (None: the vhost is gone):
/// what a miss of the route cache computes, and what the hand-over of a publisher decides by
/// (`shard::handover`). `properties` is called only when the route needs the headers.
pub fn route_publish<'a>(
    vhost: Option<&'a Vhost>,
    exchange: &str,
    routing_key: &[u8],
    properties: &mut dyn FnMut() -> Option<BasicProperties>,
    out: &mut Vec<QueueId>,
) -> Routed<'a> {
    let Some((vhost, exchange)) = vhost.and_then(|vhost| Some((vhost, vhost.exchanges.get(exchange)?))) else {
        return Routed::Queues { used_headers: false };
    };
    if routed_by_owner(exchange) {
        return Routed::ByOwner(exchange);
    }
    let mut used_headers = false;
    let mut headers = || {
        used_headers = true;
        properties()
    };
    vhost.route_with_alternates(exchange, routing_key, &mut headers, out);
    Routed::Queues { used_headers }
}

/// Routing keys a connection's cache keeps for its last exchange (about 100 bytes each): a
/// publisher spreading over 1,000 queues by routing key (the bench's `--queue-pattern`) keeps
/// them all.
pub const ROUTE_CACHE_KEYS: usize = 1024;

#[derive(Default)]
pub struct RouteCache {
    /// The definitions version the entry was computed under; None: empty.
    version: Option<u64>,
    exchange: Vec<u8>,
    /// The exchange exists in the connection's vhost and accepts publishes (not internal).
    exchange_ok: bool,
    /// Routes computed without the headers, by the hash of their routing key: the key, then
    /// the routes. Two keys of one hash share the entry, the later one replacing the other.
    routed: FxHashMap<u64, (Vec<u8>, Vec<QueueId>)>,
}

impl RouteCache {
    /// Whether `exchange` was found publishable under this definitions version.
    pub fn exchange_ok(&self, version: u64, exchange: &[u8]) -> bool {
        self.version == Some(version) && self.exchange_ok && same(&self.exchange, exchange)
    }

    /// Remembers that `exchange` is publishable under `version` (routes computed for another
    /// exchange or version are forgotten).
    pub fn note_exchange_ok(&mut self, version: u64, exchange: &[u8]) {
        self.switch_to(version, exchange);
        self.exchange_ok = true;
    }

    /// Appends the cached routes of (exchange, routing key) under `version` to `out`; false
    /// when they are not cached.
    pub fn routes(&self, version: u64, exchange: &[u8], routing_key: &[u8], out: &mut Vec<QueueId>) -> bool {
        if self.version != Some(version) || !same(&self.exchange, exchange) {
            return false;
        }
        match self.routed.get(&key_hash(routing_key)) {
            Some((key, routes)) if same(key, routing_key) => {
                out.extend_from_slice(routes);
                true
            }
            _ => false,
        }
    }

    /// Keeps routes computed without the message's headers.
    pub fn store(&mut self, version: u64, exchange: &[u8], routing_key: &[u8], routes: &[QueueId]) {
        self.switch_to(version, exchange);
        let hash = key_hash(routing_key);
        if self.routed.len() >= ROUTE_CACHE_KEYS && !self.routed.contains_key(&hash) {
            self.routed.clear();
        }
        let (key, cached) = self.routed.entry(hash).or_default();
        key.clear();
        key.extend_from_slice(routing_key);
        cached.clear();
        cached.extend_from_slice(routes);
    }

    /// Makes the cache hold `exchange` under `version`; anything it knew of another exchange
    /// or version (the verdict and the routes) is forgotten.
    fn switch_to(&mut self, version: u64, exchange: &[u8]) {
        if self.version != Some(version) || !same(&self.exchange, exchange) {
            self.version = Some(version);
            self.exchange.clear();
            self.exchange.extend_from_slice(exchange);
            self.exchange_ok = false;
            self.routed.clear();
        }
    }
}

fn key_hash(routing_key: &[u8]) -> u64 {
    let mut hasher = FxHasher::default();
    routing_key.hash(&mut hasher);
    hasher.finish()
}

/// Byte equality for the short names compared on every publish: a plain loop, without a
/// call into the C library's memcmp (which showed in profiles for one- to ten-byte names).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() > 32 {
        return a == b;
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_kept_for_one_version_exchange_and_key() {
        let mut cache = RouteCache::default();
        let mut out = Vec::new();
        assert!(!cache.routes(1, b"x", b"k", &mut out));
        cache.note_exchange_ok(1, b"x");
        cache.store(1, b"x", b"k", &[QueueId(3), QueueId(5)]);
        assert!(cache.exchange_ok(1, b"x"));
        assert!(cache.routes(1, b"x", b"k", &mut out));
        assert_eq!(out, vec![QueueId(3), QueueId(5)]);
        out.clear();
        assert!(!cache.routes(1, b"x", b"other", &mut out));
        assert!(!cache.routes(2, b"x", b"k", &mut out), "a new definitions version empties it");
        assert!(!cache.exchange_ok(2, b"x"));
        assert!(!cache.routes(1, b"y", b"k", &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn many_routing_keys_of_one_exchange_are_kept_up_to_the_bound() {
        let mut cache = RouteCache::default();
        let key = |index: usize| format!("q-{index}").into_bytes();
        for index in 0..ROUTE_CACHE_KEYS {
            cache.store(1, b"", &key(index), &[QueueId(index as u64)]);
        }
        let mut out = Vec::new();
        for index in 0..ROUTE_CACHE_KEYS {
            out.clear();
            assert!(cache.routes(1, b"", &key(index), &mut out), "key {index} forgotten");
            assert_eq!(out, vec![QueueId(index as u64)]);
        }
        cache.store(1, b"", b"one more", &[QueueId(7)]);
        assert!(cache.routes(1, b"", b"one more", &mut out));
        assert!(!cache.routes(1, b"", &key(0), &mut out), "past the bound the cache starts over");
        assert!(cache.routed.len() <= ROUTE_CACHE_KEYS);
        cache.store(1, b"x", b"k", &[QueueId(9)]);
        assert!(!cache.routes(1, b"", b"one more", &mut out), "another exchange forgets the keys");
    }

    #[test]
    fn same_compares_short_and_long_names() {
        assert!(same(b"", b""));
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        let long = [7u8; 100];
        let mut other = long;
        assert!(same(&long, &other));
        other[99] = 8;
        assert!(!same(&long, &other));
    }

    #[test]
    fn another_exchange_forgets_the_routes_and_the_verdict() {
        let mut cache = RouteCache::default();
        cache.note_exchange_ok(1, b"x");
        cache.store(1, b"x", b"k", &[QueueId(3)]);
        cache.note_exchange_ok(1, b"y");
        let mut out = Vec::new();
        assert!(!cache.routes(1, b"y", b"k", &mut out));
        assert!(!cache.exchange_ok(1, b"x"));
        cache.store(1, b"z", b"k", &[]);
        assert!(!cache.exchange_ok(1, b"z"), "routes stored do not say the exchange is publishable");
        assert!(cache.routes(1, b"z", b"k", &mut out));
        assert!(out.is_empty());
    }
}
