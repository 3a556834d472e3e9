//! The bench's flags as clap reads them, which scenarios each applies to, and clap's errors
//! turned into the bench's own (`ArgsError`), which name the flag and the value.
//!
//! Values are checked here, by the parsers clap calls (`positive`, `short_string`, ...); the
//! rules between flags are `BenchArgs::validate`'s. The help text stays the hand-written
//! `HELP`, grouped by scenario, which clap prints for `-h`/`--help`.

use std::fmt;

use amq_protocol::types::{AMQPValue, FieldTable};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Parser;

use super::args::{ArgsError, Scenario, HELP};
use super::field_table;
use super::uri::Uri;

/// Everything after the scenario word; each field is `None` (or false) unless given.
#[derive(Parser, Debug)]
#[command(
    name = "spatemq bench",
    no_binary_name = true,
    override_help = HELP,
    disable_version_flag = true,
    allow_negative_numbers = true
)]
pub(super) struct Flags {
    #[arg(short = 'u', long, value_parser = uri)]
    pub uri: Option<Uri>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_parser = positive::<usize>)]
    pub threads: Option<usize>,
    #[arg(short = 'x', long, value_parser = number::<u32>)]
    pub publishers: Option<u32>,
    #[arg(short = 'y', long, value_parser = number::<u32>)]
    pub consumers: Option<u32>,
    #[arg(short = 's', long, value_parser = number::<usize>)]
    pub size: Option<usize>,
    #[arg(short = 'z', long, value_parser = positive::<u64>)]
    pub time: Option<u64>,
    #[arg(long, value_parser = positive::<u64>)]
    pub pmessages: Option<u64>,
    #[arg(long, value_parser = positive::<u64>)]
    pub cmessages: Option<u64>,
    #[arg(short = 'r', long, value_parser = positive::<u64>)]
    pub rate: Option<u64>,
    #[arg(long, value_parser = positive::<u64>)]
    pub consumer_rate: Option<u64>,
    #[arg(long)]
    pub persistent: bool,
    #[arg(short = 'c', long, value_parser = number::<u32>)]
    pub confirm: Option<u32>,
    #[arg(long, value_parser = number::<u32>)]
    pub ack: Option<u32>,
    #[arg(short = 'q', long, value_parser = number::<u16>)]
    pub prefetch: Option<u16>,
    #[arg(short = 'e', long, value_parser = short_string)]
    pub exchange: Option<String>,
    #[arg(short = 't', long, value_parser = short_string)]
    pub exchange_type: Option<String>,
    #[arg(short = 'k', long, value_parser = short_string)]
    pub routing_key: Option<String>,
    #[arg(long, value_parser = short_string)]
    pub queue: Option<String>,
    #[arg(long, value_parser = short_string)]
    pub queue_pattern: Option<String>,
    #[arg(long, value_parser = number::<u32>)]
    pub queue_pattern_from: Option<u32>,
    #[arg(long, value_parser = number::<u32>)]
    pub queue_pattern_to: Option<u32>,
    #[arg(long, value_parser = field_table::from_json)]
    pub queue_args: Option<FieldTable>,
    #[arg(long, value_parser = field_table::from_json)]
    pub consumer_args: Option<FieldTable>,
    #[arg(long, value_parser = queue_type)]
    pub queue_type: Option<String>,
    #[arg(long, value_parser = stream_offset)]
    pub stream_offset: Option<AMQPValue>,
    #[arg(long)]
    pub measure_latency: bool,
    #[arg(long, value_parser = positive::<u64>)]
    pub delay_ms: Option<u64>,
    #[arg(long)]
    pub delay_spread: bool,
    #[arg(long, value_parser = positive::<u32>)]
    pub queues: Option<u32>,
    #[arg(long, value_parser = positive::<u32>)]
    pub connections: Option<u32>,
    #[arg(long, value_parser = number::<u64>)]
    pub hold: Option<u64>,
    #[arg(long, value_parser = positive::<u32>)]
    pub bindings: Option<u32>,
}

const THROUGHPUT: u8 = 1 << (Scenario::Throughput as u8);
const QUEUE_COUNT: u8 = 1 << (Scenario::QueueCount as u8);
const CONNECTION_COUNT: u8 = 1 << (Scenario::ConnectionCount as u8);
const BIND_CHURN: u8 = 1 << (Scenario::BindChurn as u8);
const CONNECTION_CHURN: u8 = 1 << (Scenario::ConnectionChurn as u8);
const EVERY: u8 = THROUGHPUT | QUEUE_COUNT | CONNECTION_COUNT | BIND_CHURN | CONNECTION_CHURN;

