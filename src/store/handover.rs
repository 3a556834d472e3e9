//! Hand-over records: the proof, on the disk of the queue that got it, that a held delayed
//! message was handed over to that queue (`shard/delayed.rs`).
//!
//! A hand-over record (`KIND_HANDOVER`, fixed size, checksummed like every record) names the
//! held message's record (queue sequence and sequence in the holder's log) and the copy's
//! place. It is appended to the publishes stream immediately before the copy (a message or a
//! link record), both in the same segment and the same turn's write. Recovery counts it only
//! when the very next record of the segment is that copy: a write cut short by a SIGKILL keeps
//! a prefix, so the copy on disk implies the proof on disk, and a proof without its copy
//! proves nothing. The copy's own marks do not matter (an acked copy was handed over too).
//! Pure record format plus one `Store` method; no AMQP here.

use std::sync::Arc;

use bytes::BufMut;

use super::record::{record_place, MessageRecord, RECORD_HEADER_BYTES};
use super::{Store, StoreError, StoredRef, StreamKind};
use crate::codec::message::Message;

pub const KIND_HANDOVER: u8 = 5;
const HANDOVER_PAYLOAD_BYTES: usize = 4 * 8;
/// A whole hand-over record, header and kind included.
pub const HANDOVER_RECORD_BYTES: usize = RECORD_HEADER_BYTES + 1 + HANDOVER_PAYLOAD_BYTES;

/// A stored message's identity in its queue: which queue, and its position there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoredId {
    pub queue_sequence: u64,
    pub sequence: u64,
}

/// What a hand-over record says: the held message `held` has its copy `copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    pub held: StoredId,
    pub copy: StoredId,
}

