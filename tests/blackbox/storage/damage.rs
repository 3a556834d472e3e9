//! Recovery from damage: a torn tail (a crash in the middle of a write), a flipped byte in the
//! middle of a segment, a damaged marks file. The broker must keep every record before the
//! damage, in order, start anyway, and say on stderr which file and offset it gave up at.

use std::path::Path;

use super::on_disk::{self, SegmentRecord, XorShift, MARK_RECORD_BYTES, RECORD_HEADER_BYTES};
use super::*;
use crate::common::process::{BrokerProcess, DataDir};

const MESSAGES: usize = 60;

/// Starts a broker on a fresh data dir, stores `MESSAGES` confirmed persistent messages in a
/// durable queue, crashes it, and returns the segment holding them with its records.
async fn crashed_with_stored_messages(
    data: &DataDir,
    shards: usize,
    queue: &str,
) -> (std::path::PathBuf, Vec<SegmentRecord>) {
    let broker = BrokerProcess::start(data.path(), shards, &[]);
    let (conn, ch) = confirm_channel(broker.uri()).await;
    declare_durable_queue(&ch, queue).await;
    publish_confirmed(&ch, "", queue, &numbered_bodies(queue, MESSAGES), persistent()).await;
    close_conn(&conn).await;
    broker.kill();
    let (segment, records) = on_disk::written_segment(data.path());
    assert_eq!(records.len(), MESSAGES, "one record per confirmed message in {}", segment.display());
    (segment, records)
}

fn bodies_of(records: &[SegmentRecord]) -> Vec<String> {
    records.iter().map(|record| text(&record.body)).collect()
}

/// Asserts that stderr reports damage to `file` at byte `offset`, for `reason`.
#[track_caller]
fn assert_damage_reported(stderr: &str, file: &Path, offset: usize, reason: &str) {
    let file = file.display().to_string();
    let reported = stderr
        .lines()
        .any(|line| line.contains(&file) && line.contains(&format!("offset {offset}")) && line.contains(reason));
    assert!(reported, "no line naming {file}, offset {offset} and {reason:?} on stderr:\n{stderr}");
}

/// Restarts on the damaged data, checks the queue holds exactly `expected` in order, then
/// checks the broker still stores new messages after the damaged segment and recovers them.
async fn recovers_exactly(data: &DataDir, shards: usize, queue: &str, expected: &[String]) -> String {
    let broker = BrokerProcess::start(data.path(), shards, &[]);
    assert_eq!(drain_bodies(broker.uri(), queue).await, expected, "the records before the damage, in order");
    let after = numbered_bodies("after-damage", 5);
    let (conn, ch) = confirm_channel(broker.uri()).await;
    publish_confirmed(&ch, "", queue, &after, persistent()).await;
    close_conn(&conn).await;
    let stderr = broker.stop_cleanly();
    let broker = BrokerProcess::start(data.path(), shards, &[]);
    assert_eq!(drain_bodies(broker.uri(), queue).await, after, "what was stored after the damage survives");
    broker.stop_cleanly();
    stderr
}

