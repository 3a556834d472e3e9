//! Per-exchange routing table: owns the set of bindings of one exchange
//! (destination, routing_key, arguments) and the per-kind index used to
//! route a published message to its destinations.
//!
//! It must not know how destinations are stored or delivered to, must not
//! validate bindings beyond what routing needs (the caller answers 406 using
//! `validate_x_match`), and `route` must not allocate except by pushing into
//! the caller's Vec, nor panic on any routing key or headers.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;

use amq_protocol::types::FieldTable;

use super::consistent_hash::{self, HashOn, HashRing};
use super::headers_match::HeadersRule;
use super::topic::TopicTrie;

pub use super::headers_match::validate_x_match;

/// The four exchange types every AMQP 0-9-1 broker provides, and the consistent-hash
/// exchange of RabbitMQ's plugin (`consistent_hash.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
    ConsistentHash,
    /// `x-delayed-message` (`delayed.rs`): holds messages with `x-delay`, and routes as its
    /// `x-delayed-type`.
    DelayedMessage,
}

impl ExchangeKind {
    /// Parses the exchange.declare `type` field; names are case-sensitive,
    /// as in RabbitMQ.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "direct" => Some(Self::Direct),
            "fanout" => Some(Self::Fanout),
            "topic" => Some(Self::Topic),
            "headers" => Some(Self::Headers),
            "x-consistent-hash" => Some(Self::ConsistentHash),
            "x-delayed-message" => Some(Self::DelayedMessage),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
            Self::ConsistentHash => "x-consistent-hash",
            Self::DelayedMessage => "x-delayed-message",
        }
    }

    /// The type as RabbitMQ prints the atom with `~p`: quoted when it is not a plain word.
    pub fn erlang_atom(self) -> &'static str {
        match self {
            Self::ConsistentHash => "'x-consistent-hash'",
            Self::DelayedMessage => "'x-delayed-message'",
            other => other.as_str(),
        }
    }
}

/// Bindings of one destination: routing_key -> argument tables. Several
/// argument tables under one key are distinct bindings (RabbitMQ includes
/// the arguments in binding identity for every exchange kind).
type KeyBindings = BTreeMap<Box<str>, Vec<FieldTable>>;

/// Compiled headers rules of one destination. Grouping by destination makes
/// routing emit each destination once without a dedupe pass.
#[derive(Clone, Debug)]
struct HeadersDestination<D> {
    destination: D,
    rules: Vec<HeadersRule>,
}

/// Lookup structure specialised per exchange kind. It only records whether
/// a (destination, routing_key) pair exists; how many argument tables
/// back that pair is tracked by `RoutingTable::bindings`.
#[derive(Clone, Debug)]
enum Index<D> {
    /// routing_key bytes -> destinations (unique per key).
    Direct(HashMap<Box<[u8]>, Vec<D>>),
    /// Destinations with at least one binding, sorted and unique.
    Fanout(Vec<D>),
    Topic(TopicTrie<D>),
    /// Sorted by destination.
    Headers(Vec<HeadersDestination<D>>),
    /// Buckets in bind order, and what a message is hashed on.
    ConsistentHash(HashRing<D>),
}

/// All bindings of one exchange plus the index `route` reads. `D` is the
/// binding destination (a queue or an exchange id). Cloning is supported
/// because the broker publishes immutable snapshots and clones on change.
#[derive(Clone, Debug)]
pub struct RoutingTable<D> {
    /// Source of truth, ordered so listings and persistence are stable.
    bindings: BTreeMap<D, KeyBindings>,
    index: Index<D>,
}

impl<D: Copy + Eq + Hash + Ord + Debug> RoutingTable<D> {
    pub fn new(kind: ExchangeKind) -> Self {
        Self::with_arguments(kind, &FieldTable::default())
    }

