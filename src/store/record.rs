//! The on-disk record formats of the message store, with their checksums.
//!
//! Segment records: `[length u32][crc32c u32][kind u8][payload]`, little endian, where the
//! length counts kind + payload and the checksum covers the same bytes, continued from a seed.
//! In the message store's segments the seed is the checksum of the segment's number (u64 LE,
//! `segment_seed`): a record's checksum is the CRC32C of that number followed by kind and
//! payload. In segments an earlier version wrote, and in the other logs, the seed is zero (the
//! plain CRC32C of kind and payload). The number is what lets a segment file be reused: the old
//! records left past the new ones in a recycled file were checksummed under another number, so
//! they read as damage, never as records. A copy record (written
//! by compaction, `KIND_COPY`) is a message record's payload prefixed with where the message
//! was copied from (`Origin`), so recovery can tell which of the two places holds it. A link
//! record (`KIND_LINK`) stores one queue's message of a fanout without its content: the
//! content is that of a message record earlier in the same segment. A zero length marks
//! the end of written data (segments are pre-allocated and zero-filled). Mark records (acks
//! and delivery marks, kept in a side file per segment) are fixed 24 bytes with their own
//! checksum. Reading stops at the first record that is torn or fails its checksum; nothing
//! after it in that file is trusted. Pure functions: no I/O here.

use bytes::BufMut;

pub const RECORD_HEADER_BYTES: usize = 8;
pub const KIND_MESSAGE: u8 = 1;
pub const KIND_COPY: u8 = 2;
pub const KIND_LINK: u8 = 3;
/// A message paged out of memory that must not outlive the broker process (transient, or in a
/// queue that does not survive a restart): a message record's payload under its own kind, so
/// recovery drops it and compaction leaves it where it is.
pub const KIND_PAGED: u8 = 4;
/// Bytes of the `Origin` that prefixes a copy record's payload.
pub const ORIGIN_BYTES: usize = 12;
pub const MARK_RECORD_BYTES: usize = 24;
/// The `Place` every message, copy and link record starts its message payload with.
pub const PLACE_BYTES: usize = 8 + 8 + 8 + 1;
/// A link record's payload: its place, then the target offset.
const LINK_PAYLOAD_BYTES: usize = PLACE_BYTES + 4;
/// A whole link record, header and kind included.
pub const LINK_RECORD_BYTES: usize = RECORD_HEADER_BYTES + 1 + LINK_PAYLOAD_BYTES;

/// A persistent message as stored: which queue, its position there, when it expires and its
/// priority level there (so a restart keeps both), and its content.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct MessageRecord<'a> {
    pub queue_sequence: u64,
    pub sequence: u64,
    /// Wall-clock deadline (Unix milliseconds) from `x-message-ttl` or `expiration`; 0: none.
    pub expires_at_unix_ms: u64,
    /// Its level in a priority queue (`x-max-priority`); 0 elsewhere.
    pub priority: u8,
    pub exchange: &'a [u8],
    pub routing_key: &'a [u8],
    pub properties: &'a [u8],
    pub body: &'a [u8],
}

impl<'a> MessageRecord<'a> {
    /// A record without deadline, priority, exchange or properties (for tests).
    #[cfg(test)]
    pub fn plain(queue_sequence: u64, sequence: u64, body: &'a [u8]) -> MessageRecord<'a> {
        MessageRecord {
            queue_sequence,
            sequence,
            expires_at_unix_ms: 0,
            priority: 0,
            exchange: b"",
            routing_key: b"q",
            properties: b"",
            body,
        }
    }

    pub fn encoded_bytes(&self) -> usize {
        RECORD_HEADER_BYTES
            + 1
            + 8
            + 8
            + 8
            + 1
            + 1
            + self.exchange.len()
            + 1
            + self.routing_key.len()
            + 4
            + self.properties.len()
            + 4
            + self.body.len()
    }
}

/// A stored message's place in its queue: which queue, its position there, its wall-clock
/// deadline (Unix ms, 0: none) and its priority level. Each queue of a fanout has its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub queue_sequence: u64,
    pub sequence: u64,
    pub expires_at_unix_ms: u64,
    pub priority: u8,
}

