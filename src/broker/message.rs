//! A published message as the broker keeps it: shared, immutable, never copied per queue.
//!
//! The properties stay in their wire encoding so a delivery forwards them byte for byte; the
//! few fields the broker needs are read from them on demand.

use bytes::Bytes;

use super::queue_args::parse_expiration;
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

    /// The `expiration` property in milliseconds. Checks one flag bit first, so a message
    /// without one is never parsed. Err(text) for a value RabbitMQ refuses.
    pub fn expiration_ms(&self) -> Result<Option<u64>, String> {
        const EXPIRATION_FLAG: u16 = 1 << 8;
        let flags = match &self.properties[..] {
            [high, low, ..] => u16::from_be_bytes([*high, *low]),
            _ => return Ok(None),
        };
        if flags & EXPIRATION_FLAG == 0 {
            return Ok(None);
        }
        let properties = hotpath::parse_properties(&self.properties).map_err(|error| error.to_string())?;
        let Some(expiration) = properties.expiration() else {
            return Ok(None);
        };
        let text = expiration.as_str();
        parse_expiration(text).map(Some).map_err(|reason| format!("invalid expiration '{text}': {reason}"))
    }
}
