//! Direct reply-to names (RabbitMQ's `amq.rabbitmq.reply-to`): the pseudo-queue a requester
//! consumes from, and the reply name the broker writes into a request's `reply_to` property.
//!
//! A reply name carries everything needed to reach the requester's channel without a shared
//! table: the connection's shard and number, the channel number and which opening of it, and a
//! 128-bit key read from the operating system's random source when the reply consumer started.
//! Routing reads only the shard; the requester's shard compares the rest, key included, with
//! its live reply consumer. So a name cannot be forged by counting connections, and the name
//! of an earlier consumer (cancelled, or its channel reopened) reaches nobody.
//!
//! Pure data: nothing here touches a connection or a shard.

use std::fmt;

use crate::ids::{ConnId, Holder};

/// The pseudo-queue a requester consumes from, and the `reply_to` value it publishes with.
pub const REPLY_QUEUE: &str = "amq.rabbitmq.reply-to";

/// What every reply name starts with; the rest is the opaque token.
pub const REPLY_NAME_PREFIX: &str = "amq.rabbitmq.reply-to.";

const KEY_BYTES: usize = 16;
/// shard (2) + connection number (8) + channel (2) + incarnation (4) + key.
const TOKEN_BYTES: usize = 2 + 8 + 2 + 4 + KEY_BYTES;
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The random part of a reply name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReplyKey([u8; KEY_BYTES]);

impl ReplyKey {
    /// A fresh key from the kernel's random source; None if it cannot be read.
    pub fn random() -> Option<ReplyKey> {
        let mut key = [0u8; KEY_BYTES];
        // SAFETY: getrandom(2) writes at most `key.len()` bytes into the buffer it is given,
        // which lives for the whole call. Requests of up to 256 bytes are never cut short
        // once the kernel's pool is initialised; a short or failed read is refused below.
        let read = unsafe { libc::getrandom(key.as_mut_ptr().cast(), key.len(), 0) };
        (usize::try_from(read).ok() == Some(KEY_BYTES)).then_some(ReplyKey(key))
    }

    /// Compares in time independent of where the keys differ, so probing a name byte by byte
    /// learns nothing from how fast it is refused.
    pub fn matches(&self, other: &ReplyKey) -> bool {
        self.0.iter().zip(other.0.iter()).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
    }
}

impl fmt::Debug for ReplyKey {
    /// The key is the secret part of a name: logs never show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplyKey(..)")
    }
}

/// Where a direct reply goes: a channel opening and the key of its reply consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyAddress {
    pub holder: Holder,
    pub key: ReplyKey,
}

impl ReplyAddress {
    /// The shard that owns the requester's connection.
    pub fn shard(&self) -> usize {
        self.holder.conn.shard()
    }

    /// `amq.rabbitmq.reply-to.` followed by the token in lowercase hex.
    pub fn name(&self) -> String {
        let mut token = [0u8; TOKEN_BYTES];
        token[0..2].copy_from_slice(&self.holder.conn.shard.to_be_bytes());
        token[2..10].copy_from_slice(&self.holder.conn.local.to_be_bytes());
        token[10..12].copy_from_slice(&self.holder.channel.to_be_bytes());
        token[12..16].copy_from_slice(&self.holder.incarnation.to_be_bytes());
        token[16..].copy_from_slice(&self.key.0);
        let mut name = String::with_capacity(REPLY_NAME_PREFIX.len() + 2 * TOKEN_BYTES);
        name.push_str(REPLY_NAME_PREFIX);
        for byte in token {
            name.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            name.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
        }
        name
    }

    /// Reads a reply name back. None for anything `name` would not have produced: another
    /// prefix, another length, a digit outside lowercase hex.
    pub fn parse(name: &[u8]) -> Option<ReplyAddress> {
        let hex = name.strip_prefix(REPLY_NAME_PREFIX.as_bytes())?;
        if hex.len() != 2 * TOKEN_BYTES {
            return None;
        }
        let mut token = [0u8; TOKEN_BYTES];
        for (byte, pair) in token.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        let conn = ConnId {
            shard: u16::from_be_bytes([token[0], token[1]]),
            local: u64::from_be_bytes(token[2..10].try_into().ok()?),
        };
        let holder = Holder {
            conn,
            channel: u16::from_be_bytes([token[10], token[11]]),
            incarnation: u32::from_be_bytes(token[12..16].try_into().ok()?),
        };
        let key = ReplyKey(token[16..].try_into().ok()?);
        Some(ReplyAddress { holder, key })
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> ReplyAddress {
        let holder = Holder { conn: ConnId { shard: 2, local: 0x0123_4567_89ab_cdef }, channel: 7, incarnation: 42 };
        ReplyAddress { holder, key: ReplyKey::random().expect("the kernel's random source") }
    }

    #[test]
    fn a_name_reads_back_as_the_same_address() {
        let address = address();
        let name = address.name();
        assert!(name.starts_with(REPLY_NAME_PREFIX), "{name}");
        assert!(name.len() <= 255, "a reply name is a short string: {name}");
        assert_eq!(ReplyAddress::parse(name.as_bytes()), Some(address));
        assert_eq!(address.shard(), 2);
    }

    #[test]
    fn two_consumers_of_one_channel_get_different_names() {
        let first = address();
        let second = ReplyAddress { key: ReplyKey::random().expect("random key"), ..first };
        assert_ne!(first.name(), second.name());
        assert!(!first.key.matches(&second.key));
        assert!(first.key.matches(&first.key));
    }

    #[test]
    fn anything_else_is_not_a_reply_name() {
        let name = address().name();
        let mut upper = name.clone().into_bytes();
        let last = upper.len() - 1;
        upper[last] = b'G';
        for bad in [
            b"amq.rabbitmq.reply-to".as_slice(),
            b"amq.rabbitmq.reply-to.",
            b"amq.rabbitmq.reply-to.00",
            &name.as_bytes()[..name.len() - 1],
            format!("{name}0").as_bytes(),
            &upper,
            name.replace("amq.rabbitmq", "amq.rabbitmx").as_bytes(),
        ] {
            assert_eq!(ReplyAddress::parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn debug_output_hides_the_key() {
        let address = address();
        let shown = format!("{address:?}");
        assert!(shown.contains("ReplyKey(..)"), "{shown}");
        let token = &address.name()[REPLY_NAME_PREFIX.len()..];
        assert!(!shown.contains(&token[32..]), "{shown}");
    }
}
