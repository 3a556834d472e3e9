//! Group commit: one fdatasync per dirty segment for everything a shard wrote since the last
//! one, then the publisher confirms that batch covers.
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

use crate::shard::Shard;
use crate::store::segment::Segment;

/// Wakes the commit task when a write left confirms or segments waiting for a sync.
#[derive(Default)]
pub struct SyncSignal {
    requested: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    pub fsyncs: Cell<u64>,
    pub confirmed_messages: Cell<u64>,
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
        let Some(batch) = shard.with_store(|store| store.take_sync_batch()) else { return };
        let mut failure = None;
        for segment in &batch.segments {
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
            if let Err(error) = file.sync_data().await {
                failure = Some(format!("fdatasync of segment {} failed: {error}", segment.number));
                break;
            }
            shard.sync_signal.fsyncs.set(shard.sync_signal.fsyncs.get() + 1);
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
        }
        shard
            .sync_signal
            .confirmed_messages
            .set(shard.sync_signal.confirmed_messages.get() + batch.confirms.len() as u64);
        shard.release_confirms(batch.confirms, ok);
    }
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
