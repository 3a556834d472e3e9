//! Starting and stopping the broker: the data directory, the listeners, one thread and one
//! monoio runtime per shard, and a clean shutdown that closes connections with 320.
//!
//! Binding: every shard accepts on every `--bind` address with a SO_REUSEPORT listener of its
//! own, and serves each socket there or hands it to the shard with the fewest connections
//! (`shard/balance.rs`). SO_REUSEPORT would let a second broker share the port silently; a
//! plain bind of each address first (without it) proves the port is free
//! (`shard/listener.rs`). With port 0 the first address picks the port and the others take
//! the same one.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;

use crate::alarms::{start_monitor, total_memory_bytes, Alarms, Limits};
use crate::amqp::admission::ConnectionSlots;
use crate::broker::accounts::Defaults;
use crate::broker::definitions::Definitions;
use crate::broker::error::{AmqpError, CONNECTION_FORCED};
use crate::broker::recovery::{recover, shard_dir, RecoveredQueue, RestoredQueue};
use crate::broker::snapshot::Snapshot;
use crate::config::{Bind, Config};
use crate::limits::mailbox_capacity;
use crate::shard::listener;
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
    Listen { address: SocketAddr, source: std::io::Error },
    Shard { shard: usize, message: String },
    Definitions { path: String, problem: String },
    Tls(crate::shard::tls::TlsSetupError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::DataDir { path, source } => write!(f, "cannot use data directory {path}: {source}"),
            StartError::Storage { what, source } => write!(f, "{what}: {source}"),
            StartError::Listen { address, source } if source.kind() == std::io::ErrorKind::AddrInUse => {
                write!(f, "cannot listen on {address}: {source} (is another broker running on this port?)")
            }
            StartError::Listen { address, source } => write!(f, "cannot listen on {address}: {source}"),
            StartError::Shard { shard, message } => {
                write!(f, "shard {shard} failed to start: {message}")
            }
            StartError::Definitions { path, problem } => write!(f, "cannot import definitions from {path}: {problem}"),
            StartError::Tls(error) => write!(f, "cannot set up amqps: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

pub struct Running {
    /// Every address the AMQP listeners accept on, in `--bind` order (all on one port).
    pub addresses: Vec<SocketAddr>,
    /// With `--per-shard-listeners`: the port of each shard's own listener.
    pub shard_addresses: Vec<SocketAddr>,
    /// The amqps listeners' addresses, when TLS is configured.
    pub amqps_addresses: Vec<SocketAddr>,
    pub driver: &'static str,
    mailboxes: Arc<Mailboxes>,
    threads: Vec<JoinHandle<()>>,
    _lock: DataDirLock,
    alarms: Arc<Alarms>,
    control: Option<crate::control::ControlServer>,
    management: Option<crate::management::HttpServer>,
    /// The management HTTP API's address (None when disabled).
    pub management_address: Option<SocketAddr>,
    prometheus: Option<crate::management::HttpServer>,
    /// The Prometheus endpoint's address (None when disabled).
    pub prometheus_address: Option<SocketAddr>,
    pub recovered_messages: u64,
}

impl Running {
    /// Asks every shard to close its connections (320 CONNECTION_FORCED) and waits for them.
    pub fn shutdown(self) {
        SHUTTING_DOWN.store(true, Ordering::SeqCst);
        if let Some(management) = self.management {
            management.stop();
        }
        if let Some(prometheus) = self.prometheus {
            prometheus.stop();
        }
        if let Some(control) = self.control {
            control.stop();
        }
        self.alarms.stop();
        self.mailboxes.request_shutdown();
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

pub fn start(config: Config) -> Result<Running, StartError> {
    let data_dir_error = |source| StartError::DataDir { path: config.data_dir.display().to_string(), source };
    crate::store::files::create_dirs(&config.data_dir).map_err(data_dir_error)?;
    let lock = lock_data_dir(&config.data_dir).map_err(data_dir_error)?;
    // The probes hold the ports until every shard listens on them: a port the kernel picked
    // (port 0) is otherwise free for anyone, another broker or a client's outgoing connection,
    // while recovery runs and the shards start. They never listen, so the shards bind beside
    // them (`listener`).
    let Probed { addresses, held: amqp_probes } = probe_addresses(&config)?;
    let (tls, amqps_probes) = amqps_listener(&config, &addresses)?;
    let alarms = start_monitor(Limits {
        memory_high_watermark_bytes: config.memory_high_watermark.bytes(total_memory_bytes()),
        disk_free_limit_bytes: config.disk_free_limit_bytes,
        data_dir: config.data_dir.clone(),
    });
    let config = Arc::new(config);
    let mailboxes = Arc::new(Mailboxes::new(config.shards, mailbox_capacity(config.shards)));
    let connection_slots = Arc::new(ConnectionSlots::new(config.max_connections));
    let durable = recover_durable_state(&config)?;
    let recovered_messages = durable.messages;
    let mut definitions = durable.definitions;
    let initial = definitions.take_changed().unwrap_or_default();
    let mut writer = Some((definitions, Some(durable.log)));
    let mut restored = durable.queues_by_shard;
    let mut delayed_held = durable.delayed_by_shard;
    let mut next_segments = durable.next_segment_numbers;
    let (ready_sender, ready_receiver) = mpsc::channel();
    let mut threads = Vec::with_capacity(config.shards);
    for shard_id in 0..config.shards {
        let config = config.clone();
        let mailboxes = mailboxes.clone();
        let alarms = alarms.clone();
        let ready = ready_sender.clone();
        let initial = initial.clone();
        let addresses = addresses.clone();
        let connection_slots = connection_slots.clone();
        let writer = if shard_id == 0 { writer.take() } else { None };
        let restore = restored.remove(&shard_id).unwrap_or_default();
        let delayed = delayed_held.remove(&shard_id).unwrap_or_default();
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
                        connection_slots,
                        alarms,
                        addresses,
                        tls,
                        initial,
                        writer,
                        restore,
                        delayed,
                        next_segment,
                    },
                    ready,
                )
            })
            .map_err(|error| StartError::Shard { shard: shard_id, message: error.to_string() })?;
        threads.push(thread);
    }
    drop(ready_sender);
    let mut shard_addresses = vec![addresses[0]; config.shards];
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
    drop((amqp_probes, amqps_probes));
    let control = crate::control::start(&config.data_dir, mailboxes.clone())
        .map_err(|source| StartError::Storage { what: "cannot open the control socket", source })?;
    let amqps_addresses = tls.map(|listener| listener.addresses).unwrap_or_default();
    let management = crate::management::start(crate::management::Start {
        config: config.clone(),
        mailboxes: mailboxes.clone(),
        alarms: alarms.clone(),
        amqp_addresses: addresses.clone(),
        amqps_addresses: amqps_addresses.clone(),
    });
    let management = match management {
        Ok(management) => management,
        Err(source) => {
            mailboxes.request_shutdown();
            let address = SocketAddr::new(config.management_bind, config.management_port);
            return Err(StartError::Listen { address, source });
        }
    };
    let prometheus = crate::management::prometheus::start(crate::management::prometheus::Start {
        config: config.clone(),
        mailboxes: mailboxes.clone(),
        alarms: alarms.clone(),
    });
    let prometheus = match prometheus {
        Ok(prometheus) => prometheus,
        Err(source) => {
            if let Some(management) = management {
                management.stop();
            }
            mailboxes.request_shutdown();
            let address = SocketAddr::new(config.prometheus_bind, config.prometheus_port);
            return Err(StartError::Listen { address, source });
        }
    };
    let management_address = management.as_ref().map(|server| server.address);
    let prometheus_address = prometheus.as_ref().map(|server| server.address);
    Ok(Running {
        addresses,
        shard_addresses,
        amqps_addresses,
        driver,
        mailboxes,
        threads,
        _lock: lock,
        alarms,
        control: Some(control),
        management,
        management_address,
        prometheus,
        prometheus_address,
        recovered_messages,
    })
}

