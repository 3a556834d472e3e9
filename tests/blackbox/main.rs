//! Black-box tests: the real broker binary, started per test on a free port with its own data
//! directory, driven over TCP by lapin and by a raw frame client. One test binary (modules
//! below) so the suite links once.

#[macro_use]
mod common;

mod accounts;
mod bad_input;
mod basic;
mod confirm_tx;
mod connection;
mod consistent_hash;
mod consumer_timeout;
mod cross_shard;
mod deduplication;
mod delayed;
mod delivery_limit;
mod direct_reply_to;
mod exchange;
mod extensions;
mod io_driver;
mod management;
mod policies;
mod prometheus;
mod queue;
mod quorum;
mod remote;
mod server;
mod storage;
mod stream;
mod tls;
