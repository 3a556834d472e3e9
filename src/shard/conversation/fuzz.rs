//! Fuzzing the frame parser and the connection state machines through the conversation harness.
//!
//! A mutational fuzzer without a fuzzing engine (only the stable toolchain is at hand): the
//! seed conversations of `seeds` are mutated by `mutate` with a seeded splitmix64, and fed to
//! two targets. `codec_target` cuts bytes into frames and runs every payload parser with an
//! oracle; it is cheap, so it takes nine inputs in ten. `conversation_target` feeds a fresh
//! client of a broker of one to three real shards, before or after the handshake, and checks
//! the output and what the shards kept. A broker lives for one session of conversations (so
//! inputs also meet the queues and exchanges earlier ones left), and a health probe checks
//! every so often that it still serves a new client.
//!
//! Each input is checked for panics (caught, and reported with the seeds and the input in
//! hex), for hangs (the harness panics when the shards keep exchanging messages; a watchdog
//! aborts with the input's seed if one input runs for `HANG_SECONDS`), and for the heap it
//! made the process hold at its peak (`allocation`), against the bounds below.
//!
//! `scripts/fuzz.sh` runs the long pass; the short pass runs with the unit tests.

use crate::allocation;

mod codec_target;
mod conversation_target;
mod findings;
mod mutate;
mod rng;
mod seeds;

use std::any::Any;
use std::fmt::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::conversation_target::{ConversationInput, Entry};
use self::rng::Rng;
use self::seeds::{Capture, Frame};
use super::Broker;
use crate::codec::frame::PROTOCOL_HEADER;
use crate::limits::{CONNECTION_OUTPUT_HIGH_BYTES, FRAME_MAX_BYTES, READ_CHUNK_BYTES};

/// Conversations against one broker before a fresh one is made.
const CONVERSATIONS_PER_SESSION: u64 = 200;
/// Codec inputs run before each conversation.
const CODEC_INPUTS_PER_CONVERSATION: u64 = 9;
/// Conversations between two health probes (one more ends every session).
const PROBE_EVERY_CONVERSATIONS: u64 = 50;
/// Longest input (bytes); longer ones are cut. The biggest seed is about 210 KB.
const INPUT_BYTES_MAX: usize = 256 * 1024;
/// One input running this long is taken for a hang.
const HANG_SECONDS: u64 = 30;
/// A run stops after this many failures.
const FAILURES_MAX: usize = 5;

/// Heap the codec may hold while parsing one input: the input itself (the frames share its
/// buffer), the decoded methods (amq-protocol copies names and tables, a few bytes of structure
/// per byte of input) and the re-encodings of the oracle. A parser that allocated from a
/// length field instead of from bytes present would blow through it.
const CODEC_BYTES_PER_INPUT_BYTE: usize = 16;
const CODEC_FIXED_BYTES: usize = 64 * 1024;

/// Heap one conversation may make the broker hold: its pending output up to
/// `CONNECTION_OUTPUT_HIGH_BYTES` (the driver stops reading past it), its read buffer and a
/// frame in flight (`READ_CHUNK_BYTES`, `FRAME_MAX_BYTES` twice), and per input byte a bounded
/// amount (messages kept in queues, copied once when they span frames, names and tables,
/// map entries), as nothing the broker keeps may grow faster than what the client sent.
const CONVERSATION_BYTES_PER_INPUT_BYTE: usize = 16;

fn conversation_bound_bytes(input_bytes: usize) -> usize {
    CONNECTION_OUTPUT_HIGH_BYTES
        + READ_CHUNK_BYTES
        + 2 * FRAME_MAX_BYTES as usize
        + CONVERSATION_BYTES_PER_INPUT_BYTE * input_bytes
}

fn codec_bound_bytes(input_bytes: usize) -> usize {
    CODEC_FIXED_BYTES + CODEC_BYTES_PER_INPUT_BYTE * input_bytes
}