/// How often a port picked by the kernel (`--amqp-port 0`) is tried again when a later
/// address of `--bind` has it taken already.
const PICKED_PORT_ATTEMPTS: usize = 8;

/// The addresses to listen on, each with the port the first one got, and the probes that
/// proved them free, still bound.
#[derive(Debug)]
struct Probed {
    addresses: Vec<SocketAddr>,
    held: Vec<listener::Probe>,
}

/// Proves every address's port free (see the module header) and returns the addresses with
/// the port the first one got. The default dual stack drops `::` on a host without IPv6.
fn probe_addresses(config: &Config) -> Result<Probed, StartError> {
    probe_addresses_with(config, listener::probe)
}

/// `probe_addresses` with the probe given (tests feed a host without IPv6).
fn probe_addresses_with(
    config: &Config,
    probe: impl Fn(SocketAddr) -> std::io::Result<listener::Probe>,
) -> Result<Probed, StartError> {
    let dual_stack = config.bind == Bind::DualStack;
    let mut ips = config.bind.addresses();
    let mut attempt = 1;
    loop {
        match probe_once(&ips, config.amqp_port, &probe) {
            Ok(probed) => return Ok(probed),
            Err((index, error)) if dual_stack && ips[index].is_ipv6() && listener::ipv6_unavailable(&error) => {
                crate::warn!("IPv6 is not available on this host ({error}): listening on IPv4 only");
                ips.remove(index);
            }
            Err((index, error))
                if config.amqp_port == 0
                    && index > 0
                    && error.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < PICKED_PORT_ATTEMPTS =>
            {
                attempt += 1;
            }
            Err((index, source)) => {
                return Err(StartError::Listen { address: SocketAddr::new(ips[index], config.amqp_port), source })
            }
        }
    }
}

