//! One publishing connection of the throughput scenario: a writer that packs many publish
//! frame triples into each socket write, and a reader task for confirms, returns and flow
//! control.
//!
//! The triple is encoded once with the hand codec into a template and copied per message
//! (plus an 8-byte timestamp with `--measure-latency`), so the per-message cost is a memcpy.
//! The writer never has more than `--confirm` publishes unconfirmed, pauses on
//! connection.blocked, honours `--rate` and `--pmessages`, and sends heartbeats while idle.
//! A broker close seen by the reader ends the whole run through `Shared::fail`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::io::OwnedReadHalf;
use monoio::net::TcpStream;

use super::client::{Client, BROKER_WAIT_SECONDS, CHANNEL};
use super::confirms::ConfirmTracker;
use super::error::BenchError;
use super::stats::{now_nanos, Counters};
use super::throughput::{heartbeat_interval, Shared};
use super::wire::{control_method, header_body_size, Control, Input, Signal, WriteHalf};
use crate::codec::frame::{write_heartbeat, FRAME_BODY, FRAME_HEADER, FRAME_HEADER_LEN, FRAME_HEARTBEAT, FRAME_METHOD};
use crate::codec::hotpath::CodecError;
use crate::codec::hotpath::{encode_publish, method_ids, parse_ack, Ack, CLASS_BASIC};

/// Target size of one socket write: large enough that syscalls stop mattering at 16-byte
/// messages (about 1,700 triples), small enough to keep confirms flowing.
pub const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Longest a waiting publisher sleeps before re-checking stop, limits and heartbeats.
const IDLE_CHECK: Duration = Duration::from_millis(200);
const METHOD_RETURN: u16 = 50;

#[derive(Clone, Debug)]
pub struct PublisherPlan {
    pub exchange: String,
    /// Publishes go to these routing keys in turn (one key unless a `--queue-pattern` has more
    /// queues than there are publishers).
    pub routing_keys: Vec<String>,
    /// Raw basic properties (empty: none; delivery_mode 2 with `--persistent`).
    pub properties: Vec<u8>,
    pub size_bytes: usize,
    pub confirm: u32,
    pub rate: Option<u64>,
    pub limit: Option<u64>,
    pub measure_latency: bool,
    /// `--delay-spread`: each message's `x-delay` is drawn from 1..=this (ms), and its stamp
    /// is its due time, so the consumer measures how late it was routed.
    pub delay_spread_ms: Option<u64>,
}

/// State the reader task shares with the writer (same thread).
struct Flow {
    tracker: RefCell<ConfirmTracker>,
    blocked: Cell<bool>,
    /// Raised when confirms free room, when unblocked, and when the reader stops.
    room: Signal,
    reader_gone: Cell<bool>,
    last_confirm: Cell<Instant>,
}

/// One publish triple, encoded once.
struct Template {
    bytes: Vec<u8>,
    /// Where the first body frame's payload starts, when latency is measured.
    stamp_offset: Option<usize>,
    /// Where the 8-byte value of the `x-delay` header starts, when delays are drawn per message.
    delay_offset: Option<usize>,
}

impl Template {
    fn new(plan: &PublisherPlan, routing_key: &str, frame_max: u32) -> Result<Template, CodecError> {
        let encode = |body: &[u8]| {
            let mut out = BytesMut::new();
            let (exchange, routing_key) = (plan.exchange.as_bytes(), routing_key.as_bytes());
            encode_publish(&mut out, CHANNEL, exchange, routing_key, false, &plan.properties, body, frame_max)
                .map(|()| out)
        };
        let bytes = encode(&vec![0u8; plan.size_bytes])?.to_vec();
        // An empty body encodes method + header only: the body frame starts right after.
        let prefix_len = encode(&[])?.len();
        let stamp_offset = plan.measure_latency.then_some(prefix_len + FRAME_HEADER_LEN);
        let delay_offset = plan.delay_spread_ms.and_then(|_| delay_value_offset(&bytes));
        Ok(Template { bytes, stamp_offset, delay_offset })
    }
}

/// Where the value of the `x-delay` header lies in an encoded triple: `publish_properties`
/// writes it as a long-long (type `l`, 8 bytes big-endian) right after its key.
fn delay_value_offset(bytes: &[u8]) -> Option<usize> {
    const KEY_AND_TYPE: &[u8] = b"\x07x-delayl";
    bytes.windows(KEY_AND_TYPE.len()).position(|window| window == KEY_AND_TYPE).map(|at| at + KEY_AND_TYPE.len())
}

