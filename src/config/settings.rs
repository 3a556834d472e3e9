//! The broker's settings as one layer gives them: the command line with its `SPATEMQ_*`
//! environment twins (clap), or the config file (serde). Every setting is optional here, so
//! the layers stack, flag over environment over file, before `Config` fills in the defaults.
//!
//! One struct serves both layers, so a flag and its file key cannot drift apart: the key is
//! the field name, the snake_case of the flag (`--amqp-port` ↔ `amqp_port`), and both read
//! their values with the same parsers (`values.rs`).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};
use serde::Deserialize;

use super::values::{self, MemoryWatermark};
use crate::logging::Level;

/// Shown by `--help` under the flags.
const AFTER_HELP: &str = "\
Every flag is also read from the environment as SPATEMQ_<NAME> (SPATEMQ_AMQP_PORT) and from the
config file as the key <name> (amqp_port = 5672); a flag wins over the environment, which wins
over the file. spatemq.example.toml lists every key with its default.

Other commands:
    spatemq bench <scenario> [FLAGS]    load generator for any AMQP 0-9-1 broker (spatemq bench --help)";

#[derive(Parser, Deserialize, Debug, Default, Clone, PartialEq)]
#[command(
    name = "spatemq",
    version,
    about = "spatemq: an AMQP 0-9-1 message broker",
    override_usage = "spatemq [serve] [FLAGS]",
    after_help = AFTER_HELP,
    allow_negative_numbers = true,
    max_term_width = 100
)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Read settings from this TOML file (see spatemq.example.toml)
    #[arg(long, env = "SPATEMQ_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// AMQP port; 0 picks a free port and prints it [default: 5672]
    #[arg(long, env = "SPATEMQ_AMQP_PORT", value_name = "PORT")]
    pub amqp_port: Option<u16>,

    /// Address to listen on, IPv4 or IPv6; repeat it or separate with commas for several
    /// [default: 0.0.0.0 and :: (IPv6 only), or 0.0.0.0 alone on a host without IPv6]
    #[arg(
        long,
        env = "SPATEMQ_BIND",
        value_name = "ADDRESS",
        value_delimiter = ',',
        action = ArgAction::Append,
        value_parser = values::ip_address
    )]
    #[serde(default, deserialize_with = "values::file::ip_addresses")]
    pub bind: Option<Vec<IpAddr>>,

    /// Data directory, created (mode 0700) if missing [default: ./data]
    #[arg(long, env = "SPATEMQ_DATA_DIR", value_name = "PATH")]
    pub data_dir: Option<PathBuf>,

    /// Shard threads [default: available cores]
    #[arg(long, env = "SPATEMQ_SHARDS", value_name = "N")]
    pub shards: Option<usize>,

    /// Pin shard i to core i
    #[arg(
        long,
        env = "SPATEMQ_PIN_CORES",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub pin_cores: Option<bool>,

    /// auto, io_uring or epoll: the shards' I/O driver; auto takes io_uring where the kernel
    /// allows it [default: auto]
    #[arg(long, env = "SPATEMQ_IO_DRIVER", value_name = "DRIVER", value_parser = values::io_driver)]
    #[serde(default, deserialize_with = "values::file::io_driver")]
    pub io_driver: Option<values::IoDriver>,

    /// error, warn, info or debug [default: info]
    #[arg(long, env = "SPATEMQ_LOG_LEVEL", value_name = "LEVEL", value_parser = values::log_level)]
    #[serde(default, deserialize_with = "values::file::log_level")]
    pub log_level: Option<Level>,

    /// Block publishers above this memory: a fraction of RAM or a size [default: 0.4]
    #[arg(long, env = "SPATEMQ_MEMORY_HIGH_WATERMARK", value_name = "X", value_parser = values::memory_watermark)]
    #[serde(default, deserialize_with = "values::file::memory_watermark")]
    pub memory_high_watermark: Option<MemoryWatermark>,

    /// Block publishers below this free disk space [default: 50MB]
    #[arg(long, env = "SPATEMQ_DISK_FREE_LIMIT", value_name = "SIZE", value_parser = values::size)]
    #[serde(default, deserialize_with = "values::file::size")]
    pub disk_free_limit: Option<u64>,

    /// Size of a message-log segment file, 64KiB to 1GiB [default: 64MiB]
    #[arg(long, env = "SPATEMQ_SEGMENT_SIZE", value_name = "SIZE", value_parser = values::size)]
    #[serde(default, deserialize_with = "values::file::size")]
    pub segment_size: Option<u64>,

    /// Close a channel whose delivery stays unacked this long (ms); 0 disables [default: 1800000]
    #[arg(long, env = "SPATEMQ_CONSUMER_TIMEOUT", value_name = "MS")]
    pub consumer_timeout: Option<u64>,

    /// Each shard also listens on a port of its own (tests, diagnostics)
    #[arg(
        long,
        env = "SPATEMQ_PER_SHARD_LISTENERS",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub per_shard_listeners: Option<bool>,

    /// Largest message body accepted, at most 512MiB; a bigger one closes its channel with 406
    /// [default: 128MiB]
    #[arg(long, env = "SPATEMQ_MAX_MESSAGE_SIZE", value_name = "SIZE", value_parser = values::size)]
    #[serde(default, deserialize_with = "values::file::size")]
    pub max_message_size: Option<u64>,

    /// Channels per connection offered in connection.tune, 1 to 65535 [default: 2047]
    #[arg(long, env = "SPATEMQ_CHANNEL_MAX", value_name = "N")]
    pub channel_max: Option<u16>,

    /// Open connections the broker accepts; one more is refused with 530 at connection.open
    /// [default: no limit]
    #[arg(long, env = "SPATEMQ_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<u32>,

    /// A connection that has not completed connection.open within this time is closed (ms)
    /// [default: 10000]
    #[arg(long, env = "SPATEMQ_HANDSHAKE_TIMEOUT", value_name = "MS")]
    pub handshake_timeout: Option<u64>,

    /// User created at first start [default: guest]
    #[arg(long, env = "SPATEMQ_DEFAULT_USER", value_name = "NAME")]
    pub default_user: Option<String>,

    /// Password of the default user [default: guest]
    #[arg(long, env = "SPATEMQ_DEFAULT_PASS", value_name = "PASSWORD", hide_env_values = true)]
    pub default_pass: Option<String>,

    /// Virtual host created at first start [default: /]
    #[arg(long, env = "SPATEMQ_DEFAULT_VHOST", value_name = "NAME")]
    pub default_vhost: Option<String>,

    /// RabbitMQ definitions (JSON) to import at start
    #[arg(long, env = "SPATEMQ_DEFINITIONS", value_name = "FILE")]
    pub definitions: Option<PathBuf>,

    /// TLS: the server's certificate chain (PEM); with --tls-key, turns on AMQPS
    #[arg(long, env = "SPATEMQ_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// TLS: the server's private key (PEM)
    #[arg(long, env = "SPATEMQ_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// TLS: CA certificates (PEM) that client certificates are checked against
    #[arg(long, env = "SPATEMQ_TLS_CA_CERT", value_name = "FILE")]
    pub tls_ca_cert: Option<PathBuf>,

    /// AMQPS (AMQP over TLS) port; 0 disables it [default: 5671]
    #[arg(long, env = "SPATEMQ_AMQPS_PORT", value_name = "PORT")]
    pub amqps_port: Option<u16>,

    /// TLS: ask clients for a certificate and check it (needs --tls-ca-cert)
    #[arg(
        long,
        env = "SPATEMQ_TLS_VERIFY_PEER",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub tls_verify_peer: Option<bool>,

    /// TLS: refuse clients without a certificate (needs --tls-verify-peer)
    #[arg(
        long,
        env = "SPATEMQ_TLS_FAIL_IF_NO_PEER_CERT",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub tls_fail_if_no_peer_cert: Option<bool>,

    /// Management HTTP API port (rabbitmqadmin, curl); 0 disables it [default: 15672]
    #[arg(long, env = "SPATEMQ_MANAGEMENT_PORT", value_name = "PORT")]
    pub management_port: Option<u16>,

    /// Address the management HTTP API listens on [default: 0.0.0.0]
    #[arg(long, env = "SPATEMQ_MANAGEMENT_BIND", value_name = "ADDRESS", value_parser = values::ip_address)]
    pub management_bind: Option<IpAddr>,

    /// Prometheus metrics port (/metrics, /metrics/per-object); 0 disables it [default: 15692]
    #[arg(long, env = "SPATEMQ_PROMETHEUS_PORT", value_name = "PORT")]
    pub prometheus_port: Option<u16>,

    /// Address the Prometheus metrics endpoint listens on [default: 0.0.0.0]
    #[arg(long, env = "SPATEMQ_PROMETHEUS_BIND", value_name = "ADDRESS", value_parser = values::ip_address)]
    pub prometheus_bind: Option<IpAddr>,

    /// Test hook: the message store fails every write after this many bytes.
    #[arg(long, env = "SPATEMQ_INJECT_STORE_FAILURE_AFTER_BYTES", value_name = "BYTES", hide = true)]
    pub inject_store_failure_after_bytes: Option<u64>,

    /// Test hook: every group-commit fdatasync takes this much longer (a slow disk).
    #[arg(long, env = "SPATEMQ_INJECT_SYNC_DELAY_MS", value_name = "MS", hide = true)]
    pub inject_sync_delay_ms: Option<u64>,
}

impl Settings {
    /// This layer over `lower`: each setting from `self` where it has one, else from `lower`.
    pub fn over(self, lower: Settings) -> Settings {
        macro_rules! each_from_self_else_lower {
            ($($field:ident),* $(,)?) => {
                Settings { $($field: self.$field.or(lower.$field)),* }
            };
        }
        // A field left out of this list does not compile: the struct literal needs them all.
        each_from_self_else_lower!(
            config,
            amqp_port,
            bind,
            data_dir,
            shards,
            pin_cores,
            io_driver,
            log_level,
            memory_high_watermark,
            disk_free_limit,
            segment_size,
            consumer_timeout,
            per_shard_listeners,
            max_message_size,
            channel_max,
            max_connections,
            handshake_timeout,
            default_user,
            default_pass,
            default_vhost,
            definitions,
            tls_cert,
            tls_key,
            tls_ca_cert,
            amqps_port,
            tls_verify_peer,
            tls_fail_if_no_peer_cert,
            management_port,
            management_bind,
            prometheus_port,
            prometheus_bind,
            inject_store_failure_after_bytes,
            inject_sync_delay_ms,
        )
    }
}
