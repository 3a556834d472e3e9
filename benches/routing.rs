//! Topic routing with 10,000 bindings through `RoutingTable`, the lookup every publish to a
//! topic exchange pays; a direct exchange of the same size for comparison.
//!
//! Run with `cargo bench --bench routing`.

use std::hint::black_box;

use amq_protocol::types::FieldTable;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spatemq::internals::{ExchangeKind, RoutingTable};

const BINDINGS: u32 = 10_000;
/// Routing keys looked up per iteration.
const LOOKUPS: u32 = 1000;

/// Mostly exact three-word keys, one in twenty with `*`, one in twenty with `#`, spread over
/// ten regions and a hundred services, as a busy event bus might bind.
fn topic_binding(number: u32) -> String {
    let (region, service) = (number % 10, number % 100);
    match number % 20 {
        0 => format!("region{region}.*.event{number}"),
        1 => format!("region{region}.service{service}.#"),
        _ => format!("region{region}.service{service}.event{number}"),
    }
}

fn routing_key(number: u32) -> String {
    format!("region{}.service{}.event{}", number % 10, number % 100, number)
}

fn topic_routing(criterion: &mut Criterion) {
    let arguments = FieldTable::default();
    let mut topic = RoutingTable::new(ExchangeKind::Topic);
    let mut direct = RoutingTable::new(ExchangeKind::Direct);
    for number in 0..BINDINGS {
        topic.bind(number, &topic_binding(number), &arguments);
        direct.bind(number, &routing_key(number), &arguments);
    }
    // Keys spread over the bound range so every lookup walks a realistic part of the trie.
    let keys: Vec<String> = (0..LOOKUPS).map(|index| routing_key(index * (BINDINGS / LOOKUPS) + 7)).collect();
    let mut group = criterion.benchmark_group("route_10k_bindings");
    group.throughput(Throughput::Elements(u64::from(LOOKUPS)));
    let mut destinations = Vec::with_capacity(64);
    group.bench_function("topic", |bencher| {
        bencher.iter(|| {
            let mut matched = 0;
            for key in &keys {
                destinations.clear();
                topic.route(key.as_bytes(), None, &mut destinations);
                matched += destinations.len();
            }
            black_box(matched)
        })
    });
    group.bench_function("direct", |bencher| {
        bencher.iter(|| {
            let mut matched = 0;
            for key in &keys {
                destinations.clear();
                direct.route(key.as_bytes(), None, &mut destinations);
                matched += destinations.len();
            }
            black_box(matched)
        })
    });
    group.finish();
}

criterion_group!(benches, topic_routing);
criterion_main!(benches);
