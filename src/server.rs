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

use crate::broker::definitions::Definitions;
use crate::broker::error::{AmqpError, CONNECTION_FORCED};
use crate::broker::snapshot::Snapshot;
use crate::config::Config;
use crate::limits::MAILBOX_CAPACITY;
use crate::shard::mailbox::Mailboxes;
use crate::shard::Shard;

#[derive(Debug)]
pub enum StartError {
    DataDir {
        path: String,
        source: std::io::Error,
    },
    PortInUse {
        address: SocketAddr,
        source: std::io::Error,
    },
    Shard {
        shard: usize,
        message: String,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::DataDir { path, source } => {
                write!(f, "cannot create data directory {path}: {source}")
            }
            StartError::PortInUse { address, source } => {
                write!(f, "cannot listen on {address}: {source} (is another broker running on this port?)")
            }
            StartError::Shard { shard, message } => {
                write!(f, "shard {shard} failed to start: {message}")
            }
        }
    }
}

impl std::error::Error for StartError {}

pub struct Running {
    pub address: SocketAddr,
    /// With `--per-shard-listeners`: the port of each shard's own listener.
    pub shard_addresses: Vec<SocketAddr>,
    pub driver: &'static str,
    mailboxes: Arc<Mailboxes>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Asks every shard to close its connections (320 CONNECTION_FORCED) and waits for them.
    pub fn shutdown(self) {
        self.mailboxes.request_shutdown();
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

pub fn start(config: Config) -> Result<Running, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let requested = SocketAddr::new(config.bind, config.amqp_port);
    let address = {
        let probe = StdListener::bind(requested).map_err(|source| StartError::PortInUse {
            address: requested,
            source,
        })?;
        probe.local_addr().map_err(|source| StartError::PortInUse {
            address: requested,
            source,
        })?
    };
    let config = Arc::new(config);
    let mailboxes = Arc::new(Mailboxes::new(config.shards, MAILBOX_CAPACITY));
    let mut definitions = Definitions::new(config.shards);
    let initial = definitions.take_changed().unwrap_or_default();
    let mut writer = Some(definitions);
    let (ready_sender, ready_receiver) = mpsc::channel();
    let mut threads = Vec::with_capacity(config.shards);
    for shard_id in 0..config.shards {
        let config = config.clone();
        let mailboxes = mailboxes.clone();
        let ready = ready_sender.clone();
        let initial = initial.clone();
        let writer = if shard_id == 0 { writer.take() } else { None };
        let thread = std::thread::Builder::new()
            .name(format!("shard-{shard_id}"))
            .spawn(move || {
                run_shard(
                    ShardStart {
                        shard_id,
                        config,
                        mailboxes,
                        address,
                        initial,
                        writer,
                    },
                    ready,
                )
            })
            .map_err(|error| StartError::Shard {
                shard: shard_id,
                message: error.to_string(),
            })?;
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
            Err(_) => {
                return Err(StartError::Shard {
                    shard: 0,
                    message: "a shard thread exited during start".into(),
                })
            }
        }
    }
    Ok(Running {
        address,
        shard_addresses,
        driver,
        mailboxes,
        threads,
    })
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
    address: SocketAddr,
    initial: Arc<Snapshot>,
    writer: Option<Definitions>,
}

fn run_shard(start: ShardStart, ready: ReadySender) {
    let ShardStart {
        shard_id,
        config,
        mailboxes,
        address,
        initial,
        writer,
    } = start;
    if config.pin_cores {
        pin_to_core(shard_id);
    }
    let fail = move |ready: &ReadySender, message: String| {
        let _ = ready.send(Err(StartError::Shard {
            shard: shard_id,
            message,
        }));
    };
    let runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build();
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
        let mut own_address = None;
        if config.per_shard_listeners {
            let own = SocketAddr::new(address.ip(), 0);
            match TcpListener::bind_with_config(own, &ListenerOpts::new().reuse_port(false)) {
                Ok(listener) => {
                    own_address = listener.local_addr().ok();
                    listeners.push(listener);
                }
                Err(error) => {
                    return fail(
                        &ready,
                        format!("cannot open the shard's own listener: {error}"),
                    )
                }
            }
        }
        let shard = Rc::new(Shard::new(
            shard_id,
            config.clone(),
            mailboxes,
            initial,
            writer,
        ));
        for listener in listeners {
            monoio::spawn(accept_loop(shard.clone(), listener));
        }
        let _ = ready.send(Ok(ShardReady {
            shard: shard_id,
            own_address,
            legacy_driver,
        }));
        shard.clone().run_mailbox_loop().await;
        close_all_connections(&shard).await;
    });
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if shard.shutdown_requested() {
                    return;
                }
                monoio::spawn(crate::amqp::connection::serve(
                    shard.clone(),
                    stream,
                    peer.ip().is_loopback(),
                ));
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
    let error = AmqpError::new(
        CONNECTION_FORCED,
        "broker forced connection closure with reason 'shutdown'",
    );
    for connection in &connections {
        crate::amqp::connection::send_connection_close(connection, &error, 0, 0);
        connection.close_output();
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && connections.iter().any(|connection| !connection.is_dead()) {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn pin_to_core(shard_id: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: cpu_set_t is plain data; CPU_SET writes within it for an index below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(shard_id % cores, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            crate::warn!(
                "shard {shard_id}: could not pin to core {}",
                shard_id % cores
            );
        }
    }
}
