//! The Prometheus endpoint: `GET /metrics` (aggregated) and `GET /metrics/per-object` (one
//! sample per queue), in the text exposition format 0.0.4, on a listener of its own
//! (`--prometheus-port`), without authentication, as rabbitmq_prometheus serves them.
//!
//! The names, types and labels are rabbitmq_prometheus's (those the public Grafana dashboards
//! query); SpateMQ's own are prefixed `spatemq_`. Everything is read when scraped: each shard
//! answers a `ControlRequest::Metrics` from its own plain fields through its control inbox,
//! and the answers are summed here; the AMQP path keeps no shared counter for it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::broker::Broker;
use super::http::{self, HttpServer, Request, Response};
use crate::alarms::Alarms;
use crate::broker::control::{MessageStats, QueueMetrics, ShardMetrics, COMMIT_BATCH_BUCKETS, FSYNC_SECONDS_BUCKETS};
use crate::broker::definitions_file::EXPORT_RABBITMQ_VERSION;
use crate::config::Config;
use crate::shard::mailbox::Mailboxes;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the endpoint needs from the broker that starts it.
pub struct Start {
    pub config: Arc<Config>,
    pub mailboxes: Arc<Mailboxes>,
    pub alarms: Arc<Alarms>,
}

struct Context {
    broker: Broker,
    config: Arc<Config>,
    alarms: Arc<Alarms>,
    node: String,
    started: Instant,
}

/// Listens on `--prometheus-bind`:`--prometheus-port`; None when the port is 0 (disabled).
pub fn start(start: Start) -> std::io::Result<Option<HttpServer>> {
    let config = start.config;
    if config.prometheus_port == 0 {
        return Ok(None);
    }
    let listener = http::bind(SocketAddr::new(config.prometheus_bind, config.prometheus_port))?;
    let context = Arc::new(Context {
        broker: Broker::new(start.mailboxes),
        config,
        alarms: start.alarms,
        node: format!("spatemq@{}", super::host_name()),
        started: Instant::now(),
    });
    let handler: http::Handler = Arc::new(move |request| handle(&context, &request));
    http::serve("prometheus", listener, handler).map(Some)
}

fn handle(context: &Context, request: &Request) -> Response {
    let per_queue = match request.path.as_str() {
        "/metrics" | "/metrics/" => false,
        "/metrics/per-object" | "/metrics/per-object/" => true,
        _ => return Response::new(404, "text/plain; charset=utf-8", "Not Found\n"),
    };
    if request.method != "GET" && request.method != "HEAD" {
        return Response::new(405, "text/plain; charset=utf-8", "Method Not Allowed\n")
            .with_header("allow", "GET, HEAD");
    }
    match context.broker.metrics(per_queue) {
        Ok(shards) => {
            let text = render(context, &shards, per_queue);
            let body = if request.method == "HEAD" { String::new() } else { text };
            Response::new(200, CONTENT_TYPE, body)
        }
        Err(error) => {
            let text = format!("the shards did not answer: {}\n", error.reason);
            Response::new(503, "text/plain; charset=utf-8", text)
        }
    }
}

