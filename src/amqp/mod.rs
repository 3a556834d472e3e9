//! AMQP 0-9-1 on the wire: framing, the hand-written hot-path codec, amq-protocol wrappers for
//! every other method, and the connection/channel state machines that speak to clients.

mod basic;
pub mod channel;
pub mod connection;
pub mod deliveries;
pub mod direct_reply;
pub mod dispatch;
mod handlers;
pub mod handshake;
pub mod port;
#[cfg(test)]
mod port_tests;
