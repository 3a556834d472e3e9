//! A broker process that a test controls end to end: it runs on a data directory the test
//! owns (kept across restarts), with extra command-line arguments, its stderr captured for
//! assertions, and it is stopped the way the test asks: SIGTERM (a clean shutdown) or SIGKILL
//! (a crash). Used by the storage tests, which restart the broker on the same data.
//!
//! Every wait is bounded; a broker that does not start, or does not stop, fails the test.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{unique, EXTERNAL_URI_ENV};

/// How long a broker may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a broker may take to exit after SIGTERM (or to die after SIGKILL).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// True when the tests run against an external broker, which a test cannot restart.
pub fn external_broker() -> bool {
    std::env::var(EXTERNAL_URI_ENV).is_ok_and(|uri| !uri.is_empty())
}

/// A fresh data directory under the system temp dir, removed when dropped.
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    pub fn new() -> DataDir {
        let path = std::env::temp_dir().join(unique("spatemq-storage-test"));
        std::fs::create_dir_all(&path).expect("create the broker data dir");
        DataDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What a broker printed on stderr, shared with the thread that reads the pipe.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line);
        }
    }

    fn text(&self) -> String {
        self.0.lock().map(|lines| lines.join("\n")).unwrap_or_default()
    }
}

/// How a stopped broker ended, and everything it wrote to stderr.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stderr: String,
}

/// A running broker child process.
pub struct BrokerProcess {
    child: Option<Child>,
    uri: String,
    port: u16,
    stdout: Captured,
    /// The amqps port, when the broker was started with TLS (printed before the AMQP line).
    amqps_port: Option<u16>,
    stderr: Captured,
    readers: Vec<JoinHandle<()>>,
}

impl BrokerProcess {
    /// Starts a broker on `data_dir` with `shards` shards and `extra_args`; fails the test if
    /// it does not print its listening line in time.
    pub fn start(data_dir: &Path, shards: usize, extra_args: &[&str]) -> BrokerProcess {
        match BrokerProcess::try_start(data_dir, shards, extra_args) {
            Ok(broker) => broker,
            Err(exited) => panic!(
                "the broker on {} exited before listening ({}); stderr:\n{}",
                data_dir.display(),
                exited.status,
                exited.stderr
            ),
        }
    }

    /// Starts a broker; `Err` if it exits before printing its listening line.
    pub fn try_start(data_dir: &Path, shards: usize, extra_args: &[&str]) -> Result<BrokerProcess, Exited> {
        let data_dir = data_dir.to_str().expect("a UTF-8 data dir");
        let shards = shards.to_string();
        let mut args = vec!["--amqp-port", "0", "--bind", "127.0.0.1", "--data-dir", data_dir, "--shards", &shards];
        args.extend_from_slice(extra_args);
        BrokerProcess::try_start_with(&args)
    }

