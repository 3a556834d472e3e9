//! Shared harness for the black-box tests: starts a broker process (or uses an
//! external one named by `SPATEMQ_TEST_URI`), connects lapin clients to it and
//! bounds every wait so that a broker that stops answering fails the test
//! instead of hanging it.
#![allow(dead_code)]

#[macro_use]
pub mod process;
pub mod netns;
pub mod raw;
pub mod tls;

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use lapin::message::{BasicGetMessage, Delivery, DeliveryResult};
pub use lapin::options::*;
#[allow(unused_imports)]
pub use lapin::types::{AMQPValue, FieldTable, ShortString};
#[allow(unused_imports)]
pub use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// Default bound, in seconds, for a single broker round trip in a test.
pub const T: u64 = 10;

/// Bound for a whole test body.
pub const TEST_TIMEOUT: u64 = 240;

/// Environment variable naming an external broker to test instead of a child process.
pub const EXTERNAL_URI_ENV: &str = "SPATEMQ_TEST_URI";

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_id() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A unique name for a test resource: `prefix`, the process id and a counter.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{}-{nanos:x}", std::process::id(), next_id())
}

/// Awaits `fut`, failing the test (with the caller's location) when it takes
/// longer than `secs` seconds.
#[track_caller]
pub fn within<F: Future>(secs: u64, fut: F) -> impl Future<Output = F::Output> {
    let loc = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(Duration::from_secs(secs), fut).await {
            Ok(v) => v,
            Err(_) => panic!("the broker did not answer within {secs} s (waiting at {loc})"),
        }
    }
}

/// Which broker a test talks to.
pub struct Broker {
    child: Option<Child>,
    data_dir: Option<PathBuf>,
    uri: String,
    shard_uris: Vec<String>,
    host: String,
    port: u16,
}

impl Broker {
    /// Starts a broker with `shards` shards, or returns the external broker.
    /// Returns `None` when the variant does not apply (an external broker only
    /// runs the single-shard variant).
    pub fn for_test(shards: usize) -> Option<Broker> {
        match std::env::var(EXTERNAL_URI_ENV) {
            Ok(uri) if !uri.is_empty() => {
                if shards != 1 {
                    eprintln!("external broker: skipping the {shards}-shard variant");
                    return None;
                }
                Some(Broker::external(uri))
            }
            _ => Some(Broker::start(shards)),
        }
    }

    fn external(uri: String) -> Broker {
        let (host, port) = host_port_of(&uri);
        Broker { child: None, data_dir: None, shard_uris: vec![uri.clone()], uri, host, port }
    }

    /// Spawns the broker binary with `shards` shards and per-shard listeners.
    pub fn start(shards: usize) -> Broker {
        let data_dir = std::env::temp_dir().join(unique("spatemq-test-data"));
        std::fs::create_dir_all(&data_dir).expect("create the broker data dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_spatemq"))
            .arg("--amqp-port")
            .arg("0")
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--shards")
            .arg(shards.to_string())
            .arg("--per-shard-listeners")
            .arg("--management-port")
            .arg("0")
            .arg("--prometheus-port")
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the broker binary");

        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("child stdout");
        let stderr = child.stderr.take().expect("child stderr");
        spawn_drain("broker stdout", stdout, Some(tx));
        spawn_drain("broker stderr", stderr, None);

