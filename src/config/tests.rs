//! Tests of the configuration layers: each precedence rule, the config file's errors with
//! their lines, the example file shipped at the repository root, and each validation rule.
//!
//! clap reads the environment of the process, so the tests that set `SPATEMQ_*` variables
//! hold `ENVIRONMENT` while they do: no two tests see each other's variables.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::error::ErrorKind;

use super::*;

static ENVIRONMENT: Mutex<()> = Mutex::new(());

const EXAMPLE: &str = include_str!("../../spatemq.example.toml");

/// Parses `args` with exactly the `SPATEMQ_*` variables of `env` set.
fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Command, ConfigError> {
    let _guard = ENVIRONMENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let ours: Vec<String> =
        std::env::vars().map(|(name, _)| name).filter(|name| name.starts_with("SPATEMQ_")).collect();
    for name in ours {
        std::env::remove_var(name);
    }
    for (name, value) in env {
        std::env::set_var(name, value);
    }
    let result = parse(args.iter().map(|arg| arg.to_string()));
    for (name, _) in env {
        std::env::remove_var(name);
    }
    result
}

fn serve(args: &[&str], env: &[(&str, &str)]) -> Config {
    match parse_with(args, env) {
        Ok(Command::Serve(config)) => *config,
        Ok(Command::Show(text)) => panic!("{args:?} printed {text}"),
        Err(error) => panic!("{args:?} was refused: {error}"),
    }
}

fn refused(args: &[&str], env: &[(&str, &str)]) -> ConfigError {
    match parse_with(args, env) {
        Err(error) => error,
        Ok(_) => panic!("{args:?} with {env:?} was accepted"),
    }
}

fn usage_kind(args: &[&str]) -> ErrorKind {
    match refused(args, &[]) {
        ConfigError::Usage(error) => error.kind(),
        other => panic!("{args:?}: expected a usage error, got {other}"),
    }
}

