//! The connection side of publishing, alone, for the `dispatch` criterion bench: socket bytes
//! in (basic.publish, content header, body), the shard messages the dispatcher sends out.
//!
//! What it runs is what a shard's read loop runs per frame (`split_frame`, then
//! `Dispatcher::handle_hot_frame`, then `end_of_batch` at the end of a read): parsing, content
//! assembly, RabbitMQ's publish checks, the route cache and building the `ShardMsg::Publish`.
//! The port behind it keeps what is sent in a vector, which the caller drops; no shard, runtime
//! or socket takes part.

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use amq_protocol::protocol::{channel, AMQPClass};
use amq_protocol::types::FieldTable;
use bytes::BytesMut;

use super::connection::Connection;
use super::dispatch::Dispatcher;
use super::port::{Port, ReplyHook};
use crate::broker::definitions::Definitions;
use crate::broker::error::{AmqpError, INTERNAL_ERROR};
use crate::broker::messages::{ReplyTo, ShardMsg};
use crate::broker::requests::{QueueDeclare, ReplyBody};
use crate::broker::snapshot::Snapshot;
use crate::codec::frame::split_frame;
use crate::codec::methods::encode_method;
use crate::ids::ConnId;
use crate::limits::FRAME_MAX_BYTES;

/// A port that keeps what is sent; it has no shard to ask, so a request is refused (the
/// publish path never makes one).
struct KeepingPort {
    snapshot: Arc<Snapshot>,
    shard_count: usize,
    sent: RefCell<Vec<(usize, ShardMsg)>>,
}

impl Port for KeepingPort {
    fn shard_count(&self) -> usize {
        self.shard_count
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.clone()
    }

    /// Read in place, as the shard does: no reference count change per publish.
    fn snapshot_version(&self) -> u64 {
        self.snapshot.version
    }

    fn send(&self, to: usize, message: ShardMsg) {
        self.sent.borrow_mut().push((to, message));
    }

    fn request_with_hook(
        &self,
        _to: usize,
        _make: impl FnOnce(ReplyTo) -> ShardMsg,
        _hook: Option<ReplyHook>,
    ) -> impl Future<Output = Result<ReplyBody, AmqpError>> {
        std::future::ready(Err(AmqpError::new(INTERNAL_ERROR, "the publish path has no shard to ask")))
    }

    fn consumer_timeout_ms(&self) -> Option<u64> {
        None
    }

    fn max_message_size_bytes(&self) -> u64 {
        crate::limits::MESSAGE_BODY_MAX_BYTES
    }

    fn schedule_ack_deadline(&self, _overdue_at_ms: u64) {}
}

/// One connection of user guest on vhost `/`, with channel 1 open and one transient queue
/// declared, as a shard holds it after the handshake.
pub struct PublishPath {
    port: Rc<KeepingPort>,
    dispatcher: Dispatcher<KeepingPort>,
}

impl PublishPath {
    /// `shard_count` shards, the connection on shard 0; `queue` declared (placed by its name).
    pub fn new(shard_count: usize, queue: &str) -> PublishPath {
        let mut definitions = Definitions::new(shard_count);
        let declare = QueueDeclare {
            vhost: "/".into(),
            name: queue.into(),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::default(),
            conn: ConnId { shard: 0, local: 1 },
            grant: None,
        };
        definitions.declare_queue(&declare).expect("a fresh broker takes the queue");
        let snapshot = definitions.take_changed().expect("declaring changed the definitions");
        let port = Rc::new(KeepingPort { snapshot, shard_count, sent: RefCell::new(Vec::new()) });
        let connection = Rc::new(Connection::new(ConnId { shard: 0, local: 1 }));
        *connection.user.borrow_mut() = "guest".into();
        *connection.vhost.borrow_mut() = "/".into();
        let mut dispatcher = Dispatcher::new(port.clone(), connection.clone());
        let mut open = BytesMut::new();
        encode_method(&mut open, 1, &AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})))
            .expect("channel.open encodes");
        let frame = split_frame(&mut open, FRAME_MAX_BYTES).ok().flatten().expect("one whole frame");
        {
            let mut opening = pin!(dispatcher.handle_frame(frame));
            match opening.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(Ok(false)) => {}
                _ => panic!("channel.open is answered at once"),
            }
        }
        while connection.take_output().is_some() {}
        PublishPath { port, dispatcher }
    }

    /// Runs one socket read's worth of frames through the dispatcher, as the read loop does;
    /// returns how many shard messages it sent (kept until `take_sent`).
    pub fn feed(&mut self, bytes: &mut BytesMut) -> usize {
        while let Ok(Some(frame)) = split_frame(bytes, FRAME_MAX_BYTES) {
            match self.dispatcher.handle_hot_frame(frame) {
                Ok(None) => {}
                Ok(Some(_)) => panic!("a publish frame took the slow path"),
                Err(_) => panic!("the publish path closed the connection"),
            }
        }
        self.dispatcher.end_of_batch();
        self.port.sent.borrow().len()
    }

    /// What was sent, with the destination shard of each message.
    pub fn take_sent(&self) -> Vec<(usize, ShardMsg)> {
        std::mem::take(&mut *self.port.sent.borrow_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::placement::queue_owner;
    use crate::codec::hotpath;

    #[test]
    fn a_read_of_publishes_becomes_one_publish_message_each_to_the_queues_shard() {
        let mut path = PublishPath::new(2, "bench");
        let properties = hotpath::encode_properties(&Default::default()).expect("properties encode");
        let mut read = BytesMut::new();
        for _ in 0..100 {
            hotpath::encode_publish(&mut read, 1, b"", b"bench", false, &properties, &[7; 16], FRAME_MAX_BYTES)
                .expect("a publish encodes");
        }
        assert_eq!(path.feed(&mut read), 100);
        assert!(read.is_empty(), "every frame was taken");
        let owner = queue_owner("/", "bench", 2);
        for (to, message) in path.take_sent() {
            assert_eq!(to, owner);
            match message {
                ShardMsg::Publish { message, .. } => assert_eq!(&message.body[..], &[7; 16]),
                _ => panic!("only publishes are sent"),
            }
        }
    }
}
