//! The `spatemq bench` command line: the scenario, its flags, their defaults, and `validate()`
//! with one check per rule.
//!
//! Flag names follow RabbitMQ PerfTest and lavinmqperf (`-x`, `-y`, `-s`, `-z`, `--confirm`,
//! `--queue-pattern`) so their users feel at home. A flag that does not apply to the chosen
//! scenario is an error rather than silently ignored. This module opens no socket.

use std::fmt;

use amq_protocol::types::FieldTable;

use super::field_table;
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

    fn bit(self) -> u8 {
        1 << (self as u8)
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

const THROUGHPUT: u8 = 1 << (Scenario::Throughput as u8);
const QUEUE_COUNT: u8 = 1 << (Scenario::QueueCount as u8);
const CONNECTION_COUNT: u8 = 1 << (Scenario::ConnectionCount as u8);
const BIND_CHURN: u8 = 1 << (Scenario::BindChurn as u8);
const CONNECTION_CHURN: u8 = 1 << (Scenario::ConnectionChurn as u8);
const EVERY: u8 = THROUGHPUT | QUEUE_COUNT | CONNECTION_COUNT | BIND_CHURN | CONNECTION_CHURN;

struct Flag {
    long: &'static str,
    short: Option<&'static str>,
    takes_value: bool,
    scenarios: u8,
}

const fn flag(long: &'static str, short: Option<&'static str>, scenarios: u8) -> Flag {
    Flag { long, short, takes_value: true, scenarios }
}

const fn switch(long: &'static str, scenarios: u8) -> Flag {
    Flag { long, short: None, takes_value: false, scenarios }
}

const FLAGS: &[Flag] = &[
    flag("--uri", Some("-u"), EVERY),
    switch("--json", EVERY),
    flag("--threads", None, EVERY),
    flag("--publishers", Some("-x"), THROUGHPUT),
    flag("--consumers", Some("-y"), THROUGHPUT),
    flag("--size", Some("-s"), THROUGHPUT),
    flag("--time", Some("-z"), THROUGHPUT),
    flag("--pmessages", None, THROUGHPUT),
    flag("--cmessages", None, THROUGHPUT),
    flag("--rate", Some("-r"), THROUGHPUT),
    flag("--consumer-rate", None, THROUGHPUT),
    switch("--persistent", THROUGHPUT),
    flag("--confirm", Some("-c"), THROUGHPUT),
    flag("--ack", None, THROUGHPUT),
    flag("--prefetch", Some("-q"), THROUGHPUT),
    flag("--exchange", Some("-e"), THROUGHPUT),
    flag("--exchange-type", Some("-t"), THROUGHPUT),
    flag("--routing-key", Some("-k"), THROUGHPUT),
    flag("--queue", None, THROUGHPUT),
    flag("--queue-pattern", None, THROUGHPUT),
    flag("--queue-pattern-from", None, THROUGHPUT),
    flag("--queue-pattern-to", None, THROUGHPUT),
    flag("--queue-args", None, THROUGHPUT | QUEUE_COUNT),
    flag("--consumer-args", None, THROUGHPUT),
    switch("--measure-latency", THROUGHPUT),
    flag("--queues", None, QUEUE_COUNT),
    flag("--connections", None, CONNECTION_COUNT | CONNECTION_CHURN),
    flag("--hold", None, CONNECTION_COUNT),
    flag("--bindings", None, BIND_CHURN),
];

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
        --queue-pattern <p>      many queues: '%' is replaced by each number of the range
        --queue-pattern-from <n> [default: 1]
        --queue-pattern-to <n>   [required with --queue-pattern]
        --queue-args <json>      queue.declare arguments, e.g. '{\"x-max-length\": 1000}'
        --consumer-args <json>   basic.consume arguments
        --measure-latency        publish timestamps; report consumer latency percentiles

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

    fn apply(&mut self, flag: &'static str, value: &str) -> Result<(), ArgsError> {
        match flag {
            "--uri" => self.uri = Uri::parse(value).map_err(|error| bad(flag, value, error))?,
            "--json" => self.json = true,
            "--threads" => self.threads = positive(flag, value)?,
            "--publishers" => self.publishers = number(flag, value)?,
            "--consumers" => self.consumers = number(flag, value)?,
            "--size" => self.size_bytes = number(flag, value)?,
            "--time" => self.time_seconds = Some(positive(flag, value)?),
            "--pmessages" => self.publisher_messages = Some(positive(flag, value)?),
            "--cmessages" => self.consumer_messages = Some(positive(flag, value)?),
            "--rate" => self.publisher_rate = Some(positive(flag, value)?),
            "--consumer-rate" => self.consumer_rate = Some(positive(flag, value)?),
            "--persistent" => self.persistent = true,
            "--confirm" => self.confirm = number(flag, value)?,
            "--ack" => self.ack_every = number(flag, value)?,
            "--prefetch" => self.prefetch_count = number(flag, value)?,
            "--exchange" => self.exchange = short_string(flag, value)?,
            "--exchange-type" => self.exchange_type = short_string(flag, value)?,
            "--routing-key" => self.routing_key = Some(short_string(flag, value)?),
            "--queue" => self.queue = short_string(flag, value)?,
            "--queue-pattern" => self.queue_pattern = Some(short_string(flag, value)?),
            "--queue-pattern-from" => self.queue_pattern_from = number(flag, value)?,
            "--queue-pattern-to" => self.queue_pattern_to = number(flag, value)?,
            "--queue-args" => {
                self.queue_arguments =
                    field_table::from_json(value).map_err(|why| BadValue { flag, value: value.into(), why })?
            }
            "--consumer-args" => {
                self.consumer_arguments =
                    field_table::from_json(value).map_err(|why| BadValue { flag, value: value.into(), why })?
            }
            "--measure-latency" => self.measure_latency = true,
            "--queues" => self.queues = positive(flag, value)?,
            "--connections" => self.connections = positive(flag, value)?,
            "--hold" => self.hold_seconds = number(flag, value)?,
            "--bindings" => self.bindings = positive(flag, value)?,
            _ => return Err(ArgsError::UnknownFlag(flag.into())),
        }
        Ok(())
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

use ArgsError::BadValue;

fn bad(flag: &'static str, value: &str, why: impl fmt::Display) -> ArgsError {
    BadValue { flag, value: value.into(), why: why.to_string() }
}

fn number<T: std::str::FromStr>(flag: &'static str, value: &str) -> Result<T, ArgsError>
where
    T::Err: fmt::Display,
{
    value.parse::<T>().map_err(|error| bad(flag, value, error))
}

fn positive<T: std::str::FromStr + Default + PartialEq>(flag: &'static str, value: &str) -> Result<T, ArgsError>
where
    T::Err: fmt::Display,
{
    let parsed = number::<T>(flag, value)?;
    if parsed == T::default() {
        return Err(bad(flag, value, "must be greater than 0"));
    }
    Ok(parsed)
}

/// Names and keys travel as AMQP short strings (at most 255 bytes).
fn short_string(flag: &'static str, value: &str) -> Result<String, ArgsError> {
    if value.len() > 255 {
        return Err(bad(flag, value, "longer than 255 bytes"));
    }
    Ok(value.to_string())
}

/// Parses everything after `bench`.
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
    let mut args = BenchArgs::defaults(scenario);
    let mut given = Vec::new();
    while let Some(argument) = arguments.next() {
        if matches!(argument.as_str(), "-h" | "--help") {
            return Ok(Parsed::Help);
        }
        let (name, inline) = match argument.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (argument.as_str(), None),
        };
        let flag = FLAGS
            .iter()
            .find(|flag| flag.long == name || flag.short == Some(name))
            .ok_or_else(|| ArgsError::UnknownFlag(name.to_string()))?;
        if flag.scenarios & scenario.bit() == 0 {
            return Err(ArgsError::NotForScenario { flag: flag.long, scenario: scenario.name() });
        }
        let value = match (flag.takes_value, inline) {
            (true, Some(value)) => value,
            (true, None) => arguments.next().ok_or(ArgsError::MissingValue(flag.long))?,
            (false, None) => String::new(),
            (false, Some(value)) => return Err(bad(flag.long, &value, "takes no value")),
        };
        args.apply(flag.long, &value)?;
        given.push(flag.long);
    }
    args.validate(&given)?;
    Ok(Parsed::Run(Box::new(args)))
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