/// A config file with `text`, removed when dropped.
struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    fn new(name: &str, text: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!("spatemq-config-{name}-{}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write the config file");
        ConfigFile { path }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn file_error(text: &str) -> (Option<usize>, String) {
    match file::parse(Path::new("test.toml"), text) {
        Err(ConfigError::File { line, message, .. }) => (line, message),
        Err(other) => panic!("expected a file error, got {other}"),
        Ok(settings) => panic!("{text:?} was accepted: {settings:?}"),
    }
}

// Precedence: flag > environment > file > default.

#[test]
fn defaults_apply_when_nothing_is_given() {
    let config = serve(&[], &[]);
    assert_eq!(config, Config::defaults());
    assert_eq!(config.amqp_port, 5672);
    assert_eq!(config.bind, Bind::DualStack);
    assert_eq!(config.data_dir, PathBuf::from("data"));
    assert_eq!(config.consumer_timeout_ms, Some(1_800_000));
    assert_eq!((config.channel_max, config.max_message_size), (2047, 134_217_728));
    assert_eq!((config.max_connections, config.handshake_timeout_ms), (None, 10_000));
    assert_eq!(
        (config.default_user.as_str(), config.default_pass.as_str(), config.default_vhost.as_str()),
        ("guest", "guest", "/")
    );
    assert_eq!((config.amqps_port, config.tls_enabled()), (5671, false));
}

#[test]
fn a_flag_wins_over_the_environment() {
    let config = serve(&["--amqp-port", "0", "--shards=3"], &[("SPATEMQ_AMQP_PORT", "6000"), ("SPATEMQ_SHARDS", "2")]);
    assert_eq!((config.amqp_port, config.shards), (0, 3));
}

#[test]
fn the_environment_wins_over_the_file() {
    let file = ConfigFile::new("env-over-file", "amqp_port = 6001\nchannel_max = 100\n");
    let config = serve(&["--config", file.path()], &[("SPATEMQ_AMQP_PORT", "6002")]);
    assert_eq!(config.amqp_port, 6002, "the environment wins");
    assert_eq!(config.channel_max, 100, "the file's other keys stay");
}

#[test]
fn a_flag_wins_over_the_file() {
    let file = ConfigFile::new("flag-over-file", "amqp_port = 6001\nlog_level = \"debug\"\n");
    let config = serve(&["--config", file.path(), "--amqp-port", "6003"], &[]);
    assert_eq!((config.amqp_port, config.log_level), (6003, Level::Debug));
}

#[test]
fn the_file_wins_over_the_defaults() {
    let file = ConfigFile::new(
        "file-over-defaults",
        "data_dir = \"/var/lib/spatemq\"\nbind = [\"::1\", \"127.0.0.1\"]\npin_cores = true\n\
         memory_high_watermark = \"0.5\"\ndisk_free_limit = \"1GiB\"\nmax_message_size = 1048576\n\
         consumer_timeout = 0\nmax_connections = 10\n",
    );
    let config = serve(&[], &[("SPATEMQ_CONFIG", file.path())]);
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/spatemq"));
    let expected: Vec<IpAddr> = vec!["::1".parse().expect("ip"), "127.0.0.1".parse().expect("ip")];
    assert_eq!(config.bind, Bind::Addresses(expected));
    assert!(config.pin_cores);
    assert_eq!(config.memory_high_watermark, MemoryWatermark::Fraction(0.5));
    assert_eq!(config.disk_free_limit_bytes, 1 << 30);
    assert_eq!(config.max_message_size, 1 << 20);
    assert_eq!(config.consumer_timeout_ms, None, "0 disables it, as on the command line");
    assert_eq!(config.max_connections, Some(10));
}

#[test]
fn the_environment_wins_over_the_defaults() {
    let config = serve(&["serve"], &[("SPATEMQ_DATA_DIR", "/x"), ("SPATEMQ_PIN_CORES", "true")]);
    assert_eq!(config.data_dir, PathBuf::from("/x"));
    assert!(config.pin_cores);
    assert_eq!(config.amqp_port, 5672);
}

#[test]
fn switches_take_an_optional_value_on_the_command_line_and_a_boolean_elsewhere() {
    assert!(serve(&["--pin-cores"], &[]).pin_cores);
    assert!(!serve(&["--pin-cores=false"], &[("SPATEMQ_PIN_CORES", "true")]).pin_cores);
    assert!(!serve(&[], &[("SPATEMQ_PIN_CORES", "0")]).pin_cores);
    let file = ConfigFile::new("switch", "per_shard_listeners = true\n");
    assert!(!serve(&["--config", file.path(), "--per-shard-listeners=no"], &[]).per_shard_listeners);
    assert!(serve(&["--config", file.path()], &[]).per_shard_listeners);
}

#[test]
fn the_io_driver_comes_from_a_flag_the_environment_or_the_file() {
    assert_eq!(serve(&[], &[]).io_driver, IoDriver::Auto);
    assert_eq!(serve(&["--io-driver", "epoll"], &[]).io_driver, IoDriver::Epoll);
    assert_eq!(serve(&["--io-driver", "io_uring"], &[("SPATEMQ_IO_DRIVER", "epoll")]).io_driver, IoDriver::IoUring);
    assert_eq!(serve(&[], &[("SPATEMQ_IO_DRIVER", "EPOLL")]).io_driver, IoDriver::Epoll);
    let file = ConfigFile::new("driver", "io_driver = \"io_uring\"\n");
    assert_eq!(serve(&["--config", file.path()], &[]).io_driver, IoDriver::IoUring);
    let message = refused(&["--io-driver", "kqueue"], &[]).to_string();
    assert!(message.contains("expected auto, io_uring or epoll"), "{message}");
    let file = ConfigFile::new("bad-driver", "io_driver = 3\n");
    let message = refused(&["--config", file.path()], &[]).to_string();
    assert!(message.contains("line 1") && message.contains("expected auto, io_uring or epoll"), "{message}");
}

#[test]
fn bind_repeats_and_takes_commas_and_brackets() {
    let config = serve(&["--bind", "127.0.0.1", "--bind", "[::1]"], &[]);
    assert_eq!(config.bind.addresses(), vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1])]);
    let config = serve(&[], &[("SPATEMQ_BIND", "::,0.0.0.0")]);
    assert_eq!(config.bind.addresses(), vec![IpAddr::from([0u16; 8]), IpAddr::from([0, 0, 0, 0])]);
    let file = ConfigFile::new("bind-string", "bind = \"::1,127.0.0.1\"\n");
    assert_eq!(serve(&["--config", file.path()], &[]).bind.addresses().len(), 2);
    assert_eq!(Bind::DualStack.addresses(), vec![IpAddr::from([0, 0, 0, 0]), IpAddr::from([0u16; 8])]);
}