restart_tests! {
    async fn torn_tail_keeps_every_record_before_the_tear(shards: usize) {
        let mut random = XorShift::from_env_or_clock("torn_tail");
        for round in 0..4 {
            let data = DataDir::new();
            let queue = unique("q-torn");
            let (segment, records) = crashed_with_stored_messages(&data, shards, &queue).await;
            let torn = random.below(records.len());
            let record = &records[torn];
            // Strictly inside the record: a tear at its very start would be a clean end.
            let (cut, reason) = if round % 2 == 0 {
                let cut = random.between(record.start + 1, record.end);
                on_disk::truncate_at(&segment, cut);
                let header_torn = cut < record.start + RECORD_HEADER_BYTES;
                (cut, if header_torn { "torn record header" } else { "record runs past the end of the segment" })
            } else {
                // The header stays whole, so what follows it cannot match its checksum.
                let cut = random.between(record.start + RECORD_HEADER_BYTES, record.end);
                on_disk::zero_range(&segment, cut, records[records.len() - 1].end);
                (cut, "checksum mismatch")
            };
            eprintln!("round {round}: record {torn} of {MESSAGES} torn at byte {cut} ({reason})");
            let stderr = recovers_exactly(&data, shards, &queue, &bodies_of(&records[..torn])).await;
            assert_damage_reported(&stderr, &segment, record.start, reason);
        }
    }

    async fn flipped_byte_in_a_middle_record_keeps_every_record_before_it(shards: usize) {
        let mut random = XorShift::from_env_or_clock("flipped_byte");
        for _round in 0..2 {
            let data = DataDir::new();
            let queue = unique("q-flip");
            let (segment, records) = crashed_with_stored_messages(&data, shards, &queue).await;
            let damaged = random.between(records.len() / 3, 2 * records.len() / 3);
            let record = &records[damaged];
            // From the checksum on: a changed length would be a different kind of damage.
            for _flip in 0..=random.below(3) {
                on_disk::flip_byte(&segment, random.between(record.start + 4, record.end), random.nonzero_byte());
            }
            let stderr = recovers_exactly(&data, shards, &queue, &bodies_of(&records[..damaged])).await;
            assert_damage_reported(&stderr, &segment, record.start, "checksum mismatch");
        }
    }

    async fn damaged_marks_keep_the_marks_before_the_damage(shards: usize) {
        let mut random = XorShift::from_env_or_clock("damaged_marks");
        for round in 0..2 {
            let data = DataDir::new();
            let queue = unique("q-marks");
            let broker = BrokerProcess::start(data.path(), shards, &[]);
            let (conn, ch) = confirm_channel(broker.uri()).await;
            declare_durable_queue(&ch, &queue).await;
            publish_confirmed(&ch, "", &queue, &numbered_bodies(&queue, MESSAGES), persistent()).await;
            // Acked messages leave a delivered and a removed mark; the last ten only a delivered one.
            for index in 0..30 {
                let message = get(&ch, &queue, false).await.expect("a stored message");
                if index < 20 {
                    within(T, message.delivery.acker.ack(BasicAckOptions::default())).await.expect("basic.ack");
                }
            }
            close_conn(&conn).await;
            broker.stop_cleanly();

            let (segment, records) = on_disk::written_segment(data.path());
            let marks_file = on_disk::marks_path(&segment);
            let marks = on_disk::read_marks(&marks_file);
            assert_eq!(marks.len(), 50, "20 acked messages leave 2 marks each, 10 unacked ones 1 each");
            let damaged = random.below(marks.len());
            let damaged_at = damaged * MARK_RECORD_BYTES;
            if round == 0 {
                on_disk::flip_byte(&marks_file, damaged_at + random.below(MARK_RECORD_BYTES), random.nonzero_byte());
            } else {
                on_disk::truncate_at(&marks_file, damaged_at + random.between(1, MARK_RECORD_BYTES));
            }
            let valid = &marks[..damaged];
            let marked = |record: &SegmentRecord, removed: bool| {
                valid.iter().any(|mark| {
                    let same_message = (mark.queue_sequence, mark.sequence) == (record.queue_sequence, record.sequence);
                    same_message && mark.removed == removed
                })
            };
            let expected: Vec<Got> = records
                .iter()
                .filter(|record| !marked(record, true))
                .map(|record| Got { body: text(&record.body), redelivered: marked(record, false) })
                .collect();
            eprintln!("round {round}: mark {damaged} of {} damaged", marks.len());

            let broker = BrokerProcess::start(data.path(), shards, &[]);
            let (conn, ch) = connect_channel(broker.uri()).await;
            assert_eq!(get_all(&ch, &queue).await, expected, "marks before the damage apply, later ones do not");
            close_conn(&conn).await;
            let stderr = broker.stop_cleanly();
            let segment_name = segment.display().to_string();
            let damage = format!("marks damaged at byte {damaged_at}");
            let reported = stderr.lines().any(|line| line.contains(&segment_name) && line.contains(&damage));
            assert!(reported, "no line naming {segment_name} and {damage:?}:\n{stderr}");
        }
    }
}

/// Bodies large enough that `count` of them fill more than one 64 MiB segment.
fn large_bodies(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("large-{index:03}-{}", "b".repeat(1024 * 1024))).collect()
}

restart_tests! {
    async fn damage_in_one_segment_keeps_the_segments_after_it(shards: usize) {
        let mut random = XorShift::from_env_or_clock("segment_boundary");
        let data = DataDir::new();
        let queue = unique("q-segments");
        let bodies = large_bodies(80);
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        declare_durable_queue(&ch, &queue).await;
        publish_confirmed(&ch, "", &queue, &bodies, persistent()).await;
        close_conn(&conn).await;
        broker.kill();

        let written: Vec<_> = on_disk::segment_files(data.path())
            .into_iter()
            .map(|path| {
                let records = on_disk::read_segment(&path);
                (path, records)
            })
            .filter(|(_, records)| !records.is_empty())
            .collect();
        let counts: Vec<usize> = written.iter().map(|(_, records)| records.len()).collect();
        assert!(counts.len() >= 2, "80 MiB of messages span segments, got records per segment {counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), bodies.len(), "one record per confirmed message");

        // A crash across a segment boundary loses nothing.
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = connect_channel(broker.uri()).await;
        assert_eq!(message_count(&ch, &queue).await as usize, bodies.len(), "every confirmed message is back");
        close_conn(&conn).await;
        broker.kill();

        // Damage in the middle of the first segment drops the rest of that segment only.
        let (first, first_records) = &written[0];
        assert!(first_records.len() > 2, "the first segment holds records: {counts:?}");
        let damaged = random.between(1, first_records.len() - 1);
        let record = &first_records[damaged];
        let flipped = random.between(record.start + RECORD_HEADER_BYTES, record.end);
        on_disk::flip_byte(first, flipped, random.nonzero_byte());
        let expected: Vec<String> = bodies[..damaged].iter().chain(&bodies[first_records.len()..]).cloned().collect();
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let recovered = drain_bodies(broker.uri(), &queue).await;
        let label = |bodies: &[String]| bodies.iter().map(|body| body[..9].to_string()).collect::<Vec<_>>();
        assert_eq!(label(&recovered), label(&expected), "the first segment up to the damage, then every later segment");
        assert_eq!(recovered, expected);
        let stderr = broker.stop_cleanly();
        assert_damage_reported(&stderr, first, record.start, "checksum mismatch");
    }
}
