//! The connection and channel state machines that speak AMQP 0-9-1 to clients, without I/O:
//! the handshake, channel lifecycle, content assembly, every method handler, deliveries and
//! confirms written into a connection's output.
//!
//! Frames come in and frames go out through `connection::Connection`'s output buffer; what
//! the broker must do elsewhere goes out through the `port::Port` the shard implements. No
//! socket, no runtime: the shard's socket driver does the I/O, and the unit tests drive the
//! same code frame by frame.

mod access;
pub(crate) mod admission;
mod assembly;
mod basic;
mod channel;
pub(crate) mod connection;
mod consumers;
pub(crate) mod deliveries;
mod direct_reply;
pub(crate) mod dispatch;
mod handlers;
pub(crate) mod handshake;
mod owner_routed;
pub(crate) mod port;
#[cfg(test)]
mod port_tests;
pub(crate) mod publish_path;
pub(crate) mod routes;
mod unacked;