/// Binds each address in turn; the index of the one that failed otherwise.
fn probe_once(
    ips: &[IpAddr],
    port: u16,
    probe: &impl Fn(SocketAddr) -> std::io::Result<listener::Probe>,
) -> Result<Probed, (usize, std::io::Error)> {
    let mut held = Vec::with_capacity(ips.len());
    let mut port = port;
    for (index, ip) in ips.iter().enumerate() {
        let holding = probe(SocketAddr::new(*ip, port)).map_err(|error| (index, error))?;
        let bound = listener::probed_address(&holding).map_err(|error| (index, error))?;
        port = bound.port();
        held.push((bound, holding));
    }
    let (addresses, held) = held.into_iter().unzip();
    Ok(Probed { addresses, held })
}

/// amqps: the TLS configuration every shard shares and the addresses its listeners take (the
/// AMQP listeners' addresses, on the amqps port), checked free as the AMQP port is.
#[derive(Clone)]
struct AmqpsListener {
    addresses: Vec<SocketAddr>,
    tls: Arc<rustls::ServerConfig>,
}

/// Also returns the probes, still bound (see `start`).
fn amqps_listener(
    config: &Config,
    amqp: &[SocketAddr],
) -> Result<(Option<AmqpsListener>, Vec<listener::Probe>), StartError> {
    let Some(tls) = crate::shard::tls::server_config(config).map_err(StartError::Tls)? else {
        return Ok((None, Vec::new()));
    };
    let Some(port) = config.amqps_listener_port() else { return Ok((None, Vec::new())) };
    let mut addresses = Vec::with_capacity(amqp.len());
    let mut probes = Vec::with_capacity(amqp.len());
    for address in amqp {
        let address = SocketAddr::new(address.ip(), port);
        probes.push(listener::probe(address).map_err(|source| StartError::Listen { address, source })?);
        addresses.push(address);
    }
    Ok((Some(AmqpsListener { addresses, tls }), probes))
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
    connection_slots: Arc<ConnectionSlots>,
    alarms: Arc<Alarms>,
    addresses: Vec<SocketAddr>,
    tls: Option<AmqpsListener>,
    initial: Arc<Snapshot>,
    writer: Option<(Definitions, Option<DefinitionsLog>)>,
    restore: Vec<RestoredQueue>,
    /// Held delayed messages recovered from the shard directories given to this shard.
    delayed: Vec<(u64, RecoveredQueue)>,
    next_segment: u64,
}

