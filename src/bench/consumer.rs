//! One consuming connection of the throughput scenario: a reader that takes every frame of a
//! socket read in one pass, and a small writer task for acks and heartbeats.
//!
//! Deliveries are parsed with the hand codec (`split_frame`, the deliver tag and the header's
//! body size read in place): nothing is allocated per message. Every `--ack N` deliveries
//! one basic.ack(multiple) is queued; the writer sends what a whole read produced in one
//! write. With `--measure-latency` the first 8 body bytes are the publisher's timestamp.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amq_protocol::types::FieldTable;
use bytes::{Bytes, BytesMut};
use monoio::io::OwnedReadHalf;
use monoio::net::TcpStream;

use super::args::TIMESTAMP_BYTES;
use super::client::{Client, CHANNEL};
use super::error::BenchError;
use super::stats::{now_nanos, Counters, LocalLatency};
use super::throughput::{heartbeat_interval, Shared};
use super::wire::{control_method, deliver_tag, header_body_size, Control, Input, Signal, WriteHalf};
use crate::codec::frame::{write_heartbeat, FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};
use crate::codec::hotpath::{encode_ack, method_ids, CLASS_BASIC};

const METHOD_DELIVER: u16 = 60;
/// Longest the ack writer sleeps before checking for heartbeats and the end of the run.
const IDLE_CHECK: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct ConsumerPlan {
    /// One consumer (basic.consume) per queue, all on the connection's one channel.
    pub queues: Vec<String>,
    pub ack_every: u32,
    pub prefetch_count: u16,
    pub rate: Option<u64>,
    pub limit: Option<u64>,
    pub measure_latency: bool,
    pub arguments: FieldTable,
}

/// Bytes for the writer task (acks), filled by the reader.
#[derive(Default)]
struct Outbox {
    pending: RefCell<BytesMut>,
    ready: Signal,
    closed: Cell<bool>,
}

/// Where the reader is inside the current delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Method,
    Header { delivery_tag: u64 },
    Body { delivery_tag: u64, left: u64, first: bool },
}

/// A consumer's running totals.
struct Progress {
    expect: Expect,
    consumed: u64,
    unacked: u32,
    last_tag: u64,
    latency: LocalLatency,
}

pub async fn setup(client: &mut Client, plan: &ConsumerPlan) -> Result<(), BenchError> {
    if plan.prefetch_count > 0 {
        client.qos(plan.prefetch_count).await?;
    }
    client.consume_all(&plan.queues, plan.ack_every == 0, &plan.arguments).await
}

pub async fn run(client: Client, plan: Arc<ConsumerPlan>, shared: Arc<Shared>) -> Result<(), BenchError> {
    let heartbeat = heartbeat_interval(client.heartbeat_seconds);
    let (mut input, output) = client.into_split();
    let outbox = Rc::new(Outbox::default());
    monoio::spawn(write_loop(output, outbox.clone(), heartbeat, shared.clone()));
    let mut progress =
        Progress { expect: Expect::Method, consumed: 0, unacked: 0, last_tag: 0, latency: LocalLatency::default() };
    let result = consume(&mut input, &plan, &outbox, &shared, &mut progress).await;
    progress.latency.flush(&shared.latency);
    if result.is_err() {
        outbox.closed.set(true);
        outbox.ready.raise();
    } else if !shared.stopping() {
        // `--cmessages` reached: settle what is held so the broker does not requeue it.
        if progress.unacked > 0 {
            encode_ack(&mut outbox.pending.borrow_mut(), CHANNEL, progress.last_tag, true);
            outbox.ready.raise();
        }
        shared.consumer_finished();
    }
    result
}

