//! What recovery learns from hand-over records (`store::handover`): which queues already hold
//! a copy of each held delayed message, so that after a crash a held message is handed over
//! only to the queues that lack it (`shard/delayed.rs`), and dropped when none does.
//!
//! Proofs are read from every shard directory, whatever the marks of their copies (an acked
//! copy was handed over all the same), and filed under the held message's reserved queue
//! sequence once every directory was read (a held message and its copies may lie in different
//! directories). Proofs of held messages that are gone (handed over and marked removed) are
//! dropped, but still raise that queue sequence's next sequence, so a new held message never
//! reuses the identity a proof on disk names.
//!
//! A filed proof keeps its segment (and so itself) on disk until the held message is handed
//! over completely: another crash before that must find it again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::broker::delayed::pending_shard;
use crate::broker::recovery::RecoveredQueue;
use crate::store::handover::{Handover, StoredId, KIND_HANDOVER};
use crate::store::segment::Segment;

/// A queue that holds a copy of a held message, and the segment holding the proof of it.
#[derive(Clone, Debug)]
pub struct HandedOver {
    pub queue_sequence: u64,
    pub segment: Arc<Segment>,
}

/// Reads one segment's records in order: a proof counts only when the record right after it
/// is its copy.
#[derive(Default)]
pub struct ProofReader {
    waiting: Option<Handover>,
}

impl ProofReader {
    /// The next record of the segment; returns the hand-over it completes, if any.
    pub fn read(&mut self, kind: u8, payload: &[u8]) -> Option<Handover> {
        let waiting = self.waiting.take();
        if kind == KIND_HANDOVER {
            self.waiting = Handover::decode(payload);
            return None;
        }
        waiting.filter(|handover| handover.is_followed_by_copy(kind, payload))
    }
}

/// Everything recovery gathers for the held messages' hand-overs while it reads.
#[derive(Default)]
pub struct Proofs {
    proven: Vec<(Handover, Arc<Segment>)>,
    /// The held messages recovery loaded (not removed).
    held: HashSet<StoredId>,
}

impl Proofs {
    pub fn proven(&mut self, handover: Handover, segment: &Arc<Segment>) {
        if pending_shard(handover.held.queue_sequence).is_some() {
            self.proven.push((handover, segment.clone()));
        }
    }

    /// A message record that recovery loaded into its queue: (queue sequence, sequence).
    pub fn loaded(&mut self, (queue_sequence, sequence): (u64, u64)) {
        if pending_shard(queue_sequence).is_some() {
            self.held.insert(StoredId { queue_sequence, sequence });
        }
    }