    /// A table for an exchange with these (validated) arguments: a consistent-hash exchange
    /// reads `hash-header` and `hash-property` once, here.
    pub fn with_arguments(kind: ExchangeKind, arguments: &FieldTable) -> Self {
        let index = match kind {
            ExchangeKind::Direct => Index::Direct(HashMap::new()),
            ExchangeKind::Fanout => Index::Fanout(Vec::new()),
            ExchangeKind::Topic => Index::Topic(TopicTrie::new()),
            ExchangeKind::Headers => Index::Headers(Vec::new()),
            ExchangeKind::ConsistentHash => Index::ConsistentHash(HashRing::new(HashOn::of(arguments))),
            // Routes as its `x-delayed-type` (validated when declared; never itself).
            ExchangeKind::DelayedMessage => match super::delayed::delayed_type(arguments) {
                ExchangeKind::DelayedMessage => Index::Direct(HashMap::new()),
                inner => return Self::with_arguments(inner, arguments),
            },
        };
        Self { bindings: BTreeMap::new(), index }
    }

    /// Whether it routes on headers (a headers exchange, or a delayed one of that type).
    pub fn is_headers(&self) -> bool {
        matches!(self.index, Index::Headers(_))
    }

    /// The buckets of a consistent-hash exchange.
    pub fn hash_ring(&self) -> Option<&HashRing<D>> {
        match &self.index {
            Index::ConsistentHash(ring) => Some(ring),
            _ => None,
        }
    }

    pub fn kind(&self) -> ExchangeKind {
        match self.index {
            Index::Direct(_) => ExchangeKind::Direct,
            Index::Fanout(_) => ExchangeKind::Fanout,
            Index::Topic(_) => ExchangeKind::Topic,
            Index::Headers(_) => ExchangeKind::Headers,
            Index::ConsistentHash(_) => ExchangeKind::ConsistentHash,
        }
    }

    /// Adds a binding. Returns false if the identical binding (destination,
    /// routing_key, arguments) already existed; binding is idempotent, as
    /// in RabbitMQ.
    pub fn bind(&mut self, destination: D, routing_key: &str, arguments: &FieldTable) -> bool {
        let keys = self.bindings.entry(destination).or_default();
        let tables = keys.entry(Box::from(routing_key)).or_default();
        if tables.iter().any(|existing| existing == arguments) {
            return false;
        }
        let first_for_key = tables.is_empty();
        tables.push(arguments.clone());
        match &mut self.index {
            Index::Direct(map) if first_for_key => {
                map.entry(Box::from(routing_key.as_bytes())).or_default().push(destination)
            }
            Index::Direct(_) => {}
            Index::Fanout(list) => {
                if let Err(at) = list.binary_search(&destination) {
                    list.insert(at, destination);
                }
            }
            Index::Topic(trie) if first_for_key => trie.insert(routing_key, destination),
            Index::Topic(_) => {}
            Index::Headers(entries) => refresh_headers(entries, self.bindings.get(&destination), destination),
            // The key was checked at bind (`consistent_hash::weight`); one that is not a
            // weight (never stored by this broker) gives no buckets.
            Index::ConsistentHash(ring) => {
                if let Ok(weight) = consistent_hash::weight(routing_key) {
                    ring.add(destination, weight);
                }
            }
        }
        true
    }

    /// Whether this exact binding (destination, routing_key, arguments) exists.
    pub fn contains(&self, destination: D, routing_key: &str, arguments: &FieldTable) -> bool {
        self.bindings
            .get(&destination)
            .and_then(|keys| keys.get(routing_key))
            .is_some_and(|tables| tables.iter().any(|existing| existing == arguments))
    }

    /// Removes one binding. Returns false if no such binding existed.
    pub fn unbind(&mut self, destination: D, routing_key: &str, arguments: &FieldTable) -> bool {
        let Some(keys) = self.bindings.get_mut(&destination) else {
            return false;
        };
        let Some(tables) = keys.get_mut(routing_key) else {
            return false;
        };
        let Some(position) = tables.iter().position(|existing| existing == arguments) else {
            return false;
        };
        tables.remove(position);
        let key_gone = tables.is_empty();
        if key_gone {
            keys.remove(routing_key);
        }
        let destination_gone = keys.is_empty();
        if destination_gone {
            self.bindings.remove(&destination);
        }
        match &mut self.index {
            Index::Headers(entries) => refresh_headers(entries, self.bindings.get(&destination), destination),
            // A destination keeps its buckets while any binding to it is left.
            Index::ConsistentHash(ring) if destination_gone => ring.remove(destination),
            Index::ConsistentHash(_) => {}
            index => {
                if key_gone {
                    index.remove_key(destination, routing_key);
                }
                if destination_gone {
                    index.remove_fanout(destination);
                }
            }
        }
        true
    }

