//! The `spatemq bench` command line: the scenario, its flags, their defaults, and `validate()`
//! with one check per rule.
//!
//! Flag names follow RabbitMQ PerfTest and lavinmqperf (`-x`, `-y`, `-s`, `-z`, `--confirm`,
//! `--queue-pattern`) so their users feel at home. A flag that does not apply to the chosen
//! scenario is an error rather than silently ignored. clap reads the flags (`flags.rs`); this
//! module takes the scenario word, applies the flags over the defaults and checks the rules
//! between them. It opens no socket.

use std::fmt;

use amq_protocol::types::{AMQPValue, FieldTable};

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

use super::flags::{self, Flags};
use super::uri::Uri;

pub const DEFAULT_URI: &str = "amqp://guest:guest@localhost";
pub const DEFAULT_QUEUE: &str = "perf-test";
/// Run length when neither `--time` nor a message count is given.
pub const DEFAULT_TIME_SECONDS: u64 = 10;
/// Largest body the load generator will build, the broker's own limit.
pub const SIZE_MAX_BYTES: usize = 128 * 1024 * 1024;
/// Queues a `--queue-pattern` range may expand to.
pub const PATTERN_QUEUES_MAX: u32 = 100_000;
/// Bytes the latency timestamp takes at the start of each body.
pub const TIMESTAMP_BYTES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Throughput,
    QueueCount,
    ConnectionCount,
    BindChurn,
    ConnectionChurn,
}

impl Scenario {
    const ALL: [(Scenario, &'static str); 5] = [
        (Scenario::Throughput, "throughput"),
        (Scenario::QueueCount, "queue-count"),
        (Scenario::ConnectionCount, "connection-count"),
        (Scenario::BindChurn, "bind-churn"),
        (Scenario::ConnectionChurn, "connection-churn"),
    ];

    pub fn name(self) -> &'static str {
        Scenario::ALL.iter().find(|(scenario, _)| *scenario == self).map_or("?", |(_, name)| name)
    }
}

/// Everything a bench run needs; fields not used by a scenario keep their defaults.
#[derive(Clone, Debug)]
pub struct BenchArgs {
    pub scenario: Scenario,
    pub uri: Uri,
    pub json: bool,
    pub threads: usize,
    pub publishers: u32,
    pub consumers: u32,
    pub size_bytes: usize,
    /// Resolved: `Some(10)` when neither a time nor a message count was given.
    pub time_seconds: Option<u64>,
    pub publisher_messages: Option<u64>,
    pub consumer_messages: Option<u64>,
    pub publisher_rate: Option<u64>,
    pub consumer_rate: Option<u64>,
    pub persistent: bool,
    /// Unconfirmed publishes allowed in flight per publisher; 0 leaves confirms off.
    pub confirm: u32,
    /// Ack every N deliveries with multiple=true; 0 consumes with no-ack.
    pub ack_every: u32,
    /// 0 sends no basic.qos (unlimited).
    pub prefetch_count: u16,
    pub exchange: String,
    pub exchange_type: String,
    pub routing_key: Option<String>,
    pub queue: String,
    pub queue_pattern: Option<String>,
    pub queue_pattern_from: u32,
    pub queue_pattern_to: u32,
    pub queue_arguments: FieldTable,
    pub consumer_arguments: FieldTable,
    pub measure_latency: bool,
    /// `--delay-ms`: the exchange is declared `x-delayed-message` (routing as
    /// `--exchange-type`) and every message carries this `x-delay`.
    pub delay_ms: Option<u64>,
    /// `--delay-spread`: each message's `x-delay` is drawn at random from 1..=`delay_ms`, and a
    /// measured latency counts from the message's due time (how late it was routed).
    pub delay_spread: bool,
    pub queues: u32,
    pub connections: u32,
    pub hold_seconds: u64,
    pub bindings: u32,
}

