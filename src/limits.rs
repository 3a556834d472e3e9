//! Every bound the broker enforces, in one place.
//!
//! A client can grow many structures (frames, channels, queues, buffers); each has a limit
//! here, with the behaviour at the limit written beside it. Values that users tune live in
//! `config.rs` instead; these are the broker's fixed safety rails.

/// Largest frame the broker accepts or offers in connection.tune (bytes, whole frame).
/// A bigger frame from a client is a connection error 501 FRAME_ERROR.
pub const FRAME_MAX_BYTES: u32 = 128 * 1024;

/// The spec's floor for frame_max: a client may not negotiate below it.
pub const FRAME_MIN_BYTES: u32 = 4096;

/// Channels per connection offered in connection.tune, the default of `--channel-max`
/// (RabbitMQ's). Opening channel > max is 504/530.
pub const CHANNEL_MAX: u16 = 2047;

/// Heartbeat interval the server proposes in connection.tune (seconds).
pub const HEARTBEAT_SECONDS: u16 = 60;

/// A client that has not finished the handshake in this time is disconnected: the default of
/// `--handshake-timeout` (RabbitMQ's `handshake_timeout`).
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// After the broker sends connection.close it waits this long for close-ok, then drops the socket.
pub const CLOSE_OK_TIMEOUT_MS: u64 = 3_000;

/// At shutdown, how long a shard keeps handling the mail other shards' closing connections
/// still send it (acks, requeues) before its final commit.
pub const SHUTDOWN_DRAIN_MS: u64 = 2_000;

/// Largest message body accepted (bytes), the default of `--max-message-size` (RabbitMQ's
/// `max_message_size`). Bigger: channel error 406 once the body is in, as RabbitMQ.
pub const MESSAGE_BODY_MAX_BYTES: u64 = 128 * 1024 * 1024;
/// The most `--max-message-size` may be: RabbitMQ's ceiling (`?MAX_MSG_SIZE`), 512 MiB.
pub const MESSAGE_BODY_MAX_BYTES_LIMIT: u64 = 512 * 1024 * 1024;

/// Connections the kernel queues on each listening socket before its shard accepts them
/// (monoio's default). Past it the kernel drops new SYNs and clients retry.
pub const LISTEN_BACKLOG: i32 = 1024;

/// The most a connection asks of its socket in one read (bytes): the read size doubles from
/// `READ_CHUNK_MIN_BYTES` up to this while reads come back full.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The read size of a connection that sends little (and of a new one): an idle connection
/// holds a buffer of this size, not `READ_CHUNK_BYTES`.
pub const READ_CHUNK_MIN_BYTES: usize = 2 * 1024;

/// A connection whose last socket write was smaller than this gives its output buffer back
/// when the output is empty: an idle connection holds none.
pub const OUTPUT_KEEP_BYTES: usize = 4 * 1024;

/// amqps: most encrypted bytes one socket write of a TLS connection carries; larger output is
/// encrypted and written in batches of this size, so a TLS connection holds at most this much
/// ciphertext besides its plaintext output.
pub const TLS_WRITE_BATCH_BYTES: usize = 256 * 1024;

/// A connection stops reading its socket while its own pending output exceeds this (bytes):
/// a client that publishes without reading its deliveries or confirms is slowed, not buffered.
pub const CONNECTION_OUTPUT_HIGH_BYTES: usize = 4 * 1024 * 1024;

/// A persistent message enqueued while its queue holds fewer ready messages than this keeps
/// an in-memory copy (fast delivery to online consumers); deeper backlogs live only in the
/// page cache, so broker memory does not grow with the number of queued messages.
pub const STORED_CACHE_MESSAGES: usize = 1024;

/// A transient message (or any message of a queue that does not survive a restart) that
/// arrives while its queue holds this many ready messages is paged out to the shard's segment
/// log instead of kept in memory (packed, about 25 bytes plus the body each there), as
/// RabbitMQ's classic queues and LavinMQ do: a backlog costs memory only up to here, then about
/// a byte per message. A lazy queue (`x-queue-mode: lazy`) pages from its first message. Paged
/// messages are read back from the page cache for delivery and never survive a restart.
pub const PAGE_OUT_READY_MESSAGES: usize = 65_536;

