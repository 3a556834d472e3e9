//! Compaction of a shard's message log: ready messages that keep an otherwise dead segment
//! alive are copied out, so the segment can be deleted.
//!
//! A segment is deleted when no queued message references it. One long-lived message (a queue
//! nobody consumes, a slow consumer) would otherwise keep its whole segment, and every other
//! record in it, on disk: a trickle of such messages among busy traffic pins one segment per
//! message. Each step takes a census of the stored bytes that ready messages hold per sealed
//! segment; once more than `COMPACTION_SEGMENTS_KEPT` sealed segments hold any, those at or
//! below `COMPACTION_LIVE_PERCENT_MAX` live are emptied, emptiest first, within
//! `COMPACTION_BYTES_PER_STEP`. Copies go to the store's copies stream (segments of their own,
//! so long-lived messages gather instead of being copied again with each passing segment). The
//! old segment stays until the sync that covers the copies, then gets `Moved` marks and goes
//! when nothing else holds it. Unacked messages are not moved: their segment waits for the ack
//! (or the consumer timeout) like any other.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::Shard;
use crate::broker::ready::StoredBytes;
use crate::ids::QueueId;
use crate::limits::{
    COMPACTION_BUSY_INTERVAL_MS, COMPACTION_BYTES_PER_STEP, COMPACTION_IDLE_INTERVAL_MS, COMPACTION_LIVE_PERCENT_MAX,
    COMPACTION_SEGMENTS_KEPT,
};
use crate::store::segment::Segment;

/// Runs compaction steps until shutdown: often while there is work, rarely otherwise.
pub async fn compaction_loop(shard: Rc<Shard>) {
    while !shard.shutdown_requested() {
        let more = shard.compact_step(COMPACTION_BYTES_PER_STEP);
        let pause_ms = if more { COMPACTION_BUSY_INTERVAL_MS } else { COMPACTION_IDLE_INTERVAL_MS };
        monoio::time::sleep(Duration::from_millis(pause_ms)).await;
    }
}

/// A sealed segment's share of the census: its ready bytes and the queues holding them.
struct Candidate {
    segment: Arc<Segment>,
    ready_bytes: u64,
    queues: Vec<QueueId>,
}

impl Shard {
    /// One compaction step within `budget_bytes` of copies; true if more work waits.
    pub(super) fn compact_step(&self, mut budget_bytes: u64) -> bool {
        let usable = self.with_store(|store| store.poisoned().is_none()).unwrap_or(false);
        if !usable {
            return false;
        }
        let victims = self.compaction_victims();
        let mut more = false;
        for victim in victims {
            let moved = self.empty_segment(&victim, &mut budget_bytes);
            let work = &self.work_counts;
            work.compacted_messages.set(work.compacted_messages.get() + moved);
            if budget_bytes > 0 {
                work.compacted_segments.set(work.compacted_segments.get() + 1);
            }
            crate::debug!(
                "shard {}: compaction copied {moved} ready message(s) out of segment {} ({} bytes were live)",
                self.id,
                victim.segment.number,
                victim.ready_bytes
            );
            if budget_bytes == 0 {
                more = true;
                break;
            }
        }
        // Copies reach the file now, and the commit task syncs them, even if no client is
        // active on this shard to end a loop turn.
        self.write_store();
        more
    }

    /// The sealed segments worth emptying, emptiest first.
    fn compaction_victims(&self) -> Vec<Candidate> {
        let mut census: HashMap<usize, Candidate> = HashMap::new();
        {
            let queues = self.queues.borrow();
            let mut bytes = StoredBytes::new();
            for (id, queue) in queues.iter() {
                queue.stored_bytes(&mut bytes);
                for (key, (segment, ready_bytes)) in bytes.drain() {
                    let candidate =
                        census.entry(key).or_insert_with(|| Candidate { segment, ready_bytes: 0, queues: Vec::new() });
                    candidate.ready_bytes += ready_bytes;
                    candidate.queues.push(*id);
                }
            }
        }
        let mut candidates: Vec<Candidate> = census.into_values().collect();
        // Neither a segment still written nor one of another shard's directory (see
        // `Store::relocate`) is compacted.
        let movable = |segment: &Arc<Segment>| {
            self.with_store(|store| !store.is_active(segment) && store.owns(segment)).unwrap_or(false)
        };
        candidates.retain(|candidate| movable(&candidate.segment));
        if candidates.len() <= COMPACTION_SEGMENTS_KEPT {
            return Vec::new();
        }
        candidates.retain(|candidate| {
            candidate.ready_bytes * 100 <= candidate.segment.capacity() * COMPACTION_LIVE_PERCENT_MAX
        });
        candidates.sort_by_key(|candidate| candidate.ready_bytes);
        candidates
    }

    /// Copies a segment's ready messages out, queue by queue, within the budget; returns how
    /// many were copied.
    fn empty_segment(&self, victim: &Candidate, budget_bytes: &mut u64) -> u64 {
        let mut moved = 0u64;
        for &id in &victim.queues {
            let mut copy = |from: &crate::store::StoredRef, _sequence: u64| {
                let copied = self.with_store(|store| store.relocate(from));
                match copied {
                    Some(Ok(reference)) => {
                        moved += 1;
                        Some(reference)
                    }
                    Some(Err(error)) => {
                        crate::warn!("shard {}: compaction stopped: {error}", self.id);
                        None
                    }
                    None => None,
                }
            };
            let done = self
                .with_queue(id, |queue, _, reader| queue.relocate(&victim.segment, reader, budget_bytes, &mut copy));
            if done == Some(false) {
                break;
            }
        }
        moved
    }
}
