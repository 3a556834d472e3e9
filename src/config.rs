//! Broker configuration: command-line flags over `SPATEMQ_*` environment variables over
//! defaults, then `validate()` with one check per rule.
//!
//! Parsing is hand-written to keep the dependency list short; every flag has an environment
//! twin (`--amqp-port` ↔ `SPATEMQ_AMQP_PORT`).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::logging::Level;

#[derive(Clone, Debug)]
pub struct Config {
    pub amqp_port: u16,
    pub bind: IpAddr,
    pub data_dir: PathBuf,
    pub shards: usize,
    pub pin_cores: bool,
    pub log_level: Level,
    /// Each shard also listens on a port of its own (printed at start), so tests and
    /// diagnostics can place a connection on a chosen shard.
    pub per_shard_listeners: bool,
    /// Memory above which publishers are blocked: a fraction of RAM, or an absolute size.
    pub memory_high_watermark: MemoryWatermark,
    /// Free space in the data directory below which publishers are blocked (bytes).
    pub disk_free_limit_bytes: u64,
    /// Size of a message-log segment file (bytes).
    pub segment_bytes: u64,
    /// Test hook: the message store fails every write after this many bytes.
    pub inject_store_failure_after_bytes: Option<u64>,
    /// How long a delivery may stay unacknowledged before its channel is closed (RabbitMQ's
    /// `consumer_timeout`); queue and consumer `x-consumer-timeout` arguments override it.
    /// None: no broker-wide timeout.
    pub consumer_timeout_ms: Option<u64>,
    /// amqps: the server's certificate chain (PEM). With `tls_key`, turns the TLS listener on.
    pub tls_cert: Option<PathBuf>,
    /// amqps: the server certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// amqps: the certificate authorities client certificates are verified against (PEM).
    pub tls_ca_cert: Option<PathBuf>,
    /// Port of the TLS listener; 0 disables it.
    pub amqps_port: u16,
    /// Ask TLS clients for a certificate and verify it against `tls_ca_cert` (RabbitMQ's
    /// `verify_peer`); a client without one is still let in unless `tls_fail_if_no_peer_cert`.
    pub tls_verify_peer: bool,
    /// With `tls_verify_peer`: refuse a TLS client that sends no certificate.
    pub tls_fail_if_no_peer_cert: bool,
}

/// RabbitMQ's default `consumer_timeout`: 30 minutes.
pub const CONSUMER_TIMEOUT_DEFAULT_MS: u64 = 30 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MemoryWatermark {
    /// A fraction of the machine's RAM, as RabbitMQ's `vm_memory_high_watermark.relative`.
    Fraction(f64),
    Bytes(u64),
}

impl MemoryWatermark {
    /// `0.4` is a fraction; anything with a unit or above 1 is a size.
    pub fn parse(text: &str) -> Option<MemoryWatermark> {
        match text.parse::<f64>() {
            Ok(fraction) if fraction > 0.0 && fraction <= 1.0 => Some(MemoryWatermark::Fraction(fraction)),
            _ => crate::alarms::parse_size(text).filter(|bytes| *bytes > 0).map(MemoryWatermark::Bytes),
        }
    }