/// A queue that holds at least this many ready messages has the small in-memory ones that
/// waited since the shard's last sweep packed (`broker::packed`): about 25 bytes plus the
/// body per message instead of about 250. A queue whose consumers take its messages within a
/// sweep (`EXPIRY_SWEEP_INTERVAL_MS`) never pays for the copy.
pub const PACK_READY_MESSAGES: usize = 64;
/// Messages a shard packs per sweep, over all its queues: at about 40 ns each, at most a few
/// milliseconds of every sweep interval. A backlog that grows faster is packed over several
/// sweeps (and pages out at `PAGE_OUT_READY_MESSAGES` either way).
pub const PACK_SWEEP_MESSAGES_MAX: usize = 65_536;
/// The most a chunk of packed messages grows to (from room for eight): a few hundred small
/// messages, freed when the last one is read.
pub const PACK_CHUNK_BYTES: usize = 16 * 1024;
/// A message with more content than this (exchange, routing key, properties and body) stays
/// as it arrived: its bookkeeping is small beside it, and a fanout's queues share one copy.
pub const PACK_CONTENT_BYTES_MAX: usize = 512;

/// Paged-out bytes a shard may have written that no finished fdatasync covers yet. Above it,
/// connections that published to the shard stop reading their sockets (at a message
/// boundary) until its syncs catch up, so a publisher runs at the disk's pace instead of
/// filling the page cache until the kernel stalls the whole shard; consumers and connections
/// that publish elsewhere are not held. `connection.blocked` stays for the memory and disk
/// alarms, as in RabbitMQ, whose credit flow slows such publishers the same quiet way.
pub const PAGED_UNSYNCED_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// A queue that delivers to its consumers with more than this many messages still ready
/// holds the connections on other shards that only publish to its shard, while its shard or
/// the publisher's own is busy (`PRESSURE_BUSY_PERCENT`; `shard::pressure`), until the queue
/// is below half of it, delivers nothing for a whole `PRESSURE_WINDOW_MS`, or neither shard is
/// busy. Below `PAGE_OUT_READY_MESSAGES`, so a queue whose consumers could keep up but for the
/// publisher taking their time stays in memory.
pub const PRESSURE_READY_MESSAGES: usize = 32_768;
/// The share of a sampling window a shard's thread must run to count as saturated.
pub const PRESSURE_BUSY_PERCENT: u64 = 85;
/// The sampling window of a shard's thread CPU time (one clock read per window).
pub const PRESSURE_WINDOW_MS: u64 = 4;

/// Past this share of the memory high watermark, every queue pages out transient messages
/// once it holds `STORED_CACHE_MESSAGES` ready ones (RabbitMQ's paging ratio is 50%).
pub const PAGING_WATERMARK_PERCENT: u64 = 50;

/// Messages the store remembers as appended to the active publishes segment, so the same
/// message routed to more durable queues of the shard is stored once and linked to. A fanout
/// hands its queues one message after the other within a loop turn, so a short list finds
/// it; each entry is a weak reference (no body is kept alive) and an offset.
pub const STORE_RECENT_MESSAGES: usize = 16;

/// Size of a message-log segment file (bytes), the default of `--segment-size`. Larger
/// messages get a segment of their own.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Bounds of `--segment-size`: record offsets are 32-bit, and tiny segments mean a file per
/// handful of messages.
pub const SEGMENT_BYTES_MIN: u64 = 64 * 1024;
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// A stream's segment file size when its `x-stream-max-segment-size-bytes` sets none
/// (RabbitMQ's default). Retention drops whole segments, so this is also its granularity.
pub const STREAM_SEGMENT_BYTES_DEFAULT: u64 = 500_000_000;
/// The smallest stream segment this broker makes, whatever the argument asks: a smaller one
/// would mean a file per message or two (each an open file while written).
pub const STREAM_SEGMENT_BYTES_MIN: u64 = 4 * 1024;

/// A stream remembers the file position of one message in this many (16 bytes each), so a
/// consumer starting at an offset reads at most this many records to find it, not a whole
/// segment; memory grows by 16 bytes per this many messages held.
pub const STREAM_INDEX_EVERY_MESSAGES: u64 = 1024;

/// A stream consumer reads its stream's files this much at a time (one pread), and its
/// messages are slices of that chunk: large enough that a 16-byte message costs a few
/// nanoseconds of syscall, small enough that ten thousand consumers hold 2.5 GiB at most and
/// a chunk goes once its last message is written out. A longer record is read whole.
pub const STREAM_READ_CHUNK_BYTES: u64 = 256 * 1024;
/// Appends to a stream are buffered until the group commit takes the stream's files (or a
/// segment rolls over); past this many bytes the buffer is written at once, so a publisher
/// faster than the disk syncs holds at most this much per stream in memory.
pub const STREAM_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// Compaction (see `shard/compaction.rs`): a sealed segment whose ready messages take at
/// most this share of it (percent) has them copied out, so it can be deleted.
pub const COMPACTION_LIVE_PERCENT_MAX: u64 = 50;
/// Sealed segments with ready messages a shard keeps without compacting any: the disk held
/// by partly-dead segments stays within this many segments plus the live data.
pub const COMPACTION_SEGMENTS_KEPT: usize = 2;
/// Record bytes copied per compaction step, so a step never stalls the shard for long.
pub const COMPACTION_BYTES_PER_STEP: u64 = 8 * 1024 * 1024;
/// Pause between compaction steps while there is work, and between checks when there is none.
pub const COMPACTION_BUSY_INTERVAL_MS: u64 = 20;
pub const COMPACTION_IDLE_INTERVAL_MS: u64 = 1000;

