//! The socket side of a client connection: the reader task that feeds the handshake and the
//! dispatcher with frames, the writer task that flushes the connection's output, and the
//! heartbeat monitor.
//!
//! The protocol itself (handshake, channels, methods) lives in `amqp` and does no I/O; this
//! file owns the socket halves and the waits: for bytes, for room in the output, for a resource
//! alarm to clear, for a mailbox to drain. Both tasks live on the shard that serves the socket:
//! the one it was placed on (`balance`), or, for a confirm-mode publisher that moved at its first
//! publish, the one it was handed to (`handover`, which also takes the socket apart and replays
//! the set-up). Frames come out of the socket through `reader::FrameReader`.
//!
//! An amqps socket first completes its TLS handshake (`serve_tls` with `super::tls`, bounded by
//! the handshake timeout), then runs the same tasks with the TLS record layer (`crate::tls`)
//! between the socket and the buffers; a plain socket pays one branch per read and per write.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::io::{AsyncWriteRentExt, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::balance::Start;
use super::handover;
use super::pressure::{Hold, HoldReason};
use super::reader::{FrameReader, ReadError};
use super::tls;
use super::Shard;
use crate::amqp::admission::ConnectionSlot;
use crate::amqp::connection::{send_connection_close, Connection};
use crate::amqp::dispatch::{fault, release_connection, Dispatcher, Hangup, NO_METHOD};
use crate::amqp::handshake::{Handshake, Step};
use crate::broker::error::{AmqpError, CONNECTION_FORCED};
use crate::broker::messages::{Resume, ShardMsg};
use crate::codec::frame::RawFrame;
use crate::ids::ConnId;
use crate::limits::{CLOSE_OK_TIMEOUT_MS, OUTPUT_KEEP_BYTES, READ_CHUNK_MIN_BYTES};
use crate::tls::TlsWriter;

/// How long a closed connection's socket is still read (and its bytes dropped) waiting for the
/// client to close it (RabbitMQ: 30 s, or less with heartbeats).
const DRAIN_AFTER_CLOSE: Duration = Duration::from_secs(30);
/// How often a connection held by `wait_for_backlog` looks whether the shard caught up.
const BACKLOG_RECHECK: Duration = Duration::from_millis(1);

/// Serves one accepted plain AMQP socket until it closes.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, loopback_peer: bool, start: Start) {
    serve_transport(shard, stream, loopback_peer, None, start).await;
}

/// Serves one socket accepted on the amqps listener: the TLS handshake first, bounded by the
/// handshake timeout; anything but a completed handshake (garbage, a plain AMQP header, a
/// stall, a refused certificate) closes the socket and touches nothing else.
pub async fn serve_tls(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    loopback_peer: bool,
    config: Arc<rustls::ServerConfig>,
) {
    let _ = stream.set_nodelay(true);
    let handshake = tls::accept(&mut stream, config);
    match monoio::time::timeout(Duration::from_millis(shard.config.handshake_timeout_ms), handshake).await {
        Ok(Ok(accepted)) => {
            serve_transport(shard, stream, loopback_peer, Some(accepted), Start::Fresh { movable: false }).await
        }
        Ok(Err(reason)) => crate::debug!("shard {}: TLS handshake failed: {reason}", shard.id),
        Err(_) => crate::debug!("shard {}: TLS handshake timed out", shard.id),
    }
}