type ShardRuntime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// The shard's runtime on the driver the configuration asks for: `auto` falls back to epoll
/// where io_uring cannot be set up, `io_uring` fails instead, `epoll` never tries io_uring.
fn build_runtime(driver: crate::config::IoDriver) -> std::io::Result<ShardRuntime> {
    use crate::config::IoDriver;
    match driver {
        IoDriver::Auto => monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build(),
        IoDriver::IoUring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .map(monoio::FusionRuntime::Uring),
        IoDriver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(monoio::FusionRuntime::Legacy),
    }
}

fn run_shard(start: ShardStart, ready: ReadySender) {
    let ShardStart {
        shard_id,
        config,
        mailboxes,
        connection_slots,
        alarms,
        addresses,
        tls,
        initial,
        writer,
        restore,
        delayed,
        next_segment,
    } = start;
    if config.pin_cores {
        pin_to_core(shard_id);
    }
    let fail = move |ready: &ReadySender, message: String| {
        let _ = ready.send(Err(StartError::Shard { shard: shard_id, message }));
    };
    let mut runtime = match build_runtime(config.io_driver) {
        Ok(runtime) => runtime,
        Err(error) => return fail(&ready, format!("cannot build the runtime: {error}")),
    };
    let legacy_driver = matches!(runtime, monoio::FusionRuntime::Legacy(_));
    runtime.block_on(async move {
        let mut listeners = Vec::new();
        for address in &addresses {
            match listener::shard_listener(*address, legacy_driver) {
                Ok(listener) => listeners.push(listener),
                Err(error) => return fail(&ready, format!("cannot listen on {address}: {error}")),
            }
        }
        let mut tls_listeners = Vec::new();
        if let Some(AmqpsListener { addresses, tls }) = tls {
            for address in addresses {
                match listener::shard_listener(address, legacy_driver) {
                    Ok(listener) => tls_listeners.push((listener, tls.clone())),
                    Err(error) => return fail(&ready, format!("cannot listen on {address} (amqps): {error}")),
                }
            }
        }
        let mut own_address = None;
        let mut own_listener = None;
        if config.per_shard_listeners {
            match listener::own_listener(addresses[0], legacy_driver) {
                Ok(listener) => {
                    own_address = listener.local_addr().ok();
                    own_listener = Some(listener);
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
        let shard = Shard::new(shard_id, config.clone(), mailboxes, initial, writer, Some(store), alarms)
            .sharing_connection_slots(connection_slots);
        let shard = Rc::new(shard);
        shard.restore_queues(restore);
        for (queue_sequence, held) in delayed {
            shard.restore_delayed(queue_sequence, held);
        }
        monoio::spawn(crate::shard::commit::commit_loop(shard.clone()));
        monoio::spawn(crate::shard::expiry::expiry_loop(shard.clone()));
        monoio::spawn(crate::shard::compaction::compaction_loop(shard.clone()));
        monoio::spawn(crate::shard::ack_timeout::ack_timeout_loop(shard.clone()));
        monoio::spawn(crate::shard::delayed::delayed_loop(shard.clone()));
        shard.fair.set_readers_take_turns(legacy_driver);
        let helper = shard.clone();
        monoio::spawn(async move { helper.fair.run_helper().await });
        let collector = shard.clone();
        monoio::spawn(crate::alarms::collect_loop(move || collector.shutdown_requested()));
        // Each listener with its TLS configuration and whether its connections may move to
        // another shard: a shard's own listener exists to reach that shard, so they never do.
        let accepting = listeners
            .into_iter()
            .map(|listener| (listener, None, true))
            .chain(tls_listeners.into_iter().map(|(listener, tls)| (listener, Some(tls), true)))
            .chain(own_listener.map(|listener| (listener, None, false)));
        let mut listening = Vec::new();
        for (listener, tls, balanced) in accepting {
            let listener = Rc::new(listener);
            listening.push(listener.clone());
            monoio::spawn(accept_loop(shard.clone(), listener, tls, balanced));
        }
        let _ = ready.send(Ok(ShardReady { shard: shard_id, own_address, legacy_driver }));
        shard.clone().run_mailbox_loop().await;
        stop_listening(&listening);
        close_all_connections(&shard).await;
        shard.drain_at_shutdown().await;
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

/// Accepts AMQP sockets, or amqps ones when `tls` is given, and serves each here or on the
/// shard with the fewest connections (`balanced`; `shard::balance`).
async fn accept_loop(
    shard: Rc<Shard>,
    listener: Rc<TcpListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    balanced: bool,
) {
    loop {
        let accepted = listener.accept().await;
        if shard.shutdown_requested() {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                let loopback_peer = is_loopback(peer.ip());
                crate::shard::balance::place(&shard, stream, loopback_peer, tls.clone(), balanced);
            }
            Err(error) => {
                // Usually out of file descriptors: back off instead of spinning.
                crate::warn!("shard {}: accept failed: {error}", shard.id);
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Shutdown, first step: the shard's listening sockets stop listening, so the port is free
/// when the process exits. Closing them is not enough under io_uring: the accept still pending
/// on each keeps its socket listening until the kernel tears the ring down, after the exit
/// (a broker started right after the last one exited failed with "Address already in use").
/// The pending accepts then fail, and their loops end.
fn stop_listening(listeners: &[Rc<TcpListener>]) {
    use std::os::fd::AsRawFd;
    for listener in listeners {
        // SAFETY: the descriptor is open: `listeners` holds its owner.
        unsafe {
            libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR);
        }
    }
}

/// A loopback client, also when it reaches an IPv6 socket with an IPv4-mapped address.
fn is_loopback(address: std::net::IpAddr) -> bool {
    match address {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
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
    /// Held delayed messages per shard, with the reserved queue sequence they are stored under.
    delayed_by_shard: HashMap<usize, Vec<(u64, RecoveredQueue)>>,
    next_segment_numbers: HashMap<usize, u64>,
    messages: u64,
}

fn recover_durable_state(config: &Config) -> Result<DurableState, StartError> {
    let started = Instant::now();
    let (mut log, operations) = DefinitionsLog::open(&config.data_dir)
        .map_err(|source| StartError::Storage { what: "cannot read the definitions log", source })?;
    let mut definitions = Definitions::from_log(config.shards, &operations, &defaults(config)).map_err(|problem| {
        StartError::Storage { what: "cannot create the default user", source: std::io::Error::other(problem) }
    })?;
    if let Some(path) = &config.definitions {
        import_at_boot(&mut definitions, path)?;
    }
    log.compact(&definitions.durable_operations())
        .map_err(|source| StartError::Storage { what: "cannot compact the definitions log", source })?;
    let mut live = definitions.durable_queue_sequences();
    live.extend((0..crate::limits::SHARDS_MAX).map(crate::broker::delayed::pending_queue_sequence));
    let mut recovered = recover(&config.data_dir, &live)
        .map_err(|source| StartError::Storage { what: "cannot recover stored messages", source })?;
    let mut queues_by_shard: HashMap<usize, Vec<_>> = HashMap::new();
    for queue in definitions.all_queues() {
        let entries = recovered.queues.remove(&queue.id.sequence()).unwrap_or_default();
        queues_by_shard.entry(queue.id.owner()).or_default().push((queue.clone(), entries));
    }
    // Held delayed messages go to the shard that stored them (or, with fewer shards now, to
    // one of the remaining shards), which routes them when due.
    let mut delayed_by_shard: HashMap<usize, Vec<(u64, RecoveredQueue)>> = HashMap::new();
    for (queue_sequence, held) in recovered.queues.drain() {
        if let Some(shard) = crate::broker::delayed::pending_shard(queue_sequence) {
            delayed_by_shard.entry(shard % config.shards.max(1)).or_default().push((queue_sequence, held));
        }
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
        delayed_by_shard,
        next_segment_numbers: recovered.next_segment_numbers,
        messages: recovered.messages,
    })
}

/// RabbitMQ's `load_definitions`: a definitions file imported at every start, all of it or
/// nothing (a file that does not import stops the start, naming the problem).
fn import_at_boot(definitions: &mut Definitions, path: &std::path::Path) -> Result<(), StartError> {
    let failed = |problem: String| StartError::Definitions { path: path.display().to_string(), problem };
    let bytes = std::fs::read(path).map_err(|error| failed(error.to_string()))?;
    let parsed = crate::broker::definitions_file::parse(&bytes).map_err(|error| failed(error.to_string()))?;
    crate::broker::definitions_file::validate(&parsed.definitions).map_err(|error| failed(error.to_string()))?;
    let imported = definitions.import(&parsed.definitions).map_err(failed)?;
    for warning in parsed.warnings.iter().chain(&imported.warnings) {
        crate::warn!("definitions file {}: {warning}", path.display());
    }
    crate::info!("imported definitions from {}", path.display());
    Ok(())
}

/// The user and vhost a fresh data directory starts with.
fn defaults(config: &Config) -> Defaults {
    Defaults {
        user: config.default_user.clone(),
        password: config.default_pass.clone(),
        vhost: config.default_vhost.clone(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io;

    fn config(bind: Bind, amqp_port: u16) -> Config {
        Config { bind, amqp_port, ..Config::defaults() }
    }

    /// A probe on a host without IPv6: IPv6 sockets fail as socket(2) fails there; IPv4 ones
    /// bind 127.0.0.1 (whatever IPv4 address was asked) so the test listens on loopback only.
    fn without_ipv6(address: SocketAddr) -> io::Result<listener::Probe> {
        if address.is_ipv6() {
            return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
        }
        listener::probe(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), address.port()))
    }

    #[test]
    fn the_default_dual_stack_falls_back_to_ipv4_on_a_host_without_ipv6() {
        let addresses = probe_addresses_with(&config(Bind::DualStack, 0), without_ipv6).expect("IPv4 alone").addresses;
        assert_eq!(addresses.len(), 1, "{addresses:?}");
        assert!(addresses[0].is_ipv4() && addresses[0].port() != 0, "{addresses:?}");
    }

    #[test]
    fn an_ipv6_address_asked_for_by_name_is_an_error_without_ipv6() {
        let bind = Bind::Addresses(vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1])]);
        match probe_addresses_with(&config(bind, 0), without_ipv6) {
            Err(StartError::Listen { address, .. }) => assert!(address.is_ipv6(), "{address}"),
            other => panic!("expected a listen error, got {:?}", other.map_err(|error| error.to_string())),
        }
    }

    #[test]
    fn a_picked_port_taken_on_a_later_address_is_picked_again() {
        let attempts = Cell::new(0);
        let bind = Bind::Addresses(vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2])]);
        let probe = |address: SocketAddr| {
            if address.ip() == IpAddr::from([127, 0, 0, 2]) {
                attempts.set(attempts.get() + 1);
                if attempts.get() == 1 {
                    return Err(io::Error::from(io::ErrorKind::AddrInUse));
                }
            }
            listener::probe(address)
        };
        let addresses = probe_addresses_with(&config(bind, 0), probe).expect("a port free on both").addresses;
        assert_eq!(attempts.get(), 2);
        assert_eq!(addresses.len(), 2);
        assert_eq!(addresses[0].port(), addresses[1].port(), "one port for every address");
    }
}