/// Capacity of one cross-shard mailbox (messages). A full mailbox spills into the sender's
/// outbox; a connection stops reading its socket while its shard's outbox is above
/// `OUTBOX_HIGH_MESSAGES`.
pub const MAILBOX_CAPACITY: usize = 64 * 1024;
/// The smallest a mailbox gets on a host with many shards (`mailbox_capacity`): a few loop
/// turns' worth of `MAILBOX_BATCH`, so batches still flow whole.
pub const MAILBOX_CAPACITY_MIN: usize = 4 * 1024;
/// All cross-shard mailboxes of a broker together, in messages: every slot is allocated and
/// written when the broker starts (about 128 bytes each), and there are N·(N-1) mailboxes for
/// N shards, so a fixed size per mailbox would cost 32 MiB at 2 shards but 2 GiB at 16.
pub const MAILBOX_SLOTS_TOTAL: usize = 256 * 1024;

/// The capacity of each cross-shard mailbox for `shards` shards: `MAILBOX_SLOTS_TOTAL` shared
/// out, between `MAILBOX_CAPACITY_MIN` and `MAILBOX_CAPACITY`.
pub fn mailbox_capacity(shards: usize) -> usize {
    let pairs = shards.saturating_mul(shards.saturating_sub(1)).max(1);
    (MAILBOX_SLOTS_TOTAL / pairs).clamp(MAILBOX_CAPACITY_MIN, MAILBOX_CAPACITY)
}

/// Per-destination spill length above which connections on the sending shard stop reading.
pub const OUTBOX_HIGH_MESSAGES: usize = 16 * 1024;

/// Messages handled per mailbox per loop turn before other tasks get to run.
pub const MAILBOX_BATCH: usize = 4096;

/// While a connection's read is parsed, the shards its confirm-mode publishes went to are woken
/// after every this many of them, not only once the whole read is handled (`Port::wake_now`):
/// a publisher waiting for confirms sends its window in a burst, and the queue's shard then
/// stores (and syncs) the first of it while the rest is still being parsed. Scenario c of
/// `scripts/compare.sh` (persistent, confirms 1,000 in flight), 8 s runs in turn: every 50
/// publishes, median 1.42M msg/s over nine runs against 1.25M over five without; every 15, 1.30M;
/// every 150, 1.22M (four runs each). Publishes without confirms keep one wake per read
/// (scenario a did not gain from it).
pub const CONFIRM_PUBLISHES_PER_WAKE: u32 = 50;

/// Deliveries a consumer may have written-but-not-yet-flushed to its socket: the flow
/// window that bounds a connection's output when prefetch is unlimited or no-ack is used.
/// A direct reply-to consumer has the same window; replies past it are dropped, having no
/// queue to wait in.
pub const CONSUMER_FLOW_WINDOW: u32 = 2048;

/// Publishes and acks a transaction may hold before commit. Past it: channel error 406.
pub const TX_PENDING_MAX: usize = 65_536;

/// Longest exchange or queue name (AMQP short string).
pub const NAME_MAX_BYTES: usize = 255;

/// Queues per broker; a declare beyond it is refused with 506 RESOURCE_ERROR... kept as a
/// channel error so one client cannot take the broker down.
pub const QUEUES_MAX: usize = 1_000_000;

/// Exchanges per broker (same behaviour as `QUEUES_MAX`).
pub const EXCHANGES_MAX: usize = 100_000;

/// Bindings per exchange (same behaviour as `QUEUES_MAX`).
pub const BINDINGS_PER_EXCHANGE_MAX: usize = 1_000_000;

/// Consumers per channel; beyond it basic.consume is a channel error 406.
pub const CONSUMERS_PER_CHANNEL_MAX: usize = 65_536;

/// Depth of exchange-to-exchange routing followed before a loop is assumed.
pub const EXCHANGE_HOPS_MAX: usize = 16;