    /// Removes every binding to `destination` (its queue or exchange was
    /// deleted) and returns how many there were.
    pub fn remove_destination(&mut self, destination: D) -> usize {
        let Some(keys) = self.bindings.remove(&destination) else {
            return 0;
        };
        match &mut self.index {
            Index::Headers(entries) => refresh_headers(entries, None, destination),
            Index::ConsistentHash(ring) => ring.remove(destination),
            index => {
                for routing_key in keys.keys() {
                    index.remove_key(destination, routing_key);
                }
                index.remove_fanout(destination);
            }
        }
        keys.values().map(Vec::len).sum()
    }

    /// True while any binding exists (exchange.delete if-unused, auto-delete).
    pub fn has_bindings(&self) -> bool {
        !self.bindings.is_empty()
    }

    /// Every binding as (destination, routing_key, arguments), ordered by
    /// destination then routing_key, for listing and persistence. A consistent-hash
    /// exchange lists its destinations in bucket order, so that the definitions written from
    /// this list rebuild the same buckets.
    pub fn bindings(&self) -> Box<dyn Iterator<Item = (D, &str, &FieldTable)> + '_> {
        match &self.index {
            Index::ConsistentHash(ring) => Box::new(ring.members().flat_map(move |destination| {
                self.bindings.get(&destination).into_iter().flat_map(move |keys| of_destination(destination, keys))
            })),
            _ => Box::new(self.bindings.iter().flat_map(move |(&destination, keys)| of_destination(destination, keys))),
        }
    }

    /// Appends the destinations matching a message to `out`, each at most
    /// once among the entries this call appends. `headers` is only read by
    /// headers exchanges (None is treated as an empty table); `routing_key`
    /// is ignored by fanout and headers exchanges.
    pub fn route(&self, routing_key: &[u8], headers: Option<&FieldTable>, out: &mut Vec<D>) {
        match &self.index {
            Index::Direct(map) => {
                if let Some(destinations) = map.get(routing_key) {
                    out.extend_from_slice(destinations);
                }
            }
            Index::Fanout(list) => out.extend_from_slice(list),
            Index::Topic(trie) => trie.route(routing_key, out),
            Index::Headers(entries) => out.extend(
                entries
                    .iter()
                    .filter(|entry| entry.rules.iter().any(|rule| rule.matches(headers)))
                    .map(|entry| entry.destination),
            ),
            // Routed by `route_consistent_hash`, which needs the message's properties.
            Index::ConsistentHash(ring) => out.extend(ring.route(ring.hash_on.hash(routing_key, None))),
        }
    }
}

/// The bindings of one destination as (destination, routing_key, arguments).
fn of_destination<'a, D: Copy + 'a>(
    destination: D,
    keys: &'a KeyBindings,
) -> impl Iterator<Item = (D, &'a str, &'a FieldTable)> + 'a {
    keys.iter().flat_map(move |(routing_key, tables)| {
        tables.iter().map(move |arguments| (destination, &**routing_key, arguments))
    })
}

impl<D: Copy + Eq + Hash + Ord> Index<D> {
    /// Drops the (destination, routing_key) pair from a direct or topic
    /// index once its last argument table is gone.
    fn remove_key(&mut self, destination: D, routing_key: &str) {
        match self {
            Index::Direct(map) => {
                let key = routing_key.as_bytes();
                if let Some(destinations) = map.get_mut(key) {
                    destinations.retain(|&d| d != destination);
                    if destinations.is_empty() {
                        map.remove(key);
                    }
                }
            }
            Index::Topic(trie) => {
                trie.remove(routing_key, destination);
            }
            Index::Fanout(_) | Index::Headers(_) | Index::ConsistentHash(_) => {}
        }
    }

    /// Drops a destination from a fanout index once its last binding is gone.
    fn remove_fanout(&mut self, destination: D) {
        if let Index::Fanout(list) = self {
            if let Ok(at) = list.binary_search(&destination) {
                list.remove(at);
            }
        }
    }
}