/// One template per routing key, used in turn, so one publisher can spread its messages
/// evenly over many queues.
struct Templates {
    each: Vec<Template>,
    next: usize,
    delay_spread_ms: Option<u64>,
    /// xorshift64* state for the drawn delays: uniform enough, and no dependency for it.
    random: u64,
}

impl Templates {
    fn new(plan: &PublisherPlan, frame_max: u32) -> Result<Templates, CodecError> {
        let each = plan
            .routing_keys
            .iter()
            .map(|routing_key| Template::new(plan, routing_key, frame_max))
            .collect::<Result<Vec<_>, _>>()?;
        let random = now_nanos() | 1;
        Ok(Templates { each, next: 0, delay_spread_ms: plan.delay_spread_ms, random })
    }

    fn next_random(&mut self) -> u64 {
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        self.random.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn longest_bytes(&self) -> usize {
        self.each.iter().map(|template| template.bytes.len()).max().unwrap_or(1).max(1)
    }

    /// Appends the next message, sent at `now_nanos`: with a drawn delay, its `x-delay`; when
    /// latency is measured, a stamp in its body (its due time when the delay was drawn).
    fn write_next(&mut self, out: &mut BytesMut, now_nanos: u64) {
        let delay_ms = self.delay_spread_ms.map(|spread| 1 + self.next_random() % spread.max(1));
        let Some(template) = self.each.get(self.next) else { return };
        self.next = if self.next + 1 == self.each.len() { 0 } else { self.next + 1 };
        let start = out.len();
        out.extend_from_slice(&template.bytes);
        let mut stamp = now_nanos;
        if let (Some(delay_ms), Some(offset)) = (delay_ms, template.delay_offset) {
            write_at(out, start + offset, &delay_ms.to_be_bytes());
            stamp += delay_ms * 1_000_000;
        }
        if let Some(offset) = template.stamp_offset {
            write_at(out, start + offset, &stamp.to_be_bytes());
        }
    }
}

fn write_at(out: &mut BytesMut, at: usize, bytes: &[u8]) {
    if let Some(slot) = out.get_mut(at..at + bytes.len()) {
        slot.copy_from_slice(bytes);
    }
}

enum Step {
    Send(u64),
    Wait(Duration),
    Finished,
}

pub async fn run(client: Client, plan: Arc<PublisherPlan>, shared: Arc<Shared>) -> Result<(), BenchError> {
    let heartbeat = heartbeat_interval(client.heartbeat_seconds);
    let mut templates = Templates::new(&plan, client.frame_max())?;
    let (input, output) = client.into_split();
    let flow = Rc::new(Flow {
        tracker: RefCell::new(ConfirmTracker::default()),
        blocked: Cell::new(false),
        room: Signal::default(),
        reader_gone: Cell::new(false),
        last_confirm: Cell::new(Instant::now()),
    });
    monoio::spawn(read_loop(input, flow.clone(), shared.clone()));
    let mut writer = Writer {
        output,
        out: BytesMut::with_capacity(WRITE_BATCH_BYTES + templates.longest_bytes()),
        last_write: Instant::now(),
        heartbeat,
    };
    publish(&mut writer, &mut templates, &plan, &flow, &shared).await?;
    if plan.confirm > 0 {
        await_confirms(&mut writer, &flow, &shared).await?;
    }
    shared.publisher_finished();
    // Dropping the write half shuts the socket down, which the broker (rightly) takes as the
    // end of the connection; stay connected, idle, until the whole run is over.
    while !shared.stopping() && !flow.reader_gone.get() {
        writer.idle(&flow.room, IDLE_CHECK).await?;
    }
    Ok(())
}

struct Writer {
    output: WriteHalf,
    out: BytesMut,
    last_write: Instant,
    heartbeat: Option<Duration>,
}

impl Writer {
    async fn flush(&mut self) -> Result<(), BenchError> {
        let out = std::mem::take(&mut self.out);
        let (result, mut out) = self.output.write_all(out).await;
        out.clear();
        self.out = out;
        self.last_write = Instant::now();
        result.map(drop).map_err(BenchError::io("publishing"))
    }

