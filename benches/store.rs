//! Persistent publishing through the message store: append records, write them, one
//! fdatasync per batch, as the group commit does. Reports messages/s for batch sizes 1, 64
//! and 1024 (messages per fsync), which is what decides durable throughput: one fdatasync costs
//! about 0.2 ms on these machines whatever it covers.
//!
//! Run with `cargo bench --bench store`. The figure printed as "elements/s" is messages/s;
//! fsyncs/s is that divided by the batch size.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spatemq::internals::MessageRecord;
use spatemq::internals::Store;

const BODY: [u8; 128] = [7; 128];
const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;

fn persist(store: &mut Store, batches: u64, batch: u64, sequence: &mut u64) -> Duration {
    let started = Instant::now();
    for _ in 0..batches {
        for _ in 0..batch {
            *sequence += 1;
            let record = MessageRecord {
                queue_sequence: 1,
                sequence: *sequence,
                expires_at_unix_ms: 0,
                priority: 0,
                exchange: b"",
                routing_key: b"bench",
                properties: &[0x10, 0x00, 2],
                body: &BODY,
            };
            store.append(&record).expect("append");
        }
        store.write_pending().expect("write");
        for segment in store.take_sync_batch().segments {
            segment.file.sync_data().expect("fdatasync");
        }
    }
    started.elapsed()
}

fn persistent_publish(criterion: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("spatemq-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut group = criterion.benchmark_group("persist_128B");
    group.sample_size(10).measurement_time(Duration::from_secs(3));
    let mut number = 1;
    for batch in [1u64, 64, 1024] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::new("messages_per_fsync", batch), &batch, |bencher, &batch| {
            let shard_dir = dir.join(format!("batch-{batch}"));
            let mut store = Store::open(&shard_dir, number, SEGMENT_BYTES, None).expect("store");
            number += 1000;
            let mut sequence = 0;
            bencher.iter_custom(|batches| persist(&mut store, batches, batch, &mut sequence));
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, persistent_publish);
criterion_main!(benches);
