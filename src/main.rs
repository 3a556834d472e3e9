//! The `spatemq` binary: command line → configuration → shards → wait for SIGTERM/SIGINT,
//! or `spatemq bench <scenario>`, the load generator.

use std::process::ExitCode;

use spatemq::config::{self, Command};
use spatemq::{error, host_checks, info, logging, server, warn};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP=1` asks for
/// them. mimalloc advises its arenas for huge pages, so the first touch of each 2 MiB of new
/// heap faulted in a huge page and zeroed all of it on the shard's thread: at 100,000 msg/s,
/// a fresh broker's first seconds held every message behind such faults for 10–40 ms
/// (p99.9 3–8 ms over 10 s; 0.5–1.6 ms without). With 4 KiB pages the same zeroing comes a
/// page at a time. The price is the TLB reach huge pages gave: scenario a lost about 4%
/// (README, "Latency"). A host set to `never` needs nothing; the call fails harmlessly on
/// kernels without it.
fn keep_the_heap_off_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some_and(|value| value == "1") {
        return;
    }
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process; it touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    keep_the_heap_off_huge_pages();
    // `spatemq bench ...` is a client, not a broker: none of the broker's flags apply.
    if std::env::args().nth(1).as_deref() == Some("bench") {
        return spatemq::bench::main(std::env::args().skip(2));
    }
    // `spatemq ctl ...` talks to a running broker through its control socket.
    if std::env::args().nth(1).as_deref() == Some("ctl") {
        return spatemq::ctl::main(std::env::args().skip(2));
    }
    // `spatemq serve [FLAGS]` and `spatemq [FLAGS]` both run the broker.
    let command = match config::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(problem) => {
            eprintln!("spatemq: {problem}");
            return ExitCode::from(2);
        }
    };
    let config = match command {
        Command::Show(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Command::Serve(config) => *config,
    };
    logging::set_level(config.log_level);
    for warning in host_checks::warnings(&config) {
        warn!("{warning}");
    }
    // Block the shutdown signals before any thread starts so that every shard inherits the
    // mask and only this thread receives them, in sigwait.
    let signals = block_shutdown_signals();
    let per_shard = config.per_shard_listeners;
    let shards = config.shards;
    let running = match server::start(config) {
        Ok(running) => running,
        Err(problem) => {
            error!("{problem}");
            return ExitCode::from(1);
        }
    };
    if per_shard {
        for (shard, address) in running.shard_addresses.iter().enumerate() {
            println!("spatemq: shard {shard} listening on {address}");
        }
    }
    // Before the AMQP lines, which tools that start the broker wait for.
    for address in &running.amqps_addresses {
        println!("spatemq: AMQPS listening on {address}");
    }
    if let Some(address) = running.management_address {
        println!("spatemq: management HTTP API listening on {address}");
    }
    if let Some(address) = running.prometheus_address {
        println!("spatemq: Prometheus metrics listening on {address}");
    }
    for address in &running.addresses {
        println!("spatemq: AMQP listening on {address}");
    }
    info!("{shards} shard(s), {} driver", running.driver);
    let signal = wait_for_signal(&signals);
    info!("received signal {signal}, shutting down");
    running.shutdown();
    ExitCode::SUCCESS
}

fn block_shutdown_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the calls only read it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut signal = 0;
    // SAFETY: `set` is a valid, initialised signal set; sigwait writes one int.
    unsafe {
        libc::sigwait(set, &mut signal);
    }
    signal
}
