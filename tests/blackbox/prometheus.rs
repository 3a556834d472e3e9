//! The Prometheus endpoint over a real socket: the text exposition format as a scraper parses
//! it, rabbitmq_prometheus's names, counters that move by what AMQP clients did, queue depth
//! gauges, the per-object view naming each queue, and 404 for any other path.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::common::process::{external_broker, BrokerProcess, DataDir};
use crate::common::*;

struct Scraped {
    broker: BrokerProcess,
    port: u16,
    _data: DataDir,
}

impl Scraped {
    fn start() -> Option<Scraped> {
        if external_broker() {
            eprintln!("external broker: this test needs a broker of its own, skipped");
            return None;
        }
        let data = DataDir::new();
        let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("address").port();
        let text = port.to_string();
        let broker =
            BrokerProcess::start(data.path(), 2, &["--prometheus-port", &text, "--prometheus-bind", "127.0.0.1"]);
        let line = format!("Prometheus metrics listening on 127.0.0.1:{port}");
        assert!(broker.stdout().contains(&line), "{}", broker.stdout());
        Some(Scraped { broker, port, _data: data })
    }

    /// Status, lowercased head and body of `GET path`.
    fn get(&self, path: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the Prometheus port");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read");
        let text = String::from_utf8(answer).expect("UTF-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status");
        (status, head.to_lowercase(), body.to_string())
    }

    /// Scrapes `path` and parses it.
    fn scrape(&self, path: &str) -> Exposition {
        let (status, head, body) = self.get(path);
        assert_eq!(status, 200, "{head}\n{body}");
        assert!(head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"), "{head}");
        parse(&body)
    }
}

/// A scrape: each sample by its name with labels exactly as written, and each family's type.
#[derive(Debug)]
struct Exposition {
    samples: HashMap<String, f64>,
    types: HashMap<String, String>,
}

impl Exposition {
    fn value(&self, series: &str) -> f64 {
        *self.samples.get(series).unwrap_or_else(|| panic!("no sample {series}"))
    }

    fn kind(&self, name: &str) -> &str {
        self.types.get(name).unwrap_or_else(|| panic!("no TYPE for {name}"))
    }
}

fn is_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && characters.all(|rest| rest.is_ascii_alphanumeric() || rest == '_' || rest == ':')
}

/// Parses the text format 0.0.4 strictly: `# HELP` and `# TYPE` of a family come before its
/// samples (a histogram's `_bucket`, `_sum` and `_count`), each sample line is `name{label="value",...} value` with valid names and escapes.
fn parse(text: &str) -> Exposition {
    let mut samples = HashMap::new();
    let mut types = HashMap::new();
    let mut helped = HashSet::new();
    let mut sampled = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name, value) = (parts.next(), parts.next(), parts.next());
            let name = name.unwrap_or_else(|| panic!("comment without a name: {line}"));
            assert!(is_name(name), "{line}");
            assert!(!sampled.contains(name), "HELP/TYPE after samples of {name}");
            match keyword {
                Some("HELP") => assert!(helped.insert(name.to_string()), "two HELP lines for {name}"),
                Some("TYPE") => {
                    let kind = value.unwrap_or_default();
                    assert!(["counter", "gauge", "untyped", "histogram", "summary"].contains(&kind), "{line}");
                    assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "two TYPE lines for {name}");
                }
                _ => panic!("unknown comment: {line}"),
            }
            continue;
        }
        assert!(!line.is_empty(), "an empty line in the exposition");
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(is_name(name), "bad metric name in {line}");
        // A histogram's samples are its family name with `_bucket`, `_sum` or `_count`.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|base| types.get(*base).is_some_and(|kind| kind == "histogram"))
            .unwrap_or(name);
        assert!(types.contains_key(family) && helped.contains(family), "{name} sampled before its TYPE and HELP");
        sampled.insert(family.to_string());
        let mut rest = &line[name_end..];
        let mut series = name.to_string();
        if let Some(labels) = rest.strip_prefix('{') {
            let mut index = 0;
            let bytes = labels.as_bytes();
            series.push('{');
            loop {
                let equals = labels[index..].find('=').expect("label =") + index;
                let label = &labels[index..equals];
                assert!(is_name(label) && !label.contains(':'), "bad label name in {line}");
                assert_eq!(bytes[equals + 1], b'"', "{line}");
                let mut at = equals + 2;
                while bytes[at] != b'"' {
                    if bytes[at] == b'\\' {
                        assert!(matches!(bytes[at + 1], b'\\' | b'"' | b'n'), "bad escape in {line}");
                        at += 1;
                    }
                    assert_ne!(bytes[at], b'\n');
                    at += 1;
                }
                series.push_str(&labels[index..=at]);
                match bytes[at + 1] {
                    b',' => {
                        series.push(',');
                        index = at + 2;
                    }
                    b'}' => {
                        series.push('}');
                        rest = &labels[at + 2..];
                        break;
                    }
                    _ => panic!("bad labels in {line}"),
                }
            }
        }
        let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no space before the value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
        assert!(samples.insert(series, value).is_none(), "a series twice: {line}");
    }
    Exposition { samples, types }
}