    /// Starts a broker with exactly `args` (the listening address among them is the test's
    /// choice); `Err` if it exits before printing its first listening line, which must be an
    /// IPv4 address that 127.0.0.1 reaches (127.0.0.1 or 0.0.0.0).
    pub fn try_start_with(args: &[&str]) -> Result<BrokerProcess, Exited> {
        // No management or Prometheus listener unless the test asks for one (a flag wins over this): the
        // default port would collide between the brokers tests run side by side.
        let mut child = Command::new(env!("CARGO_BIN_EXE_spatemq"))
            .env("SPATEMQ_MANAGEMENT_PORT", "0")
            .env("SPATEMQ_PROMETHEUS_PORT", "0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the broker binary");
        let (stdout_tx, stdout_rx) = mpsc::channel::<String>();
        let stdout = Captured::default();
        let stderr = Captured::default();
        let stdout_reader = read_lines("broker stdout", child.stdout.take().expect("piped stdout"), {
            let stdout = stdout.clone();
            move |line| {
                stdout.push(line.clone());
                let _ = stdout_tx.send(line);
            }
        });
        let stderr_reader = read_lines("broker stderr", child.stderr.take().expect("piped stderr"), {
            let stderr = stderr.clone();
            move |line| stderr.push(line)
        });
        let mut broker = BrokerProcess {
            child: Some(child),
            uri: String::new(),
            port: 0,
            stdout,
            amqps_port: None,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stdout_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = port_after(&line, "AMQPS listening on 127.0.0.1:") {
                        broker.amqps_port = Some(port);
                    }
                    if let Some(port) = port_in(&line) {
                        broker.uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
                        broker.port = port;
                        return Ok(broker);
                    }
                }
                // The stdout pipe closed: the broker exited.
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(broker.wait_exit()),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let exited = broker.kill();
                    panic!(
                        "the broker did not print its listening line within {START_TIMEOUT:?}; stderr:\n{}",
                        exited.stderr
                    );
                }
            }
        }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the broker is running").id()
    }

    /// The port of the AMQP listeners.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the broker wrote to stdout so far (the listening lines among it).
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// The amqps listener's port; fails the test when the broker printed none.
    pub fn amqps_port(&self) -> u16 {
        self.amqps_port.expect("the broker printed no `AMQPS listening on` line")
    }

    /// Everything the broker wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits (at most `seconds`) until the broker's stderr contains `needle`: it is read by a
    /// thread, so a line the broker just wrote may not be in `stderr()` yet. Returns stderr.
    pub async fn stderr_containing(&self, needle: &str, seconds: u64) -> String {
        wait_for_text(|| self.stderr(), needle, seconds).await
    }

    /// The same wait on the broker's stdout (where its start lines go). Returns stdout.
    pub async fn stdout_containing(&self, needle: &str, seconds: u64) -> String {
        wait_for_text(|| self.stdout(), needle, seconds).await
    }

    /// Clean shutdown: SIGTERM, then a bounded wait for the exit.
    pub fn terminate(mut self) -> Exited {
        if let Some(child) = &self.child {
            let pid = libc::pid_t::try_from(child.id()).expect("a pid fits in pid_t");
            // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        self.wait_exit()
    }

    /// Crash: SIGKILL, then reap. Whatever the broker had not written is gone; what it had
    /// written stays in the page cache, as after a process crash.
    pub fn kill(mut self) -> Exited {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
        }
        self.wait_exit()
    }

    /// SIGTERM, and the broker must exit with status 0 (no panic, no stuck shard).
    pub fn stop_cleanly(self) -> String {
        let exited = self.terminate();
        assert!(
            exited.status.success(),
            "the broker exited with {} after SIGTERM; stderr:\n{}",
            exited.status,
            exited.stderr
        );
        assert_no_panic(&exited.stderr);
        exited.stderr
    }

    fn wait_exit(&mut self) -> Exited {
        let mut child = self.child.take().expect("the broker was not yet stopped");
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let status = child.wait().expect("reap the broker");
                    panic!(
                        "the broker did not exit within {STOP_TIMEOUT:?} (killed: {status}); stderr:\n{}",
                        self.stderr()
                    );
                }
            }
        };
        // The pipes close when the process is gone; the readers then end on their own.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Exited { status, stderr: self.stderr() }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Fails the test if the broker's output shows a panic.
#[track_caller]
pub fn assert_no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "the broker panicked; stderr:\n{stderr}");
}

fn port_in(line: &str) -> Option<u16> {
    ["AMQP listening on 127.0.0.1:", "AMQP listening on 0.0.0.0:"].iter().find_map(|marker| port_after(line, marker))
}

fn port_after(line: &str, marker: &str) -> Option<u16> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

/// Reads `pipe` line by line until it closes, echoing to the test's output and handing each
/// line to `sink`.
fn read_lines<R: Read + Send + 'static>(
    label: &'static str,
    pipe: R,
    mut sink: impl FnMut(String) + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buffer = Vec::new();
        while let Ok(count) = reader.read_until(b'\n', &mut buffer) {
            if count == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buffer).trim_end().to_string();
            eprintln!("[{label}] {line}");
            sink(line);
            buffer.clear();
        }
    })
}

/// Generates, for each `async fn name(shards: usize) { ... }`, a module `name` with the tests
/// `shards_1` and `shards_3`. The body starts and restarts its own brokers, so these tests
/// are skipped against an external broker.
#[macro_export]
macro_rules! restart_tests {
    ($( $(#[$meta:meta])* async fn $name:ident($shards:ident : usize) $body:block )*) => {
        $(
            $(#[$meta])*
            #[allow(non_snake_case)]
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body($shards: usize) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn shards_1() {
                    if $crate::common::process::external_broker() {
                        eprintln!("external broker: a restart test needs a broker of its own, skipped");
                        return;
                    }
                    $crate::common::within($crate::common::TEST_TIMEOUT, body(1)).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn shards_3() {
                    if $crate::common::process::external_broker() {
                        eprintln!("external broker: a restart test needs a broker of its own, skipped");
                        return;
                    }
                    $crate::common::within($crate::common::TEST_TIMEOUT, body(3)).await;
                }
            }
        )*
    };
}

/// Reads `text` until it contains `needle` or `seconds` have passed; returns the last read.
async fn wait_for_text(text: impl Fn() -> String, needle: &str, seconds: u64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let read = text();
        if read.contains(needle) || std::time::Instant::now() >= deadline {
            return read;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