impl Handover {
    /// Appends the record (its checksum covers kind and payload, from `seed`).
    pub fn encode(&self, out: &mut Vec<u8>, seed: u32) {
        let start = out.len();
        out.put_u32_le((1 + HANDOVER_PAYLOAD_BYTES) as u32);
        out.put_u32_le(0);
        out.put_u8(KIND_HANDOVER);
        for value in [self.held.queue_sequence, self.held.sequence, self.copy.queue_sequence, self.copy.sequence] {
            out.put_u64_le(value);
        }
        let checksum = crc32c::crc32c_append(seed, &out[start + RECORD_HEADER_BYTES..]);
        out[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
    }

    /// Decodes a hand-over record's payload (after the kind byte); None if it has the wrong size.
    pub fn decode(payload: &[u8]) -> Option<Handover> {
        if payload.len() != HANDOVER_PAYLOAD_BYTES {
            return None;
        }
        let value = |index: usize| -> Option<u64> {
            Some(u64::from_le_bytes(payload.get(index * 8..index * 8 + 8)?.try_into().ok()?))
        };
        Some(Handover {
            held: StoredId { queue_sequence: value(0)?, sequence: value(1)? },
            copy: StoredId { queue_sequence: value(2)?, sequence: value(3)? },
        })
    }

    /// Whether the record read after this one (`kind`, `payload`) is its copy.
    pub fn is_followed_by_copy(&self, kind: u8, payload: &[u8]) -> bool {
        record_place(kind, payload).is_some_and(|place| {
            place.queue_sequence == self.copy.queue_sequence && place.sequence == self.copy.sequence
        })
    }
}

impl Store {
    /// Appends a hand-over copy for one queue (`record`, stored as `append_shared` stores it)
    /// right after its hand-over record, in the same segment: room for both is made first.
    pub fn append_handover(
        &mut self,
        held: StoredId,
        record: &MessageRecord<'_>,
        message: &Arc<Message>,
    ) -> Result<StoredRef, StoreError> {
        let both_bytes = (HANDOVER_RECORD_BYTES + record.encoded_bytes()) as u64;
        if !self.publishes.fits(both_bytes) {
            self.rotate(StreamKind::Publishes, both_bytes)?;
        }
        let (proof_segment, _) = self.reserve(StreamKind::Publishes, HANDOVER_RECORD_BYTES as u64)?;
        let copy = StoredId { queue_sequence: record.queue_sequence, sequence: record.sequence };
        Handover { held, copy }.encode(&mut self.publishes.pending, proof_segment.seed());
        let reference = self.append_shared(record, message)?;
        debug_assert!(Arc::ptr_eq(&proof_segment, &reference.segment), "a hand-over and its copy share a segment");
        Ok(reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{read_record, read_seeded, ReadOutcome, KIND_LINK, KIND_MESSAGE};

    fn handover(copy_sequence: u64) -> Handover {
        Handover {
            held: StoredId { queue_sequence: 1 << 62, sequence: 77 },
            copy: StoredId { queue_sequence: 5, sequence: copy_sequence },
        }
    }

    #[test]
    fn a_handover_record_round_trips_with_its_size() {
        let mut out = Vec::new();
        handover(9).encode(&mut out, 0);
        assert_eq!(out.len(), HANDOVER_RECORD_BYTES);
        let ReadOutcome::Record { kind, payload, next } = read_record(&out, 0) else { panic!("a record") };
        assert_eq!((kind, next), (KIND_HANDOVER, out.len()));
        assert_eq!(Handover::decode(payload), Some(handover(9)));
        assert_eq!(Handover::decode(&payload[1..]), None);
    }

    /// The store writes proof then copy, in one segment even when the first no longer fits in
    /// the active one; the proof names the copy that follows it, and a link (a fanout's second
    /// queue on this shard) follows its own proof the same way.
    #[test]
    fn each_copy_follows_its_proof_in_the_same_segment() {
        let dir = std::env::temp_dir().join(format!("spatemq-handover-{}", std::process::id()));
        let mut store = Store::open(&dir, 1, 450, None).expect("open");
        let message = Arc::new(Message {
            exchange: bytes::Bytes::from_static(b"x"),
            routing_key: bytes::Bytes::from_static(b"k"),
            properties: bytes::Bytes::new(),
            body: bytes::Bytes::from(vec![b'b'; 100]),
        });
        // Each queue's copy holds the one message, as the hand-over sends them.
        let _held_by_the_copies = message.clone();
        let held = handover(0).held;
        let mut references = Vec::new();
        for (queue, sequence) in [(5u64, 1u64), (6, 1), (5, 2), (6, 2)] {
            let mut record = MessageRecord::plain(queue, sequence, &message.body);
            record.exchange = &message.exchange;
            references.push(store.append_handover(held, &record, &message).expect("append"));
        }
        store.write_pending().expect("write");
        assert_eq!(references[1].kind, KIND_LINK, "the second queue's copy links to the first");
        assert_ne!(references[0].segment.number, references[2].segment.number, "the second pair did not fit");
        for (index, reference) in references.iter().enumerate() {
            let bytes = reference.segment.bytes();
            let proof_offset = reference.offset as usize - HANDOVER_RECORD_BYTES;
            let ReadOutcome::Record { kind: KIND_HANDOVER, payload, .. } =
                read_seeded(bytes, proof_offset, reference.segment.seed())
            else {
                panic!("copy {index}: no proof right before it");
            };
            let proof = Handover::decode(payload).expect("a proof");
            let ReadOutcome::Record { kind, payload, .. } =
                read_seeded(bytes, reference.offset as usize, reference.segment.seed())
            else {
                panic!("copy {index} unreadable");
            };
            assert!(kind == KIND_MESSAGE || kind == KIND_LINK);
            assert!(proof.is_followed_by_copy(kind, payload), "copy {index}");
            assert!(!handover(99).is_followed_by_copy(kind, payload));
        }
        drop((references, store));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A proof's segment (a queue's) that the holder lets go together with the removal mark of
    /// the held message (in another segment) stays on disk until that mark is written.
    #[test]
    fn a_segment_released_after_the_marks_outlives_them() {
        let dir = std::env::temp_dir().join(format!("spatemq-handover-marks-{}", std::process::id()));
        let mut store = Store::open(&dir, 1, 300, None).expect("open");
        let body = [b'b'; 200];
        let proof = store.append(&MessageRecord::plain(5, 1, &body)).expect("append");
        let held = store.append(&MessageRecord::plain(1 << 62, 1, &body)).expect("append to a second segment");
        assert_ne!(proof.segment.number, held.segment.number);
        store.write_pending().expect("write");
        drop(store.take_sync_batch());
        let path = crate::store::segment::segment_path(&dir, proof.segment.number);
        store.mark(&held, 1 << 62, 1, crate::store::record::Mark::Removed);
        store.release_after_marks([proof.segment.clone()]);
        drop(proof);
        assert!(path.exists(), "kept while the removal mark is unwritten");
        store.write_pending().expect("write the marks");
        assert!(!path.exists(), "deleted once the mark is written");
        drop((held, store));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