/// Each flag and the scenarios it applies to (a bit per `Scenario`). A flag given to a
/// scenario it does not apply to is an error rather than silently ignored.
pub(super) const FLAGS: &[(&str, u8)] = &[
    ("--uri", EVERY),
    ("--json", EVERY),
    ("--threads", EVERY),
    ("--publishers", THROUGHPUT),
    ("--consumers", THROUGHPUT),
    ("--size", THROUGHPUT),
    ("--time", THROUGHPUT),
    ("--pmessages", THROUGHPUT),
    ("--cmessages", THROUGHPUT),
    ("--rate", THROUGHPUT),
    ("--consumer-rate", THROUGHPUT),
    ("--persistent", THROUGHPUT),
    ("--confirm", THROUGHPUT),
    ("--ack", THROUGHPUT),
    ("--prefetch", THROUGHPUT),
    ("--exchange", THROUGHPUT),
    ("--exchange-type", THROUGHPUT),
    ("--routing-key", THROUGHPUT),
    ("--queue", THROUGHPUT),
    ("--queue-pattern", THROUGHPUT),
    ("--queue-pattern-from", THROUGHPUT),
    ("--queue-pattern-to", THROUGHPUT),
    ("--queue-args", THROUGHPUT | QUEUE_COUNT),
    ("--consumer-args", THROUGHPUT),
    ("--queue-type", THROUGHPUT | QUEUE_COUNT),
    ("--stream-offset", THROUGHPUT),
    ("--measure-latency", THROUGHPUT),
    ("--delay-ms", THROUGHPUT),
    ("--delay-spread", THROUGHPUT),
    ("--queues", QUEUE_COUNT),
    ("--connections", CONNECTION_COUNT | CONNECTION_CHURN),
    ("--hold", CONNECTION_COUNT),
    ("--bindings", BIND_CHURN),
];

/// The long name (`--queue-pattern-to`) of clap's argument id (`queue_pattern_to`).
pub(super) fn long_name(id: &str) -> Option<&'static str> {
    FLAGS.iter().map(|(long, _)| *long).find(|long| long[2..].replace('-', "_") == id)
}

/// Whether the flag `long` applies to `scenario`.
pub(super) fn applies(long: &str, scenario: Scenario) -> bool {
    FLAGS.iter().any(|(name, scenarios)| *name == long && scenarios & (1 << (scenario as u8)) != 0)
}

/// clap's error in the bench's words: the flag (by its long name), the value, and why.
pub(super) fn args_error(error: clap::Error) -> ArgsError {
    let context = |kind| match error.get(kind) {
        Some(ContextValue::String(text)) => Some(text.clone()),
        _ => None,
    };
    let argument = context(ContextKind::InvalidArg).unwrap_or_default();
    let value = context(ContextKind::InvalidValue).unwrap_or_default();
    let why = std::error::Error::source(&error).map(|source| source.to_string());
    // clap names an argument as `--size <SIZE>` or `-s`; the flag is its first word.
    let written = argument.split([' ', '=']).next().unwrap_or_default();
    let flag = FLAGS.iter().map(|(long, _)| *long).find(|long| *long == written);
    match (error.kind(), flag) {
        (ErrorKind::UnknownArgument, _) => ArgsError::UnknownFlag(written.to_string()),
        (ErrorKind::InvalidValue, Some(flag)) if value.is_empty() => ArgsError::MissingValue(flag),
        (ErrorKind::InvalidValue | ErrorKind::ValueValidation, Some(flag)) => {
            ArgsError::BadValue { flag, value, why: why.unwrap_or_else(|| "not accepted".into()) }
        }
        (ErrorKind::TooManyValues, Some(flag)) => ArgsError::BadValue { flag, value, why: "takes no value".into() },
        _ => ArgsError::Invalid(error.render().to_string().trim_end().trim_start_matches("error: ").to_string()),
    }
}

fn uri(text: &str) -> Result<Uri, String> {
    Uri::parse(text).map_err(|error| error.to_string())
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    text.parse::<T>().map_err(|error| error.to_string())
}

fn positive<T: std::str::FromStr + Default + PartialEq>(text: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    let parsed = number::<T>(text)?;
    if parsed == T::default() {
        return Err("must be greater than 0".into());
    }
    Ok(parsed)
}

/// `x-queue-type`: the types a RabbitMQ 3.10 (and this broker) declares.
fn queue_type(text: &str) -> Result<String, String> {
    match text {
        "classic" | "quorum" | "stream" => Ok(text.to_string()),
        _ => Err("expected classic, quorum or stream".into()),
    }
}

/// `x-stream-offset`: first, last, next, an offset (a long), or an age such as 1h (a string
/// the broker reads).
fn stream_offset(text: &str) -> Result<AMQPValue, String> {
    if let Ok(offset) = text.parse::<i64>() {
        return Ok(AMQPValue::LongLongInt(offset));
    }
    match text.chars().next() {
        Some(first) if first.is_ascii_alphanumeric() => Ok(AMQPValue::LongString(text.into())),
        _ => Err("expected first, last, next, an offset or an age such as 1h".into()),
    }
}

/// Names and keys travel as AMQP short strings (at most 255 bytes).
fn short_string(text: &str) -> Result<String, String> {
    if text.len() > 255 {
        return Err("longer than 255 bytes".into());
    }
    Ok(text.to_string())
}
