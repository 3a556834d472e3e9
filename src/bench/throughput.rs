//! The throughput scenario: declares the topology, spreads publisher and consumer connections
//! over client threads (one monoio runtime each), then watches the shared counters, prints a
//! progress line a second, and decides when the run is over.
//!
//! Every run ends by itself: at `--time`, when the message counts are reached, when a count-
//! bounded run stops moving for `BROKER_WAIT_SECONDS`, or at the first failure (a broker
//! close, a timeout), which is reported and makes the exit code non-zero.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable};

use super::args::BenchArgs;
use super::client::{Client, QueueSpec, BROKER_WAIT_SECONDS};
use super::consumer::ConsumerPlan;
use super::error::BenchError;
use super::publisher::PublisherPlan;
use super::report::{self, ThroughputResult};
use super::runtime::{self, Role};
use super::stats::{new_histogram, rate_per_second, Counters, CountersSnapshot, LatencySummary, SharedLatency};
use crate::codec::hotpath::encode_properties;

/// How often the watcher checks the counters and the stop conditions.
const WATCH_TICK: Duration = Duration::from_millis(50);
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// A `--pmessages` run with unbounded consumers ends once they have been idle this long.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// What every client thread of one run shares.
#[derive(Default)]
pub struct Shared {
    pub counters: Counters,
    pub latency: SharedLatency,
    stop: AtomicBool,
    failure: Mutex<Option<BenchError>>,
    publishers_finished: AtomicU32,
    consumers_finished: AtomicU32,
}