/// What one run does; read from the environment by the long pass.
#[derive(Clone, Debug)]
struct Settings {
    seed: u64,
    inputs_max: u64,
    duration: Option<Duration>,
    /// Run only this session (replaying a failure); None: sessions 0, 1, 2, ...
    only_session: Option<u64>,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |name: &str| {
            std::env::var(name).ok().map(|text| {
                let text = text.trim();
                let parsed = match text.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => text.parse(),
                };
                parsed.unwrap_or_else(|_| panic!("{name}={text} is not a number"))
            })
        };
        let seed = number("SPATEMQ_FUZZ_SEED").unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            now.as_nanos() as u64
        });
        Settings {
            seed,
            inputs_max: number("SPATEMQ_FUZZ_INPUTS").unwrap_or(u64::MAX),
            duration: number("SPATEMQ_FUZZ_SECONDS").map(Duration::from_secs),
            only_session: number("SPATEMQ_FUZZ_SESSION"),
        }
    }
}

#[derive(Default)]
struct Summary {
    codec_inputs: u64,
    conversation_inputs: u64,
    conversations_opened: u64,
    sessions: u64,
    probes: u64,
    frames: u64,
    methods_parsed: u64,
    codec_peak_bytes: usize,
    conversation_peak_bytes: usize,
    output_bytes_max: usize,
    non_utf8_routing_keys: usize,
    failures: Vec<String>,
    elapsed: Duration,
}

impl Summary {
    fn inputs(&self) -> u64 {
        self.codec_inputs + self.conversation_inputs
    }

    fn report(&self, settings: &Settings) -> String {
        let seconds = self.elapsed.as_secs_f64();
        format!(
            "fuzz: seed {:#x}: {} inputs ({} codec, {} conversations of which {} opened, {} sessions, {} probes) \
             in {seconds:.1} s, {:.0} inputs/s; {} frames cut, {} methods parsed; peak heap per input: codec {} B, \
             conversation {} B (bound for the largest input {} B); largest pending output {} B; \
             known finding seen: 1 (non-UTF-8 routing key echoed) {} times; failures: {}",
            settings.seed,
            self.inputs(),
            self.codec_inputs,
            self.conversation_inputs,
            self.conversations_opened,
            self.sessions,
            self.probes,
            self.inputs() as f64 / seconds.max(1e-9),
            self.frames,
            self.methods_parsed,
            self.codec_peak_bytes,
            self.conversation_peak_bytes,
            conversation_bound_bytes(INPUT_BYTES_MAX),
            self.output_bytes_max,
            self.non_utf8_routing_keys,
            self.failures.len(),
        )
    }
}

/// Aborts the process when the fuzzer stops making progress: a loop inside one handler cannot
/// be caught by the harness's turn limits.
struct Watchdog {
    progress: Arc<AtomicU64>,
    session: Arc<AtomicU64>,
    input_seed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(run_seed: u64) -> Watchdog {
        let watchdog = Watchdog {
            progress: Arc::default(),
            session: Arc::default(),
            input_seed: Arc::default(),
            stop: Arc::default(),
        };
        let (progress, session, input_seed, stop) =
            (watchdog.progress.clone(), watchdog.session.clone(), watchdog.input_seed.clone(), watchdog.stop.clone());
        std::thread::spawn(move || {
            let (mut last, mut still_seconds) = (u64::MAX, 0);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let now = progress.load(Ordering::Relaxed);
                still_seconds = if now == last { still_seconds + 1 } else { 0 };
                last = now;
                if still_seconds >= HANG_SECONDS && !stop.load(Ordering::Relaxed) {
                    eprintln!(
                        "fuzz: HANG: one input ran for {HANG_SECONDS} s: seed {run_seed:#x} session {} input seed {:#x}; \
                         replay with SPATEMQ_FUZZ_SEED={run_seed:#x} SPATEMQ_FUZZ_SESSION={}",
                        session.load(Ordering::Relaxed),
                        input_seed.load(Ordering::Relaxed),
                        session.load(Ordering::Relaxed),
                    );
                    std::process::abort();
                }
            }
        });
        watchdog
    }

    fn note(&self, session: u64, input_seed: u64) {
        self.session.store(session, Ordering::Relaxed);
        self.input_seed.store(input_seed, Ordering::Relaxed);
        self.progress.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// State shared by the sessions of one run.
struct Run<'a> {
    settings: &'a Settings,
    captures: &'a [Capture],
    started: Instant,
    watchdog: Watchdog,
    summary: Summary,
}