impl Place {
    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64_le(self.queue_sequence);
        out.put_u64_le(self.sequence);
        out.put_u64_le(self.expires_at_unix_ms);
        out.put_u8(self.priority);
    }

    fn decode(bytes: &[u8]) -> Option<Place> {
        Some(Place {
            queue_sequence: read_u64(bytes, 0)?,
            sequence: read_u64(bytes, 8)?,
            expires_at_unix_ms: read_u64(bytes, 16)?,
            priority: *bytes.get(24)?,
        })
    }
}

impl MessageRecord<'_> {
    pub fn place(&self) -> Place {
        Place {
            queue_sequence: self.queue_sequence,
            sequence: self.sequence,
            expires_at_unix_ms: self.expires_at_unix_ms,
            priority: self.priority,
        }
    }
}

/// The checksum seed of the records of segment `number` (see the module's comment).
pub fn segment_seed(number: u64) -> u32 {
    crc32c::crc32c(&number.to_le_bytes())
}

/// Appends a message record. Exchange and routing key are AMQP short strings (≤ 255 bytes).
#[cfg(test)]
pub fn encode_message(out: &mut Vec<u8>, record: &MessageRecord<'_>) {
    encode_message_as(out, record, KIND_MESSAGE, 0);
}

/// Appends a message record of `kind` (`KIND_MESSAGE` or `KIND_PAGED`), checksummed from `seed`.
pub fn encode_message_as(out: &mut Vec<u8>, record: &MessageRecord<'_>, kind: u8, seed: u32) {
    let start = out.len();
    out.put_u32_le(0);
    out.put_u32_le(0);
    out.put_u8(kind);
    record.place().encode(out);
    let exchange = &record.exchange[..record.exchange.len().min(255)];
    out.put_u8(exchange.len() as u8);
    out.put_slice(exchange);
    let routing_key = &record.routing_key[..record.routing_key.len().min(255)];
    out.put_u8(routing_key.len() as u8);
    out.put_slice(routing_key);
    out.put_u32_le(record.properties.len() as u32);
    out.put_slice(record.properties);
    out.put_u32_le(record.body.len() as u32);
    out.put_slice(record.body);
    let length = (out.len() - start - RECORD_HEADER_BYTES) as u32;
    let checksum = crc32c::crc32c_append(seed, &out[start + RECORD_HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
}

/// Where a copied message was stored before compaction moved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub segment: u64,
    pub offset: u32,
}

/// Appends a copy record: `message_payload` (a message record's payload, after its kind byte)
/// prefixed with where it came from, with its queue and sequence replaced by `position` (the
/// queue the copy is for: a link's target holds another queue's message).
pub fn encode_copy(out: &mut Vec<u8>, origin: Origin, place: Place, message_payload: &[u8], seed: u32) {
    let start = out.len();
    let content = message_payload.get(PLACE_BYTES..).unwrap_or_default();
    out.put_u32_le((1 + ORIGIN_BYTES + PLACE_BYTES + content.len()) as u32);
    out.put_u32_le(0);
    out.put_u8(KIND_COPY);
    out.put_u64_le(origin.segment);
    out.put_u32_le(origin.offset);
    place.encode(out);
    out.put_slice(content);
    let checksum = crc32c::crc32c_append(seed, &out[start + RECORD_HEADER_BYTES..]);
    out[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
}

/// The message at `place` has the content of the message record at `target_offset` of the
/// same segment (always before the link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub place: Place,
    pub target_offset: u32,
}

/// Appends a link record.
pub fn encode_link(out: &mut Vec<u8>, link: Link, seed: u32) {
    let start = out.len();
    out.put_u32_le((1 + LINK_PAYLOAD_BYTES) as u32);
    out.put_u32_le(0);
    out.put_u8(KIND_LINK);
    link.place.encode(out);
    out.put_u32_le(link.target_offset);
    let checksum = crc32c::crc32c_append(seed, &out[start + RECORD_HEADER_BYTES..]);
    out[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
}

/// Decodes a link record's payload (after the kind byte). None if it has the wrong size.
pub fn decode_link(payload: &[u8]) -> Option<Link> {
    if payload.len() != LINK_PAYLOAD_BYTES {
        return None;
    }
    Some(Link { place: Place::decode(payload)?, target_offset: read_u32(payload, PLACE_BYTES)? })
}

/// The place of a message, copy or link record: the start of its message payload (of a
/// link's payload). None for other kinds or a short record.
pub fn record_place(kind: u8, payload: &[u8]) -> Option<Place> {
    let start = match kind {
        KIND_MESSAGE | KIND_LINK | KIND_PAGED => 0,
        KIND_COPY => ORIGIN_BYTES,
        _ => return None,
    };
    Place::decode(payload.get(start..)?)
}

/// The queue and the position there of a message, copy or link record.
pub fn queue_position(kind: u8, payload: &[u8]) -> Option<(u64, u64)> {
    record_place(kind, payload).map(|place| (place.queue_sequence, place.sequence))
}

/// The length of the record starting at `data[0]`, header included, from its header alone
/// (not checked: for a record whose checksum was verified when it was found).
pub fn record_length(data: &[u8]) -> Option<usize> {
    Some(read_u32(data, 0)? as usize + RECORD_HEADER_BYTES)
}

/// The message payload of a message or copy record, the offset where it starts within the
/// record's payload, and the origin of a copy. None for other kinds or a short copy.
pub fn message_payload(kind: u8, payload: &[u8]) -> Option<(&[u8], usize, Option<Origin>)> {
    match kind {
        KIND_MESSAGE | KIND_PAGED => Some((payload, 0, None)),
        KIND_COPY => {
            let segment = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
            let offset = u32::from_le_bytes(payload.get(8..ORIGIN_BYTES)?.try_into().ok()?);
            Some((payload.get(ORIGIN_BYTES..)?, ORIGIN_BYTES, Some(Origin { segment, offset })))
        }
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome<'a> {
    /// A whole, checksummed record; `next` is the offset of the following one.
    Record { kind: u8, payload: &'a [u8], next: usize },
    /// Zero length: nothing was written past this point.
    End,
    /// The record at this offset is cut short or fails its checksum.
    Damaged { reason: &'static str },
}

/// The record at `offset`, checksummed without a seed (the definitions and stream logs, and
/// segments of earlier versions).
pub fn read_record(data: &[u8], offset: usize) -> ReadOutcome<'_> {
    read_seeded(data, offset, 0)
}

/// The record at `offset`, its checksum continued from `seed` (`segment_seed`).
pub fn read_seeded(data: &[u8], offset: usize, seed: u32) -> ReadOutcome<'_> {
    let Some(header) = data.get(offset..offset + RECORD_HEADER_BYTES) else {
        // Fewer bytes left than a header: the zero-filled slack of a full segment, or a torn header.
        let tail = data.get(offset..).unwrap_or_default();
        return if tail.iter().all(|byte| *byte == 0) {
            ReadOutcome::End
        } else {
            ReadOutcome::Damaged { reason: "torn record header" }
        };
    };
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let checksum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if length == 0 {
        return if checksum == 0 {
            ReadOutcome::End
        } else {
            ReadOutcome::Damaged { reason: "zero length with a checksum" }
        };
    }
    let start = offset + RECORD_HEADER_BYTES;
    let Some(body) = data.get(start..start + length) else {
        return ReadOutcome::Damaged { reason: "record runs past the end of the segment" };
    };
    if crc32c::crc32c_append(seed, body) != checksum {
        return ReadOutcome::Damaged { reason: "checksum mismatch" };
    }
    ReadOutcome::Record { kind: body[0], payload: &body[1..], next: start + length }
}

/// Decodes a message payload (after the kind byte). None if its fields do not fit.
pub fn decode_message(payload: &[u8]) -> Option<(MessageRecord<'_>, MessageLayout)> {
    let mut position = 0usize;
    let mut take = |count: usize| -> Option<(usize, usize)> {
        let range = (position, position + count);
        if range.1 > payload.len() {
            return None;
        }
        position = range.1;
        Some(range)
    };
    let queue = take(8)?;
    let sequence = take(8)?;
    let expires_at = take(8)?;
    let priority = take(1)?;
    let exchange_length = take(1)?;
    let exchange = take(usize::from(payload[exchange_length.0]))?;
    let routing_key_length = take(1)?;
    let routing_key = take(usize::from(payload[routing_key_length.0]))?;
    let properties_length = take(4)?;
    let properties = take(read_u32(payload, properties_length.0)? as usize)?;
    let body_length = take(4)?;
    let body = take(read_u32(payload, body_length.0)? as usize)?;
    if position != payload.len() {
        return None;
    }
    let record = MessageRecord {
        queue_sequence: read_u64(payload, queue.0)?,
        sequence: read_u64(payload, sequence.0)?,
        expires_at_unix_ms: read_u64(payload, expires_at.0)?,
        priority: payload[priority.0],
        exchange: &payload[exchange.0..exchange.1],
        routing_key: &payload[routing_key.0..routing_key.1],
        properties: &payload[properties.0..properties.1],
        body: &payload[body.0..body.1],
    };
    let layout = MessageLayout { exchange, routing_key, properties, body };
    Some((record, layout))
}

/// Byte ranges of a decoded message's fields within its payload, so the reader can hand out
/// zero-copy slices of the mapped segment.
#[derive(Debug, Clone, Copy)]
pub struct MessageLayout {
    pub exchange: (usize, usize),
    pub routing_key: (usize, usize),
    pub properties: (usize, usize),
    pub body: (usize, usize),
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// What a mark record says about one stored message in one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Acked, rejected, purged: the queue no longer holds it.
    Removed = 1,
    /// Handed to a consumer that has not acked yet: comes back with redelivered=true.
    Delivered = 2,
    /// Compaction copied it to a newer segment, whose sync covered the copy: the copy holds it.
    Moved = 3,
}

pub fn encode_mark(out: &mut Vec<u8>, queue_sequence: u64, sequence: u64, mark: Mark) {
    let start = out.len();
    out.put_u64_le(queue_sequence);
    out.put_u64_le(sequence);
    out.put_u8(mark as u8);
    out.put_slice(&[0, 0, 0]);
    let checksum = crc32c::crc32c(&out[start..start + 20]);
    out.put_u32_le(checksum);
}

/// Decodes mark records until the first damaged one; returns them and how many bytes held
/// valid records.
pub fn decode_marks(data: &[u8]) -> (Vec<(u64, u64, Mark)>, usize) {
    let mut marks = Vec::new();
    let mut offset = 0;
    while let Some(record) = data.get(offset..offset + MARK_RECORD_BYTES) {
        let checksum = u32::from_le_bytes([record[20], record[21], record[22], record[23]]);
        if crc32c::crc32c(&record[..20]) != checksum {
            break;
        }
        let mark = match record[16] {
            1 => Mark::Removed,
            2 => Mark::Delivered,
            3 => Mark::Moved,
            _ => break,
        };
        let queue = u64::from_le_bytes(record[0..8].try_into().unwrap_or_default());
        let sequence = u64::from_le_bytes(record[8..16].try_into().unwrap_or_default());
        marks.push((queue, sequence, mark));
        offset += MARK_RECORD_BYTES;
    }
    (marks, offset)
}

/// `StoredRef::content_bytes` of a checksummed record of `length` bytes of a segment: a message
/// record's own length, a copy's without its origin, a link's target's (a message record,
/// earlier in the segment; its header alone is read).
pub fn content_bytes(segment_bytes: &[u8], kind: u8, payload: &[u8], length: usize) -> Option<u32> {
    let bytes = match kind {
        KIND_LINK => record_length(segment_bytes.get(decode_link(payload)?.target_offset as usize..)?)?,
        KIND_COPY => length.checked_sub(ORIGIN_BYTES)?,
        _ => length,
    };
    u32::try_from(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body: &[u8]) -> MessageRecord<'_> {
        MessageRecord {
            queue_sequence: 7,
            sequence: 42,
            expires_at_unix_ms: 1_700_000_000_000,
            priority: 3,
            exchange: b"ex",
            routing_key: b"key",
            properties: &[0x10, 0, 2],
            body,
        }
    }

    #[test]
    fn message_round_trips_and_reports_its_size() {
        let mut out = Vec::new();
        encode_message(&mut out, &sample(b"hello"));
        assert_eq!(out.len(), sample(b"hello").encoded_bytes());
        let ReadOutcome::Record { kind, payload, next } = read_record(&out, 0) else { panic!("record expected") };
        assert_eq!((kind, next), (KIND_MESSAGE, out.len()));
        let (decoded, _) = decode_message(payload).expect("decodes");
        assert_eq!(decoded, sample(b"hello"));
    }

    /// A record reads only under the seed it was written with: one left in a reused segment
    /// file by its earlier number is damage to the new one, never a record. Seed 0 is the
    /// plain CRC32C of earlier versions.
    #[test]
    fn a_record_reads_only_under_its_own_segments_seed() {
        let mut out = Vec::new();
        encode_message_as(&mut out, &sample(b"hello"), KIND_MESSAGE, segment_seed(5));
        assert!(matches!(read_seeded(&out, 0, segment_seed(5)), ReadOutcome::Record { kind: KIND_MESSAGE, .. }));
        for other in [segment_seed(6), segment_seed(4), 0] {
            assert_eq!(read_seeded(&out, 0, other), ReadOutcome::Damaged { reason: "checksum mismatch" });
        }
        let mut plain = Vec::new();
        encode_message_as(&mut plain, &sample(b"hello"), KIND_MESSAGE, 0);
        let checksum = u32::from_le_bytes(plain[4..8].try_into().expect("four bytes"));
        assert_eq!(checksum, crc32c::crc32c(&plain[RECORD_HEADER_BYTES..]), "seed 0 is the earlier format");
        assert!(matches!(read_record(&plain, 0), ReadOutcome::Record { .. }));
        let numbered: Vec<u8> = 5u64.to_le_bytes().iter().chain(&out[RECORD_HEADER_BYTES..]).copied().collect();
        let checksum = u32::from_le_bytes(out[4..8].try_into().expect("four bytes"));
        assert_eq!(checksum, crc32c::crc32c(&numbered), "the CRC32C of the number, then kind and payload");
        let distinct: std::collections::HashSet<u32> = (0..10_000u64).map(segment_seed).collect();
        assert_eq!(distinct.len(), 10_000);
        assert!(!distinct.contains(&0));
    }

    #[test]
    fn zero_filled_tail_is_the_end() {
        let mut out = Vec::new();
        encode_message(&mut out, &sample(b"x"));
        let end = out.len();
        out.resize(end + 64, 0);
        assert_eq!(read_record(&out, end), ReadOutcome::End);
    }

    #[test]
    fn zero_slack_shorter_than_a_header_ends_a_full_segment() {
        let mut out = Vec::new();
        encode_message(&mut out, &sample(b"x"));
        let end = out.len();
        out.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(read_record(&out, end), ReadOutcome::End);
        out[end + 1] = 9;
        assert!(matches!(read_record(&out, end), ReadOutcome::Damaged { .. }));
    }

    fn assert_every_truncation_and_bit_flip_is_detected(out: &[u8]) {
        for cut in 1..out.len() {
            assert!(matches!(read_record(&out[..cut], 0), ReadOutcome::Damaged { .. }), "cut at {cut}");
        }
        for byte in 0..out.len() {
            for bit in 0..8 {
                let mut damaged = out.to_vec();
                damaged[byte] ^= 1 << bit;
                let outcome = read_record(&damaged, 0);
                assert!(!matches!(outcome, ReadOutcome::Record { .. }), "flip at byte {byte} bit {bit} went unnoticed");
            }
        }
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_detected() {
        let mut out = Vec::new();
        encode_message(&mut out, &sample(b"payload bytes"));
        assert_every_truncation_and_bit_flip_is_detected(&out);
    }

    #[test]
    fn a_copy_keeps_the_message_and_names_its_origin() {
        let mut original = Vec::new();
        encode_message(&mut original, &sample(b"kept"));
        let ReadOutcome::Record { kind, payload, .. } = read_record(&original, 0) else { panic!("record expected") };
        let (message, _, origin) = message_payload(kind, payload).expect("a message");
        assert_eq!(origin, None);
        let mut copy = Vec::new();
        let from = Origin { segment: 12, offset: 4096 };
        encode_copy(&mut copy, from, sample(b"kept").place(), message, 0);
        let ReadOutcome::Record { kind, payload, next } = read_record(&copy, 0) else { panic!("copy expected") };
        assert_eq!((kind, next), (KIND_COPY, copy.len()));
        let (copied, shift, origin) = message_payload(kind, payload).expect("a copy");
        assert_eq!((shift, origin), (ORIGIN_BYTES, Some(from)));
        assert_eq!(decode_message(copied).expect("decodes").0, sample(b"kept"));
        // A copy for another queue (of a link's target) carries that queue's position.
        let mut other = Vec::new();
        let place = Place { queue_sequence: 8, sequence: 3, expires_at_unix_ms: 0, priority: 0 };
        encode_copy(&mut other, from, place, message, 0);
        let ReadOutcome::Record { kind, payload, .. } = read_record(&other, 0) else { panic!("copy expected") };
        let (copied, _, _) = message_payload(kind, payload).expect("a copy");
        let expected =
            MessageRecord { queue_sequence: 8, sequence: 3, expires_at_unix_ms: 0, priority: 0, ..sample(b"kept") };
        assert_eq!(decode_message(copied).expect("decodes").0, expected);
    }

    #[test]
    fn a_link_round_trips_and_names_its_queue_position() {
        let link = Link { place: sample(b"").place(), target_offset: 4096 };
        let mut out = Vec::new();
        encode_link(&mut out, link, 0);
        assert_eq!(out.len(), LINK_RECORD_BYTES);
        let ReadOutcome::Record { kind, payload, next } = read_record(&out, 0) else { panic!("link expected") };
        assert_eq!((kind, next), (KIND_LINK, out.len()));
        assert_eq!(decode_link(payload), Some(link));
        assert_eq!(queue_position(kind, payload), Some((7, 42)));
        assert_eq!(message_payload(kind, payload), None, "a link carries no content");
        assert_eq!(record_length(&out), Some(LINK_RECORD_BYTES));
        assert_eq!(decode_link(&payload[1..]), None);
    }

    #[test]
    fn every_truncation_and_every_bit_flip_of_a_link_is_detected() {
        let mut out = Vec::new();
        encode_link(&mut out, Link { place: sample(b"").place(), target_offset: 128 }, 0);
        assert_every_truncation_and_bit_flip_is_detected(&out);
    }

    #[test]
    fn queue_positions_of_every_message_kind() {
        let mut out = Vec::new();
        encode_message(&mut out, &sample(b"m"));
        let ReadOutcome::Record { kind, payload, .. } = read_record(&out, 0) else { panic!("record expected") };
        assert_eq!(queue_position(kind, payload), Some((7, 42)));
        let (message, _, _) = message_payload(kind, payload).expect("a message");
        let mut copy = Vec::new();
        encode_copy(&mut copy, Origin { segment: 1, offset: 0 }, sample(b"m").place(), message, 0);
        let ReadOutcome::Record { kind, payload, .. } = read_record(&copy, 0) else { panic!("copy expected") };
        assert_eq!(queue_position(kind, payload), Some((7, 42)));
        assert_eq!(queue_position(9, payload), None);
    }

    #[test]
    fn marks_round_trip_and_stop_at_damage() {
        let mut out = Vec::new();
        encode_mark(&mut out, 1, 2, Mark::Removed);
        encode_mark(&mut out, 3, 4, Mark::Delivered);
        encode_mark(&mut out, 7, 8, Mark::Moved);
        encode_mark(&mut out, 5, 6, Mark::Removed);
        out[3 * MARK_RECORD_BYTES + 3] ^= 0xff;
        let (marks, valid) = decode_marks(&out);
        assert_eq!(marks, vec![(1, 2, Mark::Removed), (3, 4, Mark::Delivered), (7, 8, Mark::Moved)]);
        assert_eq!(valid, 3 * MARK_RECORD_BYTES);
    }
}