/// The whole exposition for these shard answers.
fn render(context: &Context, shards: &[ShardMetrics], per_queue: bool) -> String {
    let mut out = Exposition::default();
    let node = context.node.as_str();
    let version = EXPORT_RABBITMQ_VERSION;
    out.family("rabbitmq_build_info", "untyped", "RabbitMQ & Erlang/OTP version info");
    out.sample(
        "rabbitmq_build_info",
        &[
            ("rabbitmq_version", version),
            ("prometheus_plugin_version", version),
            ("prometheus_client_version", env!("CARGO_PKG_VERSION")),
            ("erlang_version", ""),
            ("product_name", "SpateMQ"),
            ("product_version", env!("CARGO_PKG_VERSION")),
        ],
        1,
    );
    out.family("rabbitmq_identity_info", "untyped", "RabbitMQ node & cluster identity info");
    let cluster_id = format!("spatemq-cluster-id-{node}");
    let identity =
        [("rabbitmq_node", node), ("rabbitmq_cluster", node), ("rabbitmq_cluster_permanent_id", &*cluster_id)];
    out.sample("rabbitmq_identity_info", &identity, 1);

    let mut totals = QueueMetrics::default();
    let mut sum = ShardMetrics::default();
    for shard in shards {
        totals.add(&shard.totals);
        sum.connections += shard.connections;
        sum.channels += shard.channels;
        sum.consumers += shard.consumers;
        sum.queues += shard.queues;
        sum.connections_opened += shard.connections_opened;
        sum.connections_closed += shard.connections_closed;
        sum.fsyncs += shard.fsyncs;
        sum.fsync_micros += shard.fsync_micros;
    }

    let gauges: [(&str, &str, u64); 4] = [
        ("rabbitmq_connections", "Connections currently open", sum.connections),
        ("rabbitmq_channels", "Channels currently open", sum.channels),
        ("rabbitmq_consumers", "Consumers currently connected", sum.consumers),
        ("rabbitmq_queues", "Queues available", sum.queues),
    ];
    for (name, help, value) in gauges {
        out.single(name, "gauge", help, value);
    }
    out.single(
        "rabbitmq_connections_opened_total",
        "counter",
        "Total number of connections opened",
        sum.connections_opened,
    );
    out.single(
        "rabbitmq_connections_closed_total",
        "counter",
        "Total number of connections closed or terminated",
        sum.connections_closed,
    );

    if per_queue {
        queue_families(&mut out, shards.iter().flat_map(|shard| shard.per_queue.iter()));
    } else {
        queue_families(&mut out, std::iter::once(&totals));
    }

    let mut global = totals.stats;
    for (_, channel_side) in shards.iter().flat_map(|shard| &shard.vhost_stats) {
        global.add(channel_side);
    }
    global_counters(&mut out, &global);

    let config = &context.config;
    let memory_limit = config.memory_high_watermark.bytes(crate::alarms::total_memory_bytes());
    out.single("rabbitmq_resident_memory_limit_bytes", "gauge", "Memory high watermark in bytes", memory_limit);
    let resident = crate::alarms::resident_bytes().unwrap_or(0);
    out.single("rabbitmq_process_resident_memory_bytes", "gauge", "Memory used in bytes", resident);
    let disk_free = crate::alarms::free_disk_bytes(&config.data_dir).unwrap_or(0);
    out.single("rabbitmq_disk_space_available_bytes", "gauge", "Disk space available in bytes", disk_free);
    let disk_limit = config.disk_free_limit_bytes;
    out.single(
        "rabbitmq_disk_space_available_limit_bytes",
        "gauge",
        "Free disk space low watermark in bytes",
        disk_limit,
    );
    out.single("rabbitmq_process_open_fds", "gauge", "Open file descriptors", open_fds());
    out.single("rabbitmq_process_max_fds", "gauge", "Open file descriptors limit", max_fds());
    let memory_alarm = u64::from(context.alarms.memory_alarm());
    out.single(
        "rabbitmq_alarms_memory_used_watermark",
        "untyped",
        "is 1 if VM memory watermark alarm is in effect",
        memory_alarm,
    );
    let disk_alarm = u64::from(context.alarms.disk_alarm());
    out.single(
        "rabbitmq_alarms_free_disk_space_watermark",
        "untyped",
        "is 1 if disk free space watermark alarm is in effect",
        disk_alarm,
    );
    let uptime = context.started.elapsed().as_secs();
    out.single("rabbitmq_erlang_uptime_seconds", "gauge", "Node uptime", uptime);

    spatemq_families(&mut out, shards, &sum);
    out.text
}