impl Run<'_> {
    fn should_stop(&self) -> bool {
        self.summary.inputs() >= self.settings.inputs_max
            || self.summary.failures.len() >= FAILURES_MAX
            || self.settings.duration.is_some_and(|duration| self.started.elapsed() >= duration)
    }

    fn fail(&mut self, text: String) {
        eprintln!("fuzz: FAILURE: {text}");
        self.summary.failures.push(text);
    }
}

fn run(settings: &Settings) -> Summary {
    crate::logging::set_level(crate::logging::Level::Warn);
    let captures = seeds::captures();
    let mut run = Run {
        settings,
        captures: &captures,
        started: Instant::now(),
        watchdog: Watchdog::start(settings.seed),
        summary: Summary::default(),
    };
    match settings.only_session {
        Some(session) => run_session(&mut run, session),
        None => {
            for session in 0.. {
                if run.should_stop() {
                    break;
                }
                run_session(&mut run, session);
            }
        }
    }
    run.summary.elapsed = run.started.elapsed();
    run.summary
}

/// One broker and up to `CONVERSATIONS_PER_SESSION` conversations with it, each after a few
/// codec inputs. Ends early at the first failure that may have left the broker broken.
fn run_session(run: &mut Run<'_>, session: u64) {
    let mut rng = Rng::new(Rng::derive(run.settings.seed, session));
    let shard_count = 1 + rng.below(3);
    let broker = Broker::new(shard_count);
    run.summary.sessions += 1;
    for conversation in 1..=CONVERSATIONS_PER_SESSION {
        for _ in 0..CODEC_INPUTS_PER_CONVERSATION {
            if run.should_stop() {
                return;
            }
            codec_input(run, session, rng.next_u64());
        }
        if run.should_stop() || !conversation_input(run, &broker, shard_count, session, rng.next_u64()) {
            return;
        }
        if conversation % PROBE_EVERY_CONVERSATIONS == 0 && !probe(run, &broker, rng.below(shard_count), session) {
            return;
        }
    }
}

fn codec_input(run: &mut Run<'_>, session: u64, input_seed: u64) {
    run.watchdog.note(session, input_seed);
    let (bytes, frame_max) = make_codec_input(&mut Rng::new(input_seed), run.captures);
    run.summary.codec_inputs += 1;
    let result = catch_unwind(|| allocation::peak_bytes_during(|| codec_target::run(&bytes, frame_max)));
    let where_ =
        || format!("codec input, seed {:#x}, input seed {input_seed:#x}, frame_max {frame_max}", run.settings.seed);
    match result {
        Ok((outcome, peak_bytes)) => {
            run.summary.frames += outcome.frames as u64;
            run.summary.methods_parsed += outcome.methods_parsed as u64;
            run.summary.codec_peak_bytes = run.summary.codec_peak_bytes.max(peak_bytes);
            if peak_bytes > codec_bound_bytes(bytes.len()) {
                let text =
                    format!("{}: {peak_bytes} B of heap for {} B of input: {}", where_(), bytes.len(), hex(&bytes));
                run.fail(text);
            }
        }
        Err(panic) => {
            let text = format!("{}: panic: {}: {}", where_(), panic_text(&panic), hex(&bytes));
            run.fail(text);
        }
    }
}

/// Runs one conversation; false when the broker should not be used any more.
fn conversation_input(run: &mut Run<'_>, broker: &Broker, shard_count: usize, session: u64, input_seed: u64) -> bool {
    run.watchdog.note(session, input_seed);
    let input = make_conversation_input(&mut Rng::new(input_seed), run.captures, shard_count);
    run.summary.conversation_inputs += 1;
    let result =
        catch_unwind(AssertUnwindSafe(|| allocation::peak_bytes_during(|| conversation_target::run(broker, &input))));
    let where_ = format!(
        "conversation, {shard_count} shards, seed {:#x} session {session} input seed {input_seed:#x}",
        run.settings.seed
    );
    match result {
        Ok((outcome, peak_bytes)) => {
            run.summary.conversations_opened += u64::from(outcome.opened);
            run.summary.output_bytes_max = run.summary.output_bytes_max.max(outcome.output_bytes);
            run.summary.non_utf8_routing_keys += outcome.non_utf8_routing_keys;
            run.summary.conversation_peak_bytes = run.summary.conversation_peak_bytes.max(peak_bytes);
            let bound_bytes = conversation_bound_bytes(input.bytes.len());
            if peak_bytes > bound_bytes {
                let text = format!(
                    "{where_}: {peak_bytes} B of heap for {} B of input; {}",
                    input.bytes.len(),
                    replay_hint(run.settings, session, &input, shard_count)
                );
                run.fail(text);
            }
            true
        }
        Err(panic) => {
            let text = format!(
                "{where_}: panic: {}; {}",
                panic_text(&panic),
                replay_hint(run.settings, session, &input, shard_count)
            );
            run.fail(text);
            false
        }
    }
}

