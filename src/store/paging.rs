//! How many bytes of paged-out transient messages the page cache holds that no fdatasync has
//! yet put on disk: the measure of a shard's paging running ahead of its disk.
//!
//! Paged messages are confirmed at once and never wait for a sync, so nothing else would stop
//! a publisher from filling the page cache faster than the disk drains it, until the kernel
//! throttles the shard's writes and with them every connection of the shard. The shard reads
//! this figure after each write and each sync, and slows only the connections that publish
//! to it while it is above `limits::PAGED_UNSYNCED_BYTES_MAX`.

/// Paged bytes written since the last sync started, and those the running sync covers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PagedBytes {
    unsynced: u64,
    syncing: u64,
}

impl PagedBytes {
    /// A paged record of `bytes` was appended.
    pub fn appended(&mut self, bytes: u64) {
        self.unsynced = self.unsynced.saturating_add(bytes);
    }

    /// A sync starts: it covers everything appended so far.
    pub fn sync_started(&mut self) {
        self.syncing = self.syncing.saturating_add(self.unsynced);
        self.unsynced = 0;
    }

    /// The sync finished (or failed: a poisoned store takes no more writes, so nothing is
    /// waiting for the disk any more either way).
    pub fn sync_finished(&mut self) {
        self.syncing = 0;
    }

    /// Paged bytes not yet known to be on disk.
    pub fn outstanding(&self) -> u64 {
        self.unsynced.saturating_add(self.syncing)
    }
}

#[cfg(test)]
mod tests {
    use super::PagedBytes;

    #[test]
    fn bytes_are_outstanding_until_the_sync_that_covers_them_finishes() {
        let mut paged = PagedBytes::default();
        paged.appended(100);
        paged.sync_started();
        paged.appended(30);
        assert_eq!(paged.outstanding(), 130, "the running sync's bytes and the newer ones");
        paged.sync_finished();
        assert_eq!(paged.outstanding(), 30, "appended after the sync started: the next one covers them");
        paged.sync_started();
        paged.sync_finished();
        assert_eq!(paged.outstanding(), 0);
    }
}
