//! Group commit: one fdatasync per dirty segment for everything a shard wrote since the last
//! one, then the publisher confirms that batch covers. After a new segment file was created,
//! the commit also fsyncs the store's directory (an fdatasync of the file alone need not put
//! its name on disk).
//!
//! Runs as one task per shard, so at most one fsync is in flight per file; messages written
//! while it runs ride the next one. An fsync error poisons the store: the waiting confirms
//! become nacks and later publishes to its durable queues are refused; nothing is retried.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::broker::control::{bucket_of, COMMIT_BATCH_BUCKETS, FSYNC_SECONDS_BUCKETS};
use crate::limits::FINAL_COMMIT_WAIT_MS;
use crate::shard::Shard;
use crate::store::segment::Segment;

/// Wakes the commit task when a write left confirms or segments waiting for a sync.
#[derive(Default)]
pub struct SyncSignal {
    requested: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    /// A commit (fdatasync and what follows it) is running.
    in_flight: Cell<bool>,
    pub fsyncs: Cell<u64>,
    /// The time those fdatasyncs took, summed (a scrape's counter).
    pub fsync_micros: Cell<u64>,
    pub confirmed_messages: Cell<u64>,
    /// Histograms of fdatasync latency and of confirms per commit (`ShardMetrics`).
    pub fsync_latency: Histogram,
    pub commit_batch: Histogram,
}

/// Counts per slot of a histogram whose bounds the reader knows (plain, read by its shard).
#[derive(Default)]
pub struct Histogram(RefCell<Vec<u64>>);

impl Histogram {
    pub fn note(&self, slot: usize) {
        let mut counts = self.0.borrow_mut();
        if counts.len() <= slot {
            counts.resize(slot + 1, 0);
        }
        counts[slot] += 1;
    }

    /// The counts of `slots` slots.
    pub fn counts(&self, slots: usize) -> Vec<u64> {
        let mut counts = self.0.borrow().clone();
        counts.resize(slots, 0);
        counts
    }
}

impl SyncSignal {
    pub fn request(&self) {
        self.requested.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

struct Requested<'a>(&'a SyncSignal);

impl Future for Requested<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.0.requested.replace(false) {
            return Poll::Ready(());
        }
        *self.0.waker.borrow_mut() = Some(context.waker().clone());
        Poll::Pending
    }
}