async fn serve_transport(
    shard: Rc<Shard>,
    stream: TcpStream,
    loopback_peer: bool,
    tls: Option<tls::Accepted>,
    start: Start,
) {
    let _ = stream.set_nodelay(true);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let id = ConnId { shard: shard.id as u16, local: shard.next_connection_id() };
    let connection = Rc::new(Connection::new(id));
    *connection.name.borrow_mut() = connection_name(&stream);
    let (read_half, write_half) = stream.into_split();
    let (tls_reader, tls_writer, buffer) = match tls {
        None => (None, None, BytesMut::new()),
        Some(accepted) => {
            crate::debug!(
                "connection {id}: TLS {}, client certificate CN {:?}",
                accepted.description,
                accepted.peer_common_name
            );
            connection.is_tls.set(true);
            *connection.peer_certificate_cn.borrow_mut() = accepted.peer_common_name;
            (Some(accepted.reader), Some(accepted.writer), accepted.plaintext)
        }
    };
    // A resumed connection replays its transcript first, with nobody writing its answers.
    let (buffer, transcript, pending) = match start {
        Start::Fresh { movable } => {
            let movable = movable && tls_reader.is_none() && shard.count > 1;
            (buffer, movable.then(BytesMut::new), None)
        }
        Start::Resumed(Resume { transcript, pending }) => (BytesMut::from(&transcript[..]), None, Some(pending)),
    };
    let parked = Rc::new(RefCell::new(None));
    let mut writer = Some((write_half, tls_writer));
    let spawn_writer = |writer: &mut Option<(OwnedWriteHalf<TcpStream>, Option<TlsWriter>)>| {
        if let Some((half, tls)) = writer.take() {
            monoio::spawn(write_loop(shard.clone(), connection.clone(), half, fd, tls, parked.clone()));
        }
    };
    if pending.is_none() {
        spawn_writer(&mut writer);
    }
    let mut reader = FrameReader {
        half: read_half,
        buffer,
        tls: tls_reader,
        connection: connection.clone(),
        read_size: READ_CHUNK_MIN_BYTES,
        transcript,
    };
    let handshake = handshake(&shard, &connection, &mut reader, loopback_peer, pending.is_some());
    let handshake_timeout = Duration::from_millis(shard.config.handshake_timeout_ms);
    // `slot`: the connection's place under --max-connections, given back when `serve` ends.
    let (heartbeat, slot) = match monoio::time::timeout(handshake_timeout, handshake).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(())) | Err(_) => {
            if let Some(pending) = &pending {
                crate::warn!("connection {id}: its handshake, handed over by another shard, failed here");
                handover::refuse_moved(&connection, &mut reader, pending);
                spawn_writer(&mut writer);
                await_close_ok(&connection, &mut reader).await;
                // It opened on its first shard, which did not count it closed.
                shard.connection_counts.note_closed();
            }
            connection.close_output();
            return;
        }
    };
    shard.connections.borrow_mut().insert(id.local, connection.clone());
    if pending.is_none() {
        // A handed-over connection was counted when it opened on its first shard.
        shard.connection_counts.note_opened();
    }
    let mut dispatcher = Dispatcher::new(shard.clone(), connection.clone());
    if let Some(pending) = pending {
        let replayed = handover::replay(&connection, &mut dispatcher, &mut reader).await;
        connection.discard_output();
        if !replayed {
            crate::warn!("connection {id}: the set-up handed over by another shard failed here");
            handover::refuse_moved(&connection, &mut reader, &pending);
            spawn_writer(&mut writer);
            await_close_ok(&connection, &mut reader).await;
            teardown(&shard, &connection);
            return;
        }
        reader.buffer.extend_from_slice(&pending);
        spawn_writer(&mut writer);
    }
    if heartbeat > 0 {
        monoio::spawn(heartbeat_loop(connection.clone(), heartbeat, fd));
    }
    match read_loop(&shard, &connection, &mut reader, dispatcher).await {
        Ok(Ended::HandOver { target, publish }) => {
            let handed = handover::take_apart(&connection, reader, &parked, publish).await;
            // This shard lets go of the connection (and its place under --max-connections)
            // before the other one replays its handshake.
            drop(slot);
            let leaves = if handed.is_some() { Leaves::Moved } else { Leaves::Closed };
            forget(&shard, &connection, leaves);
            if let Some((socket, resume)) = handed {
                crate::debug!("connection {id}: hands over to shard {target} at its first publish");
                super::balance::hand_over(&shard, socket, loopback_peer, target, resume);
            }
            return;
        }
        Ok(Ended::Closed) => {
            // The client closed (close-ok is on its way): release everything now, then read
            // and drop what it still sends until it closes the socket, as RabbitMQ does, so
            // that a client with publishes queued behind its close does not meet a reset.
            connection.linger();
            teardown(&shard, &connection);
            let limit = match heartbeat {
                0 => DRAIN_AFTER_CLOSE,
                seconds => DRAIN_AFTER_CLOSE.min(Duration::from_secs(u64::from(seconds) * 2)),
            };
            reader.drain(limit).await;
            connection.stop_lingering();
            drop(parked.borrow_mut().take());
            return;
        }
        Err(Hangup::Close(fault)) => {
            send_connection_close(&connection, &fault.error, fault.class_id, fault.method_id);
            await_close_ok(&connection, &mut reader).await;
        }
        Err(Hangup::Silent) if connection.is_force_closed() => await_close_ok(&connection, &mut reader).await,
        Err(Hangup::Silent) => {}
    }
    drop(slot);
    teardown(&shard, &connection);
}

/// How the read loop ended without an error.
enum Ended {
    /// The client closed the connection.
    Closed,
    /// The connection goes to shard `target` before this publish (`handover`).
    HandOver { target: usize, publish: RawFrame },
}

/// RabbitMQ's connection name: "client address -> broker address".
fn connection_name(stream: &TcpStream) -> String {
    let show = |address: std::io::Result<std::net::SocketAddr>| {
        address.map_or_else(|_| "unknown".to_string(), |address| address.to_string())
    };
    format!("{} -> {}", show(stream.peer_addr()), show(stream.local_addr()))
}

