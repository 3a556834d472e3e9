//! One stream's append-only log: segment files of its own under the shard's data directory,
//! holding every message the stream was given, in order, each at its offset (0, 1, 2, ...).
//!
//! A stream is not a queue: acks never shorten it, only retention does, and retention drops
//! whole segments (the oldest first, never the one being written), so no per-message state is
//! kept in memory: the log knows each segment's first offset, first and last store time and
//! size, with the file position of one message in `STREAM_INDEX_EVERY_MESSAGES` (the sparse
//! index), and consumers keep cursors (`StreamCursor`) that read the files with pread, a
//! chunk of `STREAM_READ_CHUNK_BYTES` at a time, and hand out messages as slices of that chunk
//! (no copy per message; the page cache holds the log, not the broker's heap).
//!
//! Records are the message store's (`record.rs`: length, CRC32C, kind, payload) with
//! `KIND_MESSAGE`; in a stream segment the message's `sequence` is its offset and its
//! `expires_at_unix_ms` field holds the time it was stored (streams have no TTL). Segment
//! files are named by their first offset (`00000000000000000042.stream`). Recovery scans every
//! segment and stops at the first torn or corrupt record, truncating the file there, so
//! offsets stay those that were written. Appends are encoded into a buffer that is written
//! with one positioned write when the group commit takes the log's files (`take_unsynced`),
//! when a segment rolls over, or past `STREAM_WRITE_BUFFER_BYTES`; the commit fdatasyncs the
//! files before it confirms, and readers never read past what it synced. A write that fails
//! fails the log: later appends are refused. A message's properties are stored with the
//! `x-stream-offset` header its deliveries carry already in them (`OFFSET_IN_PROPERTIES`), so
//! a delivery is the stored bytes as they are. Nothing here knows queues or consumers.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::record::RECORD_HEADER_BYTES;
use super::record::{
    decode_message, encode_message_as, read_record, record_length, MessageRecord, ReadOutcome, KIND_MESSAGE,
};
use crate::codec::message::{with_long_header, Message};
use crate::limits::{STREAM_INDEX_EVERY_MESSAGES, STREAM_READ_CHUNK_BYTES, STREAM_WRITE_BUFFER_BYTES};

/// The header each delivery of a stream carries: the message's offset.
pub const OFFSET_HEADER: &[u8] = b"x-stream-offset";

/// The record's priority field (unused by streams) says the stored properties carry
/// `x-stream-offset` already; 0: they are as published (the header must be added on delivery).
const OFFSET_IN_PROPERTIES: u8 = 1;

/// The largest record a stream reads back: a message is bounded by the broker's frame and
/// body limits long before this; a length field above it is damage, not a message.
const RECORD_BYTES_MAX: usize = 1 << 30;

struct LogSegment {
    first_offset: u64,
    /// Store times (Unix ms) of its first and last message; 0 while it is empty.
    first_stored_ms: u64,
    last_stored_ms: u64,
    bytes: u64,
    /// Of `bytes`, how many are in the file (the rest waits in the log's write buffer).
    written: u64,
    /// Messages in it.
    count: u64,
    /// (offset, file position) of one message in `STREAM_INDEX_EVERY_MESSAGES`, the first
    /// included: where a read from an offset starts.
    positions: Vec<(u64, u64)>,
    file: Arc<File>,
    path: PathBuf,
}

impl LogSegment {
    /// Called with each message's offset before its record is counted in `bytes`.
    fn note_position(&mut self, offset: u64) {
        if self.count.is_multiple_of(STREAM_INDEX_EVERY_MESSAGES) {
            self.positions.push((offset, self.bytes));
        }
    }

    /// The file position of the last indexed message at or before `offset`.
    fn position_before(&self, offset: u64) -> u64 {
        let index = self.positions.partition_point(|(indexed, _)| *indexed <= offset);
        index.checked_sub(1).map_or(0, |index| self.positions[index].1)
    }
}

/// A message read back from a stream: slices of the chunk it was read in.
#[derive(Debug)]
pub struct StreamEntry {
    pub offset: u64,
    pub stored_ms: u64,
    /// Whether `message.properties` carry the `x-stream-offset` header already.
    pub offset_in_properties: bool,
    pub message: Message,
}

