//! Streams across restarts and crashes: every confirmed message comes back at its offset
//! after SIGTERM or SIGKILL, new messages continue the offsets, and retention by
//! `x-max-length-bytes` drops whole old segments (the oldest offsets) and their files.

use super::*;
use crate::common::process::{BrokerProcess, DataDir};
use crate::extensions::long;
use crate::stream::{consume_stream, declare_stream, stream, take_acked};

fn offsets_and_bodies(prefix: &str, from: usize, to: usize) -> Vec<(i64, String)> {
    (from..to).map(|index| (index as i64, format!("{prefix}{index}"))).collect()
}

fn bodies(prefix: &str, from: usize, to: usize) -> Vec<String> {
    (from..to).map(|index| format!("{prefix}{index}")).collect()
}

/// Segment files of the streams under `data`.
fn stream_files(data: &DataDir) -> usize {
    let streams = data.path().join("streams");
    let Ok(dirs) = std::fs::read_dir(&streams) else { return 0 };
    dirs.filter_map(Result::ok)
        .filter_map(|dir| std::fs::read_dir(dir.path()).ok())
        .flat_map(|files| files.filter_map(Result::ok))
        .count()
}

restart_tests! {
    /// Confirmed messages, transient ones included, survive a clean stop and a SIGKILL right
    /// after the last confirm, at the offsets they had; publishing continues the offsets.
    async fn stream_messages_and_offsets_survive_restarts_and_kill(shards: usize) {
        let data = DataDir::new();
        let q = unique("s-restart");
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        declare_stream(&ch, &q, stream(&[])).await.expect("declare");
        publish_confirmed(&ch, "", &q, &bodies("m", 0, 10), transient()).await;
        drop(conn);
        broker.stop_cleanly();

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        for index in 10..40 {
            publish_confirmed(&ch, "", &q, &bodies("m", index, index + 1), persistent()).await;
        }
        broker.kill();
        drop(conn);

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        assert_eq!(message_count(&ch, &q).await, 40);
        let (consumer_ch, mut inbox) = consume_stream(&conn, &q, string_value("first"), 100).await;
        assert_eq!(take_acked(&consumer_ch, &mut inbox, 40).await, offsets_and_bodies("m", 0, 40));
        publish_confirmed(&ch, "", &q, &bodies("m", 40, 41), persistent()).await;
        assert_eq!(take_acked(&consumer_ch, &mut inbox, 1).await, offsets_and_bodies("m", 40, 41));
        close_conn(&conn).await;
        broker.stop_cleanly();
    }

    /// A SIGKILL while a publisher waits for confirms: every message confirmed before the
    /// crash is in the stream after it, in order, at consecutive offsets from 0.
    async fn stream_kill_during_confirmed_publishing_loses_no_confirmed_message(shards: usize) {
        let data = DataDir::new();
        let q = unique("s-kill");
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        declare_stream(&ch, &q, stream(&[])).await.expect("declare");
        let confirmed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let publisher = {
            let (ch, q, confirmed) = (ch.clone(), q.clone(), confirmed.clone());
            tokio::spawn(async move {
                for index in 0.. {
                    let body = format!("m{index}");
                    let Ok(confirm) = ch
                        .basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), body.as_bytes(), persistent())
                        .await
                    else {
                        return;
                    };
                    match confirm.await {
                        Ok(confirmation) if confirmation.is_ack() => confirmed.lock().expect("lock").push(body),
                        _ => return,
                    }
                }
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        broker.kill();
        let _ = within(T, publisher).await;
        drop(conn);
        let confirmed = confirmed.lock().expect("lock").clone();
        assert!(confirmed.len() > 10, "only {} confirms before the crash", confirmed.len());

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        let held = message_count(&ch, &q).await as usize;
        assert!(held >= confirmed.len(), "{held} messages held, {} confirmed", confirmed.len());
        let (consumer_ch, mut inbox) = consume_stream(&conn, &q, string_value("first"), 1000).await;
        let taken = take_acked(&consumer_ch, &mut inbox, held).await;
        let expected: Vec<(i64, String)> = (0..held).map(|index| (index as i64, format!("m{index}"))).collect();
        assert_eq!(taken, expected, "offsets from 0 with nothing missing");
        close_conn(&conn).await;
        broker.stop_cleanly();
    }

    /// With small segments, x-max-length-bytes drops the oldest whole segments: the first
    /// offset moves up, the files go, the newest messages stay.
    async fn stream_retention_by_bytes_drops_old_segments(shards: usize) {
        let data = DataDir::new();
        let q = unique("s-retention");
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let (conn, ch) = confirm_channel(broker.uri()).await;
        let arguments = stream(&[("x-max-length-bytes", long(20_000)), ("x-stream-max-segment-size-bytes", long(4_096))]);
        declare_stream(&ch, &q, arguments).await.expect("declare");
        let payload = "y".repeat(500);
        let many: Vec<String> = (0..200).map(|index| format!("{index:04}-{payload}")).collect();
        publish_confirmed(&ch, "", &q, &many, persistent()).await;
        let count = message_count(&ch, &q).await;
        assert!((30..200).contains(&count), "retention kept {count} messages");
        assert!(stream_files(&data) <= 8, "{} segment files left", stream_files(&data));
        let (consumer_ch, mut inbox) = consume_stream(&conn, &q, string_value("first"), 500).await;
        let taken = take_acked(&consumer_ch, &mut inbox, count as usize).await;
        assert_eq!(taken.first().map(|(offset, _)| *offset), Some(200 - i64::from(count)));
        assert_eq!(taken.last().map(|(offset, _)| *offset), Some(199));
        close_conn(&conn).await;
        broker.stop_cleanly();
    }
}

fn string_value(text: &str) -> AMQPValue {
    crate::extensions::string(text)
}