/// The `rabbitmq_queue_*` families (and SpateMQ's per-queue counters RabbitMQ keeps per
/// channel instead): one sample per queue (labels `vhost`, `queue`), or one without labels
/// for the sums.
fn queue_families<'a>(out: &mut Exposition, queues: impl Iterator<Item = &'a QueueMetrics> + Clone) {
    type Read = fn(&QueueMetrics) -> u64;
    let families: [(&str, &str, &str, Read); 9] = [
        ("rabbitmq_queue_messages_ready", "gauge", "Messages ready to be delivered to consumers", |q| q.messages_ready),
        ("rabbitmq_queue_messages_unacked", "gauge", "Messages delivered to consumers but not yet acknowledged", |q| {
            q.messages_unacked
        }),
        ("rabbitmq_queue_messages", "gauge", "Sum of ready and unacknowledged messages - total queue depth", |q| {
            q.messages_ready + q.messages_unacked
        }),
        ("rabbitmq_queue_messages_ready_bytes", "gauge", "Size in bytes of ready messages", |q| q.ready_bytes),
        ("rabbitmq_queue_consumers", "gauge", "Consumers on a queue", |q| q.consumers),
        ("rabbitmq_queue_messages_published_total", "counter", "Total number of messages published to queues", |q| {
            q.stats.publish
        }),
        (
            "spatemq_queue_messages_delivered_total",
            "counter",
            "Total number of messages delivered or got from queues",
            |q| q.stats.deliver_get,
        ),
        ("spatemq_queue_messages_acknowledged_total", "counter", "Total number of messages acknowledged", |q| {
            q.stats.ack
        }),
        (
            "spatemq_queue_messages_redelivered_total",
            "counter",
            "Total number of messages redelivered from queues",
            |q| q.stats.redeliver,
        ),
    ];
    for (name, kind, help, read) in families {
        out.family(name, kind, help);
        for queue in queues.clone() {
            if queue.name.is_empty() {
                out.sample(name, &[], read(queue));
            } else {
                out.sample(name, &[("vhost", &queue.vhost), ("queue", &queue.name)], read(queue));
            }
        }
    }
}

/// rabbitmq_prometheus's global counters (label `protocol`), from the queues' own counts.
fn global_counters(out: &mut Exposition, stats: &MessageStats) {
    let counters = [
        ("rabbitmq_global_messages_received_total", "Total number of messages received from publishers", stats.publish),
        (
            "rabbitmq_global_messages_delivered_total",
            "Total number of messages delivered to consumers",
            stats.deliver_get,
        ),
        (
            "rabbitmq_global_messages_acknowledged_total",
            "Total number of messages acknowledged by consumers",
            stats.ack,
        ),
        (
            "rabbitmq_global_messages_redelivered_total",
            "Total number of messages redelivered to consumers",
            stats.redeliver,
        ),
        ("rabbitmq_global_messages_confirmed_total", "Total number of messages confirmed to publishers", stats.confirm),
        (
            "rabbitmq_global_messages_unroutable_returned_total",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            stats.return_unroutable,
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        out.sample(name, &[("protocol", "amqp091")], value);
    }
}

/// SpateMQ's own: per shard (label `shard`) and the store's group commits.
fn spatemq_families(out: &mut Exposition, shards: &[ShardMetrics], sum: &ShardMetrics) {
    type Read = fn(&ShardMetrics) -> u64;
    let per_shard: [(&str, &str, &str, Read); 12] = [
        ("spatemq_shard_mailbox_depth", "gauge", "Messages waiting in the shard's mailboxes", |s| s.mailbox_depth),
        ("spatemq_shard_connections", "gauge", "Connections served by the shard", |s| s.connections),
        ("spatemq_shard_queues", "gauge", "Queues owned by the shard", |s| s.queues),
        ("spatemq_shard_fsyncs_total", "counter", "Group-commit fdatasyncs of the shard's message store", |s| s.fsyncs),
        ("spatemq_shard_loop_turns_total", "counter", "Turns of the shard's mailbox loop", |s| s.loop_turns),
        (
            "spatemq_shard_paging_pauses_total",
            "counter",
            "Times a connection of the shard waited for a backlogged shard: paged-out messages to reach the disk, or late delayed messages to be routed",
            |s| s.paging_pauses,
        ),
        (
            "spatemq_shard_pressure_pauses_total",
            "counter",
            "Times a connection of the shard that only publishes waited for another shard whose queue with more than 32,768 ready messages keeps delivering, while either shard was busy",
            |s| s.pressure_pauses,
        ),
        ("spatemq_shard_store_written_bytes_total", "counter", "Bytes written to the shard's segment files", |s| {
            s.store_written_bytes
        }),
        (
            "spatemq_shard_compacted_segments_total",
            "counter",
            "Segments compaction emptied of their ready messages",
            |s| s.compacted_segments,
        ),
        (
            "spatemq_shard_compacted_messages_total",
            "counter",
            "Ready messages compaction copied out of old segments",
            |s| s.compacted_messages,
        ),
        (
            "spatemq_shard_packed_messages_total",
            "counter",
            "Small in-memory messages that waited in a queue for a sweep and were packed (about 25 bytes plus the body each)",
            |s| s.packed_messages,
        ),
        (
            "spatemq_shard_queued_messages",
            "gauge",
            "Messages in the queues the shard owns, ready or unacknowledged",
            |s| s.totals.messages_ready + s.totals.messages_unacked,
        ),
    ];
    for (name, kind, help, read) in per_shard {
        out.family(name, kind, help);
        for shard in shards {
            out.sample(name, &[("shard", &shard.shard.to_string())], read(shard));
        }
    }
    out.family("spatemq_shard_fsync_seconds_total", "counter", "Time spent in group-commit fdatasyncs");
    for shard in shards {
        let seconds = format_seconds(shard.fsync_micros);
        out.sample_text("spatemq_shard_fsync_seconds_total", &[("shard", &shard.shard.to_string())], &seconds);
    }
    out.family("spatemq_shard_cpu_seconds_total", "counter", "CPU time used by the shard's thread");
    for shard in shards {
        let seconds = format_seconds(shard.cpu_micros);
        out.sample_text("spatemq_shard_cpu_seconds_total", &[("shard", &shard.shard.to_string())], &seconds);
    }
    out.single("spatemq_fsyncs_total", "counter", "Group-commit fdatasyncs of every shard", sum.fsyncs);
    let seconds_bounds: Vec<String> = FSYNC_SECONDS_BUCKETS.iter().map(|bound| bound.to_string()).collect();
    out.histogram(
        "spatemq_shard_fsync_duration_seconds",
        "Latency of the shard's group-commit fdatasyncs",
        shards,
        &seconds_bounds,
        |shard| (&shard.fsync_buckets, format_seconds(shard.fsync_micros)),
    );
    let batch_bounds: Vec<String> = COMMIT_BATCH_BUCKETS.iter().map(|bound| bound.to_string()).collect();
    out.histogram(
        "spatemq_shard_commit_batch_messages",
        "Publisher confirms released per group commit",
        shards,
        &batch_bounds,
        |shard| (&shard.commit_batch_buckets, shard.commit_batch_sum.to_string()),
    );
}

fn format_seconds(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map(|entries| entries.count() as u64).unwrap_or(0)
}

fn max_fds() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    limit.rlim_cur
}