/// Recompiles the headers rules of one destination from its bindings (None
/// or empty: the destination has no binding left). Rebuilding per
/// destination keeps bind/unbind simple; it is off the publish path.
fn refresh_headers<D: Copy + Ord>(
    entries: &mut Vec<HeadersDestination<D>>,
    keys: Option<&KeyBindings>,
    destination: D,
) {
    let rules: Vec<HeadersRule> =
        keys.into_iter().flat_map(|keys| keys.values().flatten()).map(HeadersRule::compile).collect();
    match entries.binary_search_by(|entry| entry.destination.cmp(&destination)) {
        Ok(at) if rules.is_empty() => {
            entries.remove(at);
        }
        Ok(at) => {
            if let Some(entry) = entries.get_mut(at) {
                entry.rules = rules;
            }
        }
        Err(_) if rules.is_empty() => {}
        Err(at) => entries.insert(at, HeadersDestination { destination, rules }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{AMQPValue, LongString, ShortString};

    /// Mirrors the broker's destination type.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    enum Dest {
        Queue(u64),
        Exchange(u64),
    }
    use Dest::{Exchange, Queue};

    fn table(entries: &[(&str, &str)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(ShortString::from(*k), AMQPValue::LongString(LongString::from(*v)));
        }
        t
    }

    const ALL_KINDS: [ExchangeKind; 4] =
        [ExchangeKind::Direct, ExchangeKind::Fanout, ExchangeKind::Topic, ExchangeKind::Headers];

    fn none() -> FieldTable {
        FieldTable::default()
    }

    fn routed(table: &RoutingTable<Dest>, key: &str, headers: Option<&FieldTable>) -> Vec<Dest> {
        let mut out = Vec::new();
        table.route(key.as_bytes(), headers, &mut out);
        let before = out.len();
        out.sort_unstable();
        out.dedup();
        assert_eq!(before, out.len(), "route returned duplicates");
        out
    }

    #[test]
    fn exchange_kind_names_round_trip() {
        for kind in ALL_KINDS {
            assert_eq!(ExchangeKind::parse(kind.as_str()), Some(kind));
            assert_eq!(RoutingTable::<Dest>::new(kind).kind(), kind);
        }
        assert_eq!(ExchangeKind::parse("Direct"), None);
        assert_eq!(ExchangeKind::parse("x-consistent-hash"), Some(ExchangeKind::ConsistentHash));
        assert_eq!(ExchangeKind::ConsistentHash.as_str(), "x-consistent-hash");
        assert_eq!(ExchangeKind::parse("x-delayed-message"), Some(ExchangeKind::DelayedMessage));
        let mut delayed_topic = FieldTable::default();
        delayed_topic.insert("x-delayed-type".into(), AMQPValue::LongString("topic".into()));
        let table = RoutingTable::<Dest>::with_arguments(ExchangeKind::DelayedMessage, &delayed_topic);
        assert_eq!(table.kind(), ExchangeKind::Topic, "a delayed exchange routes as its x-delayed-type");
    }

    #[test]
    fn direct_routes_on_exact_key() {
        let mut t = RoutingTable::new(ExchangeKind::Direct);
        assert!(t.bind(Queue(1), "orders", &none()));
        assert!(t.bind(Queue(2), "orders", &none()));
        assert!(t.bind(Exchange(9), "invoices", &none()));
        assert!(t.bind(Queue(3), "", &none()));
        assert_eq!(routed(&t, "orders", None), [Queue(1), Queue(2)]);
        assert_eq!(routed(&t, "invoices", None), [Exchange(9)]);
        assert_eq!(routed(&t, "", None), [Queue(3)]);
        assert!(routed(&t, "Orders", None).is_empty());
        assert!(routed(&t, "orders.x", None).is_empty());
    }

    #[test]
    fn direct_compares_bytes() {
        let mut t = RoutingTable::new(ExchangeKind::Direct);
        t.bind(Queue(1), "é", &none());
        let mut out = Vec::new();
        t.route("é".as_bytes(), None, &mut out);
        assert_eq!(out, [Queue(1)]);
        out.clear();
        t.route(&[0xc3], None, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn fanout_ignores_key_and_dedupes() {
        let mut t = RoutingTable::new(ExchangeKind::Fanout);
        t.bind(Queue(1), "a", &none());
        t.bind(Queue(1), "b", &none());
        t.bind(Queue(2), "", &none());
        assert_eq!(routed(&t, "anything", None), [Queue(1), Queue(2)]);
        assert!(t.unbind(Queue(1), "a", &none()));
        assert_eq!(routed(&t, "x", None), [Queue(1), Queue(2)]);
        assert!(t.unbind(Queue(1), "b", &none()));
        assert_eq!(routed(&t, "x", None), [Queue(2)]);
    }

    #[test]
    fn topic_routes_and_dedupes() {
        let mut t = RoutingTable::new(ExchangeKind::Topic);
        t.bind(Queue(1), "stock.*.nyse", &none());
        t.bind(Queue(1), "stock.#", &none());
        t.bind(Queue(2), "#", &none());
        t.bind(Queue(3), "*.usd.*", &none());
        assert_eq!(routed(&t, "stock.ibm.nyse", None), [Queue(1), Queue(2)]);
        assert_eq!(routed(&t, "fx.usd.eur", None), [Queue(2), Queue(3)]);
        assert_eq!(routed(&t, "", None), [Queue(2)]);
        assert!(t.unbind(Queue(1), "stock.#", &none()));
        assert_eq!(routed(&t, "stock.ibm", None), [Queue(2)]);
        assert_eq!(routed(&t, "stock.ibm.nyse", None), [Queue(1), Queue(2)]);
    }

    #[test]
    fn route_appends_without_touching_existing_entries() {
        let mut t = RoutingTable::new(ExchangeKind::Topic);
        t.bind(Queue(5), "a.*", &none());
        t.bind(Queue(1), "#", &none());
        let mut out = vec![Queue(9), Queue(1)];
        t.route(b"a.b", None, &mut out);
        assert_eq!(out.get(..2), Some([Queue(9), Queue(1)].as_slice()));
        let mut tail = out.split_off(2);
        tail.sort_unstable();
        assert_eq!(tail, [Queue(1), Queue(5)]);
    }

    #[test]
    fn headers_all_any_and_void() {
        let mut t = RoutingTable::new(ExchangeKind::Headers);
        t.bind(Queue(1), "", &table(&[("x-match", "all"), ("fmt", "pdf"), ("type", "report")]));
        t.bind(Queue(2), "", &table(&[("x-match", "any"), ("fmt", "pdf"), ("type", "log")]));
        let mut presence = FieldTable::default();
        presence.insert(ShortString::from("urgent"), AMQPValue::Void);
        t.bind(Queue(3), "", &presence);
        t.bind(Queue(4), "", &table(&[("x-match", "any")]));
        t.bind(Queue(5), "", &table(&[("x-match", "all")]));

        let report = table(&[("fmt", "pdf"), ("type", "report")]);
        assert_eq!(routed(&t, "ignored", Some(&report)), [Queue(1), Queue(2), Queue(5)]);
        let log = table(&[("type", "log"), ("urgent", "no")]);
        assert_eq!(routed(&t, "", Some(&log)), [Queue(2), Queue(3), Queue(5)]);
        assert_eq!(routed(&t, "", None), [Queue(5)]);
    }

    #[test]
    fn headers_with_x_variants() {
        let mut t = RoutingTable::new(ExchangeKind::Headers);
        t.bind(Queue(1), "", &table(&[("x-match", "all"), ("x-tenant", "b")]));
        t.bind(Queue(2), "", &table(&[("x-match", "all-with-x"), ("x-tenant", "b")]));
        t.bind(Queue(3), "", &table(&[("x-match", "any-with-x"), ("x-tenant", "a"), ("k", "v")]));
        let tenant_a = table(&[("x-tenant", "a")]);
        assert_eq!(routed(&t, "", Some(&tenant_a)), [Queue(1), Queue(3)]);
        let tenant_b = table(&[("x-tenant", "b")]);
        assert_eq!(routed(&t, "", Some(&tenant_b)), [Queue(1), Queue(2)]);
    }

    #[test]
    fn headers_binding_identity_includes_arguments() {
        let mut t = RoutingTable::new(ExchangeKind::Headers);
        let pdf = table(&[("fmt", "pdf")]);
        let png = table(&[("fmt", "png")]);
        assert!(t.bind(Queue(1), "", &pdf));
        assert!(t.bind(Queue(1), "", &png));
        assert!(!t.bind(Queue(1), "", &pdf));
        assert_eq!(t.bindings().count(), 2);
        let png_msg = table(&[("fmt", "png")]);
        assert_eq!(routed(&t, "", Some(&png_msg)), [Queue(1)]);
        assert!(t.unbind(Queue(1), "", &png));
        assert!(routed(&t, "", Some(&png_msg)).is_empty());
        assert!(!t.unbind(Queue(1), "", &png));
        let pdf_msg = table(&[("fmt", "pdf")]);
        assert_eq!(routed(&t, "", Some(&pdf_msg)), [Queue(1)]);
        assert!(t.unbind(Queue(1), "", &pdf));
        assert!(!t.has_bindings());
        assert!(routed(&t, "", Some(&pdf_msg)).is_empty());
    }

    #[test]
    fn bind_is_idempotent() {
        for kind in ALL_KINDS {
            let mut t = RoutingTable::new(kind);
            assert!(t.bind(Queue(1), "k", &none()));
            assert!(!t.bind(Queue(1), "k", &none()));
            assert_eq!(t.bindings().count(), 1);
            // One unbind removes it: the duplicate bind added nothing.
            assert!(t.unbind(Queue(1), "k", &none()));
            assert!(!t.has_bindings());
            assert!(routed(&t, "k", None).is_empty(), "{kind:?}");
        }
    }

    #[test]
    fn same_key_different_arguments_are_separate_bindings() {
        let mut t = RoutingTable::new(ExchangeKind::Direct);
        let a = table(&[("note", "a")]);
        assert!(t.bind(Queue(1), "k", &none()));
        assert!(t.bind(Queue(1), "k", &a));
        assert_eq!(routed(&t, "k", None), [Queue(1)]);
        assert!(t.unbind(Queue(1), "k", &none()));
        // Still routed: the binding with arguments remains.
        assert_eq!(routed(&t, "k", None), [Queue(1)]);
        assert!(t.unbind(Queue(1), "k", &a));
        assert!(routed(&t, "k", None).is_empty());
    }

    #[test]
    fn unbind_unknown_binding_is_false() {
        let mut t = RoutingTable::new(ExchangeKind::Topic);
        t.bind(Queue(1), "a.*", &none());
        assert!(!t.unbind(Queue(2), "a.*", &none()));
        assert!(!t.unbind(Queue(1), "a.#", &none()));
        assert!(!t.unbind(Queue(1), "a.*", &table(&[("k", "v")])));
        assert_eq!(routed(&t, "a.b", None), [Queue(1)]);
    }

    #[test]
    fn remove_destination_drops_every_binding() {
        for kind in ALL_KINDS {
            let mut t = RoutingTable::new(kind);
            t.bind(Queue(1), "a", &none());
            t.bind(Queue(1), "b", &none());
            t.bind(Queue(1), "b", &table(&[("x", "y")]));
            t.bind(Exchange(1), "a", &none());
            assert_eq!(t.remove_destination(Queue(1)), 3, "{kind:?}");
            assert_eq!(t.remove_destination(Queue(1)), 0, "{kind:?}");
            assert_eq!(routed(&t, "a", None), [Exchange(1)], "{kind:?}");
            let after_b = match kind {
                ExchangeKind::Direct | ExchangeKind::Topic => vec![],
                ExchangeKind::Fanout | ExchangeKind::Headers => vec![Exchange(1)],
                ExchangeKind::ConsistentHash | ExchangeKind::DelayedMessage => {
                    unreachable!("not in ALL_KINDS: its keys are weights, or it routes as another type")
                }
            };
            assert_eq!(routed(&t, "b", None), after_b, "{kind:?}");
            assert_eq!(t.remove_destination(Exchange(1)), 1);
            assert!(!t.has_bindings());
            assert!(routed(&t, "a", None).is_empty(), "{kind:?}");
        }
    }

    #[test]
    fn bindings_lists_everything_in_order() {
        let mut t = RoutingTable::new(ExchangeKind::Direct);
        let args = table(&[("k", "v")]);
        t.bind(Queue(2), "b", &none());
        t.bind(Queue(1), "z", &none());
        t.bind(Queue(1), "a", &args);
        t.bind(Exchange(0), "e", &none());
        let listed: Vec<(Dest, &str, bool)> = t.bindings().map(|(d, k, a)| (d, k, a.inner().is_empty())).collect();
        assert_eq!(
            listed,
            [(Queue(1), "a", false), (Queue(1), "z", true), (Queue(2), "b", true), (Exchange(0), "e", true),]
        );
    }

    #[test]
    fn clone_is_an_independent_snapshot() {
        let mut t = RoutingTable::new(ExchangeKind::Topic);
        t.bind(Queue(1), "a.#", &none());
        let snapshot = t.clone();
        t.bind(Queue(2), "a.*", &none());
        t.unbind(Queue(1), "a.#", &none());
        assert_eq!(routed(&snapshot, "a.b", None), [Queue(1)]);
        assert_eq!(routed(&t, "a.b", None), [Queue(2)]);
    }

    #[test]
    fn validate_x_match_is_exported() {
        assert!(validate_x_match(&table(&[("x-match", "any")])).is_ok());
        assert!(validate_x_match(&table(&[("x-match", "foo")])).is_err());
    }
}

#[cfg(test)]
mod consistent_hash_tests {
    use super::*;
    use amq_protocol::types::AMQPValue;

    fn routed(table: &RoutingTable<u32>, key: &str) -> Vec<u32> {
        let mut out = Vec::new();
        table.route(key.as_bytes(), None, &mut out);
        out
    }

    /// The routing code itself (no sockets): ten queues bound with weight 1 each share one
    /// million random routing keys within ±5% of a tenth each.
    #[test]
    fn ten_equally_weighted_queues_share_a_million_keys_within_five_percent() {
        let mut table = RoutingTable::new(ExchangeKind::ConsistentHash);
        for queue in 0..10 {
            assert!(table.bind(queue, "1", &FieldTable::default()));
        }
        let mut counts = [0_u32; 10];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut key = String::new();
        let mut out = Vec::with_capacity(1);
        for _ in 0..1_000_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            key.clear();
            use std::fmt::Write;
            let _ = write!(key, "{state:016x}");
            out.clear();
            table.route(key.as_bytes(), None, &mut out);
            assert_eq!(out.len(), 1, "one queue per message");
            counts[out[0] as usize] += 1;
        }
        for count in counts {
            assert!((95_000..=105_000).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn unbinding_removes_the_buckets_and_bindings_list_in_bucket_order() {
        let mut table = RoutingTable::new(ExchangeKind::ConsistentHash);
        table.bind(7, "2", &FieldTable::default());
        table.bind(3, "1", &FieldTable::default());
        table.bind(7, "5", &FieldTable::default());
        let listed: Vec<(u32, &str)> = table.bindings().map(|(destination, key, _)| (destination, key)).collect();
        assert_eq!(listed, vec![(7, "2"), (7, "5"), (3, "1")], "bind order, not destination order");
        assert!(table.unbind(7, "2", &FieldTable::default()));
        assert!((0..200).any(|n| routed(&table, &n.to_string()) == [7]), "7 keeps its buckets while bound");
        assert!(table.unbind(7, "5", &FieldTable::default()));
        assert!((0..200).all(|n| routed(&table, &n.to_string()) == [3]));
        assert_eq!(table.remove_destination(3), 1);
        assert!(routed(&table, "x").is_empty());
    }

    #[test]
    fn a_header_exchange_hashes_on_its_header_not_the_key() {
        let mut arguments = FieldTable::default();
        arguments.insert("hash-header".into(), AMQPValue::LongString("user".into()));
        let table: RoutingTable<u32> = RoutingTable::with_arguments(ExchangeKind::ConsistentHash, &arguments);
        assert!(table.hash_ring().is_some_and(|ring| ring.hash_on.reads_properties()));
        let plain: RoutingTable<u32> = RoutingTable::new(ExchangeKind::ConsistentHash);
        assert!(plain.hash_ring().is_some_and(|ring| !ring.hash_on.reads_properties()));
    }
}