/// Feeds the handshake the protocol header, then frames, until the connection is open (Ok with
/// the heartbeat interval the client asked for and its connection slot) or refused.
async fn handshake(
    shard: &Shard,
    connection: &Connection,
    reader: &mut FrameReader,
    loopback_peer: bool,
    replay: bool,
) -> Result<(u16, Option<ConnectionSlot>), ()> {
    let mut handshake = Handshake::new(loopback_peer).with_limits(shard.connection_limits.clone());
    if replay {
        handshake = handshake.replaying();
    }
    loop {
        let end_of_stream = match handshake.protocol_header(connection, reader.buffered()) {
            Step::HeaderAccepted(length) => {
                reader.consume(length);
                connection.touch_read();
                break;
            }
            Step::Continue => !reader.fill().await,
            _ => return Err(()),
        };
        if end_of_stream {
            return Err(());
        }
    }
    loop {
        let frame = match reader.next_frame(handshake.frame_max(connection)).await {
            Ok(frame) => frame,
            Err(ReadError::Closed) => return Err(()),
            Err(ReadError::Frame(error)) => {
                handshake.frame_error(connection, error);
                return Err(());
            }
        };
        connection.touch_read();
        reader.record(&frame);
        match handshake.frame(shard, connection, frame) {
            Step::Open { heartbeat } => return Ok((heartbeat, handshake.take_slot())),
            Step::Continue | Step::HeaderAccepted(_) => {}
            Step::Refused => return Err(()),
        }
    }
}

async fn read_loop(
    shard: &Rc<Shard>,
    connection: &Rc<Connection>,
    reader: &mut FrameReader,
    mut dispatcher: Dispatcher<Shard>,
) -> Result<Ended, Hangup> {
    let mut last_timer_turn = std::time::Instant::now();
    loop {
        // What was read may depend on definitions another connection was just answered about.
        shard.catch_up_announced();
        loop {
            if connection.is_force_closed() {
                return Err(Hangup::Silent);
            }
            let frame = match reader.next_buffered(connection.frame_max.get()) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    return Err(Hangup::Close(fault(AmqpError::from_codec(error.reply_code(), error), NO_METHOD)))
                }
            };
            if reader.transcript.is_some() {
                match handover::classify(&frame) {
                    handover::Kind::Replayable => reader.record(&frame),
                    handover::Kind::Publish => match handover::target(shard, connection, &frame) {
                        Some(target) if connection.out.borrow().is_empty() => {
                            dispatcher.end_of_batch();
                            return Ok(Ended::HandOver { target, publish: frame });
                        }
                        _ => reader.transcript = None,
                    },
                    handover::Kind::Other => reader.transcript = None,
                }
            }
            if let Some(frame) = dispatcher.handle_hot_frame(frame)? {
                if dispatcher.handle_frame(frame).await? {
                    return Ok(Ended::Closed);
                }
            }
            if shard.shutdown_requested() {
                let error =
                    AmqpError::new(CONNECTION_FORCED, "broker forced connection closure with reason 'shutdown'");
                return Err(Hangup::Close(fault(error, NO_METHOD)));
            }
            if alarm_blocks(shard, connection) {
                dispatcher.end_of_batch();
                wait_while_blocked(shard, connection).await;
            }
        }
        dispatcher.end_of_batch();
        if connection.output_congested() {
            connection.output_room().await;
        }
        while shard.outbox_congested() && !connection.is_dead() {
            monoio::time::sleep(Duration::from_micros(100)).await;
        }
        wait_for_backlog(shard, connection).await;
        if shard.fair.readers_take_turns() {
            // Epoll: the read below may complete without leaving this task (`fair`).
            if last_timer_turn.elapsed() >= crate::shard::fair::TIMER_TURN {
                crate::shard::fair::sleep_for_timers(&mut last_timer_turn).await;
            } else {
                shard.fair.yield_now().await;
            }
        }
        if !reader.fill().await || connection.is_dead() {
            return Ok(Ended::Closed);
        }
        connection.touch_read();
    }
}

