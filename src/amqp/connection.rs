//! One client connection: its shared state, the reader task that parses and dispatches
//! frames, and the writer task that flushes output.
//!
//! The reader owns the socket's read half and handles frames in order; the writer owns the
//! write half and sends whatever the reader or the mailbox loop appended to `out`. Both live
//! on the shard that accepted the socket. Output is bounded: the reader stops reading while
//! `out` holds more than `CONNECTION_OUTPUT_HIGH_BYTES`, and queues stop delivering to a
//! consumer whose flow credit is spent until the writer reports the bytes written.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::channel::Channel;
use super::handshake;
use crate::broker::error::{AmqpError, CONNECTION_FORCED};
use crate::broker::messages::ShardMsg;
use crate::codec::frame::{split_frame, FrameError, RawFrame};
use crate::ids::{ConnId, ConsumerTag, Holder, QueueId};
use crate::limits::{CLOSE_OK_TIMEOUT_MS, CONNECTION_OUTPUT_HIGH_BYTES, HANDSHAKE_TIMEOUT_MS, READ_CHUNK_BYTES};
use crate::shard::Shard;

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
    pub channels: RefCell<HashMap<u16, Channel>>,
    /// Deliveries appended to `out` per consumer, returned to the queues as flow credit once
    /// the writer has sent them.
    written: RefCell<HashMap<(QueueId, Holder, ConsumerTag), u32>>,
    next_incarnation: Cell<u32>,
    last_read: Cell<Instant>,
    /// Set by the first basic.publish: only publishing connections are blocked by alarms.
    pub published: Cell<bool>,
    /// The client announced the `connection.blocked` capability.
    pub supports_blocked: Cell<bool>,
    wrote_since_tick: Cell<bool>,
    /// Writes the writer has finished: direct replies appended since the last one are still
    /// in `out` (see `direct_reply`).
    writes_completed: Cell<u64>,
    fd: RawFd,
}

impl Connection {
    fn new(id: ConnId, fd: RawFd) -> Connection {
        Connection {
            id,
            out: RefCell::new(BytesMut::with_capacity(READ_CHUNK_BYTES)),
            writer_waker: RefCell::new(None),
            reader_waker: RefCell::new(None),
            dirty: Cell::new(false),
            output_closed: Cell::new(false),
            dead: Cell::new(false),
            frame_max: Cell::new(crate::limits::FRAME_MAX_BYTES),
            channel_max: Cell::new(crate::limits::CHANNEL_MAX),
            vhost: RefCell::new(String::new()),
            channels: RefCell::new(HashMap::new()),
            written: RefCell::new(HashMap::new()),
            next_incarnation: Cell::new(1),
            last_read: Cell::new(Instant::now()),
            published: Cell::new(false),
            supports_blocked: Cell::new(false),
            wrote_since_tick: Cell::new(false),
            writes_completed: Cell::new(0),
            fd,
        }
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
        self.channels
            .borrow()
            .get(&holder.channel)
            .is_some_and(|channel| channel.incarnation == holder.incarnation && !channel.closing)
    }

    /// Appends frames to the output and wakes the writer.
    pub fn write_with(&self, encode: impl FnOnce(&mut BytesMut)) {
        if self.output_closed.get() {
            return;
        }
        encode(&mut self.out.borrow_mut());
        self.wake_writer();
    }

    fn wake_writer(&self) {
        if let Some(waker) = self.writer_waker.borrow_mut().take() {
            waker.wake();
        }
    }

    pub fn note_written(&self, queue: QueueId, holder: Holder, consumer_tag: &ConsumerTag) {
        *self.written.borrow_mut().entry((queue, holder, consumer_tag.clone())).or_insert(0) += 1;
    }

    /// Ends output after what is queued; the writer then closes the socket.
    pub fn close_output(&self) {
        self.output_closed.set(true);
        self.wake_writer();
    }

    pub fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// Stops the socket in both directions: a pending read returns at once.
    fn kill(&self) {
        self.dead.set(true);
        // SAFETY: shutdown on a descriptor this connection owns; an already closed descriptor
        // only makes it return an error, which is ignored.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
        self.close_output();
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
}

/// Waits until the writer drained the output below the high mark (or the connection died).
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

/// Waits until there is output to send or output is closed.
struct OutputReady<'a>(&'a Connection);

impl Future for OutputReady<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if !self.0.out.borrow().is_empty() || self.0.output_closed.get() {
            return Poll::Ready(());
        }
        *self.0.writer_waker.borrow_mut() = Some(context.waker().clone());
        Poll::Pending
    }
}

pub enum ReadError {
    Closed,
    Frame(FrameError),
}

