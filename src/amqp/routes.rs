//! The routes of a connection's last publish, kept while the definitions do not change.
//!
//! A publisher usually sends to one exchange with one routing key, message after message.
//! Resolving the exchange (two hash lookups by name, an allocation for the vhost name) and
//! routing the key again for each message is work that gives the same answer until the
//! definitions change: the cache remembers the answer for the definitions version it was
//! computed under, and any new version (a declare, a bind, a delete anywhere) empties it.
//! A route that looked at the message's headers (a headers exchange on the way) is not kept.

use crate::ids::QueueId;

#[derive(Default)]
pub struct RouteCache {
    /// The definitions version the entry was computed under; None: empty.
    version: Option<u64>,
    exchange: Vec<u8>,
    /// The exchange exists in the connection's vhost and accepts publishes (not internal).
    exchange_ok: bool,
    /// The routes for `routing_key`, if they were computed without the headers.
    routed: Option<(Vec<u8>, Vec<QueueId>)>,
}

impl RouteCache {
    /// Whether `exchange` was found publishable under this definitions version.
    pub fn exchange_ok(&self, version: u64, exchange: &[u8]) -> bool {
        self.version == Some(version) && self.exchange_ok && same(&self.exchange, exchange)
    }

    /// Remembers that `exchange` is publishable under `version` (routes computed for another
    /// exchange or version are forgotten).
    pub fn note_exchange_ok(&mut self, version: u64, exchange: &[u8]) {
        if self.version != Some(version) || self.exchange != exchange {
            self.version = Some(version);
            self.exchange.clear();
            self.exchange.extend_from_slice(exchange);
            self.routed = None;
        }
        self.exchange_ok = true;
    }

    /// Appends the cached routes of (exchange, routing key) under `version` to `out`; false
    /// when they are not cached.
    pub fn routes(&self, version: u64, exchange: &[u8], routing_key: &[u8], out: &mut Vec<QueueId>) -> bool {
        if self.version != Some(version) || !same(&self.exchange, exchange) {
            return false;
        }
        match &self.routed {
            Some((key, routes)) if same(key, routing_key) => {
                out.extend_from_slice(routes);
                true
            }
            _ => false,
        }
    }

    /// Keeps routes computed without the message's headers.
    pub fn store(&mut self, version: u64, exchange: &[u8], routing_key: &[u8], routes: &[QueueId]) {
        if self.version != Some(version) || self.exchange != exchange {
            self.version = Some(version);
            self.exchange.clear();
            self.exchange.extend_from_slice(exchange);
            self.exchange_ok = false;
        }
        let (key, cached) = self.routed.get_or_insert_with(Default::default);
        key.clear();
        key.extend_from_slice(routing_key);
        cached.clear();
        cached.extend_from_slice(routes);
    }
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