// The command line's errors.

#[test]
fn unknown_flags_missing_and_bad_values_are_usage_errors() {
    assert_eq!(usage_kind(&["--nope"]), ErrorKind::UnknownArgument);
    assert_eq!(usage_kind(&["--amqp-port"]), ErrorKind::InvalidValue);
    assert_eq!(usage_kind(&["--amqp-port", "x"]), ErrorKind::ValueValidation);
    assert_eq!(usage_kind(&["--bind", "localhost"]), ErrorKind::ValueValidation);
    let message = refused(&["--amqp-prot", "1"], &[]).to_string();
    assert!(message.contains("--amqp-prot") && message.contains("--amqp-port"), "names it and suggests: {message}");
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let message = refused(&[], &[("SPATEMQ_AMQP_PORT", "many")]).to_string();
    assert!(message.contains("many") && message.contains("--amqp-port"), "{message}");
}

#[test]
fn watermarks_take_fractions_and_sizes() {
    let config = serve(&["--memory-high-watermark", "0.5", "--disk-free-limit", "1GiB"], &[]);
    assert_eq!(config.memory_high_watermark, MemoryWatermark::Fraction(0.5));
    assert_eq!(config.disk_free_limit_bytes, 1 << 30);
    let config = serve(&["--memory-high-watermark", "512MB"], &[]);
    assert_eq!(config.memory_high_watermark.bytes(0), 512_000_000);
    assert_eq!(usage_kind(&["--memory-high-watermark", "-1"]), ErrorKind::ValueValidation);
}

#[test]
fn consumer_timeout_defaults_to_30_minutes_and_0_disables_it() {
    assert_eq!(serve(&["--consumer-timeout", "500"], &[]).consumer_timeout_ms, Some(500));
    assert_eq!(serve(&[], &[("SPATEMQ_CONSUMER_TIMEOUT", "0")]).consumer_timeout_ms, None);
    assert_eq!(usage_kind(&["--consumer-timeout", "-1"]), ErrorKind::ValueValidation);
    assert_eq!(usage_kind(&["--consumer-timeout", "30m"]), ErrorKind::ValueValidation);
}