/// The read half with its buffer: hands out whole frames, reading more only when needed.
pub struct FrameReader {
    half: OwnedReadHalf<TcpStream>,
    buffer: BytesMut,
}

impl FrameReader {
    /// Reads more bytes into the buffer; false on end of stream or error.
    pub async fn fill(&mut self) -> bool {
        let mut buffer = std::mem::take(&mut self.buffer);
        if buffer.capacity() - buffer.len() < READ_CHUNK_BYTES / 4 {
            buffer.reserve(READ_CHUNK_BYTES);
        }
        let length = buffer.len();
        let capacity = buffer.capacity();
        let (result, slice) = self.half.read(buffer.slice_mut(length..capacity)).await;
        self.buffer = slice.into_inner();
        matches!(result, Ok(read) if read > 0)
    }

    pub fn buffered(&self) -> &[u8] {
        &self.buffer
    }

    pub fn consume(&mut self, count: usize) {
        let _ = self.buffer.split_to(count.min(self.buffer.len()));
    }

    pub fn next_buffered(&mut self, frame_max: u32) -> Result<Option<RawFrame>, FrameError> {
        split_frame(&mut self.buffer, frame_max)
    }

    pub async fn next_frame(&mut self, frame_max: u32) -> Result<RawFrame, ReadError> {
        loop {
            if let Some(frame) = self.next_buffered(frame_max).map_err(ReadError::Frame)? {
                return Ok(frame);
            }
            if !self.fill().await {
                return Err(ReadError::Closed);
            }
        }
    }
}

/// Serves one accepted socket until it closes.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, loopback_peer: bool) {
    let _ = stream.set_nodelay(true);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let (read_half, write_half) = stream.into_split();
    let id = ConnId { shard: shard.id as u16, local: shard.next_connection_id() };
    let connection = Rc::new(Connection::new(id, fd));
    monoio::spawn(write_loop(shard.clone(), connection.clone(), write_half));
    let mut reader = FrameReader { half: read_half, buffer: BytesMut::with_capacity(READ_CHUNK_BYTES) };
    let handshake = handshake::run(&shard, &connection, &mut reader, loopback_peer);
    let heartbeat = match monoio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), handshake).await {
        Ok(Ok(heartbeat)) => heartbeat,
        Ok(Err(())) | Err(_) => {
            connection.close_output();
            return;
        }
    };
    shard.connections.borrow_mut().insert(id.local, connection.clone());
    if heartbeat > 0 {
        monoio::spawn(heartbeat_loop(connection.clone(), heartbeat));
    }
    let outcome = read_loop(&shard, &connection, &mut reader).await;
    if let Err(error) = outcome {
        send_connection_close(&connection, &error, 0, 0);
        await_close_ok(&connection, &mut reader).await;
    }
    teardown(&shard, &connection);
}

async fn read_loop(shard: &Rc<Shard>, connection: &Rc<Connection>, reader: &mut FrameReader) -> Result<(), AmqpError> {
    let mut dispatcher = super::dispatch::Dispatcher::new(shard.clone(), connection.clone());
    loop {
        loop {
            let frame = match reader.next_buffered(connection.frame_max.get()) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => return Err(AmqpError::from_codec(error.reply_code(), error)),
            };
            if dispatcher.handle_frame(frame).await? {
                return Ok(());
            }
            if shard.shutdown_requested() {
                return Err(AmqpError::new(
                    CONNECTION_FORCED,
                    "broker forced connection closure with reason 'shutdown'",
                ));
            }
            if alarm_blocks(shard, connection) {
                dispatcher.end_of_batch();
                wait_while_blocked(shard, connection).await;
            }
        }
        dispatcher.end_of_batch();
        if connection.output_congested() {
            OutputRoom(connection).await;
        }
        while shard.outbox_congested() && !connection.is_dead() {
            monoio::time::sleep(Duration::from_micros(100)).await;
        }
        if !reader.fill().await || connection.is_dead() {
            return Ok(());
        }
        connection.last_read.set(Instant::now());
    }
}

/// A raised alarm holds a connection that has published, at a message boundary: a publish
/// whose header or body is still arriving is read to its end first (frames already buffered
/// wait with the socket).
fn alarm_blocks(shard: &Shard, connection: &Connection) -> bool {
    connection.published.get() && shard.alarms.blocked_reason().is_some() && !connection.content_in_progress()
}

