//! One client connection's state, without its socket: the open channels, the negotiated
//! limits, and the output buffer that handlers and deliveries append frames to.
//!
//! The shard's socket driver (`shard::socket`) reads frames into the dispatcher and writes
//! `out` to the socket; this file only keeps the state both sides share and the signals
//! between them (wakers, the dead and closed flags). Output is bounded: the reader stops
//! reading while `out` holds more than `CONNECTION_OUTPUT_HIGH_BYTES`, and queues stop
//! delivering to a consumer whose flow credit is spent until the writer reports the bytes
//! written.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rustc_hash::FxHashMap;

use super::channel::Channel;
use crate::broker::error::AmqpError;
use crate::ids::{ConnId, ConsumerKey, Holder, QueueId};
use crate::limits::{CONNECTION_OUTPUT_HIGH_BYTES, OUTPUT_KEEP_BYTES};

pub struct Connection {
    pub id: ConnId,
    pub out: RefCell<BytesMut>,
    writer_waker: RefCell<Option<Waker>>,
    reader_waker: RefCell<Option<Waker>>,
    /// Queued in the shard's list of connections to flush at the end of the loop turn.
    pub dirty: Cell<bool>,
    /// No more frames will be produced: the writer flushes what is left and closes.
    output_closed: Cell<bool>,
    /// The writer hit an error or the socket is gone.
    dead: Cell<bool>,
    pub frame_max: Cell<u32>,
    pub channel_max: Cell<u16>,
    pub vhost: RefCell<String>,
    /// The authenticated user (empty until start-ok is accepted).
    pub user: RefCell<String>,
    /// RabbitMQ's connection name, "client address -> broker address": log lines, listings,
    /// and `spatemq ctl close_connection`.
    pub name: RefCell<String>,
    /// The broker closed the connection (connection.close sent, as for a deleted vhost or
    /// user, or an operator's close): the reader handles no more frames and waits for
    /// close-ok.
    force_closed: Cell<bool>,
    /// The client closed the connection: its socket stays open (and is read and dropped)
    /// until the client closes it.
    lingering: Cell<bool>,
    /// This connection declared an exclusive queue (its close then waits for their deletion).
    pub declared_exclusive: Cell<bool>,
    /// Permission verdicts of this connection's user in its vhost (`access`).
    pub access: RefCell<super::access::AccessCache>,
    pub channels: RefCell<FxHashMap<u16, Channel>>,
    /// Deliveries appended to `out` per consumer, returned to the queues as flow credit once
    /// the writer has sent them.
    written: RefCell<Credits>,
    next_incarnation: Cell<u32>,
    last_read: Cell<Instant>,
    /// Set by the first basic.publish: only publishing connections are blocked by alarms.
    pub published: Cell<bool>,
    /// The client announced the `connection.blocked` capability.
    pub supports_blocked: Cell<bool>,
    /// The client announced `consumer_cancel_notify`: it is sent basic.cancel when the broker
    /// cancels one of its consumers.
    pub supports_cancel_notify: Cell<bool>,
    wrote_since_tick: Cell<bool>,
    /// Writes the writer has finished: direct replies appended since the last one are still
    /// in `out` (see `direct_reply`).
    writes_completed: Cell<u64>,
    /// The connection came in on the amqps listener (TLS established before the AMQP header).
    pub is_tls: Cell<bool>,
    /// The subject CN of the client certificate the TLS handshake verified (several CNs joined
    /// with ","), for SASL EXTERNAL; None without TLS or without a client certificate.
    pub peer_certificate_cn: RefCell<Option<String>>,
    /// The transport below the output (TLS) has bytes of its own to send, with nothing in
    /// `out`: a KeyUpdate answer or an alert. Wakes the writer like new output does.
    transport_wants_write: Cell<bool>,
    /// Publishes confirmed (basic.ack) to its confirm-mode channels, and mandatory ones
    /// returned unroutable: the management API's channel-side `message_stats`.
    pub confirmed: Cell<u64>,
    pub returned_unroutable: Cell<u64>,
    /// Bit s: this connection published to a queue of shard s since its reader last looked
    /// (`take_published_to`), so it waits while shard s's paging runs ahead of its disk.
    published_to: Cell<u64>,
    /// A consumer of this connection has been delivered to: its reader carries acks and
    /// credit that queues wait for, so it is never held for another shard's pressure.
    pub consumes: Cell<bool>,
}

