//! The owner side of streams (`x-queue-type: stream`): opening a stream's log when its queue
//! is made or restored, appending published messages to it, and handing the group commit the
//! stream files it must fdatasync before the confirms of those messages go out.
//!
//! A stream's files live under `streams/<queue sequence>/` in the data directory, apart from
//! the shard's message log: retention deletes whole files of one stream, and nothing in them
//! is shared with other queues. Every message is stored whatever its delivery mode.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::Shard;
use crate::broker::messages::{ConfirmTo, ShardMsg};
use crate::broker::queue::Queue;
use crate::broker::queue_args::{integer, QueueType};
use crate::broker::snapshot::QueueDef;
use crate::codec::message::Message;
use crate::ids::{Holder, QueueId};
use crate::limits::{STREAM_SEGMENT_BYTES_DEFAULT, STREAM_SEGMENT_BYTES_MIN};
use crate::store::stream_log::StreamLog;

impl Shard {
    /// Where the stream `queue` keeps its segment files.
    fn stream_dir(&self, queue: QueueId) -> PathBuf {
        self.config.data_dir.join("streams").join(format!("{:020}", queue.sequence()))
    }

    /// A queue for `definition`; a stream gets its log, recovered from its files. A log that
    /// cannot be opened leaves a stream that refuses publishes (logged once here).
    pub(super) fn new_queue(&self, definition: Arc<QueueDef>) -> Queue {
        let is_stream = QueueType::of(&definition.arguments) == QueueType::Stream;
        let mut queue = Queue::new(definition.clone());
        if !is_stream {
            return queue;
        }
        let segment_bytes = definition
            .arguments
            .inner()
            .get("x-stream-max-segment-size-bytes")
            .and_then(integer)
            .and_then(|bytes| u64::try_from(bytes).ok())
            .unwrap_or(STREAM_SEGMENT_BYTES_DEFAULT)
            .max(STREAM_SEGMENT_BYTES_MIN);
        let dir = self.stream_dir(definition.id);
        match StreamLog::open(&dir, segment_bytes) {
            Ok((log, dropped_bytes)) => {
                if dropped_bytes > 0 {
                    crate::warn!(
                        "stream '{}' in vhost '{}': dropped {dropped_bytes} bytes of torn or corrupt records at the end of its log",
                        definition.name,
                        definition.vhost
                    );
                }
                queue.attach_stream(log);
            }
            Err(error) => crate::error!(
                "stream '{}' in vhost '{}': cannot open its log {}: {error}",
                definition.name,
                definition.vhost,
                dir.display()
            ),
        }
        queue
    }

    /// Appends a message published to a stream of this shard; false if `id` is no stream.
    /// The confirm waits for the fdatasync of the stream's file (through the store's group
    /// commit); a failed write nacks it.
    pub(super) fn publish_to_stream(
        &self,
        id: QueueId,
        message: &Arc<Message>,
        publisher: Holder,
        publish_sequence: Option<u64>,
    ) -> bool {
        let appended = self.with_queue(id, |queue, effects, _| {
            (QueueType::of(&queue.definition.arguments) == QueueType::Stream)
                .then(|| queue.append_to_stream(message, crate::clock::unix_ms(), effects))
        });
        let Some(Some(result)) = appended else { return false };
        let confirm = publish_sequence.map(|publish_sequence| ConfirmTo { holder: publisher, publish_sequence });
        match result {
            Ok(()) => {
                let mut dirty = self.dirty_streams.borrow_mut();
                if !dirty.contains(&id) {
                    dirty.push(id);
                }
                drop(dirty);
                let waiting = confirm.map(|confirm| self.with_store(|store| store.confirm_after_sync(confirm)));
                if let Some(None) = waiting {
                    // No store to commit through: the confirm cannot wait for a sync.
                    if let Some(confirm) = confirm {
                        self.send(publisher.conn.shard(), ShardMsg::Confirmed { confirm, ok: false });
                    }
                }
                self.sync_signal.request();
            }
            Err(reason) => {
                crate::error!("shard {}: {reason}", self.id);
                if let Some(confirm) = confirm {
                    self.send(publisher.conn.shard(), ShardMsg::Confirmed { confirm, ok: false });
                }
            }
        }
        true
    }

    /// The stream files written since the last commit, each once: the commit fdatasyncs them
    /// with the shard's segments before it releases the confirms it took, then tells each
    /// stream how far it is on disk (`streams_synced`).
    pub fn take_stream_files(&self) -> StreamSync {
        let dirty = std::mem::take(&mut *self.dirty_streams.borrow_mut());
        let mut queues = self.queues.borrow_mut();
        let mut sync = StreamSync::default();
        for id in dirty {
            let Some(queue) = queues.get_mut(&id) else { continue };
            match queue.take_stream_unsynced() {
                Ok((files, offset)) => {
                    sync.files.extend(files);
                    sync.synced_up_to.push((id, offset));
                }
                Err(error) => {
                    let reason = format!("stream '{}': write failed: {error}", queue.definition.name);
                    crate::error!("shard {}: {reason}", self.id);
                    sync.failure = Some(reason);
                }
            }
        }
        sync
    }

    /// The commit synced the streams' files: their consumers may read up to there.
    pub fn streams_synced(&self, synced_up_to: Vec<(QueueId, u64)>) {
        for (id, offset) in synced_up_to {
            self.with_queue(id, |queue, effects, _| queue.stream_committed(offset, effects));
        }
    }
}

/// What one group commit syncs of the streams: the files, and each stream's offset covered.
#[derive(Default)]
pub struct StreamSync {
    pub files: Vec<Arc<File>>,
    pub synced_up_to: Vec<(QueueId, u64)>,
    /// A stream's buffered appends could not be written: the commit must not confirm them.
    pub failure: Option<String>,
}