/// What a stream keeps: at most this many bytes and messages no older than this (None: no
/// bound). Checked when a segment is rolled over and by the shard's timer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_bytes: Option<u64>,
    pub max_age_ms: Option<u64>,
}

/// Where a consumer reads next: an offset, the file position of that offset's record when
/// known (sequential reads then need no scan), and the chunk last read from the file.
#[derive(Clone, Debug, Default)]
pub struct StreamCursor {
    pub offset: u64,
    position: Option<(u64, u64)>,
    chunk: Chunk,
}

impl StreamCursor {
    pub fn at(offset: u64) -> StreamCursor {
        StreamCursor { offset, ..StreamCursor::default() }
    }
}

/// Bytes read from one segment file at one position: the records in it are handed out as
/// slices, so a chunk lives until its last delivered message is written to its socket.
#[derive(Clone, Debug, Default)]
struct Chunk {
    segment_first_offset: u64,
    file_position: u64,
    bytes: Bytes,
}

impl Chunk {
    /// The whole record at `position` of segment `first_offset`, if this chunk holds it.
    fn record_at(&self, first_offset: u64, position: u64) -> Option<Bytes> {
        if self.segment_first_offset != first_offset || position < self.file_position {
            return None;
        }
        let start = usize::try_from(position - self.file_position).ok()?;
        let length = record_length(self.bytes.get(start..)?)?;
        (start + length <= self.bytes.len()).then(|| self.bytes.slice(start..start + length))
    }
}

pub struct StreamLog {
    dir: PathBuf,
    segments: VecDeque<LogSegment>,
    next_offset: u64,
    segment_bytes_max: u64,
    /// First offset written since the last sync: the start of the last chunk (`last`).
    chunk_first_offset: u64,
    /// Whether appends since the last `take_unsynced` began a new chunk.
    chunk_open: bool,
    /// Offsets below this are on disk (fdatasynced, or found there at recovery): readers stop
    /// here, so no consumer sees a message a crash could still take back (and give its offset
    /// to another).
    committed_offset: u64,
    unsynced: Vec<Arc<File>>,
    /// Records appended to the last segment and not written yet (`flush`).
    pending: Vec<u8>,
    /// Why the log takes no more appends: a write failed, and what follows it in the file
    /// would leave a hole.
    failed: Option<String>,
}

fn segment_name(first_offset: u64) -> String {
    format!("{first_offset:020}.stream")
}

fn open_segment(dir: &Path, first_offset: u64, create: bool) -> io::Result<(File, PathBuf)> {
    let path = dir.join(segment_name(first_offset));
    let file = super::files::options().read(true).write(true).create(create).open(&path)?;
    if create {
        // The file's fdatasyncs cover its data, not its name: a power cut must not lose a
        // segment whose messages were confirmed.
        super::files::sync_dir(dir)?;
    }
    Ok((file, path))
}

/// Decodes a whole record (checksum checked) into a message whose fields are slices of it.
fn decode(record: &Bytes) -> Option<StreamEntry> {
    let ReadOutcome::Record { kind: KIND_MESSAGE, payload, .. } = read_record(record, 0) else { return None };
    let (message, layout) = decode_message(payload)?;
    // Layout ranges count from the payload, which follows the header and the kind byte.
    let shift = RECORD_HEADER_BYTES + 1;
    let slice = |range: (usize, usize)| record.slice(range.0 + shift..range.1 + shift);
    Some(StreamEntry {
        offset: message.sequence,
        stored_ms: message.expires_at_unix_ms,
        offset_in_properties: message.priority == OFFSET_IN_PROPERTIES,
        message: Message {
            exchange: slice(layout.exchange),
            routing_key: slice(layout.routing_key),
            properties: slice(layout.properties),
            body: slice(layout.body),
        },
    })
}

