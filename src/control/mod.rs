//! The control socket: how `spatemq ctl` administers a running broker without the HTTP API.
//!
//! A Unix socket `ctl.sock` in the data directory (owner-only, 0600, like every file there).
//! One request per connection: the client writes a JSON object `{"args": [...], "input": ...}`
//! and closes its side; the broker answers `{"code": N, "out": "...", "err": "...",
//! "file": ...}` and closes. The commands and their output follow `rabbitmqctl`, so an
//! operator's habits and scripts carry over. The thread here only parses and formats: every
//! request reaches the shards through their control inboxes, and the shards answer from
//! their own state (no lock on shard data).

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::broker::control::{ControlMsg, ControlReply, ControlRequest};
use crate::shard::mailbox::Mailboxes;

mod commands;
mod policies;

use commands::execute;
pub use commands::COMMANDS;

pub const SOCKET_NAME: &str = "ctl.sock";
/// The largest request read (a definitions file travels in one).
const REQUEST_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// How long a shard may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit codes, as `rabbitmqctl` (sysexits) uses them.
const EXIT_USAGE: i32 = 64;
const EXIT_DATA: i32 = 65;
const EXIT_UNAVAILABLE: i32 = 69;

pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shut();
        }
    }
}

/// Listens on the data directory's control socket. A socket file left by a broker that died
/// is replaced: the data directory's lock says no other broker uses it.
pub fn start(data_dir: &Path, mailboxes: Arc<Mailboxes>) -> io::Result<ControlServer> {
    let path = data_dir.join(SOCKET_NAME);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new().name("control".into()).spawn(move || {
        for stream in listener.incoming() {
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            match stream {
                Ok(stream) => serve(stream, &mailboxes),
                Err(error) => {
                    crate::warn!("control socket: accept failed: {error}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    })?;
    Ok(ControlServer { path, stop, thread: Some(thread) })
}

/// How long to wait before asking a shard again whether it has the new definitions.
const CATCH_UP_RETRY: Duration = Duration::from_millis(1);

/// Returns once shards 1.. (shard 0 writes the definitions) have applied definitions
/// `version`, asking each through `ask`; `Ok(false)` if one has not within `timeout`. Shared by
/// `spatemq ctl` and the management API, which ask in their own ways.
pub fn wait_for_every_shard<E>(
    shards: usize,
    version: u64,
    timeout: Duration,
    ask: impl Fn(usize, ControlRequest) -> Result<ControlReply, E>,
) -> Result<bool, E> {
    let deadline = std::time::Instant::now() + timeout;
    for shard in 1..shards {
        loop {
            match ask(shard, ControlRequest::CatchUp { version })? {
                ControlReply::Version(applied) if applied >= version => break,
                _ if std::time::Instant::now() >= deadline => return Ok(false),
                _ => std::thread::sleep(CATCH_UP_RETRY),
            }
        }
    }
    Ok(true)
}

/// Why a shard gave no answer to an operator's request.
#[derive(Debug, PartialEq)]
pub enum AskError {
    /// The shard's control inbox is full.
    Busy,
    /// The shard refused, with a sentence for the operator.
    Refused(String),
    /// No answer in time (shutting down, or stuck).
    NoAnswer,
}

impl std::fmt::Display for AskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AskError::Busy => f.write_str("the broker is busy: too many control requests waiting"),
            AskError::Refused(problem) => f.write_str(problem),
            AskError::NoAnswer => f.write_str("the broker did not answer (is it shutting down?)"),
        }
    }
}

/// Asks shard `shard` through its control inbox and waits for its answer. The control socket
/// and the management API both reach the shards this way.
pub fn ask(mailboxes: &Mailboxes, shard: usize, request: ControlRequest) -> Result<ControlReply, AskError> {
    let (reply, answer) = std::sync::mpsc::channel();
    if mailboxes.send_control(shard, ControlMsg { request, reply }).is_err() {
        return Err(AskError::Busy);
    }
    match answer.recv_timeout(ANSWER_TIMEOUT) {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(problem)) => Err(AskError::Refused(problem)),
        Err(_) => Err(AskError::NoAnswer),
    }
}

/// Asks every shard (`request` makes each one's copy); the answers in shard order.
pub fn ask_all(mailboxes: &Mailboxes, request: impl Fn() -> ControlRequest) -> Result<Vec<ControlReply>, AskError> {
    (0..mailboxes.shards()).map(|shard| ask(mailboxes, shard, request())).collect()
}

/// What a command printed and its exit code.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub code: i32,
    pub out: String,
    pub err: String,
    /// A file's content for the client to write (export_definitions FILE).
    pub file: Option<String>,
}

impl Outcome {
    fn ok(out: impl Into<String>) -> Outcome {
        Outcome { out: out.into(), ..Outcome::default() }
    }

    fn fail(code: i32, err: impl Into<String>) -> Outcome {
        Outcome { code, err: err.into(), ..Outcome::default() }
    }
}

fn serve(mut stream: UnixStream, mailboxes: &Mailboxes) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut body = Vec::new();
    let outcome = match (&mut stream).take(REQUEST_MAX_BYTES).read_to_end(&mut body) {
        Err(error) => Outcome::fail(EXIT_DATA, format!("cannot read the request: {error}")),
        Ok(_) => match serde_json::from_slice::<Value>(&body) {
            Err(error) => Outcome::fail(EXIT_DATA, format!("malformed request: {error}")),
            Ok(request) => {
                let args: Vec<String> = request["args"]
                    .as_array()
                    .map(|args| args.iter().filter_map(|arg| arg.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                let input = request["input"].as_str().map(str::to_string);
                execute(&args, input, mailboxes)
            }
        },
    };
    let answer = json!({"code": outcome.code, "out": outcome.out, "err": outcome.err, "file": outcome.file});
    let _ = stream.write_all(answer.to_string().as_bytes());
}

/// The options every command takes: `-p VHOST`, `-q`/`--quiet`, `-s`/`--silent`, `-n NODE`
/// (accepted and ignored: there is one node); `--priority` and `--apply-to` for policies.
struct Options {
    vhost: Option<String>,
    quiet: bool,
    silent: bool,
    /// `--priority N` and `--apply-to WHAT` of set_policy and set_operator_policy.
    priority: Option<String>,
    apply_to: Option<String>,
    positional: Vec<String>,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut parsed =
        Options { vhost: None, quiet: false, silent: false, priority: None, apply_to: None, positional: Vec::new() };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if let Some((flag, value)) = arg.split_once('=').filter(|(flag, _)| flag.starts_with("--")) {
            match flag {
                "--vhost" => parsed.vhost = Some(value.to_string()),
                "--priority" => parsed.priority = Some(value.to_string()),
                "--apply-to" => parsed.apply_to = Some(value.to_string()),
                _ => parsed.positional.push(arg.clone()),
            }
            continue;
        }
        match arg.as_str() {
            "--priority" => parsed.priority = Some(rest.next().ok_or("--priority needs a number")?.clone()),
            "--apply-to" => {
                parsed.apply_to = Some(rest.next().ok_or("--apply-to needs queues, exchanges or all")?.clone())
            }
            "-p" | "--vhost" => parsed.vhost = Some(rest.next().ok_or("-p needs a vhost")?.clone()),
            "-n" | "--node" => {
                rest.next().ok_or("-n needs a node name")?;
            }
            "-q" | "--quiet" => parsed.quiet = true,
            "-s" | "--silent" => {
                parsed.quiet = true;
                parsed.silent = true;
            }
            "--" => parsed.positional.extend(rest.by_ref().cloned()),
            other => parsed.positional.push(other.to_string()),
        }
    }
    Ok(parsed)
}