/// Resource alarm: stop reading this publisher's socket until it clears, telling the client
/// (connection.blocked / unblocked) when it announced it understands. The heartbeat monitor
/// is paused meanwhile, as RabbitMQ does: a blocked client may well stop sending heartbeats.
async fn wait_while_blocked(shard: &Shard, connection: &Connection) {
    use amq_protocol::protocol::{connection as method, AMQPClass};
    let Some(reason) = shard.alarms.blocked_reason() else { return };
    if connection.supports_blocked.get() {
        let blocked = AMQPClass::Connection(method::AMQPMethod::Blocked(method::Blocked { reason: reason.into() }));
        connection.write_with(|out| {
            let _ = crate::codec::methods::encode_method(out, 0, &blocked);
        });
    }
    while shard.alarms.blocked_reason().is_some() && !connection.is_dead() && !shard.shutdown_requested() {
        connection.last_read.set(Instant::now());
        monoio::time::sleep(Duration::from_millis(crate::alarms::SAMPLE_INTERVAL_MS / 2)).await;
    }
    connection.last_read.set(Instant::now());
    if connection.supports_blocked.get() {
        let unblocked = AMQPClass::Connection(method::AMQPMethod::Unblocked(method::Unblocked {}));
        connection.write_with(|out| {
            let _ = crate::codec::methods::encode_method(out, 0, &unblocked);
        });
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

/// Reply texts are short strings: at most 255 bytes, cut on a character boundary.
pub fn truncate_text(text: &str) -> String {
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// After sending connection.close, the spec says to discard everything but close-ok.
async fn await_close_ok(connection: &Connection, reader: &mut FrameReader) {
    let wait = async {
        while let Ok(frame) = reader.next_frame(0).await {
            if frame.frame_type == crate::codec::frame::FRAME_METHOD && frame.channel == 0 {
                let ids = crate::codec::hotpath::method_ids(&frame.payload).unwrap_or((0, 0));
                if ids == (10, 51) || ids == (10, 50) {
                    return;
                }
            }
        }
    };
    if !connection.is_dead() {
        let _ = monoio::time::timeout(Duration::from_millis(CLOSE_OK_TIMEOUT_MS), wait).await;
    }
}

/// Releases everything the connection held: consumers and unacked messages go back to their
/// queues, exclusive queues are deleted, the socket is closed.
fn teardown(shard: &Rc<Shard>, connection: &Rc<Connection>) {
    shard.connections.borrow_mut().remove(&connection.id.local);
    let channels: Vec<u16> = connection.channels.borrow().keys().copied().collect();
    for channel in channels {
        super::dispatch::release_channel(shard, connection, channel);
    }
    shard.send(0, ShardMsg::ConnectionGone { conn: connection.id });
    connection.close_output();
}

async fn write_loop(shard: Rc<Shard>, connection: Rc<Connection>, mut half: OwnedWriteHalf<TcpStream>) {
    loop {
        let chunk = {
            let mut out = connection.out.borrow_mut();
            if out.is_empty() {
                None
            } else {
                Some(out.split().freeze())
            }
        };
        let Some(chunk) = chunk else {
            if connection.output_closed.get() {
                break;
            }
            OutputReady(&connection).await;
            continue;
        };
        let (result, _) = half.write_all(chunk).await;
        if result.is_err() {
            connection.kill();
            break;
        }
        connection.wrote_since_tick.set(true);
        connection.writes_completed.set(connection.writes_completed.get().wrapping_add(1));
        return_flow_credit(&shard, &connection);
        if let Some(waker) = connection.reader_waker.borrow_mut().take() {
            waker.wake();
        }
    }
    connection.dead.set(true);
    connection.written.borrow_mut().clear();
    if let Some(waker) = connection.reader_waker.borrow_mut().take() {
        waker.wake();
    }
    // Dropping the write half shuts down the sending side; the read half closes with the reader.
    drop(half);
    // SAFETY: see `Connection::kill`.
    unsafe {
        libc::shutdown(connection.fd, libc::SHUT_RDWR);
    }
}

fn return_flow_credit(shard: &Shard, connection: &Connection) {
    let written = std::mem::take(&mut *connection.written.borrow_mut());
    for ((queue, holder, consumer_tag), count) in written {
        shard.send(queue.owner(), ShardMsg::Credit { queue, holder, consumer_tag, count });
    }
}

/// Sends heartbeats when idle and drops a client silent for two intervals.
async fn heartbeat_loop(connection: Rc<Connection>, interval_seconds: u16) {
    let interval = Duration::from_secs(u64::from(interval_seconds));
    loop {
        monoio::time::sleep(interval / 2).await;
        if connection.output_closed.get() || connection.dead.get() {
            return;
        }
        if connection.last_read.get().elapsed() > interval * 2 {
            crate::info!("connection {}: missed heartbeats from client, closing", connection.id);
            connection.kill();
            return;
        }
        if !connection.wrote_since_tick.replace(false) {
            connection.write_with(crate::codec::frame::write_heartbeat);
        }
    }
}

pub fn touch_read(connection: &Connection) {
    connection.last_read.set(Instant::now());
}