/// The record at `position` of `segment`, from `chunk` or from a new chunk read there (at
/// least the whole record, at most what the file holds). None past what is written, or when
/// the file cannot be read.
fn record_at(segment: &LogSegment, position: u64, chunk: &mut Chunk) -> Option<Bytes> {
    if let Some(record) = chunk.record_at(segment.first_offset, position) {
        return Some(record);
    }
    let available = segment.written.checked_sub(position).filter(|available| *available > 0)?;
    let mut want = available.min(STREAM_READ_CHUNK_BYTES);
    for _ in 0..2 {
        let mut buffer = vec![0u8; usize::try_from(want).ok()?];
        segment.file.read_exact_at(&mut buffer, position).ok()?;
        *chunk =
            Chunk { segment_first_offset: segment.first_offset, file_position: position, bytes: Bytes::from(buffer) };
        if let Some(record) = chunk.record_at(segment.first_offset, position) {
            return Some(record);
        }
        // A record longer than a chunk: read it whole (unless its length is damage).
        let length = record_length(&chunk.bytes)?;
        if length as u64 > available || length > RECORD_BYTES_MAX {
            return None;
        }
        want = length as u64;
    }
    None
}

impl StreamLog {
    /// Opens (creating it if missing) the log in `dir`, recovering its segments. A segment's
    /// torn or corrupt tail is cut off (logged by the caller through the returned count of
    /// dropped bytes); everything before it is kept.
    pub fn open(dir: &Path, segment_bytes_max: u64) -> io::Result<(StreamLog, u64)> {
        super::files::create_dirs(dir)?;
        // A new stream's directory (and `streams/` itself) must survive a power cut too.
        super::files::sync_dir_and_parents(dir, 2)?;
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(".stream")?.parse().ok())
            .collect();
        firsts.sort_unstable();
        let mut log = StreamLog {
            dir: dir.to_path_buf(),
            segments: VecDeque::new(),
            next_offset: 0,
            segment_bytes_max: segment_bytes_max.max(1),
            chunk_first_offset: 0,
            chunk_open: false,
            committed_offset: 0,
            unsynced: Vec::new(),
            pending: Vec::new(),
            failed: None,
        };
        let mut dropped_bytes = 0;
        for first_offset in firsts {
            let (file, path) = open_segment(dir, first_offset, false)?;
            let mut segment = LogSegment {
                first_offset,
                first_stored_ms: 0,
                last_stored_ms: 0,
                bytes: 0,
                written: 0,
                count: 0,
                positions: Vec::new(),
                file: Arc::new(file),
                path,
            };
            let length = segment.file.metadata()?.len();
            // Scanned a chunk at a time, as consumers read: up to the first record that is
            // torn, fails its checksum or breaks the offsets.
            segment.written = length;
            let mut chunk = Chunk::default();
            while let Some(record) = record_at(&segment, segment.bytes, &mut chunk) {
                let Some(entry) = decode(&record) else { break };
                if entry.offset != first_offset + segment.count {
                    break;
                }
                if segment.count == 0 {
                    segment.first_stored_ms = entry.stored_ms;
                }
                segment.note_position(entry.offset);
                segment.last_stored_ms = entry.stored_ms;
                segment.count += 1;
                segment.bytes += record.len() as u64;
            }
            if length > segment.bytes {
                dropped_bytes += length - segment.bytes;
                segment.file.set_len(segment.bytes)?;
                segment.file.sync_all()?;
            }
            segment.written = segment.bytes;
            log.next_offset = first_offset + segment.count;
            log.segments.push_back(segment);
        }
        log.chunk_first_offset = log.next_offset;
        log.committed_offset = log.next_offset;
        Ok((log, dropped_bytes))
    }

    /// The offset the next message gets.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The oldest offset still held (equal to `next_offset` when empty).
    pub fn first_offset(&self) -> u64 {
        self.segments.iter().find(|segment| segment.count > 0).map_or(self.next_offset, |segment| segment.first_offset)
    }

    /// Messages held.
    pub fn count(&self) -> u64 {
        self.segments.iter().map(|segment| segment.count).sum()
    }

    /// Bytes held in its segment files.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|segment| segment.bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The first offset of the last chunk (the messages written between two syncs), or the
    /// next offset when nothing was written yet.
    pub fn last_chunk_offset(&self) -> u64 {
        self.chunk_first_offset.max(self.first_offset())
    }

    /// Appends one message and returns its offset (written to the file later, see `flush`).
    /// Rolls over to a new segment when the active one is full; the caller then applies
    /// retention. Err when the log failed or a write fails now.
    pub fn append(&mut self, message: &MessageFields<'_>, stored_ms: u64) -> io::Result<u64> {
        if let Some(reason) = &self.failed {
            return Err(io::Error::other(reason.clone()));
        }
        let offset = self.next_offset;
        let with_offset =
            with_long_header(message.properties, OFFSET_HEADER, i64::try_from(offset).unwrap_or(i64::MAX));
        let record = MessageRecord {
            queue_sequence: 0,
            sequence: offset,
            expires_at_unix_ms: stored_ms,
            priority: if with_offset.is_some() { OFFSET_IN_PROPERTIES } else { 0 },
            exchange: message.exchange,
            routing_key: message.routing_key,
            properties: with_offset.as_deref().unwrap_or(message.properties),
            body: message.body,
        };
        let full = self.segments.back().is_none_or(|segment| segment.bytes >= self.segment_bytes_max);
        if full {
            self.flush()?;
            let (file, path) = open_segment(&self.dir, offset, true)?;
            file.set_len(0)?;
            self.segments.push_back(LogSegment {
                first_offset: offset,
                first_stored_ms: stored_ms,
                last_stored_ms: stored_ms,
                bytes: 0,
                written: 0,
                count: 0,
                positions: Vec::new(),
                file: Arc::new(file),
                path,
            });
        }
        let before = self.pending.len();
        encode_message_as(&mut self.pending, &record, KIND_MESSAGE, 0);
        let encoded_bytes = (self.pending.len() - before) as u64;
        let segment = self.segments.back_mut().expect("a segment was just ensured");
        if segment.count == 0 {
            segment.first_stored_ms = stored_ms;
        }
        segment.note_position(offset);
        segment.bytes += encoded_bytes;
        segment.count += 1;
        segment.last_stored_ms = stored_ms;
        if !self.chunk_open {
            self.chunk_open = true;
            self.chunk_first_offset = offset;
        }
        self.next_offset += 1;
        if self.pending.len() >= STREAM_WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(offset)
    }

    /// Writes the buffered records to the last segment with one positioned write. A failure
    /// fails the log.
    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Some(reason) = &self.failed {
            return Err(io::Error::other(reason.clone()));
        }
        let Some(segment) = self.segments.back_mut() else {
            return Err(io::Error::other("stream records without a segment"));
        };
        if let Err(error) = segment.file.write_all_at(&self.pending, segment.written) {
            self.failed = Some(format!("write to stream segment {} failed: {error}", segment.path.display()));
            return Err(error);
        }
        segment.written += self.pending.len() as u64;
        self.pending.clear();
        if !self.unsynced.iter().any(|file| Arc::ptr_eq(file, &segment.file)) {
            self.unsynced.push(segment.file.clone());
        }
        Ok(())
    }

    /// The files written since the last call, for the next fdatasync, and the offset that
    /// sync covers up to (pass it to `set_committed` once it succeeded); the next append
    /// starts a new chunk.
    /// Err: the buffered records could not be written; nothing of them may be confirmed.
    pub fn take_unsynced(&mut self) -> io::Result<(Vec<Arc<File>>, u64)> {
        self.flush()?;
        self.chunk_open = false;
        Ok((std::mem::take(&mut self.unsynced), self.next_offset))
    }

    /// The messages below `offset` are on disk: readers may have them.
    pub fn set_committed(&mut self, offset: u64) {
        self.committed_offset = self.committed_offset.max(offset.min(self.next_offset));
    }

    /// Drops the oldest segments while the log holds more than `max_bytes` or their newest
    /// message is older than `max_age_ms`; the segment being written always stays. Returns
    /// how many messages went.
    pub fn apply_retention(&mut self, retention: Retention, now_ms: u64) -> u64 {
        let mut dropped = 0;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let too_big = retention.max_bytes.is_some_and(|max_bytes| self.bytes() > max_bytes);
            let too_old = retention
                .max_age_ms
                .is_some_and(|max_age_ms| oldest.last_stored_ms.saturating_add(max_age_ms) < now_ms);
            if !too_big && !too_old {
                break;
            }
            let Some(oldest) = self.segments.pop_front() else { break };
            dropped += oldest.count;
            if let Err(error) = std::fs::remove_file(&oldest.path) {
                crate::warn!("stream segment {}: cannot delete: {error}", oldest.path.display());
            }
        }
        dropped
    }

    /// Deletes every file of the log (the stream was deleted).
    pub fn remove(mut self) {
        let dir = self.dir.clone();
        // Nothing buffered is worth writing to files about to go.
        self.pending.clear();
        drop(self);
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            crate::warn!("stream {}: cannot delete: {error}", dir.display());
        }
    }

    /// The first offset stored at or after `unix_ms` (the next offset if none).
    pub fn offset_at_time(&self, unix_ms: u64) -> u64 {
        let Some(segment) = self.segments.iter().find(|segment| segment.count > 0 && segment.last_stored_ms >= unix_ms)
        else {
            return self.next_offset;
        };
        let mut position = 0;
        let mut chunk = Chunk::default();
        while let Some(record) = record_at(segment, position, &mut chunk) {
            match decode(&record) {
                Some(entry) if entry.stored_ms >= unix_ms => return entry.offset,
                Some(_) => position += record.len() as u64,
                None => break,
            }
        }
        self.next_offset
    }

    /// Reads the message at the cursor and moves the cursor past it. None at the end of the
    /// log; a cursor before the first offset held (retention dropped it) moves to the first.
    pub fn read_next(&self, cursor: &mut StreamCursor) -> Option<StreamEntry> {
        if cursor.offset < self.first_offset() {
            *cursor = StreamCursor::at(self.first_offset());
        }
        if cursor.offset >= self.committed_offset {
            return None;
        }
        let index = self.segments.partition_point(|segment| segment.first_offset <= cursor.offset).checked_sub(1)?;
        let segment = &self.segments[index];
        let mut position = match cursor.position {
            Some((first_offset, position)) if first_offset == segment.first_offset => position,
            _ => segment.position_before(cursor.offset),
        };
        loop {
            let record = record_at(segment, position, &mut cursor.chunk)?;
            let entry = decode(&record)?;
            position += record.len() as u64;
            if entry.offset >= cursor.offset {
                cursor.offset = entry.offset + 1;
                cursor.position = (position < segment.bytes).then_some((segment.first_offset, position));
                return Some(entry);
            }
        }
    }
}