        let deadline = Instant::now() + Duration::from_secs(15);
        let mut shard_ports: Vec<Option<u16>> = vec![None; shards];
        let mut seen = Vec::new();
        let main_port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = port_after(&line, "AMQP listening on 127.0.0.1:") {
                        break port;
                    }
                    let trimmed = line.trim();
                    let trimmed = trimmed.strip_prefix("spatemq: ").unwrap_or(trimmed);
                    if let Some(rest) = trimmed.strip_prefix("shard ") {
                        if let Some((idx, tail)) = rest.split_once(' ') {
                            if let (Ok(i), Some(port)) =
                                (idx.parse::<usize>(), port_after(tail, "listening on 127.0.0.1:"))
                            {
                                if i < shards {
                                    shard_ports[i] = Some(port);
                                }
                            }
                        }
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    let _ = std::fs::remove_dir_all(&data_dir);
                    panic!(
                        "the broker did not print `AMQP listening on 127.0.0.1:PORT` within 15 s \
                         (exit status: {status:?}); stdout so far: {seen:#?}"
                    );
                }
            }
        };
        if let Some(missing) = shard_ports.iter().position(Option::is_none) {
            // Stop the broker before failing: a panic here must not leave it running.
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&data_dir);
            panic!("the broker printed no `shard {missing} listening on` line: {seen:#?}");
        }
        let shard_uris = shard_ports.iter().flatten().map(|port| amqp_uri("127.0.0.1", *port)).collect();
        Broker {
            child: Some(child),
            data_dir: Some(data_dir),
            uri: amqp_uri("127.0.0.1", main_port),
            shard_uris,
            host: "127.0.0.1".into(),
            port: main_port,
        }
    }

    /// The URI of the broker's main listener.
    pub fn uri(&self) -> String {
        self.uri.clone()
    }

    /// The URI whose connections land on shard `i`. `i` is taken modulo the
    /// shard count, so tests written for three shards also run on one.
    pub fn shard_uri(&self, i: usize) -> String {
        self.shard_uris[i % self.shard_uris.len()].clone()
    }

    /// How many shards the broker runs (1 for an external broker).
    pub fn shards(&self) -> usize {
        self.shard_uris.len()
    }

    /// `host:port` of the main listener, for raw socket tests.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The URI of the main listener with other credentials.
    pub fn uri_with_credentials(&self, user: &str, pass: &str) -> String {
        let rest = self
            .uri
            .split_once('@')
            .map(|(_, r)| r.to_string())
            .unwrap_or_else(|| self.uri.trim_start_matches("amqp://").to_string());
        format!("amqp://{user}:{pass}@{rest}")
    }

    /// The URI of the main listener with another (already escaped) vhost.
    pub fn uri_with_vhost(&self, escaped_vhost: &str) -> String {
        let (base, query) = match self.uri.split_once('?') {
            Some((b, q)) => (b.to_string(), format!("?{q}")),
            None => (self.uri.clone(), String::new()),
        };
        let after_scheme = base.trim_start_matches("amqp://");
        let authority = after_scheme.split('/').next().unwrap_or(after_scheme);
        format!("amqp://{authority}/{escaped_vhost}{query}")
    }

    /// Appends a query parameter (e.g. `heartbeat=1`) to a URI.
    pub fn with_query(uri: &str, param: &str) -> String {
        if uri.contains('?') {
            format!("{uri}&{param}")
        } else {
            format!("{uri}?{param}")
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn amqp_uri(host: &str, port: u16) -> String {
    format!("amqp://guest:guest@{host}:{port}/%2f")
}

fn port_after(line: &str, marker: &str) -> Option<u16> {
    let idx = line.find(marker)?;
    let digits: String = line[idx + marker.len()..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// `host:port` of an amqp URI.
pub fn addr_of(uri: &str) -> String {
    let (h, p) = host_port_of(uri);
    format!("{h}:{p}")
}

fn host_port_of(uri: &str) -> (String, u16) {
    let rest = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let hostport = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(5672)),
        None => (hostport.to_string(), 5672),
    }
}

/// Reads a child's pipe line by line until it closes, forwarding the lines to
/// `tx` (while anyone listens) and to the test's captured stderr.
fn spawn_drain<R: Read + Send + 'static>(label: &'static str, pipe: R, tx: Option<mpsc::Sender<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut tx = tx;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    eprintln!("[{label}] {line}");
                    if let Some(t) = &tx {
                        if t.send(line).is_err() {
                            tx = None;
                        }
                    }
                }
            }
        }
    });
}