fn probe(run: &mut Run<'_>, broker: &Broker, shard: usize, session: u64) -> bool {
    run.summary.probes += 1;
    match catch_unwind(AssertUnwindSafe(|| conversation_target::probe(broker, shard))) {
        Ok(()) => true,
        Err(panic) => {
            let text = format!(
                "health probe on shard {shard} failed after session {session}'s conversations: {}; replay with \
                 SPATEMQ_FUZZ_SEED={:#x} SPATEMQ_FUZZ_SESSION={session}",
                panic_text(&panic),
                run.settings.seed
            );
            run.fail(text);
            false
        }
    }
}

/// How to run a failing conversation again, and whether it fails alone on a fresh broker.
fn replay_hint(settings: &Settings, session: u64, input: &ConversationInput, shard_count: usize) -> String {
    let alone = catch_unwind(AssertUnwindSafe(|| {
        let broker = Broker::new(shard_count);
        let (_, peak_bytes) = allocation::peak_bytes_during(|| conversation_target::run(&broker, input));
        peak_bytes <= conversation_bound_bytes(input.bytes.len())
    }));
    let alone = match alone {
        Ok(true) => "passes",
        Ok(false) => "fails (heap)",
        Err(_) => "fails (panic)",
    };
    format!(
        "alone on a fresh broker it {alone}; replay the session with SPATEMQ_FUZZ_SEED={:#x} SPATEMQ_FUZZ_SESSION={session}, \
         the input alone with SPATEMQ_FUZZ_SHARDS={shard_count} SPATEMQ_FUZZ_REPLAY='{}'",
        settings.seed,
        input.describe()
    )
}

