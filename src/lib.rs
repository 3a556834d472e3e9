//! SpateMQ: an AMQP 0-9-1 message broker built thread-per-core.
//!
//! The binary (`src/main.rs`) is a thin shell over this library so that tests and benchmarks
//! can reach the same code the broker runs: the codec, routing tables and shard placement.

pub mod alarms;
pub mod amqp;
pub mod bench;
pub mod broker;
pub mod clock;
pub mod codec;
pub mod config;
pub mod host_checks;
pub mod ids;
pub mod limits;
pub mod logging;
pub mod server;
pub mod shard;
pub mod store;