    pub fn bytes(self, total_memory_bytes: u64) -> u64 {
        match self {
            MemoryWatermark::Fraction(fraction) => (total_memory_bytes as f64 * fraction) as u64,
            MemoryWatermark::Bytes(bytes) => bytes,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    UnknownFlag(String),
    MissingValue(String),
    BadValue { flag: String, value: String, why: &'static str },
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownFlag(flag) => write!(f, "unknown flag {flag} (see --help)"),
            ConfigError::MissingValue(flag) => write!(f, "flag {flag} needs a value"),
            ConfigError::BadValue { flag, value, why } => {
                write!(f, "bad value {value:?} for {flag}: {why}")
            }
            ConfigError::Invalid(message) => write!(f, "invalid configuration: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// What the command line asked for.
pub enum Command {
    Serve(Config),
    Help,
    Version,
}

pub const HELP: &str = "\
spatemq: an AMQP 0-9-1 message broker

USAGE:
    spatemq [serve] [FLAGS]
    spatemq bench <scenario> [FLAGS]    load generator for any AMQP 0-9-1 broker (spatemq bench --help)

FLAGS (each also read from the environment as SPATEMQ_<NAME>, flag wins):
    --amqp-port <port>      AMQP port [default: 5672; 0 picks a free port and prints it]
    --bind <address>        address to listen on [default: 0.0.0.0]
    --data-dir <path>       data directory, created if missing [default: ./data]
    --shards <n>            shard threads [default: available cores]
    --pin-cores             pin shard i to core i
    --log-level <level>     error, warn, info or debug [default: info]
    --memory-high-watermark <x>  block publishers above this memory: a fraction of RAM or a size [default: 0.4]
    --disk-free-limit <size>     block publishers below this free disk space [default: 50MB]
    --segment-size <size>        size of a message-log segment file, 64KiB to 1GiB [default: 64MiB]
    --consumer-timeout <ms>      close a channel whose delivery stays unacked this long; 0 disables [default: 1800000]
    --per-shard-listeners   each shard also listens on a port of its own (tests, diagnostics)
    --tls-cert <path>       amqps: server certificate chain (PEM); with --tls-key, turns amqps on
    --tls-key <path>        amqps: the server certificate's private key (PEM)
    --tls-ca-cert <path>    amqps: CA certificates client certificates are checked against (PEM)
    --amqps-port <port>     amqps (AMQP over TLS 1.2/1.3) port; 0 disables [default: 5671]
    --tls-verify-peer       amqps: ask clients for a certificate and verify it (needs --tls-ca-cert)
    --tls-fail-if-no-peer-cert   amqps: refuse clients without a certificate (needs --tls-verify-peer)
    -h, --help              this text
    -V, --version           the version
";

impl Config {
    pub fn defaults() -> Config {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Config {
            amqp_port: 5672,
            bind: IpAddr::from([0, 0, 0, 0]),
            data_dir: PathBuf::from("data"),
            shards: cores,
            pin_cores: false,
            log_level: Level::Info,
            per_shard_listeners: false,
            inject_store_failure_after_bytes: None,
            memory_high_watermark: MemoryWatermark::Fraction(0.4),
            disk_free_limit_bytes: 50_000_000,
            segment_bytes: crate::limits::SEGMENT_BYTES,
            consumer_timeout_ms: Some(CONSUMER_TIMEOUT_DEFAULT_MS),
            tls_cert: None,
            tls_key: None,
            tls_ca_cert: None,
            amqps_port: 5671,
            tls_verify_peer: false,
            tls_fail_if_no_peer_cert: false,
        }
    }

    /// Checks each rule separately so the message names the one that failed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.shards == 0 {
            return Err(ConfigError::Invalid("--shards must be at least 1".into()));
        }
        if self.shards > crate::limits::SHARDS_MAX {
            return Err(ConfigError::Invalid(format!("--shards must be at most {}", crate::limits::SHARDS_MAX)));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid("--data-dir must not be empty".into()));
        }
        if !(crate::limits::SEGMENT_BYTES_MIN..=crate::limits::SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(ConfigError::Invalid("--segment-size must be between 64KiB and 1GiB".into()));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid("--tls-cert and --tls-key go together".into()));
        }
        let tls_option_given = self.tls_ca_cert.is_some() || self.tls_verify_peer || self.tls_fail_if_no_peer_cert;
        if tls_option_given && self.tls_cert.is_none() {
            return Err(ConfigError::Invalid("the --tls-* options need --tls-cert and --tls-key".into()));
        }
        if self.tls_verify_peer && self.tls_ca_cert.is_none() {
            return Err(ConfigError::Invalid("--tls-verify-peer needs --tls-ca-cert".into()));
        }
        if self.tls_fail_if_no_peer_cert && !self.tls_verify_peer {
            return Err(ConfigError::Invalid("--tls-fail-if-no-peer-cert needs --tls-verify-peer".into()));
        }
        // Both listeners set SO_REUSEPORT: on one port the kernel would split clients between
        // plain AMQP and TLS.
        if self.amqps_listener_port().is_some_and(|port| port == self.amqp_port) {
            return Err(ConfigError::Invalid("--amqps-port must differ from --amqp-port".into()));
        }
        Ok(())
    }

    /// The amqps port to listen on: None when TLS is not configured or the port is 0.
    pub fn amqps_listener_port(&self) -> Option<u16> {
        (self.tls_cert.is_some() && self.amqps_port != 0).then_some(self.amqps_port)
    }

    fn apply<'a>(&mut self, flag: &str, value: Option<&'a str>) -> Result<(), ConfigError> {
        let need = |value: Option<&'a str>| value.ok_or_else(|| ConfigError::MissingValue(flag.into()));
        let bad = |value: &str, why| ConfigError::BadValue { flag: flag.into(), value: value.into(), why };
        match flag {
            "--amqp-port" => {
                let text = need(value)?;
                self.amqp_port = text.parse().map_err(|_| bad(text, "expected a port 0-65535"))?;
            }
            "--bind" => {
                let text = need(value)?;
                self.bind = text.parse().map_err(|_| bad(text, "expected an IP address"))?;
            }
            "--data-dir" => self.data_dir = PathBuf::from(need(value)?),
            "--shards" => {
                let text = need(value)?;
                self.shards = text.parse().map_err(|_| bad(text, "expected a positive integer"))?;
            }
            "--log-level" => {
                let text = need(value)?;
                self.log_level = Level::parse(text).ok_or_else(|| bad(text, "expected error, warn, info or debug"))?;
            }
            "--pin-cores" => self.pin_cores = parse_bool(flag, value)?,
            "--memory-high-watermark" => {
                let text = need(value)?;
                self.memory_high_watermark = MemoryWatermark::parse(text)
                    .ok_or_else(|| bad(text, "expected a fraction of RAM (0.4) or a size (512MB, 2GiB)"))?;
            }
            "--disk-free-limit" => {
                let text = need(value)?;
                self.disk_free_limit_bytes =
                    crate::alarms::parse_size(text).ok_or_else(|| bad(text, "expected a size (50MB, 1GiB)"))?;
            }
            "--segment-size" => {
                let text = need(value)?;
                self.segment_bytes =
                    crate::alarms::parse_size(text).ok_or_else(|| bad(text, "expected a size (64MiB, 1GiB)"))?;
            }
            "--consumer-timeout" => {
                let text = need(value)?;
                let timeout_ms: u64 = text.parse().map_err(|_| bad(text, "expected milliseconds (0 disables)"))?;
                self.consumer_timeout_ms = (timeout_ms > 0).then_some(timeout_ms);
            }
            "--inject-store-failure-after-bytes" => {
                let text = need(value)?;
                let bytes = text.parse().map_err(|_| bad(text, "expected a byte count"))?;
                self.inject_store_failure_after_bytes = Some(bytes);
            }
            "--per-shard-listeners" => self.per_shard_listeners = parse_bool(flag, value)?,
            "--tls-cert" => self.tls_cert = Some(PathBuf::from(need(value)?)),
            "--tls-key" => self.tls_key = Some(PathBuf::from(need(value)?)),
            "--tls-ca-cert" => self.tls_ca_cert = Some(PathBuf::from(need(value)?)),
            "--amqps-port" => {
                let text = need(value)?;
                self.amqps_port = text.parse().map_err(|_| bad(text, "expected a port 0-65535 (0 disables amqps)"))?;
            }
            "--tls-verify-peer" => self.tls_verify_peer = parse_bool(flag, value)?,
            "--tls-fail-if-no-peer-cert" => self.tls_fail_if_no_peer_cert = parse_bool(flag, value)?,
            _ => return Err(ConfigError::UnknownFlag(flag.into())),
        }
        Ok(())
    }
}