/// Generates, for each `async fn name(broker: &Broker) { ... }`, a module
/// `name` holding the tests `shards_1` and `shards_3`, which run the body
/// against a broker with that many shards.
#[macro_export]
macro_rules! shard_tests {
    ($( $(#[$meta:meta])* async fn $name:ident($b:ident : &Broker) $body:block )*) => {
        $(
            $(#[$meta])*
            #[allow(non_snake_case)]
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body($b: &$crate::common::Broker) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn shards_1() {
                    if let Some(broker) = $crate::common::Broker::for_test(1) {
                        $crate::common::within($crate::common::TEST_TIMEOUT, body(&broker)).await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn shards_3() {
                    if let Some(broker) = $crate::common::Broker::for_test(3) {
                        $crate::common::within($crate::common::TEST_TIMEOUT, body(&broker)).await;
                    }
                }
            }
        )*
    };
}

/// Opens a lapin connection, bounded by [`T`] seconds.
pub async fn connect(uri: &str) -> Connection {
    match within(T, Connection::connect(uri, ConnectionProperties::default())).await {
        Ok(c) => c,
        Err(e) => panic!("connect to {uri}: {e}"),
    }
}

/// Opens a connection and a channel on it.
pub async fn connect_channel(uri: &str) -> (Connection, Channel) {
    let conn = connect(uri).await;
    let ch = open_channel(&conn).await;
    (conn, ch)
}

/// Opens a channel, bounded by [`T`] seconds.
pub async fn open_channel(conn: &Connection) -> Channel {
    within(T, conn.create_channel()).await.expect("open a channel")
}

/// Closes a connection politely, ignoring errors.
pub async fn close_conn(conn: &Connection) {
    let _ = within(T, conn.close(200, "bye".into())).await;
}

/// The AMQP reply code carried by a lapin error, if it is a protocol error.
pub fn reply_code(err: &lapin::Error) -> Option<u16> {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    }
}

/// The reply text carried by a lapin error, if it is a protocol error.
pub fn reply_text(err: &lapin::Error) -> Option<String> {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_message().to_string()),
        _ => None,
    }
}

/// Asserts that `res` failed with a channel or connection close carrying `code`.
#[track_caller]
pub fn expect_close<T: std::fmt::Debug>(res: lapin::Result<T>, code: u16) -> lapin::Error {
    match res {
        Ok(v) => panic!("expected a close with reply code {code}, got success: {v:?}"),
        Err(e) => {
            assert_eq!(reply_code(&e), Some(code), "expected a close with reply code {code}, got error: {e}");
            e
        }
    }
}

/// Asserts that `err` is a channel/connection close with `code`.
#[track_caller]
pub fn expect_channel_close(err: &lapin::Error, code: u16) {
    assert_eq!(reply_code(err), Some(code), "expected a close with reply code {code}, got error: {err}");
}

/// Asserts that `res` failed with reply `code` and exactly `text`.
#[track_caller]
pub fn expect_close_text<T: std::fmt::Debug>(res: lapin::Result<T>, code: u16, text: &str) {
    let e = expect_close(res, code);
    assert_eq!(reply_text(&e).as_deref(), Some(text), "reply text of {e}");
}

/// A consumer whose deliveries are forwarded, in arrival order, into a tokio channel.
pub struct Inbox {
    rx: tokio::sync::mpsc::UnboundedReceiver<DeliveryResult>,
    pub tag: String,
    cancelled: bool,
}

impl Inbox {
    /// Next delivery within `secs`; `None` if the consumer was cancelled.
    /// Panics on timeout or on a consumer error.
    #[track_caller]
    pub fn next(&mut self, secs: u64) -> impl Future<Output = Option<Delivery>> + '_ {
        let loc = std::panic::Location::caller();
        async move {
            if self.cancelled {
                return None;
            }
            match tokio::time::timeout(Duration::from_secs(secs), self.rx.recv()).await {
                Err(_) => panic!("no delivery within {secs} s (waiting at {loc})"),
                Ok(None) => {
                    self.cancelled = true;
                    None
                }
                Ok(Some(Ok(Some(d)))) => Some(d),
                Ok(Some(Ok(None))) => {
                    self.cancelled = true;
                    None
                }
                Ok(Some(Err(e))) => panic!("consumer error: {e} (waiting at {loc})"),
            }
        }
    }

    /// Next delivery, which must exist.
    #[track_caller]
    pub fn expect(&mut self, secs: u64) -> impl Future<Output = Delivery> + '_ {
        let loc = std::panic::Location::caller();
        async move {
            match self.next(secs).await {
                Some(d) => d,
                None => panic!("consumer was cancelled while a delivery was expected (at {loc})"),
            }
        }
    }

    /// Waits for the consumer to be cancelled (its stream ends) within `secs`,
    /// failing if a delivery arrives instead.
    pub async fn expect_cancelled(&mut self, secs: u64) {
        if let Some(d) = self.next(secs).await {
            panic!("expected the consumer to be cancelled, got a delivery: {:?}", d.data);
        }
    }

    /// Waits for the consumer to report an error (its channel or connection
    /// was closed by the broker) and checks the reply code. Returns the reply text.
    #[track_caller]
    pub fn expect_error(&mut self, code: u16, secs: u64) -> impl Future<Output = String> + '_ {
        let loc = std::panic::Location::caller();
        async move {
            match tokio::time::timeout(Duration::from_secs(secs), self.rx.recv()).await {
                Err(_) => panic!("no channel close with {code} within {secs} s (waiting at {loc})"),
                Ok(Some(Err(e))) => {
                    assert_eq!(reply_code(&e), Some(code), "close reason: {e} (at {loc})");
                    reply_text(&e).unwrap_or_default()
                }
                Ok(other) => panic!("expected a channel close with {code}, got {other:?} (at {loc})"),
            }
        }
    }

    /// Asserts that nothing arrives within `millis` ms.
    pub async fn expect_nothing(&mut self, millis: u64) {
        match tokio::time::timeout(Duration::from_millis(millis), self.rx.recv()).await {
            Err(_) => {}
            Ok(Some(Ok(Some(d)))) => panic!("expected no delivery, got one: {:?}", String::from_utf8_lossy(&d.data)),
            Ok(other) => panic!("expected no delivery, got {other:?}"),
        }
    }

    /// Collects `n` deliveries, all within `secs` seconds in total.
    pub async fn take(&mut self, n: usize, secs: u64) -> Vec<Delivery> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Err(_) => panic!("received {} of {n} deliveries within {secs} s", out.len()),
                Ok(Some(Ok(Some(d)))) => out.push(d),
                Ok(other) => panic!("consumer ended after {} of {n} deliveries: {other:?}", out.len()),
            }
        }
        out
    }
}