    /// Waits for `signal` at most `limit`, keeping the connection alive with heartbeats.
    async fn idle(&mut self, signal: &Signal, limit: Duration) -> Result<(), BenchError> {
        let limit = self.heartbeat.map_or(limit, |beat| beat.min(limit));
        signal.wait_for(limit).await;
        if let Some(beat) = self.heartbeat {
            if self.last_write.elapsed() >= beat {
                write_heartbeat(&mut self.out);
                self.flush().await?;
            }
        }
        Ok(())
    }
}

async fn publish(
    writer: &mut Writer,
    templates: &mut Templates,
    plan: &PublisherPlan,
    flow: &Flow,
    shared: &Shared,
) -> Result<(), BenchError> {
    let batch_max = (WRITE_BATCH_BYTES / templates.longest_bytes()).max(1) as u64;
    let started = Instant::now();
    let mut sent = 0u64;
    loop {
        if shared.stopping() || flow.reader_gone.get() {
            return Ok(());
        }
        match next_step(plan, flow, batch_max, sent, started.elapsed()) {
            Step::Finished => return Ok(()),
            Step::Wait(limit) => {
                check_confirm_stall(plan, flow)?;
                writer.idle(&flow.room, limit).await?;
            }
            Step::Send(count) => {
                let now = now_nanos();
                for _ in 0..count {
                    templates.write_next(&mut writer.out, now);
                }
                flow.tracker.borrow_mut().published(count);
                writer.flush().await?;
                sent += count;
                Counters::add(&shared.counters.published, count);
            }
        }
    }
}

/// How many messages the next write may carry, or how long to wait first.
fn next_step(plan: &PublisherPlan, flow: &Flow, batch_max: u64, sent: u64, elapsed: Duration) -> Step {
    let mut count = batch_max;
    if let Some(limit) = plan.limit {
        if sent >= limit {
            return Step::Finished;
        }
        count = count.min(limit - sent);
    }
    if flow.blocked.get() {
        return Step::Wait(IDLE_CHECK);
    }
    if plan.confirm > 0 {
        let room = u64::from(plan.confirm).saturating_sub(flow.tracker.borrow().outstanding());
        if room == 0 {
            return Step::Wait(IDLE_CHECK);
        }
        count = count.min(room);
    }
    if let Some(rate) = plan.rate {
        // The first message goes at once; message n is due at n / rate seconds.
        let due = (elapsed.as_secs_f64() * rate as f64) as u64 + 1;
        if due <= sent {
            let next_at = Duration::from_secs_f64(sent as f64 / rate as f64);
            let wait = next_at.saturating_sub(elapsed);
            return Step::Wait(wait.clamp(Duration::from_millis(1), IDLE_CHECK));
        }
        count = count.min(due - sent);
    }
    Step::Send(count)
}

fn check_confirm_stall(plan: &PublisherPlan, flow: &Flow) -> Result<(), BenchError> {
    let waiting = plan.confirm > 0 && flow.tracker.borrow().outstanding() > 0;
    let limit = Duration::from_secs(BROKER_WAIT_SECONDS);
    if waiting && !flow.blocked.get() && flow.last_confirm.get().elapsed() > limit {
        return Err(BenchError::Timeout { waiting_for: "publisher confirms", seconds: BROKER_WAIT_SECONDS });
    }
    Ok(())
}

/// After the last publish of a `--pmessages` run: every confirm in, bounded in time.
async fn await_confirms(writer: &mut Writer, flow: &Flow, shared: &Shared) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(BROKER_WAIT_SECONDS);
    while flow.tracker.borrow().outstanding() > 0 {
        if shared.stopping() || flow.reader_gone.get() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Timeout {
                waiting_for: "the last publisher confirms",
                seconds: BROKER_WAIT_SECONDS,
            });
        }
        writer.idle(&flow.room, IDLE_CHECK).await?;
    }
    Ok(())
}

/// Where the reader is inside a basic.return's content (which it skips).
#[derive(Clone, Copy)]
enum Skip {
    Nothing,
    Header,
    Body(u64),
}

async fn read_loop(mut input: Input<OwnedReadHalf<TcpStream>>, flow: Rc<Flow>, shared: Arc<Shared>) {
    if let Err(error) = read_confirms(&mut input, &flow, &shared).await {
        if !shared.stopping() {
            shared.fail(error);
        }
    }
    flow.reader_gone.set(true);
    flow.room.raise();
}

#[derive(Default)]
struct Tally {
    acked: u64,
    nacked: u64,
    returned: u64,
}

