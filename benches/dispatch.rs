//! The connection side of publishing: one socket read of 1,000 publishes (basic.publish,
//! content header, body) through the dispatcher, as a shard's read loop runs it: split the
//! frames, parse, assemble the content, RabbitMQ's publish checks, the route cache, and the
//! `ShardMsg::Publish` for the queue's shard. The messages are dropped outside the timing, as
//! in the broker the queue's shard drops them.
//!
//! Run with `cargo bench --bench dispatch`.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use spatemq::internals::hotpath::encode_publish;
use spatemq::internals::PublishPath;

/// The broker's allocator, so that allocation costs are the broker's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Publishes per iteration: one socket read of small messages.
const PUBLISHES: usize = 1000;
const FRAME_MAX_BYTES: u32 = 128 * 1024;
/// Property flags only: no properties, as `spatemq bench` publishes transient messages.
const NO_PROPERTIES: [u8; 2] = [0, 0];

fn publishes(body_bytes: usize) -> BytesMut {
    let body = vec![0x5A; body_bytes];
    let mut out = BytesMut::new();
    for _ in 0..PUBLISHES {
        encode_publish(&mut out, 1, b"", b"bench", false, &NO_PROPERTIES, &body, FRAME_MAX_BYTES)
            .expect("a publish encodes");
    }
    out
}

fn publish_path(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("publish_path");
    group.throughput(Throughput::Elements(PUBLISHES as u64));
    for body_bytes in [16, 1024] {
        let input = publishes(body_bytes);
        let mut path = PublishPath::new(2, "bench");
        group.bench_function(format!("{body_bytes}B"), |bencher| {
            bencher.iter_batched(
                || input.clone(),
                |mut read| {
                    assert_eq!(path.feed(&mut read), PUBLISHES);
                    path.take_sent()
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, publish_path);
criterion_main!(benches);