#[test]
fn help_and_version_are_shown_not_refused() {
    let Ok(Command::Show(help)) = parse_with(&["--shards", "2", "--help"], &[]) else { panic!("--help is not shown") };
    for expected in ["--amqp-port", "--config", "SPATEMQ_AMQP_PORT", "spatemq bench", "--tls-cert", "[default: 5672]"] {
        assert!(help.contains(expected), "--help lacks {expected}:\n{help}");
    }
    assert!(!help.contains("inject-store-failure"), "the test hook stays out of --help");
    let Ok(Command::Show(version)) = parse_with(&["-V"], &[]) else { panic!("-V is not shown") };
    assert_eq!(version.trim(), format!("spatemq {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn the_default_password_is_not_shown_by_help() {
    let Ok(Command::Show(help)) = parse_with(&["--help"], &[("SPATEMQ_DEFAULT_PASS", "s3cret")]) else {
        panic!("--help is not shown")
    };
    assert!(!help.contains("s3cret"), "{help}");
}

#[test]
fn every_flag_has_its_environment_twin() {
    for argument in Settings::command().get_arguments() {
        let id = argument.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let expected = format!("SPATEMQ_{}", id.to_uppercase());
        let env = argument.get_env().and_then(|name| name.to_str());
        assert_eq!(env, Some(expected.as_str()), "--{}", argument.get_long().unwrap_or(id));
        assert_eq!(argument.get_long().map(|long| long.replace('-', "_")), Some(id.to_string()));
    }
}

// The config file.

#[test]
fn an_unknown_key_is_refused_with_its_line() {
    let (line, message) = file_error("amqp_port = 5672\n\n# a comment\nampq_port = 5673\n");
    assert_eq!(line, Some(4));
    assert!(message.contains("ampq_port") && message.starts_with("unknown key"), "{message}");
    let (line, message) = file_error("[tls]\ncert = \"x\"\n");
    assert_eq!(line, Some(1));
    assert!(message.contains("tls"), "{message}");
}

#[test]
fn a_value_of_the_wrong_type_is_refused_with_its_line() {
    let cases = [
        ("shards = 2\namqp_port = \"5672\"\n", 2, "amqp_port"),
        ("amqp_port = 70000\n", 1, "amqp_port"),
        ("\npin_cores = \"yes\"\n", 2, "pin_cores"),
        ("disk_free_limit = \"lots\"\n", 1, "disk_free_limit"),
        ("log_level = \"loud\"\n", 1, "log_level"),
        ("bind = [\"::1\", \"nowhere\"]\n", 1, "bind"),
        ("memory_high_watermark = true\n", 1, "memory_high_watermark"),
    ];
    for (text, expected_line, key) in cases {
        let (line, message) = file_error(text);
        assert_eq!(line, Some(expected_line), "{key}: {message}");
        assert!(!message.is_empty(), "{key}");
    }
    let (_, message) = file_error("disk_free_limit = \"lots\"\n");
    assert!(message.contains("lots") && message.contains("50MB"), "{message}");
}

#[test]
fn a_file_error_names_the_file_and_line() {
    let file = ConfigFile::new("error-line", "shards = 1\nsegment_sise = \"1MiB\"\n");
    let message = refused(&["--config", file.path()], &[]).to_string();
    assert!(
        message.contains(file.path()) && message.contains("line 2") && message.contains("segment_sise"),
        "{message}"
    );
    let missing = refused(&["--config", "/nonexistent/spatemq.toml"], &[]).to_string();
    assert!(missing.contains("/nonexistent/spatemq.toml") && missing.contains("cannot read"), "{missing}");
}

#[test]
fn the_config_key_itself_is_not_a_file_key() {
    let (line, message) = file_error("config = \"other.toml\"\n");
    assert_eq!(line, Some(1));
    assert!(message.contains("config"), "{message}");
}

// The example file at the repository root.

#[test]
fn the_example_file_as_shipped_parses_to_the_defaults() {
    let settings = file::parse(Path::new("spatemq.example.toml"), EXAMPLE).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(Config::from_settings(settings), Config::defaults());
}

/// Every `# key = value` line of the example, made active, still parses and validates, and
/// the keys that have a default show exactly that default.
#[test]
fn the_example_files_commented_values_are_the_defaults() {
    let active: String = EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_assignment(rest) => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let settings =
        file::parse(Path::new("example, every key active"), &active).unwrap_or_else(|error| panic!("{error}"));
    let config = Config::from_settings(settings);
    config.validate().unwrap_or_else(|error| panic!("the example's values do not validate: {error}"));
    assert_eq!(config.bind.addresses(), Bind::DualStack.addresses(), "bind shows the default addresses");
    assert!(config.tls_enabled() && config.tls_ca_cert.is_some() && config.definitions.is_some());
    assert!(config.max_connections.is_some());
    // The keys without a default (or whose default depends on the machine) show an example.
    let expected = Config {
        bind: config.bind.clone(),
        shards: config.shards,
        max_connections: config.max_connections,
        definitions: config.definitions.clone(),
        tls_cert: config.tls_cert.clone(),
        tls_key: config.tls_key.clone(),
        tls_ca_cert: config.tls_ca_cert.clone(),
        ..Config::defaults()
    };
    assert_eq!(config, expected);
}

#[test]
fn the_example_file_lists_every_key() {
    let keys: Vec<String> = EXAMPLE
        .lines()
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .filter(|line| is_assignment(line))
        .filter_map(|line| line.split('=').next().map(|key| key.trim().to_string()))
        .collect();
    for argument in Settings::command().get_arguments() {
        let id = argument.get_id().as_str();
        if matches!(id, "help" | "version" | "config") || argument.is_hide_set() {
            continue;
        }
        assert!(keys.iter().any(|key| key == id), "spatemq.example.toml lacks the key {id}");
    }
}

fn is_assignment(line: &str) -> bool {
    let Some((key, _)) = line.split_once(" = ") else { return false };
    !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
}

// Validation, one rule per test.

fn invalid(args: &[&str]) -> String {
    match refused(args, &[]) {
        ConfigError::Invalid(message) => message,
        other => panic!("{args:?}: expected a validation error, got {other}"),
    }
}

#[test]
fn zero_shards_is_rejected() {
    assert!(invalid(&["--shards", "0"]).contains("--shards"));
}

#[test]
fn bind_refuses_duplicates_and_addresses_under_a_wildcard() {
    assert!(invalid(&["--bind", "127.0.0.1,127.0.0.1"]).contains("twice"));
    assert!(invalid(&["--bind", "0.0.0.0", "--bind", "127.0.0.1"]).contains("covers"));
    assert!(invalid(&["--bind", "::", "--bind", "::1"]).contains("covers"));
    serve(&["--bind", "::", "--bind", "0.0.0.0"], &[]);
    serve(&["--bind", "::", "--bind", "127.0.0.1"], &[]);
}

#[test]
fn connection_limits_are_checked() {
    assert!(invalid(&["--channel-max", "0"]).contains("--channel-max"));
    assert_eq!(usage_kind(&["--channel-max", "65536"]), ErrorKind::ValueValidation);
    assert!(invalid(&["--max-connections", "0"]).contains("--max-connections"));
    assert!(invalid(&["--handshake-timeout", "0"]).contains("--handshake-timeout"));
    let config = serve(&["--channel-max", "16", "--max-connections", "3", "--handshake-timeout", "500"], &[]);
    assert_eq!((config.channel_max, config.max_connections, config.handshake_timeout_ms), (16, Some(3), 500));
}

#[test]
fn max_message_size_is_at_most_512_mib_as_in_rabbitmq() {
    assert_eq!(serve(&["--max-message-size", "512MiB"], &[]).max_message_size, 536_870_912);
    assert!(invalid(&["--max-message-size", "536870913"]).contains("512MiB"));
    assert!(invalid(&["--max-message-size", "0"]).contains("--max-message-size"));
    assert!(invalid(&["--max-message-size", "100GiB"]).contains("512MiB"));
}

#[test]
fn default_user_and_vhost_are_short_strings() {
    assert!(invalid(&["--default-user", ""]).contains("--default-user"));
    let long = "v".repeat(256);
    assert!(invalid(&["--default-vhost", &long]).contains("--default-vhost"));
    let config = serve(&["--default-user", "admin", "--default-pass", "", "--default-vhost", "prod"], &[]);
    assert_eq!(
        (config.default_user.as_str(), config.default_pass.as_str(), config.default_vhost.as_str()),
        ("admin", "", "prod")
    );
}

#[test]
fn tls_settings_go_together() {
    let (cert, key, ca) = (["--tls-cert", "c.pem"], ["--tls-key", "k.pem"], ["--tls-ca-cert", "ca.pem"]);
    assert!(invalid(&cert).contains("--tls-key"));
    assert!(invalid(&key).contains("--tls-cert"));
    assert!(invalid(&[&cert[..], &ca[..]].concat()).contains("--tls-key"));
    assert!(invalid(&[&cert[..], &key[..], &["--tls-verify-peer"]].concat()).contains("--tls-ca-cert"));
    assert!(invalid(&[&cert[..], &key[..], &ca[..], &["--tls-fail-if-no-peer-cert"]].concat())
        .contains("--tls-verify-peer"));
    assert!(invalid(&[&cert[..], &key[..], &["--amqps-port", "5672"]].concat()).contains("ports of their own"));
    let config =
        serve(&[&cert[..], &key[..], &ca[..], &["--tls-verify-peer", "--tls-fail-if-no-peer-cert"]].concat(), &[]);
    assert!(config.tls_enabled() && config.tls_verify_peer && config.tls_fail_if_no_peer_cert);
    assert_eq!(config.tls_ca_cert, Some(PathBuf::from("ca.pem")));
    assert_eq!(serve(&["--amqps-port", "0"], &[]).amqps_port, 0);
}

#[test]
fn the_prometheus_port_is_15692_set_by_flag_or_environment_and_needs_a_port_of_its_own() {
    let config = serve(&[], &[]);
    assert_eq!((config.prometheus_port, config.prometheus_bind), (15692, IpAddr::from([0, 0, 0, 0])));
    let config = serve(&["--prometheus-port", "0"], &[("SPATEMQ_PROMETHEUS_BIND", "127.0.0.1")]);
    assert_eq!((config.prometheus_port, config.prometheus_bind), (0, IpAddr::from([127, 0, 0, 1])));
    let message = refused(&["--prometheus-port", "15672"], &[]).to_string();
    assert!(message.contains("--prometheus-port and --management-port are both 15672"), "{message}");
    let message = refused(&["--prometheus-port", "5672"], &[]).to_string();
    assert!(message.contains("--prometheus-port and --amqp-port"), "{message}");
}
