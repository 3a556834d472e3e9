//! A shard's plain counters for a scrape: connections opened and closed, the waits of its
//! connections, and its loop and background work. Read only by the shard's control inbox.

use std::cell::{Cell, RefCell};

use rustc_hash::FxHashMap;

use crate::amqp::connection::Connection;

/// Plain per-shard counts, read only by this shard's control inbox.
#[derive(Default)]
pub struct ConnectionCounts {
    pub opened: Cell<u64>,
    pub closed: Cell<u64>,
    /// The channel-side message counts of closed connections, per vhost.
    pub closed_stats: RefCell<FxHashMap<String, crate::broker::control::MessageStats>>,
    /// Times a connection of the shard waited for another shard's paging to reach its disk.
    pub paging_pauses: Cell<u64>,
    /// Times a connection of the shard that only publishes waited for another shard's deep
    /// queue (`pressure`).
    pub pressure_pauses: Cell<u64>,
}

impl ConnectionCounts {
    pub fn note_opened(&self) {
        self.opened.set(self.opened.get() + 1);
    }

    pub fn note_closed(&self) {
        self.closed.set(self.closed.get() + 1);
    }

    /// Keeps the counts of a connection that ends.
    pub fn keep_stats_of(&self, connection: &Connection) {
        let stats = connection.channel_stats();
        if stats != crate::broker::control::MessageStats::default() {
            let vhost = connection.vhost.borrow().clone();
            self.closed_stats.borrow_mut().entry(vhost).or_default().add(&stats);
        }
    }
}

#[derive(Default)]
pub struct WorkCounts {
    pub loop_turns: Cell<u64>,
    pub compacted_segments: Cell<u64>,
    pub compacted_messages: Cell<u64>,
    /// Waiting in-memory messages the sweep packed (`Queue::pack_waiting`).
    pub packed_messages: Cell<u64>,
}