    /// Files each proof of a loaded held message under it, in `queues`.
    pub fn file(self, queues: &mut HashMap<u64, RecoveredQueue>) {
        for (handover, segment) in self.proven {
            let held = handover.held;
            let queue = queues.entry(held.queue_sequence).or_default();
            queue.next_sequence = queue.next_sequence.max(held.sequence + 1);
            if self.held.contains(&held) {
                let copies = queue.handed_over.entry(held.sequence).or_default();
                if !copies.iter().any(|copy| copy.queue_sequence == handover.copy.queue_sequence) {
                    copies.push(HandedOver { queue_sequence: handover.copy.queue_sequence, segment });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::broker::delayed::pending_queue_sequence;
    use crate::broker::recovery::{recover, shard_dir, Recovered};
    use crate::codec::message::Message;
    use crate::store::record::{Mark, MessageRecord};
    use crate::store::{Store, StoredRef};

    const QUEUE: u64 = 7;

    fn temp_data_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("spatemq-handovers-{name}-{}", std::process::id()))
    }

    fn message(body: &str) -> Arc<Message> {
        Arc::new(Message {
            exchange: bytes::Bytes::from_static(b"x"),
            routing_key: bytes::Bytes::from_static(b"k"),
            properties: bytes::Bytes::new(),
            body: bytes::Bytes::from(body.to_owned()),
        })
    }

    /// Stores held message `sequence` of shard `shard` (due in the future), as the holder does.
    fn hold(store: &mut Store, shard: usize, sequence: u64) -> (StoredId, StoredRef) {
        let held = StoredId { queue_sequence: pending_queue_sequence(shard), sequence };
        let mut record = MessageRecord::plain(held.queue_sequence, sequence, b"held");
        record.expires_at_unix_ms = crate::clock::unix_ms() + 60_000;
        (held, store.append(&record).expect("hold"))
    }

    /// Stores the copy of `held` for `QUEUE` at `sequence`, as the queue's shard does.
    fn hand_over(store: &mut Store, held: StoredId, sequence: u64) -> StoredRef {
        let message = message("copy");
        let record = MessageRecord::plain(QUEUE, sequence, &message.body);
        store.append_handover(held, &record, &message).expect("hand over")
    }

    fn recover_all(data_dir: &Path) -> Recovered {
        let live: HashSet<u64> = [QUEUE, pending_queue_sequence(0), pending_queue_sequence(1)].into();
        recover(data_dir, &live).expect("recover")
    }

    fn copies_of(recovered: &Recovered, held: StoredId) -> Vec<u64> {
        let queue = recovered.queues.get(&held.queue_sequence).expect("the held messages' queue");
        let copies = queue.handed_over.get(&held.sequence).map(Vec::as_slice).unwrap_or_default();
        copies.iter().map(|copy| copy.queue_sequence).collect()
    }

    /// Held 1's copy was acked (it still proves the hand-over); held 2 was handed over and
    /// marked removed (nothing to file); held 3's copy never reached the file after its proof
    /// (a cut write): its proof proves nothing, and it is handed over again.
    #[test]
    fn a_proof_counts_when_its_copy_follows_it_whatever_the_copy_became() {
        let data_dir = temp_data_dir("follows");
        let mut store = Store::open(&shard_dir(&data_dir, 0), 1, 1 << 20, None).expect("open");
        let (first, _) = hold(&mut store, 0, 1);
        let (second, second_record) = hold(&mut store, 0, 2);
        let (third, _) = hold(&mut store, 0, 3);
        let acked = hand_over(&mut store, first, 1);
        store.mark(&acked, QUEUE, 1, Mark::Removed);
        hand_over(&mut store, second, 2);
        store.mark(&second_record, second.queue_sequence, second.sequence, Mark::Removed);
        let cut = hand_over(&mut store, third, 3);
        store.write_pending().expect("write");
        let zeros = vec![0u8; cut.length as usize];
        let path = crate::store::segment::segment_path(&shard_dir(&data_dir, 0), cut.segment.number);
        let file = std::fs::OpenOptions::new().write(true).open(path).expect("the segment file");
        file.write_all_at(&zeros, u64::from(cut.offset)).expect("cut the copy");
        drop((acked, second_record, cut, store));

        let recovered = recover_all(&data_dir);
        assert_eq!(copies_of(&recovered, first), [QUEUE]);
        assert_eq!(copies_of(&recovered, second), Vec::<u64>::new());
        assert_eq!(copies_of(&recovered, third), Vec::<u64>::new());
        assert_eq!(recovered.queues[&QUEUE].next_sequence, 3, "copy 2 is queued; copy 1 was acked, copy 3 cut");
        drop(recovered);
        let _ = std::fs::remove_dir_all(&data_dir);
    }

    /// A held message of shard 1 (a former shard, its record in its own directory) handed
    /// over into shard 0's directory and then marked removed: nothing is filed, but its queue
    /// sequence's next sequence stays past the one the proof names, so no new held message
    /// takes that identity while the proof is on disk.
    #[test]
    fn a_proof_of_a_removed_held_message_keeps_its_identity_taken() {
        let data_dir = temp_data_dir("identity");
        let mut holder = Store::open(&shard_dir(&data_dir, 1), 1, 1 << 20, None).expect("open");
        let mut queue_store = Store::open(&shard_dir(&data_dir, 0), 1, 1 << 20, None).expect("open");
        let (held, record) = hold(&mut holder, 1, 41);
        hand_over(&mut queue_store, held, 1);
        holder.mark(&record, held.queue_sequence, held.sequence, Mark::Removed);
        holder.write_pending().expect("write");
        queue_store.write_pending().expect("write");
        drop((record, holder, queue_store));

        let recovered = recover_all(&data_dir);
        let queue = &recovered.queues[&held.queue_sequence];
        assert!(queue.handed_over.is_empty());
        assert_eq!(queue.next_sequence, 42);
        drop(recovered);
        let _ = std::fs::remove_dir_all(&data_dir);
    }

    /// A held message whose copies reached two queues of different shard directories knows
    /// both, and each proof keeps its segment on disk while filed.
    #[test]
    fn proofs_from_every_directory_are_filed_under_their_held_message() {
        let data_dir = temp_data_dir("directories");
        let mut holder = Store::open(&shard_dir(&data_dir, 1), 1, 1 << 20, None).expect("open");
        let mut queue_store = Store::open(&shard_dir(&data_dir, 0), 1, 1 << 20, None).expect("open");
        let (held, _) = hold(&mut holder, 1, 5);
        let message = message("copy");
        let other_queue = QUEUE + 1;
        let record = MessageRecord::plain(other_queue, 1, &message.body);
        holder.append_handover(held, &record, &message).expect("hand over");
        hand_over(&mut queue_store, held, 1);
        holder.write_pending().expect("write");
        queue_store.write_pending().expect("write");
        drop((holder, queue_store));

        let recovered = recover_all(&data_dir);
        let mut copies = copies_of(&recovered, held);
        copies.sort_unstable();
        assert_eq!(copies, [QUEUE, other_queue]);
        let queue = &recovered.queues[&held.queue_sequence];
        let proof_segment = &queue.handed_over[&held.sequence].iter().find(|copy| copy.queue_sequence == QUEUE);
        let proof_segment = proof_segment.expect("the proof in shard 0's directory").segment.clone();
        drop(recovered);
        let path = crate::store::segment::segment_path(&shard_dir(&data_dir, 0), proof_segment.number);
        assert!(path.exists(), "kept while its proof is held");
        drop(proof_segment);
        assert!(!path.exists(), "deleted once nothing keeps it");
        let _ = std::fs::remove_dir_all(&data_dir);
    }
}
