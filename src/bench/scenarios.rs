//! The metadata scenarios: queue-count (declares/s), connection-count (connections/s, then
//! hold them), bind-churn (bind + unbind operations/s) and connection-churn (open + close/s).
//!
//! They measure how fast a broker handles the slow path, one synchronous method at a time per
//! connection, so their figures are round trips, not bytes. Connection scenarios spread over
//! the client threads with a few connections in flight per thread. Everything they create is
//! deleted or closed at the end, and every wait is bounded by the client's timeouts.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::args::BenchArgs;
use super::client::{Client, QueueSpec};
use super::error::BenchError;
use super::report::{round3, Report};
use super::runtime;
use super::stats::rate_per_second;
use super::throughput::heartbeat_interval;
use super::uri::Uri;

/// Connections a client thread opens at the same time (each task opens its share in turn).
const TASKS_PER_THREAD: usize = 16;
const POLL: Duration = Duration::from_millis(10);
const CHURN_NAME: &str = "spatemq-bench-churn";

pub fn queue_count(args: &BenchArgs) -> Report {
    let started = Instant::now();
    let result = runtime::block_on(async {
        let mut client = Client::connect(&args.uri, "spatemq bench queue-count").await?;
        client.open_channel().await?;
        let names: Vec<String> = (0..args.queues).map(|number| format!("spatemq-bench-queue-{number}")).collect();
        let declaring = Instant::now();
        for name in &names {
            // Quorum queues and streams must be durable.
            let durable = args.queue_type().is_some();
            let spec = QueueSpec { name, durable, auto_delete: false, arguments: &args.queue_arguments };
            client.declare_queue(&spec).await?;
        }
        let declare_time = declaring.elapsed();
        let deleting = Instant::now();
        for name in &names {
            client.delete_queue(name).await?;
        }
        let delete_time = deleting.elapsed();
        client.close().await?;
        Ok((declare_time, delete_time))
    });
    let (times, failure) = split_result(result);
    let mut report = Report::new("queue-count", started.elapsed(), failure);
    report.add("queues", args.queues, "");
    if let Some((declare_time, delete_time)) = times {
        let queues = u64::from(args.queues);
        report.add("declare_seconds", round3(declare_time.as_secs_f64()), "s");
        let declares = rate_per_second(queues, declare_time).round();
        report.add("declares_per_second", declares, "declares/s");
        report.add("delete_seconds", round3(delete_time.as_secs_f64()), "s");
        let deletes = rate_per_second(queues, delete_time).round();
        report.add("deletes_per_second", deletes, "deletes/s");
    }
    report
}

pub fn bind_churn(args: &BenchArgs) -> Report {
    let started = Instant::now();
    let result = runtime::block_on(async {
        let mut client = Client::connect(&args.uri, "spatemq bench bind-churn").await?;
        client.open_channel().await?;
        client.declare_exchange(CHURN_NAME, "direct", false).await?;
        let spec = QueueSpec { name: CHURN_NAME, durable: false, auto_delete: false, arguments: &Default::default() };
        client.declare_queue(&spec).await?;
        let churning = Instant::now();
        for number in 0..args.bindings {
            let routing_key = format!("key-{number}");
            client.bind_queue(CHURN_NAME, CHURN_NAME, &routing_key).await?;
            client.unbind_queue(CHURN_NAME, CHURN_NAME, &routing_key).await?;
        }
        let churn_time = churning.elapsed();
        client.delete_queue(CHURN_NAME).await?;
        client.delete_exchange(CHURN_NAME).await?;
        client.close().await?;
        Ok(churn_time)
    });
    let (churn_time, failure) = split_result(result);
    let mut report = Report::new("bind-churn", started.elapsed(), failure);
    report.add("bindings", args.bindings, "bind + unbind pairs");
    if let Some(churn_time) = churn_time {
        let operations = 2 * u64::from(args.bindings);
        report.add("churn_seconds", round3(churn_time.as_secs_f64()), "s");
        let rate = rate_per_second(operations, churn_time).round();
        report.add("ops_per_second", rate, "binds or unbinds/s");
    }
    report
}

fn split_result<T>(result: Result<T, BenchError>) -> (Option<T>, Option<BenchError>) {
    match result {
        Ok(value) => (Some(value), None),
        Err(error) => (None, Some(error)),
    }
}

/// Counts shared by every connection task of a connection scenario.
#[derive(Default)]
struct Tally {
    opened: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    closed: AtomicU64,
    /// Set by the watcher when the hold time is over.
    release: AtomicBool,
    first_error: Mutex<Option<BenchError>>,
}

impl Tally {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn record(&self, error: BenchError) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(error);
        }
    }
}

type Task = fn(Uri, Vec<u32>, Arc<Tally>) -> Pin<Box<dyn Future<Output = ()>>>;

