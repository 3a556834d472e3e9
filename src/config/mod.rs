//! Broker configuration: command-line flags over `SPATEMQ_*` environment variables over the
//! config file (`--config FILE`, TOML) over defaults, then `validate()` with one check per rule.
//!
//! `settings.rs` declares every setting once, for clap (flag and environment twin) and serde
//! (file key); `values.rs` parses values the same way for all three; `file.rs` reads the file
//! and says which line is wrong. This module stacks the layers and fills in the defaults.

mod file;
mod settings;
mod values;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};

use crate::limits::{CHANNEL_MAX, HANDSHAKE_TIMEOUT_MS, MESSAGE_BODY_MAX_BYTES, MESSAGE_BODY_MAX_BYTES_LIMIT};
use crate::logging::Level;
pub use settings::Settings;
pub use values::{IoDriver, MemoryWatermark};

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub amqp_port: u16,
    /// The addresses to listen on, each on `amqp_port`.
    pub bind: Bind,
    pub data_dir: PathBuf,
    pub shards: usize,
    pub pin_cores: bool,
    pub io_driver: IoDriver,
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
    /// Test hook: every group-commit fdatasync is followed by this long a pause.
    pub inject_sync_delay_ms: Option<u64>,
    /// How long a delivery may stay unacknowledged before its channel is closed (RabbitMQ's
    /// `consumer_timeout`); queue and consumer `x-consumer-timeout` arguments override it.
    /// None: no broker-wide timeout.
    pub consumer_timeout_ms: Option<u64>,
    /// Largest message body accepted (RabbitMQ's `max_message_size`); a bigger one closes its
    /// channel with 406 once its last frame is in.
    pub max_message_size: u32,
    /// Channels per connection offered in connection.tune (RabbitMQ's `channel_max`).
    pub channel_max: u16,
    /// Open connections the node accepts (RabbitMQ's `connection_max`); None: no limit.
    pub max_connections: Option<u32>,
    /// A connection that has not finished connection.open within this time is closed
    /// (RabbitMQ's `handshake_timeout`).
    pub handshake_timeout_ms: u64,
    /// The user, password and virtual host a fresh broker starts with.
    pub default_user: String,
    pub default_pass: String,
    pub default_vhost: String,
    /// RabbitMQ definitions (JSON) imported at start.
    pub definitions: Option<PathBuf>,
    /// AMQPS: the server's certificate chain and key (both or neither), the CA that client
    /// certificates are checked against, the port (0: none), and what is asked of clients.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca_cert: Option<PathBuf>,
    pub amqps_port: u16,
    pub tls_verify_peer: bool,
    pub tls_fail_if_no_peer_cert: bool,
    /// The management HTTP API's port (0: none) and address.
    pub management_port: u16,
    pub management_bind: IpAddr,
    /// The Prometheus metrics endpoint's port (0: none) and address.
    pub prometheus_port: u16,
    pub prometheus_bind: IpAddr,
}

/// Where the AMQP listeners are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    /// RabbitMQ's default: `0.0.0.0` and `::` (with IPV6_V6ONLY, so the two do not collide);
    /// IPv4 alone when the host has IPv6 disabled.
    DualStack,
    /// Exactly these addresses.
    Addresses(Vec<IpAddr>),
}

impl Bind {
    /// The addresses to listen on, the IPv4 wildcard first in the default so the first
    /// listening line printed is one that 127.0.0.1 reaches.
    pub fn addresses(&self) -> Vec<IpAddr> {
        match self {
            Bind::DualStack => vec![IpAddr::from([0, 0, 0, 0]), IpAddr::from([0u16; 8])],
            Bind::Addresses(addresses) => addresses.clone(),
        }
    }
}

/// RabbitMQ's default `consumer_timeout`: 30 minutes.
pub const CONSUMER_TIMEOUT_DEFAULT_MS: u64 = 30 * 60 * 1000;
/// RabbitMQ's management HTTP port.
pub const MANAGEMENT_PORT_DEFAULT: u16 = 15672;
/// rabbitmq_prometheus's port.
pub const PROMETHEUS_PORT_DEFAULT: u16 = 15692;
/// RabbitMQ's AMQPS port.
pub const AMQPS_PORT_DEFAULT: u16 = 5671;
/// The longest user or vhost name: both travel as AMQP short strings.
const SHORT_STRING_MAX_BYTES: usize = 255;