/// The consumer a delivery was written for: (its queue, its channel, its tag).
pub type CreditKey = (QueueId, Holder, ConsumerKey);

/// Deliveries written per consumer since the writer last sent a chunk: the flow credit the
/// queues get back. Runs of deliveries to one consumer (the usual case) are counted without
/// hashing its key each time.
#[derive(Default)]
struct Credits {
    counted: FxHashMap<CreditKey, u32>,
    run: Option<(CreditKey, u32)>,
}

impl Credits {
    fn note(&mut self, key: CreditKey) {
        if let Some((run_key, count)) = &mut self.run {
            if *run_key == key {
                *count += 1;
                return;
            }
        }
        self.end_run();
        self.run = Some((key, 1));
    }

    fn end_run(&mut self) {
        if let Some((key, count)) = self.run.take() {
            *self.counted.entry(key).or_insert(0) += count;
        }
    }

    fn take(&mut self) -> FxHashMap<CreditKey, u32> {
        self.end_run();
        std::mem::take(&mut self.counted)
    }
}

impl Connection {
    /// Its channel-side message counts (`confirm`, `return_unroutable`).
    pub fn channel_stats(&self) -> crate::broker::control::MessageStats {
        crate::broker::control::MessageStats {
            confirm: self.confirmed.get(),
            return_unroutable: self.returned_unroutable.get(),
            ..Default::default()
        }
    }

    pub fn new(id: ConnId) -> Connection {
        Connection {
            id,
            out: RefCell::new(BytesMut::new()),
            writer_waker: RefCell::new(None),
            reader_waker: RefCell::new(None),
            dirty: Cell::new(false),
            output_closed: Cell::new(false),
            dead: Cell::new(false),
            frame_max: Cell::new(crate::limits::FRAME_MAX_BYTES),
            channel_max: Cell::new(crate::limits::CHANNEL_MAX),
            vhost: RefCell::new(String::new()),
            user: RefCell::new(String::new()),
            name: RefCell::new(String::new()),
            access: RefCell::new(super::access::AccessCache::default()),
            force_closed: Cell::new(false),
            lingering: Cell::new(false),
            declared_exclusive: Cell::new(false),
            channels: RefCell::new(FxHashMap::default()),
            written: RefCell::new(Credits::default()),
            next_incarnation: Cell::new(1),
            last_read: Cell::new(Instant::now()),
            published: Cell::new(false),
            supports_blocked: Cell::new(false),
            supports_cancel_notify: Cell::new(false),
            wrote_since_tick: Cell::new(false),
            writes_completed: Cell::new(0),
            is_tls: Cell::new(false),
            peer_certificate_cn: RefCell::new(None),
            transport_wants_write: Cell::new(false),
            confirmed: Cell::new(0),
            returned_unroutable: Cell::new(0),
            published_to: Cell::new(0),
            consumes: Cell::new(false),
        }
    }

    /// A publish of this connection went to a queue owned by `shard`.
    pub fn note_published_to(&self, shard: usize) {
        self.published_to.set(self.published_to.get() | 1u64 << (shard % 64));
    }

    /// The shards published to since the last call (bit s for shard s), forgotten.
    pub fn take_published_to(&self) -> u64 {
        self.published_to.replace(0)
    }

    pub fn holder(&self, channel: u16) -> Holder {
        let incarnation = self.channels.borrow().get(&channel).map_or(0, |open| open.incarnation);
        Holder { conn: self.id, channel, incarnation }
    }

    /// A new channel state with an incarnation number never used on this connection.
    pub fn new_channel(&self, channel: u16) -> Channel {
        let incarnation = self.next_incarnation.get();
        self.next_incarnation.set(incarnation.wrapping_add(1));
        Channel::new(channel, incarnation)
    }

