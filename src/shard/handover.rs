//! A confirm-mode publisher leaves its queue's shard at its first publish.
//!
//! A connection is placed before it sends a byte (`balance`), so nothing says yet whether it
//! will publish or consume, nor to which queue. With the publisher on the shard that owns its
//! queue, that one shard parses the publishes, stores them, commits and confirms while the
//! other shards idle: scenario c (persistent, confirms) ran at 1.15–1.27M msg/s that way and
//! at 1.44–1.61M with the publisher elsewhere (`scripts/placement.sh --durable`, README).
//!
//! So the reader keeps a transcript of what the client sent, while that is only the handshake
//! and methods that set the connection up (`Replayable`). At the first basic.publish, on a
//! channel in confirm mode, whose routes (from the exchange and routing key alone) are queues
//! of this shard only, the connection is handed to the shard with the fewest connections: the
//! socket, the transcript and the bytes read after it. The other shard replays the transcript
//! through a fresh handshake and dispatcher, drops what they answer (the client had those
//! answers already), and serves the socket from the publish on. Nothing else moves: the
//! transcript's methods leave no state outside the connection. A connection hands over at
//! most once, and never one accepted on a shard's own listener or over TLS.
//!
//! The decision is `target`; the socket's side is `take_apart` on the shard it leaves and
//! `replay` (or, when the set-up fails there, `refuse_moved`) on the shard it goes to.

use std::cell::RefCell;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

use bytes::{BufMut, BytesMut};
use monoio::io::OwnedWriteHalf;
use monoio::net::TcpStream;

use super::reader::FrameReader;
use super::Shard;
use crate::amqp::connection::{send_connection_close, Connection};
use crate::amqp::dispatch::Dispatcher;
use crate::amqp::routes::{route_publish, Routed};
use crate::broker::error::{AmqpError, CONNECTION_FORCED};
use crate::broker::messages::Resume;
use crate::codec::frame::{RawFrame, FRAME_END, FRAME_HEARTBEAT, FRAME_METHOD};
use crate::codec::hotpath;

/// A transcript longer than this stops being kept: a handshake and a few channel set-ups take
/// a few hundred bytes.
pub const TRANSCRIPT_MAX_BYTES: usize = 8 * 1024;

const CHANNEL_OPEN: (u16, u16) = (20, 10);
const BASIC_QOS: (u16, u16) = (60, 10);
const BASIC_PUBLISH: (u16, u16) = (60, 40);
const CONFIRM_SELECT: (u16, u16) = (85, 10);

/// What a frame read after the handshake means for the transcript.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// Set-up a replay redoes whole: heartbeat, channel.open, basic.qos, confirm.select.
    Replayable,
    /// The first publish: the moment to decide.
    Publish,
    /// Anything else: the connection stays where it is.
    Other,
}

pub fn classify(frame: &RawFrame) -> Kind {
    match frame.frame_type {
        FRAME_HEARTBEAT => Kind::Replayable,
        FRAME_METHOD => match hotpath::method_ids(&frame.payload) {
            Ok(CHANNEL_OPEN | BASIC_QOS | CONFIRM_SELECT) => Kind::Replayable,
            Ok(BASIC_PUBLISH) => Kind::Publish,
            _ => Kind::Other,
        },
        _ => Kind::Other,
    }
}

/// The frame's bytes as they came on the wire.
pub fn append_frame(out: &mut BytesMut, frame: &RawFrame) {
    out.reserve(8 + frame.payload.len());
    out.put_u8(frame.frame_type);
    out.put_u16(frame.channel);
    out.put_u32(frame.payload.len() as u32);
    out.extend_from_slice(&frame.payload);
    out.put_u8(FRAME_END);
}

/// The shard this connection goes to before its first publish (`publish`), if it should move.
pub fn target(shard: &Shard, connection: &Connection, publish: &RawFrame) -> Option<usize> {
    if shard.count < 2 {
        return None;
    }
    let confirming = connection.channels.borrow().get(&publish.channel).is_some_and(|channel| channel.is_confirming());
    if !confirming {
        return None;
    }
    let fields = hotpath::parse_publish(&publish.payload).ok()?;
    let snapshot = shard.snapshot();
    let vhost_name = connection.vhost.borrow().clone();
    let vhost = snapshot.vhost(&vhost_name).map(|vhost| &**vhost);
    let exchange = std::str::from_utf8(&fields.exchange).ok()?;
    // A route that needs the message's headers is not decided from the publish method alone.
    let mut no_headers = || None;
    let mut routes = Vec::new();
    match route_publish(vhost, exchange, &fields.routing_key, &mut no_headers, &mut routes) {
        Routed::Queues { used_headers: false }
            if !routes.is_empty() && routes.iter().all(|queue| queue.owner() == shard.id) =>
        {
            shard.mailboxes.fewest_connections_but(shard.id)
        }
        _ => None,
    }
}

/// Redoes a handed-over connection's set-up (the frames left in the reader after the
/// handshake); false if any of it failed here. Its answers stay in the output for the caller
/// to drop.
pub(super) async fn replay(
    connection: &Connection,
    dispatcher: &mut Dispatcher<Shard>,
    reader: &mut FrameReader,
) -> bool {
    loop {
        let frame = match reader.next_buffered(connection.frame_max.get()) {
            Ok(Some(frame)) => frame,
            Ok(None) => return true,
            Err(_) => return false,
        };
        match dispatcher.handle_hot_frame(frame) {
            Ok(None) => {}
            Ok(Some(frame)) => match dispatcher.handle_frame(frame).await {
                Ok(false) => {}
                Ok(true) | Err(_) => return false,
            },
            Err(_) => return false,
        }
    }
}

/// A handed-over connection this shard cannot go on with (its replay failed: the vhost went,
/// or a connection limit was reached in the moment between the shards): the client, which has
/// an open connection, hears connection.close 320 as when the broker closes one; what it sent
/// meanwhile is read and dropped until its close-ok.
pub(super) fn refuse_moved(connection: &Connection, reader: &mut FrameReader, pending: &[u8]) {
    connection.discard_output();
    reader.buffer.clear();
    reader.buffer.extend_from_slice(pending);
    let error = AmqpError::new(
        CONNECTION_FORCED,
        "broker forced connection closure with reason 'moving to another shard failed'",
    );
    send_connection_close(connection, &error, 0, 0);
}

/// Takes a connection apart for another shard (`handover`): the writer stops once what it
/// holds is sent, the socket's halves come back together, and the publish goes first in what
/// the other shard will read. None if the writer died instead: the connection ends here.
pub(super) async fn take_apart(
    connection: &Connection,
    reader: FrameReader,
    parked: &RefCell<Option<OwnedWriteHalf<TcpStream>>>,
    publish: RawFrame,
) -> Option<(OwnedFd, Resume)> {
    connection.linger();
    connection.close_output();
    connection.writer_gone().await;
    connection.stop_lingering();
    let write_half = parked.borrow_mut().take()?;
    let FrameReader { half, buffer, transcript, .. } = reader;
    let transcript = transcript?;
    let stream = half.reunite(write_half).ok()?;
    let mut pending = BytesMut::with_capacity(publish.payload.len() + 8 + buffer.len());
    append_frame(&mut pending, &publish);
    pending.extend_from_slice(&buffer);
    // SAFETY: `into_raw_fd` gives up the stream's only reference to the descriptor, which the
    // `OwnedFd` then owns alone.
    let socket = unsafe { OwnedFd::from_raw_fd(stream.into_raw_fd()) };
    Some((socket, Resume { transcript: transcript.freeze(), pending: pending.freeze() }))
}