#[derive(Debug)]
pub enum Parsed {
    Help,
    Run(Box<BenchArgs>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgsError {
    MissingScenario,
    UnknownScenario(String),
    UnknownFlag(String),
    MissingValue(&'static str),
    BadValue { flag: &'static str, value: String, why: String },
    NotForScenario { flag: &'static str, scenario: &'static str },
    Invalid(String),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::MissingScenario => f.write_str("bench needs a scenario (see bench --help)"),
            ArgsError::UnknownScenario(name) => {
                write!(f, "unknown bench scenario {name:?} (see bench --help)")
            }
            ArgsError::UnknownFlag(flag) => write!(f, "unknown flag {flag} (see bench --help)"),
            ArgsError::MissingValue(flag) => write!(f, "flag {flag} needs a value"),
            ArgsError::BadValue { flag, value, why } => {
                write!(f, "bad value {value:?} for {flag}: {why}")
            }
            ArgsError::NotForScenario { flag, scenario } => {
                write!(f, "flag {flag} does not apply to the {scenario} scenario")
            }
            ArgsError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ArgsError {}

pub const HELP: &str = "\
spatemq bench: a load generator for any AMQP 0-9-1 broker

USAGE:
    spatemq bench <scenario> [FLAGS]

SCENARIOS:
    throughput         publishers and consumers over one or many queues (default flags:
                       1 publisher, 1 consumer, 16-byte bodies, no-ack, 10 seconds)
    queue-count        declare --queues queues, report declares/s (then deletes them)
    connection-count   open --connections connections, hold them --hold seconds
    bind-churn         bind and unbind a queue --bindings times, report operations/s
    connection-churn   open and close --connections connections, report connections/s

FLAGS (every scenario):
    -u, --uri <uri>              broker [default: amqp://guest:guest@localhost]; amqps://host[:5671]
                                 for TLS, with ?cacertfile=FILE (else the system CAs),
                                 &certfile=FILE&keyfile=FILE for a client certificate,
                                 &verify=verify_none to accept any certificate (tests only)
        --json                   last stdout line is one JSON object with the results
        --threads <n>            client threads, one runtime each [default: available cores]

FLAGS (throughput):
    -x, --publishers <n>         publishing connections [default: 1]
    -y, --consumers <n>          consuming connections [default: 1]
    -s, --size <bytes>           body size [default: 16]
    -z, --time <seconds>         run length [default: 10 unless a message count is given]
        --pmessages <n>          each publisher stops after n messages
        --cmessages <n>          each consumer stops after n messages
    -r, --rate <msgs/s>          limit per publisher
        --consumer-rate <msgs/s> limit per consumer
        --persistent             delivery_mode 2 and a durable queue
    -c, --confirm <n>            publisher confirms, at most n unconfirmed [default: 0 = off]
        --ack <n>                ack every n deliveries, multiple [default: 0 = no-ack]
    -q, --prefetch <n>           basic.qos prefetch_count [default: 0 = unlimited]
    -e, --exchange <name>        exchange to publish to [default: \"\", routes by queue name]
    -t, --exchange-type <type>   type when --exchange is declared [default: direct]
    -k, --routing-key <key>      [default: the queue name]
        --queue <name>           [default: perf-test]
        --queue-pattern <p>      many queues: '%' is replaced by each number of the range;
                                 fewer publishers (consumers) than queues take turns over
                                 them, so every queue gets messages (and a consumer)
        --queue-pattern-from <n> [default: 1]
        --queue-pattern-to <n>   [required with --queue-pattern]
        --queue-args <json>      queue.declare arguments, e.g. '{\"x-max-length\": 1000}'
        --consumer-args <json>   basic.consume arguments
        --queue-type <type>      classic, quorum or stream: declared durable, never auto-delete
                                 (a stream needs --ack and --prefetch)
        --stream-offset <o>      a stream consumer's x-stream-offset: first, last, next, an
                                 offset or an age such as 1h [default: next]
        --measure-latency        publish timestamps; report consumer latency percentiles
        --delay-ms <ms>          declare --exchange as x-delayed-message (routing as
                                 --exchange-type) and publish with this x-delay header
        --delay-spread           draw each message's x-delay at random from 1..=--delay-ms;
                                 --measure-latency then measures from the due time

FLAGS (other scenarios):
        --queues <n>             queue-count [default: 1000]
        --connections <n>        connection-count, connection-churn [default: 1000]
        --hold <seconds>         connection-count: keep them open [default: 0]
        --bindings <n>           bind-churn [default: 1000]
";

impl BenchArgs {
    pub fn defaults(scenario: Scenario) -> BenchArgs {
        BenchArgs {
            scenario,
            uri: Uri::parse(DEFAULT_URI).expect("the default URI is valid"),
            json: false,
            threads: std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            publishers: 1,
            consumers: 1,
            size_bytes: 16,
            time_seconds: None,
            publisher_messages: None,
            consumer_messages: None,
            publisher_rate: None,
            consumer_rate: None,
            persistent: false,
            confirm: 0,
            ack_every: 0,
            prefetch_count: 0,
            exchange: String::new(),
            exchange_type: "direct".into(),
            routing_key: None,
            queue: DEFAULT_QUEUE.into(),
            queue_pattern: None,
            queue_pattern_from: 1,
            queue_pattern_to: 0,
            queue_arguments: FieldTable::default(),
            consumer_arguments: FieldTable::default(),
            measure_latency: false,
            delay_ms: None,
            delay_spread: false,
            queues: 1000,
            connections: 1000,
            hold_seconds: 0,
            bindings: 1000,
        }
    }

    /// The queue names the run uses: the pattern's range, or the one `--queue`.
    pub fn queue_names(&self) -> Vec<String> {
        match &self.queue_pattern {
            Some(pattern) => (self.queue_pattern_from..=self.queue_pattern_to)
                .map(|number| pattern.replace('%', &number.to_string()))
                .collect(),
            None => vec![self.queue.clone()],
        }
    }

    /// The queue type the run declares (`--queue-type` or `x-queue-type` in `--queue-args`);
    /// None for classic.
    pub fn queue_type(&self) -> Option<String> {
        match self.queue_arguments.inner().get("x-queue-type") {
            Some(AMQPValue::LongString(text)) => {
                Some(String::from_utf8_lossy(text.as_bytes()).into_owned()).filter(|kind| kind != "classic")
            }
            _ => None,
        }
    }

    pub fn is_stream(&self) -> bool {
        self.queue_type().as_deref() == Some("stream")
    }

    /// Takes every flag that was given; the others keep their defaults.
    fn apply(&mut self, flags: Flags) {
        // Destructured whole: a flag added to `Flags` and forgotten here does not compile.
        let Flags {
            uri,
            json,
            threads,
            publishers,
            consumers,
            size,
            time,
            pmessages,
            cmessages,
            rate,
            consumer_rate,
            persistent,
            confirm,
            ack,
            prefetch,
            exchange,
            exchange_type,
            routing_key,
            queue,
            queue_pattern,
            queue_pattern_from,
            queue_pattern_to,
            queue_args,
            consumer_args,
            queue_type,
            stream_offset,
            measure_latency,
            delay_ms,
            delay_spread,
            queues,
            connections,
            hold,
            bindings,
        } = flags;
        set(&mut self.uri, uri);
        self.json |= json;
        set(&mut self.threads, threads);
        set(&mut self.publishers, publishers);
        set(&mut self.consumers, consumers);
        set(&mut self.size_bytes, size);
        self.time_seconds = time.or(self.time_seconds);
        self.publisher_messages = pmessages.or(self.publisher_messages);
        self.consumer_messages = cmessages.or(self.consumer_messages);
        self.publisher_rate = rate.or(self.publisher_rate);
        self.consumer_rate = consumer_rate.or(self.consumer_rate);
        self.persistent |= persistent;
        set(&mut self.confirm, confirm);
        set(&mut self.ack_every, ack);
        set(&mut self.prefetch_count, prefetch);
        set(&mut self.exchange, exchange);
        set(&mut self.exchange_type, exchange_type);
        self.routing_key = routing_key.or(self.routing_key.take());
        set(&mut self.queue, queue);
        self.queue_pattern = queue_pattern.or(self.queue_pattern.take());
        set(&mut self.queue_pattern_from, queue_pattern_from);
        set(&mut self.queue_pattern_to, queue_pattern_to);
        set(&mut self.queue_arguments, queue_args);
        set(&mut self.consumer_arguments, consumer_args);
        if let Some(queue_type) = queue_type {
            self.queue_arguments.insert("x-queue-type".into(), AMQPValue::LongString(queue_type.as_str().into()));
        }
        if let Some(offset) = stream_offset {
            self.consumer_arguments.insert("x-stream-offset".into(), offset);
        }
        self.measure_latency |= measure_latency;
        self.delay_ms = delay_ms.or(self.delay_ms);
        self.delay_spread |= delay_spread;
        set(&mut self.queues, queues);
        set(&mut self.connections, connections);
        set(&mut self.hold_seconds, hold);
        set(&mut self.bindings, bindings);
    }

    /// One rule per check, each with its own message. Also resolves the default run time.
    fn validate(&mut self, given: &[&'static str]) -> Result<(), ArgsError> {
        let invalid = |message: &str| Err(ArgsError::Invalid(message.into()));
        if self.scenario != Scenario::Throughput {
            return Ok(());
        }
        if self.publishers == 0 && self.consumers == 0 {
            return invalid("throughput needs at least one publisher or consumer");
        }
        if self.size_bytes > SIZE_MAX_BYTES {
            return invalid("--size is above the 128 MiB message limit");
        }
        if self.measure_latency && self.size_bytes < TIMESTAMP_BYTES {
            return invalid("--measure-latency needs --size of at least 8 (the timestamp)");
        }
        if self.delay_ms.is_some() && (self.exchange.is_empty() || self.exchange.starts_with("amq.")) {
            return invalid("--delay-ms needs --exchange naming the delayed exchange to declare");
        }
        if self.delay_spread && self.delay_ms.is_none() {
            return invalid("--delay-spread needs --delay-ms, the longest delay to draw");
        }
        if self.is_stream() && self.consumers > 0 && (self.ack_every == 0 || self.prefetch_count == 0) {
            return invalid(
                "--queue-type stream needs --ack and --prefetch: a stream consumer must ack and set a prefetch",
            );
        }
        if given.contains(&"--stream-offset") && !self.is_stream() {
            return invalid("--stream-offset needs --queue-type stream");
        }
        if self.prefetch_count != 0 && self.ack_every > u32::from(self.prefetch_count) {
            return invalid("--ack must not exceed --prefetch, or consumers would wait forever");
        }
        let pattern_range = given.contains(&"--queue-pattern-from") || given.contains(&"--queue-pattern-to");
        match &self.queue_pattern {
            None if pattern_range => return invalid("--queue-pattern-from/--queue-pattern-to need --queue-pattern"),
            None => {}
            Some(pattern) if !pattern.contains('%') => {
                return invalid("--queue-pattern needs a '%' where the number goes")
            }
            Some(_) if !given.contains(&"--queue-pattern-to") => {
                return invalid("--queue-pattern needs --queue-pattern-to")
            }
            Some(_) if self.queue_pattern_from > self.queue_pattern_to => {
                return invalid("--queue-pattern-from is above --queue-pattern-to")
            }
            Some(_) if self.queue_pattern_to - self.queue_pattern_from >= PATTERN_QUEUES_MAX => {
                return invalid("--queue-pattern expands to more than 100000 queues")
            }
            Some(_) => {}
        }
        if self.queue_pattern.is_some() && given.contains(&"--queue") {
            return invalid("--queue and --queue-pattern exclude each other");
        }
        if self.time_seconds.is_none() && self.publisher_messages.is_none() && self.consumer_messages.is_none() {
            self.time_seconds = Some(DEFAULT_TIME_SECONDS);
        }
        Ok(())
    }
}

fn set<T>(slot: &mut T, given: Option<T>) {
    if let Some(value) = given {
        *slot = value;
    }
}

/// Parses everything after `bench`: the scenario word, then its flags (clap).
pub fn parse(arguments: impl IntoIterator<Item = String>) -> Result<Parsed, ArgsError> {
    let mut arguments = arguments.into_iter();
    let first = arguments.next().ok_or(ArgsError::MissingScenario)?;
    if matches!(first.as_str(), "-h" | "--help" | "help") {
        return Ok(Parsed::Help);
    }
    let scenario = Scenario::ALL
        .iter()
        .find(|(_, name)| *name == first)
        .map(|(scenario, _)| *scenario)
        .ok_or(ArgsError::UnknownScenario(first))?;
    let matches = match Flags::command().try_get_matches_from(arguments) {
        Ok(matches) => matches,
        Err(error) if error.kind() == clap::error::ErrorKind::DisplayHelp => return Ok(Parsed::Help),
        Err(error) => return Err(flags::args_error(error)),
    };
    let mut given = Vec::new();
    for id in matches.ids() {
        if matches.value_source(id.as_str()) != Some(ValueSource::CommandLine) {
            continue;
        }
        let Some(flag) = flags::long_name(id.as_str()) else { continue };
        if !flags::applies(flag, scenario) {
            return Err(ArgsError::NotForScenario { flag, scenario: scenario.name() });
        }
        given.push(flag);
    }
    let flags = Flags::from_arg_matches(&matches).map_err(flags::args_error)?;
    let mut args = BenchArgs::defaults(scenario);
    args.apply(flags);
    args.validate(&given)?;
    Ok(Parsed::Run(Box::new(args)))
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