const RECEIVED: &str = "rabbitmq_global_messages_received_total{protocol=\"amqp091\"}";
const DELIVERED: &str = "rabbitmq_global_messages_delivered_total{protocol=\"amqp091\"}";
const ACKED: &str = "rabbitmq_global_messages_acknowledged_total{protocol=\"amqp091\"}";
const REDELIVERED: &str = "rabbitmq_global_messages_redelivered_total{protocol=\"amqp091\"}";

/// Scrapes until `check` holds (the shards count as the messages arrive), or panics.
fn scrape_until(scraped: &Scraped, path: &str, check: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let exposition = scraped.scrape(path);
        if check(&exposition) {
            return exposition;
        }
        assert!(Instant::now() < deadline, "never reached the expected values: {exposition:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_what_amqp_clients_do() {
    let Some(scraped) = Scraped::start() else { return };
    let before = scraped.scrape("/metrics");
    for (name, kind) in [
        ("rabbitmq_build_info", "untyped"),
        ("rabbitmq_identity_info", "untyped"),
        ("rabbitmq_connections", "gauge"),
        ("rabbitmq_channels", "gauge"),
        ("rabbitmq_consumers", "gauge"),
        ("rabbitmq_queues", "gauge"),
        ("rabbitmq_queue_messages_ready", "gauge"),
        ("rabbitmq_queue_messages_unacked", "gauge"),
        ("rabbitmq_queue_messages", "gauge"),
        ("rabbitmq_connections_opened_total", "counter"),
        ("rabbitmq_connections_closed_total", "counter"),
        ("rabbitmq_global_messages_received_total", "counter"),
        ("rabbitmq_global_messages_delivered_total", "counter"),
        ("rabbitmq_global_messages_acknowledged_total", "counter"),
        ("rabbitmq_global_messages_redelivered_total", "counter"),
        ("rabbitmq_resident_memory_limit_bytes", "gauge"),
        ("rabbitmq_process_resident_memory_bytes", "gauge"),
        ("rabbitmq_disk_space_available_bytes", "gauge"),
        ("rabbitmq_alarms_memory_used_watermark", "untyped"),
        ("rabbitmq_alarms_free_disk_space_watermark", "untyped"),
        ("rabbitmq_process_open_fds", "gauge"),
        ("spatemq_shard_mailbox_depth", "gauge"),
        ("spatemq_shard_connections", "gauge"),
        ("spatemq_shard_fsyncs_total", "counter"),
        ("spatemq_shard_fsync_seconds_total", "counter"),
    ] {
        assert_eq!(before.kind(name), kind, "{name}");
    }
    assert!(before.value("rabbitmq_process_resident_memory_bytes") > 0.0);
    assert!(before.value("rabbitmq_resident_memory_limit_bytes") > 0.0);
    assert!(before.value("rabbitmq_process_open_fds") > 0.0);
    assert_eq!(before.value("rabbitmq_alarms_memory_used_watermark"), 0.0);
    assert_eq!(before.value("rabbitmq_connections"), 0.0);
    for shard in ["0", "1"] {
        let depth = before.value(&format!("spatemq_shard_mailbox_depth{{shard=\"{shard}\"}}"));
        assert!(depth >= 0.0);
    }

    let (connection, channel) = connect_channel(scraped.broker.uri()).await;
    declare_queue(&channel, "scraped \"q\"").await;
    for body in [b"1", b"2", b"3", b"4", b"5"] {
        publish(&channel, "", "scraped \"q\"", body).await;
    }
    let queued = scrape_until(&scraped, "/metrics", |now| {
        now.value(RECEIVED) - before.value(RECEIVED) == 5.0 && now.value("rabbitmq_queue_messages_ready") == 5.0
    });
    assert_eq!(queued.value("rabbitmq_queue_messages"), 5.0);
    assert_eq!(queued.value("rabbitmq_queues"), 1.0);
    assert_eq!(queued.value("rabbitmq_connections"), 1.0);
    assert_eq!(queued.value("rabbitmq_channels"), 1.0);
    assert_eq!(
        queued.value("rabbitmq_connections_opened_total") - before.value("rabbitmq_connections_opened_total"),
        1.0
    );

    // Two gets acknowledged, one requeued and got again (a redelivery), one left unacked.
    for _ in 0..2 {
        let got =
            channel.basic_get("scraped \"q\"".into(), BasicGetOptions::default()).await.expect("get").expect("one");
        got.delivery.acker.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let requeued =
        channel.basic_get("scraped \"q\"".into(), BasicGetOptions::default()).await.expect("get").expect("one");
    requeued.delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await.expect("nack");
    let again = channel.basic_get("scraped \"q\"".into(), BasicGetOptions::default()).await.expect("get").expect("one");
    assert!(again.delivery.redelivered);
    let moved = scrape_until(&scraped, "/metrics", |now| {
        now.value(DELIVERED) - before.value(DELIVERED) == 4.0
            && now.value(ACKED) - before.value(ACKED) == 2.0
            && now.value("rabbitmq_queue_messages_unacked") == 1.0
    });
    assert_eq!(moved.value(REDELIVERED) - before.value(REDELIVERED), 1.0);
    assert_eq!(moved.value("rabbitmq_queue_messages_ready"), 2.0);
    assert_eq!(moved.value("rabbitmq_queue_messages"), 3.0);
    assert_eq!(moved.value(RECEIVED) - before.value(RECEIVED), 5.0);

    let per_object = scraped.scrape("/metrics/per-object");
    let series = |name: &str| format!("{name}{{vhost=\"/\",queue=\"scraped \\\"q\\\"\"}}");
    assert_eq!(per_object.value(&series("rabbitmq_queue_messages_ready")), 2.0);
    assert_eq!(per_object.value(&series("rabbitmq_queue_messages_unacked")), 1.0);
    assert_eq!(per_object.value(&series("rabbitmq_queue_messages")), 3.0);
    assert_eq!(per_object.value(&series("rabbitmq_queue_messages_published_total")), 5.0);
    assert_eq!(per_object.value(&series("spatemq_queue_messages_acknowledged_total")), 2.0);
    assert!(!scraped.get("/metrics").2.contains("queue=\""), "the aggregated view names no queue");

    close_conn(&connection).await;
    scrape_until(&scraped, "/metrics", |now| {
        now.value("rabbitmq_connections") == 0.0
            && now.value("rabbitmq_connections_closed_total") - before.value("rabbitmq_connections_closed_total") == 1.0
    });
}

#[test]
fn other_paths_are_404() {
    let Some(scraped) = Scraped::start() else { return };
    for path in ["/", "/api/overview", "/metrics/detailed", "/metricsx", "/favicon.ico"] {
        assert_eq!(scraped.get(path).0, 404, "{path}");
    }
}

const CONFIRMED: &str = "rabbitmq_global_messages_confirmed_total{protocol=\"amqp091\"}";
const RETURNED: &str = "rabbitmq_global_messages_unroutable_returned_total{protocol=\"amqp091\"}";

/// The sum over both shards of a per-shard series (`{shard="N"}` or `{shard="N",...}`).
fn per_shard_sum(exposition: &Exposition, name: &str, extra_labels: &str) -> f64 {
    ["0", "1"].iter().map(|shard| exposition.value(&format!("{name}{{shard=\"{shard}\"{extra_labels}}}"))).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_returns_fsync_histograms_and_shard_work_are_counted() {
    let Some(scraped) = Scraped::start() else { return };
    let before = scraped.scrape("/metrics");
    for (name, kind) in [
        ("rabbitmq_global_messages_confirmed_total", "counter"),
        ("rabbitmq_global_messages_unroutable_returned_total", "counter"),
        ("spatemq_shard_loop_turns_total", "counter"),
        ("spatemq_shard_cpu_seconds_total", "counter"),
        ("spatemq_shard_store_written_bytes_total", "counter"),
        ("spatemq_shard_compacted_segments_total", "counter"),
        ("spatemq_shard_compacted_messages_total", "counter"),
        ("spatemq_shard_packed_messages_total", "counter"),
        ("spatemq_shard_queued_messages", "gauge"),
        ("spatemq_shard_fsync_duration_seconds", "histogram"),
        ("spatemq_shard_commit_batch_messages", "histogram"),
    ] {
        assert_eq!(before.kind(name), kind, "{name}");
    }

    let (connection, channel) = connect_channel(scraped.broker.uri()).await;
    let queue = "scraped durable";
    declare_queue_with(&channel, queue, QueueDeclareOptions { durable: true, ..Default::default() }).await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
    let persistent = BasicProperties::default().with_delivery_mode(2);
    let mut confirms = Vec::new();
    for _ in 0..20 {
        let confirm = channel
            .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), b"kept", persistent.clone())
            .await
            .expect("publish");
        confirms.push(confirm);
    }
    for confirm in confirms {
        assert!(confirm.await.expect("confirm").is_ack());
    }
    // A mandatory publish nothing routes, on a channel without confirms: one return.
    let plain = open_channel(&connection).await;
    let mandatory = BasicPublishOptions { mandatory: true, ..Default::default() };
    plain
        .basic_publish("".into(), "no such queue".into(), mandatory, b"lost", BasicProperties::default())
        .await
        .expect("publish");

    let after = scrape_until(&scraped, "/metrics", |now| {
        now.value(CONFIRMED) - before.value(CONFIRMED) == 20.0 && now.value(RETURNED) - before.value(RETURNED) == 1.0
    });
    // Every persistent message was fsynced before its confirm: the commits released 20
    // confirms, and each histogram's count is its fsyncs (or commits), bucket by bucket.
    let fsyncs = per_shard_sum(&after, "spatemq_shard_fsyncs_total", "");
    assert!(fsyncs - per_shard_sum(&before, "spatemq_shard_fsyncs_total", "") >= 1.0);
    assert_eq!(per_shard_sum(&after, "spatemq_shard_fsync_duration_seconds_count", ""), fsyncs);
    assert_eq!(per_shard_sum(&after, "spatemq_shard_fsync_duration_seconds_bucket", ",le=\"+Inf\""), fsyncs);
    let batch_sum = per_shard_sum(&after, "spatemq_shard_commit_batch_messages_sum", "");
    assert_eq!(batch_sum - per_shard_sum(&before, "spatemq_shard_commit_batch_messages_sum", ""), 20.0);
    for shard in ["0", "1"] {
        let mut previous = 0.0;
        for le in ["0.0001", "0.001", "0.01", "0.1", "1", "+Inf"] {
            let series = format!("spatemq_shard_fsync_duration_seconds_bucket{{shard=\"{shard}\",le=\"{le}\"}}");
            let cumulative = after.value(&series);
            assert!(cumulative >= previous, "{series}: buckets are cumulative");
            previous = cumulative;
        }
    }
    let written = per_shard_sum(&after, "spatemq_shard_store_written_bytes_total", "");
    assert!(written - per_shard_sum(&before, "spatemq_shard_store_written_bytes_total", "") >= 20.0 * 4.0);
    assert!(
        per_shard_sum(&after, "spatemq_shard_loop_turns_total", "")
            > per_shard_sum(&before, "spatemq_shard_loop_turns_total", "")
    );
    assert!(per_shard_sum(&after, "spatemq_shard_cpu_seconds_total", "") > 0.0);
    assert_eq!(per_shard_sum(&after, "spatemq_shard_queued_messages", ""), 20.0);
    close_conn(&connection).await;
    // Closed connections keep their counts.
    let closed = scrape_until(&scraped, "/metrics", |now| now.value("rabbitmq_connections") == 0.0);
    assert_eq!(closed.value(CONFIRMED) - before.value(CONFIRMED), 20.0);
    assert_eq!(closed.value(RETURNED) - before.value(RETURNED), 1.0);
}
