//! Cross-shard mailbox throughput: one thread pushes `ShardMsg`s into `Mailboxes`, another
//! pops them, as two shards do. Backs the "messages/s between two cores" design figure.
//!
//! Two groups:
//! - `mailbox_two_threads/push_pop`: a message without heap data, pushed and woken one by one
//!   (`try_send`), so the figure is the queue itself.
//! - `mailbox_publish_batches/N`: what a shard really sends, `ShardMsg::Publish` carrying an
//!   `Arc<Message>` made on the sending thread and dropped on the receiving one, pushed in runs
//!   of N with one `wake_if_parked` per run (a connection's publishes of one loop turn) and
//!   drained up to the broker's `MAILBOX_BATCH` per turn. N = 1 is the unbatched worst case.
//!
//! Run with `cargo bench --bench mailbox`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spatemq::internals::{ConnId, Holder, Mailboxes, Message, QueueId, ShardMsg};

/// Messages per measured round.
const MESSAGES: u64 = 100_000;
/// The broker's own mailbox capacity (`limits::MAILBOX_CAPACITY`).
const CAPACITY: usize = 64 * 1024;
/// The most a shard takes from one mailbox per loop turn (`limits::MAILBOX_BATCH`).
const DRAIN_BATCH: usize = 4096;
const FROM: usize = 0;
const TO: usize = 1;

/// A variant without heap data, so the figure is the mailbox, not the allocator.
fn message(local: u64) -> ShardMsg {
    ShardMsg::ConnectionGone { conn: ConnId { shard: 0, local } }
}

/// A 16-byte transient publish as the connection shard sends it to a queue's owner.
fn publish(body: &Bytes, sequence: u64) -> ShardMsg {
    let message = Message {
        exchange: Bytes::new(),
        routing_key: Bytes::from_static(b"perf-test"),
        properties: Bytes::from_static(&[0, 0]),
        body: body.clone(),
    };
    ShardMsg::Publish {
        queue: QueueId::new(TO, 1),
        message: Arc::new(message),
        publisher: Holder { conn: ConnId { shard: FROM as u16, local: 1 }, channel: 1, incarnation: 0 },
        publish_sequence: Some(sequence),
    }
}

/// Pushes until the mailbox takes the message: a full mailbox is backpressure, and a shard
/// retries on its next turn.
fn push_until_taken(mailboxes: &Mailboxes, mut pending: ShardMsg) {
    while let Err(returned) = mailboxes.push(FROM, TO, pending) {
        pending = returned;
        mailboxes.wake_if_parked(TO);
        std::hint::spin_loop();
    }
}

/// Pops every message of a round, at most `DRAIN_BATCH` per turn; the time the consumer saw.
fn drain(mailboxes: &Mailboxes, started: Instant) -> Duration {
    let mut received = 0;
    while received < MESSAGES {
        let mut this_turn = 0;
        while this_turn < DRAIN_BATCH {
            let Some(delivered) = mailboxes.pop(FROM, TO) else { break };
            black_box(&delivered);
            drop(delivered);
            this_turn += 1;
        }
        received += this_turn as u64;
        if this_turn == 0 {
            std::hint::spin_loop();
        }
    }
    started.elapsed()
}

fn one_round(mailboxes: &Arc<Mailboxes>) -> Duration {
    let producer_side = mailboxes.clone();
    let started = Instant::now();
    let producer = std::thread::spawn(move || {
        for local in 0..MESSAGES {
            let mut pending = message(local);
            while let Err(returned) = producer_side.try_send(FROM, TO, pending) {
                pending = returned;
                std::hint::spin_loop();
            }
        }
    });
    let elapsed = drain(mailboxes, started);
    producer.join().expect("the producer thread does not panic");
    elapsed
}

fn one_batched_round(mailboxes: &Arc<Mailboxes>, run: u64) -> Duration {
    let producer_side = mailboxes.clone();
    let started = Instant::now();
    let producer = std::thread::spawn(move || {
        let body = Bytes::from_static(&[0x5A; 16]);
        let mut sequence = 0;
        while sequence < MESSAGES {
            let end = (sequence + run).min(MESSAGES);
            for number in sequence..end {
                push_until_taken(&producer_side, publish(&body, number));
            }
            producer_side.wake_if_parked(TO);
            sequence = end;
        }
    });
    let elapsed = drain(mailboxes, started);
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

fn publish_batches(criterion: &mut Criterion) {
    let mailboxes = Arc::new(Mailboxes::new(2, CAPACITY));
    let mut group = criterion.benchmark_group("mailbox_publish_batches");
    group.throughput(Throughput::Elements(MESSAGES));
    group.sample_size(20);
    for run in [1u64, 64, 1024] {
        group.bench_with_input(BenchmarkId::from_parameter(run), &run, |bencher, &run| {
            bencher.iter_custom(|rounds| (0..rounds).map(|_| one_batched_round(&mailboxes, run)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, two_threads, publish_batches);
criterion_main!(benches);
