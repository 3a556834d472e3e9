//! Reads the broker's data directory the way the storage design documents it, so the tests can
//! damage exactly one record: segment files `messages/shard-<i>/<number:010>.segment` holding
//! `[length u32 LE][crc32c u32 LE][kind u8][payload]` records up to a zero-filled tail, where
//! the checksum is the CRC32C of the segment's number (u64 LE, the file's name) followed by
//! kind and payload, and their `<number>.marks` files of 24-byte mark records. Written from the format, not from the
//! broker's code, so a change of format shows up here as a failing test.
//!
//! Also the tests' source of randomness: a xorshift generator whose seed is printed, so a
//! failing damage pattern can be replayed.

use std::path::{Path, PathBuf};

pub const RECORD_HEADER_BYTES: usize = 8;
pub const MARK_RECORD_BYTES: usize = 24;
const KIND_MESSAGE: u8 = 1;

/// One message record found in a segment: where it lies and what it holds.
#[derive(Debug, Clone)]
pub struct SegmentRecord {
    pub start: usize,
    pub end: usize,
    pub queue_sequence: u64,
    pub sequence: u64,
    pub body: Vec<u8>,
}

/// One mark record of a `.marks` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkRecord {
    pub queue_sequence: u64,
    pub sequence: u64,
    pub removed: bool,
}

/// Every `.segment` file of every shard, ordered by shard directory then number.
pub fn segment_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(shards) = std::fs::read_dir(data_dir.join("messages")) else { return files };
    for shard in shards.flatten() {
        let Ok(entries) = std::fs::read_dir(shard.path()) else { continue };
        files.extend(
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|extension| extension == "segment")),
        );
    }
    files.sort();
    files
}

/// The one segment that holds records (a test writes one queue on one shard) and its records.
pub fn written_segment(data_dir: &Path) -> (PathBuf, Vec<SegmentRecord>) {
    let written: Vec<(PathBuf, Vec<SegmentRecord>)> = segment_files(data_dir)
        .into_iter()
        .map(|path| {
            let records = read_segment(&path);
            (path, records)
        })
        .filter(|(_, records)| !records.is_empty())
        .collect();
    assert_eq!(written.len(), 1, "expected exactly one written segment under {}: {written:#?}", data_dir.display());
    written.into_iter().next().expect("one segment")
}

/// The records of a segment up to its zero-filled tail. The segment must be undamaged: the
/// tests read it before they damage it.
pub fn read_segment(path: &Path) -> Vec<SegmentRecord> {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    let number: u64 = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse().ok())
        .unwrap_or_else(|| panic!("{}: not a segment's name", path.display()));
    let mut records = Vec::new();
    let mut offset = 0;
    while let Some(header) = bytes.get(offset..offset + RECORD_HEADER_BYTES) {
        let length = u32_at(header, 0) as usize;
        if length == 0 {
            assert_eq!(u32_at(header, 4), 0, "{}: zero length with a checksum at {offset}", path.display());
            break;
        }
        let start = offset + RECORD_HEADER_BYTES;
        let content = bytes
            .get(start..start + length)
            .unwrap_or_else(|| panic!("{}: record at {offset} runs past the end", path.display()));
        let numbered: Vec<u8> = number.to_le_bytes().iter().chain(content).copied().collect();
        assert_eq!(
            crc32c::crc32c(&numbered),
            u32_at(header, 4),
            "{}: checksum of the record at {offset}",
            path.display()
        );
        assert_eq!(content[0], KIND_MESSAGE, "{}: kind of the record at {offset}", path.display());
        records.push(decode_message(&content[1..], offset, start + length));
        offset = start + length;
    }
    records
}

/// Payload of a message record: queue sequence u64, sequence u64, deadline u64 (Unix ms, 0:
/// none), priority u8, exchange shortstr, routing key shortstr, properties u32-length + bytes,
/// body u32-length + bytes.
fn decode_message(payload: &[u8], start: usize, end: usize) -> SegmentRecord {
    let queue_sequence = u64_at(payload, 0);
    let sequence = u64_at(payload, 8);
    let mut position = 16 + 8 + 1;
    for _short_string in 0..2 {
        position += 1 + usize::from(payload[position]);
    }
    let properties_length = u32_at(payload, position) as usize;
    position += 4 + properties_length;
    let body_length = u32_at(payload, position) as usize;
    position += 4;
    let body = payload[position..position + body_length].to_vec();
    assert_eq!(position + body_length, payload.len(), "the body is the last field of the record at {start}");
    SegmentRecord { start, end, queue_sequence, sequence, body }
}

/// The `.marks` file beside a segment.
pub fn marks_path(segment: &Path) -> PathBuf {
    segment.with_extension("marks")
}

/// The mark records of a `.marks` file; the file must be undamaged.
pub fn read_marks(path: &Path) -> Vec<MarkRecord> {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    assert_eq!(bytes.len() % MARK_RECORD_BYTES, 0, "{} holds a torn mark", path.display());
    bytes
        .chunks_exact(MARK_RECORD_BYTES)
        .map(|mark| {
            assert_eq!(crc32c::crc32c(&mark[..20]), u32_at(mark, 20), "checksum of a mark in {}", path.display());
            assert!(matches!(mark[16], 1 | 2), "unknown mark kind {} in {}", mark[16], path.display());
            MarkRecord { queue_sequence: u64_at(mark, 0), sequence: u64_at(mark, 8), removed: mark[16] == 1 }
        })
        .collect()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// Cuts the file at `offset`: the write that was in flight never finished.
pub fn truncate_at(path: &Path, offset: usize) {
    let file = std::fs::OpenOptions::new().write(true).open(path).expect("open for truncation");
    file.set_len(offset as u64).expect("truncate");
}

/// Zeroes `[offset, end)`: a pre-allocated file whose last write reached only part of the disk.
pub fn zero_range(path: &Path, offset: usize, end: usize) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).expect("open for zeroing");
    file.write_all_at(&vec![0; end - offset], offset as u64).expect("zero the range");
}

/// XORs the byte at `offset` with `mask` (non-zero): a bit rot or a misdirected write.
pub fn flip_byte(path: &Path, offset: usize, mask: u8) {
    use std::os::unix::fs::FileExt;
    assert_ne!(mask, 0, "a zero mask changes nothing");
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open for flipping");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset as u64).expect("read the byte");
    byte[0] ^= mask;
    file.write_all_at(&byte, offset as u64).expect("write the byte");
}

/// xorshift64: small, fast, and reproducible from its printed seed.
pub struct XorShift {
    state: u64,
}

impl XorShift {
    /// Seeded from `SPATEMQ_TEST_SEED` if set, else from the clock; prints the seed.
    pub fn from_env_or_clock(test: &str) -> XorShift {
        let seed = std::env::var("SPATEMQ_TEST_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
            nanos as u64 ^ u64::from(std::process::id())
        });
        eprintln!("{test}: random seed {seed} (replay with SPATEMQ_TEST_SEED={seed})");
        XorShift { state: seed.max(1) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// A number in `0..bound`.
    pub fn below(&mut self, bound: usize) -> usize {
        assert!(bound > 0, "empty range");
        (self.next_u64() % bound as u64) as usize
    }

    /// A number in `low..high`.
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low)
    }

    pub fn nonzero_byte(&mut self) -> u8 {
        (self.below(255) + 1) as u8
    }
}