/// The definitions log is compacted once it holds more records than this and more than twice
/// the live durable definitions.
pub const DEFINITIONS_COMPACT_MIN_RECORDS: usize = 10_000;

/// How often each shard sweeps its queues for expired messages and unused `x-expires` queues.
/// An expired message is never delivered in between (it is checked at the head), so this only
/// bounds how long it is still counted.
pub const EXPIRY_SWEEP_INTERVAL_MS: u64 = 50;

/// Messages one sweep expires per queue; the rest wait for the next tick, so one huge expired
/// backlog cannot stall the shard.
pub const EXPIRY_SWEEP_MESSAGES_MAX: usize = 10_000;

/// Longest sleep of a shard's consumer-timeout check. Deadlines wake it earlier; this bounds
/// how late a timeout is seen when the delivery that exceeded it was behind an older one with
/// a longer timeout on its channel (RabbitMQ checks once a minute).
pub const ACK_TIMEOUT_CHECK_MAX_MS: u64 = 60_000;

/// Shards are counted in a 64-bit mask per channel (which shards a channel touched), so there
/// are at most 64; `--shards` above it is refused at start.
pub const SHARDS_MAX: usize = 64;

/// At a clean stop, how long a shard waits for its last group commits (the fsync in flight and
/// the one that writes what is left), in steps of a millisecond. Past it the broker stops
/// anyway and logs it: what was not synced is then recovered as after a crash.
pub const FINAL_COMMIT_WAIT_MS: u32 = 5_000;

/// A message body of several frames is gathered in one buffer that grows by this factor of
/// what the client has sent so far, toward the size its content header announces: at most
/// this many times the received bytes are held, and a large body takes a few allocations.
pub const BODY_GROWTH_FACTOR: usize = 8;

/// Deduplication (`x-message-deduplication`): the values a queue's or exchange's cache holds
/// when `x-cache-size` is not given, and the most `x-cache-size` may be (a larger value is
/// refused with 406 at declare). A full cache forgets its oldest value for each new one.
pub const DEDUP_CACHE_ENTRIES_DEFAULT: usize = 10_000;
pub const DEDUP_CACHE_ENTRIES_MAX: usize = 1_000_000;
/// Bytes of header values one deduplication cache holds (values are client-sized): past it
/// the oldest values are forgotten, as when the cache is full.
pub const DEDUP_CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Delayed messages (`x-delayed-message` exchanges): the most a shard holds. Past it a publish
/// that would be held is refused (basic.nack in confirm mode, dropped with a log line
/// otherwise). Each held message costs an index entry (about 100 bytes); a stored one keeps
/// its segment file on disk until it is due.
pub const DELAYED_PENDING_MAX: usize = 4_000_000;
/// Bytes of message bodies a shard holds in memory for delayed exchanges (transient messages,
/// or any message of a non-durable delayed exchange); past it such a publish is refused as
/// above. Persistent messages of durable delayed exchanges are held on disk and not counted.
pub const DELAYED_MEMORY_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Held messages routed per timer turn; more due wait for the next turn, after the shard's
/// connections had theirs.
pub const DELAYED_ROUTE_BATCH: usize = 4096;
/// Longest sleep of a shard's delayed-message timer (a new earlier due time wakes it sooner).
pub const DELAYED_IDLE_CHECK_MS: u64 = 1000;
/// A shard whose earliest held delayed message is this late (ms) routes slower than messages
/// come due: the connections that publish to it wait (as for `PAGED_UNSYNCED_BYTES_MAX`)
/// until it is back within this, so due messages go out on time rather than new ones pile up.
pub const DELAYED_BEHIND_MS: u64 = 100;

#[cfg(test)]
mod tests {
    use super::{mailbox_capacity, MAILBOX_CAPACITY, MAILBOX_CAPACITY_MIN, MAILBOX_SLOTS_TOTAL};

    #[test]
    fn mailboxes_share_a_total_that_does_not_grow_with_the_square_of_the_shards() {
        assert_eq!(mailbox_capacity(1), MAILBOX_CAPACITY, "one shard has no cross-shard mailbox to size");
        assert_eq!(mailbox_capacity(2), MAILBOX_CAPACITY, "two mailboxes of the full size fit the total");
        assert_eq!(mailbox_capacity(4), MAILBOX_SLOTS_TOTAL / 12);
        for shards in [8, 16, 64] {
            let capacity = mailbox_capacity(shards);
            assert!((MAILBOX_CAPACITY_MIN..=MAILBOX_CAPACITY).contains(&capacity), "{shards}: {capacity}");
        }
        assert_eq!(mailbox_capacity(64), MAILBOX_CAPACITY_MIN);
    }
}
