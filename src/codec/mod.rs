//! AMQP 0-9-1 on the wire, and nothing else: frames, the hand-written zero-copy codec of the
//! hot path (publish, content header and body, deliver, ack), amq-protocol wrappers for every
//! other method, and the published message kept in its wire encoding.
//!
//! The bottom layer of the crate: it imports nothing of the crate, so the store, the broker,
//! the connection state machines and the bench client all build on it.

pub(crate) mod frame;
pub(crate) mod hotpath;
pub(crate) mod message;
pub(crate) mod methods;
