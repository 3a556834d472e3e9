//! Cross-shard mailbox throughput: one thread pushes `ShardMsg`s into `Mailboxes`, another
//! pops them, as two shards do. Backs the "messages/s between two cores" design figure.
//!
//! Run with `cargo bench --bench mailbox`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spatemq::internals::ConnId;
use spatemq::internals::Mailboxes;
use spatemq::internals::ShardMsg;

/// Messages per measured round.
const MESSAGES: u64 = 100_000;
/// The broker's own mailbox capacity.
const CAPACITY: usize = 64 * 1024;
const FROM: usize = 0;
const TO: usize = 1;

/// A variant without heap data, so the figure is the mailbox, not the allocator.
fn message(local: u64) -> ShardMsg {
    ShardMsg::ConnectionGone { conn: ConnId { shard: 0, local } }
}

fn one_round(mailboxes: &Arc<Mailboxes>) -> Duration {
    let producer_side = mailboxes.clone();
    let started = Instant::now();
    let producer = std::thread::spawn(move || {
        for local in 0..MESSAGES {
            let mut pending = message(local);
            // A full mailbox is backpressure: retry, as a shard retries on its next turn.
            while let Err(returned) = producer_side.try_send(FROM, TO, pending) {
                pending = returned;
                std::hint::spin_loop();
            }
        }
    });
    let mut received = 0;
    while received < MESSAGES {
        match mailboxes.pop(FROM, TO) {
            Some(delivered) => {
                black_box(delivered);
                received += 1;
            }
            None => std::hint::spin_loop(),
        }
    }
    let elapsed = started.elapsed();
    producer.join().expect("the producer thread does not panic");
    elapsed
}

fn two_threads(criterion: &mut Criterion) {
    let mailboxes = Arc::new(Mailboxes::new(2, CAPACITY));
    let mut group = criterion.benchmark_group("mailbox_two_threads");
    group.throughput(Throughput::Elements(MESSAGES));
    group.sample_size(20);
    group.bench_function("push_pop", |bencher| {
        bencher.iter_custom(|rounds| (0..rounds).map(|_| one_round(&mailboxes)).sum())
    });
    group.finish();
}

criterion_group!(benches, two_threads);
criterion_main!(benches);