/// Switches take no value on the command line; from the environment they read true/false.
fn parse_bool(flag: &str, value: Option<&str>) -> Result<bool, ConfigError> {
    match value {
        None => Ok(true),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off" | "") => Ok(false),
        Some(other) => {
            Err(ConfigError::BadValue { flag: flag.into(), value: other.into(), why: "expected true or false" })
        }
    }
}

const SWITCHES: &[&str] = &["--pin-cores", "--per-shard-listeners", "--tls-verify-peer", "--tls-fail-if-no-peer-cert"];
const VALUED: &[&str] = &[
    "--amqp-port",
    "--bind",
    "--data-dir",
    "--shards",
    "--log-level",
    "--memory-high-watermark",
    "--disk-free-limit",
    "--segment-size",
    "--consumer-timeout",
    "--inject-store-failure-after-bytes",
    "--tls-cert",
    "--tls-key",
    "--tls-ca-cert",
    "--amqps-port",
];

/// Parses the command line (without the program name) and the environment.
pub fn parse<I, E>(args: I, env: E) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
    E: Fn(&str) -> Option<String>,
{
    let mut config = Config::defaults();
    for flag in SWITCHES.iter().chain(VALUED) {
        let name = format!("SPATEMQ_{}", flag.trim_start_matches("--").replace('-', "_").to_uppercase());
        if let Some(value) = env(&name) {
            config.apply(flag, Some(&value))?;
        }
    }
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("serve") {
        args.next();
    }
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ if SWITCHES.contains(&flag.as_str()) => config.apply(&flag, inline.as_deref())?,
            _ if VALUED.contains(&flag.as_str()) => {
                let value = match inline {
                    Some(value) => Some(value),
                    None => args.next(),
                };
                config.apply(&flag, value.as_deref())?;
            }
            _ => return Err(ConfigError::UnknownFlag(arg)),
        }
    }
    config.validate()?;
    Ok(Command::Serve(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str], env: &[(&str, &str)]) -> Result<Command, ConfigError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse(args.iter().map(|s| s.to_string()), move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn serve(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse_args(args, env) {
            Ok(Command::Serve(config)) => config,
            _ => panic!("expected a serve command for {args:?}"),
        }
    }

    #[test]
    fn flags_override_environment() {
        let config =
            serve(&["--amqp-port", "0", "--shards=3"], &[("SPATEMQ_AMQP_PORT", "6000"), ("SPATEMQ_SHARDS", "2")]);
        assert_eq!(config.amqp_port, 0);
        assert_eq!(config.shards, 3);
    }

    #[test]
    fn environment_overrides_defaults() {
        let config = serve(&["serve"], &[("SPATEMQ_DATA_DIR", "/x"), ("SPATEMQ_PIN_CORES", "true")]);
        assert_eq!(config.data_dir, PathBuf::from("/x"));
        assert!(config.pin_cores);
        assert_eq!(config.amqp_port, 5672);
    }

    #[test]
    fn zero_shards_is_rejected() {
        assert!(matches!(parse_args(&["--shards", "0"], &[]), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn unknown_flag_and_missing_value_are_errors() {
        assert!(matches!(parse_args(&["--nope"], &[]), Err(ConfigError::UnknownFlag(_))));
        assert!(matches!(parse_args(&["--amqp-port"], &[]), Err(ConfigError::MissingValue(_))));
        assert!(matches!(parse_args(&["--amqp-port", "x"], &[]), Err(ConfigError::BadValue { .. })));
    }

    #[test]
    fn watermarks_take_fractions_and_sizes() {
        let config = serve(&["--memory-high-watermark", "0.5", "--disk-free-limit", "1GiB"], &[]);
        assert_eq!(config.memory_high_watermark, MemoryWatermark::Fraction(0.5));
        assert_eq!(config.disk_free_limit_bytes, 1 << 30);
        let config = serve(&["--memory-high-watermark", "512MB"], &[]);
        assert_eq!(config.memory_high_watermark.bytes(0), 512_000_000);
        assert!(matches!(parse_args(&["--memory-high-watermark", "-1"], &[]), Err(ConfigError::BadValue { .. })));
    }

    #[test]
    fn consumer_timeout_defaults_to_30_minutes_and_0_disables_it() {
        assert_eq!(serve(&[], &[]).consumer_timeout_ms, Some(1_800_000));
        assert_eq!(serve(&["--consumer-timeout", "500"], &[]).consumer_timeout_ms, Some(500));
        assert_eq!(serve(&[], &[("SPATEMQ_CONSUMER_TIMEOUT", "0")]).consumer_timeout_ms, None);
        assert!(matches!(parse_args(&["--consumer-timeout", "-1"], &[]), Err(ConfigError::BadValue { .. })));
        assert!(matches!(parse_args(&["--consumer-timeout", "30m"], &[]), Err(ConfigError::BadValue { .. })));
    }

    #[test]
    fn tls_flags_and_their_environment_twins() {
        let config = serve(
            &["--tls-cert", "server.pem", "--tls-key=server.key", "--tls-verify-peer", "--amqps-port", "5999"],
            &[("SPATEMQ_TLS_CA_CERT", "ca.pem"), ("SPATEMQ_TLS_FAIL_IF_NO_PEER_CERT", "true")],
        );
        assert_eq!(config.tls_cert, Some(PathBuf::from("server.pem")));
        assert_eq!(config.tls_key, Some(PathBuf::from("server.key")));
        assert_eq!(config.tls_ca_cert, Some(PathBuf::from("ca.pem")));
        assert!(config.tls_verify_peer && config.tls_fail_if_no_peer_cert);
        assert_eq!(config.amqps_listener_port(), Some(5999));
        let plain = serve(&[], &[]);
        assert_eq!((plain.amqps_port, plain.amqps_listener_port()), (5671, None));
        let disabled = serve(&["--tls-cert", "c", "--tls-key", "k", "--amqps-port", "0"], &[]);
        assert_eq!(disabled.amqps_listener_port(), None);
    }

    #[test]
    fn tls_options_that_cannot_work_are_refused() {
        let invalid = |args: &[&str]| match parse_args(args, &[]) {
            Err(ConfigError::Invalid(message)) => message,
            _ => panic!("expected an invalid configuration for {args:?}"),
        };
        assert_eq!(invalid(&["--tls-cert", "c"]), "--tls-cert and --tls-key go together");
        assert_eq!(invalid(&["--tls-key", "k"]), "--tls-cert and --tls-key go together");
        assert_eq!(invalid(&["--tls-ca-cert", "ca"]), "the --tls-* options need --tls-cert and --tls-key");
        assert_eq!(
            invalid(&["--tls-cert", "c", "--tls-key", "k", "--tls-verify-peer"]),
            "--tls-verify-peer needs --tls-ca-cert"
        );
        assert_eq!(
            invalid(&["--tls-cert", "c", "--tls-key", "k", "--tls-ca-cert", "ca", "--tls-fail-if-no-peer-cert"]),
            "--tls-fail-if-no-peer-cert needs --tls-verify-peer"
        );
        assert!(matches!(parse_args(&["--amqps-port", "70000"], &[]), Err(ConfigError::BadValue { .. })));
        assert_eq!(
            invalid(&["--tls-cert", "c", "--tls-key", "k", "--amqp-port", "5999", "--amqps-port", "5999"]),
            "--amqps-port must differ from --amqp-port"
        );
        assert!(matches!(parse_args(&["--amqp-port", "5671", "--amqps-port", "5671"], &[]), Ok(Command::Serve(_))));
    }

    #[test]
    fn help_wins() {
        assert!(matches!(parse_args(&["--shards", "2", "--help"], &[]), Ok(Command::Help)));
    }
}