pub async fn commit_loop(shard: Rc<Shard>) {
    let mut files: HashMap<u64, monoio::fs::File> = HashMap::new();
    loop {
        Requested(&shard.sync_signal).await;
        if commit_once(&shard, &mut files).await == Commit::NoStore {
            return;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Commit {
    NoStore,
    /// Another commit is in flight: this one waits for it.
    Busy,
    Nothing,
    Done,
}

/// One group commit: fdatasync of every segment written since the last one (and fsync of the
/// directory, after a segment was created), then the Moved marks of the copies it covers,
/// then the confirms it releases. Only one runs at a time.
async fn commit_once(shard: &Shard, files: &mut HashMap<u64, monoio::fs::File>) -> Commit {
    if shard.sync_signal.in_flight.get() {
        return Commit::Busy;
    }
    let Some(batch) = shard.with_store(|store| store.take_sync_batch()) else { return Commit::NoStore };
    // Taken after the batch: every stream append whose confirm the batch holds came before.
    let streams = shard.take_stream_files();
    let nothing_to_sync = streams.files.is_empty() && streams.failure.is_none() && batch.directory.is_none();
    if batch.segments.is_empty() && batch.confirms.is_empty() && batch.retired.is_empty() && nothing_to_sync {
        shard.with_store(|store| store.sync_finished());
        shard.note_backlog();
        return Commit::Nothing;
    }
    shard.sync_signal.in_flight.set(true);
    let mut failure = match streams.failure {
        Some(reason) => Some(reason),
        None => sync_stream_files(&streams.files).await,
    };
    if let (None, Some(directory)) = (&failure, &batch.directory) {
        if let Err(error) = sync_directory(directory).await {
            failure = Some(format!("fsync of the segments' directory {} failed: {error}", directory.display()));
        }
    }
    for segment in batch.segments.iter().filter(|_| failure.is_none()) {
        let file = match files.get(&segment.number) {
            Some(file) => file,
            None => match segment.file.try_clone().and_then(monoio::fs::File::from_std) {
                Ok(file) => files.entry(segment.number).or_insert(file),
                Err(error) => {
                    failure = Some(format!("segment {}: {error}", segment.number));
                    break;
                }
            },
        };
        let started = std::time::Instant::now();
        if let Err(error) = file.sync_data().await {
            failure = Some(format!("fdatasync of segment {} failed: {error}", segment.number));
            break;
        }
        if let Some(delay_ms) = shard.config.inject_sync_delay_ms {
            monoio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        }
        let signal = &shard.sync_signal;
        signal.fsyncs.set(signal.fsyncs.get() + 1);
        let elapsed = started.elapsed();
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        signal.fsync_micros.set(signal.fsync_micros.get().saturating_add(micros));
        signal.fsync_latency.note(bucket_of(FSYNC_SECONDS_BUCKETS, &elapsed.as_secs_f64()));
    }
    // Keep descriptors only for segments still being written.
    let active = shard.with_store(|store| store.active_numbers()).unwrap_or_default();
    files.retain(|number, _| active.contains(&Some(*number)));
    let ok = failure.is_none();
    if let Some(reason) = failure {
        let retired = batch.retired.into_iter().map(|(segment, _)| segment);
        shard.with_store(|store| {
            store.poison_with(reason);
            store.keep(retired);
        });
    } else {
        release_moved(batch.retired);
        shard.streams_synced(streams.synced_up_to);
    }
    shard.sync_signal.confirmed_messages.set(shard.sync_signal.confirmed_messages.get() + batch.confirms.len() as u64);
    if !batch.confirms.is_empty() {
        shard.sync_signal.commit_batch.note(bucket_of(COMMIT_BATCH_BUCKETS, &(batch.confirms.len() as u64)));
    }
    shard.with_store(|store| store.sync_finished());
    shard.note_backlog();
    shard.release_confirms(batch.confirms, ok);
    shard.sync_signal.in_flight.set(false);
    Commit::Done
}

/// fsync of the store's directory, once a segment was created in it: the segment's name is then
/// on disk too (the stream and definitions logs do the same for their files).
async fn sync_directory(directory: &std::path::Path) -> std::io::Result<()> {
    monoio::fs::File::from_std(std::fs::File::open(directory)?)?.sync_all().await
}

/// fdatasyncs the streams' files written since the last commit (`shard/streams.rs`).
async fn sync_stream_files(files: &[Arc<std::fs::File>]) -> Option<String> {
    for file in files {
        let synced = match file.try_clone().and_then(monoio::fs::File::from_std) {
            Ok(file) => file.sync_data().await,
            Err(error) => Err(error),
        };
        if let Err(error) = synced {
            return Some(format!("fdatasync of a stream segment failed: {error}"));
        }
    }
    None
}

/// At a clean stop, once the connections are closed: what the store gathered is written and
/// synced, and the Moved marks of synced compaction copies are written. Without this, a
/// message that compaction had copied and a consumer then acknowledged (its removal marked on
/// the copy) could come back after a clean restart, loaded from its unmarked original.
/// Bounded: waits at most `FINAL_COMMIT_WAIT_MS` for commits already in flight.
pub async fn final_commit(shard: &Shard) {
    shard.write_store();
    let mut files = HashMap::new();
    for _ in 0..FINAL_COMMIT_WAIT_MS {
        match commit_once(shard, &mut files).await {
            Commit::Busy | Commit::Done => monoio::time::sleep(std::time::Duration::from_millis(1)).await,
            Commit::Nothing | Commit::NoStore => return,
        }
    }
    crate::warn!("shard {}: stopping with a commit still in flight", shard.id);
}

/// The copies of these segments' records are on disk: their `Moved` marks say so (no fsync
/// needed: without them recovery keeps the originals and ignores the copies), and the
/// segments may go once nothing else holds them.
fn release_moved(retired: Vec<(Arc<Segment>, Vec<u8>)>) {
    for (segment, marks) in retired {
        if let Err(error) = segment.append_marks(&marks) {
            crate::warn!("segment {}: cannot write moved marks: {error}", segment.number);
        }
    }
}
