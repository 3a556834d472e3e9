//! Small in-memory messages of a waiting backlog, packed back to back in chunks.
//!
//! A message as it arrives is an `Arc<Message>` holding four `Bytes`: about 250 bytes of heap
//! for a 16-byte body, with its ready slot. Most of that is bookkeeping, which a queue that
//! delivers at once never keeps for long but a backlog keeps for every message. So the shard's
//! sweep has `ready` copy the small, plain messages that waited (no deadline, never delivered,
//! priority 0) into records of a chunk and drop their `Arc`: about 25 bytes plus the body.
//!
//! A record is the sequence's distance from the record before it, then the exchange, the
//! routing key, the properties and the body, each with its length. Reading one back copies its
//! fields into a message of its own, so nothing points into a chunk: a delivered message pins
//! no chunk, and a chunk may move when it grows. It grows by doubling from room for
//! `PACK_FIRST_RECORDS` records up to `PACK_CHUNK_BYTES`, so a short backlog does not hold a
//! whole chunk; it is freed when its last record has been read.
//!
//! This module owns the record format only; `ready` decides what is packed and keeps the
//! packs in order with its other entries.

use bytes::{BufMut, Bytes};

use crate::codec::message::Message;
use crate::limits::{PACK_CHUNK_BYTES, PACK_CONTENT_BYTES_MAX};

/// Consecutive packed messages of one ready list, in one chunk.
#[derive(Debug)]
pub struct Pack {
    /// The records, from the first not yet read at `head_offset`.
    chunk: Vec<u8>,
    /// Where the head record starts.
    head_offset: usize,
    /// The head record's sequence.
    head_sequence: u64,
    /// The last record's sequence: the next record is written as its distance from it.
    last_sequence: u64,
    remaining: u32,
}

/// A new chunk's room, in records of the first one's size: it doubles from there.
const PACK_FIRST_RECORDS: usize = 8;

/// The bytes a message's record takes, if it is small enough to pack.
pub fn record_bytes(message: &Message) -> Option<usize> {
    let content = message.exchange.len() + message.routing_key.len() + message.properties.len() + message.body.len();
    if content > PACK_CONTENT_BYTES_MAX || message.exchange.len() > 255 || message.routing_key.len() > 255 {
        return None;
    }
    // The distance (up to 10 bytes), two short lengths, two lengths of at most two bytes
    // (`PACK_CONTENT_BYTES_MAX` is below 16,384).
    Some(content + 10 + 2 + 2 * 2)
}

impl Pack {
    /// A pack in a new chunk, holding `message` (whose record takes `record_bytes`).
    pub fn new(sequence: u64, message: &Message, record_bytes: usize) -> Pack {
        let mut pack = Pack {
            chunk: Vec::with_capacity(record_bytes * PACK_FIRST_RECORDS),
            head_offset: 0,
            head_sequence: sequence,
            last_sequence: sequence,
            remaining: 0,
        };
        pack.write(sequence, message);
        pack
    }

    /// Appends `message` if its record fits within `PACK_CHUNK_BYTES` (growing the chunk if
    /// it must) and `sequence` follows the last one; false leaves the pack as it was.
    pub fn try_push(&mut self, sequence: u64, message: &Message, record_bytes: usize) -> bool {
        let needed = self.chunk.len() + record_bytes;
        if sequence <= self.last_sequence || needed > PACK_CHUNK_BYTES {
            return false;
        }
        if needed > self.chunk.capacity() {
            let grown = (2 * self.chunk.capacity()).clamp(needed, PACK_CHUNK_BYTES);
            self.chunk.reserve_exact(grown - self.chunk.len());
        }
        self.write(sequence, message);
        true
    }

    fn write(&mut self, sequence: u64, message: &Message) {
        let chunk = &mut self.chunk;
        put_varint(chunk, sequence - self.last_sequence);
        for short in [&message.exchange, &message.routing_key] {
            chunk.put_u8(short.len() as u8);
            chunk.put_slice(short);
        }
        for long in [&message.properties, &message.body] {
            put_varint(chunk, long.len() as u64);
            chunk.put_slice(long);
        }
        self.last_sequence = sequence;
        self.remaining += 1;
    }

    pub fn head_sequence(&self) -> u64 {
        self.head_sequence
    }

    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Reads the head message: its sequence and the message, its fields copied out of the
    /// chunk. None only if a record does not read back as written (a defect); the pack is then
    /// unusable and the caller drops it.
    pub fn pop(&mut self) -> Option<(u64, Message)> {
        if self.remaining == 0 {
            return None;
        }
        let sequence = self.head_sequence;
        let mut records = self.chunk.get(self.head_offset..)?;
        // The head's distance was added to `head_sequence` when it became the head.
        take_varint(&mut records)?;
        let exchange = take_field(&mut records, take_short)?;
        let routing_key = take_field(&mut records, take_short)?;
        let properties = take_field(&mut records, take_length)?;
        let body = take_field(&mut records, take_length)?;
        self.head_offset = self.chunk.len() - records.len();
        self.remaining -= 1;
        if self.remaining > 0 {
            self.head_sequence += read_varint(records)?.0;
        }
        Some((sequence, Message { exchange, routing_key, properties, body }))
    }
}

