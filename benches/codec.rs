//! The hot-path codec: parsing inbound publish triples (method + content header + body) and
//! encoding basic.deliver, per message, in batches of 1000 (one socket read's worth) and, for
//! the deliveries, one per buffer to show what batching saves. Backs the "hand codec" figures
//! quoted in the design.
//!
//! Run with `cargo bench --bench codec`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use spatemq::internals::hotpath::{encode_deliver, encode_publish, parse_content_header, parse_publish, Delivery};
use spatemq::internals::split_frame;

/// Publish triples per iteration: enough to look like one socket read of small messages.
const TRIPLES: usize = 1000;
const FRAME_MAX_BYTES: u32 = 128 * 1024;

fn publish_triples(body_bytes: usize) -> BytesMut {
    let body = vec![0x5A; body_bytes];
    let mut out = BytesMut::new();
    for _ in 0..TRIPLES {
        encode_publish(&mut out, 1, b"", b"perf-test", false, &[], &body, FRAME_MAX_BYTES)
            .expect("a small publish encodes");
    }
    out
}

/// What a connection does per read: split every frame, parse method and header, take the body.
fn parse_all(mut buffer: BytesMut) -> usize {
    let mut body_bytes = 0;
    while let Ok(Some(method)) = split_frame(&mut buffer, FRAME_MAX_BYTES) {
        let publish = parse_publish(&method.payload).expect("publish");
        black_box(&publish);
        let header = split_frame(&mut buffer, FRAME_MAX_BYTES).expect("valid").expect("header");
        let content = parse_content_header(&header.payload).expect("content header");
        let mut left = content.body_size;
        while left > 0 {
            let body = split_frame(&mut buffer, FRAME_MAX_BYTES).expect("valid").expect("body");
            left = left.saturating_sub(body.payload.len() as u64);
            body_bytes += body.payload.len();
        }
    }
    body_bytes
}

fn parse_publish_triples(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("parse_publish_triple");
    group.throughput(Throughput::Elements(TRIPLES as u64));
    for body_bytes in [16, 1024] {
        let input = publish_triples(body_bytes);
        group.bench_function(format!("{body_bytes}B"), |bencher| {
            bencher.iter_batched(|| input.clone(), |buffer| black_box(parse_all(buffer)), BatchSize::SmallInput)
        });
    }
    group.finish();
}

fn delivery(body: &[u8], delivery_tag: u64) -> Delivery<'_> {
    Delivery {
        channel: 1,
        consumer_tag: b"amq.ctag-bench",
        delivery_tag,
        redelivered: false,
        exchange: b"",
        routing_key: b"perf-test",
        properties: &[],
        body,
    }
}

/// basic.deliver + header + body for a run of deliveries. `batch`: the whole run into one
/// reused output buffer, as a connection encodes one loop turn's deliveries for one write;
/// `one_per_buffer`: each delivery into a buffer of its own, the unbatched alternative (one
/// allocation and, in the broker, one write per message).
fn encode_deliveries(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("encode_deliver");
    group.throughput(Throughput::Elements(TRIPLES as u64));
    for body_bytes in [16, 1024] {
        let body = vec![0x5A; body_bytes];
        let mut out = BytesMut::with_capacity(TRIPLES * (body_bytes + 128));
        group.bench_function(format!("batch/{body_bytes}B"), |bencher| {
            bencher.iter(|| {
                out.clear();
                for delivery_tag in 1..=TRIPLES as u64 {
                    encode_deliver(&mut out, &delivery(&body, delivery_tag), FRAME_MAX_BYTES).expect("encodes");
                }
                black_box(out.len())
            })
        });
        group.bench_function(format!("one_per_buffer/{body_bytes}B"), |bencher| {
            bencher.iter(|| {
                let mut written = 0;
                for delivery_tag in 1..=TRIPLES as u64 {
                    let mut single = BytesMut::new();
                    encode_deliver(&mut single, &delivery(&body, delivery_tag), FRAME_MAX_BYTES).expect("encodes");
                    written += black_box(single).len();
                }
                written
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse_publish_triples, encode_deliveries);
criterion_main!(benches);