/// Starts a consumer on `queue` and returns its ordered inbox.
pub async fn consume(ch: &Channel, queue: &str, opts: BasicConsumeOptions) -> Inbox {
    consume_tagged(ch, queue, "", opts).await
}

/// Starts a consumer with an explicit tag (empty: server-generated).
pub async fn consume_tagged(ch: &Channel, queue: &str, tag: &str, opts: BasicConsumeOptions) -> Inbox {
    let consumer = within(T, ch.basic_consume(queue.into(), tag.into(), opts, FieldTable::default()))
        .await
        .unwrap_or_else(|e| panic!("basic.consume on {queue}: {e}"));
    inbox_of(consumer)
}

/// Wraps a lapin consumer so that its deliveries arrive, in order, in an [`Inbox`].
pub fn inbox_of(consumer: lapin::Consumer) -> Inbox {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let tag = consumer.tag().to_string();
    // The send happens synchronously when the delivery is dispatched, so the
    // inbox keeps the broker's delivery order.
    consumer.set_delegate(move |d: DeliveryResult| {
        let _ = tx.send(d);
        async {}
    });
    Inbox { rx, tag, cancelled: false }
}

/// Watches `ch` for an asynchronous close by the broker: a consumer on a
/// fresh exclusive queue receives the close as an error. Use
/// [`Inbox::expect_error`] on the result.
pub async fn watch_channel(ch: &Channel) -> Inbox {
    let q = declare_queue_with(ch, "", QueueDeclareOptions::exclusive()).await;
    consume(ch, q.name().as_str(), BasicConsumeOptions::default()).await
}