    /// The open channel a message for `holder` is meant for; None if that opening is gone.
    pub fn is_current(&self, holder: Holder) -> bool {
        self.channels.borrow().get(&holder.channel).is_some_and(|channel| channel.is_current(holder.incarnation))
    }

    /// Appends frames to the output and wakes the writer.
    pub fn write_with(&self, encode: impl FnOnce(&mut BytesMut)) {
        if self.output_closed.get() {
            return;
        }
        encode(&mut self.out.borrow_mut());
        self.wake_writer();
    }

    /// The transport (TLS) has bytes of its own to send: wakes the writer.
    pub fn wake_writer_for_transport(&self) {
        self.transport_wants_write.set(true);
        self.wake_writer();
    }

    /// Whether the transport asked for a write since the last call (and clears the request).
    pub fn take_transport_write(&self) -> bool {
        self.transport_wants_write.replace(false)
    }

    fn wake_writer(&self) {
        if let Some(waker) = self.writer_waker.borrow_mut().take() {
            waker.wake();
        }
    }

    pub fn note_written(&self, queue: QueueId, holder: Holder, consumer: ConsumerKey) {
        self.consumes.set(true);
        self.written.borrow_mut().note((queue, holder, consumer));
    }

    /// Ends output after what is queued; the writer then closes the socket.
    pub fn close_output(&self) {
        self.output_closed.set(true);
        self.wake_writer();
    }

    pub fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// The socket is gone or must go: output ends, and a reader waiting for room wakes up.
    pub fn mark_dead(&self) {
        self.dead.set(true);
        self.close_output();
        self.wake_reader();
    }

    pub fn output_closed(&self) -> bool {
        self.output_closed.get()
    }

    /// Some channel is between basic.publish and the last frame of its content.
    pub fn content_in_progress(&self) -> bool {
        self.channels.borrow().values().any(|channel| !matches!(channel.content, super::channel::Content::Idle))
    }

    pub fn writes_completed(&self) -> u64 {
        self.writes_completed.get()
    }

    pub fn output_congested(&self) -> bool {
        self.out.borrow().len() > CONNECTION_OUTPUT_HIGH_BYTES
    }

    /// Everything appended to the output so far, for the writer; None when it is empty.
    pub fn take_output(&self) -> Option<Bytes> {
        let mut out = self.out.borrow_mut();
        (!out.is_empty()).then(|| out.split().freeze())
    }

    /// The connection writes little: an empty output buffer larger than that is given back
    /// (the next output takes a new one), so an idle connection holds none.
    pub fn release_idle_output(&self) {
        let mut out = self.out.borrow_mut();
        if out.is_empty() && out.capacity() > OUTPUT_KEEP_BYTES {
            *out = BytesMut::new();
        }
    }

    /// The writer sent a chunk: the deliveries in it become flow credit (returned to the
    /// caller, per consumer), and a reader waiting for room may go on.
    pub fn write_completed(&self) -> FxHashMap<CreditKey, u32> {
        self.wrote_since_tick.set(true);
        self.writes_completed.set(self.writes_completed.get().wrapping_add(1));
        let written = self.written.borrow_mut().take();
        self.wake_reader();
        written
    }

    /// The writer stopped for good: nothing written from now on is credited.
    pub fn writer_stopped(&self) {
        self.dead.set(true);
        self.written.borrow_mut().take();
        self.wake_reader();
    }

    fn wake_reader(&self) {
        if let Some(waker) = self.reader_waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Whether something was written since the last heartbeat tick (and starts a new tick).
    pub fn take_wrote_since_tick(&self) -> bool {
        self.wrote_since_tick.replace(false)
    }

    /// A frame (or the protocol header) arrived from the client.
    pub fn touch_read(&self) {
        self.last_read.set(Instant::now());
    }

    /// When the client last sent anything.
    pub fn last_read(&self) -> Instant {
        self.last_read.get()
    }

    /// Waits until the writer drained the output below the high mark (or the connection died).
    pub fn output_room(&self) -> impl Future<Output = ()> + '_ {
        OutputRoom(self)
    }