async fn read_confirms(
    input: &mut Input<OwnedReadHalf<TcpStream>>,
    flow: &Flow,
    shared: &Shared,
) -> Result<(), BenchError> {
    let mut skip = Skip::Nothing;
    loop {
        let mut tally = Tally::default();
        while let Some(frame) = input.next_buffered()? {
            let body_len = frame.payload.len() as u64;
            skip = match (frame.frame_type, skip) {
                (FRAME_HEARTBEAT, skip) => skip,
                (FRAME_HEADER, Skip::Header) => match header_body_size(&frame.payload)? {
                    0 => Skip::Nothing,
                    size => Skip::Body(size),
                },
                (FRAME_BODY, Skip::Body(left)) => match left.saturating_sub(body_len) {
                    0 => Skip::Nothing,
                    left => Skip::Body(left),
                },
                (FRAME_METHOD, Skip::Nothing) => on_method(&frame.payload, flow, &mut tally)?,
                (frame_type, _) => {
                    return Err(BenchError::Unexpected {
                        expected: "confirms",
                        found: format!("a frame of type {frame_type} out of place"),
                    })
                }
            };
        }
        if tally.acked + tally.nacked > 0 {
            Counters::add(&shared.counters.confirmed, tally.acked);
            Counters::add(&shared.counters.nacked, tally.nacked);
            flow.last_confirm.set(Instant::now());
            flow.room.raise();
        }
        Counters::add(&shared.counters.returned, tally.returned);
        input.fill("reading publisher confirms").await?;
    }
}