async fn consume(
    input: &mut Input<OwnedReadHalf<TcpStream>>,
    plan: &ConsumerPlan,
    outbox: &Outbox,
    shared: &Shared,
    progress: &mut Progress,
) -> Result<(), BenchError> {
    let started = Instant::now();
    loop {
        let before = progress.consumed;
        let finished = {
            // No await while the outbox is borrowed: the whole read is handled in one go.
            let mut pending = outbox.pending.borrow_mut();
            let mut finished = false;
            while let Some(frame) = input.next_buffered()? {
                if on_frame(frame.frame_type, &frame.payload, plan, progress, &mut pending)? {
                    finished = true;
                    break;
                }
            }
            finished
        };
        Counters::add(&shared.counters.consumed, progress.consumed - before);
        if !outbox.pending.borrow().is_empty() {
            outbox.ready.raise();
        }
        if plan.measure_latency {
            progress.latency.flush_if_due(&shared.latency);
        }
        if finished || shared.stopping() {
            return Ok(());
        }
        if let Some(rate) = plan.rate {
            let due_at = Duration::from_secs_f64(progress.consumed as f64 / rate as f64);
            let ahead = due_at.saturating_sub(started.elapsed());
            if !ahead.is_zero() {
                monoio::time::sleep(ahead).await;
            }
        }
        input.fill("consuming").await?;
    }
}

/// Handles one frame, queueing an ack into `acks` every `--ack` deliveries; true once
/// `--cmessages` is reached.
fn on_frame(
    frame_type: u8,
    payload: &Bytes,
    plan: &ConsumerPlan,
    progress: &mut Progress,
    acks: &mut BytesMut,
) -> Result<bool, BenchError> {
    let finished_tag = match (frame_type, progress.expect) {
        (FRAME_HEARTBEAT, _) => None,
        (FRAME_METHOD, Expect::Method) => {
            if method_ids(payload)? == (CLASS_BASIC, METHOD_DELIVER) {
                progress.expect = Expect::Header { delivery_tag: deliver_tag(payload)? };
            } else {
                // connection.blocked concerns publishers; a close or cancel ends the run.
                let _: Control = control_method(payload)?;
            }
            None
        }
        (FRAME_HEADER, Expect::Header { delivery_tag }) => match header_body_size(payload)? {
            0 => Some(delivery_tag),
            left => {
                progress.expect = Expect::Body { delivery_tag, left, first: true };
                None
            }
        },
        (FRAME_BODY, Expect::Body { delivery_tag, left, first }) => {
            if first && plan.measure_latency {
                if let Some(stamp) = payload.get(..TIMESTAMP_BYTES) {
                    progress.latency.record_stamp(stamp, now_nanos());
                }
            }
            match left.saturating_sub(payload.len() as u64) {
                0 => Some(delivery_tag),
                left => {
                    progress.expect = Expect::Body { delivery_tag, left, first: false };
                    None
                }
            }
        }
        (frame_type, expect) => {
            return Err(BenchError::Unexpected {
                expected: "a delivery",
                found: format!("a frame of type {frame_type} while expecting {expect:?}"),
            })
        }
    };
    let Some(delivery_tag) = finished_tag else {
        return Ok(false);
    };
    progress.expect = Expect::Method;
    progress.consumed += 1;
    progress.last_tag = delivery_tag;
    if plan.ack_every > 0 {
        progress.unacked += 1;
        if progress.unacked >= plan.ack_every {
            progress.unacked = 0;
            encode_ack(acks, CHANNEL, delivery_tag, true);
        }
    }
    Ok(plan.limit.is_some_and(|limit| progress.consumed >= limit))
}

async fn write_loop(mut output: WriteHalf, outbox: Rc<Outbox>, heartbeat: Option<Duration>, shared: Arc<Shared>) {
    let mut spare = BytesMut::with_capacity(4096);
    let mut last_write = Instant::now();
    let wait = heartbeat.map_or(IDLE_CHECK, |beat| beat.min(IDLE_CHECK));
    loop {
        outbox.ready.wait_for(wait).await;
        if outbox.closed.get() {
            return;
        }
        let mut chunk = std::mem::replace(&mut *outbox.pending.borrow_mut(), spare);
        if chunk.is_empty() && heartbeat.is_some_and(|beat| last_write.elapsed() >= beat) {
            write_heartbeat(&mut chunk);
        }
        if chunk.is_empty() {
            spare = chunk;
            continue;
        }
        let (result, mut written) = output.write_all(chunk).await;
        written.clear();
        spare = written;
        last_write = Instant::now();
        if let Err(source) = result {
            if !shared.stopping() {
                shared.fail(BenchError::Io { during: "acking deliveries", source });
            }
            return;
        }
    }
}
