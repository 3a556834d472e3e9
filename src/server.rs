//! Starting and stopping the broker: the data directory, the listeners, one thread and one
//! monoio runtime per shard, and a clean shutdown that closes connections with 320.
//!
//! Binding: every shard accepts on its own SO_REUSEPORT listener, so the kernel spreads
//! connections. monoio sets SO_REUSEPORT by default, which would let a second broker share
//! the port silently; a plain bind first (without SO_REUSEPORT) proves the port is free.

use std::fmt;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monoio::net::{ListenerOpts, TcpListener};

use crate::alarms::{start_monitor, total_memory_bytes, Alarms, Limits};
use crate::broker::definitions::Definitions;
use crate::broker::error::{AmqpError, CONNECTION_FORCED};
use crate::broker::recovery::{recover, shard_dir, RestoredQueue};
use crate::broker::snapshot::Snapshot;
use crate::config::Config;
use crate::limits::MAILBOX_CAPACITY;
use crate::shard::mailbox::Mailboxes;
use crate::shard::Shard;
use crate::store::definitions_log::DefinitionsLog;
use crate::store::lock::{lock_data_dir, DataDirLock};
use crate::store::segment::SHUTTING_DOWN;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

#[derive(Debug)]
pub enum StartError {
    DataDir { path: String, source: std::io::Error },
    Storage { what: &'static str, source: std::io::Error },
    PortInUse { address: SocketAddr, source: std::io::Error },
    Shard { shard: usize, message: String },
    Tls(crate::shard::tls::TlsSetupError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::DataDir { path, source } => write!(f, "cannot use data directory {path}: {source}"),
            StartError::Storage { what, source } => write!(f, "{what}: {source}"),
            StartError::PortInUse { address, source } => {
                write!(f, "cannot listen on {address}: {source} (is another broker running on this port?)")
            }
            StartError::Shard { shard, message } => {
                write!(f, "shard {shard} failed to start: {message}")
            }
            StartError::Tls(error) => write!(f, "cannot set up amqps: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

pub struct Running {
    pub address: SocketAddr,
    /// With `--per-shard-listeners`: the port of each shard's own listener.
    pub shard_addresses: Vec<SocketAddr>,
    /// The amqps listener, when TLS is configured.
    pub amqps_address: Option<SocketAddr>,
    pub driver: &'static str,
    mailboxes: Arc<Mailboxes>,
    threads: Vec<JoinHandle<()>>,
    _lock: DataDirLock,
    alarms: Arc<Alarms>,
    pub recovered_messages: u64,
}

impl Running {
    /// Asks every shard to close its connections (320 CONNECTION_FORCED) and waits for them.
    pub fn shutdown(self) {
        SHUTTING_DOWN.store(true, Ordering::SeqCst);
        self.alarms.stop();
        self.mailboxes.request_shutdown();
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

pub fn start(config: Config) -> Result<Running, StartError> {
    let data_dir_error = |source| StartError::DataDir { path: config.data_dir.display().to_string(), source };
    std::fs::create_dir_all(&config.data_dir).map_err(data_dir_error)?;
    let lock = lock_data_dir(&config.data_dir).map_err(data_dir_error)?;
    let requested = SocketAddr::new(config.bind, config.amqp_port);
    let address = {
        let probe =
            StdListener::bind(requested).map_err(|source| StartError::PortInUse { address: requested, source })?;
        probe.local_addr().map_err(|source| StartError::PortInUse { address: requested, source })?
    };
    let tls = amqps_listener(&config)?;
    let alarms = start_monitor(Limits {
        memory_high_watermark_bytes: config.memory_high_watermark.bytes(total_memory_bytes()),
        disk_free_limit_bytes: config.disk_free_limit_bytes,
        data_dir: config.data_dir.clone(),
    });
    let config = Arc::new(config);
    let mailboxes = Arc::new(Mailboxes::new(config.shards, MAILBOX_CAPACITY));
    let durable = recover_durable_state(&config)?;
    let recovered_messages = durable.messages;
    let mut definitions = durable.definitions;
    let initial = definitions.take_changed().unwrap_or_default();
    let mut writer = Some((definitions, Some(durable.log)));
    let mut restored = durable.queues_by_shard;
    let mut next_segments = durable.next_segment_numbers;
    let (ready_sender, ready_receiver) = mpsc::channel();
    let mut threads = Vec::with_capacity(config.shards);
    for shard_id in 0..config.shards {
        let config = config.clone();
        let mailboxes = mailboxes.clone();
        let alarms = alarms.clone();
        let ready = ready_sender.clone();
        let initial = initial.clone();
        let writer = if shard_id == 0 { writer.take() } else { None };
        let restore = restored.remove(&shard_id).unwrap_or_default();
        let next_segment = next_segments.remove(&shard_id).unwrap_or(1);
        let tls = tls.clone();
        let thread = std::thread::Builder::new()
            .name(format!("shard-{shard_id}"))
            .spawn(move || {
                run_shard(
                    ShardStart {
                        shard_id,
                        config,
                        mailboxes,
                        alarms,
                        address,
                        tls,
                        initial,
                        writer,
                        restore,
                        next_segment,
                    },
                    ready,
                )
            })
            .map_err(|error| StartError::Shard { shard: shard_id, message: error.to_string() })?;
        threads.push(thread);
    }
    drop(ready_sender);
    let mut shard_addresses = vec![address; config.shards];
    let mut driver = "io_uring";
    for _ in 0..config.shards {
        match ready_receiver.recv() {
            Ok(Ok(report)) => {
                if let Some(own) = report.own_address {
                    shard_addresses[report.shard] = own;
                }
                if report.legacy_driver {
                    driver = "epoll";
                }
            }
            Ok(Err(error)) => {
                mailboxes.request_shutdown();
                return Err(error);
            }
            Err(_) => return Err(StartError::Shard { shard: 0, message: "a shard thread exited during start".into() }),
        }
    }
    let amqps_address = tls.map(|listener| listener.address);
    Ok(Running {
        address,
        shard_addresses,
        amqps_address,
        driver,
        mailboxes,
        threads,
        _lock: lock,
        alarms,
        recovered_messages,
    })
}

/// amqps: the TLS configuration every shard shares and the address its listener takes (on the
/// first bind address), checked free as the AMQP port is.
#[derive(Clone)]
struct AmqpsListener {
    address: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
}

fn amqps_listener(config: &Config) -> Result<Option<AmqpsListener>, StartError> {
    let Some(tls) = crate::shard::tls::server_config(config).map_err(StartError::Tls)? else { return Ok(None) };
    let Some(port) = config.amqps_listener_port() else { return Ok(None) };
    let address = SocketAddr::new(config.bind, port);
    StdListener::bind(address).map_err(|source| StartError::PortInUse { address, source })?;
    Ok(Some(AmqpsListener { address, tls }))
}

struct ShardReady {
    shard: usize,
    own_address: Option<SocketAddr>,
    legacy_driver: bool,
}

type ReadySender = mpsc::Sender<Result<ShardReady, StartError>>;

struct ShardStart {
    shard_id: usize,
    config: Arc<Config>,
    mailboxes: Arc<Mailboxes>,
    alarms: Arc<Alarms>,
    address: SocketAddr,
    tls: Option<AmqpsListener>,
    initial: Arc<Snapshot>,
    writer: Option<(Definitions, Option<DefinitionsLog>)>,
    restore: Vec<RestoredQueue>,
    next_segment: u64,
}

fn run_shard(start: ShardStart, ready: ReadySender) {
    let ShardStart { shard_id, config, mailboxes, alarms, address, tls, initial, writer, restore, next_segment } =
        start;
    if config.pin_cores {
        pin_to_core(shard_id);
    }
    let fail = move |ready: &ReadySender, message: String| {
        let _ = ready.send(Err(StartError::Shard { shard: shard_id, message }));
    };
    let runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build();
    let mut runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => return fail(&ready, format!("cannot build the runtime: {error}")),
    };
    let legacy_driver = matches!(runtime, monoio::FusionRuntime::Legacy(_));
    runtime.block_on(async move {
        let mut listeners = Vec::new();
        match TcpListener::bind_with_config(address, &ListenerOpts::new().reuse_port(true)) {
            Ok(listener) => listeners.push(listener),
            Err(error) => return fail(&ready, format!("cannot listen on {address}: {error}")),
        }
        let mut tls_listener = None;
        if let Some(AmqpsListener { address, tls }) = tls {
            match TcpListener::bind_with_config(address, &ListenerOpts::new().reuse_port(true)) {
                Ok(listener) => tls_listener = Some((listener, tls)),
                Err(error) => return fail(&ready, format!("cannot listen on {address} (amqps): {error}")),
            }
        }
        let mut own_address = None;
        if config.per_shard_listeners {
            let own = SocketAddr::new(address.ip(), 0);
            match TcpListener::bind_with_config(own, &ListenerOpts::new().reuse_port(false)) {
                Ok(listener) => {
                    own_address = listener.local_addr().ok();
                    listeners.push(listener);
                }
                Err(error) => return fail(&ready, format!("cannot open the shard's own listener: {error}")),
            }
        }
        let store_dir = shard_dir(&config.data_dir, shard_id);
        let store = match Store::open(
            &store_dir,
            next_segment,
            config.segment_bytes,
            config.inject_store_failure_after_bytes,
        ) {
            Ok(store) => store,
            Err(error) => return fail(&ready, format!("cannot open message store {}: {error}", store_dir.display())),
        };
        let shard = Rc::new(Shard::new(shard_id, config.clone(), mailboxes, initial, writer, Some(store), alarms));
        shard.restore_queues(restore);
        monoio::spawn(crate::shard::commit::commit_loop(shard.clone()));
        monoio::spawn(crate::shard::expiry::expiry_loop(shard.clone()));
        monoio::spawn(crate::shard::compaction::compaction_loop(shard.clone()));
        monoio::spawn(crate::shard::ack_timeout::ack_timeout_loop(shard.clone()));
        let collector = shard.clone();
        monoio::spawn(crate::alarms::collect_loop(move || collector.shutdown_requested()));
        for listener in listeners {
            monoio::spawn(accept_loop(shard.clone(), listener, None));
        }
        if let Some((listener, tls)) = tls_listener {
            monoio::spawn(accept_loop(shard.clone(), listener, Some(tls)));
        }
        let _ = ready.send(Ok(ShardReady { shard: shard_id, own_address, legacy_driver }));
        shard.clone().run_mailbox_loop().await;
        close_all_connections(&shard).await;
        crate::shard::commit::final_commit(&shard).await;
        let (fsyncs, confirmed) = (shard.sync_signal.fsyncs.get(), shard.sync_signal.confirmed_messages.get());
        if fsyncs > 0 {
            crate::info!(
                "shard {shard_id}: {fsyncs} fdatasync(s) released {confirmed} persistent confirm(s), {:.1} per fsync",
                confirmed as f64 / fsyncs as f64
            );
        }
    });
}

/// Accepts AMQP sockets, or amqps ones when `tls` is given.
async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    use crate::shard::socket::{serve, serve_tls};
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if shard.shutdown_requested() {
                    return;
                }
                let loopback_peer = peer.ip().is_loopback();
                match &tls {
                    None => monoio::spawn(serve(shard.clone(), stream, loopback_peer)),
                    Some(tls) => monoio::spawn(serve_tls(shard.clone(), stream, loopback_peer, tls.clone())),
                };
            }
            Err(error) => {
                // Usually out of file descriptors: back off instead of spinning.
                crate::warn!("shard {}: accept failed: {error}", shard.id);
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Shutdown: every connection gets connection.close 320, then its output is flushed (bounded).
async fn close_all_connections(shard: &Rc<Shard>) {
    let connections: Vec<_> = shard.connections.borrow().values().cloned().collect();
    let error = AmqpError::new(CONNECTION_FORCED, "broker forced connection closure with reason 'shutdown'");
    for connection in &connections {
        crate::amqp::connection::send_connection_close(connection, &error, 0, 0);
        connection.close_output();
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && connections.iter().any(|connection| !connection.is_dead()) {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What survives from the last run: definitions (replayed, then compacted) and the stored
/// messages of durable queues, grouped by the shard that now owns each queue.
struct DurableState {
    definitions: Definitions,
    log: DefinitionsLog,
    queues_by_shard: HashMap<usize, Vec<RestoredQueue>>,
    next_segment_numbers: HashMap<usize, u64>,
    messages: u64,
}

fn recover_durable_state(config: &Config) -> Result<DurableState, StartError> {
    let started = Instant::now();
    let (mut log, operations) = DefinitionsLog::open(&config.data_dir)
        .map_err(|source| StartError::Storage { what: "cannot read the definitions log", source })?;
    let mut definitions = Definitions::new(config.shards);
    definitions.replay(&operations);
    log.compact(&definitions.durable_operations())
        .map_err(|source| StartError::Storage { what: "cannot compact the definitions log", source })?;
    let live = definitions.durable_queue_sequences();
    let mut recovered = recover(&config.data_dir, &live)
        .map_err(|source| StartError::Storage { what: "cannot recover stored messages", source })?;
    let mut queues_by_shard: HashMap<usize, Vec<_>> = HashMap::new();
    for queue in definitions.all_queues() {
        let entries = recovered.queues.remove(&queue.id.sequence()).unwrap_or_default();
        queues_by_shard.entry(queue.id.owner()).or_default().push((queue.clone(), entries));
    }
    if recovered.messages > 0 || !operations.is_empty() {
        crate::info!(
            "recovered {} definitions and {} messages in {} ms{}",
            operations.len(),
            recovered.messages,
            started.elapsed().as_millis(),
            if recovered.damaged_segments > 0 {
                format!(" ({} damaged segment(s), see above)", recovered.damaged_segments)
            } else {
                String::new()
            }
        );
    }
    if recovered.copies_ignored > 0 {
        crate::info!(
            "recovery: {} compaction copies left unused: their originals were still in place",
            recovered.copies_ignored
        );
    }
    Ok(DurableState {
        definitions,
        log,
        queues_by_shard,
        next_segment_numbers: recovered.next_segment_numbers,
        messages: recovered.messages,
    })
}

fn pin_to_core(shard_id: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: cpu_set_t is plain data; CPU_SET writes within it for an index below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(shard_id % cores, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            crate::warn!("shard {shard_id}: could not pin to core {}", shard_id % cores);
        }
    }
}