impl Drop for StreamLog {
    /// A clean stop writes what is buffered (unconfirmed, but published).
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            crate::warn!("stream {}: cannot write its last records: {error}", self.dir.display());
        }
    }
}

/// The parts of a message a stream stores (the wire encoding of each).
#[derive(Clone, Copy, Debug)]
pub struct MessageFields<'a> {
    pub exchange: &'a [u8],
    pub routing_key: &'a [u8],
    pub properties: &'a [u8],
    pub body: &'a [u8],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spatemq-stream-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn body(text: &str) -> MessageFields<'_> {
        MessageFields { exchange: b"", routing_key: b"s", properties: b"", body: text.as_bytes() }
    }

    fn commit(log: &mut StreamLog) {
        let (_, offset) = log.take_unsynced().expect("written");
        log.set_committed(offset);
    }

    fn read_all(log: &StreamLog, from: u64) -> Vec<(u64, Vec<u8>)> {
        let mut cursor = StreamCursor::at(from);
        std::iter::from_fn(|| log.read_next(&mut cursor))
            .map(|entry| (entry.offset, entry.message.body.to_vec()))
            .collect()
    }

    #[test]
    fn appends_read_back_in_order_across_segments_and_restarts() {
        let dir = temp_dir("restart");
        let (mut log, _) = StreamLog::open(&dir, 200).expect("open");
        for index in 0..20 {
            assert_eq!(log.append(&body(&format!("m{index}")), 1_000 + index).expect("append"), index);
        }
        assert!(log.segment_count() > 1, "small segments roll over");
        assert_eq!(read_all(&log, 0).len(), 0, "nothing is read before it is synced");
        commit(&mut log);
        assert_eq!(read_all(&log, 0).len(), 20);
        assert_eq!(read_all(&log, 17), vec![(17, b"m17".to_vec()), (18, b"m18".to_vec()), (19, b"m19".to_vec())]);
        drop(log);
        let (log, dropped) = StreamLog::open(&dir, 200).expect("reopen");
        assert_eq!((log.first_offset(), log.next_offset(), dropped), (0, 20, 0));
        assert_eq!(read_all(&log, 5)[0], (5, b"m5".to_vec()));
        assert_eq!(log.offset_at_time(1_010), 10);
        assert_eq!(log.offset_at_time(5_000), 20);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn recovery_stops_at_a_torn_record_and_keeps_offsets() {
        let dir = temp_dir("torn");
        let (mut log, _) = StreamLog::open(&dir, 1 << 20).expect("open");
        for index in 0..3 {
            log.append(&body(&format!("m{index}")), 1).expect("append");
        }
        let path = dir.join(segment_name(0));
        drop(log);
        let length = std::fs::metadata(&path).expect("stat").len();
        let file = super::super::files::options().write(true).open(&path).expect("open");
        // A torn third record: its last bytes never reached the disk.
        file.set_len(length - 2).expect("truncate");
        let (mut log, dropped) = StreamLog::open(&dir, 1 << 20).expect("reopen");
        assert!(dropped > 0);
        assert_eq!(log.next_offset(), 2);
        assert_eq!(log.append(&body("again"), 2).expect("append"), 2);
        commit(&mut log);
        assert_eq!(read_all(&log, 0).iter().map(|(offset, _)| *offset).collect::<Vec<_>>(), vec![0, 1, 2]);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn retention_drops_whole_old_segments_and_cursors_skip_ahead() {
        let dir = temp_dir("retention");
        let (mut log, _) = StreamLog::open(&dir, 100).expect("open");
        for index in 0..30 {
            log.append(&body(&format!("message-{index:02}")), 1_000).expect("append");
        }
        commit(&mut log);
        let segments = log.segment_count();
        let segment_bytes = log.segments[0].bytes;
        let kept_bytes = segment_bytes * 3;
        let dropped = log.apply_retention(Retention { max_bytes: Some(kept_bytes), max_age_ms: None }, 1_000);
        assert!(dropped > 0 && log.segment_count() < segments);
        assert!(log.bytes() <= kept_bytes && log.segment_count() > 1, "{} segments", log.segment_count());
        assert_eq!(log.next_offset(), 30, "offsets never move back");
        let mut cursor = StreamCursor::at(0);
        assert_eq!(log.read_next(&mut cursor).map(|entry| entry.offset), Some(log.first_offset()));
        let aged = log.apply_retention(Retention { max_bytes: None, max_age_ms: Some(10) }, 2_000);
        assert!(aged > 0);
        assert_eq!(log.segment_count(), 1, "the segment being written stays");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn reads_from_an_offset_start_at_the_nearest_indexed_position() {
        let dir = temp_dir("index");
        let (mut log, _) = StreamLog::open(&dir, 1 << 30).expect("open");
        let count = STREAM_INDEX_EVERY_MESSAGES * 3 + 5;
        for index in 0..count {
            log.append(&body(&format!("m{index}")), 1).expect("append");
        }
        commit(&mut log);
        assert_eq!(log.segments[0].positions.len(), 4);
        let target = STREAM_INDEX_EVERY_MESSAGES * 2 + 7;
        assert_eq!(read_all(&log, target)[0], (target, format!("m{target}").into_bytes()));
        drop(log);
        let (log, _) = StreamLog::open(&dir, 1 << 30).expect("reopen");
        assert_eq!(log.segments[0].positions.len(), 4, "recovery rebuilds the index");
        assert_eq!(read_all(&log, count - 1), vec![(count - 1, format!("m{}", count - 1).into_bytes())]);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn the_last_chunk_starts_after_the_last_sync() {
        let dir = temp_dir("chunk");
        let (mut log, _) = StreamLog::open(&dir, 1 << 20).expect("open");
        log.append(&body("a"), 1).expect("append");
        assert_eq!(log.take_unsynced().expect("written").0.len(), 1);
        log.append(&body("b"), 1).expect("append");
        log.append(&body("c"), 1).expect("append");
        assert_eq!(log.last_chunk_offset(), 1);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