impl Shared {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Records the first failure of the run and stops it.
    pub fn fail(&self, error: BenchError) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(error);
        }
        self.stop();
    }

    pub fn take_failure(&self) -> Option<BenchError> {
        self.failure.lock().ok().and_then(|mut failure| failure.take())
    }

    pub fn publisher_finished(&self) {
        self.publishers_finished.fetch_add(1, Ordering::Relaxed);
    }

    pub fn consumer_finished(&self) {
        self.consumers_finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// Heartbeats go out at half the agreed timeout, as RabbitMQ's clients do.
pub fn heartbeat_interval(heartbeat_seconds: u16) -> Option<Duration> {
    (heartbeat_seconds > 0).then(|| Duration::from_millis(u64::from(heartbeat_seconds) * 500))
}

pub fn run(args: &BenchArgs) -> ThroughputResult {
    let shared = Arc::new(Shared::default());
    let roles = match plan_roles(args) {
        Ok(roles) => roles,
        Err(error) => return ThroughputResult::failed(args, error),
    };
    if let Err(error) = runtime::block_on(declare_topology(args)) {
        return ThroughputResult::failed(args, error);
    }
    let threads = runtime::spread(roles, args.threads);
    let barrier = Arc::new(Barrier::new(threads.len() + 1));
    let handles = match runtime::start_threads(threads, &args.uri, &shared, &barrier) {
        Ok(handles) => handles,
        Err(error) => return ThroughputResult::failed(args, error),
    };
    barrier.wait();
    let started = Instant::now();
    let latency = watch(args, &shared, started);
    let elapsed = started.elapsed();
    shared.stop();
    for handle in handles {
        let _ = handle.join();
    }
    // A run that only reads a stream leaves it for the next reader: reading takes nothing away.
    let reads_a_stream = args.publishers == 0 && args.is_stream();
    if args.consumers > 0 && !reads_a_stream {
        // The queues were declared auto-delete; deleting them now makes that synchronous, so
        // a backlog cannot leak into the next run while the broker notices the consumers left.
        if let Err(error) = runtime::block_on(delete_queues(args)) {
            eprintln!("spatemq bench: could not delete the bench queues: {error}");
        }
    }
    let counters = shared.counters.snapshot();
    ThroughputResult {
        publishers: args.publishers,
        consumers: args.consumers,
        size_bytes: args.size_bytes,
        elapsed,
        avg_pub_rate: rate_per_second(counters.published, elapsed),
        avg_consume_rate: rate_per_second(counters.consumed, elapsed),
        counters,
        latency,
        failure: shared.take_failure(),
    }
}

/// Queue and exchange declarations, on a connection of their own before any client starts.
async fn declare_topology(args: &BenchArgs) -> Result<(), BenchError> {
    let mut client = Client::connect(&args.uri, "spatemq bench setup").await?;
    client.open_channel().await?;
    // Predeclared exchanges (amq.*) exist on every broker with fixed properties: declaring
    // them with other flags would be refused, so they are used as they are.
    if !args.exchange.is_empty() && !args.exchange.starts_with("amq.") {
        match args.delay_ms {
            None => client.declare_exchange(&args.exchange, &args.exchange_type, args.persistent).await?,
            Some(_) => {
                let mut arguments = FieldTable::default();
                let routes_as = AMQPValue::LongString(args.exchange_type.as_str().into());
                arguments.insert("x-delayed-type".into(), routes_as);
                client.declare_exchange_with(&args.exchange, "x-delayed-message", args.persistent, arguments).await?
            }
        }
    }
    for queue in args.queue_names() {
        // Quorum queues and streams must be durable and cannot be auto-delete.
        let typed = args.queue_type().is_some();
        let spec = QueueSpec {
            name: &queue,
            durable: args.persistent || typed,
            // With consumers the queue goes away with them, leaving no backlog for the next run;
            // a run with consumers only drains a backlog a run without consumers left (the
            // same declaration, so it is not refused as inequivalent).
            auto_delete: args.consumers > 0 && args.publishers > 0 && !typed,
            arguments: &args.queue_arguments,
        };
        client.declare_queue(&spec).await?;
        if !args.exchange.is_empty() {
            let routing_key = args.routing_key.as_deref().unwrap_or(&queue);
            client.bind_queue(&queue, &args.exchange, routing_key).await?;
        }
    }
    client.close().await
}

async fn delete_queues(args: &BenchArgs) -> Result<(), BenchError> {
    let mut client = Client::connect(&args.uri, "spatemq bench cleanup").await?;
    client.open_channel().await?;
    for queue in args.queue_names() {
        client.delete_queue(&queue).await?;
    }
    client.close().await
}

/// The properties every publish carries: delivery_mode 2 with `--persistent`, an `x-delay`
/// header with `--delay-ms`; none otherwise.
fn publish_properties(args: &BenchArgs) -> Result<Vec<u8>, BenchError> {
    let mut properties = BasicProperties::default();
    if args.persistent {
        properties = properties.with_delivery_mode(2);
    }
    if let Some(delay_ms) = args.delay_ms {
        let mut headers = FieldTable::default();
        headers.insert("x-delay".into(), AMQPValue::LongLongInt(i64::try_from(delay_ms).unwrap_or(i64::MAX)));
        properties = properties.with_headers(headers);
    }
    if !args.persistent && args.delay_ms.is_none() {
        return Ok(Vec::new());
    }
    Ok(encode_properties(&properties)?)
}

/// Consumers first, so that with two threads one publisher and one consumer land apart.
fn plan_roles(args: &BenchArgs) -> Result<Vec<Role>, BenchError> {
    let queues = args.queue_names();
    let properties = publish_properties(args)?;
    let mut roles = Vec::new();
    for (index, queues) in share_out(&queues, args.consumers).into_iter().enumerate() {
        let plan = ConsumerPlan {
            queues,
            ack_every: args.ack_every,
            prefetch_count: args.prefetch_count,
            rate: args.consumer_rate,
            limit: args.consumer_messages,
            measure_latency: args.measure_latency,
            arguments: args.consumer_arguments.clone(),
        };
        roles.push(Role::Consumer(index, Arc::new(plan)));
    }
    for (index, queues) in share_out(&queues, args.publishers).into_iter().enumerate() {
        let plan = PublisherPlan {
            exchange: args.exchange.clone(),
            routing_keys: match &args.routing_key {
                Some(routing_key) => vec![routing_key.clone()],
                None => queues,
            },
            properties: properties.clone(),
            size_bytes: args.size_bytes,
            confirm: args.confirm,
            rate: args.publisher_rate,
            limit: args.publisher_messages,
            measure_latency: args.measure_latency,
            delay_spread_ms: args.delay_ms.filter(|_| args.delay_spread),
        };
        roles.push(Role::Publisher(index, Arc::new(plan)));
    }
    Ok(roles)
}

/// The queues of each of `clients` publishers (or consumers): with at least as many clients as
/// queues, client i takes queue i mod N (several clients share a queue); with fewer, client i
/// takes queues i, i + clients, i + 2·clients, ..., so every queue of a pattern is used.
fn share_out(queues: &[String], clients: u32) -> Vec<Vec<String>> {
    let clients = clients as usize;
    if clients >= queues.len() {
        return queues.iter().cycle().take(clients).map(|queue| vec![queue.clone()]).collect();
    }
    (0..clients).map(|client| queues.iter().skip(client).step_by(clients).cloned().collect()).collect()
}

/// Runs until a stop condition holds; returns the latency of the whole run.
fn watch(args: &BenchArgs, shared: &Shared, started: Instant) -> Option<LatencySummary> {
    let mut total_latency = new_histogram();
    let mut last_report = (started, CountersSnapshot::default());
    let mut last_change = (started, CountersSnapshot::default());
    while !shared.stopping() {
        std::thread::sleep(WATCH_TICK);
        let now = Instant::now();
        let counters = shared.counters.snapshot();
        if counters != last_change.1 {
            last_change = (now, counters);
        }
        if now - last_report.0 >= PROGRESS_EVERY {
            let interval = shared.latency.take_interval();
            let _ = total_latency.add(&interval);
            let seconds = now - last_report.0;
            eprintln!(
                "{}",
                report::progress_line(
                    now - started,
                    rate_per_second(counters.published - last_report.1.published, seconds),
                    rate_per_second(counters.consumed - last_report.1.consumed, seconds),
                    LatencySummary::of(&interval),
                )
            );
            last_report = (now, counters);
        }
        if let Some(reason) = should_stop(args, shared, now - started, now - last_change.0) {
            if let Some(error) = reason {
                shared.fail(error);
            }
            break;
        }
    }
    let _ = total_latency.add(shared.latency.take_interval());
    LatencySummary::of(&total_latency)
}

/// `Some(None)`: the run is complete; `Some(Some(error))`: it failed; `None`: keep going.
fn should_stop(args: &BenchArgs, shared: &Shared, elapsed: Duration, idle: Duration) -> Option<Option<BenchError>> {
    let publishers_done = shared.publishers_finished.load(Ordering::Relaxed) >= args.publishers;
    let consumers_done = shared.consumers_finished.load(Ordering::Relaxed) >= args.consumers;
    if publishers_done && consumers_done {
        return Some(None);
    }
    let bounded_consumers_done = args.consumer_messages.is_some() && consumers_done;
    let drained = args.consumer_messages.is_none() && publishers_done && idle >= DRAIN_IDLE;
    match args.time_seconds {
        Some(seconds) if elapsed >= Duration::from_secs(seconds) => Some(None),
        Some(_) => None,
        None if bounded_consumers_done || drained => Some(None),
        None if idle >= Duration::from_secs(BROKER_WAIT_SECONDS) => {
            Some(Some(BenchError::Stalled { seconds: BROKER_WAIT_SECONDS }))
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::share_out;

    fn names(count: usize) -> Vec<String> {
        (1..=count).map(|number| format!("q-{number}")).collect()
    }

    #[test]
    fn more_clients_than_queues_share_queues_in_turn() {
        let shared = share_out(&names(2), 5);
        let firsts: Vec<&str> = shared.iter().map(|queues| queues[0].as_str()).collect();
        assert_eq!(firsts, ["q-1", "q-2", "q-1", "q-2", "q-1"]);
        assert!(shared.iter().all(|queues| queues.len() == 1));
    }

    #[test]
    fn fewer_clients_than_queues_cover_every_queue_once() {
        let shared = share_out(&names(1000), 3);
        assert_eq!(shared.iter().map(Vec::len).collect::<Vec<_>>(), [334, 333, 333]);
        let mut all: Vec<String> = shared.into_iter().flatten().collect();
        all.sort();
        let mut expected = names(1000);
        expected.sort();
        assert_eq!(all, expected);
    }
}