pub fn connection_count(args: &BenchArgs) -> Report {
    raise_open_files_limit();
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let task: Task = |uri, numbers, tally| Box::pin(hold_connections(uri, numbers, tally));
    let handles = start_threads(args, &tally, task);
    let total = u64::from(args.connections);
    // Threads that end early (a runtime that did not start) must not keep us waiting.
    while Tally::read(&tally.opened) + Tally::read(&tally.failed) < total
        && !handles.iter().all(JoinHandle::is_finished)
    {
        std::thread::sleep(POLL);
    }
    let open_time = started.elapsed();
    std::thread::sleep(Duration::from_secs(args.hold_seconds));
    let held = Tally::read(&tally.opened) - Tally::read(&tally.dropped);
    tally.release.store(true, Ordering::Relaxed);
    let closing = Instant::now();
    join(handles, &tally);
    let close_time = closing.elapsed();
    let failure = tally.first_error.lock().ok().and_then(|mut first| first.take());
    let mut report = Report::new("connection-count", started.elapsed(), failure);
    report.add("connections", args.connections, "requested");
    report.add("opened", Tally::read(&tally.opened), "");
    report.add("failed", Tally::read(&tally.failed), "");
    report.add("open_seconds", round3(open_time.as_secs_f64()), "s");
    let opened = Tally::read(&tally.opened);
    let rate = rate_per_second(opened, open_time).round();
    report.add("connections_per_second", rate, "connections/s");
    report.add("hold_seconds", args.hold_seconds, "s");
    report.add("held", held, "still open after the hold");
    report.add("closed", Tally::read(&tally.closed), "");
    report.add("close_seconds", round3(close_time.as_secs_f64()), "s");
    report
}

pub fn connection_churn(args: &BenchArgs) -> Report {
    raise_open_files_limit();
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let task: Task = |uri, numbers, tally| Box::pin(churn_connections(uri, numbers, tally));
    let handles = start_threads(args, &tally, task);
    join(handles, &tally);
    let elapsed = started.elapsed();
    let failure = tally.first_error.lock().ok().and_then(|mut first| first.take());
    let mut report = Report::new("connection-churn", elapsed, failure);
    report.add("connections", args.connections, "requested");
    let completed = Tally::read(&tally.closed);
    report.add("completed", completed, "opened and closed");
    report.add("failed", Tally::read(&tally.failed), "");
    let rate = rate_per_second(completed, elapsed).round();
    report.add("ops_per_second", rate, "open + close/s");
    report
}

fn start_threads(args: &BenchArgs, tally: &Arc<Tally>, task: Task) -> Vec<JoinHandle<()>> {
    let numbers: Vec<u32> = (0..args.connections).collect();
    let mut handles = Vec::new();
    for (thread, share) in runtime::spread(numbers, args.threads).into_iter().enumerate() {
        let (uri, tally_for_thread) = (args.uri.clone(), tally.clone());
        let spawned = std::thread::Builder::new().name(format!("bench-{thread}")).spawn(move || {
            let tally = tally_for_thread.clone();
            let result = runtime::block_on(async move {
                let mut running = Vec::new();
                for group in runtime::spread(share, TASKS_PER_THREAD) {
                    running.push(monoio::spawn(task(uri.clone(), group, tally.clone())));
                }
                for handle in running {
                    handle.await;
                }
                Ok(())
            });
            if let Err(error) = result {
                tally_for_thread.record(error);
            }
        });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(error) => tally.record(BenchError::Runtime(error.to_string())),
        }
    }
    handles
}

fn join(handles: Vec<JoinHandle<()>>, tally: &Tally) {
    for handle in handles {
        if handle.join().is_err() {
            tally.record(BenchError::Runtime("a client thread panicked".into()));
        }
    }
}

async fn hold_connections(uri: Uri, numbers: Vec<u32>, tally: Arc<Tally>) {
    let mut clients = Vec::with_capacity(numbers.len());
    for number in numbers {
        let name = format!("spatemq bench connection {number}");
        match Client::connect(&uri, &name).await {
            Ok(client) => {
                Tally::count(&tally.opened);
                clients.push(client);
            }
            Err(error) => {
                Tally::count(&tally.failed);
                tally.record(error);
            }
        }
    }
    let beat = clients.first().and_then(|client| heartbeat_interval(client.heartbeat_seconds));
    let mut last_beat = Instant::now();
    while !tally.release.load(Ordering::Relaxed) {
        monoio::time::sleep(POLL * 10).await;
        if beat.is_some_and(|beat| last_beat.elapsed() >= beat) {
            last_beat = Instant::now();
            let mut alive = Vec::with_capacity(clients.len());
            for mut client in clients {
                match client.send_heartbeat().await {
                    Ok(()) => alive.push(client),
                    Err(_) => Tally::count(&tally.dropped),
                }
            }
            clients = alive;
        }
    }
    for client in clients {
        match client.close().await {
            Ok(()) => Tally::count(&tally.closed),
            Err(error) => tally.record(error),
        }
    }
}

async fn churn_connections(uri: Uri, numbers: Vec<u32>, tally: Arc<Tally>) {
    for number in numbers {
        let name = format!("spatemq bench churn {number}");
        let closed = match Client::connect(&uri, &name).await {
            Ok(client) => client.close().await,
            Err(error) => Err(error),
        };
        match closed {
            Ok(()) => Tally::count(&tally.closed),
            Err(error) => {
                Tally::count(&tally.failed);
                tally.record(error);
            }
        }
    }
}

/// Thousands of connections need thousands of descriptors: lift the soft limit to the hard one.
fn raise_open_files_limit() {
    // SAFETY: rlimit is plain data; getrlimit fills it and setrlimit only reads it.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