fn take_short(records: &mut &[u8]) -> Option<usize> {
    let (length, rest) = records.split_first()?;
    *records = rest;
    Some(usize::from(*length))
}

/// A length read as written by `put_varint`, as a `usize`.
fn take_length(records: &mut &[u8]) -> Option<usize> {
    usize::try_from(take_varint(records)?).ok()
}

/// The next field: its length (read by `length`), then a copy of that many bytes (an empty
/// field allocates nothing).
fn take_field(records: &mut &[u8], length: impl FnOnce(&mut &[u8]) -> Option<usize>) -> Option<Bytes> {
    let length = length(records)?;
    if length > records.len() {
        return None;
    }
    let (field, rest) = records.split_at(length);
    *records = rest;
    if length == 0 {
        return Some(Bytes::new());
    }
    Some(Bytes::copy_from_slice(field))
}

/// LEB128: seven bits a byte, low bits first, the top bit set on every byte but the last.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn take_varint(records: &mut &[u8]) -> Option<u64> {
    let (value, length) = read_varint(records)?;
    *records = &records[length..];
    Some(value)
}

/// The value at the start of `bytes` and the bytes it takes.
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(routing_key: &str, body: &[u8]) -> Message {
        Message {
            exchange: Bytes::from_static(b"amq.direct"),
            routing_key: Bytes::copy_from_slice(routing_key.as_bytes()),
            properties: Bytes::from_static(&[0x10, 0x00, 0x02]),
            body: Bytes::copy_from_slice(body),
        }
    }

    fn fields(message: &Message) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        (message.exchange.to_vec(), message.routing_key.to_vec(), message.properties.to_vec(), message.body.to_vec())
    }

    #[test]
    fn messages_read_back_as_written_with_their_sequences_across_reads_and_writes() {
        let written: Vec<(u64, Message)> = [1u64, 2, 5, 300, 301, 70_000]
            .into_iter()
            .enumerate()
            .map(|(index, sequence)| (sequence, message(&format!("key-{index}"), &vec![index as u8; index * 7])))
            .collect();
        let first = &written[0];
        let mut pack = Pack::new(first.0, &first.1, record_bytes(&first.1).expect("small"));
        let mut read = Vec::new();
        for (position, (sequence, message)) in written.iter().enumerate().skip(1) {
            assert!(pack.try_push(*sequence, message, record_bytes(message).expect("small")));
            // Reads between writes: the chunk is read from and appended to in turns.
            if position % 2 == 0 {
                read.push(pack.pop().expect("a record"));
            }
        }
        while let Some(popped) = pack.pop() {
            read.push(popped);
        }
        assert_eq!(pack.remaining(), 0);
        let read: Vec<_> = read.iter().map(|(sequence, message)| (*sequence, fields(message))).collect();
        let expected: Vec<_> = written.iter().map(|(sequence, message)| (*sequence, fields(message))).collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn the_head_sequence_follows_the_reads() {
        let one = message("q", b"x");
        let bytes = record_bytes(&one).expect("small");
        let mut pack = Pack::new(10, &one, bytes);
        assert!(pack.try_push(12, &one, bytes));
        assert!(!pack.try_push(12, &one, bytes), "a sequence is never written twice");
        assert_eq!(pack.head_sequence(), 10);
        assert_eq!(pack.pop().map(|(sequence, _)| sequence), Some(10));
        assert_eq!(pack.head_sequence(), 12);
    }

    #[test]
    fn a_full_chunk_or_a_large_message_is_refused() {
        let large = message("q", &vec![0; PACK_CONTENT_BYTES_MAX]);
        assert_eq!(record_bytes(&large), None);
        let small = message("q", &[1; 100]);
        let bytes = record_bytes(&small).expect("small");
        let mut pack = Pack::new(0, &small, bytes);
        let mut sequence = 1;
        while pack.try_push(sequence, &small, bytes) {
            sequence += 1;
        }
        let fitted = sequence as usize;
        // Every record holds at least its 114 bytes of content and at most `bytes`.
        assert!(fitted * 114 <= PACK_CHUNK_BYTES, "{fitted} records in one chunk");
        assert!(fitted >= (PACK_CHUNK_BYTES - bytes) / bytes, "the chunk was filled: {fitted}");
    }
}