#[derive(Debug)]
pub enum ConfigError {
    /// A flag or environment variable clap refused; its message names it.
    Usage(clap::Error),
    /// The config file could not be read, or a line of it is wrong.
    File { path: PathBuf, line: Option<usize>, message: String },
    /// Settings that cannot go together or are out of range.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Usage(error) => {
                let text = error.render().to_string();
                f.write_str(text.trim_end().strip_prefix("error: ").unwrap_or(text.trim_end()))
            }
            ConfigError::File { path, line: Some(line), message } => {
                write!(f, "config file {}, line {line}: {message}", path.display())
            }
            ConfigError::File { path, line: None, message } => write!(f, "config file {}: {message}", path.display()),
            ConfigError::Invalid(message) => write!(f, "invalid configuration: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One validation rule: the sentence that explains a violation.
type Rule = fn(&Config) -> Result<(), String>;

/// What the command line asked for.
pub enum Command {
    Serve(Box<Config>),
    /// `--help` or `--version`: print this and exit successfully.
    Show(String),
}

impl Config {
    /// The amqps port to listen on: None when TLS is not configured or the port is 0.
    pub fn amqps_listener_port(&self) -> Option<u16> {
        (self.tls_cert.is_some() && self.amqps_port != 0).then_some(self.amqps_port)
    }
}

impl Config {
    pub fn defaults() -> Config {
        Config::from_settings(Settings::default())
    }

    /// Each setting as given, else its default.
    fn from_settings(settings: Settings) -> Config {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Config {
            amqp_port: settings.amqp_port.unwrap_or(5672),
            bind: settings.bind.map_or(Bind::DualStack, Bind::Addresses),
            data_dir: settings.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            shards: settings.shards.unwrap_or(cores),
            pin_cores: settings.pin_cores.unwrap_or(false),
            io_driver: settings.io_driver.unwrap_or(IoDriver::Auto),
            log_level: settings.log_level.unwrap_or(Level::Info),
            per_shard_listeners: settings.per_shard_listeners.unwrap_or(false),
            memory_high_watermark: settings.memory_high_watermark.unwrap_or(MemoryWatermark::Fraction(0.4)),
            disk_free_limit_bytes: settings.disk_free_limit.unwrap_or(50_000_000),
            segment_bytes: settings.segment_size.unwrap_or(crate::limits::SEGMENT_BYTES),
            inject_store_failure_after_bytes: settings.inject_store_failure_after_bytes,
            inject_sync_delay_ms: settings.inject_sync_delay_ms,
            consumer_timeout_ms: match settings.consumer_timeout {
                Some(0) => None,
                Some(timeout_ms) => Some(timeout_ms),
                None => Some(CONSUMER_TIMEOUT_DEFAULT_MS),
            },
            // Out of range is refused by validate(); saturate here so it can say what was given.
            max_message_size: settings
                .max_message_size
                .map_or(MESSAGE_BODY_MAX_BYTES as u32, |bytes| u32::try_from(bytes).unwrap_or(u32::MAX)),
            channel_max: settings.channel_max.unwrap_or(CHANNEL_MAX),
            max_connections: settings.max_connections,
            handshake_timeout_ms: settings.handshake_timeout.unwrap_or(HANDSHAKE_TIMEOUT_MS),
            default_user: settings.default_user.unwrap_or_else(|| "guest".into()),
            default_pass: settings.default_pass.unwrap_or_else(|| "guest".into()),
            default_vhost: settings.default_vhost.unwrap_or_else(|| "/".into()),
            definitions: settings.definitions,
            tls_cert: settings.tls_cert,
            tls_key: settings.tls_key,
            tls_ca_cert: settings.tls_ca_cert,
            amqps_port: settings.amqps_port.unwrap_or(AMQPS_PORT_DEFAULT),
            tls_verify_peer: settings.tls_verify_peer.unwrap_or(false),
            tls_fail_if_no_peer_cert: settings.tls_fail_if_no_peer_cert.unwrap_or(false),
            management_port: settings.management_port.unwrap_or(MANAGEMENT_PORT_DEFAULT),
            management_bind: settings.management_bind.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            prometheus_port: settings.prometheus_port.unwrap_or(PROMETHEUS_PORT_DEFAULT),
            prometheus_bind: settings.prometheus_bind.unwrap_or(IpAddr::from([0, 0, 0, 0])),
        }
    }

    /// True when AMQPS is configured (a certificate and its key).
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// Checks each rule separately so the message names the one that failed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rules: [Rule; 9] = [
            Config::check_shards,
            Config::check_data_dir,
            Config::check_segment_size,
            Config::check_bind,
            Config::check_connection_limits,
            Config::check_max_message_size,
            Config::check_defaults,
            Config::check_tls,
            Config::check_management,
        ];
        rules.iter().try_for_each(|rule| rule(self).map_err(ConfigError::Invalid))
    }

    fn check_shards(&self) -> Result<(), String> {
        if self.shards == 0 {
            return Err("--shards must be at least 1".into());
        }
        if self.shards > crate::limits::SHARDS_MAX {
            return Err(format!("--shards must be at most {}", crate::limits::SHARDS_MAX));
        }
        Ok(())
    }

    fn check_data_dir(&self) -> Result<(), String> {
        if self.data_dir.as_os_str().is_empty() {
            return Err("--data-dir must not be empty".into());
        }
        Ok(())
    }

    fn check_segment_size(&self) -> Result<(), String> {
        if !(crate::limits::SEGMENT_BYTES_MIN..=crate::limits::SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err("--segment-size must be between 64KiB and 1GiB".into());
        }
        Ok(())
    }

    /// No address twice, and no address beside the wildcard of its own family, which already
    /// covers it (the second bind would fail with "address in use").
    fn check_bind(&self) -> Result<(), String> {
        let Bind::Addresses(addresses) = &self.bind else { return Ok(()) };
        if addresses.is_empty() {
            return Err("--bind needs at least one address".into());
        }
        for (index, address) in addresses.iter().enumerate() {
            if addresses[..index].contains(address) {
                return Err(format!("--bind lists {address} twice"));
            }
            let covered_by = addresses
                .iter()
                .find(|other| other.is_unspecified() && *other != address && other.is_ipv4() == address.is_ipv4());
            if let Some(wildcard) = covered_by {
                return Err(format!("--bind lists {address} beside {wildcard}, which already covers it"));
            }
        }
        Ok(())
    }

    fn check_connection_limits(&self) -> Result<(), String> {
        if self.channel_max == 0 {
            return Err("--channel-max must be between 1 and 65535".into());
        }
        if self.max_connections == Some(0) {
            return Err("--max-connections must be at least 1 (leave it out for no limit)".into());
        }
        if self.handshake_timeout_ms == 0 {
            return Err("--handshake-timeout must be at least 1 ms".into());
        }
        Ok(())
    }

    fn check_max_message_size(&self) -> Result<(), String> {
        if self.max_message_size == 0 || u64::from(self.max_message_size) > MESSAGE_BODY_MAX_BYTES_LIMIT {
            return Err("--max-message-size must be between 1 byte and 512MiB (536870912 bytes), as in RabbitMQ".into());
        }
        Ok(())
    }

    fn check_defaults(&self) -> Result<(), String> {
        for (flag, name) in [("--default-user", &self.default_user), ("--default-vhost", &self.default_vhost)] {
            if name.is_empty() {
                return Err(format!("{flag} must not be empty"));
            }
            if name.len() > SHORT_STRING_MAX_BYTES {
                return Err(format!("{flag} must be at most {SHORT_STRING_MAX_BYTES} bytes"));
            }
        }
        Ok(())
    }

    fn check_management(&self) -> Result<(), String> {
        let taken = [("--amqp-port", self.amqp_port), ("--amqps-port", self.amqps_listener_port().unwrap_or(0))];
        for (flag, port) in taken {
            if self.management_port != 0 && self.management_port == port {
                return Err(format!("--management-port and {flag} are both {port}: they need ports of their own"));
            }
        }
        let taken = [
            ("--amqp-port", self.amqp_port),
            ("--amqps-port", self.amqps_listener_port().unwrap_or(0)),
            ("--management-port", self.management_port),
        ];
        for (flag, port) in taken {
            if self.prometheus_port != 0 && self.prometheus_port == port {
                return Err(format!("--prometheus-port and {flag} are both {port}: they need ports of their own"));
            }
        }
        Ok(())
    }

    fn check_tls(&self) -> Result<(), String> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("--tls-cert and --tls-key go together: give both or neither".into());
        }
        if self.tls_ca_cert.is_some() && !self.tls_enabled() {
            return Err("--tls-ca-cert needs --tls-cert and --tls-key (without them TLS is off)".into());
        }
        if self.tls_verify_peer && self.tls_ca_cert.is_none() {
            return Err("--tls-verify-peer needs --tls-ca-cert to check client certificates against".into());
        }
        if self.tls_fail_if_no_peer_cert && !self.tls_verify_peer {
            return Err("--tls-fail-if-no-peer-cert needs --tls-verify-peer".into());
        }
        if self.tls_enabled() && self.amqps_port != 0 && self.amqps_port == self.amqp_port {
            return Err(format!(
                "--amqps-port and --amqp-port are both {}: they need ports of their own",
                self.amqp_port
            ));
        }
        Ok(())
    }
}

