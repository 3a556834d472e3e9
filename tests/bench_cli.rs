//! Black-box tests of `spatemq bench`: start the real broker on a free port, run the load
//! generator against it as a user would (a subprocess), and read its JSON last line.
//!
//! No assertion here is about speed: machines differ. They check that messages moved, that
//! the promised fields are present, and that the process ends by itself.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_spatemq");

/// The broker process, killed when the test ends (pass or fail).
struct Broker {
    child: Child,
    port: u16,
    /// With TLS flags: the amqps port the broker printed.
    amqps_port: Option<u16>,
    data_dir: PathBuf,
}

impl Broker {
    fn start(name: &str) -> Broker {
        Broker::start_with(name, &[])
    }

    fn start_with(name: &str, extra_args: &[&str]) -> Broker {
        let data_dir = std::env::temp_dir().join(format!("spatemq-bench-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut child = Command::new(BINARY)
            // No HTTP listeners: their default ports would clash between the tests' brokers.
            .env("SPATEMQ_MANAGEMENT_PORT", "0")
            .env("SPATEMQ_PROMETHEUS_PORT", "0")
            .args(["--amqp-port", "0", "--bind", "127.0.0.1", "--shards", "2"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the broker binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("spatemq: AMQP") {
                    let _ = sender.send(line);
                }
            }
        });
        let port_of = |line: &str| -> u16 {
            line.rsplit(':').next().and_then(|port| port.parse().ok()).expect("the listening line ends with a port")
        };
        let mut amqps_port = None;
        let port = loop {
            match receiver.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.starts_with("spatemq: AMQPS listening on ") => amqps_port = Some(port_of(&line)),
                Ok(line) if line.starts_with("spatemq: AMQP listening on ") => break port_of(&line),
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!("the broker did not print its listening address within 30 s");
                }
            }
        };
        Broker { child, port, amqps_port, data_dir }
    }

    fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Runs `spatemq bench ...` with a hard limit, so a hung bench fails the test instead of CI.
fn bench(args: &[&str]) -> Output {
    let child = Command::new(BINARY)
        .arg("bench")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the bench starts");
    let id = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(Duration::from_secs(120)) {
        Ok(output) => output.expect("the bench ran"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!("spatemq bench {args:?} did not end within 120 s");
        }
    }
}

/// The last stdout line, parsed as the one JSON object `--json` promises.
fn json_result(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    let last = stdout.lines().last().expect("some output");
    serde_json::from_str(last).unwrap_or_else(|error| panic!("{last:?} is not JSON: {error}"))
}