/// Text exposition format 0.0.4, written as it goes.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// `# HELP` and `# TYPE` lines, before the family's samples.
    /// A histogram per shard: cumulative `_bucket`s with `le` labels, `_sum` and `_count`.
    /// `read` gives a shard's counts per slot (the last one past every bound) and its sum.
    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        shards: &[ShardMetrics],
        bounds: &[String],
        read: impl Fn(&ShardMetrics) -> (&Vec<u64>, String),
    ) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for shard in shards {
            let label = shard.shard.to_string();
            let (counts, sum) = read(shard);
            let mut cumulative = 0;
            for (index, le) in bounds.iter().map(String::as_str).chain(["+Inf"]).enumerate() {
                cumulative += counts.get(index).copied().unwrap_or(0);
                self.sample(&bucket, &[("shard", &label), ("le", le)], cumulative);
            }
            self.sample_text(&format!("{name}_sum"), &[("shard", &label)], &sum);
            self.sample(&format!("{name}_count"), &[("shard", &label)], cumulative);
        }
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
    }

    /// A family of one sample without labels.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.sample_text(name, labels, &value.to_string());
    }

    fn sample_text(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, label_value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label_value(label_value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value: backslash, double quote and line feed escaped.
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// A HELP text: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_line_feed() {
        assert_eq!(escape_label_value("plain /vhost"), "plain /vhost");
        assert_eq!(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_label_value("héllo"), "héllo");
    }

    #[test]
    fn help_escapes_backslash_and_line_feed_but_not_quotes() {
        assert_eq!(escape_help("say \"hi\"\\\nnow"), "say \"hi\"\\\\\\nnow");
    }

    #[test]
    fn families_have_type_and_help_before_their_samples() {
        let mut out = Exposition::default();
        out.family("rabbitmq_queue_messages", "gauge", "depth");
        out.sample("rabbitmq_queue_messages", &[("vhost", "/"), ("queue", "q\"1")], 7);
        out.single("rabbitmq_queues", "gauge", "count", 2);
        let expected = "# TYPE rabbitmq_queue_messages gauge\n# HELP rabbitmq_queue_messages depth\n\
                        rabbitmq_queue_messages{vhost=\"/\",queue=\"q\\\"1\"} 7\n\
                        # TYPE rabbitmq_queues gauge\n# HELP rabbitmq_queues count\nrabbitmq_queues 2\n";
        assert_eq!(out.text, expected);
    }

    #[test]
    fn seconds_keep_microseconds() {
        assert_eq!(format_seconds(0), "0.000000");
        assert_eq!(format_seconds(2_500_017), "2.500017");
    }

    fn shard(id: usize, queues: &[(&str, u64, u64, u64)]) -> ShardMetrics {
        let per_queue: Vec<QueueMetrics> = queues
            .iter()
            .map(|(name, ready, unacked, published)| QueueMetrics {
                vhost: "/".into(),
                name: (*name).into(),
                messages_ready: *ready,
                messages_unacked: *unacked,
                stats: MessageStats { publish: *published, ..Default::default() },
                ..Default::default()
            })
            .collect();
        let mut totals = QueueMetrics::default();
        for queue in &per_queue {
            totals.add(queue);
        }
        ShardMetrics {
            shard: id,
            queues: per_queue.len() as u64,
            totals,
            per_queue,
            connections: 1,
            ..Default::default()
        }
    }

    fn context() -> Context {
        let mailboxes = Arc::new(Mailboxes::new(1, 4));
        Context {
            broker: Broker::new(mailboxes),
            config: Arc::new(Config::defaults()),
            alarms: Arc::new(Alarms::default()),
            node: "spatemq@host".into(),
            started: Instant::now(),
        }
    }

    fn value(text: &str, line_start: &str) -> Option<String> {
        text.lines().find_map(|line| line.strip_prefix(line_start)).map(str::to_string)
    }

    #[test]
    fn shards_are_summed_and_per_object_names_each_queue() {
        let shards = [shard(0, &[("a", 3, 1, 10)]), shard(1, &[("b", 2, 0, 5), ("c", 0, 0, 1)])];
        let text = render(&context(), &shards, false);
        assert_eq!(value(&text, "rabbitmq_queues ").as_deref(), Some("3"));
        assert_eq!(value(&text, "rabbitmq_connections ").as_deref(), Some("2"));
        assert_eq!(value(&text, "rabbitmq_queue_messages ").as_deref(), Some("6"));
        assert_eq!(value(&text, "rabbitmq_queue_messages_ready ").as_deref(), Some("5"));
        assert_eq!(
            value(&text, "rabbitmq_global_messages_received_total{protocol=\"amqp091\"} ").as_deref(),
            Some("16")
        );
        assert_eq!(value(&text, "spatemq_shard_queues{shard=\"1\"} ").as_deref(), Some("2"));
        assert!(!text.contains("queue=\""), "{text}");
        let per_object = render(&context(), &shards, true);
        let line = "rabbitmq_queue_messages{vhost=\"/\",queue=\"a\"} ";
        assert_eq!(value(&per_object, line).as_deref(), Some("4"));
        assert_eq!(value(&per_object, "rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"b\"} ").as_deref(), Some("2"));
    }

    #[test]
    fn only_the_two_paths_are_served() {
        let context = context();
        let request = |method: &str, path: &str| Request {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            body: bytes::Bytes::new(),
        };
        assert_eq!(handle(&context, &request("GET", "/")).status, 404);
        assert_eq!(handle(&context, &request("GET", "/api/overview")).status, 404);
        assert_eq!(handle(&context, &request("GET", "/metrics/detailed")).status, 404);
        assert_eq!(handle(&context, &request("POST", "/metrics")).status, 405);
    }
}