/// A method frame on a publishing connection: a confirm, a return, or flow control.
fn on_method(payload: &[u8], flow: &Flow, tally: &mut Tally) -> Result<Skip, BenchError> {
    match parse_ack(payload)? {
        Some(Ack::Ack { delivery_tag, multiple }) => {
            tally.acked += flow.tracker.borrow_mut().settle(delivery_tag, multiple)
        }
        Some(Ack::Nack { delivery_tag, multiple, .. }) => {
            tally.nacked += flow.tracker.borrow_mut().settle(delivery_tag, multiple)
        }
        Some(Ack::Reject { .. }) => {}
        None if method_ids(payload)? == (CLASS_BASIC, METHOD_RETURN) => {
            tally.returned += 1;
            return Ok(Skip::Header);
        }
        None => match control_method(payload)? {
            Control::Blocked => flow.blocked.set(true),
            Control::Unblocked => {
                flow.blocked.set(false);
                flow.room.raise();
            }
            Control::Ignore => {}
        },
    }
    Ok(Skip::Nothing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::frame::split_frame;
    use crate::codec::hotpath::{parse_content_header, parse_publish};

    fn plan(size_bytes: usize, measure_latency: bool) -> PublisherPlan {
        PublisherPlan {
            exchange: "ex".into(),
            routing_keys: vec!["perf-test".into()],
            properties: vec![0x10, 0, 2],
            size_bytes,
            confirm: 0,
            rate: None,
            limit: None,
            measure_latency,
            delay_spread_ms: None,
        }
    }

    #[test]
    fn template_is_a_valid_triple_with_the_stamp_at_the_body() {
        let template = Template::new(&plan(100, true), "perf-test", 4096).expect("encodes");
        let mut buffer = BytesMut::from(&template.bytes[..]);
        let offset = template.stamp_offset.expect("measured");
        buffer[offset] = 0xAB;
        let method = split_frame(&mut buffer, 4096).expect("ok").expect("method");
        let publish = parse_publish(&method.payload).expect("publish");
        assert_eq!((&publish.exchange[..], &publish.routing_key[..]), (&b"ex"[..], &b"perf-test"[..]));
        let header = split_frame(&mut buffer, 4096).expect("ok").expect("header");
        assert_eq!(parse_content_header(&header.payload).expect("header").body_size, 100);
        let body = split_frame(&mut buffer, 4096).expect("ok").expect("body");
        assert_eq!((body.payload.len(), body.payload[0]), (100, 0xAB));
        assert!(buffer.is_empty());
        assert_eq!(Template::new(&plan(100, false), "perf-test", 4096).expect("ok").stamp_offset, None);
    }

    #[test]
    fn templates_take_the_routing_keys_in_turn() {
        let mut spread = plan(16, true);
        spread.routing_keys = vec!["q-1".into(), "q-22".into(), "q-333".into()];
        let mut templates = Templates::new(&spread, 4096).expect("encodes");
        let mut buffer = BytesMut::new();
        for _ in 0..4 {
            templates.write_next(&mut buffer, 0xCDCD_CDCD_CDCD_CDCD);
        }
        let mut keys = Vec::new();
        while !buffer.is_empty() {
            let method = split_frame(&mut buffer, 4096).expect("ok").expect("method");
            keys.push(parse_publish(&method.payload).expect("publish").routing_key.to_vec());
            split_frame(&mut buffer, 4096).expect("ok").expect("header");
            let body = split_frame(&mut buffer, 4096).expect("ok").expect("body");
            assert_eq!(&body.payload[..8], &[0xCD; 8], "each key's template stamps its own body");
        }
        assert_eq!(keys, [&b"q-1"[..], b"q-22", b"q-333", b"q-1"]);
        assert_eq!(templates.longest_bytes(), Template::new(&spread, "q-333", 4096).expect("ok").bytes.len());
    }

    #[test]
    fn drawn_delays_go_in_the_header_and_the_stamp_is_the_due_time() {
        use amq_protocol::protocol::BasicProperties;
        use amq_protocol::types::{AMQPValue, FieldTable};
        let mut headers = FieldTable::default();
        headers.insert("x-delay".into(), AMQPValue::LongLongInt(60_000));
        let properties = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
        let mut spread = plan(16, true);
        spread.properties = crate::codec::hotpath::encode_properties(&properties).expect("encodes");
        spread.delay_spread_ms = Some(60_000);
        let mut templates = Templates::new(&spread, 4096).expect("encodes");
        let mut buffer = BytesMut::new();
        for _ in 0..200 {
            templates.write_next(&mut buffer, 5_000_000_000);
        }
        let mut delays = std::collections::HashSet::new();
        while !buffer.is_empty() {
            split_frame(&mut buffer, 4096).expect("ok").expect("method");
            let header = split_frame(&mut buffer, 4096).expect("ok").expect("header");
            let header = parse_content_header(&header.payload).expect("header");
            let parsed = crate::codec::hotpath::parse_properties(&header.properties).expect("properties");
            let delay = match parsed.headers().as_ref().and_then(|headers| headers.inner().get("x-delay")) {
                Some(AMQPValue::LongLongInt(delay)) => *delay as u64,
                other => panic!("x-delay is {other:?}"),
            };
            assert!((1..=60_000).contains(&delay), "drawn delay {delay} out of range");
            let body = split_frame(&mut buffer, 4096).expect("ok").expect("body");
            let stamp = u64::from_be_bytes(body.payload[..8].try_into().expect("8 bytes"));
            assert_eq!(stamp, 5_000_000_000 + delay * 1_000_000, "the stamp is the due time");
            delays.insert(delay);
        }
        assert!(delays.len() > 150, "200 draws from 60,000 should mostly differ: {}", delays.len());
    }

    #[test]
    fn steps_respect_limit_window_blocking_and_rate() {
        let flow = Flow {
            tracker: RefCell::new(ConfirmTracker::default()),
            blocked: Cell::new(false),
            room: Signal::default(),
            reader_gone: Cell::new(false),
            last_confirm: Cell::new(Instant::now()),
        };
        let mut limited = plan(16, false);
        limited.limit = Some(10);
        assert!(matches!(next_step(&limited, &flow, 100, 4, Duration::ZERO), Step::Send(6)));
        assert!(matches!(next_step(&limited, &flow, 100, 10, Duration::ZERO), Step::Finished));
        let mut confirming = plan(16, false);
        confirming.confirm = 5;
        flow.tracker.borrow_mut().published(3);
        assert!(matches!(next_step(&confirming, &flow, 100, 3, Duration::ZERO), Step::Send(2)));
        flow.tracker.borrow_mut().published(2);
        assert!(matches!(next_step(&confirming, &flow, 100, 5, Duration::ZERO), Step::Wait(_)));
        let mut rated = plan(16, false);
        rated.rate = Some(1000);
        assert!(matches!(next_step(&rated, &flow, 100, 0, Duration::ZERO), Step::Send(1)));
        assert!(matches!(next_step(&rated, &flow, 100, 1, Duration::ZERO), Step::Wait(_)));
        assert!(matches!(next_step(&rated, &flow, 100, 1, Duration::from_millis(10)), Step::Send(10)));
        flow.blocked.set(true);
        assert!(matches!(next_step(&rated, &flow, 100, 0, Duration::ZERO), Step::Wait(_)));
    }
}