    /// Waits until there is output to send or output is closed.
    pub fn output_ready(&self) -> impl Future<Output = ()> + '_ {
        OutputReady(self)
    }

    /// Waits until the writer stopped (or the connection died otherwise).
    pub fn writer_gone(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|context| {
            if self.dead.get() {
                return Poll::Ready(());
            }
            *self.reader_waker.borrow_mut() = Some(context.waker().clone());
            Poll::Pending
        })
    }

    /// Drops what was appended to the output and not yet taken by the writer: the answers of
    /// a replayed transcript, which the client already has (`shard::handover`).
    pub fn discard_output(&self) {
        self.out.borrow_mut().clear();
    }
}

struct OutputRoom<'a>(&'a Connection);

impl Future for OutputRoom<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if !self.0.output_congested() || self.0.dead.get() {
            return Poll::Ready(());
        }
        *self.0.reader_waker.borrow_mut() = Some(context.waker().clone());
        Poll::Pending
    }
}

struct OutputReady<'a>(&'a Connection);

impl Future for OutputReady<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if !self.0.out.borrow().is_empty() || self.0.output_closed.get() || self.0.transport_wants_write.get() {
            return Poll::Ready(());
        }
        *self.0.writer_waker.borrow_mut() = Some(context.waker().clone());
        Poll::Pending
    }
}

impl Connection {
    /// Closes the connection from the broker's side with `error` (320 CONNECTION_FORCED and
    /// its reason, as RabbitMQ closes connections of a deleted vhost or user); once.
    pub fn force_close(&self, error: &AmqpError) {
        if self.force_closed.replace(true) || self.output_closed() {
            return;
        }
        send_connection_close(self, error, 0, 0);
    }

    pub fn is_force_closed(&self) -> bool {
        self.force_closed.get()
    }

    pub fn linger(&self) {
        self.lingering.set(true);
    }

    pub fn stop_lingering(&self) {
        self.lingering.set(false);
    }

    pub fn lingers(&self) -> bool {
        self.lingering.get()
    }
}

pub fn send_connection_close(connection: &Connection, error: &AmqpError, class_id: u16, method_id: u16) {
    use amq_protocol::protocol::{connection as method, AMQPClass};
    let close = AMQPClass::Connection(method::AMQPMethod::Close(method::Close {
        reply_code: error.reply_code,
        reply_text: truncate_text(&error.reply_text).into(),
        class_id,
        method_id,
    }));
    connection.write_with(|out| {
        let _ = crate::codec::methods::encode_method(out, 0, &close);
    });
}

/// Reply texts are short strings: a text over 255 bytes is cut to 252 and ends in "...", as
/// RabbitMQ cuts it (here on a character boundary).
pub fn truncate_text(text: &str) -> String {
    if text.len() <= 255 {
        return text.to_string();
    }
    let mut end = 252;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ConnId;

    fn holder(channel: u16) -> Holder {
        Holder { conn: ConnId { shard: 0, local: 1 }, channel, incarnation: 1 }
    }

    #[test]
    fn credits_count_runs_and_interleavings_per_consumer() {
        let mut credits = Credits::default();
        let (a, b) = (ConsumerKey(1), ConsumerKey(2));
        credits.note((QueueId(1), holder(1), a));
        credits.note((QueueId(1), holder(1), a));
        credits.note((QueueId(1), holder(1), b));
        credits.note((QueueId(1), holder(1), a));
        credits.note((QueueId(2), holder(1), a));
        credits.note((QueueId(1), holder(2), a));
        let taken = credits.take();
        assert_eq!(taken.len(), 4);
        assert_eq!(taken[&(QueueId(1), holder(1), a)], 3);
        assert_eq!(taken[&(QueueId(1), holder(1), b)], 1);
        assert_eq!(taken[&(QueueId(2), holder(1), a)], 1);
        assert_eq!(taken[&(QueueId(1), holder(2), a)], 1);
        assert!(credits.take().is_empty());
    }
}