/// Parses the command line (without the program name; a leading `serve` is skipped) with the
/// environment, then the config file it names, and validates the result.
/// The `data_dir` a config file names, if any (`spatemq ctl --config FILE` finds the broker's
/// control socket with it).
pub fn data_dir_in_file(path: &std::path::Path) -> Result<Option<PathBuf>, ConfigError> {
    Ok(file::read(path)?.data_dir)
}

pub fn parse<I>(args: I) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
{
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("serve") {
        args.next();
    }
    let matches = match Settings::command().try_get_matches_from(std::iter::once("spatemq".to_string()).chain(args)) {
        Ok(matches) => matches,
        Err(error) if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let text = error.render().to_string();
            return Ok(Command::Show(if text.ends_with('\n') { text } else { text + "\n" }));
        }
        Err(error) => return Err(ConfigError::Usage(error)),
    };
    let flags = Settings::from_arg_matches(&matches).map_err(ConfigError::Usage)?;
    let from_file = flags.config.as_deref().map(file::read).transpose()?;
    let settings = match from_file {
        Some(from_file) => flags.over(from_file),
        None => flags,
    };
    let config = Config::from_settings(settings);
    config.validate()?;
    Ok(Command::Serve(Box::new(config)))
}

#[cfg(test)]
mod tests;
