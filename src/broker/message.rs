//! A published message as the broker keeps it: shared, immutable, never copied per queue.
//!
//! The properties stay in their wire encoding so a delivery forwards them byte for byte; the
//! few fields the broker needs are read from them on demand.

use bytes::Bytes;

use crate::amqp::hotpath;

#[derive(Debug)]
pub struct Message {
    pub exchange: Bytes,
    pub routing_key: Bytes,
    /// Property flags and property list exactly as received in the content header.
    pub properties: Bytes,
    pub body: Bytes,
}

impl Message {
    pub fn persistent(&self) -> bool {
        hotpath::delivery_mode(&self.properties) == Some(2)
    }

    pub fn body_bytes(&self) -> usize {
        self.body.len()
    }
}