#[test]
fn throughput_with_confirms_acks_and_latency_reports_json() {
    let broker = Broker::start("throughput");
    let uri = broker.uri();
    let output = bench(&[
        "throughput",
        "--uri",
        &uri,
        "--time",
        "2",
        "--json",
        "--measure-latency",
        "--confirm",
        "100",
        "--ack",
        "10",
    ]);
    let result = json_result(&output);
    let number =
        |name: &str| result.get(name).and_then(Value::as_f64).unwrap_or_else(|| panic!("{name} missing from {result}"));
    assert!(number("avg_pub_rate") > 0.0, "{result}");
    assert!(number("consumed") > 0.0, "{result}");
    assert!(number("confirmed") > 0.0, "{result}");
    assert!(number("published") >= number("confirmed"), "{result}");
    for name in ["avg_consume_rate", "elapsed_seconds", "bench_cpu_seconds"] {
        number(name);
    }
    let latency = result.get("latency_ms").expect("latency_ms present");
    for field in ["min", "p50", "p90", "p99", "p999", "max"] {
        assert!(latency.get(field).and_then(Value::as_f64).is_some(), "latency_ms.{field} missing from {result}");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sent:"), "progress lines on stderr: {stderr}");
}

#[test]
fn queue_count_declares_every_queue() {
    let broker = Broker::start("queue-count");
    let uri = broker.uri();
    let output = bench(&["queue-count", "--uri", &uri, "--queues", "50", "--json"]);
    let result = json_result(&output);
    assert_eq!(result.get("queues").and_then(Value::as_u64), Some(50));
    let rate = result.get("declares_per_second").and_then(Value::as_f64);
    assert!(rate.is_some_and(|rate| rate > 0.0), "{result}");
}

#[test]
fn a_count_bounded_run_ends_by_itself_with_every_message() {
    let broker = Broker::start("counts");
    let uri = broker.uri();
    let output = bench(&[
        "throughput",
        "--uri",
        &uri,
        "--pmessages",
        "5000",
        "--cmessages",
        "5000",
        "--queue",
        "counted",
        "--json",
    ]);
    let result = json_result(&output);
    assert_eq!(result.get("published").and_then(Value::as_u64), Some(5000));
    assert_eq!(result.get("consumed").and_then(Value::as_u64), Some(5000));
}

/// One consumer over several queues that already hold messages: the first queue delivers
/// before the other consume-oks come back, and the run still takes every message.
#[test]
fn one_consumer_drains_a_backlog_over_many_queues() {
    let broker = Broker::start("many-queues");
    let uri = broker.uri();
    let queues = ["--queue-pattern", "backlog-%", "--queue-pattern-to", "5"];
    let mut publish = vec!["throughput", "--uri", &uri, "-x", "1", "-y", "0", "--pmessages", "20000", "--json"];
    publish.extend_from_slice(&queues);
    assert_eq!(json_result(&bench(&publish)).get("published").and_then(Value::as_u64), Some(20_000));
    let mut drain = vec!["throughput", "--uri", &uri, "-x", "0", "-y", "1", "--cmessages", "20000", "--json"];
    drain.extend_from_slice(&queues);
    assert_eq!(json_result(&bench(&drain)).get("consumed").and_then(Value::as_u64), Some(20_000));
}

#[test]
fn an_unreachable_broker_fails_with_a_clear_error() {
    // Port 1 on loopback: nothing listens there in a test environment.
    let output = bench(&["throughput", "--uri", "amqp://guest:guest@127.0.0.1:1", "--time", "1"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect to 127.0.0.1:1"), "{stderr}");
}

#[test]
fn bad_flags_exit_with_usage_error() {
    let output = bench(&["throughput", "--size", "big"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--size"), "{stderr}");
}

/// The test certificates, made by the project's script (openssl, offline) in a fresh directory.
fn test_certificates(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spatemq-bench-cli-certs-{name}-{}", std::process::id()));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-certs.sh");
    let output = Command::new("bash").arg(script).arg(&dir).output().expect("run scripts/make-test-certs.sh");
    assert!(output.status.success(), "make-test-certs.sh failed: {}", String::from_utf8_lossy(&output.stderr));
    dir
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe listener");
    listener.local_addr().expect("probe address").port()
}

#[test]
fn throughput_over_amqps_with_a_client_certificate_moves_every_message() {
    let certs = test_certificates("amqps");
    let file = |name: &str| certs.join(name).to_string_lossy().into_owned();
    let port = free_port().to_string();
    let broker = Broker::start_with(
        "amqps",
        &[
            "--tls-cert",
            &file("server.pem"),
            "--tls-key",
            &file("server.key"),
            "--tls-ca-cert",
            &file("ca.pem"),
            "--tls-verify-peer",
            "--tls-fail-if-no-peer-cert",
            "--amqps-port",
            &port,
        ],
    );
    let amqps_port = broker.amqps_port.expect("the broker printed its amqps address");
    let uri = format!(
        "amqps://guest:guest@127.0.0.1:{amqps_port}?cacertfile={}&certfile={}&keyfile={}",
        file("ca.pem"),
        file("client.pem"),
        file("client.key")
    );
    let output = bench(&[
        "throughput",
        "--uri",
        &uri,
        "--pmessages",
        "20000",
        "--cmessages",
        "20000",
        "--size",
        "1024",
        "--json",
    ]);
    let result = json_result(&output);
    assert_eq!(result.get("published").and_then(Value::as_u64), Some(20000), "{result}");
    assert_eq!(result.get("consumed").and_then(Value::as_u64), Some(20000), "{result}");

    // Without the client certificate the broker refuses the handshake.
    let anonymous = format!("amqps://guest:guest@127.0.0.1:{amqps_port}?cacertfile={}", file("ca.pem"));
    let output = bench(&["throughput", "--uri", &anonymous, "--time", "1"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TLS: received fatal alert: CertificateRequired"), "{stderr}");
    let _ = std::fs::remove_dir_all(&certs);
}

#[test]
fn amqps_checks_the_broker_certificate_unless_told_not_to() {
    let certs = test_certificates("verify");
    let file = |name: &str| certs.join(name).to_string_lossy().into_owned();
    let port = free_port().to_string();
    let broker = Broker::start_with(
        "verify",
        &["--tls-cert", &file("server.pem"), "--tls-key", &file("server.key"), "--amqps-port", &port],
    );
    let amqps_port = broker.amqps_port.expect("the broker printed its amqps address");
    // A CA that did not sign the broker's certificate: refused, and the error says why.
    let wrong_ca = format!("amqps://guest:guest@127.0.0.1:{amqps_port}?cacertfile={}", file("other-ca.pem"));
    let output = bench(&["throughput", "--uri", &wrong_ca, "--time", "1"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TLS:") && stderr.contains("UnknownIssuer"), "{stderr}");
    // verify_none, asked for by name, accepts it.
    let unverified = format!("amqps://guest:guest@127.0.0.1:{amqps_port}?verify=verify_none");
    let output = bench(&["throughput", "--uri", &unverified, "--pmessages", "1000", "--cmessages", "1000", "--json"]);
    assert_eq!(json_result(&output).get("consumed").and_then(Value::as_u64), Some(1000));
    let _ = std::fs::remove_dir_all(&certs);
}