/// Holds a connection that published to a backlogged shard until it catches up: one whose
/// paged-out writes run ahead of its disk (`limits::PAGED_UNSYNCED_BYTES_MAX`), or whose held
/// delayed messages go out later than `limits::DELAYED_BEHIND_MS`. The publisher goes at the
/// disk's (or the routing's) pace, its socket's buffers fill and its client's writes wait, as
/// under RabbitMQ's credit flow. Likewise a connection that only publishes, while another shard
/// it published to has a deep queue that keeps delivering and that shard or its own is busy
/// (`shard::pressure`): the publisher goes at the pace the consumers get their messages. No
/// `connection.blocked`: that is for the resource alarms. Heartbeats are still sent (the
/// writer runs on), the client's are not expected meanwhile, and a closed connection stops
/// waiting.
async fn wait_for_backlog(shard: &Shard, connection: &Connection) {
    let published_to = connection.take_published_to();
    let hold = Hold::of(shard.id, connection.consumes.get(), published_to);
    let own_busy = || shard.pressure.busy(crate::clock::now_ns(), crate::clock::thread_cpu_ns);
    let Some(reason) = hold.reason(&shard.mailboxes, own_busy) else { return };
    let pauses = match reason {
        HoldReason::Backlog => &shard.connection_counts.paging_pauses,
        HoldReason::Pressure => &shard.connection_counts.pressure_pauses,
    };
    pauses.set(pauses.get() + 1);
    while hold.reason(&shard.mailboxes, own_busy).is_some() && !connection.is_dead() {
        monoio::time::sleep(BACKLOG_RECHECK).await;
        connection.touch_read();
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
        connection.touch_read();
        monoio::time::sleep(Duration::from_millis(crate::alarms::SAMPLE_INTERVAL_MS / 2)).await;
    }
    connection.touch_read();
    if connection.supports_blocked.get() {
        let unblocked = AMQPClass::Connection(method::AMQPMethod::Unblocked(method::Unblocked {}));
        connection.write_with(|out| {
            let _ = crate::codec::methods::encode_method(out, 0, &unblocked);
        });
    }
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

/// Forgets the connection on this shard and releases everything it held.
fn teardown(shard: &Rc<Shard>, connection: &Rc<Connection>) {
    forget(shard, connection, Leaves::Closed);
}

/// How a connection leaves its shard.
enum Leaves {
    Closed,
    /// Handed over to another shard: it stays open, so it is not counted as closed.
    Moved,
}

fn forget(shard: &Rc<Shard>, connection: &Rc<Connection>, leaves: Leaves) {
    if shard.connections.borrow_mut().remove(&connection.id.local).is_some() {
        let counts = &shard.connection_counts;
        if let Leaves::Closed = leaves {
            counts.note_closed();
        }
        counts.keep_stats_of(connection);
    }
    release_connection(&**shard, connection);
}

async fn write_loop(
    shard: Rc<Shard>,
    connection: Rc<Connection>,
    mut half: OwnedWriteHalf<TcpStream>,
    fd: RawFd,
    mut tls: Option<TlsWriter>,
    parked: Rc<RefCell<Option<OwnedWriteHalf<TcpStream>>>>,
) {
    loop {
        let Some(chunk) = connection.take_output() else {
            if connection.take_transport_write() {
                if let Some(tls) = &mut tls {
                    if tls.flush_pending(&mut half).await.is_err() {
                        kill(&connection, fd);
                        break;
                    }
                }
                continue;
            }
            if connection.output_closed() {
                break;
            }
            connection.output_ready().await;
            continue;
        };
        let written = chunk.len();
        let result = match &mut tls {
            None => half.write_all(chunk).await.0.map(drop),
            Some(tls) => tls.write(&mut half, &chunk).await,
        };
        if result.is_err() {
            kill(&connection, fd);
            break;
        }
        for ((queue, holder, consumer), count) in connection.write_completed() {
            shard.send(queue.owner(), ShardMsg::Credit { queue, holder, consumer, count });
        }
        if written < OUTPUT_KEEP_BYTES {
            connection.release_idle_output();
        }
    }
    if let Some(tls) = &mut tls {
        if !connection.is_dead() {
            tls.close(&mut half).await;
        }
    }
    connection.writer_stopped();
    if connection.lingers() {
        // After the client's own close the socket stays open while the reader drains what
        // the client still sends; the reader drops this half when it is done.
        *parked.borrow_mut() = Some(half);
        return;
    }
    // Shut down while this half keeps the descriptor open (never a reused number).
    shutdown_socket(fd);
    drop(half);
}

/// Stops the socket in both directions: a pending read returns at once.
fn kill(connection: &Connection, fd: RawFd) {
    connection.mark_dead();
    shutdown_socket(fd);
}

fn shutdown_socket(fd: RawFd) {
    // SAFETY: shutdown on a descriptor this connection owns; an already closed descriptor
    // only makes it return an error, which is ignored.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Sends heartbeats when idle and drops a client silent for two intervals.
async fn heartbeat_loop(connection: Rc<Connection>, interval_seconds: u16, fd: RawFd) {
    let interval = Duration::from_secs(u64::from(interval_seconds));
    loop {
        monoio::time::sleep(interval / 2).await;
        if connection.output_closed() || connection.is_dead() {
            return;
        }
        if connection.last_read().elapsed() > interval * 2 {
            crate::info!("connection {}: missed heartbeats from client, closing", connection.id);
            kill(&connection, fd);
            return;
        }
        if !connection.take_wrote_since_tick() {
            connection.write_with(crate::codec::frame::write_heartbeat);
        }
    }
}