/// Publishes `body` to `exchange` with `routing_key`, without confirms.
pub async fn publish(ch: &Channel, exchange: &str, routing_key: &str, body: &[u8]) {
    within(
        T,
        ch.basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("basic.publish to {exchange:?}/{routing_key:?}: {e}"));
}

/// Declares a plain (non-durable, non-exclusive) queue named `name`.
pub async fn declare_queue(ch: &Channel, name: &str) -> lapin::Queue {
    within(T, ch.queue_declare(name.into(), QueueDeclareOptions::default(), FieldTable::default()))
        .await
        .unwrap_or_else(|e| panic!("queue.declare {name}: {e}"))
}

/// Declares a queue with options.
pub async fn declare_queue_with(ch: &Channel, name: &str, opts: QueueDeclareOptions) -> lapin::Queue {
    within(T, ch.queue_declare(name.into(), opts, FieldTable::default()))
        .await
        .unwrap_or_else(|e| panic!("queue.declare {name}: {e}"))
}

/// Message count of a queue, by a passive declare.
pub async fn message_count(ch: &Channel, name: &str) -> u32 {
    within(T, ch.queue_declare(name.into(), QueueDeclareOptions::default().passive(), FieldTable::default()))
        .await
        .unwrap_or_else(|e| panic!("passive queue.declare {name}: {e}"))
        .message_count()
}

/// Polls until `name` holds `n` messages (counts can lag behind acks).
pub async fn wait_message_count(ch: &Channel, name: &str, n: u32, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = message_count(ch, name).await;
        if got == n {
            return;
        }
        if Instant::now() > deadline {
            panic!("queue {name} holds {got} messages, expected {n} within {secs} s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `name` holds exactly `n` messages throughout `millis` ms
/// (catches a count that is still about to change).
pub async fn assert_count_stays(ch: &Channel, name: &str, n: u32, millis: u64) {
    let deadline = Instant::now() + Duration::from_millis(millis);
    loop {
        let got = message_count(ch, name).await;
        assert_eq!(got, n, "message count of {name}");
        if Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fetches one message with basic.get.
pub async fn get(ch: &Channel, queue: &str, no_ack: bool) -> Option<BasicGetMessage> {
    within(T, ch.basic_get(queue.into(), BasicGetOptions { no_ack }))
        .await
        .unwrap_or_else(|e| panic!("basic.get on {queue}: {e}"))
}

/// Deletes a queue, ignoring errors (cleanup on an external broker).
pub async fn cleanup_queue(ch: &Channel, name: &str) {
    let _ = within(T, ch.queue_delete(name.into(), QueueDeleteOptions::default())).await;
}

/// Deletes an exchange, ignoring errors.
pub async fn cleanup_exchange(ch: &Channel, name: &str) {
    let _ = within(T, ch.exchange_delete(name.into(), ExchangeDeleteOptions::default())).await;
}

/// The shard that owns the named, non-exclusive queue `queue` in vhost `vhost`.
pub fn queue_owner(vhost: &str, queue: &str, shards: usize) -> usize {
    spatemq::internals::queue_owner(vhost, queue, shards)
}

/// A fresh queue name (in vhost "/") that the broker places on `shard`.
pub fn queue_name_on_shard(prefix: &str, shard: usize, shards: usize) -> String {
    let shards = shards.max(1);
    let shard = shard % shards;
    let base = unique(prefix);
    for i in 0u64.. {
        let name = format!("{base}-{i}");
        if queue_owner("/", &name, shards) == shard {
            return name;
        }
    }
    unreachable!()
}

/// The broker's Prometheus exposition, read with a plain HTTP/1.1 GET of `/metrics` on
/// 127.0.0.1:`prometheus_port`.
pub fn metrics_text(prometheus_port: u16) -> String {
    use std::io::Write;
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", prometheus_port)).expect("connect to the Prometheus port");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
}

/// UTF-8 view of a delivery body.
pub fn text(d: &[u8]) -> String {
    String::from_utf8_lossy(d).into_owned()
}
