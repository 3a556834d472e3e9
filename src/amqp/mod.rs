//! AMQP 0-9-1 on the wire: framing, the hand-written hot-path codec, amq-protocol wrappers for
//! every other method, and the connection/channel state machines that speak to clients.

mod basic;
mod channel;
pub(crate) mod connection;
pub(crate) mod deliveries;
mod direct_reply;
pub(crate) mod dispatch;
mod handlers;
pub(crate) mod handshake;
pub(crate) mod port;