fn panic_text(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_else(|| "(not a string)".into())
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

fn write_frames(frames: &[Frame], out: &mut Vec<u8>) {
    for frame in frames {
        frame.write(out);
    }
}

/// A window of a seed conversation (with the handshake in front, a quarter of the time),
/// mutated, or now and then plain random bytes; and the frame_max to cut it with.
fn make_codec_input(rng: &mut Rng, captures: &[Capture]) -> (Vec<u8>, u32) {
    let any = rng.next_u64() as u32;
    let frame_max = *rng.pick(&[0, 4096, 4096, FRAME_MAX_BYTES, FRAME_MAX_BYTES, 8, 10_000, u32::MAX, any]);
    let mut bytes = Vec::new();
    if rng.chance(1, 16) {
        bytes.extend((0..rng.below(512)).map(|_| rng.byte()));
        return (bytes, frame_max);
    }
    let capture = rng.pick(captures);
    let start = rng.below(capture.frames.len());
    let end = (start + 1 + rng.below(16)).min(capture.frames.len());
    let mut frames = if rng.chance(1, 4) { seeds::handshake_frames(FRAME_MAX_BYTES) } else { Vec::new() };
    frames.extend(capture.frames[start..end].iter().cloned());
    if rng.chance(9, 10) {
        let donor = &rng.pick(captures).frames;
        mutate::mutate_frames(rng, &mut frames, donor, 8);
    }
    write_frames(&frames, &mut bytes);
    if rng.chance(1, 4) {
        mutate::mutate_stream(rng, &mut bytes);
    }
    bytes.truncate(INPUT_BYTES_MAX);
    (bytes, frame_max)
}

/// A conversation (sometimes two, one after the other), mutated seven times in eight; with the
/// protocol header and the handshake in front a quarter of the time.
fn make_conversation_input(rng: &mut Rng, captures: &[Capture], shard_count: usize) -> ConversationInput {
    let shard = rng.below(shard_count);
    let frame_max = *rng.pick(&[4096, 8192, FRAME_MAX_BYTES]);
    let raw = rng.chance(1, 4);
    let mut frames = if raw { seeds::handshake_frames(frame_max) } else { Vec::new() };
    frames.extend(rng.pick(captures).frames.iter().cloned());
    if rng.chance(1, 3) {
        frames.extend(rng.pick(captures).frames.iter().cloned());
    }
    if rng.chance(7, 8) {
        let donor = &rng.pick(captures).frames;
        mutate::mutate_frames(rng, &mut frames, donor, 6);
    }
    let mut bytes = if raw { PROTOCOL_HEADER.to_vec() } else { Vec::new() };
    if raw && rng.chance(1, 16) {
        let at = rng.below(bytes.len());
        bytes[at] = rng.byte();
    }
    write_frames(&frames, &mut bytes);
    if rng.chance(1, 8) {
        mutate::mutate_stream(rng, &mut bytes);
    }
    bytes.truncate(INPUT_BYTES_MAX);
    let entry = if raw { Entry::Raw { loopback_peer: !rng.chance(1, 16) } } else { Entry::Open { frame_max } };
    ConversationInput { shard, entry, bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short pass of the unit tests: a fixed seed, a few seconds.
    #[test]
    fn twenty_thousand_fuzzed_inputs_neither_panic_nor_hang_nor_overallocate() {
        let settings = Settings { seed: 0x5EED_F022, inputs_max: 20_000, duration: None, only_session: None };
        let summary = run(&settings);
        println!("{}", summary.report(&settings));
        assert!(summary.failures.is_empty(), "{}", summary.failures.join("\n"));
        assert_eq!(summary.inputs(), 20_000);
        // A fuzzer whose inputs all die at the framing or the handshake tests nothing.
        assert!(
            summary.conversations_opened * 2 > summary.conversation_inputs,
            "few conversations got past the handshake"
        );
        assert!(summary.methods_parsed * 4 > summary.frames, "few frames parsed as methods");
        assert!(summary.probes >= 4);
    }

    /// The long pass (`scripts/fuzz.sh`): settings from SPATEMQ_FUZZ_SEED, _INPUTS, _SECONDS
    /// and _SESSION.
    #[test]
    #[ignore = "long fuzz run: scripts/fuzz.sh"]
    fn fuzz_long_run() {
        let settings = Settings::from_env();
        println!("fuzz: seed {:#x}, settings {settings:?}", settings.seed);
        let summary = run(&settings);
        println!("{}", summary.report(&settings));
        assert!(summary.failures.is_empty(), "{} failure(s):\n{}", summary.failures.len(), summary.failures.join("\n"));
    }

    /// Replays one conversation printed by a failure: SPATEMQ_FUZZ_REPLAY and SPATEMQ_FUZZ_SHARDS.
    #[test]
    #[ignore = "replays a fuzz failure given in SPATEMQ_FUZZ_REPLAY"]
    fn fuzz_replay() {
        let line = std::env::var("SPATEMQ_FUZZ_REPLAY").expect("SPATEMQ_FUZZ_REPLAY holds a conversation line");
        let input = ConversationInput::parse(&line).expect("a line printed by a fuzz failure");
        let shards = std::env::var("SPATEMQ_FUZZ_SHARDS").ok().and_then(|text| text.parse().ok()).unwrap_or(1);
        let broker = Broker::new(shards);
        let (outcome, peak_bytes) = allocation::peak_bytes_during(|| conversation_target::run(&broker, &input));
        println!("opened {}, output {} B, peak heap {peak_bytes} B", outcome.opened, outcome.output_bytes);
        let bound_bytes = conversation_bound_bytes(input.bytes.len());
        assert!(peak_bytes <= bound_bytes, "{peak_bytes} B of heap");
        conversation_target::probe(&broker, 0);
    }

    #[test]
    fn a_conversation_line_reads_back() {
        let input = ConversationInput { shard: 2, entry: Entry::Open { frame_max: 4096 }, bytes: vec![1, 0, 0xCE] };
        let again = ConversationInput::parse(&input.describe()).expect("parses");
        assert_eq!((again.shard, again.bytes), (2, vec![1, 0, 0xCE]));
        assert!(matches!(again.entry, Entry::Open { frame_max: 4096 }));
    }
}
